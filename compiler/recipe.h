/* recipe.h - the YAML recipe: LLaMA-Factory's keys, typed, defaulted, validated, with origins.
 *
 * A recipe is a YAML mapping of key: value, the keys LLaMA-Factory users already write.
 * Pipeline:  YAML text (libyaml) -> one value per key, converted by the key's type ->
 *            defaults -> `key=value` overrides -> cross-key checks -> Recipe.
 * Every value remembers where it came from (FILE:LINE:COL, an argument, or the default) so
 * errors point at it and `llfc check` can show it. The same code reads the resolved recipe
 * embedded in a trainer, so the trainer checks its overrides exactly as the compiler does.
 *
 * The key table below is the reference for what each key means: name, type, default (as
 * YAML), range or choices, and flags. Keys LLaMA-Factory knows that llfc does not support
 * yet are in recipe_lf_keys.c (generated); anything else is a typo with "did you mean".
 */
#ifndef LLFC_RECIPE_H
#define LLFC_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct {
    size_t n;
    char **items;
} StrList;

typedef struct { /* a mapping of names to numbers, e.g. lr_scheduler_kwargs: {min_lr_rate: 0.1} */
    size_t n;
    char **keys;
    double *vals;
} NumMap;

typedef enum { RT_BOOL, RT_INT, RT_FLOAT, RT_STR, RT_ENUM, RT_LIST, RT_NUMMAP } RecipeType;

enum {
    RK_REQUIRED = 1 << 0, /* must be given (no default) */
    RK_NULLABLE = 1 << 1, /* `null` is a valid value meaning "not set" */
    RK_BAKED = 1 << 2,    /* compiled into the trainer: shapes, method, embedded sources. Paths
                             (model, data, output) are not: a shipped trainer finds its
                             inputs where it runs, relative to its working directory */
    RK_NOOP = 1 << 3,     /* accepted for LLaMA-Factory compatibility; llfc always does the
                             right thing itself (the help says what) and notes it */
    RK_LLFC = 1 << 4,     /* llfc's own key, not in LLaMA-Factory */
    RK_MIN_OPEN = 1 << 5, /* the minimum is exclusive */
    RK_MAX_OPEN = 1 << 6, /* the maximum is exclusive */
};

#define INF 1e308

/* X(name, type, group, default-as-YAML or NULL for null, min, max, choices, later, flags, help)
 *   choices: '|'-separated values llfc supports (RT_ENUM, and items of an RT_LIST)
 *   later:   '|'-separated values LLaMA-Factory accepts that llfc does not support yet */
