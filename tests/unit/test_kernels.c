/* test_kernels.c - each C reference kernel, forward and backward, against PyTorch.
 *
 * The oracle: tests/fixtures/golden/kernels.safetensors, written by
 * tests/golden/gen_model_fixtures.py: inputs, outputs and autograd gradients (for a random
 * upstream gradient) of each op, and transformers' own inv_freq / attention scaling for every
 * rope type. Errors are max|ours - torch| / max|torch| per tensor. Dropout has no torch twin
 * (its mask is ours, by Philox): it is checked for determinism, rate and scaling.
 */
#include "testutil.h"

#include <math.h>

#include "add.h"
#include "attention.h"
#include "crossentropy.h"
#include "dropout.h"
#include "embedding.h"
#include "glu.h"
#include "matmul.h"
#include "rmsnorm.h"
#include "rng.h"
#include "rope.h"
#include "safetensors.h"
#include "softcap.h"
#include "util.h"

#define TOL 2e-6

static StModel *fx;

static int setup(void **state) {
    (void)state;
    char err[ERR_LEN];
    fx = st_open("tests/fixtures/golden/kernels.safetensors", err, sizeof err);
    if (!fx) fprintf(stderr, "%s\n", err);
    return fx ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    st_close(fx);
    return 0;
}

static const StTensor *want(const char *name) {
    const StTensor *t = st_find(fx, name);
    if (!t) fail_msg("kernels.safetensors: no %s", name);
    return t;
}

/* a malloc'd fp32 copy (the caller frees) */
static float *load(const char *name) {
    const StTensor *t = want(name);
    float *f = xmalloc((size_t)t->numel * sizeof(float));
    st_read_f32(t, f);
    return f;
}

static int32_t *load_ints(const char *name) {
    const StTensor *t = want(name);
    int32_t *v = xmalloc((size_t)t->numel * sizeof(int32_t));
    for (int64_t i = 0; i < t->numel; i++) v[i] = (int32_t)lrintf(st_get_f32(t, i));
    return v;
}

static void expect(const float *got, const char *name, double tol) {
    const StTensor *t = want(name);
    double num = 0, den = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        num = fmax(num, fabs((double)got[i] - st_get_f32(t, i)));
        den = fmax(den, fabs((double)st_get_f32(t, i)));
    }
    double e = den > 0 ? num / den : num;
    if (!(e < tol)) fail_msg("%s: relative error %.3g (tolerance %g)", name, e, tol);
}

// --- matmul: all four transposes, alpha and beta, sizes across the blocks

static void test_matmul(void **state) {
    (void)state;
    const int64_t M = 70, K = 150, N = 130;
    float *a = load("mm.a"), *b = load("mm.b"), *c0 = load("mm.c0");
    float *at = xmalloc(sizeof(float) * M * K), *bt = xmalloc(sizeof(float) * K * N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) at[k * M + i] = a[i * K + k];
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) bt[j * K + k] = b[k * N + j];
    float *c = xmalloc(sizeof(float) * M * N);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memcpy(c, c0, sizeof(float) * M * N);
            matmul(c, ta ? at : a, tb ? bt : b, M, N, K, ta, tb, 1.5f, 0.5f);
            expect(c, "mm.c", 1e-6);
        }
    // beta = 0 never reads C
    for (int64_t i = 0; i < M * N; i++) c[i] = NAN;
    matmul(c, a, b, M, N, K, false, false, 1.0f, 0.0f);
    for (int64_t i = 0; i < M * N; i++) assert_false(isnan(c[i]));
    free(a), free(b), free(c0), free(at), free(bt), free(c);
}

// --- embedding

static void test_embedding(void **state) {
    (void)state;
    float *table = load("emb.table"), *dout = load("emb.dout");
    int32_t *ids = load_ints("emb.ids");
    float *out = xmalloc(sizeof(float) * 37 * 24), *dtable = xcalloc(50 * 24, sizeof(float));
    embedding_forward(out, ids, table, 37, 24, 1.7f);
    expect(out, "emb.out", TOL);
    embedding_backward(dtable, ids, dout, 37, 24, 50, 1.7f);
    expect(dtable, "emb.dtable", TOL);
    free(table), free(dout), free(ids), free(out), free(dtable);
}

