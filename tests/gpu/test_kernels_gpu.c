/* test_kernels_gpu.c - every generated CUDA kernel against its C reference, on a GPU.
 *
 * Builds the small plans of gpu_cases.h (Qwen3, Qwen2 and Gemma2 shapes, full and LoRA),
 * generates their CUDA (compiler/cuda_gen.c), compiles it with NVRTC for this GPU's arch, loads
 * the CUBIN through the driver API (libcuda.so.1, dlopen'ed: nothing CUDA is linked) and runs
 * each kernel on random inputs rounded to bf16, comparing with the C references in kernels/ run on the same
 * rounded values (the oracle of DESIGN.md). Outputs are pre-filled with NaN, so an element a
 * kernel forgets to write fails the comparison. Tolerance: bf16 rounding of the output
 * (2^-8 relative) plus fp32 accumulation order, |gpu - ref| <= atol + rtol |ref|.
 *
 * Built by `ninja build/gpu-tests` only; without a GPU (or libcuda) every test is skipped by
 * name. Where no GPU is, tests/gpu/emu/run.sh runs this same program on a CPU emulation of the
 * driver and of CUDA's threads, barriers and shuffles.
 */
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>

#include "add.h"
#include "attention.h"
#include "crossentropy.h"
#include "cuda_gen.h"
#include "dropout.h"
#include "embedding.h"
#include "glu.h"
#include "gpu_cases.h"
#include "graph.h"
#include "model.h"
#include "nvrtc.h"
#include "optim.h"
#include "rmsnorm.h"
#include "rng.h"
#include "rope.h"
#include "softcap.h"
#include "util.h"

// --- the driver API, by hand (no cuda.h needed to build)

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef unsigned long long CUdeviceptr;

static struct {
    bool ok;
    char why[1200];
    CUresult (*init)(unsigned);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*attribute)(int *, int, CUdevice);
    CUresult (*primary_retain)(CUcontext *, CUdevice);
    CUresult (*set_current)(CUcontext);
    CUresult (*module_load)(CUmodule *, const void *);
    CUresult (*get_function)(CUfunction *, CUmodule, const char *);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*htod)(CUdeviceptr, const void *, size_t);
    CUresult (*dtoh)(void *, CUdeviceptr, size_t);
    CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                       void *, void **, void **);
    CUresult (*sync)(void);
    CUresult (*error_string)(CUresult, const char **);
    int arch;
} cu;

#define CU_CHECK(call)                                                                         \
    do {                                                                                       \
        CUresult rc_ = (call);                                                                 \
        if (rc_ != 0) {                                                                        \
            const char *s_ = "?";                                                              \
            cu.error_string(rc_, &s_);                                                         \
            fail_msg("%s:%d: %s failed: %d %s", __FILE__, __LINE__, #call, rc_, s_);          \
        }                                                                                      \
    } while (0)

static bool cu_load(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) {
        snprintf(cu.why, sizeof cu.why, "no GPU driver (libcuda.so.1 not found)");
        return false;
    }
    struct { void **fn; const char *name; } syms[] = {
        {(void **)&cu.init, "cuInit"}, {(void **)&cu.device_get, "cuDeviceGet"},
        {(void **)&cu.attribute, "cuDeviceGetAttribute"}, {(void **)&cu.primary_retain, "cuDevicePrimaryCtxRetain"},
        {(void **)&cu.set_current, "cuCtxSetCurrent"}, {(void **)&cu.module_load, "cuModuleLoadData"},
        {(void **)&cu.get_function, "cuModuleGetFunction"}, {(void **)&cu.mem_alloc, "cuMemAlloc_v2"},
        {(void **)&cu.mem_free, "cuMemFree_v2"}, {(void **)&cu.htod, "cuMemcpyHtoD_v2"},
        {(void **)&cu.dtoh, "cuMemcpyDtoH_v2"}, {(void **)&cu.launch, "cuLaunchKernel"},
        {(void **)&cu.sync, "cuCtxSynchronize"}, {(void **)&cu.error_string, "cuGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        if (!(*syms[i].fn = dlsym(h, syms[i].name))) {
            snprintf(cu.why, sizeof cu.why, "libcuda.so.1 lacks %s", syms[i].name);
            return false;
        }
    CUdevice dev;
    CUcontext ctx;
    int major = 0, minor = 0;
    if (cu.init(0) || cu.device_get(&dev, 0) || cu.attribute(&major, 75, dev) || cu.attribute(&minor, 76, dev) ||
        cu.primary_retain(&ctx, dev) || cu.set_current(ctx)) {
        snprintf(cu.why, sizeof cu.why, "the driver is there but no GPU could be opened");
        return false;
    }
    cu.arch = major * 10 + minor;
    return true;
}

#define GPU_OR_SKIP()                                                                          \
    if (!cu.ok) {                                                                              \
        fprintf(stderr, "[  SKIPPED ] %s: %s\n", __func__, cu.why);                            \
        skip();                                                                                \
        return;                                                                                \
    }

// --- host data: bf16 rounding, random values, device buffers

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float rnd(uint64_t *state, float scale) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((float)(*state >> 40) / 16777216.0f * 2 - 1) * scale;
}

/* n random values, already rounded to bf16 so the reference sees what the GPU sees */
static float *randv(int64_t n, float scale, uint64_t seed) {
    float *v = xmalloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = from_bf16(to_bf16(rnd(&seed, scale)));
    return v;
}

typedef struct {
    CUdeviceptr p;
    int64_t n;
    bool bf16;
} Dev;

#define MAX_DEV 64
static Dev devs[MAX_DEV];
static int n_devs;

