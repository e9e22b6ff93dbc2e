/* test_model.c - config.json -> ModelSpec against what transformers builds, and every error.
 *
 * The oracle is transformers itself: tests/fixtures/model/NAME.config.json are small configs in
 * the shapes the Hub's real ones have (Llama 3.1 with llama3 rope, Qwen2.5 with yarn, Gemma 2
 * soft-caps, Gemma 3 sliding patterns, transformers v5's nested rope_parameters, ...), and
 * NAME.expected.json is what transformers 5.23 instantiated from each (AutoModelForCausalLM:
 * head_dim, layer types, rope after standardisation, activation module, biases, norms, the
 * state_dict's names and shapes, parameter count), written by
 * tests/golden/gen_safetensors_probe.py. The inline configs below test the errors.
 */
#include "testutil.h"

#include <math.h>

#include "json.h"
#include "model.h"
#include "util.h"

// --- helpers

static int64_t jint(const Json *obj, const char *key) {
    int64_t v;
    if (!json_as_int(json_get(obj, key), &v)) fail_msg("expected.json: no integer \"%s\"", key);
    return v;
}

static double jnum(const Json *obj, const char *key) {
    double v;
    if (!json_as_double(json_get(obj, key), &v)) fail_msg("expected.json: no number \"%s\"", key);
    return v;
}

static bool jbool(const Json *obj, const char *key) {
    bool v;
    if (!json_as_bool(json_get(obj, key), &v)) fail_msg("expected.json: no boolean \"%s\"", key);
    return v;
}

static void assert_close(double got, double want, const char *what) {
    if (fabs(got - want) > 1e-9 * fmax(1.0, fabs(want)))
        fail_msg("%s: got %.17g, transformers says %.17g", what, got, want);
}

static void check_rope(const Json *e, const ModelRope *r, const char *case_name) {
    const char *type = json_as_str(json_get(e, "type"));
    assert_non_null(type);
    if (strcmp(model_rope_type_name(r->type), type) != 0)
        fail_msg("%s: rope type %s, transformers says %s", case_name, model_rope_type_name(r->type),
                 type);
    assert_close(r->theta, jnum(e, "theta"), "rope theta");
    if (json_get(e, "factor")) assert_close(r->factor, jnum(e, "factor"), "rope factor");
    if (json_get(e, "original_max_positions"))
        assert_int_equal(r->original_max_positions, jint(e, "original_max_positions"));
    if (json_get(e, "low_freq_factor")) {
        assert_close(r->low_freq_factor, jnum(e, "low_freq_factor"), "low_freq_factor");
        assert_close(r->high_freq_factor, jnum(e, "high_freq_factor"), "high_freq_factor");
    }
    if (json_get(e, "beta_fast")) {
        assert_close(r->beta_fast, jnum(e, "beta_fast"), "beta_fast");
        assert_close(r->beta_slow, jnum(e, "beta_slow"), "beta_slow");
        assert_close(r->attention_factor, jnum(e, "attention_factor"), "attention_factor");
        assert_int_equal(r->truncate, jbool(e, "truncate"));
    }
}

