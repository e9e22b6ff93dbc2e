/* test_safetensors.c - the mmap reader against Python's safetensors, round trips, bad files.
 *
 * Oracles: tests/fixtures/stories260k_probe.json is what Python's `safetensors` read from
 * ../shared/models/stories260K/hf/model.safetensors (tests/golden/gen_safetensors_probe.py);
 * the malformed files below are the classes the reference Rust reader rejects (each was
 * checked against safetensors 0.8 from Python when this test was written).
 */
#include "testutil.h"

#include <math.h>
#include <unistd.h>

#include "cmd_init_model.h"
#include "json.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"
#include "util.h"

// --- helpers

/* A safetensors file in memory: 8-byte length, header padded with spaces to 8, data_len
 * bytes of data (value i & 0xff at data byte i). n_override replaces the length field. */
static uint8_t *mk_file(const char *header, size_t data_len, uint64_t n_override, size_t *size) {
    size_t h = strlen(header), pad = (8 - h % 8) % 8;
    *size = 8 + h + pad + data_len;
    uint8_t *b = xmalloc(*size);
    uint64_t n = n_override ? n_override : h + pad;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', pad);
    for (size_t i = 0; i < data_len; i++) b[8 + h + pad + i] = (uint8_t)i;
    return b;
}

/* Parse a made-up file; expect failure with `needle` in the message. */
static void expect_bad(const char *header, size_t data_len, uint64_t n_override,
                       const char *needle) {
    size_t size;
    uint8_t *b = mk_file(header, data_len, n_override, &size);
    char err[ERR_LEN];
    StModel *m = st_parse(b, size, "x.safetensors", err, sizeof err);
    free(b);
    if (m) {
        st_close(m);
        fail_msg("accepted a bad file (wanted \"%s\"): %s", needle, header);
    }
    if (!strstr(err, needle) || strncmp(err, "x.safetensors", 13) != 0)
        fail_msg("wanted \"x.safetensors...%s\", got \"%s\"", needle, err);
}

static StModel *expect_good(const char *header, size_t data_len) {
    size_t size;
    uint8_t *b = mk_file(header, data_len, 0, &size);
    char err[ERR_LEN];
    StModel *m = st_parse(b, size, "x.safetensors", err, sizeof err);
    if (!m) fail_msg("%s", err);
    st_close(m);
    free(b);
    return NULL;
}

// --- stories260K against Python

static void test_stories260k_matches_python(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "models/stories260K/hf");
    char err[ERR_LEN];
    StModel *m = st_open(dir, err, sizeof err);
    if (!m) fail_msg("%s", err);
    size_t len;
    char *text = util_read_file("tests/fixtures/stories260k_probe.json", &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    JsonDoc *doc = json_parse(text, len, "probe", err, sizeof err);
    assert_non_null(doc);
    const Json *tensors = json_get(json_root(doc), "tensors");
    assert_int_equal(m->n_tensors, tensors->obj.n);
    for (size_t i = 0; i < tensors->obj.n; i++) {
        const char *name = tensors->obj.keys[i];
        const Json *p = tensors->obj.vals[i];
        const StTensor *t = st_find(m, name);
        if (!t) fail_msg("llfc does not see tensor %s", name);
        assert_int_equal(t->dtype, ST_F32);
        assert_string_equal("float32", json_as_str(json_get(p, "dtype")));
        const Json *shape = json_get(p, "shape");
        assert_int_equal(t->ndim, shape->arr.n);
        for (int d = 0; d < t->ndim; d++) {
            int64_t dim;
            assert_true(json_as_int(shape->arr.items[d], &dim));
            assert_int_equal(t->shape[d], dim);
        }
        assert_int_equal((uintptr_t)t->data % 4, 0); // aligned: HF sorts by dtype
        const Json *first = json_get(p, "first");
        for (size_t k = 0; k < first->arr.n; k++) {
            double want;
            assert_true(json_as_double(first->arr.items[k], &want));
            assert_true(st_get_f32(t, (int64_t)k) == (float)want); // exact: same bits
        }
        double last, sum = 0, sumsq = 0, want_sum, want_sumsq;
        assert_true(json_as_double(json_get(p, "last"), &last));
        assert_true(st_get_f32(t, t->numel - 1) == (float)last);
        float *f = xmalloc((size_t)t->numel * sizeof *f);
        st_read_f32(t, f);
        for (int64_t k = 0; k < t->numel; k++) sum += f[k], sumsq += (double)f[k] * f[k];
        free(f);
        assert_true(json_as_double(json_get(p, "sum"), &want_sum));
        assert_true(json_as_double(json_get(p, "sumsq"), &want_sumsq));
        assert_true(fabs(sum - want_sum) <= 1e-9 * fmax(1, fabs(want_sum)));
        assert_true(fabs(sumsq - want_sumsq) <= 1e-9 * fmax(1, want_sumsq));
    }
    assert_int_equal(m->n_meta, 1);
    assert_string_equal(m->meta_keys[0], "format");
    assert_string_equal(m->meta_values[0], "pt");
    json_free(doc);
    free(text);
    st_close(m);
    free(dir);
}

