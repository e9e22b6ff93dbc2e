/* fakecublaslt.c - a libcublasLt.so for machines without a GPU (tests/gpu/emu/run_trainer.sh):
 * the calls runtime/cudrv.c makes, with "device" memory being host memory (fakecuda.c). A
 * product is computed as cuBLASLt defines it, column-major D = alpha op(A) op(B) + beta C, bf16
 * (CUDA_R_16BF) or f16 (CUDA_R_16F) A and B, fp32 accumulation in k order, D of A's type (rounded
 * to nearest even; f16 overflows to inf from 65520, as the GPU's) or fp32.
 * Epilogues: DEFAULT, and BIAS as cublasLt.h defines it: a bias vector of D's type (the only
 * type it documents outside IMMA and fp8), one value per row of D (its length "must match matrix
 * D rows"), broadcast to every column and added in fp32 before D is rounded. Any other epilogue,
 * attribute or bias type is refused with CUBLAS_STATUS_NOT_SUPPORTED (15), so that a use this
 * emulation does not implement fails loudly instead of computing something else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
enum { ST_INVALID_VALUE = 7, ST_NOT_SUPPORTED = 15 };
enum { ATTR_TRANSA = 3, ATTR_TRANSB = 4, ATTR_EPILOGUE = 7, ATTR_BIAS_POINTER = 8, ATTR_BIAS_DATA_TYPE = 26 };
enum { EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4 };
typedef struct { int transa, transb; uint32_t epilogue; const void *bias; int32_t bias_type; } Desc;
typedef struct { int type; uint64_t rows, cols; int64_t ld; } Layout;
typedef struct { uint64_t algo[8]; size_t ws; int state; float waves; int reserved[4]; } Heur;
static float bf(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t to_bf(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float half(uint16_t h) { /* runtime/safetensors.c's st_f16_to_f32 */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    float f;
    if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
    else if (exp != 0) u = sign | ((exp + 112) << 23) | (man << 13);
    else { f = (float)man * 0x1p-24f; return sign ? -f : f; }
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t to_half(float f) { /* runtime/safetensors.c's st_f32_to_f16 */
    uint32_t u; memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;
    if (a >= 0x477ff000u) return sign | 0x7c00;
    if (a < 0x38800000u) {
        float v; memcpy(&v, &a, 4);
        v = v * 0x1p24f + 0x1p23f; /* rounds to an integer, to even */
        memcpy(&u, &v, 4);
        return sign | (uint16_t)(u - 0x4b000000u);
    }
    return sign | (uint16_t)((a + 0xfffu + ((a >> 13) & 1) - ((uint32_t)112 << 23)) >> 13);
}
enum { R_32F = 0, R_16F = 2, R_16BF = 14 };
static float get(const void *p, int type, int64_t i) {
    return type == R_32F ? ((const float *)p)[i] : type == R_16F ? half(((const uint16_t *)p)[i]) : bf(((const uint16_t *)p)[i]);
}
int cublasLtCreate(void **h) { *h = (void *)1; return 0; }
int cublasLtDestroy(void *h) { (void)h; return 0; }
int cublasLtMatmulDescCreate(void **d, int compute, int scale) {
    (void)compute, (void)scale;
    Desc *x = calloc(1, sizeof *x);
    x->epilogue = EPILOGUE_DEFAULT, x->bias_type = -1; /* cuBLASLt's defaults: -1 is D's type */
    *d = x;
    return 0;
}
int cublasLtMatmulDescDestroy(void *d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n) {
    Desc *x = d;
    const size_t want = attr == ATTR_BIAS_POINTER ? sizeof(void *) : 4;
    if (attr != ATTR_TRANSA && attr != ATTR_TRANSB && attr != ATTR_EPILOGUE && attr != ATTR_BIAS_POINTER &&
        attr != ATTR_BIAS_DATA_TYPE)
        return ST_NOT_SUPPORTED; /* not emulated */
    if (n != want) return ST_INVALID_VALUE;
    if (attr == ATTR_TRANSA) memcpy(&x->transa, buf, 4);
    else if (attr == ATTR_TRANSB) memcpy(&x->transb, buf, 4);
    else if (attr == ATTR_BIAS_POINTER) memcpy(&x->bias, buf, sizeof x->bias);
    else if (attr == ATTR_BIAS_DATA_TYPE) memcpy(&x->bias_type, buf, 4);
    else {
        uint32_t e;
        memcpy(&e, buf, 4);
        if (e != EPILOGUE_DEFAULT && e != EPILOGUE_BIAS) return ST_NOT_SUPPORTED; /* RELU, GELU, BGRADA, ...: not emulated */
        x->epilogue = e;
    }
    return 0;
}
int cublasLtMatrixLayoutCreate(void **l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
    Layout *x = calloc(1, sizeof *x);
    *x = (Layout){type, rows, cols, ld};
    *l = x;
    return ld < (int64_t)rows ? 7 : 0;
}
int cublasLtMatrixLayoutDestroy(void *l) { free(l); return 0; }
int cublasLtMatmulPreferenceCreate(void **p) { *p = (void *)1; return 0; }
int cublasLtMatmulPreferenceDestroy(void *p) { (void)p; return 0; }
int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t n) { (void)p, (void)attr, (void)buf, (void)n; return 0; }
int cublasLtMatmulAlgoGetHeuristic(void *h, void *d, void *a, void *b, void *c, void *dd, void *pref, int want, Heur *res, int *n) {
    (void)h, (void)d, (void)a, (void)b, (void)c, (void)dd, (void)pref;
    if (want < 1) return 7;
    memset(res, 0, sizeof *res);
    *n = 1;
    return 0;
}
int cublasLtMatmul(void *h, void *desc, const void *alpha, const void *A, void *Ad, const void *B, void *Bd,
                   const void *beta, const void *C, void *Cd, void *D, void *Dd, const void *algo, void *ws, size_t wsn, void *stream) {
    (void)h, (void)algo, (void)ws, (void)wsn, (void)stream, (void)Cd;
    const Desc *x = desc;
    const Layout *la = Ad, *lb = Bd, *ld = Dd;
    const int64_t m = x->transa ? (int64_t)la->cols : (int64_t)la->rows, k = x->transa ? (int64_t)la->rows : (int64_t)la->cols;
    const int64_t n = x->transb ? (int64_t)lb->rows : (int64_t)lb->cols;
    if ((x->transb ? (int64_t)lb->cols : (int64_t)lb->rows) != k || (int64_t)ld->rows != m || (int64_t)ld->cols != n) return 7;
    if (la->type != lb->type || (la->type != R_16F && la->type != R_16BF)) return 15; /* as the GPU's: not supported */
    const int with_bias = x->epilogue == EPILOGUE_BIAS;
    if (with_bias && !x->bias) return ST_INVALID_VALUE;
    if (with_bias && x->bias_type != -1 && x->bias_type != ld->type) return ST_NOT_SUPPORTED; /* undocumented */
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            float acc = 0;
            for (int64_t l = 0; l < k; l++) {
                float a = get(A, la->type, x->transa ? l + i * la->ld : i + l * la->ld);
                float b = get(B, lb->type, x->transb ? j + l * lb->ld : l + j * lb->ld);
                acc += a * b;
            }
            const int64_t o = i + j * ld->ld;
            float v = al * acc + (be != 0 ? be * get(C, ld->type, o) : 0.0f);
            if (with_bias) v += get(x->bias, ld->type, i); /* row i of D, every column j */
            if (ld->type == R_32F) ((float *)D)[o] = v;
            else ((uint16_t *)D)[o] = ld->type == R_16F ? to_half(v) : to_bf(v);
        }
    return 0;
}
