/* exec_cuda.h - runs a Plan on an NVIDIA GPU: the kernels llfc generated for it (the trainer's
 * cuda/ payload: NVRTC's CUBINs or PTX and cuda/launches.txt) through the driver API, and the
 * matrix products through cuBLASLt (runtime/cudrv.h). The same calls as exec_cpu.h, so the
 * trainer drives both the same way; what differs:
 *
 *   - storage (compiler/cuda_gen.h): a 16-bit copy of every weight (bf16, or f16 when the recipe
 *     says fp16: true: the unit's floatX), which every kernel and product reads, and fp32 masters
 *     of the trained weights only (frozen ones live in 16 bits on the GPU, their host copy stays
 *     the truth); fp32 gradients and AdamW moments; activations at 2 bytes and fp32 statistics
 *     at 4, laid out by the executor (exec_cuda_act_layout);
 *   - the loss is computed over vocabulary chunks with the LM head's products (the full
 *     logits are never stored), so exec_cuda_forward returns the loss only;
 *   - AdamW, the gradient norm and clipping run on the GPU (exec_cuda_adamw);
 *   - the parameters the trainer sees (exec_cuda_params) are host copies: exec_cuda_to_host
 *     refreshes them (and the AdamW moments) before a checkpoint or the outputs, and
 *     exec_cuda_to_device sends host edits (merged adapters, a resumed checkpoint) back.
 *
 * Device memory is one allocation per region of the plan, made once; nothing is allocated per
 * step. Every failing CUDA call names the call, the op and the kernel it served.
 *
 * LLFC_CUDA_CHECK_BOUNDS=1 (for tests): every activation gets bytes of its own between poisoned
 * guards, checked after every op; a kernel that writes past its tensor stops the run, naming
 * the op and the tensor.
 */
#ifndef LLFC_EXEC_CUDA_H
#define LLFC_EXEC_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "exec_cpu.h"
#include "graph.h"
#include "nccl.h"
#include "optim.h"
#include "payload.h"

typedef struct ExecCuda ExecCuda;

/* Open GPU `device` (LOCAL_RANK), load the payload's kernels for its architecture, allocate the
 * plan's memory and print what it takes against the GPU's (to `log`, if not NULL). NULL with
 * err when there is no usable GPU or the payload has no CUDA for it. */
ExecCuda *exec_cuda_new(const Plan *plan, const Payload *payload, int device, uint64_t seed, FILE *log, char *err,
                        size_t errlen);

/* ZeRO-1/2 over the GPUs of a data-parallel run: this rank updates only the trainable parameters
 * it owns, and its GPU keeps their fp32 masters and AdamW moments only (the bf16 copy of every
 * weight stays on every GPU; ZeRO-2 keeps the gradients as ZeRO-3 does, below). exec_cuda_params stays the whole list; exec_cuda_adamw takes this
 * rank's parameters (its run of that list, in order), exec_cuda_to_host / to_device move only
 * their masters (and an AdamW of their moments), and the memory line says the share. */
typedef struct {
    int rank, stage;  /* this rank of the group; the ZeRO stage (1, 2, 3), as printed */
    const int *owner; /* per trainable parameter (exec_cuda_params' order): its rank; each rank's
                         parameters one run, in rank order (trainer.c's deal makes them so) */
    DistGroup *group; /* the ranks: the gradient norm's sum of squares is summed over them */
    const int *param_owner; /* stage 3: per plan parameter (frozen ones too), the rank that keeps
                               it, one run each in rank order (owner must agree); else NULL */
} ExecCudaShard;
ExecCuda *exec_cuda_new_sharded(const Plan *plan, const Payload *payload, int device, uint64_t seed,
                                const ExecCudaShard *shard, FILE *log, char *err, size_t errlen);

/* ZeRO-3 (param_owner set): a GPU keeps the 16-bit values and fp32 gradients of its own
 * parameters only (slices of the plan's PARAM and GRAD regions), besides the masters and AdamW
 * state of its own trained ones. exec_cuda_step and exec_cuda_forward gather the other ranks'
 * parameters a layer at a time (ncclBroadcast from each owner, on a communication stream of the
 * GPU's own) into one of two layer windows, plus one window for the parameters outside the
 * layers; the next layer's gather starts as soon as the other layer window is done with, so it
 * runs while this layer computes. ZeRO-2 (stage 2) keeps the gradients alike and every 16-bit
 * value whole. Under both, the other ranks' gradients of a layer are added in a window from zero,
 * and sent to their owners (ncclReduce, on that stream) as soon as exec_cuda_step has launched
 * the last op that adds to them, while the backward pass goes on; the compute stream waits for
 * a gather or a reduction on the GPU (events), only where it needs the window, and the host
 * only at the end: the step returns with every gradient at its owner (each micro-batch: the
 * owner's slice accumulates). These are collectives: every rank calls step together (ZeRO-3: forward
 * too), with c from exec_cuda_use_nccl. Under ZeRO-1/2 the host copies stay whole on every rank
 * (exec_cuda_to_host refreshes this rank's trained ones only); under ZeRO-3 a rank's host memory
 * holds fp32 copies of its own parameters only (the views of the others' have NULL values), so
 * a model larger than one rank's share of RAM loads too. */
