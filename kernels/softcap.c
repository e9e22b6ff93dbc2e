/* softcap.c - tanh soft-capping (C reference). */
#include "softcap.h"

#include <math.h>

void softcap_forward(float *out, const float *x, int64_t N, float cap) {
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) out[i] = cap * tanhf(x[i] / cap);
}

void softcap_backward(float *dx, const float *dout, const float *x, int64_t N, float cap) {
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) {
        const float t = tanhf(x[i] / cap);
        dx[i] = dout[i] * (1 - t * t);
    }
}
