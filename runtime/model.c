/* model.c - config.json -> ModelSpec: a table of family defaults, then one generic reader.
 *
 * The defaults are transformers' (v5.23) config classes, models/<family>/configuration_*.py:
 * a key missing from config.json takes the value transformers would give it, so llfc and
 * transformers build the same network from the same folder. The five size keys are the
 * exception: a config without them is not a real checkpoint, so they are required.
 */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

// --- families: what transformers assumes when config.json is silent

/* Which layers use the sliding window when config.json has no "layer_types". */
typedef enum {
    SLIDE_NONE,       /* llama, gemma: never */
    SLIDE_ALL,        /* mistral: every layer when sliding_window is set */
    SLIDE_FROM_LAYER, /* qwen2/3: layers >= max_window_layers, if use_sliding_window */
    SLIDE_PATTERN,    /* gemma2/3: layer i is sliding unless (i + 1) % pattern == 0 */
} SlidingRule;

typedef struct {
    const char *model_type;
    const char *architecture;
    const char *act_key;     /* "hidden_act" or "hidden_activation" */
    const char *act_default;
    bool gelu_means_tanh;    /* gemma: a legacy "gelu" means the tanh approximation */
    int64_t NKV;             /* 0 = NH */
    int64_t HD;              /* 0 = C / NH */
    int64_t max_positions;
    double rms_norm_eps;
    double rope_theta;
    double rope_local_theta; /* 0 = sliding layers use the global rope */
    bool tie;
    int64_t bos, eos, pad;   /* -1 = None */
    bool qkv_bias_always;    /* qwen2 hard-codes bias=True on q, k, v */
    bool has_attention_bias; /* reads "attention_bias": bias on q, k, v and o */
    bool has_mlp_bias;       /* reads "mlp_bias" */
    bool qk_norm, sandwich_norms, embed_scale_sqrt_c;
    double norm_offset;
    bool has_softcaps;
    double attn_softcap, final_softcap; /* 0 = None */
    int64_t query_pre_attn_scalar;      /* 0 = not a key of this family (HD^-0.5) */
    SlidingRule sliding;
    int64_t sliding_window;  /* default when the key is absent; 0 = None */
    int sliding_pattern;     /* SLIDE_PATTERN */
    bool pattern_key;        /* reads "sliding_window_pattern" (gemma3) */
} Family;

static const Family families[] = {
    {.model_type = "llama", .architecture = "LlamaForCausalLM", .act_key = "hidden_act",
     .act_default = "silu", .max_positions = 2048, .rms_norm_eps = 1e-6, .rope_theta = 1e4,
     .bos = 1, .eos = 2, .pad = -1, .has_attention_bias = true, .has_mlp_bias = true},
    {.model_type = "mistral", .architecture = "MistralForCausalLM", .act_key = "hidden_act",
     .act_default = "silu", .NKV = 8, .max_positions = 4096 * 32, .rms_norm_eps = 1e-6,
     .rope_theta = 1e4, .bos = 1, .eos = 2, .pad = -1, .sliding = SLIDE_ALL,
     .sliding_window = 4096},
    {.model_type = "qwen2", .architecture = "Qwen2ForCausalLM", .act_key = "hidden_act",
     .act_default = "silu", .NKV = 32, .max_positions = 32768, .rms_norm_eps = 1e-6,
     .rope_theta = 1e4, .bos = -1, .eos = -1, .pad = -1, .qkv_bias_always = true,
     .sliding = SLIDE_FROM_LAYER, .sliding_window = 4096},
    {.model_type = "qwen3", .architecture = "Qwen3ForCausalLM", .act_key = "hidden_act",
     .act_default = "silu", .NKV = 32, .HD = 128, .max_positions = 32768, .rms_norm_eps = 1e-6,
     .rope_theta = 1e4, .bos = -1, .eos = -1, .pad = -1, .has_attention_bias = true,
     .qk_norm = true, .sliding = SLIDE_FROM_LAYER, .sliding_window = 4096},
    {.model_type = "gemma", .architecture = "GemmaForCausalLM", .act_key = "hidden_act",
     .act_default = "gelu_pytorch_tanh", .gelu_means_tanh = true, .NKV = 16, .HD = 256,
     .max_positions = 8192, .rms_norm_eps = 1e-6, .rope_theta = 1e4, .tie = true, .bos = 2,
     .eos = 1, .pad = 0, .has_attention_bias = true, .embed_scale_sqrt_c = true,
     .norm_offset = 1},
    {.model_type = "gemma2", .architecture = "Gemma2ForCausalLM", .act_key = "hidden_activation",
     .act_default = "gelu_pytorch_tanh", .gelu_means_tanh = true, .NKV = 4, .HD = 256,
     .max_positions = 8192, .rms_norm_eps = 1e-6, .rope_theta = 1e4, .tie = true, .bos = 2,
     .eos = 1, .pad = 0, .has_attention_bias = true, .sandwich_norms = true,
     .embed_scale_sqrt_c = true, .norm_offset = 1, .has_softcaps = true, .attn_softcap = 50,
     .final_softcap = 30, .query_pre_attn_scalar = 256, .sliding = SLIDE_PATTERN,
     .sliding_window = 4096, .sliding_pattern = 2},
    {.model_type = "gemma3_text", .architecture = "Gemma3ForCausalLM",
     .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh", .gelu_means_tanh = true,
     .NKV = 4, .HD = 256, .max_positions = 131072, .rms_norm_eps = 1e-6, .rope_theta = 1e6,
     .rope_local_theta = 1e4, .tie = true, .bos = 2, .eos = 1, .pad = 0,
     .has_attention_bias = true, .qk_norm = true, .sandwich_norms = true,
     .embed_scale_sqrt_c = true, .norm_offset = 1, .has_softcaps = true,
     .query_pre_attn_scalar = 256, .sliding = SLIDE_PATTERN, .sliding_window = 4096,
     .sliding_pattern = 6, .pattern_key = true},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

const char *model_supported_types(void) {
    return "llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text";
}

static const Family *find_family(const char *model_type) {
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(families[i].model_type, model_type) == 0) return &families[i];
    return NULL;
}

// --- size limits: far above any released model, low enough that products cannot overflow

#define MAX_VOCAB (1 << 24)
#define MAX_HIDDEN (1 << 16)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 1024
#define MAX_FF (1 << 20)
#define MAX_POSITIONS (1 << 24)
#define MAX_PARAMS ((int64_t)1 << 40)

// --- names

const char *model_rope_type_name(ModelRopeType t) {
    static const char *names[] = {"default", "linear", "dynamic", "llama3", "yarn"};
    return (unsigned)t < 5 ? names[t] : "?";
}

const char *model_act_name(ModelActivation a) {
    static const char *names[] = {"silu", "gelu_pytorch_tanh", "gelu"};
    return (unsigned)a < 3 ? names[a] : "?";
}

const char *model_dtype_name(ModelDtype d) {
    static const char *names[] = {"", "float32", "float16", "bfloat16"};
    return (unsigned)d < 4 ? names[d] : "?";
}

// --- reading keys with their positions

/* One parse: where messages point. root is NULL for specs built in code (init-model): messages
 * then start "config: ". */
typedef struct {
    const char *name; /* "DIR/config.json" */
    const Json *root; /* the config.json object */
    char *err;
    size_t errlen;
} Reader;

typedef enum { KEY_ABSENT, KEY_NULL, KEY_SET, KEY_BAD } KeyState;

