/* fuzz_dataset.c - libFuzzer target for the dataset stage: any bytes as a data file.
 *
 * The first byte picks the file type (JSON array / JSON Lines / CSV / TSV / TXT), the format
 * (alpaca, sharegpt, openai, ranking, kto, history) and data_on_error; the rest is the file.
 * Either data_load fails with a message that names the file, or it succeeds and every
 * example is well formed and every record is accounted for (kept + skipped + dropped = read).
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I runtime -I compiler \
 *       -I /usr/include/lua5.4 tests/fuzz/fuzz_dataset.c runtime/dataset.c runtime/data_read.c \
 *       runtime/data_numpy.c runtime/luabox.c runtime/json.c runtime/util.c \
 *       /usr/lib/x86_64-linux-gnu/liblua5.4.a -lm -ldl -lpthread -o build/fuzz/fuzz_dataset
 *   build/fuzz/fuzz_dataset -max_total_time=300 /tmp/corpus tests/fuzz/corpus_dataset
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"
#include "dataset.h"
#include "util.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static char g_dir[64];

static const char *const FILES[] = {"x.json", "x.jsonl", "x.csv", "x.tsv", "x.txt"};
static const char *const ENTRIES[] = {
    "{\"file_name\": \"%s\"}",
    "{\"file_name\": \"%s\", \"formatting\": \"sharegpt\"}",
    "{\"file_name\": \"%s\", \"formatting\": \"openai\", \"columns\": {\"messages\": \"messages\", \"tools\": "
    "\"tools\"}, \"tags\": {\"role_tag\": \"role\", \"content_tag\": \"content\", \"user_tag\": \"user\", "
    "\"assistant_tag\": \"assistant\", \"observation_tag\": \"tool\", \"function_tag\": \"function\", "
    "\"system_tag\": \"system\"}}",
    "{\"file_name\": \"%s\", \"formatting\": \"sharegpt\", \"ranking\": true, \"columns\": {\"messages\": "
    "\"conversations\", \"chosen\": \"chosen\", \"rejected\": \"rejected\"}}",
    "{\"file_name\": \"%s\", \"columns\": {\"prompt\": \"instruction\", \"response\": \"output\", \"kto_tag\": "
    "\"label\"}}",
    "{\"file_name\": \"%s\", \"columns\": {\"prompt\": \"instruction\", \"query\": \"input\", \"response\": "
    "\"output\", \"history\": \"history\", \"system\": \"system\", \"tools\": \"tools\"}}",
    "{\"file_name\": \"%s\", \"columns\": {\"prompt\": \"text\"}}",
};
static const DataStage STAGES[] = {DATA_STAGE_SFT, DATA_STAGE_SFT, DATA_STAGE_SFT, DATA_STAGE_DPO,
                                   DATA_STAGE_KTO, DATA_STAGE_SFT, DATA_STAGE_PT};

static void write_file(const char *name, const void *data, size_t len) {
    char *p = util_path_join(g_dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
    free(p);
}

static void check_text(const char *s) {
    CHECK(s);
    CHECK(data_utf8_check(s, strlen(s)) == strlen(s));
}

static void check_examples(const DataExample *ex, size_t n) {
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < ex[i].n_prompt; k++) {
            CHECK((unsigned)ex[i].prompt[k].role <= DATA_ROLE_OBSERVATION);
            check_text(ex[i].prompt[k].content);
        }
        for (size_t k = 0; k < ex[i].n_response; k++) check_text(ex[i].response[k].content);
        if (ex[i].system) check_text(ex[i].system);
        if (ex[i].tools) check_text(ex[i].tools);
        CHECK(ex[i].kto_tag >= -1 && ex[i].kto_tag <= 1);
        CHECK(ex[i].source && ex[i].line >= 1 && ex[i].dataset);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_dataset_%d", (int)getpid());
    mkdir(g_dir, 0755);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned sel = data[0];
    size_t entry = (sel >> 3) % (sizeof ENTRIES / sizeof *ENTRIES);
    const char *file = FILES[sel % 5];
    bool skip = sel & 0x80;
    char info[1024], e[900];
    snprintf(e, sizeof e, ENTRIES[entry], file);
    snprintf(info, sizeof info, "{\"d\": %s}", e);
    write_file("dataset_info.json", info, strlen(info));
    write_file(file, data + 1, size - 1);
    const char *names[] = {"d"};
    DataOptions o = {.datasets = names, .n_datasets = 1, .dataset_dir = g_dir, .stage = STAGES[entry],
                     .skip_bad = skip, .threads = 1, .val_size = (sel & 0x40) ? 0.3 : 0};
    char err[ERR_LEN] = "";
    DataSet *ds = data_load(&o, err, sizeof err);
    if (!ds) {
        CHECK(err[0]);
        char *p = util_path_join(g_dir, file);
        /* problems of the data name its file; the others are val_size's */
        CHECK(strstr(err, p) || strstr(err, "val_size") || strstr(err, "dataset 'd'"));
        free(p);
        return 0;
    }
    const DataStats *s = data_stats(ds);
    CHECK(s->read == s->kept + s->skipped); /* no hook, no sampling: every record kept or skipped */
    CHECK(s->kept <= s->selected && s->selected <= s->read);
    size_t total = 0;
    for (int k = 0; k < DATA_BAD_NKINDS; k++) total += s->skipped_by[k];
    CHECK(total == s->skipped);
    if (!skip) CHECK(s->skipped == 0);
    size_t nt, ne;
    const DataExample *t = data_train(ds, &nt), *v = data_eval(ds, &ne);
    CHECK(nt + ne == s->kept);
    check_examples(t, nt);
    check_examples(v, ne);
    FILE *devnull = fopen("/dev/null", "w");
    data_report(ds, devnull);
    fclose(devnull);
    data_free(ds);
    return 0;
}
