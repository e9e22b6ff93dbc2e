/* test_encode.c - the encoder (runtime/encode.h) against LLaMA-Factory 0.9.5's own output.
 *
 * tests/parity/gen_encode_fixtures.py ran LF's loader and processors on the demo datasets of
 * ../shared/data/llamafactory with the tokenizers of ../shared/tokenizers and wrote, per case,
 * a short hash of every encoded row (tests/fixtures/encode/cases/) and, per dataset, of every
 * aligned example (tests/fixtures/encode/aligned/). Here the same raw files become DataExamples
 * (a small converter for the demo formats, checked against LF's aligned hashes first), the
 * encoder runs, and every row is compared: "N/N rows identical". The first rows are kept
 * verbatim in the fixtures, so a mismatch shows where the ids differ.
 * Run from the repository root (Lua sources and fixtures are read from disk).
 */
#include "testutil.h"

#include <dirent.h>

#include "encode.h"
#include "json.h"
#include "sha256.h"
#include "util.h"

// ---------------------------------------------------------------------------------------
// examples: owned storage

typedef struct {
    DataExample *ex;
    size_t n, cap;
    char *source;
} ExList;

static DataExample *ex_add(ExList *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->ex = xrealloc(l->ex, l->cap * sizeof *l->ex);
    }
    DataExample *e = &l->ex[l->n++];
    memset(e, 0, sizeof *e);
    e->kto_tag = -1;
    e->source = l->source;
    e->record = l->n - 1;
    return e;
}

static void msg_add(DataMessage **arr, size_t *n, DataRole role, const char *content) {
    *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
    (*arr)[*n].role = role;
    (*arr)[*n].content = xstrdup(content);
    (*n)++;
}

static void ex_list_free(ExList *l) {
    for (size_t i = 0; i < l->n; i++) {
        DataExample *e = &l->ex[i];
        for (size_t k = 0; k < e->n_prompt; k++) free(e->prompt[k].content);
        for (size_t k = 0; k < e->n_response; k++) free(e->response[k].content);
        free(e->prompt);
        free(e->response);
        free(e->system);
        free(e->tools);
    }
    free(l->ex);
    free(l->source);
    memset(l, 0, sizeof *l);
}

// ---------------------------------------------------------------------------------------
// LF's converters (data/converter.py) for the demo datasets' formats

static const char *str_of(const Json *v) { return v && v->type == JSON_STRING ? v->str.s : NULL; }

/* alpaca: instruction/input/output (or a prompt column only: pre-training text) */
static void conv_alpaca(ExList *l, const Json *rec, const char *prompt_col, bool has_query) {
    DataExample *e = ex_add(l);
    StrBuf q = {0};
    const char *p = str_of(json_get(rec, prompt_col));
    const char *in = has_query ? str_of(json_get(rec, "input")) : NULL;
    if (p && *p) sb_puts(&q, p);
    if (in && *in) {
        if (p && *p) sb_puts(&q, "\n");
        sb_puts(&q, in);
    }
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, q.data ? q.data : "");
    sb_free(&q);
    const char *out = has_query ? str_of(json_get(rec, "output")) : NULL;
    if (out) msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, out);
}

static int role_of(const char *tag, bool *ok) {
    *ok = true;
    if (!strcmp(tag, "human") || !strcmp(tag, "user")) return DATA_ROLE_USER;
    if (!strcmp(tag, "gpt") || !strcmp(tag, "assistant")) return DATA_ROLE_ASSISTANT;
    if (!strcmp(tag, "function_call")) return DATA_ROLE_FUNCTION;
    if (!strcmp(tag, "observation")) return DATA_ROLE_OBSERVATION;
    *ok = false;
    return 0;
}

