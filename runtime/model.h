/* model.h - ModelSpec: one parametric decoder, read from a Hugging Face config.json.
 *
 * Every supported family (llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text) is the same
 * pre-norm decoder; what differs is described by fields, never by per-family code paths:
 *
 *     x = embed[ids] * embed_scale                                   (B, T, C)
 *     for each layer l < L:
 *         h = rmsnorm(x) * (norm_offset + input_layernorm)
 *         q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)               (B, T, NH|NKV, HD)
 *         if qk_norm: q, k = rmsnorm over HD * (norm_offset + q_norm|k_norm)
 *         q, k = rope(q, k; layer_sliding[l] ? rope_local : rope)
 *         a = softmax(softcap(q k^T * query_scale, attn_softcap) + causal/sliding mask) v
 *         a = a Wo (+bo)
 *         if sandwich_norms: a = rmsnorm(a) * (norm_offset + post_attention_layernorm)
 *         x = x + a
 *         h = rmsnorm(x) * (norm_offset + (sandwich_norms ? pre_feedforward_layernorm
 *                                                         : post_attention_layernorm))
 *         m = (act(h Wgate) * (h Wup)) Wdown          (+ biases if mlp_bias)
 *         if sandwich_norms: m = rmsnorm(m) * (norm_offset + post_feedforward_layernorm)
 *         x = x + m
 *     logits = softcap((rmsnorm(x) * (norm_offset + norm)) Wlm^T, final_softcap)   (B, T, V)
 *     where Wlm = embed when tie_word_embeddings.
 *
 * model_type picks a row of defaults (transformers' config class for that family); the generic
 * reader then applies what config.json says. Errors are tier (a): "DIR/config.json:LINE:COL: ...".
 */
#ifndef LLFC_MODEL_H
#define LLFC_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define MODEL_MAX_EOS 8

typedef enum {
    MODEL_ROPE_DEFAULT, /* theta^(-2i/HD) */
    MODEL_ROPE_LINEAR,  /* positions / factor */
    MODEL_ROPE_DYNAMIC, /* NTK: theta grows once T > original_max_positions */
    MODEL_ROPE_LLAMA3,  /* Llama 3.1 band-wise frequency scaling */
    MODEL_ROPE_YARN,    /* YaRN: ramp between interpolation and extrapolation, attention_factor */
} ModelRopeType;

/* One RoPE variant, with transformers' rope_parameters names. Unused fields are 0. */
typedef struct {
    ModelRopeType type;
    double theta;                   /* base period (rope_theta) */
    double factor;                  /* linear, dynamic, llama3, yarn */
    int64_t original_max_positions; /* llama3, yarn, dynamic; defaults to max_positions */
    double low_freq_factor;         /* llama3 */
    double high_freq_factor;        /* llama3 */
    double beta_fast, beta_slow;    /* yarn: 32, 1 */
    double attention_factor;        /* yarn: 0 = derive from factor (and mscale) as HF does */
    double mscale, mscale_all_dim;  /* yarn: 0 = absent */
    bool truncate;                  /* yarn: floor/ceil the correction range (default true) */
} ModelRope;

typedef enum {
    MODEL_ACT_SILU,      /* "silu" / "swish": SwiGLU MLP */
    MODEL_ACT_GELU_TANH, /* "gelu_pytorch_tanh", "gelu_new", "gelu_fast"; gemma's legacy "gelu" */
    MODEL_ACT_GELU,      /* "gelu": exact erf GELU */
} ModelActivation;

typedef enum { MODEL_DTYPE_UNSET, MODEL_DTYPE_F32, MODEL_DTYPE_F16, MODEL_DTYPE_BF16 } ModelDtype;

