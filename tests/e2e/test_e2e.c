/* test_e2e.c - llfc as a user runs it: compile a recipe, copy the trainer alone into an empty
 * folder, run it there; bad recipes write nothing; a damaged trainer says so.
 * LLFC_BIN names the llfc under test (default build/llfc); run from the repository root. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

static char *tmp, *root, *llfc;
static char *cmd; /* the command being built; set_cmd replaces it */

static void set_cmd(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void set_cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(cmd);
    cmd = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(cmd, (size_t)n + 1, fmt, ap);
    va_end(ap);
}

/* Run a shell command; return its exit status and (malloc'd) stdout+stderr. */
static int run(char **output, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int run(char **output, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *line = xmalloc((size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(line, (size_t)len + 1, fmt, ap);
    va_end(ap);
    int rc = test_shell(output, line);
    free(line);
    return rc;
}

static void expect(int want_rc, const char *want_text, const char *cmd) {
    char *out;
    int rc = run(&out, "%s", cmd);
    if (rc != want_rc || (want_text && !strstr(out, want_text)))
        fail_msg("command: %s\nwanted exit %d and text: %s\ngot exit %d:\n%s", cmd, want_rc,
                 want_text ? want_text : "(any)", rc, out);
    free(out);
}


/* How many lines of two JSONL files have the same array under `key` (ids) or string (text);
 * fails on a line that differs, naming it. */
static size_t same_jsonl_field(const char *got_path, const char *want_path, const char *key) {
    char err[ERR_LEN];
    size_t glen, wlen;
    char *got = util_read_file(got_path, &glen, err, sizeof err);
    char *want = util_read_file(want_path, &wlen, err, sizeof err);
    assert_non_null(got);
    assert_non_null(want);
    size_t n = 0;
    char *gs = got, *ws = want;
    for (char *ge, *we; (ge = strchr(gs, '\n')) && (we = strchr(ws, '\n')); gs = ge + 1, ws = we + 1) {
        JsonDoc *g = json_parse(gs, (size_t)(ge - gs), "got", err, sizeof err);
        JsonDoc *w = json_parse(ws, (size_t)(we - ws), "want", err, sizeof err);
        assert_non_null(g);
        assert_non_null(w);
        const Json *a = json_get(json_root(g), key), *b = json_get(json_root(w), key);
        assert_non_null(a);
        assert_non_null(b);
        bool same = a->type == b->type;
        if (same && a->type == JSON_STRING)
            same = a->str.len == b->str.len && !memcmp(a->str.s, b->str.s, a->str.len);
        else if (same && a->type == JSON_ARRAY) {
            same = a->arr.n == b->arr.n;
            for (size_t i = 0; same && i < a->arr.n; i++) same = a->arr.items[i]->num.i == b->arr.items[i]->num.i;
        }
        if (!same) fail_msg("%s line %zu differs from %s", got_path, n + 1, want_path);
        json_free(g);
        json_free(w);
        n++;
    }
    free(got);
    free(want);
    return n;
}

static int setup(void **state) {
    (void)state;
    const char *bin = getenv("LLFC_BIN");
    root = getcwd(NULL, 0);
    llfc = xprintf("%s/%s", root, bin && *bin ? bin : "build/llfc");
    tmp = xprintf("/tmp/llfc_e2e_%d", (int)getpid());
    char *out;
    run(&out, "rm -rf %s && mkdir -p %s/fresh", tmp, tmp);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char *out;
    run(&out, "rm -rf %s", tmp);
    free(out);
    free(tmp);
    free(root);
    free(llfc);
    free(cmd);
    cmd = NULL;
    return 0;
}

static void test_trainer_runs_alone_in_a_fresh_folder(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_sft model_name_or_path=%s", llfc, tmp, model);
    expect(0, "wrote", cmd);
    set_cmd("cp %s/run_sft %s/fresh/ && cd %s/fresh && ls", tmp, tmp, tmp);
    expect(0, "run_sft", cmd);
    set_cmd("cd %s/fresh && ./run_sft --recipe", tmp);
    expect(0, "lora_rank: 8", cmd);
    expect(0, "recipes/demo_lora_sft.yaml:", cmd); /* origins travel with the recipe */
    set_cmd("cd %s/fresh && ./run_sft --help", tmp);
    expect(0, "Keys that can be overridden here", cmd);
    set_cmd("cd %s/fresh && ./run_sft --version", tmp);
    expect(0, "llfc trainer", cmd);
    // the trainer finds its inputs where it runs; absolute paths as overrides work anywhere
    set_cmd("cd %s/fresh && ./run_sft --dry-run model_name_or_path=%s/%s dataset_dir=%s/data",
             tmp, model[0] == '/' ? "" : root, model, root);
    expect(0, "dry run: every input checked", cmd);
    set_cmd("cd %s/fresh && ./run_sft --dry-run model_name_or_path=nowhere", tmp);
    expect(1, "error: model_name_or_path: no such folder", cmd);
    set_cmd("cd %s/fresh && ./run_sft --recipe learning_rat=1", tmp);
    expect(1, "trainer argument 2 (learning_rat=1): error: unknown key 'learning_rat'; did you mean 'learning_rate'?", cmd);
    set_cmd("cd %s/fresh && ./run_sft --recipe cutoff_len=4096", tmp);
    expect(1, "cutoff_len is compiled into this trainer (256)", cmd);
    set_cmd("cd %s/fresh && ./run_sft --recipe learning_rate=3.0e-4", tmp);
    expect(0, "learning_rate: 0.0003", cmd);
    // libyaml and Lua are inside; nothing from CUDA is needed to start
    set_cmd("ldd %s/fresh/run_sft | grep -Ec 'yaml|lua|cuda|nvrtc|cublas|nccl'", tmp);
    expect(1, "0", cmd);
    free(model);
}

static void test_damaged_trainer_says_so(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_sft model_name_or_path=%s", llfc, tmp, model);
    expect(0, NULL, cmd);
    set_cmd("cd %s && head -c -100 run_sft > cut && chmod +x cut && ./cut --recipe", tmp);
    expect(1, "no llfc payload found", cmd);
    // flip one byte of the runtime image's read-only data (code could crash before the check)
    set_cmd("cd %s && cp run_sft bad && o=$(readelf -SW bad | sed -n 's/.* \\.rodata *PROGBITS *[0-9a-f]* "
            "\\([0-9a-f]*\\) .*/\\1/p') && printf 'X' | dd of=bad bs=1 seek=$((0x$o + 64)) conv=notrunc "
            "status=none && ./bad --recipe", tmp);
    expect(1, "this trainer is damaged (checksum mismatch)", cmd);
    free(model);
}

static void test_bad_recipes_write_nothing(void **state) {
    (void)state;
    set_cmd("cd %s && printf 'model_name_or_path: m\\noutput_dir: o\\nlearning_rat: 1\\n' > bad.yaml && "
             "%s bad.yaml -o out; rc=$?; test ! -e out && exit $rc", tmp, llfc);
    expect(1, "bad.yaml:3:1: error: unknown key 'learning_rat'; did you mean 'learning_rate'?", cmd);
    set_cmd("cd %s && printf 'model_name_or_path: Qwen/Qwen3-4B\\noutput_dir: o\\ndo_train: true\\n"
             "dataset: x\\n' > hub.yaml && %s hub.yaml -o out; rc=$?; test ! -e out && exit $rc", tmp, llfc);
    expect(1, "is not a local folder; llfc does not download from the Hugging Face Hub", cmd);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/out template=qwen2_vl; rc=$?; test ! -e %s/out && exit $rc",
             llfc, tmp, tmp);
    expect(1, "argument 4 (template=qwen2_vl): error: template: 'qwen2_vl' is a LLaMA-Factory template that llfc does not have yet", cmd);
    // a user's own template is checked by the template engine, with did-you-mean
    set_cmd("cd %s && printf 'return {name = [[mine]], format_usr = {[[{{content}}]]}}\\n' > mine.lua && "
            "cd %s && %s recipes/demo_lora_sft.yaml -o %s/out template=%s/mine.lua; rc=$?; test ! -e %s/out && exit $rc",
            tmp, root, llfc, tmp, tmp, tmp);
    expect(1, "mine.lua: unknown key 'format_usr'; did you mean 'format_user'?", cmd);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/out dataset=demo_storie; test ! -e %s/out", llfc, tmp, tmp);
    expect(0, NULL, cmd);
}

static void test_lua_hooks_are_checked_in_the_sandbox(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    set_cmd("cd %s && printf 'local x = 1\\nos.execute(\"touch pwned\")\\nreturn {}\\n' > evil.lua && "
             "cd %s && %s recipes/demo_lora_sft.yaml -o %s/out model_name_or_path=%s data_hook=%s/evil.lua; "
             "rc=$?; test ! -e %s/pwned && test ! -e %s/out && exit $rc", tmp, root, llfc, tmp, model, tmp, tmp, tmp);
    expect(1, "evil.lua:2: sandbox: os.execute is not allowed", cmd);
    set_cmd("cd %s && printf 'return {transform = function(e) return e end}\\n' > ok.lua && cd %s && "
             "%s recipes/demo_lora_sft.yaml -o %s/out model_name_or_path=%s data_hook=%s/ok.lua && %s/out --dry-run "
             "model_name_or_path=%s", tmp, root, llfc, tmp, model, tmp, tmp, model);
    expect(0, "dry run: every input checked", cmd);
    free(model);
}

static void test_examples_compile_and_dry_run(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    set_cmd("%s examples/lua_hook/recipe.yaml -o %s/run_hook model_name_or_path=%s && %s/run_hook --dry-run "
            "model_name_or_path=%s", llfc, tmp, model, tmp, model);
    expect(0, "dry run: every input checked", cmd);
    free(model);
}

static void test_check_prints_every_key_with_origin(void **state) {
    (void)state;
    set_cmd("%s check recipes/demo_lora_sft.yaml learning_rate=2e-4", llfc);
    expect(0, "argument 3 (learning_rate=2e-4)", cmd);
    expect(0, "recipes/demo_lora_sft.yaml:18:1", cmd);
    expect(0, "derived: 2 * lora_rank", cmd);
    // a DeepSpeed config gives its zero_optimization.stage (0 to 3; anything else is named)
    set_cmd("cd %s && printf '{\"zero_optimization\": {\"stage\": 3, \"overlap_comm\": true}}' > z3.json && "
            "printf '{\"zero_optimization\": {\"stage\": 4}}' > z4.json && cd %s && %s check "
            "recipes/demo_lora_sft.yaml deepspeed=%s/z3.json", tmp, root, llfc, tmp);
    expect(0, "derived: zero_optimization.stage of the deepspeed config", cmd);
    set_cmd("%s check recipes/demo_lora_sft.yaml deepspeed=%s/z4.json", llfc, tmp);
    expect(1, "zero_optimization.stage must be 0, 1, 2 or 3", cmd);
    set_cmd("%s check --keys", llfc);
    expect(0, "cutoff_len", cmd);
    set_cmd("%s templates", llfc);
    expect(0, "default", cmd);
}

/* The trainer trains: LoRA on stories260K, checkpoints, outputs; a resumed run ends with the
 * same adapter bytes as the uninterrupted one. */
static void test_trainer_trains_and_resumes_exactly(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    char *abs_model = model[0] == '/' ? xstrdup(model) : xprintf("%s/%s", root, model);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_sft cutoff_len=64 per_device_train_batch_size=2 "
            "model_name_or_path=%s dataset_dir=%s/data", llfc, tmp, abs_model, root);
    expect(0, "wrote", cmd);
    set_cmd("cd %s && ./run_sft output_dir=a max_steps=4 save_steps=2", tmp);
    expect(0, "step 4/4 (100%)", cmd);
    set_cmd("cd %s/a && ls && wc -l < trainer_log.jsonl && head -c 8 training_loss.png | od -c | head -1", tmp);
    expect(0, "adapter_model.safetensors", cmd);
    expect(0, "checkpoint-2", cmd);
    expect(0, "P   N   G", cmd);
    set_cmd("cd %s && ./run_sft output_dir=b max_steps=4 save_steps=2 resume_from_checkpoint=a/checkpoint-2 && "
            "cmp a/adapter_model.safetensors b/adapter_model.safetensors && echo same-adapter", tmp);
    expect(0, "resuming from a/checkpoint-2 at step 2", cmd);
    expect(0, "same-adapter", cmd);
    // LF's rule: an output_dir with a checkpoint is resumed unless overwrite_output_dir
    set_cmd("cd %s && ./run_sft output_dir=b max_steps=4 overwrite_output_dir=false", tmp);
    expect(0, "resuming from", cmd);
    free(abs_model);
    free(model);
}

/* The key=value overrides of tests/fixtures/loop/expected.json's settings, as one string. */
static char *loop_overrides(const Json *settings) {
    StrBuf sb = {0};
    for (size_t i = 0; i < settings->obj.n; i++) {
        const Json *v = settings->obj.vals[i];
        const char *key = settings->obj.keys[i];
        if (v->type == JSON_BOOL) sb_printf(&sb, " %s=%s", key, v->boolean ? "true" : "false");
        else if (v->type == JSON_STRING) sb_printf(&sb, " %s=%s", key, v->str.s);
        else if (v->num.is_int) sb_printf(&sb, " %s=%lld", key, (long long)v->num.i);
        else sb_printf(&sb, " %s=%.17g", key, v->num.f);
    }
    return sb.data;
}

/* The values of `key` in a trainer_log.jsonl, in order. */
static size_t log_values(const char *path, const char *key, double *out, size_t max) {
    char err[ERR_LEN];
    size_t len, n = 0;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    for (char *line = text, *end; n < max && (end = strchr(line, '\n')); line = end + 1) {
        JsonDoc *d = json_parse(line, (size_t)(end - line), path, err, sizeof err);
        assert_non_null(d);
        const Json *v = json_get(json_root(d), key);
        if (v && json_as_double(v, &out[n])) n++;
        json_free(d);
    }
    free(text);
    return n;
}

/* The values of `key` in trainer_state.json's log_history, in order. */
static size_t history_values(const char *path, const char *key, double *out, size_t max) {
    char err[ERR_LEN];
    size_t len, n = 0;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    JsonDoc *d = json_parse(text, len, path, err, sizeof err);
    assert_non_null(d);
    const Json *h = json_get(json_root(d), "log_history");
    assert_non_null(h);
    for (size_t i = 0; i < h->arr.n && n < max; i++) {
        const Json *v = json_get(h->arr.items[i], key);
        if (v && json_as_double(v, &out[n])) n++;
    }
    json_free(d);
    free(text);
    return n;
}

/* Ten steps of full fine-tuning and of LoRA from a PEFT-made adapter (B != 0), with
 * accumulation, clipping, weight decay and warmup + cosine, against the same steps in PyTorch +
 * PEFT (tests/golden/gen_loop_fixtures.py): every logged loss and grad_norm within 1e-4. */
static void test_training_matches_pytorch_step_by_step(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "models/stories260K/hf");
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file("tests/fixtures/loop/expected.json", &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    JsonDoc *doc = json_parse(text, len, "expected.json", err, sizeof err);
    assert_non_null(doc);
    const Json *init = json_get(json_root(doc), "init_model");
    StrBuf flags = {0};
    for (size_t i = 0; i < init->arr.n; i++) sb_printf(&flags, " %s", json_as_str(init->arr.items[i]));
    char *ov = loop_overrides(json_get(json_root(doc), "settings"));
    set_cmd("%s init-model%s --tokenizer %s -o %s/model", llfc, flags.data, tok, tmp);
    expect(0, NULL, cmd);
    // full and LoRA on 1 rank of 2 rows, and on 2 ranks of 1 row (data parallel through the
    // --nproc-per-node launcher): the same PyTorch numbers
    // ... and with ZeRO-2 (full) and ZeRO-1 (LoRA) sharding the AdamW state and gradients, and
    // ZeRO-3 (both) sharding the parameters too, gathered a layer at a time
    const char *kinds[] = {"full", "lora", "full_dp2", "lora_dp2", "full_zero2", "lora_zero1", "full_zero3",
                           "lora_zero3"};
    const char *zero[] = {"", "", "", "", " zero_stage=2 save_steps=4", " zero_stage=1", " zero_stage=3 save_steps=4",
                          " zero_stage=3"};
    for (int k = 0; k < 8; k++) {
        bool lora = k % 2 == 1, dp = k >= 2;
        // LoRA starts from the PEFT-made adapter (absolute path: the trainer runs in tmp)
        char *method = !lora ? xstrdup("finetuning_type=full")
                             : xprintf("adapter_name_or_path=%s/tests/fixtures/loop/lora_start", root);
        set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_%s%s model_name_or_path=%s/model dataset_dir=%s/data %s%s "
                "&& cd %s && ./run_%s %s output_dir=out_%s%s", llfc, tmp, kinds[k], ov, tmp, root, method,
                dp ? " per_device_train_batch_size=1" : "", tmp, kinds[k], dp ? "--nproc-per-node 2" : "", kinds[k],
                zero[k]);
        free(method);
        // ZeRO-3 says what each rank holds; the others reduce each layer's gradients on a thread
        expect(0, k >= 6 ? "memory, rank 1 of 2 (ZeRO-3): " : dp ? "data parallel: gradients reduced in" : "step 10/10",
               cmd);
        char *log = xprintf("%s/out_%s/trainer_log.jsonl", tmp, kinds[k]);
        char *hist = xprintf("%s/out_%s/trainer_state.json", tmp, kinds[k]);
        const Json *want = json_get(json_root(doc), lora ? "lora" : "full");
        const char *keys[] = {"loss", "grad_norm"};
        for (int q = 0; q < 2; q++) {
            double got[16];
            size_t n = q == 0 ? log_values(log, keys[q], got, 16) : history_values(hist, keys[q], got, 16);
            const Json *w = json_get(want, keys[q]);
            assert_int_equal(n, w->arr.n);
            double worst = 0;
            for (size_t i = 0; i < n; i++) {
                double e = fabs(got[i] - w->arr.items[i]->num.f) / fabs(w->arr.items[i]->num.f);
                if (e > worst) worst = e;
                if (e > 1e-4)
                    fail_msg("%s step %zu %s: llfc %.8f, PyTorch %.8f", kinds[k], i + 1, keys[q], got[i],
                             w->arr.items[i]->num.f);
            }
            printf("  %s %-9s 10 steps, worst relative error %.2e\n", kinds[k], keys[q], worst);
        }
        free(log);
        free(hist);
    }
    // ZeRO-2 resumed from its checkpoint-4 (optimizer state gathered at save, scattered at load)
    // ends with the same bytes as the uninterrupted run
    set_cmd("cd %s && ./run_full_zero2 --nproc-per-node 2 zero_stage=2 output_dir=out_zero2_resumed "
            "resume_from_checkpoint=out_full_zero2/checkpoint-4 && cmp out_full_zero2/model.safetensors "
            "out_zero2_resumed/model.safetensors && echo same-model", tmp);
    expect(0, "same-model", cmd);
    // ... and ZeRO-3, whose checkpoint rank 0 wrote from every rank's parameters
    set_cmd("cd %s && ./run_full_zero3 --nproc-per-node 2 zero_stage=3 output_dir=out_zero3_resumed "
            "resume_from_checkpoint=out_full_zero3/checkpoint-4 && cmp out_full_zero3/model.safetensors "
            "out_zero3_resumed/model.safetensors && echo same-model", tmp);
    expect(0, "same-model", cmd);
    // create_new_adapter merges the PEFT adapter into the base weights and starts a new one (B = 0):
    // the same function, so the first two losses (lr 0 at step 1) are the adapter's
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_new%s model_name_or_path=%s/model dataset_dir=%s/data "
            "adapter_name_or_path=%s/tests/fixtures/loop/lora_start create_new_adapter=true && cd %s && "
            "./run_new output_dir=out_new max_steps=2", llfc, tmp, ov, tmp, root, root, tmp);
    expect(0, "lora: merged the adapter in", cmd);
    {
        char *log = xprintf("%s/out_new/trainer_log.jsonl", tmp);
        double got[4];
        assert_int_equal(log_values(log, "loss", got, 4), 2);
        const Json *want = json_get(json_get(json_root(doc), "lora"), "loss");
        for (int i = 0; i < 2; i++)
            if (fabs(got[i] - want->arr.items[i]->num.f) > 1e-5 * fabs(want->arr.items[i]->num.f))
                fail_msg("merged adapter, step %d: loss %.8f, want %.8f", i + 1, got[i], want->arr.items[i]->num.f);
        free(log);
    }
    // the adapter llfc wrote equals PEFT's after the same 10 steps, tensor by tensor
    char *mine = xprintf("%s/out_lora/adapter_model.safetensors", tmp);
    StModel *a = st_open(mine, err, sizeof err), *b = st_open("tests/fixtures/loop/lora_end/adapter_model.safetensors", err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->n_tensors, b->n_tensors);
    double worst = 0;
    for (size_t i = 0; i < b->n_tensors; i++) {
        const StTensor *tb = &b->tensors[i], *ta = st_find(a, tb->name);
        if (!ta) fail_msg("llfc's adapter lacks %s", tb->name);
        assert_int_equal(ta->numel, tb->numel);
        double num = 0, den = 0;
        for (int64_t j = 0; j < tb->numel; j++) {
            double d = st_get_f32(ta, j) - st_get_f32(tb, j);
            num += d * d, den += (double)st_get_f32(tb, j) * st_get_f32(tb, j);
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        if (rel > worst) worst = rel;
        if (rel > 1e-4) fail_msg("%s: relative difference %.2e from PEFT's", tb->name, rel);
    }
    printf("  lora adapter after 10 steps: %zu tensors, worst relative difference from PEFT's %.2e\n",
           b->n_tensors, worst);
    st_close(a);
    st_close(b);
    free(mine);
    free(ov);
    sb_free(&flags);
    json_free(doc);
    free(text);
    free(tok);
}

