/* cuda_gen.c - the plan's non-matmul ops as one CUDA C unit (see cuda_gen.h).
 *
 * gen_op turns each op into instances of the templates in kernels/ (deduplicated by their
 * text, so every layer's rmsnorm is one kernel); cuda_gen then writes the unit top to bottom:
 * header, the plan's constants and optimizer tables, the templates, the instances, and the
 * step as a list of launches in a closing comment.
 */
#include "cuda_gen.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

/* The templates as the build embedded them (tools/ninja/cuda.ninja: .incbin of kernels/NAME.cuh),
 * ending with a {NULL, NULL, 0} entry. */
extern const BundleFile llfc_cuda_templates[];

/* In the order the unit includes them; the storage typedef goes right after common.cuh, the
 * optimizer tables right before adamw.cuh. */
static const char *TEMPLATE_ORDER[] = {"common.cuh",  "add.cuh",     "rmsnorm.cuh", "embedding.cuh",
                                       "rope.cuh",    "attention.cuh", "glu.cuh",   "softcap.cuh",
                                       "dropout.cuh", "lora.cuh",    "crossentropy.cuh", "adamw.cuh"};

#define BLOCK 256
#define ATTN_WARPS 4     /* attention.cuh's ATTN_WARPS */
#define ATTN_MAX_HD 256  /* keeps attention's static shared memory under 48 KiB */
#define ADAMW_CHUNK 4096 /* elements per optimizer block: 16 per thread */
#define CE_MAX_CHUNK_ELEMS (1LL << 26) /* N * VC fp32 logits per chunk: 256 MiB at most */

typedef struct {
    const Plan *p;
    CudaUnit *u;
    StrBuf inst;      /* the instances, in first-use order */
    char *err;
    size_t errlen;
    bool failed;
    int32_t fused_softcap; /* the SOFTCAP op folded into the loss; -1 */
} Gen;

// --- small text helpers

/* A float literal that reads back to the same float ("%.9g" always round-trips). */
static void put_float(StrBuf *s, float v) {
    char buf[48];
    snprintf(buf, sizeof buf, "%.9g", (double)v);
    sb_puts(s, buf);
    if (!strpbrk(buf, ".eEn")) sb_puts(s, ".0");
    sb_puts(s, "f");
}

static void upper(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++) dst[i] = (char)(src[i] >= 'a' && src[i] <= 'z' ? src[i] - 32 : src[i]);
    dst[i] = '\0';
}

static uint32_t blocks_for(int64_t n, int64_t per_block) {
    int64_t b = (n + per_block - 1) / per_block;
    return (uint32_t)(b > 0 ? b : 1);
}

// --- instances

typedef struct {
    const char *tmpl;   /* template function, e.g. "rmsnorm_fwd"; its PARAMS/ARGS macros are
                           the upper-cased name + _PARAMS / _ARGS */
    char targs[96];     /* template arguments without <> ("" for none) */
    StrBuf extra;       /* literal arguments after the macro's ("" for none) */
    uint32_t grid[3], block[3];
} Inst;

/* Find or add the instance; returns its kernel index. Same text and geometry = same kernel. */
static int32_t instance(Gen *g, Inst *in) {
    CudaUnit *u = g->u;
    StrBuf call = {0};
    char macro[CUDA_NAME_LEN];
    upper(macro, in->tmpl, sizeof macro);
    sb_printf(&call, "%s%s%s%s(%s_ARGS%s%s)", in->tmpl, in->targs[0] ? "<" : "", in->targs,
              in->targs[0] ? ">" : "", macro, in->extra.len ? ", " : "", in->extra.len ? in->extra.data : "");
    int32_t found = -1, same_template = 0;
    for (int32_t k = 0; k < u->n_kernels && found < 0; k++) {
        if (strcmp(u->kernels[k].template_name, in->tmpl) != 0) continue;
        same_template++;
        if (memcmp(u->kernels[k].grid, in->grid, sizeof in->grid) || memcmp(u->kernels[k].block, in->block, sizeof in->block))
            continue;
        /* the call text follows the kernel's opening line; compare by searching it */
        char *key = xprintf("%s(%s_PARAMS) {\n    %s;\n}", u->kernels[k].name, macro, call.data);
        if (strstr(g->inst.data, key)) found = k;
        free(key);
    }
    if (found < 0) {
        u->kernels = xrealloc(u->kernels, (size_t)(u->n_kernels + 1) * sizeof *u->kernels);
        CudaKernel *k = &u->kernels[u->n_kernels];
        memset(k, 0, sizeof *k);
        snprintf(k->name, sizeof k->name, "%s_%d", in->tmpl, (int)same_template);
        snprintf(k->template_name, sizeof k->template_name, "%s", in->tmpl);
        memcpy(k->grid, in->grid, sizeof k->grid);
        memcpy(k->block, in->block, sizeof k->block);
        uint32_t threads = in->block[0] * in->block[1] * in->block[2];
        sb_printf(&g->inst, "// grid (%u, %u, %u), block (%u, %u, %u)\n", k->grid[0], k->grid[1],
                  k->grid[2], k->block[0], k->block[1], k->block[2]);
        sb_printf(&g->inst, "extern \"C\" __global__ void __launch_bounds__(%u) %s(%s_PARAMS) {\n    %s;\n}\n\n",
                  threads, k->name, macro, call.data);
        found = u->n_kernels++;
    }
    sb_free(&call);
    sb_free(&in->extra);
    return found;
}

