/* test_dataset.c - the dataset stage against LLaMA-Factory itself.
 *
 * Oracles: tests/fixtures/data/lf_aligned.json, written by tests/parity/gen_aligned_fixtures.py
 * from LLaMA-Factory 0.9.5's loader + converter (and `datasets`' interleave / train_test_split)
 * on every local text-only dataset in ../shared and the small files in tests/fixtures/data;
 * numpy's own streams for the random orders. Bad data: every class of problem, in both
 * data_on_error modes, with the exact message and the counts.
 */
#include "testutil.h"

#include <ftw.h>
#include <unistd.h>

#include "data_internal.h"
#include "dataset.h"
#include "json.h"
#include "sha256.h"
#include "util.h"

#define FIXTURE "tests/fixtures/data/lf_aligned.json"
#define FIX_DIR "tests/fixtures/data"

// --- helpers

static void canon(StrBuf *sb, const DataExample *e) {
    const DataMessage *ms[2] = {e->prompt, e->response};
    size_t ns[2] = {e->n_prompt, e->n_response};
    for (int part = 0; part < 2; part++) {
        for (size_t i = 0; i < ns[part]; i++) {
            if (i) sb_puts(sb, "\x1e");
            sb_printf(sb, "%d\x1f", (int)ms[part][i].role);
            sb_puts(sb, ms[part][i].content);
        }
        sb_puts(sb, "\x1d");
    }
    sb_printf(sb, "%s\x1d%s\x1d%d\n", e->system ? e->system : "", e->tools ? e->tools : "", e->kto_tag);
}

static int role_num(const char *r) {
    static const char *const R[] = {"user", "assistant", "function", "observation"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(R[i], r)) return i;
    return -1;
}

/* Compare messages; describe the first difference in why. */
static bool same_msgs(const DataMessage *m, size_t n, const Json *want, const char *what, char *why, size_t len) {
    if (want->arr.n != n) return errf(why, len, "%s: %zu messages, LLaMA-Factory has %zu", what, n, want->arr.n);
    for (size_t i = 0; i < n; i++) {
        const Json *w = want->arr.items[i];
        const char *role = json_as_str(json_get(w, "role")), *content = json_as_str(json_get(w, "content"));
        if ((int)m[i].role != role_num(role))
            return errf(why, len, "%s[%zu]: role %d, LLaMA-Factory has %s", what, i, (int)m[i].role, role);
        if (strcmp(m[i].content, content))
            return errf(why, len, "%s[%zu]: content\n    llfc: %.300s\n    LF:   %.300s", what, i, m[i].content,
                        content);
    }
    return true;
}

static bool same_example(const DataExample *e, const Json *w, char *why, size_t len) {
    const char *sys = json_as_str(json_get(w, "system")), *tools = json_as_str(json_get(w, "tools"));
    int64_t kto;
    json_as_int(json_get(w, "kto"), &kto);
    if (!same_msgs(e->prompt, e->n_prompt, json_get(w, "prompt"), "prompt", why, len)) return false;
    if (!same_msgs(e->response, e->n_response, json_get(w, "response"), "response", why, len)) return false;
    if (strcmp(e->system ? e->system : "", sys))
        return errf(why, len, "system: llfc '%s', LF '%s'", e->system ? e->system : "", sys);
    if (strcmp(e->tools ? e->tools : "", tools))
        return errf(why, len, "tools: llfc '%s', LF '%s'", e->tools ? e->tools : "", tools);
    if (e->kto_tag != kto) return errf(why, len, "kto_tag: llfc %d, LF %d", e->kto_tag, (int)kto);
    return true;
}

static void check_part(const char *name, const char *part, const DataExample *ex, size_t n, const Json *want) {
    int64_t count;
    assert_true(json_as_int(json_get(want, "count"), &count));
    if ((size_t)count != n) fail_msg("%s %s: %zu examples, LLaMA-Factory has %lld", name, part, n, (long long)count);
    const Json *first = json_get(want, "first");
    char why[2048];
    for (size_t i = 0; i < first->arr.n; i++)
        if (!same_example(&ex[i], first->arr.items[i], why, sizeof why))
            fail_msg("%s %s example %zu (%s:%d record %zu): %s", name, part, i, ex[i].source, ex[i].line,
                     ex[i].record, why);
    Sha256 h;
    sha256_init(&h);
    StrBuf sb = {0};
    for (size_t i = 0; i < n; i++) {
        sb.len = 0;
        sb_append(&sb, "", 0);
        canon(&sb, &ex[i]);
        sha256_update(&h, sb.data, sb.len);
    }
    sb_free(&sb);
    uint8_t d[32];
    char hex[65];
    sha256_final(&h, d);
    sha256_hex(d, hex);
    if (strcmp(hex, json_as_str(json_get(want, "sha256"))))
        fail_msg("%s %s: the %zu examples differ from LLaMA-Factory's beyond the first %zu (SHA-256)", name, part,
                 n, first->arr.n);
}

static DataStage stage_of(const char *s) {
    static const char *const S[] = {"pt", "sft", "rm", "dpo", "kto"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(S[i], s)) return (DataStage)i;
    fail_msg("bad stage %s", s);
    return DATA_STAGE_SFT;
}

// --- parity with LLaMA-Factory, one cmocka test per fixture case

