/* graph.h - Recipe x ModelSpec -> Plan: one training step as a flat list of ops with static
 * shapes, every tensor a slice of one arena.
 *
 * The step for a micro-batch of B rows of T tokens (cutoff_len; packing fills rows):
 *
 *     forward   EMBED, then per layer RMSNORM, LINEAR q/k/v (+bias, +LoRA), [RMSNORM q/k],
 *               ROPE, ATTENTION, LINEAR o, [RMSNORM], ADD, RMSNORM, LINEAR gate/up, GLU,
 *               LINEAR down, [RMSNORM], ADD; final RMSNORM, LINEAR lm_head, [SOFTCAP]
 *     loss      LOSS: shifted cross-entropy; its gradient overwrites the logits in place
 *     backward  the *_BWD op of each forward op whose output has a gradient, in reverse, only
 *               as far down as something trainable needs (autograd's requires_grad rule);
 *               with gradient checkpointing each layer's forward ops run again (into fresh
 *               tensors) just before that layer's backward ops
 *
 * Tensors live in four regions of one arena, each planned statically:
 *     PARAM  every weight (base and LoRA), fp32 here (the CUDA plan may store base in bf16)
 *     GRAD   one gradient per trainable parameter; ops add into it, so gradients accumulate
 *            over micro-batches until the trainer zeroes them
 *     INPUT  the micro-batch: input_ids, labels, seq (sequence id per token), pos (B, T) int32
 *     ACT    activations, saved-for-backward values and scratch: a tensor lives from the first
 *            op that touches it to the last, and tensors whose lives do not overlap share bytes
 *
 * Op slots (tensor ids; -1 = absent). n[] and f[] hold the sizes and scalars named per kind.
 *
 *   kind            in[]                                 out[]                      tmp[]
 *   EMBED           ids, table                           x                          -
 *                   n: N, C, V          f: scale
 *   RMSNORM         x, w                                 y, rstd                    -
 *                   n: R, D             f: eps, offset
 *   LINEAR          x, W, bias, A, B                     y, u (= drop(x) A^T, M x R) xd (dropout)
 *                   n: M, N(out), K(in), R, adapter    f: lora_scale, dropout
 *   ROPE            x, pos                               y                          -
 *                   n: N, H, HD, which (0 global, 1 sliding-window layers)
 *   ATTENTION       q, k, v, seq                         o, lse                     -
 *                   n: B, T, NH, NKV, HD, window        f: scale, softcap
 *   GLU             gate, up                             h                          -
 *                   n: N, act
 *   ADD             a, b                                 c                          -
 *                   n: N
 *   SOFTCAP         x                                    y                          -
 *                   n: N                f: cap
 *   LOSS            logits, labels                       dlogits (= logits)         -
 *                   n: B, T, V   (the gradient scale is given at run time)
 *   EMBED_BWD       dx, ids                              dtable (+=)                -
 *   RMSNORM_BWD     dy, x, w, rstd                       dx, dw (+=)                -
 *   LINEAR_BWD      dy, x, W, A, B, u                    dx, dW (+=), dbias (+=), dA (+=), dB (+=)
 *                   (x only when dW or dA is wanted,                                du, xd
 *                    u only for dB: a frozen layer's input is not kept)
 *   ROPE_BWD        dy, pos                              dx                         -
 *   ATTENTION_BWD   do, o, lse, q, k, v, seq             dq, dk, dv                 delta
 *   GLU_BWD         dh, gate, up                         dgate, dup                 -
 *   SOFTCAP_BWD     dy, x                                dx                         -
 *   ACCUM           src                                  dst (+=)                   -
 *
 * ADD has no backward op of its own: each input's gradient is the output's gradient buffer
 * itself, or an ACCUM into the gradient the input already has.
 * A backward op's `accum` bit k says out[k] adds into what is there instead of writing
 * (activation gradients reached by several consumers); gradients of parameters always add.
 * The sizes and scalars of a *_BWD op are those of its forward op (n[], f[] copied).
 */
#ifndef LLFC_GRAPH_H
#define LLFC_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "recipe.h"
#include "util.h"

#define PLAN_VERSION 2 /* 2: gradient checkpointing flag */
#define PLAN_NAME_LEN 128
#define PLAN_IN 7
#define PLAN_OUT 5
#define PLAN_TMP 2
#define PLAN_ALIGN 16 /* tensors start at multiples of 16 elements (64 bytes) */

typedef enum { PLAN_PARAM, PLAN_GRAD, PLAN_INPUT, PLAN_ACT, PLAN_REGIONS } PlanRegion;
typedef enum { PLAN_F32, PLAN_I32 } PlanDtype;

typedef struct {
    char name[PLAN_NAME_LEN]; /* "L3.attn.q", "grad:L3.attn.q", or the parameter's name */
    uint8_t region;           /* PlanRegion */
    uint8_t dtype;            /* PlanDtype */
    int64_t numel;
    int64_t offset;           /* elements from the start of its region */
    int32_t first, last;      /* ACT: the ops that first and last touch it */
} PlanTensor;

