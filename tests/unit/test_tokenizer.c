/* test_tokenizer.c - the tokenizer against Hugging Face's own output.
 *
 *   - corpus identity: every line of ../shared/tokenizers/corpus_public.jsonl encodes to the
 *     ids HF's Rust library gave (expected_public.jsonl: add_special_tokens false;
 *     expected_public_special.jsonl: true), for each of the 8 tokenizers; one test per
 *     tokenizer and variant, each printing how many lines matched;
 *   - decode identity: tests/fixtures/tokenizers/<name>/decode.jsonl, written by
 *     tests/golden/gen_tokenizer_decode.py with HF's decode;
 *   - synthetic tokenizers (tests/fixtures/tokenizers/synthetic/, trained and encoded by HF
 *     with the same script) for what the 8 do not use: added-token lstrip/rstrip/
 *     single_word/normalized rules, Metaspace, split behaviors, subword prefix/suffix...;
 *   - the vocabulary and special-token API (values from HF), several threads sharing one
 *     tokenizer;
 *   - bad input: files HF rejects, truncated or malformed JSON, unsupported types.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testutil.h"
#include "tokenizer.h"
#include "util.h"

// --- helpers

static char *read_all(const char *path, size_t *len) {
    char err[ERR_LEN];
    char *s = util_read_file(path, len, err, sizeof err);
    if (!s) fail_msg("%s", err);
    return s;
}

/* Ids of a JSON array into out. */
static void json_ids(const Json *arr, TokIds *out) {
    out->len = 0;
    assert_non_null(arr);
    assert_int_equal(arr->type, JSON_ARRAY);
    for (size_t i = 0; i < arr->arr.n; i++) {
        int64_t v;
        assert_true(json_as_int(arr->arr.items[i], &v));
        if (out->len == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 64;
            out->ids = realloc(out->ids, out->cap * sizeof *out->ids);
        }
        out->ids[out->len++] = (int32_t)v;
    }
}

static void print_ids(const char *label, const TokIds *ids) {
    fprintf(stderr, "    %s (%zu):", label, ids->len);
    for (size_t i = 0; i < ids->len && i < 40; i++) fprintf(stderr, " %d", ids->ids[i]);
    fprintf(stderr, ids->len > 40 ? " ...\n" : "\n");
}

/* The tokenizers of ../shared, each loaded once (Gemma 3's takes a second) and shared by the
 * tests; NULL when ../shared lacks it. Freed by the group teardown. */
static struct {
    const char *name;
    Tokenizer *tok;
} loaded[8];

static Tokenizer *shared_tokenizer(const char *name) {
    size_t i = 0;
    for (; i < 8 && loaded[i].name; i++)
        if (!strcmp(loaded[i].name, name)) return loaded[i].tok;
    assert_true(i < 8);
    char rel[256], err[ERR_LEN];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    char *dir = test_shared_path(rel);
    if (!dir) return NULL;
    Tokenizer *tok = tok_load(dir, err, sizeof err);
    free(dir);
    if (!tok) fail_msg("%s", err);
    loaded[i].name = name;
    loaded[i].tok = tok;
    return tok;
}

static int free_loaded(void **state) {
    (void)state;
    for (size_t i = 0; i < 8; i++) tok_free(loaded[i].tok);
    return 0;
}