#define RECIPE_KEYS(X)                                                                           \
    /* --- model */                                                                              \
    X(model_name_or_path, RT_STR, "model", NULL, 0, 0, NULL, NULL, RK_REQUIRED,     \
      "Local folder of a Hugging Face model (config.json, *.safetensors, tokenizer files).")    \
    X(adapter_name_or_path, RT_LIST, "model", NULL, 0, 0, NULL, NULL, RK_NULLABLE,  \
      "PEFT LoRA adapter folder(s) to start from (lora only).")                                 \
    X(trust_remote_code, RT_BOOL, "model", "false", 0, 0, NULL, NULL, RK_NOOP,                 \
      "No effect: llfc never runs code from a model folder; it reads config.json.")             \
    X(use_fast_tokenizer, RT_BOOL, "model", "true", 0, 0, NULL, NULL, 0,                       \
      "llfc has one tokenizer, equal to Hugging Face's fast one; false is not supported.")      \
    X(flash_attn, RT_ENUM, "model", "auto", 0, 0, "auto|disabled|sdpa|fa2|fa3", NULL, RK_NOOP, \
      "No effect: llfc always runs its own fused attention kernel (exact, like all of these).") \
    X(enable_liger_kernel, RT_BOOL, "model", "false", 0, 0, NULL, NULL, RK_NOOP,               \
      "No effect: llfc's generated kernels are fused already.")                                 \
    X(use_unsloth, RT_BOOL, "model", "false", 0, 0, NULL, NULL, RK_NOOP,                       \
      "No effect: llfc's generated kernels are fused already.")                                 \
    X(disable_gradient_checkpointing, RT_BOOL, "model", "false", 0, 0, NULL, NULL, 0,         \
      "LLaMA-Factory's switch; in llfc gradient_checkpointing decides (default off).")          \
    /* --- method */                                                                             \
    X(stage, RT_ENUM, "method", "sft", 0, 0, "sft|pt|rm|dpo|kto", "ppo", RK_BAKED,             \
      "Training stage: sft (supervised), pt (pre-training), rm, dpo, kto.")                     \
    X(do_train, RT_BOOL, "method", "false", 0, 0, NULL, NULL, 0,                               \
      "Train (the trainer's main job).")                                                        \
    X(do_eval, RT_BOOL, "method", "false", 0, 0, NULL, NULL, 0,                                \
      "Evaluate on the eval split (val_size or eval_dataset).")                                 \
    X(finetuning_type, RT_ENUM, "method", "lora", 0, 0, "lora|freeze|full", "oft", RK_BAKED,   \
      "What trains: lora adapters, the last layers (freeze), or every weight (full).")          \
    X(lora_rank, RT_INT, "method", "8", 1, 65536, NULL, NULL, RK_BAKED,                         \
      "LoRA rank R.")                                                                           \
    X(lora_alpha, RT_INT, "method", NULL, 1, 1e9, NULL, NULL, RK_NULLABLE,                      \
      "LoRA scale numerator (scale = alpha/R, or alpha/sqrt(R) with use_rslora); null: 2*R.")   \
    X(lora_dropout, RT_FLOAT, "method", "0.0", 0, 1, NULL, NULL, RK_MAX_OPEN,                   \
      "Dropout on the LoRA input.")                                                             \
    X(lora_target, RT_LIST, "method", "all", 0, 0, NULL, NULL, RK_BAKED,                       \
      "Modules that get adapters: all, or names such as q_proj,v_proj.")                        \
    X(additional_target, RT_LIST, "method", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED,    \
      "Modules trained fully beside the adapters (e.g. embed_tokens,lm_head).")                 \
    X(use_rslora, RT_BOOL, "method", "false", 0, 0, NULL, NULL, 0,                             \
      "Rank-stabilised LoRA scale alpha/sqrt(R).")                                              \
    X(loraplus_lr_ratio, RT_FLOAT, "method", NULL, 0, INF, NULL, NULL,                          \
      RK_NULLABLE | RK_MIN_OPEN, "LoRA+: the B matrices learn this many times faster.")         \
    X(loraplus_lr_embedding, RT_FLOAT, "method", "1.0e-6", 0, INF, NULL, NULL, 0,               \
      "LoRA+: learning rate of embedding adapters.")                                            \
    X(create_new_adapter, RT_BOOL, "method", "false", 0, 0, NULL, NULL, RK_BAKED,              \
      "Add a fresh adapter on top of adapter_name_or_path instead of training it.")             \
    X(freeze_trainable_layers, RT_INT, "method", "2", -1e6, 1e6, NULL, NULL, RK_BAKED,          \
      "freeze: train the last N layers (N > 0) or the first -N (N < 0).")                       \
    X(freeze_trainable_modules, RT_LIST, "method", "all", 0, 0, NULL, NULL, RK_BAKED,          \
      "freeze: which modules of those layers train (all, or names such as mlp,self_attn).")     \
    X(freeze_extra_modules, RT_LIST, "method", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED, \
      "freeze: modules outside the layers that also train (e.g. embed_tokens,norm).")           \
    X(pref_beta, RT_FLOAT, "method", "0.1", 0, INF, NULL, NULL, 0,                              \
      "Preference stages: beta of the DPO/KTO loss.")                                           \
    X(pref_ftx, RT_FLOAT, "method", "0.0", 0, INF, NULL, NULL, 0,                               \
      "Preference stages: weight of the SFT loss added to the preference loss.")                \
    X(pref_loss, RT_ENUM, "method", "sigmoid", 0, 0, "sigmoid|hinge|ipo|kto_pair|orpo|simpo",  \
      NULL, 0, "Preference loss for dpo.")                                                      \
    X(dpo_label_smoothing, RT_FLOAT, "method", "0.0", 0, 0.5, NULL, NULL, 0,                    \
      "Robust DPO label smoothing (sigmoid loss only).")                                        \
    X(simpo_gamma, RT_FLOAT, "method", "0.5", 0, INF, NULL, NULL, 0, "SimPO target margin.")    \
    X(kto_chosen_weight, RT_FLOAT, "method", "1.0", 0, INF, NULL, NULL, 0,                      \
      "KTO: weight of desirable examples.")                                                     \
    X(kto_rejected_weight, RT_FLOAT, "method", "1.0", 0, INF, NULL, NULL, 0,                    \
      "KTO: weight of undesirable examples.")                                                   \
    X(ref_model, RT_STR, "method", NULL, 0, 0, NULL, NULL, RK_NULLABLE,             \
      "Preference stages: reference model folder (null: the model being trained).")             \
    /* --- dataset */                                                                            \
    X(dataset, RT_LIST, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE,                        \
      "Training datasets: names in dataset_dir/dataset_info.json, comma-separated or a list.")   \
    X(eval_dataset, RT_LIST, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE,                   \
      "Evaluation datasets, named like dataset.")                                               \
    X(dataset_dir, RT_STR, "dataset", "data", 0, 0, NULL, NULL, 0,                             \
      "Folder holding dataset_info.json and the data files.")                                   \
    X(template, RT_STR, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED,             \
      "Chat template: a name (llfc --templates lists them) or a path to your own .lua file.")  \
    X(data_hook, RT_STR, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED | RK_LLFC,   \
      "A Lua file whose transform(example) rewrites or drops each record before templating.")   \
    X(data_on_error, RT_ENUM, "dataset", "stop", 0, 0, "stop|skip", NULL, RK_LLFC,             \
      "Bad records (malformed JSON, wrong types, broken conversations): stop at the first, "    \
      "naming file:line, or skip them; either way the load report counts them by reason.")       \
    X(cutoff_len, RT_INT, "dataset", "2048", 1, 1048576, NULL, NULL, RK_BAKED,                  \
      "Tokens per row T: longer examples are truncated; packing fills rows to it.")             \
    X(train_on_prompt, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, 0,                       \
      "sft: also learn the prompt tokens.")                                                     \
    X(mask_history, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, 0,                          \
      "sft: learn only the last turn of each conversation.")                                    \
    X(mix_strategy, RT_ENUM, "dataset", "concat", 0, 0,                                        \
      "concat|interleave_under|interleave_over", "interleave_once", 0,                          \
      "How several datasets mix.")                                                              \
    X(interleave_probs, RT_LIST, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE,               \
      "Sampling probabilities of the datasets when interleaving.")                              \
    X(max_samples, RT_INT, "dataset", NULL, 1, 1e15, NULL, NULL, RK_NULLABLE,                   \
      "Use at most this many examples of each dataset.")                                        \
    X(val_size, RT_FLOAT, "dataset", "0.0", 0, 1e15, NULL, NULL, 0,                             \
      "Held-out evaluation split: a fraction (< 1) or a number of examples (>= 1).")            \
    X(packing, RT_BOOL, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED,             \
      "Pack several examples into each row of cutoff_len tokens; null: on for pt, off else.")   \
    X(neat_packing, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, RK_BAKED,                   \
      "Packing where attention never crosses example boundaries (implies packing).")            \
    X(tool_format, RT_STR, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED,          \
      "Tool-call format of the template (null: the template's own).")                           \
    X(default_system, RT_STR, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE,                  \
      "System prompt used when an example has none (null: the template's).")                   \
    X(enable_thinking, RT_BOOL, "dataset", "true", 0, 0, NULL, NULL, RK_NULLABLE,              \
      "Reasoning templates: keep thinking in the prompt (true) or not.")                        \
    X(preserve_thinking, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, 0,                      \
      "Reasoning templates: keep earlier turns' thinking instead of discarding it.")            \
    X(preprocessing_batch_size, RT_INT, "dataset", "1000", 1, 1e9, NULL, NULL, 0,               \
      "Examples encoded per batch; packing, pt blocks and kto pairs form within a batch.")       \
    X(overwrite_cache, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, 0,                       \
      "Re-tokenize even when the token cache is up to date.")                                   \
    X(tokenized_path, RT_STR, "dataset", NULL, 0, 0, NULL, NULL, RK_NULLABLE,                  \
      "Where the token cache lives (null: inside output_dir).")                                 \
    X(preprocessing_num_workers, RT_INT, "dataset", NULL, 1, 4096, NULL, NULL, RK_NULLABLE,     \
      "Threads that tokenize (null: all cores).")                                               \
    X(dataloader_num_workers, RT_INT, "dataset", "0", 0, 4096, NULL, NULL, RK_NOOP,             \
      "No effect: llfc reads batches from a memory-mapped token cache, no loader workers.")     \
    X(disable_shuffling, RT_BOOL, "dataset", "false", 0, 0, NULL, NULL, 0,                     \
      "Keep the dataset order instead of shuffling it.")                                        \
    /* --- output */                                                                             \
    X(output_dir, RT_STR, "output", NULL, 0, 0, NULL, NULL, RK_REQUIRED,                       \
      "Where checkpoints, logs, the adapter or model, and the token cache go.")                 \
    X(overwrite_output_dir, RT_BOOL, "output", "false", 0, 0, NULL, NULL, 0,                   \
      "Allow an output_dir that already holds results.")                                        \
    X(logging_steps, RT_FLOAT, "output", "500", 0, INF, NULL, NULL, RK_MIN_OPEN,                \
      "Log every N steps (a value < 1 is a fraction of the total steps).")                      \
    X(save_strategy, RT_ENUM, "output", "steps", 0, 0, "no|steps|epoch", "best", 0,            \
      "When checkpoints are written.")                                                          \
    X(save_steps, RT_FLOAT, "output", "500", 0, INF, NULL, NULL, RK_MIN_OPEN,                   \
      "Checkpoint every N steps (a value < 1 is a fraction of the total steps).")               \
    X(save_total_limit, RT_INT, "output", NULL, 1, 1e9, NULL, NULL, RK_NULLABLE,                \
      "Keep only the newest N checkpoints.")                                                    \
    X(save_only_model, RT_BOOL, "output", "false", 0, 0, NULL, NULL, 0,                        \
      "Checkpoints without optimizer state (they cannot be resumed exactly).")                  \
    X(plot_loss, RT_BOOL, "output", "false", 0, 0, NULL, NULL, 0,                              \
      "Draw training_loss.png at the end.")                                                     \
    X(report_to, RT_LIST, "output", "none", 0, 0, "none",                                      \
      "all|wandb|tensorboard|swanlab|mlflow|trackio|comet_ml|clearml|neptune|dvclive", 0,       \
      "Experiment trackers; llfc writes trainer_log.jsonl and supports none.")                  \
    X(run_name, RT_STR, "output", NULL, 0, 0, NULL, NULL, RK_NULLABLE,                         \
      "A name for this run in the logs.")                                                       \
    /* --- train */                                                                              \
    X(per_device_train_batch_size, RT_INT, "train", "8", 1, 65536, NULL, NULL, RK_BAKED,        \
      "Rows per micro-batch B on each device.")                                                 \
    X(gradient_accumulation_steps, RT_INT, "train", "1", 1, 1e6, NULL, NULL, 0,                 \
      "Micro-batches per optimizer step.")                                                      \
    X(learning_rate, RT_FLOAT, "train", "5.0e-5", 0, 10, NULL, NULL, 0,                         \
      "Peak learning rate of AdamW.")                                                           \
    X(num_train_epochs, RT_FLOAT, "train", "3.0", 0, 1e9, NULL, NULL, RK_MIN_OPEN,              \
      "Passes over the training data (ignored when max_steps > 0).")                            \
    X(max_steps, RT_INT, "train", "-1", -1, 1e12, NULL, NULL, 0,                                \
      "Total optimizer steps; -1: from num_train_epochs.")                                      \
    X(lr_scheduler_type, RT_ENUM, "train", "linear", 0, 0,                                     \
      "linear|cosine|constant|constant_with_warmup|cosine_with_min_lr",                         \
      "cosine_with_restarts|polynomial|inverse_sqrt|reduce_lr_on_plateau|warmup_stable_decay|"  \
      "cosine_warmup_with_min_lr", 0, "Learning-rate schedule after warmup.")                   \
    X(lr_scheduler_kwargs, RT_NUMMAP, "train", NULL, 0, 0, "min_lr|min_lr_rate|num_cycles",    \
      NULL, RK_NULLABLE, "Schedule parameters, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr.")\
    X(warmup_ratio, RT_FLOAT, "train", "0.0", 0, 1, NULL, NULL, 0,                              \
      "Warmup as a fraction of the total steps.")                                               \
    X(warmup_steps, RT_FLOAT, "train", "0", 0, 1e12, NULL, NULL, 0,                             \
      "Warmup steps (overrides warmup_ratio; a value < 1 is a fraction, as in transformers 5).")\
    X(optim, RT_ENUM, "train", "adamw_torch", 0, 0, "adamw_torch|adamw_torch_fused",           \
      "adamw_hf|adamw_apex_fused|adafactor|adamw_8bit|adamw_bnb_8bit|paged_adamw_8bit|"         \
      "paged_adamw_32bit|sgd|adagrad|lion_32bit|lion_8bit|rmsprop|galore_adamw|apollo_adamw|"   \
      "schedule_free_adamw|adamw_anyprecision|adamw_torch_xla|adamw_torch_npu_fused",            \
      0, "Optimizer: AdamW (fused or not is the same maths).")                                  \
    X(weight_decay, RT_FLOAT, "train", "0.0", 0, INF, NULL, NULL, 0,                            \
      "AdamW decoupled weight decay (not applied to norms and biases).")                        \
    X(adam_beta1, RT_FLOAT, "train", "0.9", 0, 1, NULL, NULL, RK_MAX_OPEN, "AdamW beta1.")      \
    X(adam_beta2, RT_FLOAT, "train", "0.999", 0, 1, NULL, NULL, RK_MAX_OPEN, "AdamW beta2.")    \
    X(adam_epsilon, RT_FLOAT, "train", "1.0e-8", 0, 1, NULL, NULL, RK_MIN_OPEN,                 \
      "AdamW epsilon.")                                                                         \
    X(max_grad_norm, RT_FLOAT, "train", "1.0", 0, INF, NULL, NULL, 0,                           \
      "Clip the global gradient norm to this (0: no clipping).")                                \
    X(bf16, RT_BOOL, "train", "false", 0, 0, NULL, NULL, RK_BAKED,                             \
      "bf16 weights and activations, fp32 master weights and optimizer state.")                 \
    X(fp16, RT_BOOL, "train", "false", 0, 0, NULL, NULL, RK_BAKED,                             \
      "fp16 with dynamic loss scaling.")                                                        \
    X(device, RT_ENUM, "train", "auto", 0, 0, "auto|cuda|cpu", NULL, RK_LLFC,                  \
      "Where the trainer runs: auto (a GPU when one is usable, else the CPU executor), cuda "   \
      "(a GPU, or stop saying why not), cpu (the fp32 CPU executor).")                          \
    X(seed, RT_INT, "train", "42", 0, 4294967295.0, NULL, NULL, 0,                              \
      "Seed of every random choice: LoRA init, dropout, data order.")                           \
    X(data_seed, RT_INT, "train", NULL, 0, 4294967295.0, NULL, NULL, RK_NULLABLE,               \
      "Seed of the data order only (null: seed).")                                              \
    X(gradient_checkpointing, RT_BOOL, "train", "false", 0, 0, NULL, NULL, RK_BAKED,           \
      "Recompute activations in the backward pass to save memory.")                             \
    X(resume_from_checkpoint, RT_STR, "train", NULL, 0, 0, NULL, NULL, RK_NULLABLE,            \
      "A checkpoint folder to resume from.")                                                    \
    X(ddp_timeout, RT_INT, "train", "1800", 1, 1e12, NULL, NULL, 0,                             \
      "Seconds a rank waits for the others before the run stops with an error.")                \
    X(deepspeed, RT_STR, "train", NULL, 0, 0, NULL, NULL, RK_NULLABLE | RK_BAKED,              \
      "A DeepSpeed JSON config; llfc reads its zero_optimization.stage.")                       \
    X(zero_stage, RT_INT, "train", NULL, 0, 3, NULL, NULL, RK_NULLABLE | RK_LLFC,               \
      "ZeRO across data-parallel ranks: 1 shards AdamW state, 2 also gradients, 3 also the "     \
      "parameters, gathered a layer at a time (null: from "                                      \
      "deepspeed's zero_optimization.stage, else 0).")                                          \
    /* --- eval */                                                                               \
    X(per_device_eval_batch_size, RT_INT, "eval", "8", 1, 65536, NULL, NULL, RK_BAKED,          \
      "Rows per evaluation batch on each device.")                                              \
    X(eval_strategy, RT_ENUM, "eval", "no", 0, 0, "no|steps|epoch", NULL, 0,                   \
      "When to evaluate.")                                                                      \
    X(eval_steps, RT_FLOAT, "eval", NULL, 0, INF, NULL, NULL, RK_NULLABLE | RK_MIN_OPEN,        \
      "Evaluate every N steps (null: logging_steps; < 1: a fraction of the total steps).")

