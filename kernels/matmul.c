/* matmul.c - blocked sgemm in plain C, threaded with OpenMP.
 *
 * C (M, N) is cut into MC x NC tiles, one OpenMP task per tile, so no two threads ever write
 * the same element and no reduction is needed. For each KC-deep slice of K a thread packs its
 * slice of op(A) into an (MC, KC) panel and of op(B) into a (KC, NC) panel, both contiguous
 * whatever the transposes; the micro-kernel then updates four rows of C at once with
 * c[i][j] += a[i][k] * b[k][j] over contiguous j, a loop the compiler vectorises without
 * reassociating sums (so results do not depend on -ffast-math). Panels live on the thread's
 * stack (MC*KC + KC*NC floats = 96 KiB): nothing is allocated per call.
 */
#include "matmul.h"

#include <string.h>

enum { MC = 64, KC = 128, NC = 128 };

static void pack_a(float *restrict ap, const float *A, int64_t M, int64_t K, bool trans_a,
                   int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
    for (int64_t i = 0; i < mc; i++)
        for (int64_t k = 0; k < kc; k++)
            ap[i * KC + k] = trans_a ? A[(k0 + k) * M + i0 + i] : A[(i0 + i) * K + k0 + k];
}

static void pack_b(float *restrict bp, const float *B, int64_t N, int64_t K, bool trans_b,
                   int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
    for (int64_t k = 0; k < kc; k++) {
        float *row = bp + k * NC;
        if (!trans_b)
            memcpy(row, B + (k0 + k) * N + j0, (size_t)nc * sizeof(float));
        else
            for (int64_t j = 0; j < nc; j++) row[j] = B[(j0 + j) * K + k0 + k];
        for (int64_t j = nc; j < NC; j++) row[j] = 0.0f;
    }
}

/* acc (mc, :nw) += ap (mc, kc) bp (kc, :nw), four rows per pass over bp. nw is the tile's
 * width rounded up to 8, so narrow products (LoRA's rank-R sides) do not pay for NC columns. */
static inline void micro(float *restrict acc, const float *restrict ap, const float *restrict bp,
                         int64_t mc, int64_t kc, int64_t nw) {
    int64_t i = 0;
    for (; i + 4 <= mc; i += 4) {
        float *c0 = acc + i * NC, *c1 = c0 + NC, *c2 = c1 + NC, *c3 = c2 + NC;
        const float *a = ap + i * KC;
        for (int64_t k = 0; k < kc; k++) {
            const float a0 = a[k], a1 = a[KC + k], a2 = a[2 * KC + k], a3 = a[3 * KC + k];
            const float *b = bp + k * NC;
            for (int64_t j = 0; j < nw; j++) {
                const float bj = b[j];
                c0[j] += a0 * bj;
                c1[j] += a1 * bj;
                c2[j] += a2 * bj;
                c3[j] += a3 * bj;
            }
        }
    }
    for (; i < mc; i++) {
        float *c = acc + i * NC;
        for (int64_t k = 0; k < kc; k++) {
            const float a = ap[i * KC + k];
            const float *b = bp + k * NC;
            for (int64_t j = 0; j < nw; j++) c[j] += a * b[j];
        }
    }
}

static void tile(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K,
                 bool trans_a, bool trans_b, float alpha, float beta, int64_t i0, int64_t j0) {
    float ap[MC * KC], bp[KC * NC], acc[MC * NC];
    const int64_t mc = M - i0 < MC ? M - i0 : MC, nc = N - j0 < NC ? N - j0 : NC;
    memset(acc, 0, sizeof acc);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = K - k0 < KC ? K - k0 : KC;
        pack_a(ap, A, M, K, trans_a, i0, mc, k0, kc);
        pack_b(bp, B, N, K, trans_b, k0, kc, j0, nc);
        if (nc > NC / 2)
            micro(acc, ap, bp, mc, kc, NC); /* constant width: fully unrolled */
        else
            micro(acc, ap, bp, mc, kc, (nc + 7) / 8 * 8);
    }
    for (int64_t i = 0; i < mc; i++) {
        float *c = C + (i0 + i) * N + j0;
        const float *a = acc + i * NC;
        if (beta == 0.0f)
            for (int64_t j = 0; j < nc; j++) c[j] = alpha * a[j];
        else
            for (int64_t j = 0; j < nc; j++) c[j] = beta * c[j] + alpha * a[j];
    }
}

void matmul(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K, bool trans_a,
            bool trans_b, float alpha, float beta) {
    const int64_t mt = (M + MC - 1) / MC, nt = (N + NC - 1) / NC;
    const int64_t flops = M * N * K;
#pragma omp parallel for schedule(dynamic, 1) if (flops > (1 << 18) && mt * nt > 1)
    for (int64_t t = 0; t < mt * nt; t++)
        tile(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, (t / nt) * MC, (t % nt) * NC);
}