/* Encode every corpus line, compare with HF's ids. */
static void check_corpus(const char *name, bool special) {
    char rel[256], err[ERR_LEN];
    snprintf(rel, sizeof rel, "tokenizers/%s/%s", name,
             special ? "expected_public_special.jsonl" : "expected_public.jsonl");
    SHARED_OR_SKIP(expected_path, rel);
    Tokenizer *tok = shared_tokenizer(name);
    assert_non_null(tok);
    size_t len;
    char *text = read_all(expected_path, &len);
    TokScratch *scratch = tok_scratch_new();
    TokIds got = {0}, want = {0};
    size_t lines = 0, matched = 0;
    for (char *line = text, *nl; line < text + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) nl = text + len;
        if (nl == line) continue;
        JsonDoc *doc = json_parse(line, (size_t)(nl - line), expected_path, err, sizeof err);
        if (!doc) fail_msg("%s", err);
        const Json *s = json_get(json_root(doc), "text");
        assert_non_null(json_as_str(s));
        json_ids(json_get(json_root(doc), "ids"), &want);
        lines++;
        if (!tok_encode(tok, scratch, s->str.s, s->str.len, special, &got, err, sizeof err))
            fail_msg("%s line %zu: %s", name, lines, err);
        if (got.len == want.len && memcmp(got.ids, want.ids, got.len * sizeof *got.ids) == 0)
            matched++;
        else if (lines - matched <= 3) {
            fprintf(stderr, "  %s%s line %zu differs: %.80s\n", name, special ? " (special)" : "",
                    lines, s->str.s);
            print_ids("llfc", &got);
            print_ids("HF  ", &want);
        }
        json_free(doc);
    }
    fprintf(stderr, "  %-12s %-8s %zu/%zu lines match\n", name, special ? "special" : "plain",
            matched, lines);
    tok_ids_free(&got);
    tok_ids_free(&want);
    tok_scratch_free(scratch);
    free(text);
    free(expected_path);
    assert_true(lines > 0);
    assert_int_equal(matched, lines);
}

#define CORPUS_TESTS(fn, name)                                           \
    static void test_corpus_##fn(void **state) {                         \
        (void)state;                                                     \
        check_corpus(name, false);                                       \
    }                                                                    \
    static void test_corpus_##fn##_special(void **state) {               \
        (void)state;                                                     \
        check_corpus(name, true);                                        \
    }

CORPUS_TESTS(qwen3, "qwen3")
CORPUS_TESTS(llama3, "llama3")
CORPUS_TESTS(llama3_1, "llama3_1")
CORPUS_TESTS(deepseek_v3, "deepseek_v3")
CORPUS_TESTS(gemma3, "gemma3")
CORPUS_TESTS(mistral, "mistral")
CORPUS_TESTS(llama2, "llama2")
CORPUS_TESTS(phi3_mini, "phi-3-mini")

// --- decode identity and the synthetic tokenizers (fixtures written by HF)

typedef void (*LineFn)(const Json *rec, void *ctx);

/* Call fn for each JSON line of a file; returns the number of lines. */
static size_t each_line(const char *path, LineFn fn, void *ctx) {
    size_t len, n = 0;
    char *text = read_all(path, &len), err[ERR_LEN];
    for (char *line = text, *nl; line < text + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) nl = text + len;
        if (nl == line) continue;
        JsonDoc *doc = json_parse(line, (size_t)(nl - line), path, err, sizeof err);
        if (!doc) fail_msg("%s", err);
        fn(json_root(doc), ctx);
        json_free(doc);
        n++;
    }
    free(text);
    return n;
}

typedef struct {
    const char *name;
    Tokenizer *tok;
    TokScratch *scratch;
    TokIds ids, want;
    StrBuf text;
    size_t n, ok;
} Check;

static void check_decode_line(const Json *rec, void *ctx) {
    Check *c = ctx;
    char err[ERR_LEN];
    bool skip;
    const Json *want = json_get(rec, "text");
    assert_true(json_as_bool(json_get(rec, "skip_special_tokens"), &skip));
    assert_non_null(json_as_str(want));
    json_ids(json_get(rec, "ids"), &c->ids);
    if (!tok_decode(c->tok, c->ids.ids, c->ids.len, skip, &c->text, err, sizeof err))
        fail_msg("%s: %s", c->name, err);
    c->n++;
    if (c->text.len == want->str.len && memcmp(c->text.data, want->str.s, c->text.len) == 0)
        c->ok++;
    else if (c->n - c->ok <= 3)
        fprintf(stderr, "  %s decode (skip=%d) differs:\n    llfc %.100s\n    HF   %.100s\n",
                c->name, skip, c->text.data, want->str.s);
}

