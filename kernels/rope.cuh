/* rope.cuh - rotary position embedding in the rotate_half layout (CUDA template of rope.c),
 * applied to q and k where the projections left them: (N, heads, HD), no transposes.
 *
 *     angle = pos[t] * inv_freq[i] (fp32);  c = cos(angle) * attn_scale, s = SIGN * sin(angle) * ...
 *     out[i] = x[i] c - x[i + HD/2] s;  out[i + HD/2] = x[i + HD/2] c + x[i] s
 *
 * One block per token computes the HD/2 angles once (cos/sin in double, as the reference) and
 * rotates q's H1 heads and k's H2 heads in the same launch (H2 = 0: one tensor). SIGN -1 is the
 * backward (rotation by -angle). inv_freq (HD/2) and attn_scale come from rope_inv_freq on the
 * host: dynamic NTK rope changes them with the batch's longest position.
 */

#define ROPE_APPLY_PARAMS floatX *out1, const floatX *in1, floatX *out2, const floatX *in2, const int *pos, \
    const float *inv_freq, float attn_scale
#define ROPE_APPLY_ARGS out1, in1, out2, in2, pos, inv_freq, attn_scale
template <int HD, int H1, int H2, int SIGN>
__device__ __forceinline__ void rope_apply(ROPE_APPLY_PARAMS) {
    constexpr int half = HD / 2;
    __shared__ float cs[half], sn[half];
    const i64 t = blockIdx.x;
    const float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float a = inv_freq[i] * p;
        cs[i] = (float)cos((double)a) * attn_scale;
        sn[i] = SIGN * (float)sin((double)a) * attn_scale;
    }
    __syncthreads();
    for (int k = threadIdx.x; k < (H1 + H2) * half; k += blockDim.x) {
        const int h = k / half, i = k % half;
        const floatX *x = h < H1 ? in1 + (t * H1 + h) * HD : in2 + (t * H2 + (h - H1)) * HD;
        floatX *o = h < H1 ? out1 + (t * H1 + h) * HD : out2 + (t * H2 + (h - H1)) * HD;
        const float x1 = ld(x, i), x2 = ld(x, i + half);
        st(o, i, x1 * cs[i] - x2 * sn[i]);
        st(o, i + half, x2 * cs[i] + x1 * sn[i]);
    }
}
