/* test_graph.c - the Plan: what trains (against LLaMA-Factory + PEFT), the memory plan, FLOPs,
 * the byte format, and the recipe's keys.
 *
 * Oracles: tests/fixtures/golden/trainable.json, where LLaMA-Factory's own init_adapter (with
 * PEFT) listed the trainable parameters and HF Trainer the decayed ones for several
 * finetuning_type / freeze_* / lora_target / additional_target settings
 * (tests/golden/gen_model_fixtures.py); FLOPs against the closed-form count from the model's
 * shapes; the memory plan against its invariants (every read sees the value its writer left).
 */
#include "testutil.h"

#include <inttypes.h>

#include "graph.h"
#include "json.h"
#include "model.h"
#include "recipe.h"
#include "util.h"

#define GOLDEN "tests/fixtures/golden/"

static Plan *build(const char *case_name, const GraphOptions *o, ModelSpec *spec) {
    char err[ERR_LEN];
    char *dir = xprintf(GOLDEN "%s", case_name);
    if (!model_load(spec, dir, err, sizeof err)) fail_msg("%s", err);
    free(dir);
    Plan *p = graph_build(o, spec, err, sizeof err);
    if (!p) fail_msg("%s: %s", case_name, err);
    return p;
}

// --- what trains, as LLaMA-Factory decides

typedef struct {
    char *buf;
    const char *items[64];
    size_t n;
} Split;

static void split(Split *s, const char *csv) {
    s->buf = xstrdup(csv);
    s->n = 0;
    for (char *tok = strtok(s->buf, ","); tok && s->n < 64; tok = strtok(NULL, ","))
        s->items[s->n++] = tok;
}

static void options_from_args(const Json *args, GraphOptions *o, Split sp[4]) {
    const char *ft = json_as_str(json_get(args, "finetuning_type"));
    *o = (GraphOptions){.B = 1, .T = 8, .lora_rank = 8, .freeze_trainable_layers = 2};
    o->finetune = strcmp(ft, "full") == 0     ? FT_FULL
                  : strcmp(ft, "freeze") == 0 ? FT_FREEZE
                                              : FT_LORA;
    const char *keys[4] = {"lora_target", "additional_target", "freeze_trainable_modules",
                           "freeze_extra_modules"};
    const char *defaults[4] = {"all", NULL, "all", NULL}; /* LLaMA-Factory's */
    for (int k = 0; k < 4; k++) {
        const char *v = json_as_str(json_get(args, keys[k]));
        if (!v) v = defaults[k];
        sp[k].n = 0, sp[k].buf = NULL;
        if (v) split(&sp[k], v);
    }
    o->lora_target = sp[0].items, o->n_lora_target = sp[0].n;
    o->additional_target = sp[1].items, o->n_additional_target = sp[1].n;
    o->freeze_trainable_modules = sp[2].items, o->n_freeze_trainable_modules = sp[2].n;
    o->freeze_extra_modules = sp[3].items, o->n_freeze_extra_modules = sp[3].n;
    int64_t n;
    if (json_as_int(json_get(args, "freeze_trainable_layers"), &n)) o->freeze_trainable_layers = n;
}

static void test_trainable_matches_llamafactory(void **state) {
    (void)state;
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(GOLDEN "trainable.json", &len, err, sizeof err);
    assert_non_null(text);
    JsonDoc *doc = json_parse(text, len, "trainable.json", err, sizeof err);
    assert_non_null(doc);
    const Json *root = json_root(doc);
    for (size_t i = 0; i < root->arr.n; i++) {
        const Json *e = json_at(root, i);
        const char *case_name = json_as_str(json_get(e, "case"));
        GraphOptions o;
        Split sp[4];
        options_from_args(json_get(e, "args"), &o, sp);
        ModelSpec spec;
        Plan *p = build(case_name, &o, &spec);
        const Json *want = json_get(e, "trainable"), *decay = json_get(e, "decay");
        size_t k = 0, nd = 0;
        for (int32_t j = 0; j < p->n_params; j++) {
            const PlanParam *q = &p->params[j];
            if (!q->trainable) continue;
            if (k >= want->arr.n)
                fail_msg("entry %zu (%s): %s trains; LLaMA-Factory trains only %zu", i, case_name,
                         q->name, want->arr.n);
            const char *w = json_as_str(json_at(want, k));
            if (strcmp(q->name, w) != 0)
                fail_msg("entry %zu (%s): trainable #%zu is %s; LLaMA-Factory says %s", i,
                         case_name, k, q->name, w);
            bool want_decay = false;
            for (size_t d = 0; d < decay->arr.n; d++)
                want_decay |= strcmp(json_as_str(json_at(decay, d)), w) == 0;
            if (q->decay != want_decay)
                fail_msg("entry %zu: %s: decay %d, HF Trainer says %d", i, w, q->decay, want_decay);
            nd += q->decay;
            k++;
        }
        if (k != want->arr.n)
            fail_msg("entry %zu (%s): %zu trainable, LLaMA-Factory says %zu", i, case_name, k,
                     want->arr.n);
        assert_int_equal(nd, decay->arr.n);
        plan_free(p);
        model_free(&spec);
        for (int s = 0; s < 4; s++) free(sp[s].buf);
    }
    printf("[ trainable ] %zu settings as LLaMA-Factory + PEFT + HF Trainer\n", root->arr.n);
    json_free(doc);
    free(text);
}