static void test_stories260k_against_spec(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "models/stories260K/hf");
    char err[ERR_LEN];
    StModel *m = st_open(dir, err, sizeof err);
    ModelSpec spec;
    if (!m || !model_load(&spec, dir, err, sizeof err)) fail_msg("%s", err);
    if (!st_check_spec(m, &spec, err, sizeof err)) fail_msg("%s", err);

    // a wrong MLP width: the first wrong tensor named with its file, then a count
    spec.FF = 100;
    assert_false(st_check_spec(m, &spec, err, sizeof err));
    assert_non_null(strstr(err, "model.safetensors: tensor \"model.layers.0.mlp.gate_proj.weight\" "
                                "has shape [172, 64] but "));
    assert_non_null(strstr(err, "config.json says [100, 64]; and 14 more problems"));
    spec.FF = 172;
    // one layer more than the weights have
    spec.L = 6;
    assert_false(st_check_spec(m, &spec, err, sizeof err));
    assert_non_null(strstr(err, "tensor \"model.layers.5.self_attn.q_proj.weight\" [64, 64] is "
                                "missing"));
    // one layer fewer
    spec.L = 4;
    assert_false(st_check_spec(m, &spec, err, sizeof err));
    assert_non_null(strstr(err, "unexpected tensor \"model.layers.4."));
    spec.L = 5;
    // untied: lm_head.weight must exist
    spec.tie_word_embeddings = false;
    assert_false(st_check_spec(m, &spec, err, sizeof err));
    assert_non_null(strstr(err, "tensor \"lm_head.weight\" [512, 64] is missing"));
    spec.tie_word_embeddings = true;
    // qwen2-style biases expected but absent
    spec.qkv_bias = true;
    assert_false(st_check_spec(m, &spec, err, sizeof err));
    assert_non_null(strstr(err, "self_attn.q_proj.bias\" [64] is missing"));
    model_free(&spec);
    st_close(m);
    free(dir);
}

/* Truncating the real file anywhere gives an error, never a crash or a success. */
static void test_stories260k_truncated(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "models/stories260K/hf/model.safetensors");
    char err[ERR_LEN];
    size_t size;
    char *bytes = util_read_file(path, &size, err, sizeof err);
    assert_non_null(bytes);
    size_t cuts[] = {0, 1, 7, 8, 9, 100, 2000, 8 + 4096, size / 2, size - 4, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        StModel *m = st_parse((uint8_t *)bytes, cuts[i], "cut.safetensors", err, sizeof err);
        if (m) fail_msg("accepted the file cut at %zu bytes", cuts[i]);
        assert_true(strncmp(err, "cut.safetensors", 15) == 0);
    }
    StModel *m = st_parse((uint8_t *)bytes, size, "whole.safetensors", err, sizeof err);
    assert_non_null(m);
    st_close(m);
    free(bytes);
    free(path);
}

// --- malformed files, one class each