/* sharegpt (+ ranking, + kto_tag); role/content keys as the dataset names them */
static void conv_sharegpt(ExList *l, const Json *rec, const char *msgs_col, const char *rk, const char *ck,
                          const char *tools_col, bool ranking, bool kto) {
    DataExample *e = ex_add(l);
    const Json *msgs = json_get(rec, msgs_col);
    size_t i0 = 0, n = msgs ? msgs->arr.n : 0;
    if (n && !strcmp(str_of(json_get(json_at(msgs, 0), rk)), "system")) {
        e->system = xstrdup(str_of(json_get(json_at(msgs, 0), ck)));
        i0 = 1;
    }
    DataMessage *all = NULL;
    size_t na = 0;
    bool broken = false;
    for (size_t i = i0; i < n; i++) {
        bool ok;
        int role = role_of(str_of(json_get(json_at(msgs, i), rk)), &ok);
        bool odd = ((i - i0) % 2) == 0;
        if (!ok || (odd != (role == DATA_ROLE_USER || role == DATA_ROLE_OBSERVATION))) {
            broken = true;
            break;
        }
        msg_add(&all, &na, (DataRole)role, str_of(json_get(json_at(msgs, i), ck)));
    }
    if ((!ranking && na % 2 != 0) || (ranking && na % 2 == 0)) broken = true;
    const char *tools = tools_col ? str_of(json_get(rec, tools_col)) : NULL;
    if (tools) e->tools = xstrdup(tools);
    if (broken) {
        for (size_t i = 0; i < na; i++) free(all[i].content);
        free(all);
        return;
    }
    if (kto) {
        bool tag = json_get(rec, "label")->boolean;
        e->kto_tag = tag;
        e->prompt = all, e->n_prompt = na - 1;
        if (!tag) msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "");
        msg_add(&e->response, &e->n_response, all[na - 1].role, all[na - 1].content);
        if (tag) msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "");
        free(all[na - 1].content);
    } else if (ranking) {
        e->prompt = all, e->n_prompt = na;
        const char *which[] = {"chosen", "rejected"};
        for (int k = 0; k < 2; k++) {
            const Json *m = json_get(rec, which[k]);
            bool ok;
            int role = role_of(str_of(json_get(m, rk)), &ok);
            msg_add(&e->response, &e->n_response, (DataRole)role, str_of(json_get(m, ck)));
        }
    } else {
        e->prompt = all, e->n_prompt = na - 1;
        msg_add(&e->response, &e->n_response, all[na - 1].role, all[na - 1].content);
        free(all[na - 1].content);
    }
}

/* The demo dataset NAME as LF aligns it; false (test skipped) without ../shared. */
static bool load_dataset(const char *name, ExList *l) {
    memset(l, 0, sizeof *l);
    static const struct { const char *name, *file; } files[] = {
        {"alpaca_en_demo", "alpaca_en_demo.json"}, {"identity", "identity.json"},
        {"glaive_toolcall_en_demo", "glaive_toolcall_en_demo.json"}, {"dpo_en_demo", "dpo_en_demo.json"},
        {"kto_en_demo", "kto_en_demo.json"}, {"c4_demo", "c4_demo.jsonl"},
    };
    const char *file = NULL;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (!strcmp(files[i].name, name)) file = files[i].file;
    if (!file) fail_msg("no converter for dataset %s", name);
    char *rel = xprintf("data/llamafactory/%s", file);
    char *path = test_shared_path(rel);
    free(rel);
    if (!path) return false;
    l->source = path;
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    if (!strcmp(name, "c4_demo")) { /* JSONL, column text: pre-training */
        int line = 0;
        for (char *p = text, *end = text + len; p < end;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            line++;
            if (n) {
                JsonDoc *doc = json_parse_at(p, n, path, line, err, sizeof err);
                if (!doc) fail_msg("%s", err);
                conv_alpaca(l, json_root(doc), "text", false);
                l->ex[l->n - 1].line = line;
                json_free(doc);
            }
            p += n + 1;
        }
    } else {
        JsonDoc *doc = json_parse(text, len, path, err, sizeof err);
        if (!doc) fail_msg("%s", err);
        const Json *root = json_root(doc);
        for (size_t i = 0; i < root->arr.n; i++) {
            const Json *rec = root->arr.items[i];
            if (!strcmp(name, "glaive_toolcall_en_demo"))
                conv_sharegpt(l, rec, "conversations", "from", "value", "tools", false, false);
            else if (!strcmp(name, "dpo_en_demo"))
                conv_sharegpt(l, rec, "conversations", "from", "value", NULL, true, false);
            else if (!strcmp(name, "kto_en_demo"))
                conv_sharegpt(l, rec, "messages", "role", "content", NULL, false, true);
            else conv_alpaca(l, rec, "instruction", true);
            l->ex[l->n - 1].line = rec->line;
        }
        json_free(doc);
    }
    free(text);
    return true;
}