/* `./run_sft --nproc-per-node 2` starts two ranks that meet; an unreachable master is named. */
static void test_launcher_starts_ranks_that_meet(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    char *abs_model = model[0] == '/' ? xstrdup(model) : xprintf("%s/%s", root, model);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_sft && cd %s && ./run_sft --nproc-per-node 2 --dry-run "
            "model_name_or_path=%s dataset_dir=%s/data", llfc, tmp, tmp, abs_model, root);
    expect(0, "rank 1 of 2 (torchrun, local rank 1 of 2", cmd);
    expect(0, "rank 0 of 2 (torchrun, local rank 0 of 2", cmd);
    // as srun starts it: two tasks of one SLURM step on this host meet at its first node
    set_cmd("cd %s && export SLURM_NTASKS=2 SLURM_STEP_TASKS_PER_NODE=2 SLURM_STEP_NODELIST=localhost "
            "SLURM_JOB_ID=$$ SLURM_NODEID=0; (SLURM_PROCID=1 SLURM_LOCALID=1 ./run_sft --dry-run model_name_or_path=%s "
            "dataset_dir=%s/data > rank1.log 2>&1 &); SLURM_PROCID=0 SLURM_LOCALID=0 ./run_sft --dry-run "
            "model_name_or_path=%s dataset_dir=%s/data && sleep 1 && cat rank1.log", tmp, abs_model, root, abs_model, root);
    expect(0, "rank 1 of 2 (SLURM, local rank 1 of 2", cmd);
    // a rank that dies mid-run: the launcher names it, rank 0 stops and names it too
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_small cutoff_len=32 per_device_train_batch_size=1 && cd %s && "
            "LLFC_TEST_KILL=1:3 ./run_small --nproc-per-node 2 model_name_or_path=%s dataset_dir=%s/data "
            "output_dir=out_kill max_steps=50 ddp_timeout=30", llfc, tmp, tmp, abs_model, root);
    expect(137, "llfc launcher: rank 1 (pid", cmd);
    expect(137, "was killed by signal 9", cmd);
    expect(137, "rank 0: rank 1 (host", cmd);
    free(abs_model);
    set_cmd("cd %s && %s recipes/demo_lora_sft.yaml -o %s/run_sft && RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 "
            "MASTER_ADDR=127.0.0.1 MASTER_PORT=1 %s/run_sft --dry-run ddp_timeout=1", root, llfc, tmp, tmp);
    expect(1, "rank 1 cannot reach the rendezvous at 127.0.0.1:1 (MASTER_ADDR:MASTER_PORT) after 1 s", cmd);
    free(model);
}

