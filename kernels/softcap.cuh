/* softcap.cuh - logit soft-capping, y = cap * tanh(x / cap) (CUDA template of softcap.c).
 * Gemma2's final soft-cap is fused into the loss (crossentropy.cuh); these serve any other use. */

#define SOFTCAP_FWD_PARAMS floatX *y, const floatX *x
#define SOFTCAP_FWD_ARGS y, x
__device__ __forceinline__ void softcap_fwd(SOFTCAP_FWD_PARAMS, i64 n, float cap) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(y, i, cap * tanhf(ld(x, i) / cap));
}

#define SOFTCAP_BWD_PARAMS floatX *dx, const floatX *dy, const floatX *x
#define SOFTCAP_BWD_ARGS dx, dy, x
__device__ __forceinline__ void softcap_bwd(SOFTCAP_BWD_PARAMS, i64 n, float cap) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float t = tanhf(ld(x, i) / cap);
    st(dx, i, ld(dy, i) * (1 - t * t));
}