/* Every field transformers determines, then the tensor list name by name. */
static void check_against_transformers(const char *name) {
    char *config = xprintf("tests/fixtures/model/%s.config.json", name);
    char *expected = xprintf("tests/fixtures/model/%s.expected.json", name);
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_load(&m, config, err, sizeof err)) fail_msg("%s", err);
    JsonDoc *doc = test_load_json(expected);
    const Json *e = json_root(doc);

    assert_string_equal(m.model_type, json_as_str(json_get(e, "model_type")));
    assert_int_equal(m.V, jint(e, "V"));
    assert_int_equal(m.C, jint(e, "C"));
    assert_int_equal(m.L, jint(e, "L"));
    assert_int_equal(m.NH, jint(e, "NH"));
    assert_int_equal(m.NKV, jint(e, "NKV"));
    assert_int_equal(m.HD, jint(e, "HD"));
    assert_int_equal(m.FF, jint(e, "FF"));
    assert_int_equal(m.max_positions, jint(e, "max_positions"));
    assert_close(m.rms_norm_eps, jnum(e, "rms_norm_eps"), "rms_norm_eps");
    assert_close(m.norm_offset, jnum(e, "norm_offset"), "norm_offset");
    assert_close(m.embed_scale, jnum(e, "embed_scale"), "embed_scale");
    assert_close(m.query_scale, jnum(e, "query_scale"), "query_scale");
    assert_close(m.attn_softcap, jnum(e, "attn_softcap"), "attn_softcap");
    assert_close(m.final_softcap, jnum(e, "final_softcap"), "final_softcap");
    assert_string_equal(model_act_name(m.act), json_as_str(json_get(e, "act")));
    assert_int_equal(m.tie_word_embeddings, jbool(e, "tie_word_embeddings"));
    assert_int_equal(m.qkv_bias, jbool(e, "qkv_bias"));
    assert_int_equal(m.o_bias, jbool(e, "o_bias"));
    assert_int_equal(m.mlp_bias, jbool(e, "mlp_bias"));
    assert_int_equal(m.qk_norm, jbool(e, "qk_norm"));
    assert_int_equal(m.sandwich_norms, jbool(e, "sandwich_norms"));
    check_rope(json_get(e, "rope"), &m.rope, name);
    check_rope(json_get(e, "rope_local"), &m.rope_local, name);
    assert_int_equal(m.sliding_window, jint(e, "sliding_window"));
    const Json *ls = json_get(e, "layer_sliding");
    assert_int_equal(ls->arr.n, m.L);
    for (int64_t l = 0; l < m.L; l++) {
        bool want;
        assert_true(json_as_bool(ls->arr.items[l], &want));
        if (m.layer_sliding[l] != want)
            fail_msg("%s: layer %lld sliding=%d, transformers says %d", name, (long long)l,
                     m.layer_sliding[l], want);
    }
    assert_int_equal(m.bos_id, jint(e, "bos_id"));
    assert_int_equal(m.pad_id, jint(e, "pad_id"));
    const Json *eos = json_get(e, "eos_ids");
    assert_int_equal(m.n_eos, eos->arr.n);
    for (int i = 0; i < m.n_eos; i++) {
        int64_t id;
        assert_true(json_as_int(eos->arr.items[i], &id));
        assert_int_equal(m.eos_ids[i], id);
    }
    assert_int_equal(model_param_count(&m), jint(e, "param_count"));

    // the state_dict, in transformers' order
    size_t n;
    ModelTensor *t = model_tensors(&m, &n);
    const Json *want = json_get(e, "tensors");
    if (n != want->arr.n) fail_msg("%s: %zu tensors, transformers has %zu", name, n, want->arr.n);
    int64_t counted = 0;
    for (size_t i = 0; i < n; i++) {
        const Json *w = want->arr.items[i];
        assert_string_equal(t[i].name, json_as_str(json_at(w, 0)));
        const Json *shape = json_at(w, 1);
        assert_int_equal(t[i].ndim, shape->arr.n);
        int64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            int64_t dim;
            assert_true(json_as_int(shape->arr.items[d], &dim));
            assert_int_equal(t[i].shape[d], dim);
            numel *= dim;
        }
        counted += numel;
    }
    assert_int_equal(counted, model_param_count(&m));
    free(t);
    json_free(doc);
    model_free(&m);
    free(config);
    free(expected);
}

// --- each family against transformers

#define FAMILY_TEST(NAME)                                                                     \
    static void test_##NAME(void **state) {                                                   \
        (void)state;                                                                          \
        check_against_transformers(#NAME);                                                    \
    }
FAMILY_TEST(llama31)
FAMILY_TEST(llama2_linear_bias)
FAMILY_TEST(llama_dynamic_v5)
FAMILY_TEST(llama_rope_both) // rope_scaling and rope_parameters disagree: v5 takes rope_scaling
FAMILY_TEST(mistral_sliding)
FAMILY_TEST(mistral_nemo_headdim)
FAMILY_TEST(qwen25_yarn_tied)
FAMILY_TEST(qwen2_sliding)
FAMILY_TEST(qwen3)
FAMILY_TEST(gemma_legacy_gelu)
FAMILY_TEST(gemma2)
FAMILY_TEST(gemma3_1b)
FAMILY_TEST(gemma3_linear_layertypes)
FAMILY_TEST(gemma3_nested_v5)

