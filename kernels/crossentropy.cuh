/* crossentropy.cuh - next-token cross-entropy over the vocabulary in chunks, fused with its
 * gradient and with gemma2's final soft-cap (CUDA template of crossentropy.c and softcap.c).
 *
 * The full logits (N, V) are never kept: the executor computes one chunk of VC vocabulary
 * columns at a time with cuBLASLt (fp32 output, (N, width) row-major, width <= VC) and
 *   pass 1  ce_stats   per row: running max and sum of exp over the chunks seen so far, and
 *                      the target's logit when it falls in this chunk (online softmax)
 *   then    ce_finish  loss_sum (double) and count over counted rows, in a fixed order
 *   pass 2  ce_grad    the chunk recomputed, dlogits = grad_scale * (softmax - onehot), through
 *                      the soft-cap's derivative, in floatX for the two GEMMs that take it back
 *                      to the hidden state and the LM head's gradient
 * Position t of row b predicts labels[b, t + 1]; the last position and -100 count for nothing.
 * One block (256 threads) per row.
 */

__device__ __forceinline__ int ce_target(const int *labels, i64 r, int T) {
    return (int)(r % T) + 1 < T ? labels[r + 1] : -100;
}

template <int HAS_CAP>
__device__ __forceinline__ float ce_capped(float x, float cap) {
    return HAS_CAP ? cap * tanhf(x / cap) : x;
}

#define CE_STATS_PARAMS float *row_max, float *row_sum, float *target_logit, const float *logits, \
    const int *labels, int v0, int width
#define CE_STATS_ARGS row_max, row_sum, target_logit, logits, labels, v0, width
template <int T, int HAS_CAP>
__device__ __forceinline__ void ce_stats(CE_STATS_PARAMS, float cap) {
    __shared__ float red[32];
    const i64 r = blockIdx.x;
    const int y = ce_target(labels, r, T);
    if (y == -100) return;
    const float *x = logits + r * width;
    float mx = -LLFC_INF;
    for (int k = threadIdx.x; k < width; k += blockDim.x) mx = fmaxf(mx, ce_capped<HAS_CAP>(x[k], cap));
    const float cm = block_max(mx, red);
    float s = 0;
    for (int k = threadIdx.x; k < width; k += blockDim.x) s += expf(ce_capped<HAS_CAP>(x[k], cap) - cm);
    const float cs = block_sum(s, red);
    if (threadIdx.x != 0) return;
    if (v0 == 0) {
        row_max[r] = cm, row_sum[r] = cs;
    } else {
        const float m = row_max[r], m2 = fmaxf(m, cm);
        row_sum[r] = row_sum[r] * expf(m - m2) + cs * expf(cm - m2);
        row_max[r] = m2;
    }
    if (y >= v0 && y < v0 + width) target_logit[r] = ce_capped<HAS_CAP>(x[y - v0], cap);
}

#define CE_GRAD_PARAMS floatX *dlogits, const float *logits, const int *labels, const float *row_max, \
    const float *row_sum, int v0, int width, float grad_scale
#define CE_GRAD_ARGS dlogits, logits, labels, row_max, row_sum, v0, width, grad_scale
template <int T, int HAS_CAP>
__device__ __forceinline__ void ce_grad(CE_GRAD_PARAMS, float cap) {
    const i64 r = blockIdx.x;
    const int y = ce_target(labels, r, T);
    floatX *d = dlogits + r * width;
    if (y == -100) {
        for (int k = threadIdx.x; k < width; k += blockDim.x) st(d, k, 0.0f);
        return;
    }
    const float *x = logits + r * width;
    const float lse = row_max[r] + logf(row_sum[r]);
    for (int k = threadIdx.x; k < width; k += blockDim.x) {
        float g = expf(ce_capped<HAS_CAP>(x[k], cap) - lse) - (v0 + k == y ? 1.0f : 0.0f);
        if (HAS_CAP) {
            const float t = tanhf(x[k] / cap);
            g *= 1 - t * t;
        }
        st(d, k, g * grad_scale);
    }
}

#define CE_FINISH_PARAMS double *loss_sum, i64 *count, const float *row_max, const float *row_sum, \
    const float *target_logit, const int *labels
#define CE_FINISH_ARGS loss_sum, count, row_max, row_sum, target_logit, labels
template <int T>
__device__ __forceinline__ void ce_finish(CE_FINISH_PARAMS, i64 N) {
    __shared__ double red[32];
    double acc = 0, n = 0;
    for (i64 r = threadIdx.x; r < N; r += blockDim.x)
        if (ce_target(labels, r, T) != -100) {
            acc += (double)row_max[r] + log((double)row_sum[r]) - (double)target_logit[r];
            n += 1;
        }
    acc = block_sum(acc, red);
    n = block_sum(n, red);
    if (threadIdx.x == 0) *loss_sum = acc, *count = (i64)n;
}
