/* softcap.h - logit soft-capping (gemma2's final logits): out = cap * tanh(x / cap).
 * backward: dx = dout * (1 - tanh(x / cap)^2), from the input x, so the output's buffer may
 * already hold something else (the loss overwrites logits with their gradient). */
#ifndef LLFC_KERNELS_SOFTCAP_H
#define LLFC_KERNELS_SOFTCAP_H

#include <stdint.h>

void softcap_forward(float *out, const float *x, int64_t N, float cap);
void softcap_backward(float *dx, const float *dout, const float *x, int64_t N, float cap);

#endif
