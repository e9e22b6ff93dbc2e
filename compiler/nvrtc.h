/* nvrtc.h - the generated CUDA unit compiled by NVRTC: a CUBIN for each requested GPU
 * architecture and PTX for the newest (drivers JIT it for GPUs newer than every CUBIN), with a
 * compile cache, and the payload entries a trainer carries.
 *
 * NVRTC is linked statically when the build found the toolkit's static libraries
 * (LLFC_NVRTC_STATIC, see tools/ninja/cuda.ninja); otherwise it is loaded at run time with
 * dlopen, so llfc builds and runs on machines without CUDA. Where it is looked for: $LLFC_NVRTC
 * (a path to libnvrtc.so; when set, only there), else libnvrtc.so.13 / .12 / libnvrtc.so on
 * the loader's path, then $CUDA_HOME/lib64 and /usr/local/cuda/lib64.
 *
 * Cache: $XDG_CACHE_HOME/llfc (else ~/.cache/llfc)/nvrtc-<sha256>.bin, the key being SHA-256 of
 * (llfc version, NVRTC version, options, arch list, source). A damaged entry is recompiled.
 * LLFC_NO_CACHE=1 turns the cache off.
 */
#ifndef LLFC_NVRTC_H
#define LLFC_NVRTC_H

#include <stdbool.h>
#include <stddef.h>

#include "cuda_gen.h"
#include "graph.h"
#include "payload.h"

#define NVRTC_MAX_ARCHS 8
#define NVRTC_DEFAULT_ARCH "sm_80,sm_90"

typedef struct {
    char arch[16];  /* "sm_80"; for the PTX, "compute_90" */
    char *data;     /* CUBIN (ELF) or PTX text */
    size_t len;
} NvrtcImage;

typedef struct {
    NvrtcImage cubin[NVRTC_MAX_ARCHS];
    int n_cubin;
    NvrtcImage ptx;     /* for the newest arch of the list */
    double seconds;     /* wall time of nvrtc_compile (lookup included) */
    bool cache_hit;
    char version[16];   /* NVRTC's "13.0" */
    char *warnings;     /* NVRTC's log when a compile succeeded with one, else NULL (not cached) */
} NvrtcOutput;

/* Parse "sm_80,sm_90" (or "80,90"; "none" gives 0 archs) into numbers, ascending, no
 * duplicates. Tier (a) message naming the bad item. */
bool nvrtc_parse_archs(const char *list, int *archs, int *n, char *err, size_t errlen);

/* Whether NVRTC can be used here; err says what was looked for when not. */
bool nvrtc_available(char *err, size_t errlen);

/* Compile source (NUL-terminated, len bytes) for the archs. On a compile error err gets the
 * start of NVRTC's log, each "llfc.cu(LINE): error" followed by that generated line. */
bool nvrtc_compile(const char *source, size_t len, const int *archs, int n_archs, NvrtcOutput *out,
                   char *err, size_t errlen);
void nvrtc_output_free(NvrtcOutput *o);

// --- payload

/* The architectures the next nvrtc_payload_build compiles for: llfc's --arch (default
 * NVRTC_DEFAULT_ARCH; "none" = no CUDA in the trainer). `explicit_choice` makes a missing NVRTC
 * an error instead of a warning. */
bool nvrtc_set_arch_list(const char *list, bool explicit_choice, char *err, size_t errlen);

typedef struct {
    PayloadEntry *entries; /* "cuda/source.cu", "cuda/launches.txt", "cuda/sm_80.cubin", ...,
                              "cuda/ptx" (the newest arch's PTX) */
    size_t n;
    char *note;            /* a warning to show (NVRTC missing, CUDA left out), or NULL */
    void *owned;           /* what the entries point into */
} NvrtcPayload;

/* Generate (with `storage` as floatX: cuda_gen.h) and compile the CUDA of a serialized plan
 * (pack.c's plan.bin) into payload entries. With --arch none, or no NVRTC and no explicit
 * --arch, nothing is added (and note says why). */
bool nvrtc_payload_build(NvrtcPayload *pl, const void *plan_bytes, size_t plan_len, CudaStorage storage, char *err,
                         size_t errlen);
void nvrtc_payload_free(NvrtcPayload *pl);

#endif