static void check_encode_line(const Json *rec, void *ctx) {
    Check *c = ctx;
    char err[ERR_LEN];
    bool special;
    const Json *text = json_get(rec, "text");
    assert_true(json_as_bool(json_get(rec, "add_special_tokens"), &special));
    assert_non_null(json_as_str(text));
    json_ids(json_get(rec, "ids"), &c->want);
    if (!tok_encode(c->tok, c->scratch, text->str.s, text->str.len, special, &c->ids, err,
                    sizeof err))
        fail_msg("%s: %s", c->name, err);
    c->n++;
    if (c->ids.len == c->want.len &&
        memcmp(c->ids.ids, c->want.ids, c->ids.len * sizeof *c->ids.ids) == 0)
        c->ok++;
    else if (c->n - c->ok <= 3) {
        fprintf(stderr, "  %s encode (special=%d) differs: %.80s\n", c->name, special,
                text->str.s);
        print_ids("llfc", &c->ids);
        print_ids("HF  ", &c->want);
    }
}

static void check_free(Check *c, bool own_tok) {
    tok_ids_free(&c->ids);
    tok_ids_free(&c->want);
    sb_free(&c->text);
    tok_scratch_free(c->scratch);
    if (own_tok) tok_free(c->tok);
}

/* tests/fixtures/tokenizers/<name>/decode.jsonl against the tokenizer in ../shared. */
static void check_decode(const char *name) {
    char rel[256], fixture[256];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    SHARED_OR_SKIP(dir, rel);
    Check c = {.name = name, .tok = shared_tokenizer(name)};
    snprintf(fixture, sizeof fixture, "tests/fixtures/tokenizers/%s/decode.jsonl", name);
    each_line(fixture, check_decode_line, &c);
    fprintf(stderr, "  %-12s decode   %zu/%zu match\n", name, c.ok, c.n);
    assert_true(c.n > 0);
    assert_int_equal(c.ok, c.n);
    check_free(&c, false);
    free(dir);
}

#define DECODE_TEST(fn, name)                            \
    static void test_decode_##fn(void **state) {         \
        (void)state;                                     \
        check_decode(name);                              \
    }

DECODE_TEST(qwen3, "qwen3")
DECODE_TEST(llama3, "llama3")
DECODE_TEST(llama3_1, "llama3_1")
DECODE_TEST(deepseek_v3, "deepseek_v3")
DECODE_TEST(gemma3, "gemma3")
DECODE_TEST(mistral, "mistral")
DECODE_TEST(llama2, "llama2")
DECODE_TEST(phi3_mini, "phi-3-mini")

/* A synthetic tokenizer of tests/fixtures/tokenizers/synthetic/: encode and decode. */
static void check_synthetic(const char *name) {
    char dir[256], path[300], err[ERR_LEN];
    snprintf(dir, sizeof dir, "tests/fixtures/tokenizers/synthetic/%s", name);
    Check c = {.name = name, .tok = tok_load(dir, err, sizeof err), .scratch = tok_scratch_new()};
    if (!c.tok) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/encode.jsonl", dir);
    each_line(path, check_encode_line, &c);
    size_t enc_n = c.n, enc_ok = c.ok;
    c.n = c.ok = 0;
    snprintf(path, sizeof path, "%s/decode.jsonl", dir);
    each_line(path, check_decode_line, &c);
    fprintf(stderr, "  %-16s encode %zu/%zu, decode %zu/%zu match\n", name, enc_ok, enc_n, c.ok,
            c.n);
    assert_int_equal(enc_ok, enc_n);
    assert_int_equal(c.ok, c.n);
    check_free(&c, true);
}

