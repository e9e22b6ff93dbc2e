/* test_checkpoint.c - save, verify, resume exactly; torn writes; damage; rotation.
 *
 * Oracles: bitwise equality with an uninterrupted run (resume must be exact); the checkpoints a
 * real transformers Trainer kept with save_total_limit 2 (tests/fixtures/train/trainer_files.json);
 * fault injection at every stage of a save (the previous checkpoint must survive intact).
 */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "json.h"
#include "outputs.h"
#include "schedule.h"
#include "util.h"

enum { NP = 3 };
static const int64_t sizes[NP] = {6, 4, 5};
static const char *names[NP] = {
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
    "base_model.model.model.norm.weight"};

typedef struct {
    float val[NP][8], grad[NP][8];
    OptParam p[NP];
    AdamW opt;
    TrainerState st;
    CkptPosition pos;
} Run;

static void run_init(Run *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NP; i++) {
        for (int k = 0; k < sizes[i]; k++) r->val[i][k] = 0.1f * (float)(i + 1) - 0.03f * (float)k;
        r->p[i] = (OptParam){.name = names[i], .value = r->val[i], .grad = r->grad[i],
                             .n = sizes[i], .decay = i < 2, .lr_scale = i == 1 ? 16.0 : 1.0};
    }
    AdamWConfig cfg = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    optim_init(&r->opt, &cfg, r->p, NP);
    r->st = (TrainerState){.max_steps = 10, .logging_steps = 1, .eval_steps = 500, .save_steps = 2,
                           .train_batch_size = 2, .num_train_epochs = 1};
    r->pos.seed = 42;
    r->pos.data_seed = 7;
}

static void run_free(Run *r) {
    optim_free(&r->opt);
    trainlog_state_free(&r->st);
}

/* One deterministic training step (gradients are a function of the step and the weights). */
static void run_step(Run *r) {
    int64_t s = r->pos.global_step;
    for (int i = 0; i < NP; i++)
        for (int k = 0; k < sizes[i]; k++)
            r->grad[i][k] = sinf((float)(s * 7 + i * 3 + k)) + 0.5f * r->val[i][k];
    double norm = optim_clip_grad_norm(r->p, NP, 1.0);
    optim_step(&r->opt, r->p, NP, 1.0 - (double)s / 10.0);
    r->pos.global_step++;
    r->pos.batch_in_epoch += 2;
    r->pos.sample_offset += 4;
    r->pos.loss_sum += 1.0 / (double)(s + 1);
    r->pos.tokens_seen += 100;
    r->pos.loss_scale = 65536.0 / (double)(1 << (s % 3)); /* fp16's scaler comes back too */
    r->pos.loss_scale_clean = s % 3, r->pos.skipped_steps = s / 2;
    r->st.global_step = r->pos.global_step;
    r->st.epoch = (double)r->pos.global_step / 10.0;
    LogRec e = {0};
    trainlog_train_entry(&e, 2.0 / (double)(s + 1), norm, 1e-2 * (1.0 - (double)s / 10.0),
                         r->st.epoch, r->pos.global_step);
    trainlog_state_append(&r->st, &e);
    logrec_free(&e);
}

static bool write_model(void *ctx, const char *dir, char *err, size_t errlen) {
    (void)ctx;
    char *p = util_path_join(dir, "adapter_config.json");
    bool ok = util_write_file_atomic(p, "{}\n", 3, 0644, err, errlen);
    free(p);
    return ok;
}

static bool save(Run *r, const char *out, int64_t limit, char *err) {
    CkptSave s = {.output_dir = out, .params = r->p, .n_params = NP, .opt = &r->opt,
                  .state = &r->st, .pos = &r->pos, .save_total_limit = limit,
                  .write_model = write_model};
    return ckpt_save(&s, NULL, err, ERR_LEN);
}