static JsonDoc *g_fix;
static char *g_fix_text;

static void test_lf_case(void **state) {
    const char *key = *state;
    const Json *c = json_get(json_root(g_fix), key);
    const char *dir = json_as_str(json_get(c, "dir"));
    char *shared_dir = NULL;
    if (!strcmp(dir, "shared")) {
        SHARED_OR_SKIP(p, "data/llamafactory/dataset_info.json");
        free(p);
        shared_dir = test_shared_path("data/llamafactory");
    }
    const Json *names = json_get(c, "names");
    const char *nv[8];
    for (size_t i = 0; i < names->arr.n; i++) nv[i] = json_as_str(names->arr.items[i]);
    DataOptions o = {.datasets = nv, .n_datasets = names->arr.n, .dataset_dir = shared_dir ? shared_dir : FIX_DIR,
                     .stage = stage_of(json_as_str(json_get(c, "stage"))), .seed = 42};
    const Json *evn = json_get(c, "eval_names");
    const char *ev[8];
    if (evn) {
        for (size_t i = 0; i < evn->arr.n; i++) ev[i] = json_as_str(evn->arr.items[i]);
        o.eval_datasets = ev;
        o.n_eval_datasets = evn->arr.n;
    }
    int64_t i64;
    double f;
    if (json_as_int(json_get(c, "seed"), &i64)) o.seed = (uint64_t)i64;
    if (json_as_int(json_get(c, "max_samples"), &i64)) o.max_samples = i64;
    if (json_as_double(json_get(c, "val_size"), &f)) o.val_size = f;
    const char *mix = json_as_str(json_get(c, "mix_strategy"));
    if (mix) o.mix = !strcmp(mix, "interleave_under") ? DATA_MIX_INTERLEAVE_UNDER : DATA_MIX_INTERLEAVE_OVER;
    double probs[8];
    const Json *p = json_get(c, "interleave_probs");
    if (p) {
        for (size_t i = 0; i < p->arr.n; i++) json_as_double(p->arr.items[i], &probs[i]);
        o.interleave_probs = probs;
        o.n_interleave_probs = p->arr.n;
    }
    char err[ERR_LEN];
    DataSet *ds = data_load(&o, err, sizeof err);
    if (!ds) fail_msg("%s: %s", key, err);
    size_t n;
    const DataExample *ex = data_train(ds, &n);
    check_part(key, "train", ex, n, json_get(c, "train"));
    ex = data_eval(ds, &n);
    check_part(key, "eval", ex, n, json_get(c, "eval"));
    data_free(ds);
    free(shared_dir);
}

/* TSV is llfc's (LF refuses .tsv): the same table as alpaca.csv gives the same examples. */
static void test_tsv_equals_csv(void **state) {
    (void)state;
    const char *a[] = {"alpaca_csv"}, *b[] = {"alpaca_tsv"};
    char err[ERR_LEN];
    DataOptions o = {.datasets = a, .n_datasets = 1, .dataset_dir = FIX_DIR, .stage = DATA_STAGE_SFT};
    DataSet *x = data_load(&o, err, sizeof err);
    assert_non_null(x);
    o.datasets = b;
    DataSet *y = data_load(&o, err, sizeof err);
    assert_non_null(y);
    size_t nx, ny;
    const DataExample *ex = data_train(x, &nx), *ey = data_train(y, &ny);
    assert_int_equal(nx, 5);
    assert_int_equal(nx, ny);
    for (size_t i = 0; i < nx; i++) {
        StrBuf s1 = {0}, s2 = {0};
        canon(&s1, &ex[i]);
        canon(&s2, &ey[i]);
        assert_string_equal(s1.data, s2.data);
        assert_int_equal(ex[i].line, ey[i].line);
        sb_free(&s1);
        sb_free(&s2);
    }
    /* records know where they came from: row 2 has quoted newlines, so row 3 starts on line 8 */
    assert_string_equal(ex[2].source, FIX_DIR "/alpaca.csv");
    assert_int_equal(ex[2].record, 2);
    assert_int_equal(ex[2].line, 4);
    assert_int_equal(ex[3].line, 8);
    assert_string_equal(ex[3].dataset, "alpaca_csv");
    data_free(x);
    data_free(y);
}

// --- numpy's streams

