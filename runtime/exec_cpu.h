/* exec_cpu.h - runs a Plan on the CPU in fp32 with the C reference kernels (kernels/).
 *
 * The oracle every CUDA kernel is tested against, and a trainer's path on a machine with no
 * GPU. One arena holds everything the plan names (weights, gradients, the micro-batch,
 * activations); nothing is allocated per step.
 *
 *     ExecCpu *ex = exec_cpu_new(plan, seed, err, errlen);
 *     exec_cpu_load_model(ex, "model_dir", ...);   base weights (F32/F16/BF16 -> fp32)
 *     exec_cpu_init_lora(ex);                 or exec_cpu_load_adapter(ex, "adapter.safetensors")
 *     loop: exec_cpu_step(ex, &batch, grad_scale, &loss)   forward + loss + backward, grads +=
 *           optimizer over exec_cpu_params(ex, &n); exec_cpu_zero_grad(ex)
 *
 * Gradients add up over calls (gradient accumulation) until exec_cpu_zero_grad.
 */
#ifndef LLFC_EXEC_CPU_H
#define LLFC_EXEC_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

typedef struct {
    const char *name; /* HF name (full, freeze) or PEFT's saved name (lora) */
    float *value;     /* numel floats in the arena */
    float *grad;      /* numel floats; NULL for a frozen parameter */
    int64_t numel;
    bool decay;       /* weight decay applies (not norms, not biases: HF Trainer's rule) */
    int ndim;
    int64_t shape[2];
} ExecParam;

/* One micro-batch. Packing: each row holds whole sequences one after another; `seq` numbers
 * them and `pos` restarts at 0 for each. The loss shifts within a row (token t predicts label
 * t + 1), so the label of each sequence's first token must be -100 for the sequences to be
 * independent, as SFT rows are (the prompt comes first); padding is its own sequence with
 * labels -100. */
typedef struct {
    const int32_t *input_ids; /* (B, T) */
    const int32_t *labels;    /* (B, T); -100 = ignored; NULL in forward-only calls */
    const int32_t *seq;       /* (B, T) sequence id per token: attention stays inside one */
    const int32_t *pos;       /* (B, T) position within its sequence (restarts at 0) */
    uint64_t step;            /* LoRA dropout stream: a different mask every step */
} ExecBatch;

typedef struct {
    double loss_sum; /* sum over counted tokens of -log p(label) */
    int64_t count;   /* tokens that count (label != -100, not the last of a row) */
    double loss;     /* loss_sum / count (0 when count is 0) */
} ExecLoss;

typedef struct ExecCpu ExecCpu;

/* Allocate the arena (zeroed). The plan must outlive the executor. `seed` keys LoRA init and
 * dropout. NULL with err when the arena cannot be allocated. */
ExecCpu *exec_cpu_new(const Plan *plan, uint64_t seed, char *err, size_t errlen);
void exec_cpu_free(ExecCpu *ex);

/* Read every base parameter from a model folder or .safetensors file by its HF name. */
bool exec_cpu_load_model(ExecCpu *ex, const char *path, char *err, size_t errlen);

/* LoRA as PEFT initialises it: A (R, in) ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with
 * a = sqrt(5)), drawn by Philox (seed, RNG_LORA_INIT/adapter, element); B = 0. */
void exec_cpu_init_lora(ExecCpu *ex);

/* Read LoRA A/B (and modules_to_save weights) from a PEFT adapter_model.safetensors. Every
 * LoRA parameter of the plan must be there with its shape. */
bool exec_cpu_load_adapter(ExecCpu *ex, const char *path, char *err, size_t errlen);

/* The trainable parameters, in the plan's order. */
const ExecParam *exec_cpu_params(const ExecCpu *ex, size_t *n);
/* Every parameter, trainable or not (for saving a full model). */
const ExecParam *exec_cpu_all_params(const ExecCpu *ex, size_t *n);

void exec_cpu_zero_grad(ExecCpu *ex);

/* Every token id in [0, V), every label in [0, V) or -100. A batch that fails would index
 * outside the embedding: the trainer checks each batch (or its token cache once) with this.
 * err gets "row R, token T: ..." on failure. */
bool exec_cpu_check_batch(const ExecCpu *ex, const ExecBatch *b, char *err, size_t errlen);

/* Forward, loss and backward for one micro-batch; gradients are added into the trainable
 * parameters' grad buffers as d(grad_scale * loss_sum). grad_scale <= 0 means 1 / count (the
 * micro-batch's mean loss); a trainer accumulating k micro-batches passes 1 / (tokens counted
 * over all k), as transformers does with num_items_in_batch. Fails only when a ZeRO-3
 * collective does. */