static bool exists(const char *dir, const char *name) {
    char *p = util_path_join(dir, name);
    bool e = access(p, F_OK) == 0;
    free(p);
    return e;
}

static void assert_same_run(const Run *a, const Run *b) {
    for (int i = 0; i < NP; i++)
        assert_memory_equal(a->val[i], b->val[i], sizeof(float) * (size_t)sizes[i]);
    assert_memory_equal(a->opt.m, b->opt.m, sizeof(float) * (size_t)a->opt.offset[NP]);
    assert_memory_equal(a->opt.v, b->opt.v, sizeof(float) * (size_t)a->opt.offset[NP]);
    assert_int_equal(a->opt.step, b->opt.step);
    assert_memory_equal(&a->pos, &b->pos, sizeof a->pos);
    StrBuf x = {0}, y = {0};
    trainlog_state_json(&a->st, &x);
    trainlog_state_json(&b->st, &y);
    assert_string_equal(x.data, y.data);
    sb_free(&x);
    sb_free(&y);
}

// --- tests

static void test_resume_is_exact(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN];
    Run a;
    run_init(&a);
    for (int s = 0; s < 3; s++) run_step(&a);
    if (!save(&a, out, 0, err)) fail_msg("%s", err);
    assert_true(exists(out, "checkpoint-3/train_state.safetensors"));
    assert_true(exists(out, "checkpoint-3/trainer_state.json"));
    assert_true(exists(out, "checkpoint-3/adapter_config.json"));
    assert_true(exists(out, "checkpoint-3/" CKPT_MANIFEST));
    for (int s = 0; s < 4; s++) run_step(&a); /* the uninterrupted run goes on */

    char *dir = NULL;
    if (!ckpt_resolve("true", out, &dir, err, sizeof err)) fail_msg("%s", err);
    Run b;
    run_init(&b);
    trainlog_state_free(&b.st);
    if (!ckpt_load(dir, b.p, NP, NULL, &b.opt, &b.st, &b.pos, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(b.pos.global_step, 3);
    assert_int_equal(b.opt.step, 3);
    assert_int_equal(b.pos.seed, 42);
    assert_true(b.pos.loss_scale == 16384.0); /* as step 3 left it */
    assert_int_equal(b.pos.loss_scale_clean, 2);
    assert_int_equal(b.pos.skipped_steps, 1);
    assert_int_equal(b.st.n_log, 3);
    for (int s = 0; s < 4; s++) run_step(&b);
    assert_same_run(&a, &b);
    free(dir);
    run_free(&a);
    run_free(&b);
    test_rm_rf(out);
    free(out);
}

/* Under ZeRO a rank reads the moments of its own parameters only (here the 1st and 3rd, as if
 * the 2nd were another rank's): they equal the whole state's, and a wrong share is refused. */
static void test_resume_reads_own_moments(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN];
    Run a;
    run_init(&a);
    for (int s = 0; s < 3; s++) run_step(&a);
    if (!save(&a, out, 0, err)) fail_msg("%s", err);
    char *dir = util_path_join(out, "checkpoint-3");
    Run b;
    run_init(&b);
    const bool mine[NP] = {true, false, true};
    OptParam own[2] = {b.p[0], b.p[2]};
    AdamW part;
    optim_init(&part, &b.opt.cfg, own, 2);
    if (!ckpt_load(dir, b.p, NP, mine, &part, NULL, &b.pos, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(part.step, 3);
    assert_memory_equal(part.m, a.opt.m, sizeof(float) * (size_t)sizes[0]);
    assert_memory_equal(part.m + sizes[0], a.opt.m + a.opt.offset[2], sizeof(float) * (size_t)sizes[2]);
    assert_memory_equal(part.v + sizes[0], a.opt.v + a.opt.offset[2], sizeof(float) * (size_t)sizes[2]);
    for (int i = 0; i < NP; i++) assert_memory_equal(b.val[i], a.val[i], sizeof(float) * (size_t)sizes[i]);
    const bool wrong[NP] = {true, true, false}; /* 6 + 4 values for a state built for 6 + 5 */
    assert_false(ckpt_load(dir, b.p, NP, wrong, &part, NULL, &b.pos, err, sizeof err));
    assert_non_null(strstr(err, "has 5 values, the parameter 4"));
    optim_free(&part);
    free(dir);
    run_free(&a);
    run_free(&b);
    test_rm_rf(out);
    free(out);
}

/* A save killed at any stage leaves the previous checkpoint complete and chosen by resume. */
static void test_torn_write_keeps_previous(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN];
    Run a;
    run_init(&a);
    run_step(&a);
    run_step(&a);
    assert_true(save(&a, out, 0, err));
    run_step(&a);
    run_step(&a);
    for (int stage = 1; stage <= 4; stage++) {
        ckpt_test_fail_at(stage);
        assert_false(save(&a, out, 0, err));
        assert_non_null(strstr(err, "interrupted"));
        assert_false(exists(out, "checkpoint-4"));
        assert_true(exists(out, ".checkpoint-4.tmp")); /* what a kill leaves */
        char *latest = ckpt_latest(out, NULL);
        assert_non_null(latest);
        assert_non_null(strstr(latest, "checkpoint-2"));
        if (!ckpt_verify(latest, err, sizeof err)) fail_msg("stage %d: %s", stage, err);
        free(latest);
    }
    /* killed after the rename: the new checkpoint is complete */
    ckpt_test_fail_at(5);
    assert_false(save(&a, out, 0, err));
    char *latest = ckpt_latest(out, NULL);
    assert_non_null(strstr(latest, "checkpoint-4"));
    assert_true(ckpt_verify(latest, err, sizeof err));
    free(latest);
    /* the next save removes the leftovers */
    run_step(&a);
    run_step(&a);
    assert_true(save(&a, out, 0, err));
    assert_false(exists(out, ".checkpoint-4.tmp"));
    /* saving the same step again replaces it */
    assert_true(save(&a, out, 0, err));
    assert_true(ckpt_verify(latest = ckpt_latest(out, NULL), err, sizeof err));
    assert_non_null(strstr(latest, "checkpoint-6"));
    free(latest);
    run_free(&a);
    test_rm_rf(out);
    free(out);
}

/* The same with a real kill -9 in a child process, in the middle of each stage's files. */
static void test_sigkill_mid_save(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN];
    Run a;
    run_init(&a);
    run_step(&a);
    assert_true(save(&a, out, 0, err));
    run_step(&a);
    for (int stage = 1; stage <= 5; stage++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            ckpt_test_fail_at(-stage);
            save(&a, out, 0, err);
            _exit(0); /* not reached */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        char *latest = ckpt_latest(out, NULL);
        assert_non_null(latest);
        assert_non_null(strstr(latest, stage == 5 ? "checkpoint-2" : "checkpoint-1"));
        if (!ckpt_verify(latest, err, sizeof err)) fail_msg("stage %d: %s", stage, err);
        free(latest);
    }
    run_free(&a);
    test_rm_rf(out);
    free(out);
}