#define SYNTHETIC_TEST(name)                             \
    static void test_synthetic_##name(void **state) {    \
        (void)state;                                     \
        check_synthetic(#name);                          \
    }

SYNTHETIC_TEST(added_rules)
SYNTHETIC_TEST(metaspace_first)
SYNTHETIC_TEST(metaspace_never)
SYNTHETIC_TEST(subword_affixes)
SYNTHETIC_TEST(splits)
SYNTHETIC_TEST(bytelevel_regex)
SYNTHETIC_TEST(literal_splits)

// --- special tokens and the vocabulary API

static void encode_ok(Tokenizer *tok, const char *text, bool special, TokIds *ids) {
    char err[ERR_LEN];
    TokScratch *s = tok_scratch_new();
    if (!tok_encode(tok, s, text, strlen(text), special, ids, err, sizeof err))
        fail_msg("%s", err);
    tok_scratch_free(s);
}

static void test_special_tokens(void **state) {
    (void)state;
    Tokenizer *tok = shared_tokenizer("qwen3");
    if (!tok) skip();
    size_t len;
    /* tokenizer_config.json: bos null, eos <|im_end|>, pad <|endoftext|> */
    assert_int_equal(tok_bos_id(tok), -1);
    assert_int_equal(tok_eos_id(tok), 151645);
    assert_int_equal(tok_pad_id(tok), 151643);
    assert_int_equal(tok_token_to_id(tok, "<|im_start|>", 12), 151644);
    assert_string_equal(tok_id_to_token(tok, 151644, &len), "<|im_start|>");
    assert_true(tok_is_special(tok, 151644));
    assert_false(tok_is_special(tok, 151657)); /* <tool_call> is added but not special */
    assert_int_equal(tok_vocab_size(tok), 151669);
    assert_int_equal(tok_id_limit(tok), 151669);
    assert_null(tok_id_to_token(tok, 999999, &len));
    assert_int_equal(tok_token_to_id(tok, "no such token", 13), -1);
    TokIds ids = {0};
    encode_ok(tok, "<|im_start|>user\nhi<|im_end|>", true, &ids); /* HF: */
    int32_t want[] = {151644, 872, 198, 6023, 151645};
    assert_int_equal(ids.len, 5);
    assert_memory_equal(ids.ids, want, sizeof want);

    tok = shared_tokenizer("llama2");
    assert_int_equal(tok_bos_id(tok), 1);
    assert_int_equal(tok_eos_id(tok), 2);
    assert_int_equal(tok_unk_id(tok), 0);
    assert_int_equal(tok_pad_id(tok), -1);
    assert_true(tok_add_bos_token(tok));
    assert_false(tok_add_eos_token(tok));
    /* normalized special tokens: HF gives their normalized form and does not skip them */
    assert_string_equal(tok_id_to_token(tok, 1, &len), "\xE2\x96\x81<s>");
    assert_false(tok_is_special(tok, 1));
    encode_ok(tok, "", true, &ids); /* the template survives an empty text */
    assert_int_equal(ids.len, 1);
    assert_int_equal(ids.ids[0], 1);
    encode_ok(tok, "", false, &ids);
    assert_int_equal(ids.len, 0);
    encode_ok(tok, "Hello <s>", false, &ids); /* matches "\u2581<s>" after normalization */
    int32_t want2[] = {15043, 1};
    assert_int_equal(ids.len, 2);
    assert_memory_equal(ids.ids, want2, sizeof want2);

    tok = shared_tokenizer("gemma3");
    assert_int_equal(tok_bos_id(tok), 2);
    assert_int_equal(tok_eos_id(tok), 106);
    assert_int_equal(tok_pad_id(tok), 0);
    assert_int_equal(tok_vocab_size(tok), 262145);
    assert_int_equal(tok_id_limit(tok), 262145);
    tok_ids_free(&ids);
}

// --- several threads share one tokenizer

#include <pthread.h>

