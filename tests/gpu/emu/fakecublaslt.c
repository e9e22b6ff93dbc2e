/* fakecublaslt.c - a libcublasLt.so for machines without a GPU (tests/gpu/emu/run_trainer.sh):
 * the calls runtime/cudrv.c makes, with "device" memory being host memory (fakecuda.c). A
 * product is computed as cuBLASLt defines it, column-major D = alpha op(A) op(B) + beta C, bf16
 * A and B, fp32 accumulation in k order, D bf16 (rounded to nearest even) or fp32. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef struct { int transa, transb; } Desc;
typedef struct { int type; uint64_t rows, cols; int64_t ld; } Layout;
typedef struct { uint64_t algo[8]; size_t ws; int state; float waves; int reserved[4]; } Heur;
static float bf(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t to_bf(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float get(const void *p, int type, int64_t i) { return type == 0 ? ((const float *)p)[i] : bf(((const uint16_t *)p)[i]); }
int cublasLtCreate(void **h) { *h = (void *)1; return 0; }
int cublasLtDestroy(void *h) { (void)h; return 0; }
int cublasLtMatmulDescCreate(void **d, int compute, int scale) { (void)compute, (void)scale; *d = calloc(1, sizeof(Desc)); return 0; }
int cublasLtMatmulDescDestroy(void *d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n) {
    Desc *x = d;
    if (n != 4) return 7;
    if (attr == 3) memcpy(&x->transa, buf, 4);
    else if (attr == 4) memcpy(&x->transb, buf, 4);
    else return 15; /* not supported here */
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
            if (ld->type == 0) ((float *)D)[o] = v;
            else ((uint16_t *)D)[o] = to_bf(v);
        }
    return 0;
}