/* A checkpoint-N folder without a manifest (e.g. copied by hand, half) is skipped by "true"
 * and refused by name. */
static void test_damage_is_reported(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN];
    Run a, b;
    run_init(&a);
    run_init(&b);
    run_step(&a);
    assert_true(save(&a, out, 0, err));
    char *dir = util_path_join(out, "checkpoint-1");
    char *st = util_path_join(dir, CKPT_STATE);
    size_t len;
    char *bytes = util_read_file(st, &len, err, sizeof err);
    assert_non_null(bytes);

    bytes[len - 3] ^= 1; /* one bit of a moment */
    assert_true(util_write_file_atomic(st, bytes, len, 0644, err, sizeof err));
    assert_false(ckpt_load(dir, b.p, NP, NULL, &b.opt, NULL, &b.pos, err, sizeof err));
    assert_non_null(strstr(err, "train_state.safetensors: SHA-256 differs"));
    bytes[len - 3] ^= 1;

    assert_true(util_write_file_atomic(st, bytes, len - 10, 0644, err, sizeof err)); /* truncated */
    assert_false(ckpt_verify(dir, err, sizeof err));
    assert_non_null(strstr(err, "bytes, the checkpoint recorded"));
    assert_true(util_write_file_atomic(st, bytes, len, 0644, err, sizeof err));
    assert_true(ckpt_verify(dir, err, sizeof err));

    /* another run's parameters */
    b.p[2].name = "base_model.model.lm_head.weight";
    assert_false(ckpt_load(dir, b.p, NP, NULL, &b.opt, NULL, &b.pos, err, sizeof err));
    assert_non_null(strstr(err, "no tensor base_model.model.lm_head.weight"));
    b.p[2].name = names[2];

    char *man = util_path_join(dir, CKPT_MANIFEST);
    assert_int_equal(unlink(man), 0);
    assert_false(ckpt_load(dir, b.p, NP, NULL, &b.opt, NULL, &b.pos, err, sizeof err));
    assert_non_null(strstr(err, "not a complete checkpoint"));
    char *p = NULL;
    assert_false(ckpt_resolve("true", out, &p, err, sizeof err));
    assert_non_null(strstr(err, "only interrupted ones"));
    assert_false(ckpt_resolve("/nonexistent/checkpoint-9", out, &p, err, sizeof err));
    assert_non_null(strstr(err, "is not a folder"));

    free(man);
    free(bytes);
    free(st);
    free(dir);
    run_free(&a);
    run_free(&b);
    test_rm_rf(out);
    free(out);
}