bool exec_cpu_step(ExecCpu *ex, const ExecBatch *b, float grad_scale, ExecLoss *loss, char *err, size_t errlen);

/* Forward only, as in evaluation (no dropout): returns the logits (B, T, V) in the arena,
 * valid until the next call (NULL when a ZeRO-3 collective failed). When b->labels is set and
 * loss is not NULL, also the loss. */
const float *exec_cpu_forward(ExecCpu *ex, const ExecBatch *b, ExecLoss *loss, char *err, size_t errlen);

/* Data parallel's overlap: ready(ctx, group) is called during exec_cpu_step as soon as a
 * group's gradients are final for the call (group l + 1: layer l's parameters; 0: those outside
 * the layers, last), so that they can be reduced while the backward pass goes on. NULL stops
 * it. A plan with an op touching two groups never calls it. */
void exec_cpu_on_grads(ExecCpu *ex, void (*ready)(void *ctx, int32_t group), void *ctx);

/* ZeRO-3. Parameter i (plan order) lives at rank owner[i] with its gradient; the other ranks
 * gather it when an op needs it (a layer's parameters at a time, into one of two layer windows,
 * least recently used out; those outside the layers into a window of their own) and send their
 * part of its gradient to the owner when the window is reused or the call ends. The callbacks
 * are collectives: every rank makes the same calls in the same order (the plan's), so they
 * must run exec_cpu_step / exec_cpu_forward / exec_cpu_collect together. Between calls the
 * views (exec_cpu_params, exec_cpu_all_params) show this rank's parameters; the others' have
 * value and grad NULL. The gradients an owner holds after a step are summed over the ranks. */
typedef struct {
    int rank;
    const int *owner; /* plan->n_params entries; must outlive the executor */
    void *ctx;
    /* owner's n floats at buf into every rank's buf */
    bool (*gather)(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen);
    /* every rank's n floats at buf summed into the owner's buf */
    bool (*reduce)(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen);
    /* owner's n floats at buf into rank 0's buf (the others' buf is not touched) */
    bool (*collect)(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen);
} ExecShard;

ExecCpu *exec_cpu_new_sharded(const Plan *plan, uint64_t seed, const ExecShard *shard, char *err, size_t errlen);

/* Every value at rank 0 (for a checkpoint or the outputs): rank 0's views point to a full
 * copy until exec_cpu_uncollect. Every rank calls it. A no-op without ZeRO-3. */
bool exec_cpu_collect(ExecCpu *ex, char *err, size_t errlen);
void exec_cpu_uncollect(ExecCpu *ex);

/* Bytes this rank holds (ZeRO-3: its own parameters, and the gather windows). */
typedef struct {
    int64_t weights, gradients, windows, activations;
} ExecMemory;
void exec_cpu_memory(const ExecCpu *ex, ExecMemory *m);
/* Groups gathered so far (tests: how often a layer came over). */
int64_t exec_cpu_gathers(const ExecCpu *ex);

/* The same for any executor, on a PARAM region laid out as the plan says (fp32, element
 * offsets), e.g. the CUDA executor's host copy, of which a rank may hold only some parameters
 * (held[i]; NULL: all): the others are skipped, and their views' values are NULL. */
typedef bool (*ExecParamSink)(void *ctx, int32_t param, const float *values, char *err, size_t errlen);
/* sink, when not NULL, gets each base parameter not held as it is read (values valid during the
 * call; the CUDA executor sends frozen weights straight to the GPU); without one they are skipped. */
bool exec_params_load_model(const Plan *plan, float *param_region, const bool *held, ExecParamSink sink, void *ctx,
                            const char *path, char *err, size_t errlen);
void exec_params_init_lora(const Plan *plan, uint64_t seed, float *param_region, const bool *held);
bool exec_params_load_adapter(const Plan *plan, float *param_region, const bool *held, const char *path, char *err,
                              size_t errlen);
/* The parameters as ExecParams over a PARAM and a GRAD region: every one, and the trainable
 * ones, in the plan's order (both arrays allocated; the caller frees them). */
void exec_params_views(const Plan *plan, float *param_region, const bool *held, float *grad_region, ExecParam **all,
                       size_t *n_all, ExecParam **trainable, size_t *n_trainable);

/* Each op's group, from the parameters and gradients it names (l + 1: layer l's, 0: those outside
 * the layers, -1: none, -2: two groups), into op_group[plan->n_ops]; false when some op names two
 * (the plans graph.c builds have none). */
bool exec_params_op_groups(const Plan *plan, int32_t *op_group);

/* A tensor of the plan by id (tests). */
float *exec_cpu_tensor(const ExecCpu *ex, int32_t id);

#endif
