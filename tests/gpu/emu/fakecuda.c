/* fakecuda.c - a libcuda.so.1 for machines without a GPU: the driver calls test_kernels_gpu
 * makes, where a "module" is the generated unit compiled for the CPU (units.c wrote it as
 * u<FNV of the CUBIN>.cpp, run.sh compiled it to .so in $LLFC_EMU_DIR), device memory is host
 * memory, and a launch runs emu_launch (epilogue.hpp). Reports compute capability 9.0. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    fn->launch(fn->tramp, g, b, params);
    return 0;
}
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) { (void)r; *s = "emulated"; return 0; }
