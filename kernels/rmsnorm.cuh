/* rmsnorm.cuh - RMSNorm over the last dimension (CUDA template of rmsnorm.c), alone or fused
 * with the residual add before it.
 *
 *     rstd[r] = 1 / sqrt(mean_c x[r, c]^2 + eps);  y[r, c] = x[r, c] * rstd[r] * (OFFSET + w[c])
 *
 * One warp per row (block 256 = 8 rows), sums in fp32. The same template normalises q and k per
 * head (qk-norm: R = N * heads, D = HD). The weight gradient is a column sum: add.cuh's
 * colsum_partial / colsum_finish with WITH_X.
 */

#define RMSNORM_FWD_PARAMS floatX *y, float *rstd, const floatX *x, const floatX *w
#define RMSNORM_FWD_ARGS y, rstd, x, w
template <int D, int OFFSET>
__device__ __forceinline__ void rmsnorm_fwd(RMSNORM_FWD_PARAMS, i64 R, float eps) {
    const i64 r = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= R) return;
    const floatX *xr = x + r * D;
    float ss = 0;
    for (int c = lane; c < D; c += 32) {
        const float v = ld(xr, c);
        ss += v * v;
    }
    const float s = 1.0f / sqrtf(warp_sum(ss) / D + eps);
    if (lane == 0) rstd[r] = s;
    for (int c = lane; c < D; c += 32) st(y, r * D + c, (ld(xr, c) * s) * (OFFSET + ld(w, c)));
}

/* Fused residual add + RMSNorm: sum = a + b (kept: the next residual and backward read it),
 * then the norm of the rounded sum, so it equals the unfused pair exactly. */
#define ADD_RMSNORM_FWD_PARAMS floatX *sum, floatX *y, float *rstd, const floatX *a, const floatX *b, \
    const floatX *w
#define ADD_RMSNORM_FWD_ARGS sum, y, rstd, a, b, w
template <int D, int OFFSET>
__device__ __forceinline__ void add_rmsnorm_fwd(ADD_RMSNORM_FWD_PARAMS, i64 R, float eps) {
    const i64 r = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= R) return;
    float ss = 0;
    for (int c = lane; c < D; c += 32) {
        st(sum, r * D + c, ld(a, r * D + c) + ld(b, r * D + c));
        const float v = ld(sum, r * D + c);
        ss += v * v;
    }
    const float s = 1.0f / sqrtf(warp_sum(ss) / D + eps);
    if (lane == 0) rstd[r] = s;
    for (int c = lane; c < D; c += 32)
        st(y, r * D + c, (ld(sum, r * D + c) * s) * (OFFSET + ld(w, c)));
}

/* With n = x * rstd and g = dy * (OFFSET + w): dx = rstd * (g - n * mean(g * n)),
 * written (ACCUM 0) or added (ACCUM 1). */
#define RMSNORM_BWD_PARAMS floatX *dx, const floatX *dy, const floatX *x, const floatX *w, \
    const float *rstd
#define RMSNORM_BWD_ARGS dx, dy, x, w, rstd
template <int D, int OFFSET, int ACCUM>
__device__ __forceinline__ void rmsnorm_bwd(RMSNORM_BWD_PARAMS, i64 R) {
    const i64 r = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= R) return;
    const float s = rstd[r];
    float dot = 0;
    for (int c = lane; c < D; c += 32)
        dot += ld(dy, r * D + c) * (OFFSET + ld(w, c)) * ld(x, r * D + c) * s;
    const float m = warp_sum(dot) / D;
    for (int c = lane; c < D; c += 32) {
        const i64 i = r * D + c;
        const float v = s * (ld(dy, i) * (OFFSET + ld(w, c)) - ld(x, i) * s * m);
        st(dx, i, ACCUM ? ld(dx, i) + v : v);
    }
}
