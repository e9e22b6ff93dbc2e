/* test_cuda_gen.c - the generated CUDA unit (compiler/cuda_gen.c) and its NVRTC compile
 * (compiler/nvrtc.c). CI has no GPU: what runs the kernels is tests/gpu/test_kernels_gpu.c.
 *
 *   codegen   the plan's shapes are literals of the instances, every op of the plan launches a
 *             kernel (or names the op whose kernel computes it, or is a cuBLASLt product only),
 *             the fusions are there, the same plan gives the same bytes
 *   fp16      the unit for fp16: true differs from the bf16 one in the storage typedef only
 *             (one line), and launches.txt in its storage line only; it compiles clean
 *   nvrtc     every recipe in recipes/ and examples/ (stories260K) and Qwen2.5-0.5B-, Qwen3-,
 *             Llama-3-, Gemma-2/3-shaped plans (LoRA and full) compile for sm_80 and sm_90 with
 *             no error; a second compile is a cache hit. Kernel counts and times are printed.
 *             Without NVRTC these are skipped by name.
 */
#include "testutil.h"

#include <glob.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "cuda_gen.h"
#include "graph.h"
#include "model.h"
#include "nvrtc.h"
#include "recipe.h"
#include "sha256.h"
#include "util.h"

static const char *const LORA_ALL[] = {"all"};

/* A plan from a ModelSpec built as `llfc init-model` builds one (transformers' defaults). */
typedef struct {
    const char *name, *type;
    int64_t V, C, L, NH, NKV, HD, FF;
} Shape;

static const Shape SHAPES[] = {
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 64, 4864},
    {"qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 128, 3072},
    {"llama3-8b", "llama", 128256, 4096, 32, 32, 8, 128, 14336},
    {"gemma2-2b", "gemma2", 256000, 2304, 26, 8, 4, 256, 9216},
    {"gemma3-1b", "gemma3_text", 262144, 1152, 26, 4, 1, 256, 6912},
};

static Plan *shape_plan(const Shape *s, PlanFinetune ft, float dropout, int64_t B, int64_t T) {
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_init_defaults(&m, s->type, s->V, s->C, s->L, s->NH, s->NKV, s->HD, s->FF, err, sizeof err))
        fail_msg("%s: %s", s->name, err);
    GraphOptions o = {.finetune = ft, .B = B, .T = T, .lora_rank = 16, .lora_dropout = dropout,
                      .lora_target = LORA_ALL, .n_lora_target = 1};
    Plan *p = graph_build(&o, &m, err, sizeof err);
    if (!p) fail_msg("%s: %s", s->name, err);
    model_free(&m);
    return p;
}

static Plan *demo_plan(const char *model_dir, PlanFinetune ft) {
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_load(&m, model_dir, err, sizeof err)) fail_msg("%s", err);
    GraphOptions o = {.finetune = ft, .B = 4, .T = 256, .lora_rank = 8, .lora_dropout = 0.05,
                      .lora_target = LORA_ALL, .n_lora_target = 1};
    Plan *p = graph_build(&o, &m, err, sizeof err);
    if (!p) fail_msg("%s", err);
    model_free(&m);
    return p;
}

static void gen_or_fail(const Plan *p, CudaUnit *u) {
    char err[ERR_LEN];
    if (!cuda_gen(p, CUDA_BF16, u, err, sizeof err)) fail_msg("cuda_gen: %s", err);
}

static bool has(const CudaUnit *u, const char *text) { return strstr(u->source, text) != NULL; }

static bool has_kernel_of(const CudaUnit *u, const char *tmpl) {
    for (int32_t k = 0; k < u->n_kernels; k++)
        if (!strcmp(u->kernels[k].template_name, tmpl)) return true;
    return false;
}

/* Every op launches something, is computed by another op's kernels, or is a product only; and
 * every kernel the unit defines is launched by some op or by the optimizer. */