// ---------------------------------------------------------------------------------------
// hashes (the serializations of gen_encode_fixtures.py)

static void ser_str(StrBuf *b, const char *s) {
    s = s ? s : "";
    sb_printf(b, "%zu:", strlen(s));
    sb_puts(b, s);
}

static const char *role_str(DataRole r) {
    static const char *names[] = {"user", "assistant", "function", "observation"};
    return names[r];
}

static void h16(const char *data, size_t len, char out[17]) {
    uint8_t d[32];
    char hex[65];
    sha256(data, len, d);
    sha256_hex(d, hex);
    memcpy(out, hex, 16);
    out[16] = 0;
}

static void aligned_hash(const DataExample *e, char out[17]) {
    StrBuf b = {0};
    sb_printf(&b, "p%zu;", e->n_prompt);
    for (size_t i = 0; i < e->n_prompt; i++) sb_printf(&b, "%s:", role_str(e->prompt[i].role)), ser_str(&b, e->prompt[i].content);
    sb_printf(&b, "r%zu;", e->n_response);
    for (size_t i = 0; i < e->n_response; i++)
        sb_printf(&b, "%s:", role_str(e->response[i].role)), ser_str(&b, e->response[i].content);
    sb_puts(&b, "s"), ser_str(&b, e->system), sb_puts(&b, "t"), ser_str(&b, e->tools);
    h16(b.data, b.len, out);
    sb_free(&b);
}

static void put_list(StrBuf *b, const int32_t *v, uint64_t n, bool first) {
    if (!first) sb_puts(b, ";");
    for (uint64_t i = 0; i < n; i++) sb_printf(b, i ? ",%d" : "%d", v[i]);
}

/* a row as "ids;labels[;...]" in ROW_FIELDS order */
static void row_text(const EncodedSet *s, uint64_t r, StrBuf *b) {
    uint64_t a = enc_part_start(s, r, 0), n = enc_part_len(s, r, 0);
    put_list(b, s->ids + a, n, true);
    if (s->kind == ENC_ROWS_PT) return;
    put_list(b, s->labels + a, n, false);
    if (s->kind == ENC_ROWS_PACKED) {
        int32_t *tmp = xmalloc((n + 1) * sizeof *tmp);
        enc_row_attention_mask(s, r, tmp);
        put_list(b, tmp, n, false);
        enc_row_position_ids(s, r, tmp);
        put_list(b, tmp, n, false);
        free(tmp);
    }
    if (s->n_parts == 2) {
        uint64_t a2 = enc_part_start(s, r, 1), n2 = enc_part_len(s, r, 1);
        put_list(b, s->ids + a2, n2, false);
        put_list(b, s->labels + a2, n2, false);
    }
    if (s->kind == ENC_ROWS_KTO) sb_printf(b, ";%d", s->kto_tag[r]);
}

// ---------------------------------------------------------------------------------------
// Lua sources and tokenizers