#define RECIPE_ENUM_ID(name, ...) RK_##name,
typedef enum { RECIPE_KEYS(RECIPE_ENUM_ID) RK_COUNT } RecipeKeyId;
#undef RECIPE_ENUM_ID

typedef struct {
    const char *name;
    RecipeType type;
    const char *group;
    const char *def; /* YAML text; NULL: null */
    double min, max;
    const char *choices, *later;
    unsigned flags;
    const char *help;
} RecipeKey;

extern const RecipeKey recipe_keys[RK_COUNT];

typedef struct { /* one key LLaMA-Factory accepts (generated table, recipe_lf_keys.c) */
    const char *name;
    const char *def; /* '|'-separated YAML spellings of its default; NULL: computed */
    const char *owner; /* the LLaMA-Factory/transformers dataclass it belongs to */
} RecipeLfKey;

extern const RecipeLfKey recipe_lf_keys[];
extern const size_t recipe_lf_key_count;

typedef enum { ORIGIN_DEFAULT, ORIGIN_FILE, ORIGIN_ARG, ORIGIN_DERIVED } OriginKind;

typedef struct {
    OriginKind kind;
    char *where; /* "recipes/x.yaml:12:16", "argument 3", "default", "2 * lora_rank" */
} Origin;

typedef union {
    bool b;
    int64_t i;
    double f;
    char *s; /* RT_STR, RT_ENUM; NULL: null */
    StrList list;
    NumMap map;
} RecipeValue;

