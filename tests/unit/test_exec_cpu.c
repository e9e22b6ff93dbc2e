/* test_exec_cpu.c - one training step on the CPU executor against PyTorch + transformers + PEFT.
 *
 * The oracle: tests/fixtures/golden/CASE/ written by tests/golden/gen_model_fixtures.py (small
 * random llama, qwen2, qwen3, gemma, gemma2, gemma3_text, mistral models; B = 2 rows of T = 24
 * tokens, row 1 packing two sequences; transformers ran each sequence as its own forward).
 * For every case: logits, loss and the gradient of every trainable parameter, for full
 * fine-tuning and for LoRA on every linear layer (rank 4 or 8, one use_rslora case, one with
 * every norm as PEFT modules_to_save: additional_target norm). The error
 * of a tensor is max|ours - theirs| / max|theirs|; each must be < 1e-4, and the worst per case
 * is printed. Freeze tuning is checked against the full gradients of the parameters it trains;
 * LoRA dropout against PEFT running with llfc's own Philox masks; gradient checkpointing
 * against the same fixtures (it must change nothing but memory).
 * stories260K (a real pretrained Llama in ../shared): logits on a prompt, and llama2.c's greedy
 * story (200 tokens after BOS) reproduced as the argmax at every position, decoded by llfc's
 * tokenizer into exactly llama2.c's expected output.
 */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <omp.h>

#include "exec_cpu.h"
#include "graph.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "util.h"

#define TOL 1e-4
#define GOLDEN "tests/fixtures/golden/"

typedef struct {
    const char *name;
    int64_t lora_rank, lora_alpha; /* 0: no LoRA fixture */
    bool rslora;
    const char *modules_to_save; /* additional_target, or NULL */
} Case;

/* as gen_model_fixtures.py's CASES */
static const Case cases[] = {
    {"llama", 4, 8, false, NULL},         {"qwen2", 8, 16, true, NULL},
    {"qwen3", 4, 8, false, "norm"},       {"gemma", 4, 8, false, NULL},
    {"gemma2", 4, 8, false, NULL},        {"gemma3_text", 4, 8, false, NULL},
    {"llama_dynamic", 0, 0, false, NULL}, {"mistral_linear", 0, 0, false, NULL},
};

typedef struct {
    ModelSpec spec;
    StModel *want;
    int32_t *ids, *labels, *seq, *pos;
    int64_t B, T;
    char *dir;
} Golden;

static int32_t *read_ints(const StModel *m, const char *name, int64_t *B, int64_t *T) {
    const StTensor *t = st_find(m, name);
    if (!t) fail_msg("expected.safetensors: no %s", name);
    *B = t->shape[0], *T = t->shape[1];
    float *f = xmalloc((size_t)t->numel * sizeof(float));
    st_read_f32(t, f);
    int32_t *out = xmalloc((size_t)t->numel * sizeof(int32_t));
    for (int64_t i = 0; i < t->numel; i++) out[i] = (int32_t)lrintf(f[i]);
    free(f);
    return out;
}

static void golden_open(Golden *g, const char *name) {
    char err[ERR_LEN];
    memset(g, 0, sizeof *g);
    g->dir = xprintf(GOLDEN "%s", name);
    if (!model_load(&g->spec, g->dir, err, sizeof err)) fail_msg("%s", err);
    char *path = xprintf("%s/expected.safetensors", g->dir);
    g->want = st_open(path, err, sizeof err);
    free(path);
    if (!g->want) fail_msg("%s", err);
    g->ids = read_ints(g->want, "input_ids", &g->B, &g->T);
    g->labels = read_ints(g->want, "labels", &g->B, &g->T);
    g->seq = read_ints(g->want, "seq", &g->B, &g->T);
    g->pos = read_ints(g->want, "pos", &g->B, &g->T);
}

static void golden_close(Golden *g) {
    model_free(&g->spec);
    st_close(g->want);
    free(g->ids), free(g->labels), free(g->seq), free(g->pos), free(g->dir);
}

/* max|got - want| / max|want| */
static double rel_err_of(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)got[i] - want[i]));
        den = fmax(den, fabs((double)want[i]));
    }
    return den > 0 ? num / den : num;
}

