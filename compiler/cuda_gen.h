/* cuda_gen.h - Plan -> one CUDA C translation unit: every op of the step that is not a matrix
 * product, as kernels specialised to the plan's shapes (cuBLASLt does the products).
 *
 * The unit is the templates of kernels/NAME.cuh (embedded in llfc at build time) followed by one
 * `extern "C" __global__` instance per distinct (template, shapes): the sizes and scalars are
 * literals in the instance, so loops unroll and nothing is looked up at run time. Only
 * pointers, and the few scalars that change per step (dropout seed and stream, rope
 * frequencies, the loss's grad_scale, AdamW's learning rates), stay kernel arguments.
 *
 * Fusions the generator makes (each op of the plan either launches kernels, or names the op
 * whose launch computes it in `fused_into`):
 *     ADD + the RMSNORM of its output          add_rmsnorm_fwd (the sum is still written)
 *     ROPE q + ROPE k (same positions)         one rope_apply launch; the same for ROPE_BWD
 *     LINEAR's bias and LoRA scale-and-add     lora_add into the base output (without LoRA the
 *                                              bias is cuBLASLt's BIAS epilogue: no kernel)
 *     SOFTCAP of the logits + LOSS             ce_stats / ce_grad with the cap (and SOFTCAP_BWD)
 *     LOSS                                     over vocabulary chunks of ce_vocab_chunk columns
 *     the optimizer (no op of the plan)        grad_sumsq, grad_norm_finish, adamw_update
 *
 * Output is a pure function of the plan: the same plan gives the same bytes.
 *
 * Storage on the GPU (what the kernels assume of the plan's tensors): activations and their
 * gradients floatX (2 bytes: the executor lays ACT out at these widths); rstd, lse, delta fp32;
 * ids, labels, seq, pos int32; parameters as a floatX copy at the PARAM region's element offsets,
 * which every forward and backward kernel reads, and fp32 masters of the trainable ones only,
 * packed at AdamW's state offsets; parameter gradients fp32 (GRAD region). floatX is the one
 * line of the unit the storage choice changes (`typedef bf16 floatX;` right after common.cuh):
 * bf16, or f16 for a recipe with fp16: true (the executor then scales the loss, see
 * kernels/adamw.cuh). cuda/launches.txt says which ("storage bf16|f16").
 *
 * Kernel arguments, in the order of each template's PARAMS macro, from the op's slots:
 *   embedding_fwd      out[0], in[0] ids, in[1] table
 *   add_rmsnorm_fwd    ADD out[0], RMSNORM out[0], out[1] rstd, ADD in[0], in[1], RMSNORM in[1] w
 *   rmsnorm_fwd        out[0], out[1] rstd, in[0], in[1] w            add_fwd  out[0], in[0], in[1]
 *   dropout_fwd        tmp[0] xd, in[0] x, seed, rng_purpose(RNG_DROPOUT, step), n[4] << 40
 *   lora_add           out[0] y (holding x W^T), out[1] u (= xd A^T), in[4] B, in[2] bias or NULL
 *   rope_apply         out[0], in[0] of the op, out[0], in[0] of the op fused into it (or NULL),
 *                      in[1] pos, inv_freq (HD/2 fp32: rope_inv_freq for rope[n[3]]), attn_scale
 *   attention_fwd      out[0], out[1] lse, in[0] q, in[1] k, in[2] v, in[3] seq
 *   glu_fwd            out[0], in[0], in[1]           softcap_fwd  out[0], in[0]
 *   LOSS               per chunk [v0, v0 + width) of the logits (cuBLASLt, fp32 (N, width), width <=
 *                      ce_vocab_chunk): ce_stats(row_max, row_sum, target_logit (N fp32 each),
 *                      chunk, labels, v0, width); after the last chunk ce_finish(loss_sum (double),
 *                      count (i64), row_max, row_sum, target_logit, labels); then per chunk again
 *                      ce_grad(dlogits (bf16 (N, width)), chunk, labels, row_max, row_sum, v0,
 *                      width, grad_scale) before the chunk's two products
 *   rmsnorm_bwd        out[0] dx, in[0] dy, in[1] x, in[2] w, in[3] rstd
 *   colsum_partial     scratch (colsum_scratch fp32), dy, x and rstd (RMSNORM_BWD in[1], in[3];
 *                      NULL for a bias); colsum_finish  the fp32 gradient (out[1] or out[2]), scratch
 *   LINEAR_BWD         dropout_fwd(tmp[1], in[1] x, ...) before the dA product; dropout_accum(
 *                      out[0] dx, tmp[1] holding du A, ...) after it
 *   attention_bwd_dq   out[0] dq, tmp[0] delta, in[0] dout, in[1] out, in[2] lse, in[3..5] q k v, in[6]
 *   attention_bwd_dkdv out[1] dk, out[2] dv, in[0] dout, in[2] lse, tmp[0] delta, in[3..5], in[6] seq
 *   glu_bwd            out[0], out[1], in[0] dh, in[1] gate, in[2] up
 *   softcap_bwd        out[0], in[0] dy, in[1] x      accum  out[0], in[0]
 *   embedding_bwd      out[0] (fp32), in[1] ids, in[0] dout
 *   optimizer          grad_sumsq(partial (adamw_blocks doubles), GRAD region, block0, unscale);
 *                      grad_norm_finish(norm_coef (3 fp32: norm, clip coefficient, skip), sumsq
 *                      (1 double), partial, max_grad_norm, p0, p1, skip_nonfinite);
 *                      adamw_update(fp32 masters (packed as m and v), the floatX PARAM region,
 *                      GRAD region, m, v, norm_coef, AdamWArgs, block0, state0)
 *                      (kernels/adamw.cuh; ZeRO's shares there); grad_sumsq and AdamWArgs take
 *                      unscale (1 / loss scale)
 */