// --- rmsnorm, offsets 0 and 1; accumulate adds into dx

static void test_rmsnorm(void **state) {
    (void)state;
    for (int off = 0; off < 2; off++) {
        char n[6][32];
        const char *what[6] = {"x", "w", "y", "dy", "dx", "dw"};
        for (int i = 0; i < 6; i++) snprintf(n[i], sizeof n[i], "rms%d.%s", off, what[i]);
        float *x = load(n[0]), *w = load(n[1]), *dy = load(n[3]);
        float y[9 * 40], rstd[9], dx[9 * 40], dw[40] = {0};
        rmsnorm_forward(y, rstd, x, w, 9, 40, 1e-5f, (float)off);
        expect(y, n[2], TOL);
        rmsnorm_backward(dx, dw, dy, x, w, rstd, 9, 40, (float)off, false);
        expect(dx, n[4], TOL);
        expect(dw, n[5], TOL);
        // accumulate: dx += again doubles it; dw always adds
        rmsnorm_backward(dx, dw, dy, x, w, rstd, 9, 40, (float)off, true);
        for (int i = 0; i < 9 * 40; i++) dx[i] *= 0.5f;
        for (int i = 0; i < 40; i++) dw[i] *= 0.5f;
        expect(dx, n[4], TOL);
        expect(dw, n[5], TOL);
        free(x), free(w), free(dy);
    }
}

// --- rope: transformers' inv_freq for each type, then the rotation and its transpose

static void test_rope_inv_freq(void **state) {
    (void)state;
    struct {
        const char *name;
        ModelRope r;
    } ropes[] = {
        {"default", {.type = MODEL_ROPE_DEFAULT, .theta = 10000}},
        {"linear", {.type = MODEL_ROPE_LINEAR, .theta = 10000, .factor = 4}},
        {"dynamic",
         {.type = MODEL_ROPE_DYNAMIC, .theta = 10000, .factor = 2, .original_max_positions = 32}},
        {"llama3",
         {.type = MODEL_ROPE_LLAMA3,
          .theta = 500000,
          .factor = 8,
          .low_freq_factor = 1,
          .high_freq_factor = 4,
          .original_max_positions = 8}},
        {"yarn",
         {.type = MODEL_ROPE_YARN,
          .theta = 10000,
          .factor = 4,
          .original_max_positions = 8,
          .beta_fast = 32,
          .beta_slow = 1,
          .truncate = true}},
        {"yarn_mscale",
         {.type = MODEL_ROPE_YARN,
          .theta = 10000,
          .factor = 4,
          .mscale = 1,
          .mscale_all_dim = 0.5,
          .original_max_positions = 8,
          .beta_fast = 16,
          .beta_slow = 2,
          .truncate = true}},
        {"yarn_notrunc",
         {.type = MODEL_ROPE_YARN,
          .theta = 10000,
          .factor = 3,
          .original_max_positions = 8,
          .beta_fast = 32,
          .beta_slow = 1,
          .truncate = false,
          .attention_factor = 1.25}},
    };
    for (size_t i = 0; i < sizeof ropes / sizeof *ropes; i++) {
        float inv[8];
        float scale = rope_inv_freq(&ropes[i].r, 16, 32, 40, inv);
        char n[64];
        snprintf(n, sizeof n, "rope.%s.inv_freq", ropes[i].name);
        expect(inv, n, 1e-6);
        snprintf(n, sizeof n, "rope.%s.scale", ropes[i].name);
        float want_scale = st_get_f32(want(n), 0);
        if (fabsf(scale - want_scale) > 1e-6f * want_scale)
            fail_msg("%s: attention scaling %.9g, transformers says %.9g", ropes[i].name, scale,
                     want_scale);
    }
    // dynamic within max_position_embeddings is the default rope
    ModelRope dyn = {.type = MODEL_ROPE_DYNAMIC, .theta = 10000, .factor = 2};
    float inv[8];
    rope_inv_freq(&dyn, 16, 32, 32, inv);
    expect(inv, "rope.default.inv_freq", 1e-7);
}

