/* exec_cpu.c - the CPU executor: one arena, one switch over the plan's ops. */
#include "exec_cpu.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "add.h"
#include "attention.h"
#include "crossentropy.h"
#include "dropout.h"
#include "embedding.h"
#include "glu.h"
#include "matmul.h"
#include "rmsnorm.h"
#include "rng.h"
#include "rope.h"
#include "safetensors.h"
#include "softcap.h"

/* ZeRO-3: which parameters a group (a layer's, or those outside the layers) holds, and where
 * its gathered copy lives now. */
typedef struct {
    int32_t *params; /* plan parameter indices, in the plan's order */
    int32_t n;
    int64_t window;  /* floats the others' values and gradients take in a window */
    int slot;        /* the window holding it, or -1 */
    bool dirty;      /* gradients added since it was gathered */
} ShardGroup;

#define SHARD_SLOTS 3 /* [0] the group outside the layers; [1], [2] two layers (LRU) */

typedef struct {
    ExecShard cfg;
    ShardGroup *group; /* L + 1: [0] outside the layers, [l + 1] layer l */
    float *own;        /* this rank's parameters and their gradients */
    int64_t own_floats;
    float *slot[SHARD_SLOTS];
    int slot_group[SHARD_SLOTS];
    uint64_t slot_used[SHARD_SLOTS], clock;
    int64_t slot_floats[SHARD_SLOTS];
    float *full;       /* exec_cpu_collect: every value, at rank 0 */
    int64_t gathers;
    int32_t cfg_layers;
} Shard;

struct ExecCpu {
    const Plan *plan;
    uint64_t seed;
    float *arena;
    float *region[PLAN_REGIONS];
    float **at;        /* per tensor: where it is now (NULL: another rank's, not gathered) */
    ExecParam *trainable, *all;
    size_t n_trainable, n_all;
    float inv_freq[2][ROPE_MAX_HD / 2];
    float rope_scale[2];
    uint64_t step;
    bool train; /* dropout on (exec_cpu_step) or off (exec_cpu_forward) */
    Shard *shard; /* ZeRO-3, else NULL */
    /* groups: a layer's parameters (l + 1), or those outside the layers (0) */
    int32_t *op_group;    /* per op: the group whose parameters it touches, -1 none, -2 two */
    int32_t *ready_after; /* per op: the group whose gradients are final after it, or -1 */
    void (*on_grads)(void *ctx, int32_t group);
    void *on_grads_ctx;
};

float *exec_cpu_tensor(const ExecCpu *ex, int32_t id) {
    return id < 0 ? NULL : ex->at[id];
}

static void shard_free(Shard *s);
static void map_ops(ExecCpu *ex);
static void exec_params_views_at(const Plan *plan, float *const *at, ExecParam **all, size_t *n_all,
                                 ExecParam **trainable, size_t *n_trainable);

static int32_t *itensor(const ExecCpu *ex, int32_t id) {
    return (int32_t *)exec_cpu_tensor(ex, id);
}

/* Where every tensor of the plan sits when the regions start at region[]. */
static float **tensor_places(const Plan *plan, float *const *region) {
    float **at = xcalloc((size_t)plan->n_tensors + 1, sizeof *at);
    for (int32_t i = 0; i < plan->n_tensors; i++) {
        const PlanTensor *t = &plan->tensors[i];
        if (region[t->region]) at[i] = region[t->region] + t->offset;
    }
    return at;
}

/* The arena for the regions that `keep` names; `region` gets their starts (NULL for the others). */
static float *new_arena(const Plan *plan, const bool keep[PLAN_REGIONS], float *region[PLAN_REGIONS], char *err,
                        size_t errlen) {
    int64_t n = 0;
    for (int r = 0; r < PLAN_REGIONS; r++) n += keep[r] ? plan->region_size[r] : 0;
    float *arena = calloc((size_t)n + 16, sizeof(float));
    if (!arena) {
        errf(err, errlen, "cannot allocate the %.1f MiB arena the plan needs", 4.0 * (double)n / (1 << 20));
        return NULL;
    }
    float *at = arena;
    for (int r = 0; r < PLAN_REGIONS; r++) {
        region[r] = keep[r] ? at : NULL;
        at += keep[r] ? plan->region_size[r] : 0;
    }
    return arena;
}

/* An executor over an arena of the regions `keep` names (the others' tensors have no place yet). */
static ExecCpu *new_executor(const Plan *plan, uint64_t seed, const bool keep[PLAN_REGIONS], char *err,
                             size_t errlen) {
    float *region[PLAN_REGIONS];
    float *arena = new_arena(plan, keep, region, err, errlen);
    if (!arena) return NULL;
    ExecCpu *ex = xcalloc(1, sizeof *ex);
    ex->plan = plan, ex->seed = seed, ex->arena = arena;
    memcpy(ex->region, region, sizeof region);
    ex->at = tensor_places(plan, region);
    map_ops(ex);
    return ex;
}

