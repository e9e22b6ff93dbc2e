/* exec_cuda.c - the CUDA executor: the plan's ops as launches of the generated kernels and
 * cuBLASLt products, in the plan's order, on one stream (the legacy one; data parallel's
 * collectives overlap it on a stream of their own: the last section). See exec_cuda.h; what each
 * kernel takes is compiler/cuda_gen.h's table.
 *
 * Device memory, one allocation each: the 16-bit copy of every parameter (bf16, or f16 for a
 * recipe with fp16: true: the unit's floatX; the plan's PARAM element offsets, 2 bytes each),
 * which every kernel and product reads; fp32 masters of the parameters
 * AdamW updates only, packed in the optimizer's order (AdamW's state offsets), so a frozen base
 * weight under LoRA or freeze costs its 2 bytes and no more (as PEFT keeps it); GRAD (fp32),
 * INPUT (int32), ACT laid out again for the device (see "device layout"), AdamW's m and v, and
 * the scratch the kernels need (column-sum slabs, the loss's vocabulary chunk and its per-row
 * statistics, the optimizer's partial sums). The host copies stay the truth for what the device
 * keeps no master of: exec_cuda_to_host refreshes the trained parameters only.
 *
 * ZeRO-1/2 (exec_cuda_new_sharded): a rank keeps fp32 masters, m and v of its own run of trained
 * parameters only (the trainer deals them in order, so each rank's is contiguous in AdamW's
 * order and its state one span: adamw.cuh's block0 and state0), and the bf16 copy of every one;
 * after its update, each owner's bf16 values go to every rank by ncclBroadcast.
 */
#include "exec_cuda.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cudrv.h"
#include "rng.h"
#include "rope.h"
#include "safetensors.h"

#define MAX_ARGS 12

typedef struct {
    char name[64];
    char template_name[64];
    uint32_t grid[3], block[3];
    void *fn;
} Kernel;

typedef struct {
    int32_t kernel[4];
    int n_kernels;
    int32_t fused_into;
} OpLaunch;

/* ZeRO-2/3's windows: see "ZeRO-2/3" below. */
#define WIN_SLOTS 3
#define WIN_NEED 3 /* the groups one launch may touch: two layers at most, and those outside */

typedef struct {
    int32_t *params, n;        /* plan parameters, in plan order */
    int64_t bytes, grad_bytes; /* what the other ranks' values (16-bit, ZeRO-3) and gradients (fp32) take */
    int slot;                  /* the window holding it, or -1 */
    int32_t last_write;        /* the op after which a training call adds nothing more to its gradients */
    bool dirty;                /* its window's gradients have something for their owners */
} WinGroup;

typedef struct Windows {
    bool values;                   /* ZeRO-3: the 16-bit values are sharded too; ZeRO-2: the gradients only */
    int32_t *param_of;             /* per tensor: the plan parameter it is the value or gradient of, or -1 */
    int64_t *at, *grad_at;         /* per plan parameter of another rank: byte offsets in its window */
    WinGroup *group;               /* L + 1: 0 outside the layers, l + 1 layer l */
    int32_t (*need)[WIN_NEED];     /* per op: the groups its launches touch, -1 after the last */
    uint8_t *writes;               /* per op: bit k when its launches add to need[k]'s gradients */
    CuPtr own, own_grad;           /* the allocations behind ex->shadow (ZeRO-3) and ex->region[PLAN_GRAD] */
    int64_t own_from, own_elems;   /* this rank's values: PARAM elements [own_from, own_from + own_elems) */
    int64_t grad_from, grad_elems; /* and gradients: GRAD elements */
    CuPtr slot[WIN_SLOTS], slot_grad[WIN_SLOTS];
    int64_t slot_bytes[WIN_SLOTS], slot_grad_bytes[WIN_SLOTS];
    int32_t slot_group[WIN_SLOTS];
    int32_t grads_for[WIN_SLOTS];  /* the group whose gradients a window's gradient part was zeroed for, or -1 */
    uint64_t slot_used[WIN_SLOTS], clock;
    int32_t *next_group;           /* per op: the next layer group that later ops need and it does not, or -1 */
    int64_t gathers, prefetched;   /* groups gathered (ZeRO-3); of them, gathered before the op that needed them */
    int64_t early;                 /* reductions started as the backward pass went on */
    NclComm *nccl;
    void *stream, *event;          /* every collective here goes to `stream`, after `event` on the compute one */
    void *ready[WIN_SLOTS];        /* on `stream`: a window's gather done (ZeRO-3), */
    void *reduced[WIN_SLOTS];      /* and its gradients' reduction done */
    bool ready_pending[WIN_SLOTS], reduce_pending[WIN_SLOTS]; /* not yet waited for by the compute stream */
} Windows;

static bool win_setup(ExecCuda *ex, const ExecCudaShard *sh, char *err, size_t errlen);
static void win_free(ExecCuda *ex);

struct ExecCuda {
    const Plan *plan;
    uint64_t seed;
    CuDrv *d;
    void *module;
    char device[320];
    Kernel *kernels;
    int32_t n_kernels;
    OpLaunch *ops;
    int32_t optimizer[3];
    int64_t vc, colsum_floats, adamw_blocks, adamw_chunk, n_state;
    CuType storage;                    /* floatX of the unit (launches.txt's storage): CU_BF16 or CU_F16 */
    CuPtr region[PLAN_REGIONS];        /* GRAD, INPUT, ACT (laid out by `act`); PARAM is not allocated */
    CuPtr shadow, master;              /* floatX copy of PARAM; fp32 masters of the n_state trained values */
    CudaActLayout act;
    int64_t guard;                     /* LLFC_CUDA_CHECK_BOUNDS: guard bytes around each activation */
    uint8_t *act_host;                 /* with guards: the ACT buffer read back after each op */
    int32_t *placed, n_placed;         /* with guards: the tensors that have bytes, by address */
    CuPtr m, v, colsum, partial, norm_coef, chunk, dchunk, row_max, row_sum, target, loss_sum, count, inv_freq;
    float *host[2];                    /* host copies of PARAM and GRAD */
    bool *held;                        /* per plan parameter, whether host[0] holds it (NULL: all do; see load) */
    float *gathered;                   /* ZeRO-3, rank 0 while it writes: the others' parameters */
    ExecParam *trainable, *all;
    size_t n_trainable, n_all;
    uint8_t *group;                    /* per trainable parameter: adamw.cuh's group (0, or 1 = LoRA+) */
    int32_t lm_op, lm_bwd_op;          /* the LM head's LINEAR and LINEAR_BWD: the loss does both */
    float inv_freq_h[2][ROPE_MAX_HD / 2], rope_scale[2];
    int *owner;                        /* ZeRO: per trainable parameter, the rank that updates it; else NULL */
    int *param_owner;                  /* ZeRO: the same per plan parameter (-1: frozen, except under ZeRO-3) */
    int rank, stage;                   /* ZeRO: this rank, the stage (1, 2) */
    DistGroup *ranks;                  /* ZeRO: the ranks, over which the gradient norm is summed */
    size_t own0, own1;                 /* the trainable parameters updated here: [own0, own1) (all without ZeRO) */
    int64_t state0, block0, n_blocks;  /* their first state value and optimizer block, their block count */
    CuPtr sumsq;                       /* grad_norm_finish's sum of squares (one double) */
    Windows *win;                      /* ZeRO-2/3: the gradients' (ZeRO-3: and values') windows; else NULL */
    uint64_t step;
    bool train;
    char *err;
    size_t errlen;
    struct Overlap *dp;                /* data parallel overlapped with the backward pass (last section) */
};

static bool overlap_after_op(ExecCuda *ex, int32_t op);
static void overlap_free(ExecCuda *ex);

// --- the payload: launches.txt and the image for this GPU

static bool parse_launches(ExecCuda *ex, const char *text, size_t len, char *err, size_t errlen) {
    char *buf = xmalloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    ex->ops = xcalloc((size_t)ex->plan->n_ops + 1, sizeof *ex->ops);
    for (int32_t i = 0; i < ex->plan->n_ops; i++) ex->ops[i].fused_into = -1, ex->ops[i].n_kernels = -1;
    bool ok = true;
    int line_no = 0;
    for (char *line = strtok(buf, "\n"); line && ok; line = strtok(NULL, "\n")) {
        line_no++;
        if (line[0] == '#') continue;
        char name[64], kind[32], storage[16];
        long long v;
        int i, a, b, c, k[4], used = 0;
        Kernel kk;
        if (sscanf(line, "ce_vocab_chunk %lld", &v) == 1) ex->vc = v;
        else if (sscanf(line, "colsum_scratch %lld", &v) == 1) ex->colsum_floats = v;
        else if (sscanf(line, "adamw_blocks %lld", &v) == 1) ex->adamw_blocks = v;
        else if (sscanf(line, "adamw_chunk %lld", &v) == 1) ex->adamw_chunk = v;
        else if (sscanf(line, "storage %15s", storage) == 1 && (!strcmp(storage, "bf16") || !strcmp(storage, "f16")))
            ex->storage = strcmp(storage, "f16") ? CU_BF16 : CU_F16;
        else if (sscanf(line, "optimizer %d %d %d", &a, &b, &c) == 3) ex->optimizer[0] = a, ex->optimizer[1] = b, ex->optimizer[2] = c;
        else if (sscanf(line, "kernel %d %63s %u %u %u %u %u %u", &i, name, &kk.grid[0], &kk.grid[1], &kk.grid[2],
                        &kk.block[0], &kk.block[1], &kk.block[2]) == 8 && i == ex->n_kernels) {
            snprintf(kk.name, sizeof kk.name, "%s", name);
            snprintf(kk.template_name, sizeof kk.template_name, "%s", name);
            char *us = strrchr(kk.template_name, '_'); /* "rmsnorm_fwd_0" -> "rmsnorm_fwd" */
            if (us) *us = '\0';
            kk.fn = NULL;
            ex->kernels = xrealloc(ex->kernels, (size_t)(ex->n_kernels + 1) * sizeof *ex->kernels);
            ex->kernels[ex->n_kernels++] = kk;
        } else if (sscanf(line, "op %d %31s %d %d%n", &i, kind, &a, &b, &used) == 4 && i >= 0 && i < ex->plan->n_ops) {
            int n = sscanf(line + used, "%d %d %d %d", &k[0], &k[1], &k[2], &k[3]);
            OpLaunch *l = &ex->ops[i];
            l->fused_into = b, l->n_kernels = n > 0 ? n : 0;
            for (int j = 0; j < l->n_kernels; j++) l->kernel[j] = k[j];
        } else {
            ok = errf(err, errlen, "cuda/launches.txt:%d: cannot read '%.60s'", line_no, line);
        }
    }
    free(buf);
    for (int32_t i = 0; ok && i < ex->plan->n_ops; i++) {
        const OpLaunch *l = &ex->ops[i];
        if (l->n_kernels < 0) ok = errf(err, errlen, "cuda/launches.txt: op %d is missing", (int)i);
        for (int j = 0; ok && j < l->n_kernels; j++)
            if (l->kernel[j] < 0 || l->kernel[j] >= ex->n_kernels)
                ok = errf(err, errlen, "cuda/launches.txt: op %d names kernel %d of %d", (int)i, l->kernel[j],
                          (int)ex->n_kernels);
        if (ok && (l->fused_into < -1 || l->fused_into >= ex->plan->n_ops))
            ok = errf(err, errlen, "cuda/launches.txt: op %d is fused into op %d", (int)i, l->fused_into);
    }
    for (int j = 0; ok && j < 3; j++)
        if (ex->optimizer[j] >= ex->n_kernels) ok = errf(err, errlen, "cuda/launches.txt: bad optimizer kernel");
    if (ok && ex->vc <= 0) ok = errf(err, errlen, "cuda/launches.txt: no ce_vocab_chunk");
    return ok;
}

/* The CUBIN built for this GPU (same major architecture, minor not above it), else the PTX
 * when the GPU is at least its architecture. Copied so the image is aligned and the PTX ends in
 * NUL, as cuModuleLoadData needs. */
static char *pick_image(const Payload *pl, int arch, char *which, size_t wlen, char *err, size_t errlen) {
    const PayloadEntry *best = NULL;
    int best_arch = -1;
    StrBuf have = {0};
    for (size_t i = 0; i < payload_count(pl); i++) {
        const PayloadEntry *e = payload_entry(pl, i);
        int a = 0;
        char kind[8] = "";
        if (sscanf(e->name, "cuda/sm_%d.%7s", &a, kind) == 2 && !strcmp(kind, "cubin")) {
            sb_printf(&have, "%ssm_%d", have.len ? ", " : "", a);
            if (a / 10 == arch / 10 && a <= arch && a > best_arch) best = e, best_arch = a;
        } else if (sscanf(e->name, "cuda/compute_%d.%7s", &a, kind) == 2 && !strcmp(kind, "ptx")) {
            sb_printf(&have, "%sPTX compute_%d", have.len ? ", " : "", a);
        }
    }
    for (size_t i = 0; !best && i < payload_count(pl); i++) {
        const PayloadEntry *e = payload_entry(pl, i);
        int a = 0;
        char kind[8] = "";
        if (sscanf(e->name, "cuda/compute_%d.%7s", &a, kind) == 2 && !strcmp(kind, "ptx") && a <= arch) best = e;
    }
    if (!best) {
        errf(err, errlen, "this trainer's kernels are for %s, not this GPU (sm_%d); rebuild it with llfc --arch sm_%d",
             have.len ? have.data : "no GPU (built with --arch none)", arch, arch);
        sb_free(&have);
        return NULL;
    }
    sb_free(&have);
    snprintf(which, wlen, "%s", best->name);
    char *img = xmalloc(best->size + 1);
    memcpy(img, best->data, best->size);
    img[best->size] = '\0';
    return img;
}