static void check_coverage(const Plan *p, const CudaUnit *u) {
    assert_int_equal(u->n_ops, p->n_ops);
    bool *used = xcalloc((size_t)u->n_kernels + 1, 1);
    for (int32_t i = 0; i < p->n_ops; i++) {
        const CudaOpLaunch *l = &u->ops[i];
        const PlanOp *op = &p->ops[i];
        bool matmul_kind = op->kind == OP_LINEAR || op->kind == OP_LINEAR_BWD;
        if (!(l->n_kernels > 0 || l->fused_into >= 0 || (l->matmul && matmul_kind)))
            fail_msg("op %d (%s) has no kernel", (int)i, plan_op_name((PlanOpKind)op->kind));
        if (l->fused_into >= 0) assert_true(u->ops[l->fused_into].n_kernels > 0);
        for (int k = 0; k < l->n_kernels; k++) {
            assert_in_range(l->kernel[k], 0, u->n_kernels - 1);
            used[l->kernel[k]] = true;
        }
    }
    for (int k = 0; k < 3; k++)
        if (u->optimizer[k] >= 0) used[u->optimizer[k]] = true;
    for (int32_t k = 0; k < u->n_kernels; k++) {
        if (!used[k]) fail_msg("kernel %s is launched by nothing", u->kernels[k].name);
        char *def = xprintf("void __launch_bounds__(%u) %s(", u->kernels[k].block[0] * u->kernels[k].block[1],
                            u->kernels[k].name);
        if (!strstr(u->source, def)) fail_msg("kernel %s is not defined", u->kernels[k].name);
        free(def);
        assert_true(u->kernels[k].grid[0] >= 1 && u->kernels[k].block[0] >= 32);
    }
    free(used);
}

// --- codegen

static void test_demo_shapes_and_fusions(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "models/stories260K/hf");
    Plan *p = demo_plan(dir, FT_LORA);
    CudaUnit u;
    gen_or_fail(p, &u);
    check_coverage(p, &u);
    /* stories260K: C=64, NH=8, NKV=4, HD=8, FF=172, T=256, N=1024, R=8 */
    assert_true(has(&u, "add_rmsnorm_fwd<64, 0>(ADD_RMSNORM_FWD_ARGS, 1024LL, "));
    assert_true(has(&u, "attention_fwd<256, 8, 4, 8, 0, 0>(ATTENTION_FWD_ARGS, 0.353553385f, "));
    assert_true(has(&u, "attention_bwd_dkdv<256, 8, 4, 8, 0, 0>"));
    assert_true(has(&u, "rope_apply<8, 8, 4, 1>(ROPE_APPLY_ARGS)")); /* q's 8 heads and k's 4 together */
    assert_true(has(&u, "rope_apply<8, 4, 8, -1>(ROPE_APPLY_ARGS)")); /* backward: k first, then q */
    assert_true(has(&u, "glu_fwd<0>(GLU_FWD_ARGS, 176128LL)"));        /* SwiGLU over N * FF */
    assert_true(has(&u, "lora_add<172, 8, 0>(LORA_ADD_ARGS, 1024LL, 2.0f)"));
    assert_true(has(&u, "constexpr long long B = 4, T = 256, N = 1024, V = 512, C = 64, L = 5;"));
    /* fusions: each ADD's RMSNORM, each second ROPE, in the op table too */
    int fused_norms = 0, fused_ropes = 0;
    for (int32_t i = 0; i < p->n_ops; i++) {
        if (u.ops[i].fused_into < 0) continue;
        fused_norms += p->ops[i].kind == OP_RMSNORM && p->ops[u.ops[i].fused_into].kind == OP_ADD;
        fused_ropes += p->ops[i].kind == OP_ROPE || p->ops[i].kind == OP_ROPE_BWD;
    }
    assert_int_equal(fused_norms, 2 * p->L);  /* before the MLP and before the next layer / final norm */
    assert_int_equal(fused_ropes, 2 * p->L); /* forward and backward, per layer */
    assert_true(has_kernel_of(&u, "ce_stats") && has_kernel_of(&u, "ce_grad") && has_kernel_of(&u, "ce_finish"));
    assert_true(has_kernel_of(&u, "dropout_fwd") && has_kernel_of(&u, "dropout_accum"));
    assert_true(u.optimizer[0] >= 0 && u.optimizer[1] >= 0 && u.optimizer[2] >= 0);
    assert_int_equal(u.ce_vocab_chunk, 512); /* the whole vocabulary fits one chunk */
    assert_true(!has(&u, "#include"));      /* NVRTC needs no header path */
    fprintf(stderr, "      demo lora: %d kernels for %d ops, %zu bytes of CUDA\n", (int)u.n_kernels, (int)p->n_ops, u.len);
    cuda_unit_free(&u);
    plan_free(p);
    free(dir);
}

