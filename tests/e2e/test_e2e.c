/* test_e2e.c - llfc as a user runs it: compile a recipe, copy the trainer alone into an empty
 * folder, run it there; bad recipes write nothing; a damaged trainer says so.
 * LLFC_BIN names the llfc under test (default build/llfc); run from the repository root. */
#include "testutil.h"

#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

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
    char *full = xprintf("(%s) 2>&1", line);
    free(line);
    FILE *f = popen(full, "r");
    free(full);
    StrBuf out = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sb_append(&out, buf, n);
    int status = pclose(f);
    if (!out.data) sb_append(&out, "", 0);
    *output = out.data;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void expect(int want_rc, const char *want_text, const char *cmd) {
    char *out;
    int rc = run(&out, "%s", cmd);
    if (rc != want_rc || (want_text && !strstr(out, want_text)))
        fail_msg("command: %s\nwanted exit %d and text: %s\ngot exit %d:\n%s", cmd, want_rc,
                 want_text ? want_text : "(any)", rc, out);
    free(out);
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
    set_cmd("cd %s/fresh && ./run_sft --dry-run", tmp);
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
    // flip one byte in the middle of the runtime's code
    set_cmd("cd %s && cp run_sft bad && printf 'X' | dd of=bad bs=1 seek=200000 conv=notrunc "
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
    set_cmd("%s check --keys", llfc);
    expect(0, "cutoff_len", cmd);
    set_cmd("%s templates", llfc);
    expect(0, "default", cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trainer_runs_alone_in_a_fresh_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_trainer_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_recipes_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_hooks_are_checked_in_the_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples_compile_and_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_prints_every_key_with_origin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