/* The real pretrained Llama in ../shared: sizes from its config.json, 260K parameters. */
static void test_stories260k(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "models/stories260K/hf");
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_load(&m, dir, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.model_type, "llama");
    assert_string_equal(m.architecture, "LlamaForCausalLM");
    assert_int_equal(m.V, 512);
    assert_int_equal(m.C, 64);
    assert_int_equal(m.L, 5);
    assert_int_equal(m.NH, 8);
    assert_int_equal(m.NKV, 4);
    assert_int_equal(m.HD, 8);
    assert_int_equal(m.FF, 172);
    assert_true(m.tie_word_embeddings);
    assert_int_equal(m.dtype, MODEL_DTYPE_F32);
    assert_true(m.rms_norm_eps == 1e-5);
    assert_true(m.rope.type == MODEL_ROPE_DEFAULT && m.rope.theta == 10000.0);
    assert_int_equal(m.bos_id, 1);
    assert_int_equal(m.n_eos, 1);
    assert_int_equal(m.eos_ids[0], 2);
    // 512*64 + 5 * (64*64 + 2*32*64 + 64*64 + 3*172*64 + 2*64) + 64
    assert_int_equal(model_param_count(&m), 260032);
    assert_true(strstr(m.path, "stories260K/hf/config.json") != NULL);
    model_free(&m);
    free(dir);
}

/* What init-model builds from flags equals what the loader reads back from the same values. */
static void test_init_defaults(void **state) {
    (void)state;
    char err[ERR_LEN];
    ModelSpec m;
    assert_true(model_init_defaults(&m, "qwen3", 512, 64, 2, 4, 2, 32, 192, err, sizeof err));
    assert_true(m.qk_norm && !m.tie_word_embeddings && m.sliding_window == 0);
    assert_int_equal(m.HD, 32);
    model_free(&m);
    assert_true(model_init_defaults(&m, "gemma2", 256, 64, 4, 8, 4, 0, 128, err, sizeof err));
    assert_int_equal(m.HD, 8); // C / NH when not given (the family default of 256 is for 2B+)
    assert_true(m.layer_sliding[0] && !m.layer_sliding[1] && m.sandwich_norms);
    assert_true(m.attn_softcap == 50 && m.final_softcap == 30 && m.norm_offset == 1);
    model_free(&m);
    assert_false(model_init_defaults(&m, "mixtral", 256, 64, 4, 8, 4, 0, 128, err, sizeof err));
    assert_non_null(strstr(err, "llama, mistral, qwen2"));
    assert_false(model_init_defaults(&m, "llama", 256, 64, 4, 8, 3, 0, 128, err, sizeof err));
    assert_non_null(strstr(err, "must divide"));
}

// --- config.json out and back in

/* A valid llama body to break one key at a time; every key on its own line. */
#define SIZES                                                                                 \
    "\"hidden_size\": 64,\n\"intermediate_size\": 128,\n\"num_hidden_layers\": 2,\n"          \
    "\"num_attention_heads\": 4,\n\"vocab_size\": 256"


static void assert_same_rope(const ModelRope *a, const ModelRope *b) {
    assert_int_equal(a->type, b->type);
    assert_true(a->theta == b->theta && a->factor == b->factor);
    assert_true(a->low_freq_factor == b->low_freq_factor && a->high_freq_factor == b->high_freq_factor);
    if (a->type == MODEL_ROPE_LLAMA3 || a->type == MODEL_ROPE_YARN)
        assert_int_equal(a->original_max_positions, b->original_max_positions);
    assert_true(a->beta_fast == b->beta_fast && a->beta_slow == b->beta_slow &&
                a->attention_factor == b->attention_factor && a->mscale == b->mscale &&
                a->mscale_all_dim == b->mscale_all_dim && a->truncate == b->truncate);
}