static Dev *dev_new(int64_t n, bool bf16) {
    assert_true(n_devs < MAX_DEV);
    Dev *d = &devs[n_devs++];
    d->n = n > 0 ? n : 1, d->bf16 = bf16;
    CU_CHECK(cu.mem_alloc(&d->p, (size_t)d->n * (bf16 ? 2 : 4)));
    /* NaN everywhere: what a kernel does not write stays NaN */
    if (bf16) {
        uint16_t *h = xmalloc((size_t)d->n * 2);
        for (int64_t i = 0; i < d->n; i++) h[i] = 0x7fc0;
        CU_CHECK(cu.htod(d->p, h, (size_t)d->n * 2));
        free(h);
    } else {
        float *h = xmalloc((size_t)d->n * 4);
        for (int64_t i = 0; i < d->n; i++) h[i] = NAN;
        CU_CHECK(cu.htod(d->p, h, (size_t)d->n * 4));
        free(h);
    }
    return d;
}

static Dev *dev_put(const float *v, int64_t n, bool bf16) {
    Dev *d = dev_new(n, bf16);
    if (bf16) {
        uint16_t *h = xmalloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) h[i] = to_bf16(v[i]);
        CU_CHECK(cu.htod(d->p, h, (size_t)n * 2));
        free(h);
    } else {
        CU_CHECK(cu.htod(d->p, v, (size_t)n * 4));
    }
    return d;
}

static Dev *dev_put_i32(const int32_t *v, int64_t n) {
    Dev *d = dev_new(n, false);
    CU_CHECK(cu.htod(d->p, v, (size_t)n * 4));
    return d;
}

static float *dev_get(const Dev *d) {
    float *v = xmalloc((size_t)d->n * sizeof *v);
    if (d->bf16) {
        uint16_t *h = xmalloc((size_t)d->n * 2);
        CU_CHECK(cu.dtoh(h, d->p, (size_t)d->n * 2));
        for (int64_t i = 0; i < d->n; i++) v[i] = from_bf16(h[i]);
        free(h);
    } else {
        CU_CHECK(cu.dtoh(v, d->p, (size_t)d->n * 4));
    }
    return v;
}

static void dev_free_all(void) {
    for (int i = 0; i < n_devs; i++) cu.mem_free(devs[i].p);
    n_devs = 0;
}

/* Compare every element; NaN (never written) fails. */
static void expect_close(const char *what, const Dev *d, const float *ref, int64_t n, float rtol, float atol) {
    float *got = dev_get(d);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - (double)ref[i]);
        if (!(err <= atol + rtol * fabs((double)ref[i])))
            fail_msg("%s[%lld]: gpu %g, reference %g", what, (long long)i, (double)got[i], (double)ref[i]);
        if (err > worst) worst = err;
    }
    fprintf(stderr, "      %-34s %8lld elements, max abs error %.3g\n", what, (long long)n, worst);
    free(got);
}

// --- the unit of a plan, on the GPU

typedef struct {
    Plan *plan;
    CudaUnit unit;
    CUmodule module;
} Gpu;

static Gpu *gpu_new(int which) {
    char err[8192];
    Gpu *g = xcalloc(1, sizeof *g);
    g->plan = gpu_case_plan(&GPU_CASE[which], err, sizeof err);
    if (!g->plan) fail_msg("%s", err);
    if (!cuda_gen(g->plan, CUDA_BF16, &g->unit, err, sizeof err)) fail_msg("%s", err);
    NvrtcOutput out;
    if (!nvrtc_compile(g->unit.source, g->unit.len, &cu.arch, 1, &out, err, sizeof err)) fail_msg("%s", err);
    CU_CHECK(cu.module_load(&g->module, out.cubin[0].data));
    nvrtc_output_free(&out);
    return g;
}

static void gpu_free(Gpu *g) {
    dev_free_all();
    cuda_unit_free(&g->unit);
    plan_free(g->plan);
    free(g);
}

static int32_t find_op(const Gpu *g, PlanOpKind kind, int from) {
    for (int32_t i = from; i < g->plan->n_ops; i++)
        if (g->plan->ops[i].kind == kind && g->unit.ops[i].fused_into < 0) return i;
    fail_msg("the plan has no %s op", plan_op_name(kind));
    return -1;
}

static const CudaKernel *kernel_of(const Gpu *g, int32_t op, int k) {
    assert_true(k < g->unit.ops[op].n_kernels);
    return &g->unit.kernels[g->unit.ops[op].kernel[k]];
}

/* Launch with the generated geometry; args are pointers to each argument. */
static void run(const Gpu *g, const CudaKernel *k, void **args) {
    CUfunction f;
    CU_CHECK(cu.get_function(&f, g->module, k->name));
    CU_CHECK(cu.launch(f, k->grid[0], k->grid[1], k->grid[2], k->block[0], k->block[1], k->block[2], 0, NULL,
                       args, NULL));
    CU_CHECK(cu.sync());
}

#define RTOL 0.02f
#define ATOL 2e-3f

// --- forward kernels