ExecCpu *exec_cpu_new(const Plan *plan, uint64_t seed, char *err, size_t errlen) {
    const bool all[PLAN_REGIONS] = {true, true, true, true};
    ExecCpu *ex = new_executor(plan, seed, all, err, errlen);
    if (ex) exec_params_views_at(plan, ex->at, &ex->all, &ex->n_all, &ex->trainable, &ex->n_trainable);
    return ex;
}

void exec_cpu_free(ExecCpu *ex) {
    if (!ex) return;
    shard_free(ex->shard);
    free(ex->op_group);
    free(ex->ready_after);
    free(ex->arena);
    free(ex->at);
    free(ex->all);
    free(ex->trainable);
    free(ex);
}

const ExecParam *exec_cpu_params(const ExecCpu *ex, size_t *n) {
    *n = ex->n_trainable;
    return ex->trainable;
}

const ExecParam *exec_cpu_all_params(const ExecCpu *ex, size_t *n) {
    *n = ex->n_all;
    return ex->all;
}

void exec_cpu_zero_grad(ExecCpu *ex) {
    for (size_t i = 0; i < ex->n_trainable; i++)
        if (ex->trainable[i].grad) memset(ex->trainable[i].grad, 0, (size_t)ex->trainable[i].numel * sizeof(float));
}

// --- weights

static bool read_tensor(const StTensor *t, const PlanParam *p, float *dst, const char *path,
                        char *err, size_t errlen) {
    int64_t want = p->shape[0] * p->shape[1];
    bool shape_ok = t->numel == want && t->ndim == p->ndim && t->shape[0] == p->shape[0] &&
                    (p->ndim == 1 || t->shape[1] == p->shape[1]);
    if (!shape_ok)
        return errf(err, errlen,
                    "%s: tensor %s has %" PRId64 " elements in %d dims; the plan "
                    "needs (%" PRId64 ", %" PRId64 ")",
                    path, t->name, t->numel, t->ndim, p->shape[0], p->shape[1]);
    st_read_f32(t, dst);
    return true;
}

/* The loaders write parameter i's value at value[i]; NULL skips it (ZeRO-3: another rank's). */
static float **param_places(const Plan *plan, float *param_region, const bool *held) {
    float **value = xcalloc((size_t)plan->n_params + 1, sizeof *value);
    for (int32_t i = 0; i < plan->n_params; i++)
        if (!held || held[i]) value[i] = param_region + plan->tensors[plan->params[i].tensor].offset;
    return value;
}

static float **param_values_at(const Plan *plan, float *const *at) {
    float **value = xcalloc((size_t)plan->n_params + 1, sizeof *value);
    for (int32_t i = 0; i < plan->n_params; i++) value[i] = at[plan->params[i].tensor];
    return value;
}

/* Base parameter i into value[i]; with a NULL place, into a scratch buffer handed to sink, or
 * skipped without one. */
static bool load_model_into(const Plan *plan, float *const *value, ExecParamSink sink, void *ctx, const char *path,
                            char *err, size_t errlen) {
    StModel *m = st_open(path, err, errlen);
    if (!m) return false;
    bool ok = true;
    for (int32_t i = 0; i < plan->n_params && ok; i++) {
        const PlanParam *p = &plan->params[i];
        if (p->kind != PARAM_BASE || (!value[i] && !sink)) continue;
        const StTensor *t = st_find(m, p->source);
        if (!t) {
            ok = errf(err, errlen, "%s: no tensor %s; is this the model the trainer was compiled for?", path,
                      p->source);
        } else if (value[i]) {
            ok = read_tensor(t, p, value[i], path, err, errlen);
        } else {
            float *scratch = xmalloc((size_t)t->numel * sizeof *scratch + sizeof *scratch);
            ok = read_tensor(t, p, scratch, path, err, errlen) && sink(ctx, i, scratch, err, errlen);
            free(scratch);
        }
    }
    st_close(m);
    return ok;
}

static void init_lora_into(const Plan *plan, uint64_t seed, float *const *value) {
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        float *v = value[i];
        int64_t n = p->shape[0] * p->shape[1];
        if (!v) continue;
        if (p->kind == PARAM_LORA_B) memset(v, 0, (size_t)n * sizeof(float));
        if (p->kind != PARAM_LORA_A) continue;
        const float bound = (float)(1.0 / sqrt((double)p->shape[1]));
        const uint64_t purpose = rng_purpose(RNG_LORA_INIT, (uint32_t)p->adapter);
        for (int64_t k = 0; k < n; k++)
            v[k] = (2.0f * rng_uniform(seed, purpose, (uint64_t)k) - 1.0f) * bound;
    }
}

