/* data_read.c - data files into records, as Hugging Face `datasets` reads them for
 * LLaMA-Factory: JSON (an array of objects, or JSON Lines in a .json or .jsonl file), CSV and
 * TSV (a header row, then rows; RFC 4180 quotes), TXT (each line a record {"text": line}).
 * Every problem names FILE:LINE and the record index. */
#include "data_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- arena

struct ArenaBlock {
    ArenaBlock *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    ArenaBlock *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = xmalloc(sizeof *b + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void arena_free(Arena *a) {
    for (ArenaBlock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

Json *jv_new(Arena *a, JsonType t) {
    Json *v = arena_alloc(a, sizeof *v);
    v->type = t;
    v->line = v->col = 1;
    return v;
}

Json *jv_str(Arena *a, const char *s, size_t n) {
    Json *v = jv_new(a, JSON_STRING);
    v->str.s = arena_strndup(a, s, n);
    v->str.len = n;
    return v;
}

// --- UTF-8

size_t data_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

// --- problems

void data_file_bad(DataFile *f, DataBadKind kind, int line, size_t index, const char *fmt, ...) {
    if (f->n_bad == f->cap_bad) {
        f->cap_bad = f->cap_bad ? 2 * f->cap_bad : 8;
        f->bad = xrealloc(f->bad, f->cap_bad * sizeof *f->bad);
    }
    StrBuf sb = {0};
    sb_printf(&sb, "%s:%d: record %zu: ", f->path, line, index);
    va_list ap;
    va_start(ap, fmt);
    char *tail = NULL;
    if (vasprintf(&tail, fmt, ap) < 0) util_fatal("vasprintf: out of memory");
    va_end(ap);
    sb_puts(&sb, tail);
    free(tail);
    f->bad[f->n_bad++] = (BadRecord){kind, line, index, sb.data};
}

static void add_record(DataFile *f, const Json *v, int line, size_t index) {
    if (f->n_recs == f->cap_recs) {
        f->cap_recs = f->cap_recs ? 2 * f->cap_recs : 256;
        f->recs = xrealloc(f->recs, f->cap_recs * sizeof *f->recs);
    }
    f->recs[f->n_recs++] = (RawRecord){v, line, index};
}

static void add_doc(DataFile *f, JsonDoc *doc) {
    if (f->n_docs == f->cap_docs) {
        f->cap_docs = f->cap_docs ? 2 * f->cap_docs : 16;
        f->docs = xrealloc(f->docs, f->cap_docs * sizeof *f->docs);
    }
    f->docs[f->n_docs++] = doc;
}

/* json.c's "NAME:LINE:COL: what" -> the "what" part */
static const char *json_reason(const char *err, const char *name) {
    const char *p = err;
    if (strncmp(p, name, strlen(name)) == 0) p += strlen(name);
    for (int colons = 0; *p && colons < 3; p++)
        if (*p == ':') colons++;
    while (*p == ' ') p++;
    return *p ? p : err;
}

static DataBadKind json_kind(const char *reason) {
    return strstr(reason, "UTF-8") ? DATA_BAD_TEXT : DATA_BAD_JSON;
}

// --- JSON: an array of records, or JSON Lines

/* Is the whole file one JSON object (a pretty-printed record, or a dict of columns)? */
static bool one_object(const DataFile *f) {
    char err[ERR_LEN];
    JsonDoc *doc = json_parse(f->text, f->len, f->path, err, sizeof err);
    bool yes = doc && json_root(doc)->type == JSON_OBJECT;
    json_free(doc);
    return yes;
}

/* `datasets` tries JSON Lines first (pyarrow) and falls back to one JSON document (pandas);
 * a file that starts with '[' can only be the latter, anything else only the former. */
static void read_json(DataFile *f, bool skip_bad) {
    const char *p = f->text, *end = f->text + f->len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p < end && *p == '[') {
        char err[ERR_LEN];
        JsonDoc *doc = json_parse(f->text, f->len, f->path, err, sizeof err);
        if (!doc) {
            f->fatal = xprintf("%s (the file is one JSON array of records; fix it or write it as "
                               "JSON Lines, one record per line, to skip bad records)", err);
            return;
        }
        add_doc(f, doc);
        const Json *root = json_root(doc);
        for (size_t i = 0; i < root->arr.n; i++) {
            const Json *v = root->arr.items[i];
            if (v->type != JSON_OBJECT) {
                data_file_bad(f, DATA_BAD_JSON, v->line, i, "expected a record (a JSON object), found %s",
                              json_type_name(v->type));
                if (!skip_bad) return;
                continue;
            }
            add_record(f, v, v->line, i);
        }
        return;
    }
    int line = 1;
    for (const char *s = f->text; s < end; line++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        size_t n = (size_t)(e - s);
        const char *t = s;
        while (t < e && (*t == ' ' || *t == '\t' || *t == '\r')) t++;
        if (t < e) {
            char err[ERR_LEN];
            JsonDoc *doc = json_parse_at(s, n, f->path, line, err, sizeof err);
            if (!doc && line == 1 && f->n_bad == 0 && one_object(f)) {
                f->fatal = xprintf("%s:1: the file is one JSON object; a data file is an array of records "
                                   "[{...}, {...}] or JSON Lines (one record per line)", f->path);
                return;
            }
            if (!doc) {
                const char *why = json_reason(err, f->path);
                data_file_bad(f, json_kind(why), line, (size_t)(line - 1), "invalid JSON Lines record: %s", why);
                if (!skip_bad) return;
            } else {
                add_doc(f, doc);
                const Json *v = json_root(doc);
                if (v->type != JSON_OBJECT) {
                    data_file_bad(f, DATA_BAD_JSON, line, (size_t)(line - 1),
                                  "expected a record (a JSON object), found %s", json_type_name(v->type));
                    if (!skip_bad) return;
                } else {
                    add_record(f, v, line, (size_t)(line - 1));
                }
            }
        }
        s = nl ? nl + 1 : end;
    }
}

// --- CSV / TSV (pandas.read_csv defaults, as `datasets` uses them)

/* pandas' default na_values: these cells read as null */
static bool is_na(const char *s, size_t n) {
    static const char *const NA[] = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                                     "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None",
                                     "n/a", "nan", "null"};
    for (size_t i = 0; i < sizeof NA / sizeof NA[0]; i++)
        if (strlen(NA[i]) == n && memcmp(NA[i], s, n) == 0) return true;
    return false;
}

typedef struct {
    StrBuf *cells; /* one per field of the row */
    size_t n, cap;
} Row;

/* Parse one row at *pp; returns false at a problem (msg set). Counts lines it crosses. */
static bool csv_row(const char **pp, const char *end, char sep, Row *row, int *line, const char **msg) {
    const char *p = *pp;
    row->n = 0;
    for (;;) {
        if (row->n == row->cap) {
            row->cap = row->cap ? 2 * row->cap : 16;
            row->cells = xrealloc(row->cells, row->cap * sizeof *row->cells);
            for (size_t i = row->n; i < row->cap; i++) row->cells[i] = (StrBuf){0};
        }
        StrBuf *c = &row->cells[row->n++];
        c->len = 0;
        sb_append(c, "", 0);
        if (p < end && *p == '"') {
            p++;
            for (;;) {
                if (p >= end) {
                    *msg = "unterminated quoted field (a '\"' opened here is never closed)";
                    return false;
                }
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        sb_append(c, "\"", 1);
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n') (*line)++;
                sb_append(c, p, 1);
                p++;
            }
        }
        /* unquoted part (or text after a closing quote, which pandas keeps) */
        const char *s = p;
        while (p < end && *p != sep && *p != '\n' && *p != '\r') p++;
        sb_append(c, s, (size_t)(p - s));
        if (p < end && *p == sep) {
            p++;
            continue;
        }
        if (p < end && *p == '\r') p++;
        if (p < end && *p == '\n') p++;
        (*line)++;
        *pp = p;
        return true;
    }
}

static bool cell_text_ok(const StrBuf *c) {
    return data_utf8_check(c->data, c->len) == c->len && strlen(c->data) == c->len;
}

static void read_csv(DataFile *f, char sep, bool skip_bad) {
    const char *p = f->text, *end = f->text + f->len;
    Row head = {0}, row = {0};
    int line = 1;
    const char *msg = NULL;
    while (p < end && (*p == '\n' || *p == '\r')) {
        if (*p == '\n') line++;
        p++;
    }
    if (p >= end) {
        f->fatal = xprintf("%s: empty file; a CSV needs a header row naming the columns", f->path);
        return;
    }
    if (!csv_row(&p, end, sep, &head, &line, &msg)) {
        f->fatal = xprintf("%s:1: header row: %s", f->path, msg);
        goto done;
    }
    for (size_t i = 0; i < head.n; i++) {
        if (!cell_text_ok(&head.cells[i])) {
            f->fatal = xprintf("%s:1: header row: column %zu is not valid UTF-8 text", f->path, i + 1);
            goto done;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(head.cells[k].data, head.cells[i].data) == 0) {
                f->fatal = xprintf("%s:1: header row: column name '%s' appears twice", f->path,
                                   head.cells[i].data);
                goto done;
            }
    }
    size_t index = 0;
    while (p < end) {
        if (*p == '\n' || *p == '\r') { /* blank lines are skipped, as pandas does */
            if (*p == '\n') line++;
            p++;
            continue;
        }
        int start = line;
        if (!csv_row(&p, end, sep, &row, &line, &msg)) {
            data_file_bad(f, DATA_BAD_CSV, start, index, "%s", msg);
            break; /* nothing after an unterminated quote can be read */
        }
        size_t idx = index++;
        if (row.n > head.n) {
            data_file_bad(f, DATA_BAD_CSV, start, idx, "expected %zu fields (the header's), found %zu",
                          head.n, row.n);
            if (!skip_bad) goto done;
            continue;
        }
        Json *obj = jv_new(&f->arena, JSON_OBJECT);
        obj->line = start;
        obj->obj.n = head.n;
        obj->obj.keys = arena_alloc(&f->arena, head.n * sizeof *obj->obj.keys);
        obj->obj.key_lens = arena_alloc(&f->arena, head.n * sizeof *obj->obj.key_lens);
        obj->obj.vals = arena_alloc(&f->arena, head.n * sizeof *obj->obj.vals);
        bool ok = true;
        for (size_t i = 0; i < head.n; i++) {
            obj->obj.keys[i] = head.cells[i].data;
            obj->obj.key_lens[i] = head.cells[i].len;
            if (i < row.n && !cell_text_ok(&row.cells[i])) {
                data_file_bad(f, DATA_BAD_TEXT, start, idx, "column '%s': %s", head.cells[i].data,
                              strlen(row.cells[i].data) != row.cells[i].len ? "contains a NUL byte"
                                                                             : "invalid UTF-8");
                ok = false;
                break;
            }
            if (i >= row.n || is_na(row.cells[i].data, row.cells[i].len)) {
                obj->obj.vals[i] = jv_new(&f->arena, JSON_NULL);
            } else {
                obj->obj.vals[i] = jv_str(&f->arena, row.cells[i].data, row.cells[i].len);
            }
            obj->obj.vals[i]->line = start;
        }
        if (!ok) {
            if (!skip_bad) goto done;
            continue;
        }
        add_record(f, obj, start, idx);
    }
done:
    /* the header names live as long as the file: copy them into the arena */
    for (size_t r = 0; r < f->n_recs; r++) {
        Json *o = (Json *)f->recs[r].v;
        if (r == 0) {
            for (size_t i = 0; i < o->obj.n; i++)
                o->obj.keys[i] = arena_strndup(&f->arena, o->obj.keys[i], o->obj.key_lens[i]);
        } else {
            o->obj.keys = f->recs[0].v->obj.keys;
        }
    }
    for (size_t i = 0; i < head.cap; i++) sb_free(&head.cells[i]);
    for (size_t i = 0; i < row.cap; i++) sb_free(&row.cells[i]);
    free(head.cells);
    free(row.cells);
}

// --- TXT: one record {"text": line} per line (empty lines too), as `datasets`' text builder

static void read_text(DataFile *f, bool skip_bad) {
    const char *s = f->text, *end = f->text + f->len;
    int line = 1;
    static const char TEXT[] = "text";
    while (s < end) {
        const char *e = s;
        while (e < end && *e != '\n' && *e != '\r') e++;
        size_t n = (size_t)(e - s);
        size_t idx = (size_t)(line - 1);
        size_t bad = data_utf8_check(s, n);
        if (bad < n || memchr(s, 0, n)) {
            data_file_bad(f, DATA_BAD_TEXT, line, idx, "%s",
                          bad < n ? "invalid UTF-8" : "contains a NUL byte");
            if (!skip_bad) return;
        } else {
            Json *obj = jv_new(&f->arena, JSON_OBJECT);
            obj->line = line;
            obj->obj.n = 1;
            obj->obj.keys = arena_alloc(&f->arena, sizeof *obj->obj.keys);
            obj->obj.key_lens = arena_alloc(&f->arena, sizeof *obj->obj.key_lens);
            obj->obj.vals = arena_alloc(&f->arena, sizeof *obj->obj.vals);
            obj->obj.keys[0] = TEXT;
            obj->obj.key_lens[0] = 4;
            obj->obj.vals[0] = jv_str(&f->arena, s, n);
            obj->obj.vals[0]->line = line;
            add_record(f, obj, line, idx);
        }
        if (e < end && *e == '\r') {
            e++;
            if (e < end && *e == '\n') e++;
        } else if (e < end) {
            e++;
        }
        s = e;
        line++;
    }
}

// --- driver

void data_read_file(DataFile *f, DataFileType type, bool skip_bad) {
    char err[ERR_LEN];
    f->text = util_read_file(f->path, &f->len, err, sizeof err);
    if (!f->text) {
        f->fatal = xstrdup(err);
        return;
    }
    size_t skip = f->len >= 3 && memcmp(f->text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* UTF-8 BOM */
    if (skip) memset(f->text, ' ', 3);
    switch (type) {
    case DATA_FMT_JSON: read_json(f, skip_bad); break;
    case DATA_FMT_CSV: read_csv(f, ',', skip_bad); break;
    case DATA_FMT_TSV: read_csv(f, '\t', skip_bad); break;
    case DATA_FMT_TEXT: read_text(f, skip_bad); break;
    }
}

void data_file_free(DataFile *f) {
    for (size_t i = 0; i < f->n_docs; i++) json_free(f->docs[i]);
    free(f->docs);
    for (size_t i = 0; i < f->n_bad; i++) free(f->bad[i].msg);
    free(f->bad);
    free(f->recs);
    arena_free(&f->arena);
    free(f->text);
    free(f->path);
    free(f->fatal);
    memset(f, 0, sizeof *f);
}

// --- Python's json.dumps(v, ensure_ascii=False)

static void dump_float(StrBuf *out, double d) {
    char buf[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* shortest round trip, as repr() */
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf = "[-]D.DDDe[+-]XX": digits and decimal exponent */
    char digits[32];
    size_t nd = 0;
    const char *p = buf;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) sb_puts(out, "-");
    if (exp >= -5 + 1 && exp < 16) { /* Python: fixed when -4 <= exp < 16 */
        if (exp < 0) {
            sb_puts(out, "0.");
            for (int i = 0; i < -exp - 1; i++) sb_puts(out, "0");
            sb_append(out, digits, nd);
        } else {
            for (int i = 0; i <= exp; i++) sb_append(out, i < (int)nd ? &digits[i] : "0", 1);
            sb_puts(out, ".");
            if ((int)nd > exp + 1) sb_append(out, digits + exp + 1, nd - (size_t)exp - 1);
            else sb_puts(out, "0");
        }
    } else {
        sb_append(out, digits, 1);
        if (nd > 1) {
            sb_puts(out, ".");
            sb_append(out, digits + 1, nd - 1);
        }
        sb_printf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void dump_string(StrBuf *out, const char *s, size_t n) {
    sb_puts(out, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_puts(out, "\\\""); break;
        case '\\': sb_puts(out, "\\\\"); break;
        case '\n': sb_puts(out, "\\n"); break;
        case '\r': sb_puts(out, "\\r"); break;
        case '\t': sb_puts(out, "\\t"); break;
        case '\b': sb_puts(out, "\\b"); break;
        case '\f': sb_puts(out, "\\f"); break;
        default:
            if (c < 0x20) sb_printf(out, "\\u%04x", c);
            else sb_append(out, s + i, 1);
        }
    }
    sb_puts(out, "\"");
}

void data_json_dumps(StrBuf *out, const Json *v) {
    switch (v->type) {
    case JSON_NULL: sb_puts(out, "null"); break;
    case JSON_BOOL: sb_puts(out, v->boolean ? "true" : "false"); break;
    case JSON_NUMBER:
        if (v->num.is_int) sb_printf(out, "%lld", (long long)v->num.i);
        else dump_float(out, v->num.f);
        break;
    case JSON_STRING: dump_string(out, v->str.s, v->str.len); break;
    case JSON_ARRAY:
        sb_puts(out, "[");
        for (size_t i = 0; i < v->arr.n; i++) {
            if (i) sb_puts(out, ", ");
            data_json_dumps(out, v->arr.items[i]);
        }
        sb_puts(out, "]");
        break;
    case JSON_OBJECT:
        sb_puts(out, "{");
        for (size_t i = 0; i < v->obj.n; i++) {
            if (i) sb_puts(out, ", ");
            dump_string(out, v->obj.keys[i], v->obj.key_lens[i]);
            sb_puts(out, ": ");
            data_json_dumps(out, v->obj.vals[i]);
        }
        sb_puts(out, "}");
        break;
    }
}
