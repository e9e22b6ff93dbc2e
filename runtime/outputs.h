/* outputs.h - what a finished run leaves: a PEFT LoRA adapter folder, or a Hugging Face model
 * folder; and reading a PEFT adapter back (adapter_name_or_path).
 *
 * LoRA (PEFT 0.18's save_pretrained, as LLaMA-Factory 0.9.5 calls it):
 *     adapter_model.safetensors   {"format": "pt"} metadata; for each layer N and target T:
 *         base_model.model.model.layers.N.self_attn.T.lora_A.weight   (R, in)
 *         base_model.model.model.layers.N.self_attn.T.lora_B.weight   (out, R)
 *       (mlp.T for gate_proj, up_proj, down_proj), and for each modules_to_save (LF's
 *       additional_target) the whole module: base_model.model.model.embed_tokens.weight,
 *       base_model.model.lm_head.weight (HF name behind "base_model.model.").
 *     adapter_config.json         LoraConfig.to_dict(), json.dumps(indent=2, sort_keys=True):
 *       r, lora_alpha, lora_dropout, target_modules (a list), use_rslora, use_dora false,
 *       task_type "CAUSAL_LM", peft_type "LORA", base_model_name_or_path, bias "none",
 *       modules_to_save (list or null), inference_mode true, and the other keys PEFT 0.18.1
 *       writes with their defaults. The scale is lora_alpha / R (lora_alpha / sqrt(R) with
 *       use_rslora).
 *
 * Full / freeze: config.json (model_write_config), generation_config.json, model.safetensors
 * or model-0000K-of-0000N.safetensors + model.safetensors.index.json (st_write), and the
 * tokenizer files of the base model folder copied as they are.
 */
#ifndef LLFC_OUTPUTS_H
#define LLFC_OUTPUTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

#define OUTPUTS_PEFT_VERSION "0.18.1" /* the PEFT whose format we write */

typedef struct {
    int64_t r;                   /* lora_rank */
    double lora_alpha;           /* LF default: 2 * lora_rank */
    double lora_dropout;
    bool use_rslora;
    char **target_modules;       /* module names: q_proj, k_proj, ..., down_proj */
    size_t n_targets;
    char **modules_to_save;      /* additional_target: embed_tokens, lm_head, norm...; may be 0 */
    size_t n_save;
    char *base_model_name_or_path;
} OutLora;

void outputs_lora_free(OutLora *c);

/* One tensor of an adapter: its PEFT name and shape. kind 'A', 'B', or 'S' (modules_to_save:
 * the HF tensor itself, shape as in the model). */
typedef struct {
    char name[160];
    char kind;
    int layer;                   /* -1 for modules_to_save outside the layers */
    int ndim;
    int64_t shape[2];
    char hf_name[96];            /* the base weight it adapts (or saves) */
} OutLoraTensor;

/* Every tensor an adapter of this config holds for this model, in layer order (A then B for
 * each target as the model lists its weights), then modules_to_save. NULL with err for a target
 * or module the model does not have. */
OutLoraTensor *outputs_lora_tensors(const ModelSpec *spec, const OutLora *cfg, size_t *n,
                                    char *err, size_t errlen);

/* The adapter_config.json text PEFT writes for cfg (target_modules and modules_to_save sorted;
 * PEFT writes a set, in no fixed order). */
void outputs_adapter_config_json(const OutLora *cfg, StrBuf *out);

/* Write DIR/adapter_model.safetensors and DIR/adapter_config.json (DIR must exist). tensors[i]
 * carry their PEFT names (outputs_lora_tensors). */
bool outputs_write_adapter(const char *dir, const OutLora *cfg, const StWriteTensor *tensors,
                           size_t n, char *err, size_t errlen);

/* Read a PEFT adapter folder for this model: its config (into *cfg) and its tensors (*weights,
 * st_close when done), checked: a LoRA adapter (peft_type LORA, no DoRA, bias none, no
 * rank/alpha patterns, target_modules a list), every expected tensor present with the shape
 * this model needs, nothing else. Errors name the file, the key or tensor, and what to do. */
bool outputs_read_adapter(const char *dir, const ModelSpec *spec, OutLora *cfg,
                          StModel **weights, char *err, size_t errlen);

/* Copy the tokenizer files found in base_dir (the list below) into dir, as they are.
 * LLaMA-Factory saves the tokenizer beside adapters and models alike. */
bool outputs_copy_tokenizer(const char *dir, const char *base_dir, char *err, size_t errlen);

/* Write a Hugging Face model folder: config.json, generation_config.json, the weights
 * (sharded beyond max_shard_bytes; 0 = 5 GB), and the tokenizer files found in base_dir
 * (tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model,
 * vocab.json, merges.txt, added_tokens.json, chat_template.jinja). DIR is created if needed. */
bool outputs_write_model(const char *dir, const ModelSpec *spec, const StWriteTensor *tensors,
                         size_t n, uint64_t max_shard_bytes, const char *base_dir, char *err,
                         size_t errlen);

#endif