static void test_numpy_streams(void **state) {
    (void)state;
    NpRng g;
    size_t perm[100000];
    static const size_t P42[] = {5, 6, 0, 7, 3, 2, 4, 9, 1, 8};
    static const size_t P0[] = {4, 19, 6, 2, 13, 16, 3, 11, 10, 8, 0, 12, 7, 5, 18, 17, 14, 9, 1, 15};
    static const size_t PBIG[] = {6, 9, 5, 8, 2, 4, 7, 0, 11, 10, 3, 1};
    np_rng_default(&g, 42);
    np_permutation(&g, 10, perm);
    for (int i = 0; i < 10; i++) assert_int_equal(perm[i], P42[i]);
    np_rng_default(&g, 0);
    np_permutation(&g, 20, perm);
    for (int i = 0; i < 20; i++) assert_int_equal(perm[i], P0[i]);
    np_rng_default(&g, (1ull << 32) + 5); /* a seed of two 32-bit words */
    np_permutation(&g, 12, perm);
    for (int i = 0; i < 12; i++) assert_int_equal(perm[i], PBIG[i]);
    np_rng_default(&g, 3);
    assert_int_equal(np_next64(&g), 0x15ed1a93cfbec2f8ull);
    assert_int_equal(np_next64(&g), 0x3c9f9d052defd3f5ull);
    np_rng_default(&g, 3);
    static const size_t C3[] = {0, 1, 2, 2, 0, 1, 1, 0, 2, 0, 1, 2};
    size_t ch[12];
    np_choice_p(&g, (const double[]){0.2, 0.3, 0.5}, 3, 12, ch);
    for (int i = 0; i < 12; i++) assert_int_equal(ch[i], C3[i]);
    /* np.random.seed(5); permutation(8); choice(7, 5) */
    static const size_t L5[] = {7, 2, 4, 1, 0, 5, 6, 3}, L5C[] = {6, 3, 0, 6, 0};
    np_rng_legacy(&g, 5);
    np_permutation(&g, 8, perm);
    for (int i = 0; i < 8; i++) assert_int_equal(perm[i], L5[i]);
    for (int i = 0; i < 5; i++) assert_int_equal(np_interval(&g, 6), L5C[i]);
    static const size_t LMAX[] = {1, 4, 5, 0, 2, 3};
    np_rng_legacy(&g, 4294967295u);
    np_permutation(&g, 6, perm);
    for (int i = 0; i < 6; i++) assert_int_equal(perm[i], LMAX[i]);
    /* a long one: SHA-256 of default_rng(123).permutation(100000) as little-endian uint64 */
    np_rng_default(&g, 123);
    np_permutation(&g, 100000, perm);
    uint64_t *le = malloc(100000 * sizeof *le);
    for (int i = 0; i < 100000; i++) le[i] = perm[i];
    uint8_t d[32];
    char hex[65];
    sha256(le, 100000 * sizeof *le, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, "083f8adf478ac2caf01f1b730f33ec993c29b52efb153c62f295281ac561281b");
    free(le);
}

// --- Python's json.dumps