static bool load_kernels(ExecCuda *ex, const Payload *pl, char *err, size_t errlen) {
    const PayloadEntry *lt = payload_find(pl, "cuda/launches.txt");
    if (!lt) return errf(err, errlen, "this trainer carries no CUDA kernels (built with --arch none); rebuild it with llfc");
    if (!parse_launches(ex, lt->data, lt->size, err, errlen)) return false;
    char which[128];
    char *img = pick_image(pl, cudrv_arch(ex->d), which, sizeof which, err, errlen);
    if (!img) return false;
    bool ok = cudrv_load_module(ex->d, img, &ex->module, err, errlen);
    free(img);
    for (int32_t k = 0; ok && k < ex->n_kernels; k++)
        ok = cudrv_function(ex->d, ex->module, ex->kernels[k].name, &ex->kernels[k].fn, err, errlen);
    return ok;
}

// --- memory

/* The parameters AdamW updates on the device (cuda_gen.c's optimizer tables): they keep an fp32
 * master there, packed in this order; every other parameter lives in bf16 only. */
static bool has_master(const PlanParam *pp) { return pp->trainable && pp->grad >= 0; }

/* The trainable parameters this rank updates (all of them without a shard; else its owner's run,
 * which must be contiguous), where their state starts and how much there is, and their blocks of
 * the optimizer's kernels (cuda_gen.c's tables: ceil(numel / adamw_chunk) each). *all gets every
 * trained value's count. */
static bool take_share(ExecCuda *ex, const ExecCudaShard *sh, int64_t *all, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    const size_t n = ex->n_trainable;
    int64_t *state = xcalloc(n + 1, sizeof *state), *block = xcalloc(n + 1, sizeof *block);
    size_t k = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        if (!has_master(&p->params[i])) continue;
        const int64_t numel = p->tensors[p->params[i].tensor].numel;
        if (k == n) break;
        state[k + 1] = state[k] + numel;
        block[k + 1] = block[k] + (ex->adamw_chunk > 0 ? (numel + ex->adamw_chunk - 1) / ex->adamw_chunk : 0);
        k++;
    }
    bool ok = k == n || errf(err, errlen, "the plan has trainable parameters without gradients");
    ex->own0 = 0, ex->own1 = n;
    if (ok && sh) {
        ex->owner = xmalloc((n + 1) * sizeof *ex->owner);
        memcpy(ex->owner, sh->owner, n * sizeof *ex->owner);
        ex->param_owner = xmalloc(((size_t)p->n_params + 1) * sizeof *ex->param_owner);
        for (int32_t i = 0, j = 0; i < p->n_params; i++)
            ex->param_owner[i] = sh->param_owner ? sh->param_owner[i] : has_master(&p->params[i]) ? sh->owner[j++] : -1;
        ex->rank = sh->rank, ex->stage = sh->stage, ex->ranks = sh->group;
        while (ex->own0 < n && ex->owner[ex->own0] < ex->rank) ex->own0++;
        for (ex->own1 = ex->own0; ex->own1 < n && ex->owner[ex->own1] == ex->rank;) ex->own1++;
        for (size_t j = ex->own1; ok && j < n; j++)
            if (ex->owner[j] <= ex->rank)
                ok = errf(err, errlen, "ZeRO: rank %d's parameters are not one run (parameter %zu is rank %d's)",
                          ex->rank, j, ex->owner[j]);
        if (ok && block[n] != ex->adamw_blocks)
            ok = errf(err, errlen, "cuda/launches.txt: %lld optimizer blocks of %lld elements, the tables have %lld "
                      "(rebuild this trainer with llfc)", (long long)block[n], (long long)ex->adamw_chunk,
                      (long long)ex->adamw_blocks);
    }
    ex->state0 = state[ex->own0], ex->n_state = state[ex->own1] - state[ex->own0];
    ex->block0 = sh ? block[ex->own0] : 0, ex->n_blocks = sh ? block[ex->own1] - block[ex->own0] : ex->adamw_blocks;
    *all = state[n];
    free(state), free(block);
    return ok;
}

typedef struct {
    CuPtr *p;
    int64_t bytes;
    const char *what;
} Alloc;

#define GUARD_BYTE 0xA5

/* ZeRO-2/3: what this rank keeps of the weights (ZeRO-3) and gradients, and its windows (MiB). */
static void win_say(const ExecCuda *ex, char *buf, size_t len) {
    const Windows *z = ex->win;
    const double mib = 1 << 20;
    int64_t win = 0;
    for (int k = 0; k < WIN_SLOTS; k++) win += z->slot_bytes[k] + z->slot_grad_bytes[k];
    char weights[96] = "";
    if (z->values)
        snprintf(weights, sizeof weights, "16-bit weights, %lld of %lld values, and their ", (long long)z->own_elems,
                 (long long)ex->plan->region_size[PLAN_PARAM]);
    snprintf(buf, len, "; its own %sgradients, %lld of %lld; %s windows %.1f (one for the parameters outside the "
             "layers, two for layers)", weights, (long long)z->grad_elems, (long long)ex->plan->region_size[PLAN_GRAD],
             z->values ? "gather" : "gradient", (double)win / mib);
}

static bool allocate(ExecCuda *ex, int64_t all_state, FILE *log, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    const int64_t N = p->B * p->T, *rs = p->region_size;
    Windows *z = ex->win;
    Alloc a[] = {
        {&ex->master, ex->n_state * 4, "fp32 master weights"},
        {z && z->values ? &z->own : &ex->shadow, (z ? z->own_elems : rs[PLAN_PARAM]) * 2,
         ex->storage == CU_F16 ? "f16 weights" : "bf16 weights"},
        {z ? &z->own_grad : &ex->region[PLAN_GRAD], (z ? z->grad_elems : rs[PLAN_GRAD]) * 4, "gradients"},
        {&ex->m, ex->n_state * 4, "AdamW exp_avg"},
        {&ex->v, ex->n_state * 4, "AdamW exp_avg_sq"},
        {&ex->region[PLAN_INPUT], rs[PLAN_INPUT] * 4, "micro-batch"},
        {&ex->region[PLAN_ACT], ex->act.bytes, "activations"},
        {&ex->chunk, N * ex->vc * 4, "logits chunk"},
        {&ex->dchunk, N * ex->vc * 2, "logits gradient chunk"},
        {&ex->row_max, N * 4, "loss statistics"},
        {&ex->row_sum, N * 4, "loss statistics"},
        {&ex->target, N * 4, "loss statistics"},
        {&ex->loss_sum, 8, "loss"},
        {&ex->count, 8, "loss"},
        {&ex->colsum, ex->colsum_floats * 4, "column sums"},
        {&ex->partial, ex->adamw_blocks * 8, "gradient norm"},
        {&ex->norm_coef, 12, "gradient norm"},
        {&ex->sumsq, 8, "gradient norm"},
        {&ex->inv_freq, (int64_t)sizeof ex->inv_freq_h, "rope frequencies"},
        {z && z->values ? &z->slot[0] : NULL, z ? z->slot_bytes[0] : 0, "ZeRO-3 window"},
        {z && z->values ? &z->slot[1] : NULL, z ? z->slot_bytes[1] : 0, "ZeRO-3 window"},
        {z && z->values ? &z->slot[2] : NULL, z ? z->slot_bytes[2] : 0, "ZeRO-3 window"},
        {z ? &z->slot_grad[0] : NULL, z ? z->slot_grad_bytes[0] : 0, "ZeRO gradient window"},
        {z ? &z->slot_grad[1] : NULL, z ? z->slot_grad_bytes[1] : 0, "ZeRO gradient window"},
        {z ? &z->slot_grad[2] : NULL, z ? z->slot_grad_bytes[2] : 0, "ZeRO gradient window"},
    };
    int64_t total = 32 << 20; /* cudrv's cuBLASLt workspace */
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) total += a[i].bytes;
    size_t free_b = 0, total_b = 0;
    cudrv_mem_info(ex->d, &free_b, &total_b);
    const double mib = 1 << 20;
    char line[1600], zero[960] = "", windows[640] = ""; /* one write: under ZeRO every rank prints its own line */
    if (z) win_say(ex, windows, sizeof windows);
    if (ex->owner)
        snprintf(zero, sizeof zero, "; rank %d, ZeRO-%d: fp32 masters and AdamW state of its %lld of %lld trained "
                 "values (all of them: weights %.1f fp32, AdamW %.1f)%s", ex->rank, ex->stage, (long long)ex->n_state,
                 (long long)all_state, (double)all_state * 4 / mib, (double)all_state * 8 / mib, windows);
    snprintf(line, sizeof line, "device memory: %.1f MiB planned (weights %.1f fp32 trained + %.1f %s, gradients %.1f, "
             "AdamW %.1f, activations %.1f%s, loss chunks %.1f, workspace 32.0) of %.1f MiB free on the GPU (%.1f MiB)%s\n",
             (double)total / mib, (double)a[0].bytes / mib, (double)a[1].bytes / mib,
             ex->storage == CU_F16 ? "f16" : "bf16", (double)a[2].bytes / mib,
             (double)(a[3].bytes + a[4].bytes) / mib, (double)a[6].bytes / mib,
             ex->guard ? " unshared, with bounds guards" : "", (double)(a[7].bytes + a[8].bytes) / mib,
             (double)free_b / mib, (double)total_b / mib, zero);
    if (log) fputs(line, log);
    if (free_b && (size_t)total > free_b)
        return errf(err, errlen, "the plan needs %.1f MiB of GPU memory and %.1f MiB are free; lower "
                    "per_device_train_batch_size or cutoff_len, or set gradient_checkpointing: true",
                    (double)total / mib, (double)free_b / mib);
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        if (a[i].p && (!cudrv_alloc(ex->d, a[i].p, (size_t)a[i].bytes, a[i].what, err, errlen) ||
                       !cudrv_zero(ex->d, *a[i].p, (size_t)a[i].bytes, a[i].what, err, errlen)))
            return false;
    if (z) { /* the regions' bases, as if whole: only this rank's offsets are ever used with them */
        if (z->values) ex->shadow = z->own - (CuPtr)z->own_from * 2;
        ex->region[PLAN_GRAD] = z->own_grad - (CuPtr)z->grad_from * 4;
    }
    if (!ex->guard) return true;
    ex->placed = xmalloc(((size_t)p->n_tensors + 1) * sizeof *ex->placed);
    for (int32_t t = 0; t < p->n_tensors; t++) /* act_place put them one after the other */
        if (ex->act.at[t] >= 0) {
            int32_t j = ex->n_placed++;
            for (; j > 0 && ex->act.at[ex->placed[j - 1]] > ex->act.at[t]; j--) ex->placed[j] = ex->placed[j - 1];
            ex->placed[j] = t;
        }
    ex->act_host = xmalloc((size_t)ex->act.bytes + 1);
    memset(ex->act_host, GUARD_BYTE, (size_t)ex->act.bytes);
    return cudrv_put(ex->d, ex->region[PLAN_ACT], ex->act_host, (size_t)ex->act.bytes, "poison activations", err, errlen);
}

/* The LM head's LINEAR (whose output the loss, or the soft-cap folded into it, reads) and its
 * LINEAR_BWD (the one with the same weight): the loss computes both chunk by chunk. */
static bool find_lm_head(ExecCuda *ex, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    ex->lm_op = ex->lm_bwd_op = -1;
    if (p->loss_op < 0) return errf(err, errlen, "the plan has no loss");
    int32_t logits = p->ops[p->loss_op].in[0];
    for (int32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == OP_SOFTCAP && p->ops[i].out[0] == logits && ex->ops[i].fused_into == p->loss_op)
            logits = p->ops[i].in[0];
    for (int32_t i = 0; i < p->n_ops && ex->lm_op < 0; i++)
        if (p->ops[i].kind == OP_LINEAR && p->ops[i].out[0] == logits) ex->lm_op = i;
    if (ex->lm_op < 0) return errf(err, errlen, "the plan's logits come from no LINEAR op");
    const PlanOp *lm = &p->ops[ex->lm_op];
    if (lm->in[2] >= 0 || lm->in[3] >= 0)
        return errf(err, errlen, "the CUDA executor's loss needs an LM head without bias or LoRA");
    for (int32_t i = p->loss_op + 1; i < p->n_ops && ex->lm_bwd_op < 0; i++)
        if (p->ops[i].kind == OP_LINEAR_BWD && p->ops[i].in[2] == lm->in[1]) ex->lm_bwd_op = i;
    return true;
}

// --- device layout of the activations

/* Activations live on the device at the width they are stored at: bf16 (2 bytes) for every
 * activation and activation gradient, 4 bytes for fp32 statistics (RMSNorm's rstd, attention's
 * lse and delta) and anything int32. The plan's ACT offsets count 4-byte elements and tensors
 * with disjoint lives share them, so with mixed widths they cannot simply be halved (a bf16
 * tensor at plan offset k and an fp32 one at k + numel/2 would overlap). Keeping the fp32
 * tensors in a region of their own would keep the plan's sharing; laying ACT out again here
 * (the plan's rule: first-fit by decreasing size over lifetimes) costs a few lines more and
 * also gets what only the executor knows: the lifetimes of its launches (a fused op's tensors
 * are touched by the op it is fused into, ADD + RMSNORM and the rope pair; the LM head's input
 * and its backward's outputs by the LOSS, which computes both chunk by chunk) and the tensors
 * no launch touches at all (the logits and their soft-cap: the loss never stores them), which
 * get no bytes. */

#define ACT_ALIGN 64 /* bytes: what the plan's 16 four-byte elements gave every tensor */