/* model_write_config then model_parse gives the same spec, for every fixture family. */
static void test_config_round_trip(void **state) {
    (void)state;
    const char *names[] = {"llama31", "llama2_linear_bias", "llama_dynamic_v5", "llama_rope_both",
                           "mistral_sliding",
                           "mistral_nemo_headdim", "qwen25_yarn_tied", "qwen2_sliding", "qwen3",
                           "gemma_legacy_gelu", "gemma2", "gemma3_1b",
                           "gemma3_linear_layertypes", "gemma3_nested_v5"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *path = xprintf("tests/fixtures/model/%s.config.json", names[i]);
        char err[ERR_LEN];
        ModelSpec a, b;
        if (!model_load(&a, path, err, sizeof err)) fail_msg("%s", err);
        StrBuf out = {0};
        model_write_config(&a, &out);
        if (!model_parse(&b, out.data, out.len, "written/config.json", err, sizeof err))
            fail_msg("%s: the config llfc wrote does not read back: %s\n%s", names[i], err, out.data);
        assert_string_equal(a.model_type, b.model_type);
        assert_string_equal(a.architecture, b.architecture);
        assert_true(a.V == b.V && a.C == b.C && a.L == b.L && a.NH == b.NH && a.NKV == b.NKV &&
                    a.HD == b.HD && a.FF == b.FF && a.max_positions == b.max_positions);
        assert_true(a.rms_norm_eps == b.rms_norm_eps && a.norm_offset == b.norm_offset &&
                    a.embed_scale == b.embed_scale && a.attn_softcap == b.attn_softcap &&
                    a.final_softcap == b.final_softcap && a.act == b.act);
        assert_true(fabs(a.query_scale - b.query_scale) < 1e-15);
        assert_true(a.tie_word_embeddings == b.tie_word_embeddings && a.qkv_bias == b.qkv_bias &&
                    a.o_bias == b.o_bias && a.mlp_bias == b.mlp_bias && a.qk_norm == b.qk_norm &&
                    a.sandwich_norms == b.sandwich_norms);
        assert_same_rope(&a.rope, &b.rope);
        assert_same_rope(&a.rope_local, &b.rope_local);
        assert_int_equal(a.sliding_window, b.sliding_window);
        assert_memory_equal(a.layer_sliding, b.layer_sliding, (size_t)a.L);
        assert_true(a.bos_id == b.bos_id && a.pad_id == b.pad_id && a.n_eos == b.n_eos);
        assert_memory_equal(a.eos_ids, b.eos_ids, sizeof a.eos_ids[0] * (size_t)a.n_eos);
        assert_int_equal(a.dtype, b.dtype);
        assert_true(a.initializer_range == b.initializer_range);
        sb_free(&out);
        model_free(&a);
        model_free(&b);
        free(path);
    }
}

/* Numbers as Python's json writes them, so the files diff cleanly against transformers'. */
static void test_config_number_format(void **state) {
    (void)state;
    char err[ERR_LEN];
    ModelSpec m;
    assert_true(model_init_defaults(&m, "llama", 256, 64, 2, 4, 2, 0, 128, err, sizeof err));
    m.rope.theta = 500000.0;
    StrBuf out = {0};
    model_write_config(&m, &out);
    assert_non_null(strstr(out.data, "\"rms_norm_eps\": 1e-06,"));
    assert_non_null(strstr(out.data, "\"rope_theta\": 500000.0,"));
    assert_non_null(strstr(out.data, "\"initializer_range\": 0.02,"));
    assert_non_null(strstr(out.data, "\"attention_dropout\": 0.0,"));
    assert_non_null(strstr(out.data, "\"pad_token_id\": null,"));
    sb_free(&out);
    model_free(&m);
    // found by fuzz_config: a class name with a quote and a control character is written
    // escaped, so the config llfc writes always reads back
    const char *odd = "{\"model_type\": \"llama\", \"architectures\": [\"A\\\"\\fB\"],\n" SIZES "}";
    if (!model_parse(&m, odd, strlen(odd), "m/config.json", err, sizeof err)) fail_msg("%s", err);
    model_write_config(&m, &out);
    assert_non_null(strstr(out.data, "\"A\\\"\\u000cB\""));
    ModelSpec back;
    if (!model_parse(&back, out.data, out.len, "w/config.json", err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(back.architecture, "A\"\fB");
    model_free(&back);
    sb_free(&out);
    model_free(&m);
}

// --- errors: each names config.json:LINE:COL

/* Parse `text` as "m/config.json"; expect failure at line:col with `needle` in the message. */
static void expect_error(const char *text, int line, int col, const char *needle) {
    char err[ERR_LEN];
    ModelSpec m;
    if (model_parse(&m, text, strlen(text), "m/config.json", err, sizeof err)) {
        model_free(&m);
        fail_msg("accepted a bad config (wanted \"%s\"):\n%s", needle, text);
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "m/config.json:%d:%d: ", line, col);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, needle))
        fail_msg("wanted \"%s...%s\", got \"%s\"", prefix, needle, err);
    assert_null(m.layer_sliding); // nothing leaks on failure
}


