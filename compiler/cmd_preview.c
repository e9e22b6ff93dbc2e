/* cmd_preview.c - `llfc preview` (see cmd_preview.h): recipe -> data -> encoder -> the first
 * rows, printed as LLaMA-Factory's print_data_example does or as JSON lines. */
#include "cmd_preview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "dataset.h"
#include "encode.h"
#include "recipe.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    const char *recipe;
    long n;
    bool json, eval;
    RecipeOverride *ov;
    size_t n_ov;
    char **ov_names; /* "argument K" */
} Args;

static int usage(const char *msg) {
    if (msg) fprintf(stderr, "llfc preview: %s\n", msg);
    fprintf(stderr, "usage: llfc preview RECIPE.yaml [-n N] [--json] [--eval] [key=value ...]\n"
                    "  the first N (default 1) encoded examples, as LLaMA-Factory prints them;\n"
                    "  --json: one {\"input_ids\": [...], \"labels\": [...]} per line; --eval: the eval split\n");
    return 2;
}

static int parse_args(int argc, char **argv, Args *a) {
    a->n = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-n") && i + 1 < argc) {
            char *end;
            a->n = strtol(argv[++i], &end, 10);
            if (*end || a->n < 1) return usage("-n takes a number >= 1");
        } else if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--eval")) a->eval = true;
        else if (!strcmp(s, "-h") || !strcmp(s, "--help")) return usage(NULL) + 1;
        else if (strchr(s, '=') && s[0] != '-') {
            a->ov = xrealloc(a->ov, (a->n_ov + 1) * sizeof *a->ov);
            a->ov_names = xrealloc(a->ov_names, (a->n_ov + 1) * sizeof *a->ov_names);
            a->ov_names[a->n_ov] = xprintf("argument %d", i + 1);
            a->ov[a->n_ov] = (RecipeOverride){s, a->ov_names[a->n_ov]};
            a->n_ov++;
        } else if (!a->recipe && s[0] != '-') a->recipe = s;
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown argument '%s'", s);
            return usage(msg);
        }
    }
    if (!a->recipe) return usage("no recipe given");
    return 0;
}

static void free_args(Args *a) {
    for (size_t i = 0; i < a->n_ov; i++) free(a->ov_names[i]);
    free(a->ov_names);
    free(a->ov);
}

// --- Lua sources: the engine from the bundle, the template built in or the user's file

static bool bundled(const char *name, LuaSource *out, char *err, size_t errlen) {
    const BundleFile *f = bundle_find(name);
    if (!f) return errf(err, errlen, "lua/%s is not in this llfc (a broken build?)", name);
    out->name = xprintf("lua/%s", name);
    out->origin = xprintf("lua/%s (built in)", name);
    out->text = xstrndup(f->data, f->size);
    out->len = f->size;
    return true;
}

static bool template_source(const Recipe *r, LuaSource *out, char *err, size_t errlen) {
    const char *t = R_NULL(r, template) ? "empty" : R_STR(r, template);
    if (strchr(t, '/') || (strlen(t) > 4 && !strcmp(t + strlen(t) - 4, ".lua"))) {
        size_t len;
        char *text = util_read_file(t, &len, err, errlen);
        if (!text) return false;
        *out = (LuaSource){xstrdup("lua/template.lua"), xstrdup(t), text, len};
        return true;
    }
    char *name = xprintf("templates/%s.lua", t);
    bool ok = bundled(name, out, err, errlen);
    free(name);
    if (!ok) errf(err, errlen, "template: unknown template '%s' (llfc templates lists them)", t);
    return ok;
}

static void source_free(LuaSource *s) {
    free(s->name);
    free(s->origin);
    free(s->text);
}

// --- printing, as LLaMA-Factory's print_data_example

/* Python's str(list): "[1, 2, 3]" */
static void py_list(StrBuf *b, const int32_t *v, uint64_t n) {
    sb_puts(b, "[");
    for (uint64_t i = 0; i < n; i++) sb_printf(b, i ? ", %d" : "%d", v[i]);
    sb_puts(b, "]");
}