static double rel_err(const float *got, const StTensor *want) {
    float *w = xmalloc((size_t)want->numel * sizeof(float));
    st_read_f32(want, w);
    double e = rel_err_of(got, w, want->numel);
    free(w);
    return e;
}

typedef struct {
    double worst;
    char what[160];
    int checked;
} Worst;

static void check(Worst *w, const char *what, double err) {
    w->checked++;
    if (err > w->worst) {
        w->worst = err;
        snprintf(w->what, sizeof w->what, "%s", what);
    }
    if (!(err < TOL)) fail_msg("%s: relative error %.3g (tolerance %g)", what, err, TOL);
}

static const StTensor *want_tensor(const Golden *g, const char *name) {
    const StTensor *t = st_find(g->want, name);
    if (!t) fail_msg("%s/expected.safetensors: no %s", g->dir, name);
    return t;
}

/* One step with the given options; every trainable parameter's gradient must be in the
 * fixture under PREFIX.grad.NAME (NAME as the plan names it, or its HF source name). */
static void run_step(const char *case_name, const GraphOptions *o, const char *prefix,
                     const char *logits_prefix, bool load_adapter, int expect_grads) {
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, case_name);
    GraphOptions opt = *o;
    opt.B = g.B, opt.T = g.T;
    Plan *p = graph_build(&opt, &g.spec, err, sizeof err);
    if (!p) fail_msg("%s: %s", case_name, err);
    ExecCpu *ex = exec_cpu_new(p, 42, err, sizeof err);
    assert_non_null(ex);
    if (!exec_cpu_load_model(ex, g.dir, err, sizeof err)) fail_msg("%s", err);
    if (load_adapter) {
        char *ap = xprintf("%s/adapter.safetensors", g.dir);
        if (!exec_cpu_load_adapter(ex, ap, err, sizeof err)) fail_msg("%s", err);
        free(ap);
    }
    ExecBatch batch = {.input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos};
    assert_true(exec_cpu_check_batch(ex, &batch, err, sizeof err));
    Worst w = {0};
    char what[256];

    // forward only: logits and loss
    ExecLoss fl;
    const float *logits = exec_cpu_forward(ex, &batch, &fl, NULL, 0);
    snprintf(what, sizeof what, "%s %s.logits", case_name, logits_prefix);
    char key[PLAN_NAME_LEN + 32];
    snprintf(key, sizeof key, "%s.logits", logits_prefix);
    check(&w, what, rel_err(logits, want_tensor(&g, key)));

    // the step: loss and gradients
    exec_cpu_zero_grad(ex);
    ExecLoss loss;
    exec_cpu_step(ex, &batch, 0, &loss, NULL, 0);
    snprintf(key, sizeof key, "%s.loss", prefix);
    float want_loss = st_get_f32(want_tensor(&g, key), 0);
    snprintf(key, sizeof key, "%s.count", prefix);
    assert_int_equal(loss.count, (int64_t)st_get_f32(want_tensor(&g, key), 0));
    snprintf(what, sizeof what, "%s %s.loss", case_name, prefix);
    check(&w, what, fabs(loss.loss - want_loss) / fabs(want_loss));
    if (strcmp(prefix, logits_prefix) == 0) /* else dropout: training and eval differ */
        assert_true(fabs(fl.loss - loss.loss) < 1e-6 * fabs(loss.loss));

    size_t n;
    const ExecParam *params = exec_cpu_params(ex, &n);
    assert_int_equal((int)n, expect_grads);
    for (size_t i = 0; i < n; i++) {
        const PlanParam *pp = NULL;
        for (int32_t k = 0; k < p->n_params; k++)
            if (strcmp(p->params[k].name, params[i].name) == 0) pp = &p->params[k];
        assert_non_null(pp);
        snprintf(key, sizeof key, "%s.grad.%s", prefix, params[i].name);
        const StTensor *t = st_find(g.want, key);
        if (!t) { /* modules_to_save and freeze: the HF name */
            snprintf(key, sizeof key, "%s.grad.%s", prefix, pp->source);
            t = want_tensor(&g, key);
        }
        assert_int_equal(t->numel, params[i].numel);
        snprintf(what, sizeof what, "%s %s", case_name, key);
        check(&w, what, rel_err(params[i].grad, t));
    }
    printf("[ %-13s ] %-5s %2d tensors, worst relative error %.2e (%s)\n", case_name, prefix,
           w.checked, w.worst, w.what);
    exec_cpu_free(ex);
    plan_free(p);
    golden_close(&g);
}