/* LLaMA-Factory's rule for what a run starts from. */
static void test_auto_resume(void **state) {
    (void)state;
    char *out = test_tmpdir();
    char err[ERR_LEN], note[ERR_LEN];
    char *p = (char *)"x";
    assert_true(ckpt_auto_resume("/nonexistent/out", NULL, false, &p, note, sizeof note, err, sizeof err));
    assert_null(p); /* fresh */
    assert_true(ckpt_auto_resume(out, NULL, false, &p, note, sizeof note, err, sizeof err));
    assert_null(p); /* empty output_dir: fresh */
    Run a;
    run_init(&a);
    run_step(&a);
    assert_true(save(&a, out, 0, err));
    assert_true(ckpt_auto_resume(out, NULL, false, &p, note, sizeof note, err, sizeof err));
    assert_non_null(strstr(p, "checkpoint-1"));
    assert_non_null(strstr(note, "Resuming training from"));
    free(p);
    assert_true(ckpt_auto_resume(out, NULL, true, &p, note, sizeof note, err, sizeof err));
    assert_null(p); /* overwrite_output_dir: fresh */
    char *ck = util_path_join(out, "checkpoint-1");
    assert_true(ckpt_auto_resume(out, ck, false, &p, note, sizeof note, err, sizeof err));
    assert_string_equal(p, ck);
    free(p);
    test_rm_rf(ck);
    char *model = util_path_join(out, "adapter_model.safetensors");
    assert_true(util_write_file_atomic(model, "x", 1, 0644, err, sizeof err));
    assert_false(ckpt_auto_resume(out, NULL, false, &p, note, sizeof note, err, sizeof err));
    assert_non_null(strstr(err, "already holds a trained model (adapter_model.safetensors)"));
    free(model);
    free(ck);
    run_free(&a);
    test_rm_rf(out);
    free(out);
}