/* Two runs' losses (trainer_log.jsonl) and grad norms (trainer_state.json) in output folders a and
 * b: the same bits, step by step. */
static void same_curves(const char *a, const char *b, size_t want_steps) {
    const char *keys[] = {"loss", "grad_norm"}, *files[] = {"trainer_log.jsonl", "trainer_state.json"};
    for (int q = 0; q < 2; q++) {
        char *fa = xprintf("%s/%s", a, files[q]), *fb = xprintf("%s/%s", b, files[q]);
        size_t (*read)(const char *, const char *, double *, size_t) = q == 0 ? log_values : history_values;
        double x[16], y[16];
        size_t n = read(fa, keys[q], x, 16);
        assert_int_equal(n, want_steps);
        assert_int_equal(read(fb, keys[q], y, 16), n);
        for (size_t i = 0; i < n; i++)
            if (x[i] != y[i]) fail_msg("step %zu %s: %.17g in %s, %.17g in %s", i + 1, keys[q], x[i], fa, y[i], fb);
        free(fa), free(fb);
    }
}

/* tmp/run_small (micro-batch 1 of stories260K) and its `--nproc-per-node 2` run of `steps` steps in
 * tmp/out_launcher: what an MPI launch of it must equal. */
static void small_trainer_and_launcher_run(const char *model, int steps) {
    char *abs_model = model[0] == '/' ? xstrdup(model) : xprintf("%s/%s", root, model);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_small cutoff_len=32 per_device_train_batch_size=1 "
            "model_name_or_path=%s dataset_dir=%s/data", llfc, tmp, abs_model, root);
    expect(0, "wrote", cmd);
    set_cmd("cd %s && ./run_small --nproc-per-node 2 output_dir=out_launcher max_steps=%d", tmp, steps);
    expect(0, "data parallel: 2 ranks (torchrun)", cmd);
    free(abs_model);
}