static void test_errors_name_the_key(void **state) {
    (void)state;
    char err[ERR_LEN];
    ModelSpec spec;
    char *dir = xprintf(GOLDEN "llama");
    assert_true(model_load(&spec, dir, err, sizeof err));
    free(dir);
    static const char *bad_mod[] = {"attention"}, *bad_extra[] = {"final_norm"},
                      *bad_lora[] = {"lm_head"};
    static const char *q[] = {"q_proj"}, *all[] = {"all"};
    GraphOptions o = {.finetune = FT_FREEZE,
                      .B = 1,
                      .T = 4,
                      .freeze_trainable_layers = 1,
                      .freeze_trainable_modules = bad_mod,
                      .n_freeze_trainable_modules = 1};
    assert_null(graph_build(&o, &spec, err, sizeof err));
    assert_non_null(strstr(err, "freeze_trainable_modules: module 'attention' is not found"));
    assert_non_null(strstr(err, "self_attn"));
    o.freeze_trainable_modules = all, o.freeze_extra_modules = bad_extra,
    o.n_freeze_extra_modules = 1;
    assert_null(graph_build(&o, &spec, err, sizeof err));
    assert_non_null(strstr(err, "freeze_extra_modules: module 'final_norm' is not found"));
    o.freeze_extra_modules = NULL, o.n_freeze_extra_modules = 0, o.freeze_trainable_layers = 0;
    assert_null(graph_build(&o, &spec, err, sizeof err));
    assert_non_null(strstr(err, "nothing trains"));
    GraphOptions l = {.finetune = FT_LORA,
                      .B = 1,
                      .T = 4,
                      .lora_rank = 4,
                      .lora_target = bad_lora,
                      .n_lora_target = 1};
    assert_null(graph_build(&l, &spec, err, sizeof err));
    assert_non_null(strstr(err, "lora_target: 'lm_head'"));
    l.lora_target = q, l.additional_target = q, l.n_additional_target = 1;
    assert_null(graph_build(&l, &spec, err, sizeof err));
    assert_non_null(strstr(err, "additional_target"));
    l.additional_target = NULL, l.n_additional_target = 0, l.lora_rank = 0;
    assert_null(graph_build(&l, &spec, err, sizeof err));
    assert_non_null(strstr(err, "lora_rank"));
    model_free(&spec);
}

// --- the memory plan

/* Every ACT tensor lies in its region; two whose lives overlap never share a byte; and every
 * read of an activation comes after an op wrote it (so sharing never loses a live value). */