static void test_same_plan_same_bytes(void **state) {
    (void)state;
    const Shape *s = &SHAPES[1];
    Plan *a = shape_plan(s, FT_LORA, 0.1f, 2, 128), *b = shape_plan(s, FT_LORA, 0.1f, 2, 128);
    CudaUnit ua, ub;
    gen_or_fail(a, &ua);
    gen_or_fail(b, &ub);
    assert_int_equal(ua.len, ub.len);
    assert_memory_equal(ua.source, ub.source, ua.len);
    StrBuf la = {0}, lb = {0};
    cuda_unit_launches(&ua, a, &la);
    cuda_unit_launches(&ub, b, &lb);
    assert_string_equal(la.data, lb.data);
    /* and a different shape gives a different unit */
    Plan *c = shape_plan(s, FT_LORA, 0.1f, 2, 256);
    CudaUnit uc;
    gen_or_fail(c, &uc);
    assert_true(uc.len != ua.len || memcmp(uc.source, ua.source, ua.len) != 0);
    sb_free(&la), sb_free(&lb);
    cuda_unit_free(&ua), cuda_unit_free(&ub), cuda_unit_free(&uc);
    plan_free(a), plan_free(b), plan_free(c);
}

static void test_qwen3_qk_norm_and_full(void **state) {
    (void)state;
    Plan *p = shape_plan(&SHAPES[1], FT_FULL, 0, 2, 128);
    CudaUnit u;
    gen_or_fail(p, &u);
    check_coverage(p, &u);
    assert_true(has(&u, "rmsnorm_fwd<128, 0>(RMSNORM_FWD_ARGS, 4096LL, "));  /* q: N * NH rows of HD */
    assert_true(has(&u, "rmsnorm_fwd<128, 0>(RMSNORM_FWD_ARGS, 2048LL, "));  /* k: N * NKV rows */
    assert_true(has(&u, "colsum_partial<1024, 2, 1>"));    /* norm weight gradients */
    assert_true(has(&u, "embedding_bwd<1024>"));            /* full: the embedding trains */
    assert_true(has(&u, "rope_apply<128, 16, 8, 1>"));
    /* the optimizer's table holds every parameter of the model */
    int64_t np = 0;
    for (int32_t i = 0; i < p->n_params; i++) np += p->params[i].trainable;
    char *def = xprintf("#define ADAMW_NP %" PRId64 "\n", np);
    assert_true(has(&u, def));
    free(def);
    assert_int_equal(u.ce_vocab_chunk, p->V); /* N = 256 rows: the whole vocabulary is one chunk */
    cuda_unit_free(&u);
    plan_free(p);
    /* 128256 columns at N = 16384 rows: chunks of 4096, never the full (N, V) logits */
    p = shape_plan(&SHAPES[2], FT_LORA, 0, 4, 4096);
    gen_or_fail(p, &u);
    assert_int_equal(u.ce_vocab_chunk, 4096);
    cuda_unit_free(&u);
    plan_free(p);
}

static void test_gemma2_softcap_window_fused(void **state) {
    (void)state;
    Plan *p = shape_plan(&SHAPES[3], FT_LORA, 0, 1, 512);
    CudaUnit u;
    gen_or_fail(p, &u);
    check_coverage(p, &u);
    int softcaps = 0;
    for (int32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == OP_SOFTCAP || p->ops[i].kind == OP_SOFTCAP_BWD) {
            softcaps++;
            assert_int_equal(u.ops[i].fused_into, p->loss_op);
        }
    assert_true(softcaps >= 1);
    assert_true(has(&u, "ce_stats<512, 1>(CE_STATS_ARGS, 30.0f)"));      /* final_logit_softcapping */
    assert_true(has(&u, "attention_fwd<512, 8, 4, 256, 4096, 1>") || has(&u, "attention_fwd<512, 8, 4, 256, 0, 1>"));
    assert_true(has(&u, "rmsnorm_fwd<2304, 1>") || has(&u, "add_rmsnorm_fwd<2304, 1>")); /* gemma's 1 + w */
    assert_true(has(&u, "glu_fwd<1>"));                                   /* GeGLU, tanh */
    assert_true(!has_kernel_of(&u, "softcap_fwd"));
    cuda_unit_free(&u);
    plan_free(p);
}