typedef struct {
    const Tokenizer *tok;
    const char *text;
    size_t len;
    TokIds ids;
    bool ok;
} Job;

static void *encode_job(void *arg) {
    Job *j = arg;
    char err[ERR_LEN];
    TokScratch *s = tok_scratch_new();
    j->ok = true;
    for (int rep = 0; rep < 3 && j->ok; rep++)
        j->ok = tok_encode(j->tok, s, j->text, j->len, true, &j->ids, err, sizeof err);
    tok_scratch_free(s);
    return NULL;
}

static void test_threads_share_a_tokenizer(void **state) {
    (void)state;
    Tokenizer *tok = shared_tokenizer("llama3_1");
    if (!tok) skip();
    SHARED_OR_SKIP(corpus, "tokenizers/corpus_public.jsonl");
    size_t len;
    char *text = read_all(corpus, &len);
    TokIds alone = {0};
    encode_ok(tok, text, true, &alone);
    Job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (Job){.tok = tok, .text = text, .len = len};
        assert_int_equal(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(jobs[i].ok);
        assert_int_equal(jobs[i].ids.len, alone.len);
        assert_memory_equal(jobs[i].ids.ids, alone.ids, alone.len * sizeof *alone.ids);
        tok_ids_free(&jobs[i].ids);
    }
    tok_ids_free(&alone);
    free(text);
    free(corpus);
}

// --- bad input

/* tok_load_json must fail, and its message must contain `needle`. */
static void expect_load_error(const char *json, const char *needle) {
    char err[ERR_LEN] = "";
    Tokenizer *tok = tok_load_json(json, strlen(json), "t.json", err, sizeof err);
    if (tok) {
        tok_free(tok);
        fail_msg("loaded a bad tokenizer.json: %.200s", json);
    }
    if (!strstr(err, needle)) fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

#define MODEL_OK "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
                 "\"merges\": [\"a b\"]}"

static void test_bad_tokenizer_json(void **state) {
    (void)state;
    char err[ERR_LEN];
    /* the minimal good file loads */
    Tokenizer *tok = tok_load_json("{" MODEL_OK "}", strlen("{" MODEL_OK "}"), "t.json", err,
                                   sizeof err);
    if (!tok) fail_msg("%s", err);
    TokIds ids = {0};
    encode_ok(tok, "abba", false, &ids);
    int32_t want[] = {2, 1, 0}; /* "ab" "b" "a" */
    assert_int_equal(ids.len, 3);
    assert_memory_equal(ids.ids, want, sizeof want);
    /* text that is not UTF-8 is refused */
    TokScratch *s = tok_scratch_new();
    assert_false(tok_encode(tok, s, "a\xC3(b", 4, false, &ids, err, sizeof err));
    assert_non_null(strstr(err, "UTF-8"));
    tok_scratch_free(s);
    tok_ids_free(&ids);
    tok_free(tok);

    expect_load_error("", "t.json");
    expect_load_error("[1, 2]", "expected a JSON object");
    expect_load_error("{\"version\": \"1.0\"}", "no \"model\"");
    expect_load_error("{\"version\": \"2.0\", " MODEL_OK "}", "version");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
                      "model type \"WordPiece\" is not supported yet");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                      "model type \"Unigram\" is not supported yet");
    expect_load_error("{\"normalizer\": {\"type\": \"Precompiled\"}, " MODEL_OK "}",
                      "normalizer type \"Precompiled\" is not supported yet");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}, " MODEL_OK "}",
                      "pre_tokenizer type \"UnicodeScripts\" is not supported yet");
    expect_load_error("{\"decoder\": {\"type\": \"CTC\"}, " MODEL_OK "}",
                      "decoder type \"CTC\" is not supported yet");
    expect_load_error("{\"post_processor\": {\"type\": \"Magic\"}, " MODEL_OK "}",
                      "post_processor type \"Magic\" is not supported yet");
    expect_load_error("{\"normalizer\": {\"no type\": 1}, " MODEL_OK "}", "\"type\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                      "[\"a b\"]}}",
                      "\"b\", which is not in model.vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [\"a b\"]}}",
                      "\"ab\", which is not in model.vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
                      "id must be an integer");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0.5}, \"merges\": []}}",
                      "id must be an integer");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [\"a  b\"]}}",
                      "exactly one space");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [[\"a\"]]}}",
                      "pair");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, "
                      "\"merges\": []}}",
                      "dropout");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                      "\"(unclosed\"}, \"behavior\": \"Isolated\", \"invert\": false}, " MODEL_OK
                      "}",
                      "does not compile");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"},"
                      " \"behavior\": \"Sideways\", \"invert\": false}, " MODEL_OK "}",
                      "Sideways");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}, "
                      MODEL_OK "}",
                      "exactly one character");
    expect_load_error("{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
                      "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}], "
                      "\"special_tokens\": {}}, " MODEL_OK "}",
                      "\"<s>\"");
    expect_load_error("{\"added_tokens\": [{\"id\": 5}], " MODEL_OK "}", "content");
}