static Inst inst1d(const char *tmpl, int64_t threads_total) {
    Inst in = {.tmpl = tmpl, .grid = {blocks_for(threads_total, BLOCK), 1, 1}, .block = {BLOCK, 1, 1}};
    return in;
}

/* warp-per-row kernels: 8 rows per block */
static Inst inst_rows(const char *tmpl, int64_t rows) {
    Inst in = {.tmpl = tmpl, .grid = {blocks_for(rows, BLOCK / 32), 1, 1}, .block = {BLOCK, 1, 1}};
    return in;
}

static void add_kernel(Gen *g, int32_t op, int32_t k) {
    CudaOpLaunch *l = &g->u->ops[op];
    if (l->n_kernels < CUDA_OP_KERNELS) l->kernel[l->n_kernels++] = k;
}

static bool fail(Gen *g, const char *msg) {
    if (!g->failed) errf(g->err, g->errlen, "%s", msg);
    g->failed = true;
    return false;
}

// --- ops

static int norm_offset(Gen *g, float offset) {
    if (offset != 0.0f && offset != 1.0f) fail(g, "cuda: RMSNorm offset other than 0 or 1");
    return (int)offset;
}

static int32_t gen_rmsnorm(Gen *g, const PlanOp *op, bool fused_add) {
    const int64_t R = op->n[0], D = op->n[1];
    Inst in = inst_rows(fused_add ? "add_rmsnorm_fwd" : "rmsnorm_fwd", R);
    snprintf(in.targs, sizeof in.targs, "%" PRId64 ", %d", D, norm_offset(g, op->f[1]));
    sb_printf(&in.extra, "%" PRId64 "LL, ", R);
    put_float(&in.extra, op->f[0]);
    return instance(g, &in);
}

/* Column sums over R rows of width D: partials by slabs of rows, then one ordered pass. */
static void gen_colsum(Gen *g, int32_t opi, int64_t R, int64_t D, bool with_x) {
    int64_t slabs = (R + 127) / 128;
    slabs = slabs < 1 ? 1 : slabs > 128 ? 128 : slabs;
    Inst a = {.tmpl = "colsum_partial", .grid = {blocks_for(D, 32), (uint32_t)slabs, 1}, .block = {32, 8, 1}};
    snprintf(a.targs, sizeof a.targs, "%" PRId64 ", %" PRId64 ", %d", D, slabs, with_x ? 1 : 0);
    sb_printf(&a.extra, "%" PRId64 "LL", R);
    add_kernel(g, opi, instance(g, &a));
    Inst b = inst1d("colsum_finish", D);
    snprintf(b.targs, sizeof b.targs, "%" PRId64 ", %" PRId64, D, slabs);
    add_kernel(g, opi, instance(g, &b));
    if (slabs * D > g->u->colsum_scratch) g->u->colsum_scratch = slabs * D;
}

