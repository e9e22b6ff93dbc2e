/* embedding.h - token embedding: gather rows of the table, and its backward (scatter-add).
 *
 *     forward   out[t, :] = table[ids[t], :] * scale          ids (N) int32, table (V, C)
 *     backward  dtable[ids[t], :] += dout[t, :] * scale        (accumulates; ids repeat)
 *
 * scale is 1, or sqrt(C) for gemma (its embedding is multiplied by the normaliser).
 */
#ifndef LLFC_KERNELS_EMBEDDING_H
#define LLFC_KERNELS_EMBEDDING_H

#include <stdint.h>

void embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C,
                       float scale);
void embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                        int64_t C, int64_t V, float scale);

#endif