static int64_t align_bytes(int64_t n) { return (n + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN; }

static void act_touch(const Plan *p, CudaActLayout *l, int32_t t, int32_t at) {
    if (t < 0 || p->tensors[t].region != PLAN_ACT) return;
    if (l->first[t] < 0 || at < l->first[t]) l->first[t] = at;
    if (at > l->last[t]) l->last[t] = at;
}

static void act_touch_all(const Plan *p, CudaActLayout *l, const PlanOp *op, int32_t at) {
    for (int k = 0; k < PLAN_IN; k++) act_touch(p, l, op->in[k], at);
    for (int k = 0; k < PLAN_OUT; k++) act_touch(p, l, op->out[k], at);
    for (int k = 0; k < PLAN_TMP; k++) act_touch(p, l, op->tmp[k], at);
}

/* Each tensor's first and last touch, in the order run_op launches (see above). */
static void act_lifetimes(const ExecCuda *ex, CudaActLayout *l) {
    const Plan *p = ex->plan;
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        const int32_t into = ex->ops[i].fused_into;
        if (i == ex->lm_op) {
            act_touch(p, l, op->in[0], p->loss_op);
        } else if (i == ex->lm_bwd_op) {
            act_touch(p, l, op->in[1], p->loss_op);
            for (int k = 0; k < PLAN_OUT; k++) act_touch(p, l, op->out[k], p->loss_op);
        } else if (i == p->loss_op || into == p->loss_op) {
            act_touch(p, l, op->in[1], p->loss_op); /* the labels; the logits are never stored */
        } else {
            act_touch_all(p, l, op, into >= 0 ? into : i);
        }
    }
}

/* Bytes per element on the device: the fp32 outputs of the kernels (cuda_gen.h's table). */
static void act_widths(const Plan *p, CudaActLayout *l) {
    for (int32_t t = 0; t < p->n_tensors; t++) l->width[t] = p->tensors[t].dtype == PLAN_I32 ? 4 : 2;
    for (int32_t i = 0; i < p->n_ops; i++) {
        const PlanOp *op = &p->ops[i];
        int32_t f32[4] = {-1, -1, -1, -1};
        switch ((PlanOpKind)op->kind) {
        case OP_RMSNORM: f32[0] = op->out[1]; break;                              /* rstd */
        case OP_ATTENTION: f32[0] = op->out[1]; break;                            /* lse */
        case OP_ATTENTION_BWD: f32[0] = op->tmp[0]; break;                        /* delta */
        case OP_RMSNORM_BWD: f32[0] = op->out[1]; break;                          /* colsum_finish: dw */
        case OP_EMBED_BWD: f32[0] = op->out[0]; break;                            /* dtable */
        case OP_LINEAR_BWD: f32[0] = op->out[2], f32[1] = op->out[3], f32[2] = op->out[4]; break; /* dbias dA dB */
        default: break;
        }
        for (int k = 0; k < 4; k++)
            if (f32[k] >= 0) l->width[f32[k]] = 4;
    }
}

typedef struct {
    int64_t bytes;
    int32_t first, id;
} ActKey;

/* largest first, then earliest, then by id (graph.c's order): every run lays out alike */
static int cmp_act(const void *a, const void *b) {
    const ActKey *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
    int64_t off, end;
} ActSpan;

static int cmp_span(const void *a, const void *b) {
    const ActSpan *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* First-fit by decreasing size among the tensors whose lives overlap; with guard > 0 every
 * tensor after the last, `guard` bytes apart and from both ends. */
static void act_place(const Plan *p, CudaActLayout *l, int64_t guard) {
    ActKey *keys = xmalloc((size_t)p->n_tensors * sizeof *keys + 1);
    int32_t n = 0;
    for (int32_t t = 0; t < p->n_tensors; t++)
        if (l->first[t] >= 0) keys[n++] = (ActKey){align_bytes(p->tensors[t].numel * l->width[t]), l->first[t], t};
    qsort(keys, (size_t)n, sizeof *keys, cmp_act);
    ActSpan *busy = xmalloc((size_t)n * sizeof *busy + 1);
    l->bytes = guard;
    for (int32_t i = 0; i < n; i++) {
        const int32_t x = keys[i].id;
        int64_t off = 0, need = keys[i].bytes;
        if (guard > 0) {
            off = l->bytes;
        } else {
            int nb = 0;
            for (int32_t j = 0; j < i; j++) {
                const int32_t y = keys[j].id;
                if (l->first[y] <= l->last[x] && l->first[x] <= l->last[y])
                    busy[nb++] = (ActSpan){l->at[y], l->at[y] + keys[j].bytes};
            }
            qsort(busy, (size_t)nb, sizeof *busy, cmp_span);
            for (int k = 0; k < nb; k++) {
                if (busy[k].off - off >= need) break;
                if (busy[k].end > off) off = busy[k].end;
            }
        }
        l->at[x] = off;
        if (off + need + guard > l->bytes) l->bytes = off + need + guard;
    }
    free(busy);
    free(keys);
}

static void lay_out_act(const ExecCuda *ex, int64_t guard, CudaActLayout *l) {
    const Plan *p = ex->plan;
    const size_t n = (size_t)p->n_tensors + 1;
    l->at = xmalloc(n * sizeof *l->at), l->width = xmalloc(n), l->first = xmalloc(n * sizeof *l->first);
    l->last = xmalloc(n * sizeof *l->last);
    for (int32_t t = 0; t < p->n_tensors; t++) l->at[t] = -1, l->first[t] = l->last[t] = -1;
    act_lifetimes(ex, l);
    act_widths(p, l);
    act_place(p, l, guard);
}

void exec_cuda_act_layout_free(CudaActLayout *l) {
    free(l->at), free(l->width), free(l->first), free(l->last);
    memset(l, 0, sizeof *l);
}

bool exec_cuda_act_layout(const Plan *plan, const char *launches, size_t len, int64_t guard, CudaActLayout *l,
                          char *err, size_t errlen) {
    ExecCuda ex = {.plan = plan, .optimizer = {-1, -1, -1}};
    memset(l, 0, sizeof *l);
    bool ok = parse_launches(&ex, launches, len, err, errlen) && find_lm_head(&ex, err, errlen);
    if (ok) lay_out_act(&ex, guard, l);
    free(ex.kernels), free(ex.ops);
    return ok;
}

/* The views of the host copies, again after `held` changed. */
static void make_views(ExecCuda *ex) {
    free(ex->all), free(ex->trainable);
    exec_params_views(ex->plan, ex->host[0], ex->held, ex->host[1], &ex->all, &ex->n_all, &ex->trainable,
                      &ex->n_trainable);
}

ExecCuda *exec_cuda_new(const Plan *plan, const Payload *payload, int device, uint64_t seed, FILE *log, char *err,
                        size_t errlen) {
    return exec_cuda_new_sharded(plan, payload, device, seed, NULL, log, err, errlen);
}

ExecCuda *exec_cuda_new_sharded(const Plan *plan, const Payload *payload, int device, uint64_t seed,
                                const ExecCudaShard *shard, FILE *log, char *err, size_t errlen) {
    CuDrv *d = cudrv_open(device, err, errlen);
    if (!d) return NULL;
    ExecCuda *ex = xcalloc(1, sizeof *ex);
    ex->plan = plan, ex->seed = seed, ex->d = d;
    for (int j = 0; j < 3; j++) ex->optimizer[j] = -1;
    snprintf(ex->device, sizeof ex->device, "%s (sm_%d)", cudrv_name(d), cudrv_arch(d));
    ex->host[0] = xcalloc((size_t)plan->region_size[PLAN_PARAM] + 1, sizeof(float)); /* pages never written stay unmapped */
    ex->host[1] = xcalloc((size_t)plan->region_size[PLAN_GRAD] + 1, sizeof(float));
    make_views(ex);
    ex->group = xcalloc(ex->n_trainable + 1, 1);
    for (int32_t i = 0, k = 0; i < plan->n_params; i++) /* as cuda_gen.c's adamw_flags: lora_B and 1-D */
        if (plan->params[i].trainable)
            ex->group[k++] = plan->params[i].kind == PARAM_LORA_B || plan->params[i].ndim == 1;
    const char *check = getenv("LLFC_CUDA_CHECK_BOUNDS");
    ex->guard = check && *check == '1' ? ACT_ALIGN : 0;
    if (!load_kernels(ex, payload, err, errlen) || !find_lm_head(ex, err, errlen)) {
        exec_cuda_free(ex);
        return NULL;
    }
    lay_out_act(ex, ex->guard, &ex->act);
    int64_t all_state = 0;
    if (!take_share(ex, shard, &all_state, err, errlen) ||
        (shard && (shard->param_owner || shard->stage == 2) && !win_setup(ex, shard, err, errlen)) ||
        !allocate(ex, all_state, log, err, errlen)) {
        exec_cuda_free(ex);
        return NULL;
    }
    return ex;
}

void exec_cuda_free(ExecCuda *ex) {
    if (!ex) return;
    win_free(ex);
    overlap_free(ex);
    CuPtr *ptrs[] = {&ex->master, &ex->region[1], &ex->region[2], &ex->region[3], &ex->shadow, &ex->m, &ex->v,
                     &ex->colsum, &ex->partial, &ex->norm_coef, &ex->chunk, &ex->dchunk, &ex->row_max, &ex->row_sum,
                     &ex->target, &ex->loss_sum, &ex->count, &ex->inv_freq, &ex->sumsq};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) cudrv_free(ex->d, *ptrs[i]);
    cudrv_close(ex->d);
    free(ex->kernels), free(ex->ops), free(ex->host[0]), free(ex->host[1]), free(ex->all), free(ex->trainable), free(ex->group);
    free(ex->owner), free(ex->param_owner), free(ex->held), free(ex->gathered);
    exec_cuda_act_layout_free(&ex->act);
    free(ex->act_host), free(ex->placed);
    free(ex);
}

bool exec_cuda_fp16(const ExecCuda *ex) { return ex->storage == CU_F16; }

const char *exec_cuda_device(const ExecCuda *ex) { return ex->device; }

const ExecParam *exec_cuda_params(const ExecCuda *ex, size_t *n) {
    *n = ex->n_trainable;
    return ex->trainable;
}

const ExecParam *exec_cuda_all_params(const ExecCuda *ex, size_t *n) {
    *n = ex->n_all;
    return ex->all;
}

// --- host <-> device

