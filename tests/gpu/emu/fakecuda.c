/* fakecuda.c - a libcuda.so.1 for machines without a GPU: the driver calls test_kernels_gpu
 * makes, where a "module" is the generated unit compiled for the CPU (units.c wrote it as
 * u<FNV of the CUBIN>.cpp, run.sh compiled it to .so in $LLFC_EMU_DIR), device memory is host
 * memory, and a launch runs emu_launch (epilogue.hpp). Reports one device of compute capability
 * 9.0 with 16 GiB free. Also the calls runtime/cudrv.c makes for the CUDA executor.
 *
 * Streams and events. Every call here runs before it returns, in the order it is made, on the
 * one legacy stream: there is no concurrency between streams to show, and a kernel that would
 * race with a collective on a GPU does not here. What the emulation checks instead is that the
 * order the executor asks for is enough: a clock counts the work done on the legacy stream
 * (launches, copies, memsets; not fakecublaslt.c's products, which do not come through here), an
 * event recorded there takes the clock's value, and a stream made by cuStreamCreate keeps the
 * latest value it waited for (cuStreamWaitEvent). fakenccl.c asks fakecuda_stream_unwaited before
 * it starts a collective on such a stream and refuses one whose stream has not waited for all of
 * the legacy stream's work (too strict for a collective that reads nothing written since, never
 * too lax). The work of such a stream is fakenccl's collectives, which say themselves when they
 * are done (ncclCommGetAsyncError): cuStreamQuery says done. An event recorded on such a stream
 * takes the count of collectives started there so far (fakenccl_enqueued), and the legacy stream
 * waiting for it runs fakenccl_complete: those collectives run, their inputs are checked and their
 * results delivered before the legacy stream's next work, as a GPU would order it. A stream of
 * cuStreamCreate's waiting for another's event is not emulated (CUDA_ERROR_NOT_SUPPORTED). */
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
enum { INVALID_HANDLE = 400, NOT_SUPPORTED = 801 };
static long legacy_clock; /* work done on the legacy stream so far */
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
CUresult cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n) { legacy_clock++; memcpy((void *)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n) { legacy_clock++; memcpy(d, (void *)(uintptr_t)s, n); return 0; }
typedef struct { unsigned magic; long waited; } Stream;      /* the legacy clock it waited for */
typedef struct { unsigned magic; long clock; void *stream; int recorded; long ops; } Event;
#define STREAM_MAGIC 0x57AEA3u
#define EVENT_MAGIC 0xE7E47u
static CUresult not_emulated(const char *what) { fprintf(stderr, "fakecuda: %s is not emulated\n", what); return NOT_SUPPORTED; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
    (void)smem, (void)extra;
    if (stream) return not_emulated("a launch on a stream other than the legacy one");
    legacy_clock++;
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
CUresult cuMemsetD8_v2(unsigned long long p, unsigned char v, size_t n) { legacy_clock++; memset((void *)(uintptr_t)p, v, n); return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
    *s = r == INVALID_HANDLE ? "CUDA_ERROR_INVALID_HANDLE" : r == NOT_SUPPORTED ? "CUDA_ERROR_NOT_SUPPORTED" : "CUDA_ERROR_EMULATED";
    return 0;
}
CUresult cuGetErrorString(CUresult r, const char **s) { (void)r; *s = "emulated"; return 0; }
static Stream *stream_of(void *s) { return s && ((Stream *)s)->magic == STREAM_MAGIC ? s : NULL; }
static Event *event_of(void *e) { return e && ((Event *)e)->magic == EVENT_MAGIC ? e : NULL; }
CUresult cuStreamQuery(void *stream) { return !stream || stream_of(stream) ? 0 : INVALID_HANDLE; } /* see above */
/* A stream or an event: a struct that starts with its magic, which a destroyed one loses. */
static void *handle_new(size_t bytes, unsigned magic) {
    unsigned *h = calloc(1, bytes);
    *h = magic;
    return h;
}
static CUresult handle_free(void *h, unsigned magic) {
    if (!h || *(unsigned *)h != magic) return INVALID_HANDLE;
    *(unsigned *)h = 0;
    free(h);
    return 0;
}
/* non-blocking or not: nothing on the legacy stream ever waits for one here */
CUresult cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = handle_new(sizeof(Stream), STREAM_MAGIC); return 0; }
CUresult cuStreamDestroy_v2(void *s) { return handle_free(s, STREAM_MAGIC); }
CUresult cuEventCreate(void **e, unsigned flags) { (void)flags; *e = handle_new(sizeof(Event), EVENT_MAGIC); return 0; }
CUresult cuEventDestroy_v2(void *e) { return handle_free(e, EVENT_MAGIC); }
/* fakenccl.c's fakenccl_enqueued and fakenccl_complete, once the fake NCCL ($LLFC_NCCL) is loaded
 * (looked for until found: it is loaded after this driver). */
static long (*nccl_enqueued)(void *);
static int (*nccl_complete)(void *, long);
static void find_nccl_hooks(void) {
    if (nccl_enqueued) return;
    const char *path = getenv("LLFC_NCCL");
    void *lib = path && *path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
    if (!lib) return;
    *(void **)&nccl_complete = dlsym(lib, "fakenccl_complete");
    *(void **)&nccl_enqueued = dlsym(lib, "fakenccl_enqueued"); /* lib's reference stays: so do they */
}
CUresult cuEventRecord(void *e, void *stream) {
    Event *ev = event_of(e);
    if (!ev || (stream && !stream_of(stream))) return INVALID_HANDLE;
    if (stream) find_nccl_hooks();
    ev->clock = legacy_clock, ev->stream = stream, ev->recorded = 1;
    ev->ops = stream && nccl_enqueued ? nccl_enqueued(stream) : 0;
    return 0;
}
/* A stream waits for the legacy stream's work up to the event's record (a never recorded event:
 * nothing, as CUDA says). */
CUresult cuStreamWaitEvent(void *stream, void *e, unsigned flags) {
    (void)flags;
    Event *ev = event_of(e);
    Stream *st = stream_of(stream);
    if (!ev || (stream && !st)) return INVALID_HANDLE;
    if (!ev->recorded) return 0;
    if (!st && ev->stream) { /* the legacy stream after a collectives' stream's event */
        if (!ev->ops) return 0;
        if (!nccl_complete) return not_emulated("waiting for collectives of an NCCL other than fakenccl");
        return nccl_complete(ev->stream, ev->ops) ? 999 : 0; /* CUDA_ERROR_UNKNOWN: the collective's error */
    }
    if (!st) return 0; /* the legacy stream after itself */
    if (ev->stream) return not_emulated("a stream of cuStreamCreate's waiting for another one's event");
    if (ev->clock > st->waited) st->waited = ev->clock;
    return 0;
}
/* fakenccl.c: the legacy stream's operations that `stream` has not waited for (-1: no such stream). */
long fakecuda_stream_unwaited(void *stream) {
    Stream *st = stream_of(stream);
    return st ? legacy_clock - st->waited : -1;
}