static void json_list(StrBuf *b, const char *key, const int32_t *v, uint64_t n, bool first) {
    sb_printf(b, "%s\"%s\": [", first ? "" : ", ", key);
    for (uint64_t i = 0; i < n; i++) sb_printf(b, i ? ",%d" : "%d", v[i]);
    sb_puts(b, "]");
}

static bool decode(const Tokenizer *tok, const int32_t *ids, uint64_t n, bool learned_only, StrBuf *out, char *err,
                   size_t errlen) {
    int32_t *keep = xmalloc((n + 1) * sizeof *keep);
    uint64_t k = 0;
    for (uint64_t i = 0; i < n; i++)
        if (!learned_only || ids[i] != ENC_IGNORE) keep[k++] = ids[i];
    StrBuf text = {0}; /* tok_decode replaces what its buffer holds */
    bool ok = tok_decode(tok, keep, (size_t)k, false, &text, err, errlen);
    if (ok) sb_append(out, text.data ? text.data : "", text.len);
    sb_free(&text);
    free(keep);
    return ok;
}

/* One sequence as LF prints it: PREFIXinput_ids, PREFIXinputs, and with labels
 * PREFIXlabel_ids, PREFIXlabels. */
static bool print_seq(const Tokenizer *tok, const char *prefix, const int32_t *ids, const int32_t *labels, uint64_t n,
                      StrBuf *b, char *err, size_t errlen) {
    sb_printf(b, "%sinput_ids:\n", prefix);
    py_list(b, ids, n);
    sb_printf(b, "\n%sinputs:\n", prefix);
    if (!decode(tok, ids, n, false, b, err, errlen)) return false;
    sb_puts(b, "\n");
    if (!labels) return true;
    sb_printf(b, "%slabel_ids:\n", prefix);
    py_list(b, labels, n);
    sb_printf(b, "\n%slabels:\n", prefix);
    if (!decode(tok, labels, n, true, b, err, errlen)) return false;
    sb_puts(b, "\n");
    return true;
}

static bool print_row(const EncodedSet *s, uint64_t r, const Tokenizer *tok, bool json, StrBuf *b, char *err,
                      size_t errlen) {
    uint64_t a = enc_part_start(s, r, 0), n = enc_part_len(s, r, 0);
    if (json) {
        bool pair = s->kind == ENC_ROWS_PAIRWISE;
        sb_puts(b, "{");
        json_list(b, pair ? "chosen_input_ids" : "input_ids", s->ids + a, n, true);
        json_list(b, pair ? "chosen_labels" : "labels", s->labels + a, n, false);
        if (s->n_parts == 2) {
            uint64_t a2 = enc_part_start(s, r, 1), n2 = enc_part_len(s, r, 1);
            json_list(b, pair ? "rejected_input_ids" : "kl_input_ids", s->ids + a2, n2, false);
            json_list(b, pair ? "rejected_labels" : "kl_labels", s->labels + a2, n2, false);
        }
        if (s->kind == ENC_ROWS_KTO) sb_printf(b, ", \"kto_tag\": %s", s->kto_tag[r] ? "true" : "false");
        if (s->kind == ENC_ROWS_PACKED) {
            int32_t *tmp = xmalloc((n + 1) * sizeof *tmp);
            enc_row_attention_mask(s, r, tmp);
            json_list(b, "attention_mask", tmp, n, false);
            enc_row_position_ids(s, r, tmp);
            json_list(b, "position_ids", tmp, n, false);
            free(tmp);
        }
        sb_puts(b, "}\n");
        return true;
    }
    sb_puts(b, "training example:\n");
    if (s->kind == ENC_ROWS_PAIRWISE) {
        uint64_t a2 = enc_part_start(s, r, 1), n2 = enc_part_len(s, r, 1);
        return print_seq(tok, "chosen_", s->ids + a, s->labels + a, n, b, err, errlen) &&
               print_seq(tok, "rejected_", s->ids + a2, s->labels + a2, n2, b, err, errlen);
    }
    return print_seq(tok, "", s->ids + a, s->kind == ENC_ROWS_PT ? NULL : s->labels + a, n, b, err, errlen);
}