static uint16_t to_bf16(float f) { /* round to nearest even, as common.cuh's f32_to_bf16 */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* The host copies of the parameters with a device master (this rank's, under ZeRO), packed in
 * the optimizer's order (to_host = false), or unpacked back into the host copies (to_host = true). */
static void pack_masters(ExecCuda *ex, float *packed, bool to_host) {
    const Plan *p = ex->plan;
    int64_t k = 0;
    size_t j = 0; /* index among the trainable parameters */
    for (int32_t i = 0; i < p->n_params; i++) {
        if (!has_master(&p->params[i])) continue;
        const bool mine = j >= ex->own0 && j < ex->own1;
        j++;
        if (!mine) continue;
        const PlanTensor *t = &p->tensors[p->params[i].tensor];
        float *host = ex->host[0] + t->offset;
        if (to_host) memcpy(host, packed + k, (size_t)t->numel * sizeof *host);
        else memcpy(packed + k, host, (size_t)t->numel * sizeof *host);
        k += t->numel;
    }
}

/* ZeRO-3 keeps a slice of the 16-bit weights, ZeRO-2/3 of the gradients (see own_slice); everything
 * else all of them. */
static void win_or_whole(const ExecCuda *ex, bool grad, int64_t *from, int64_t *n) {
    if (ex->win) *from = grad ? ex->win->grad_from : ex->win->own_from, *n = grad ? ex->win->grad_elems : ex->win->own_elems;
    else *from = 0, *n = ex->plan->region_size[grad ? PLAN_GRAD : PLAN_PARAM];
}

/* n fp32 values as the GPU's 16-bit weights at element `at` of PARAM. */
static bool put_16bit(ExecCuda *ex, int64_t at, const float *values, int64_t n, char *err, size_t errlen) {
    uint16_t *h = xmalloc((size_t)n * 2 + 2);
    for (int64_t i = 0; i < n; i++) h[i] = ex->storage == CU_F16 ? st_f32_to_f16(values[i]) : to_bf16(values[i]);
    bool ok = cudrv_put(ex->d, ex->shadow + (CuPtr)at * 2, h, (size_t)n * 2, "upload 16-bit weights", err, errlen);
    free(h);
    return ok;
}

/* The 16-bit weights from the host copies: ZeRO-3's own slice, every weight, or (frozen ones
 * having gone up as they were read) each one held. */
static bool put_weights(ExecCuda *ex, char *err, size_t errlen) {
    int64_t from, n;
    win_or_whole(ex, false, &from, &n);
    if ((ex->win && ex->win->values) || !ex->held) return put_16bit(ex, from, ex->host[0] + from, n, err, errlen);
    const Plan *p = ex->plan;
    bool ok = true;
    for (int32_t i = 0; i < p->n_params && ok; i++) {
        const PlanTensor *t = &p->tensors[p->params[i].tensor];
        if (ex->held[i]) ok = put_16bit(ex, t->offset, ex->host[0] + t->offset, t->numel, err, errlen);
    }
    return ok;
}

bool exec_cuda_to_device(ExecCuda *ex, const AdamW *opt, char *err, size_t errlen) {
    bool ok = put_weights(ex, err, errlen);
    float *packed = xmalloc((size_t)ex->n_state * 4 + 4);
    pack_masters(ex, packed, false);
    ok = ok && cudrv_put(ex->d, ex->master, packed, (size_t)ex->n_state * 4, "upload weights", err, errlen);
    free(packed);
    if (ok && opt) {
        if (opt->offset[opt->n_params] != ex->n_state)
            return errf(err, errlen, "AdamW state of %lld values for %lld trainable values",
                        (long long)opt->offset[opt->n_params], (long long)ex->n_state);
        ok = cudrv_put(ex->d, ex->m, opt->m, (size_t)ex->n_state * 4, "upload AdamW state", err, errlen) &&
             cudrv_put(ex->d, ex->v, opt->v, (size_t)ex->n_state * 4, "upload AdamW state", err, errlen);
    }
    return ok;
}

/* Only the trained parameters come back (under ZeRO, this rank's): the host copy of every other
 * one (frozen base weights) is the truth, the device has them in bf16 only. */
bool exec_cuda_to_host(ExecCuda *ex, AdamW *opt, char *err, size_t errlen) {
    float *packed = xmalloc((size_t)ex->n_state * 4 + 4);
    bool ok = cudrv_get(ex->d, packed, ex->master, (size_t)ex->n_state * 4, "download weights", err, errlen);
    if (ok) pack_masters(ex, packed, true);
    free(packed);
    if (ok && opt && opt->offset[opt->n_params] == ex->n_state)
        ok = cudrv_get(ex->d, opt->m, ex->m, (size_t)ex->n_state * 4, "download AdamW state", err, errlen) &&
             cudrv_get(ex->d, opt->v, ex->v, (size_t)ex->n_state * 4, "download AdamW state", err, errlen);
    return ok;
}

bool exec_cuda_grads_to_host(ExecCuda *ex, char *err, size_t errlen) {
    if (ex->win) return errf(err, errlen, "ZeRO-%d on GPUs reduces the gradients by NCCL, not through host copies", ex->stage);
    return cudrv_get(ex->d, ex->host[1], ex->region[PLAN_GRAD], (size_t)ex->plan->region_size[PLAN_GRAD] * 4,
                     "download gradients", err, errlen);
}

bool exec_cuda_grads_to_device(ExecCuda *ex, char *err, size_t errlen) {
    if (ex->win) return errf(err, errlen, "ZeRO-%d on GPUs reduces the gradients by NCCL, not through host copies", ex->stage);
    return cudrv_put(ex->d, ex->region[PLAN_GRAD], ex->host[1], (size_t)ex->plan->region_size[PLAN_GRAD] * 4,
                     "upload gradients", err, errlen);
}

static bool frozen_to_device(void *ctx, int32_t param, const float *values, char *err, size_t errlen) {
    ExecCuda *ex = ctx;
    const PlanTensor *t = &ex->plan->tensors[ex->plan->params[param].tensor];
    return put_16bit(ex, t->offset, values, t->numel, err, errlen);
}

/* The host keeps only the weights it will use again. Under ZeRO-3 a rank's own (each owner
 * loads, merges and initializes its own; rank 0 gathers the others only to write them,
 * exec_cuda_collect); the others are skipped. Else every GPU has every weight, and the host
 * keeps the trained ones (AdamW's masters start from them; under ZeRO-1/2 a rank's own, and at
 * rank 0, which writes checkpoints, all) and, with keep_frozen, every weight (adapters to merge
 * into the frozen ones, a whole model to write); every other one goes to the GPU as it is read,
 * so a rank's RAM never holds the fp32 model. (Under ZeRO-1/2 the owners' broadcast,
 * exec_cuda_broadcast_params, then brings the other ranks' trained weights, LoRA's first.) */
bool exec_cuda_load_model(ExecCuda *ex, const char *path, bool keep_frozen, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    const bool zero3 = ex->win && ex->win->values;
    if (zero3 || !keep_frozen) {
        free(ex->held);
        ex->held = xcalloc((size_t)p->n_params + 1, sizeof *ex->held);
        for (int32_t i = 0; i < p->n_params; i++)
            ex->held[i] = zero3 ? ex->param_owner[i] == ex->rank
                                : p->params[i].trainable && (!ex->owner || ex->rank == 0 || ex->param_owner[i] == ex->rank);
        make_views(ex);
    }
    return exec_params_load_model(p, ex->host[0], ex->held, zero3 ? NULL : frozen_to_device, ex, path, err, errlen);
}

void exec_cuda_host_values(const ExecCuda *ex, int64_t *held, int64_t *all) {
    const Plan *p = ex->plan;
    *held = *all = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        const int64_t n = p->tensors[p->params[i].tensor].numel;
        *all += n;
        *held += !ex->held || ex->held[i] ? n : 0;
    }
}

void exec_cuda_init_lora(ExecCuda *ex) { exec_params_init_lora(ex->plan, ex->seed, ex->host[0], ex->held); }

bool exec_cuda_load_adapter(ExecCuda *ex, const char *path, char *err, size_t errlen) {
    return exec_params_load_adapter(ex->plan, ex->host[0], ex->held, path, err, errlen);
}

/* Point the views of the parameters this rank does not hold at `at` (NULL: at nothing again). */
static void point_unheld(ExecCuda *ex, float *at) {
    const Plan *p = ex->plan;
    for (int32_t i = 0, t = 0; i < p->n_params; i++) {
        const int64_t n = p->tensors[p->params[i].tensor].numel;
        if (!ex->held[i]) {
            ex->all[i].value = at;
            if (p->params[i].trainable) ex->trainable[t].value = at;
            if (at) at += n;
        }
        t += p->params[i].trainable;
    }
}

bool exec_cuda_collect(ExecCuda *ex, char *err, size_t errlen) {
    if (!ex->win || !ex->win->values) return true;
    const Plan *p = ex->plan;
    int64_t others = 0;
    for (int32_t i = 0; i < p->n_params; i++) others += ex->held[i] ? 0 : p->tensors[p->params[i].tensor].numel;
    if (ex->rank == 0) {
        ex->gathered = xmalloc((size_t)others * sizeof(float) + sizeof(float));
        point_unheld(ex, ex->gathered);
    }
    for (int32_t i = 0; i < p->n_params; i++) /* ranks neither sending nor receiving pass by */
        if (!dist_send_to(ex->ranks, ex->param_owner[i], 0, ex->all[i].value,
                          (size_t)p->tensors[p->params[i].tensor].numel * sizeof(float), err, errlen)) {
            exec_cuda_uncollect(ex);
            return false;
        }
    return true;
}

void exec_cuda_uncollect(ExecCuda *ex) {
    if (!ex->gathered) return;
    point_unheld(ex, NULL);
    free(ex->gathered);
    ex->gathered = NULL;
}

bool exec_cuda_zero_grad(ExecCuda *ex, char *err, size_t errlen) {
    int64_t from, n;
    win_or_whole(ex, true, &from, &n);
    return cudrv_zero(ex->d, ex->region[PLAN_GRAD] + (CuPtr)from * 4, (size_t)n * 4, "zero gradients", err, errlen);
}

// --- ZeRO-2/3: gradients (ZeRO-3: and 16-bit values) sharded, a layer at a time in windows

/* Each rank keeps the gradients of its own parameters only, in its slice of GRAD, where
 * ex->region[PLAN_GRAD] points as if the whole region were there (the optimizer's tables and
 * dptr index it by the plan's offsets, and touch only this rank's); under ZeRO-3 the same goes
 * for the 16-bit values and ex->shadow. The other ranks' parameters a launch touches sit in
 * windows: 0 for those outside the layers (the embedding, the final norm, the LM head: used at
 * both ends of a step, so they stay for the whole call), 1 and 2 for a layer's each, least
 * recently used out. ZeRO-3 gathers their values there from the owners (ncclBroadcast); ZeRO-2
 * keeps every value whole and only puts their gradients there.
 *
 * A window's gradients start at zero; the owner's slice accumulates in place, so an ncclReduce
 * in place sums every rank's part into it. It is started on the windows' stream as soon as the
 * op that adds last to the group's gradients in this call is launched (`last_write`), while the
 * backward pass goes on with the layer below. ZeRO-3 gathers the layer that comes next into the
 * other layer window as soon as no op before that layer needs what that window holds (at a
 * layer's first op: the layer before it is done, forward or backward), so the gather runs on the
 * windows' stream while the compute stream runs this layer.
 *
 * Every collective here goes to the windows' stream, after an event that makes it wait for what
 * the compute stream (the legacy one every launch goes to) has so far: a gather's window may
 * still be read by launches before it, and a reduction's input is written by them. The other
 * way, the compute stream waits on the GPU, never the host: for a window's gather (event `ready`)
 * before the first launch that reads it, and for its last reduction (`reduced`) before the window
 * is zeroed for the gradients of the next group. The host waits once, at the end of the call
 * (ncl_wait: every gradient at its owner, NCCL's errors and ddp_timeout seen). */

static int64_t plan_aligned(int64_t n) { return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

/* The elements of the PARAM (grad: GRAD) region this rank's parameters span; false when they
 * are not one run in the plan's order. */
static bool own_slice(const ExecCuda *ex, bool grad, int64_t *from, int64_t *elems) {
    const Plan *p = ex->plan;
    int64_t end = 0;
    int seen = 0; /* 0: none of ours yet, 1: in our run, 2: past it */
    *from = *elems = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        if (grad && pp->grad < 0) continue;
        const PlanTensor *t = &p->tensors[grad ? pp->grad : pp->tensor];
        if (ex->param_owner[i] != ex->rank) {
            seen += seen == 1;
            continue;
        }
        if (seen == 2) return false;
        if (seen == 0) *from = t->offset, seen = 1;
        end = t->offset + t->numel;
    }
    *elems = seen ? end - *from : 0;
    return true;
}

static bool win_add_need(Windows *z, int32_t op, int32_t g, bool grad) {
    for (int k = 0; k < WIN_NEED; k++) {
        if (z->need[op][k] < 0) z->need[op][k] = g;
        if (z->need[op][k] != g) continue;
        if (grad) {
            z->writes[op] |= (uint8_t)(1u << k);
            if (op > z->group[g].last_write) z->group[g].last_write = op;
        }
        return true;
    }
    return false;
}

static bool needs(const Windows *z, int32_t op, int32_t g) {
    for (int k = 0; k < WIN_NEED && z->need[op][k] >= 0; k++)
        if (z->need[op][k] == g) return true;
    return false;
}

/* Per op, the next layer group (> 0) the ops after it need that it does not: what to gather
 * ahead (in the training order; a forward-only call follows it up to the loss). */
static void win_map_next(ExecCuda *ex) {
    const Plan *p = ex->plan;
    Windows *z = ex->win;
    z->next_group = xmalloc(((size_t)p->n_ops + 1) * sizeof *z->next_group);
    for (int32_t i = 0; i < p->n_ops; i++) {
        z->next_group[i] = -1;
        for (int32_t j = i + 1; j < p->n_ops && z->next_group[i] < 0; j++)
            for (int k = 0; k < WIN_NEED && z->need[j][k] >= 0 && z->next_group[i] < 0; k++)
                if (z->need[j][k] > 0 && !needs(z, i, z->need[j][k])) z->next_group[i] = z->need[j][k];
    }
}

/* Each launching op's groups (ZeRO-2: those whose gradients it touches): its own tensors' and
 * those of the ops fused into it (the LM head's two products belong to the loss, which computes
 * them). */
static bool win_map_ops(ExecCuda *ex, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    Windows *z = ex->win;
    z->need = xmalloc(((size_t)p->n_ops + 1) * sizeof *z->need);
    z->writes = xcalloc((size_t)p->n_ops + 1, 1);
    for (int32_t i = 0; i < p->n_ops; i++)
        for (int k = 0; k < WIN_NEED; k++) z->need[i][k] = -1;
    for (int32_t j = 0; j < p->n_ops; j++) {
        const PlanOp *op = &p->ops[j];
        int32_t at = j;
        while (ex->ops[at].fused_into >= 0) at = ex->ops[at].fused_into;
        if (j == ex->lm_op || j == ex->lm_bwd_op) at = p->loss_op;
        int32_t ids[PLAN_IN + PLAN_OUT + PLAN_TMP], n = 0;
        for (int k = 0; k < PLAN_IN; k++) ids[n++] = op->in[k];
        for (int k = 0; k < PLAN_OUT; k++) ids[n++] = op->out[k];
        for (int k = 0; k < PLAN_TMP; k++) ids[n++] = op->tmp[k];
        for (int k = 0; k < n; k++) {
            const int32_t prm = ids[k] >= 0 ? z->param_of[ids[k]] : -1;
            const bool grad = prm >= 0 && p->tensors[ids[k]].region == PLAN_GRAD;
            if (prm >= 0 && (grad || z->values) && !win_add_need(z, at, p->params[prm].layer + 1, grad))
                return errf(err, errlen, "ZeRO: op %d (%s) uses the parameters of more than %d groups; this plan "
                            "cannot be sharded", (int)at, plan_op_name((PlanOpKind)p->ops[at].kind), WIN_NEED);
        }
        int layers = 0;
        for (int k = 0; k < WIN_NEED; k++) layers += z->need[at][k] > 0;
        if (layers > WIN_SLOTS - 1)
            return errf(err, errlen, "ZeRO: op %d (%s) uses the parameters of %d layers at once; this plan cannot "
                        "be sharded", (int)at, plan_op_name((PlanOpKind)p->ops[at].kind), layers);
    }
    win_map_next(ex);
    return true;
}

/* Each group's parameters and the bytes the other ranks' take in a window (plan order, aligned
 * as the plan aligns them, so one owner's neighbours in the region are neighbours there too). */
static void win_lay_out(ExecCuda *ex) {
    const Plan *p = ex->plan;
    Windows *z = ex->win;
    z->group = xcalloc((size_t)p->L + 1, sizeof *z->group);
    z->at = xcalloc((size_t)p->n_params + 1, sizeof *z->at);
    z->grad_at = xcalloc((size_t)p->n_params + 1, sizeof *z->grad_at);
    for (int32_t g = 0; g <= p->L; g++) z->group[g].slot = -1, z->group[g].last_write = -1;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        WinGroup *g = &z->group[pp->layer + 1];
        g->params = xrealloc(g->params, ((size_t)g->n + 1) * sizeof *g->params);
        g->params[g->n++] = i;
        if (ex->param_owner[i] == ex->rank) continue;
        const int64_t n = plan_aligned(p->tensors[pp->tensor].numel);
        if (z->values) z->at[i] = g->bytes, g->bytes += 2 * n;
        if (pp->grad >= 0) z->grad_at[i] = g->grad_bytes, g->grad_bytes += 4 * n;
    }
    for (int32_t g = 0; g <= p->L; g++) {
        const int k = g == 0 ? 0 : 1;
        if (z->group[g].bytes > z->slot_bytes[k]) z->slot_bytes[k] = z->group[g].bytes;
        if (z->group[g].grad_bytes > z->slot_grad_bytes[k]) z->slot_grad_bytes[k] = z->group[g].grad_bytes;
    }
    z->slot_bytes[2] = z->slot_bytes[1], z->slot_grad_bytes[2] = z->slot_grad_bytes[1];
    for (int k = 0; k < WIN_SLOTS; k++) z->slot_group[k] = z->grads_for[k] = -1;
}