static void test_norms_embedding_glu(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_FULL);
    const Plan *p = g->plan;
    const int64_t N = p->B * p->T, C = p->C, V = p->V;
    // embedding
    const PlanOp *e = &p->ops[find_op(g, OP_EMBED, 0)];
    int32_t *ids = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)((i * 7919) % V);
    float *table = randv(V * C, 1, 1), *ref = xmalloc((size_t)(N * C) * 4);
    embedding_forward(ref, ids, table, N, C, e->f[0]);
    Dev *dout = dev_new(N * C, true), *dids = dev_put_i32(ids, N), *dtab = dev_put(table, V * C, true);
    run(g, kernel_of(g, find_op(g, OP_EMBED, 0), 0), (void *[]){&dout->p, &dids->p, &dtab->p});
    expect_close("embedding_fwd", dout, ref, N * C, RTOL, ATOL);
    // add + rmsnorm (fused)
    const int32_t ai = find_op(g, OP_ADD, 0);
    const PlanOp *norm = &p->ops[ai + 1];
    assert_int_equal(g->unit.ops[ai + 1].fused_into, ai);
    float *a = randv(N * C, 1, 2), *b = randv(N * C, 1, 3), *w = randv(C, 1, 4);
    float *sum = xmalloc((size_t)(N * C) * 4), *y = xmalloc((size_t)(N * C) * 4), *rstd = xmalloc((size_t)N * 4);
    add_forward(sum, a, b, N * C);
    for (int64_t i = 0; i < N * C; i++) sum[i] = from_bf16(to_bf16(sum[i])); /* the sum is stored in bf16 */
    rmsnorm_forward(y, rstd, sum, w, N, C, norm->f[0], norm->f[1]);
    Dev *dsum = dev_new(N * C, true), *dy = dev_new(N * C, true), *drstd = dev_new(N, false);
    Dev *da = dev_put(a, N * C, true), *db = dev_put(b, N * C, true), *dw = dev_put(w, C, true);
    run(g, kernel_of(g, ai, 0), (void *[]){&dsum->p, &dy->p, &drstd->p, &da->p, &db->p, &dw->p});
    expect_close("add_rmsnorm_fwd sum", dsum, sum, N * C, 0, 0);
    expect_close("add_rmsnorm_fwd y", dy, y, N * C, RTOL, ATOL);
    expect_close("add_rmsnorm_fwd rstd", drstd, rstd, N, 1e-4f, 0);
    // glu
    const int32_t gi = find_op(g, OP_GLU, 0);
    const int64_t n = p->ops[gi].n[0];
    float *gate = randv(n, 3, 5), *up = randv(n, 1, 6), *h = xmalloc((size_t)n * 4);
    glu_forward(h, gate, up, n, (ModelActivation)p->ops[gi].n[1]);
    Dev *dh = dev_new(n, true), *dg = dev_put(gate, n, true), *du = dev_put(up, n, true);
    run(g, kernel_of(g, gi, 0), (void *[]){&dh->p, &dg->p, &du->p});
    expect_close("glu_fwd", dh, h, n, RTOL, ATOL);
    float *dhv = randv(n, 1, 7), *dgate = xmalloc((size_t)n * 4), *dup = xmalloc((size_t)n * 4);
    glu_backward(dgate, dup, dhv, gate, up, n, (ModelActivation)p->ops[gi].n[1]);
    const int32_t gb = find_op(g, OP_GLU_BWD, 0);
    Dev *ddg = dev_new(n, true), *ddu = dev_new(n, true), *ddh = dev_put(dhv, n, true);
    run(g, kernel_of(g, gb, 0), (void *[]){&ddg->p, &ddu->p, &ddh->p, &dg->p, &du->p});
    expect_close("glu_bwd dgate", ddg, dgate, n, RTOL, ATOL);
    expect_close("glu_bwd dup", ddu, dup, n, RTOL, ATOL);
    free(ids), free(table), free(ref), free(a), free(b), free(w), free(sum), free(y), free(rstd);
    free(gate), free(up), free(h), free(dhv), free(dgate), free(dup);
    gpu_free(g);
}

static void test_rmsnorm_backward(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_FULL);
    const Plan *p = g->plan;
    const int32_t oi = find_op(g, OP_RMSNORM_BWD, 0);
    const PlanOp *op = &p->ops[oi];
    const int64_t R = op->n[0], D = op->n[1];
    float *x = randv(R * D, 2, 11), *w = randv(D, 1, 12), *dy = randv(R * D, 1, 13);
    float *y = xmalloc((size_t)(R * D) * 4), *rstd = xmalloc((size_t)R * 4);
    float *dx = xmalloc((size_t)(R * D) * 4), *dwv = xcalloc((size_t)D, 4);
    rmsnorm_forward(y, rstd, x, w, R, D, op->f[0], op->f[1]);
    rmsnorm_backward(dx, dwv, dy, x, w, rstd, R, D, op->f[1], false);
    /* an accumulating dx starts from zeros (then it must equal the written one) */
    float *zero = xcalloc((size_t)(R * D), 4);
    Dev *ddx = (op->accum & 1) ? dev_put(zero, R * D, true) : dev_new(R * D, true);
    free(zero);
    Dev *ddy = dev_put(dy, R * D, true), *dxx = dev_put(x, R * D, true);
    Dev *dww = dev_put(w, D, true), *drs = dev_put(rstd, R, false);
    int k = 0;
    if (op->out[0] >= 0) {
        run(g, kernel_of(g, oi, k++), (void *[]){&ddx->p, &ddy->p, &dxx->p, &dww->p, &drs->p});
        expect_close("rmsnorm_bwd dx", ddx, dx, R * D, RTOL, 0.02f);
    }
    if (op->out[1] >= 0) {
        float *zero = xcalloc((size_t)D, 4);
        Dev *part = dev_new(g->unit.colsum_scratch, false), *ddw = dev_put(zero, D, false);
        run(g, kernel_of(g, oi, k), (void *[]){&part->p, &ddy->p, &dxx->p, &drs->p});
        run(g, kernel_of(g, oi, k + 1), (void *[]){&ddw->p, &part->p});
        expect_close("colsum (rmsnorm dw)", ddw, dwv, D, 1e-3f, 1e-3f);
        free(zero);
    }
    free(x), free(w), free(dy), free(y), free(rstd), free(dx), free(dwv);
    gpu_free(g);
}

