/* graph.c - the training step as a Plan: parameters, forward, loss, backward, memory plan.
 *
 * Reading order: parameters (which weights exist and which train, as LLaMA-Factory and PEFT
 * decide), forward (the decoder of model.h as ops), backward (autograd over that op list),
 * memory (lifetimes -> offsets), then printing and the byte format.
 */
#include "graph.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_ROLES (MT_DOWN_BIAS + 1)

typedef struct {
    Plan *p;
    const ModelSpec *m;
    const GraphOptions *o;
    int32_t cap_tensors, cap_ops, cap_params;
    int32_t *grad_of;                 /* per tensor: its gradient tensor, -1 if none yet */
    bool *requires_grad;              /* per tensor */
    int32_t *param_of_role;           /* [role * L1 + layer + 1]: PlanParam index, -1 */
    int32_t *lora_a, *lora_b;         /* same indexing: LoRA params, -1 */
    int32_t *layer_begin, *layer_end; /* (L): each decoder layer's forward ops */
    char *err;
    size_t errlen;
} Builder;

// --- small helpers

static int32_t new_tensor(Builder *g, const char *name, PlanRegion region, PlanDtype dtype,
                          int64_t numel) {
    Plan *p = g->p;
    if (p->n_tensors == g->cap_tensors) {
        g->cap_tensors = g->cap_tensors ? 2 * g->cap_tensors : 256;
        p->tensors = xrealloc(p->tensors, (size_t)g->cap_tensors * sizeof *p->tensors);
        g->grad_of = xrealloc(g->grad_of, (size_t)g->cap_tensors * sizeof *g->grad_of);
        g->requires_grad = xrealloc(g->requires_grad, (size_t)g->cap_tensors);
    }
    int32_t id = p->n_tensors++;
    PlanTensor *t = &p->tensors[id];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->region = (uint8_t)region, t->dtype = (uint8_t)dtype, t->numel = numel;
    t->first = t->last = -1;
    g->grad_of[id] = -1;
    g->requires_grad[id] = false;
    return id;
}

static int32_t act(Builder *g, int layer, const char *what, int64_t numel) {
    char name[PLAN_NAME_LEN];
    if (layer >= 0)
        snprintf(name, sizeof name, "L%d.%s", layer, what);
    else
        snprintf(name, sizeof name, "%s", what);
    return new_tensor(g, name, PLAN_ACT, PLAN_F32, numel);
}