/* ZeRO-3 (sh->param_owner: every parameter dealt) or ZeRO-2 (the trained ones' gradients). */
static bool win_setup(ExecCuda *ex, const ExecCudaShard *sh, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    Windows *z = ex->win = xcalloc(1, sizeof *z);
    z->values = sh->param_owner != NULL;
    for (int32_t i = 0, k = 0; z->values && i < p->n_params; i++)
        if (has_master(&p->params[i]) && sh->param_owner[i] != sh->owner[k++])
            return errf(err, errlen, "ZeRO-3: %s's owner differs between the two lists", p->tensors[p->params[i].tensor].name);
    z->param_of = xmalloc(((size_t)p->n_tensors + 1) * sizeof *z->param_of);
    for (int32_t t = 0; t < p->n_tensors; t++) z->param_of[t] = -1;
    for (int32_t i = 0; i < p->n_params; i++) {
        z->param_of[p->params[i].tensor] = i;
        if (p->params[i].grad >= 0) z->param_of[p->params[i].grad] = i;
    }
    if (!z->values) z->own_from = 0, z->own_elems = p->region_size[PLAN_PARAM];
    if ((z->values && !own_slice(ex, false, &z->own_from, &z->own_elems)) ||
        !own_slice(ex, true, &z->grad_from, &z->grad_elems))
        return errf(err, errlen, "ZeRO-%d: rank %d's parameters are not one run of the plan's", ex->stage, ex->rank);
    win_lay_out(ex);
    bool ok = win_map_ops(ex, err, errlen) &&
              cudrv_stream_new(ex->d, &z->stream, "the communication stream for ZeRO's windows", err, errlen) &&
              cudrv_event_new(ex->d, &z->event, "ZeRO's windows ready for the communication stream", err, errlen);
    for (int k = 0; ok && k < WIN_SLOTS; k++)
        ok = cudrv_event_new(ex->d, &z->ready[k], "ZeRO-3: a window's gather done", err, errlen) &&
             cudrv_event_new(ex->d, &z->reduced[k], "ZeRO: a window's reduction done", err, errlen);
    return ok;
}

static void win_free(ExecCuda *ex) {
    Windows *z = ex->win;
    if (!z) return;
    char ignored[ERR_LEN]; /* at the end there is nothing left to do about a failure */
    if (z->event) cudrv_event_free(ex->d, z->event, "ZeRO's windows ready", ignored, sizeof ignored);
    for (int k = 0; k < WIN_SLOTS; k++) {
        if (z->ready[k]) cudrv_event_free(ex->d, z->ready[k], "ZeRO-3: a window's gather done", ignored, sizeof ignored);
        if (z->reduced[k]) cudrv_event_free(ex->d, z->reduced[k], "ZeRO: a window's reduction", ignored, sizeof ignored);
    }
    if (z->stream) cudrv_stream_free(ex->d, z->stream, "ZeRO's communication stream", ignored, sizeof ignored);
    cudrv_free(ex->d, z->own), cudrv_free(ex->d, z->own_grad);
    for (int k = 0; k < WIN_SLOTS; k++) cudrv_free(ex->d, z->slot[k]), cudrv_free(ex->d, z->slot_grad[k]);
    if (z->values) ex->shadow = 0; /* bases into the slices, not allocations */
    ex->region[PLAN_GRAD] = 0;
    for (int32_t g = 0; z->group && g <= ex->plan->L; g++) free(z->group[g].params);
    free(z->param_of), free(z->at), free(z->grad_at), free(z->group), free(z->need), free(z->next_group);
    free(z->writes), free(z);
    ex->win = NULL;
}

void exec_cuda_use_nccl(ExecCuda *ex, NclComm *c) {
    if (ex->win) ex->win->nccl = c;
}

int64_t exec_cuda_gathers(const ExecCuda *ex) { return ex->win ? ex->win->gathers : 0; }

int64_t exec_cuda_prefetched(const ExecCuda *ex) { return ex->win ? ex->win->prefetched : 0; }

int64_t exec_cuda_early_reductions(const ExecCuda *ex) { return ex->win ? ex->win->early : 0; }

/* Where parameter i's value (or gradient) is now: this rank's slice (ZeRO-2: every value), or its
 * group's window. */
static CuPtr win_addr(const ExecCuda *ex, int32_t i, bool grad) {
    const Windows *z = ex->win;
    const PlanParam *pp = &ex->plan->params[i];
    const PlanTensor *t = &ex->plan->tensors[grad ? pp->grad : pp->tensor];
    if (ex->param_owner[i] == ex->rank || (!grad && !z->values))
        return grad ? ex->region[PLAN_GRAD] + (CuPtr)t->offset * 4 : ex->shadow + (CuPtr)t->offset * 2;
    const int slot = z->group[pp->layer + 1].slot;
    assert(slot >= 0); /* win_before put every group an op touches in a window */
    return grad ? z->slot_grad[slot] + (CuPtr)z->grad_at[i] : z->slot[slot] + (CuPtr)z->at[i];
}

/* One collective's worth of parameters: tensors lying one after the other in their region (plan
 * order, PLAN_ALIGN apart; a run spans the padding between them, which nothing uses) with one
 * owner, and so one after the other in a window too (win_lay_out). */
typedef struct {
    int32_t first; /* plan parameter */
    int64_t at, n; /* elements of the region: the first's offset, up to the end of the last tensor */
    int owner;     /* ex->param_owner's; -1: every rank's (an allreduce) */
} Run;

typedef enum { RUN_VALUES, RUN_TRAINED_VALUES, RUN_GRADS } RunOf;

/* Group g's parameters (g < 0: every group's) in runs: every parameter's 16-bit values, the
 * trained ones', or their gradients; by_owner false puts every rank's in one run. */
static size_t param_runs(const ExecCuda *ex, int32_t g, RunOf of, bool by_owner, Run *runs) {
    const Plan *p = ex->plan;
    size_t n = 0;
    int64_t next = -1;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        if ((g >= 0 && pp->layer + 1 != g) || (of != RUN_VALUES && !has_master(pp))) continue;
        const PlanTensor *t = &p->tensors[of == RUN_GRADS ? pp->grad : pp->tensor];
        const int owner = by_owner ? ex->param_owner[i] : -1;
        if (n == 0 || runs[n - 1].owner != owner || t->offset != next) runs[n++] = (Run){i, t->offset, 0, owner};
        runs[n - 1].n = t->offset + t->numel - runs[n - 1].at;
        next = t->offset + plan_aligned(t->numel);
    }
    return n;
}

/* Where a run is on this GPU: under ZeRO-2/3 its owner's slice or its group's window. */
static CuPtr run_addr(const ExecCuda *ex, const Run *r, bool grad) {
    if (ex->win) return win_addr(ex, r->first, grad);
    return grad ? ex->region[PLAN_GRAD] + (CuPtr)r->at * 4 : ex->shadow + (CuPtr)r->at * 2;
}

/* Group g's (g < 0: every group's) trained gradients summed over the ranks at their owners
 * (grad: one ncclReduce per run, started on stream and not waited for), or 16-bit values from
 * their owners to every rank (every parameter's under ZeRO-3, else the trained ones': one
 * ncclBroadcast per run, waited for). */
static bool owner_collectives(ExecCuda *ex, NclComm *c, int32_t g, bool grad, void *stream, char *err, size_t errlen) {
    const bool z3 = ex->win && ex->win->values;
    Run *runs = xmalloc(((size_t)ex->plan->n_params + 1) * sizeof *runs);
    const size_t n = param_runs(ex, g, grad ? RUN_GRADS : z3 ? RUN_VALUES : RUN_TRAINED_VALUES, true, runs);
    char whose[48];
    if (g < 0) snprintf(whose, sizeof whose, "the trained parameters");
    else if (g == 0) snprintf(whose, sizeof whose, "the parameters outside the layers");
    else snprintf(whose, sizeof whose, "layer %d's parameters", (int)(g - 1));
    bool ok = true;
    for (size_t r = 0; r < n && ok; r++) {
        char what[96];
        const CuPtr a = run_addr(ex, &runs[r], grad);
        snprintf(what, sizeof what, "%s%s: %s rank %d", ex->win ? z3 ? "ZeRO-3, " : "ZeRO-2, " : "", whose,
                 grad ? "gradients to" : "16-bit weights from", runs[r].owner);
        ok = grad ? ncl_start_reduce_sum(c, a, a, (size_t)runs[r].n, runs[r].owner, stream, what, err, errlen)
                  : ncl_start_broadcast_bytes(c, a, a, (size_t)runs[r].n * 2, runs[r].owner, stream, what, err, errlen);
    }
    free(runs);
    return ok;
}

/* Group g's values from their owners into every rank's window, or (grad) its gradients summed
 * over the ranks into their owners' slices, started on the windows' stream once the compute
 * stream's launches so far are done; the window's event `ready` or `reduced` recorded after. */
static bool win_move(ExecCuda *ex, int32_t g, bool grad) {
    Windows *z = ex->win;
    const int k = z->group[g].slot;
    const char *what = grad ? "ZeRO: gradients ready for their owners" : "ZeRO-3: a window free for a gather";
    if (!cudrv_event_record(ex->d, z->event, NULL, what, ex->err, ex->errlen) ||
        !cudrv_stream_wait(ex->d, z->stream, z->event, what, ex->err, ex->errlen) ||
        !owner_collectives(ex, z->nccl, g, grad, z->stream, ex->err, ex->errlen) ||
        !cudrv_event_record(ex->d, grad ? z->reduced[k] : z->ready[k], z->stream, grad ? "ZeRO: a window reduced"
                            : "ZeRO-3: a window gathered", ex->err, ex->errlen))
        return false;
    if (grad) z->reduce_pending[k] = true;
    else z->ready_pending[k] = true;
    return true;
}

/* Group g's gradients on their way to their owners, when it has some. */
static bool win_reduce(ExecCuda *ex, int32_t g) {
    WinGroup *grp = &ex->win->group[g];
    if (!grp->dirty) return true;
    grp->dirty = false;
    return win_move(ex, g, true);
}

/* Group g in window k (empty): under ZeRO-3 every rank's part of its values, gathered; its
 * gradients are zeroed when first written (win_use). */
static bool win_gather(ExecCuda *ex, int32_t g, int k) {
    Windows *z = ex->win;
    z->group[g].slot = k, z->slot_group[k] = g, z->grads_for[k] = -1;
    if (!z->values) return true;
    z->gathers++;
    return win_move(ex, g, false);
}

/* Empty window k (its gradients' reduction started first). */
static bool win_evict(ExecCuda *ex, int k) {
    Windows *z = ex->win;
    const int32_t g = z->slot_group[k];
    if (g < 0) return true;
    if (!win_reduce(ex, g)) return false;
    z->group[g].slot = -1, z->slot_group[k] = -1;
    return true;
}

/* The window for group g: 0 for the parameters outside the layers; else an empty layer window,
 * or the one used least recently that op's other groups (`need`) do not hold. */
static int win_pick_slot(const Windows *z, int32_t g, const int32_t *need) {
    if (g == 0) return 0;
    int best = -1;
    for (int k = 1; k < WIN_SLOTS; k++) {
        if (z->slot_group[k] < 0) return k;
        bool pinned = false;
        for (int j = 0; j < WIN_NEED; j++) pinned = pinned || need[j] == z->slot_group[k];
        if (!pinned && (best < 0 || z->slot_used[k] < z->slot_used[best])) best = k;
    }
    return best; /* win_map_ops checked that an op needs two layers at most */
}

/* Group g's window k as op i is about to use it: the compute stream after its gather and, when op
 * i adds to its gradients and they are not yet g's, after the window's last reduction, then
 * zeroed for g. */
static bool win_use(ExecCuda *ex, int32_t g, int k, bool writes) {
    Windows *z = ex->win;
    if (z->ready_pending[k]) {
        if (!cudrv_stream_wait(ex->d, NULL, z->ready[k], "ZeRO-3: a window's gather", ex->err, ex->errlen)) return false;
        z->ready_pending[k] = false;
    }
    if (!writes || z->grads_for[k] == g) return true;
    if (z->reduce_pending[k]) {
        if (!cudrv_stream_wait(ex->d, NULL, z->reduced[k], "ZeRO: a window's reduction", ex->err, ex->errlen))
            return false;
        z->reduce_pending[k] = false;
    }
    z->grads_for[k] = g;
    return cudrv_zero(ex->d, z->slot_grad[k], (size_t)z->group[g].grad_bytes, "ZeRO gradient window", ex->err,
                      ex->errlen);
}

/* Whether an op from i on needs group h before (or when) the first one that needs group g. */
static bool win_needed_before(const Windows *z, int32_t n_ops, int32_t i, int32_t h, int32_t g) {
    for (int32_t j = i; j < n_ops; j++) {
        if (needs(z, j, h)) return true;
        if (needs(z, j, g)) return false;
    }
    return false;
}

/* ZeRO-3, after op i's windows: the next layer gathered ahead into a layer window that no op
 * needs before it (the least recently used such one), so that its gather runs while the compute
 * stream runs the ops before it. */
