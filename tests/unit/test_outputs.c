/* test_outputs.c - PEFT adapter folders in and out, Hugging Face model folders out.
 *
 * Oracles: tests/fixtures/peft/stories260k_qv, an adapter PEFT 0.18.1 wrote for
 * ../shared/models/stories260K/hf (tests/golden/gen_train_fixtures.py): we read it, write it
 * back, and compare tensors and every adapter_config.json key with PEFT's. The loading side
 * (PEFT and transformers load what we write, tensor for tensor) is
 * tests/golden/check_outputs.py, run on the folders this test leaves in $LLFC_OUTPUTS_KEEP.
 */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "outputs.h"
#include "safetensors.h"
#include "util.h"

#define PEFT_DIR "tests/fixtures/peft/stories260k_qv"

static void load_spec(ModelSpec *spec, const char *dir) {
    char err[ERR_LEN];
    if (!model_load(spec, dir, err, sizeof err)) fail_msg("%s", err);
}

/* The value check_outputs.py expects at element k of tensor number idx: exact in float32. */
static float pattern(size_t idx, int64_t k) {
    return (float)((k * 7 + (int64_t)idx * 13) % 1000 - 500) / 1024.0f;
}

static JsonDoc *parse_file(const char *path) {
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    JsonDoc *d = json_parse(text, len, path, err, sizeof err);
    free(text);
    if (!d) fail_msg("%s", err);
    return d;
}

/* Two JSON values equal (arrays of strings compared as sets: PEFT writes a set). */
static bool json_equal(const Json *a, const Json *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case JSON_NULL: return true;
    case JSON_BOOL: return a->boolean == b->boolean;
    case JSON_NUMBER: return a->num.f == b->num.f && a->num.is_int == b->num.is_int;
    case JSON_STRING: return strcmp(a->str.s, b->str.s) == 0;
    case JSON_ARRAY:
        if (a->arr.n != b->arr.n) return false;
        for (size_t i = 0; i < a->arr.n; i++) {
            bool found = false;
            for (size_t j = 0; j < b->arr.n && !found; j++) found = json_equal(a->arr.items[i], b->arr.items[j]);
            if (!found) return false;
        }
        return true;
    case JSON_OBJECT:
        if (a->obj.n != b->obj.n) return false;
        for (size_t i = 0; i < a->obj.n; i++) {
            const Json *v = json_get(b, a->obj.keys[i]);
            if (!v || !json_equal(a->obj.vals[i], v)) return false;
        }
        return true;
    }
    return false;
}

// --- reading PEFT's adapter, writing it back