static void test_emit_print_and_launches(void **state) {
    (void)state;
    Plan *p = shape_plan(&SHAPES[0], FT_LORA, 0, 1, 64);
    StrBuf bytes = {0};
    plan_serialize(p, &bytes);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char err[ERR_LEN];
    assert_true(cuda_gen_print(bytes.data, bytes.len, CUDA_BF16, f, err, sizeof err));
    fclose(f);
    CudaUnit u;
    gen_or_fail(p, &u);
    assert_int_equal(len, u.len);
    assert_memory_equal(buf, u.source, len);
    StrBuf l = {0};
    cuda_unit_launches(&u, p, &l);
    assert_true(strstr(l.data, "# llfc cuda launches v1\n") == l.data);
    assert_true(strstr(l.data, "\nkernel 0 embedding_fwd_0 "));
    free(buf);
    sb_free(&l);
    sb_free(&bytes);
    cuda_unit_free(&u);
    plan_free(p);
}

/* The lines of a and b that differ (same line count asserted); the first in *la, *lb. */
static int diff_lines(const char *a, const char *b, char *la, char *lb, size_t n) {
    int diffs = 0;
    while (*a || *b) {
        const size_t na = strcspn(a, "\n"), nb = strcspn(b, "\n");
        if (na != nb || memcmp(a, b, na)) {
            if (diffs++ == 0) snprintf(la, n, "%.*s", (int)na, a), snprintf(lb, n, "%.*s", (int)nb, b);
        }
        a += na + (a[na] == '\n'), b += nb + (b[nb] == '\n');
        if (!*a != !*b) return diffs + 1000; /* one ran out of lines first */
    }
    return diffs;
}

static void test_fp16_unit_differs_only_by_storage(void **state) {
    (void)state;
    Plan *p = shape_plan(&SHAPES[1], FT_LORA, 0.05f, 2, 128);
    CudaUnit b, h;
    char err[ERR_LEN], lb[256], lh[256];
    gen_or_fail(p, &b);
    if (!cuda_gen(p, CUDA_F16, &h, err, sizeof err)) fail_msg("cuda_gen: %s", err);
    check_coverage(p, &h);
    assert_int_equal(diff_lines(b.source, h.source, lb, lh, sizeof lb), 1);
    assert_string_equal(lb, "typedef bf16 floatX; // activations, their gradients, the weights' copy");
    assert_string_equal(lh, "typedef f16 floatX; // activations, their gradients, the weights' copy");
    assert_int_equal(h.n_kernels, b.n_kernels);
    for (int32_t k = 0; k < b.n_kernels; k++) assert_string_equal(h.kernels[k].name, b.kernels[k].name);
    StrBuf sb = {0}, sh = {0};
    cuda_unit_launches(&b, p, &sb);
    cuda_unit_launches(&h, p, &sh);
    assert_int_equal(diff_lines(sb.data, sh.data, lb, lh, sizeof lb), 1);
    assert_string_equal(lb, "storage bf16");
    assert_string_equal(lh, "storage f16");
    /* no template names a storage type but through floatX (common.cuh defines both) */
    const char *tail = strstr(h.source, "typedef f16 floatX;");
    assert_non_null(tail);
    assert_null(strstr(tail, "bf16"));
    assert_null(strstr(tail + strlen("typedef f16 floatX;"), "f16"));
    char why[ERR_LEN];
    if (nvrtc_available(why, sizeof why)) {
        static char nerr[32768];
        const int arch = 80;
        NvrtcOutput o;
        if (!nvrtc_compile(h.source, h.len, &arch, 1, &o, nerr, sizeof nerr)) fail_msg("f16 unit: %s", nerr);
        if (o.warnings) fail_msg("f16 unit: NVRTC warns:\n%s", o.warnings);
        fprintf(stderr, "      f16 unit: %d kernels, NVRTC sm_80 %.2f s%s\n", (int)h.n_kernels, o.seconds,
                o.cache_hit ? " (cache hit)" : "");
        nvrtc_output_free(&o);
    }
    sb_free(&sb), sb_free(&sh);
    cuda_unit_free(&b), cuda_unit_free(&h);
    plan_free(p);
}

