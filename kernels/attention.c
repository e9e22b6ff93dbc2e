/* attention.c - causal GQA attention with packed-sequence masks (C reference). */
#include "attention.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The first key query i may see (the mask is then: j in [lo, i] with the same sequence id). */
static inline int64_t first_key(const AttentionShape *s, int64_t i) {
    return s->window > 0 && i - s->window + 1 > 0 ? i - s->window + 1 : 0;
}

static inline float capped(const AttentionShape *s, float x) {
    return s->softcap > 0 ? s->softcap * tanhf(x / s->softcap) : x;
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *seq, const AttentionShape *s) {
    const int64_t B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HD = s->HD, G = NH / NKV;
    assert(HD <= ATTENTION_MAX_HD && NH % NKV == 0);
#pragma omp parallel for collapse(3) schedule(dynamic, 4) if (B * NH * T * T * HD > (1 << 20))
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * NH + h) * HD;
                const int32_t sid = seq[b * T + i];
                float acc[ATTENTION_MAX_HD];
                memset(acc, 0, (size_t)HD * sizeof(float));
                float m = -INFINITY, l = 0;
                for (int64_t j = first_key(s, i); j <= i; j++) {
                    if (seq[b * T + j] != sid) continue;
                    const float *kj = k + ((b * T + j) * NKV + h / G) * HD;
                    const float *vj = v + ((b * T + j) * NKV + h / G) * HD;
                    const float x = capped(s, dot(qi, kj, HD) * s->scale);
                    if (x > m) {
                        const float corr = expf(m - x);
                        l *= corr;
                        for (int64_t d = 0; d < HD; d++) acc[d] *= corr;
                        m = x;
                    }
                    const float p = expf(x - m);
                    l += p;
                    for (int64_t d = 0; d < HD; d++) acc[d] += p * vj[d];
                }
                float *o = out + ((b * T + i) * NH + h) * HD;
                for (int64_t d = 0; d < HD; d++) o[d] = acc[d] / l;
                lse[(b * NH + h) * T + i] = m + logf(l);
            }
}

/* ds = dP-chain for one (i, j) pair: p (dp - delta), through the soft-cap's tanh if any. */
static inline float grad_logit(const AttentionShape *s, float raw, float p, float dp, float delta) {
    float ds = p * (dp - delta);
    if (s->softcap > 0) {
        const float t = tanhf(raw / s->softcap);
        ds *= 1 - t * t;
    }
    return ds;
}

void attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k,
                        const float *v, const int32_t *seq, const AttentionShape *s) {
    const int64_t B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HD = s->HD, G = NH / NKV;
    const int big = B * NH * T * T * HD > (1 << 20);
    // delta_i = dout_i . out_i; then dq_i = scale * sum_j ds_ij k_j
#pragma omp parallel for collapse(3) schedule(dynamic, 4) if (big)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++) {
                const int64_t row = (b * T + i) * NH + h;
                const float *qi = q + row * HD, *doi = dout + row * HD;
                const float D = dot(doi, out + row * HD, HD), L = lse[(b * NH + h) * T + i];
                delta[(b * NH + h) * T + i] = D;
                const int32_t sid = seq[b * T + i];
                float *dqi = dq + row * HD;
                memset(dqi, 0, (size_t)HD * sizeof(float));
                for (int64_t j = first_key(s, i); j <= i; j++) {
                    if (seq[b * T + j] != sid) continue;
                    const float *kj = k + ((b * T + j) * NKV + h / G) * HD;
                    const float *vj = v + ((b * T + j) * NKV + h / G) * HD;
                    const float raw = dot(qi, kj, HD) * s->scale;
                    const float p = expf(capped(s, raw) - L);
                    const float ds = grad_logit(s, raw, p, dot(doi, vj, HD), D) * s->scale;
                    for (int64_t d = 0; d < HD; d++) dqi[d] += ds * kj[d];
                }
            }
            // dk_j = scale * sum_{h in group, i} ds_ij q_i;  dv_j = sum_{h in group, i} p_ij dout_i
#pragma omp parallel for collapse(3) schedule(dynamic, 4) if (big)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < NKV; kh++)
            for (int64_t j = 0; j < T; j++) {
                const int64_t krow = (b * T + j) * NKV + kh;
                const float *kj = k + krow * HD, *vj = v + krow * HD;
                float *dkj = dk + krow * HD, *dvj = dv + krow * HD;
                memset(dkj, 0, (size_t)HD * sizeof(float));
                memset(dvj, 0, (size_t)HD * sizeof(float));
                const int32_t sid = seq[b * T + j];
                const int64_t last =
                    s->window > 0 && j + s->window - 1 < T - 1 ? j + s->window - 1 : T - 1;
                for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                    for (int64_t i = j; i <= last; i++) {
                        if (seq[b * T + i] != sid) continue;
                        const int64_t row = (b * T + i) * NH + h;
                        const float *qi = q + row * HD, *doi = dout + row * HD;
                        const float raw = dot(qi, kj, HD) * s->scale;
                        const float p = expf(capped(s, raw) - lse[(b * NH + h) * T + i]);
                        const float ds =
                            grad_logit(s, raw, p, dot(doi, vj, HD), delta[(b * NH + h) * T + i]) *
                            s->scale;
                        for (int64_t d = 0; d < HD; d++) {
                            dvj[d] += p * doi[d];
                            dkj[d] += ds * qi[d];
                        }
                    }
            }
}
