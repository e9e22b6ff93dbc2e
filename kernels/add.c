/* add.c - elementwise sums (C reference). */
#include "add.h"

#include <string.h>

void add_forward(float *out, const float *a, const float *b, int64_t N) {
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void add_into(float *dst, const float *src, int64_t N, bool accumulate) {
    if (!accumulate) {
        if (dst != src) memmove(dst, src, (size_t)N * sizeof(float));
        return;
    }
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) dst[i] += src[i];
}

void add_bias_forward(float *y, const float *bias, int64_t M, int64_t N) {
#pragma omp parallel for if (M * N > 65536)
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) y[m * N + n] += bias[n];
}

void add_bias_backward(float *dbias, const float *dy, int64_t M, int64_t N) {
    enum { CB = 64 };
#pragma omp parallel for if (M * N > 65536)
    for (int64_t n0 = 0; n0 < N; n0 += CB) {
        const int64_t n1 = n0 + CB < N ? n0 + CB : N;
        double acc[CB] = {0};
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = n0; n < n1; n++) acc[n - n0] += dy[m * N + n];
        for (int64_t n = n0; n < n1; n++) dbias[n] += (float)acc[n - n0];
    }
}