static void test_error_syntax(void **state) {
    (void)state;
    expect_error("{\"model_type\": \"llama\",\n\"hidden_size\": 64,,\n}", 2, 19,
                 "expected a string key, found ','");
    expect_error("[1, 2]", 1, 1, "\"config\" must be an object, got array");
}

static void test_error_model_type(void **state) {
    (void)state;
    expect_error("{\n" SIZES "\n}", 1, 1, "missing \"model_type\"");
    expect_error("{\"model_type\": 3,\n" SIZES "}", 1, 16, "must be a string, got number");
    expect_error("{\"model_type\": \"mixtral\",\n\"num_local_experts\": 8,\n" SIZES "}", 1, 16,
                 "\"mixtral\" (a mixture-of-experts model) is not supported; llfc trains dense "
                 "decoder-only text models of these types: llama, mistral, qwen2, qwen3, gemma, "
                 "gemma2, gemma3_text");
    expect_error("{\n \"model_type\": \"qwen3_moe\",\n\"num_experts\": 128,\n" SIZES "}", 2, 16,
                 "mixture-of-experts");
    expect_error("{\"model_type\": \"deepseek_v3\",\n\"n_routed_experts\": 256,\n" SIZES "}", 1,
                 16, "\"deepseek_v3\" (a mixture-of-experts model)");
    expect_error("{\"model_type\": \"llava\",\n\"vision_config\": {},\n" SIZES "}", 1, 16,
                 "(a vision-language model)");
    expect_error("{\"model_type\": \"gpt2\",\n" SIZES "}", 1, 16, "\"gpt2\" is not supported");
    expect_error("{\"architectures\": [\"Gemma3ForConditionalGeneration\"],\n"
                 "\"model_type\": \"gemma3\",\n\"text_config\": {\"model_type\": \"gemma3_text\"}}",
                 2, 15, "(Gemma3ForConditionalGeneration); llfc trains its text-only form");
    expect_error("{\"model_type\": \"llama\",\n\"architectures\": \"LlamaForCausalLM\",\n" SIZES
                 "}", 2, 18, "\"architectures\" must be a non-empty array of strings");
}

static void test_error_sizes(void **state) {
    (void)state;
    expect_error("{\"model_type\": \"llama\",\n\"hidden_size\": 64,\n\"intermediate_size\": 128,\n"
                 "\"num_hidden_layers\": 2,\n\"num_attention_heads\": 4}", 1, 1,
                 "missing \"vocab_size\" (V, the vocabulary size)");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"vocab_size\": \"32000\"}", 7, 15,
                 "\"vocab_size\" must be an integer, got string");
    // duplicate keys: the last one counts, as in Python
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"hidden_size\": 64.5}", 7, 16,
                 "\"hidden_size\" must be an integer, got 64.5");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"num_hidden_layers\": 0}", 7, 22,
                 "\"num_hidden_layers\" is 0; it must be between 1 and 1024");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"hidden_size\": -64}", 7, 16,
                 "it must be between 1 and 65536");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"vocab_size\": 1000000000000}", 7,
                 15, "\"vocab_size\" is 1000000000000");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"hidden_size\": null}", 7, 16,
                 "must be a positive integer, got null");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"num_key_value_heads\": 3}", 7, 24,
                 "num_key_value_heads 3 must divide num_attention_heads 4");
    // mistral's default of 8 KV heads (transformers' MistralConfig) cannot serve 4 query heads
    expect_error("{\"model_type\": \"mistral\",\n" SIZES "}", 1, 1,
                 "num_key_value_heads 8 must divide num_attention_heads 4");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"num_attention_heads\": 6}", 7, 24,
                 "hidden_size 64 is not a multiple of num_attention_heads 6");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"head_dim\": 15}", 7, 13,
                 "head_dim 15 is odd");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"vocab_size\": 16777216,\n"
                 "\"hidden_size\": 65536,\n\"num_attention_heads\": 64}", 1, 1,
                 "parameters; llfc refuses more than 2^40");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"hidden_size\": 65536}", 5, 24,
                 "hidden_size / num_attention_heads = 16384 is more than 1024");
}