static void test_arch_list(void **state) {
    (void)state;
    int a[NVRTC_MAX_ARCHS], n;
    char err[ERR_LEN];
    assert_true(nvrtc_parse_archs("sm_90,sm_80,90", a, &n, err, sizeof err));
    assert_int_equal(n, 2);
    assert_int_equal(a[0], 80);
    assert_int_equal(a[1], 90);
    assert_true(nvrtc_parse_archs("none", a, &n, err, sizeof err));
    assert_int_equal(n, 0);
    assert_false(nvrtc_parse_archs("sm_8x", a, &n, err, sizeof err));
    assert_non_null(strstr(err, "'sm_8x'"));
    assert_false(nvrtc_parse_archs("", a, &n, err, sizeof err));
}

// --- NVRTC

#define NVRTC_OR_SKIP()                                                                         \
    char why_[ERR_LEN];                                                                         \
    if (!nvrtc_available(why_, sizeof why_)) {                                                  \
        fprintf(stderr, "[  SKIPPED ] %s: needs NVRTC: %s\n", __func__, why_);                  \
        skip();                                                                                 \
        return;                                                                                 \
    }

static char *cache_root;

/* Units compiled so far (SHA-256): two recipes may well give the same plan. */
static uint8_t seen[64][32];
static int n_seen;

static bool seen_before(const CudaUnit *u) {
    uint8_t d[32];
    sha256(u->source, u->len, d);
    for (int i = 0; i < n_seen; i++)
        if (!memcmp(seen[i], d, 32)) return true;
    if (n_seen < 64) memcpy(seen[n_seen++], d, 32);
    return false;
}

/* Compile for sm_80 and sm_90 (cold, in a fresh cache, unless an earlier case compiled the same
 * unit), then again (a cache hit). */
static void compile_twice(const char *what, const Plan *p) {
    CudaUnit u;
    gen_or_fail(p, &u);
    check_coverage(p, &u);
    const bool again = seen_before(&u);
    static char err[32768];
    const int archs[2] = {80, 90};
    NvrtcOutput cold, warm;
    if (!nvrtc_compile(u.source, u.len, archs, 2, &cold, err, sizeof err)) fail_msg("%s: %s", what, err);
    assert_int_equal(cold.cache_hit, again);
    if (cold.warnings) fail_msg("%s: NVRTC warns:\n%s", what, cold.warnings); /* the kernels compile clean */
    assert_int_equal(cold.n_cubin, 2);
    for (int i = 0; i < 2; i++) assert_true(cold.cubin[i].len > 4 && !memcmp(cold.cubin[i].data, "\177ELF", 4));
    assert_non_null(strstr(cold.ptx.data, ".target sm_90"));
    if (!nvrtc_compile(u.source, u.len, archs, 2, &warm, err, sizeof err)) fail_msg("%s: %s", what, err);
    assert_true(warm.cache_hit);
    assert_int_equal(warm.cubin[1].len, cold.cubin[1].len);
    assert_memory_equal(warm.cubin[1].data, cold.cubin[1].data, cold.cubin[1].len);
    fprintf(stderr, "      %-28s %3d kernels  NVRTC %s sm_80+sm_90+ptx %6.2f s  cache hit %.3f s%s\n", what,
            (int)u.n_kernels, cold.version, cold.seconds, warm.seconds,
            again ? "  (the same unit as an earlier case)" : "");
    nvrtc_output_free(&cold);
    nvrtc_output_free(&warm);
    cuda_unit_free(&u);
}

static int fresh_cache(void **state) {
    (void)state;
    char tmpl[] = "/tmp/llfc_nvrtc_cache_XXXXXX";
    if (!mkdtemp(tmpl)) return -1;
    cache_root = xstrdup(tmpl);
    setenv("XDG_CACHE_HOME", cache_root, 1);
    unsetenv("LLFC_NO_CACHE");
    return 0;
}

static int drop_cache(void **state) {
    (void)state;
    char *cmd = xprintf("rm -rf '%s'", cache_root);
    int rc = system(cmd);
    free(cmd);
    free(cache_root);
    return rc == 0 ? 0 : -1;
}