static void test_rope_apply(void **state) {
    (void)state;
    float *x = load("ropex.x"), *dy = load("ropex.dy"), *inv = load("rope.yarn.inv_freq");
    int32_t *pos = load_ints("ropex.pos");
    float scale = st_get_f32(want("rope.yarn.scale"), 0);
    float y[12 * 3 * 16], dx[12 * 3 * 16];
    rope_forward(y, x, pos, inv, scale, 12, 3, 16);
    expect(y, "ropex.y", TOL);
    rope_backward(dx, dy, pos, inv, scale, 12, 3, 16);
    expect(dx, "ropex.dx", TOL);
    free(x), free(dy), free(inv), free(pos);
}

// --- attention: GQA over packed rows; plain, sliding window, soft-cap

static void test_attention(void **state) {
    (void)state;
    const int64_t B = 2, T = 12, NH = 4, NKV = 2, HD = 8;
    float *q = load("attn.q"), *k = load("attn.k"), *v = load("attn.v");
    int32_t *seq = load_ints("attn.seq");
    struct {
        const char *name;
        int64_t window;
        float cap;
    } cfg[] = {{"plain", 0, 0}, {"window", 4, 0}, {"softcap", 4, 3}};
    for (int c = 0; c < 3; c++) {
        AttentionShape s = {.B = B,
                            .T = T,
                            .NH = NH,
                            .NKV = NKV,
                            .HD = HD,
                            .scale = 0.3f,
                            .softcap = cfg[c].cap,
                            .window = cfg[c].window};
        float out[2 * 12 * 4 * 8], lse[2 * 4 * 12], delta[2 * 4 * 12];
        float dq[2 * 12 * 4 * 8], dk[2 * 12 * 2 * 8], dv[2 * 12 * 2 * 8];
        char n[64];
        attention_forward(out, lse, q, k, v, seq, &s);
        snprintf(n, sizeof n, "attn.%s.out", cfg[c].name);
        expect(out, n, TOL);
        snprintf(n, sizeof n, "attn.%s.dout", cfg[c].name);
        float *dout = load(n);
        attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, seq, &s);
        const char *g[3] = {"dq", "dk", "dv"};
        float *got[3] = {dq, dk, dv};
        for (int i = 0; i < 3; i++) {
            snprintf(n, sizeof n, "attn.%s.%s", cfg[c].name, g[i]);
            expect(got[i], n, 1e-5);
        }
        free(dout);
    }
    free(q), free(k), free(v), free(seq);
}

// --- GLU

static void test_glu(void **state) {
    (void)state;
    float *gate = load("glu.gate"), *up = load("glu.up");
    const char *names[3] = {"silu", "gelu_tanh", "gelu"};
    ModelActivation acts[3] = {MODEL_ACT_SILU, MODEL_ACT_GELU_TANH, MODEL_ACT_GELU};
    for (int a = 0; a < 3; a++) {
        char n[64];
        float out[300], dg[300], du[300];
        glu_forward(out, gate, up, 300, acts[a]);
        snprintf(n, sizeof n, "glu.%s.out", names[a]);
        expect(out, n, TOL);
        snprintf(n, sizeof n, "glu.%s.dout", names[a]);
        float *dout = load(n);
        glu_backward(dg, du, dout, gate, up, 300, acts[a]);
        snprintf(n, sizeof n, "glu.%s.dgate", names[a]);
        expect(dg, n, TOL);
        snprintf(n, sizeof n, "glu.%s.dup", names[a]);
        expect(du, n, TOL);
        free(dout);
    }
    free(gate), free(up);
}

// --- soft-cap, cross-entropy