static void test_json_dumps(void **state) {
    (void)state;
    static const char *const CASES[][2] = {
        {"[1, 2.5, -0.0, 1e16, 1.5e-05, 0.0001, 123456789012345680000.0, true, null]",
         "[1, 2.5, -0.0, 1e+16, 1.5e-05, 0.0001, 1.2345678901234568e+20, true, null]"},
        {"{\"a\":\"x\\u0001\\n\\\"\",\"b\":{\"c\":[]},\"é\":1.0}", "{\"a\": \"x\\u0001\\n\\\"\", \"b\": {\"c\": []}, \"é\": 1.0}"},
        {"[0.1, 100.0, 1e22, 3.14159]", "[0.1, 100.0, 1e+22, 3.14159]"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char err[ERR_LEN];
        JsonDoc *doc = json_parse(CASES[i][0], strlen(CASES[i][0]), "t", err, sizeof err);
        assert_non_null(doc);
        StrBuf sb = {0};
        data_json_dumps(&sb, json_root(doc));
        assert_string_equal(sb.data, CASES[i][1]);
        sb_free(&sb);
        json_free(doc);
    }
}

// --- small datasets written on the fly

typedef struct {
    char dir[64];
} Tmp;

static void tmp_make(Tmp *t) {
    strcpy(t->dir, "/tmp/llfc_ds_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
}

static void tmp_write(Tmp *t, const char *name, const char *text, size_t len) {
    char *p = util_path_join(t->dir, name);
    char err[ERR_LEN];
    if (!util_write_file_atomic(p, text, len, 0644, err, sizeof err)) fail_msg("%s", err);
    free(p);
}

#define TMP_WRITE(t, name, lit) tmp_write((t), (name), (lit), sizeof(lit) - 1)

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void tmp_free(Tmp *t) { nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Load dataset "d" of t with the stage; returns the set or NULL with err. */
static DataSet *load_d(Tmp *t, DataStage stage, bool skip, char *err) {
    const char *names[] = {"d"};
    DataOptions o = {.datasets = names, .n_datasets = 1, .dataset_dir = t->dir, .stage = stage, .skip_bad = skip,
                     .threads = 2};
    return data_load(&o, err, ERR_LEN);
}

/* The error must be exactly dir + "/" + want. */
static void assert_err(Tmp *t, const char *err, const char *want) {
    size_t n = strlen(t->dir);
    if (strncmp(err, t->dir, n) || err[n] != '/' || strcmp(err + n + 1, want))
        fail_msg("\n  want: %s/%s\n  got:  %s", t->dir, want, err);
}

typedef struct {
    const char *name;
    const char *entry; /* the dataset_info entry of "d" */
    const char *file;
    const char *text;
    DataStage stage;
    const char *stop;  /* the message in stop mode, after "DIR/" */
    size_t kept;       /* in skip mode */
    DataBadKind kind;  /* the one reason records were skipped */
    size_t skipped;
} BadCase;

#define ALPACA "{\"file_name\": \"x.jsonl\"}"
#define SHAREGPT "{\"file_name\": \"x.jsonl\", \"formatting\": \"sharegpt\"}"
#define HINT " (data_on_error: skip would skip such records and count them)"

static const BadCase BAD[] = {
    {"bad JSON line", ALPACA, "x.jsonl",
     "{\"instruction\": \"a\", \"output\": \"b\", \"input\": \"\"}\n{\"instruction\": \"a\", \"output\": }\n"
     "{\"instruction\": \"c\", \"output\": \"d\", \"input\": \"\"}\n",
     DATA_STAGE_SFT,
     "x.jsonl:2: record 1: invalid JSON Lines record: expected a JSON value, found '}'" HINT, 2, DATA_BAD_JSON, 1},
    {"JSONL line not an object", ALPACA, "x.jsonl",
     "{\"instruction\": \"a\", \"output\": \"b\", \"input\": \"\"}\n[1, 2]\n", DATA_STAGE_SFT,
     "x.jsonl:2: record 1: expected a record (a JSON object), found array" HINT, 1, DATA_BAD_JSON, 1},
    {"invalid UTF-8 in JSON", ALPACA, "x.jsonl",
     "{\"instruction\": \"a\xff\", \"output\": \"b\", \"input\": \"\"}\n"
     "{\"instruction\": \"a\", \"output\": \"b\", \"input\": \"\"}\n",
     DATA_STAGE_SFT, "x.jsonl:1: record 0: invalid JSON Lines record: invalid UTF-8 in string (byte 0xFF)" HINT, 1,
     DATA_BAD_TEXT, 1},
    {"wrong type", ALPACA, "x.jsonl",
     "{\"instruction\": 5, \"output\": \"b\", \"input\": \"\"}\n{\"instruction\": \"a\", \"output\": \"b\", \"input\": \"\"}\n",
     DATA_STAGE_SFT, "x.jsonl:1: record 0: column 'instruction' must be a string, found number" HINT, 1,
     DATA_BAD_TYPE, 1},
    {"NUL in a text", ALPACA, "x.jsonl",
     "{\"instruction\": \"a\\u0000b\", \"output\": \"b\", \"input\": \"\"}\n", DATA_STAGE_SFT,
     "x.jsonl:1: record 0: column 'instruction' contains a NUL character (\\u0000)" HINT, 0, DATA_BAD_TEXT, 1},
    {"bad history", "{\"file_name\": \"x.jsonl\", \"columns\": {\"prompt\": \"instruction\", \"response\": \"output\", "
     "\"history\": \"history\"}}", "x.jsonl",
     "{\"instruction\": \"a\", \"output\": \"b\", \"history\": [[\"q\"]]}\n", DATA_STAGE_SFT,
     "x.jsonl:1: record 0: history[0] must be a [prompt, response] pair of strings" HINT, 0, DATA_BAD_TYPE, 1},
    {"missing messages", SHAREGPT, "x.jsonl",
     "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n{\"other\": 1}\n",
     DATA_STAGE_SFT, "x.jsonl:2: record 1: messages column 'conversations' is missing or null" HINT, 1,
     DATA_BAD_COLUMN, 1},
    {"empty conversation", SHAREGPT, "x.jsonl",
     "{\"conversations\": []}\n{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n",
     DATA_STAGE_SFT, "x.jsonl:1: record 0: empty conversation (no messages after the system message)" HINT, 1,
     DATA_BAD_EMPTY, 1},
    {"odd conversation", SHAREGPT, "x.jsonl",
     "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]}\n", DATA_STAGE_SFT,
     "x.jsonl:1: record 0: conversation has 1 messages; expected an even number (user and assistant turns in "
     "pairs, ending with the assistant)" HINT, 0, DATA_BAD_COUNT, 1},
    {"roles out of order", SHAREGPT, "x.jsonl",
     "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}, {\"from\": \"human\", \"value\": \"q\"}]}\n",
     DATA_STAGE_SFT,
     "x.jsonl:1: record 0: message 0 has role 'gpt' where a user turn is expected ('human' or 'observation')" HINT,
     0, DATA_BAD_ROLE, 1},
    {"unknown role", SHAREGPT, "x.jsonl",
     "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"bot\", \"value\": \"a\"}]}\n",
     DATA_STAGE_SFT,
     "x.jsonl:1: record 0: message 1 has role 'bot' where an assistant turn is expected ('gpt' or "
     "'function_call')" HINT, 0, DATA_BAD_ROLE, 1},
    {"message content not a string", SHAREGPT, "x.jsonl",
     "{\"conversations\": [{\"from\": \"human\", \"value\": [1]}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n",
     DATA_STAGE_SFT, "x.jsonl:1: record 0: message 0 content must be a string, found array" HINT, 0, DATA_BAD_TYPE,
     1},
    {"ranking without chosen", "{\"file_name\": \"x.jsonl\", \"formatting\": \"sharegpt\", \"ranking\": true, "
     "\"columns\": {\"messages\": \"conversations\", \"chosen\": \"chosen\", \"rejected\": \"rejected\"}}", "x.jsonl",
     "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}], \"chosen\": \"x\", \"rejected\": {\"from\": \"gpt\", \"value\": \"r\"}}\n",
     DATA_STAGE_DPO, "x.jsonl:1: record 0: chosen column 'chosen' must be a message object, found string" HINT, 0,
     DATA_BAD_TYPE, 1},
    {"kto tag not a bool", "{\"file_name\": \"x.jsonl\", \"columns\": {\"prompt\": \"q\", \"response\": \"a\", "
     "\"kto_tag\": \"label\"}}", "x.jsonl", "{\"q\": \"x\", \"a\": \"y\", \"label\": 1}\n", DATA_STAGE_KTO,
     "x.jsonl:1: record 0: kto_tag column 'label' must be true or false, found number" HINT, 0, DATA_BAD_TYPE, 1},
    {"CSV unterminated quote", "{\"file_name\": \"x.csv\"}", "x.csv",
     "instruction,input,output\na,,b\n\"open,,c\n", DATA_STAGE_SFT,
     "x.csv:3: record 1: unterminated quoted field (a '\"' opened here is never closed)" HINT, 1, DATA_BAD_CSV, 1},
    {"CSV too many fields", "{\"file_name\": \"x.csv\"}", "x.csv", "instruction,input,output\na,b,c,d\ne,f,g\n",
     DATA_STAGE_SFT, "x.csv:2: record 0: expected 3 fields (the header's), found 4" HINT, 1, DATA_BAD_CSV, 1},
    {"CSV invalid UTF-8", "{\"file_name\": \"x.csv\"}", "x.csv", "instruction,input,output\na\xc3,b,c\ne,f,g\n",
     DATA_STAGE_SFT, "x.csv:2: record 0: column 'instruction': invalid UTF-8" HINT, 1, DATA_BAD_TEXT, 1},
    {"TXT invalid UTF-8", "{\"file_name\": \"x.txt\", \"columns\": {\"prompt\": \"text\"}}", "x.txt",
     "good\nbad \xed\xa0\x80 surrogate\nfine\n", DATA_STAGE_PT, "x.txt:2: record 1: invalid UTF-8" HINT, 2,
     DATA_BAD_TEXT, 1},
    {"openai unknown role", "{\"file_name\": \"x.jsonl\", \"formatting\": \"openai\", \"columns\": {\"messages\": "
     "\"messages\"}, \"tags\": {\"role_tag\": \"role\", \"content_tag\": \"content\", \"user_tag\": \"user\", "
     "\"assistant_tag\": \"assistant\", \"system_tag\": \"system\"}}", "x.jsonl",
     "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"robot\", \"content\": \"a\"}]}\n",
     DATA_STAGE_SFT, "x.jsonl:1: record 0: message 1 has role 'robot', which is none of the dataset's tags" HINT, 0,
     DATA_BAD_ROLE, 1},
};

static void write_case(Tmp *t, const BadCase *c) {
    StrBuf info = {0};
    sb_printf(&info, "{\"d\": %s}", c->entry);
    tmp_write(t, "dataset_info.json", info.data, info.len);
    sb_free(&info);
    tmp_write(t, c->file, c->text, strlen(c->text));
}

static void test_bad_data(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const BadCase *c = &BAD[i];
        Tmp t;
        tmp_make(&t);
        write_case(&t, c);
        char err[ERR_LEN] = "";
        DataSet *ds = load_d(&t, c->stage, false, err);
        if (ds) fail_msg("%s: loaded in stop mode", c->name);
        assert_err(&t, err, c->stop);
        ds = load_d(&t, c->stage, true, err);
        if (!ds) fail_msg("%s: skip mode failed: %s", c->name, err);
        const DataStats *s = data_stats(ds);
        if (s->kept != c->kept || s->skipped != c->skipped || s->skipped_by[c->kind] != c->skipped)
            fail_msg("%s: kept %zu skipped %zu (%zu of kind %s); want kept %zu skipped %zu", c->name, s->kept,
                     s->skipped, s->skipped_by[c->kind], data_bad_name(c->kind), c->kept, c->skipped);
        assert_int_equal(s->kept + s->skipped, s->read);
        size_t n;
        data_train(ds, &n);
        assert_int_equal(n, c->kept);
        /* the report names the reason and shows the record */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        data_report(ds, f);
        fclose(f);
        char want[128];
        snprintf(want, sizeof want, "(%zu %s)", c->skipped, data_bad_name(c->kind));
        if (!strstr(buf, want) || !strstr(buf, c->file))
            fail_msg("%s: report lacks '%s':\n%s", c->name, want, buf);
        free(buf);
        data_free(ds);
        tmp_free(&t);
    }
}

/* Problems that stop in both modes: the file or the dataset as a whole is wrong. */
static void test_fatal_errors(void **state) {
    (void)state;
    static const struct {
        const char *name, *entry, *file, *text, *want;
        DataStage stage;
    } C[] = {
        {"broken JSON array", "{\"file_name\": \"x.json\"}", "x.json", "[{\"instruction\": \"a\"},\n {\"instruction\": }]",
         "x.json:2:18: expected a JSON value, found '}' (the file is one JSON array of records; fix it or write it "
         "as JSON Lines, one record per line, to skip bad records)", DATA_STAGE_SFT},
        {"misnamed column", "{\"file_name\": \"x.jsonl\", \"columns\": {\"prompt\": \"instrucion\"}}", "x.jsonl",
         "{\"instruction\": \"a\", \"output\": \"b\"}\n",
         "x.jsonl: column 'instrucion' (columns.prompt of dataset 'd') is in no record; the records have "
         "'instruction', 'output'; did you mean 'instruction'?", DATA_STAGE_SFT},
        {"default column missing", "{\"file_name\": \"x.jsonl\"}", "x.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n",
         "x.jsonl: column 'input' (columns.query of dataset 'd', a default when \"columns\" does not set it) is in "
         "no record; the records have 'instruction', 'output'", DATA_STAGE_SFT},
        {"file missing", "{\"file_name\": \"nope.json\"}", "x.json", "[]",
         NULL, DATA_STAGE_SFT},
        {"one pretty-printed object", "{\"file_name\": \"x.json\"}", "x.json", "{\n  \"instruction\": \"a\"\n}\n",
         "x.json:1: the file is one JSON object; a data file is an array of records [{...}, {...}] or JSON Lines "
         "(one record per line)", DATA_STAGE_SFT},
        {"CSV header duplicate", "{\"file_name\": \"x.csv\"}", "x.csv", "a,a\n1,2\n",
         "x.csv:1: header row: column name 'a' appears twice", DATA_STAGE_SFT},
        {"unknown file type", "{\"file_name\": \"x.parquet\"}", "x.parquet", "PAR1",
         "x.parquet: parquet files are not supported yet by llfc; convert them to JSON Lines", DATA_STAGE_SFT},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        for (int skip = 0; skip < 2; skip++) {
            Tmp t;
            tmp_make(&t);
            BadCase bc = {.entry = C[i].entry, .file = C[i].file, .text = C[i].text};
            write_case(&t, &bc);
            char err[ERR_LEN] = "";
            DataSet *ds = load_d(&t, C[i].stage, skip, err);
            if (ds) fail_msg("%s: loaded", C[i].name);
            if (C[i].want) assert_err(&t, err, C[i].want);
            else if (!strstr(err, t.dir)) fail_msg("%s: message does not name the file: %s", C[i].name, err);
            tmp_free(&t);
        }
    }
}

static void expect_info_error(const char *info, DataStage stage, const char *names0, const char *want_sub) {
    Tmp t;
    tmp_make(&t);
    tmp_write(&t, "dataset_info.json", info, strlen(info));
    TMP_WRITE(&t, "x.json", "[{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"}]");
    const char *names[] = {names0};
    DataOptions o = {.datasets = names, .n_datasets = 1, .dataset_dir = t.dir, .stage = stage};
    char err[ERR_LEN] = "";
    DataSet *ds = data_load(&o, err, sizeof err);
    if (ds) fail_msg("loaded: %s", info);
    if (!strstr(err, want_sub)) fail_msg("\n  want: ...%s...\n  got:  %s", want_sub, err);
    tmp_free(&t);
}

static void test_dataset_info_errors(void **state) {
    (void)state;
    expect_info_error("{\"alpaca_demo\": {\"file_name\": \"x.json\"}}", DATA_STAGE_SFT, "alpaca_dem",
                      "dataset_info.json: undefined dataset 'alpaca_dem'; did you mean 'alpaca_demo'?");
    expect_info_error("{\"d\": {\"hf_hub_url\": \"org/data\"}}", DATA_STAGE_SFT, "d",
                      "dataset 'd' is loaded from a dataset hub; llfc reads only local files");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\", \"formatting\": \"sharegpt\", \"columns\": "
                      "{\"messages\": \"messages\", \"images\": \"images\"}}}",
                      DATA_STAGE_SFT, "d", "dataset 'd' has images columns: multimodal data is not supported yet");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\", \"columns\": {\"promt\": \"q\"}}}", DATA_STAGE_SFT, "d",
                      "dataset 'd': unknown columns key 'promt'; did you mean 'prompt'?");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\", \"formatting\": \"chatml\"}}", DATA_STAGE_SFT, "d",
                      "formatting must be alpaca, sharegpt or openai");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\"}}", DATA_STAGE_DPO, "d",
                      "dataset 'd' is not a ranking dataset; stage dpo needs pairs of answers");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\", \"ranking\": true}}", DATA_STAGE_SFT, "d",
                      "dataset 'd' is a ranking dataset (chosen/rejected); it is for stage rm or dpo, not sft");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\"}}", DATA_STAGE_KTO, "d",
                      "dataset 'd' has no kto_tag column; stage kto needs one");
    expect_info_error("{\"d\": {\"file_name\": \"x.json\", \"split\": \"test\"}}", DATA_STAGE_SFT, "d",
                      "split of a local file can only be \"train\"");
    expect_info_error("{\"d\": {\"file_name\": \"missing_dir/x.json\"}}", DATA_STAGE_SFT, "d",
                      "missing_dir/x.json: file of dataset 'd' not found");
}