static void gen_rope(Gen *g, int32_t opi, int sign) {
    const Plan *p = g->p;
    const PlanOp *op = &p->ops[opi], *next = opi + 1 < p->n_ops ? &p->ops[opi + 1] : NULL;
    const int64_t N = op->n[0], HD = op->n[2];
    int64_t H2 = 0;
    if (next && next->kind == op->kind && next->in[1] == op->in[1] && next->n[0] == N &&
        next->n[2] == HD && next->n[3] == op->n[3]) {
        H2 = next->n[1];
        g->u->ops[opi + 1].fused_into = opi;
    }
    const int64_t work = (op->n[1] + H2) * HD / 2;
    const uint32_t threads = (uint32_t)(work >= BLOCK ? BLOCK : (work + 31) / 32 * 32);
    Inst in = {.tmpl = "rope_apply", .grid = {(uint32_t)N, 1, 1}, .block = {threads, 1, 1}};
    snprintf(in.targs, sizeof in.targs, "%" PRId64 ", %" PRId64 ", %" PRId64 ", %d", HD, op->n[1], H2, sign);
    add_kernel(g, opi, instance(g, &in));
}

static void attn_targs(Gen *g, const PlanOp *op, Inst *in) {
    const int64_t T = op->n[1], NH = op->n[2], NKV = op->n[3], HD = op->n[4], window = op->n[5];
    if (HD > ATTN_MAX_HD || HD % 2) fail(g, "cuda: attention needs an even head_dim <= 256");
    if (NKV <= 0 || NH % NKV) fail(g, "cuda: attention needs NH divisible by NKV");
    snprintf(in->targs, sizeof in->targs, "%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %d",
             T, NH, NKV, HD, window, op->f[1] > 0 ? 1 : 0);
    put_float(&in->extra, op->f[0]);
    sb_puts(&in->extra, ", ");
    put_float(&in->extra, op->f[1] > 0 ? op->f[1] : 1.0f);
}

static void gen_attention(Gen *g, int32_t opi, bool backward) {
    const PlanOp *op = &g->p->ops[opi];
    const int64_t B = op->n[0], T = op->n[1], NH = op->n[2], NKV = op->n[3];
    const uint32_t qblocks = blocks_for(T, ATTN_WARPS);
    Inst a = {.tmpl = backward ? "attention_bwd_dq" : "attention_fwd", .grid = {qblocks, (uint32_t)NH, (uint32_t)B},
              .block = {ATTN_WARPS * 32, 1, 1}};
    attn_targs(g, op, &a);
    add_kernel(g, opi, instance(g, &a));
    if (!backward) return;
    Inst b = {.tmpl = "attention_bwd_dkdv", .grid = {qblocks, (uint32_t)NKV, (uint32_t)B},
              .block = {ATTN_WARPS * 32, 1, 1}};
    attn_targs(g, op, &b);
    add_kernel(g, opi, instance(g, &b));
}

/* The adapter's stream offset (adapter << 40) is an argument: one kernel per size. */
static void gen_dropout(Gen *g, int32_t opi, const char *tmpl, int64_t n, float prob) {
    Inst in = inst1d(tmpl, (n + 3) / 4);
    sb_printf(&in.extra, "%" PRId64 "LL, ", n);
    put_float(&in.extra, prob);
    add_kernel(g, opi, instance(g, &in));
}

static void gen_linear(Gen *g, int32_t opi) {
    const PlanOp *op = &g->p->ops[opi];
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    g->u->ops[opi].matmul = true;
    if (op->tmp[0] >= 0) gen_dropout(g, opi, "dropout_fwd", M * K, op->f[1]);
    if (op->in[3] >= 0) {
        Inst in = inst1d("lora_add", M * N);
        snprintf(in.targs, sizeof in.targs, "%" PRId64 ", %" PRId64 ", %d", N, R, op->in[2] >= 0);
        sb_printf(&in.extra, "%" PRId64 "LL, ", M);
        put_float(&in.extra, op->f[0]);
        add_kernel(g, opi, instance(g, &in));
    } // without LoRA the bias is the product's cuBLASLt epilogue (exec_cuda.c's run_linear)
}

static void gen_linear_bwd(Gen *g, int32_t opi) {
    const PlanOp *op = &g->p->ops[opi];
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2];
    g->u->ops[opi].matmul = true;
    if (op->out[2] >= 0) gen_colsum(g, opi, M, N, false);
    if (op->in[3] < 0 || op->tmp[1] < 0) return;
    if (op->out[3] >= 0) gen_dropout(g, opi, "dropout_fwd", M * K, op->f[1]);
    if (op->out[0] >= 0) gen_dropout(g, opi, "dropout_accum", M * K, op->f[1]);
}