/* "NAME:LINE:COL" of a value, or of the object when the value is absent. */
static const char *where(const Reader *r, const Json *v, char *buf, size_t n) {
    if (!r || !r->root) {
        snprintf(buf, n, "config");
        return buf;
    }
    if (!v) v = r->root;
    snprintf(buf, n, "%s:%d:%d", r->name, v->line, v->col);
    return buf;
}

#define WHERE(r, v) where((r), (v), (char[600]){0}, 600)

static bool bad_type(const Reader *r, const Json *v, const char *key, const char *expected) {
    return errf(r->err, r->errlen, "%s: \"%s\" must be %s, got %s", WHERE(r, v), key, expected,
                json_type_name(v->type));
}

static KeyState key_state(const Json *obj, const char *key, const Json **v) {
    *v = json_get(obj, key);
    if (!*v) return KEY_ABSENT;
    return (*v)->type == JSON_NULL ? KEY_NULL : KEY_SET;
}

/* Integer key: absent/null leave *out alone; a value must be an integer in [lo, hi]. */
static KeyState read_int(const Reader *r, const Json *obj, const char *key, int64_t lo,
                         int64_t hi, int64_t *out) {
    const Json *v;
    KeyState s = key_state(obj, key, &v);
    if (s != KEY_SET) return s;
    int64_t x;
    if (!json_as_int(v, &x)) {
        if (v->type == JSON_NUMBER)
            errf(r->err, r->errlen, "%s: \"%s\" must be an integer, got %g", WHERE(r, v), key,
                 v->num.f);
        else
            bad_type(r, v, key, "an integer");
        return KEY_BAD;
    }
    if (x < lo || x > hi) {
        errf(r->err, r->errlen, "%s: \"%s\" is %lld; it must be between %lld and %lld",
             WHERE(r, v), key, (long long)x, (long long)lo, (long long)hi);
        return KEY_BAD;
    }
    *out = x;
    return KEY_SET;
}

/* Number key; a value must be finite and in (lo, hi] when positive_only, else [lo, hi]. */
static KeyState read_num(const Reader *r, const Json *obj, const char *key, double lo, double hi,
                         bool exclusive_lo, double *out) {
    const Json *v;
    KeyState s = key_state(obj, key, &v);
    if (s != KEY_SET) return s;
    double x;
    if (!json_as_double(v, &x)) {
        bad_type(r, v, key, "a number");
        return KEY_BAD;
    }
    if (!isfinite(x) || x < lo || x > hi || (exclusive_lo && x == lo)) {
        errf(r->err, r->errlen, "%s: \"%s\" is %g; it must be %s %g and at most %g", WHERE(r, v),
             key, x, exclusive_lo ? "greater than" : "at least", lo, hi);
        return KEY_BAD;
    }
    *out = x;
    return KEY_SET;
}

static KeyState read_bool(const Reader *r, const Json *obj, const char *key, bool *out) {
    const Json *v;
    KeyState s = key_state(obj, key, &v);
    if (s != KEY_SET) return s;
    if (!json_as_bool(v, out)) {
        bad_type(r, v, key, "true or false");
        return KEY_BAD;
    }
    return KEY_SET;
}

static KeyState read_str(const Reader *r, const Json *obj, const char *key, const char **out) {
    const Json *v;
    KeyState s = key_state(obj, key, &v);
    if (s != KEY_SET) return s;
    if (!(*out = json_as_str(v))) {
        bad_type(r, v, key, "a string");
        return KEY_BAD;
    }
    return KEY_SET;
}

/* A required size: present, an integer, 1..hi. */
static bool read_size(const Reader *r, const char *key, int64_t hi, const char *meaning,
                      int64_t *out) {
    KeyState s = read_int(r, r->root, key, 1, hi, out);
    if (s == KEY_BAD) return false;
    if (s == KEY_NULL)
        return errf(r->err, r->errlen, "%s: \"%s\" (%s) must be a positive integer, got null",
                    WHERE(r, json_get(r->root, key)), key, meaning);
    if (s == KEY_ABSENT)
        return errf(r->err, r->errlen, "%s: missing \"%s\" (%s); every Hugging Face config.json "
                    "has it", WHERE(r, NULL), key, meaning);
    return true;
}

// --- rope

/* rope_parameters / rope_scaling, as transformers' RopeParameters (modeling_rope_utils.py):
 *   rope_type | type    "default" | "linear" | "dynamic" | "llama3" | "yarn"
 *   rope_theta          base period (else the config's rope_theta, else the family default)
 *   factor              required for all but default, > 0
 *   original_max_position_embeddings   llama3, yarn, dynamic; default max_position_embeddings
 *   low_freq_factor, high_freq_factor  llama3, required, high > low
 *   beta_fast 32, beta_slow 1, attention_factor, mscale, mscale_all_dim, truncate true  (yarn)
 * longrope, proportional, mrope, partial_rotary_factor != 1 are not supported. */
static bool read_rope(const Reader *r, const Json *obj, double theta, int64_t max_positions,
                      ModelRope *rope) {
    *rope = (ModelRope){.type = MODEL_ROPE_DEFAULT, .theta = theta};
    if (!obj) return true;
    if (obj->type != JSON_OBJECT) return bad_type(r, obj, "rope_parameters", "an object or null");
    const char *type = "default";
    KeyState s = read_str(r, obj, "rope_type", &type);
    if (s == KEY_ABSENT || s == KEY_NULL) s = read_str(r, obj, "type", &type);
    if (s == KEY_BAD) return false;
    const Json *type_v = json_get(obj, "rope_type") ? json_get(obj, "rope_type") : json_get(obj, "type");
    static const char *types[] = {"default", "linear", "dynamic", "llama3", "yarn"};
    int t = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(type, types[i]) == 0) t = i;
    if (t < 0)
        return errf(r->err, r->errlen, "%s: rope type \"%s\" is not supported; llfc supports "
                    "default, linear, dynamic, llama3 and yarn", WHERE(r, type_v), type);
    rope->type = (ModelRopeType)t;
    if (read_num(r, obj, "rope_theta", 0, 1e12, true, &rope->theta) == KEY_BAD) return false;
    double partial = 1;
    if (read_num(r, obj, "partial_rotary_factor", 0, 1, true, &partial) == KEY_BAD) return false;
    if (partial != 1)
        return errf(r->err, r->errlen, "%s: partial_rotary_factor %g is not supported (llfc rotates "
                    "the whole head)", WHERE(r, json_get(obj, "partial_rotary_factor")), partial);
    if (rope->type == MODEL_ROPE_DEFAULT) return true;

    KeyState fs = read_num(r, obj, "factor", 0, 1e6, true, &rope->factor);
    if (fs == KEY_BAD) return false;
    if (fs != KEY_SET)
        return errf(r->err, r->errlen, "%s: rope type \"%s\" needs \"factor\"", WHERE(r, obj), type);
    rope->original_max_positions = max_positions;
    if (read_int(r, obj, "original_max_position_embeddings", 1, MAX_POSITIONS,
                 &rope->original_max_positions) == KEY_BAD)
        return false;
    if (rope->type == MODEL_ROPE_LLAMA3) {
        KeyState lo = read_num(r, obj, "low_freq_factor", 0, 1e6, true, &rope->low_freq_factor);
        KeyState hi = read_num(r, obj, "high_freq_factor", 0, 1e6, true, &rope->high_freq_factor);
        if (lo == KEY_BAD || hi == KEY_BAD) return false;
        if (lo != KEY_SET || hi != KEY_SET)
            return errf(r->err, r->errlen, "%s: rope type \"llama3\" needs \"low_freq_factor\" and "
                        "\"high_freq_factor\"", WHERE(r, obj));
        if (rope->high_freq_factor <= rope->low_freq_factor)
            return errf(r->err, r->errlen, "%s: high_freq_factor (%g) must be greater than "
                        "low_freq_factor (%g)", WHERE(r, json_get(obj, "high_freq_factor")),
                        rope->high_freq_factor, rope->low_freq_factor);
    }
    if (rope->type == MODEL_ROPE_YARN) {
        rope->beta_fast = 32, rope->beta_slow = 1, rope->truncate = true;
        if (read_num(r, obj, "beta_fast", 0, 1e6, true, &rope->beta_fast) == KEY_BAD ||
            read_num(r, obj, "beta_slow", 0, 1e6, true, &rope->beta_slow) == KEY_BAD ||
            read_num(r, obj, "attention_factor", 0, 1e6, true, &rope->attention_factor) == KEY_BAD ||
            read_num(r, obj, "mscale", 0, 1e6, false, &rope->mscale) == KEY_BAD ||
            read_num(r, obj, "mscale_all_dim", 0, 1e6, false, &rope->mscale_all_dim) == KEY_BAD ||
            read_bool(r, obj, "truncate", &rope->truncate) == KEY_BAD)
            return false;
    }
    return true;
}

