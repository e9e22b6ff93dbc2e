/* add.cuh - elementwise sums and column sums (CUDA template of add.c): residual adds,
 * gradient accumulation and the bias gradient (the bias itself is added by cuBLASLt's epilogue,
 * or by lora_add with LoRA).
 *
 * Column sums (bias and norm-weight gradients) are deterministic: colsum_partial writes one
 * partial row per slab of rows into scratch, colsum_finish adds the slabs in order into the
 * fp32 gradient. No atomics, so two runs give the same bits, as the CPU reference does.
 */

#define ADD_FWD_PARAMS floatX *c, const floatX *a, const floatX *b
#define ADD_FWD_ARGS c, a, b
__device__ __forceinline__ void add_fwd(ADD_FWD_PARAMS, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(c, i, ld(a, i) + ld(b, i));
}

/* dst = src (ACCUM 0) or dst += src (ACCUM 1): an activation gradient with several consumers. */
#define ACCUM_PARAMS floatX *dst, const floatX *src
#define ACCUM_ARGS dst, src
template <int ACCUM>
__device__ __forceinline__ void accum(ACCUM_PARAMS, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(dst, i, ACCUM ? ld(dst, i) + ld(src, i) : ld(src, i));
}

/* partial[slab, c] = sum over the slab's rows of dy[r, c] (* x[r, c] * rstd[r] when x is given:
 * RMSNorm's weight gradient). Block (32, 8): x is the column in a 32-wide tile, y a row lane;
 * grid (ceil(D / 32), SLABS). */
#define COLSUM_PARTIAL_PARAMS float *partial, const floatX *dy, const floatX *x, const float *rstd
#define COLSUM_PARTIAL_ARGS partial, dy, x, rstd
template <int D, int SLABS, int WITH_X>
__device__ __forceinline__ void colsum_partial(COLSUM_PARTIAL_PARAMS, i64 R) {
    __shared__ float red[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const i64 r0 = R * blockIdx.y / SLABS, r1 = R * (blockIdx.y + 1) / SLABS;
    float acc = 0;
    if (c < D)
        for (i64 r = r0 + threadIdx.y; r < r1; r += 8)
            acc += WITH_X ? ld(dy, r * D + c) * ld(x, r * D + c) * rstd[r] : ld(dy, r * D + c);
    red[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        float s = 0;
        for (int k = 0; k < 8; k++) s += red[k][threadIdx.x];
        partial[(i64)blockIdx.y * D + c] = s;
    }
}

/* dw[c] += sum_slab partial[slab, c], slabs in order. */
#define COLSUM_FINISH_PARAMS float *dw, const float *partial
#define COLSUM_FINISH_ARGS dw, partial
template <int D, int SLABS>
__device__ __forceinline__ void colsum_finish(COLSUM_FINISH_PARAMS) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float s = 0;
    for (int k = 0; k < SLABS; k++) s += partial[(i64)k * D + c];
    dw[c] += s;
}
