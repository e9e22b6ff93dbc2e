/* adamw.cuh - one multi-tensor AdamW step with the global gradient norm and clipping (CUDA
 * template of runtime/optim.c: torch.optim.AdamW and clip_grad_norm_).
 *
 * Every trainable parameter of the plan is one entry of tables the generator writes before this
 * file (the plan fixes them): ADAMW_NP entries of adamw_numel, adamw_param_offset (elements into
 * the PARAM region: the floatX copy every kernel reads), adamw_grad_offset (GRAD region, fp32),
 * adamw_state_offset (the fp32 master weights, m and v, each packed in parameter order as
 * optim_init packs the moments: frozen parameters have no master), adamw_flags (bit 0: weight decay applies; bit
 * 1: LoRA+ group, learning rate * loraplus_lr_ratio) and adamw_first_block (ADAMW_NP + 1: the
 * first block of each parameter; a parameter takes ceil(numel / ADAMW_CHUNK) blocks).
 *
 *   grad_sumsq        one block per chunk: the chunk's sum of squares (double) of g * unscale
 *                     into partial[]
 *   grad_norm_finish  one block: each parameter's norm (rounded to float, as torch), the sum of
 *                     their squares into sumsq[0], the norm of those norms, and coef = max_norm /
 *                     (norm + 1e-6) clamped to 1 (1 when max_norm <= 0 or the norm is not
 *                     finite); norm_coef[0] = norm, [1] = coef, [2] = 1 when skip_nonfinite and
 *                     the norm is inf or NaN (else 0)
 *   adamw_update      one block per chunk: nothing when norm_coef[2] says skip; else
 *                     (g * unscale) * coef, then optim.c's arithmetic, in the same order with
 *                     explicit _rn intrinsics so no multiply-add is contracted (the C reference
 *                     is built with fp-contract off); writes the fp32 master weight, m, v and
 *                     the floatX copy
 *
 * ZeRO (a rank updates parameters [p0, p1) of the tables only, a contiguous run): grad_sumsq and
 * adamw_update are launched with that run's blocks, block0 = adamw_first_block[p0] naming the
 * first; grad_norm_finish sums parameters [p0, p1) and the host sums sumsq over the ranks, then
 * writes norm_coef itself (the skip flag too, so every rank skips alike); the master, m and v
 * arrays hold that run's state only, state0 = adamw_state_offset[p0] being its first value.
 * Without ZeRO: block0 = state0 = p0 = 0, p1 = ADAMW_NP.
 * Loss scaling (fp16: true; torch.cuda.amp.GradScaler under HF Trainer): the gradients in the
 * GRAD region are those of loss * scale. unscale = 1 / scale multiplies each one before the
 * norm and the update, as GradScaler.unscale_ does in place before clip_grad_norm_, and an
 * inf or NaN anywhere makes the norm inf or NaN, so the step is skipped on the device with no
 * sync in between (the host reads norm_coef after, and halves the scale). Without scaling the
 * host passes unscale = 1 (exact) and skip_nonfinite = 0: torch's plain AdamW step.
 * Scalars that change every step (learning rate per group, bias corrections) come in AdamWArgs,
 * computed on the host in double and rounded once, as torch does. No host sync in between: the
 * norm stays on the device until the trainer logs it.
 */

struct AdamWArgs {
    float neg_step[2];  /* -(lr_group / bc1) */
    float decay_mul[2]; /* 1 - lr_group * weight_decay (1 when weight_decay is 0) */
    float w1;           /* 1 - beta1 */
    float beta2, one_minus_beta2, bc2_sqrt, eps;
    float unscale;      /* 1 / loss scale (fp16), 1 otherwise */
};

