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

struct ExecCpu {
    const Plan *plan;
    uint64_t seed;
    float *arena;
    float *region[PLAN_REGIONS];
    ExecParam *trainable, *all;
    size_t n_trainable, n_all;
    float inv_freq[2][ROPE_MAX_HD / 2];
    float rope_scale[2];
    uint64_t step;
    bool train; /* dropout on (exec_cpu_step) or off (exec_cpu_forward) */
};

float *exec_cpu_tensor(const ExecCpu *ex, int32_t id) {
    if (id < 0) return NULL;
    const PlanTensor *t = &ex->plan->tensors[id];
    return ex->region[t->region] + t->offset;
}

static int32_t *itensor(const ExecCpu *ex, int32_t id) {
    return (int32_t *)exec_cpu_tensor(ex, id);
}

ExecCpu *exec_cpu_new(const Plan *plan, uint64_t seed, char *err, size_t errlen) {
    int64_t bytes = plan_arena_bytes(plan);
    float *arena = calloc((size_t)bytes / sizeof(float) + 16, sizeof(float));
    if (!arena) {
        errf(err, errlen, "cannot allocate the %.1f MiB arena the plan needs",
             (double)bytes / (1 << 20));
        return NULL;
    }
    ExecCpu *ex = xcalloc(1, sizeof *ex);
    ex->plan = plan, ex->seed = seed, ex->arena = arena;
    float *at = arena;
    for (int r = 0; r < PLAN_REGIONS; r++) {
        ex->region[r] = at;
        at += plan->region_size[r];
    }
    exec_params_views(plan, ex->region[PLAN_PARAM], ex->region[PLAN_GRAD], &ex->all, &ex->n_all, &ex->trainable,
                      &ex->n_trainable);
    return ex;
}

void exec_cpu_free(ExecCpu *ex) {
    if (!ex) return;
    free(ex->arena);
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
    memset(ex->region[PLAN_GRAD], 0, (size_t)ex->plan->region_size[PLAN_GRAD] * sizeof(float));
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

bool exec_params_load_model(const Plan *plan, float *param_region, const char *path, char *err, size_t errlen) {
    StModel *m = st_open(path, err, errlen);
    if (!m) return false;
    bool ok = true;
    for (int32_t i = 0; i < plan->n_params && ok; i++) {
        const PlanParam *p = &plan->params[i];
        if (p->kind != PARAM_BASE) continue;
        const StTensor *t = st_find(m, p->source);
        if (!t)
            ok = errf(err, errlen,
                      "%s: no tensor %s; is this the model the trainer was "
                      "compiled for?",
                      path, p->source);
        else
            ok = read_tensor(t, p, param_region + plan->tensors[p->tensor].offset, path, err, errlen);
    }
    st_close(m);
    return ok;
}

void exec_params_init_lora(const Plan *plan, uint64_t seed, float *param_region) {
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        float *v = param_region + plan->tensors[p->tensor].offset;
        int64_t n = p->shape[0] * p->shape[1];
        if (p->kind == PARAM_LORA_B) memset(v, 0, (size_t)n * sizeof(float));
        if (p->kind != PARAM_LORA_A) continue;
        const float bound = (float)(1.0 / sqrt((double)p->shape[1]));
        const uint64_t purpose = rng_purpose(RNG_LORA_INIT, (uint32_t)p->adapter);
        for (int64_t k = 0; k < n; k++)
            v[k] = (2.0f * rng_uniform(seed, purpose, (uint64_t)k) - 1.0f) * bound;
    }
}

bool exec_params_load_adapter(const Plan *plan, float *param_region, const char *path, char *err, size_t errlen) {
    StModel *m = st_open(path, err, errlen);
    if (!m) return false;
    bool ok = true;
    for (int32_t i = 0; i < plan->n_params && ok; i++) {
        const PlanParam *p = &plan->params[i];
        bool adapter_owned =
            p->kind != PARAM_BASE || (p->trainable && strcmp(p->name, p->source) != 0);
        if (!adapter_owned) continue;
        const StTensor *t = st_find(m, p->name);
        if (!t)
            ok = errf(err, errlen,
                      "%s: no tensor %s; the adapter does not match the recipe's "
                      "lora_target/lora_rank",
                      path, p->name);
        else
            ok = read_tensor(t, p, param_region + plan->tensors[p->tensor].offset, path, err, errlen);
    }
    st_close(m);
    return ok;
}

void exec_params_views(const Plan *plan, float *param_region, float *grad_region, ExecParam **all, size_t *n_all,
                       ExecParam **trainable, size_t *n_trainable) {
    *all = xcalloc((size_t)plan->n_params + 1, sizeof **all);
    *trainable = xcalloc((size_t)plan->n_params + 1, sizeof **trainable);
    *n_all = *n_trainable = 0;
    for (int32_t i = 0; i < plan->n_params; i++) {
        const PlanParam *p = &plan->params[i];
        ExecParam e = {.name = p->name,
                       .value = param_region + plan->tensors[p->tensor].offset,
                       .grad = p->grad >= 0 ? grad_region + plan->tensors[p->grad].offset : NULL,
                       .numel = plan->tensors[p->tensor].numel,
                       .decay = p->decay,
                       .ndim = p->ndim,
                       .shape = {p->shape[0], p->shape[1]}};
        (*all)[(*n_all)++] = e;
        if (p->trainable) (*trainable)[(*n_trainable)++] = e;
    }
}

bool exec_cpu_load_model(ExecCpu *ex, const char *path, char *err, size_t errlen) {
    return exec_params_load_model(ex->plan, ex->region[PLAN_PARAM], path, err, errlen);
}

void exec_cpu_init_lora(ExecCpu *ex) { exec_params_init_lora(ex->plan, ex->seed, ex->region[PLAN_PARAM]); }

bool exec_cpu_load_adapter(ExecCpu *ex, const char *path, char *err, size_t errlen) {
    return exec_params_load_adapter(ex->plan, ex->region[PLAN_PARAM], path, err, errlen);
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

void exec_cpu_step(ExecCpu *ex, const ExecBatch *b, float grad_scale, ExecLoss *loss) {
    const Plan *p = ex->plan;
    assert(b->labels);
    prepare(ex, b);
    ex->train = true;
    for (int32_t i = 0; i < p->n_ops; i++) run_op(ex, &p->ops[i], grad_scale, loss, true);
}

const float *exec_cpu_forward(ExecCpu *ex, const ExecBatch *b, ExecLoss *loss) {
    const Plan *p = ex->plan;
    prepare(ex, b);
    ex->train = false;
    for (int32_t i = 0; i < p->n_forward; i++) run_op(ex, &p->ops[i], 0, NULL, false);
    if (b->labels && loss) run_op(ex, &p->ops[p->loss_op], 0, loss, false);
    return exec_cpu_tensor(ex, p->logits);
}
