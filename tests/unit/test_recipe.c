/* test_recipe.c - the recipe front end against LLaMA-Factory's semantics: its key names and
 * defaults (hparams of llamafactory 0.9.5 / transformers), PyYAML's reading of values, and
 * its parser's cross-key rules. Every error class must carry FILE:LINE:COL. */
#include "testutil.h"

#include "recipe.h"

/* The keys of LLaMA-Factory's examples/train_lora/qwen3_lora_sft.yaml, model path local. */
static const char *LF_LORA =
    "### model\n"
    "model_name_or_path: models/qwen3\n"
    "trust_remote_code: true\n"
    "\n"
    "### method\n"
    "stage: sft\n"
    "do_train: true\n"
    "finetuning_type: lora\n"
    "lora_rank: 8\n"
    "lora_target: all\n"
    "\n"
    "### dataset\n"
    "dataset: identity,alpaca_en_demo\n"
    "template: qwen3_nothink\n"
    "cutoff_len: 2048\n"
    "max_samples: 1000\n"
    "preprocessing_num_workers: 16\n"
    "dataloader_num_workers: 4\n"
    "\n"
    "### output\n"
    "output_dir: saves/qwen3-4b/lora/sft\n"
    "logging_steps: 10\n"
    "save_steps: 500\n"
    "plot_loss: true\n"
    "overwrite_output_dir: true\n"
    "save_only_model: false\n"
    "report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]\n"
    "\n"
    "### train\n"
    "per_device_train_batch_size: 1\n"
    "gradient_accumulation_steps: 8\n"
    "learning_rate: 1.0e-4\n"
    "num_train_epochs: 3.0\n"
    "lr_scheduler_type: cosine\n"
    "warmup_ratio: 0.1\n"
    "bf16: true\n"
    "ddp_timeout: 180000000\n"
    "resume_from_checkpoint: null\n";

static Recipe *parse_with(const char *text, const RecipeOverride *ov, size_t n, int purpose, Diags *d) {
    return recipe_parse("t.yaml", text, strlen(text), ov, n, purpose, d);
}

static Recipe *parse(const char *text, Diags *d) { return parse_with(text, NULL, 0, RECIPE_FOR_CHECK, d); }

/* A minimal valid recipe followed by extra lines. */
static char *with(const char *extra) {
    return xprintf("model_name_or_path: m\noutput_dir: out\n%s", extra);
}

/* Parse base+extra; it must fail, and the messages must contain `want`. */
static void expect_error(const char *extra, const char *want) {
    char *text = with(extra);
    Diags d = {0};
    Recipe *r = parse(text, &d);
    if (r || !d.text.data || !strstr(d.text.data, want))
        fail_msg("recipe:\n%s\nwanted an error containing: %s\ngot (%d errors):\n%s", text, want, d.errors,
                 d.text.data ? d.text.data : "(nothing)");
    recipe_free(r);
    diags_free(&d);
    free(text);
}

static void test_llamafactory_example_is_accepted(void **state) {
    (void)state;
    Diags d = {0};
    Recipe *r = parse(LF_LORA, &d);
    assert_non_null(r);
    assert_int_equal(d.errors, 0);
    assert_string_equal(R_STR(r, model_name_or_path), "models/qwen3");
    assert_true(R_BOOL(r, do_train));
    assert_int_equal(R_LIST(r, dataset).n, 2);
    assert_string_equal(R_LIST(r, dataset).items[0], "identity");
    assert_string_equal(R_LIST(r, dataset).items[1], "alpaca_en_demo");
    assert_true(R_FLOAT(r, learning_rate) == 1.0e-4);
    assert_int_equal(R_INT(r, ddp_timeout), 180000000);
    assert_true(R_NULL(r, resume_from_checkpoint));
    assert_int_equal(R_INT(r, max_samples), 1000);
    // LLaMA-Factory: lora_alpha defaults to 2 * lora_rank; packing to (stage == pt)
    assert_int_equal(R_INT(r, lora_alpha), 16);
    assert_int_equal(r->origin[RK_lora_alpha].kind, ORIGIN_DERIVED);
    assert_false(R_BOOL(r, packing));
    // transformers defaults for keys the example leaves out
    assert_true(R_FLOAT(r, adam_beta2) == 0.999);
    assert_true(R_FLOAT(r, max_grad_norm) == 1.0);
    assert_int_equal(R_INT(r, seed), 42);
    assert_int_equal(R_INT(r, per_device_eval_batch_size), 8);
    assert_string_equal(R_STR(r, dataset_dir), "data");
    assert_string_equal(r->origin[RK_learning_rate].where, "t.yaml:32:1");
    assert_string_equal(r->origin[RK_adam_beta1].where, "default");
    recipe_free(r);
    diags_free(&d);
}

