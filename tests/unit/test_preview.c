/* test_preview.c - `llfc preview` (compiler/cmd_preview.c) against LLaMA-Factory's own print of
 * the first training example (tests/fixtures/encode/preview/CASE.txt, captured by
 * tests/parity/gen_encode_fixtures.py): a recipe for the same case must print the same bytes.
 * Also --json and the usage errors. The Lua engine comes from lua/ on disk here (bundle_find
 * below stands in for the one llfc carries). Run from the repository root. */
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

#include "bundle.h"
#include "cmd_preview.h"
#include "json.h"
#include "util.h"

/* What tools/bundle.sh embeds in llfc, read from lua/ instead. */
static BundleFile files[16];
static size_t n_files;
const BundleFile *bundle_find(const char *name) {
    for (size_t i = 0; i < n_files; i++)
        if (!strcmp(files[i].name, name)) return &files[i];
    if (n_files == sizeof files / sizeof *files) return NULL;
    char *path = xprintf("lua/%s", name);
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    free(path);
    if (!text) return NULL;
    files[n_files] = (BundleFile){xstrdup(name), text, len};
    return &files[n_files++];
}

static int free_bundle(void **state) {
    (void)state;
    for (size_t i = 0; i < n_files; i++) {
        free((char *)files[i].name);
        free((char *)files[i].data);
    }
    n_files = 0;
    return 0;
}

/* Run cmd_preview with argv, stdout into a string (malloc'd); *rc gets its exit status. */
static char *run_preview(int argc, char **argv, int *rc) {
    char path[] = "/tmp/llfc_preview_out_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    *rc = cmd_preview(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    char err[ERR_LEN];
    size_t len;
    char *out = util_read_file(path, &len, err, sizeof err);
    unlink(path);
    assert_non_null(out);
    return out;
}

/* A recipe for the fixture case: its template, dataset and options, the shared assets. */
static char *write_recipe(const Json *c, const char *shared) {
    StrBuf y = {0};
    const char *stage = json_as_str(json_get(c, "stage"));
    sb_printf(&y, "model_name_or_path: %s/tokenizers/%s\n", shared, json_as_str(json_get(c, "tokenizer")));
    sb_printf(&y, "stage: %s\ndo_train: true\nfinetuning_type: lora\n", stage);
    sb_printf(&y, "dataset: %s\ndataset_dir: %s/data/llamafactory\n", json_as_str(json_get(c, "dataset")), shared);
    sb_printf(&y, "template: %s\n", json_as_str(json_get(c, "template")));
    int64_t cut;
    json_as_int(json_get(c, "cutoff_len"), &cut);
    sb_printf(&y, "cutoff_len: %lld\n", (long long)cut);
    const Json *pk = json_get(c, "packing");
    if (pk && pk->type == JSON_BOOL) sb_printf(&y, "packing: %s\n", pk->boolean ? "true" : "false");
    const Json *o = json_get(c, "options");
    for (size_t i = 0; o && i < o->obj.n; i++) {
        const Json *v = o->obj.vals[i];
        if (v->type == JSON_BOOL) sb_printf(&y, "%s: %s\n", o->obj.keys[i], v->boolean ? "true" : "false");
        else if (v->type == JSON_NULL) sb_printf(&y, "%s: null\n", o->obj.keys[i]);
    }
    sb_printf(&y, "output_dir: /tmp/llfc_preview_test_out\n");
    char *path = xprintf("/tmp/llfc_preview_%ld_%s.yaml", (long)getpid(), json_as_str(json_get(c, "case")));
    char err[ERR_LEN];
    if (!util_write_file_atomic(path, y.data, y.len, 0644, err, sizeof err)) fail_msg("%s", err);
    sb_free(&y);
    return path;
}

