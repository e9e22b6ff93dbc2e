/* test_cudrv.c - the CUDA driver is looked for where cudrv.h says, and a missing or wrong
 * library is reported by name; cudrv_gemm's bias (cuBLASLt's BIAS epilogue) on the emulated
 * GPU (tests/gpu/emu's fake driver and cuBLASLt, which ninja builds beside this test) against
 * sums computed here; streams and events on the fake driver, a failing call named with what it
 * served. (The products and launches are checked end to end by tests/e2e/test_cuda_emu.c, on a
 * GPU or its emulation.) */
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

#include "cudrv.h"

static char fake_driver[4096], fake_cublaslt[4096];

static void test_missing_driver_is_named(void **state) {
    (void)state;
    char err[512];
    setenv("LLFC_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
    assert_null(cudrv_open(0, err, sizeof err));
    assert_non_null(strstr(err, "no CUDA driver: /nonexistent/libcuda.so.1 not found by the dynamic loader"));
    unsetenv("LLFC_CUDA_DRIVER");
}

static void test_a_library_that_is_no_driver_is_named(void **state) {
    (void)state;
    char err[512];
    setenv("LLFC_CUDA_DRIVER", "libm.so.6", 1);
    assert_null(cudrv_open(0, err, sizeof err));
    assert_non_null(strstr(err, "libm.so.6 has no cuInit: not the library llfc needs"));
    unsetenv("LLFC_CUDA_DRIVER");
}

// --- 16-bit values written here, independently of the emulation's conversions

/* v's bf16 bits, v being exactly a bf16 (its float's low 16 bits are 0). */
static uint16_t bf16_exact(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    assert_true((double)f == v && (u & 0xffffu) == 0);
    return (uint16_t)(u >> 16);
}

static double from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* v's IEEE half bits, v being exactly a normal half (11 significant bits). */
static uint16_t f16_exact(double v) {
    if (v == 0) return 0;
    int e;
    double m = frexp(fabs(v), &e); /* |v| = m 2^e, m in [0.5, 1) */
    double frac = m * 2048.0;      /* 11 significant bits */
    assert_true(frac == floor(frac) && e - 1 >= -14 && e - 1 <= 15);
    uint16_t bits = (uint16_t)(((e - 1 + 15) << 10) | ((uint32_t)frac - 1024));
    return v < 0 ? (uint16_t)(bits | 0x8000) : bits;
}

static double from_f16(uint16_t h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return h & 0x8000 ? -v : v;
}

static uint16_t to16(CuType t, double v) { return t == CU_F16 ? f16_exact(v) : bf16_exact(v); }
static double from16(CuType t, uint16_t h) { return t == CU_F16 ? from_f16(h) : from_bf16(h); }

// --- the bias epilogue

static CuDrv *open_emulated(void) {
    char err[512];
    setenv("LLFC_CUDA_DRIVER", fake_driver, 1);
    setenv("LLFC_CUBLASLT", fake_cublaslt, 1);
    CuDrv *d = cudrv_open(0, err, sizeof err);
    unsetenv("LLFC_CUDA_DRIVER"), unsetenv("LLFC_CUBLASLT");
    if (!d) fail_msg("%s", err);
    return d;
}

static CuPtr put16(CuDrv *d, CuType t, const double *v, int64_t n) {
    char err[512];
    uint16_t *h = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = to16(t, v[i]);
    CuPtr p;
    if (!cudrv_alloc(d, &p, (size_t)n * 2, "test", err, sizeof err) || !cudrv_put(d, p, h, (size_t)n * 2, "test", err, sizeof err))
        fail_msg("%s", err);
    free(h);
    return p;
}

/* y (M, N) = x (M, K) W^T (W (N, K)) + bias (N) in type t, a linear layer's product; y[] as doubles. */
static void linear(CuDrv *d, CuType t, CuPtr x, CuPtr W, CuPtr bias, int64_t M, int64_t N, int64_t K, double *y) {
    char err[512];
    CuPtr dy;
    if (!cudrv_alloc(d, &dy, (size_t)(M * N) * 2, "y", err, sizeof err)) fail_msg("%s", err);
    CuGemm g = {.C = dy, .A = x, .B = W, .bias = bias, .c_type = t, .ab_type = t, .M = M, .N = N, .K = K,
                .trans_b = true, .alpha = 1, .beta = 0};
    if (!cudrv_gemm(d, &g, "linear", err, sizeof err)) fail_msg("%s", err);
    uint16_t *h = xmalloc((size_t)(M * N) * 2);
    if (!cudrv_get(d, h, dy, (size_t)(M * N) * 2, "y", err, sizeof err)) fail_msg("%s", err);
    for (int64_t i = 0; i < M * N; i++) y[i] = from16(t, h[i]);
    free(h);
    cudrv_free(d, dy);
}

enum { M = 3, N = 4, K = 5 };

/* Small integers and quarters: every product, sum and biased sum here is exact in bf16 (at most
 * 8 significant bits) and f16, so y must equal the sums exactly; the bias differs per column, so
 * broadcasting it along the wrong dimension shows. A second bias on the same shape must be the
 * one used (cudrv keeps one cuBLASLt descriptor per shape). */
static void bias_is_added_per_column(CuType t) {
    CuDrv *d = open_emulated();
    double x[M * K], W[N * K], y[M * N];
    const double biases[2][N] = {{0.5, -1.25, 2, -3.75}, {-0.25, 3.5, -2, 1.75}};
    for (int i = 0; i < M * K; i++) x[i] = (i * 3 % 7) - 3;
    for (int i = 0; i < N * K; i++) W[i] = (i * 5 % 7) - 3;
    CuPtr dx = put16(d, t, x, M * K), dW = put16(d, t, W, N * K);
    for (int b = 0; b < 2; b++) {
        CuPtr bias = put16(d, t, biases[b], N);
        linear(d, t, dx, dW, bias, M, N, K, y);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double want = biases[b][n];
                for (int k = 0; k < K; k++) want += x[m * K + k] * W[n * K + k];
                if (y[m * N + n] != want) fail_msg("bias %d: y[%d, %d] = %g, want %g", b, m, n, y[m * N + n], want);
            }
        cudrv_free(d, bias);
    }
    cudrv_free(d, dx), cudrv_free(d, dW);
    cudrv_close(d);
}