static void check_memory(const Plan *p) {
    for (int32_t i = 0; i < p->n_tensors; i++) {
        const PlanTensor *a = &p->tensors[i];
        assert_true(a->offset >= 0 && a->offset + a->numel <= p->region_size[a->region]);
        assert_true(a->offset % PLAN_ALIGN == 0);
        if (a->region != PLAN_ACT) continue;
        for (int32_t j = i + 1; j < p->n_tensors; j++) {
            const PlanTensor *b = &p->tensors[j];
            if (b->region != PLAN_ACT || b->last < a->first || a->last < b->first) continue;
            if (!(a->offset + a->numel <= b->offset || b->offset + b->numel <= a->offset))
                fail_msg("%s [%d, %d] and %s [%d, %d] overlap in memory", a->name, a->first,
                         a->last, b->name, b->first, b->last);
        }
    }
    bool *written = xcalloc((size_t)p->n_tensors, 1);
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        for (int k = 0; k < PLAN_IN; k++) {
            int32_t t = op->in[k];
            if (t >= 0 && p->tensors[t].region == PLAN_ACT && !written[t])
                fail_msg("op %d (%s) reads %s before anything wrote it", i, plan_op_name(op->kind),
                         p->tensors[t].name);
        }
        for (int k = 0; k < PLAN_OUT; k++) {
            int32_t t = op->out[k];
            if (t < 0) continue;
            bool adds = (op->accum >> k) & 1;
            if (adds && p->tensors[t].region == PLAN_ACT && !written[t])
                fail_msg("op %d (%s) adds into %s before anything wrote it", i,
                         plan_op_name(op->kind), p->tensors[t].name);
            written[t] = true;
        }
        for (int k = 0; k < PLAN_TMP; k++)
            if (op->tmp[k] >= 0) written[op->tmp[k]] = true;
    }
    free(written);
    assert_true(p->region_size[PLAN_ACT] <= p->act_unplanned);
}

static void test_memory_plan(void **state) {
    (void)state;
    static const char *cases[] = {"llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"};
    static const char *all[] = {"all"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int v = 0; v < 6; v++) {
            const int ft = v % 3;
            const bool ckpt = v >= 3;
            GraphOptions o = {.finetune = (PlanFinetune)ft,
                              .B = 2,
                              .T = 16,
                              .lora_rank = 4,
                              .lora_target = all,
                              .n_lora_target = 1,
                              .lora_dropout = ft == 2 ? 0.1 : 0,
                              .freeze_trainable_layers = 1,
                              .freeze_trainable_modules = all,
                              .n_freeze_trainable_modules = 1,
                              .checkpoint_layers = ckpt};
            ModelSpec spec;
            Plan *p = build(cases[c], &o, &spec);
            check_memory(p);
            if (ft == FT_FULL)
                printf("[ memory ] %-12s full: activations %" PRId64 " floats planned, %" PRId64
                       " unshared (%.0f%%)\n",
                       cases[c], p->region_size[PLAN_ACT], p->act_unplanned,
                       100.0 * (double)p->region_size[PLAN_ACT] / (double)p->act_unplanned);
            plan_free(p);
            model_free(&spec);
        }
}

/* Nothing below the lowest trainable layer is differentiated. */
static void test_backward_stops(void **state) {
    (void)state;
    static const char *mlp[] = {"mlp"};
    GraphOptions o = {.finetune = FT_FREEZE,
                      .B = 1,
                      .T = 8,
                      .freeze_trainable_layers = 1,
                      .freeze_trainable_modules = mlp,
                      .n_freeze_trainable_modules = 1};
    ModelSpec spec;
    Plan *p = build("qwen3", &o, &spec);
    int bwd = 0;
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        if (op->phase != PHASE_BACKWARD) continue;
        bwd++;
        assert_true(op->layer == -1 || op->layer == 1);
        assert_int_not_equal(op->kind, OP_ATTENTION_BWD); /* the MLP is above attention */
    }
    /* lm_head, final norm, the residual's copy, down, glu, gate/up, nothing else */
    assert_true(bwd > 0 && bwd <= 6);
    plan_free(p);
    model_free(&spec);
}

/* Gradient checkpointing keeps one layer's activations instead of all of them, and pays for
 * it with one more forward of the layers in the backward FLOPs. */