static int count_prefix(const char *case_name, const char *prefix) {
    Golden g;
    golden_open(&g, case_name);
    int n = 0;
    size_t len = strlen(prefix);
    for (size_t i = 0; i < g.want->n_tensors; i++)
        n += strncmp(g.want->tensors[i].name, prefix, len) == 0;
    golden_close(&g);
    return n;
}

static const char *all_linear[] = {"all"};

static void test_full(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        GraphOptions o = {.finetune = FT_FULL};
        run_step(cases[i].name, &o, "full", "full", false,
                 count_prefix(cases[i].name, "full.grad."));
    }
}

static void test_lora(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const Case *c = &cases[i];
        if (!c->lora_rank) continue;
        GraphOptions o = {.finetune = FT_LORA,
                          .lora_rank = c->lora_rank,
                          .lora_alpha = (double)c->lora_alpha,
                          .use_rslora = c->rslora,
                          .lora_target = all_linear,
                          .n_lora_target = 1};
        if (c->modules_to_save)
            o.additional_target = &c->modules_to_save, o.n_additional_target = 1;
        run_step(c->name, &o, "lora", "lora", true, count_prefix(c->name, "lora.grad."));
    }
}

/* LoRA dropout 0.25: transformers + PEFT with PEFT's dropout replaced by llfc's Philox mask
 * (reimplemented in the fixture script), the step's seed 42 and step 0; evaluation (forward
 * only) has no dropout and equals the plain LoRA logits. */
static void test_lora_dropout_matches_peft(void **state) {
    (void)state;
    GraphOptions o = {.finetune = FT_LORA,
                      .lora_rank = 4,
                      .lora_alpha = 8,
                      .lora_dropout = 0.25,
                      .lora_target = all_linear,
                      .n_lora_target = 1};
    run_step("llama", &o, "lora_dropout", "lora", true,
             count_prefix("llama", "lora_dropout.grad."));
}

/* Gradient checkpointing changes where activations come from, never the numbers: full, LoRA
 * with dropout (the rerun draws the same masks) and freeze, each against transformers. */
static void test_checkpointing(void **state) {
    (void)state;
    GraphOptions o = {.finetune = FT_FULL, .checkpoint_layers = true};
    run_step("gemma2", &o, "full", "full", false, count_prefix("gemma2", "full.grad."));
    run_step("qwen2", &o, "full", "full", false, count_prefix("qwen2", "full.grad."));
    GraphOptions l = {.finetune = FT_LORA,
                      .lora_rank = 4,
                      .lora_alpha = 8,
                      .lora_target = all_linear,
                      .n_lora_target = 1,
                      .checkpoint_layers = true};
    run_step("llama", &l, "lora", "lora", true, count_prefix("llama", "lora.grad."));
    l.lora_dropout = 0.25;
    run_step("llama", &l, "lora_dropout", "lora", true,
             count_prefix("llama", "lora_dropout.grad."));
    static const char *mlp[] = {"mlp"};
    GraphOptions f = {.finetune = FT_FREEZE,
                      .freeze_trainable_layers = 1,
                      .freeze_trainable_modules = mlp,
                      .n_freeze_trainable_modules = 1,
                      .checkpoint_layers = true};
    run_step("gemma3_text", &f, "full", "full", false, 3);
}

/* freeze: the last layer's MLP plus embed_tokens; gradients equal full fine-tuning's for those
 * parameters (the backward stops where nothing below needs a gradient) */
