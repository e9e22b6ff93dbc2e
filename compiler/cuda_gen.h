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
 *     LINEAR's bias and LoRA scale-and-add     lora_add into the base output (bias_add alone)
 *     SOFTCAP of the logits + LOSS             ce_stats / ce_grad with the cap (and SOFTCAP_BWD)
 *     LOSS                                     over vocabulary chunks of ce_vocab_chunk columns
 *     the optimizer (no op of the plan)        grad_sumsq, grad_norm_finish, adamw_update
 *
 * Output is a pure function of the plan: the same plan gives the same bytes.
 */
#ifndef LLFC_CUDA_GEN_H
#define LLFC_CUDA_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "graph.h"

#define CUDA_NAME_LEN 64
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
bool cuda_gen(const Plan *p, CudaUnit *u, char *err, size_t errlen);
void cuda_unit_free(CudaUnit *u);

/* "cuda/launches.txt" for the payload: the kernels with their geometry, then each op's launches
 * (format at the top of the text). */
void cuda_unit_launches(const CudaUnit *u, const Plan *p, StrBuf *out);

/* llfc --emit-cuda: the unit of a serialized plan (pack_build_plan's bytes), printed to f. */
bool cuda_gen_print(const void *plan_bytes, size_t plan_len, FILE *f, char *err, size_t errlen);

#endif