static bool load_adapter_into(const Plan *plan, float *const *value, const char *path, char *err, size_t errlen) {
    StModel *m = st_open(path, err, errlen);
    if (!m) return false;
    bool ok = true;
    for (int32_t i = 0; i < plan->n_params && ok; i++) {
        const PlanParam *p = &plan->params[i];
        bool adapter_owned =
            p->kind != PARAM_BASE || (p->trainable && strcmp(p->name, p->source) != 0);
        if (!adapter_owned || !value[i]) continue;
        const StTensor *t = st_find(m, p->name);
        if (!t)
            ok = errf(err, errlen,
                      "%s: no tensor %s; the adapter does not match the recipe's "
                      "lora_target/lora_rank",
                      path, p->name);
        else
            ok = read_tensor(t, p, value[i], path, err, errlen);
    }
    st_close(m);
    return ok;
}

bool exec_params_load_model(const Plan *plan, float *param_region, const bool *held, ExecParamSink sink, void *ctx,
                            const char *path, char *err, size_t errlen) {
    float **value = param_places(plan, param_region, held);
    bool ok = load_model_into(plan, value, sink, ctx, path, err, errlen);
    free(value);
    return ok;
}

void exec_params_init_lora(const Plan *plan, uint64_t seed, float *param_region, const bool *held) {
    float **value = param_places(plan, param_region, held);
    init_lora_into(plan, seed, value);
    free(value);
}

bool exec_params_load_adapter(const Plan *plan, float *param_region, const bool *held, const char *path, char *err,
                              size_t errlen) {
    float **value = param_places(plan, param_region, held);
    bool ok = load_adapter_into(plan, value, path, err, errlen);
    free(value);
    return ok;
}

/* ExecParams over the tensors' places (NULL value and grad: another rank's under ZeRO-3). */
static void exec_params_views_at(const Plan *plan, float *const *at, ExecParam **all, size_t *n_all,
                                 ExecParam **trainable, size_t *n_trainable) {
    *all = xcalloc((size_t)plan->n_params + 1, sizeof **all);
    *trainable = xcalloc((size_t)plan->n_params + 1, sizeof **trainable);
    *n_all = *n_trainable = 0;
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        ExecParam e = {.name = p->name,
                       .value = at[p->tensor],
                       .grad = p->grad >= 0 ? at[p->grad] : NULL,
                       .numel = plan->tensors[p->tensor].numel,
                       .decay = p->decay,
                       .ndim = p->ndim,
                       .shape = {p->shape[0], p->shape[1]}};
        (*all)[(*n_all)++] = e;
        if (p->trainable) (*trainable)[(*n_trainable)++] = e;
    }
}

void exec_params_views(const Plan *plan, float *param_region, const bool *held, float *grad_region, ExecParam **all,
                       size_t *n_all, ExecParam **trainable, size_t *n_trainable) {
    float *region[PLAN_REGIONS] = {param_region, grad_region, NULL, NULL};
    float **at = tensor_places(plan, region);
    for (int32_t i = 0; held && i < plan->n_params; i++)
        if (!held[i]) at[plan->params[i].tensor] = NULL;
    exec_params_views_at(plan, at, all, n_all, trainable, n_trainable);
    free(at);
}

static bool with_values(ExecCpu *ex, bool (*load)(const Plan *, float *const *, const char *, char *, size_t),
                        const char *path, char *err, size_t errlen) {
    float **value = param_values_at(ex->plan, ex->at);
    bool ok = load(ex->plan, value, path, err, errlen);
    free(value);
    return ok;
}

static bool load_model_here(const Plan *plan, float *const *value, const char *path, char *err, size_t errlen) {
    return load_model_into(plan, value, NULL, NULL, path, err, errlen);
}

bool exec_cpu_load_model(ExecCpu *ex, const char *path, char *err, size_t errlen) {
    return with_values(ex, load_model_here, path, err, errlen);
}

void exec_cpu_init_lora(ExecCpu *ex) {
    float **value = param_values_at(ex->plan, ex->at);
    init_lora_into(ex->plan, ex->seed, value);
    free(value);
}

bool exec_cpu_load_adapter(ExecCpu *ex, const char *path, char *err, size_t errlen) {
    return with_values(ex, load_adapter_into, path, err, errlen);
}

// --- ZeRO-3: each rank keeps its own parameters; the others' are gathered a group at a time

static void shard_free(Shard *s) {
    if (!s) return;
    for (int32_t g = 0; s->group && g <= s->cfg_layers; g++) free(s->group[g].params);
    free(s->group);
    free(s->own);
    for (int k = 0; k < SHARD_SLOTS; k++) free(s->slot[k]);
    free(s->full);
    free(s);
}