/* `mpirun -np 2 ./run_small` with no MASTER_ADDR: the ranks learn rank 0's address through Open
 * MPI and train exactly as `--nproc-per-node 2` does; without Open MPI's library they are told
 * the two ways out; with MASTER_ADDR given they meet over TCP and need no library. */
static void test_mpirun_trains_like_the_launcher(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    MPIRUN_OR_SKIP(mpirun);
    small_trainer_and_launcher_run(model, 4);
    set_cmd("cd %s && %s -np 2 ./run_small output_dir=out_mpirun max_steps=4", tmp, mpirun);
    expect(0, "ranks met through Open MPI v", cmd);
    expect(0, "MASTER_ADDR=127.0.0.1 MASTER_PORT=", cmd); // ranks on one node: the loopback
    expect(0, "data parallel: 2 ranks (Open MPI) met at 127.0.0.1:", cmd);
    char *a = xprintf("%s/out_launcher", tmp), *b = xprintf("%s/out_mpirun", tmp);
    same_curves(a, b, 4);
    printf("  mpirun -np 2: 4 losses and grad norms the same bits as --nproc-per-node 2's\n");
    free(a), free(b);
    set_cmd("cd %s && LLFC_MPI=/nonexistent %s -np 2 ./run_small output_dir=out_nolib max_steps=1", tmp, mpirun);
    expect(1, "Open MPI's library, which would give them rank 0's address, was not found: tried "
              "LLFC_MPI=/nonexistent (", cmd);
    expect(1, "set LLFC_MPI to its libmpi.so, or give rank 0's address yourself: mpirun -x MASTER_ADDR=", cmd);
    set_cmd("cd %s && LLFC_MPI=/nonexistent %s -np 2 -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=%d ./run_small "
            "--dry-run", tmp, mpirun, test_free_port());
    expect(0, "rank 1 of 2 (Open MPI, local rank 1 of 2", cmd);
    free(model);
}