static char *read_or_fail(const char *path, size_t *len) {
    char err[ERR_LEN];
    char *t = util_read_file(path, len, err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

typedef struct {
    LuaSource lib[3];
    LuaSource tpl;
} Sources;

static void sources_load(Sources *s, const char *template_path) {
    static const char *names[] = {"lua/llfc/json.lua", "lua/llfc/tools.lua", "lua/llfc/template.lua"};
    for (int i = 0; i < 3; i++) {
        s->lib[i].name = (char *)names[i];
        s->lib[i].origin = (char *)names[i];
        s->lib[i].text = read_or_fail(names[i], &s->lib[i].len);
    }
    s->tpl.name = "lua/template.lua";
    s->tpl.origin = (char *)template_path;
    s->tpl.text = read_or_fail(template_path, &s->tpl.len);
}

static void sources_free(Sources *s) {
    for (int i = 0; i < 3; i++) free(s->lib[i].text);
    free(s->tpl.text);
}

/* Tokenizers by folder, loaded once for all the cases (freed after the group). */
static struct {
    char *dir;
    Tokenizer *tok;
} tok_cache[16];
static size_t n_tok_cache;

static Tokenizer *cached_tokenizer(const char *dir) {
    for (size_t i = 0; i < n_tok_cache; i++)
        if (!strcmp(tok_cache[i].dir, dir)) return tok_cache[i].tok;
    char err[ERR_LEN];
    Tokenizer *tok = tok_load(dir, err, sizeof err);
    if (!tok) fail_msg("%s", err);
    if (n_tok_cache == sizeof tok_cache / sizeof *tok_cache) return tok; /* not expected */
    tok_cache[n_tok_cache].dir = xstrdup(dir);
    tok_cache[n_tok_cache++].tok = tok;
    return tok;
}

static int free_tok_cache(void **state) {
    (void)state;
    for (size_t i = 0; i < n_tok_cache; i++) {
        free(tok_cache[i].dir);
        tok_free(tok_cache[i].tok);
    }
    n_tok_cache = 0;
    return 0;
}

// ---------------------------------------------------------------------------------------
// one fixture case

static EncStage stage_of(const char *s) {
    if (!strcmp(s, "pt")) return ENC_PT;
    if (!strcmp(s, "rm")) return ENC_PAIRWISE;
    if (!strcmp(s, "kto")) return ENC_KTO;
    return ENC_SFT;
}

static bool opt_bool(const Json *opts, const char *k) {
    bool b = false;
    json_as_bool(json_get(opts, k), &b);
    return b;
}

/* Compare the rows with the fixture; returns mismatches, prints the first one in detail. */
static size_t compare_rows(const EncodedSet *set, const Json *fix, const char *name, size_t *n_checked) {
    const Json *hashes = json_get(fix, "hashes"), *first = json_get(fix, "first");
    size_t n = hashes->arr.n, bad = 0;
    *n_checked = n;
    if (set->n_rows != n) {
        fprintf(stderr, "%s: %llu rows, LF %zu\n", name, (unsigned long long)set->n_rows, n);
        bad += n > set->n_rows ? n - set->n_rows : set->n_rows - n;
    }
    for (size_t r = 0; r < n && r < set->n_rows; r++) {
        StrBuf b = {0};
        row_text(set, r, &b);
        char h[17];
        h16(b.data, b.len, h);
        if (strcmp(h, hashes->arr.items[r]->str.s) != 0) {
            if (bad < 2) {
                fprintf(stderr, "%s: row %zu differs from LF (example %llu)\n  llfc: %.400s\n", name, r,
                        (unsigned long long)set->src[r], b.data);
                const Json *fr = json_at(first, r);
                if (fr) {
                    const Json *ids = json_get(fr, set->kind == ENC_ROWS_PAIRWISE ? "chosen_input_ids" : "input_ids");
                    StrBuf lb = {0};
                    for (size_t i = 0; i < ids->arr.n; i++) sb_printf(&lb, i ? ",%lld" : "%lld", (long long)ids->arr.items[i]->num.i);
                    fprintf(stderr, "  LF:   %.400s\n", lb.data);
                    sb_free(&lb);
                }
            }
            bad++;
        }
        sb_free(&b);
    }
    return bad;
}

static void run_case(void **state) {
    const char *path = *state;
    char err[ERR_LEN];
    size_t len;
    char *text = read_or_fail(path, &len);
    JsonDoc *doc = json_parse(text, len, path, err, sizeof err);
    if (!doc) fail_msg("%s", err);
    const Json *fix = json_root(doc);
    const char *name = json_as_str(json_get(fix, "case"));
    const char *tname = json_as_str(json_get(fix, "template"));
    const char *tokname = json_as_str(json_get(fix, "tokenizer"));
    const char *dsname = json_as_str(json_get(fix, "dataset"));
    const Json *opts = json_get(fix, "options");

    char *tokrel = xprintf("tokenizers/%s", tokname);
    char *tokdir = test_shared_path(tokrel);
    free(tokrel);
    ExList l;
    if (!tokdir || !load_dataset(dsname, &l)) {
        free(tokdir);
        json_free(doc);
        free(text);
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared (set LLFC_SHARED)\n", name);
        skip();
        return;
    }
    int64_t max_samples; /* LF's max_samples: the first N examples */
    if (json_as_int(json_get(opts, "max_samples"), &max_samples) && (size_t)max_samples < l.n) {
        ExList rest = {.ex = l.ex + max_samples, .n = l.n - (size_t)max_samples};
        for (size_t i = 0; i < rest.n; i++) { /* free the tail's strings, keep the array */
            DataExample *e = &rest.ex[i];
            for (size_t k = 0; k < e->n_prompt; k++) free(e->prompt[k].content);
            for (size_t k = 0; k < e->n_response; k++) free(e->response[k].content);
            free(e->prompt), free(e->response), free(e->system), free(e->tools);
        }
        l.n = (size_t)max_samples;
    }
    Tokenizer *tok = cached_tokenizer(tokdir);
    char *tpath = xprintf("lua/templates/%s.lua", tname);
    Sources src;
    sources_load(&src, tpath);

    EncodeOptions o = {0};
    o.stage = stage_of(json_as_str(json_get(fix, "stage")));
    int64_t eff;
    assert_true(json_as_int(json_get(fix, "effective_cutoff_len"), &eff));
    o.cutoff_len = eff;
    const Json *pk = json_get(fix, "packing");
    o.neat_packing = opt_bool(opts, "neat_packing");
    o.packing = pk->type == JSON_NULL ? o.stage == ENC_PT : pk->boolean;
    if (o.neat_packing) o.packing = true;
    o.train_on_prompt = opt_bool(opts, "train_on_prompt");
    o.mask_history = opt_bool(opts, "mask_history");
    const Json *et = json_get(opts, "enable_thinking");
    o.enable_thinking = !et ? 1 : et->type == JSON_NULL ? -1 : et->boolean;
    o.template_name = tname;
    o.tool_format = json_as_str(json_get(opts, "tool_format"));
    o.default_system = json_as_str(json_get(opts, "default_system"));
    o.date = "26 Jul 2024";
    int64_t bs = 0;
    if (json_as_int(json_get(opts, "preprocessing_batch_size"), &bs)) o.batch_size = (size_t)bs;

    StrBuf notes = {0};
    Encoder *e = enc_new(&o, tok, tokdir, src.lib, 3, &src.tpl, &notes, err, sizeof err);
    if (!e) fail_msg("%s: %s", name, err);
    EncodedSet set;
    if (!enc_run(e, l.ex, l.n, &set, err, sizeof err)) fail_msg("%s: %s", name, err);

    size_t n_checked, bad = compare_rows(&set, fix, name, &n_checked);
    int64_t n_ex;
    assert_true(json_as_int(json_get(fix, "n_examples"), &n_ex));
    StrBuf sum = {0};
    enc_stats_summary(&set, &sum);
    fprintf(stderr, "[ %-9s] %s: %zu/%zu rows identical to LLaMA-Factory (%s)\n", bad ? "MISMATCH" : "MATCH", name,
            n_checked > bad ? n_checked - bad : 0, n_checked, sum.data);
    sb_free(&sum);
    assert_int_equal((int64_t)l.n, n_ex);
    assert_int_equal(bad, 0);

    sb_free(&notes);
    enc_set_free(&set);
    enc_free(e);
    sources_free(&src);
    free(tpath);
    free(tokdir);
    ex_list_free(&l);
    json_free(doc);
    free(text);
}

/* The converter here gives LF's aligned examples (else the cases would test nothing). */
static void run_aligned(void **state) {
    const char *path = *state;
    char err[ERR_LEN];
    size_t len;
    char *text = read_or_fail(path, &len);
    JsonDoc *doc = json_parse(text, len, path, err, sizeof err);
    if (!doc) fail_msg("%s", err);
    const Json *fix = json_root(doc);
    const char *ds = json_as_str(json_get(fix, "dataset"));
    ExList l;
    if (!load_dataset(ds, &l)) {
        json_free(doc);
        free(text);
        fprintf(stderr, "[  SKIPPED ] aligned %s: needs ../shared (set LLFC_SHARED)\n", ds);
        skip();
        return;
    }
    const Json *hashes = json_get(fix, "hashes");
    size_t bad = 0, n = hashes->arr.n;
    for (size_t i = 0; i < n && i < l.n; i++) {
        char h[17];
        aligned_hash(&l.ex[i], h);
        if (strcmp(h, hashes->arr.items[i]->str.s) != 0 && bad++ < 3)
            fprintf(stderr, "aligned %s: example %zu differs from LF's\n", ds, i);
    }
    fprintf(stderr, "[ %-9s] aligned %s: %zu/%zu examples identical to LLaMA-Factory's\n", bad ? "MISMATCH" : "MATCH",
            ds, n - bad, n);
    assert_int_equal(l.n, n);
    assert_int_equal(bad, 0);
    ex_list_free(&l);
    json_free(doc);
    free(text);
}

// ---------------------------------------------------------------------------------------
// behaviour beyond the fixtures

typedef struct {
    Tokenizer *tok;
    char *tokdir;
    Sources src;
} Env;

static bool env_open(Env *env, const char *tokname, const char *tname) {
    char *rel = xprintf("tokenizers/%s", tokname);
    env->tokdir = test_shared_path(rel);
    free(rel);
    if (!env->tokdir) return false;
    char err[ERR_LEN];
    env->tok = tok_load(env->tokdir, err, sizeof err);
    if (!env->tok) fail_msg("%s", err);
    char *tpath = xprintf("lua/templates/%s.lua", tname);
    sources_load(&env->src, tpath);
    env->src.tpl.origin = tpath; /* freed in env_close */
    return true;
}

static void env_close(Env *env) {
    free(env->src.tpl.origin);
    sources_free(&env->src);
    tok_free(env->tok);
    free(env->tokdir);
}

/* Invalid shapes are dropped and counted, as LF's "Dropped invalid example"; the rest stay in order. */
static void test_drops_counted(void **state) {
    (void)state;
    Env env;
    if (!env_open(&env, "qwen3", "qwen")) {
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared\n", __func__);
        skip();
        return;
    }
    ExList l = {.source = xstrdup("mem.json")};
    DataExample *e = ex_add(&l); /* fine */
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "Hi");
    msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "Hello");
    e = ex_add(&l); /* empty response */
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "Hi");
    e = ex_add(&l); /* even prompt */
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "Hi");
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_ASSISTANT, "Hey");
    msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "Hello");
    e = ex_add(&l); /* fine */
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "2+2?");
    msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "4");
    EncodeOptions o = {.stage = ENC_SFT, .cutoff_len = 1024, .enable_thinking = 1, .template_name = "qwen"};
    char err[ERR_LEN];
    Encoder *enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err);
    if (!enc) fail_msg("%s", err);
    EncodedSet s;
    assert_true(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    assert_int_equal(s.n_rows, 2);
    assert_int_equal(s.stats.dropped[ENC_DROP_SHAPE], 2);
    assert_int_equal(s.stats.first_dropped, 1);
    assert_int_equal(s.src[0], 0);
    assert_int_equal(s.src[1], 3);
    /* the last tokens of row 1 are "4<|im_end|>\n": learned, the prompt is not */
    uint64_t a = enc_part_start(&s, 1, 0), n = enc_part_len(&s, 1, 0);
    assert_int_equal(s.labels[a], ENC_IGNORE);
    assert_int_equal(s.labels[a + n - 2], enc_eos_id(enc));
    assert_int_equal(enc_eos_id(enc), 151645); /* <|im_end|> replaces the eos */
    enc_set_free(&s);

    /* a function message that is not JSON: an error naming the file and record, as LF raises */
    e = ex_add(&l);
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "call it");
    msg_add(&e->response, &e->n_response, DATA_ROLE_FUNCTION, "not json");
    e->line = 42;
    assert_false(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    if (!strstr(err, "mem.json:42: record 4:") || !strstr(err, "Invalid JSON")) fail_msg("got: %s", err);
    enc_free(enc);
    ex_list_free(&l);
    env_close(&env);
}