typedef struct {
    char model_type[32];    /* "llama", ..., "gemma3_text" */
    char architecture[64];  /* architectures[0], e.g. "LlamaForCausalLM" */
    char path[512];         /* the config.json this came from ("" if built in code) */

    // shapes
    int64_t V;              /* vocab_size */
    int64_t C;              /* hidden_size */
    int64_t L;              /* num_hidden_layers */
    int64_t NH;             /* num_attention_heads */
    int64_t NKV;            /* num_key_value_heads (GQA: NH % NKV == 0) */
    int64_t HD;             /* head_dim (config's, else C / NH) */
    int64_t FF;             /* intermediate_size */
    int64_t max_positions;  /* max_position_embeddings */

    // numerics
    double rms_norm_eps;
    double norm_offset;     /* RMSNorm weight is (norm_offset + w): 0, or 1 for gemma */
    double embed_scale;     /* 1, or sqrt(C) for gemma (HF rounds it to the weight dtype) */
    double query_scale;     /* attention logits = q.k * query_scale: HD^-0.5 or
                               query_pre_attn_scalar^-0.5 (gemma2/3) */
    double attn_softcap;    /* 0 = none; else logits = cap * tanh(logits / cap) (gemma2) */
    double final_softcap;   /* 0 = none; same, on the LM head's logits (gemma2) */
    ModelActivation act;

    // structure
    bool tie_word_embeddings; /* lm_head is embed_tokens; no lm_head.weight tensor */
    bool qkv_bias;            /* q/k/v projections have biases (qwen2; llama attention_bias) */
    bool o_bias;              /* o_proj has a bias (llama/gemma attention_bias) */
    bool mlp_bias;            /* gate/up/down have biases (llama mlp_bias) */
    bool qk_norm;             /* RMSNorm over HD on q and k after projection (qwen3, gemma3) */
    bool sandwich_norms;      /* norms after attention and MLP too (gemma2, gemma3) */

    // position
    ModelRope rope;           /* full-attention layers */
    ModelRope rope_local;     /* sliding-window layers (gemma3: rope_local_base_freq); else = rope */
    int64_t sliding_window;   /* a query sees keys at distance < sliding_window; 0 = none */
    uint8_t *layer_sliding;   /* (L) 1 = this layer uses the sliding window; owned */

    // tokens and storage
    int64_t bos_id, pad_id;   /* -1 = none */
    int64_t eos_ids[MODEL_MAX_EOS];
    int n_eos;
    ModelDtype dtype;         /* "dtype" / "torch_dtype"; UNSET if absent */
    double initializer_range; /* std of the normal init (0.02) */
} ModelSpec;

/* Read DIR/config.json (or a path to a .json file) into *spec. On failure returns false with
 * "DIR/config.json:LINE:COL: message" in err; *spec is then empty (safe to model_free). */
bool model_load(ModelSpec *spec, const char *dir_or_file, char *err, size_t errlen);

/* Same, from text in memory; `name` is the file name used in messages. */
bool model_parse(ModelSpec *spec, const char *text, size_t len, const char *name, char *err,
                 size_t errlen);

void model_free(ModelSpec *spec);

/* Supported model_type values, comma separated, for messages and --help. */
const char *model_supported_types(void);

/* Fill *spec with transformers' defaults for `model_type` and the given shapes, as `llfc
 * init-model` does; then the caller may adjust fields. HD = 0 means C / NH. */
bool model_init_defaults(ModelSpec *spec, const char *model_type, int64_t V, int64_t C, int64_t L,
                         int64_t NH, int64_t NKV, int64_t HD, int64_t FF, char *err,
                         size_t errlen);

/* Check the cross-field invariants (heads divide, sizes in range); the loader calls it, and so
 * does init-model after building a spec from flags. */
bool model_validate(const ModelSpec *spec, char *err, size_t errlen);

// --- writing a model folder's JSON

/* config.json for this spec as transformers (v5) writes it for the family: keys sorted,
 * rope_parameters (plus the legacy rope_theta/rope_scaling keys older versions read), the
 * family's activation key, layer_types where the family has them. Appends to *out. */
void model_write_config(const ModelSpec *spec, StrBuf *out);

/* generation_config.json: bos/eos/pad ids, as GenerationConfig.from_model_config writes it. */
void model_write_generation_config(const ModelSpec *spec, StrBuf *out);

// --- expected tensors

typedef enum {
    MT_EMBED, MT_FINAL_NORM, MT_LM_HEAD,
    MT_INPUT_NORM, MT_POST_ATTN_NORM, MT_PRE_FFN_NORM, MT_POST_FFN_NORM,
    MT_Q, MT_K, MT_V, MT_O, MT_Q_BIAS, MT_K_BIAS, MT_V_BIAS, MT_O_BIAS, MT_Q_NORM, MT_K_NORM,
    MT_GATE, MT_UP, MT_DOWN, MT_GATE_BIAS, MT_UP_BIAS, MT_DOWN_BIAS,
} ModelTensorRole;

typedef struct {
    char name[96];          /* Hugging Face name, e.g. "model.layers.3.self_attn.q_proj.weight" */
    ModelTensorRole role;
    int layer;              /* -1 for embed, final norm, lm_head */
    int ndim;               /* 1 or 2 */
    int64_t shape[2];       /* PyTorch order: Linear weights are (out, in) */
    bool is_norm;           /* an RMSNorm weight: initialised to 1 - norm_offset */
} ModelTensor;

/* The tensors a checkpoint of this spec holds, in the order transformers registers them
 * (embed, then per layer attention, MLP, norms, then final norm and lm_head). Returns a
 * malloc'd array and its length in *n. */
ModelTensor *model_tensors(const ModelSpec *spec, size_t *n);

/* Number of parameters (tied embeddings counted once). */
int64_t model_param_count(const ModelSpec *spec);

const char *model_rope_type_name(ModelRopeType t);
const char *model_act_name(ModelActivation a);       /* transformers' name */
const char *model_dtype_name(ModelDtype d);          /* "float32", "float16", "bfloat16" */

#endif