static void test_bad_header_length(void **state) {
    (void)state;
    char err[ERR_LEN];
    uint8_t tiny[5] = {0};
    assert_null(st_parse(tiny, 5, "x.safetensors", err, sizeof err));
    assert_non_null(strstr(err, "5 bytes is too short"));
    expect_bad("{}", 0, 100000008, "header length 100000008 is over the 100 MB limit");
    expect_bad("{}", 0, 64, "header length 64 runs past the end of the 16-byte file");
    expect_bad("{}", 0, UINT64_MAX, "over the 100 MB limit");
}

static void test_bad_json(void **state) {
    (void)state;
    expect_bad("{\"a\": {\"dtype\": \"F32\",", 0, 0, "x.safetensors: header:1:");
    expect_bad("[1, 2]", 0, 0, "header must be a JSON object, got array");
    expect_bad("{\"a\": 1}", 0, 0, "tensor \"a\" must be an object");
    expect_bad("{\"__metadata__\": {\"format\": 1}}", 0, 0,
               "__metadata__ \"format\" must be a string, got number");
    expect_bad("{\"__metadata__\": [\"pt\"]}", 0, 0, "__metadata__ must be an object");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, 0, "lacks \"data_offsets\"");
    expect_bad("{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
               4, 0, "NUL character");
    // NUL padding is not JSON whitespace (the reference rejects it too)
    size_t size;
    uint8_t *b = mk_file("{}\0\0\0\0\0\0", 0, 0, &size);
    char err[ERR_LEN];
    assert_null(st_parse(b, 8 + 2, "x.safetensors", err, sizeof err)); // length field says 2 + pad
    free(b);
}

static void test_bad_dtype(void **state) {
    (void)state;
    expect_bad("{\"a\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, 0,
               "unknown dtype \"Q4\"");
    expect_bad("{\"a\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, 0,
               "unknown dtype number");
    // recognised, sizes validated, then refused by name
    expect_bad("{\"a\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 16, 0,
               "tensor \"a\" is I64; llfc reads F32, F16 and BF16");
    expect_bad("{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2, 0,
               "is F8_E4M3");
    expect_bad("{\"a\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 2, 0,
               "3 elements of F4 do not fill whole bytes");
    expect_bad("{\"a\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, 0,
               "hold 8 bytes but I64 [2] needs 16");
}

static void test_bad_shape(void **state) {
    (void)state;
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4, 0,
               "shape[0] must be an integer >= 0");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4, 0,
               "shape[0] must be an integer >= 0");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 4]}}", 4, 0,
               "shape must be an array");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
               "\"data_offsets\": [0, 4]}}", 4, 0, "shape overflows");
    expect_bad("{\"a\": {\"dtype\": \"BF16\", \"shape\": [9223372036854775807], "
               "\"data_offsets\": [0, 4]}}", 4, 0, "shape overflows");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
               "\"data_offsets\": [0, 4]}}", 4, 0, "has 9 dims; llfc reads at most 8");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 4]}}", 4, 0,
               "data_offsets [0, 4] hold 4 bytes but F32 [2, 3] needs 24");
}

static void test_bad_offsets(void **state) {
    (void)state;
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 4]}}", 4, 0,
               "data_offsets must be [BEGIN, END]");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4, 0,
               "data_offsets must be [BEGIN, END]");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", 0, 0,
               "hold -1 bytes");
    // gap before the first tensor
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, 0,
               "tensor \"a\": data_offsets start at 4, leaving a gap after byte 0");
    // gap between two
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12, 0,
               "tensor \"b\": data_offsets start at 8, leaving a gap after byte 4");
    // overlap
    expect_bad("{\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]},"
               "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 6, 0,
               "tensor \"b\": data_offsets [2, 6] overlap \"a\", which ends at 4");
    // the same bytes twice
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, 0,
               "overlap");
    // data past the end: truncated
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12, 0,
               "cover 16 bytes of data but the file has 12 after its header (truncated");
    // bytes no tensor owns
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 8, 0,
               "trailing bytes that no tensor owns");
    // duplicate names: the reference rejects them as an offset error; we say what it is
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, 0,
               "tensor \"a\" appears twice");
}

