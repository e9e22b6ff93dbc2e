/* cudrv.c - the CUDA driver and cuBLASLt through dlopen (see cudrv.h). */
#include "cudrv.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// --- the parts of cuda.h and cublasLt.h used here (values from CUDA 13's headers)

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef int CublasStatus;
typedef void *LtHandle, *LtDesc, *LtLayout, *LtPref;

enum {
    CU_ATTR_CC_MAJOR = 75,
    CU_ATTR_CC_MINOR = 76,
    CUBLAS_COMPUTE_32F = 68,
    CUDA_R_32F = 0,
    CUDA_R_16F = 2,
    CUDA_R_16BF = 14,
    LT_DESC_TRANSA = 3,
    LT_DESC_TRANSB = 4,
    LT_DESC_EPILOGUE = 7,        /* uint32_t cublasLtEpilogue_t */
    LT_DESC_BIAS_POINTER = 8,    /* const void * */
    LT_DESC_BIAS_DATA_TYPE = 26, /* int32_t cudaDataType */
    LT_EPILOGUE_BIAS = 4,
    LT_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CU_ERROR_NOT_READY = 600,
    CU_STREAM_NON_BLOCKING = 0x1,
    CU_EVENT_DISABLE_TIMING = 0x2,
};

typedef struct {
    uint64_t algo[8];
    size_t workspace_size;
    CublasStatus state;
    float waves;
    int reserved[4];
} LtHeuristic;

#define WORKSPACE_BYTES (32u << 20)
#define MAX_SHAPES 512

typedef struct {
    CuType c_type, ab_type;
    int64_t M, N, K, lda, ldb, ldc;
    bool trans_a, trans_b;
    int bias_align; /* 0: no bias; else the bias pointer's alignment (bias_align) */
    LtDesc desc;
    LtLayout a, b, c;
    LtHeuristic h;
} Shape;

struct CuDrv {
    void *lib, *lt;
    CUcontext ctx;
    CUdevice dev;
    int arch;
    char name[256];
    CuPtr workspace;
    LtHandle handle;
    Shape shapes[MAX_SHAPES];
    int n_shapes;
    struct {
        CUresult (*init)(unsigned);
        CUresult (*device_count)(int *);
        CUresult (*device_get)(CUdevice *, int);
        CUresult (*device_name)(char *, int, CUdevice);
        CUresult (*attribute)(int *, int, CUdevice);
        CUresult (*primary_retain)(CUcontext *, CUdevice);
        CUresult (*primary_release)(CUdevice);
        CUresult (*set_current)(CUcontext);
        CUresult (*mem_info)(size_t *, size_t *);
        CUresult (*module_load)(void **, const void *);
        CUresult (*get_function)(void **, void *, const char *);
        CUresult (*mem_alloc)(CuPtr *, size_t);
        CUresult (*mem_free)(CuPtr);
        CUresult (*htod)(CuPtr, const void *, size_t);
        CUresult (*dtoh)(void *, CuPtr, size_t);
        CUresult (*memset8)(CuPtr, unsigned char, size_t);
        CUresult (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                           void **, void **);
        CUresult (*sync)(void);
        CUresult (*error_name)(CUresult, const char **);
        CUresult (*error_string)(CUresult, const char **);
        CUresult (*stream_query)(void *);
        CUresult (*stream_create)(void **, unsigned);
        CUresult (*stream_destroy)(void *);
        CUresult (*event_create)(void **, unsigned);
        CUresult (*event_destroy)(void *);
        CUresult (*event_record)(void *, void *);
        CUresult (*stream_wait_event)(void *, void *, unsigned);
    } cu;
    struct {
        CublasStatus (*create)(LtHandle *);
        CublasStatus (*destroy)(LtHandle);
        CublasStatus (*desc_create)(LtDesc *, int, int);
        CublasStatus (*desc_destroy)(LtDesc);
        CublasStatus (*desc_set)(LtDesc, int, const void *, size_t);
        CublasStatus (*layout_create)(LtLayout *, int, uint64_t, uint64_t, int64_t);
        CublasStatus (*layout_destroy)(LtLayout);
        CublasStatus (*pref_create)(LtPref *);
        CublasStatus (*pref_destroy)(LtPref);
        CublasStatus (*pref_set)(LtPref, int, const void *, size_t);
        CublasStatus (*heuristic)(LtHandle, LtDesc, LtLayout, LtLayout, LtLayout, LtLayout, LtPref, int,
                                  LtHeuristic *, int *);
        CublasStatus (*matmul)(LtHandle, LtDesc, const void *, const void *, LtLayout, const void *, LtLayout,
                               const void *, const void *, LtLayout, void *, LtLayout, const void *, void *,
                               size_t, void *);
    } lt_fn;
};