static void test_nvrtc_recipes(void **state) {
    (void)state;
    NVRTC_OR_SKIP();
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    glob_t g;
    memset(&g, 0, sizeof g);
    glob("recipes/*.yaml", 0, NULL, &g);
    glob("examples/*/*.yaml", GLOB_APPEND, NULL, &g);
    assert_true(g.gl_pathc >= 2);
    char *ov_text = xprintf("model_name_or_path=%s", model);
    RecipeOverride ov = {ov_text, "test"};
    for (size_t i = 0; i < g.gl_pathc; i++) {
        Diags d = {0};
        Recipe *r = recipe_load(g.gl_pathv[i], &ov, 1, RECIPE_FOR_CHECK, &d);
        if (!r) fail_msg("%s: %s", g.gl_pathv[i], d.text.data ? d.text.data : "");
        char err[ERR_LEN];
        ModelSpec m;
        if (!model_load(&m, R_STR(r, model_name_or_path), err, sizeof err)) fail_msg("%s", err);
        Plan *p = graph_build_recipe(r, &m, err, sizeof err);
        if (!p) fail_msg("%s: %s", g.gl_pathv[i], err);
        compile_twice(g.gl_pathv[i], p);
        plan_free(p);
        model_free(&m);
        recipe_free(r);
        diags_free(&d);
    }
    globfree(&g);
    free(ov_text);
    free(model);
}

static void test_nvrtc_model_shapes(void **state) {
    (void)state;
    NVRTC_OR_SKIP();
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++)
        for (int full = 0; full < 2; full++) {
            /* LoRA with dropout (its kernels too); full fine-tuning trains everything */
            Plan *p = shape_plan(&SHAPES[i], full ? FT_FULL : FT_LORA, full ? 0.0f : 0.05f, 2, 512);
            char *what = xprintf("%s %s", SHAPES[i].name, full ? "full" : "lora");
            compile_twice(what, p);
            free(what);
            plan_free(p);
        }
}

static void test_nvrtc_error_names_generated_line(void **state) {
    (void)state;
    NVRTC_OR_SKIP();
    const char *bad = "extern \"C\" __global__ void k(float *x) {\n    x[0] = undefined_name;\n}\n";
    const int archs[1] = {80};
    NvrtcOutput o;
    char err[8192];
    setenv("LLFC_NO_CACHE", "1", 1);
    assert_false(nvrtc_compile(bad, strlen(bad), archs, 1, &o, err, sizeof err));
    unsetenv("LLFC_NO_CACHE");
    assert_non_null(strstr(err, "llfc.cu(2)"));
    assert_non_null(strstr(err, "generated line 2:     x[0] = undefined_name;"));
}


/* What pack.c appends to a trainer: the unit, its launch table, a CUBIN per arch, the PTX; none
 * with --arch none. */
static void test_payload_entries(void **state) {
    (void)state;
    NVRTC_OR_SKIP();
    Plan *p = shape_plan(&SHAPES[0], FT_LORA, 0, 1, 64);
    StrBuf bytes = {0};
    plan_serialize(p, &bytes);
    char err[16384];
    assert_true(nvrtc_set_arch_list("sm_90,sm_80", true, err, sizeof err));
    NvrtcPayload pl;
    if (!nvrtc_payload_build(&pl, bytes.data, bytes.len, CUDA_BF16, err, sizeof err)) fail_msg("%s", err);
    const char *want[] = {"cuda/source.cu", "cuda/launches.txt", "cuda/sm_80.cubin", "cuda/sm_90.cubin",
                          "cuda/compute_90.ptx"};
    assert_int_equal(pl.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(pl.entries[i].name, want[i]);
        assert_true(pl.entries[i].size > 0);
    }
    assert_null(pl.note);
    nvrtc_payload_free(&pl);
    assert_true(nvrtc_set_arch_list("none", true, err, sizeof err));
    assert_true(nvrtc_payload_build(&pl, bytes.data, bytes.len, CUDA_BF16, err, sizeof err));
    assert_int_equal(pl.n, 0);
    nvrtc_payload_free(&pl);
    assert_true(nvrtc_set_arch_list(NVRTC_DEFAULT_ARCH, false, err, sizeof err));
    sb_free(&bytes);
    plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_shapes_and_fusions),
        cmocka_unit_test(test_same_plan_same_bytes),
        cmocka_unit_test(test_qwen3_qk_norm_and_full),
        cmocka_unit_test(test_gemma2_softcap_window_fused),
        cmocka_unit_test(test_emit_print_and_launches),
        cmocka_unit_test(test_fp16_unit_differs_only_by_storage),
        cmocka_unit_test(test_arch_list),
        cmocka_unit_test(test_nvrtc_recipes),
        cmocka_unit_test(test_nvrtc_model_shapes),
        cmocka_unit_test(test_nvrtc_error_names_generated_line),
        cmocka_unit_test(test_payload_entries),
    };
    return cmocka_run_group_tests(tests, fresh_cache, drop_cache);
}