/* Nested form (transformers v5, per layer type): {"full_attention": {...}, "sliding_attention":
 * {...}}. Flat form: one dict for every layer. */
static bool rope_is_nested(const Json *rp) {
    return rp && rp->type == JSON_OBJECT &&
           (json_get(rp, "full_attention") || json_get(rp, "sliding_attention")) &&
           !json_get(rp, "rope_type") && !json_get(rp, "type");
}

static const Json *non_null(const Json *v) { return v && v->type != JSON_NULL ? v : NULL; }

/* Both ropes, resolved as transformers v5 does (convert_rope_params_to_dict):
 *   rope_scaling, when set, replaces the flat rope_parameters (and, for per-layer-type
 *   rope_parameters, the full-attention entry only); rope_theta inside a dict wins over the
 *   top-level rope_theta, which wins over the family default. gemma3's sliding layers take
 *   rope_local_base_freq with plain rope unless rope_parameters says otherwise.
 * llfc writes both rope_parameters and rope_scaling, identical, so either reading agrees. */
static bool read_ropes(const Reader *r, const Family *f, ModelSpec *m) {
    double theta = f->rope_theta, local_theta = f->rope_local_theta;
    if (read_num(r, r->root, "rope_theta", 0, 1e12, true, &theta) == KEY_BAD) return false;
    if (f->rope_local_theta &&
        read_num(r, r->root, "rope_local_base_freq", 0, 1e12, true, &local_theta) == KEY_BAD)
        return false;
    const Json *rp = non_null(json_get(r->root, "rope_parameters"));
    const Json *rs = non_null(json_get(r->root, "rope_scaling"));
    if (rope_is_nested(rp)) {
        const Json *full = non_null(json_get(rp, "full_attention"));
        const Json *slide = non_null(json_get(rp, "sliding_attention"));
        double full_theta = theta;
        if (full && rs && read_num(r, full, "rope_theta", 0, 1e12, true, &full_theta) == KEY_BAD)
            return false;
        if (!read_rope(r, rs ? rs : full, full_theta, m->max_positions, &m->rope)) return false;
        if (!slide && !local_theta) m->rope_local = m->rope;
        else if (!read_rope(r, slide, local_theta ? local_theta : theta, m->max_positions,
                            &m->rope_local))
            return false;
        return true;
    }
    if (!read_rope(r, rs ? rs : rp, theta, m->max_positions, &m->rope)) return false;
    if (local_theta) // gemma3: local layers keep plain rope at their own base
        m->rope_local = (ModelRope){.type = MODEL_ROPE_DEFAULT, .theta = local_theta};
    else
        m->rope_local = m->rope;
    return true;
}

// --- layer types

/* "layer_types": ["full_attention" | "sliding_attention", ...] of length L, else the family's
 * rule. A layer is sliding only when sliding_window is set (transformers passes None otherwise). */
static bool read_layer_types(const Reader *r, const Family *f, ModelSpec *m,
                             bool use_sliding_window, int64_t max_window_layers, int pattern) {
    m->layer_sliding = xcalloc((size_t)m->L, 1);
    const Json *lt = json_get(r->root, "layer_types");
    if (lt && lt->type == JSON_NULL) lt = NULL;
    if (lt && f->sliding != SLIDE_ALL && f->sliding != SLIDE_NONE) {
        if (lt->type != JSON_ARRAY) return bad_type(r, lt, "layer_types", "an array of strings");
        if ((int64_t)lt->arr.n != m->L)
            return errf(r->err, r->errlen, "%s: \"layer_types\" has %zu entries but "
                        "num_hidden_layers is %lld", WHERE(r, lt), lt->arr.n, (long long)m->L);
        for (size_t i = 0; i < lt->arr.n; i++) {
            const Json *e = lt->arr.items[i];
            const char *s = json_as_str(e);
            if (s && strcmp(s, "sliding_attention") == 0)
                m->layer_sliding[i] = m->sliding_window > 0;
            else if (!s || strcmp(s, "full_attention") != 0)
                return errf(r->err, r->errlen, "%s: layer_types[%zu] must be \"full_attention\" or "
                            "\"sliding_attention\"", WHERE(r, e), i);
        }
        return true;
    }
    for (int64_t i = 0; i < m->L && m->sliding_window > 0; i++) {
        switch (f->sliding) {
        case SLIDE_NONE: break;
        case SLIDE_ALL: m->layer_sliding[i] = 1; break;
        case SLIDE_FROM_LAYER: m->layer_sliding[i] = use_sliding_window && i >= max_window_layers; break;
        case SLIDE_PATTERN: m->layer_sliding[i] = (i + 1) % pattern != 0; break;
        }
    }
    return true;
}

// --- the rest of the fields

static bool read_activation(const Reader *r, const Family *f, ModelSpec *m) {
    const char *name = f->act_default;
    const char *key = f->act_key;
    if (read_str(r, r->root, key, &name) == KEY_BAD) return false;
    if (strcmp(name, "silu") == 0 || strcmp(name, "swish") == 0)
        m->act = MODEL_ACT_SILU;
    else if (strcmp(name, "gelu_pytorch_tanh") == 0 || strcmp(name, "gelu_new") == 0 ||
             strcmp(name, "gelu_fast") == 0 || strcmp(name, "gelu_python_tanh") == 0)
        m->act = MODEL_ACT_GELU_TANH;
    else if (strcmp(name, "gelu") == 0)
        m->act = f->gelu_means_tanh ? MODEL_ACT_GELU_TANH : MODEL_ACT_GELU;
    else
        return errf(r->err, r->errlen, "%s: activation \"%s\" is not supported; llfc supports silu, "
                    "gelu_pytorch_tanh (gelu_new, gelu_fast) and gelu",
                    WHERE(r, json_get(r->root, key)), name);
    return true;
}

/* A token id key: integer >= 0, or null (none). */
static bool read_token(const Reader *r, const char *key, int64_t *out) {
    const Json *v;
    KeyState s = key_state(r->root, key, &v);
    if (s == KEY_NULL) *out = -1;
    if (s != KEY_SET) return true;
    return read_int(r, r->root, key, 0, INT32_MAX, out) != KEY_BAD;
}