/* pt: an example without text is dropped; kto: an example whose KL partner (the previous one
 * of its batch, the last for the first) has no responses is dropped (LF fails there). Invalid
 * UTF-8 stops the run with the record named. */
static void test_pt_kto_drops(void **state) {
    (void)state;
    Env env;
    if (!env_open(&env, "qwen3", "qwen")) {
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared\n", __func__);
        skip();
        return;
    }
    char err[ERR_LEN];
    ExList l = {.source = xstrdup("mem.jsonl")};
    DataExample *e = ex_add(&l);
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "some text");
    ex_add(&l); /* no text */
    EncodeOptions o = {.stage = ENC_PT, .cutoff_len = 3, .template_name = "qwen"};
    Encoder *enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err);
    assert_non_null(enc);
    EncodedSet s;
    assert_true(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    assert_int_equal(s.stats.dropped[ENC_DROP_NO_TEXT], 1);
    assert_int_equal(s.n_rows, 1); /* "some text<|im_end|>": 3 tokens, one block of 3 */
    assert_int_equal(enc_part_len(&s, 0, 0), 3);
    assert_int_equal(s.ids[2], 151645);
    enc_set_free(&s);
    enc_free(enc);

    o.packing = false; /* truncated to cutoff_len, counted */
    enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err);
    l.ex[0].prompt[0].content[0] = 'S';
    e = ex_add(&l);
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "a much longer text than three tokens");
    assert_true(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    assert_int_equal(s.n_rows, 2);
    assert_int_equal(s.stats.truncated, 1);
    assert_int_equal(enc_part_len(&s, 1, 0), 3);
    enc_set_free(&s);
    free(l.ex[2].prompt[0].content);
    l.ex[2].prompt[0].content = xstrdup("bad \xff byte");
    l.ex[2].line = 7;
    assert_false(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    if (!strstr(err, "mem.jsonl:7: record 2:")) fail_msg("got: %s", err);
    enc_free(enc);
    ex_list_free(&l);

    l = (ExList){.source = xstrdup("kto.json")};
    for (int i = 0; i < 3; i++) {
        e = ex_add(&l);
        msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "q");
        if (i == 2) continue; /* no responses: invalid itself, and a bad KL partner for example 0 */
        msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, i ? "" : "good");
        msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, i ? "bad" : "");
    }
    o = (EncodeOptions){.stage = ENC_KTO, .cutoff_len = 64, .template_name = "qwen"};
    enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err);
    assert_true(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    assert_int_equal(s.n_rows, 1);
    assert_int_equal(s.src[0], 1);
    assert_int_equal(s.kto_tag[0], 0); /* example 1 is undesirable; its KL partner is example 0 */
    assert_int_equal(s.stats.dropped[ENC_DROP_KL], 1);
    assert_int_equal(s.stats.dropped[ENC_DROP_SHAPE], 1);
    enc_set_free(&s);
    enc_free(enc);
    ex_list_free(&l);
    env_close(&env);
}

