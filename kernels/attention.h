/* attention.h - causal grouped-query attention over packed rows, forward and backward.
 *
 *     q (B, T, NH, HD), k and v (B, T, NKV, HD), out (B, T, NH, HD); head h reads kv head
 *     h / (NH / NKV). seq (B, T) int32: a token attends only to tokens of its own sequence.
 *     Query i of row b sees key j when j <= i, seq[b, j] == seq[b, i], and (window == 0 or
 *     i - j < window):
 *         s_ij = q_i . k_j * scale;  if softcap: s_ij = softcap * tanh(s_ij / softcap)
 *         out_i = sum_j softmax_j(s_ij) v_j
 *     lse (B, NH, T) = log sum_j exp(s_ij), saved for backward.
 *
 * Flash-style: forward keeps a running max and sum (no T x T matrix); backward recomputes the
 * probabilities from lse, first dq per query (parallel over queries), then dk and dv per key
 * (parallel over keys), so no two threads write the same row. delta (B, NH, T) is scratch that
 * backward fills with rowsum(dout * out). dq, dk, dv are written, not accumulated.
 */
#ifndef LLFC_KERNELS_ATTENTION_H
#define LLFC_KERNELS_ATTENTION_H

#include <stdint.h>

#define ATTENTION_MAX_HD 1024

typedef struct {
    int64_t B, T, NH, NKV, HD;
    float scale;   /* HD^-0.5, or query_pre_attn_scalar^-0.5 */
    float softcap; /* 0 = none */
    int64_t window;/* 0 = none */
} AttentionShape;

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *seq, const AttentionShape *s);
void attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k,
                        const float *v, const int32_t *seq, const AttentionShape *s);

#endif