/* The loss over vocabulary chunks, with the soft-cap of the logits folded in when the plan
 * caps them right before the loss. */
static void gen_loss(Gen *g, int32_t opi) {
    const PlanOp *op = &g->p->ops[opi];
    const int64_t B = op->n[0], T = op->n[1], V = op->n[2], N = B * T;
    int64_t vc = CE_MAX_CHUNK_ELEMS / (N > 0 ? N : 1);
    vc = vc < 256 ? 256 : vc / 256 * 256;
    g->u->ce_vocab_chunk = vc < V ? vc : V;
    float cap = g->fused_softcap >= 0 ? g->p->ops[g->fused_softcap].f[0] : 0.0f;
    const char *names[] = {"ce_stats", "ce_finish", "ce_grad"};
    for (int k = 0; k < 3; k++) {
        Inst in = {.tmpl = names[k], .grid = {k == 1 ? 1 : (uint32_t)N, 1, 1}, .block = {BLOCK, 1, 1}};
        if (k == 1) {
            snprintf(in.targs, sizeof in.targs, "%" PRId64, T);
            sb_printf(&in.extra, "%" PRId64 "LL", N);
        } else {
            snprintf(in.targs, sizeof in.targs, "%" PRId64 ", %d", T, cap > 0);
            put_float(&in.extra, cap > 0 ? cap : 1.0f);
        }
        add_kernel(g, opi, instance(g, &in));
    }
}

static bool feeds_loss(const Plan *p, int32_t tensor) {
    return p->loss_op >= 0 && p->ops[p->loss_op].in[0] == tensor;
}