typedef enum {
    OP_EMBED, OP_RMSNORM, OP_LINEAR, OP_ROPE, OP_ATTENTION, OP_GLU, OP_ADD, OP_SOFTCAP, OP_LOSS,
    OP_EMBED_BWD, OP_RMSNORM_BWD, OP_LINEAR_BWD, OP_ROPE_BWD, OP_ATTENTION_BWD, OP_GLU_BWD,
    OP_SOFTCAP_BWD, OP_ACCUM, OP_KIND_COUNT
} PlanOpKind;

typedef enum { PHASE_FORWARD, PHASE_LOSS, PHASE_BACKWARD } PlanPhase;

typedef struct {
    uint8_t kind;  /* PlanOpKind */
    uint8_t phase; /* PlanPhase */
    uint8_t accum; /* bit k: out[k] accumulates */
    int32_t layer; /* -1 outside the layers */
    int32_t in[PLAN_IN], out[PLAN_OUT], tmp[PLAN_TMP];
    int64_t n[6];
    float f[4];
    int64_t flops; /* matrix-product FLOPs (linear layers, attention's two products, and their
                      gradients); elementwise work is not counted, as in MFU's model FLOPs */
} PlanOp;

typedef enum { PARAM_BASE, PARAM_LORA_A, PARAM_LORA_B } PlanParamKind;

typedef struct {
    char name[PLAN_NAME_LEN];   /* HF name (full, freeze); PEFT's saved name in lora mode:
                                   "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                   modules_to_save: "base_model.model.model.norm.weight" */
    char source[PLAN_NAME_LEN]; /* the base checkpoint tensor it is read from ("" for LoRA) */
    uint8_t kind;               /* PlanParamKind */
    bool trainable;
    bool decay;                 /* weight decay applies (HF Trainer: not norms, not biases) */
    int32_t tensor, grad;       /* tensor ids; grad -1 when frozen */
    int32_t layer;              /* -1 outside the layers */
    int32_t adapter;            /* LoRA: adapter number (RNG stream for A's init); else -1 */
    int ndim;
    int64_t shape[2];           /* PyTorch order: LoRA A (R, in), B (out, R) */
} PlanParam;

typedef enum { FT_FULL, FT_FREEZE, FT_LORA } PlanFinetune;

typedef struct {
    uint32_t version;
    // what the plan was built for
    int64_t B, T, V, C, L, NH, NKV, HD, FF;
    uint8_t finetune;       /* PlanFinetune */
    bool checkpoint_layers; /* gradient checkpointing: backward reruns each layer's forward */
    int64_t lora_rank;      /* 0 unless lora */
    float lora_scale, lora_dropout;
    ModelRope rope[2];      /* [0] full-attention layers, [1] sliding-window layers */
    int64_t max_positions;  /* config's max_position_embeddings (dynamic rope) */
    // the step
    PlanTensor *tensors;
    int32_t n_tensors;
    PlanParam *params;
    int32_t n_params;
    PlanOp *ops;
    int32_t n_ops;
    int32_t n_forward;      /* ops[0 .. n_forward) compute the logits */
    int32_t loss_op;        /* index of the LOSS op */
    int32_t input_ids, labels, seq, pos, logits; /* tensor ids */
    int64_t region_size[PLAN_REGIONS]; /* elements (4 bytes each) */
    int64_t act_unplanned;  /* ACT elements if nothing were shared, for the report */
    int64_t flops_forward, flops_backward;
} Plan;

typedef struct {
    PlanFinetune finetune;
    int64_t B, T;
    bool checkpoint_layers; /* gradient_checkpointing: keep only each layer's input and rerun
                               the layer's forward just before its backward */
    // lora
    int64_t lora_rank;
    double lora_alpha;      /* 0 = 2 * rank */
    double lora_dropout;
    bool use_rslora;
    const char *const *lora_target; /* names; "all" = every linear layer but lm_head */
    size_t n_lora_target;
    const char *const *additional_target; /* PEFT modules_to_save */
    size_t n_additional_target;
    // freeze
    int64_t freeze_trainable_layers;
    const char *const *freeze_trainable_modules;
    size_t n_freeze_trainable_modules;
    const char *const *freeze_extra_modules;
    size_t n_freeze_extra_modules;
} GraphOptions;

/* The recipe's method keys as GraphOptions (pointers into r). */
bool graph_options_from_recipe(GraphOptions *o, const Recipe *r, char *err, size_t errlen);

/* Build the training step. Errors (a target the model lacks, a module name LLaMA-Factory would
 * reject) are tier (a) and name the recipe key. */
Plan *graph_build(const GraphOptions *o, const ModelSpec *m, char *err, size_t errlen);
Plan *graph_build_recipe(const Recipe *r, const ModelSpec *m, char *err, size_t errlen);

void plan_free(Plan *p);

/* The ops, one a line, the arena's regions and peak, the parameters and FLOPs per step. */
void plan_print(const Plan *p, FILE *f);

/* Bytes that plan_deserialize reads back into an equal Plan: "LLFCPLAN", PLAN_VERSION, then
 * every field little-endian. plan_deserialize checks the magic, the version, every count and
 * every tensor index and extent, and returns NULL with a message on any mismatch. */
void plan_serialize(const Plan *p, StrBuf *out);
Plan *plan_deserialize(const void *bytes, size_t len, char *err, size_t errlen);

const char *plan_op_name(PlanOpKind k);
int64_t plan_arena_bytes(const Plan *p);

#endif