static int64_t aligned(int64_t n) { return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

static int64_t param_floats(const Plan *plan, const PlanParam *p) {
    int64_t n = aligned(plan->tensors[p->tensor].numel);
    return p->grad >= 0 ? 2 * n : n;
}

bool exec_params_op_groups(const Plan *plan, int32_t *op_group) {
    int32_t *group_of = xmalloc(((size_t)plan->n_tensors + 1) * sizeof *group_of);
    for (int32_t t = 0; t < plan->n_tensors; t++) group_of[t] = -1;
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        group_of[p->tensor] = p->layer + 1;
        if (p->grad >= 0) group_of[p->grad] = p->layer + 1;
    }
    bool mixed = false;
    for (int32_t i = 0; i < plan->n_ops; i++) {
        const PlanOp *op = &plan->ops[i];
        int32_t ids[PLAN_IN + PLAN_OUT + PLAN_TMP], n = 0, g = -1;
        for (int k = 0; k < PLAN_IN; k++) ids[n++] = op->in[k];
        for (int k = 0; k < PLAN_OUT; k++) ids[n++] = op->out[k];
        for (int k = 0; k < PLAN_TMP; k++) ids[n++] = op->tmp[k];
        for (int k = 0; k < n; k++) {
            int32_t h = ids[k] >= 0 ? group_of[ids[k]] : -1;
            if (h >= 0 && g >= 0 && h != g) g = -2;
            if (h >= 0 && g == -1) g = h;
        }
        op_group[i] = g;
        mixed = mixed || g == -2;
    }
    free(group_of);
    return !mixed;
}

/* Each op's group (exec_params_op_groups), and after which op each group's gradients are final. */
static void map_ops(ExecCpu *ex) {
    const Plan *plan = ex->plan;
    ex->op_group = xmalloc(((size_t)plan->n_ops + 1) * sizeof *ex->op_group);
    ex->ready_after = xmalloc(((size_t)plan->n_ops + 1) * sizeof *ex->ready_after);
    const bool mixed = !exec_params_op_groups(plan, ex->op_group);
    int32_t *last = xmalloc(((size_t)plan->L + 2) * sizeof *last);
    for (int32_t g = 0; g <= plan->L; g++) last[g] = -1;
    for (int32_t i = 0; i < plan->n_ops; i++) {
        ex->ready_after[i] = -1;
        if (ex->op_group[i] >= 0) last[ex->op_group[i]] = i;
    }
    for (int32_t g = 0; g <= plan->L && !mixed; g++) // two-group ops: no early signal at all
        if (last[g] >= 0) ex->ready_after[last[g]] = g;
    free(last);
}

static bool shardable(const ExecCpu *ex, char *err, size_t errlen) {
    for (int32_t i = 0; i < ex->plan->n_ops; i++)
        if (ex->op_group[i] == -2)
            return errf(err, errlen, "ZeRO-3: op %d (%s) uses the parameters of two layers; this plan cannot be "
                        "sharded", i, plan_op_name((PlanOpKind)ex->plan->ops[i].kind));
    return true;
}

/* Own parameters (and gradients) in one block; each group's list, and the floats the other
 * ranks' parameters of the group take in a window. */
static void lay_out_shard(ExecCpu *ex, Shard *s) {
    const Plan *plan = ex->plan;
    s->group = xcalloc((size_t)plan->L + 1, sizeof *s->group);
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        ShardGroup *g = &s->group[p->layer + 1];
        g->params = xrealloc(g->params, ((size_t)g->n + 1) * sizeof *g->params);
        g->params[g->n++] = i;
        if (s->cfg.owner[i] == s->cfg.rank) s->own_floats += param_floats(plan, p);
        else g->window += param_floats(plan, p);
    }
    s->own = xcalloc((size_t)s->own_floats + 16, sizeof(float));
    float *at = s->own;
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        if (s->cfg.owner[i] != s->cfg.rank) continue;
        int64_t n = aligned(plan->tensors[p->tensor].numel);
        ex->at[p->tensor] = at;
        if (p->grad >= 0) ex->at[p->grad] = at + n;
        at += param_floats(plan, p);
    }
    int64_t widest = 0;
    for (int32_t g = 1; g <= plan->L; g++) widest = s->group[g].window > widest ? s->group[g].window : widest;
    for (int k = 0; k < SHARD_SLOTS; k++) {
        s->slot_floats[k] = k == 0 ? s->group[0].window : widest;
        s->slot[k] = xcalloc((size_t)s->slot_floats[k] + 16, sizeof(float));
        s->slot_group[k] = -1;
    }
    for (int32_t g = 0; g <= plan->L; g++) s->group[g].slot = -1;
}

ExecCpu *exec_cpu_new_sharded(const Plan *plan, uint64_t seed, const ExecShard *shard, char *err, size_t errlen) {
    const bool keep[PLAN_REGIONS] = {false, false, true, true}; // the micro-batch and activations
    ExecCpu *ex = new_executor(plan, seed, keep, err, errlen);
    if (!ex) return NULL;
    Shard *s = ex->shard = xcalloc(1, sizeof *s);
    s->cfg = *shard;
    s->cfg_layers = (int32_t)plan->L;
    if (!shardable(ex, err, errlen)) {
        exec_cpu_free(ex);
        return NULL;
    }
    lay_out_shard(ex, s);
    exec_params_views_at(plan, ex->at, &ex->all, &ex->n_all, &ex->trainable, &ex->n_trainable);
    return ex;
}