/* save_total_limit keeps what transformers' Trainer kept: 6 steps, saves every 2, limit 2. */
static void test_rotation_matches_trainer(void **state) {
    (void)state;
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file("tests/fixtures/train/trainer_files.json", &len, err, sizeof err);
    assert_non_null(text);
    JsonDoc *doc = json_parse(text, len, "trainer_files.json", err, sizeof err);
    const Json *kept = json_get(json_get(json_root(doc), "files"), "checkpoints");
    assert_int_equal(kept->arr.n, 2);

    char *out = test_tmpdir();
    Run a;
    run_init(&a);
    for (int s = 1; s <= 6; s++) {
        run_step(&a);
        if (s % 2 == 0) assert_true(save(&a, out, 2, err));
    }
    size_t found = 0;
    for (int s = 1; s <= 6; s++) {
        char *name = xprintf("checkpoint-%d", s);
        if (exists(out, name)) {
            assert_true(found < kept->arr.n);
            assert_string_equal(name, json_as_str(kept->arr.items[found]));
            found++;
        }
        free(name);
    }
    assert_int_equal(found, kept->arr.n);
    run_free(&a);
    test_rm_rf(out);
    free(out);
    json_free(doc);
    free(text);
}

// --- a whole simulated run: the trainer's loop around the gradient, killed and resumed

typedef struct {
    Run r;
    Schedule sched;
    TrainLog log;
    double loss_since_log;
    int64_t last_logged;
} Sim;

static bool write_adapter(void *ctx, const char *dir, char *err, size_t errlen) {
    Run *r = ctx;
    char *targets[] = {"q_proj"};
    OutLora cfg = {.r = 2, .lora_alpha = 4, .target_modules = targets, .n_targets = 1,
                   .base_model_name_or_path = "m"};
    StWriteTensor t[NP];
    for (int i = 0; i < NP; i++)
        t[i] = (StWriteTensor){.name = names[i], .dtype = ST_F32, .ndim = 1,
                               .shape = {sizes[i]}, .data = r->val[i]};
    return outputs_write_adapter(dir, &cfg, t, NP, err, errlen);
}

/* Steps from the current position up to `until` (HF's loop: clip, step, schedule, log, save). */
static void sim_run(Sim *s, const char *out, int64_t until) {
    char err[ERR_LEN];
    Run *r = &s->r;
    while (r->pos.global_step < until) {
        int64_t step = r->pos.global_step;
        for (int i = 0; i < NP; i++)
            for (int k = 0; k < sizes[i]; k++)
                r->grad[i][k] = cosf((float)(step * 5 + i + k)) + 0.25f * r->val[i][k];
        double norm = optim_clip_grad_norm(r->p, NP, 1.0);
        double factor = schedule_factor(&s->sched, step);
        optim_step(&r->opt, r->p, NP, factor);
        double loss = 3.0 / (1.0 + 0.1 * (double)step);
        s->loss_since_log += loss;
        r->pos.global_step = r->st.global_step = step + 1;
        r->pos.batch_in_epoch += 2;
        r->st.epoch = (double)r->st.global_step / 5.0;
        if (r->st.global_step % 2 == 0) { /* logging_steps 2 */
            LogRec e = {0};
            double mean = s->loss_since_log / (double)(r->st.global_step - s->last_logged);
            trainlog_train_entry(&e, mean, norm, r->opt.cfg.lr * factor, r->st.epoch, r->st.global_step);
            trainlog_state_append(&r->st, &e);
            logrec_free(&e);
            r->pos.loss_sum += s->loss_since_log;
            s->loss_since_log = 0;
            s->last_logged = r->st.global_step;
            if (!trainlog_on_log(&s->log, &r->st, 0.0, NULL, err, sizeof err)) fail_msg("%s", err);
        }
        if (r->st.global_step % 4 == 0) { /* save_steps 4, save_total_limit 2 */
            CkptSave cs = {.output_dir = out, .params = r->p, .n_params = NP, .opt = &r->opt,
                           .state = &r->st, .pos = &r->pos, .save_total_limit = 2,
                           .write_model = write_adapter, .ctx = r};
            if (!ckpt_save(&cs, NULL, err, sizeof err)) fail_msg("%s", err);
        }
    }
}

