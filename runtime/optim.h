/* optim.h - AdamW as torch.optim.AdamW computes it, global gradient clipping, and the rules
 * that decide which parameters decay and which learning rate each one gets.
 *
 * The optimizer sees a flat list of parameters (OptParam): fp32 values and gradients of the
 * same length, a name (the Hugging Face / PEFT name, used for decay rules and checkpoints),
 * whether weight decay applies, and a learning-rate multiplier (LoRA+). Nothing here knows
 * about the model or the executor.
 *
 * One step of AdamW, per element, as torch 2.x's single-tensor and foreach paths compute it in
 * fp32 (torch/optim/adamw.py -> adam.py, decoupled_weight_decay=True), with t the step after
 * the increment and lr the group's learning rate (base lr * lr_scale * schedule factor):
 *
 *     p  = p * (1 - lr * wd)                     (wd = 0 where decay is false)
 *     m  = lerp(m, g, 1 - beta1)                 (= m + (1 - beta1) * (g - m))
 *     v  = v * beta2 + (1 - beta2) * g * g
 *     bc1 = 1 - beta1^t,  bc2 = 1 - beta2^t      (double, from Python floats)
 *     p  = p + (-lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 *
 * Scalars are computed in double and rounded to float once, as torch does when a Python float
 * meets a float32 tensor; the per-element expressions follow ATen's CPU kernels (fused
 * multiply-adds where they use them), so m and v match torch 2.15 bit for bit
 * (tests/unit/test_optim.c). p can differ by an ulp: torch's CPU float sqrt (MKL) is not
 * correctly rounded in about 1 case of 5; ours is IEEE sqrtf, as CUDA's sqrtf.
 *
 * Gradient clipping is torch.nn.utils.clip_grad_norm_ (norm_type 2): the total norm is the L2
 * norm of every gradient element together; coef = max_norm / (total + 1e-6), clamped to 1,
 * multiplies every gradient. HF Trainer (5.x) clips only when max_grad_norm > 0, but always
 * computes and logs the norm before clipping as grad_norm.
 */
#ifndef LLFC_OPTIM_H
#define LLFC_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recipe.h"

typedef struct {
    const char *name;  /* HF/PEFT name, e.g. "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" */
    float *value;      /* (n) fp32 master weights, updated in place */
    float *grad;       /* (n) gradient of the loss (already averaged over accumulation) */
    int64_t n;
    bool decay;        /* weight decay applies (optim_decays(name)) */
    double lr_scale;   /* learning rate = base lr * lr_scale * schedule; 1 normally */
} OptParam;

typedef struct {
    double lr;           /* base (peak) learning rate */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8, added after sqrt of the bias-corrected second moment */
    double weight_decay; /* decoupled: p *= 1 - lr * weight_decay */
} AdamWConfig;

/* AdamW's state: first and second moments of every parameter, one step count (every
 * parameter always has a gradient here, so torch's per-parameter steps are all equal). */
typedef struct {
    AdamWConfig cfg;
    size_t n_params;
    int64_t *offset;     /* (n_params + 1) start of parameter i in m and v */
    float *m, *v;        /* (offset[n_params]) exp_avg, exp_avg_sq */
    int64_t step;        /* optimizer steps taken */
} AdamW;

/* Allocate zeroed moments for these parameters (only their sizes are read). */
void optim_init(AdamW *opt, const AdamWConfig *cfg, const OptParam *params, size_t n);
void optim_free(AdamW *opt);

/* One AdamW update of every parameter with lr_factor = the schedule's multiplier for this
 * step (schedule_factor), so parameter i uses lr = cfg.lr * lr_scale_i * lr_factor. The
 * parameters must be the ones optim_init saw, in the same order. */
void optim_step(AdamW *opt, const OptParam *params, size_t n, double lr_factor);

/* L2 norm of all gradients together (accumulated in double). */
double optim_grad_norm(const OptParam *params, size_t n);

/* clip_grad_norm_: returns the norm before clipping; scales the gradients when
 * max_norm > 0 (coef = min(1, max_norm / (norm + 1e-6)); with coef 1 nothing changes). A
 * non-finite norm leaves gradients as they are (torch would multiply them by nan; the trainer
 * reports the step instead). */
double optim_clip_grad_norm(const OptParam *params, size_t n, double max_norm);

/* Does a parameter with this name decay? transformers' Trainer.get_decay_parameter_names: no
 * decay when the lowercased name contains "bias", "layernorm" or "rmsnorm", or matches
 * "(^|\.)norm($|\.)" or "_norm($|\.)"; everything else (Linear weights, embeddings, lora_A/B)
 * decays. */
bool optim_decays(const char *name);

/* LLaMA-Factory's LoRA+ optimizer uses its own, older rule (trainer_utils.py
 * _get_decay_parameter_names): decay unless the module is an nn.LayerNorm (none in the decoders
 * llfc supports) or the name contains "bias"; so RMSNorm weights do decay under LoRA+. */
bool optim_decays_loraplus(const char *name);

/* The learning-rate multiplier LLaMA-Factory's LoRA+ optimizer gives a parameter
 * (train/trainer_utils.py _create_loraplus_optimizer): loraplus_ratio for lora_B weights and
 * for every 1-D parameter, 1 for the rest; ratio <= 0 means LoRA+ is off (all 1). lora
 * embedding B matrices have an absolute rate (loraplus_lr_embedding) that a multiplier cannot
 * express: optim_loraplus_scale returns -1 for them and the caller decides. */
double optim_loraplus_scale(const char *name, int ndim, double loraplus_ratio);

/* AdamWConfig from a recipe: learning_rate, adam_beta1, adam_beta2, adam_epsilon, weight_decay. */
void optim_config_from_recipe(AdamWConfig *cfg, const Recipe *recipe);

// --- dynamic loss scaling (fp16: true on GPUs)

/* torch.cuda.amp.GradScaler with its defaults, as HF Trainer (accelerate) runs it for fp16:
 * backward on loss * scale; a step whose unscaled gradients hold an inf or NaN is skipped (no
 * AdamW update, the optimizer's step count and the learning-rate schedule do not advance) and
 * the scale is multiplied by backoff; after growth_interval steps in a row without one it is
 * multiplied by growth. The step itself still counts (global_step, logs, checkpoints). */
typedef struct {
    double scale;          /* 65536 (init_scale) */
    double growth, backoff; /* 2, 0.5 */
    int64_t growth_interval; /* 2000 */
    int64_t clean;         /* steps since the last overflow or growth (GradScaler's growth tracker) */
    int64_t skipped;       /* steps skipped so far */
} LossScaler;

void optim_scaler_init(LossScaler *s, double init_scale);

/* After a step: found_inf says whether it was skipped. Returns whether the scale changed. */
bool optim_scaler_update(LossScaler *s, bool found_inf);

// --- state in and out (checkpoint.c stores it as safetensors: NAME.exp_avg, NAME.exp_avg_sq)

/* Check that a saved state fits these parameters: same count, same sizes. */
bool optim_state_matches(const AdamW *opt, const OptParam *params, size_t n, char *err,
                         size_t errlen);

#endif