static void test_peft_adapter_roundtrip(void **state) {
    (void)state;
    SHARED_OR_SKIP(base, "models/stories260K/hf");
    ModelSpec spec;
    load_spec(&spec, base);
    OutLora cfg;
    StModel *w;
    char err[ERR_LEN];
    if (!outputs_read_adapter(PEFT_DIR, &spec, &cfg, &w, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(cfg.r, 4);
    assert_float_equal(cfg.lora_alpha, 8, 0);
    assert_float_equal(cfg.lora_dropout, 0.05, 1e-15);
    assert_int_equal(cfg.n_targets, 2);
    assert_int_equal(w->n_tensors, 5 * 2 * 2);
    const StTensor *t = st_find(w, "base_model.model.model.layers.4.self_attn.v_proj.lora_B.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 32); /* NKV * HD */
    assert_int_equal(t->shape[1], 4);

    /* what we expect, in our order, named as PEFT names them */
    size_t n;
    OutLoraTensor *want = outputs_lora_tensors(&spec, &cfg, &n, err, sizeof err);
    assert_non_null(want);
    assert_int_equal(n, 20);
    assert_string_equal(want[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert_int_equal(want[0].shape[0], 4);
    assert_int_equal(want[0].shape[1], 64);

    StWriteTensor *wt = xcalloc(n, sizeof *wt);
    for (size_t i = 0; i < n; i++) {
        const StTensor *s = st_find(w, want[i].name);
        assert_non_null(s);
        wt[i] = (StWriteTensor){.name = want[i].name, .dtype = s->dtype, .ndim = 2,
                                .shape = {s->shape[0], s->shape[1]}, .data = s->data};
    }
    char *dir = test_tmpdir();
    if (!outputs_write_adapter(dir, &cfg, wt, n, err, sizeof err)) fail_msg("%s", err);

    /* tensors: same names, shapes, bytes */
    char *ours = util_path_join(dir, "adapter_model.safetensors");
    StModel *back = st_open(ours, err, sizeof err);
    assert_non_null(back);
    assert_int_equal(back->n_tensors, w->n_tensors);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const StTensor *a = &w->tensors[i], *b = st_find(back, a->name);
        assert_non_null(b);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    assert_int_equal(back->n_meta, 1);
    assert_string_equal(back->meta_keys[0], "format");
    assert_string_equal(back->meta_values[0], "pt");
    st_close(back);
    free(ours);

    /* config: every key and value PEFT wrote */
    char *cp = util_path_join(dir, "adapter_config.json");
    JsonDoc *mine = parse_file(cp), *peft = parse_file(PEFT_DIR "/adapter_config.json");
    const Json *a = json_root(peft), *b = json_root(mine);
    assert_int_equal(a->obj.n, b->obj.n);
    for (size_t i = 0; i < a->obj.n; i++) {
        const Json *v = json_get(b, a->obj.keys[i]);
        if (!v) fail_msg("adapter_config.json: we do not write \"%s\"", a->obj.keys[i]);
        if (!json_equal(a->obj.vals[i], v)) fail_msg("adapter_config.json: \"%s\" differs", a->obj.keys[i]);
    }
    json_free(mine);
    json_free(peft);
    free(cp);

    free(wt);
    free(want);
    st_close(w);
    outputs_lora_free(&cfg);
    model_free(&spec);
    test_rm_rf(dir);
    free(dir);
    free(base);
}

// --- errors

static void copy_fixture(const char *dir) {
    char *cmd = xprintf("cp " PEFT_DIR "/* '%s'/", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void put(const char *dir, const char *name, const char *text) {
    char err[ERR_LEN];
    char *p = util_path_join(dir, name);
    assert_true(util_write_file_atomic(p, text, strlen(text), 0644, err, sizeof err));
    free(p);
}

static void expect_read_error(const char *dir, const ModelSpec *spec, const char *needle) {
    OutLora cfg;
    StModel *w;
    char err[ERR_LEN];
    if (outputs_read_adapter(dir, spec, &cfg, &w, err, sizeof err)) {
        st_close(w);
        outputs_lora_free(&cfg);
        fail_msg("accepted (wanted \"%s\")", needle);
    }
    if (!strstr(err, needle)) fail_msg("wanted \"%s\", got \"%s\"", needle, err);
}

static void test_adapter_errors(void **state) {
    (void)state;
    SHARED_OR_SKIP(base, "models/stories260K/hf");
    ModelSpec spec, other;
    load_spec(&spec, base);
    char err[ERR_LEN];
    assert_true(model_init_defaults(&other, "llama", 512, 128, 5, 8, 4, 0, 172, err, sizeof err));

    char *dir = test_tmpdir();
    expect_read_error("/nonexistent/adapter", &spec, "is not a folder");
    expect_read_error(dir, &spec, "adapter_config.json: missing");
    copy_fixture(dir);
    expect_read_error(dir, &other, "has shape (4, 64), this model needs (4, 128)");

    char *p = util_path_join(dir, "adapter_model.safetensors");
    unlink(p);
    put(dir, "adapter_model.bin", "x");
    expect_read_error(dir, &spec, "old .bin format");
    copy_fixture(dir);

    put(dir, "adapter_config.json", "{\"peft_type\": \"LOHA\", \"r\": 4}");
    expect_read_error(dir, &spec, "peft_type is LOHA");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*proj\"}");
    expect_read_error(dir, &spec, "\"target_modules\" is a regular expression");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true, "
        "\"target_modules\": [\"q_proj\"]}");
    expect_read_error(dir, &spec, "\"use_dora\" must be false");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    expect_read_error(dir, &spec, "unexpected tensor base_model.model.model.layers.0.self_attn.v_proj");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
        "\"v_proj\", \"k_proj\"]}");
    expect_read_error(dir, &spec, "no tensor base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"qkv_proj\"]}");
    expect_read_error(dir, &spec, "LoRA target 'qkv_proj' is not a linear layer");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
        "\"v_proj\"], \"modules_to_save\": [\"lm_head\"]}");
    expect_read_error(dir, &spec, "lm_head is tied to embed_tokens");
    put(dir, "adapter_config.json",
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
        "\"v_proj\"], \"modules_to_save\": [\"embed_tokens\"]}");
    expect_read_error(dir, &spec, "no tensor base_model.model.model.embed_tokens.weight");

    free(p);
    test_rm_rf(dir);
    free(dir);
    model_free(&spec);
    model_free(&other);
    free(base);
}

// --- writing an adapter and a model folder for PEFT / transformers to load

/* Writes OUT/adapter (q,v,o,down + modules_to_save embed_tokens, patterned values) and
 * OUT/model (stories260K's tensors, patterned, sharded); returns the tensor count written. */
static void write_for_python(const char *out, const char *base) {
    ModelSpec spec;
    load_spec(&spec, base);
    char err[ERR_LEN];
    char *t4[] = {"q_proj", "v_proj", "o_proj", "down_proj"}, *save[] = {"embed_tokens"};
    OutLora cfg = {.r = 4, .lora_alpha = 16, .lora_dropout = 0.0, .target_modules = t4,
                   .n_targets = 4, .modules_to_save = save, .n_save = 1,
                   .base_model_name_or_path = (char *)base};
    size_t n;
    OutLoraTensor *lt = outputs_lora_tensors(&spec, &cfg, &n, err, sizeof err);
    assert_non_null(lt);
    assert_int_equal(n, 5 * 4 * 2 + 1);
    assert_string_equal(lt[n - 1].name, "base_model.model.model.embed_tokens.weight");
    StWriteTensor *wt = xcalloc(n, sizeof *wt);
    float **bufs = xcalloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        int64_t numel = lt[i].shape[0] * (lt[i].ndim > 1 ? lt[i].shape[1] : 1);
        bufs[i] = xmalloc((size_t)numel * sizeof(float));
        for (int64_t k = 0; k < numel; k++) bufs[i][k] = pattern(i, k);
        wt[i] = (StWriteTensor){.name = lt[i].name, .dtype = ST_F32, .ndim = lt[i].ndim,
                                .shape = {lt[i].shape[0], lt[i].shape[1]}, .data = bufs[i]};
    }
    char *ad = util_path_join(out, "adapter");
    mkdir(ad, 0755);
    if (!outputs_write_adapter(ad, &cfg, wt, n, err, sizeof err)) fail_msg("%s", err);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(wt);
    free(lt);
    free(ad);

    size_t nt;
    ModelTensor *mt = model_tensors(&spec, &nt);
    wt = xcalloc(nt, sizeof *wt);
    bufs = xcalloc(nt, sizeof *bufs);
    for (size_t i = 0; i < nt; i++) {
        int64_t numel = mt[i].shape[0] * (mt[i].ndim > 1 ? mt[i].shape[1] : 1);
        bufs[i] = xmalloc((size_t)numel * sizeof(float));
        for (int64_t k = 0; k < numel; k++) bufs[i][k] = pattern(i, k);
        wt[i] = (StWriteTensor){.name = mt[i].name, .dtype = ST_F32, .ndim = mt[i].ndim,
                                .shape = {mt[i].shape[0], mt[i].shape[1]}, .data = bufs[i]};
    }
    char *md = util_path_join(out, "model");
    if (!outputs_write_model(md, &spec, wt, nt, 400000, base, err, sizeof err)) fail_msg("%s", err);
    /* a folder our own reader accepts, sharded, with the tokenizer */
    StModel *m = st_open(md, err, sizeof err);
    if (!m) fail_msg("%s", err);
    assert_true(m->n_files > 1);
    if (!st_check_spec(m, &spec, err, sizeof err)) fail_msg("%s", err);
    st_close(m);
    char *tok = util_path_join(md, "tokenizer.json");
    assert_true(util_is_file(tok));
    free(tok);
    ModelSpec again;
    load_spec(&again, md);
    assert_int_equal(again.C, spec.C);
    model_free(&again);
    for (size_t i = 0; i < nt; i++) free(bufs[i]);
    free(bufs);
    free(wt);
    free(mt);
    free(md);
    model_free(&spec);
}

static void test_write_adapter_and_model(void **state) {
    (void)state;
    SHARED_OR_SKIP(base, "models/stories260K/hf");
    const char *keep = getenv("LLFC_OUTPUTS_KEEP");
    char *dir = keep && *keep ? xstrdup(keep) : test_tmpdir();
    mkdir(dir, 0755);
    write_for_python(dir, base);
    /* read back our own adapter with the reader */
    ModelSpec spec;
    load_spec(&spec, base);
    OutLora cfg;
    StModel *w;
    char err[ERR_LEN];
    char *ad = util_path_join(dir, "adapter");
    if (!outputs_read_adapter(ad, &spec, &cfg, &w, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(cfg.n_save, 1);
    assert_float_equal(cfg.lora_alpha, 16, 0);
    st_close(w);
    outputs_lora_free(&cfg);
    model_free(&spec);
    free(ad);
    if (!keep || !*keep) test_rm_rf(dir);
    free(dir);
    free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_adapter_roundtrip),
        cmocka_unit_test(test_adapter_errors),
        cmocka_unit_test(test_write_adapter_and_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