static void test_freeze(void **state) {
    (void)state;
    static const char *mods[] = {"mlp"}, *extra[] = {"embed_tokens"};
    GraphOptions o = {.finetune = FT_FREEZE,
                      .freeze_trainable_layers = 1,
                      .freeze_trainable_modules = mods,
                      .n_freeze_trainable_modules = 1,
                      .freeze_extra_modules = extra,
                      .n_freeze_extra_modules = 1};
    run_step("llama", &o, "full", "full", false, 4); /* layer 1 gate, up, down + embed_tokens */
    run_step("gemma2", &o, "full", "full", false, 4);
    static const char *all[] = {"all"};
    GraphOptions o2 = {.finetune = FT_FREEZE,
                       .freeze_trainable_layers = -1,
                       .freeze_trainable_modules = all,
                       .n_freeze_trainable_modules = 1};
    run_step("qwen3", &o2, "full", "full", false,
             11); /* layer 0: q,k,v,o, q/k norms, 3 mlp, 2 norms */
}

/* Gradient accumulation: two half-scaled steps equal one step of the mean. */
static void test_accumulation(void **state) {
    (void)state;
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, "qwen2");
    GraphOptions o = {.finetune = FT_FULL, .B = g.B, .T = g.T};
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    ExecCpu *ex = exec_cpu_new(p, 1, err, sizeof err);
    assert_true(exec_cpu_load_model(ex, g.dir, err, sizeof err));
    ExecBatch batch = {.input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos};
    ExecLoss loss;
    exec_cpu_step(ex, &batch, 0, &loss, NULL, 0);
    exec_cpu_zero_grad(ex);
    float half = 0.5f / (float)loss.count;
    exec_cpu_step(ex, &batch, half, &loss, NULL, 0);
    exec_cpu_step(ex, &batch, half, &loss, NULL, 0);
    size_t n;
    const ExecParam *params = exec_cpu_params(ex, &n);
    for (size_t i = 0; i < n; i++) {
        char key[PLAN_NAME_LEN + 16];
        snprintf(key, sizeof key, "full.grad.%s", params[i].name);
        double e = rel_err(params[i].grad, want_tensor(&g, key));
        if (!(e < TOL)) fail_msg("accumulated %s: %.3g", key, e);
    }
    exec_cpu_free(ex);
    plan_free(p);
    golden_close(&g);
}

/* ZeRO-3 as rank 0 of 2, the other rank simulated: it owns every other parameter, sends the
 * whole executor's values when asked, and adds nothing to the gradients (all the data is here).
 * Then the sharded executor must give the whole one's loss and logits bit for bit, its own
 * gradients bit for bit, the gradients it sends the other rank to rounding, and gather each
 * layer at most twice a step (two layer windows, least recently used out). */
typedef struct {
    const ExecParam *whole; /* the whole executor's parameters, plan order */
    float **sent;           /* per parameter: the gradient sent to its owner, summed */
    int *owner;
    int64_t reduces;
} OtherRank;

static bool other_gather(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    OtherRank *o = ctx;
    (void)err, (void)errlen;
    if (owner != 0) memcpy(buf, o->whole[param].value, (size_t)n * sizeof(float));
    return true;
}

static bool other_reduce(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    OtherRank *o = ctx;
    (void)err, (void)errlen;
    o->reduces++;
    if (owner == 0) return true; // the other rank's part is zero
    if (!o->sent[param]) o->sent[param] = xcalloc((size_t)n, sizeof(float));
    for (int64_t k = 0; k < n; k++) o->sent[param][k] += buf[k];
    return true;
}

static bool other_collect(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    return other_gather(ctx, param, owner, buf, n, err, errlen);
}