static void test_rope(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_LORA);
    const Plan *p = g->plan;
    for (int dir = 0; dir < 2; dir++) {
        const int32_t oi = find_op(g, dir ? OP_ROPE_BWD : OP_ROPE, 0);
        const PlanOp *a = &p->ops[oi], *b = &p->ops[oi + 1];
        assert_int_equal(g->unit.ops[oi + 1].fused_into, oi);
        const int64_t N = a->n[0], HD = a->n[2];
        int32_t *pos = xmalloc((size_t)N * 4);
        for (int64_t t = 0; t < N; t++) pos[t] = (int32_t)(t % 37); /* restarts, as packed sequences do */
        float inv[ROPE_MAX_HD / 2];
        const float scale = rope_inv_freq(&p->rope[a->n[3]], HD, p->max_positions, 37, inv);
        float *x1 = randv(N * a->n[1] * HD, 1, 21), *x2 = randv(N * b->n[1] * HD, 1, 22);
        float *o1 = xmalloc((size_t)(N * a->n[1] * HD) * 4), *o2 = xmalloc((size_t)(N * b->n[1] * HD) * 4);
        (dir ? rope_backward : rope_forward)(o1, x1, pos, inv, scale, N, a->n[1], HD);
        (dir ? rope_backward : rope_forward)(o2, x2, pos, inv, scale, N, b->n[1], HD);
        Dev *d1 = dev_new(N * a->n[1] * HD, true), *d2 = dev_new(N * b->n[1] * HD, true);
        Dev *i1 = dev_put(x1, N * a->n[1] * HD, true), *i2 = dev_put(x2, N * b->n[1] * HD, true);
        Dev *dp = dev_put_i32(pos, N), *dinv = dev_put(inv, HD / 2, false);
        float s = scale;
        run(g, kernel_of(g, oi, 0), (void *[]){&d1->p, &i1->p, &d2->p, &i2->p, &dp->p, &dinv->p, &s});
        expect_close(dir ? "rope_apply bwd first" : "rope_apply q", d1, o1, N * a->n[1] * HD, RTOL, ATOL);
        expect_close(dir ? "rope_apply bwd second" : "rope_apply k", d2, o2, N * b->n[1] * HD, RTOL, ATOL);
        free(pos), free(x1), free(x2), free(o1), free(o2);
    }
    gpu_free(g);
}

/* The forward op fi and its backward bi on random q, k, v with three packed sequences a row. */
static void check_attention(Gpu *g, int32_t fi, int32_t bi) {
    const Plan *p = g->plan;
    const PlanOp *op = &p->ops[fi];
    AttentionShape s = {.B = op->n[0], .T = op->n[1], .NH = op->n[2], .NKV = op->n[3], .HD = op->n[4],
                        .window = op->n[5], .scale = op->f[0], .softcap = op->f[1]};
    const int64_t B = s.B, T = s.T, NH = s.NH, NKV = s.NKV, HD = s.HD;
    int32_t *seq = xmalloc((size_t)(B * T) * 4);
    for (int64_t i = 0; i < B * T; i++) seq[i] = (int32_t)((i % T) < T / 3 ? 0 : (i % T) < T - 5 ? 1 : 2);
    float *q = randv(B * T * NH * HD, 1, 31), *k = randv(B * T * NKV * HD, 1, 32), *v = randv(B * T * NKV * HD, 1, 33);
    float *o = xmalloc((size_t)(B * T * NH * HD) * 4), *lse = xmalloc((size_t)(B * NH * T) * 4);
    attention_forward(o, lse, q, k, v, seq, &s);
    Dev *dO = dev_new(B * T * NH * HD, true), *dL = dev_new(B * NH * T, false);
    Dev *dq = dev_put(q, B * T * NH * HD, true), *dk = dev_put(k, B * T * NKV * HD, true);
    Dev *dv = dev_put(v, B * T * NKV * HD, true), *dseq = dev_put_i32(seq, B * T);
    run(g, kernel_of(g, fi, 0), (void *[]){&dO->p, &dL->p, &dq->p, &dk->p, &dv->p, &dseq->p});
    expect_close("attention_fwd out", dO, o, B * T * NH * HD, RTOL, ATOL);
    expect_close("attention_fwd lse", dL, lse, B * NH * T, 1e-4f, 1e-4f);
    // backward from the reference's out (rounded to bf16, as the GPU stores it) and lse
    for (int64_t i = 0; i < B * T * NH * HD; i++) o[i] = from_bf16(to_bf16(o[i]));
    float *dout = randv(B * T * NH * HD, 1, 34), *delta = xmalloc((size_t)(B * NH * T) * 4);
    float *gq = xmalloc((size_t)(B * T * NH * HD) * 4), *gk = xmalloc((size_t)(B * T * NKV * HD) * 4);
    float *gv = xmalloc((size_t)(B * T * NKV * HD) * 4);
    attention_backward(gq, gk, gv, delta, dout, o, lse, q, k, v, seq, &s);
    Dev *ddq = dev_new(B * T * NH * HD, true), *ddk = dev_new(B * T * NKV * HD, true);
    Dev *ddv = dev_new(B * T * NKV * HD, true), *ddelta = dev_new(B * NH * T, false);
    Dev *ddo = dev_put(dout, B * T * NH * HD, true), *dor = dev_put(o, B * T * NH * HD, true);
    Dev *dlr = dev_put(lse, B * NH * T, false);
    run(g, kernel_of(g, bi, 0), (void *[]){&ddq->p, &ddelta->p, &ddo->p, &dor->p, &dlr->p, &dq->p, &dk->p, &dv->p, &dseq->p});
    run(g, kernel_of(g, bi, 1), (void *[]){&ddk->p, &ddv->p, &ddo->p, &dlr->p, &ddelta->p, &dq->p, &dk->p, &dv->p, &dseq->p});
    expect_close("attention_bwd delta", ddelta, delta, B * NH * T, 1e-3f, 1e-3f);
    expect_close("attention_bwd dq", ddq, gq, B * T * NH * HD, 0.03f, 5e-3f);
    expect_close("attention_bwd dk", ddk, gk, B * T * NKV * HD, 0.03f, 5e-3f);
    expect_close("attention_bwd dv", ddv, gv, B * T * NKV * HD, 0.03f, 5e-3f);
    free(seq), free(q), free(k), free(v), free(o), free(lse), free(dout), free(delta), free(gq), free(gk), free(gv);
}

