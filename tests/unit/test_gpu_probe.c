/* test_gpu_probe.c - the probe reports a missing driver by name, a library that is not a CUDA
 * driver as such, and (on a machine with a GPU) the devices the driver reports. */
#include "testutil.h"

#include "gpu_probe.h"

static void test_probe_says_what_it_found(void **state) {
    (void)state;
    char msg[512];
    int n = gpu_probe(msg, sizeof msg);
    printf("  %s\n", msg);
    if (n > 0) assert_non_null(strstr(msg, "device"));
    else assert_true(strstr(msg, "libcuda.so.1") || strstr(msg, "cuInit"));
}

static void test_missing_and_wrong_libraries_are_named(void **state) {
    (void)state;
    char msg[512];
    setenv("LLFC_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
    assert_int_equal(gpu_probe(msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "no CUDA driver: /nonexistent/libcuda.so.1 not found"));
    setenv("LLFC_CUDA_DRIVER", "libm.so.6", 1); // loads, but is no driver
    assert_int_equal(gpu_probe(msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "libm.so.6 has no cuInit/cuDeviceGetCount: not a CUDA driver"));
    unsetenv("LLFC_CUDA_DRIVER");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_says_what_it_found),
        cmocka_unit_test(test_missing_and_wrong_libraries_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
