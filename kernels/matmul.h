/* matmul.h - the one matrix product every linear layer uses: C = beta*C + alpha * op(A) op(B).
 *
 *     op(A) is (M, K): A itself (M, K) row-major, or A^T when trans_a (A stored (K, M))
 *     op(B) is (K, N): B itself (K, N) row-major, or B^T when trans_b (B stored (N, K))
 *
 * A linear layer keeps its weight W in Hugging Face's (out, in) layout, so
 *     forward   y  = x W^T         matmul(y, x, W, M, N=out, K=in, false, true,  1, 0)
 *     input     dx = dy W          matmul(dx, dy, W, M, N=in, K=out, false, false, 1, 0|1)
 *     weight    dW += dy^T x       matmul(dW, dy, x, M=out, N=in, K=rows, true, false, 1, 1)
 *
 * The C reference is a blocked, packed, OpenMP-threaded sgemm (see matmul.c); the CUDA path
 * calls cuBLASLt with the same arguments. beta = 0 never reads C (it may hold garbage).
 */
#ifndef LLFC_KERNELS_MATMUL_H
#define LLFC_KERNELS_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

void matmul(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, float alpha, float beta);

#endif