static PlanOp *new_op(Builder *g, PlanOpKind kind, PlanPhase phase, int layer) {
    Plan *p = g->p;
    if (p->n_ops == g->cap_ops) {
        g->cap_ops = g->cap_ops ? 2 * g->cap_ops : 256;
        p->ops = xrealloc(p->ops, (size_t)g->cap_ops * sizeof *p->ops);
    }
    PlanOp *op = &p->ops[p->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = (uint8_t)kind, op->phase = (uint8_t)phase, op->layer = layer;
    for (int i = 0; i < PLAN_IN; i++) op->in[i] = -1;
    for (int i = 0; i < PLAN_OUT; i++) op->out[i] = -1;
    for (int i = 0; i < PLAN_TMP; i++) op->tmp[i] = -1;
    return op;
}

/* A forward op's outputs need gradients when any of its inputs does. */
static void propagate(Builder *g, const PlanOp *op) {
    bool rg = false;
    for (int i = 0; i < PLAN_IN; i++) rg |= op->in[i] >= 0 && g->requires_grad[op->in[i]];
    for (int i = 0; i < PLAN_OUT; i++)
        if (op->out[i] >= 0) g->requires_grad[op->out[i]] = rg;
}

static bool rg(const Builder *g, int32_t t) { return t >= 0 && g->requires_grad[t]; }

static const char *module_short(ModelTensorRole r) {
    switch (r) {
    case MT_Q: return "q_proj";
    case MT_K: return "k_proj";
    case MT_V: return "v_proj";
    case MT_O: return "o_proj";
    case MT_GATE: return "gate_proj";
    case MT_UP: return "up_proj";
    case MT_DOWN: return "down_proj";
    default: return NULL;
    }
}

static bool is_linear_role(ModelTensorRole r) { return module_short(r) != NULL; }

static bool list_has(const char *const *list, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// --- parameters: which exist, which train

/* finetuning_type: freeze, as LLaMA-Factory's _setup_freeze_tuning: the patterns
 * ".{layer}.{module}" (".{layer}." for all) for the trainable layers, plus the extra modules'
 * names, each matched as a substring of the parameter's name. So `norm` as an extra module
 * also trains every *_layernorm, exactly as LLaMA-Factory does. */
static bool freeze_patterns(Builder *g, char ***out, size_t *n_out) {
    const GraphOptions *o = g->o;
    const ModelSpec *m = g->m;
    const int64_t L = m->L, n = o->freeze_trainable_layers;
    int64_t lo = 0, hi = L; /* trainable layers [lo, hi): the last n, or the first -n */
    if (n > 0)
        lo = L - n < 0 ? 0 : L - n;
    else
        hi = -n < L ? -n : L;
    // the names LLaMA-Factory offers: first components after ".0." / outside the layers
    const char *hidden[8] = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"};
    size_t n_hidden = 4;
    if (m->sandwich_norms) {
        hidden[n_hidden++] = "pre_feedforward_layernorm";
        hidden[n_hidden++] = "post_feedforward_layernorm";
    }
    const char *outer[3] = {"embed_tokens", "norm", "lm_head"};
    size_t n_outer = m->tie_word_embeddings ? 2 : 3;
    size_t cap =
        (size_t)(hi - lo + 1) * (o->n_freeze_trainable_modules + 1) + o->n_freeze_extra_modules + 1;
    size_t np = 0;
    char **pat = xcalloc(cap, sizeof *pat);
    for (size_t k = 0; k < o->n_freeze_trainable_modules; k++) {
        const char *mod = o->freeze_trainable_modules[k];
        bool all = strcmp(mod, "all") == 0;
        if (!all && !list_has(hidden, n_hidden, mod)) {
            StrBuf sb = {0};
            for (size_t i = 0; i < n_hidden; i++) sb_printf(&sb, "%s%s", i ? ", " : "", hidden[i]);
            errf(g->err, g->errlen,
                 "freeze_trainable_modules: module '%s' is not found; choose from all, %s", mod,
                 sb.data);
            sb_free(&sb);
            for (size_t i = 0; i < np; i++) free(pat[i]);
            free(pat);
            return false;
        }
        for (int64_t l = lo; l < hi; l++) pat[np++] = xprintf(".%" PRId64 ".%s", l, all ? "" : mod);
    }
    for (size_t k = 0; k < o->n_freeze_extra_modules; k++) {
        const char *mod = o->freeze_extra_modules[k];
        if (!list_has(outer, n_outer, mod)) {
            errf(g->err, g->errlen,
                 "freeze_extra_modules: module '%s' is not found; choose from embed_tokens, norm%s",
                 mod, n_outer == 3 ? ", lm_head" : "");
            for (size_t i = 0; i < np; i++) free(pat[i]);
            free(pat);
            return false;
        }
        pat[np++] = xstrdup(mod);
    }
    *out = pat, *n_out = np;
    return true;
}

/* HF Trainer's get_decay_parameter_names: no decay where the lowercased name matches one of
 * "bias", "layernorm", "rmsnorm", "(?:^|\.)norm(?:$|\.)", "_norm(?:$|\.)". */
static bool decays(const char *name) {
    char low[PLAN_NAME_LEN];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof low; n++) low[n] = (char)tolower((unsigned char)name[n]);
    low[n] = 0;
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return false;
    for (const char *s = strstr(low, "norm"); s; s = strstr(s + 1, "norm")) {
        bool end = s[4] == 0 || s[4] == '.';
        if (end && (s == low || s[-1] == '.' || s[-1] == '_')) return false;
    }
    return true;
}

/* PEFT modules_to_save: a module whose name (or an ancestor's) ends with a listed name. */
static bool module_to_save(const GraphOptions *o, const char *param_name) {
    char mod[PLAN_NAME_LEN];
    snprintf(mod, sizeof mod, "%s", param_name);
    char *dot = strrchr(mod, '.');
    if (dot) *dot = 0; /* drop ".weight" / ".bias" */
    for (;;) {
        for (size_t k = 0; k < o->n_additional_target; k++)
            if (ends_with(mod, o->additional_target[k])) return true;
        char *d = strrchr(mod, '.');
        if (!d) return false;
        *d = 0;
    }
}

static bool lora_targets(const GraphOptions *o, ModelTensorRole r) {
    const char *s = module_short(r);
    if (!s) return false;
    for (size_t k = 0; k < o->n_lora_target; k++)
        if (strcmp(o->lora_target[k], "all") == 0 || strcmp(o->lora_target[k], s) == 0) return true;
    return false;
}

static bool check_lora_targets(Builder *g) {
    static const char *ok[] = {"all",    "q_proj",    "k_proj",  "v_proj",
                               "o_proj", "gate_proj", "up_proj", "down_proj"};
    for (size_t k = 0; k < g->o->n_lora_target; k++)
        if (!list_has(ok, 8, g->o->lora_target[k]))
            return errf(g->err, g->errlen,
                        "lora_target: '%s' is not supported; llfc puts LoRA "
                        "on all, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
                        g->o->lora_target[k]);
    if (g->o->n_lora_target == 0) return errf(g->err, g->errlen, "lora_target: no module given");
    return true;
}

static int32_t add_param(Builder *g, const char *name, const char *source, PlanParamKind kind,
                         bool trainable, int layer, int ndim, const int64_t *shape) {
    Plan *p = g->p;
    if (p->n_params == g->cap_params) {
        g->cap_params = g->cap_params ? 2 * g->cap_params : 64;
        p->params = xrealloc(p->params, (size_t)g->cap_params * sizeof *p->params);
    }
    PlanParam *pp = &p->params[p->n_params];
    memset(pp, 0, sizeof *pp);
    snprintf(pp->name, sizeof pp->name, "%s", name);
    snprintf(pp->source, sizeof pp->source, "%s", source);
    pp->kind = (uint8_t)kind, pp->trainable = trainable, pp->layer = layer, pp->adapter = -1;
    pp->ndim = ndim, pp->shape[0] = shape[0], pp->shape[1] = ndim > 1 ? shape[1] : 1;
    pp->decay = decays(name);
    int64_t numel = pp->shape[0] * pp->shape[1];
    pp->tensor = new_tensor(g, name, PLAN_PARAM, PLAN_F32, numel);
    g->requires_grad[pp->tensor] = trainable;
    pp->grad = -1;
    if (trainable) {
        char gname[PLAN_NAME_LEN];
        snprintf(gname, sizeof gname, "grad:%s", name);
        pp->grad = new_tensor(g, gname, PLAN_GRAD, PLAN_F32, numel);
        g->grad_of[pp->tensor] = pp->grad;
    }
    return p->n_params++;
}

static bool build_params(Builder *g) {
    const ModelSpec *m = g->m;
    const GraphOptions *o = g->o;
    size_t nt;
    ModelTensor *mt = model_tensors(m, &nt);
    char **pat = NULL;
    size_t n_pat = 0;
    if (o->finetune == FT_FREEZE && !freeze_patterns(g, &pat, &n_pat)) {
        free(mt);
        return false;
    }
    if (o->finetune == FT_LORA && !check_lora_targets(g)) {
        free(mt);
        return false;
    }
    int adapters = 0;
    bool ok = true;
    for (size_t i = 0; i < nt && ok; i++) {
        const ModelTensor *t = &mt[i];
        bool trainable = o->finetune == FT_FULL;
        char name[PLAN_NAME_LEN];
        snprintf(name, sizeof name, "%s", t->name);
        if (o->finetune == FT_FREEZE)
            for (size_t k = 0; k < n_pat; k++) trainable |= strstr(t->name, pat[k]) != NULL;
        bool lora = o->finetune == FT_LORA && lora_targets(o, t->role) && t->ndim == 2;
        if (o->finetune == FT_LORA && module_to_save(o, t->name)) {
            if (lora ||
                (m->tie_word_embeddings && (t->role == MT_EMBED || t->role == MT_LM_HEAD))) {
                ok = errf(g->err, g->errlen,
                          "additional_target: '%s' also %s; llfc does not "
                          "support that yet",
                          t->name,
                          lora ? "gets a LoRA adapter (lora_target)" : "is tied to lm_head");
                break;
            }
            trainable = true;
            snprintf(name, sizeof name, "base_model.model.%s", t->name);
        }
        int32_t pi =
            add_param(g, name, t->name, PARAM_BASE, trainable, t->layer, t->ndim, t->shape);
        g->param_of_role[t->role * (m->L + 1) + t->layer + 1] = pi;
        if (!lora) continue;
        // PEFT: lora_A (R, in), lora_B (out, R), saved as MODULE.lora_A.weight
        char mod[PLAN_NAME_LEN], an[PLAN_NAME_LEN + 32];
        snprintf(mod, sizeof mod, "%s", t->name);
        *strrchr(mod, '.') = 0;
        int64_t sa[2] = {o->lora_rank, t->shape[1]}, sbb[2] = {t->shape[0], o->lora_rank};
        snprintf(an, sizeof an, "base_model.model.%s.lora_A.weight", mod);
        int32_t a = add_param(g, an, "", PARAM_LORA_A, true, t->layer, 2, sa);
        snprintf(an, sizeof an, "base_model.model.%s.lora_B.weight", mod);
        int32_t b = add_param(g, an, "", PARAM_LORA_B, true, t->layer, 2, sbb);
        g->p->params[a].adapter = g->p->params[b].adapter = adapters++;
        g->lora_a[t->role * (m->L + 1) + t->layer + 1] = a;
        g->lora_b[t->role * (m->L + 1) + t->layer + 1] = b;
    }
    for (size_t k = 0; k < n_pat; k++) free(pat[k]);
    free(pat);
    free(mt);
    return ok;
}

static int32_t param(const Builder *g, ModelTensorRole role, int layer) {
    int32_t pi = g->param_of_role[role * (g->m->L + 1) + layer + 1];
    return pi < 0 ? -1 : g->p->params[pi].tensor;
}

// --- forward

static int32_t embed(Builder *g) {
    const ModelSpec *m = g->m;
    Plan *p = g->p;
    int64_t N = p->B * p->T;
    int32_t x = act(g, -1, "embed", N * m->C);
    PlanOp *op = new_op(g, OP_EMBED, PHASE_FORWARD, -1);
    op->in[0] = p->input_ids, op->in[1] = param(g, MT_EMBED, -1), op->out[0] = x;
    op->n[0] = N, op->n[1] = m->C, op->n[2] = m->V;
    op->f[0] = (float)m->embed_scale;
    propagate(g, op);
    return x;
}

static int32_t rmsnorm(Builder *g, int layer, const char *what, int32_t x, int32_t w, int64_t R,
                       int64_t D) {
    int32_t y = act(g, layer, what, R * D);
    char rs[64];
    snprintf(rs, sizeof rs, "%s.rstd", what);
    int32_t rstd = act(g, layer, rs, R);
    PlanOp *op = new_op(g, OP_RMSNORM, PHASE_FORWARD, layer);
    op->in[0] = x, op->in[1] = w, op->out[0] = y, op->out[1] = rstd;
    op->n[0] = R, op->n[1] = D;
    op->f[0] = (float)g->m->rms_norm_eps, op->f[1] = (float)g->m->norm_offset;
    propagate(g, op);
    return y;
}

/* y = x W^T (+ bias) (+ scale * (dropout(x) A^T) B^T when the layer has an adapter) */
static int32_t linear(Builder *g, int layer, const char *what, int32_t x, ModelTensorRole role,
                      int bias_role, int64_t M, int64_t N, int64_t K) {
    Plan *p = g->p;
    const size_t slot = (size_t)role * (size_t)(g->m->L + 1) + (size_t)(layer + 1);
    const int32_t ai = is_linear_role(role) ? g->lora_a[slot] : -1;
    const int64_t R = p->lora_rank;
    char name[96];
    int32_t y = act(g, layer, what, M * N), u = -1, xd = -1;
    if (ai >= 0) {
        snprintf(name, sizeof name, "%s.lora_u", what);
        u = act(g, layer, name, M * R);
        snprintf(name, sizeof name, "%s.lora_xd", what);
        if (p->lora_dropout > 0) xd = act(g, layer, name, M * K);
    }
    PlanOp *op = new_op(g, OP_LINEAR, PHASE_FORWARD, layer);
    op->in[0] = x, op->in[1] = param(g, role, layer);
    op->in[2] = bias_role >= 0 ? param(g, (ModelTensorRole)bias_role, layer) : -1;
    op->out[0] = y;
    op->n[0] = M, op->n[1] = N, op->n[2] = K;
    op->flops = 2 * M * N * K;
    if (ai >= 0) {
        op->in[3] = p->params[ai].tensor, op->in[4] = p->params[g->lora_b[slot]].tensor;
        op->out[1] = u, op->tmp[0] = xd;
        op->n[3] = R, op->n[4] = p->params[ai].adapter;
        op->f[0] = p->lora_scale, op->f[1] = p->lora_dropout;
        op->flops += 2 * M * K * R + 2 * M * R * N;
    }
    propagate(g, op);
    return y;
}

static int32_t rope(Builder *g, int layer, const char *what, int32_t x, int64_t H) {
    Plan *p = g->p;
    int64_t N = p->B * p->T;
    int32_t y = act(g, layer, what, N * H * p->HD);
    PlanOp *op = new_op(g, OP_ROPE, PHASE_FORWARD, layer);
    op->in[0] = x, op->in[1] = p->pos, op->out[0] = y;
    op->n[0] = N, op->n[1] = H, op->n[2] = p->HD, op->n[3] = g->m->layer_sliding[layer] ? 1 : 0;
    propagate(g, op);
    return y;
}

/* causal (query, key) pairs per row and head, within the window when there is one */
static int64_t attention_pairs(int64_t T, int64_t window) {
    if (window <= 0 || window >= T) return T * (T + 1) / 2;
    return window * (window + 1) / 2 + (T - window) * window;
}

static int32_t attention(Builder *g, int layer, int32_t q, int32_t k, int32_t v) {
    Plan *p = g->p;
    const ModelSpec *m = g->m;
    int32_t o = act(g, layer, "attn.out", p->B * p->T * p->NH * p->HD);
    int32_t lse = act(g, layer, "attn.lse", p->B * p->NH * p->T);
    PlanOp *op = new_op(g, OP_ATTENTION, PHASE_FORWARD, layer);
    op->in[0] = q, op->in[1] = k, op->in[2] = v, op->in[3] = p->seq;
    op->out[0] = o, op->out[1] = lse;
    int64_t window = m->layer_sliding[layer] ? m->sliding_window : 0;
    op->n[0] = p->B, op->n[1] = p->T, op->n[2] = p->NH, op->n[3] = p->NKV, op->n[4] = p->HD;
    op->n[5] = window;
    op->f[0] = (float)m->query_scale, op->f[1] = (float)m->attn_softcap;
    op->flops = 4 * p->B * p->NH * p->HD * attention_pairs(p->T, window);
    propagate(g, op);
    return o;
}

static int32_t binary(Builder *g, PlanOpKind kind, int layer, const char *what, int32_t a,
                      int32_t b, int64_t N, int64_t arg) {
    int32_t c = act(g, layer, what, N);
    PlanOp *op = new_op(g, kind, PHASE_FORWARD, layer);
    op->in[0] = a, op->in[1] = b, op->out[0] = c;
    op->n[0] = N, op->n[1] = arg;
    propagate(g, op);
    return c;
}

static int32_t decoder_layer(Builder *g, int l, int32_t x) {
    Plan *p = g->p;
    const ModelSpec *m = g->m;
    const int64_t N = p->B * p->T, C = m->C, HD = m->HD, NH = m->NH, NKV = m->NKV;
    const int none = -1; /* no bias */
    int32_t h = rmsnorm(g, l, "attn.norm", x, param(g, MT_INPUT_NORM, l), N, C);
    int32_t q = linear(g, l, "attn.q", h, MT_Q, m->qkv_bias ? MT_Q_BIAS : none, N, NH * HD, C);
    int32_t k = linear(g, l, "attn.k", h, MT_K, m->qkv_bias ? MT_K_BIAS : none, N, NKV * HD, C);
    int32_t v = linear(g, l, "attn.v", h, MT_V, m->qkv_bias ? MT_V_BIAS : none, N, NKV * HD, C);
    if (m->qk_norm) {
        q = rmsnorm(g, l, "attn.q_norm", q, param(g, MT_Q_NORM, l), N * NH, HD);
        k = rmsnorm(g, l, "attn.k_norm", k, param(g, MT_K_NORM, l), N * NKV, HD);
    }
    q = rope(g, l, "attn.q_rope", q, NH);
    k = rope(g, l, "attn.k_rope", k, NKV);
    int32_t a = attention(g, l, q, k, v);
    int32_t o = linear(g, l, "attn.o", a, MT_O, m->o_bias ? MT_O_BIAS : none, N, C, NH * HD);
    if (m->sandwich_norms)
        o = rmsnorm(g, l, "attn.post_norm", o, param(g, MT_POST_ATTN_NORM, l), N, C);
    x = binary(g, OP_ADD, l, "attn.residual", x, o, N * C, 0);
    int32_t h2 =
        rmsnorm(g, l, "mlp.norm", x,
                param(g, m->sandwich_norms ? MT_PRE_FFN_NORM : MT_POST_ATTN_NORM, l), N, C);
    int32_t gt =
        linear(g, l, "mlp.gate", h2, MT_GATE, m->mlp_bias ? MT_GATE_BIAS : none, N, m->FF, C);
    int32_t up = linear(g, l, "mlp.up", h2, MT_UP, m->mlp_bias ? MT_UP_BIAS : none, N, m->FF, C);
    int32_t mid = binary(g, OP_GLU, l, "mlp.act", gt, up, N * m->FF, m->act);
    int32_t d =
        linear(g, l, "mlp.down", mid, MT_DOWN, m->mlp_bias ? MT_DOWN_BIAS : none, N, C, m->FF);
    if (m->sandwich_norms)
        d = rmsnorm(g, l, "mlp.post_norm", d, param(g, MT_POST_FFN_NORM, l), N, C);
    return binary(g, OP_ADD, l, "mlp.residual", x, d, N * C, 0);
}

static void forward(Builder *g) {
    Plan *p = g->p;
    const ModelSpec *m = g->m;
    const int64_t N = p->B * p->T;
    int32_t x = embed(g);
    for (int l = 0; l < m->L; l++) {
        g->layer_begin[l] = p->n_ops;
        x = decoder_layer(g, l, x);
        g->layer_end[l] = p->n_ops;
    }
    x = rmsnorm(g, -1, "final_norm", x, param(g, MT_FINAL_NORM, -1), N, m->C);
    int32_t logits = linear(g, -1, "logits", x, m->tie_word_embeddings ? MT_EMBED : MT_LM_HEAD, -1,
                            N, m->V, m->C);
    if (m->final_softcap > 0) {
        int32_t capped = act(g, -1, "logits.capped", N * m->V);
        PlanOp *op = new_op(g, OP_SOFTCAP, PHASE_FORWARD, -1);
        op->in[0] = logits, op->out[0] = capped;
        op->n[0] = N * m->V, op->f[0] = (float)m->final_softcap;
        propagate(g, op);
        logits = capped;
    }
    p->logits = logits;
    p->n_forward = p->n_ops;
    PlanOp *op = new_op(g, OP_LOSS, PHASE_LOSS, -1);
    op->in[0] = logits, op->in[1] = p->labels, op->out[0] = logits;
    op->n[0] = p->B, op->n[1] = p->T, op->n[2] = m->V;
    p->loss_op = p->n_ops - 1;
    g->grad_of[logits] = logits; /* the loss writes d loss / d logits over the logits */
}

// --- backward: each forward op, in reverse, whose output has a gradient

/* Where the gradient of forward tensor x goes: its own gradient tensor, created on first use
 * (then *accum = false), or, once it exists, added into (*accum = true). */
static int32_t grad_target(Builder *g, int32_t x, bool *accum) {
    if (g->grad_of[x] >= 0) {
        *accum = true;
        return g->grad_of[x];
    }
    char name[PLAN_NAME_LEN + 8];
    snprintf(name, sizeof name, "d:%s", g->p->tensors[x].name);
    const int32_t d = new_tensor(g, name, PLAN_ACT, PLAN_F32, g->p->tensors[x].numel);
    g->grad_of[x] = d; /* not in one statement: new_tensor may move grad_of */
    *accum = false;
    return g->grad_of[x];
}

/* For kernels that only write: a fresh gradient, or a temporary added in by ACCUM afterwards. */
typedef struct {
    int32_t dst, tmp;
} WriteGrad;

static WriteGrad write_grad(Builder *g, int32_t x) {
    if (!rg(g, x)) return (WriteGrad){-1, -1};
    bool accum;
    int32_t d = grad_target(g, x, &accum);
    if (!accum) return (WriteGrad){d, -1};
    char name[PLAN_NAME_LEN + 8];
    snprintf(name, sizeof name, "d:%s.part", g->p->tensors[x].name);
    return (WriteGrad){new_tensor(g, name, PLAN_ACT, PLAN_F32, g->p->tensors[x].numel), d};
}

static void finish_write(Builder *g, WriteGrad w, int layer) {
    if (w.tmp < 0) return;
    PlanOp *op = new_op(g, OP_ACCUM, PHASE_BACKWARD, layer);
    op->in[0] = w.dst, op->out[0] = w.tmp, op->accum = 1;
    op->n[0] = g->p->tensors[w.tmp].numel;
}

static int32_t param_grad(const Builder *g, int32_t t) { return rg(g, t) ? g->grad_of[t] : -1; }

static PlanOp *bwd_op(Builder *g, const PlanOp *fwd, PlanOpKind kind) {
    PlanOp *op = new_op(g, kind, PHASE_BACKWARD, fwd->layer);
    memcpy(op->n, fwd->n, sizeof op->n);
    memcpy(op->f, fwd->f, sizeof op->f);
    return op;
}

/* The backward ops of forward op `fwd` (a copy: new ops may move the array; with gradient
 * checkpointing its tensors are the recomputed ones). */
static void backward_op(Builder *g, PlanOp f) {
    Plan *p = g->p;
    int32_t dy = f.out[0] >= 0 ? g->grad_of[f.out[0]] : -1;
    if (dy < 0) return;
    PlanOp *op;
    switch ((PlanOpKind)f.kind) {
    case OP_EMBED: {
        int32_t dt = param_grad(g, f.in[1]);
        if (dt < 0) return;
        op = bwd_op(g, &f, OP_EMBED_BWD);
        op->in[0] = dy, op->in[1] = f.in[0], op->out[0] = dt;
        return;
    }
    case OP_RMSNORM: {
        bool accum = false;
        int32_t dx = rg(g, f.in[0]) ? grad_target(g, f.in[0], &accum) : -1;
        int32_t dw = param_grad(g, f.in[1]);
        if (dx < 0 && dw < 0) return;
        op = bwd_op(g, &f, OP_RMSNORM_BWD);
        op->in[0] = dy, op->in[1] = f.in[0], op->in[2] = f.in[1], op->in[3] = f.out[1];
        op->out[0] = dx, op->out[1] = dw, op->accum = accum ? 1 : 0;
        return;
    }
    case OP_LINEAR: {
        const int64_t M = f.n[0], N = f.n[1], K = f.n[2], R = f.n[3];
        bool accum = false;
        int32_t dx = rg(g, f.in[0]) ? grad_target(g, f.in[0], &accum) : -1;
        int32_t dW = param_grad(g, f.in[1]), db = param_grad(g, f.in[2]);
        int32_t dA = param_grad(g, f.in[3]), dB = param_grad(g, f.in[4]);
        if (dx < 0 && dW < 0 && db < 0 && dA < 0 && dB < 0) return;
        int32_t du = -1, xd = -1;
        char name[PLAN_NAME_LEN + 8];
        if (f.in[3] >= 0 && (dx >= 0 || dA >= 0)) {
            snprintf(name, sizeof name, "d:%s", p->tensors[f.out[1]].name);
            du = new_tensor(g, name, PLAN_ACT, PLAN_F32, M * R);
        }
        if (f.in[3] >= 0 && f.tmp[0] >= 0) {
            snprintf(name, sizeof name, "%s.bwd", p->tensors[f.tmp[0]].name);
            xd = new_tensor(g, name, PLAN_ACT, PLAN_F32, M * K);
        }
        op = bwd_op(g, &f, OP_LINEAR_BWD);
        /* x only for weight gradients: a frozen layer's input need not be kept */
        op->in[0] = dy, op->in[1] = dW >= 0 || dA >= 0 ? f.in[0] : -1, op->in[2] = f.in[1];
        op->in[3] = f.in[3], op->in[4] = f.in[4], op->in[5] = dB >= 0 ? f.out[1] : -1;
        op->out[0] = dx, op->out[1] = dW, op->out[2] = db, op->out[3] = dA, op->out[4] = dB;
        op->tmp[0] = du, op->tmp[1] = xd, op->accum = accum ? 1 : 0;
        op->flops = (dx >= 0 ? 2 * M * N * K : 0) + (dW >= 0 ? 2 * M * N * K : 0);
        if (f.in[3] >= 0)
            op->flops += 2 * M * N * R + (dB >= 0 ? 2 * M * N * R : 0) +
                         (dA >= 0 ? 2 * M * R * K : 0) + (dx >= 0 ? 2 * M * R * K : 0);
        return;
    }
    case OP_ROPE: {
        WriteGrad w = write_grad(g, f.in[0]);
        if (w.dst < 0) return;
        op = bwd_op(g, &f, OP_ROPE_BWD);
        op->in[0] = dy, op->in[1] = f.in[1], op->out[0] = w.dst;
        finish_write(g, w, f.layer);
        return;
    }
    case OP_ATTENTION: {
        if (!rg(g, f.in[0]) && !rg(g, f.in[1]) && !rg(g, f.in[2])) return;
        /* the kernel writes all three; an input that needs none gets a scratch gradient */
        WriteGrad w[3];
        for (int i = 0; i < 3; i++) {
            w[i] = write_grad(g, f.in[i]);
            if (w[i].dst < 0)
                w[i].dst = act(g, f.layer, "attn.unused_grad", p->tensors[f.in[i]].numel);
        }
        int32_t delta = act(g, f.layer, "attn.delta", f.n[0] * f.n[2] * f.n[1]);
        op = bwd_op(g, &f, OP_ATTENTION_BWD);
        op->in[0] = dy, op->in[1] = f.out[0], op->in[2] = f.out[1], op->in[3] = f.in[0];
        op->in[4] = f.in[1], op->in[5] = f.in[2], op->in[6] = f.in[3];
        op->out[0] = w[0].dst, op->out[1] = w[1].dst, op->out[2] = w[2].dst;
        op->tmp[0] = delta;
        op->flops = 2 * f.flops;
        for (int i = 0; i < 3; i++) finish_write(g, w[i], f.layer);
        return;
    }
    case OP_GLU: {
        WriteGrad wg = write_grad(g, f.in[0]), wu = write_grad(g, f.in[1]);
        if (wg.dst < 0 && wu.dst < 0) return;
        if (wg.dst < 0) wg.dst = act(g, f.layer, "mlp.unused_grad", f.n[0]);
        if (wu.dst < 0) wu.dst = act(g, f.layer, "mlp.unused_grad", f.n[0]);
        op = bwd_op(g, &f, OP_GLU_BWD);
        op->in[0] = dy, op->in[1] = f.in[0], op->in[2] = f.in[1];
        op->out[0] = wg.dst, op->out[1] = wu.dst;
        finish_write(g, wg, f.layer);
        finish_write(g, wu, f.layer);
        return;
    }
    case OP_ADD:
        /* c = a + b: both gradients are dc. A gradient not yet started simply is dc's buffer
         * (no copy); the residual branch is done reading it before anything adds into it,
         * since the branch's backward ops come right after this point. */
        for (int i = 0; i < 2; i++) {
            int32_t x = f.in[i];
            if (!rg(g, x)) continue;
            if (g->grad_of[x] < 0) {
                g->grad_of[x] = dy;
                if (i == 0) /* the residual stream's gradient, one buffer through all layers */
                    snprintf(p->tensors[dy].name, PLAN_NAME_LEN, "d:residual");
                continue;
            }
            op = new_op(g, OP_ACCUM, PHASE_BACKWARD, f.layer);
            op->in[0] = dy, op->out[0] = g->grad_of[x], op->accum = 1;
            op->n[0] = f.n[0];
        }
        return;
    case OP_SOFTCAP: {
        WriteGrad w = write_grad(g, f.in[0]);
        if (w.dst < 0) return;
        op = bwd_op(g, &f, OP_SOFTCAP_BWD);
        op->in[0] = dy, op->in[1] = f.in[0], op->out[0] = w.dst;
        finish_write(g, w, f.layer);
        return;
    }
    default: assert(0 && "no backward for this op");
    }
}

/* Gradient checkpointing, per decoder layer: the forward keeps only each layer's input (the
 * residual stream); just before a layer's backward, its forward ops run again into fresh
 * tensors (`map` sends each original to its copy), and the backward reads those. Everything
 * else the layer made dies inside the forward, so activation memory is one layer's worth plus
 * the residual stream. LoRA dropout masks are counter-based: the rerun draws the same ones. */
static void recompute_layer(Builder *g, int l, int32_t *map) {
    Plan *p = g->p;
    /* every op but the last (the residual ADD, whose output is the checkpoint) */
    assert(p->ops[g->layer_end[l] - 1].kind == OP_ADD);
    for (int32_t j = g->layer_begin[l]; j < g->layer_end[l] - 1; j++) {
        PlanOp c = p->ops[j];
        for (int k = 0; k < PLAN_IN; k++)
            if (c.in[k] >= 0) c.in[k] = map[c.in[k]];
        int32_t *outs[2] = {c.out, c.tmp};
        const int cnt[2] = {PLAN_OUT, PLAN_TMP};
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < cnt[s]; k++) {
                int32_t t = outs[s][k];
                if (t < 0) continue;
                char name[PLAN_NAME_LEN + 8];
                snprintf(name, sizeof name, "%s@re", p->tensors[t].name);
                int32_t copy = new_tensor(g, name, PLAN_ACT, (PlanDtype)p->tensors[t].dtype,
                                          p->tensors[t].numel);
                g->requires_grad[copy] = g->requires_grad[t];
                map[t] = copy;
                outs[s][k] = copy;
            }
        c.phase = PHASE_BACKWARD;
        PlanOp *op = new_op(g, (PlanOpKind)c.kind, PHASE_BACKWARD, l);
        *op = c;
    }
}

