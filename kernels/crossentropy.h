/* crossentropy.h - next-token cross-entropy over logits, fused with its gradient.
 *
 *     logits (B, T, V); labels (B, T) int32. As transformers' ForCausalLMLoss: position t
 *     predicts labels[b, t + 1]; the last position and labels == CE_IGNORE (-100) count for
 *     nothing.
 *     loss_sum = sum over counted positions of -log softmax(logits[b, t])[labels[b, t + 1]]
 *     count    = number of counted positions
 * The mean loss is loss_sum / count; a trainer that accumulates micro-batches divides the sum
 * by the whole batch's count instead (transformers' num_items_in_batch).
 *
 * When dlogits is not NULL it receives grad_scale * d(loss_sum)/d(logits) =
 * grad_scale * (softmax - onehot) on counted rows and 0 elsewhere; it may be the logits buffer
 * itself (computed in place, row by row). grad_scale is 1/count for the mean.
 */
#ifndef LLFC_KERNELS_CROSSENTROPY_H
#define LLFC_KERNELS_CROSSENTROPY_H

#include <stdint.h>

#define CE_IGNORE (-100)

/* number of positions that count (cheap; the trainer calls it to find num_items_in_batch) */
int64_t crossentropy_count(const int32_t *labels, int64_t B, int64_t T);

/* returns loss_sum (in double); *count gets the counted positions */
double crossentropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels,
                                     int64_t B, int64_t T, int64_t V, float grad_scale,
                                     int64_t *count);

#endif