/* eos_token_id: an id, a list of ids (Llama 3 instruct), or null. */
static bool read_eos(const Reader *r, ModelSpec *m, int64_t family_default) {
    const Json *v;
    KeyState s = key_state(r->root, "eos_token_id", &v);
    m->n_eos = 0;
    if (s == KEY_NULL) return true;
    if (s == KEY_ABSENT) {
        if (family_default >= 0) m->eos_ids[m->n_eos++] = family_default;
        return true;
    }
    if (v->type != JSON_ARRAY) {
        int64_t id;
        if (read_int(r, r->root, "eos_token_id", 0, INT32_MAX, &id) == KEY_BAD) return false;
        m->eos_ids[m->n_eos++] = id;
        return true;
    }
    if (v->arr.n > MODEL_MAX_EOS)
        return errf(r->err, r->errlen, "%s: \"eos_token_id\" lists %zu ids; llfc takes at most %d",
                    WHERE(r, v), v->arr.n, MODEL_MAX_EOS);
    for (size_t i = 0; i < v->arr.n; i++) {
        int64_t id;
        if (!json_as_int(v->arr.items[i], &id) || id < 0 || id > INT32_MAX)
            return errf(r->err, r->errlen, "%s: eos_token_id[%zu] must be a token id (an integer "
                        ">= 0)", WHERE(r, v->arr.items[i]), i);
        m->eos_ids[m->n_eos++] = id;
    }
    return true;
}

/* "dtype" (transformers >= 4.56) or "torch_dtype": the dtype the weights were saved in. */
static bool read_dtype(const Reader *r, ModelSpec *m) {
    const char *key = json_get(r->root, "dtype") ? "dtype" : "torch_dtype";
    const char *s = NULL;
    KeyState st = read_str(r, r->root, key, &s);
    if (st == KEY_BAD) return false;
    m->dtype = MODEL_DTYPE_UNSET;
    if (st != KEY_SET) return true;
    for (int d = MODEL_DTYPE_F32; d <= MODEL_DTYPE_BF16; d++)
        if (strcmp(s, model_dtype_name((ModelDtype)d)) == 0) m->dtype = (ModelDtype)d;
    if (m->dtype == MODEL_DTYPE_UNSET)
        return errf(r->err, r->errlen, "%s: \"%s\" is \"%s\"; llfc reads float32, float16 and "
                    "bfloat16 weights", WHERE(r, json_get(r->root, key)), key, s);
    return true;
}

// --- what is not supported, said clearly

static bool has_any_key(const Json *root, const char *const *keys) {
    for (; *keys; keys++)
        if (json_get(root, *keys)) return true;
    return false;
}

static bool unsupported(const Reader *r, const Json *type_v, const char *model_type) {
    static const char *moe_keys[] = {"num_experts", "num_local_experts", "n_routed_experts",
                                     "moe_intermediate_size", NULL};
    static const char *vision_keys[] = {"vision_config", "vision_tower", "mm_vision_tower", NULL};
    const char *what = "";
    if (has_any_key(r->root, moe_keys)) what = " (a mixture-of-experts model)";
    else if (has_any_key(r->root, vision_keys)) what = " (a vision-language model)";
    return errf(r->err, r->errlen, "%s: model_type \"%s\"%s is not supported; llfc trains dense "
                "decoder-only text models of these types: %s", WHERE(r, type_v), model_type, what,
                model_supported_types());
}

/* Gemma 3 4B/12B/27B ship as Gemma3ForConditionalGeneration: the text decoder sits in
 * text_config and its weights under "language_model.", next to a SigLIP vision tower. We
 * reject it rather than train half a model and write back a folder that no longer loads as
 * the original architecture. */
static bool reject_gemma3_multimodal(const Reader *r, const Json *type_v) {
    return errf(r->err, r->errlen, "%s: model_type \"gemma3\" is Gemma 3's vision-language model "
                "(Gemma3ForConditionalGeneration); llfc trains its text-only form, model_type "
                "\"gemma3_text\" (Gemma3ForCausalLM, e.g. google/gemma-3-1b-pt). Convert with "
                "transformers: Gemma3ForCausalLM.from_pretrained(DIR).save_pretrained(OUT) keeps "
                "only the text decoder", WHERE(r, type_v));
}

// --- the reader

/* config.json keys read (all others ignored), with defaults from the model_type's row above:
 *   model_type                 string, required: one of model_supported_types()
 *   architectures              [string], optional: architectures[0] is kept for writing back
 *   vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads
 *                              integers >= 1, required
 *   num_key_value_heads        integer, default family (null = num_attention_heads); divides NH
 *   head_dim                   integer, default family (null = hidden_size / heads), even
 *   max_position_embeddings    integer >= 1
 *   rms_norm_eps               number in (0, 1)
 *   rope_theta, rope_scaling, rope_parameters, rope_local_base_freq   see read_ropes
 *   hidden_act | hidden_activation   see read_activation
 *   tie_word_embeddings, attention_bias, mlp_bias   booleans
 *   query_pre_attn_scalar      number > 0 (gemma2/3)
 *   attn_logit_softcapping, final_logit_softcapping   number > 0 or null (gemma2/3)
 *   sliding_window             integer >= 1 or null; use_sliding_window, max_window_layers
 *                              (qwen2/3); sliding_window_pattern (gemma3); layer_types
 *   bos_token_id, pad_token_id integer >= 0 or null; eos_token_id the same or a list
 *   dtype | torch_dtype        "float32" | "float16" | "bfloat16"
 *   initializer_range          number >= 0
 *   use_bidirectional_attention  must not be true (that is an encoder)
 */