static void backward(Builder *g) {
    Plan *p = g->p;
    const int32_t n_fwd_tensors = p->n_tensors;
    int32_t *map = xmalloc((size_t)n_fwd_tensors * sizeof *map);
    for (int32_t t = 0; t < n_fwd_tensors; t++) map[t] = t;
    for (int32_t i = p->n_forward - 1; i >= 0; i--) {
        PlanOp f = p->ops[i];
        const int l = f.layer;
        if (g->o->checkpoint_layers && l >= 0) {
            /* rerun the layer only if its backward will run: its output has a gradient */
            if (i == g->layer_end[l] - 1 && g->grad_of[f.out[0]] >= 0) recompute_layer(g, l, map);
            for (int k = 0; k < PLAN_IN; k++)
                if (f.in[k] >= 0 && f.in[k] < n_fwd_tensors) f.in[k] = map[f.in[k]];
            for (int k = 0; k < PLAN_OUT; k++)
                if (f.out[k] >= 0 && f.out[k] < n_fwd_tensors) f.out[k] = map[f.out[k]];
            for (int k = 0; k < PLAN_TMP; k++)
                if (f.tmp[k] >= 0 && f.tmp[k] < n_fwd_tensors) f.tmp[k] = map[f.tmp[k]];
        }
        backward_op(g, f);
    }
    free(map);
}