/* LF's fix_special_tokens adds the llama3 template's stop word <|eom_id|>, which this Llama 3.1
 * tokenizer lacks, as a new special token (id 128256 = len(tokenizer)); a text holding it gets
 * that id, and the embedding needs a row more. */
static void test_added_tokens(void **state) {
    (void)state;
    Env env;
    if (!env_open(&env, "llama3_1", "llama3")) {
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared\n", __func__);
        skip();
        return;
    }
    char err[ERR_LEN];
    StrBuf notes = {0};
    EncodeOptions o = {.stage = ENC_SFT, .cutoff_len = 64, .enable_thinking = 1, .template_name = "llama3"};
    Encoder *enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, &notes, err, sizeof err);
    if (!enc) fail_msg("%s", err);
    assert_non_null(strstr(notes.data, "'<|eom_id|>' as id 128256"));
    assert_int_equal(enc_id_limit(enc), 128257);
    assert_int_equal(tok_id_limit(env.tok), 128256); /* the caller's tokenizer is untouched */
    ExList l = {.source = xstrdup("mem.json")};
    DataExample *e = ex_add(&l);
    msg_add(&e->prompt, &e->n_prompt, DATA_ROLE_USER, "Hi");
    msg_add(&e->response, &e->n_response, DATA_ROLE_ASSISTANT, "a<|eom_id|>");
    EncodedSet s;
    assert_true(enc_run(enc, l.ex, l.n, &s, err, sizeof err));
    uint64_t a = enc_part_start(&s, 0, 0), n = enc_part_len(&s, 0, 0);
    assert_int_equal(s.ids[a + n - 2], 128256); /* "a" <|eom_id|> <|eot_id|> */
    assert_int_equal(s.ids[a + n - 1], 128009);
    enc_set_free(&s);
    enc_free(enc);
    sb_free(&notes);
    ex_list_free(&l);
    env_close(&env);
}

