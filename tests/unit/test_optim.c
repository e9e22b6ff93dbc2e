/* test_optim.c - AdamW, clipping and the decay / LoRA+ rules against PyTorch and transformers.
 *
 * Oracle: tests/fixtures/train/optim.json and decay.json, written by
 * tests/golden/gen_train_fixtures.py from torch.optim.AdamW, torch.nn.utils.clip_grad_norm_,
 * transformers' Trainer.get_decay_parameter_names and LLaMA-Factory's LoRA+ grouping.
 */
#include "testutil.h"

#include <math.h>

#include "json.h"
#include "optim.h"
#include "util.h"

static double num(const Json *v) {
    double d;
    if (!json_as_double(v, &d)) fail_msg("fixture: expected a number");
    return d;
}

/* |a - b| within `ulps` float ulps of max(|b|, |scale|) (or 1e-30 absolute). */
static void assert_close_scaled(float a, float b, float scale, int ulps, const char *what,
                                int step, size_t i) {
    float mag = fmaxf(fabsf(b), fabsf(scale));
    float tol = ulps * (nextafterf(mag, INFINITY) - mag);
    if (!(fabsf(a - b) <= tol || fabsf(a - b) < 1e-30f))
        fail_msg("%s step %d element %zu: got %.9g, torch %.9g (diff %.3g)", what, step, i, a, b,
                 (double)(a - b));
}

static void assert_close_f(float a, float b, int ulps, const char *what, int step, size_t i) {
    assert_close_scaled(a, b, b, ulps, what, step, i);
}

static void copy_list(float *dst, const Json *arr) {
    for (size_t i = 0; i < arr->arr.n; i++) dst[i] = (float)num(arr->arr.items[i]);
}

// --- AdamW + clipping, step by step

static void run_case(const Json *c) {
    const Json *sizes = json_get(c, "sizes");
    size_t np = sizes->arr.n;
    OptParam *ps = xcalloc(np, sizeof *ps);
    for (size_t i = 0; i < np; i++) {
        int64_t n;
        assert_true(json_as_int(sizes->arr.items[i], &n));
        ps[i].name = "p";
        ps[i].n = n;
        ps[i].value = xcalloc((size_t)n, sizeof(float));
        ps[i].grad = xcalloc((size_t)n, sizeof(float));
        assert_true(json_as_bool(json_at(json_get(c, "decay"), i), &ps[i].decay));
        ps[i].lr_scale = num(json_at(json_get(c, "lr_scale"), i));
        copy_list(ps[i].value, json_at(json_get(c, "init"), i));
    }
    AdamWConfig cfg = {.lr = num(json_get(c, "lr")), .beta1 = num(json_get(c, "beta1")),
                       .beta2 = num(json_get(c, "beta2")), .eps = num(json_get(c, "eps")),
                       .weight_decay = num(json_get(c, "weight_decay"))};
    double max_norm = num(json_get(c, "max_norm"));
    AdamW opt;
    optim_init(&opt, &cfg, ps, np);
    float *prev[8];
    assert_true(np <= 8);
    for (size_t i = 0; i < np; i++) {
        prev[i] = xmalloc((size_t)ps[i].n * sizeof(float));
        memcpy(prev[i], ps[i].value, (size_t)ps[i].n * sizeof(float));
    }
    const Json *steps = json_get(c, "steps");
    for (size_t s = 0; s < steps->arr.n; s++) {
        const Json *st = steps->arr.items[s];
        for (size_t i = 0; i < np; i++) copy_list(ps[i].grad, json_at(json_get(st, "grads"), i));
        double norm = optim_clip_grad_norm(ps, np, max_norm);
        double want = num(json_get(st, "grad_norm"));
        if (fabs(norm - want) > 2e-7 * want) fail_msg("step %zu grad_norm %.9g, torch %.9g", s, norm, want);
        for (size_t i = 0; i < np; i++) {
            const Json *cl = json_at(json_get(st, "clipped"), i);
            for (int64_t k = 0; k < ps[i].n; k++)
                assert_close_f(ps[i].grad[k], (float)num(cl->arr.items[k]), 4, "clipped grad", (int)s, (size_t)k);
        }
        /* AdamW is checked on torch's clipped gradients, so the two checks stay independent
         * (torch's float32 norm reduction order differs from ours by an ulp now and then) */
        for (size_t i = 0; i < np; i++) copy_list(ps[i].grad, json_at(json_get(st, "clipped"), i));
        optim_step(&opt, ps, np, 1.0);
        assert_int_equal(opt.step, (int64_t)s + 1);
        for (size_t i = 0; i < np; i++) {
            const Json *pv = json_at(json_get(st, "params"), i);
            const Json *mv = json_at(json_get(st, "exp_avg"), i);
            const Json *vv = json_at(json_get(st, "exp_avg_sq"), i);
            float *m = opt.m + opt.offset[i], *v = opt.v + opt.offset[i];
            for (int64_t k = 0; k < ps[i].n; k++) {
                /* the moments are bit-exact; the parameter within 2 ulps of the larger of its
                 * old and new value: torch's CPU float sqrt (MKL) is not correctly rounded in
                 * about 1 case of 5, ours (IEEE sqrtf, as CUDA's) is */
                assert_close_f(m[k], (float)num(mv->arr.items[k]), 0, "exp_avg", (int)s, (size_t)k);
                assert_close_f(v[k], (float)num(vv->arr.items[k]), 0, "exp_avg_sq", (int)s, (size_t)k);
                assert_close_scaled(ps[i].value[k], (float)num(pv->arr.items[k]), prev[i][k], 2,
                                    "param", (int)s, (size_t)k);
                prev[i][k] = (float)num(pv->arr.items[k]);
                ps[i].value[k] = prev[i][k]; /* continue from torch's state */
                m[k] = (float)num(mv->arr.items[k]);
                v[k] = (float)num(vv->arr.items[k]);
            }
        }
    }
    optim_free(&opt);
    for (size_t i = 0; i < np; i++) {
        free(prev[i]);
        free(ps[i].value);
        free(ps[i].grad);
    }
    free(ps);
}