static void test_attention(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_LORA);
    check_attention(g, find_op(g, OP_ATTENTION, 0), find_op(g, OP_ATTENTION_BWD, 0));
    gpu_free(g);
}

static void test_lora_and_dropout(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_LORA_DROPOUT);
    const Plan *p = g->plan;
    const int32_t li = find_op(g, OP_LINEAR, 0);
    const PlanOp *op = &p->ops[li];
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    assert_true(op->tmp[0] >= 0 && op->in[3] >= 0);
    // dropout: the same Philox mask as the CPU
    const uint64_t seed = 42, purpose = rng_purpose(RNG_DROPOUT, 3), first = (uint64_t)op->n[4] << 40;
    float *x = randv(M * K, 1, 41), *xd = xmalloc((size_t)(M * K) * 4);
    dropout_forward(xd, x, M * K, op->f[1], seed, purpose, first);
    Dev *dxd = dev_new(M * K, true), *dx = dev_put(x, M * K, true);
    uint64_t s_ = seed, p_ = purpose, f_ = first;
    run(g, kernel_of(g, li, 0), (void *[]){&dxd->p, &dx->p, &s_, &p_, &f_});
    expect_close("dropout_fwd", dxd, xd, M * K, RTOL, 0);
    // lora_add: y + s * u B^T (+ bias)
    float *y = randv(M * N, 1, 42), *u = randv(M * R, 1, 43), *Bw = randv(N * R, 1, 44);
    float *ref = xmalloc((size_t)(M * N) * 4);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0;
            for (int64_t r = 0; r < R; r++) acc += u[m * R + r] * Bw[n * R + r];
            ref[m * N + n] = y[m * N + n] + op->f[0] * acc;
        }
    Dev *dy = dev_put(y, M * N, true), *du = dev_put(u, M * R, true), *dB = dev_put(Bw, N * R, true);
    CUdeviceptr nobias = 0;
    run(g, kernel_of(g, li, 1), (void *[]){&dy->p, &du->p, &dB->p, &nobias});
    expect_close("lora_add", dy, ref, M * N, RTOL, ATOL);
    free(x), free(xd), free(y), free(u), free(Bw), free(ref);
    gpu_free(g);
}

/* The loss over three vocabulary chunks (and the soft-cap folded in, when the plan caps the
 * logits) against softcap + crossentropy + softcap_backward. */
static void check_ce(Gpu *g) {
    const Plan *p = g->plan;
    float cap = 0;
    for (int32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == OP_SOFTCAP && g->unit.ops[i].fused_into == p->loss_op) cap = p->ops[i].f[0];
    const int32_t oi = p->loss_op;
    const int64_t B = p->B, T = p->T, V = p->V, N = B * T;
    float *logits = randv(N * V, 4, 51), *dref = xmalloc((size_t)(N * V) * 4);
    int32_t *labels = xmalloc((size_t)N * 4);
    uint64_t st = 9;
    for (int64_t i = 0; i < N; i++)
        labels[i] = i % 5 == 0 ? CE_IGNORE : (int32_t)((rnd(&st, 0.5f) + 0.5f) * (float)V) % (int32_t)V;
    int64_t count = crossentropy_count(labels, B, T);
    const float grad_scale = 1.0f / (float)count;
    float *capped = xmalloc((size_t)(N * V) * 4);
    if (cap > 0) softcap_forward(capped, logits, N * V, cap);
    else memcpy(capped, logits, (size_t)(N * V) * 4);
    double loss = crossentropy_forward_backward(dref, capped, labels, B, T, V, grad_scale, &count);
    if (cap > 0) softcap_backward(dref, dref, logits, N * V, cap);
    free(capped);
    // three chunks of unequal width, as the executor would cut the vocabulary
    const int64_t width_max = 384;
    Dev *mx = dev_new(N, false), *sm = dev_new(N, false), *tg = dev_new(N, false), *dl = dev_put_i32(labels, N);
    Dev *chunk = dev_new(N * width_max, false), *dchunk = dev_new(N * width_max, true);
    float *host = xmalloc((size_t)(N * width_max) * 4);
    for (int pass = 0; pass < 2; pass++)
        for (int v0 = 0; v0 < (int)V; v0 += (int)width_max) {
            int width = (int)(V - v0 < width_max ? V - v0 : width_max);
            for (int64_t r = 0; r < N; r++) memcpy(host + r * width, logits + r * V + v0, (size_t)width * 4);
            CU_CHECK(cu.htod(chunk->p, host, (size_t)(N * width) * 4));
            if (pass == 0) {
                run(g, kernel_of(g, oi, 0), (void *[]){&mx->p, &sm->p, &tg->p, &chunk->p, &dl->p, &v0, &width});
                continue;
            }
            float gs = grad_scale;
            run(g, kernel_of(g, oi, 2), (void *[]){&dchunk->p, &chunk->p, &dl->p, &mx->p, &sm->p, &v0, &width, &gs});
            Dev view = *dchunk;
            view.n = N * width;
            float *got = dev_get(&view);
            for (int64_t r = 0; r < N; r++)
                for (int c = 0; c < width; c++) {
                    const float want = dref[r * V + v0 + c], have = got[r * width + c];
                    if (!(fabsf(have - want) <= 1e-9f + 0.02f * fabsf(want)))
                        fail_msg("ce_grad[%lld, %d]: gpu %g, reference %g", (long long)r, v0 + c, (double)have, (double)want);
                }
            free(got);
        }
    Dev *dloss = dev_new(2, false), *dcount = dev_new(2, false); /* a double and an i64: 8 bytes each */
    run(g, kernel_of(g, oi, 1), (void *[]){&dloss->p, &dcount->p, &mx->p, &sm->p, &tg->p, &dl->p});
    double got_loss;
    int64_t got_count;
    CU_CHECK(cu.dtoh(&got_loss, dloss->p, 8));
    CU_CHECK(cu.dtoh(&got_count, dcount->p, 8));
    assert_int_equal(got_count, count);
    if (!(fabs(got_loss - loss) <= 1e-4 * fabs(loss))) fail_msg("loss: gpu %.9g, reference %.9g", got_loss, loss);
    fprintf(stderr, "      ce (3 chunks%s) loss %.6f = %.6f over %lld tokens\n", cap > 0 ? ", soft-capped" : "", got_loss,
            loss, (long long)count);
    free(logits), free(dref), free(labels), free(host);
}