/* What the reference accepts, so do we. */
static void test_accepted_edges(void **state) {
    (void)state;
    expect_good("{}", 0);
    expect_good(" {\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
    expect_good("{\"__metadata__\": null, \"a\": {\"dtype\": \"F32\", \"shape\": [], "
                "\"data_offsets\": [0, 4]}}", 4);
    expect_good("{\"a\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 0]},"
                "\"b\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4], \"x\": 1}}",
                4);
    // unpadded header (older writers) and unsorted entries
    size_t size;
    const char *h = "{\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t *b = xmalloc(8 + strlen(h) + 6);
    size = 8 + strlen(h) + 6;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)strlen(h) >> (8 * i));
    memcpy(b + 8, h, strlen(h));
    float one = 1.0f;
    memcpy(b + 8 + strlen(h), &one, 4);
    b[size - 2] = 0x00, b[size - 1] = 0x3c; // F16 1.0
    char err[ERR_LEN];
    StModel *m = st_parse(b, size, "x.safetensors", err, sizeof err);
    if (!m) fail_msg("%s", err);
    assert_true(st_get_f32(st_find(m, "a"), 0) == 1.0f); // unaligned read is fine
    assert_true(st_get_f32(st_find(m, "b"), 0) == 1.0f);
    assert_null(st_find(m, "c"));
    st_close(m);
    free(b);
}

// --- conversions