static void test_bias_bf16(void **state) {
    (void)state;
    bias_is_added_per_column(CU_BF16);
}

static void test_bias_f16(void **state) {
    (void)state;
    bias_is_added_per_column(CU_F16);
}

/* x W^T = 257, not a bf16 (it rounds to even: 256); + bias 1 = 258, a bf16. Added before the one
 * rounding, as cuBLASLt's epilogue does, y is 258; a product rounded first, then biased and
 * rounded again (the old bias_add kernel), would give 256. */
static void test_bias_is_added_before_rounding(void **state) {
    (void)state;
    CuDrv *d = open_emulated();
    const double x[2] = {256, 1}, W[2 * 2] = {1, 1, 0, 1}, bias[2] = {1, -0.5};
    double y[2];
    CuPtr dx = put16(d, CU_BF16, x, 2), dW = put16(d, CU_BF16, W, 4), db = put16(d, CU_BF16, bias, 2);
    linear(d, CU_BF16, dx, dW, db, 1, 2, 2, y);
    assert_true(y[0] == 258 && y[1] == 0.5);
    cudrv_free(d, dx), cudrv_free(d, dW), cudrv_free(d, db);
    cudrv_close(d);
}

/* cuBLASLt's bias is of D's type: an fp32 product with our 16-bit bias is refused by name. */
static void test_bias_with_fp32_output_is_refused(void **state) {
    (void)state;
    char err[512];
    CuDrv *d = open_emulated();
    CuPtr p;
    assert_true(cudrv_alloc(d, &p, 4096, "test", err, sizeof err));
    CuGemm g = {.C = p, .A = p, .B = p, .bias = p, .c_type = CU_F32, .ab_type = CU_BF16, .M = 2, .N = 2, .K = 2,
                .alpha = 1};
    assert_false(cudrv_gemm(d, &g, "op 7 linear", err, sizeof err));
    if (!strstr(err, "cuBLASLt (op 7 linear): a bias needs C of the 16-bit type of A and B")) fail_msg("got: %s", err);
    cudrv_free(d, p);
    cudrv_close(d);
}

/* The emulation refuses (CUBLAS_STATUS_NOT_SUPPORTED, 15) what it does not implement: other
 * epilogues, other attributes, a bias type other than D's; a BIAS without a pointer is invalid
 * (7). (Values from cublasLt.h.) */