static void test_cross_entropy_chunks(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_LORA);
    check_ce(g);
    gpu_free(g);
}

static void test_adamw(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN3_FULL);
    const Plan *p = g->plan;
    const int64_t PN = p->region_size[PLAN_PARAM], GN = p->region_size[PLAN_GRAD];
    float *params = randv(PN, 1, 61), *grads = randv(GN, 3, 62);
    /* the GPU gets the gradients of a loss scaled by 1024 (exact) and unscales them (fp16) */
    float *scaled = xmalloc((size_t)GN * 4 + 4);
    for (int64_t i = 0; i < GN; i++) scaled[i] = grads[i] * 1024.0f;
    Dev *dpb = dev_new(PN, true), *dg = dev_put(scaled, GN, false);
    /* the CPU side, as the trainer runs it */
    OptParam *op = xcalloc((size_t)p->n_params, sizeof *op);
    size_t n = 0;
    int64_t state_n = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        if (!pp->trainable) continue;
        op[n++] = (OptParam){pp->name, params + p->tensors[pp->tensor].offset, grads + p->tensors[pp->grad].offset,
                             p->tensors[pp->tensor].numel, pp->decay, 1.0};
        state_n += p->tensors[pp->tensor].numel;
    }
    /* the fp32 masters of the trainable parameters, packed as m and v (adamw.cuh) */
    float *zeros = xcalloc((size_t)state_n, 4), *masters = xcalloc((size_t)state_n, 4);
    for (size_t i = 0, k = 0; i < n; k += (size_t)op[i].n, i++) memcpy(masters + k, op[i].value, (size_t)op[i].n * 4);
    Dev *dp = dev_put(masters, state_n, false);
    Dev *dm = dev_put(zeros, state_n, false), *dv = dev_put(zeros, state_n, false);
    AdamWConfig cfg = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    AdamW opt;
    optim_init(&opt, &cfg, op, n);
    const float max_norm = 1.0f;
    const float norm = (float)optim_clip_grad_norm(op, n, max_norm);
    optim_step(&opt, op, n, 1.0);
    /* the GPU side: the same scalars, computed as optim_step computes them */
    struct {
        float neg_step[2], decay_mul[2], w1, beta2, one_minus_beta2, bc2_sqrt, eps, unscale;
    } a;
    const double bc1 = 1 - cfg.beta1, bc2 = 1 - cfg.beta2;
    for (int k = 0; k < 2; k++) a.neg_step[k] = (float)(-(cfg.lr / bc1)), a.decay_mul[k] = (float)(1.0 - cfg.lr * cfg.weight_decay);
    a.w1 = (float)(1 - cfg.beta1), a.beta2 = (float)cfg.beta2, a.one_minus_beta2 = (float)(1 - cfg.beta2);
    a.bc2_sqrt = (float)sqrt(bc2), a.eps = (float)cfg.eps, a.unscale = 1.0f / 1024.0f;
    Dev *nc = dev_new(3, false), *partd = dev_new(2 * g->unit.adamw_blocks, false); /* doubles */
    Dev *sq = dev_new(2, false);                                                    /* one double */
    float mn = max_norm;
    int64_t zero = 0; /* every parameter: the first block, the first state value */
    int p0 = 0, p1 = (int)n, skip = 1;
    run(g, &g->unit.kernels[g->unit.optimizer[0]], (void *[]){&partd->p, &dg->p, &zero, &a.unscale});
    run(g, &g->unit.kernels[g->unit.optimizer[1]], (void *[]){&nc->p, &sq->p, &partd->p, &mn, &p0, &p1, &skip});
    run(g, &g->unit.kernels[g->unit.optimizer[2]],
        (void *[]){&dp->p, &dpb->p, &dg->p, &dm->p, &dv->p, &nc->p, &a, &zero, &zero});
    float got_nc[3];
    CU_CHECK(cu.dtoh(got_nc, nc->p, 12));
    if (!(fabsf(got_nc[0] - norm) <= 1e-5f * norm)) fail_msg("grad norm: gpu %g, reference %g", (double)got_nc[0], (double)norm);
    assert_true(got_nc[2] == 0.0f); /* finite: no skip */
    /* the packed masters against the trainable parameters of the reference */
    float *got = dev_get(dp);
    for (size_t i = 0, k = 0; i < n; k += (size_t)op[i].n, i++) {
        const int64_t off = op[i].value - params;
        for (int64_t e = 0; e < op[i].n; e++)
            if (!(fabsf(got[k + e] - params[off + e]) <= 1e-6f + 1e-5f * fabsf(params[off + e])))
                fail_msg("adamw %s[%lld]: gpu %g, reference %g", op[i].name, (long long)e, (double)got[k + e],
                         (double)params[off + e]);
    }
    /* an inf among the gradients (an fp16 overflow): the step is skipped, nothing moves */
    const float inf = INFINITY;
    CU_CHECK(cu.htod(dg->p + 4 * (CUdeviceptr)(op[n / 2].grad - grads), &inf, 4));
    run(g, &g->unit.kernels[g->unit.optimizer[0]], (void *[]){&partd->p, &dg->p, &zero, &a.unscale});
    run(g, &g->unit.kernels[g->unit.optimizer[1]], (void *[]){&nc->p, &sq->p, &partd->p, &mn, &p0, &p1, &skip});
    run(g, &g->unit.kernels[g->unit.optimizer[2]], (void *[]){&dp->p, &dpb->p, &dg->p, &dm->p, &dv->p, &nc->p, &a, &zero, &zero});
    CU_CHECK(cu.dtoh(got_nc, nc->p, 12));
    assert_true(isinf(got_nc[0]) && got_nc[2] == 1.0f);
    float *again = dev_get(dp);
    assert_memory_equal(again, got, (size_t)state_n * 4);
    free(again);
    fprintf(stderr, "      adamw: %zu tensors, grad norm %.6f (gradients scaled by 1024, unscaled), all within "
            "1e-5; an inf skips the step\n", n, (double)norm);
    free(got), free(params), free(grads), free(scaled), free(zeros), free(masters), free(op);
    optim_free(&opt);
    gpu_free(g);
}