// --- the command

/* Encode enough leading batches for n rows: batches are independent, so the first rows of a
 * prefix are the first rows of the whole set. */
static bool encode_prefix(Encoder *e, const DataExample *ex, size_t n_ex, long want, EncodedSet *s, char *err,
                          size_t errlen) {
    size_t take = ENC_BATCH;
    for (;;) {
        if (take > n_ex) take = n_ex;
        if (!enc_run(e, ex, take, s, err, errlen)) return false;
        if ((long)s->n_rows >= want || take == n_ex) return true;
        enc_set_free(s);
        take *= 2;
    }
}

int cmd_preview(int argc, char **argv) {
    Args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free_args(&a);
        return rc == 3 ? 0 : rc;
    }
    char err[ERR_LEN] = "";
    Diags d = {0};
    Recipe *r = recipe_load(a.recipe, a.ov, a.n_ov, RECIPE_FOR_CHECK, &d);
    if (d.text.len) fputs(d.text.data, stderr);
    diags_free(&d);
    if (!r) {
        free_args(&a);
        return 1;
    }
    rc = 1;
    Tokenizer *tok = NULL;
    DataSet *ds = NULL;
    Encoder *e = NULL;
    DataOptions dopt;
    bool have_dopt = false;
    LuaSource lib[3] = {0}, tpl = {0};
    EncodedSet set = {0};
    StrBuf notes = {0}, out = {0};

    const char *model = R_STR(r, model_name_or_path);
    tok = tok_load(model, err, sizeof err);
    if (!tok) goto done;
    if (!bundled("llfc/json.lua", &lib[0], err, sizeof err) || !bundled("llfc/tools.lua", &lib[1], err, sizeof err) ||
        !bundled("llfc/template.lua", &lib[2], err, sizeof err) || !template_source(r, &tpl, err, sizeof err))
        goto done;
    EncodeOptions eo;
    enc_options_from_recipe(r, &eo);
    e = enc_new(&eo, tok, model, lib, 3, &tpl, &notes, err, sizeof err);
    if (!e) goto done;
    if (notes.len) fputs(notes.data, stderr);

    if (!data_options_from_recipe(r, &dopt, err, sizeof err)) goto done;
    have_dopt = true;
    ds = data_load(&dopt, err, sizeof err);
    if (!ds) goto done;
    size_t n_ex;
    const DataExample *ex = a.eval ? data_eval(ds, &n_ex) : data_train(ds, &n_ex);
    if (n_ex == 0) {
        errf(err, sizeof err, "%s: the %s split has no examples", a.recipe, a.eval ? "eval" : "train");
        goto done;
    }
    if (!encode_prefix(e, ex, n_ex, a.n, &set, err, sizeof err)) goto done;
    for (uint64_t row = 0; row < set.n_rows && (long)row < a.n; row++)
        if (!print_row(&set, row, tok, a.json, &out, err, sizeof err)) goto done;
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    StrBuf sum = {0};
    enc_stats_summary(&set, &sum);
    fprintf(stderr, "llfc preview: %s (of the first %llu examples)\n", sum.data, (unsigned long long)set.stats.n_examples);
    sb_free(&sum);
    if (set.n_rows == 0) fprintf(stderr, "llfc preview: no rows: every example was dropped (see above)\n");
    rc = set.n_rows ? 0 : 1;
done:
    if (rc && !set.n_rows && err[0]) fprintf(stderr, "llfc preview: %s\n", err);
    enc_set_free(&set);
    enc_free(e);
    data_free(ds);
    if (have_dopt) data_options_free(&dopt);
    for (int i = 0; i < 3; i++) source_free(&lib[i]);
    source_free(&tpl);
    tok_free(tok);
    sb_free(&notes);
    sb_free(&out);
    recipe_free(r);
    free_args(&a);
    return rc;
}