/* `mpiexec -np 2 ./run_small` of MPICH (Hydra's PMI_RANK / PMI_SIZE, MPICH's ABI): the ranks learn
 * rank 0's address through MPICH's MPI_Bcast and train exactly as `--nproc-per-node 2` does;
 * MPICH's MPI_Bcast also carries NCCL's id on GPUs (nccl.c), which the CPU run does not use. */
static void test_mpich_trains_like_the_launcher(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    MPICH_OR_SKIP(mpiexec);
    small_trainer_and_launcher_run(model, 3);
    set_cmd("cd %s && %s -np 2 ./run_small output_dir=out_mpich max_steps=3", tmp, mpiexec);
    expect(0, "ranks met through MPICH Version: ", cmd);
    expect(0, "data parallel: 2 ranks (MPICH) met at 127.0.0.1:", cmd);
    char *a = xprintf("%s/out_launcher", tmp), *b = xprintf("%s/out_mpich", tmp);
    same_curves(a, b, 3);
    printf("  mpiexec.mpich -np 2: 3 losses and grad norms the same bits as --nproc-per-node 2's\n");
    free(a), free(b), free(model);
}

/* `llfc tokenize` gives Hugging Face's ids for the shared corpus, and decodes them back. */
static void test_tokenize_matches_hugging_face(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "tokenizers");
    const char *names[] = {"llama3", "gemma3"};
    for (int i = 0; i < 2; i++) {
        set_cmd("%s tokenize --tokenizer %s/%s < %s/corpus_public.jsonl > %s/ids.jsonl", llfc, dir, names[i], dir, tmp);
        expect(0, NULL, cmd);
        char *got = xprintf("%s/ids.jsonl", tmp), *want = xprintf("%s/%s/expected_public.jsonl", dir, names[i]);
        assert_int_equal(same_jsonl_field(got, want, "ids"), 251);
        free(got);
        free(want);
        set_cmd("%s tokenize --tokenizer %s/%s --special < %s/corpus_public.jsonl > %s/ids.jsonl", llfc, dir, names[i], dir, tmp);
        expect(0, NULL, cmd);
        got = xprintf("%s/ids.jsonl", tmp), want = xprintf("%s/%s/expected_public_special.jsonl", dir, names[i]);
        assert_int_equal(same_jsonl_field(got, want, "ids"), 251);
        free(got);
        free(want);
    }
    // Llama 3 is byte-level without a normalizer: decoding gives every text back
    set_cmd("%s tokenize --tokenizer %s/llama3 < %s/corpus_public.jsonl | %s tokenize --tokenizer %s/llama3 "
            "--decode > %s/text.jsonl", llfc, dir, dir, llfc, dir, tmp);
    expect(0, NULL, cmd);
    char *got = xprintf("%s/text.jsonl", tmp), *want = xprintf("%s/corpus_public.jsonl", dir);
    assert_int_equal(same_jsonl_field(got, want, "text"), 251);
    free(got);
    free(want);
    // plain lines are text too; bad input names its line
    set_cmd("printf 'hello world\\n' | %s tokenize --tokenizer %s/llama3", llfc, dir);
    expect(0, "{\"ids\": [15339, 1917]}", cmd);
    set_cmd("printf '{\"text\": 5}\\n' | %s tokenize --tokenizer %s/llama3", llfc, dir);
    expect(1, "<stdin>:1: a JSON object line needs a string \"text\"", cmd);
    set_cmd("%s tokenize --tokenizer %s/nowhere < /dev/null", llfc, dir);
    expect(1, "nowhere", cmd);
    free(dir);
}