typedef struct {
    RecipeValue v[RK_COUNT];
    bool is_null[RK_COUNT];
    Origin origin[RK_COUNT];
    char *source_name; /* the recipe file's name as given */
    char *source_text; /* its text, verbatim */
} Recipe;

/* Typed access: R_INT(r, cutoff_len), R_STR(r, template), ... */
#define R_BOOL(r, k) ((r)->v[RK_##k].b)
#define R_INT(r, k) ((r)->v[RK_##k].i)
#define R_FLOAT(r, k) ((r)->v[RK_##k].f)
#define R_STR(r, k) ((r)->v[RK_##k].s)
#define R_LIST(r, k) ((r)->v[RK_##k].list)
#define R_NULL(r, k) ((r)->is_null[RK_##k])

/* Messages of one recipe load: "FILE:LINE:COL: error|warning|note: ...", one per line. */
typedef struct {
    StrBuf text;
    int errors, warnings;
} Diags;

typedef struct {
    const char *arg;    /* "key=value" as typed */
    const char *origin; /* "argument 3" */
} RecipeOverride;

enum { RECIPE_FOR_CHECK = 0, RECIPE_FOR_TRAINER = 1, RECIPE_EMBEDDED = 2 };

/* Read a recipe from YAML text, apply overrides, default and check everything. Returns NULL
 * when d->errors > 0. `purpose`: RECIPE_FOR_TRAINER also rejects what the trainer cannot do
 * yet; RECIPE_EMBEDDED reads a trainer's embedded resolved recipe (origins kept) and refuses
 * overrides of RK_BAKED keys. */