static void sharded_case(const char *name, const GraphOptions *o0, bool adapter) {
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, name);
    GraphOptions o = *o0;
    o.B = g.B, o.T = g.T;
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    OtherRank other = {.sent = xcalloc((size_t)p->n_params, sizeof(float *)),
                       .owner = xcalloc((size_t)p->n_params, sizeof(int))};
    for (int32_t i = 0; i < p->n_params; i++) other.owner[i] = i % 2;
    ExecShard cfg = {0, other.owner, &other, other_gather, other_reduce, other_collect};
    ExecCpu *whole = exec_cpu_new(p, 5, err, sizeof err), *mine = exec_cpu_new_sharded(p, 5, &cfg, err, sizeof err);
    assert_non_null(mine);
    char *ap = xprintf("%s/adapter.safetensors", g.dir);
    ExecCpu *both[2] = {whole, mine};
    for (int k = 0; k < 2; k++) {
        assert_true(exec_cpu_load_model(both[k], g.dir, err, sizeof err));
        if (adapter) assert_true(exec_cpu_load_adapter(both[k], ap, err, sizeof err));
    }
    free(ap);
    size_t n_all, n;
    other.whole = exec_cpu_all_params(whole, &n_all);
    const ExecParam *mine_all = exec_cpu_all_params(mine, &n_all);
    for (size_t i = 0; i < n_all; i++) assert_true((mine_all[i].value != NULL) == (i % 2 == 0));
    ExecBatch batch = {.input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos, .step = 2};
    ExecLoss lw, lm;
    for (int step = 0; step < 2; step++) { // two micro-batches accumulate
        exec_cpu_step(whole, &batch, 0.5f / 40, &lw, NULL, 0);
        assert_true(exec_cpu_step(mine, &batch, 0.5f / 40, &lm, err, sizeof err));
        assert_true(lw.loss_sum == lm.loss_sum);
    }
    const ExecParam *wp = exec_cpu_params(whole, &n), *mp = exec_cpu_params(mine, &n);
    double worst = 0;
    for (int32_t i = 0, t = 0; i < p->n_params; i++) {
        if (!p->params[i].trainable) continue;
        if (i % 2 == 0) {
            assert_memory_equal(mp[t].grad, wp[t].grad, (size_t)wp[t].numel * sizeof(float));
        } else {
            assert_null(mp[t].grad);
            assert_non_null(other.sent[i]);
            double e = rel_err_of(other.sent[i], wp[t].grad, wp[t].numel);
            if (!(e < 1e-5)) fail_msg("%s: gradient sent to its owner off by %.3g", wp[t].name, e);
            worst = e > worst ? e : worst;
        }
        t++;
    }
    assert_int_equal(other.reduces, 2 * (int64_t)n); // every gradient once per micro-batch
    // per step: the group outside the layers once, L layers forward, and backward all but the
    // last two again (still in the windows)
    assert_int_equal(exec_cpu_gathers(mine), 2 * (1 + 2 * p->L - 2));
    const float *lg = exec_cpu_forward(mine, &batch, NULL, err, sizeof err);
    assert_non_null(lg);
    float *copy = xmalloc((size_t)(p->B * p->T * p->V) * sizeof(float));
    memcpy(copy, lg, (size_t)(p->B * p->T * p->V) * sizeof(float));
    assert_memory_equal(copy, exec_cpu_forward(whole, &batch, NULL, NULL, 0), (size_t)(p->B * p->T * p->V) * sizeof(float));
    free(copy);
    // rank 0 collects every value for a checkpoint, and lets go of the copy after
    assert_true(exec_cpu_collect(mine, err, sizeof err));
    mine_all = exec_cpu_all_params(mine, &n_all);
    for (size_t i = 0; i < n_all; i++)
        assert_memory_equal(mine_all[i].value, other.whole[i].value, (size_t)mine_all[i].numel * sizeof(float));
    exec_cpu_uncollect(mine);
    assert_null(exec_cpu_all_params(mine, &n_all)[1].value);
    ExecMemory mw, mm;
    exec_cpu_memory(whole, &mw);
    exec_cpu_memory(mine, &mm);
    printf("  %s: gradients sent within %.2e; weights %.1f KiB of %.1f, windows %.1f KiB\n", name, worst,
           (double)mm.weights / 1024, (double)mw.weights / 1024, (double)mm.windows / 1024);
    assert_true(mm.weights < mw.weights && mm.gradients < mw.gradients);
    for (int32_t i = 0; i < p->n_params; i++) free(other.sent[i]);
    free(other.sent);
    free(other.owner);
    exec_cpu_free(whole);
    exec_cpu_free(mine);
    plan_free(p);
    golden_close(&g);
}

static void test_sharded_equals_whole(void **state) {
    (void)state;
    GraphOptions full = {.finetune = FT_FULL};
    sharded_case("qwen2", &full, false);
    GraphOptions lora = {.finetune = FT_LORA, .lora_rank = 4, .lora_alpha = 8, .lora_dropout = 0.1,
                         .lora_target = all_linear, .n_lora_target = 1, .checkpoint_layers = true};
    sharded_case("gemma2", &lora, true);
}

