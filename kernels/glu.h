/* glu.h - the gated MLP's middle: out = act(gate) * up, forward and backward.
 *
 *     act = silu (SwiGLU: llama, qwen, mistral), gelu_tanh (GeGLU: gemma), gelu (erf)
 *     gate, up, out (N): N = tokens * FF
 * backward writes dgate and dup (not accumulated).
 */
#ifndef LLFC_KERNELS_GLU_H
#define LLFC_KERNELS_GLU_H

#include <stdint.h>

#include "model.h"

void glu_forward(float *out, const float *gate, const float *up, int64_t N, ModelActivation act);
void glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                  int64_t N, ModelActivation act);

#endif