static void test_softcap(void **state) {
    (void)state;
    float *x = load("cap.x"), *dy = load("cap.dy"), y[200], dx[200];
    softcap_forward(y, x, 200, 2.5f);
    expect(y, "cap.y", TOL);
    softcap_backward(dx, dy, x, 200, 2.5f);
    expect(dx, "cap.dx", TOL);
    free(x), free(dy);
}

static void test_crossentropy(void **state) {
    (void)state;
    float *logits = load("ce.logits");
    int32_t *labels = load_ints("ce.labels");
    float d[2 * 6 * 11];
    int64_t count;
    double sum = crossentropy_forward_backward(d, logits, labels, 2, 6, 11, 0.25f, &count);
    assert_int_equal(count, (int64_t)st_get_f32(want("ce.count"), 0));
    assert_int_equal(crossentropy_count(labels, 2, 6), count);
    double want_sum = st_get_f32(want("ce.sum"), 0);
    assert_true(fabs(sum - want_sum) < 1e-6 * want_sum);
    expect(d, "ce.dlogits", TOL);
    // in place over the logits, and forward only
    double sum2 = crossentropy_forward_backward(NULL, logits, labels, 2, 6, 11, 1, &count);
    assert_true(sum2 == sum);
    crossentropy_forward_backward(logits, logits, labels, 2, 6, 11, 0.25f, &count);
    expect(logits, "ce.dlogits", TOL);
    free(logits), free(labels);
}

// --- sums (exact by construction: small integers)

static void test_add(void **state) {
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {10, 20, 30, 40, 50, 60}, c[6];
    add_forward(c, a, b, 6);
    for (int i = 0; i < 6; i++) assert_true(c[i] == a[i] + b[i]);
    add_into(c, a, 6, true);
    for (int i = 0; i < 6; i++) assert_true(c[i] == 2 * a[i] + b[i]);
    add_into(c, a, 6, false);
    assert_memory_equal(c, a, sizeof a);
    float y[6] = {0}, bias[3] = {1, 2, 3}, db[3] = {100, 0, 0};
    add_bias_forward(y, bias, 2, 3);
    for (int i = 0; i < 6; i++) assert_true(y[i] == bias[i % 3]);
    add_bias_backward(db, a, 2, 3); /* rows (1 2 3), (4 5 6) */
    assert_true(db[0] == 105 && db[1] == 7 && db[2] == 9);
}

// --- dropout: the same mask for the same key, rate p, kept values scaled by 1 / (1 - p)

static void test_dropout(void **state) {
    (void)state;
    enum { N = 40000 };
    float *x = xmalloc(N * sizeof(float)), *a = xmalloc(N * sizeof(float)),
          *b = xmalloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)(i % 7);
    const float p = 0.3f;
    dropout_forward(a, x, N, p, 11, rng_purpose(RNG_DROPOUT, 5), 1ull << 40);
    dropout_forward(b, x, N, p, 11, rng_purpose(RNG_DROPOUT, 5), 1ull << 40);
    assert_memory_equal(a, b, N * sizeof(float));
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        bool keep = rng_uniform(11, rng_purpose(RNG_DROPOUT, 5), (1ull << 40) + (uint64_t)i) >= p;
        assert_true(keep ? fabsf(a[i] - x[i] / (1 - p)) < 1e-6f * x[i] : a[i] == 0.0f);
        dropped += !keep;
    }
    assert_true(fabs((double)dropped / N - p) < 0.01);
    dropout_forward(b, x, N, p, 11, rng_purpose(RNG_DROPOUT, 6), 1ull << 40);
    assert_memory_not_equal(a, b, N * sizeof(float));
    free(x), free(a), free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),       cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),      cmocka_unit_test(test_rope_inv_freq),
        cmocka_unit_test(test_rope_apply),   cmocka_unit_test(test_attention),
        cmocka_unit_test(test_glu),          cmocka_unit_test(test_softcap),
        cmocka_unit_test(test_crossentropy), cmocka_unit_test(test_add),
        cmocka_unit_test(test_dropout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