// --- memory: lifetimes, then first-fit by decreasing size

static int64_t align_up(int64_t n) { return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

static void touch(Plan *p, int32_t t, int32_t i) {
    if (t < 0) return;
    PlanTensor *x = &p->tensors[t];
    if (x->first < 0 || i < x->first) x->first = i;
    if (i > x->last) x->last = i;
}

typedef struct {
    int64_t off, end;
} Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct {
    int64_t numel;
    int32_t first, id;
} SizeKey;

/* largest first, then earliest, then by id: a total order, so every build plans alike */
static int cmp_size_desc(const void *a, const void *b) {
    const SizeKey *x = a, *y = b;
    if (x->numel != y->numel) return x->numel > y->numel ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void plan_memory(Plan *p) {
    for (int32_t i = 0; i < p->n_ops; i++) {
        PlanOp *op = &p->ops[i];
        for (int k = 0; k < PLAN_IN; k++) touch(p, op->in[k], i);
        for (int k = 0; k < PLAN_OUT; k++) touch(p, op->out[k], i);
        for (int k = 0; k < PLAN_TMP; k++) touch(p, op->tmp[k], i);
    }
    int64_t next[PLAN_REGIONS] = {0};
    SizeKey *keys = xmalloc((size_t)p->n_tensors * sizeof *keys);
    int32_t *acts = xmalloc((size_t)p->n_tensors * sizeof *acts), na = 0;
    for (int32_t t = 0; t < p->n_tensors; t++) {
        PlanTensor *x = &p->tensors[t];
        if (x->region != PLAN_ACT) {
            x->offset = next[x->region];
            next[x->region] += align_up(x->numel);
        } else if (x->first >= 0) {
            keys[na++] = (SizeKey){x->numel, x->first, t};
            p->act_unplanned += align_up(x->numel);
        }
    }
    qsort(keys, (size_t)na, sizeof *keys, cmp_size_desc);
    for (int32_t i = 0; i < na; i++) acts[i] = keys[i].id;
    free(keys);
    Span *busy = xmalloc((size_t)(na + 1) * sizeof *busy);
    int64_t top = 0;
    for (int32_t i = 0; i < na; i++) {
        PlanTensor *x = &p->tensors[acts[i]];
        int nb = 0;
        for (int32_t j = 0; j < i; j++) {
            PlanTensor *y = &p->tensors[acts[j]];
            if (y->first <= x->last && x->first <= y->last)
                busy[nb++] = (Span){y->offset, y->offset + align_up(y->numel)};
        }
        qsort(busy, (size_t)nb, sizeof *busy, cmp_span);
        int64_t off = 0, need = align_up(x->numel);
        for (int k = 0; k < nb; k++) {
            if (busy[k].off - off >= need) break;
            if (busy[k].end > off) off = busy[k].end;
        }
        x->offset = off;
        if (off + need > top) top = off + need;
    }
    next[PLAN_ACT] = top;
    memcpy(p->region_size, next, sizeof next);
    free(busy);
    free(acts);
}

// --- building

static bool plan_check(const Plan *p, char *err, size_t errlen);

bool graph_options_from_recipe(GraphOptions *o, const Recipe *r, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    const char *ft = R_STR(r, finetuning_type);
    if (strcmp(ft, "full") == 0)
        o->finetune = FT_FULL;
    else if (strcmp(ft, "freeze") == 0)
        o->finetune = FT_FREEZE;
    else if (strcmp(ft, "lora") == 0)
        o->finetune = FT_LORA;
    else
        return errf(err, errlen, "finetuning_type: '%s' is not supported", ft);
    o->B = R_INT(r, per_device_train_batch_size);
    o->T = R_INT(r, cutoff_len);
    o->lora_rank = R_INT(r, lora_rank);
    o->lora_alpha = R_NULL(r, lora_alpha) ? 0 : (double)R_INT(r, lora_alpha);
    o->lora_dropout = R_FLOAT(r, lora_dropout);
    o->use_rslora = R_BOOL(r, use_rslora);
#define LIST(field, key)                                                                           \
    if (!R_NULL(r, key)) {                                                                         \
        o->field = (const char *const *)R_LIST(r, key).items;                                      \
        o->n_##field = R_LIST(r, key).n;                                                           \
    }
    LIST(lora_target, lora_target)
    LIST(additional_target, additional_target)
    LIST(freeze_trainable_modules, freeze_trainable_modules)
    LIST(freeze_extra_modules, freeze_extra_modules)
#undef LIST
    o->freeze_trainable_layers = R_INT(r, freeze_trainable_layers);
    o->checkpoint_layers = R_BOOL(r, gradient_checkpointing);
    return true;
}

Plan *graph_build_recipe(const Recipe *r, const ModelSpec *m, char *err, size_t errlen) {
    GraphOptions o;
    if (!graph_options_from_recipe(&o, r, err, errlen)) return NULL;
    return graph_build(&o, m, err, errlen);
}

Plan *graph_build(const GraphOptions *o, const ModelSpec *m, char *err, size_t errlen) {
    if (o->B < 1 || o->T < 1) {
        errf(err, errlen, "graph: batch %" PRId64 " x %" PRId64 " tokens: both must be >= 1", o->B,
             o->T);
        return NULL;
    }
    if (o->finetune == FT_LORA && o->lora_rank < 1) {
        errf(err, errlen, "lora_rank: %" PRId64 " must be >= 1", o->lora_rank);
        return NULL;
    }
    Plan *p = xcalloc(1, sizeof *p);
    p->version = PLAN_VERSION;
    p->B = o->B, p->T = o->T, p->V = m->V, p->C = m->C, p->L = m->L, p->NH = m->NH;
    p->NKV = m->NKV, p->HD = m->HD, p->FF = m->FF;
    p->finetune = (uint8_t)o->finetune;
    p->checkpoint_layers = o->checkpoint_layers;
    if (o->finetune == FT_LORA) {
        p->lora_rank = o->lora_rank;
        double alpha = o->lora_alpha > 0 ? o->lora_alpha : 2.0 * (double)o->lora_rank;
        p->lora_scale = (float)(o->use_rslora ? alpha / sqrt((double)o->lora_rank)
                                              : alpha / (double)o->lora_rank);
        p->lora_dropout = (float)o->lora_dropout;
    }
    p->rope[0] = m->rope, p->rope[1] = m->rope_local;
    p->max_positions = m->max_positions;
    Builder g = {.p = p, .m = m, .o = o, .err = err, .errlen = errlen};
    size_t slots = (size_t)N_ROLES * (size_t)(m->L + 1);
    g.param_of_role = xmalloc(slots * sizeof(int32_t));
    g.lora_a = xmalloc(slots * sizeof(int32_t));
    g.lora_b = xmalloc(slots * sizeof(int32_t));
    g.layer_begin = xcalloc((size_t)m->L + 1, sizeof(int32_t));
    g.layer_end = xcalloc((size_t)m->L + 1, sizeof(int32_t));
    for (size_t i = 0; i < slots; i++) g.param_of_role[i] = g.lora_a[i] = g.lora_b[i] = -1;
    int64_t BT = o->B * o->T;
    p->input_ids = new_tensor(&g, "input_ids", PLAN_INPUT, PLAN_I32, BT);
    p->labels = new_tensor(&g, "labels", PLAN_INPUT, PLAN_I32, BT);
    p->seq = new_tensor(&g, "seq", PLAN_INPUT, PLAN_I32, BT);
    p->pos = new_tensor(&g, "pos", PLAN_INPUT, PLAN_I32, BT);
    bool ok = build_params(&g);
    int32_t n_train = 0;
    for (int32_t i = 0; ok && i < p->n_params; i++) n_train += p->params[i].trainable;
    if (ok && n_train == 0)
        ok = errf(err, errlen,
                  "finetuning_type freeze: nothing trains (freeze_trainable_layers "
                  "%" PRId64 ", no freeze_extra_modules); train at least one layer or module",
                  o->freeze_trainable_layers);
    if (ok) {
        forward(&g);
        backward(&g);
        plan_memory(p);
        char why[ERR_LEN];
        if (!plan_check(p, why, sizeof why))
            util_fatal("graph: built an inconsistent plan: %s", why);
        for (int32_t i = 0; i < p->n_ops; i++) {
            if (p->ops[i].phase == PHASE_BACKWARD)
                p->flops_backward += p->ops[i].flops;
            else
                p->flops_forward += p->ops[i].flops;
        }
    }
    free(g.param_of_role);
    free(g.lora_a);
    free(g.lora_b);
    free(g.layer_begin);
    free(g.layer_end);
    free(g.grad_of);
    free(g.requires_grad);
    if (!ok) {
        plan_free(p);
        return NULL;
    }
    return p;
}

void plan_free(Plan *p) {
    if (!p) return;
    free(p->tensors);
    free(p->params);
    free(p->ops);
    free(p);
}

// --- printing

static const char *op_names[OP_KIND_COUNT] = {
    "embed",    "rmsnorm",       "linear",  "rope",        "attention",   "glu",
    "add",      "softcap",       "loss",    "embed_bwd",   "rmsnorm_bwd", "linear_bwd",
    "rope_bwd", "attention_bwd", "glu_bwd", "softcap_bwd", "accum"};

const char *plan_op_name(PlanOpKind k) { return k < OP_KIND_COUNT ? op_names[k] : "?"; }

int64_t plan_arena_bytes(const Plan *p) {
    int64_t n = 0;
    for (int r = 0; r < PLAN_REGIONS; r++) n += p->region_size[r];
    return 4 * n;
}

static void print_bytes(FILE *f, int64_t elems) {
    double b = 4.0 * (double)elems;
    if (b >= 1 << 30)
        fprintf(f, "%.2f GiB", b / (1 << 30));
    else if (b >= 1 << 20)
        fprintf(f, "%.2f MiB", b / (1 << 20));
    else
        fprintf(f, "%.1f KiB", b / 1024);
}

/* a tensor's name for the op listing: PEFT's "base_model.model." prefix says nothing there */
static const char *short_name(const Plan *p, int32_t t) {
    const char *n = p->tensors[t].name;
    const char *peft = strstr(n, "base_model.model.");
    static _Thread_local char buf[PLAN_NAME_LEN];
    if (!peft) return n;
    snprintf(buf, sizeof buf, "%.*s%s", (int)(peft - n), n, peft + strlen("base_model.model."));
    return buf;
}

/* the tensors of one side of an op, comma separated; accum marks those added into */
static void print_list(FILE *f, const Plan *p, const int32_t *t, int n, unsigned accum) {
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (t[i] < 0) continue;
        fprintf(f, "%s%s%s", first ? "" : ", ", short_name(p, t[i]),
                (accum >> i) & 1 ? " (+=)" : "");
        first = false;
    }
}

void plan_print(const Plan *p, FILE *f) {
    static const char *ft[] = {"full", "freeze", "lora"};
    fprintf(f,
            "plan v%u: %s, micro-batch B=%" PRId64 " x T=%" PRId64 "; model V=%" PRId64
            " C=%" PRId64 " L=%" PRId64 " NH=%" PRId64 " NKV=%" PRId64 " HD=%" PRId64
            " FF=%" PRId64,
            p->version, ft[p->finetune], p->B, p->T, p->V, p->C, p->L, p->NH, p->NKV, p->HD, p->FF);
    if (p->checkpoint_layers) fprintf(f, "; gradient checkpointing per layer");
    if (p->finetune == FT_LORA)
        fprintf(f, "; LoRA R=%" PRId64 " scale=%g dropout=%g", p->lora_rank, p->lora_scale,
                p->lora_dropout);
    fprintf(f, "\nops (%d: %d forward, loss, %d backward):\n", p->n_ops, p->n_forward,
            p->n_ops - p->n_forward - 1);
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        fprintf(f, "  %4d %-13s ", i, plan_op_name(op->kind));
        print_list(f, p, op->in, PLAN_IN, 0);
        fprintf(f, " -> ");
        print_list(f, p, op->out, PLAN_OUT, op->accum);
        if (op->flops) fprintf(f, "  [%.3g MFLOP]", (double)op->flops / 1e6);
        fputc('\n', f);
    }
    int64_t n_train = 0, n_all = 0;
    int32_t k_train = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        int64_t n = p->tensors[p->params[i].tensor].numel;
        n_all += n;
        if (p->params[i].trainable) n_train += n, k_train++;
    }
    fprintf(f, "parameters: %" PRId64 " (%d tensors), trainable %" PRId64 " (%d tensors, %.4f%%)\n",
            n_all, p->n_params, n_train, k_train,
            100.0 * (double)n_train / (double)(n_all ? n_all : 1));
    static const char *rn[] = {"params", "grads", "inputs", "activations"};
    fprintf(f, "arena: ");
    print_bytes(f, plan_arena_bytes(p) / 4);
    fprintf(f, " =");
    for (int r = 0; r < PLAN_REGIONS; r++) {
        fprintf(f, "%s %s ", r ? " +" : "", rn[r]);
        print_bytes(f, p->region_size[r]);
    }
    fprintf(f, " (activations unshared: ");
    print_bytes(f, p->act_unplanned);
    fprintf(f, ")\nFLOPs per step: %.4g (forward %.4g, backward %.4g)\n",
            (double)(p->flops_forward + p->flops_backward), (double)p->flops_forward,
            (double)p->flops_backward);
}