static bool read_spec(const Reader *r, ModelSpec *m) {
    const Json *root = r->root;
    if (root->type != JSON_OBJECT) return bad_type(r, root, "config", "an object");
    const char *model_type;
    KeyState s = read_str(r, root, "model_type", &model_type);
    if (s == KEY_BAD) return false;
    if (s != KEY_SET)
        return errf(r->err, r->errlen, "%s: missing \"model_type\"; a Hugging Face config.json "
                    "names its architecture family (e.g. \"llama\")", WHERE(r, NULL));
    const Json *type_v = json_get(root, "model_type");
    if (strcmp(model_type, "gemma3") == 0) return reject_gemma3_multimodal(r, type_v);
    const Family *f = find_family(model_type);
    if (!f) return unsupported(r, type_v, model_type);
    snprintf(m->model_type, sizeof m->model_type, "%s", f->model_type);
    snprintf(m->architecture, sizeof m->architecture, "%s", f->architecture);
    const Json *arch = json_get(root, "architectures");
    if (arch && arch->type != JSON_NULL) {
        if (arch->type != JSON_ARRAY || arch->arr.n == 0 || !json_as_str(arch->arr.items[0]))
            return bad_type(r, arch, "architectures", "a non-empty array of strings");
        const Json *a0 = arch->arr.items[0];
        if (a0->str.len >= sizeof m->architecture || strlen(a0->str.s) != a0->str.len)
            return errf(r->err, r->errlen, "%s: architectures[0] must be a class name such as "
                        "\"LlamaForCausalLM\" (under %zu characters)", WHERE(r, a0),
                        sizeof m->architecture);
        snprintf(m->architecture, sizeof m->architecture, "%s", a0->str.s);
    }

    // shapes
    if (!read_size(r, "vocab_size", MAX_VOCAB, "V, the vocabulary size", &m->V) ||
        !read_size(r, "hidden_size", MAX_HIDDEN, "C, the model width", &m->C) ||
        !read_size(r, "intermediate_size", MAX_FF, "the MLP width", &m->FF) ||
        !read_size(r, "num_hidden_layers", MAX_LAYERS, "L, the number of layers", &m->L) ||
        !read_size(r, "num_attention_heads", MAX_HEADS, "NH, the query heads", &m->NH))
        return false;
    m->NKV = f->NKV ? f->NKV : m->NH;
    s = read_int(r, root, "num_key_value_heads", 1, MAX_HEADS, &m->NKV);
    if (s == KEY_BAD) return false;
    if (s == KEY_NULL) m->NKV = m->NH;
    m->HD = f->HD;
    s = read_int(r, root, "head_dim", 1, MAX_HEAD_DIM, &m->HD);
    if (s == KEY_BAD) return false;
    bool hd_derived = s == KEY_NULL || (s == KEY_ABSENT && f->HD == 0);
    if (hd_derived) {
        if (m->C % m->NH != 0)
            return errf(r->err, r->errlen, "%s: hidden_size %lld is not a multiple of "
                        "num_attention_heads %lld, and there is no head_dim to say the head size",
                        WHERE(r, json_get(root, "num_attention_heads")), (long long)m->C,
                        (long long)m->NH);
        m->HD = m->C / m->NH;
        if (m->HD > MAX_HEAD_DIM)
            return errf(r->err, r->errlen, "%s: the head size hidden_size / num_attention_heads = "
                        "%lld is more than %d", WHERE(r, json_get(root, "num_attention_heads")),
                        (long long)m->HD, MAX_HEAD_DIM);
    }
    m->max_positions = f->max_positions;
    if (read_int(r, root, "max_position_embeddings", 1, MAX_POSITIONS, &m->max_positions) == KEY_BAD)
        return false;

    // numerics
    m->rms_norm_eps = f->rms_norm_eps;
    if (read_num(r, root, "rms_norm_eps", 0, 1, true, &m->rms_norm_eps) == KEY_BAD) return false;
    m->norm_offset = f->norm_offset;
    m->embed_scale = f->embed_scale_sqrt_c ? sqrt((double)m->C) : 1.0;
    double qpas = (double)f->query_pre_attn_scalar;
    if (f->query_pre_attn_scalar &&
        read_num(r, root, "query_pre_attn_scalar", 0, 1e9, true, &qpas) == KEY_BAD)
        return false;
    m->query_scale = 1.0 / sqrt(f->query_pre_attn_scalar ? qpas : (double)m->HD);
    m->attn_softcap = f->attn_softcap, m->final_softcap = f->final_softcap;
    if (f->has_softcaps) {
        s = read_num(r, root, "attn_logit_softcapping", 0, 1e9, true, &m->attn_softcap);
        if (s == KEY_BAD) return false;
        if (s == KEY_NULL) m->attn_softcap = 0;
        s = read_num(r, root, "final_logit_softcapping", 0, 1e9, true, &m->final_softcap);
        if (s == KEY_BAD) return false;
        if (s == KEY_NULL) m->final_softcap = 0;
    }
    if (!read_activation(r, f, m)) return false;

    // structure
    m->tie_word_embeddings = f->tie;
    if (read_bool(r, root, "tie_word_embeddings", &m->tie_word_embeddings) == KEY_BAD) return false;
    m->qkv_bias = f->qkv_bias_always;
    if (f->has_attention_bias) {
        bool ab = false;
        if (read_bool(r, root, "attention_bias", &ab) == KEY_BAD) return false;
        m->qkv_bias = m->o_bias = ab;
    }
    if (f->has_mlp_bias && read_bool(r, root, "mlp_bias", &m->mlp_bias) == KEY_BAD) return false;
    m->qk_norm = f->qk_norm;
    m->sandwich_norms = f->sandwich_norms;
    bool bidirectional = false;
    if (read_bool(r, root, "use_bidirectional_attention", &bidirectional) == KEY_BAD) return false;
    if (bidirectional)
        return errf(r->err, r->errlen, "%s: use_bidirectional_attention is true: this is an "
                    "encoder (e.g. EmbeddingGemma); llfc trains causal decoders",
                    WHERE(r, json_get(root, "use_bidirectional_attention")));

    // position
    if (!read_ropes(r, f, m)) return false;
    m->sliding_window = f->sliding_window;
    bool use_sliding_window = false;
    int64_t max_window_layers = 28, pattern = f->sliding_pattern;
    if (f->sliding != SLIDE_NONE) {
        s = read_int(r, root, "sliding_window", 1, MAX_POSITIONS, &m->sliding_window);
        if (s == KEY_BAD) return false;
        if (s == KEY_NULL) m->sliding_window = 0;
    }
    if (f->sliding == SLIDE_FROM_LAYER) {
        if (read_bool(r, root, "use_sliding_window", &use_sliding_window) == KEY_BAD ||
            read_int(r, root, "max_window_layers", 0, MAX_LAYERS, &max_window_layers) == KEY_BAD)
            return false;
        if (!use_sliding_window) m->sliding_window = 0;
    }
    if (f->pattern_key &&
        read_int(r, root, "sliding_window_pattern", 1, MAX_LAYERS, &pattern) == KEY_BAD)
        return false;
    if (!read_layer_types(r, f, m, use_sliding_window, max_window_layers, (int)pattern))
        return false;
    bool any_sliding = false;
    for (int64_t i = 0; i < m->L; i++) any_sliding |= m->layer_sliding[i];
    if (!any_sliding) m->sliding_window = 0;

    // tokens, dtype, init
    m->bos_id = f->bos, m->pad_id = f->pad;
    if (!read_token(r, "bos_token_id", &m->bos_id) || !read_token(r, "pad_token_id", &m->pad_id) ||
        !read_eos(r, m, f->eos) || !read_dtype(r, m))
        return false;
    m->initializer_range = 0.02;
    if (read_num(r, root, "initializer_range", 0, 1, false, &m->initializer_range) == KEY_BAD)
        return false;
    return true;
}

// --- cross-field checks

/* Sizes as read: each within its limit (init-model builds specs from flags, not JSON). */
static bool check_sizes(const Reader *r, const ModelSpec *m) {
    const struct { const char *key; int64_t value, max; } sizes[] = {
        {"vocab_size", m->V, MAX_VOCAB},          {"hidden_size", m->C, MAX_HIDDEN},
        {"intermediate_size", m->FF, MAX_FF},     {"num_hidden_layers", m->L, MAX_LAYERS},
        {"num_attention_heads", m->NH, MAX_HEADS}, {"num_key_value_heads", m->NKV, MAX_HEADS},
        {"head_dim", m->HD, MAX_HEAD_DIM},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value < 1 || sizes[i].value > sizes[i].max)
            return errf(r->err, r->errlen, "%s: %s is %lld; it must be between 1 and %lld",
                        WHERE(r, r->root ? json_get(r->root, sizes[i].key) : NULL), sizes[i].key,
                        (long long)sizes[i].value, (long long)sizes[i].max);
    return true;
}