/* Threads change nothing: 1 thread and 7 threads give the same bytes (KTO: KL partners across
 * chunk boundaries; small batches so several batches are exercised). */
static void test_threads_same(void **state) {
    (void)state;
    Env env;
    ExList l;
    if (!env_open(&env, "llama3_1", "llama3")) {
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared\n", __func__);
        skip();
        return;
    }
    if (!load_dataset("kto_en_demo", &l)) fail_msg("kto_en_demo missing");
    EncodedSet s[2];
    for (int k = 0; k < 2; k++) {
        EncodeOptions o = {.stage = ENC_KTO, .cutoff_len = 256, .enable_thinking = 1, .template_name = "llama3",
                           .n_threads = k ? 7 : 1, .batch_size = 37};
        char err[ERR_LEN];
        Encoder *enc = enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err);
        if (!enc) fail_msg("%s", err);
        assert_true(enc_run(enc, l.ex, l.n, &s[k], err, sizeof err));
        enc_free(enc);
    }
    assert_int_equal(s[0].n_rows, s[1].n_rows);
    assert_int_equal(s[0].n_tokens, s[1].n_tokens);
    assert_memory_equal(s[0].ids, s[1].ids, s[0].n_tokens * 4);
    assert_memory_equal(s[0].labels, s[1].labels, s[0].n_tokens * 4);
    assert_memory_equal(s[0].off, s[1].off, (s[0].n_rows * 2 + 1) * 8);
    enc_set_free(&s[0]);
    enc_set_free(&s[1]);
    ex_list_free(&l);
    env_close(&env);
}