static void gen_op(Gen *g, int32_t opi) {
    const Plan *p = g->p;
    const PlanOp *op = &p->ops[opi];
    CudaOpLaunch *l = &g->u->ops[opi];
    if (l->fused_into >= 0) return;
    switch ((PlanOpKind)op->kind) {
    case OP_EMBED: {
        Inst in = inst1d("embedding_fwd", op->n[0] * op->n[1]);
        snprintf(in.targs, sizeof in.targs, "%" PRId64, op->n[1]);
        sb_printf(&in.extra, "%" PRId64 "LL, ", op->n[0]);
        put_float(&in.extra, op->f[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_ADD: {
        const PlanOp *next = opi + 1 < p->n_ops ? &p->ops[opi + 1] : NULL;
        if (next && next->kind == OP_RMSNORM && next->in[0] == op->out[0] && next->n[0] * next->n[1] == op->n[0]) {
            add_kernel(g, opi, gen_rmsnorm(g, next, true));
            g->u->ops[opi + 1].fused_into = opi;
            break;
        }
        Inst in = inst1d("add_fwd", op->n[0]);
        sb_printf(&in.extra, "%" PRId64 "LL", op->n[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_RMSNORM: add_kernel(g, opi, gen_rmsnorm(g, op, false)); break;
    case OP_LINEAR: gen_linear(g, opi); break;
    case OP_ROPE: gen_rope(g, opi, 1); break;
    case OP_ATTENTION: gen_attention(g, opi, false); break;
    case OP_GLU:
    case OP_GLU_BWD: {
        Inst in = inst1d(op->kind == OP_GLU ? "glu_fwd" : "glu_bwd", op->n[0]);
        snprintf(in.targs, sizeof in.targs, "%d", (int)op->n[1]);
        sb_printf(&in.extra, "%" PRId64 "LL", op->n[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_SOFTCAP:
    case OP_SOFTCAP_BWD: {
        bool fused = op->kind == OP_SOFTCAP ? feeds_loss(p, op->out[0])
                                            : g->fused_softcap >= 0 && op->in[1] == p->ops[g->fused_softcap].in[0];
        if (fused) {
            if (op->kind == OP_SOFTCAP) g->fused_softcap = opi;
            l->fused_into = p->loss_op;
            break;
        }
        Inst in = inst1d(op->kind == OP_SOFTCAP ? "softcap_fwd" : "softcap_bwd", op->n[0]);
        sb_printf(&in.extra, "%" PRId64 "LL, ", op->n[0]);
        put_float(&in.extra, op->f[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_LOSS: gen_loss(g, opi); break;
    case OP_EMBED_BWD: {
        Inst in = inst1d("embedding_bwd", op->n[1]);
        snprintf(in.targs, sizeof in.targs, "%" PRId64, op->n[1]);
        sb_printf(&in.extra, "%" PRId64 "LL, ", op->n[0]);
        put_float(&in.extra, op->f[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_RMSNORM_BWD: {
        const int64_t R = op->n[0], D = op->n[1];
        if (op->out[0] >= 0) {
            Inst in = inst_rows("rmsnorm_bwd", R);
            snprintf(in.targs, sizeof in.targs, "%" PRId64 ", %d, %d", D, norm_offset(g, op->f[1]), op->accum & 1);
            sb_printf(&in.extra, "%" PRId64 "LL", R);
            add_kernel(g, opi, instance(g, &in));
        }
        if (op->out[1] >= 0) gen_colsum(g, opi, R, D, true);
        break;
    }
    case OP_LINEAR_BWD: gen_linear_bwd(g, opi); break;
    case OP_ROPE_BWD: gen_rope(g, opi, -1); break;
    case OP_ATTENTION_BWD: gen_attention(g, opi, true); break;
    case OP_ACCUM: {
        Inst in = inst1d("accum", op->n[0]);
        snprintf(in.targs, sizeof in.targs, "%d", op->accum & 1);
        sb_printf(&in.extra, "%" PRId64 "LL", op->n[0]);
        add_kernel(g, opi, instance(g, &in));
        break;
    }
    case OP_KIND_COUNT: fail(g, "cuda: unknown op kind"); break;
    }
}

// --- the optimizer's tables

static void put_table(StrBuf *s, const char *type, const char *name, const int64_t *v, int64_t n) {
    sb_printf(s, "__device__ const %s %s[%" PRId64 "] = {", type, name, n);
    for (int64_t i = 0; i < n; i++) sb_printf(s, "%s%" PRId64 "%s", i % 8 ? " " : "\n    ", v[i], i + 1 < n ? "," : "");
    sb_puts(s, "\n};\n");
}

static void gen_optimizer(Gen *g, StrBuf *s) {
    const Plan *p = g->p;
    int64_t np = 0;
    for (int32_t i = 0; i < p->n_params; i++) np += p->params[i].trainable && p->params[i].grad >= 0;
    const int64_t rows = np > 0 ? np : 1;
    int64_t *numel = xcalloc((size_t)rows, sizeof *numel), *poff = xcalloc((size_t)rows, sizeof *poff);
    int64_t *goff = xcalloc((size_t)rows, sizeof *goff), *soff = xcalloc((size_t)rows, sizeof *soff);
    int64_t *flags = xcalloc((size_t)rows, sizeof *flags), *first = xcalloc((size_t)rows + 1, sizeof *first);
    int64_t k = 0, state = 0, blocks = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        if (!pp->trainable || pp->grad < 0) continue;
        numel[k] = p->tensors[pp->tensor].numel;
        poff[k] = p->tensors[pp->tensor].offset;
        goff[k] = p->tensors[pp->grad].offset;
        soff[k] = state;
        /* LoRA+ scales lora_B and 1-D parameters (optim_loraplus_scale): group 1 */
        flags[k] = (pp->decay ? 1 : 0) | ((pp->kind == PARAM_LORA_B || pp->ndim == 1) ? 2 : 0);
        first[k] = blocks;
        state += numel[k];
        blocks += (numel[k] + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
        k++;
    }
    first[rows] = blocks;
    g->u->adamw_blocks = blocks;
    sb_printf(s, "// --- the optimizer's parameters: %" PRId64 " trainable tensors, %" PRId64
                 " elements, %" PRId64 " blocks of %d\n",
              np, state, blocks, ADAMW_CHUNK);
    sb_printf(s, "#define ADAMW_NP %" PRId64 "\n#define ADAMW_CHUNK %d\n", rows, ADAMW_CHUNK);
    put_table(s, "i64", "adamw_numel", numel, rows);
    put_table(s, "i64", "adamw_param_offset", poff, rows);
    put_table(s, "i64", "adamw_grad_offset", goff, rows);
    put_table(s, "i64", "adamw_state_offset", soff, rows);
    put_table(s, "int", "adamw_flags", flags, rows);
    put_table(s, "i64", "adamw_first_block", first, rows + 1);
    sb_puts(s, "\n");
    free(numel), free(poff), free(goff), free(soff), free(flags), free(first);
    for (int i = 0; i < 3; i++) g->u->optimizer[i] = -1;
    if (np == 0) return;
    Inst a = {.tmpl = "grad_sumsq", .grid = {(uint32_t)blocks, 1, 1}, .block = {BLOCK, 1, 1}};
    g->u->optimizer[0] = instance(g, &a);
    Inst b = {.tmpl = "grad_norm_finish", .grid = {1, 1, 1}, .block = {BLOCK, 1, 1}};
    g->u->optimizer[1] = instance(g, &b);
    Inst c = {.tmpl = "adamw_update", .grid = {(uint32_t)blocks, 1, 1}, .block = {BLOCK, 1, 1}};
    g->u->optimizer[2] = instance(g, &c);
}

// --- the unit

static const BundleFile *find_template(const char *name) {
    for (const BundleFile *f = llfc_cuda_templates; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

static void put_header(const Plan *p, StrBuf *s) {
    static const char *ft[] = {"full", "freeze", "lora"};
    sb_printf(s, "// Generated by llfc %s from the training plan: do not edit; change the recipe or kernels/.\n",
              LLFC_VERSION);
    sb_printf(s, "// plan: %s, B=%" PRId64 " T=%" PRId64 "; V=%" PRId64 " C=%" PRId64 " L=%" PRId64
                 " NH=%" PRId64 " NKV=%" PRId64 " HD=%" PRId64 " FF=%" PRId64 "; LoRA R=%" PRId64 "\n",
              ft[p->finetune < 3 ? p->finetune : 0], p->B, p->T, p->V, p->C, p->L, p->NH, p->NKV, p->HD, p->FF,
              p->lora_rank);
    sb_puts(s, "// Every kernel below is an instance of a template in kernels/ with this plan's shapes as\n"
               "// literals; matrix products are cuBLASLt's and are not here. The step's launches are\n"
               "// listed at the end.\n\n");
}

static void put_constants(const Plan *p, StrBuf *s) {
    sb_printf(s, "// --- the plan's shapes (the instances use them as literals; these document them)\n"
                 "namespace plan {\n[[maybe_unused]] constexpr long long B = %" PRId64 ", T = %" PRId64 ", N = %" PRId64
                 ", V = %" PRId64 ", C = %" PRId64 ", L = %" PRId64 ";\n"
                 "[[maybe_unused]] constexpr long long NH = %" PRId64 ", NKV = %" PRId64 ", HD = %" PRId64 ", FF = %" PRId64
                 ", R = %" PRId64 ";\n}\n\n",
              p->B, p->T, p->B * p->T, p->V, p->C, p->L, p->NH, p->NKV, p->HD, p->FF, p->lora_rank);
}

static void put_step(const Gen *g, StrBuf *s) {
    const Plan *p = g->p;
    const CudaUnit *u = g->u;
    sb_puts(s, "// --- the step, one line per op of the plan: the kernels it launches, in order\n");
    for (int32_t i = 0; i < p->n_ops; i++) {
        const CudaOpLaunch *l = &u->ops[i];
        sb_printf(s, "//   %4d %-14s", (int)i, plan_op_name((PlanOpKind)p->ops[i].kind));
        if (l->matmul) sb_puts(s, " cuBLASLt");
        for (int k = 0; k < l->n_kernels; k++) sb_printf(s, " %s", u->kernels[l->kernel[k]].name);
        if (l->fused_into >= 0) sb_printf(s, " (computed by op %d)", (int)l->fused_into);
        sb_puts(s, "\n");
    }
    if (u->optimizer[0] >= 0)
        sb_printf(s, "//   optimizer           %s %s %s\n", u->kernels[u->optimizer[0]].name,
                  u->kernels[u->optimizer[1]].name, u->kernels[u->optimizer[2]].name);
}

const char *cuda_storage_name(CudaStorage s) { return s == CUDA_F16 ? "f16" : "bf16"; }

bool cuda_gen(const Plan *p, CudaStorage storage, CudaUnit *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    u->storage = storage;
    Gen g = {.p = p, .u = u, .err = err, .errlen = errlen, .fused_softcap = -1};
    u->n_ops = p->n_ops;
    u->ops = xcalloc((size_t)p->n_ops + 1, sizeof *u->ops);
    for (int32_t i = 0; i < p->n_ops; i++) u->ops[i].fused_into = -1;
    /* the soft-cap before the loss must be seen before the loss and its backward */
    for (int32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == OP_SOFTCAP && feeds_loss(p, p->ops[i].out[0])) g.fused_softcap = i;
    for (int32_t i = 0; i < p->n_ops && !g.failed; i++) gen_op(&g, i);
    StrBuf tables = {0};
    gen_optimizer(&g, &tables);
    StrBuf s = {0};
    put_header(p, &s);
    put_constants(p, &s);
    for (size_t t = 0; t < sizeof TEMPLATE_ORDER / sizeof *TEMPLATE_ORDER && !g.failed; t++) {
        const BundleFile *f = find_template(TEMPLATE_ORDER[t]);
        if (!f) {
            fail(&g, "cuda: a kernel template is missing from this llfc build");
            break;
        }
        if (!strcmp(f->name, "adamw.cuh")) sb_append(&s, tables.data, tables.len);
        sb_printf(&s, "// ==== kernels/%s\n", f->name);
        sb_append(&s, f->data, f->size);
        sb_puts(&s, "\n");
        if (!strcmp(f->name, "common.cuh")) /* the one line the storage choice changes */
            sb_printf(&s, "typedef %s floatX; // activations, their gradients, the weights' copy\n\n",
                      cuda_storage_name(storage));
    }
    sb_puts(&s, "// ==== instances\n\n");
    sb_append(&s, g.inst.data ? g.inst.data : "", g.inst.len);
    put_step(&g, &s);
    sb_free(&tables);
    sb_free(&g.inst);
    u->source = s.data;
    u->len = s.len;
    if (g.failed) {
        cuda_unit_free(u);
        return false;
    }
    return true;
}

void cuda_unit_free(CudaUnit *u) {
    free(u->source);
    free(u->kernels);
    free(u->ops);
    memset(u, 0, sizeof *u);
}

void cuda_unit_launches(const CudaUnit *u, const Plan *p, StrBuf *out) {
    sb_puts(out, "# llfc cuda launches v1\n"
                 "# kernel INDEX NAME GRID_X GRID_Y GRID_Z BLOCK_X BLOCK_Y BLOCK_Z\n"
                 "# op INDEX KIND matmul=0|1 fused_into=OP|-1 KERNEL_INDEX...\n");
    sb_printf(out, "ce_vocab_chunk %" PRId64 "\ncolsum_scratch %" PRId64 "\nadamw_blocks %" PRId64 "\n",
              u->ce_vocab_chunk, u->colsum_scratch, u->adamw_blocks);
    sb_printf(out, "adamw_chunk %d\n", ADAMW_CHUNK);
    sb_printf(out, "storage %s\n", cuda_storage_name(u->storage));
    sb_printf(out, "optimizer %d %d %d\n", (int)u->optimizer[0], (int)u->optimizer[1], (int)u->optimizer[2]);
    for (int32_t k = 0; k < u->n_kernels; k++) {
        const CudaKernel *c = &u->kernels[k];
        sb_printf(out, "kernel %d %s %u %u %u %u %u %u\n", (int)k, c->name, c->grid[0], c->grid[1], c->grid[2],
                  c->block[0], c->block[1], c->block[2]);
    }
    for (int32_t i = 0; i < u->n_ops; i++) {
        const CudaOpLaunch *l = &u->ops[i];
        sb_printf(out, "op %d %s %d %d", (int)i, plan_op_name((PlanOpKind)p->ops[i].kind), l->matmul ? 1 : 0,
                  (int)l->fused_into);
        for (int k = 0; k < l->n_kernels; k++) sb_printf(out, " %d", (int)l->kernel[k]);
        sb_puts(out, "\n");
    }
}

bool cuda_gen_print(const void *plan_bytes, size_t plan_len, CudaStorage storage, FILE *f, char *err, size_t errlen) {
    Plan *p = plan_deserialize(plan_bytes, plan_len, err, errlen);
    if (!p) return false;
    CudaUnit u;
    bool ok = cuda_gen(p, storage, &u, err, errlen);
    if (ok) fwrite(u.source, 1, u.len, f);
    cuda_unit_free(&u);
    plan_free(p);
    return ok;
}
