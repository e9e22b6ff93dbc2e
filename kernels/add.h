/* add.h - the elementwise sums of the step: residual adds, biases, gradient accumulation.
 *
 *     add_forward      out = a + b                          (N)
 *     add_into         dst = src, or dst += src when accumulate      (N)
 *     add_bias_forward y[m, n] += bias[n]                   y (M, N)
 *     add_bias_backward dbias[n] += sum_m dy[m, n]          (parameter gradients accumulate)
 */
#ifndef LLFC_KERNELS_ADD_H
#define LLFC_KERNELS_ADD_H

#include <stdbool.h>
#include <stdint.h>

void add_forward(float *out, const float *a, const float *b, int64_t N);
void add_into(float *dst, const float *src, int64_t N, bool accumulate);
void add_bias_forward(float *y, const float *bias, int64_t M, int64_t N);
void add_bias_backward(float *dbias, const float *dy, int64_t M, int64_t N);

#endif
