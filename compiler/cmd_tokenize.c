/* cmd_tokenize.c - `llfc tokenize`: JSONL text -> JSONL ids, or ids -> text (see
 * cmd_tokenize.h). One line in, one line out, in order; the first bad line stops the run with
 * a message naming it. */
#include "cmd_tokenize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    const char *dir;
    bool special, decode, skip_special;
} Options;

static int usage(const char *msg) {
    if (msg) fprintf(stderr, "llfc tokenize: %s\n", msg);
    fprintf(stderr,
            "usage: llfc tokenize --tokenizer DIR [--special] < text.jsonl > ids.jsonl\n"
            "       llfc tokenize --tokenizer DIR --decode [--skip-special] < ids.jsonl\n"
            "  input lines: {\"text\": ...} or plain text; with --decode {\"ids\": [...]}\n");
    return 2;
}

static int parse_args(int argc, char **argv, Options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokenizer") && i + 1 < argc)
            o->dir = argv[++i];
        else if (!strncmp(a, "--tokenizer=", 12))
            o->dir = a + 12;
        else if (!strcmp(a, "--special"))
            o->special = true;
        else if (!strcmp(a, "--decode"))
            o->decode = true;
        else if (!strcmp(a, "--skip-special"))
            o->skip_special = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return usage(NULL) + 1; /* 3: asked for help */
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown argument '%s'", a);
            return usage(msg);
        }
    }
    if (!o->dir) return usage("--tokenizer DIR is required");
    return 0;
}

static void put_int(StrBuf *sb, int32_t v) {
    char buf[16], *p = buf + sizeof buf;
    uint32_t u = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
    do *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--p = '-';
    sb_append(sb, p, (size_t)(buf + sizeof buf - p));
}

// --- encode: {"text": ...} or a plain line -> {"ids": [...]}

static bool encode_line(const Tokenizer *tok, TokScratch *scratch, const Options *o,
                        const char *line, size_t len, long lineno, TokIds *ids, StrBuf *out,
                        char *err, size_t errlen) {
    char where[64];
    snprintf(where, sizeof where, "<stdin>:%ld", lineno);
    const char *text = line;
    size_t text_len = len;
    char perr[ERR_LEN];
    JsonDoc *doc = len && line[0] == '{' ? json_parse(line, len, "<stdin>", perr, sizeof perr)
                                         : NULL;
    const Json *root = json_root(doc);
    if (root && root->type == JSON_OBJECT) {
        const Json *t = json_get(root, "text");
        if (!json_as_str(t)) {
            json_free(doc);
            return errf(err, errlen, "%s: a JSON object line needs a string \"text\" "
                        "({\"text\": \"...\"}); other lines are taken as plain text", where);
        }
        text = t->str.s;
        text_len = t->str.len;
    }
    bool ok = tok_encode(tok, scratch, text, text_len, o->special, ids, perr, sizeof perr);
    json_free(doc);
    if (!ok) return errf(err, errlen, "%s: %s", where, perr);
    out->len = 0;
    sb_append(out, "{\"ids\": [", 9);
    for (size_t i = 0; i < ids->len; i++) {
        if (i) sb_append(out, ", ", 2);
        put_int(out, ids->ids[i]);
    }
    sb_append(out, "]}\n", 3);
    return true;
}

// --- decode: {"ids": [...]} or [...] -> {"text": ...}

static bool decode_line(const Tokenizer *tok, const Options *o, const char *line, size_t len,
                        long lineno, TokIds *ids, StrBuf *text, char *err, size_t errlen) {
    char where[64], perr[ERR_LEN];
    snprintf(where, sizeof where, "<stdin>:%ld", lineno);
    JsonDoc *doc = json_parse_at(line, len, "<stdin>", (int)lineno, perr, sizeof perr);
    if (!doc) return errf(err, errlen, "%s", perr);
    const Json *arr = json_root(doc);
    if (arr->type == JSON_OBJECT) arr = json_get(arr, "ids");
    bool ok = arr && arr->type == JSON_ARRAY;
    ids->len = 0;
    for (size_t i = 0; ok && i < arr->arr.n; i++) {
        int64_t v;
        ok = json_as_int(arr->arr.items[i], &v) && v >= INT32_MIN && v <= INT32_MAX;
        if (ok) {
            if (ids->len == ids->cap) {
                ids->cap = ids->cap ? ids->cap * 2 : 256;
                ids->ids = xrealloc(ids->ids, ids->cap * sizeof *ids->ids);
            }
            ids->ids[ids->len++] = (int32_t)v;
        }
    }
    json_free(doc);
    if (!ok) return errf(err, errlen, "%s: expected {\"ids\": [integers]}", where);
    if (!tok_decode(tok, ids->ids, ids->len, o->skip_special, text, perr, sizeof perr))
        return errf(err, errlen, "%s: %s", where, perr);
    return true;
}

int cmd_tokenize(int argc, char **argv) {
    Options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 3 ? 0 : rc;
    char err[ERR_LEN];
    Tokenizer *tok = tok_load(o.dir, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "llfc tokenize: %s\n", err);
        return 1;
    }
    TokScratch *scratch = tok_scratch_new();
    TokIds ids = {0};
    StrBuf out = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        bool ok;
        if (o.decode) {
            ok = decode_line(tok, &o, line, len, lineno, &ids, &out, err, sizeof err);
            if (ok) {
                fputs("{\"text\": ", stdout);
                json_write_string(stdout, out.data, out.len);
                fputs("}\n", stdout);
            }
        } else {
            ok = encode_line(tok, scratch, &o, line, len, lineno, &ids, &out, err, sizeof err);
            if (ok) fwrite(out.data, 1, out.len, stdout);
        }
        if (!ok) {
            fflush(stdout);
            fprintf(stderr, "llfc tokenize: %s\n", err);
            rc = 1;
            break;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "llfc tokenize: cannot write the output\n");
        rc = 1;
    }
    free(line);
    sb_free(&out);
    tok_ids_free(&ids);
    tok_scratch_free(scratch);
    tok_free(tok);
    return rc;
}