// --- bytes

static void put(StrBuf *sb, const void *v, size_t n) { sb_append(sb, v, n); }
static void put_u8(StrBuf *sb, uint8_t v) { put(sb, &v, 1); }
static void put_u32(StrBuf *sb, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(sb, b, 4);
}
static void put_i64(StrBuf *sb, int64_t v) {
    put_u32(sb, (uint32_t)(uint64_t)v);
    put_u32(sb, (uint32_t)((uint64_t)v >> 32));
}
static void put_i32(StrBuf *sb, int32_t v) { put_u32(sb, (uint32_t)v); }
static void put_f32(StrBuf *sb, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(sb, u);
}
static void put_f64(StrBuf *sb, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_i64(sb, (int64_t)u);
}
static void put_name(StrBuf *sb, const char *s) {
    char buf[PLAN_NAME_LEN] = {0};
    snprintf(buf, sizeof buf, "%s", s);
    put(sb, buf, PLAN_NAME_LEN);
}

static void put_rope(StrBuf *sb, const ModelRope *r) {
    put_u32(sb, (uint32_t)r->type);
    put_f64(sb, r->theta), put_f64(sb, r->factor), put_i64(sb, r->original_max_positions);
    put_f64(sb, r->low_freq_factor), put_f64(sb, r->high_freq_factor);
    put_f64(sb, r->beta_fast), put_f64(sb, r->beta_slow), put_f64(sb, r->attention_factor);
    put_f64(sb, r->mscale), put_f64(sb, r->mscale_all_dim), put_u8(sb, r->truncate);
}

