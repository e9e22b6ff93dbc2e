/* dropout.h - inverted dropout with counter-based masks (LoRA's input dropout).
 *
 *     keep[i] = rng_uniform(seed, purpose, first + i) >= p
 *     out[i]  = keep[i] ? x[i] / (1 - p) : 0
 * The mask is a pure function of (seed, purpose, index), so backward regenerates it instead of
 * storing it, and the CUDA kernel draws the same mask. dropout_backward is the same map on dout.
 */
#ifndef LLFC_KERNELS_DROPOUT_H
#define LLFC_KERNELS_DROPOUT_H

#include <stdint.h>

void dropout_forward(float *out, const float *x, int64_t N, float p, uint64_t seed,
                     uint64_t purpose, uint64_t first);

#endif
