/* attention.cuh - causal grouped-query attention over packed rows, forward and backward
 * (CUDA template of attention.c): a first correct fused kernel, not yet flash-fast.
 *
 *     q (B, T, NH, HD), k and v (B, T, NKV, HD) floatX; head h reads kv head h / (NH / NKV).
 *     Query i sees key j when j <= i, seq[b, j] == seq[b, i] (packed sequences) and, with a
 *     sliding WINDOW, i - j < WINDOW. s = q.k * scale, soft-capped when HAS_CAP.
 *     out (B, T, NH, HD) floatX; lse (B, NH, T) fp32 saved for backward; delta (B, NH, T) fp32.
 *
 * Shape of the work: a block of ATTN_WARPS warps takes ATTN_WARPS consecutive queries of one
 * (row, head); tiles of 32 keys go through shared memory (floatX, rows padded by one word so the
 * 32 lanes hit 32 banks); within a tile lane j scores key j, the warp keeps a running max and
 * sum (online softmax, no T x T matrix) and each lane accumulates the output dims lane,
 * lane + 32, ... Backward recomputes the probabilities from lse: attention_bwd_dq is the same
 * walk per query (and writes delta = dout . out), attention_bwd_dkdv walks queries per key, so
 * no two warps write one row and nothing needs atomics. HD <= 256 keeps shared memory < 48 KiB.
 */

#define ATTN_WARPS 4
#define ATTN_TILE 32

template <int HAS_CAP>
__device__ __forceinline__ float attn_capped(float s, float cap) {
    return HAS_CAP ? cap * tanhf(s / cap) : s;
}

template <int WINDOW>
__device__ __forceinline__ bool attn_visible(int i, int j, int si, int sj) {
    return j <= i && si == sj && (WINDOW == 0 || i - j < WINDOW);
}

#define ATTENTION_FWD_PARAMS floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, \
    const int *seq
#define ATTENTION_FWD_ARGS out, lse, q, k, v, seq
template <int T, int NH, int NKV, int HD, int WINDOW, int HAS_CAP>
__device__ __forceinline__ void attention_fwd(ATTENTION_FWD_PARAMS, float scale, float cap) {
    constexpr int G = NH / NKV, DP = (HD + 31) / 32, KS = HD + 2;
    __shared__ floatX ks[ATTN_TILE][KS], vs[ATTN_TILE][KS];
    __shared__ float qs[ATTN_WARPS][HD];
    __shared__ int kseq[ATTN_TILE];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, h = blockIdx.y, kh = h / G;
    const int q0 = blockIdx.x * ATTN_WARPS, i = q0 + warp;
    const bool active = i < T;
    if (active)
        for (int d = lane; d < HD; d += 32) qs[warp][d] = ld(q, (((i64)b * T + i) * NH + h) * HD + d);
    const int sid = active ? seq[(i64)b * T + i] : 0;
    float m = -LLFC_INF, l = 0, acc[DP];
    for (int c = 0; c < DP; c++) acc[c] = 0;
    const int last = min(T - 1, q0 + ATTN_WARPS - 1);
    const int first = WINDOW > 0 ? max(0, q0 - WINDOW + 1) : 0;
    for (int j0 = first; j0 <= last; j0 += ATTN_TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATTN_TILE * HD; e += blockDim.x) {
            const int jj = e / HD, d = e % HD, j = j0 + jj;
            const i64 at = (((i64)b * T + j) * NKV + kh) * HD + d;
            ks[jj][d] = j < T ? k[at] : floatX{0};
            vs[jj][d] = j < T ? v[at] : floatX{0};
        }
        for (int jj = threadIdx.x; jj < ATTN_TILE; jj += blockDim.x)
            kseq[jj] = j0 + jj < T ? seq[(i64)b * T + j0 + jj] : 0;
        __syncthreads();
        if (!active) continue;
        const int j = j0 + lane;
        const bool ok = j < T && attn_visible<WINDOW>(i, j, sid, kseq[lane]);
        float s = -LLFC_INF;
        if (ok) {
            float dot = 0;
            for (int d = 0; d < HD; d++) dot += qs[warp][d] * to_f32(ks[lane][d]);
            s = attn_capped<HAS_CAP>(dot * scale, cap);
        }
        const float tile_max = warp_max(s);
        if (tile_max == -LLFC_INF) continue; /* the same for the whole warp */
        const float m_new = fmaxf(m, tile_max), corr = expf(m - m_new);
        const float p = ok ? expf(s - m_new) : 0.0f;
        l = l * corr + warp_sum(p);
        for (int c = 0; c < DP; c++) acc[c] *= corr;
        for (int jj = 0; jj < ATTN_TILE; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            if (pj == 0.0f) continue;
            for (int c = 0; c < DP; c++)
                if (lane + 32 * c < HD) acc[c] += pj * to_f32(vs[jj][lane + 32 * c]);
        }
        m = m_new;
    }
    if (!active) return;
    const i64 row = ((i64)b * T + i) * NH + h;
    for (int c = 0; c < DP; c++)
        if (lane + 32 * c < HD) st(out, row * HD + lane + 32 * c, acc[c] / l);
    if (lane == 0) lse[((i64)b * NH + h) * T + i] = m + logf(l);
}