void exec_cuda_use_nccl(ExecCuda *ex, NclComm *c);
/* Groups (a layer's parameters, or those outside the layers) gathered so far (ZeRO-3), and of
 * them those gathered ahead of the op that needed them. */
int64_t exec_cuda_gathers(const ExecCuda *ex);
int64_t exec_cuda_prefetched(const ExecCuda *ex);
/* Groups' gradient reductions started during the backward pass so far (ZeRO-2/3): the rest
 * started when their window was needed or the step ended. */
int64_t exec_cuda_early_reductions(const ExecCuda *ex);
void exec_cuda_free(ExecCuda *ex);

/* Whether the trainer's kernels keep f16 (the recipe's fp16: true: the trainer scales the loss)
 * rather than bf16. */
bool exec_cuda_fp16(const ExecCuda *ex);

/* "NVIDIA H100 80GB HBM3 (sm_90)" */
const char *exec_cuda_device(const ExecCuda *ex);

/* Into the host copies (exec_cpu.h's meaning); exec_cuda_to_device sends them. Without ZeRO-3
 * and keep_frozen (false: no adapter is merged into the base weights and this rank writes no
 * whole model), frozen weights go straight to the GPU instead and their views' values are NULL. */
bool exec_cuda_load_model(ExecCuda *ex, const char *path, bool keep_frozen, char *err, size_t errlen);
void exec_cuda_init_lora(ExecCuda *ex);
bool exec_cuda_load_adapter(ExecCuda *ex, const char *path, char *err, size_t errlen);

/* The fp32 weight values the host copies hold, of all. */
void exec_cuda_host_values(const ExecCuda *ex, int64_t *held, int64_t *all);
/* Host copies of the parameters (see above), in the plan's order. */
const ExecParam *exec_cuda_params(const ExecCuda *ex, size_t *n);
const ExecParam *exec_cuda_all_params(const ExecCuda *ex, size_t *n);
/* ZeRO-3, to write them: every parameter's host copy at rank 0 (each owner sends its own, after
 * exec_cuda_to_host; the views of rank 0 then show them all), until exec_cuda_uncollect. Every
 * rank calls it together; a no-op without ZeRO-3. */
bool exec_cuda_collect(ExecCuda *ex, char *err, size_t errlen);
void exec_cuda_uncollect(ExecCuda *ex);

/* Host -> GPU: every parameter held (and, when opt is not NULL, AdamW's moments from it). */
bool exec_cuda_to_device(ExecCuda *ex, const AdamW *opt, char *err, size_t errlen);
/* GPU -> host: every parameter, and AdamW's moments into opt when not NULL. */
bool exec_cuda_to_host(ExecCuda *ex, AdamW *opt, char *err, size_t errlen);
/* Gradients GPU -> host copies (for reducing across ranks without NCCL), and back. */
bool exec_cuda_grads_to_host(ExecCuda *ex, char *err, size_t errlen);
bool exec_cuda_grads_to_device(ExecCuda *ex, char *err, size_t errlen);

bool exec_cuda_zero_grad(ExecCuda *ex, char *err, size_t errlen);

/* As exec_cpu_step; false with err when a CUDA call fails. */
bool exec_cuda_step(ExecCuda *ex, const ExecBatch *b, float grad_scale, ExecLoss *loss, char *err, size_t errlen);

/* Forward and loss only (no dropout), as in evaluation; b->labels must be set. */
bool exec_cuda_forward(ExecCuda *ex, const ExecBatch *b, ExecLoss *loss, char *err, size_t errlen);

/* One AdamW step of every trainable parameter on the GPU, after clipping the gradients to
 * max_norm (<= 0: no clipping), with opt's configuration and step count (incremented here, as
 * optim_step does) and lr_scale per parameter from params (the trainer's OptParam list, in the
 * same order as exec_cuda_params). *norm gets the gradient norm before clipping. Sharded (ZeRO):
 * params are this rank's only, the norm is over every rank's (their sums of squares added over
 * the shard's TCP group: every rank calls this together), and only this rank's parameters change;
 * exec_cuda_broadcast_params then sends them to the others.
 * Loss scaling (fp16): the gradients are those of loss * scale; each is multiplied by unscale
 * (1 / scale; 1 without scaling) before the norm and the update, and with `skipped` not NULL a
 * gradient with an inf or NaN (an inf or NaN norm, over every rank's under ZeRO) skips the update
 * on the device (no weight, moment or step count changes) and sets *skipped, as GradScaler.step
 * does. */