void plan_serialize(const Plan *p, StrBuf *out) {
    put(out, "LLFCPLAN", 8);
    put_u32(out, PLAN_VERSION);
    const int64_t dims[] = {p->B, p->T, p->V, p->C, p->L, p->NH, p->NKV, p->HD, p->FF};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) put_i64(out, dims[i]);
    put_u8(out, p->finetune);
    put_u8(out, p->checkpoint_layers);
    put_i64(out, p->lora_rank), put_f32(out, p->lora_scale), put_f32(out, p->lora_dropout);
    put_rope(out, &p->rope[0]), put_rope(out, &p->rope[1]);
    put_i64(out, p->max_positions);
    put_i32(out, p->n_tensors), put_i32(out, p->n_params), put_i32(out, p->n_ops);
    put_i32(out, p->n_forward), put_i32(out, p->loss_op);
    put_i32(out, p->input_ids), put_i32(out, p->labels), put_i32(out, p->seq), put_i32(out, p->pos);
    put_i32(out, p->logits);
    for (int r = 0; r < PLAN_REGIONS; r++) put_i64(out, p->region_size[r]);
    put_i64(out, p->act_unplanned), put_i64(out, p->flops_forward), put_i64(out, p->flops_backward);
    for (int32_t i = 0; i < p->n_tensors; i++) {
        const PlanTensor *t = &p->tensors[i];
        put_name(out, t->name);
        put_u8(out, t->region), put_u8(out, t->dtype);
        put_i64(out, t->numel), put_i64(out, t->offset), put_i32(out, t->first),
            put_i32(out, t->last);
    }
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *q = &p->params[i];
        put_name(out, q->name), put_name(out, q->source);
        put_u8(out, q->kind), put_u8(out, q->trainable), put_u8(out, q->decay);
        put_i32(out, q->tensor), put_i32(out, q->grad), put_i32(out, q->layer),
            put_i32(out, q->adapter);
        put_i32(out, q->ndim), put_i64(out, q->shape[0]), put_i64(out, q->shape[1]);
    }
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        put_u8(out, op->kind), put_u8(out, op->phase), put_u8(out, op->accum);
        put_i32(out, op->layer);
        for (int k = 0; k < PLAN_IN; k++) put_i32(out, op->in[k]);
        for (int k = 0; k < PLAN_OUT; k++) put_i32(out, op->out[k]);
        for (int k = 0; k < PLAN_TMP; k++) put_i32(out, op->tmp[k]);
        for (int k = 0; k < 6; k++) put_i64(out, op->n[k]);
        for (int k = 0; k < 4; k++) put_f32(out, op->f[k]);
        put_i64(out, op->flops);
    }
    put(out, "NALPCFLL", 8);
}