static void sim_init(Sim *s, const char *out) {
    memset(s, 0, sizeof *s);
    run_init(&s->r);
    s->r.st.max_steps = 10;
    char err[ERR_LEN];
    assert_true(schedule_init(&s->sched, SCHED_COSINE, 10, 2, NULL, NULL, 0, 1e-2, err, sizeof err));
    trainlog_init(&s->log, out, 10, 0.0, NULL);
}

static void sim_free(Sim *s) {
    run_free(&s->r);
    trainlog_free(&s->log);
}

static char *slurp(const char *dir, const char *name) {
    char err[ERR_LEN];
    size_t len;
    char *p = util_path_join(dir, name);
    char *t = util_read_file(p, &len, err, sizeof err);
    if (!t) fail_msg("%s", err);
    free(p);
    return t;
}

static void test_simulated_run_killed_and_resumed(void **state) {
    (void)state;
    char *a_out = test_tmpdir(), *b_out = test_tmpdir();
    char err[ERR_LEN];
    Sim a, b;
    sim_init(&a, a_out);
    sim_run(&a, a_out, 10);

    sim_init(&b, b_out);
    sim_run(&b, b_out, 7); /* dies after step 7: the last checkpoint is 4 */
    sim_free(&b);
    /* LF's rule finds it; trainer_log.jsonl is cut back to the checkpoint's step */
    char *dir = NULL, note[ERR_LEN];
    assert_true(ckpt_auto_resume(b_out, NULL, false, &dir, note, sizeof note, err, sizeof err));
    assert_non_null(strstr(dir, "checkpoint-4"));
    sim_init(&b, b_out);
    trainlog_state_free(&b.r.st);
    if (!ckpt_load(dir, b.r.p, NP, NULL, &b.r.opt, &b.r.st, &b.r.pos, err, sizeof err)) fail_msg("%s", err);
    b.last_logged = b.r.pos.global_step;
    char *lines = slurp(b_out, "trainer_log.jsonl");
    assert_non_null(strstr(lines, "{\"current_steps\": 6,"));
    if (!trainlog_resume_jsonl(b_out, b.r.pos.global_step, err, sizeof err)) fail_msg("%s", err);
    free(lines);
    lines = slurp(b_out, "trainer_log.jsonl");
    assert_null(strstr(lines, "{\"current_steps\": 6,"));
    assert_non_null(strstr(lines, "{\"current_steps\": 4,"));
    sim_run(&b, b_out, 10);

    assert_same_run(&a.r, &b.r);
    const char *same[] = {"trainer_log.jsonl", "checkpoint-8/adapter_model.safetensors",
                          "checkpoint-8/train_state.safetensors", "checkpoint-8/trainer_state.json",
                          "checkpoint-8/adapter_config.json", "checkpoint-8/" CKPT_MANIFEST};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *x = slurp(a_out, same[i]), *y = slurp(b_out, same[i]);
        if (strcmp(x, y) != 0) fail_msg("%s differs after resume", same[i]);
        free(x);
        free(y);
    }
    assert_true(exists(b_out, "checkpoint-4") && exists(b_out, "checkpoint-8"));
    free(lines);
    free(dir);
    sim_free(&a);
    sim_free(&b);
    test_rm_rf(a_out);
    test_rm_rf(b_out);
    free(a_out);
    free(b_out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_resume_reads_own_moments),
        cmocka_unit_test(test_torn_write_keeps_previous),
        cmocka_unit_test(test_sigkill_mid_save),
        cmocka_unit_test(test_damage_is_reported),
        cmocka_unit_test(test_rotation_matches_trainer),
        cmocka_unit_test(test_auto_resume),
        cmocka_unit_test(test_simulated_run_killed_and_resumed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