/* Group g's gradients summed over the ranks into each parameter's owner; the window's copies
 * start again from zero. */
static bool flush_group(ExecCpu *ex, int32_t g, char *err, size_t errlen) {
    Shard *s = ex->shard;
    ShardGroup *grp = &s->group[g];
    for (int32_t k = 0; k < grp->n; k++) {
        const PlanParam *p = &ex->plan->params[grp->params[k]];
        if (p->grad < 0) continue;
        int64_t n = ex->plan->tensors[p->grad].numel;
        float *buf = ex->at[p->grad];
        if (!s->cfg.reduce(s->cfg.ctx, grp->params[k], s->cfg.owner[grp->params[k]], buf, n, err, errlen)) return false;
        if (s->cfg.owner[grp->params[k]] != s->cfg.rank) memset(buf, 0, (size_t)n * sizeof(float));
    }
    grp->dirty = false;
    return true;
}

/* Drop group g from its window (its gradients first, when it has new ones). */
static bool evict_group(ExecCpu *ex, int32_t g, char *err, size_t errlen) {
    Shard *s = ex->shard;
    ShardGroup *grp = &s->group[g];
    if (grp->dirty && !flush_group(ex, g, err, errlen)) return false;
    for (int32_t k = 0; k < grp->n; k++) {
        const PlanParam *p = &ex->plan->params[grp->params[k]];
        if (s->cfg.owner[grp->params[k]] == s->cfg.rank) continue;
        ex->at[p->tensor] = NULL;
        if (p->grad >= 0) ex->at[p->grad] = NULL;
    }
    s->slot_group[grp->slot] = -1;
    grp->slot = -1;
    return true;
}

/* Group g's parameters present on this rank: the others' gathered into a window (the group
 * outside the layers has its own; layers share two, least recently used first out). */
static bool gather_group(ExecCpu *ex, int32_t g, char *err, size_t errlen) {
    Shard *s = ex->shard;
    ShardGroup *grp = &s->group[g];
    if (grp->slot >= 0) {
        s->slot_used[grp->slot] = ++s->clock;
        return true;
    }
    int k = 0;
    if (g > 0) k = s->slot_group[1] < 0 ? 1 : s->slot_group[2] < 0 ? 2 : s->slot_used[1] <= s->slot_used[2] ? 1 : 2;
    if (s->slot_group[k] >= 0 && !evict_group(ex, s->slot_group[k], err, errlen)) return false;
    memset(s->slot[k], 0, (size_t)s->slot_floats[k] * sizeof(float));
    float *at = s->slot[k];
    for (int32_t j = 0; j < grp->n; j++) {
        int32_t i = grp->params[j];
        const PlanParam *p = &ex->plan->params[i];
        int64_t n = ex->plan->tensors[p->tensor].numel;
        if (s->cfg.owner[i] != s->cfg.rank) {
            ex->at[p->tensor] = at;
            if (p->grad >= 0) ex->at[p->grad] = at + aligned(n);
            at += param_floats(ex->plan, p);
        }
        if (!s->cfg.gather(s->cfg.ctx, i, s->cfg.owner[i], ex->at[p->tensor], n, err, errlen)) return false;
    }
    s->gathers++;
    grp->slot = k;
    s->slot_group[k] = g;
    s->slot_used[k] = ++s->clock;
    return true;
}

/* Before op i: its group present, and marked when the op adds to the group's gradients. */
static bool shard_before(ExecCpu *ex, int32_t i, char *err, size_t errlen) {
    if (!ex->shard || ex->op_group[i] < 0) return true;
    int32_t g = ex->op_group[i];
    if (!gather_group(ex, g, err, errlen)) return false;
    if (ex->plan->ops[i].phase == PHASE_BACKWARD) ex->shard->group[g].dirty = true;
    return true;
}

/* After a call: every new gradient at its owner, every window empty (the next call gathers
 * again, since the optimizer may have changed the owners' values in between). */
static bool shard_after(ExecCpu *ex, bool ok, char *err, size_t errlen) {
    Shard *s = ex->shard;
    if (!s) return ok;
    for (int k = 0; k < SHARD_SLOTS; k++) {
        if (s->slot_group[k] < 0) continue;
        if (!ok) s->group[s->slot_group[k]].dirty = false; // a failed collective: nothing more to send
        ok = evict_group(ex, s->slot_group[k], err, errlen) && ok;
    }
    return ok;
}

void exec_cpu_on_grads(ExecCpu *ex, void (*ready)(void *ctx, int32_t group), void *ctx) {
    ex->on_grads = ready, ex->on_grads_ctx = ctx;
}