static void test_adamw_matches_torch(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/optim.json");
    const Json *cases = json_get(json_root(doc), "cases");
    assert_int_equal(cases->arr.n, 3);
    for (size_t i = 0; i < cases->arr.n; i++) run_case(cases->arr.items[i]);
    json_free(doc);
}

/* The schedule factor scales each group's lr: factor 0 leaves parameters as they are except
 * for the moments, which still move (torch does the same with lr 0). */
static void test_zero_lr_moves_only_moments(void **state) {
    (void)state;
    float val[3] = {1, -2, 3}, grad[3] = {0.5f, 0.5f, -1};
    OptParam p = {.name = "w", .value = val, .grad = grad, .n = 3, .decay = true, .lr_scale = 1};
    AdamWConfig cfg = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    AdamW opt;
    optim_init(&opt, &cfg, &p, 1);
    optim_step(&opt, &p, 1, 0.0);
    assert_true(val[0] == 1 && val[1] == -2 && val[2] == 3);
    assert_float_equal(opt.m[2], -0.1f, 1e-7);
    assert_float_equal(opt.v[2], 0.001f, 1e-9);
    optim_free(&opt);
}

static void test_clip_edge_cases(void **state) {
    (void)state;
    float g[2] = {3, 4};
    OptParam p = {.name = "w", .grad = g, .n = 2};
    assert_float_equal(optim_clip_grad_norm(&p, 1, 0.0), 5.0, 1e-6); /* no clipping */
    assert_true(g[0] == 3 && g[1] == 4);
    assert_float_equal(optim_clip_grad_norm(&p, 1, 10.0), 5.0, 1e-6); /* coef > 1: unchanged */
    assert_true(g[0] == 3 && g[1] == 4);
    assert_float_equal(optim_clip_grad_norm(&p, 1, 1.0), 5.0, 1e-6);
    assert_float_equal(g[0], 0.6f, 1e-6);
    g[0] = NAN;
    assert_true(isnan(optim_clip_grad_norm(&p, 1, 1.0)));
}

// --- decay and LoRA+ rules on real names