Recipe *recipe_parse(const char *name, const char *text, size_t len, const RecipeOverride *ov,
                     size_t n_ov, int purpose, Diags *d);
Recipe *recipe_load(const char *path, const RecipeOverride *ov, size_t n_ov, int purpose, Diags *d);
void recipe_free(Recipe *r);

/* The resolved recipe as YAML, every key, each line commented with its origin; reading it
 * back with RECIPE_EMBEDDED gives the same Recipe. */
void recipe_write_yaml(const Recipe *r, StrBuf *out);
/* The table `llfc check` prints: key, value, origin. */
void recipe_write_table(const Recipe *r, StrBuf *out);
/* One value as YAML text (flow style). */
void recipe_value_yaml(const Recipe *r, RecipeKeyId k, StrBuf *out);

/* Key lookup; -1 if not an llfc key. */
int recipe_key_find(const char *name);
/* The closest known key name to `name` (llfc's or LLaMA-Factory's) or NULL if none is close. */
const char *recipe_suggest(const char *name);

/* Report a problem with key k at the place its value came from (file:line:col or argument). */
void recipe_diag(const Recipe *r, RecipeKeyId k, Diags *d, const char *level, const char *fmt, ...)
    PRINTF_LIKE(5, 6);

void diags_free(Diags *d);

#endif