static void test_checkpointing(void **state) {
    (void)state;
    char err[ERR_LEN];
    ModelSpec spec;
    assert_true(model_init_defaults(&spec, "qwen3", 1000, 64, 8, 4, 2, 16, 128, err, sizeof err));
    GraphOptions o = {.finetune = FT_FULL, .B = 2, .T = 64};
    Plan *a = graph_build(&o, &spec, err, sizeof err);
    o.checkpoint_layers = true;
    Plan *b = graph_build(&o, &spec, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    check_memory(b);
    printf("[ checkpointing ] 8 layers: activations %" PRId64 " -> %" PRId64 " floats\n",
           a->region_size[PLAN_ACT], b->region_size[PLAN_ACT]);
    assert_true(3 * b->region_size[PLAN_ACT] < a->region_size[PLAN_ACT]);
    int64_t layers_fwd = 0; /* the forward FLOPs of the decoder layers (not embed, lm_head) */
    for (int32_t i = 0; i < a->n_forward; i++)
        if (a->ops[i].layer >= 0) layers_fwd += a->ops[i].flops;
    assert_int_equal(b->flops_forward, a->flops_forward);
    assert_int_equal(b->flops_backward, a->flops_backward + layers_fwd);
    plan_free(a);
    plan_free(b);
    model_free(&spec);
}

// --- FLOPs

static void test_flops(void **state) {
    (void)state;
    static const char *all[] = {"all"};
    ModelSpec spec;
    GraphOptions o = {.finetune = FT_FULL, .B = 2, .T = 16};
    Plan *p = build("gemma2", &o, &spec); /* sliding window 6 on layer 0 */
    const int64_t N = 2 * 16, C = spec.C, HD = spec.HD, NH = spec.NH, NKV = spec.NKV, FF = spec.FF;
    int64_t per_layer = C * NH * HD * 2 + 2 * C * NKV * HD + 3 * C * FF; /* q, o, k, v, mlp */
    int64_t linear = 2 * N * (spec.L * per_layer + spec.V * C);
    int64_t pairs_full = 16 * 17 / 2, pairs_win = 6 * 7 / 2 + (16 - 6) * 6;
    int64_t attn = 4 * 2 * NH * HD * (pairs_full + pairs_win);
    assert_int_equal(p->flops_forward, linear + attn);
    assert_int_equal(p->flops_backward, 2 * linear + 2 * attn);
    plan_free(p);
    model_free(&spec);
    // LoRA: the base weights get no gradient, the adapters add their products
    GraphOptions l = {.finetune = FT_LORA,
                      .B = 2,
                      .T = 16,
                      .lora_rank = 4,
                      .lora_target = all,
                      .n_lora_target = 1};
    p = build("gemma2", &l, &spec);
    const int64_t R = 4;
    int64_t lora_fwd = 0;
    int64_t io[7][2] = {{C, NH * HD}, {C, NKV * HD}, {C, NKV * HD}, {NH * HD, C},
                        {C, FF},      {C, FF},       {FF, C}};
    for (int k = 0; k < 7; k++) lora_fwd += 2 * N * R * (io[k][0] + io[k][1]);
    lora_fwd *= spec.L;
    assert_int_equal(p->flops_forward, linear + attn + lora_fwd);
    /* backward: dx of every linear (as forward), attention twice, lora: du, dB, dA, dx each;
     * but layer 0's q, k, v read the frozen embedding's output: no dx there, base or LoRA */
    int64_t no_dx = 2 * N * C * (NH * HD + 2 * NKV * HD) + 3 * 2 * N * R * C;
    assert_int_equal(p->flops_backward, linear + 2 * attn + 2 * lora_fwd - no_dx);
    plan_free(p);
    model_free(&spec);
}

// --- bytes

static void test_serialize_roundtrip(void **state) {
    (void)state;
    char err[ERR_LEN];
    static const char *all[] = {"all"};
    GraphOptions o = {.finetune = FT_LORA,
                      .B = 2,
                      .T = 12,
                      .lora_rank = 4,
                      .lora_alpha = 16,
                      .use_rslora = true,
                      .lora_dropout = 0.05,
                      .lora_target = all,
                      .n_lora_target = 1};
    ModelSpec spec;
    Plan *p = build("qwen2", &o, &spec); /* yarn rope, tied, biases */
    StrBuf a = {0}, b = {0};
    plan_serialize(p, &a);
    Plan *q = plan_deserialize(a.data, a.len, err, sizeof err);
    if (!q) fail_msg("%s", err);
    plan_serialize(q, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(q->n_ops, p->n_ops);
    assert_int_equal(q->rope[0].type, MODEL_ROPE_YARN);
    assert_true(q->rope[0].factor == p->rope[0].factor);
    assert_true(q->lora_scale == p->lora_scale && q->lora_scale == (float)(16 / 2.0));
    assert_string_equal(q->params[2].name, p->params[2].name);
    assert_memory_equal(q->ops, p->ops, (size_t)p->n_ops * sizeof *p->ops);
    plan_free(q);

    // every truncation is refused, never read past
    for (size_t n = 0; n < a.len; n += 1 + n / 50) {
        Plan *t = plan_deserialize(a.data, n, err, sizeof err);
        if (t) fail_msg("a plan cut to %zu of %zu bytes was accepted", n, a.len);
    }
    // damaged bytes are refused or read into a plan whose every op fits its tensors; never a
    // crash (the ASan build reads every accepted plan in full)
    int refused = 0, tried = 0;
    for (size_t at = 0; at < a.len; at += 3, tried++) {
        char *d = xmalloc(a.len);
        memcpy(d, a.data, a.len);
        d[at] ^= 0x5a;
        Plan *t = plan_deserialize(d, a.len, err, sizeof err);
        if (!t)
            refused++;
        else {
            StrBuf again = {0};
            plan_serialize(t, &again); /* touches every field */
            assert_int_equal(again.len, a.len);
            sb_free(&again);
            plan_free(t);
        }
        free(d);
    }
    printf("[ bytes ] %d of %d damaged plans refused (the rest changed names, padding, scalars)\n",
           refused, tried);
    assert_true(refused > tried / 10);
    // a newer version says so
    char *c = xmalloc(a.len);
    memcpy(c, a.data, a.len);
    c[8] = 99;
    assert_null(plan_deserialize(c, a.len, err, sizeof err));
    assert_non_null(strstr(err, "version 99"));
    // a bad tensor index in an op is caught
    memcpy(c, a.data, a.len);
    size_t op0 =
        a.len - 8 - (size_t)p->n_ops * (3 + 4 + 4 * (PLAN_IN + PLAN_OUT + PLAN_TMP) + 48 + 16 + 8);
    memset(c + op0 + 3 + 4, 0x7f, 4); /* ops[0].in[0] */
    assert_null(plan_deserialize(c, a.len, err, sizeof err));
    assert_non_null(strstr(err, "names tensor"));
    free(c);
    sb_free(&a), sb_free(&b);
    plan_free(p);
    model_free(&spec);
}

static void test_print(void **state) {
    (void)state;
    ModelSpec spec;
    GraphOptions o = {.finetune = FT_FULL, .B = 1, .T = 8};
    Plan *p = build("llama", &o, &spec);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    plan_print(p, f);
    fclose(f);
    assert_non_null(strstr(buf, "plan v2: full, micro-batch B=1 x T=8"));
    assert_non_null(strstr(buf, "attention_bwd"));
    assert_non_null(strstr(buf, "arena: "));
    assert_non_null(strstr(buf, "FLOPs per step: "));
    assert_non_null(strstr(buf, "L1.mlp.down"));
    int lines = 0;
    for (char *s = buf; *s; s++) lines += *s == '\n';
    assert_int_equal(lines, p->n_ops + 5);
    free(buf);
    plan_free(p);
    model_free(&spec);
}

// --- from a recipe

static void test_from_recipe(void **state) {
    (void)state;
    const char *yaml =
        "model_name_or_path: tests/fixtures/golden/llama\n"
        "stage: sft\nfinetuning_type: lora\nlora_rank: 4\nlora_target: q_proj,v_proj\n"
        "use_rslora: true\ncutoff_len: 32\nper_device_train_batch_size: 3\n"
        "output_dir: /tmp/x\n";
    Diags d = {0};
    Recipe *r = recipe_parse("t.yaml", yaml, strlen(yaml), NULL, 0, RECIPE_FOR_CHECK, &d);
    if (!r) fail_msg("%s", d.text.data);
    char err[ERR_LEN];
    ModelSpec spec;
    assert_true(model_load(&spec, GOLDEN "llama", err, sizeof err));
    Plan *p = graph_build_recipe(r, &spec, err, sizeof err);
    if (!p) fail_msg("%s", err);
    assert_int_equal(p->B, 3);
    assert_int_equal(p->T, 32);
    assert_int_equal(p->lora_rank, 4);
    assert_true(p->lora_scale == 4.0f); /* lora_alpha null = 2 R = 8; rslora: 8 / sqrt(4) */
    int n = 0;
    for (int32_t i = 0; i < p->n_params; i++) n += p->params[i].trainable;
    assert_int_equal(n, 2 * 2 * 2); /* 2 layers x {q, v} x {A, B} */
    plan_free(p);
    model_free(&spec);
    recipe_free(r);
    diags_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainable_matches_llamafactory),
        cmocka_unit_test(test_errors_name_the_key),
        cmocka_unit_test(test_memory_plan),
        cmocka_unit_test(test_backward_stops),
        cmocka_unit_test(test_checkpointing),
        cmocka_unit_test(test_flops),
        cmocka_unit_test(test_serialize_roundtrip),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_from_recipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