/* The overlap signal: each group's gradients are reported once, layers from the last down and
 * then those outside the layers, and at that moment they already hold their final values. */
typedef struct {
    const Plan *plan;
    const ExecParam *params;
    size_t n;
    int32_t order[64], n_order;
    float **seen; /* per trainable parameter: its gradient when its group was reported */
} GradsWatch;

static void watch_grads(void *ctx, int32_t group) {
    GradsWatch *w = ctx;
    w->order[w->n_order++] = group;
    for (int32_t i = 0, t = 0; i < w->plan->n_params; i++) {
        if (!w->plan->params[i].trainable) continue;
        if (w->plan->params[i].layer + 1 == group) {
            w->seen[t] = xmalloc((size_t)w->params[t].numel * sizeof(float));
            memcpy(w->seen[t], w->params[t].grad, (size_t)w->params[t].numel * sizeof(float));
        }
        t++;
    }
}

static void test_grads_ready_signal(void **state) {
    (void)state;
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, "gemma2");
    GraphOptions o = {.finetune = FT_FULL, .B = g.B, .T = g.T};
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    ExecCpu *ex = exec_cpu_new(p, 1, err, sizeof err);
    assert_true(exec_cpu_load_model(ex, g.dir, err, sizeof err));
    GradsWatch w = {.plan = p};
    w.params = exec_cpu_params(ex, &w.n);
    w.seen = xcalloc(w.n, sizeof *w.seen);
    exec_cpu_on_grads(ex, watch_grads, &w);
    ExecBatch batch = {.input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos};
    ExecLoss loss;
    assert_true(exec_cpu_step(ex, &batch, 0, &loss, err, sizeof err));
    assert_int_equal(w.n_order, p->L + 1);
    for (int32_t k = 0; k < w.n_order; k++) assert_int_equal(w.order[k], k < p->L ? p->L - k : 0);
    for (size_t t = 0; t < w.n; t++) {
        assert_non_null(w.seen[t]);
        assert_memory_equal(w.seen[t], w.params[t].grad, (size_t)w.params[t].numel * sizeof(float));
        free(w.seen[t]);
    }
    free(w.seen);
    exec_cpu_free(ex);
    plan_free(p);
    golden_close(&g);
}

/* The same step on 1 and 2 threads gives the same bits (the kernels split work so that no sum
 * depends on the thread count). */
static void test_threads_bitwise(void **state) {
    (void)state;
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, "gemma3_text");
    GraphOptions o = {.finetune = FT_LORA,
                      .B = g.B,
                      .T = g.T,
                      .lora_rank = 4,
                      .lora_alpha = 8,
                      .lora_dropout = 0.1,
                      .lora_target = all_linear,
                      .n_lora_target = 1};
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    ExecBatch batch = {
        .input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos, .step = 3};
    float *grads[2];
    double losses[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        ExecCpu *ex = exec_cpu_new(p, 5, err, sizeof err);
        assert_true(exec_cpu_load_model(ex, g.dir, err, sizeof err));
        char *ap = xprintf("%s/adapter.safetensors", g.dir);
        assert_true(exec_cpu_load_adapter(ex, ap, err, sizeof err));
        free(ap);
        ExecLoss loss;
        exec_cpu_step(ex, &batch, 0, &loss, NULL, 0);
        exec_cpu_step(ex, &batch, 0, &loss, NULL, 0);
        losses[k] = loss.loss;
        grads[k] = xmalloc((size_t)p->region_size[PLAN_GRAD] * sizeof(float));
        size_t n, at = 0;
        const ExecParam *params = exec_cpu_params(ex, &n);
        for (size_t i = 0; i < n; i++) {
            memcpy(grads[k] + at, params[i].grad, (size_t)params[i].numel * sizeof(float));
            at += (size_t)params[i].numel;
        }
        exec_cpu_free(ex);
    }
    omp_set_num_threads(saved);
    assert_true(losses[0] == losses[1]);
    assert_memory_equal(grads[0], grads[1], (size_t)p->region_size[PLAN_GRAD] * sizeof(float));
    free(grads[0]), free(grads[1]);
    plan_free(p);
    golden_close(&g);
}