/* "cuLaunchKernel (rmsnorm_fwd_0) failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access ...)" */
static bool cu_ok(CuDrv *d, CUresult rc, const char *call, const char *what, char *err, size_t errlen) {
    if (rc == 0) return true;
    const char *name = "?", *text = "?";
    if (d->cu.error_name) d->cu.error_name(rc, &name);
    if (d->cu.error_string) d->cu.error_string(rc, &text);
    return errf(err, errlen, "%s (%s) failed: %s (%s)", call, what, name ? name : "?", text ? text : "?");
}

static bool lt_ok(CublasStatus rc, const char *call, const char *what, char *err, size_t errlen) {
    if (rc == 0) return true;
    return errf(err, errlen, "cuBLASLt %s (%s) failed: cublasStatus_t %d", call, what, rc);
}

typedef CuSym Sym;

bool cudrv_bind(void *lib, const char *file, const CuSym *syms, size_t n, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        if (!(*syms[i].fn = dlsym(lib, syms[i].name)))
            return errf(err, errlen, "%s has no %s: not the library llfc needs (too old?)", file, syms[i].name);
    return true;
}

void *cudrv_dlopen_first(const char *const *paths, size_t n, const char **found, char *err, size_t errlen) {
    size_t at = 0;
    if (errlen) err[0] = 0;
    for (size_t i = 0; i < n; i++) {
        void *lib = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (lib) {
            *found = paths[i];
            return lib;
        }
        const char *why = dlerror();
        if (at < errlen) // "tried A (A: cannot open shared object file: ...), B (...)"
            at += (size_t)snprintf(err + at, errlen - at, "%s%s (%s)", i ? ", " : "tried ", paths[i], why ? why : "?");
    }
    *found = NULL;
    return NULL;
}

static bool load_driver(CuDrv *d, char *err, size_t errlen) {
    const char *name = getenv("LLFC_CUDA_DRIVER");
    if (!name || !*name) name = "libcuda.so.1";
    if (!(d->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)))
        return errf(err, errlen, "no CUDA driver: %s not found by the dynamic loader (LD_LIBRARY_PATH, "
                    "/etc/ld.so.cache; set LLFC_CUDA_DRIVER to its path)", name);
    const Sym syms[] = {
        {(void **)&d->cu.init, "cuInit"}, {(void **)&d->cu.device_count, "cuDeviceGetCount"},
        {(void **)&d->cu.device_get, "cuDeviceGet"}, {(void **)&d->cu.device_name, "cuDeviceGetName"},
        {(void **)&d->cu.attribute, "cuDeviceGetAttribute"},
        {(void **)&d->cu.primary_retain, "cuDevicePrimaryCtxRetain"},
        {(void **)&d->cu.primary_release, "cuDevicePrimaryCtxRelease_v2"},
        {(void **)&d->cu.set_current, "cuCtxSetCurrent"}, {(void **)&d->cu.mem_info, "cuMemGetInfo_v2"},
        {(void **)&d->cu.module_load, "cuModuleLoadData"}, {(void **)&d->cu.get_function, "cuModuleGetFunction"},
        {(void **)&d->cu.mem_alloc, "cuMemAlloc_v2"}, {(void **)&d->cu.mem_free, "cuMemFree_v2"},
        {(void **)&d->cu.htod, "cuMemcpyHtoD_v2"}, {(void **)&d->cu.dtoh, "cuMemcpyDtoH_v2"},
        {(void **)&d->cu.memset8, "cuMemsetD8_v2"}, {(void **)&d->cu.launch, "cuLaunchKernel"},
        {(void **)&d->cu.sync, "cuCtxSynchronize"}, {(void **)&d->cu.error_name, "cuGetErrorName"},
        {(void **)&d->cu.error_string, "cuGetErrorString"},
        {(void **)&d->cu.stream_query, "cuStreamQuery"},
        {(void **)&d->cu.stream_create, "cuStreamCreate"}, {(void **)&d->cu.stream_destroy, "cuStreamDestroy_v2"},
        {(void **)&d->cu.event_create, "cuEventCreate"}, {(void **)&d->cu.event_destroy, "cuEventDestroy_v2"},
        {(void **)&d->cu.event_record, "cuEventRecord"}, {(void **)&d->cu.stream_wait_event, "cuStreamWaitEvent"},
    };
    return cudrv_bind(d->lib, name, syms, sizeof syms / sizeof *syms, err, errlen);
}

