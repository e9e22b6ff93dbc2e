/* cudrv.h - the CUDA driver API and cuBLASLt, loaded with dlopen from the machine the trainer
 * runs on (never linked: a trainer built where no CUDA is starts on any cluster node), and the
 * one matrix product the CUDA executor needs.
 *
 *     CuDrv *d = cudrv_open(device_index, err, errlen);   driver, context, cuBLASLt handle
 *     cudrv_alloc(d, &ptr, bytes, "what", err, errlen);   every failure names the call and what it served
 *     cudrv_gemm(d, &g, err, errlen);                     C = alpha op(A) op(B) + beta C, row-major
 *     cudrv_close(d);
 *
 * Where the libraries are looked for: $LLFC_CUDA_DRIVER (else libcuda.so.1 on the loader's
 * path) and $LLFC_CUBLASLT (else libcublasLt.so.13, .12, libcublasLt.so on the loader's path,
 * then $CUDA_HOME/lib64 and /usr/local/cuda/lib64). The declarations below are the few types
 * and enum values of cuda.h / cublasLt.h used here, so building needs no CUDA headers.
 */
#ifndef LLFC_CUDRV_H
#define LLFC_CUDRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef unsigned long long CuPtr; /* CUdeviceptr */

typedef struct CuDrv CuDrv;

/* Load the driver and cuBLASLt, pick device `index` (of those CUDA_VISIBLE_DEVICES leaves),
 * make its primary context current and create the cuBLASLt handle and a 32 MiB workspace. */
CuDrv *cudrv_open(int index, char *err, size_t errlen);
void cudrv_close(CuDrv *d);

/* The device: "NVIDIA H100 80GB HBM3", compute capability as 90, memory in bytes. */
const char *cudrv_name(const CuDrv *d);
int cudrv_arch(const CuDrv *d);
bool cudrv_mem_info(CuDrv *d, size_t *free_bytes, size_t *total_bytes);

/* A module from a CUBIN or PTX image, and a function of it (by its extern "C" name). */
bool cudrv_load_module(CuDrv *d, const void *image, void **module, char *err, size_t errlen);
bool cudrv_function(CuDrv *d, void *module, const char *name, void **fn, char *err, size_t errlen);

bool cudrv_alloc(CuDrv *d, CuPtr *p, size_t bytes, const char *what, char *err, size_t errlen);
void cudrv_free(CuDrv *d, CuPtr p);
bool cudrv_put(CuDrv *d, CuPtr dst, const void *src, size_t bytes, const char *what, char *err, size_t errlen);
bool cudrv_get(CuDrv *d, void *dst, CuPtr src, size_t bytes, const char *what, char *err, size_t errlen);
bool cudrv_zero(CuDrv *d, CuPtr p, size_t bytes, const char *what, char *err, size_t errlen);

/* Launch fn with args[] (pointers to each argument's value, as cuLaunchKernel takes them). */
bool cudrv_launch(CuDrv *d, void *fn, const uint32_t grid[3], const uint32_t block[3], void **args,
                  const char *what, char *err, size_t errlen);
/* Wait for everything launched; an error of an earlier launch surfaces here. */
bool cudrv_sync(CuDrv *d, const char *what, char *err, size_t errlen);

typedef enum { CU_BF16, CU_F32, CU_F16 } CuType;

/* C (M, N) = alpha op(A) op(B) + beta C (+ bias), all row-major (kernels/matmul.h's convention):
 * op(A) (M, K) is A (M, K) or, with trans_a, A^T of A stored (K, M); op(B) (K, N) is B or B^T
 * of B stored (N, K). A and B are ab_type (bf16, the default, or f16), C that type or fp32,
 * fp32 accumulation. lda/ldb/ldc are the row strides (0 = dense). bias (N), when not 0, is
 * added to every row of C in fp32 before C is rounded, by cuBLASLt's BIAS epilogue: it is of
 * C's type, which must then be ab_type (cuBLASLt's bias is of D's type). The algorithm is
 * chosen once per shape (and bias pointer alignment) and kept. */
typedef struct {
    CuPtr C, A, B, bias;
    CuType c_type, ab_type;
    int64_t M, N, K;
    int64_t lda, ldb, ldc;
    bool trans_a, trans_b;
    float alpha, beta;
} CuGemm;

bool cudrv_gemm(CuDrv *d, const CuGemm *g, const char *what, char *err, size_t errlen);

/* Whether everything enqueued on `stream` (NULL: the one the executor uses) has finished, without
 * waiting: cuStreamQuery. A failure of an earlier launch surfaces here. (runtime/nccl.c polls
 * it so that a collective whose peers never come times out instead of hanging.) */
bool cudrv_stream_done(CuDrv *d, void *stream, bool *done, const char *what, char *err, size_t errlen);

/* A stream of its own (cuStreamCreate with CU_STREAM_NON_BLOCKING: it neither waits for the legacy
 * stream the executor launches on nor makes it wait, so the two overlap; what one needs of the
 * other is ordered with events), and its cuStreamDestroy (NULL is fine). */
bool cudrv_stream_new(CuDrv *d, void **stream, const char *what, char *err, size_t errlen);
bool cudrv_stream_free(CuDrv *d, void *stream, const char *what, char *err, size_t errlen);
/* An event without timing (cuEventCreate with CU_EVENT_DISABLE_TIMING), and its cuEventDestroy
 * (NULL is fine). */
bool cudrv_event_new(CuDrv *d, void **event, const char *what, char *err, size_t errlen);
bool cudrv_event_free(CuDrv *d, void *event, const char *what, char *err, size_t errlen);
/* cuEventRecord: the event marks what has been enqueued on stream (NULL: the executor's) so far. */
bool cudrv_event_record(CuDrv *d, void *event, void *stream, const char *what, char *err, size_t errlen);
/* cuStreamWaitEvent: what is enqueued on stream from now on runs after the event's latest record. */
bool cudrv_stream_wait(CuDrv *d, void *stream, void *event, const char *what, char *err, size_t errlen);

// --- loading a library of the machine's (the driver, cuBLASLt, NCCL)

/* The first of paths[0..n) that dlopen() takes (RTLD_NOW | RTLD_LOCAL), its path in *found;
 * NULL when none does, with err "tried A (why), B (why), ...". */
void *cudrv_dlopen_first(const char *const *paths, size_t n, const char **found, char *err, size_t errlen);

/* Every symbol of syms[] from lib, or false naming the first one `file` lacks. */
typedef struct {
    void **fn;
    const char *name;
} CuSym;
bool cudrv_bind(void *lib, const char *file, const CuSym *syms, size_t n, char *err, size_t errlen);

#endif