static void test_lists_comma_and_yaml_agree(void **state) {
    (void)state;
    const char *forms[] = {"dataset: a, b\n", "dataset: [a, b]\n", "dataset:\n  - a\n  - b\n"};
    for (size_t i = 0; i < 3; i++) {
        char *text = with(forms[i]);
        Diags d = {0};
        Recipe *r = parse(text, &d);
        assert_non_null(r);
        assert_int_equal(R_LIST(r, dataset).n, 2);
        assert_string_equal(R_LIST(r, dataset).items[0], "a");
        assert_string_equal(R_LIST(r, dataset).items[1], "b");
        recipe_free(r);
        diags_free(&d);
        free(text);
    }
    expect_error("dataset: a,,b\n", "t.yaml:3:10: error: dataset: empty item");
}

static void test_yaml_scalars_mean_what_yaml_says(void **state) {
    (void)state;
    char *text = with("learning_rate: 1e-4\nbf16: True\nfp16: off\nmax_samples: ~\nval_size: 0.1\n"
                      "dataset: x\nlr_scheduler_type: cosine_with_min_lr\n"
                      "lr_scheduler_kwargs: {min_lr_rate: 0.1}\n");
    Diags d = {0};
    Recipe *r = parse(text, &d);
    assert_non_null(r);
    assert_true(R_FLOAT(r, learning_rate) == 1e-4);
    assert_true(R_BOOL(r, bf16));
    assert_false(R_BOOL(r, fp16));
    assert_true(R_NULL(r, max_samples));
    assert_int_equal(r->v[RK_lr_scheduler_kwargs].map.n, 1);
    assert_true(r->v[RK_lr_scheduler_kwargs].map.vals[0] == 0.1);
    recipe_free(r);
    diags_free(&d);
    free(text);
}

static void test_unknown_key_suggests(void **state) {
    (void)state;
    expect_error("learning_rat: 1.0e-4\n", "t.yaml:3:1: error: unknown key 'learning_rat'; did you mean 'learning_rate'?");
    expect_error("lora_rnak: 8\n", "did you mean 'lora_rank'?");
    expect_error("zzzzzz: 1\n", "t.yaml:3:1: error: unknown key 'zzzzzz'");
}

static void test_wrong_types_and_ranges(void **state) {
    (void)state;
    expect_error("cutoff_len: abc\n", "t.yaml:3:13: error: cutoff_len expects an integer, got 'abc'");
    expect_error("cutoff_len: 2.5\n", "t.yaml:3:13: error: cutoff_len expects an integer, got 2.5");
    expect_error("cutoff_len: \"2048\"\n", "remove the quotes");
    expect_error("lora_rank: 0\n", "t.yaml:3:12: error: lora_rank must be in [1, 65536], got 0");
    expect_error("learning_rate: fast\n", "t.yaml:3:16: error: learning_rate expects a number");
    expect_error("lora_dropout: 1.0\n", "lora_dropout must be in [0, 1), got 1.0");
    expect_error("bf16: maybe\n", "t.yaml:3:7: error: bf16 expects true or false, got 'maybe'");
    expect_error("stage: sftt\n", "t.yaml:3:8: error: stage: unknown value 'sftt'; did you mean 'sft'?");
    expect_error("dataset: {a: 1}\n", "dataset expects a list");
    expect_error("output_dir: null\n", "duplicate key 'output_dir'");
    expect_error("learning_rate: .inf\n", "learning_rate expects a number");
}