/* The first op of `kind` with the window > 0 (n[5]) */
static int32_t find_windowed(const Gpu *g, PlanOpKind kind) {
    for (int32_t i = 0; i < g->plan->n_ops; i++)
        if (g->plan->ops[i].kind == kind && g->plan->ops[i].n[5] > 0) return i;
    fail_msg("no %s op with a sliding window", plan_op_name(kind));
    return -1;
}

static void test_gemma2_window_softcap_norm_embedding(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_GEMMA2_FULL);
    const Plan *p = g->plan;
    const int32_t fi = find_windowed(g, OP_ATTENTION), bi = find_windowed(g, OP_ATTENTION_BWD);
    assert_true(p->ops[fi].n[5] < p->T && p->ops[fi].f[1] > 0); /* a window shorter than the row, soft-capped */
    check_attention(g, fi, bi);
    check_ce(g);
    // a norm on its own (after the embedding), gemma's (1 + w)
    int32_t ni = -1;
    for (int32_t i = 0; i < p->n_ops && ni < 0; i++)
        if (p->ops[i].kind == OP_RMSNORM && g->unit.ops[i].fused_into < 0 && p->ops[i].n[1] == p->C) ni = i;
    assert_true(ni >= 0);
    const PlanOp *op = &p->ops[ni];
    const int64_t R = op->n[0], D = op->n[1];
    assert_true(op->f[1] == 1.0f);
    float *x = randv(R * D, 2, 71), *w = randv(D, 0.5f, 72), *y = xmalloc((size_t)(R * D) * 4), *rstd = xmalloc((size_t)R * 4);
    rmsnorm_forward(y, rstd, x, w, R, D, op->f[0], op->f[1]);
    Dev *dy = dev_new(R * D, true), *dr = dev_new(R, false), *dx = dev_put(x, R * D, true), *dw = dev_put(w, D, true);
    run(g, kernel_of(g, ni, 0), (void *[]){&dy->p, &dr->p, &dx->p, &dw->p});
    expect_close("rmsnorm_fwd (offset 1)", dy, y, R * D, RTOL, ATOL);
    expect_close("rmsnorm_fwd rstd", dr, rstd, R, 1e-4f, 0);
    // the embedding's gradient (full fine-tuning), ids repeating
    const int32_t ei = find_op(g, OP_EMBED_BWD, 0);
    const PlanOp *e = &p->ops[ei];
    const int64_t N = e->n[0], C = e->n[1], V = e->n[2];
    int32_t *ids = xmalloc((size_t)N * 4);
    for (int64_t t = 0; t < N; t++) ids[t] = (int32_t)((t * 31) % 17); /* 17 ids, each many times */
    float *dout = randv(N * C, 1, 73), *dtab = xcalloc((size_t)(V * C), 4);
    embedding_backward(dtab, ids, dout, N, C, V, e->f[0]);
    float *zero = xcalloc((size_t)(V * C), 4);
    Dev *ddt = dev_put(zero, V * C, false), *dids = dev_put_i32(ids, N), *ddo = dev_put(dout, N * C, true);
    run(g, kernel_of(g, ei, 0), (void *[]){&ddt->p, &dids->p, &ddo->p});
    expect_close("embedding_bwd", ddt, dtab, V * C, 1e-5f, 1e-4f);
    free(x), free(w), free(y), free(rstd), free(ids), free(dout), free(dtab), free(zero);
    gpu_free(g);
}