int64_t exec_cpu_gathers(const ExecCpu *ex) { return ex->shard ? ex->shard->gathers : 0; }

void exec_cpu_memory(const ExecCpu *ex, ExecMemory *m) {
    const Plan *p = ex->plan;
    *m = (ExecMemory){.activations = 4 * (p->region_size[PLAN_INPUT] + p->region_size[PLAN_ACT])};
    if (!ex->shard) {
        m->weights = 4 * p->region_size[PLAN_PARAM];
        m->gradients = 4 * p->region_size[PLAN_GRAD];
        return;
    }
    for (int32_t i = 0; i < p->n_params; i++) {
        if (ex->shard->cfg.owner[i] != ex->shard->cfg.rank) continue;
        int64_t n = 4 * aligned(p->tensors[p->params[i].tensor].numel);
        m->weights += n;
        m->gradients += p->params[i].grad >= 0 ? n : 0;
    }
    for (int k = 0; k < SHARD_SLOTS; k++) m->windows += 4 * ex->shard->slot_floats[k];
}

/* ZeRO-3 saves: every parameter's value at rank 0, whose views point there until
 * exec_cpu_uncollect (the other ranks only send theirs). */
bool exec_cpu_collect(ExecCpu *ex, char *err, size_t errlen) {
    Shard *s = ex->shard;
    if (!s) return true;
    const Plan *plan = ex->plan;
    bool root = s->cfg.rank == 0;
    int64_t total = 0;
    for (int32_t i = 0; i < plan->n_params; i++) total += aligned(plan->tensors[plan->params[i].tensor].numel);
    if (root) s->full = xmalloc(((size_t)total + 16) * sizeof(float));
    for (int32_t i = 0, t = 0, off = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        int64_t n = plan->tensors[p->tensor].numel;
        float *mine = ex->at[p->tensor], *dst = root ? s->full + off : mine;
        if (root && mine) memcpy(dst, mine, (size_t)n * sizeof(float));
        if (!s->cfg.collect(s->cfg.ctx, i, s->cfg.owner[i], dst, n, err, errlen)) {
            exec_cpu_uncollect(ex);
            return false;
        }
        if (root) {
            ex->all[i].value = dst;
            if (p->trainable) ex->trainable[t].value = dst;
        }
        t += p->trainable;
        off += aligned(n);
    }
    return true;
}

void exec_cpu_uncollect(ExecCpu *ex) {
    if (!ex->shard || !ex->shard->full) return;
    for (int32_t i = 0, t = 0; i < ex->plan->n_params; i++) {
        const PlanParam *p = &ex->plan->params[i];
        ex->all[i].value = ex->at[p->tensor];
        if (p->trainable) ex->trainable[t++].value = ex->at[p->tensor];
    }
    free(ex->shard->full);
    ex->shard->full = NULL;
}

// --- running ops

static uint64_t dropout_first(int64_t adapter) { return (uint64_t)adapter << 40; }

static void run_linear(ExecCpu *ex, const PlanOp *op) {
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    float *y = exec_cpu_tensor(ex, op->out[0]);
    const float *x = exec_cpu_tensor(ex, op->in[0]), *W = exec_cpu_tensor(ex, op->in[1]);
    matmul(y, x, W, M, N, K, false, true, 1.0f, 0.0f);
    if (op->in[2] >= 0) add_bias_forward(y, exec_cpu_tensor(ex, op->in[2]), M, N);
    if (op->in[3] < 0) return;
    const float *xin = x;
    if (op->tmp[0] >= 0 && ex->train) {
        float *xd = exec_cpu_tensor(ex, op->tmp[0]);
        dropout_forward(xd, x, M * K, op->f[1], ex->seed,
                        rng_purpose(RNG_DROPOUT, (uint32_t)ex->step), dropout_first(op->n[4]));
        xin = xd;
    }
    float *u = exec_cpu_tensor(ex, op->out[1]);
    matmul(u, xin, exec_cpu_tensor(ex, op->in[3]), M, R, K, false, true, 1.0f, 0.0f);
    matmul(y, u, exec_cpu_tensor(ex, op->in[4]), M, N, R, false, true, op->f[0], 1.0f);
}

/* y = x W^T + b + s (drop(x) A^T) B^T, u = drop(x) A^T:
 *   dW += dy^T x    db += colsum dy    du = s dy B    dB += s dy^T u    dA += du^T drop(x)
 *   dx (=|+=) dy W + drop(du A) */