typedef struct {
    const uint8_t *b;
    size_t len, pos;
    bool bad;
} Reader;

static const uint8_t *take(Reader *r, size_t n) {
    if (r->bad || r->len - r->pos < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *s = r->b + r->pos;
    r->pos += n;
    return s;
}
static uint8_t get_u8(Reader *r) {
    const uint8_t *s = take(r, 1);
    return s ? s[0] : 0;
}
static uint32_t get_u32(Reader *r) {
    const uint8_t *s = take(r, 4);
    return s ? (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24
             : 0;
}
static int64_t get_i64(Reader *r) {
    uint64_t lo = get_u32(r), hi = get_u32(r);
    return (int64_t)(lo | hi << 32);
}
static int32_t get_i32(Reader *r) { return (int32_t)get_u32(r); }
static float get_f32(Reader *r) {
    uint32_t u = get_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}
static double get_f64(Reader *r) {
    uint64_t u = (uint64_t)get_i64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
static void get_name(Reader *r, char *dst) {
    const uint8_t *s = take(r, PLAN_NAME_LEN);
    if (!s) return;
    memcpy(dst, s, PLAN_NAME_LEN);
    if (dst[PLAN_NAME_LEN - 1] != 0) r->bad = true;
    dst[PLAN_NAME_LEN - 1] = 0;
}
static void get_rope(Reader *r, ModelRope *x) {
    x->type = (ModelRopeType)get_u32(r);
    if (x->type > MODEL_ROPE_YARN) r->bad = true;
    x->theta = get_f64(r), x->factor = get_f64(r), x->original_max_positions = get_i64(r);
    x->low_freq_factor = get_f64(r), x->high_freq_factor = get_f64(r);
    x->beta_fast = get_f64(r), x->beta_slow = get_f64(r), x->attention_factor = get_f64(r);
    x->mscale = get_f64(r), x->mscale_all_dim = get_f64(r), x->truncate = get_u8(r) != 0;
}

/* What each slot of an op must hold, from its sizes n[]: element counts (0: the slot must be
 * empty), which slots are required, which hold int32. */
typedef struct {
    int64_t in[PLAN_IN], out[PLAN_OUT], tmp[PLAN_TMP];
    unsigned need_in, need_out, int_in;
    bool ok; /* the sizes themselves make sense */
} Shapes;

/* a * b, or -1 (matching no tensor) when either is negative or the product overflows: the
 * sizes come from bytes that may be damaged */
static int64_t mul(int64_t a, int64_t b) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
    return r;
}

static int64_t mul3(int64_t a, int64_t b, int64_t c) { return mul(mul(a, b), c); }

static Shapes op_shapes(const PlanOp *op) {
    const int64_t *n = op->n;
    Shapes s = {.ok = true};
    switch ((PlanOpKind)op->kind) {
    case OP_EMBED:
        s = (Shapes){{n[0], mul(n[2], n[1])}, {mul(n[0], n[1])}, {0}, 3, 1, 1, true};
        break;
    case OP_EMBED_BWD:
        s = (Shapes){{mul(n[0], n[1]), n[0]}, {mul(n[2], n[1])}, {0}, 3, 1, 2, true};
        break;
    case OP_RMSNORM: {
        const int64_t RD = mul(n[0], n[1]);
        s = (Shapes){{RD, n[1]}, {RD, n[0]}, {0}, 3, 3, 0, true};
        break;
    }
    case OP_RMSNORM_BWD: {
        const int64_t RD = mul(n[0], n[1]);
        s = (Shapes){{RD, RD, n[1], n[0]}, {RD, n[1]}, {0}, 15, 0, 0, true};
        break;
    }
    case OP_LINEAR:
    case OP_LINEAR_BWD: {
        const int64_t M = n[0], N = n[1], K = n[2], R = n[3];
        const int64_t MK = mul(M, K), NK = mul(N, K), RK = mul(R, K), NR = mul(N, R);
        const int64_t MN = mul(M, N), MR = mul(M, R);
        if (op->kind == OP_LINEAR)
            s = (Shapes){{MK, NK, N, RK, NR}, {MN, MR}, {MK}, 3, 1, 0, true};
        else
            s = (Shapes){{MN, MK, NK, RK, NR, MR}, {MK, NK, N, RK, NR}, {MR, MK}, 5, 0, 0, true};
        s.ok = (op->in[3] < 0) == (op->in[4] < 0) && (op->in[3] < 0 || R > 0);
        break;
    }
    case OP_ROPE:
    case OP_ROPE_BWD: {
        const int64_t X = mul3(n[0], n[1], n[2]);
        const bool ok = n[2] % 2 == 0 && n[2] <= 1024 && (n[3] == 0 || n[3] == 1);
        s = (Shapes){{X, n[0]}, {X}, {0}, 3, 1, 2, ok};
        break;
    }
    case OP_ATTENTION:
    case OP_ATTENTION_BWD: {
        const int64_t B = n[0], T = n[1], NH = n[2], NKV = n[3], HD = n[4], BT = mul(B, T);
        const int64_t q = mul3(BT, NH, HD), kv = mul3(BT, NKV, HD), l = mul(BT, NH);
        if (op->kind == OP_ATTENTION)
            s = (Shapes){{q, kv, kv, BT}, {q, l}, {0}, 15, 3, 8, true};
        else
            s = (Shapes){{q, q, l, q, kv, kv, BT}, {q, kv, kv}, {l}, 127, 7, 64, true};
        s.ok = NKV > 0 && NH % NKV == 0 && HD <= 1024;
        break;
    }
    case OP_GLU: s = (Shapes){{n[0], n[0]}, {n[0]}, {0}, 3, 1, 0, n[1] <= MODEL_ACT_GELU}; break;
    case OP_GLU_BWD:
        s = (Shapes){{n[0], n[0], n[0]}, {n[0], n[0]}, {0}, 7, 3, 0, n[1] <= MODEL_ACT_GELU};
        break;
    case OP_ADD: s = (Shapes){{n[0], n[0]}, {n[0]}, {0}, 3, 1, 0, true}; break;
    case OP_SOFTCAP: s = (Shapes){{n[0]}, {n[0]}, {0}, 1, 1, 0, op->f[0] > 0}; break;
    case OP_SOFTCAP_BWD: s = (Shapes){{n[0], n[0]}, {n[0]}, {0}, 3, 1, 0, op->f[0] > 0}; break;
    case OP_LOSS: {
        const int64_t BT = mul(n[0], n[1]), X = mul(BT, n[2]);
        s = (Shapes){{X, BT}, {X}, {0}, 3, 1, 2, true};
        break;
    }
    case OP_ACCUM: s = (Shapes){{n[0]}, {n[0]}, {0}, 1, 1, 0, true}; break;
    case OP_KIND_COUNT: s.ok = false; break;
    }
    for (int k = 0; k < 6; k++) s.ok &= n[k] >= 0;
    return s;
}

static bool slot_ok(const Plan *p, int32_t t, int64_t want, bool needed, bool is_int) {
    if (t < 0) return !needed;
    return want > 0 && p->tensors[t].numel == want &&
           p->tensors[t].dtype == (is_int ? PLAN_I32 : PLAN_F32);
}

static bool op_check(const Plan *p, int32_t i, char *err, size_t errlen) {
    const PlanOp *op = &p->ops[i];
    Shapes s = op_shapes(op);
    bool ok = s.ok;
    for (int k = 0; k < PLAN_IN; k++)
        ok &= slot_ok(p, op->in[k], s.in[k], (s.need_in >> k) & 1, (s.int_in >> k) & 1);
    for (int k = 0; k < PLAN_OUT; k++)
        ok &= slot_ok(p, op->out[k], s.out[k], (s.need_out >> k) & 1, false);
    for (int k = 0; k < PLAN_TMP; k++) ok &= slot_ok(p, op->tmp[k], s.tmp[k], false, false);
    if (!ok)
        return errf(err, errlen, "plan: op %d (%s) does not match its tensors' sizes", i,
                    plan_op_name(op->kind));
    return true;
}

static bool plan_check(const Plan *p, char *err, size_t errlen) {
    if (p->finetune > FT_LORA)
        return errf(err, errlen, "plan: unknown finetuning type %d", p->finetune);
    for (int r = 0; r < PLAN_REGIONS; r++)
        if (p->region_size[r] < 0 || p->region_size[r] > ((int64_t)1 << 50))
            return errf(err, errlen, "plan: region %d has an impossible size", r);
    for (int32_t i = 0; i < p->n_tensors; i++) {
        const PlanTensor *t = &p->tensors[i];
        if (t->region >= PLAN_REGIONS || t->dtype > PLAN_I32 || t->numel < 0 || t->offset < 0 ||
            t->offset > p->region_size[t->region] - t->numel)
            return errf(err, errlen, "plan: tensor %d (%s) lies outside its region", i, t->name);
    }
    const int32_t named[] = {p->input_ids, p->labels, p->seq, p->pos, p->logits};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        if (named[i] < 0 || named[i] >= p->n_tensors)
            return errf(err, errlen, "plan: input or logits tensor index out of range");
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *q = &p->params[i];
        if (q->tensor < 0 || q->tensor >= p->n_tensors || q->grad < -1 || q->grad >= p->n_tensors ||
            q->trainable != (q->grad >= 0) || q->ndim < 1 || q->ndim > 2 ||
            mul(q->shape[0], q->shape[1]) != p->tensors[q->tensor].numel)
            return errf(err, errlen, "plan: parameter %d (%s) is inconsistent", i, q->name);
    }
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        if (op->kind >= OP_KIND_COUNT || op->phase > PHASE_BACKWARD)
            return errf(err, errlen, "plan: op %d has an unknown kind", i);
        const int32_t *ids[] = {op->in, op->out, op->tmp};
        const int cnt[] = {PLAN_IN, PLAN_OUT, PLAN_TMP};
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < cnt[s]; k++)
                if (ids[s][k] < -1 || ids[s][k] >= p->n_tensors)
                    return errf(err, errlen, "plan: op %d (%s) names tensor %d of %d", i,
                                plan_op_name(op->kind), ids[s][k], p->n_tensors);
    }
    for (int32_t i = 0; i < p->n_ops; i++)
        if (!op_check(p, i, err, errlen)) return false;
    if (p->n_forward < 0 || p->n_forward > p->n_ops || p->loss_op < 0 || p->loss_op >= p->n_ops ||
        p->ops[p->loss_op].kind != OP_LOSS)
        return errf(err, errlen, "plan: the loss op is missing");
    return true;
}