static bool win_prefetch(ExecCuda *ex, int32_t i) {
    Windows *z = ex->win;
    const int32_t g = z->next_group[i];
    if (!z->values || g <= 0 || z->group[g].slot >= 0) return true;
    int victim = -1;
    for (int k = 1; k < WIN_SLOTS; k++) {
        const int32_t h = z->slot_group[k];
        if (h >= 0 && win_needed_before(z, ex->plan->n_ops, i, h, g)) continue;
        if (victim < 0 || (z->slot_group[victim] >= 0 && (h < 0 || z->slot_used[k] < z->slot_used[victim]))) victim = k;
    }
    if (victim < 0) return true;
    z->prefetched++;
    z->slot_used[victim] = ++z->clock; /* fresh: not the first out when an op needs a window now */
    return win_evict(ex, victim) && win_gather(ex, g, victim);
}

/* Before op i: every group it touches in a window and ready for it, marked when it adds to their
 * gradients; then the next layer's gather started. */
static bool win_before(ExecCuda *ex, int32_t i) {
    Windows *z = ex->win;
    if (!z) return true;
    for (int k = 0; k < WIN_NEED && z->need[i][k] >= 0; k++) {
        const int32_t g = z->need[i][k];
        WinGroup *grp = &z->group[g];
        if (grp->slot < 0) {
            const int s = win_pick_slot(z, g, z->need[i]);
            if (!win_evict(ex, s) || !win_gather(ex, g, s)) return false;
        }
        const bool writes = ex->train && (z->writes[i] >> k & 1);
        z->slot_used[grp->slot] = ++z->clock;
        if (!win_use(ex, g, grp->slot, writes)) return false;
        if (writes) grp->dirty = true;
    }
    return win_prefetch(ex, i);
}

/* After op i of a training call: the reductions of the groups it was the last to add to, started
 * while the backward pass goes on with the layers below. */
static bool win_after_op(ExecCuda *ex, int32_t i) {
    Windows *z = ex->win;
    if (!z || !ex->train) return true;
    for (int k = 0; k < WIN_NEED && z->need[i][k] >= 0; k++) {
        const int32_t g = z->need[i][k];
        if (z->group[g].last_write != i || !z->group[g].dirty) continue;
        z->early++;
        if (!win_reduce(ex, g)) return false;
    }
    return true;
}

/* After a call: every gradient at its owner, every window empty (the optimizer changes the
 * owners' values before the next call), the host waiting for the windows' stream. After a
 * failure nothing more is sent or waited for. */
static bool win_after(ExecCuda *ex, bool ok) {
    Windows *z = ex->win;
    if (!z) return ok;
    for (int k = 0; k < WIN_SLOTS; k++) {
        const int32_t g = z->slot_group[k];
        if (g < 0) continue;
        if (!ok) z->group[g].dirty = false;
        ok = win_evict(ex, k) && ok;
    }
    ok = ok && ncl_wait(z->nccl, z->stream, ex->err, ex->errlen);
    for (int k = 0; k < WIN_SLOTS; k++) z->ready_pending[k] = z->reduce_pending[k] = false, z->grads_for[k] = -1;
    return ok;
}

static bool win_ready(ExecCuda *ex) {
    if (ex->win && !ex->win->nccl)
        return errf(ex->err, ex->errlen, "ZeRO-%d on GPUs moves the gradients with NCCL, and it has none "
                    "(exec_cuda_use_nccl)", ex->stage);
    return true;
}

// --- launching

typedef struct {
    uint64_t value[MAX_ARGS];
    void *ptr[MAX_ARGS];
    int n;
} Args;

static void arg_u64(Args *a, uint64_t v) {
    a->value[a->n] = v;
    a->ptr[a->n] = &a->value[a->n];
    a->n++;
}

static void arg_f32(Args *a, float f) {
    a->value[a->n] = 0;
    memcpy(&a->value[a->n], &f, sizeof f);
    a->ptr[a->n] = &a->value[a->n];
    a->n++;
}

static void arg_i32(Args *a, int32_t i) {
    a->value[a->n] = 0;
    memcpy(&a->value[a->n], &i, sizeof i);
    a->ptr[a->n] = &a->value[a->n];
    a->n++;
}

/* A tensor's device address: parameters as their bf16 copy (what kernels and products read),
 * activations where the device layout put them, gradients and inputs in their region at 4 bytes
 * per element; -1 is NULL. */
static CuPtr dptr(const ExecCuda *ex, int32_t id) {
    if (id < 0) return 0;
    const PlanTensor *t = &ex->plan->tensors[id];
    if (ex->win && (t->region == PLAN_PARAM || t->region == PLAN_GRAD))
        return win_addr(ex, ex->win->param_of[id], t->region == PLAN_GRAD);
    if (t->region == PLAN_PARAM) return ex->shadow + (CuPtr)t->offset * 2;
    if (t->region == PLAN_ACT) {
        assert(ex->act.at[id] >= 0); /* every tensor a launch touches has bytes (act_lifetimes) */
        return ex->region[PLAN_ACT] + (CuPtr)ex->act.at[id];
    }
    return ex->region[t->region] + (CuPtr)t->offset * 4;
}

static int32_t kernel_of(const ExecCuda *ex, int32_t op, const char *template_name) {
    const OpLaunch *l = &ex->ops[op];
    for (int j = 0; j < l->n_kernels; j++)
        if (!strcmp(ex->kernels[l->kernel[j]].template_name, template_name)) return l->kernel[j];
    return -1;
}

static bool launch_k(ExecCuda *ex, int32_t k, Args *a, int32_t op) {
    char what[160];
    if (k < 0) {
        const char *kind = op >= 0 ? plan_op_name((PlanOpKind)ex->plan->ops[op].kind) : "optimizer";
        return errf(ex->err, ex->errlen, "op %d (%s): the trainer's cuda/launches.txt lacks a kernel it needs",
                    (int)op, kind);
    }
    const Kernel *kn = &ex->kernels[k];
    snprintf(what, sizeof what, "%s, op %d", kn->name, (int)op);
    return cudrv_launch(ex->d, kn->fn, kn->grid, kn->block, a->ptr, what, ex->err, ex->errlen);
}

/* Kernel k on `blocks` blocks instead of its own grid (the optimizer's, on a ZeRO share). */
static bool launch_blocks(ExecCuda *ex, int32_t k, int64_t blocks, Args *a) {
    if (blocks == 0) return true;
    Kernel kn = ex->kernels[k];
    char what[160];
    snprintf(what, sizeof what, "%s, %lld blocks from %lld", kn.name, (long long)blocks, (long long)ex->block0);
    kn.grid[0] = (uint32_t)blocks;
    return cudrv_launch(ex->d, kn.fn, kn.grid, kn.block, a->ptr, what, ex->err, ex->errlen);
}

/* Launch the op's kernel of this template. */
static bool launch(ExecCuda *ex, int32_t op, const char *template_name, Args *a) {
    return launch_k(ex, kernel_of(ex, op, template_name), a, op);
}

/* C = alpha op(A) op(B) + beta C, plus bias (N, floatX; 0: none) by cuBLASLt's epilogue. */
static bool gemm_bias(ExecCuda *ex, int32_t op, CuPtr C, bool c_f32, CuPtr A, CuPtr B, int64_t M, int64_t N, int64_t K,
                      bool ta, bool tb, float alpha, float beta, CuPtr bias) {
    char what[64];
    snprintf(what, sizeof what, "op %d %s", (int)op, plan_op_name((PlanOpKind)ex->plan->ops[op].kind));
    CuGemm g = {.C = C, .A = A, .B = B, .bias = bias, .c_type = c_f32 ? CU_F32 : ex->storage, .ab_type = ex->storage,
                .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .alpha = alpha, .beta = beta};
    return cudrv_gemm(ex->d, &g, what, ex->err, ex->errlen);
}

static bool gemm(ExecCuda *ex, int32_t op, CuPtr C, bool c_f32, CuPtr A, CuPtr B, int64_t M, int64_t N, int64_t K,
                 bool ta, bool tb, float alpha, float beta) {
    return gemm_bias(ex, op, C, c_f32, A, B, M, N, K, ta, tb, alpha, beta, 0);
}

static bool is_grad(const ExecCuda *ex, int32_t id) {
    return id >= 0 && ex->plan->tensors[id].region == PLAN_GRAD;
}

static uint64_t dropout_first(int64_t adapter) { return (uint64_t)adapter << 40; }

static bool dropout(ExecCuda *ex, int32_t opi, const char *tmpl, int32_t out, int32_t in) {
    const PlanOp *op = &ex->plan->ops[opi];
    Args a = {0};
    arg_u64(&a, dptr(ex, out)), arg_u64(&a, dptr(ex, in)), arg_u64(&a, ex->seed);
    arg_u64(&a, rng_purpose(RNG_DROPOUT, (uint32_t)ex->step)), arg_u64(&a, dropout_first(op->n[4]));
    return launch(ex, opi, tmpl, &a);
}

/* exec_cpu.c's run_linear: y = x W^T (+ bias) (+ s drop(x) A^T B^T). Without LoRA the bias is
 * cuBLASLt's BIAS epilogue (added before y is rounded, no pass of its own); with LoRA, lora_add
 * adds it in the pass over y that it makes anyway. */
static bool run_linear(ExecCuda *ex, int32_t opi) {
    const PlanOp *op = &ex->plan->ops[opi];
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    const CuPtr y = dptr(ex, op->out[0]), x = dptr(ex, op->in[0]);
    const CuPtr bias = op->in[3] < 0 ? dptr(ex, op->in[2]) : 0;
    if (!gemm_bias(ex, opi, y, false, x, dptr(ex, op->in[1]), M, N, K, false, true, 1, 0, bias)) return false;
    if (op->in[3] < 0) return true;
    Args a = {0};
    CuPtr xin = x;
    if (op->tmp[0] >= 0 && ex->train) {
        if (!dropout(ex, opi, "dropout_fwd", op->tmp[0], op->in[0])) return false;
        xin = dptr(ex, op->tmp[0]);
    }
    const CuPtr u = dptr(ex, op->out[1]);
    if (!gemm(ex, opi, u, false, xin, dptr(ex, op->in[3]), M, R, K, false, true, 1, 0)) return false;
    arg_u64(&a, y), arg_u64(&a, u), arg_u64(&a, dptr(ex, op->in[4])), arg_u64(&a, dptr(ex, op->in[2]));
    return launch(ex, opi, "lora_add", &a);
}

static bool colsum(ExecCuda *ex, int32_t opi, int32_t dw, int32_t dy, int32_t x, int32_t rstd) {
    Args a = {0};
    arg_u64(&a, ex->colsum), arg_u64(&a, dptr(ex, dy)), arg_u64(&a, dptr(ex, x)), arg_u64(&a, dptr(ex, rstd));
    if (!launch(ex, opi, "colsum_partial", &a)) return false;
    Args b = {0};
    arg_u64(&b, dptr(ex, dw)), arg_u64(&b, ex->colsum);
    return launch(ex, opi, "colsum_finish", &b);
}

/* exec_cpu.c's run_linear_bwd, with the products in cuBLASLt (parameter gradients in fp32). */
static bool run_linear_bwd(ExecCuda *ex, int32_t opi) {
    const PlanOp *op = &ex->plan->ops[opi];
    const int64_t M = op->n[0], N = op->n[1], K = op->n[2], R = op->n[3];
    const CuPtr dy = dptr(ex, op->in[0]), x = dptr(ex, op->in[1]), W = dptr(ex, op->in[2]);
    const CuPtr dx = dptr(ex, op->out[0]), dW = dptr(ex, op->out[1]);
    const CuPtr dA = dptr(ex, op->out[3]), dB = dptr(ex, op->out[4]);
    if (dW && !gemm(ex, opi, dW, is_grad(ex, op->out[1]), dy, x, N, K, M, true, false, 1, 1)) return false;
    // The bias gradient stays colsum's, not cuBLASLt's BGRADB epilogue on the dW product (whose
    // layout would fit: a sum of dy over that product's k = M): BGRADB stores the gradient
    // ("Stores Bias gradient in the auxiliary output"), while ours accumulates over micro-batches
    // as dW does with beta 1, so it would need a scratch vector and an add kernel, two launches
    // again; it would also not exist when W is frozen and the bias not, and its summation order is
    // not documented, where colsum's is fixed (the same bits every run).
    if (op->out[2] >= 0 && !colsum(ex, opi, op->out[2], op->in[0], -1, -1)) return false;
    if (dx && !gemm(ex, opi, dx, false, dy, W, M, K, N, false, false, 1, (op->accum & 1) ? 1.0f : 0.0f)) return false;
    if (op->in[3] < 0) return true;
    const CuPtr A = dptr(ex, op->in[3]), B = dptr(ex, op->in[4]), u = dptr(ex, op->in[5]);
    const CuPtr du = dptr(ex, op->tmp[0]), xd = dptr(ex, op->tmp[1]);
    const float s = op->f[0];
    if (dB && !gemm(ex, opi, dB, true, dy, u, N, R, M, true, false, s, 1)) return false;
    if (!du) return true;
    if (!gemm(ex, opi, du, false, dy, B, M, R, N, false, false, s, 0)) return false;
    if (dA) {
        CuPtr xin = x;
        if (xd) {
            if (!dropout(ex, opi, "dropout_fwd", op->tmp[1], op->in[1])) return false;
            xin = xd;
        }
        if (!gemm(ex, opi, dA, true, du, xin, R, K, M, true, false, 1, 1)) return false;
    }
    if (!dx) return true;
    if (!xd) return gemm(ex, opi, dx, false, du, A, M, K, R, false, false, 1, 1);
    return gemm(ex, opi, xd, false, du, A, M, K, R, false, false, 1, 0) &&
           dropout(ex, opi, "dropout_accum", op->out[0], op->tmp[1]);
}