static bool validate(const Reader *r, const ModelSpec *m) {
#define AT(key) WHERE(r, r->root ? json_get(r->root, key) : NULL)
    if (!check_sizes(r, m)) return false;
    if (m->NKV > m->NH || m->NH % m->NKV != 0)
        return errf(r->err, r->errlen, "%s: num_key_value_heads %lld must divide "
                    "num_attention_heads %lld (grouped-query attention shares each KV head among "
                    "NH/NKV query heads)", AT("num_key_value_heads"), (long long)m->NKV,
                    (long long)m->NH);
    if (m->HD % 2 != 0)
        return errf(r->err, r->errlen, "%s: head_dim %lld is odd; rotary embeddings rotate pairs "
                    "of dimensions, so it must be even", AT("head_dim"), (long long)m->HD);
    int64_t params = model_param_count(m);
    if (params > MAX_PARAMS)
        return errf(r->err, r->errlen, "%s: these sizes make %lld parameters; llfc refuses more "
                    "than 2^40 (check the sizes)", WHERE(r, NULL), (long long)params);
    if (m->rope.type == MODEL_ROPE_LLAMA3 && m->rope.original_max_positions > m->max_positions)
        return errf(r->err, r->errlen, "%s: rope original_max_position_embeddings %lld exceeds "
                    "max_position_embeddings %lld", AT("max_position_embeddings"),
                    (long long)m->rope.original_max_positions, (long long)m->max_positions);
    return true;
#undef AT
}

bool model_validate(const ModelSpec *spec, char *err, size_t errlen) {
    Reader r = {.name = "config", .err = err, .errlen = errlen};
    return validate(&r, spec);
}

// --- entry points

void model_free(ModelSpec *spec) {
    free(spec->layer_sliding);
    memset(spec, 0, sizeof *spec);
}

bool model_parse(ModelSpec *spec, const char *text, size_t len, const char *name, char *err,
                 size_t errlen) {
    memset(spec, 0, sizeof *spec);
    JsonDoc *doc = json_parse(text, len, name, err, errlen);
    if (!doc) return false;
    Reader r = {.name = name, .root = json_root(doc), .err = err, .errlen = errlen};
    snprintf(spec->path, sizeof spec->path, "%s", name);
    bool ok = read_spec(&r, spec) && validate(&r, spec);
    json_free(doc);
    if (!ok) model_free(spec);
    return ok;
}

bool model_load(ModelSpec *spec, const char *dir_or_file, char *err, size_t errlen) {
    memset(spec, 0, sizeof *spec);
    char *path = util_is_dir(dir_or_file) ? util_path_join(dir_or_file, "config.json")
                                          : xstrdup(dir_or_file);
    size_t len;
    char *text = util_read_file(path, &len, err, errlen);
    bool ok = text && model_parse(spec, text, len, path, err, errlen);
    free(text);
    free(path);
    return ok;
}

bool model_init_defaults(ModelSpec *m, const char *model_type, int64_t V, int64_t C, int64_t L,
                         int64_t NH, int64_t NKV, int64_t HD, int64_t FF, char *err,
                         size_t errlen) {
    memset(m, 0, sizeof *m);
    const Family *f = find_family(model_type);
    if (!f)
        return errf(err, errlen, "unknown family \"%s\"; choose one of: %s", model_type,
                    model_supported_types());
    if (HD == 0 && NH > 0 && C % NH != 0)
        return errf(err, errlen, "hidden size %lld is not a multiple of %lld heads; give the "
                    "head size explicitly", (long long)C, (long long)NH);
    snprintf(m->model_type, sizeof m->model_type, "%s", f->model_type);
    snprintf(m->architecture, sizeof m->architecture, "%s", f->architecture);
    m->V = V, m->C = C, m->L = L, m->NH = NH, m->NKV = NKV, m->FF = FF;
    m->HD = HD ? HD : (NH > 0 ? C / NH : 0);
    m->max_positions = f->max_positions;
    m->rms_norm_eps = f->rms_norm_eps;
    m->norm_offset = f->norm_offset;
    m->embed_scale = f->embed_scale_sqrt_c ? sqrt((double)C) : 1.0;
    // transformers' query_pre_attn_scalar default (256) is Gemma's head_dim; a new model of
    // another head size gets what the released Gemmas have, query_pre_attn_scalar = head_dim
    m->query_scale = 1.0 / sqrt((double)m->HD);
    m->attn_softcap = f->attn_softcap, m->final_softcap = f->final_softcap;
    m->act = MODEL_ACT_SILU;
    if (strcmp(f->act_default, "gelu_pytorch_tanh") == 0) m->act = MODEL_ACT_GELU_TANH;
    m->tie_word_embeddings = f->tie;
    m->qkv_bias = f->qkv_bias_always;
    m->qk_norm = f->qk_norm, m->sandwich_norms = f->sandwich_norms;
    m->rope = (ModelRope){.type = MODEL_ROPE_DEFAULT, .theta = f->rope_theta};
    m->rope_local = m->rope;
    if (f->rope_local_theta) m->rope_local.theta = f->rope_local_theta;
    // sliding as transformers' defaults: mistral all layers, gemma2/3 the pattern, qwen off
    m->sliding_window = (f->sliding == SLIDE_ALL || f->sliding == SLIDE_PATTERN) ? f->sliding_window : 0;
    m->layer_sliding = xcalloc(L > 0 ? (size_t)L : 1, 1);
    for (int64_t i = 0; i < L && m->sliding_window; i++)
        m->layer_sliding[i] = f->sliding == SLIDE_ALL || (i + 1) % f->sliding_pattern != 0;
    m->bos_id = f->bos, m->pad_id = f->pad;
    m->n_eos = 0;
    if (f->eos >= 0) m->eos_ids[m->n_eos++] = f->eos;
    m->dtype = MODEL_DTYPE_UNSET;
    m->initializer_range = 0.02;
    if (!model_validate(m, err, errlen)) {
        model_free(m);
        return false;
    }
    return true;
}

// --- writing config.json

/* A number as Python's json.dumps writes a float (repr): the fewest significant digits that
 * read back exactly, fixed notation for exponents -4..15 with ".0" if integral ("10000.0",
 * "0.02"), else exponent form ("1e-06", "1e+16"). */
static void put_float(StrBuf *sb, double x) {
    char buf[64];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(buf, sizeof buf, "%.*e", digits - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    snprintf(buf, sizeof buf, "%.*e", digits - 1, x);
    int exp = atoi(strchr(buf, 'e') + 1);
    if (exp >= -4 && exp < 16) {
        int decimals = digits - 1 - exp;
        snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, x);
        if (!strchr(buf, '.')) strcat(buf, ".0");
    }
    sb_puts(sb, buf);
}

/* config.json's members, collected unsorted and written sorted (transformers sorts keys). */
typedef struct {
    char *key, *value; /* value is JSON text */
} Member;

typedef struct {
    Member *m;
    size_t n, cap;
} Members;

static void member(Members *ms, const char *key, StrBuf *value) {
    if (ms->n == ms->cap) ms->m = xrealloc(ms->m, (ms->cap = ms->cap ? 2 * ms->cap : 64) * sizeof *ms->m);
    ms->m[ms->n++] = (Member){xstrdup(key), value->data ? value->data : xstrdup("null")};
    *value = (StrBuf){0};
}

static void member_int(Members *ms, const char *key, int64_t v) {
    StrBuf b = {0};
    sb_printf(&b, "%lld", (long long)v);
    member(ms, key, &b);
}

static void member_id(Members *ms, const char *key, int64_t id) {
    StrBuf b = {0};
    if (id >= 0) sb_printf(&b, "%lld", (long long)id);
    else sb_puts(&b, "null");
    member(ms, key, &b);
}

static void member_float(Members *ms, const char *key, double v) {
    StrBuf b = {0};
    put_float(&b, v);
    member(ms, key, &b);
}

