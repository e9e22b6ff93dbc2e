/* rmsnorm.h - RMSNorm over the last dimension, forward and backward.
 *
 *     rstd[r]   = 1 / sqrt(mean_c x[r, c]^2 + eps)                         x (R, D)
 *     out[r, c] = x[r, c] * rstd[r] * (offset + w[c])                       w (D)
 *
 * offset is 0 (Llama: weight * norm) or 1 (Gemma: norm * (1 + weight)). The same kernel
 * normalises q and k per head (qwen3, gemma3 qk-norm) with R = tokens * heads, D = HD.
 * forward saves rstd (R) for backward, which writes dx (or adds into it when accumulate)
 * and adds into dw (parameter gradients always accumulate; dw may be NULL when frozen).
 */
#ifndef LLFC_KERNELS_RMSNORM_H
#define LLFC_KERNELS_RMSNORM_H

#include <stdbool.h>
#include <stdint.h>

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t R,
                     int64_t D, float eps, float offset);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t R, int64_t D, float offset, bool accumulate);

#endif