static bool run_rope(ExecCuda *ex, int32_t opi) {
    const Plan *p = ex->plan;
    const PlanOp *op = &p->ops[opi];
    const PlanOp *pair = opi + 1 < p->n_ops && ex->ops[opi + 1].fused_into == opi ? &p->ops[opi + 1] : NULL;
    const int w = (int)op->n[3];
    Args a = {0};
    arg_u64(&a, dptr(ex, op->out[0])), arg_u64(&a, dptr(ex, op->in[0]));
    arg_u64(&a, pair ? dptr(ex, pair->out[0]) : 0), arg_u64(&a, pair ? dptr(ex, pair->in[0]) : 0);
    arg_u64(&a, dptr(ex, op->in[1])), arg_u64(&a, ex->inv_freq + (CuPtr)w * sizeof ex->inv_freq_h[0]);
    arg_f32(&a, ex->rope_scale[w]);
    return launch(ex, opi, "rope_apply", &a);
}

/* The loss over vocabulary chunks (crossentropy.cuh): each chunk's logits by cuBLASLt from the
 * LM head's input and weight, online statistics, the loss; then, when training, each chunk
 * again, its gradient, and the LM head's two backward products for it. */
static bool run_loss(ExecCuda *ex, int32_t opi, float grad_scale, ExecLoss *loss) {
    const Plan *p = ex->plan;
    const PlanOp *op = &p->ops[opi], *lm = &p->ops[ex->lm_op];
    const int64_t N = op->n[0] * op->n[1], V = op->n[2], C = lm->n[2];
    const CuPtr x = dptr(ex, lm->in[0]), W = dptr(ex, lm->in[1]), labels = dptr(ex, op->in[1]);
    for (int64_t v0 = 0; v0 < V; v0 += ex->vc) {
        const int64_t width = V - v0 < ex->vc ? V - v0 : ex->vc;
        if (!gemm(ex, opi, ex->chunk, true, x, W + (CuPtr)(v0 * C * 2), N, width, C, false, true, 1, 0)) return false;
        Args a = {0};
        arg_u64(&a, ex->row_max), arg_u64(&a, ex->row_sum), arg_u64(&a, ex->target), arg_u64(&a, ex->chunk);
        arg_u64(&a, labels), arg_i32(&a, (int32_t)v0), arg_i32(&a, (int32_t)width);
        if (!launch(ex, opi, "ce_stats", &a)) return false;
    }
    Args f = {0};
    arg_u64(&f, ex->loss_sum), arg_u64(&f, ex->count), arg_u64(&f, ex->row_max), arg_u64(&f, ex->row_sum);
    arg_u64(&f, ex->target), arg_u64(&f, labels);
    double sum = 0;
    int64_t count = 0;
    if (!launch(ex, opi, "ce_finish", &f) || !cudrv_get(ex->d, &sum, ex->loss_sum, 8, "read the loss", ex->err, ex->errlen) ||
        !cudrv_get(ex->d, &count, ex->count, 8, "read the loss", ex->err, ex->errlen))
        return false;
    if (loss) *loss = (ExecLoss){.loss_sum = sum, .count = count, .loss = count ? sum / (double)count : 0};
    if (!ex->train || ex->lm_bwd_op < 0) return true;
    const PlanOp *bw = &p->ops[ex->lm_bwd_op];
    const float scale = grad_scale > 0 ? grad_scale : count ? 1.0f / (float)count : 0.0f;
    for (int64_t v0 = 0; v0 < V; v0 += ex->vc) {
        const int64_t width = V - v0 < ex->vc ? V - v0 : ex->vc;
        if (!gemm(ex, opi, ex->chunk, true, x, W + (CuPtr)(v0 * C * 2), N, width, C, false, true, 1, 0)) return false;
        Args a = {0};
        arg_u64(&a, ex->dchunk), arg_u64(&a, ex->chunk), arg_u64(&a, labels), arg_u64(&a, ex->row_max);
        arg_u64(&a, ex->row_sum), arg_i32(&a, (int32_t)v0), arg_i32(&a, (int32_t)width), arg_f32(&a, scale);
        if (!launch(ex, opi, "ce_grad", &a)) return false;
        const float beta = v0 > 0 || (bw->accum & 1) ? 1.0f : 0.0f;
        if (bw->out[0] >= 0 && !gemm(ex, opi, dptr(ex, bw->out[0]), false, ex->dchunk, W + (CuPtr)(v0 * C * 2), N, C,
                                     width, false, false, 1, beta))
            return false;
        if (bw->out[1] >= 0 && !gemm(ex, opi, dptr(ex, bw->out[1]) + (CuPtr)(v0 * C * 4), true, ex->dchunk, x, width,
                                     C, N, true, false, 1, 1))
            return false;
    }
    return true;
}

static bool run_op(ExecCuda *ex, int32_t i, float grad_scale, ExecLoss *loss) {
    const PlanOp *op = &ex->plan->ops[i];
    if (ex->ops[i].fused_into >= 0 || i == ex->lm_op || i == ex->lm_bwd_op) return true;
    Args a = {0};
#define P(id) arg_u64(&a, dptr(ex, (id)))
    switch ((PlanOpKind)op->kind) {
    case OP_EMBED: P(op->out[0]), P(op->in[0]), P(op->in[1]); return launch(ex, i, "embedding_fwd", &a);
    case OP_ADD: {
        int32_t k = kernel_of(ex, i, "add_rmsnorm_fwd");
        if (k < 0) {
            P(op->out[0]), P(op->in[0]), P(op->in[1]);
            return launch(ex, i, "add_fwd", &a);
        }
        const PlanOp *norm = &ex->plan->ops[i + 1];
        P(op->out[0]), P(norm->out[0]), P(norm->out[1]), P(op->in[0]), P(op->in[1]), P(norm->in[1]);
        return launch_k(ex, k, &a, i);
    }
    case OP_RMSNORM: P(op->out[0]), P(op->out[1]), P(op->in[0]), P(op->in[1]); return launch(ex, i, "rmsnorm_fwd", &a);
    case OP_LINEAR: return run_linear(ex, i);
    case OP_ROPE:
    case OP_ROPE_BWD: return run_rope(ex, i);
    case OP_ATTENTION:
        P(op->out[0]), P(op->out[1]), P(op->in[0]), P(op->in[1]), P(op->in[2]), P(op->in[3]);
        return launch(ex, i, "attention_fwd", &a);
    case OP_GLU: P(op->out[0]), P(op->in[0]), P(op->in[1]); return launch(ex, i, "glu_fwd", &a);
    case OP_SOFTCAP: P(op->out[0]), P(op->in[0]); return launch(ex, i, "softcap_fwd", &a);
    case OP_LOSS: return run_loss(ex, i, grad_scale, loss);
    case OP_EMBED_BWD: P(op->out[0]), P(op->in[1]), P(op->in[0]); return launch(ex, i, "embedding_bwd", &a);
    case OP_RMSNORM_BWD:
        if (op->out[0] >= 0) {
            P(op->out[0]), P(op->in[0]), P(op->in[1]), P(op->in[2]), P(op->in[3]);
            if (!launch(ex, i, "rmsnorm_bwd", &a)) return false;
        }
        return op->out[1] < 0 || colsum(ex, i, op->out[1], op->in[0], op->in[1], op->in[3]);
    case OP_LINEAR_BWD: return run_linear_bwd(ex, i);
    case OP_ATTENTION_BWD: {
        P(op->out[0]), P(op->tmp[0]), P(op->in[0]), P(op->in[1]), P(op->in[2]), P(op->in[3]), P(op->in[4]);
        P(op->in[5]), P(op->in[6]);
        if (!launch(ex, i, "attention_bwd_dq", &a)) return false;
        Args b = {0};
        arg_u64(&b, dptr(ex, op->out[1])), arg_u64(&b, dptr(ex, op->out[2])), arg_u64(&b, dptr(ex, op->in[0]));
        arg_u64(&b, dptr(ex, op->in[2])), arg_u64(&b, dptr(ex, op->tmp[0])), arg_u64(&b, dptr(ex, op->in[3]));
        arg_u64(&b, dptr(ex, op->in[4])), arg_u64(&b, dptr(ex, op->in[5])), arg_u64(&b, dptr(ex, op->in[6]));
        return launch(ex, i, "attention_bwd_dkdv", &b);
    }
    case OP_GLU_BWD:
        P(op->out[0]), P(op->out[1]), P(op->in[0]), P(op->in[1]), P(op->in[2]);
        return launch(ex, i, "glu_bwd", &a);
    case OP_SOFTCAP_BWD: P(op->out[0]), P(op->in[0]), P(op->in[1]); return launch(ex, i, "softcap_bwd", &a);
    case OP_ACCUM: P(op->out[0]), P(op->in[0]); return launch(ex, i, "accum", &a);
    case OP_KIND_COUNT: break;
    }
#undef P
    return errf(ex->err, ex->errlen, "op %d: kind %d has no CUDA implementation", (int)i, (int)op->kind);
}

/* The micro-batch to the GPU and this batch's rope frequencies (exec_cpu.c's prepare). */
static bool prepare(ExecCuda *ex, const ExecBatch *b, char *err, size_t errlen) {
    const Plan *p = ex->plan;
    const size_t bytes = (size_t)(p->B * p->T) * sizeof(int32_t);
    int32_t maxpos = 0;
    for (int64_t i = 0; i < p->B * p->T; i++) maxpos = b->pos[i] > maxpos ? b->pos[i] : maxpos;
    for (int w = 0; w < 2; w++)
        ex->rope_scale[w] = rope_inv_freq(&p->rope[w], p->HD, p->max_positions, (int64_t)maxpos + 1, ex->inv_freq_h[w]);
    ex->step = b->step;
    ex->err = err, ex->errlen = errlen;
    if (!b->labels) return errf(err, errlen, "the CUDA executor needs labels: it computes the loss, not the logits");
    return cudrv_put(ex->d, dptr(ex, p->input_ids), b->input_ids, bytes, "upload the micro-batch", err, errlen) &&
           cudrv_put(ex->d, dptr(ex, p->seq), b->seq, bytes, "upload the micro-batch", err, errlen) &&
           cudrv_put(ex->d, dptr(ex, p->pos), b->pos, bytes, "upload the micro-batch", err, errlen) &&
           cudrv_put(ex->d, dptr(ex, p->labels), b->labels, bytes, "upload the micro-batch", err, errlen) &&
           cudrv_put(ex->d, ex->inv_freq, ex->inv_freq_h, sizeof ex->inv_freq_h, "upload rope frequencies", err, errlen);
}

/* LLFC_CUDA_CHECK_BOUNDS: after op i, every byte of ACT outside the tensors still holds the
 * poison allocate wrote (the layout put each tensor `guard` bytes from the next). */
static bool check_bounds(ExecCuda *ex, int32_t i) {
    const Plan *p = ex->plan;
    if (!ex->guard) return true;
    if (!cudrv_get(ex->d, ex->act_host, ex->region[PLAN_ACT], (size_t)ex->act.bytes, "check activation bounds",
                   ex->err, ex->errlen))
        return false;
    int64_t from = 0; /* the gap after tensor `prev` (-1: the buffer's start) up to the next one */
    for (int32_t j = 0; j <= ex->n_placed; j++) {
        const int32_t prev = j > 0 ? ex->placed[j - 1] : -1, next = j < ex->n_placed ? ex->placed[j] : -1;
        const int64_t to = next >= 0 ? ex->act.at[next] : ex->act.bytes;
        int64_t bad = -1, last_bad = -1; /* the first and last changed byte of the gap */
        for (int64_t k = from; k < to; k++)
            if (ex->act_host[k] != GUARD_BYTE) last_bad = k, bad = bad < 0 ? k : bad;
        if (bad >= 0) {
            const bool after = prev >= 0 && (next < 0 || bad - from < to - last_bad);
            const int32_t t = after ? prev : next;
            return errf(ex->err, ex->errlen, "op %d (%s) wrote up to %lld bytes %s %s (%lld elements of %d bytes)",
                        (int)i, plan_op_name((PlanOpKind)p->ops[i].kind),
                        (long long)(after ? last_bad - from + 1 : to - bad), after ? "past the end of" : "before",
                        p->tensors[t].name, (long long)p->tensors[t].numel, ex->act.width[t]);
        }
        if (next >= 0) from = ex->act.at[next] + p->tensors[next].numel * ex->act.width[next];
    }
    return true;
}

bool exec_cuda_step(ExecCuda *ex, const ExecBatch *b, float grad_scale, ExecLoss *loss, char *err, size_t errlen) {
    if (!prepare(ex, b, err, errlen)) return false;
    ex->train = true;
    bool ok = win_ready(ex);
    for (int32_t i = 0; ok && i < ex->plan->n_ops; i++)
        ok = win_before(ex, i) && run_op(ex, i, grad_scale, loss) && check_bounds(ex, i) && win_after_op(ex, i) &&
             overlap_after_op(ex, i);
    return win_after(ex, ok);
}

bool exec_cuda_forward(ExecCuda *ex, const ExecBatch *b, ExecLoss *loss, char *err, size_t errlen) {
    if (!prepare(ex, b, err, errlen)) return false;
    ex->train = false;
    const int32_t last = ex->plan->loss_op;
    bool ok = win_ready(ex);
    for (int32_t i = 0; ok && i < ex->plan->n_forward; i++)
        ok = win_before(ex, i) && run_op(ex, i, 0, NULL) && check_bounds(ex, i);
    ok = ok && win_before(ex, last) && run_op(ex, last, 0, loss) && check_bounds(ex, last);
    return win_after(ex, ok);
}

// --- AdamW on the GPU (adamw.cuh)

typedef struct { /* adamw.cuh's AdamWArgs */
    float neg_step[2], decay_mul[2];
    float w1, beta2, one_minus_beta2, bc2_sqrt, eps;
    float unscale;
} AdamWArgs;

