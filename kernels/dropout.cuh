/* dropout.cuh - inverted dropout with Philox masks (CUDA template of dropout.c): LoRA's input
 * dropout. keep[i] = uniform(seed, purpose, first + i) >= p, the same mask as the CPU executor
 * draws, regenerated in backward instead of stored. One thread per 4 elements (one Philox
 * block). `purpose` is rng_purpose(RNG_DROPOUT, step), computed by the host each step; `first`
 * is the adapter's first element, adapter << 40 (the LINEAR op's n[4]), as exec_cpu.c draws it:
 * arguments, so one kernel serves every adapter of the same size.
 */

__device__ __forceinline__ bool dropout_keep(u32 u, float p) {
    return (float)(u >> 8) * (1.0f / 16777216.0f) >= p;
}

#define DROPOUT_FWD_PARAMS floatX *out, const floatX *x, u64 seed, u64 purpose, u64 first
#define DROPOUT_FWD_ARGS out, x, seed, purpose, first
__device__ __forceinline__ void dropout_fwd(DROPOUT_FWD_PARAMS, i64 n, float p) {
    const i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (4 * b >= n) return;
    u32 u[4];
    philox_block(seed, purpose, first / 4 + (u64)b, u);
    const float keep_scale = 1.0f / (1.0f - p);
    for (int k = 0; k < 4 && 4 * b + k < n; k++)
        st(out, 4 * b + k, dropout_keep(u[k], p) ? ld(x, 4 * b + k) * keep_scale : 0.0f);
}

/* dx += drop(src): LoRA's input gradient through the dropout, added to the base path's. */
#define DROPOUT_ACCUM_PARAMS floatX *dx, const floatX *src, u64 seed, u64 purpose, u64 first
#define DROPOUT_ACCUM_ARGS dx, src, seed, purpose, first
__device__ __forceinline__ void dropout_accum(DROPOUT_ACCUM_PARAMS, i64 n, float p) {
    const i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (4 * b >= n) return;
    u32 u[4];
    philox_block(seed, purpose, first / 4 + (u64)b, u);
    const float keep_scale = 1.0f / (1.0f - p);
    for (int k = 0; k < 4 && 4 * b + k < n; k++) {
        const i64 i = 4 * b + k;
        st(dx, i, ld(dx, i) + (dropout_keep(u[k], p) ? ld(src, i) * keep_scale : 0.0f));
    }
}