static void test_split_and_mix_errors(void **state) {
    (void)state;
    Tmp t;
    tmp_make(&t);
    TMP_WRITE(&t, "dataset_info.json", "{\"d\": {\"file_name\": \"x.json\"}, \"e\": {\"file_name\": \"x.json\"}}");
    TMP_WRITE(&t, "x.json", "[{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"},"
                            "{\"instruction\": \"c\", \"input\": \"\", \"output\": \"d\"}]");
    const char *names[] = {"d", "e"};
    char err[ERR_LEN];
    DataOptions o = {.datasets = names, .n_datasets = 1, .dataset_dir = t.dir, .stage = DATA_STAGE_SFT, .val_size = 2};
    assert_null(data_load(&o, err, sizeof err));
    assert_string_equal(err, "val_size=2 should be smaller than the number of examples 2");
    o.val_size = 1.0;
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "val_size=1.0 is a fraction"));
    o.val_size = 0.5;
    DataSet *ds = data_load(&o, err, sizeof err);
    assert_non_null(ds);
    size_t n;
    data_train(ds, &n);
    assert_int_equal(n, 1);
    data_eval(ds, &n);
    assert_int_equal(n, 1);
    data_free(ds);
    o.eval_datasets = names + 1, o.n_eval_datasets = 1;
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "val_size and eval_dataset cannot both be given"));
    o.val_size = 0;
    ds = data_load(&o, err, sizeof err);
    assert_non_null(ds);
    data_eval(ds, &n);
    assert_int_equal(n, 2);
    data_free(ds);
    o.eval_datasets = NULL, o.n_eval_datasets = 0;
    o.n_datasets = 2;
    o.mix = DATA_MIX_INTERLEAVE_UNDER;
    o.interleave_probs = (const double[]){0.5, 0.6};
    o.n_interleave_probs = 2;
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "interleave_probs must sum to 1"));
    o.mix = DATA_MIX_INTERLEAVE_OVER;
    o.interleave_probs = (const double[]){1.0, 0.0};
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "has probability 0"));
    tmp_free(&t);
}