static void run_linear_bwd(ExecCpu *ex, const PlanOp *op) {
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    const float *dy = exec_cpu_tensor(ex, op->in[0]), *x = exec_cpu_tensor(ex, op->in[1]);
    const float *W = exec_cpu_tensor(ex, op->in[2]);
    float *dx = exec_cpu_tensor(ex, op->out[0]), *dW = exec_cpu_tensor(ex, op->out[1]);
    float *db = exec_cpu_tensor(ex, op->out[2]), *dA = exec_cpu_tensor(ex, op->out[3]);
    float *dB = exec_cpu_tensor(ex, op->out[4]);
    if (dW) matmul(dW, dy, x, N, K, M, true, false, 1.0f, 1.0f);
    if (db) add_bias_backward(db, dy, M, N);
    if (dx) matmul(dx, dy, W, M, K, N, false, false, 1.0f, (op->accum & 1) ? 1.0f : 0.0f);
    if (op->in[3] < 0) return;
    const float *A = exec_cpu_tensor(ex, op->in[3]), *B = exec_cpu_tensor(ex, op->in[4]);
    const float *u = exec_cpu_tensor(ex, op->in[5]);
    float *du = exec_cpu_tensor(ex, op->tmp[0]), *xd = exec_cpu_tensor(ex, op->tmp[1]);
    const float s = op->f[0];
    const uint64_t purpose = rng_purpose(RNG_DROPOUT, (uint32_t)ex->step);
    if (dB) matmul(dB, dy, u, N, R, M, true, false, s, 1.0f);
    if (!du) return; /* neither dA nor dx wanted */
    matmul(du, dy, B, M, R, N, false, false, s, 0.0f);
    if (dA) {
        const float *xin = x;
        if (xd) {
            dropout_forward(xd, x, M * K, op->f[1], ex->seed, purpose, dropout_first(op->n[4]));
            xin = xd;
        }
        matmul(dA, du, xin, R, K, M, true, false, 1.0f, 1.0f);
    }
    if (!dx) return;
    if (!xd) {
        matmul(dx, du, A, M, K, R, false, false, 1.0f, 1.0f);
        return;
    }
    matmul(xd, du, A, M, K, R, false, false, 1.0f, 0.0f);
    dropout_forward(xd, xd, M * K, op->f[1], ex->seed, purpose, dropout_first(op->n[4]));
    add_into(dx, xd, M * K, true);
}

static AttentionShape attn_shape(const PlanOp *op) {
    return (AttentionShape){.B = op->n[0],
                            .T = op->n[1],
                            .NH = op->n[2],
                            .NKV = op->n[3],
                            .HD = op->n[4],
                            .window = op->n[5],
                            .scale = op->f[0],
                            .softcap = op->f[1]};
}

static void run_op(ExecCpu *ex, const PlanOp *op, float grad_scale, ExecLoss *loss, bool train) {
#define T(x) exec_cpu_tensor(ex, (x))
#define I(x) itensor(ex, (x))
    switch ((PlanOpKind)op->kind) {
    case OP_EMBED:
        embedding_forward(T(op->out[0]), I(op->in[0]), T(op->in[1]), op->n[0], op->n[1], op->f[0]);
        break;
    case OP_RMSNORM:
        rmsnorm_forward(T(op->out[0]), T(op->out[1]), T(op->in[0]), T(op->in[1]), op->n[0],
                        op->n[1], op->f[0], op->f[1]);
        break;
    case OP_LINEAR: run_linear(ex, op); break;
    case OP_ROPE: {
        int w = (int)op->n[3];
        rope_forward(T(op->out[0]), T(op->in[0]), I(op->in[1]), ex->inv_freq[w], ex->rope_scale[w],
                     op->n[0], op->n[1], op->n[2]);
        break;
    }
    case OP_ATTENTION: {
        AttentionShape s = attn_shape(op);
        attention_forward(T(op->out[0]), T(op->out[1]), T(op->in[0]), T(op->in[1]), T(op->in[2]),
                          I(op->in[3]), &s);
        break;
    }
    case OP_GLU:
        glu_forward(T(op->out[0]), T(op->in[0]), T(op->in[1]), op->n[0], (ModelActivation)op->n[1]);
        break;
    case OP_ADD: add_forward(T(op->out[0]), T(op->in[0]), T(op->in[1]), op->n[0]); break;
    case OP_SOFTCAP: softcap_forward(T(op->out[0]), T(op->in[0]), op->n[0], op->f[0]); break;
    case OP_LOSS: {
        const int32_t *labels = I(op->in[1]);
        int64_t count = crossentropy_count(labels, op->n[0], op->n[1]);
        float scale = grad_scale > 0 ? grad_scale : count ? 1.0f / (float)count : 0.0f;
        double sum =
            crossentropy_forward_backward(train ? T(op->out[0]) : NULL, T(op->in[0]), labels,
                                          op->n[0], op->n[1], op->n[2], scale, &count);
        if (loss)
            *loss = (ExecLoss){
                .loss_sum = sum, .count = count, .loss = count ? sum / (double)count : 0};
        break;
    }
    case OP_EMBED_BWD:
        embedding_backward(T(op->out[0]), I(op->in[1]), T(op->in[0]), op->n[0], op->n[1], op->n[2],
                           op->f[0]);
        break;
    case OP_RMSNORM_BWD:
        rmsnorm_backward(T(op->out[0]), T(op->out[1]), T(op->in[0]), T(op->in[1]), T(op->in[2]),
                         T(op->in[3]), op->n[0], op->n[1], op->f[1], op->accum & 1);
        break;
    case OP_LINEAR_BWD: run_linear_bwd(ex, op); break;
    case OP_ROPE_BWD: {
        int w = (int)op->n[3];
        rope_backward(T(op->out[0]), T(op->in[0]), I(op->in[1]), ex->inv_freq[w], ex->rope_scale[w],
                      op->n[0], op->n[1], op->n[2]);
        break;
    }
    case OP_ATTENTION_BWD: {
        AttentionShape s = attn_shape(op);
        attention_backward(T(op->out[0]), T(op->out[1]), T(op->out[2]), T(op->tmp[0]), T(op->in[0]),
                           T(op->in[1]), T(op->in[2]), T(op->in[3]), T(op->in[4]), T(op->in[5]),
                           I(op->in[6]), &s);
        break;
    }
    case OP_GLU_BWD:
        glu_backward(T(op->out[0]), T(op->out[1]), T(op->in[0]), T(op->in[1]), T(op->in[2]),
                     op->n[0], (ModelActivation)op->n[1]);
        break;
    case OP_SOFTCAP_BWD:
        softcap_backward(T(op->out[0]), T(op->in[0]), T(op->in[1]), op->n[0], op->f[0]);
        break;
    case OP_ACCUM: add_into(T(op->out[0]), T(op->in[0]), op->n[0], op->accum & 1); break;
    case OP_KIND_COUNT: break;
    }
#undef T
#undef I
}