static void member_raw(Members *ms, const char *key, const char *json) {
    StrBuf b = {0};
    sb_puts(&b, json);
    member(ms, key, &b);
}

static void member_str(Members *ms, const char *key, const char *s) {
    StrBuf b = {0};
    sb_printf(&b, "\"%s\"", s); // our own identifiers: no escaping needed
    member(ms, key, &b);
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void put_string(StrBuf *sb, const char *s) {
    sb_puts(sb, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_printf(sb, "\\%c", c);
        else if (c < 0x20) sb_printf(sb, "\\u%04x", c);
        else sb_append(sb, (const char *)&c, 1);
    }
    sb_puts(sb, "\"");
}

static int by_key(const void *a, const void *b) {
    return strcmp(((const Member *)a)->key, ((const Member *)b)->key);
}

/* One rope dict, keys sorted; yarn's optional keys only when they differ from the defaults. */
static void rope_json(StrBuf *b, const ModelRope *r, const char *indent) {
    sb_printf(b, "{\n%s  ", indent);
    bool yarn = r->type == MODEL_ROPE_YARN;
#define OPT(key, cond, val)                                                                   \
    if (cond) {                                                                               \
        sb_puts(b, "\"" key "\": ");                                                          \
        put_float(b, val);                                                                    \
        sb_printf(b, ",\n%s  ", indent);                                                      \
    }
    OPT("attention_factor", yarn && r->attention_factor, r->attention_factor)
    OPT("beta_fast", yarn && r->beta_fast != 32, r->beta_fast)
    OPT("beta_slow", yarn && r->beta_slow != 1, r->beta_slow)
#undef OPT
    if (r->type != MODEL_ROPE_DEFAULT) {
        sb_puts(b, "\"factor\": ");
        put_float(b, r->factor);
        sb_printf(b, ",\n%s  ", indent);
    }
    if (r->type == MODEL_ROPE_LLAMA3) {
        sb_puts(b, "\"high_freq_factor\": ");
        put_float(b, r->high_freq_factor);
        sb_printf(b, ",\n%s  \"low_freq_factor\": ", indent);
        put_float(b, r->low_freq_factor);
        sb_printf(b, ",\n%s  ", indent);
    }
    if (yarn && r->mscale) {
        sb_puts(b, "\"mscale\": ");
        put_float(b, r->mscale);
        sb_printf(b, ",\n%s  ", indent);
    }
    if (yarn && r->mscale_all_dim) {
        sb_puts(b, "\"mscale_all_dim\": ");
        put_float(b, r->mscale_all_dim);
        sb_printf(b, ",\n%s  ", indent);
    }
    if (r->type == MODEL_ROPE_LLAMA3 || yarn)
        sb_printf(b, "\"original_max_position_embeddings\": %lld,\n%s  ",
                  (long long)r->original_max_positions, indent);
    sb_puts(b, "\"rope_theta\": ");
    put_float(b, r->theta);
    sb_printf(b, ",\n%s  \"rope_type\": \"%s\"", indent, model_rope_type_name(r->type));
    if (yarn && !r->truncate) sb_printf(b, ",\n%s  \"truncate\": false", indent);
    sb_printf(b, "\n%s}", indent);
}

static void layer_types_json(StrBuf *b, const ModelSpec *m) {
    sb_puts(b, "[");
    for (int64_t i = 0; i < m->L; i++)
        sb_printf(b, "%s\n    \"%s\"", i ? "," : "",
                  m->layer_sliding[i] ? "sliding_attention" : "full_attention");
    sb_puts(b, "\n  ]");
}

void model_write_config(const ModelSpec *m, StrBuf *out) {
    const Family *f = find_family(m->model_type);
    assert(f);
    Members ms = {0};
    StrBuf b = {0};
    sb_puts(&b, "[\n    ");
    put_string(&b, m->architecture[0] ? m->architecture : f->architecture);
    sb_puts(&b, "\n  ]");
    member(&ms, "architectures", &b);
    member_float(&ms, "attention_dropout", 0.0);
    member_id(&ms, "bos_token_id", m->bos_id);
    if (m->dtype != MODEL_DTYPE_UNSET) member_str(&ms, "dtype", model_dtype_name(m->dtype));
    if (m->n_eos == 1) member_int(&ms, "eos_token_id", m->eos_ids[0]);
    else if (m->n_eos == 0) member_raw(&ms, "eos_token_id", "null");
    else {
        sb_puts(&b, "[");
        for (int i = 0; i < m->n_eos; i++) sb_printf(&b, "%s\n    %lld", i ? "," : "", (long long)m->eos_ids[i]);
        sb_puts(&b, "\n  ]");
        member(&ms, "eos_token_id", &b);
    }
    member_int(&ms, "head_dim", m->HD);
    member_str(&ms, f->act_key, model_act_name(m->act));
    member_int(&ms, "hidden_size", m->C);
    member_float(&ms, "initializer_range", m->initializer_range);
    member_int(&ms, "intermediate_size", m->FF);
    member_int(&ms, "max_position_embeddings", m->max_positions);
    member_str(&ms, "model_type", m->model_type);
    member_int(&ms, "num_attention_heads", m->NH);
    member_int(&ms, "num_hidden_layers", m->L);
    member_int(&ms, "num_key_value_heads", m->NKV);
    member_id(&ms, "pad_token_id", m->pad_id);
    member_float(&ms, "rms_norm_eps", m->rms_norm_eps);
    member_raw(&ms, "tie_word_embeddings", m->tie_word_embeddings ? "true" : "false");
    member_raw(&ms, "use_cache", "true");
    member_int(&ms, "vocab_size", m->V);
    // rope: v5's rope_parameters, and the keys transformers 4.x reads
    if (f->rope_local_theta) {
        sb_puts(&b, "{\n    \"full_attention\": ");
        rope_json(&b, &m->rope, "    ");
        sb_puts(&b, ",\n    \"sliding_attention\": ");
        rope_json(&b, &m->rope_local, "    ");
        sb_puts(&b, "\n  }");
        member(&ms, "rope_parameters", &b);
        member_float(&ms, "rope_local_base_freq", m->rope_local.theta);
    } else {
        rope_json(&b, &m->rope, "  ");
        member(&ms, "rope_parameters", &b);
    }
    member_float(&ms, "rope_theta", m->rope.theta);
    if (m->rope.type != MODEL_ROPE_DEFAULT) {
        rope_json(&b, &m->rope, "  ");
        member(&ms, "rope_scaling", &b);
    }
    // what only some families have
    if (f->has_attention_bias) member_raw(&ms, "attention_bias", m->qkv_bias ? "true" : "false");
    if (f->has_mlp_bias) {
        member_raw(&ms, "mlp_bias", m->mlp_bias ? "true" : "false");
        member_int(&ms, "pretraining_tp", 1);
    }
    if (f->sliding != SLIDE_NONE) {
        if (m->sliding_window) member_int(&ms, "sliding_window", m->sliding_window);
        else member_raw(&ms, "sliding_window", "null");
    }
    if (f->sliding == SLIDE_FROM_LAYER) {
        member_raw(&ms, "use_sliding_window", m->sliding_window ? "true" : "false");
        int64_t first = m->L; // max_window_layers: the first sliding layer
        for (int64_t i = m->L - 1; i >= 0 && m->layer_sliding[i]; i--) first = i;
        member_int(&ms, "max_window_layers", m->sliding_window ? first : 28);
    }
    if (f->sliding == SLIDE_FROM_LAYER || f->sliding == SLIDE_PATTERN) {
        layer_types_json(&b, m);
        member(&ms, "layer_types", &b);
    }
    if (f->query_pre_attn_scalar) {
        // query_scale = qpas^-0.5; written back as the integer transformers declares it
        double qpas = 1.0 / (m->query_scale * m->query_scale);
        if (fabs(qpas - round(qpas)) < 1e-6 * qpas)
            member_int(&ms, "query_pre_attn_scalar", (int64_t)llround(qpas));
        else
            member_float(&ms, "query_pre_attn_scalar", qpas);
    }
    if (f->has_softcaps) {
        if (m->attn_softcap) member_float(&ms, "attn_logit_softcapping", m->attn_softcap);
        else member_raw(&ms, "attn_logit_softcapping", "null");
        if (m->final_softcap) member_float(&ms, "final_logit_softcapping", m->final_softcap);
        else member_raw(&ms, "final_logit_softcapping", "null");
    }
    if (f->gelu_means_tanh) member_raw(&ms, "use_bidirectional_attention", "false");

    qsort(ms.m, ms.n, sizeof *ms.m, by_key);
    sb_puts(out, "{\n");
    for (size_t i = 0; i < ms.n; i++) {
        sb_printf(out, "  \"%s\": %s%s\n", ms.m[i].key, ms.m[i].value, i + 1 < ms.n ? "," : "");
        free(ms.m[i].key);
        free(ms.m[i].value);
    }
    sb_puts(out, "}\n");
    free(ms.m);
}

void model_write_generation_config(const ModelSpec *m, StrBuf *out) {
    sb_puts(out, "{\n  \"_from_model_config\": true,\n");
    if (m->bos_id >= 0) sb_printf(out, "  \"bos_token_id\": %lld,\n", (long long)m->bos_id);
    if (m->n_eos == 1) sb_printf(out, "  \"eos_token_id\": %lld,\n", (long long)m->eos_ids[0]);
    if (m->n_eos > 1) {
        sb_puts(out, "  \"eos_token_id\": [");
        for (int i = 0; i < m->n_eos; i++) sb_printf(out, "%s%lld", i ? ", " : "", (long long)m->eos_ids[i]);
        sb_puts(out, "],\n");
    }
    if (m->pad_id >= 0) sb_printf(out, "  \"pad_token_id\": %lld,\n", (long long)m->pad_id);
    sb_puts(out, "  \"use_cache\": true\n}\n");
}

// --- expected tensors

static void add_tensor(ModelTensor *t, size_t *n, ModelTensorRole role, int layer, bool is_norm,
                       int64_t d0, int64_t d1, const char *fmt, ...) PRINTF_LIKE(8, 9);

static void add_tensor(ModelTensor *t, size_t *n, ModelTensorRole role, int layer, bool is_norm,
                       int64_t d0, int64_t d1, const char *fmt, ...) {
    ModelTensor *x = &t[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->role = role, x->layer = layer, x->is_norm = is_norm;
    x->ndim = d1 ? 2 : 1;
    x->shape[0] = d0, x->shape[1] = d1;
}

/* Names as transformers' state_dict; shapes as nn.Linear (out, in) and nn.Embedding (V, C). */
ModelTensor *model_tensors(const ModelSpec *m, size_t *n_out) {
    const int64_t C = m->C, Q = m->NH * m->HD, KV = m->NKV * m->HD, FF = m->FF;
    size_t cap = 3 + (size_t)m->L * 23;
    ModelTensor *t = xcalloc(cap, sizeof *t);
    size_t n = 0;
    add_tensor(t, &n, MT_EMBED, -1, false, m->V, C, "model.embed_tokens.weight");
    for (int l = 0; l < m->L; l++) {
#define P "model.layers.%d."
        add_tensor(t, &n, MT_Q, l, false, Q, C, P "self_attn.q_proj.weight", l);
        if (m->qkv_bias) add_tensor(t, &n, MT_Q_BIAS, l, false, Q, 0, P "self_attn.q_proj.bias", l);
        add_tensor(t, &n, MT_K, l, false, KV, C, P "self_attn.k_proj.weight", l);
        if (m->qkv_bias) add_tensor(t, &n, MT_K_BIAS, l, false, KV, 0, P "self_attn.k_proj.bias", l);
        add_tensor(t, &n, MT_V, l, false, KV, C, P "self_attn.v_proj.weight", l);
        if (m->qkv_bias) add_tensor(t, &n, MT_V_BIAS, l, false, KV, 0, P "self_attn.v_proj.bias", l);
        add_tensor(t, &n, MT_O, l, false, C, Q, P "self_attn.o_proj.weight", l);
        if (m->o_bias) add_tensor(t, &n, MT_O_BIAS, l, false, C, 0, P "self_attn.o_proj.bias", l);
        if (m->qk_norm) {
            add_tensor(t, &n, MT_Q_NORM, l, true, m->HD, 0, P "self_attn.q_norm.weight", l);
            add_tensor(t, &n, MT_K_NORM, l, true, m->HD, 0, P "self_attn.k_norm.weight", l);
        }
        add_tensor(t, &n, MT_GATE, l, false, FF, C, P "mlp.gate_proj.weight", l);
        if (m->mlp_bias) add_tensor(t, &n, MT_GATE_BIAS, l, false, FF, 0, P "mlp.gate_proj.bias", l);
        add_tensor(t, &n, MT_UP, l, false, FF, C, P "mlp.up_proj.weight", l);
        if (m->mlp_bias) add_tensor(t, &n, MT_UP_BIAS, l, false, FF, 0, P "mlp.up_proj.bias", l);
        add_tensor(t, &n, MT_DOWN, l, false, C, FF, P "mlp.down_proj.weight", l);
        if (m->mlp_bias) add_tensor(t, &n, MT_DOWN_BIAS, l, false, C, 0, P "mlp.down_proj.bias", l);
        add_tensor(t, &n, MT_INPUT_NORM, l, true, C, 0, P "input_layernorm.weight", l);
        add_tensor(t, &n, MT_POST_ATTN_NORM, l, true, C, 0, P "post_attention_layernorm.weight", l);
        if (m->sandwich_norms) {
            add_tensor(t, &n, MT_PRE_FFN_NORM, l, true, C, 0, P "pre_feedforward_layernorm.weight", l);
            add_tensor(t, &n, MT_POST_FFN_NORM, l, true, C, 0, P "post_feedforward_layernorm.weight", l);
        }
#undef P
    }
    add_tensor(t, &n, MT_FINAL_NORM, -1, true, C, 0, "model.norm.weight");
    if (!m->tie_word_embeddings) add_tensor(t, &n, MT_LM_HEAD, -1, false, m->V, C, "lm_head.weight");
    *n_out = n;
    return t;
}

int64_t model_param_count(const ModelSpec *m) {
    const int64_t C = m->C, Q = m->NH * m->HD, KV = m->NKV * m->HD, FF = m->FF;
    int64_t per_layer = Q * C + 2 * KV * C + C * Q + 3 * FF * C + 2 * C;
    if (m->qkv_bias) per_layer += Q + 2 * KV;
    if (m->o_bias) per_layer += C;
    if (m->mlp_bias) per_layer += 2 * FF + C;
    if (m->qk_norm) per_layer += 2 * m->HD;
    if (m->sandwich_norms) per_layer += 2 * C;
    int64_t total = m->V * C + m->L * per_layer + C;
    if (!m->tie_word_embeddings) total += m->V * C;
    return total;
}