/* ds for one (i, j): p (dp - delta), through the soft-cap's tanh, times scale. */
template <int HAS_CAP>
__device__ __forceinline__ float attn_grad_logit(float raw, float p, float dp, float delta,
                                                 float scale, float cap) {
    float ds = p * (dp - delta);
    if (HAS_CAP) {
        const float t = tanhf(raw / cap);
        ds *= 1 - t * t;
    }
    return ds * scale;
}

#define ATTENTION_BWD_DQ_PARAMS floatX *dq, float *delta, const floatX *dout, const floatX *out, \
    const float *lse, const floatX *q, const floatX *k, const floatX *v, const int *seq
#define ATTENTION_BWD_DQ_ARGS dq, delta, dout, out, lse, q, k, v, seq
template <int T, int NH, int NKV, int HD, int WINDOW, int HAS_CAP>
__device__ __forceinline__ void attention_bwd_dq(ATTENTION_BWD_DQ_PARAMS, float scale, float cap) {
    constexpr int G = NH / NKV, DP = (HD + 31) / 32, KS = HD + 2;
    __shared__ floatX ks[ATTN_TILE][KS], vs[ATTN_TILE][KS];
    __shared__ float qs[ATTN_WARPS][HD], dos[ATTN_WARPS][HD];
    __shared__ int kseq[ATTN_TILE];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, h = blockIdx.y, kh = h / G;
    const int q0 = blockIdx.x * ATTN_WARPS, i = q0 + warp;
    const bool active = i < T;
    const i64 row = ((i64)b * T + (active ? i : 0)) * NH + h;
    float D = 0, L = 0;
    int sid = 0;
    if (active) {
        for (int d = lane; d < HD; d += 32) {
            qs[warp][d] = ld(q, row * HD + d);
            dos[warp][d] = ld(dout, row * HD + d);
            D += dos[warp][d] * ld(out, row * HD + d);
        }
        D = warp_sum(D);
        L = lse[((i64)b * NH + h) * T + i];
        sid = seq[(i64)b * T + i];
        if (lane == 0) delta[((i64)b * NH + h) * T + i] = D;
    }
    float acc[DP];
    for (int c = 0; c < DP; c++) acc[c] = 0;
    const int last = min(T - 1, q0 + ATTN_WARPS - 1);
    const int first = WINDOW > 0 ? max(0, q0 - WINDOW + 1) : 0;
    for (int j0 = first; j0 <= last; j0 += ATTN_TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATTN_TILE * HD; e += blockDim.x) {
            const int jj = e / HD, d = e % HD, j = j0 + jj;
            const i64 at = (((i64)b * T + j) * NKV + kh) * HD + d;
            ks[jj][d] = j < T ? k[at] : floatX{0};
            vs[jj][d] = j < T ? v[at] : floatX{0};
        }
        for (int jj = threadIdx.x; jj < ATTN_TILE; jj += blockDim.x)
            kseq[jj] = j0 + jj < T ? seq[(i64)b * T + j0 + jj] : 0;
        __syncthreads();
        if (!active) continue;
        const int j = j0 + lane;
        float ds = 0;
        if (j < T && attn_visible<WINDOW>(i, j, sid, kseq[lane])) {
            float dot = 0, dp = 0;
            for (int d = 0; d < HD; d++) {
                dot += qs[warp][d] * to_f32(ks[lane][d]);
                dp += dos[warp][d] * to_f32(vs[lane][d]);
            }
            const float raw = dot * scale, p = expf(attn_capped<HAS_CAP>(raw, cap) - L);
            ds = attn_grad_logit<HAS_CAP>(raw, p, dp, D, scale, cap);
        }
        for (int jj = 0; jj < ATTN_TILE; jj++) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
            if (dsj == 0.0f) continue;
            for (int c = 0; c < DP; c++)
                if (lane + 32 * c < HD) acc[c] += dsj * to_f32(ks[jj][lane + 32 * c]);
        }
    }
    if (!active) return;
    for (int c = 0; c < DP; c++)
        if (lane + 32 * c < HD) st(dq, row * HD + lane + 32 * c, acc[c]);
}

