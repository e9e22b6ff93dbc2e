/* test_trainlog.c - trainer_state.json, *_results.json and trainer_log.jsonl, byte for byte.
 *
 * Oracle: tests/fixtures/train/trainer_files.json (tests/golden/gen_train_fixtures.py): the
 * files a real transformers 5.6 Trainer run wrote (a 1-layer Llama, 6 steps, checkpoints every
 * 2 with save_total_limit 2), the lines LLaMA-Factory 0.9.5's LogCallback wrote for fixed inputs
 * with its clock replaced, and Python's repr() and round() of a list of floats.
 */
#include "testutil.h"

#include <math.h>
#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include "json.h"
#include "trainlog.h"
#include "util.h"

static JsonDoc *doc;
static const Json *root;

static int setup(void **state) {
    (void)state;
    char err[ERR_LEN];
    size_t len;
    const char *path = "tests/fixtures/train/trainer_files.json";
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    doc = json_parse(text, len, path, err, sizeof err);
    free(text);
    if (!doc) return -1;
    root = json_root(doc);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    json_free(doc);
    return 0;
}

static const char *file_text(const char *name) {
    const char *s = json_as_str(json_get(json_get(root, "files"), name));
    assert_non_null(s);
    return s;
}

/* A flat JSON object from the fixture as a LogRec, in file order. */
static void to_rec(const Json *o, LogRec *r) {
    assert_int_equal(o->type, JSON_OBJECT);
    for (size_t k = 0; k < o->obj.n; k++) {
        const Json *v = o->obj.vals[k];
        if (v->type == JSON_NUMBER && v->num.is_int) logrec_int(r, o->obj.keys[k], v->num.i);
        else if (v->type == JSON_NUMBER) logrec_float(r, o->obj.keys[k], v->num.f);
        else if (v->type == JSON_STRING) logrec_str(r, o->obj.keys[k], v->str.s);
        else fail_msg("unexpected value type");
    }
}

// --- Python number formatting

static void test_repr_and_round_match_python(void **state) {
    (void)state;
    const Json *reprs = json_get(root, "reprs");
    assert_true(reprs->arr.n > 20);
    for (size_t i = 0; i < reprs->arr.n; i++) {
        const Json *e = reprs->arr.items[i];
        double x = strtod(json_as_str(json_at(e, 0)), NULL);
        char got[32];
        trainlog_py_repr(x, got);
        assert_string_equal(got, json_as_str(json_at(e, 1)));
    }
    const Json *rounds = json_get(root, "rounds");
    for (size_t i = 0; i < rounds->arr.n; i++) {
        const Json *e = rounds->arr.items[i];
        double x = strtod(json_as_str(json_at(e, 0)), NULL);
        int64_t nd;
        assert_true(json_as_int(json_at(e, 1), &nd));
        char got[32];
        trainlog_py_repr(trainlog_py_round(x, (int)nd), got);
        assert_string_equal(got, json_as_str(json_at(e, 2)));
    }
    char td[48];
    trainlog_timedelta(5.9, td);
    assert_string_equal(td, "0:00:05");
    trainlog_timedelta(2 * 86400 + 3723, td);
    assert_string_equal(td, "2 days, 1:02:03");
}

// --- trainer_state.json and results