/* Every prefix of a real tokenizer.json is an error, never a crash. */
static void test_truncated_tokenizer_json(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "tokenizers/llama2/tokenizer.json");
    size_t len;
    char *text = read_all(path, &len), err[ERR_LEN];
    size_t cuts[] = {0, 1, 2, 10, 100, 377, 1000, 4096, 65536, len / 3, len / 2, len - 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        Tokenizer *tok = tok_load_json(text, cuts[i], path, err, sizeof err);
        if (tok) fail_msg("loaded a tokenizer.json cut at byte %zu", cuts[i]);
        assert_non_null(strstr(err, "tokenizer.json"));
    }
    free(text);
    free(path);
}

/* The copy of Llama 2's tokenizer.json that HF rejects ("Merges text file invalid at line
 * 18918"): four vocabulary keys and three merges had U+00A0 replaced by a space. */
static void test_corrupted_llama2(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "tokenizers/llama2/corrupted-original");
    char err[ERR_LEN];
    Tokenizer *tok = tok_load(dir, err, sizeof err);
    assert_null(tok);
    fprintf(stderr, "  corrupted llama2: %s\n", err);
    assert_non_null(strstr(err, "tokenizer.json:51057:"));
    assert_non_null(strstr(err, "model.merges[18917]"));
    assert_non_null(strstr(err, "exactly one space"));
    free(dir);
}

static void test_missing_files(void **state) {
    (void)state;
    char err[ERR_LEN];
    assert_null(tok_load("/nonexistent/tokenizer/dir", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/tokenizer/dir/tokenizer.json"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define CT(fn) cmocka_unit_test(test_corpus_##fn), cmocka_unit_test(test_corpus_##fn##_special)
        CT(qwen3), CT(llama3), CT(llama3_1), CT(deepseek_v3),
        CT(gemma3), CT(mistral), CT(llama2), CT(phi3_mini),
#undef CT
#define DT(fn) cmocka_unit_test(test_decode_##fn)
        DT(qwen3), DT(llama3), DT(llama3_1), DT(deepseek_v3),
        DT(gemma3), DT(mistral), DT(llama2), DT(phi3_mini),
#undef DT
#define ST(name) cmocka_unit_test(test_synthetic_##name)
        ST(added_rules), ST(metaspace_first), ST(metaspace_never), ST(subword_affixes),
        ST(splits), ST(bytelevel_regex), ST(literal_splits),
#undef ST
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_threads_share_a_tokenizer),
        cmocka_unit_test(test_bad_tokenizer_json),
        cmocka_unit_test(test_truncated_tokenizer_json),
        cmocka_unit_test(test_corrupted_llama2),
        cmocka_unit_test(test_missing_files),
    };
    return cmocka_run_group_tests(tests, NULL, free_loaded);
}
