/* test_schedule.c - learning-rate factors, step counts and warmup against transformers.
 *
 * Oracle: tests/fixtures/train/schedule.json (tests/golden/gen_train_fixtures.py): the lrs a
 * LambdaLR from transformers.get_scheduler reports after each step, for every schedule type
 * llfc supports over 37 steps with several warmups; Trainer.set_initial_training_values on
 * real DataLoaders; TrainingArguments.get_warmup_steps.
 */
#include "testutil.h"

#include <math.h>

#include "json.h"
#include "recipe.h"
#include "schedule.h"
#include "util.h"

static double num(const Json *v) {
    double d;
    if (!json_as_double(v, &d)) fail_msg("fixture: expected a number");
    return d;
}

static int64_t inum(const Json *v) {
    int64_t i;
    if (!json_as_int(v, &i)) fail_msg("fixture: expected an integer");
    return i;
}

static void test_factors_match_lambdalr(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/schedule.json");
    const Json *scheds = json_get(json_root(doc), "schedules");
    assert_true(scheds->arr.n >= 35);
    for (size_t i = 0; i < scheds->arr.n; i++) {
        const Json *e = scheds->arr.items[i];
        ScheduleType t;
        assert_true(schedule_type_parse(json_as_str(json_get(e, "type")), &t));
        const Json *kw = json_get(e, "kwargs");
        double lr = num(json_get(e, "lr"));
        char err[ERR_LEN];
        Schedule s;
        double vals[4];
        assert_true(kw->obj.n <= 4);
        for (size_t k = 0; k < kw->obj.n; k++) vals[k] = num(kw->obj.vals[k]);
        if (!schedule_init(&s, t, inum(json_get(e, "total")), inum(json_get(e, "warmup")),
                           kw->obj.keys, vals, kw->obj.n, lr, err, sizeof err))
            fail_msg("%s", err);
        const Json *lrs = json_get(e, "lrs");
        for (size_t step = 0; step < lrs->arr.n; step++) {
            double want = num(lrs->arr.items[step]);
            double got = lr * schedule_factor(&s, (int64_t)step);
            if (fabs(got - want) > 1e-15 * lr)
                fail_msg("%s warmup %lld step %zu: lr %.17g, transformers %.17g",
                         schedule_type_name(t), (long long)s.warmup_steps, step, got, want);
        }
    }
    json_free(doc);
}

static void test_step_counts_match_trainer(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/schedule.json");
    const Json *counts = json_get(json_root(doc), "counts");
    assert_true(counts->arr.n >= 8);
    for (size_t i = 0; i < counts->arr.n; i++) {
        const Json *e = counts->arr.items[i];
        int64_t N = inum(json_get(e, "N")), W = inum(json_get(e, "world")),
                B = inum(json_get(e, "batch")), A = inum(json_get(e, "accum")),
                M = inum(json_get(e, "max_steps"));
        double ep = num(json_get(e, "epochs"));
        assert_int_equal(schedule_updates_per_epoch(N, W, B, A), inum(json_get(e, "updates_per_epoch")));
        assert_int_equal(schedule_total_steps(N, W, B, A, ep, M), inum(json_get(e, "total_steps")));
        assert_int_equal(schedule_num_epochs(N, W, B, A, ep, M), inum(json_get(e, "num_train_epochs")));
        assert_true(schedule_num_train_samples(N, W, B, A, ep, M) == num(json_get(e, "num_train_samples")));
    }
    const Json *warm = json_get(json_root(doc), "warmup");
    for (size_t i = 0; i < warm->arr.n; i++) {
        const Json *e = warm->arr.items[i];
        assert_int_equal(schedule_warmup_steps(inum(json_get(e, "total")),
                                               num(json_get(e, "warmup_steps")),
                                               num(json_get(e, "warmup_ratio"))),
                         inum(json_get(e, "result")));
    }
    json_free(doc);
}

static void test_kwargs_errors(void **state) {
    (void)state;
    Schedule s;
    char err[ERR_LEN];
    const char *k2[] = {"min_lr", "min_lr_rate"};
    double v2[] = {1e-5, 0.1};
    assert_false(schedule_init(&s, SCHED_COSINE_WITH_MIN_LR, 10, 0, k2, v2, 2, 1e-4, err, sizeof err));
    assert_non_null(strstr(err, "only one of min_lr or min_lr_rate"));
    assert_false(schedule_init(&s, SCHED_COSINE_WITH_MIN_LR, 10, 0, NULL, NULL, 0, 1e-4, err, sizeof err));
    assert_non_null(strstr(err, "needs min_lr or min_lr_rate"));
    const char *k1[] = {"num_cycles"};
    assert_false(schedule_init(&s, SCHED_LINEAR, 10, 0, k1, v2, 1, 1e-4, err, sizeof err));
    assert_non_null(strstr(err, "'num_cycles' is not an argument of the linear schedule"));
    ScheduleType t;
    assert_false(schedule_type_parse("polynomial", &t));
}

/* From a recipe: the keys LLaMA-Factory users write. */
static void test_from_recipe(void **state) {
    (void)state;
    const char *text = "model_name_or_path: m\noutput_dir: out\nlearning_rate: 2.0e-4\n"
                       "lr_scheduler_type: cosine_with_min_lr\n"
                       "lr_scheduler_kwargs: {min_lr: 2.0e-5}\nwarmup_ratio: 0.1\n";
    Diags d = {0};
    Recipe *r = recipe_parse("t.yaml", text, strlen(text), NULL, 0, RECIPE_FOR_CHECK, &d);
    if (!r) fail_msg("%s", d.text.data);
    Schedule s;
    char err[ERR_LEN];
    if (!schedule_from_recipe(&s, r, 37, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(s.type, SCHED_COSINE_WITH_MIN_LR);
    assert_int_equal(s.warmup_steps, 4); /* ceil(37 * 0.1) */
    assert_float_equal(s.min_lr_rate, 0.1, 1e-15);
    assert_float_equal(schedule_factor(&s, 37), 0.1, 1e-15);
    recipe_free(r);
    diags_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_factors_match_lambdalr),
        cmocka_unit_test(test_step_counts_match_trainer),
        cmocka_unit_test(test_kwargs_errors),
        cmocka_unit_test(test_from_recipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