// --- the Lua data hook

static void test_hook(void **state) {
    (void)state;
    Tmp t;
    tmp_make(&t);
    TMP_WRITE(&t, "dataset_info.json", "{\"d\": {\"file_name\": \"x.jsonl\"}}");
    TMP_WRITE(&t, "x.jsonl",
              "{\"instruction\": \"  padded  \", \"input\": \"\", \"output\": \"kept\"}\n"
              "{\"instruction\": \"empty answer\", \"input\": \"\", \"output\": \"   \"}\n"
              "{\"instruction\": \"q\", \"input\": \"ctx\", \"output\": \"a\", \"extra\": [1, 2.5, {\"k\": true}]}\n");
    const char *names[] = {"d"};
    char err[ERR_LEN];
    DataOptions o = {.datasets = names, .n_datasets = 1, .dataset_dir = t.dir, .stage = DATA_STAGE_SFT,
                     .data_hook = "examples/lua_hook/hook.lua", .threads = 2};
    DataSet *ds = data_load(&o, err, sizeof err);
    if (!ds) fail_msg("%s", err);
    size_t n;
    const DataExample *ex = data_train(ds, &n);
    assert_int_equal(n, 2);
    assert_string_equal(ex[0].prompt[0].content, "padded");
    assert_string_equal(ex[1].prompt[0].content, "q\nctx");
    assert_int_equal(ex[1].record, 2);
    const DataStats *s = data_stats(ds);
    assert_int_equal(s->read, 3);
    assert_int_equal(s->dropped_by_hook, 1);
    assert_int_equal(s->kept, 2);
    data_free(ds);

    /* a hook that fails on one record: the message names the hook line and the record */
    TMP_WRITE(&t, "h.lua", "return {transform = function(ex)\n  if ex.instruction == 'q' then\n"
                           "    error('cannot handle ' .. ex.input)\n  end\n  return ex\nend}\n");
    char *hook = util_path_join(t.dir, "h.lua");
    o.data_hook = hook;
    assert_null(data_load(&o, err, sizeof err));
    char want[512];
    snprintf(want, sizeof want, "%s:3: cannot handle ctx (data_hook, on %s/x.jsonl:3: record 2)", hook, t.dir);
    assert_string_equal(err, want);
    /* the hook may rewrite the record into another shape, nested tables included */
    TMP_WRITE(&t, "h.lua", "return {transform = function(ex)\n"
                           "  return {instruction = ex.instruction .. '!', input = #(ex.extra or {}) .. '', output = 'x'}\n"
                           "end}\n");
    ds = data_load(&o, err, sizeof err);
    if (!ds) fail_msg("%s", err);
    ex = data_train(ds, &n);
    assert_int_equal(n, 3);
    assert_string_equal(ex[2].prompt[0].content, "q!\n3");
    assert_string_equal(ex[0].prompt[0].content, "  padded  !\n0");
    data_free(ds);
    /* returning something else is an error that says what to return */
    TMP_WRITE(&t, "h.lua", "return {transform = function(ex) return 'no' end}\n");
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "transform must return the example (a table) or nil, it returned a string"));
    TMP_WRITE(&t, "h.lua", "return {transform = function(ex) return {instruction = print} end}\n");
    assert_null(data_load(&o, err, sizeof err));
    assert_non_null(strstr(err, "value at example.instruction is a function"));
    /* hooks see the records in order in one state: a hook may drop duplicates */
    TMP_WRITE(&t, "x.jsonl", "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"1\"}\n"
                             "{\"instruction\": \"b\", \"input\": \"\", \"output\": \"2\"}\n"
                             "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"3\"}\n");
    TMP_WRITE(&t, "h.lua", "local seen = {}\nreturn {transform = function(ex)\n"
                           "  if seen[ex.instruction] then return nil end\n"
                           "  seen[ex.instruction] = true\n  return ex\nend}\n");
    o.threads = 4;
    ds = data_load(&o, err, sizeof err);
    if (!ds) fail_msg("%s", err);
    ex = data_train(ds, &n);
    assert_int_equal(n, 2);
    assert_string_equal(ex[1].response[0].content, "2");
    assert_int_equal(data_stats(ds)->dropped_by_hook, 1);
    data_free(ds);
    free(hook);
    tmp_free(&t);
}