#ifndef LLFC_CUDA_GEN_H
#define LLFC_CUDA_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "graph.h"

#define CUDA_NAME_LEN 64

/* What floatX is: the 16-bit type activations, their gradients and the weights' copy are kept
 * in. The recipe's fp16: true gives CUDA_F16; bf16: true or neither, CUDA_BF16. */
typedef enum { CUDA_BF16, CUDA_F16 } CudaStorage;
#define CUDA_OP_KERNELS 4 /* most kernels one op launches (LOSS: stats, finish, grad) */

typedef struct {
    char name[CUDA_NAME_LEN];     /* extern "C" name in the unit, e.g. "rmsnorm_fwd_0" */
    char template_name[CUDA_NAME_LEN]; /* the kernels/NAME.cuh template it instantiates */
    uint32_t grid[3], block[3];   /* launch geometry, fixed by the plan's shapes (LOSS kernels:
                                     one block per row; the executor launches them per chunk) */
} CudaKernel;

typedef struct {
    int32_t kernel[CUDA_OP_KERNELS]; /* indices into CudaUnit.kernels, in launch order */
    int32_t n_kernels;
    int32_t fused_into; /* the op whose kernels compute this one too; -1 */
    bool matmul;        /* the op's matrix products go to cuBLASLt (LINEAR, LINEAR_BWD) */
} CudaOpLaunch;

typedef struct {
    char *source;       /* the translation unit, NUL-terminated */
    CudaStorage storage;
    size_t len;
    CudaKernel *kernels;
    int32_t n_kernels;
    CudaOpLaunch *ops;  /* one per plan op */
    int32_t n_ops;
    int32_t optimizer[3];        /* grad_sumsq, grad_norm_finish, adamw_update; -1 if nothing trains */
    int64_t ce_vocab_chunk;      /* VC: logits are computed VC vocabulary columns at a time */
    int64_t colsum_scratch;      /* floats of scratch the column sums need (largest SLABS * D) */
    int64_t adamw_blocks;        /* doubles of scratch grad_sumsq writes */
} CudaUnit;

/* Generate the unit. Fails (tier c or a shape the kernels do not handle yet, e.g. HD > 256)
 * with a message in err. */
bool cuda_gen(const Plan *p, CudaStorage storage, CudaUnit *u, char *err, size_t errlen);

/* "bf16", "f16": the name in the unit (common.cuh's types) and in cuda/launches.txt. */
const char *cuda_storage_name(CudaStorage s);
void cuda_unit_free(CudaUnit *u);

/* "cuda/launches.txt" for the payload: the kernels with their geometry, then each op's launches
 * (format at the top of the text). */
void cuda_unit_launches(const CudaUnit *u, const Plan *p, StrBuf *out);

/* llfc --emit-cuda: the unit of a serialized plan (pack_build_plan's bytes), printed to f. */
bool cuda_gen_print(const void *plan_bytes, size_t plan_len, CudaStorage storage, FILE *f, char *err, size_t errlen);

#endif