/* dk_j = sum over the group's heads and visible queries of ds_ij q_i; dv_j = sum p_ij dout_i.
 * Grid (ceil(T / ATTN_WARPS), NKV, B): a warp per key, tiles of 32 queries of one head. */
#define ATTENTION_BWD_DKDV_PARAMS floatX *dk, floatX *dv, const floatX *dout, const float *lse, \
    const float *delta, const floatX *q, const floatX *k, const floatX *v, const int *seq
#define ATTENTION_BWD_DKDV_ARGS dk, dv, dout, lse, delta, q, k, v, seq
template <int T, int NH, int NKV, int HD, int WINDOW, int HAS_CAP>
__device__ __forceinline__ void attention_bwd_dkdv(ATTENTION_BWD_DKDV_PARAMS, float scale, float cap) {
    constexpr int G = NH / NKV, DP = (HD + 31) / 32, KS = HD + 2;
    __shared__ floatX qs[ATTN_TILE][KS], dos[ATTN_TILE][KS];
    __shared__ float kf[ATTN_WARPS][HD], vf[ATTN_WARPS][HD];
    __shared__ float qlse[ATTN_TILE], qdelta[ATTN_TILE];
    __shared__ int qseq[ATTN_TILE];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, kh = blockIdx.y;
    const int j_first = blockIdx.x * ATTN_WARPS, j = j_first + warp;
    const bool active = j < T;
    const i64 krow = ((i64)b * T + (active ? j : 0)) * NKV + kh;
    int sid = 0;
    if (active) {
        for (int d = lane; d < HD; d += 32) {
            kf[warp][d] = ld(k, krow * HD + d);
            vf[warp][d] = ld(v, krow * HD + d);
        }
        sid = seq[(i64)b * T + j];
    }
    float dk_acc[DP], dv_acc[DP];
    for (int c = 0; c < DP; c++) dk_acc[c] = dv_acc[c] = 0;
    const int j_last = min(T - 1, j_first + ATTN_WARPS - 1);
    const int last = WINDOW > 0 ? min(T - 1, j_last + WINDOW - 1) : T - 1;
    for (int h = kh * G; h < (kh + 1) * G; h++)
        for (int i0 = j_first; i0 <= last; i0 += ATTN_TILE) {
            __syncthreads();
            for (int e = threadIdx.x; e < ATTN_TILE * HD; e += blockDim.x) {
                const int ii = e / HD, d = e % HD, i = i0 + ii;
                const i64 at = (((i64)b * T + i) * NH + h) * HD + d;
                qs[ii][d] = i < T ? q[at] : floatX{0};
                dos[ii][d] = i < T ? dout[at] : floatX{0};
            }
            for (int ii = threadIdx.x; ii < ATTN_TILE; ii += blockDim.x) {
                const int i = i0 + ii;
                qseq[ii] = i < T ? seq[(i64)b * T + i] : 0;
                qlse[ii] = i < T ? lse[((i64)b * NH + h) * T + i] : 0.0f;
                qdelta[ii] = i < T ? delta[((i64)b * NH + h) * T + i] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            const int i = i0 + lane;
            float p = 0, ds = 0;
            if (i < T && attn_visible<WINDOW>(i, j, qseq[lane], sid)) {
                float dot = 0, dp = 0;
                for (int d = 0; d < HD; d++) {
                    dot += to_f32(qs[lane][d]) * kf[warp][d];
                    dp += to_f32(dos[lane][d]) * vf[warp][d];
                }
                const float raw = dot * scale;
                p = expf(attn_capped<HAS_CAP>(raw, cap) - qlse[lane]);
                ds = attn_grad_logit<HAS_CAP>(raw, p, dp, qdelta[lane], scale, cap);
            }
            for (int ii = 0; ii < ATTN_TILE; ii++) {
                const float pi = __shfl_sync(0xffffffffu, p, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
                if (pi == 0.0f && dsi == 0.0f) continue;
                for (int c = 0; c < DP; c++)
                    if (lane + 32 * c < HD) {
                        dv_acc[c] += pi * to_f32(dos[ii][lane + 32 * c]);
                        dk_acc[c] += dsi * to_f32(qs[ii][lane + 32 * c]);
                    }
            }
        }
    if (!active) return;
    for (int c = 0; c < DP; c++)
        if (lane + 32 * c < HD) {
            st(dk, krow * HD + lane + 32 * c, dk_acc[c]);
            st(dv, krow * HD + lane + 32 * c, dv_acc[c]);
        }
}