/* PEFT's init: B = 0 (so the adapter starts as the identity), A ~ U(-1/sqrt(in), 1/sqrt(in)),
 * the same for the same seed, different for another. */
static void test_lora_init(void **state) {
    (void)state;
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, "llama");
    GraphOptions o = {.finetune = FT_LORA,
                      .B = g.B,
                      .T = g.T,
                      .lora_rank = 4,
                      .lora_target = all_linear,
                      .n_lora_target = 1};
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    ExecCpu *a = exec_cpu_new(p, 7, err, sizeof err), *b = exec_cpu_new(p, 7, err, sizeof err);
    ExecCpu *c = exec_cpu_new(p, 8, err, sizeof err);
    exec_cpu_init_lora(a), exec_cpu_init_lora(b), exec_cpu_init_lora(c);
    size_t n;
    const ExecParam *pa = exec_cpu_params(a, &n), *pb = exec_cpu_params(b, &n),
                    *pc = exec_cpu_params(c, &n);
    assert_int_equal((int)n, 28);
    for (size_t i = 0; i < n; i++) {
        bool is_a = strstr(pa[i].name, "lora_A") != NULL;
        double bound = 1.0 / sqrt((double)pa[i].shape[1]), mx = 0, mean = 0;
        assert_memory_equal(pa[i].value, pb[i].value, (size_t)pa[i].numel * sizeof(float));
        for (int64_t k = 0; k < pa[i].numel; k++) {
            mx = fmax(mx, fabs(pa[i].value[k]));
            mean += pa[i].value[k];
            if (!is_a) assert_true(pa[i].value[k] == 0.0f);
        }
        if (!is_a) continue;
        assert_true(mx <= bound && mx > 0.8 * bound);
        assert_true(fabs(mean / (double)pa[i].numel) < 0.3 * bound);
        assert_memory_not_equal(pa[i].value, pc[i].value, (size_t)pa[i].numel * sizeof(float));
    }
    // with B = 0 the adapted model's logits are the base model's
    assert_true(exec_cpu_load_model(a, g.dir, err, sizeof err));
    ExecBatch batch = {.input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos};
    const float *logits = exec_cpu_forward(a, &batch, NULL, NULL, 0);
    double e = rel_err(logits, want_tensor(&g, "full.logits"));
    assert_true(e < TOL);
    exec_cpu_free(a), exec_cpu_free(b), exec_cpu_free(c);
    plan_free(p);
    golden_close(&g);
}

/* LoRA dropout: deterministic for a step, different across steps, and p = 0 equals no dropout */
static void test_lora_dropout(void **state) {
    (void)state;
    char err[ERR_LEN];
    Golden g;
    golden_open(&g, "llama");
    GraphOptions o = {.finetune = FT_LORA,
                      .B = g.B,
                      .T = g.T,
                      .lora_rank = 4,
                      .lora_alpha = 8,
                      .lora_dropout = 0.25,
                      .lora_target = all_linear,
                      .n_lora_target = 1};
    Plan *p = graph_build(&o, &g.spec, err, sizeof err);
    assert_non_null(p);
    ExecCpu *ex = exec_cpu_new(p, 3, err, sizeof err);
    assert_true(exec_cpu_load_model(ex, g.dir, err, sizeof err));
    char *ap = xprintf("%s/adapter.safetensors", g.dir);
    assert_true(exec_cpu_load_adapter(ex, ap, err, sizeof err));
    free(ap);
    ExecBatch batch = {
        .input_ids = g.ids, .labels = g.labels, .seq = g.seq, .pos = g.pos, .step = 1};
    ExecLoss l1, l2, l3;
    exec_cpu_step(ex, &batch, 0, &l1, NULL, 0);
    exec_cpu_step(ex, &batch, 0, &l2, NULL, 0);
    batch.step = 2;
    exec_cpu_step(ex, &batch, 0, &l3, NULL, 0);
    assert_true(l1.loss == l2.loss);
    assert_true(l1.loss != l3.loss);
    float want = st_get_f32(want_tensor(&g, "lora.loss"), 0);
    assert_true(fabs(l1.loss - want) > 1e-5 && fabs(l1.loss - want) < 0.5);
    // a token or label outside the vocabulary is refused by the batch check
    int32_t saved = g.ids[7];
    g.ids[7] = (int32_t)g.spec.V;
    assert_false(exec_cpu_check_batch(ex, &batch, err, sizeof err));
    assert_non_null(strstr(err, "row 0, token 7: id 256 is outside"));
    g.ids[7] = saved;
    g.labels[30] = -5;
    assert_false(exec_cpu_check_batch(ex, &batch, err, sizeof err));
    assert_non_null(strstr(err, "row 1, token 6: label -5"));
    exec_cpu_free(ex);
    plan_free(p);
    golden_close(&g);
}

