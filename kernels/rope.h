/* rope.h - rotary position embedding in the rotate_half layout, forward and backward.
 *
 *     angle[t, i] = pos[t] * inv_freq[i]           i < HD/2, computed in fp32 as transformers does
 *     c = cos(angle) * attn_scale,  s = sin(angle) * attn_scale
 *     out[.., i]        = x[.., i] * c - x[.., i + HD/2] * s
 *     out[.., i + HD/2] = x[.., i + HD/2] * c + x[.., i] * s          x (N, H, HD)
 *
 * backward rotates by -angle (the transpose of the rotation). Positions restart at 0 for each
 * packed sequence; the caller passes them per token.
 *
 * rope_inv_freq computes inv_freq (HD/2) and attn_scale for each rope type exactly as
 * transformers' modeling_rope_utils does (default, linear, dynamic NTK, llama3, yarn).
 * `seq_len` matters only for dynamic: max(position) + 1 over the batch, as transformers'
 * dynamic_rope_update sees it in one forward of a fresh model; `max_positions` is the config's
 * max_position_embeddings.
 */
#ifndef LLFC_KERNELS_ROPE_H
#define LLFC_KERNELS_ROPE_H

#include <stdint.h>

#include "model.h"

#define ROPE_MAX_HD 1024

float rope_inv_freq(const ModelRope *r, int64_t HD, int64_t max_positions, int64_t seq_len,
                    float *inv_freq);
void rope_forward(float *out, const float *x, const int32_t *pos, const float *inv_freq,
                  float attn_scale, int64_t N, int64_t H, int64_t HD);
void rope_backward(float *dx, const float *dout, const int32_t *pos, const float *inv_freq,
                   float attn_scale, int64_t N, int64_t H, int64_t HD);

#endif