__device__ __forceinline__ int adamw_param_of_block(i64 blk) {
    int lo = 0, hi = ADAMW_NP - 1; /* the last i with adamw_first_block[i] <= blk */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (adamw_first_block[mid] <= blk) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

#define GRAD_SUMSQ_PARAMS double *partial, const float *grads, i64 block0, float unscale
#define GRAD_SUMSQ_ARGS partial, grads, block0, unscale
__device__ __forceinline__ void grad_sumsq(GRAD_SUMSQ_PARAMS) {
    __shared__ double red[32];
    const i64 blk = block0 + blockIdx.x;
    const int i = adamw_param_of_block(blk);
    const i64 e0 = (blk - adamw_first_block[i]) * ADAMW_CHUNK;
    const i64 e1 = min(e0 + ADAMW_CHUNK, adamw_numel[i]);
    const float *g = grads + adamw_grad_offset[i];
    float s = 0;
    for (i64 e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        const float gi = __fmul_rn(g[e], unscale);
        s += gi * gi;
    }
    const double total = block_sum((double)s, red);
    if (threadIdx.x == 0) partial[blk] = total;
}

#define GRAD_NORM_FINISH_PARAMS float *norm_coef, double *sumsq, const double *partial, float max_norm, int p0, \
    int p1, int skip_nonfinite
#define GRAD_NORM_FINISH_ARGS norm_coef, sumsq, partial, max_norm, p0, p1, skip_nonfinite
__device__ __forceinline__ void grad_norm_finish(GRAD_NORM_FINISH_PARAMS) {
    __shared__ double red[32];
    double acc = 0;
    for (int i = p0 + threadIdx.x; i < p1; i += blockDim.x) {
        double s = 0;
        for (i64 b = adamw_first_block[i]; b < adamw_first_block[i + 1]; b++) s += partial[b];
        const float ni = (float)sqrt(s);
        acc += (double)ni * ni;
    }
    const double total = block_sum(acc, red);
    const float norm = (float)sqrt(total);
    if (threadIdx.x != 0) return;
    sumsq[0] = total;
    float coef = 1.0f;
    if (max_norm > 0 && isfinite(norm)) {
        const float c = max_norm / (norm + 1e-6f);
        if (c < 1.0f) coef = c;
    }
    norm_coef[0] = norm, norm_coef[1] = coef, norm_coef[2] = skip_nonfinite && !isfinite(norm) ? 1.0f : 0.0f;
}

#define ADAMW_UPDATE_PARAMS float *params, floatX *params_x, const float *grads, float *m, \
    float *v, const float *norm_coef, AdamWArgs a, i64 block0, i64 state0
#define ADAMW_UPDATE_ARGS params, params_x, grads, m, v, norm_coef, a, block0, state0
__device__ __forceinline__ void adamw_update(ADAMW_UPDATE_PARAMS) {
    if (norm_coef[2] != 0.0f) return; /* an overflow: GradScaler skips the step */
    const i64 blk = block0 + blockIdx.x;
    const int i = adamw_param_of_block(blk);
    const i64 e0 = (blk - adamw_first_block[i]) * ADAMW_CHUNK;
    const i64 e1 = min(e0 + ADAMW_CHUNK, adamw_numel[i]);
    const int group = (adamw_flags[i] >> 1) & 1;
    const float decay_mul = (adamw_flags[i] & 1) ? a.decay_mul[group] : 1.0f;
    const float neg_step = a.neg_step[group], coef = norm_coef[1];
    const i64 at = adamw_state_offset[i] - state0;
    float *p = params + at, *mi_ = m + at, *vi_ = v + at;
    floatX *pb = params_x + adamw_param_offset[i];
    const float *g = grads + adamw_grad_offset[i];
    for (i64 e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        const float gi = __fmul_rn(__fmul_rn(g[e], a.unscale), coef);
        const float pi = __fmul_rn(p[e], decay_mul);
        const float mi = fmaf(a.w1, __fsub_rn(gi, mi_[e]), mi_[e]);
        const float vi = fmaf(__fmul_rn(a.one_minus_beta2, gi), gi, __fmul_rn(vi_[e], a.beta2));
        const float denom = __fadd_rn(__fdiv_rn(sqrtf(vi), a.bc2_sqrt), a.eps);
        const float pn = __fadd_rn(pi, __fdiv_rn(__fmul_rn(neg_step, mi), denom));
        p[e] = pn, mi_[e] = mi, vi_[e] = vi;
        st(pb, e, pn);
    }
}