static void roundtrip_state(const char *name, bool stop) {
    const char *text = file_text(name);
    TrainerState st;
    char err[ERR_LEN];
    if (!trainlog_state_parse(&st, text, strlen(text), name, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(st.should_training_stop, stop);
    assert_int_equal(st.max_steps, 6);
    StrBuf out = {0};
    trainlog_state_json(&st, &out);
    assert_string_equal(out.data, text);
    sb_free(&out);
    trainlog_state_free(&st);
}

static void test_trainer_state_matches_hf(void **state) {
    (void)state;
    roundtrip_state("trainer_state.json", true);
    roundtrip_state("checkpoint-4/trainer_state.json", false);

    /* built from values, entry by entry as the trainer does */
    TrainerState st = {.epoch = 1.4, .global_step = 4, .max_steps = 6, .logging_steps = 1,
                       .eval_steps = 500, .save_steps = 2, .train_batch_size = 2,
                       .num_train_epochs = 2, .total_flos = 2268672.0};
    TrainerState ref;
    char err[ERR_LEN];
    const char *text = file_text("checkpoint-4/trainer_state.json");
    assert_true(trainlog_state_parse(&ref, text, strlen(text), "ref", err, sizeof err));
    for (size_t i = 0; i < ref.n_log; i++) {
        double loss, gn, lr, ep, step;
        assert_true(logrec_num(&ref.log_history[i], "loss", &loss));
        assert_true(logrec_num(&ref.log_history[i], "grad_norm", &gn));
        assert_true(logrec_num(&ref.log_history[i], "learning_rate", &lr));
        assert_true(logrec_num(&ref.log_history[i], "epoch", &ep));
        assert_true(logrec_num(&ref.log_history[i], "step", &step));
        LogRec e = {0};
        trainlog_train_entry(&e, loss, gn, lr, ep, (int64_t)step);
        trainlog_state_append(&st, &e);
        logrec_free(&e);
    }
    StrBuf out = {0};
    trainlog_state_json(&st, &out);
    assert_string_equal(out.data, text);
    sb_free(&out);
    trainlog_state_free(&st);
    trainlog_state_free(&ref);

    assert_false(trainlog_state_parse(&st, "{\"epoch\": 1}", 12, "x.json", err, sizeof err));
    assert_non_null(strstr(err, "x.json: no \"global_step\""));
}

static void test_results_files_match_hf(void **state) {
    (void)state;
    const char *want = file_text("train_results.json");
    char err[ERR_LEN];
    JsonDoc *d = json_parse(want, strlen(want), "train_results.json", err, sizeof err);
    assert_non_null(d);
    LogRec m = {0};
    to_rec(json_root(d), &m);
    json_free(d);
    char *dir = test_tmpdir();
    if (!trainlog_save_metrics(dir, "train", &m, err, sizeof err)) fail_msg("%s", err);
    char *p = util_path_join(dir, "train_results.json");
    size_t len;
    char *got = util_read_file(p, &len, err, sizeof err);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    free(p);
    /* all_results.json: the same after one split, then merged (sorted) with eval */
    p = util_path_join(dir, "all_results.json");
    got = util_read_file(p, &len, err, sizeof err);
    assert_string_equal(got, file_text("all_results.json"));
    free(got);
    LogRec ev = {0};
    logrec_float(&ev, "eval_loss", 1.5);
    logrec_float(&ev, "epoch", 2.0);
    assert_true(trainlog_save_metrics(dir, "eval", &ev, err, sizeof err));
    got = util_read_file(p, &len, err, sizeof err);
    assert_non_null(strstr(got, "{\n    \"epoch\": 2.0,\n    \"eval_loss\": 1.5,\n    \"total_flos\""));
    free(got);
    free(p);
    logrec_free(&ev);
    logrec_free(&m);

    /* the end-of-training metrics come in HF's key order */
    LogRec tm = {0};
    trainlog_train_metrics(&tm, 0.11071, 20, 6, 3240960.0, 3.6292153199513755);
    StrBuf b = {0};
    trainlog_dumps(&tm, &b);
    assert_string_equal(b.data, "{\"train_runtime\": 0.1107, \"train_samples_per_second\": 180.652, "
                                "\"train_steps_per_second\": 54.196, \"total_flos\": 3240960.0, "
                                "\"train_loss\": 3.6292153199513755}");
    sb_free(&b);
    logrec_free(&tm);
    test_rm_rf(dir);
    free(dir);
}

/* Trainer.log_metrics's console table, for the real run's train metrics and an eval dict. */
static void test_metrics_text_matches_hf(void **state) {
    (void)state;
    const Json *printed = json_get(root, "printed");
    assert_int_equal(printed->arr.n, 2);
    for (size_t i = 0; i < printed->arr.n; i++) {
        const Json *p = printed->arr.items[i];
        LogRec m = {0};
        to_rec(json_get(p, "metrics"), &m);
        StrBuf b = {0};
        trainlog_metrics_text(json_as_str(json_get(p, "split")), &m, &b);
        assert_string_equal(b.data, json_as_str(json_get(p, "text")));
        sb_free(&b);
        logrec_free(&m);
    }
    LogRec ev = {0};
    trainlog_eval_metrics(&ev, 1.25, 2.0, 10, 4);
    StrBuf b = {0};
    trainlog_dumps(&ev, &b);
    assert_string_equal(b.data, "{\"eval_loss\": 1.25, \"eval_runtime\": 2.0, "
                                "\"eval_samples_per_second\": 5.0, \"eval_steps_per_second\": 1.5}");
    sb_free(&b);
    logrec_free(&ev);
}

// --- trainer_log.jsonl

static void test_trainer_log_jsonl_matches_llamafactory(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    TrainLog tl;
    trainlog_init(&tl, dir, 37, 1000.0, NULL);
    TrainerState st = {.max_steps = 37};
    const Json *cases = json_get(root, "lf_cases");
    char err[ERR_LEN];
    for (size_t i = 0; i < cases->arr.n; i++) {
        const Json *c = cases->arr.items[i];
        int64_t step, tokens;
        double elapsed;
        assert_true(json_as_int(json_get(c, "step"), &step));
        assert_true(json_as_int(json_get(c, "tokens"), &tokens));
        assert_true(json_as_double(json_get(c, "elapsed"), &elapsed));
        LogRec e = {0};
        to_rec(json_get(c, "entry"), &e);
        st.global_step = step;
        st.num_input_tokens_seen = tokens;
        trainlog_state_append(&st, &e);
        logrec_free(&e);
        if (!trainlog_on_log(&tl, &st, 1000.0 + elapsed, NULL, err, sizeof err)) fail_msg("%s", err);
    }
    char *p = util_path_join(dir, "trainer_log.jsonl");
    size_t len;
    char *got = util_read_file(p, &len, err, sizeof err);
    assert_non_null(got);
    assert_string_equal(got, json_as_str(json_get(root, "lf_jsonl")));
    free(got);
    free(p);
    trainlog_state_free(&st);
    trainlog_free(&tl);
    test_rm_rf(dir);
    free(dir);
}

// --- the progress line

static void test_progress_line(void **state) {
    (void)state;
    FILE *f = tmpfile();
    TrainLog tl;
    trainlog_init(&tl, NULL, 100, 10.0, f);
    assert_false(tl.tty);
    trainlog_progress(&tl, 25, 2.34567, 1.96e-4, 0.8125, 1234.4, 10.0 + 50);
    trainlog_progress(&tl, 50, 2.0, 1e-4, NAN, 0, 10.0 + 100);
    trainlog_progress_done(&tl);
    rewind(f);
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    assert_string_equal(buf,
                        "step 25/100 (25%) | loss 2.3457 | lr 1.96e-04 | grad 0.812 | 1234 tok/s | "
                        "0:00:50 elapsed, 0:02:30 left\n"
                        "step 50/100 (50%) | loss 2.0000 | lr 1.00e-04 | 0:01:40 elapsed, 0:01:40 left\n");
    trainlog_free(&tl);
}

/* On a terminal: one line rewritten in place, ended by trainlog_progress_done. */
static void test_progress_on_a_tty(void **state) {
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        fprintf(stderr, "[  SKIPPED ] %s: no pseudo-terminal here\n", __func__);
        skip();
        return;
    }
    FILE *tty = fopen(ptsname(master), "w");
    assert_non_null(tty);
    struct termios t;
    int fd = fileno(tty);
    assert_int_equal(tcgetattr(fd, &t), 0);
    cfmakeraw(&t); /* no newline translation */
    assert_int_equal(tcsetattr(fd, TCSANOW, &t), 0);
    TrainLog tl;
    trainlog_init(&tl, NULL, 10, 0.0, tty);
    assert_true(tl.tty);
    trainlog_progress(&tl, 1, 2.0, 1e-4, 1.0, 0, 1.0);
    trainlog_progress(&tl, 2, 1.5, 1e-4, 1.0, 0, 2.0);
    trainlog_progress_done(&tl);
    fclose(tty);
    char buf[1024];
    size_t n = 0;
    for (ssize_t k; n < sizeof buf - 1 && (k = read(master, buf + n, sizeof buf - 1 - n)) > 0;)
        n += (size_t)k; // a pty hands the bytes over in pieces; the closed slave ends it (EIO)
    close(master);
    assert_true(n > 0);
    buf[n] = 0;
    assert_string_equal(buf, "\rstep 1/10 (10%) | loss 2.0000 | lr 1.00e-04 | grad 1.000 | 0:00:01 "
                             "elapsed, 0:00:09 left\033[K"
                             "\rstep 2/10 (20%) | loss 1.5000 | lr 1.00e-04 | grad 1.000 | 0:00:02 "
                             "elapsed, 0:00:08 left\033[K\n");
    trainlog_free(&tl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repr_and_round_match_python),
        cmocka_unit_test(test_trainer_state_matches_hf),
        cmocka_unit_test(test_results_files_match_hf),
        cmocka_unit_test(test_metrics_text_matches_hf),
        cmocka_unit_test(test_trainer_log_jsonl_matches_llamafactory),
        cmocka_unit_test(test_progress_line),
        cmocka_unit_test(test_progress_on_a_tty),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