/* (The bias itself is cuBLASLt's epilogue, no kernel: tests/unit/test_cudrv.c checks it.) */
static void test_bias_gradient_and_accum(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN2_FULL);
    const Plan *p = g->plan;
    int32_t bi = -1, ai = -1;
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        if (bi < 0 && op->kind == OP_LINEAR_BWD && op->out[2] >= 0) bi = i;
        if (ai < 0 && op->kind == OP_ACCUM) ai = i;
    }
    assert_true(bi >= 0);
    // the bias gradient: a column sum without x
    const int64_t BM = p->ops[bi].n[0], BN = p->ops[bi].n[1];
    float *dyv = randv(BM * BN, 1, 83), *dbias = xcalloc((size_t)BN, 4);
    add_bias_backward(dbias, dyv, BM, BN);
    float *zero = xcalloc((size_t)BN, 4);
    Dev *part = dev_new(g->unit.colsum_scratch, false), *ddb = dev_put(zero, BN, false), *ddy = dev_put(dyv, BM * BN, true);
    CUdeviceptr none = 0;
    run(g, kernel_of(g, bi, 0), (void *[]){&part->p, &ddy->p, &none, &none});
    run(g, kernel_of(g, bi, 1), (void *[]){&ddb->p, &part->p});
    expect_close("colsum (bias gradient)", ddb, dbias, BN, 1e-4f, 1e-4f);
    if (ai >= 0) { /* a gradient reaching a tensor from two consumers */
        const int64_t n = p->ops[ai].n[0];
        const bool acc = p->ops[ai].accum & 1;
        float *dst = randv(n, 1, 84), *src = randv(n, 1, 85), *want = xmalloc((size_t)n * 4);
        memcpy(want, dst, (size_t)n * 4);
        add_into(want, src, n, acc);
        Dev *dd = dev_put(dst, n, true), *ds = dev_put(src, n, true);
        run(g, kernel_of(g, ai, 0), (void *[]){&dd->p, &ds->p});
        expect_close(acc ? "accum (+=)" : "accum (=)", dd, want, n, RTOL, ATOL);
        free(dst), free(src), free(want);
    } else {
        fprintf(stderr, "      (this plan has no ACCUM op)\n");
    }
    free(dyv), free(dbias), free(zero);
    gpu_free(g);
}

static void test_lora_bias_and_dropout_backward(void **state) {
    (void)state;
    GPU_OR_SKIP();
    Gpu *g = gpu_new(CASE_QWEN2_LORA_DROPOUT);
    const Plan *p = g->plan;
    int32_t li = -1, bi = -1;
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        if (li < 0 && op->kind == OP_LINEAR && op->in[2] >= 0 && op->in[3] >= 0) li = i;
        if (bi < 0 && op->kind == OP_LINEAR_BWD && op->in[3] >= 0 && op->tmp[1] >= 0 && op->out[0] >= 0) bi = i;
    }
    assert_true(li >= 0 && bi >= 0);
    // lora_add with the bias in the same pass
    const PlanOp *op = &p->ops[li];
    const int64_t M = op->n[0], N = op->n[1], R = op->n[3];
    float *y = randv(M * N, 1, 91), *u = randv(M * R, 1, 92), *Bw = randv(N * R, 1, 93), *bias = randv(N, 1, 94);
    float *ref = xmalloc((size_t)(M * N) * 4);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0;
            for (int64_t r = 0; r < R; r++) acc += u[m * R + r] * Bw[n * R + r];
            ref[m * N + n] = y[m * N + n] + bias[n] + op->f[0] * acc;
        }
    Dev *dy = dev_put(y, M * N, true), *du = dev_put(u, M * R, true), *dB = dev_put(Bw, N * R, true);
    Dev *dbias = dev_put(bias, N, true);
    run(g, kernel_of(g, li, 1), (void *[]){&dy->p, &du->p, &dB->p, &dbias->p});
    expect_close("lora_add with bias", dy, ref, M * N, RTOL, ATOL);
    // dx += drop(du A), the mask regenerated from (seed, step, adapter)
    const PlanOp *bop = &p->ops[bi];
    const int64_t n = bop->n[0] * bop->n[2];
    const uint64_t seed = 7, purpose = rng_purpose(RNG_DROPOUT, 11), first = (uint64_t)bop->n[4] << 40;
    float *dx = randv(n, 1, 95), *src = randv(n, 1, 96), *dropped = xmalloc((size_t)n * 4), *want = xmalloc((size_t)n * 4);
    dropout_forward(dropped, src, n, bop->f[1], seed, purpose, first);
    for (int64_t i = 0; i < n; i++) want[i] = dx[i] + dropped[i];
    Dev *ddx = dev_put(dx, n, true), *dsrc = dev_put(src, n, true);
    uint64_t s_ = seed, p_ = purpose, f_ = first;
    run(g, kernel_of(g, bi, g->unit.ops[bi].n_kernels - 1), (void *[]){&ddx->p, &dsrc->p, &s_, &p_, &f_});
    expect_close("dropout_accum", ddx, want, n, RTOL, ATOL);
    free(y), free(u), free(Bw), free(bias), free(ref), free(dx), free(src), free(dropped), free(want);
    gpu_free(g);
}

static int setup(void **state) {
    (void)state;
    cu.ok = cu_load();
    char why[ERR_LEN];
    if (cu.ok && !nvrtc_available(why, sizeof why)) {
        cu.ok = false;
        snprintf(cu.why, sizeof cu.why, "needs NVRTC: %s", why);
    }
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norms_embedding_glu), cmocka_unit_test(test_rmsnorm_backward),
        cmocka_unit_test(test_rope),                cmocka_unit_test(test_attention),
        cmocka_unit_test(test_lora_and_dropout),    cmocka_unit_test(test_cross_entropy_chunks),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_gemma2_window_softcap_norm_embedding),
        cmocka_unit_test(test_bias_gradient_and_accum),
        cmocka_unit_test(test_lora_bias_and_dropout_backward),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