/* `llfc init-model` writes a folder that llfc's own loader accepts and a trainer dry-runs on. */
static void test_init_model_writes_a_loadable_folder(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "tokenizers/qwen3");
    set_cmd("%s init-model --family qwen3 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 "
            "--vocab 151936 --tokenizer %s --seed 7 -o %s/tiny", llfc, tok, tmp);
    expect(0, NULL, cmd);
    char *dir = xprintf("%s/tiny", tmp), *file = xprintf("%s/tiny/model.safetensors", tmp);
    char err[ERR_LEN];
    ModelSpec spec;
    assert_true(model_load(&spec, dir, err, sizeof err));
    assert_int_equal(spec.C, 64);
    assert_int_equal(spec.L, 2);
    StModel *st = st_open(file, err, sizeof err);
    if (!st) fail_msg("%s", err);
    if (!st_check_spec(st, &spec, err, sizeof err)) fail_msg("%s", err);
    st_close(st);
    model_free(&spec);
    // the same flags give the same bytes
    set_cmd("%s init-model --family qwen3 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 "
            "--vocab 151936 --seed 7 -o %s/again && cmp %s/tiny/model.safetensors %s/again/model.safetensors",
            llfc, tmp, tmp, tmp);
    expect(0, NULL, cmd);
    set_cmd("%s recipes/demo_lora_sft.yaml -o %s/run_sft model_name_or_path=%s template=qwen3 && "
            "%s/run_sft --dry-run model_name_or_path=%s", llfc, tmp, dir, tmp, dir);
    expect(0, "dry run: every input checked", cmd);
    // --no-weights: the same config and tokenizer files without the safetensors, and a
    // trainer compiles against that folder (tests/bench/bench_train.py stages this way)
    set_cmd("%s init-model --family qwen3 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 "
            "--vocab 151936 --tokenizer %s --seed 7 --no-weights -o %s/cfg && cmp %s/tiny/config.json "
            "%s/cfg/config.json && cmp %s/tiny/tokenizer.json %s/cfg/tokenizer.json && "
            "test ! -e %s/cfg/model.safetensors && "
            "%s recipes/demo_lora_sft.yaml -o %s/run_cfg --arch none model_name_or_path=%s/cfg template=qwen3",
            llfc, tok, tmp, tmp, tmp, tmp, tmp, tmp, llfc, tmp, tmp);
    expect(0, "config and tokenizer only", cmd);
    set_cmd("%s init-model --family mamba --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 "
            "--vocab 100 -o %s/bad; rc=$?; test ! -e %s/bad && exit $rc", llfc, tmp, tmp);
    expect(1, "mamba", cmd);
    free(dir);
    free(file);
    free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trainer_runs_alone_in_a_fresh_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_trainer_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_recipes_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_hooks_are_checked_in_the_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples_compile_and_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_prints_every_key_with_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trainer_trains_and_resumes_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_matches_pytorch_step_by_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_launcher_starts_ranks_that_meet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mpirun_trains_like_the_launcher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mpich_trains_like_the_launcher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenize_matches_hugging_face, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_model_writes_a_loadable_folder, setup, teardown),
    };
    if (getenv("LLFC_TEST_FILTER")) cmocka_set_test_filter(getenv("LLFC_TEST_FILTER")); // e.g. "*pytorch*"
    return cmocka_run_group_tests(tests, NULL, NULL);
}