/* ZeRO: grad_norm_finish summed the squares of this rank's parameters' norms; the global norm is
 * the root of their sum over the ranks, and the clipping coefficient follows from it as
 * grad_norm_finish computes it (in float). The sum is one double over the TCP group: exact and in
 * rank order, and the host waits for the norm each step anyway (nccl.h sums fp32 only). Under
 * loss scaling an overflow skips the step on every rank alike: they all see the same norm. */
static bool norm_over_ranks(ExecCuda *ex, double max_norm, bool skip_nonfinite) {
    if (!ex->owner) return true;
    double sumsq = 0;
    if (!cudrv_get(ex->d, &sumsq, ex->sumsq, sizeof sumsq, "read the gradient norm", ex->err, ex->errlen) ||
        !dist_allreduce_sum_f64(ex->ranks, &sumsq, 1, ex->err, ex->errlen))
        return false;
    const float norm = (float)sqrt(sumsq), mx = max_norm > 0 ? (float)max_norm : 0.0f;
    float norm_coef[3] = {norm, 1.0f, skip_nonfinite && !isfinite(norm) ? 1.0f : 0.0f};
    if (mx > 0 && isfinite(norm)) {
        const float c = mx / (norm + 1e-6f);
        if (c < 1.0f) norm_coef[1] = c;
    }
    return cudrv_put(ex->d, ex->norm_coef, norm_coef, sizeof norm_coef, "set the gradient norm", ex->err, ex->errlen);
}

bool exec_cuda_adamw(ExecCuda *ex, AdamW *opt, const OptParam *params, size_t n, double lr_factor,
                     double max_norm, float unscale, bool *skipped, double *norm, char *err, size_t errlen) {
    ex->err = err, ex->errlen = errlen;
    if (n != ex->own1 - ex->own0)
        return errf(err, errlen, "AdamW got %zu parameters, the GPU trains %zu", n, ex->own1 - ex->own0);
    if (ex->optimizer[0] < 0) return errf(err, errlen, "this trainer's kernels have no optimizer (nothing trains)");
    const AdamWConfig *c = &opt->cfg;
    opt->step++;
    const double t = (double)opt->step, bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    double scale[2] = {NAN, NAN};
    for (size_t i = 0; i < n; i++) {
        int g = ex->group[ex->own0 + i];
        if (isnan(scale[g])) scale[g] = params[i].lr_scale;
        else if (scale[g] != params[i].lr_scale)
            return errf(err, errlen, "%s: a learning-rate multiplier the GPU optimizer's two groups cannot hold",
                        params[i].name);
    }
    AdamWArgs w = {.w1 = (float)(1.0 - c->beta1), .beta2 = (float)c->beta2, .one_minus_beta2 = (float)(1.0 - c->beta2),
                   .bc2_sqrt = (float)sqrt(bc2), .eps = (float)c->eps, .unscale = unscale};
    for (int g = 0; g < 2; g++) {
        double lr = c->lr * (isnan(scale[g]) ? 1.0 : scale[g]) * lr_factor;
        w.neg_step[g] = (float)(-(lr / bc1));
        w.decay_mul[g] = c->weight_decay != 0.0 ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
    }
    Args a = {0}, b = {0}, u = {0};
    arg_u64(&a, ex->partial), arg_u64(&a, ex->region[PLAN_GRAD]), arg_u64(&a, (uint64_t)ex->block0);
    arg_f32(&a, unscale);
    arg_u64(&b, ex->norm_coef), arg_u64(&b, ex->sumsq), arg_u64(&b, ex->partial);
    arg_f32(&b, max_norm > 0 ? (float)max_norm : 0.0f), arg_i32(&b, (int32_t)ex->own0), arg_i32(&b, (int32_t)ex->own1);
    arg_i32(&b, skipped != NULL);
    arg_u64(&u, ex->master), arg_u64(&u, ex->shadow), arg_u64(&u, ex->region[PLAN_GRAD]);
    arg_u64(&u, ex->m), arg_u64(&u, ex->v), arg_u64(&u, ex->norm_coef);
    u.ptr[u.n++] = &w; /* the struct by value: cuLaunchKernel copies sizeof(AdamWArgs) bytes from here */
    arg_u64(&u, (uint64_t)ex->block0), arg_u64(&u, (uint64_t)ex->state0);
    float norm_coef[3];
    if (!launch_blocks(ex, ex->optimizer[0], ex->n_blocks, &a) || !launch_k(ex, ex->optimizer[1], &b, -1) ||
        !norm_over_ranks(ex, max_norm, skipped != NULL) || !launch_blocks(ex, ex->optimizer[2], ex->n_blocks, &u) ||
        !cudrv_get(ex->d, norm_coef, ex->norm_coef, sizeof norm_coef, "read the gradient norm", err, errlen))
        return false;
    *norm = norm_coef[0];
    if (skipped) *skipped = norm_coef[2] != 0.0f;
    if (skipped && *skipped) opt->step--; /* torch's optimizer.step() did not run */
    return true;
}

// --- data parallel over NCCL

NclComm *exec_cuda_open_nccl(ExecCuda *ex, DistGroup *g, int timeout_s, bool *absent, char *err, size_t errlen) {
    return ncl_open(g, ex->d, timeout_s, absent, err, errlen);
}

bool exec_cuda_allreduce_grads(ExecCuda *ex, NclComm *c, char *err, size_t errlen) {
    if (ex->win) return errf(err, errlen, "exec_cuda_allreduce_grads: ZeRO-%d reduces each layer's gradients as it goes", ex->stage);
    CuPtr grads = ex->region[PLAN_GRAD];
    return ncl_allreduce_sum(c, grads, grads, (size_t)ex->plan->region_size[PLAN_GRAD], NULL, "gradients", err, errlen);
}

// --- ZeRO-1/2 over NCCL

bool exec_cuda_broadcast_params(ExecCuda *ex, NclComm *c, char *err, size_t errlen) {
    if (!ex->owner) return errf(err, errlen, "exec_cuda_broadcast_params: the executor is not sharded (ZeRO)");
    if (ex->win && ex->win->values) return true; /* the next call gathers the owners' new values */
    return owner_collectives(ex, c, -1, false, NULL, err, errlen) && ncl_wait(c, NULL, err, errlen);
}

// --- data parallel over NCCL, overlapped with the backward pass

/* Bucket g holds the gradients of group g (exec_params_op_groups: layer g - 1's, or at 0 those
 * outside the layers) as runs of tensors that lie together in GRAD: one allreduce each. graph.c
 * gives GRAD tensors in parameter order, 16-float aligned, so a layer is one run and the outside
 * group two (the embedding first; the final
 * norm and the LM head last); a run spans the alignment padding between its tensors, which
 * nothing else uses.
 *
 * After the op that launches the last work on a bucket's gradients (ready), the compute stream
 * (the legacy one every launch goes to) records `event`, the communication stream waits for it
 * (cuStreamWaitEvent: a non-blocking stream does not wait for the legacy one by itself) and the
 * bucket's collectives are started on it; the backward pass goes on with the layers below. One
 * event serves every bucket: a wait takes the record that is latest when it is called. The other
 * way, exec_cuda_overlap_finish polls the communication stream until it is done (ncl_wait), so
 * nothing launched after it (the optimizer, the next step's zeroing) touches a gradient the
 * collectives still use. */
struct Overlap {
    NclComm *nccl;
    void *stream, *event;   /* the communication stream; "the bucket's backward ops are done" */
    bool on;                /* this call of exec_cuda_step starts the buckets as they are ready */
    int32_t n_buckets;      /* plan->L + 1 */
    int32_t *ready;         /* per bucket: the op after which its gradients are final; -1: none is known */
    int32_t *order, next;   /* the buckets by ready op (then those without); the next one to start */
    Run *runs;              /* owner -1: every rank's */
    int32_t *first_run;     /* bucket b's runs: runs[first_run[b] .. first_run[b + 1]) */
    ExecCudaOverlap stats;
};

/* The op whose launches do op i's work (run_op's rule: fused ops in the op they are fused into,
 * the LM head in the loss). */
static int32_t launched_at(const ExecCuda *ex, int32_t i) {
    if (i == ex->lm_op || i == ex->lm_bwd_op) return ex->plan->loss_op;
    return ex->ops[i].fused_into >= 0 ? ex->ops[i].fused_into : i;
}

static int32_t ready_key(const struct Overlap *o, int32_t b) { return o->ready[b] < 0 ? INT32_MAX : o->ready[b]; }

/* Each bucket's last launching op, none at all when an op names two groups; the buckets in that
 * order (insertion sort: a handful of layers). */
static void order_buckets(const ExecCuda *ex, struct Overlap *o) {
    const Plan *p = ex->plan;
    int32_t *group = xmalloc(((size_t)p->n_ops + 1) * sizeof *group);
    const bool separate = exec_params_op_groups(p, group);
    for (int32_t b = 0; b < o->n_buckets; b++) o->ready[b] = -1;
    for (int32_t i = 0; i < p->n_ops && separate; i++) {
        const int32_t g = group[i], at = launched_at(ex, i);
        if (g >= 0 && at > o->ready[g]) o->ready[g] = at;
    }
    free(group);
    for (int32_t b = 0; b < o->n_buckets; b++) {
        int32_t k = b;
        for (; k > 0 && ready_key(o, o->order[k - 1]) > ready_key(o, b); k--) o->order[k] = o->order[k - 1];
        o->order[k] = b;
    }
    o->stats.overlapped = separate;
}

/* Bucket by bucket, the trained parameters' gradients as runs (see above). */
static void make_runs(const ExecCuda *ex, struct Overlap *o) {
    o->runs = xmalloc(((size_t)ex->plan->n_params + 1) * sizeof *o->runs);
    int32_t n = 0;
    for (int32_t b = 0; b < o->n_buckets; b++) {
        o->first_run[b] = n;
        n += (int32_t)param_runs(ex, b, RUN_GRADS, false, o->runs + n);
        if (n > o->first_run[b]) o->stats.buckets++;
    }
    o->first_run[o->n_buckets] = n;
}

bool exec_cuda_overlap_start(ExecCuda *ex, NclComm *c, char *err, size_t errlen) {
    if (ex->dp) return true;
    if (ex->win) return errf(err, errlen, "exec_cuda_overlap_start: ZeRO-%d reduces in its windows", ex->stage);
    struct Overlap *o = xcalloc(1, sizeof *o);
    ex->dp = o;
    o->nccl = c, o->n_buckets = (int32_t)ex->plan->L + 1;
    o->ready = xmalloc((size_t)o->n_buckets * sizeof *o->ready);
    o->order = xmalloc((size_t)o->n_buckets * sizeof *o->order);
    o->first_run = xmalloc(((size_t)o->n_buckets + 1) * sizeof *o->first_run);
    order_buckets(ex, o);
    make_runs(ex, o);
    return cudrv_stream_new(ex->d, &o->stream, "the communication stream for gradients", err, errlen) &&
           cudrv_event_new(ex->d, &o->event, "gradients ready for the communication stream", err, errlen);
}

void exec_cuda_overlap(ExecCuda *ex, bool on) {
    if (ex->dp) ex->dp->on = on;
}

/* Bucket b's collectives on the communication stream, after what the compute stream has so far. */
static bool start_bucket(ExecCuda *ex, int32_t b, bool early) {
    struct Overlap *o = ex->dp;
    const int32_t r0 = o->first_run[b], r1 = o->first_run[b + 1];
    char what[96];
    if (b > 0) snprintf(what, sizeof what, "gradients of layer %d", (int)b - 1);
    else snprintf(what, sizeof what, "gradients outside the layers");
    if (r0 == r1) return true;
    if (!cudrv_event_record(ex->d, o->event, NULL, what, ex->err, ex->errlen) ||
        !cudrv_stream_wait(ex->d, o->stream, o->event, what, ex->err, ex->errlen))
        return false;
    for (int32_t r = r0; r < r1; r++) {
        const CuPtr g = run_addr(ex, &o->runs[r], true);
        if (!ncl_start_allreduce_sum(o->nccl, g, g, (size_t)o->runs[r].n, o->stream, what, ex->err, ex->errlen))
            return false;
    }
    o->stats.started_early += early;
    return true;
}

static bool overlap_after_op(ExecCuda *ex, int32_t op) {
    struct Overlap *o = ex->dp;
    if (!o || !o->on) return true;
    while (o->next < o->n_buckets && o->ready[o->order[o->next]] == op)
        if (!start_bucket(ex, o->order[o->next++], true)) return false;
    return true;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

bool exec_cuda_overlap_finish(ExecCuda *ex, char *err, size_t errlen) {
    struct Overlap *o = ex->dp;
    if (!o) return errf(err, errlen, "exec_cuda_overlap_finish: exec_cuda_overlap_start was not called");
    ex->err = err, ex->errlen = errlen;
    bool ok = true;
    while (ok && o->next < o->n_buckets) ok = start_bucket(ex, o->order[o->next++], false);
    const double t0 = seconds();
    ok = ok && ncl_wait(o->nccl, o->stream, err, errlen);
    o->stats.waited_s += seconds() - t0;
    o->stats.steps++;
    o->next = 0;
    return ok;
}

const ExecCudaOverlap *exec_cuda_overlap_stats(const ExecCuda *ex) { return ex->dp ? &ex->dp->stats : NULL; }

static void overlap_free(ExecCuda *ex) {
    struct Overlap *o = ex->dp;
    if (!o) return;
    char ignored[ERR_LEN]; /* at the end there is nothing left to do about a failure */
    cudrv_event_free(ex->d, o->event, "gradients ready", ignored, sizeof ignored);
    cudrv_stream_free(ex->d, o->stream, "the communication stream", ignored, sizeof ignored);
    free(o->ready), free(o->order), free(o->runs), free(o->first_run);
    free(o);
    ex->dp = NULL;
}