static bool load_cublaslt(CuDrv *d, char *err, size_t errlen) {
    const char *env = getenv("LLFC_CUBLASLT"), *home = getenv("CUDA_HOME");
    char buf[3][512];
    snprintf(buf[0], sizeof buf[0], "%s/lib64/libcublasLt.so.13", home && *home ? home : "/usr/local/cuda");
    snprintf(buf[1], sizeof buf[1], "%s/lib64/libcublasLt.so.12", home && *home ? home : "/usr/local/cuda");
    snprintf(buf[2], sizeof buf[2], "/usr/local/cuda/lib64/libcublasLt.so.13");
    const char *tries[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", buf[0], buf[1], buf[2]};
    const char *found = NULL;
    if (env && *env) {
        if ((d->lt = dlopen(env, RTLD_NOW | RTLD_LOCAL))) found = env;
        else return errf(err, errlen, "cuBLASLt: LLFC_CUBLASLT=%s cannot be loaded: %s", env, dlerror());
    }
    for (size_t i = 0; !found && i < sizeof tries / sizeof *tries; i++)
        if ((d->lt = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL))) found = tries[i];
    if (!found)
        return errf(err, errlen, "cuBLASLt not found: tried libcublasLt.so.13, .so.12 and .so on the loader's path "
                    "(LD_LIBRARY_PATH, /etc/ld.so.cache), %s and %s; install the CUDA toolkit's libcublas or set "
                    "LLFC_CUBLASLT to the library's path", buf[0], buf[1]);
    const Sym syms[] = {
        {(void **)&d->lt_fn.create, "cublasLtCreate"}, {(void **)&d->lt_fn.destroy, "cublasLtDestroy"},
        {(void **)&d->lt_fn.desc_create, "cublasLtMatmulDescCreate"},
        {(void **)&d->lt_fn.desc_destroy, "cublasLtMatmulDescDestroy"},
        {(void **)&d->lt_fn.desc_set, "cublasLtMatmulDescSetAttribute"},
        {(void **)&d->lt_fn.layout_create, "cublasLtMatrixLayoutCreate"},
        {(void **)&d->lt_fn.layout_destroy, "cublasLtMatrixLayoutDestroy"},
        {(void **)&d->lt_fn.pref_create, "cublasLtMatmulPreferenceCreate"},
        {(void **)&d->lt_fn.pref_destroy, "cublasLtMatmulPreferenceDestroy"},
        {(void **)&d->lt_fn.pref_set, "cublasLtMatmulPreferenceSetAttribute"},
        {(void **)&d->lt_fn.heuristic, "cublasLtMatmulAlgoGetHeuristic"},
        {(void **)&d->lt_fn.matmul, "cublasLtMatmul"},
    };
    return cudrv_bind(d->lt, found, syms, sizeof syms / sizeof *syms, err, errlen);
}