static void test_the_emulation_refuses_what_it_lacks(void **state) {
    (void)state;
    void *lt = dlopen(fake_cublaslt, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lt);
    int (*create)(void **, int, int), (*destroy)(void *), (*set)(void *, int, const void *, size_t);
    int (*layout)(void **, int, uint64_t, uint64_t, int64_t), (*layout_destroy)(void *);
    int (*matmul)(void *, void *, const void *, const void *, void *, const void *, void *, const void *, const void *,
                  void *, void *, void *, const void *, void *, size_t, void *);
    *(void **)&create = dlsym(lt, "cublasLtMatmulDescCreate"), *(void **)&destroy = dlsym(lt, "cublasLtMatmulDescDestroy");
    *(void **)&set = dlsym(lt, "cublasLtMatmulDescSetAttribute"), *(void **)&layout = dlsym(lt, "cublasLtMatrixLayoutCreate");
    *(void **)&layout_destroy = dlsym(lt, "cublasLtMatrixLayoutDestroy"), *(void **)&matmul = dlsym(lt, "cublasLtMatmul");
    void *desc, *l;
    assert_int_equal(create(&desc, 68, 0), 0);
    const uint32_t bgradb = 512, gelu = 32, bias_epilogue = 4;
    const int32_t f32 = 0;
    assert_int_equal(set(desc, 7, &bgradb, 4), 15);
    assert_int_equal(set(desc, 7, &gelu, 4), 15);
    const void *aux = NULL;
    assert_int_equal(set(desc, 11, &aux, sizeof aux), 15); /* CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER */
    assert_int_equal(layout(&l, 14, 1, 1, 1), 0);          /* 1 x 1 bf16 */
    uint16_t a = 0x3f80, c = 0, b16 = 0x3f80;              /* 1.0 */
    const float one = 1, zero = 0;
    assert_int_equal(set(desc, 7, &bias_epilogue, 4), 0);
    assert_int_equal(matmul(NULL, desc, &one, &a, l, &a, l, &zero, &c, l, &c, l, NULL, NULL, 0, NULL), 7); /* no bias */
    const void *bp = &b16;
    assert_int_equal(set(desc, 8, &bp, sizeof bp), 0);
    assert_int_equal(set(desc, 26, &f32, 4), 0);
    assert_int_equal(matmul(NULL, desc, &one, &a, l, &a, l, &zero, &c, l, &c, l, NULL, NULL, 0, NULL), 15);
    const int32_t bf16_type = 14;
    assert_int_equal(set(desc, 26, &bf16_type, 4), 0);
    assert_int_equal(matmul(NULL, desc, &one, &a, l, &a, l, &zero, &c, l, &c, l, NULL, NULL, 0, NULL), 0);
    assert_int_equal(c, 0x4000); /* 1 * 1 + 1 = 2 */
    layout_destroy(l), destroy(desc);
    dlclose(lt);
}

// --- streams and events

static void test_streams_and_events(void **state) {
    (void)state;
    char err[512];
    CuDrv *d = open_emulated();
    void *stream = NULL, *event = NULL;
    bool done = false;
    assert_true(cudrv_stream_new(d, &stream, "communication", err, sizeof err));
    assert_true(cudrv_event_new(d, &event, "gradients ready", err, sizeof err));
    assert_non_null(stream);
    assert_non_null(event);
    assert_true(cudrv_event_record(d, event, NULL, "layer 3", err, sizeof err));
    assert_true(cudrv_stream_wait(d, stream, event, "layer 3", err, sizeof err));
    assert_true(cudrv_stream_done(d, stream, &done, "layer 3", err, sizeof err));
    assert_true(done);
    long junk[4] = {0}; /* no stream or event of the driver's: the call and what it served are named */
    assert_false(cudrv_stream_wait(d, junk, event, "layer 2", err, sizeof err));
    assert_string_equal(err, "cuStreamWaitEvent (layer 2) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_false(cudrv_event_record(d, junk, NULL, "layer 1", err, sizeof err));
    assert_string_equal(err, "cuEventRecord (layer 1) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_false(cudrv_event_free(d, junk, "teardown", err, sizeof err));
    assert_string_equal(err, "cuEventDestroy (teardown) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_true(cudrv_event_free(d, event, "gradients ready", err, sizeof err));
    assert_true(cudrv_stream_free(d, stream, "communication", err, sizeof err));
    assert_true(cudrv_stream_free(d, NULL, "none", err, sizeof err));
    cudrv_close(d);
}

int main(void) {
    test_beside_self(fake_driver, sizeof fake_driver, "libfakecuda.so.1");
    test_beside_self(fake_cublaslt, sizeof fake_cublaslt, "libfakecublaslt.so");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_driver_is_named),
        cmocka_unit_test(test_a_library_that_is_no_driver_is_named),
        cmocka_unit_test(test_bias_bf16),
        cmocka_unit_test(test_bias_f16),
        cmocka_unit_test(test_bias_is_added_before_rounding),
        cmocka_unit_test(test_bias_with_fp32_output_is_refused),
        cmocka_unit_test(test_the_emulation_refuses_what_it_lacks),
        cmocka_unit_test(test_streams_and_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