static void test_decay_rules_match_transformers(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/decay.json");
    const Json *names = json_get(json_root(doc), "names");
    assert_true(names->arr.n > 40);
    for (size_t i = 0; i < names->arr.n; i++) {
        const Json *e = names->arr.items[i];
        const char *name = json_as_str(json_get(e, "name"));
        bool decay, lp_decay;
        assert_true(json_as_bool(json_get(e, "decay"), &decay));
        if (optim_decays(name) != decay) fail_msg("%s: decay should be %d", name, decay);
        if (json_as_bool(json_get(e, "loraplus_decay"), &lp_decay) &&
            optim_decays_loraplus(name) != lp_decay)
            fail_msg("%s: LoRA+ decay should be %d", name, lp_decay);
        bool is_b;
        int64_t ndim;
        if (json_as_bool(json_get(e, "loraplus_b"), &is_b)) {
            assert_true(json_as_int(json_get(e, "ndim"), &ndim));
            double want = is_b ? 16.0 : 1.0;
            if (optim_loraplus_scale(name, (int)ndim, 16.0) != want)
                fail_msg("%s: LoRA+ scale should be %g", name, want);
            assert_true(optim_loraplus_scale(name, (int)ndim, 0) == 1.0);
        }
    }
    /* names PEFT saves (no adapter name) and other families' norms */
    assert_true(optim_decays("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert_false(optim_decays("model.layers.0.pre_feedforward_layernorm.weight"));
    assert_false(optim_decays("model.norm.weight"));
    assert_true(optim_decays("model.normal_thing.weight"));
    assert_true(optim_loraplus_scale("x.lora_embedding_B.default", 2, 16) < 0);
    json_free(doc);
}

static void test_state_matches(void **state) {
    (void)state;
    float a[4], b[2];
    OptParam ps[2] = {{.name = "a", .value = a, .grad = a, .n = 4, .lr_scale = 1},
                      {.name = "b", .value = b, .grad = b, .n = 2, .lr_scale = 1}};
    AdamWConfig cfg = {.lr = 1, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8};
    AdamW opt;
    optim_init(&opt, &cfg, ps, 2);
    char err[ERR_LEN];
    assert_true(optim_state_matches(&opt, ps, 2, err, sizeof err));
    assert_false(optim_state_matches(&opt, ps, 1, err, sizeof err));
    ps[1].n = 3;
    assert_false(optim_state_matches(&opt, ps, 2, err, sizeof err));
    assert_non_null(strstr(err, "optimizer state for b has 2 values"));
    optim_free(&opt);
}

static void test_config_from_recipe(void **state) {
    (void)state;
    const char *text = "model_name_or_path: m\noutput_dir: out\nlearning_rate: 1.0e-4\n"
                       "weight_decay: 0.01\nadam_beta2: 0.95\n";
    Diags d = {0};
    Recipe *r = recipe_parse("t.yaml", text, strlen(text), NULL, 0, RECIPE_FOR_CHECK, &d);
    if (!r) fail_msg("%s", d.text.data);
    AdamWConfig c;
    optim_config_from_recipe(&c, r);
    assert_true(c.lr == 1e-4 && c.beta1 == 0.9 && c.beta2 == 0.95 && c.eps == 1e-8 &&
                c.weight_decay == 0.01); /* LF's / HF's defaults where the recipe is silent */
    recipe_free(r);
    diags_free(&d);
}

/* GradScaler's defaults: 65536, halved on an overflow (the growth tracker restarts), doubled
 * after 2000 clean steps in a row; growth past float's range keeps the scale. */
static void test_loss_scaler_follows_gradscaler(void **state) {
    (void)state;
    LossScaler s;
    optim_scaler_init(&s, 65536);
    for (int i = 0; i < 1999; i++) assert_false(optim_scaler_update(&s, false));
    assert_true(s.scale == 65536 && s.clean == 1999);
    assert_true(optim_scaler_update(&s, false));
    assert_true(s.scale == 131072 && s.clean == 0);
    for (int i = 0; i < 1500; i++) optim_scaler_update(&s, false);
    assert_true(optim_scaler_update(&s, true));
    assert_true(s.scale == 65536 && s.clean == 0 && s.skipped == 1);
    assert_true(optim_scaler_update(&s, true));
    assert_true(s.scale == 32768 && s.skipped == 2);
    for (int i = 0; i < 1999; i++) assert_false(optim_scaler_update(&s, false));
    assert_true(optim_scaler_update(&s, false));
    assert_true(s.scale == 65536);
    optim_scaler_init(&s, 0x1p127);
    for (int i = 0; i < 2000; i++) assert_false(optim_scaler_update(&s, false));
    assert_true(s.scale == 0x1p127 && s.clean == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_zero_lr_moves_only_moments),
        cmocka_unit_test(test_clip_edge_cases),
        cmocka_unit_test(test_decay_rules_match_transformers),
        cmocka_unit_test(test_state_matches),
        cmocka_unit_test(test_config_from_recipe),
        cmocka_unit_test(test_loss_scaler_follows_gradscaler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
