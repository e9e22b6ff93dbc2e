/* test_cudrv.c - the CUDA driver is looked for where cudrv.h says, and a missing or wrong
 * library is reported by name (the products and launches are checked end to end by
 * tests/e2e/test_cuda_emu.c, on a GPU or its emulation). */
#include "testutil.h"

#include "cudrv.h"

static void test_missing_driver_is_named(void **state) {
    (void)state;
    char err[512];
    setenv("LLFC_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
    assert_null(cudrv_open(0, err, sizeof err));
    assert_non_null(strstr(err, "no CUDA driver: /nonexistent/libcuda.so.1 not found by the dynamic loader"));
    unsetenv("LLFC_CUDA_DRIVER");
}

static void test_a_library_that_is_no_driver_is_named(void **state) {
    (void)state;
    char err[512];
    setenv("LLFC_CUDA_DRIVER", "libm.so.6", 1);
    assert_null(cudrv_open(0, err, sizeof err));
    assert_non_null(strstr(err, "libm.so.6 has no cuInit: not the library llfc needs"));
    unsetenv("LLFC_CUDA_DRIVER");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_driver_is_named),
        cmocka_unit_test(test_a_library_that_is_no_driver_is_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
