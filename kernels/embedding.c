/* embedding.c - gather and scatter-add over token ids (C reference). */
#include "embedding.h"

#include <assert.h>

void embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C,
                       float scale) {
#pragma omp parallel for if (N * C > 65536)
    for (int64_t t = 0; t < N; t++) {
        const float *row = table + (int64_t)ids[t] * C;
        float *o = out + t * C;
        for (int64_t c = 0; c < C; c++) o[c] = row[c] * scale;
    }
}

/* Threads own column ranges of the table, so repeated ids never race. */
void embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C,
                        int64_t V, float scale) {
    enum { CB = 64 };
#pragma omp parallel for if (N * C > 65536)
    for (int64_t c0 = 0; c0 < C; c0 += CB) {
        const int64_t c1 = c0 + CB < C ? c0 + CB : C;
        for (int64_t t = 0; t < N; t++) {
            assert(ids[t] >= 0 && ids[t] < V);
            float *d = dtable + (int64_t)ids[t] * C;
            const float *g = dout + t * C;
            for (int64_t c = c0; c < c1; c++) d[c] += g[c] * scale;
        }
    }
    (void)V;
}