/* Any number of threads gives the same examples in the same order. */
static void test_threads_deterministic(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "data/llamafactory");
    const char *names[] = {"alpaca_en_demo", "glaive_toolcall_en_demo", "identity"};
    char hex[3][65];
    int threads[3] = {1, 3, 16};
    for (int k = 0; k < 3; k++) {
        DataOptions o = {.datasets = names, .n_datasets = 3, .dataset_dir = dir, .stage = DATA_STAGE_SFT,
                         .threads = threads[k], .val_size = 0.05, .seed = 5};
        char err[ERR_LEN];
        DataSet *ds = data_load(&o, err, sizeof err);
        if (!ds) fail_msg("%s", err);
        size_t n;
        const DataExample *ex = data_train(ds, &n);
        assert_int_equal(n, 1390 - 70);
        StrBuf sb = {0};
        for (size_t i = 0; i < n; i++) canon(&sb, &ex[i]);
        uint8_t d[32];
        sha256(sb.data, sb.len, d);
        sha256_hex(d, hex[k]);
        sb_free(&sb);
        data_free(ds);
    }
    assert_string_equal(hex[0], hex[1]);
    assert_string_equal(hex[0], hex[2]);
    free(dir);
}

// --- report, options from a recipe

static void test_report_and_recipe(void **state) {
    (void)state;
    static const char Y[] = "model_name_or_path: m\noutput_dir: o\ndataset: alpaca_csv, folder\n"
                            "dataset_dir: " FIX_DIR "\nmix_strategy: interleave_under\ninterleave_probs: 0.25,0.75\n"
                            "max_samples: 4\nseed: 9\ndata_on_error: skip\nval_size: 0.2\n";
    Diags d = {0};
    Recipe *r = recipe_parse("t.yaml", Y, sizeof Y - 1, NULL, 0, RECIPE_FOR_CHECK, &d);
    if (!r) fail_msg("%s", d.text.data);
    DataOptions o;
    char err[ERR_LEN];
    assert_true(data_options_from_recipe(r, &o, err, sizeof err));
    assert_int_equal(o.n_datasets, 2);
    assert_string_equal(o.datasets[1], "folder");
    assert_int_equal(o.mix, DATA_MIX_INTERLEAVE_UNDER);
    assert_int_equal(o.n_interleave_probs, 2);
    assert_true(o.interleave_probs[0] == 0.25);
    assert_int_equal(o.max_samples, 4);
    assert_int_equal(o.seed, 9);
    assert_true(o.skip_bad);
    assert_int_equal(o.stage, DATA_STAGE_SFT);
    DataSet *ds = data_load(&o, err, sizeof err);
    if (!ds) fail_msg("%s", err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    data_report(ds, f);
    fclose(f);
    size_t nt, ne;
    data_train(ds, &nt);
    data_eval(ds, &ne);
    char first[128];
    snprintf(first, sizeof first, "data: %zu train examples, %zu eval examples\n", nt, ne);
    assert_int_equal(strncmp(buf, first, strlen(first)), 0);
    assert_non_null(strstr(buf, "alpaca_csv"));
    assert_non_null(strstr(buf, "5 read        4 selected        4 kept      0 dropped by hook      0 skipped"));
    free(buf);
    data_free(ds);
    data_options_free(&o);
    recipe_free(r);
    diags_free(&d);
}

// --- main: the fixture's cases become tests of their own

static int fixture_setup(void) {
    char err[ERR_LEN];
    size_t len;
    g_fix_text = util_read_file(FIXTURE, &len, err, sizeof err);
    if (!g_fix_text) return fprintf(stderr, "%s\n", err), -1;
    g_fix = json_parse(g_fix_text, len, FIXTURE, err, sizeof err);
    if (!g_fix) return fprintf(stderr, "%s\n", err), -1;
    return 0;
}

int main(void) {
    if (fixture_setup() != 0) return 1;
    const Json *root = json_root(g_fix);
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_numpy_streams),       cmocka_unit_test(test_json_dumps),
        cmocka_unit_test(test_tsv_equals_csv),      cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_fatal_errors),        cmocka_unit_test(test_dataset_info_errors),
        cmocka_unit_test(test_split_and_mix_errors), cmocka_unit_test(test_hook),
        cmocka_unit_test(test_report_and_recipe),  cmocka_unit_test(test_threads_deterministic),
    };
    size_t nf = sizeof fixed / sizeof fixed[0], n = nf + root->obj.n;
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    memcpy(tests, fixed, sizeof fixed);
    char **names = calloc(root->obj.n, sizeof *names);
    for (size_t i = 0; i < root->obj.n; i++) {
        names[i] = xprintf("lf_parity_%s", root->obj.keys[i]);
        tests[nf + i] = (struct CMUnitTest){.name = names[i], .test_func = test_lf_case,
                                            .initial_state = (void *)root->obj.keys[i]};
    }
    int rc = _cmocka_run_group_tests("test_dataset", tests, n, NULL, NULL);
    for (size_t i = 0; i < root->obj.n; i++) free(names[i]);
    free(names);
    free(tests);
    json_free(g_fix);
    free(g_fix_text);
    return rc;
}