static void test_matches_lf(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "tokenizers");
    char *shared = xstrdup(getenv("LLFC_SHARED") && *getenv("LLFC_SHARED") ? getenv("LLFC_SHARED") : "../shared");
    static const char *cases[] = {"sft_qwen3_identity", "dpo_llama3", "pt_default_c4_llama2", "kto_llama3",
                                  "sft_llama3_glaive_neat"};
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[ERR_LEN];
        size_t len;
        char *cpath = xprintf("tests/fixtures/encode/cases/%s.json", cases[i]);
        char *ppath = xprintf("tests/fixtures/encode/preview/%s.txt", cases[i]);
        char *ctext = util_read_file(cpath, &len, err, sizeof err);
        if (!ctext) fail_msg("%s", err);
        JsonDoc *doc = json_parse(ctext, len, cpath, err, sizeof err);
        if (!doc) fail_msg("%s", err);
        char *want = util_read_file(ppath, &len, err, sizeof err);
        if (!want) fail_msg("%s", err);
        char *recipe = write_recipe(json_root(doc), shared);
        char *argv[] = {"preview", recipe, NULL};
        int rc;
        char *got = run_preview(2, argv, &rc);
        bool same = rc == 0 && !strcmp(got, want);
        fprintf(stderr, "[ %-9s] preview %s: %s LLaMA-Factory's print_data_example\n", same ? "MATCH" : "MISMATCH",
                cases[i], same ? "identical to" : "differs from");
        if (!same) {
            size_t k = 0;
            while (got[k] && got[k] == want[k]) k++;
            fprintf(stderr, "  rc %d; first difference at byte %zu:\n  llfc: %.120s\n  LF:   %.120s\n", rc, k,
                    got + k, want + k);
            bad++;
        }
        unlink(recipe);
        free(recipe);
        free(got);
        free(want);
        json_free(doc);
        free(ctext);
        free(cpath);
        free(ppath);
    }
    free(shared);
    free(tok);
    assert_int_equal(bad, 0);
}

/* --json: one object per row, -n rows, parsable, ids as the text print shows them. */
static void test_json_lines(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "tokenizers");
    char *shared = xstrdup(getenv("LLFC_SHARED") && *getenv("LLFC_SHARED") ? getenv("LLFC_SHARED") : "../shared");
    char err[ERR_LEN];
    size_t len;
    char *ctext = util_read_file("tests/fixtures/encode/cases/sft_qwen3_identity.json", &len, err, sizeof err);
    JsonDoc *doc = json_parse(ctext, len, "case", err, sizeof err);
    assert_non_null(doc);
    char *recipe = write_recipe(json_root(doc), shared);
    char *argv[] = {"preview", recipe, "-n", "3", "--json", NULL};
    int rc;
    char *got = run_preview(5, argv, &rc);
    assert_int_equal(rc, 0);
    int lines = 0;
    for (char *p = got; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        JsonDoc *row = json_parse(p, (size_t)(nl - p), "row", err, sizeof err);
        if (!row) fail_msg("%s", err);
        const Json *ids = json_get(json_root(row), "input_ids"), *labels = json_get(json_root(row), "labels");
        assert_non_null(ids);
        assert_non_null(labels);
        assert_int_equal(ids->arr.n, labels->arr.n);
        if (lines == 0) { /* row 0 is LF's first example (the fixture's verbatim row) */
            const Json *lf = json_get(json_at(json_get(json_root(doc), "first"), 0), "input_ids");
            if (lf->arr.n < 256) assert_int_equal(ids->arr.n, lf->arr.n); /* the fixture keeps 256 */
            assert_true(ids->arr.n >= lf->arr.n);
            for (size_t i = 0; i < lf->arr.n; i++) assert_int_equal(ids->arr.items[i]->num.i, lf->arr.items[i]->num.i);
        }
        json_free(row);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 3);
    unlink(recipe);
    free(recipe);
    free(got);
    json_free(doc);
    free(ctext);
    free(shared);
    free(tok);
}

static void test_usage(void **state) {
    (void)state;
    int rc;
    char *argv1[] = {"preview", NULL};
    free(run_preview(1, argv1, &rc));
    assert_int_equal(rc, 2);
    char *argv2[] = {"preview", "r.yaml", "-n", "zero", NULL};
    free(run_preview(4, argv2, &rc));
    assert_int_equal(rc, 2);
    char *argv3[] = {"preview", "/nonexistent/recipe.yaml", NULL};
    free(run_preview(2, argv3, &rc));
    assert_int_equal(rc, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_lf),
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, free_bundle);
}