bool exec_cuda_adamw(ExecCuda *ex, AdamW *opt, const OptParam *params, size_t n, double lr_factor,
                     double max_norm, float unscale, bool *skipped, double *norm, char *err, size_t errlen);

/* Data parallel on the GPUs (nccl.h): the NCCL communicator of g's ranks on this executor's GPU
 * (NULL and *absent as ncl_open), and every rank's gradients summed in place on the GPUs with one
 * ncclAllReduce over the gradient region (the trainable parameters' fp32 gradients, contiguous). */
NclComm *exec_cuda_open_nccl(ExecCuda *ex, DistGroup *g, int timeout_s, bool *absent, char *err, size_t errlen);
bool exec_cuda_allreduce_grads(ExecCuda *ex, NclComm *c, char *err, size_t errlen);
/* Sharded, after exec_cuda_adamw: every trained parameter's bf16 copy from its owner to every
 * rank (ncclBroadcast of the bytes, one per run of one owner's parameters lying together). */
bool exec_cuda_broadcast_params(ExecCuda *ex, NclComm *c, char *err, size_t errlen);

/* Data parallel over NCCL, overlapped with the backward pass (what DDP's buckets do, and the CPU's
 * exec_cpu_on_grads with gradsync.h): a bucket of gradients per layer (and one for those outside
 * the layers), each reduced on a communication stream of the GPU's own as soon as the backward
 * pass is done with it, while the layers below go on. Every rank calls these alike (the
 * collectives are started in the plan's order):
 *
 *     exec_cuda_overlap_start(ex, nccl, err, errlen);    once: the stream, an event, the buckets
 *     per step: exec_cuda_overlap(ex, k == last) before each micro-batch's exec_cuda_step, then
 *     exec_cuda_overlap_finish(ex, err, errlen);         the buckets not started yet, and the wait
 *
 * Each bucket is summed on every rank (ncclAllReduce), as exec_cuda_allreduce_grads does, with
 * the same sums; ZeRO-2/3 reduce in their windows instead, and are refused here. A plan with an op
 * naming two layers' parameters starts every bucket in exec_cuda_overlap_finish (stats:
 * overlapped false). */
typedef struct {
    int32_t buckets;       /* the buckets that hold gradients */
    bool overlapped;       /* whether they can start during the backward pass */
    int64_t steps;         /* exec_cuda_overlap_finish calls */
    int64_t started_early; /* buckets started during the backward pass, over every step */
    double waited_s;       /* exec_cuda_overlap_finish's wait: what the backward pass did not hide */
} ExecCudaOverlap;
bool exec_cuda_overlap_start(ExecCuda *ex, NclComm *c, char *err, size_t errlen);
/* Whether the next exec_cuda_step starts the buckets as they are ready (its step's last micro-batch). */
void exec_cuda_overlap(ExecCuda *ex, bool on);
bool exec_cuda_overlap_finish(ExecCuda *ex, char *err, size_t errlen);
/* NULL before exec_cuda_overlap_start. */
const ExecCudaOverlap *exec_cuda_overlap_stats(const ExecCuda *ex);

/* Where the device keeps the plan's ACT tensors (exec_cuda.c's "device layout"): the same
 * first-fit rule as the plan's, with the device's widths and the lifetimes of the executor's
 * launches. */
typedef struct {
    int64_t *at;           /* per tensor: byte offset in the ACT buffer; -1 when the device keeps no
                              bytes for it (another region, or nothing launched touches it) */
    uint8_t *width;        /* per tensor: bytes per element on the device (bf16 2; fp32, int32 4) */
    int32_t *first, *last; /* per tensor: the ops whose launches first and last touch it; -1 */
    int64_t bytes;         /* the ACT buffer */
} CudaActLayout;

/* The layout exec_cuda_new makes for `plan` and its cuda/launches.txt (the payload's), with
 * `guard` poisoned bytes around every tensor and no sharing when guard > 0. */
bool exec_cuda_act_layout(const Plan *plan, const char *launches, size_t len, int64_t guard, CudaActLayout *l,
                          char *err, size_t errlen);
void exec_cuda_act_layout_free(CudaActLayout *l);

#endif