CuDrv *cudrv_open(int index, char *err, size_t errlen) {
    CuDrv *d = xcalloc(1, sizeof *d);
    int count = 0, major = 0, minor = 0;
    bool ok = load_driver(d, err, errlen) && cu_ok(d, d->cu.init(0), "cuInit", "start the driver", err, errlen) &&
              cu_ok(d, d->cu.device_count(&count), "cuDeviceGetCount", "count GPUs", err, errlen);
    if (ok && count == 0) ok = errf(err, errlen, "the CUDA driver sees no GPU (CUDA_VISIBLE_DEVICES=%s)",
                                    getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    if (ok && (index < 0 || index >= count))
        ok = errf(err, errlen, "GPU %d asked for (LOCAL_RANK), but the driver sees %d", index, count);
    ok = ok && cu_ok(d, d->cu.device_get(&d->dev, index), "cuDeviceGet", "open the GPU", err, errlen) &&
         cu_ok(d, d->cu.device_name(d->name, sizeof d->name, d->dev), "cuDeviceGetName", "name", err, errlen) &&
         cu_ok(d, d->cu.attribute(&major, CU_ATTR_CC_MAJOR, d->dev), "cuDeviceGetAttribute", "arch", err, errlen) &&
         cu_ok(d, d->cu.attribute(&minor, CU_ATTR_CC_MINOR, d->dev), "cuDeviceGetAttribute", "arch", err, errlen) &&
         cu_ok(d, d->cu.primary_retain(&d->ctx, d->dev), "cuDevicePrimaryCtxRetain", "context", err, errlen) &&
         cu_ok(d, d->cu.set_current(d->ctx), "cuCtxSetCurrent", "context", err, errlen);
    d->arch = major * 10 + minor;
    ok = ok && load_cublaslt(d, err, errlen) && lt_ok(d->lt_fn.create(&d->handle), "cublasLtCreate", "handle", err, errlen) &&
         cudrv_alloc(d, &d->workspace, WORKSPACE_BYTES, "cuBLASLt workspace", err, errlen);
    if (!ok) {
        cudrv_close(d);
        return NULL;
    }
    return d;
}

void cudrv_close(CuDrv *d) {
    if (!d) return;
    for (int i = 0; i < d->n_shapes; i++) {
        Shape *s = &d->shapes[i];
        d->lt_fn.layout_destroy(s->a), d->lt_fn.layout_destroy(s->b), d->lt_fn.layout_destroy(s->c);
        d->lt_fn.desc_destroy(s->desc);
    }
    if (d->workspace) cudrv_free(d, d->workspace);
    if (d->handle) d->lt_fn.destroy(d->handle);
    if (d->ctx && d->cu.primary_release) d->cu.primary_release(d->dev);
    if (d->lt) dlclose(d->lt);
    if (d->lib) dlclose(d->lib);
    free(d);
}

const char *cudrv_name(const CuDrv *d) { return d->name; }
int cudrv_arch(const CuDrv *d) { return d->arch; }

bool cudrv_mem_info(CuDrv *d, size_t *free_bytes, size_t *total_bytes) {
    return d->cu.mem_info(free_bytes, total_bytes) == 0;
}

bool cudrv_load_module(CuDrv *d, const void *image, void **module, char *err, size_t errlen) {
    return cu_ok(d, d->cu.module_load(module, image), "cuModuleLoadData", "load the trainer's kernels", err, errlen);
}

bool cudrv_function(CuDrv *d, void *module, const char *name, void **fn, char *err, size_t errlen) {
    return cu_ok(d, d->cu.get_function(fn, module, name), "cuModuleGetFunction", name, err, errlen);
}

bool cudrv_alloc(CuDrv *d, CuPtr *p, size_t bytes, const char *what, char *err, size_t errlen) {
    *p = 0;
    if (!bytes) bytes = 256;
    if (d->cu.mem_alloc(p, bytes) == 0) return true;
    size_t free_b = 0, total = 0;
    cudrv_mem_info(d, &free_b, &total);
    return errf(err, errlen, "cuMemAlloc (%s): %.1f MiB do not fit in the GPU's free %.1f MiB of %.1f MiB", what,
                (double)bytes / (1 << 20), (double)free_b / (1 << 20), (double)total / (1 << 20));
}

void cudrv_free(CuDrv *d, CuPtr p) {
    if (p) d->cu.mem_free(p);
}

bool cudrv_put(CuDrv *d, CuPtr dst, const void *src, size_t bytes, const char *what, char *err, size_t errlen) {
    return !bytes || cu_ok(d, d->cu.htod(dst, src, bytes), "cuMemcpyHtoD", what, err, errlen);
}

bool cudrv_get(CuDrv *d, void *dst, CuPtr src, size_t bytes, const char *what, char *err, size_t errlen) {
    return !bytes || cu_ok(d, d->cu.dtoh(dst, src, bytes), "cuMemcpyDtoH", what, err, errlen);
}

bool cudrv_zero(CuDrv *d, CuPtr p, size_t bytes, const char *what, char *err, size_t errlen) {
    return !bytes || cu_ok(d, d->cu.memset8(p, 0, bytes), "cuMemsetD8", what, err, errlen);
}

bool cudrv_launch(CuDrv *d, void *fn, const uint32_t grid[3], const uint32_t block[3], void **args,
                  const char *what, char *err, size_t errlen) {
    return cu_ok(d, d->cu.launch(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], 0, NULL, args, NULL),
                 "cuLaunchKernel", what, err, errlen);
}

bool cudrv_sync(CuDrv *d, const char *what, char *err, size_t errlen) {
    return cu_ok(d, d->cu.sync(), "cuCtxSynchronize", what, err, errlen);
}

// --- cuBLASLt

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's first operand is
 * B's buffer and its second A's, with m = N, n = M. A row-major buffer (r, c) with row stride ld
 * is column-major (c, r) with leading dimension ld. */