bool exec_cpu_check_batch(const ExecCpu *ex, const ExecBatch *b, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    for (int64_t i = 0; i < p->B * p->T; i++) {
        int32_t id = b->input_ids[i], y = b->labels ? b->labels[i] : CE_IGNORE;
        if (id < 0 || id >= p->V)
            return errf(err, errlen,
                        "row %" PRId64 ", token %" PRId64 ": id %d is outside the "
                        "model's vocabulary [0, %" PRId64 ")",
                        i / p->T, i % p->T, id, p->V);
        if (y != CE_IGNORE && (y < 0 || y >= p->V))
            return errf(err, errlen,
                        "row %" PRId64 ", token %" PRId64 ": label %d is neither -100 "
                        "nor in [0, %" PRId64 ")",
                        i / p->T, i % p->T, y, p->V);
    }
    return true;
}

/* Copy the micro-batch in and compute this batch's rope frequencies (dynamic rope depends on
 * the largest position, as transformers' dynamic_rope_update does). */
static void prepare(ExecCpu *ex, const ExecBatch *b) {
    const Plan *p = ex->plan;
    const size_t n = (size_t)(p->B * p->T);
    memcpy(itensor(ex, p->input_ids), b->input_ids, n * sizeof(int32_t));
    memcpy(itensor(ex, p->seq), b->seq, n * sizeof(int32_t));
    memcpy(itensor(ex, p->pos), b->pos, n * sizeof(int32_t));
    if (b->labels) memcpy(itensor(ex, p->labels), b->labels, n * sizeof(int32_t));
    int32_t maxpos = 0;
    for (size_t i = 0; i < n; i++) maxpos = b->pos[i] > maxpos ? b->pos[i] : maxpos;
    for (int w = 0; w < 2; w++)
        ex->rope_scale[w] = rope_inv_freq(&p->rope[w], p->HD, p->max_positions, (int64_t)maxpos + 1,
                                          ex->inv_freq[w]);
    ex->step = b->step;
}

bool exec_cpu_step(ExecCpu *ex, const ExecBatch *b, float grad_scale, ExecLoss *loss, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    assert(b->labels);
    prepare(ex, b);
    ex->train = true;
    bool ok = true;
    for (int32_t i = 0; i < p->n_ops && ok; i++) {
        if (!(ok = shard_before(ex, i, err, errlen))) break;
        run_op(ex, &p->ops[i], grad_scale, loss, true);
        if (ex->on_grads && ex->ready_after[i] >= 0) ex->on_grads(ex->on_grads_ctx, ex->ready_after[i]);
    }
    return shard_after(ex, ok, err, errlen);
}

const float *exec_cpu_forward(ExecCpu *ex, const ExecBatch *b, ExecLoss *loss, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    prepare(ex, b);
    ex->train = false;
    bool ok = true;
    for (int32_t i = 0; i < p->n_forward && ok; i++)
        if ((ok = shard_before(ex, i, err, errlen))) run_op(ex, &p->ops[i], 0, NULL, false);
    if (ok && b->labels && loss) run_op(ex, &p->ops[p->loss_op], 0, loss, false);
    return shard_after(ex, ok, err, errlen) ? exec_cpu_tensor(ex, p->logits) : NULL;
}
