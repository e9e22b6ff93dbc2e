/* dropout.c - Philox-driven inverted dropout (C reference). */
#include "dropout.h"

#include <assert.h>

#include "rng.h"

void dropout_forward(float *out, const float *x, int64_t N, float p, uint64_t seed,
                     uint64_t purpose, uint64_t first) {
    assert(first % 4 == 0);
    const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for if (N > 16384)
    for (int64_t b = 0; b < (N + 3) / 4; b++) {
        uint32_t u[4];
        rng_block(seed, purpose, (first / 4) + (uint64_t)b, u);
        for (int64_t k = 0; k < 4 && 4 * b + k < N; k++) {
            const float r = (float)(u[k] >> 8) * (1.0f / 16777216.0f);
            out[4 * b + k] = r >= p ? x[4 * b + k] * keep_scale : 0.0f;
        }
    }
}
