/* test_payload.c - a payload written after an image reads back byte for byte; every
 * truncation and every flipped byte of a trainer is caught at open. */
#include "testutil.h"

#include <unistd.h>

#include "payload.h"
#include "util.h"

static char path[64];

static int setup(void **state) {
    (void)state;
    snprintf(path, sizeof path, "/tmp/llfc_test_payload_%d", (int)getpid());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    return 0;
}

static const char IMAGE[] = "\x7f" "ELF pretend runtime image bytes";

static void write_sample(void) {
    static char big[5000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 31);
    PayloadEntry e[] = {{"recipe.yaml", "stage: sft\n", 11}, {"lua/template.lua", "return {}", 9},
                        {"empty", "", 0}, {"big", big, sizeof big}};
    char err[ERR_LEN];
    assert_true(payload_write(path, IMAGE, sizeof IMAGE, e, 4, err, sizeof err));
}

static void test_round_trip(void **state) {
    (void)state;
    write_sample();
    char err[ERR_LEN];
    Payload *p = payload_open(path, err, sizeof err);
    assert_non_null(p);
    assert_int_equal(payload_count(p), 4);
    const PayloadEntry *e = payload_find(p, "recipe.yaml");
    assert_non_null(e);
    assert_int_equal(e->size, 11);
    assert_memory_equal(e->data, "stage: sft\n", 11);
    assert_int_equal(payload_find(p, "empty")->size, 0);
    const PayloadEntry *big = payload_find(p, "big");
    for (size_t i = 0; i < big->size; i++) assert_int_equal(((const char *)big->data)[i], (char)(i * 31));
    assert_null(payload_find(p, "missing"));
    assert_int_equal(strlen(payload_digest(p)), 64);
    payload_close(p);
    // the image comes first, unchanged, so the file still runs as that program
    size_t len;
    char *all = util_read_file(path, &len, err, sizeof err);
    assert_memory_equal(all, IMAGE, sizeof IMAGE);
    free(all);
}

static void test_every_truncation_is_caught(void **state) {
    (void)state;
    write_sample();
    char err[ERR_LEN];
    size_t len;
    char *all = util_read_file(path, &len, err, sizeof err);
    for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 97)) {
        assert_true(util_write_file_atomic(path, all, cut, 0644, err, sizeof err));
        assert_null(payload_open(path, err, sizeof err));
        assert_true(strstr(err, "no llfc payload found") || strstr(err, "damaged"));
    }
    free(all);
}

static void test_every_flipped_byte_is_caught(void **state) {
    (void)state;
    write_sample();
    char err[ERR_LEN];
    size_t len;
    char *all = util_read_file(path, &len, err, sizeof err);
    for (size_t i = 0; i < len; i += (i < len - 200 ? 13 : 1)) {
        all[i] ^= 0x40;
        assert_true(util_write_file_atomic(path, all, len, 0644, err, sizeof err));
        assert_null(payload_open(path, err, sizeof err));
        all[i] ^= 0x40;
    }
    free(all);
}

static void test_not_a_trainer(void **state) {
    (void)state;
    char err[ERR_LEN];
    assert_null(payload_open("/bin/sh", err, sizeof err));
    assert_non_null(strstr(err, "/bin/sh: no llfc payload found"));
    assert_null(payload_open("/nonexistent/x", err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_is_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_flipped_byte_is_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_trainer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