/* stories260K: logits on a prompt against transformers, and llama2.c's greedy story */
static void test_stories260k(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "models/stories260K/hf");
    char err[ERR_LEN];
    ModelSpec spec;
    if (!model_load(&spec, dir, err, sizeof err)) fail_msg("%s", err);
    StModel *want = st_open(GOLDEN "stories260k/expected.safetensors", err, sizeof err);
    assert_non_null(want);
    const char *names[] = {"prompt", "greedy"};
    for (int k = 0; k < 2; k++) {
        int64_t B, T;
        int32_t *ids = read_ints(want, names[k], &B, &T);
        int32_t *seq = xcalloc((size_t)T, sizeof(int32_t)),
                *pos = xmalloc((size_t)T * sizeof(int32_t));
        for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
        GraphOptions o = {.finetune = FT_FULL, .B = 1, .T = T};
        Plan *p = graph_build(&o, &spec, err, sizeof err);
        ExecCpu *ex = exec_cpu_new(p, 0, err, sizeof err);
        if (!exec_cpu_load_model(ex, dir, err, sizeof err)) fail_msg("%s", err);
        ExecBatch batch = {.input_ids = ids, .seq = seq, .pos = pos};
        const float *logits = exec_cpu_forward(ex, &batch, NULL, NULL, 0);
        if (k == 0) {
            double e = rel_err(logits, st_find(want, "prompt.logits"));
            printf("[ stories260K  ] prompt of %" PRId64 " tokens: logits relative error %.2e\n", T,
                   e);
            assert_true(e < TOL);
        } else {
            int64_t same = 0;
            for (int64_t t = 0; t + 1 < T; t++) {
                const float *row = logits + t * spec.V;
                int32_t best = 0;
                for (int32_t v = 1; v < spec.V; v++) best = row[v] > row[best] ? v : best;
                if (best != ids[t + 1])
                    fail_msg("greedy token %" PRId64 ": %d, llama2.c says %d", t + 1, best,
                             ids[t + 1]);
                same++;
            }
            // and those tokens are llama2.c's story: its expected output, byte for byte
            SHARED_OR_SKIP(expected_path,
                           "models/stories260K/llama2c_test_all_expected_stdout.txt");
            size_t want_len;
            char *want_text = util_read_file(expected_path, &want_len, err, sizeof err);
            assert_non_null(want_text);
            Tokenizer *tok = tok_load(dir, err, sizeof err);
            if (!tok) fail_msg("%s", err);
            StrBuf text = {0};
            assert_true(tok_decode(tok, ids + 1, (size_t)T - 1, false, &text, err, sizeof err));
            if (text.len != want_len || memcmp(text.data, want_text, text.len) != 0)
                fail_msg("decoded greedy story differs from llama2.c's:\n%s", text.data);
            printf("[ stories260K  ] %zu bytes of llama2.c's expected output reproduced\n",
                   text.len);
            sb_free(&text);
            tok_free(tok);
            free(want_text);
            free(expected_path);
            printf("[ stories260K  ] greedy decoding: %" PRId64 "/%" PRId64 " tokens as llama2.c\n",
                   same, T - 1);
        }
        exec_cpu_free(ex);
        plan_free(p);
        free(ids), free(seq), free(pos);
    }
    st_close(want);
    model_free(&spec);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_sharded_equals_whole),
        cmocka_unit_test(test_grads_ready_signal),
        cmocka_unit_test(test_lora_init),
        cmocka_unit_test(test_lora_dropout),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_lora_dropout_matches_peft),
        cmocka_unit_test(test_checkpointing),
        cmocka_unit_test(test_stories260k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