static int lt_type(CuType t) { return t == CU_F32 ? CUDA_R_32F : t == CU_F16 ? CUDA_R_16F : CUDA_R_16BF; }

/* The BIAS epilogue: cuBLASLt's D (N, M) column-major has N rows, the bias's length ("must match
 * matrix D rows"), broadcast to its M columns (our rows) and added before D is rounded. The bias
 * is of D's type (cublasLt.h: "the same type as the elements of output matrix (Dtype)"). The
 * pointer is set before the heuristic, which "depend[s] on its value to determine expected
 * pointer alignment". */
static bool set_bias(CuDrv *d, Shape *s, CuPtr bias, const char *what, char *err, size_t errlen) {
    const uint32_t epilogue = LT_EPILOGUE_BIAS;
    const int32_t type = lt_type(s->c_type);
    const void *ptr = (const void *)(uintptr_t)bias;
    return lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_EPILOGUE, &epilogue, sizeof epilogue), "MatmulDescSetAttribute",
                 what, err, errlen) &&
           lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_BIAS_DATA_TYPE, &type, sizeof type), "MatmulDescSetAttribute",
                 what, err, errlen) &&
           lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_BIAS_POINTER, &ptr, sizeof ptr), "MatmulDescSetAttribute", what,
                 err, errlen);
}

static bool make_shape(CuDrv *d, Shape *s, CuPtr bias, const char *what, char *err, size_t errlen) {
    int ta = s->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int ab = s->ab_type == CU_F16 ? CUDA_R_16F : CUDA_R_16BF;
    const int ct = lt_type(s->c_type);
    uint64_t a_rows = s->trans_b ? (uint64_t)s->K : (uint64_t)s->N, a_cols = s->trans_b ? (uint64_t)s->N : (uint64_t)s->K;
    uint64_t b_rows = s->trans_a ? (uint64_t)s->M : (uint64_t)s->K, b_cols = s->trans_a ? (uint64_t)s->K : (uint64_t)s->M;
    if (!lt_ok(d->lt_fn.desc_create(&s->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate", what, err, errlen) ||
        !lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_TRANSA, &ta, sizeof ta), "MatmulDescSetAttribute", what, err, errlen) ||
        !lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_TRANSB, &tb, sizeof tb), "MatmulDescSetAttribute", what, err, errlen) ||
        !lt_ok(d->lt_fn.layout_create(&s->a, ab, a_rows, a_cols, s->ldb), "MatrixLayoutCreate", what, err, errlen) ||
        !lt_ok(d->lt_fn.layout_create(&s->b, ab, b_rows, b_cols, s->lda), "MatrixLayoutCreate", what, err, errlen) ||
        !lt_ok(d->lt_fn.layout_create(&s->c, ct, (uint64_t)s->N, (uint64_t)s->M, s->ldc), "MatrixLayoutCreate", what, err,
               errlen))
        return false;
    if (s->bias_align && !set_bias(d, s, bias, what, err, errlen)) return false;
    LtPref pref;
    uint64_t ws = WORKSPACE_BYTES;
    int n = 0;
    bool ok = lt_ok(d->lt_fn.pref_create(&pref), "MatmulPreferenceCreate", what, err, errlen);
    ok = ok && lt_ok(d->lt_fn.pref_set(pref, LT_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "MatmulPreferenceSetAttribute",
                     what, err, errlen);
    ok = ok && lt_ok(d->lt_fn.heuristic(d->handle, s->desc, s->a, s->b, s->c, s->c, pref, 1, &s->h, &n),
                     "MatmulAlgoGetHeuristic", what, err, errlen);
    if (ok && n < 1)
        ok = errf(err, errlen, "cuBLASLt has no algorithm for %s (M %" PRId64 ", N %" PRId64 ", K %" PRId64 ")", what,
                  s->M, s->N, s->K);
    d->lt_fn.pref_destroy(pref);
    return ok;
}

/* The largest power of two (up to 256) that divides p, 0 for NULL: an algorithm chosen for one
 * bias pointer serves every other of the same alignment. */
static int bias_align(CuPtr p) {
    int a = 1;
    while (p && a < 256 && !(p & (CuPtr)a)) a <<= 1;
    return p ? a : 0;
}

