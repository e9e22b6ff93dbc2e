/* glu.cuh - the gated MLP's middle, h = act(gate) * up (CUDA template of glu.c): SwiGLU (silu),
 * GeGLU (gelu tanh) and exact gelu, as PyTorch defines them. ACT is ModelActivation's value:
 * 0 silu, 1 gelu_tanh, 2 gelu. Elementwise, one thread per element.
 */

template <int ACT>
__device__ __forceinline__ float glu_act(float x, float *deriv) {
    if (ACT == 0) {
        const float sg = 1.0f / (1.0f + expf(-x));
        *deriv = sg * (1.0f + x * (1.0f - sg));
        return x * sg;
    } else if (ACT == 1) {
        const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
        const float t = tanhf(k * (x + 0.044715f * x * x * x));
        *deriv = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * x * (1.0f + t);
    } else {
        const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
        *deriv = cdf + x * expf(-0.5f * x * x) * 0.3989422804014327f;
        return x * cdf;
    }
}

#define GLU_FWD_PARAMS floatX *h, const floatX *gate, const floatX *up
#define GLU_FWD_ARGS h, gate, up
template <int ACT>
__device__ __forceinline__ void glu_fwd(GLU_FWD_PARAMS, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float d;
    st(h, i, glu_act<ACT>(ld(gate, i), &d) * ld(up, i));
}

#define GLU_BWD_PARAMS floatX *dgate, floatX *dup, const floatX *dh, const floatX *gate, const floatX *up
#define GLU_BWD_ARGS dgate, dup, dh, gate, up
template <int ACT>
__device__ __forceinline__ void glu_bwd(GLU_BWD_PARAMS, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float d;
    const float a = glu_act<ACT>(ld(gate, i), &d), g = ld(dh, i);
    st(dgate, i, g * ld(up, i) * d);
    st(dup, i, g * a);
}