/* A template error and an impossible option are reported, not crashed on. */
static void test_bad_setup(void **state) {
    (void)state;
    Env env;
    if (!env_open(&env, "qwen3", "qwen")) {
        fprintf(stderr, "[  SKIPPED ] %s: needs ../shared\n", __func__);
        skip();
        return;
    }
    char err[ERR_LEN];
    EncodeOptions o = {.stage = ENC_SFT, .cutoff_len = 16, .mask_history = true, .train_on_prompt = true};
    assert_null(enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err));
    assert_non_null(strstr(err, "mask_history"));
    o = (EncodeOptions){.stage = ENC_SFT, .cutoff_len = 16};
    LuaSource bad = {.name = "lua/template.lua", .origin = "my.lua", .text = "return { format_usr = {} }", .len = 26};
    assert_null(enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &bad, NULL, err, sizeof err));
    if (!strstr(err, "my.lua") || !strstr(err, "format_user")) fail_msg("got: %s", err);
    o.cutoff_len = 0;
    assert_null(enc_new(&o, env.tok, env.tokdir, env.src.lib, 3, &env.src.tpl, NULL, err, sizeof err));
    env_close(&env);
}

// ---------------------------------------------------------------------------------------

static char **list_json(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    char **out = NULL;
    *n = 0;
    if (!d) return NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        out = xrealloc(out, (*n + 1) * sizeof *out);
        out[(*n)++] = util_path_join(dir, de->d_name);
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) /* sorted, so the log reads the same every time */
        for (size_t j = i; j > 0 && strcmp(out[j - 1], out[j]) > 0; j--) {
            char *t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return out;
}

int main(int argc, char **argv) {
    size_t na, nc;
    char **aligned = list_json("tests/fixtures/encode/aligned", &na);
    char **cases = list_json("tests/fixtures/encode/cases", &nc);
    const char *only = argc > 1 ? argv[1] : NULL; /* a case name to run alone */
    struct CMUnitTest *t = xcalloc(na + nc + 8, sizeof *t);
    size_t k = 0;
    t[k++] = (struct CMUnitTest)cmocka_unit_test(test_drops_counted);
    t[k++] = (struct CMUnitTest)cmocka_unit_test(test_threads_same);
    t[k++] = (struct CMUnitTest)cmocka_unit_test(test_pt_kto_drops);
    t[k++] = (struct CMUnitTest)cmocka_unit_test(test_added_tokens);
    t[k++] = (struct CMUnitTest)cmocka_unit_test(test_bad_setup);
    for (size_t i = 0; i < na; i++)
        t[k++] = (struct CMUnitTest){.name = aligned[i], .test_func = run_aligned, .initial_state = aligned[i]};
    for (size_t i = 0; i < nc; i++)
        if (!only || strstr(cases[i], only))
            t[k++] = (struct CMUnitTest){.name = cases[i], .test_func = run_case, .initial_state = cases[i]};
    if (nc == 0) fprintf(stderr, "no fixtures in tests/fixtures/encode (run tests/parity/gen_encode_fixtures.py)\n");
    int rc = _cmocka_run_group_tests("encode", t, k, NULL, free_tok_cache);
    for (size_t i = 0; i < na; i++) free(aligned[i]);
    for (size_t i = 0; i < nc; i++) free(cases[i]);
    free(aligned);
    free(cases);
    free(t);
    return rc || nc == 0;
}