static Shape *shape_for(CuDrv *d, const CuGemm *g, const char *what, char *err, size_t errlen) {
    int64_t lda = g->lda ? g->lda : g->trans_a ? g->M : g->K, ldb = g->ldb ? g->ldb : g->trans_b ? g->K : g->N;
    int64_t ldc = g->ldc ? g->ldc : g->N;
    const int balign = bias_align(g->bias);
    for (int i = 0; i < d->n_shapes; i++) {
        Shape *s = &d->shapes[i];
        if (s->c_type == g->c_type && s->ab_type == g->ab_type && s->M == g->M && s->N == g->N && s->K == g->K && s->lda == lda && s->ldb == ldb &&
            s->ldc == ldc && s->trans_a == g->trans_a && s->trans_b == g->trans_b && s->bias_align == balign)
            return s;
    }
    if (d->n_shapes == MAX_SHAPES) {
        errf(err, errlen, "cuBLASLt: more than %d matrix-product shapes (%s)", MAX_SHAPES, what);
        return NULL;
    }
    Shape *s = &d->shapes[d->n_shapes];
    *s = (Shape){.c_type = g->c_type, .ab_type = g->ab_type, .M = g->M, .N = g->N, .K = g->K, .lda = lda, .ldb = ldb, .ldc = ldc,
                 .trans_a = g->trans_a, .trans_b = g->trans_b, .bias_align = balign};
    if (!make_shape(d, s, g->bias, what, err, errlen)) return NULL;
    d->n_shapes++;
    return s;
}

bool cudrv_gemm(CuDrv *d, const CuGemm *g, const char *what, char *err, size_t errlen) {
    if (g->M <= 0 || g->N <= 0) return true;
    if (g->bias && g->c_type != g->ab_type)
        return errf(err, errlen, "cuBLASLt (%s): a bias needs C of the 16-bit type of A and B (the bias's own)", what);
    Shape *s = shape_for(d, g, what, err, errlen);
    if (!s) return false;
    const void *bias = (const void *)(uintptr_t)g->bias; // this call's own (the shape's was the first one)
    if (s->bias_align && !lt_ok(d->lt_fn.desc_set(s->desc, LT_DESC_BIAS_POINTER, &bias, sizeof bias),
                                "MatmulDescSetAttribute", what, err, errlen))
        return false;
    return lt_ok(d->lt_fn.matmul(d->handle, s->desc, &g->alpha, (const void *)(uintptr_t)g->B, s->a,
                                 (const void *)(uintptr_t)g->A, s->b, &g->beta, (const void *)(uintptr_t)g->C, s->c,
                                 (void *)(uintptr_t)g->C, s->c, s->h.algo, (void *)(uintptr_t)d->workspace,
                                 WORKSPACE_BYTES, NULL),
                 "Matmul", what, err, errlen);
}

bool cudrv_stream_done(CuDrv *d, void *stream, bool *done, const char *what, char *err, size_t errlen) {
    CUresult rc = d->cu.stream_query(stream);
    *done = rc != CU_ERROR_NOT_READY;
    return rc == CU_ERROR_NOT_READY || cu_ok(d, rc, "cuStreamQuery", what, err, errlen);
}

// --- streams and events

bool cudrv_stream_new(CuDrv *d, void **stream, const char *what, char *err, size_t errlen) {
    *stream = NULL;
    return cu_ok(d, d->cu.stream_create(stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate", what, err, errlen);
}

bool cudrv_stream_free(CuDrv *d, void *stream, const char *what, char *err, size_t errlen) {
    return !stream || cu_ok(d, d->cu.stream_destroy(stream), "cuStreamDestroy", what, err, errlen);
}

bool cudrv_event_new(CuDrv *d, void **event, const char *what, char *err, size_t errlen) {
    *event = NULL;
    return cu_ok(d, d->cu.event_create(event, CU_EVENT_DISABLE_TIMING), "cuEventCreate", what, err, errlen);
}

bool cudrv_event_free(CuDrv *d, void *event, const char *what, char *err, size_t errlen) {
    return !event || cu_ok(d, d->cu.event_destroy(event), "cuEventDestroy", what, err, errlen);
}

bool cudrv_event_record(CuDrv *d, void *event, void *stream, const char *what, char *err, size_t errlen) {
    return cu_ok(d, d->cu.event_record(event, stream), "cuEventRecord", what, err, errlen);
}

bool cudrv_stream_wait(CuDrv *d, void *stream, void *event, const char *what, char *err, size_t errlen) {
    return cu_ok(d, d->cu.stream_wait_event(stream, event, 0), "cuStreamWaitEvent", what, err, errlen);
}