static void test_error_rope(void **state) {
    (void)state;
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_scaling\": {\"rope_type\": "
                 "\"longrope\", \"short_factor\": [1]}}", 7, 31,
                 "rope type \"longrope\" is not supported");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_scaling\": {\"type\": "
                 "\"linear\"}}", 7, 17, "rope type \"linear\" needs \"factor\"");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_scaling\": {\"rope_type\": "
                 "\"llama3\", \"factor\": 8}}", 7, 17, "needs \"low_freq_factor\"");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_parameters\": {\"rope_type\": "
                 "\"linear\", \"factor\": -2}}", 7, 54, "\"factor\" is -2; it must be greater than 0");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_theta\": \"big\"}", 7, 15,
                 "\"rope_theta\" must be a number, got string");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_scaling\": [1]}", 7, 17,
                 "must be an object or null");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rope_parameters\": {\"rope_type\": "
                 "\"default\", \"partial_rotary_factor\": 0.5}}", 7, 70,
                 "partial_rotary_factor 0.5 is not supported");
}

static void test_error_fields(void **state) {
    (void)state;
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"hidden_act\": \"relu\"}", 7, 15,
                 "activation \"relu\" is not supported");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"tie_word_embeddings\": 1}", 7, 24,
                 "\"tie_word_embeddings\" must be true or false, got number");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"torch_dtype\": \"float64\"}", 7, 16,
                 "\"torch_dtype\" is \"float64\"; llfc reads float32, float16 and bfloat16");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"eos_token_id\": [1, \"2\"]}", 7, 21,
                 "eos_token_id[1] must be a token id");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"bos_token_id\": -1}", 7, 17,
                 "\"bos_token_id\" is -1");
    expect_error("{\"model_type\": \"llama\",\n" SIZES ",\n\"rms_norm_eps\": 0}", 7, 17,
                 "\"rms_norm_eps\" is 0; it must be greater than 0");
    expect_error("{\"model_type\": \"qwen2\",\n" SIZES ",\n\"layer_types\": [\"full_attention\"]}",
                 7, 16, "\"layer_types\" has 1 entries but num_hidden_layers is 2");
    expect_error("{\"model_type\": \"gemma2\",\n" SIZES ",\n\"layer_types\": [\"full_attention\", "
                 "\"chunked_attention\"]}", 7, 35, "layer_types[1] must be");
    expect_error("{\"model_type\": \"gemma3_text\",\n" SIZES ",\n\"use_bidirectional_attention\": "
                 "true}", 7, 32, "this is an encoder");
    expect_error("{\"model_type\": \"gemma2\",\n" SIZES ",\n\"sliding_window\": 0}", 7, 19,
                 "\"sliding_window\" is 0");
}

/* Absent vs null: null means None in transformers (no window, derived head_dim, no token). */
static void test_null_means_none(void **state) {
    (void)state;
    const char *text = "{\"model_type\": \"mistral\",\n" SIZES ",\n\"num_key_value_heads\": null,"
                       "\"head_dim\": null, \"sliding_window\": null, \"bos_token_id\": null,"
                       "\"eos_token_id\": null, \"rope_scaling\": null}";
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_parse(&m, text, strlen(text), "m/config.json", err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.NKV, 4);
    assert_int_equal(m.HD, 16);
    assert_int_equal(m.sliding_window, 0);
    assert_int_equal(m.bos_id, -1);
    assert_int_equal(m.n_eos, 0);
    assert_int_equal(m.rope.type, MODEL_ROPE_DEFAULT);
    model_free(&m);
}

static void test_missing_file(void **state) {
    (void)state;
    char err[ERR_LEN];
    ModelSpec m;
    assert_false(model_load(&m, "/nonexistent/dir", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama31),
        cmocka_unit_test(test_llama2_linear_bias),
        cmocka_unit_test(test_llama_dynamic_v5),
        cmocka_unit_test(test_llama_rope_both),
        cmocka_unit_test(test_mistral_sliding),
        cmocka_unit_test(test_mistral_nemo_headdim),
        cmocka_unit_test(test_qwen25_yarn_tied),
        cmocka_unit_test(test_qwen2_sliding),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_gemma_legacy_gelu),
        cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_gemma3_1b),
        cmocka_unit_test(test_gemma3_linear_layertypes),
        cmocka_unit_test(test_gemma3_nested_v5),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_config_number_format),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_model_type),
        cmocka_unit_test(test_error_sizes),
        cmocka_unit_test(test_error_rope),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_null_means_none),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