static void test_llamafactory_keys_not_supported_yet(void **state) {
    (void)state;
    expect_error("use_dora: true\n", "t.yaml:3:1: error: use_dora is a LLaMA-Factory key that llfc does not support yet");
    expect_error("quantization_bit: 4\n", "quantization_bit is a LLaMA-Factory key that llfc does not support yet");
    expect_error("stage: ppo\n", "stage: ppo is a LLaMA-Factory value that llfc does not support yet");
    expect_error("report_to: wandb\n", "report_to: wandb is a LLaMA-Factory value that llfc does not support yet");
    // LLaMA-Factory's own default asks for nothing: accepted, with a note
    char *text = with("use_dora: false\nquantization_bit: null\n");
    Diags d = {0};
    Recipe *r = parse(text, &d);
    assert_non_null(r);
    assert_non_null(strstr(d.text.data, "t.yaml:3:1: note: use_dora: LLaMA-Factory's default value"));
    recipe_free(r);
    diags_free(&d);
    free(text);
}

static void test_structure_errors(void **state) {
    (void)state;
    Diags d = {0};
    assert_null(parse("output_dir: out\n", &d));
    assert_non_null(strstr(d.text.data, "t.yaml:1:1: error: missing required key 'model_name_or_path'"));
    diags_free(&d);
    d = (Diags){0};
    assert_null(parse("", &d));
    assert_non_null(strstr(d.text.data, "t.yaml:1:1: error: the recipe is empty"));
    diags_free(&d);
    d = (Diags){0};
    assert_null(parse("- a\n- b\n", &d));
    assert_non_null(strstr(d.text.data, "a recipe is a mapping"));
    diags_free(&d);
    expect_error("cutoff_len: 1\ncutoff_len: 2\n", "t.yaml:4:1: error: duplicate key 'cutoff_len' (first given at line 3)");
    expect_error("dataset: [a, b\n", "t.yaml:4:1: error: invalid YAML");
    expect_error("a: b: c\n", "t.yaml:3:5: error: invalid YAML: mapping values are not allowed");
    expect_error("x: 1\n---\ny: 2\n", "found a second one");
}

static void test_contradictions(void **state) {
    (void)state;
    // LLaMA-Factory-style: lora keys with full fine-tuning are a warning, not an error
    char *text = with("finetuning_type: full\nlora_rank: 16\n");
    Diags d = {0};
    Recipe *r = parse(text, &d);
    assert_non_null(r);
    assert_int_equal(d.warnings, 1);
    assert_non_null(strstr(d.text.data, "t.yaml:4:1: warning: lora_rank has no effect with finetuning_type full"));
    recipe_free(r);
    diags_free(&d);
    free(text);
    expect_error("finetuning_type: full\nuse_rslora: true\n", "t.yaml:4:1: error: use_rslora is only valid for LoRA training");
    expect_error("bf16: true\nfp16: true\n", "t.yaml:4:1: error: bf16 and fp16 cannot both be true");
    expect_error("train_on_prompt: true\nmask_history: true\n", "mask_history is incompatible with train_on_prompt");
    expect_error("stage: dpo\nneat_packing: true\n", "neat_packing can only be true with stage sft");
    expect_error("dataset: a\nval_size: 0.1\neval_dataset: b\n", "give either val_size or eval_dataset");
    expect_error("eval_strategy: steps\n", "evaluation needs eval_dataset or val_size > 0");
    expect_error("dataset: a,b\nmix_strategy: interleave_under\ninterleave_probs: 0.5\n",
                 "interleave_probs has 1 values for 2 datasets");
    expect_error("lr_scheduler_type: cosine_with_min_lr\n", "cosine_with_min_lr needs exactly one of min_lr");
    expect_error("do_train: true\n", "do_train needs dataset");
}

