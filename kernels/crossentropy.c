/* crossentropy.c - shifted cross-entropy with ignore index, and its gradient (C reference). */
#include "crossentropy.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static inline int32_t target(const int32_t *labels, int64_t T, int64_t b, int64_t t) {
    return t + 1 < T ? labels[b * T + t + 1] : CE_IGNORE;
}

int64_t crossentropy_count(const int32_t *labels, int64_t B, int64_t T) {
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) n += target(labels, T, b, t) != CE_IGNORE;
    return n;
}

/* Rows are split into CHUNKS fixed slices summed in order, so the loss is bit-identical
 * whatever the number of threads. */
double crossentropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels,
                                     int64_t B, int64_t T, int64_t V, float grad_scale,
                                     int64_t *count) {
    enum { CHUNKS = 64 };
    double part[CHUNKS] = {0};
    int64_t npart[CHUNKS] = {0};
    const int64_t rows = B * T;
#pragma omp parallel for schedule(dynamic, 1) if (rows * V > 65536)
    for (int64_t c = 0; c < CHUNKS; c++)
        for (int64_t r = rows * c / CHUNKS; r < rows * (c + 1) / CHUNKS; r++) {
            const int32_t y = target(labels, T, r / T, r % T);
            const float *x = logits + r * V;
            float *d = dlogits ? dlogits + r * V : NULL;
            if (y == CE_IGNORE) {
                if (d) memset(d, 0, (size_t)V * sizeof(float));
                continue;
            }
            assert(y >= 0 && y < V);
            float m = -INFINITY;
            for (int64_t k = 0; k < V; k++) m = x[k] > m ? x[k] : m;
            double sum = 0;
            for (int64_t k = 0; k < V; k++) sum += exp((double)(x[k] - m));
            const double lse = (double)m + log(sum);
            part[c] += lse - (double)x[y];
            npart[c]++;
            if (d) {
                const float xy = x[y]; /* d may alias x */
                for (int64_t k = 0; k < V; k++)
                    d[k] = (float)(exp((double)x[k] - lse)) * grad_scale;
                d[y] = (float)(exp((double)xy - lse) - 1.0) * grad_scale;
            }
        }
    double total = 0;
    int64_t n = 0;
    for (int c = 0; c < CHUNKS; c++) total += part[c], n += npart[c];
    *count = n;
    return total;
}