Plan *plan_deserialize(const void *bytes, size_t len, char *err, size_t errlen) {
    Reader r = {.b = bytes, .len = len};
    const uint8_t *magic = take(&r, 8);
    if (!magic || memcmp(magic, "LLFCPLAN", 8) != 0) {
        errf(err, errlen, "plan: not a plan (bad magic)");
        return NULL;
    }
    uint32_t version = get_u32(&r);
    if (version != PLAN_VERSION) {
        errf(err, errlen,
             "plan: version %u, this llfc reads version %d; recompile the trainer "
             "with this llfc",
             version, PLAN_VERSION);
        return NULL;
    }
    Plan *p = xcalloc(1, sizeof *p);
    p->version = version;
    int64_t *dims[] = {&p->B, &p->T, &p->V, &p->C, &p->L, &p->NH, &p->NKV, &p->HD, &p->FF};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) *dims[i] = get_i64(&r);
    p->finetune = get_u8(&r);
    p->checkpoint_layers = get_u8(&r) != 0;
    p->lora_rank = get_i64(&r), p->lora_scale = get_f32(&r), p->lora_dropout = get_f32(&r);
    get_rope(&r, &p->rope[0]), get_rope(&r, &p->rope[1]);
    p->max_positions = get_i64(&r);
    p->n_tensors = get_i32(&r), p->n_params = get_i32(&r), p->n_ops = get_i32(&r);
    p->n_forward = get_i32(&r), p->loss_op = get_i32(&r);
    p->input_ids = get_i32(&r), p->labels = get_i32(&r), p->seq = get_i32(&r), p->pos = get_i32(&r);
    p->logits = get_i32(&r);
    for (int k = 0; k < PLAN_REGIONS; k++) p->region_size[k] = get_i64(&r);
    p->act_unplanned = get_i64(&r), p->flops_forward = get_i64(&r), p->flops_backward = get_i64(&r);
    /* each record has a minimum size: refuse counts the bytes cannot hold before allocating */
    size_t left = r.len - r.pos;
    if (r.bad || p->n_tensors < 0 || p->n_params < 0 || p->n_ops < 0 ||
        (size_t)p->n_tensors > left / PLAN_NAME_LEN || (size_t)p->n_params > left / PLAN_NAME_LEN ||
        (size_t)p->n_ops > left / 64) {
        errf(err, errlen, "plan: truncated or damaged header");
        free(p);
        return NULL;
    }
    p->tensors = xcalloc((size_t)p->n_tensors + 1, sizeof *p->tensors);
    p->params = xcalloc((size_t)p->n_params + 1, sizeof *p->params);
    p->ops = xcalloc((size_t)p->n_ops + 1, sizeof *p->ops);
    for (int32_t i = 0; i < p->n_tensors && !r.bad; i++) {
        PlanTensor *t = &p->tensors[i];
        get_name(&r, t->name);
        t->region = get_u8(&r), t->dtype = get_u8(&r);
        t->numel = get_i64(&r), t->offset = get_i64(&r), t->first = get_i32(&r),
        t->last = get_i32(&r);
    }
    for (int32_t i = 0; i < p->n_params && !r.bad; i++) {
        PlanParam *q = &p->params[i];
        get_name(&r, q->name), get_name(&r, q->source);
        q->kind = get_u8(&r), q->trainable = get_u8(&r) != 0, q->decay = get_u8(&r) != 0;
        q->tensor = get_i32(&r), q->grad = get_i32(&r), q->layer = get_i32(&r),
        q->adapter = get_i32(&r);
        q->ndim = get_i32(&r), q->shape[0] = get_i64(&r), q->shape[1] = get_i64(&r);
    }
    for (int32_t i = 0; i < p->n_ops && !r.bad; i++) {
        PlanOp *op = &p->ops[i];
        op->kind = get_u8(&r), op->phase = get_u8(&r), op->accum = get_u8(&r);
        op->layer = get_i32(&r);
        for (int k = 0; k < PLAN_IN; k++) op->in[k] = get_i32(&r);
        for (int k = 0; k < PLAN_OUT; k++) op->out[k] = get_i32(&r);
        for (int k = 0; k < PLAN_TMP; k++) op->tmp[k] = get_i32(&r);
        for (int k = 0; k < 6; k++) op->n[k] = get_i64(&r);
        for (int k = 0; k < 4; k++) op->f[k] = get_f32(&r);
        op->flops = get_i64(&r);
    }
    const uint8_t *end = take(&r, 8);
    if (r.bad || !end || memcmp(end, "NALPCFLL", 8) != 0 || r.pos != r.len) {
        errf(err, errlen, "plan: truncated or damaged (%zu bytes)", len);
        plan_free(p);
        return NULL;
    }
    if (!plan_check(p, err, errlen)) {
        plan_free(p);
        return NULL;
    }
    return p;
}
