/* fakecuda.c - a libcuda.so.1 for machines without a GPU: the driver calls test_kernels_gpu
 * makes, where a "module" is the generated unit compiled for the CPU (units.c wrote it as
 * u<FNV of the CUBIN>.cpp, run.sh compiled it to .so in $LLFC_EMU_DIR), device memory is host
 * memory, and a launch runs emu_launch (epilogue.hpp). Reports one device of compute capability
 * 9.0 with 16 GiB free. Also the calls runtime/cudrv.c makes for the CUDA executor. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "extent.h"
typedef int CUresult;
typedef struct { void (*tramp)(void **); void (*launch)(void (*)(void **), const unsigned *, const unsigned *, void **); } Fn;
CUresult cuInit(unsigned f) { (void)f; return 0; }
CUresult cuDeviceGet(int *d, int o) { (void)o; *d = 0; return 0; }
CUresult cuDeviceGetAttribute(int *v, int a, int d) { (void)d; *v = a == 75 ? 9 : 0; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)1; return 0; }
CUresult cuCtxSetCurrent(void *c) { (void)c; return 0; }
CUresult cuModuleLoadData(void **m, const void *img) {
    char path[4096];
    const char *dir = getenv("LLFC_EMU_DIR");
    snprintf(path, sizeof path, "%s/u%016llx.so", dir ? dir : ".", (unsigned long long)fnv(img, elf_extent(img)));
    *m = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*m) { fprintf(stderr, "fakecuda: %s\n", dlerror()); return 200; }
    return 0;
}
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
    int (*lookup)(const char *, void (**)(void **)) = (int (*)(const char *, void (**)(void **)))dlsym(m, "emu_lookup");
    static Fn fns[4096]; /* a handful of kernels per test; never freed, like a CUfunction */
    static int n_fns;
    if (n_fns == 4096) return 2;
    Fn *fn = &fns[n_fns++];
    *(void **)&fn->launch = dlsym(m, "emu_launch");
    if (!lookup || !lookup(name, &fn->tramp)) { fprintf(stderr, "fakecuda: no %s\n", name); return 500; }
    *f = fn;
    return 0;
}
CUresult cuMemAlloc_v2(unsigned long long *p, size_t n) { *p = (unsigned long long)(uintptr_t)malloc(n); return 0; }
CUresult cuMemFree_v2(unsigned long long p) { free((void *)(uintptr_t)p); return 0; }
CUresult cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n) { memcpy(d, (void *)(uintptr_t)s, n); return 0; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
    (void)smem, (void)stream, (void)extra;
    Fn *fn = f;
    unsigned g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fn->launch(fn->tramp, g, b, params);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (getenv("LLFC_EMU_PROFILE"))
        fprintf(stderr, "emu: %p grid %u,%u,%u block %u: %.3f s\n", (void *)fn->tramp, gx, gy, gz, bx * by * bz,
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuDeviceGetName(char *name, int len, int d) { (void)d; snprintf(name, (size_t)len, "emulated GPU (tests/gpu/emu)"); return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total) { *free_b = *total = (size_t)16 << 30; return 0; }
CUresult cuMemsetD8_v2(unsigned long long p, unsigned char v, size_t n) { memset((void *)(uintptr_t)p, v, n); return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) { (void)r; *s = "CUDA_ERROR_EMULATED"; return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) { (void)r; *s = "emulated"; return 0; }
CUresult cuStreamQuery(void *stream) { (void)stream; return 0; } /* every call above finishes before it returns */
