/* test_cudrv.c - the CUDA driver is looked for where cudrv.h says, and a missing or wrong
 * library is reported by name; streams and events on the fake driver of tests/gpu/emu (ninja
 * builds it beside this test), a failing call named with what it served (the products and
 * launches are checked end to end by tests/e2e/test_cuda_emu.c, on a GPU or its emulation). */
#include "testutil.h"

#include <libgen.h>
#include <unistd.h>

#include "cudrv.h"

static char here[4096]; /* this test's folder, where the fakes are */

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

static CuDrv *fake_gpu(void) {
    char err[512], drv[4200], lt[4200];
    snprintf(drv, sizeof drv, "%s/libfakecuda.so.1", here);
    snprintf(lt, sizeof lt, "%s/libfakecublaslt.so", here);
    setenv("LLFC_CUDA_DRIVER", drv, 1);
    setenv("LLFC_CUBLASLT", lt, 1);
    CuDrv *d = cudrv_open(0, err, sizeof err);
    if (!d) fail_msg("%s", err);
    unsetenv("LLFC_CUDA_DRIVER");
    unsetenv("LLFC_CUBLASLT");
    return d;
}

static void test_streams_and_events(void **state) {
    (void)state;
    char err[512];
    CuDrv *d = fake_gpu();
    void *stream = NULL, *event = NULL;
    bool done = false;
    assert_true(cudrv_stream_new(d, &stream, "communication", err, sizeof err));
    assert_true(cudrv_event_new(d, &event, "gradients ready", err, sizeof err));
    assert_non_null(stream);
    assert_non_null(event);
    assert_true(cudrv_event_record(d, event, NULL, "layer 3", err, sizeof err));
    assert_true(cudrv_stream_wait(d, stream, event, "layer 3", err, sizeof err));
    assert_true(cudrv_stream_done(d, stream, &done, "layer 3", err, sizeof err));
    assert_true(done);
    long junk[4] = {0}; /* no stream or event of the driver's: the call and what it served are named */
    assert_false(cudrv_stream_wait(d, junk, event, "layer 2", err, sizeof err));
    assert_string_equal(err, "cuStreamWaitEvent (layer 2) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_false(cudrv_event_record(d, junk, NULL, "layer 1", err, sizeof err));
    assert_string_equal(err, "cuEventRecord (layer 1) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_false(cudrv_event_free(d, junk, "teardown", err, sizeof err));
    assert_string_equal(err, "cuEventDestroy (teardown) failed: CUDA_ERROR_INVALID_HANDLE (emulated)");
    assert_true(cudrv_event_free(d, event, "gradients ready", err, sizeof err));
    assert_true(cudrv_stream_free(d, stream, "communication", err, sizeof err));
    assert_true(cudrv_stream_free(d, NULL, "none", err, sizeof err));
    cudrv_close(d);
}

int main(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    snprintf(here, sizeof here, "%s", dirname(self));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_driver_is_named),
        cmocka_unit_test(test_a_library_that_is_no_driver_is_named),
        cmocka_unit_test(test_streams_and_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
