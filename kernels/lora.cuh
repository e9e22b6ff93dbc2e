/* lora.cuh - LoRA's scale-and-add fused into the base layer's output (the C reference is
 * exec_cpu.c's run_linear: matmul, add_bias_forward, then matmul with beta 1).
 *
 *     y (M, N) = y + bias (N) + scale * u (M, R) B^T        B (N, R), R the LoRA rank
 *
 * cuBLASLt computes y = x W^T and u = drop(x) A^T; the rank-R product is too thin for a GEMM
 * to pay, so it runs here with R unrolled, in the same pass that adds the bias: y is read and
 * written once. One thread per output element.
 */

#define LORA_ADD_PARAMS floatX *y, const floatX *u, const floatX *Bw, const floatX *bias
#define LORA_ADD_ARGS y, u, Bw, bias
template <int N, int R, int HAS_BIAS>
__device__ __forceinline__ void lora_add(LORA_ADD_PARAMS, i64 M, float scale) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * N) return;
    const i64 m = i / N, n = i % N;
    float acc = 0;
#pragma unroll
    for (int r = 0; r < R; r++) acc += ld(u, m * R + r) * ld(Bw, n * R + r);
    float v = ld(y, i);
    if (HAS_BIAS) v += ld(bias, n);
    st(y, i, v + scale * acc);
}