static void test_overrides(void **state) {
    (void)state;
    RecipeOverride ov[] = {{"learning_rate=2.0e-4", "argument 3"}, {"dataset=a,b", "argument 4"},
                           {"max_samples=null", "argument 5"}};
    char *text = with("learning_rate: 1.0e-4\nmax_samples: 10\n");
    Diags d = {0};
    Recipe *r = parse_with(text, ov, 3, RECIPE_FOR_CHECK, &d);
    assert_non_null(r);
    assert_true(R_FLOAT(r, learning_rate) == 2.0e-4);
    assert_string_equal(r->origin[RK_learning_rate].where, "argument 3 (learning_rate=2.0e-4)");
    assert_int_equal(R_LIST(r, dataset).n, 2);
    assert_true(R_NULL(r, max_samples));
    recipe_free(r);
    diags_free(&d);

    RecipeOverride bad[] = {{"learning_rat=1", "argument 3"}, {"cutoff_len=big", "argument 4"}, {"nokey", "argument 5"}};
    d = (Diags){0};
    assert_null(parse_with(text, bad, 3, RECIPE_FOR_CHECK, &d));
    assert_int_equal(d.errors, 3);
    assert_non_null(strstr(d.text.data, "argument 3 (learning_rat=1): error: unknown key 'learning_rat'; did you mean 'learning_rate'?"));
    assert_non_null(strstr(d.text.data, "argument 4 (cutoff_len=big): error: cutoff_len expects an integer"));
    assert_non_null(strstr(d.text.data, "argument 5 (nokey): error: expected key=value"));
    diags_free(&d);
    free(text);
}

static void test_embedded_round_trip(void **state) {
    (void)state;
    Diags d = {0};
    Recipe *r = parse_with(LF_LORA, NULL, 0, RECIPE_FOR_TRAINER, &d);
    assert_non_null(r);
    StrBuf yaml = {0};
    recipe_write_yaml(r, &yaml);
    RecipeOverride ov[] = {{"learning_rate=3e-4", "trainer argument 1"}};
    Recipe *e = recipe_parse("embedded", yaml.data, yaml.len, ov, 1, RECIPE_EMBEDDED, &d);
    assert_non_null(e);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    for (int k = 0; k < RK_COUNT; k++) {
        StrBuf a = {0}, b = {0};
        recipe_value_yaml(r, (RecipeKeyId)k, &a);
        recipe_value_yaml(e, (RecipeKeyId)k, &b);
        if (k != RK_learning_rate) assert_string_equal(a.data, b.data);
        if (k != RK_learning_rate) assert_string_equal(r->origin[k].where, e->origin[k].where);
        sb_free(&a);
        sb_free(&b);
    }
    assert_true(R_FLOAT(e, learning_rate) == 3e-4);
    recipe_free(e);
    // compiled-in keys cannot change in the trainer
    RecipeOverride baked[] = {{"cutoff_len=4096", "trainer argument 1"}};
    assert_null(recipe_parse("embedded", yaml.data, yaml.len, baked, 1, RECIPE_EMBEDDED, &d));
    assert_non_null(strstr(d.text.data, "cutoff_len is compiled into this trainer (2048)"));
    sb_free(&yaml);
    recipe_free(r);
    diags_free(&d);
}

static void test_trainer_refuses_what_it_cannot_do(void **state) {
    (void)state;
    char *text = with("stage: dpo\ndo_train: true\ndataset: a\n");
    Diags d = {0};
    Recipe *r = parse(text, &d);
    assert_non_null(r); /* llfc check accepts it */
    recipe_free(r);
    assert_null(parse_with(text, NULL, 0, RECIPE_FOR_TRAINER, &d));
    assert_non_null(strstr(d.text.data, "t.yaml:3:1: error: training stage dpo is not supported yet"));
    diags_free(&d);
    free(text);
}

static void test_suggestions(void **state) {
    (void)state;
    assert_string_equal(recipe_suggest("learning_rat"), "learning_rate");
    assert_string_equal(recipe_suggest("per_device_train_batchsize"), "per_device_train_batch_size");
    assert_string_equal(recipe_suggest("use_dorra"), "use_dora"); /* LLaMA-Factory's keys count too */
    assert_null(recipe_suggest("qqqqqqqq"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamafactory_example_is_accepted),
        cmocka_unit_test(test_lists_comma_and_yaml_agree),
        cmocka_unit_test(test_yaml_scalars_mean_what_yaml_says),
        cmocka_unit_test(test_unknown_key_suggests),
        cmocka_unit_test(test_wrong_types_and_ranges),
        cmocka_unit_test(test_llamafactory_keys_not_supported_yet),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_contradictions),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_embedded_round_trip),
        cmocka_unit_test(test_trainer_refuses_what_it_cannot_do),
        cmocka_unit_test(test_suggestions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