static void test_conversions(void **state) {
    (void)state;
    assert_int_equal(st_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(st_f32_to_bf16(1.0f / 3), 0x3eab);      // 0x3eaaaaab rounds up
    assert_int_equal(st_f32_to_bf16(0x1.01p0f), 0x3f80);     // tie: to even (down)
    assert_int_equal(st_f32_to_bf16(0x1.03p0f), 0x3f82);     // tie: to even (up)
    assert_int_equal(st_f32_to_bf16(-0.0f), 0x8000);
    assert_true(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
    assert_int_equal(st_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(st_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(st_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(st_f32_to_f16(65520.0f), 0x7c00);       // rounds to inf
    assert_int_equal(st_f32_to_f16(1.0f / 3), 0x3555);
    assert_int_equal(st_f32_to_f16(0x1p-24f), 0x0001);        // smallest subnormal
    assert_int_equal(st_f32_to_f16(0x1p-25f), 0x0000);        // tie to even: 0
    assert_int_equal(st_f32_to_f16(0x1.8p-24f), 0x0002);      // 1.5 ulp: to even (2)
    assert_int_equal(st_f32_to_f16(0x1p-14f), 0x0400);        // smallest normal
    assert_int_equal(st_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(st_f32_to_f16(INFINITY), 0x7c00);
    assert_true(isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
    // every f16 survives f16 -> f32 -> f16
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(st_f32_to_f16(f), h);
        assert_int_equal(st_f32_to_bf16(st_bf16_to_f32((uint16_t)h)), h);
    }
}

// --- writing

typedef struct {
    int calls;
    uint64_t seen_bytes;
} ProduceCtx;

/* Tensor 2's bytes are produced: byte k of the tensor is (k * 7) & 0xff. */
static bool produce(void *vctx, size_t tensor_index, uint64_t offset, void *buf, size_t len,
                    char *err, size_t errlen) {
    (void)err, (void)errlen;
    ProduceCtx *ctx = vctx;
    ctx->calls++;
    assert_int_equal(tensor_index, 2);
    assert_int_equal(offset, ctx->seen_bytes); // in order, chunk after chunk
    for (size_t k = 0; k < len; k++) ((uint8_t *)buf)[k] = (uint8_t)((offset + k) * 7);
    ctx->seen_bytes += len;
    return true;
}

static void write_three(const char *dir, uint64_t max_shard, size_t *n_files, ProduceCtx *ctx) {
    static float a[6] = {1, 2, 3, 4, 5, 6};
    static uint16_t b[3] = {0x3f80, 0x4000, 0xc040}; // bf16 1, 2, -3
    StWriteTensor t[3] = {
        {.name = "b.bf16", .dtype = ST_BF16, .ndim = 1, .shape = {3}, .data = b},
        {.name = "a.f32", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "c.big", .dtype = ST_F16, .ndim = 2, .shape = {1000, 3000}},
    };
    StWriteOptions opt = {.dir = dir, .max_shard_bytes = max_shard, .produce = produce, .ctx = ctx};
    char err[ERR_LEN];
    if (!st_write(t, 3, &opt, n_files, err, sizeof err)) fail_msg("%s", err);
}

static void check_three(const StModel *m) {
    assert_int_equal(m->n_tensors, 3);
    const StTensor *a = st_find(m, "a.f32"), *b = st_find(m, "b.bf16"), *c = st_find(m, "c.big");
    assert_non_null(a), assert_non_null(b), assert_non_null(c);
    for (int i = 0; i < 6; i++) assert_true(st_get_f32(a, i) == (float)(i + 1));
    assert_true(st_get_f32(b, 2) == -3.0f);
    assert_int_equal(c->numel, 3000000);
    const uint8_t *cb = c->data;
    for (size_t k = 0; k < c->nbytes; k += 4099) assert_int_equal(cb[k], (uint8_t)(k * 7));
    assert_int_equal((uintptr_t)a->data % 4, 0);
    assert_int_equal((uintptr_t)c->data % 2, 0);
}

static void test_write_single(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    size_t n_files;
    ProduceCtx ctx = {0};
    write_three(dir, 0, &n_files, &ctx);
    assert_int_equal(n_files, 1);
    assert_int_equal(ctx.seen_bytes, 6000000);
    assert_int_equal(ctx.calls, 2); // 6 MB in 4 MiB chunks: never the whole tensor at once
    char err[ERR_LEN];
    StModel *m = st_open(dir, err, sizeof err);
    if (!m) fail_msg("%s", err);
    check_three(m);
    assert_int_equal(m->n_files, 1);
    assert_string_equal(m->meta_keys[0], "format");
    assert_string_equal(m->meta_values[0], "pt");
    // header length keeps the data 8-aligned; F32 laid out first (largest dtype first)
    const uint8_t *map = m->files[0].map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | map[i];
    assert_int_equal(n % 8, 0);
    assert_ptr_equal(st_find(m, "a.f32")->data, map + 8 + n);
    st_close(m);
    test_rm_rf(dir);
    free(dir);
}

static void test_write_sharded(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    size_t n_files;
    ProduceCtx ctx = {0};
    // 36-byte limit: b (6 B) then a (24 B) fit in one shard; c (6 MB) is over it, its own shard
    // at once, as huggingface_hub does, so it comes first
    write_three(dir, 36, &n_files, &ctx);
    assert_int_equal(n_files, 2);
    char err[ERR_LEN];
    StModel *m = st_open(dir, err, sizeof err);
    if (!m) fail_msg("%s", err);
    check_three(m);
    assert_int_equal(m->n_files, 2);
    assert_non_null(strstr(m->files[st_find(m, "c.big")->file].path, "model-00001-of-00002"));
    assert_non_null(strstr(m->files[st_find(m, "a.f32")->file].path, "model-00002-of-00002"));
    st_close(m);
    size_t len;
    char *index_path = util_path_join(dir, "model.safetensors.index.json");
    char *index = util_read_file(index_path, &len, err, sizeof err);
    assert_non_null(index);
    assert_non_null(strstr(index, "\"total_size\": 6000030"));
    assert_non_null(strstr(index, "\"a.f32\": \"model-00002-of-00002.safetensors\",\n"
                                  "    \"b.bf16\": \"model-00002-of-00002.safetensors\",\n"
                                  "    \"c.big\": \"model-00001-of-00002.safetensors\"\n"));
    free(index);
    // small enough limit that a and b split too: three shards, old two-shard files removed
    ctx = (ProduceCtx){0};
    write_three(dir, 10, &n_files, &ctx);
    assert_int_equal(n_files, 3);
    char *old = util_path_join(dir, "model-00001-of-00002.safetensors");
    assert_false(util_is_file(old));
    m = st_open(dir, err, sizeof err);
    if (!m) fail_msg("%s", err);
    check_three(m);
    st_close(m);
    // back to one file: the index goes, or loaders would still follow it
    ctx = (ProduceCtx){0};
    write_three(dir, 0, &n_files, &ctx);
    assert_false(util_is_file(index_path));
    free(old);
    free(index_path);
    test_rm_rf(dir);
    free(dir);
}

// --- sharded checkpoints that lie

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = util_path_join(dir, name);
    char err[ERR_LEN];
    assert_true(util_write_file_atomic(p, text, strlen(text), 0644, err, sizeof err));
    free(p);
}

static void expect_open_error(const char *dir, const char *needle) {
    char err[ERR_LEN];
    StModel *m = st_open(dir, err, sizeof err);
    if (m) {
        st_close(m);
        fail_msg("opened a bad checkpoint (wanted \"%s\")", needle);
    }
    if (!strstr(err, needle)) fail_msg("wanted \"%s\", got \"%s\"", needle, err);
}

static void test_bad_index(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    size_t n_files;
    ProduceCtx ctx = {0};
    write_three(dir, 36, &n_files, &ctx);
    const char *s1 = "model-00001-of-00002.safetensors", *s2 = "model-00002-of-00002.safetensors";
    char *idx;
    idx = xprintf("{\"weight_map\": {\"a.f32\": \"%s\", \"b.bf16\": \"%s\", \"c.big\": \"%s\", "
                  "\"d\": \"%s\"}}", s2, s2, s1, s1);
    write_text(dir, "model.safetensors.index.json", idx);
    expect_open_error(dir, "model.safetensors.index.json:1:");
    expect_open_error(dir, "tensor \"d\" is mapped to model-00001-of-00002.safetensors, which "
                           "does not contain it");
    free(idx);
    idx = xprintf("{\"weight_map\": {\"a.f32\": \"%s\", \"c.big\": \"%s\"}}", s2, s1);
    write_text(dir, "model.safetensors.index.json", idx);
    expect_open_error(dir, "00002.safetensors: tensor \"b.bf16\" is not mapped to this file by");
    free(idx);
    idx = xprintf("{\"weight_map\": {\"a.f32\": \"../%s\"}}", s2);
    write_text(dir, "model.safetensors.index.json", idx);
    expect_open_error(dir, "weight_map[\"a.f32\"] must be a file name in the same folder");
    free(idx);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a.f32\": \"nothere\"}}");
    expect_open_error(dir, "nothere: cannot open");
    write_text(dir, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_open_error(dir, "expected {\"weight_map\"");
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": ");
    expect_open_error(dir, "model.safetensors.index.json:1:");
    test_rm_rf(dir);
    expect_open_error(dir, "cannot open"); // the folder is gone
    char *empty = test_tmpdir();
    expect_open_error(empty, "no model.safetensors or model.safetensors.index.json");
    test_rm_rf(empty);
    free(empty);
    free(dir);
}

// --- llfc init-model: what it writes reads back and matches its own spec

static int run_init(const char *family, const char *out, const char *extra1, const char *extra2) {
    char *argv[32];
    int argc = 0;
    const char *base[] = {"init-model", "--family", family, "--hidden", "64", "--layers", "3",
                          "--heads", "4", "--kv-heads", "2", "--intermediate", "96", "--vocab",
                          "128", "--seed", "11", "-o", out};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[argc++] = (char *)base[i];
    if (extra1) argv[argc++] = (char *)extra1;
    if (extra2) argv[argc++] = (char *)extra2;
    argv[argc] = NULL;
    return cmd_init_model(argc, argv);
}

static void test_init_model_families(void **state) {
    (void)state;
    const char *families[] = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"};
    char *dir = test_tmpdir();
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        assert_int_equal(run_init(families[i], dir, "--dtype", i % 2 ? "f32" : "bf16"), 0);
        char err[ERR_LEN];
        ModelSpec spec;
        StModel *m = st_open(dir, err, sizeof err);
        if (!m || !model_load(&spec, dir, err, sizeof err)) fail_msg("%s: %s", families[i], err);
        if (!st_check_spec(m, &spec, err, sizeof err)) fail_msg("%s: %s", families[i], err);
        assert_string_equal(spec.model_type, families[i]);
        assert_int_equal(spec.HD, 16);
        // norms are 1 (0 in gemma's 1 + w form), matrices N(0, 0.02) from Philox in HF order
        size_t n;
        ModelTensor *mt = model_tensors(&spec, &n);
        for (size_t k = 0; k < n; k++) {
            const StTensor *t = st_find(m, mt[k].name);
            assert_int_equal(t->dtype, i % 2 ? ST_F32 : ST_BF16);
            float v0 = st_get_f32(t, 0), v9 = st_get_f32(t, t->numel - 1);
            if (mt[k].is_norm) {
                assert_true(v0 == (float)(1 - spec.norm_offset) && v9 == v0);
            } else if (mt[k].ndim == 1) {
                assert_true(v0 == 0 && v9 == 0); // biases
            } else {
                uint64_t purpose = rng_purpose(RNG_INIT_WEIGHTS, (uint32_t)k);
                float want = rng_normal(11, purpose, (uint64_t)t->numel - 1) * 0.02f;
                if (t->dtype == ST_BF16) want = st_bf16_to_f32(st_f32_to_bf16(want));
                assert_true(v9 == want);
            }
        }
        free(mt);
        model_free(&spec);
        st_close(m);
    }
    test_rm_rf(dir);
    free(dir);
}

static void test_init_model_sharded_and_stable(void **state) {
    (void)state;
    char *a = test_tmpdir(), *b = test_tmpdir();
    assert_int_equal(run_init("qwen2", a, NULL, NULL), 0);
    assert_int_equal(run_init("qwen2", b, "--max-shard-size", "20KB"), 0);
    char err[ERR_LEN];
    StModel *ma = st_open(a, err, sizeof err), *mb = st_open(b, err, sizeof err);
    assert_non_null(ma), assert_non_null(mb);
    assert_int_equal(ma->n_files, 1);
    assert_true(mb->n_files > 2);
    assert_int_equal(ma->n_tensors, mb->n_tensors);
    for (size_t i = 0; i < ma->n_tensors; i++) {
        const StTensor *x = &ma->tensors[i], *y = st_find(mb, x->name);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes); // the same seed, the same bytes
    }
    st_close(ma), st_close(mb);
    test_rm_rf(a), test_rm_rf(b);
    free(a), free(b);
}

static void test_init_model_bad_flags(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    assert_int_equal(run_init("llama", dir, "--hidden", "abc"), 2);
    assert_int_equal(run_init("llama", dir, "--dtype", "f8"), 2);
    assert_int_equal(run_init("llama", dir, "--bogus", "1"), 2);
    assert_int_equal(run_init("llama", dir, "--max-shard-size", "lots"), 2);
    assert_int_equal(run_init("mixtral", dir, NULL, NULL), 1);
    assert_int_equal(run_init("llama", dir, "--kv-heads", "3"), 1);   // does not divide 4
    assert_int_equal(run_init("llama", dir, "--head-dim", "7"), 1);   // odd
    char *argv[] = {"init-model", "--family", "llama", NULL};
    assert_int_equal(cmd_init_model(3, argv), 2); // sizes missing
    test_rm_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_matches_python),
        cmocka_unit_test(test_stories260k_against_spec),
        cmocka_unit_test(test_stories260k_truncated),
        cmocka_unit_test(test_bad_header_length),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_dtype),
        cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_accepted_edges),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_write_single),
        cmocka_unit_test(test_write_sharded),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_init_model_families),
        cmocka_unit_test(test_init_model_sharded_and_stable),
        cmocka_unit_test(test_init_model_bad_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
