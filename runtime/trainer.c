/* trainer.c - the order a training run's modules run in. See trainer.h.
 *
 * The semantics follow Hugging Face's Trainer as LLaMA-Factory drives it:
 *   - rows are shuffled per epoch (Philox keyed by seed and epoch; disable_shuffling keeps
 *     the file order), cut into micro-batches of per_device_train_batch_size rows;
 *   - one optimizer step per gradient_accumulation_steps micro-batches (the last group of an
 *     epoch may be shorter); the loss of a step is the sum of its tokens' losses over the
 *     tokens counted in the whole group (transformers' num_items_in_batch), so accumulation
 *     gives the same gradient as one big batch;
 *   - clip to max_grad_norm, learning rate from the schedule at the step, AdamW;
 *   - fp16 on GPUs: torch.cuda.amp.GradScaler's dynamic loss scaling (optim.h's LossScaler):
 *     the loss gradient times the scale, gradients unscaled before the norm, a step with an inf
 *     or NaN gradient skipped on the device (it counts as a step; its loss is logged, its
 *     grad_norm, inf or NaN, is not; the schedule does not advance, as HF Trainer steps its
 *     scheduler only when the optimizer ran) and the scale halved, doubled after 2000 clean
 *     steps; each change is said on stderr;
 *   - the logged loss is the mean of the step losses since the last log;
 *   - data parallel over W ranks (dist.h): global micro-batch g is rows [g*B*W, (g+1)*B*W) of
 *     the epoch's order, rank r takes its r-th B rows, token counts and gradients are summed
 *     over the ranks before the update: W ranks of B rows train exactly as 1 rank of W*B rows.
 *     Rank 0 alone writes logs, checkpoints and outputs.
 */
#include "trainer.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dataset.h"
#include "dist.h"
#include "encode.h"
#include "exec_cpu.h"
#include "exec_cuda.h"
#include "gpu_probe.h"
#include "gradsync.h"
#include "graph.h"
#include "inputs.h"
#include "model.h"
#include "mpiboot.h"
#include "optim.h"
#include "outputs.h"
#include "plot.h"
#include "rng.h"
#include "schedule.h"
#include "tokcache.h"
#include "tokenizer.h"
#include "trainlog.h"

typedef struct {
    const Recipe *r;
    const Payload *payload;
    ModelSpec spec;
    bool have_spec;
    Tokenizer *tok;
    DataSet *data;
    EncodedSet train, eval;
    bool have_eval;
    Plan *plan;
    ExecCpu *ex;                                   /* the executor: the CPU's, */
    ExecCuda *gpu;                                 /* or the GPU's */
    OptParam *params;
    size_t n_params;
    AdamW opt;
    bool have_opt;
    Schedule sched;
    TrainerState state;
    TrainLog log;
    CkptPosition pos;
    int64_t B, T, accum, total_steps, n_epochs;
    int32_t pad_id;
    int32_t *ids, *labels, *seq, *posn, *scratch; /* one micro-batch, (B, T) each */
    uint64_t *order;                               /* this epoch's row order */
    double t0;
    DistGroup *group;                              /* the ranks of a data-parallel run */
    NclComm *nccl;                                 /* their GPUs' NCCL communicator, if every rank has NCCL */
    int rank, world, local_rank;
    int64_t die_at_step;                           /* tests: LLFC_TEST_KILL=RANK:STEP, else -1 */
    int zero;                                      /* ZeRO stage in effect (0 on one rank) */
    int *owner;                                    /* ZeRO: the rank that updates params[i] */
    int *plan_owner;                               /* ZeRO-3: the rank that keeps plan parameter i */
    GradSync *sync;                                /* CPU data parallel: reduction during backward */
    bool overlap;                                  /* GPU data parallel over NCCL: the same (exec_cuda) */
    bool nccl_alone;                               /* LLFC_NCCL_ONE_RANK=1: one GPU through the NCCL path */
    OptParam *owned;                               /* ZeRO: this rank's parameters */
    size_t n_owned;
    bool fp16;                                     /* the GPU keeps f16: loss scaling */
    LossScaler scaler;
} Run;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int fail(const char *what, const char *err) {
    fprintf(stderr, "error: %s%s%s\n", what, *what ? ": " : "", err);
    return 1;
}

// --- inputs

/* The Lua library and the embedded template, as the encoder wants them. */
static size_t payload_lua(const Payload *p, LuaSource *lib, size_t max, LuaSource *tpl) {
    size_t n = 0;
    *tpl = (LuaSource){0};
    for (size_t i = 0; i < payload_count(p); i++) {
        const PayloadEntry *e = payload_entry(p, i);
        if (!strncmp(e->name, "lua/llfc/", 9) && n < max)
            lib[n++] = (LuaSource){(char *)e->name, (char *)e->name, (char *)e->data, e->size};
        if (!strcmp(e->name, "lua/template.lua"))
            *tpl = (LuaSource){"lua/template.lua", "lua/template.lua (embedded)", (char *)e->data, e->size};
    }
    return n;
}

static bool load_data(Run *run, char *err, size_t errlen) {
    DataOptions opt;
    if (!data_options_from_recipe(run->r, &opt, err, errlen)) return false;
    const PayloadEntry *hook = payload_find(run->payload, "lua/hook.lua");
    if (hook) opt.hook_text = (const char *)hook->data, opt.hook_len = hook->size;
    run->data = data_load(&opt, err, errlen);
    data_options_free(&opt);
    if (!run->data) return false;
    if (run->rank == 0) data_report(run->data, stderr);
    return true;
}

typedef struct {
    Encoder *enc;
    const DataExample *ex;
    size_t n;
} EncodeJob;

static bool run_encoder(void *ctx, EncodedSet *out, char *err, size_t errlen) {
    EncodeJob *job = ctx;
    return enc_run(job->enc, job->ex, job->n, out, err, errlen);
}

/* One split's rows: from the token cache when its key (the examples as loaded, the tokenizer
 * files, the encoder and recipe keys) is unchanged, else encoded and cached (tokcache.h). */
static bool encode_split(Run *run, Encoder *enc, const char *split, const DataExample *ex, size_t n,
                         EncodedSet *out, char *err, size_t errlen) {
    TokCacheKeyBuilder b;
    tokcache_key_init(&b);
    tokcache_key_examples(&b, ex, n);
    if (!tokcache_key_tokenizer(&b, R_STR(run->r, model_name_or_path), err, errlen)) return false;
    tokcache_key_encoding(&b, enc, run->r);
    TokCacheKey key;
    tokcache_key_final(&b, &key);
    char *path = tokcache_path(run->r, split);
    EncodeJob job = {enc, ex, n};
    StrBuf log = {0};
    bool ok = tokcache_get(path, R_BOOL(run->r, overwrite_cache), &key, run_encoder, &job, out, &log, err, errlen);
    if (log.data && run->rank == 0) fprintf(stderr, "%s\n", log.data);
    sb_free(&log);
    free(path);
    return ok;
}

static bool encode_data(Run *run, char *err, size_t errlen) {
    LuaSource lib[64], tpl;
    size_t n_lib = payload_lua(run->payload, lib, 64, &tpl);
    EncodeOptions o;
    enc_options_from_recipe(run->r, &o);
    StrBuf notes = {0};
    Encoder *enc = enc_new(&o, run->tok, R_STR(run->r, model_name_or_path), lib, n_lib,
                           tpl.text ? &tpl : NULL, &notes, err, errlen);
    if (notes.data) fputs(notes.data, stderr);
    sb_free(&notes);
    if (!enc) return false;
    if (enc_id_limit(enc) > (size_t)run->spec.V) { // LF would resize the embedding; llfc cannot yet
        errf(err, errlen, "template %s needs token ids up to %zu but %s has %lld embedding rows; "
             "llfc cannot resize embeddings yet (choose a template whose tokens the model has)",
             R_STR(run->r, template), enc_id_limit(enc) - 1, R_STR(run->r, model_name_or_path),
             (long long)run->spec.V);
        enc_free(enc);
        return false;
    }
    size_t n_train, n_eval;
    const DataExample *train = data_train(run->data, &n_train), *eval = data_eval(run->data, &n_eval);
    bool ok = encode_split(run, enc, "train", train, n_train, &run->train, err, errlen);
    if (ok && n_eval > 0) ok = run->have_eval = encode_split(run, enc, "eval", eval, n_eval, &run->eval, err, errlen);
    run->pad_id = enc_pad_id(enc);
    enc_free(enc);
    if (!ok) return false;
    StrBuf s = {0};
    enc_stats_summary(&run->train, &s);
    if (run->rank == 0) fprintf(stderr, "%s\n", s.data ? s.data : "");
    sb_free(&s);
    if (run->train.kind != ENC_ROWS_SFT && run->train.kind != ENC_ROWS_PACKED && run->train.kind != ENC_ROWS_PT)
        return errf(err, errlen, "stage %s: only sft and pt train on the CPU executor so far",
                    R_STR(run->r, stage));
    if (run->train.n_rows == 0) return errf(err, errlen, "no training rows: every example was dropped");
    return true;
}

/* The plan: the trainer's compiled one when the payload has it, else built for this model. */
static bool load_plan(Run *run, char *err, size_t errlen) {
    const PayloadEntry *e = payload_find(run->payload, "plan.bin");
    run->plan = e ? plan_deserialize(e->data, e->size, err, errlen) : graph_build_recipe(run->r, &run->spec, err, errlen);
    if (!run->plan) return false;
    if (run->plan->V != run->spec.V || run->plan->C != run->spec.C || run->plan->L != run->spec.L)
        return errf(err, errlen, "model_name_or_path: %s has another shape (hidden %lld, layers %lld, vocab "
                    "%lld) than the model this trainer was compiled for (%lld, %lld, %lld); recompile with llfc",
                    R_STR(run->r, model_name_or_path), (long long)run->spec.C, (long long)run->spec.L,
                    (long long)run->spec.V, (long long)run->plan->C, (long long)run->plan->L,
                    (long long)run->plan->V);
    run->B = run->plan->B;
    run->T = run->plan->T;
    return true;
}

// --- the executor: a GPU's when the recipe's device allows and one is usable, else the CPU's

static const ExecParam *ex_params(const Run *run, bool all, size_t *n) {
    if (run->gpu) return all ? exec_cuda_all_params(run->gpu, n) : exec_cuda_params(run->gpu, n);
    return all ? exec_cpu_all_params(run->ex, n) : exec_cpu_params(run->ex, n);
}

static bool ex_zero_grad(Run *run, char *err, size_t errlen) {
    if (run->gpu) return exec_cuda_zero_grad(run->gpu, err, errlen);
    exec_cpu_zero_grad(run->ex);
    return true;
}

static bool ex_step(Run *run, const ExecBatch *b, float grad_scale, ExecLoss *loss, char *err, size_t errlen) {
    if (run->gpu) return exec_cuda_step(run->gpu, b, grad_scale, loss, err, errlen);
    return exec_cpu_step(run->ex, b, grad_scale, loss, err, errlen);
}

static bool ex_forward(Run *run, const ExecBatch *b, ExecLoss *loss, char *err, size_t errlen) {
    if (run->gpu) return exec_cuda_forward(run->gpu, b, loss, err, errlen);
    return exec_cpu_forward(run->ex, b, loss, err, errlen) != NULL;
}

/* Host copies of the weights and AdamW state, current (a no-op on the CPU executor). */
static bool ex_to_host(Run *run, char *err, size_t errlen) {
    return !run->gpu || exec_cuda_to_host(run->gpu, run->have_opt ? &run->opt : NULL, err, errlen);
}

// --- ZeRO-3 on the CPU executor: its collectives over the ranks' TCP group

static bool shard_gather(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    (void)param;
    return dist_broadcast_from(ctx, owner, buf, sizeof(float) * (size_t)n, err, errlen);
}

static bool shard_reduce(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    (void)param;
    return dist_reduce_sum_to(ctx, owner, buf, (size_t)n, err, errlen);
}

static bool shard_collect(void *ctx, int32_t param, int owner, float *buf, int64_t n, char *err, size_t errlen) {
    (void)param;
    return dist_send_to(ctx, owner, 0, buf, sizeof(float) * (size_t)n, err, errlen);
}

/* Whole parameters dealt to the ranks in order, about the same element count each (ZeRO's
 * partition; stage 3 deals every parameter, frozen ones too). */
static void deal(const int64_t *numel, size_t n, int world, int *owner) {
    int64_t total = 0, seen = 0;
    for (size_t i = 0; i < n; i++) total += numel[i];
    for (size_t i = 0; i < n; i++) {
        owner[i] = (int)((seen * world) / (total ? total : 1));
        seen += numel[i];
    }
}

/* The owners of the plan's parameters (every one: ZeRO-3), or of its trainable ones (ZeRO-1/2:
 * in the plan's order, as the executors list them), malloc'd. */
static int *deal_params(const Run *run, bool trainable_only) {
    const Plan *p = run->plan;
    int64_t *numel = xcalloc((size_t)p->n_params + 1, sizeof *numel);
    size_t n = 0;
    for (int32_t i = 0; i < p->n_params; i++)
        if (!trainable_only || p->params[i].trainable) numel[n++] = p->tensors[p->params[i].tensor].numel;
    int *owner = xcalloc(n + 1, sizeof *owner);
    deal(numel, n, run->world, owner);
    free(numel);
    return owner;
}

static bool open_gpu(Run *run, int dev, uint64_t seed, char *err, size_t errlen) {
    FILE *log = run->rank == 0 || run->zero ? stderr : NULL; // under ZeRO each rank says what it holds
    if (!run->zero) {
        run->gpu = exec_cuda_new(run->plan, run->payload, dev, seed, log, err, errlen);
        return run->gpu != NULL;
    }
    int *owner = deal_params(run, true);
    if (run->zero == 3) { // every parameter dealt; the trainable ones' owners follow from it
        run->plan_owner = deal_params(run, false);
        for (int32_t i = 0, k = 0; i < run->plan->n_params; i++)
            if (run->plan->params[i].trainable) owner[k++] = run->plan_owner[i];
    }
    ExecCudaShard shard = {run->rank, run->zero, owner, run->group, run->plan_owner};
    run->gpu = exec_cuda_new_sharded(run->plan, run->payload, dev, seed, &shard, log, err, errlen);
    free(owner);
    return run->gpu != NULL;
}

/* device: auto takes a GPU when the driver sees one; with no driver or no GPU the CPU executor
 * trains (and says why). A GPU that is there but fails (no kernels for it, too little memory)
 * stops the run: training silently on the CPU instead would take days. */
static bool open_executor(Run *run, char *err, size_t errlen) {
    const char *want = R_STR(run->r, device);
    uint64_t seed = (uint64_t)R_INT(run->r, seed);
    bool lead = run->rank == 0;
    if (strcmp(want, "cpu") != 0) {
        char probe[512];
        int gpus = gpu_probe(probe, sizeof probe);
        if (gpus == 0 && !strcmp(want, "cuda")) return errf(err, errlen, "device: cuda: %s", probe);
        if (gpus == 0 && lead) fprintf(stderr, "device: %s; the CPU executor trains\n", probe);
        if (gpus > 0 && !payload_find(run->payload, "cuda/launches.txt")) {
            if (!strcmp(want, "cuda"))
                return errf(err, errlen, "device: cuda: this trainer was built without CUDA kernels (llfc --arch none)");
            if (lead) fprintf(stderr, "device: %s, but this trainer has no CUDA kernels (llfc --arch none); the CPU "
                              "executor trains\n", probe);
        } else if (gpus > 0) {
            int dev = run->local_rank % gpus;
            if (!open_gpu(run, dev, seed, err, errlen)) return false;
            if (lead) fprintf(stderr, "device: GPU %d of %d, %s\n", dev, gpus, exec_cuda_device(run->gpu));
            return true;
        }
    }
    if (run->zero == 3) {
        run->plan_owner = deal_params(run, false);
        ExecShard shard = {run->rank, run->plan_owner, run->group, shard_gather, shard_reduce, shard_collect};
        run->ex = exec_cpu_new_sharded(run->plan, seed, &shard, err, errlen);
    } else {
        run->ex = exec_cpu_new(run->plan, seed, err, errlen);
    }
    return run->ex != NULL;
}

/* W += scale * B A for every LoRA pair of a PEFT adapter, and its modules_to_save copied in:
 * what PEFT's merge_and_unload does, on the fp32 base weights. */
static bool merge_adapter(Run *run, const char *dir, char *err, size_t errlen) {
    OutLora cfg;
    StModel *w;
    if (!outputs_read_adapter(dir, &run->spec, &cfg, &w, err, errlen)) return false;
    double scale = cfg.use_rslora ? cfg.lora_alpha / sqrt((double)cfg.r) : cfg.lora_alpha / (double)cfg.r;
    size_t n_base;
    const ExecParam *base = ex_params(run, true, &n_base);
    bool ok = true;
    for (size_t i = 0; i < w->n_tensors && ok; i++) {
        const StTensor *t = &w->tensors[i];
        const char *tail = strstr(t->name, ".lora_A.weight");
        if (strstr(t->name, ".lora_B.weight")) continue;
        const char *hf = t->name + (strncmp(t->name, "base_model.model.", 17) ? 0 : 17);
        char target[256];
        if (tail) snprintf(target, sizeof target, "%.*s.weight", (int)(tail - hf), hf);
        else snprintf(target, sizeof target, "%s", hf);
        const ExecParam *p = NULL;
        for (size_t k = 0; k < n_base && !p; k++)
            if (!strcmp(base[k].name, target)) p = &base[k];
        if (!p) {
            ok = errf(err, errlen, "%s: %s adapts %s, which this model does not have", dir, t->name, target);
            break;
        }
        if (!p->value) continue; // ZeRO-3: another rank keeps it and merges it
        if (!tail) { // a module PEFT saved whole (modules_to_save): it replaces the base one
            st_read_f32(t, p->value);
            continue;
        }
        char bname[300];
        snprintf(bname, sizeof bname, "%.*s.lora_B.weight", (int)(tail - t->name), t->name);
        const StTensor *B = st_find(w, bname);
        int64_t out = p->shape[0], in = p->shape[1], r = t->shape[0];
        float *a = xmalloc(sizeof *a * (size_t)(r * in)), *b = xmalloc(sizeof *b * (size_t)(out * r));
        st_read_f32(t, a);
        st_read_f32(B, b);
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < r; k++) {
                float bk = (float)scale * b[o * r + k];
                for (int64_t j = 0; j < in; j++) p->value[o * in + j] += bk * a[k * in + j];
            }
        free(a);
        free(b);
    }
    st_close(w);
    outputs_lora_free(&cfg);
    if (ok) fprintf(stderr, "lora: merged the adapter in %s into the base weights\n", dir);
    return ok;
}

/* LF's rule for adapter_name_or_path (a list): every adapter but the last is merged into the
 * base weights, and training goes on from the last; with create_new_adapter all are merged and
 * a new adapter starts. Full and freeze merge them all. (On a GPU all of it happens in the
 * host copies, which then go to the GPU once.) */
static bool read_weights(Run *run, char *err, size_t errlen) {
    const char *model = R_STR(run->r, model_name_or_path);
    bool lora = run->plan->finetune == FT_LORA;
    size_t n = R_NULL(run->r, adapter_name_or_path) ? 0 : R_LIST(run->r, adapter_name_or_path).n;
    bool resume_last = lora && n > 0 && !R_BOOL(run->r, create_new_adapter);
    // a GPU's host keeps frozen weights only to merge adapters into them or to write them whole
    bool keep_frozen = n > (resume_last ? 1u : 0u) || (run->rank == 0 && !lora);
    if (!(run->gpu ? exec_cuda_load_model(run->gpu, model, keep_frozen, err, errlen)
                   : exec_cpu_load_model(run->ex, model, err, errlen)))
        return false;
    for (size_t i = 0; i + (resume_last ? 1 : 0) < n; i++)
        if (!merge_adapter(run, R_LIST(run->r, adapter_name_or_path).items[i], err, errlen)) return false;
    if (!lora) return true;
    if (!resume_last) {
        if (run->gpu) exec_cuda_init_lora(run->gpu);
        else exec_cpu_init_lora(run->ex);
        return true;
    }
    const char *dir = R_LIST(run->r, adapter_name_or_path).items[n - 1];
    char *file = util_path_join(dir, "adapter_model.safetensors");
    bool ok = run->gpu ? exec_cuda_load_adapter(run->gpu, file, err, errlen) : exec_cpu_load_adapter(run->ex, file, err, errlen);
    free(file);
    if (ok) fprintf(stderr, "lora: training on from the adapter in %s\n", dir);
    return ok;
}

/* What a GPU run's host memory keeps of the weights in fp32 (each rank's under ZeRO). */
static void say_host_copies(const Run *run) {
    if (!run->gpu || (run->rank != 0 && !run->zero)) return;
    int64_t held, all;
    exec_cuda_host_values(run->gpu, &held, &all);
    char who[48] = "";
    if (run->zero == 3) snprintf(who, sizeof who, ", rank %d (ZeRO-3: its own weights)", run->rank);
    else if (run->zero) snprintf(who, sizeof who, ", rank %d (ZeRO-%d)", run->rank, run->zero);
    const char *rest = held == all || run->zero == 3 ? ""
                       : run->zero && run->rank != 0 ? "; only its own trained ones (the rest went to the GPU as they "
                                                       "were read, the other ranks' trained ones come from their owners)"
                                                     : "; only the trained ones (the frozen ones went to the GPU as they "
                                                       "were read)";
    fprintf(stderr, "host memory%s: fp32 copies of %lld of %lld weight values%s\n", who, (long long)held,
            (long long)all, rest);
}

static bool load_weights(Run *run, char *err, size_t errlen) {
    if (!open_executor(run, err, errlen) || !read_weights(run, err, errlen)) return false;
    say_host_copies(run);
    return !run->gpu || exec_cuda_to_device(run->gpu, NULL, err, errlen);
}

static void make_optimizer(Run *run) {
    size_t n;
    const ExecParam *ep = ex_params(run, false, &n);
    run->params = xcalloc(n, sizeof *run->params);
    run->n_params = n;
    double ratio = R_NULL(run->r, loraplus_lr_ratio) ? 0 : R_FLOAT(run->r, loraplus_lr_ratio);
    for (size_t i = 0; i < n; i++)
        run->params[i] = (OptParam){ep[i].name, ep[i].value, ep[i].grad, ep[i].numel, ep[i].decay,
                                    optim_loraplus_scale(ep[i].name, ep[i].ndim, ratio)};
    // ZeRO: a rank keeps AdamW state only for its own parameters (stage 1), receives only
    // their gradients (2), and keeps only their values (3: dealt over every parameter)
    run->owner = run->zero == 1 || run->zero == 2 ? deal_params(run, true) : xcalloc(n + 1, sizeof *run->owner);
    run->owned = xcalloc(n + 1, sizeof *run->owned);
    for (int32_t i = 0, t = 0; run->zero == 3 && i < run->plan->n_params; i++)
        if (run->plan->params[i].trainable) run->owner[t++] = run->plan_owner[i];
    for (size_t i = 0; i < n; i++) {
        if (!run->zero) run->owner[i] = run->rank;
        if (run->owner[i] == run->rank) run->owned[run->n_owned++] = run->params[i];
    }
    AdamWConfig cfg;
    optim_config_from_recipe(&cfg, run->r);
    optim_init(&run->opt, &cfg, run->owned, run->n_owned);
    run->have_opt = true;
}

/* ZeRO: what this rank holds, against what one rank without ZeRO would (each rank says its own). */
static void report_memory(const Run *run) {
    if (!run->ex) return;
    ExecMemory m;
    exec_cpu_memory(run->ex, &m);
    int64_t adam = 0, whole_adam = 0, whole_weights = 4 * run->plan->region_size[PLAN_PARAM];
    for (size_t i = 0; i < run->n_owned; i++) adam += 8 * run->owned[i].n;
    for (size_t i = 0; i < run->n_params; i++) whole_adam += 8 * run->params[i].n;
    const double mib = 1 << 20;
    int64_t total = m.weights + m.gradients + adam + m.windows + m.activations;
    int64_t whole = whole_weights + 4 * run->plan->region_size[PLAN_GRAD] + whole_adam + m.activations;
    fprintf(stderr, "memory, rank %d of %d (ZeRO-%d): %.2f MiB = weights %.2f of %.2f, gradients %.2f, AdamW state "
            "%.2f of %.2f, gather windows %.2f, activations %.2f (one rank without ZeRO: %.2f MiB)\n", run->rank,
            run->world, run->zero, total / mib, m.weights / mib, whole_weights / mib, m.gradients / mib, adam / mib,
            whole_adam / mib, m.windows / mib, m.activations / mib, whole / mib);
}

/* ZeRO: the optimizer state of every parameter, sent by the owners to rank 0, the only rank
 * that builds *full (it saves it; the others' stays zeroed, so optim_free does nothing). */
static bool gather_opt(Run *run, AdamW *full, char *err, size_t errlen) {
    const bool root = run->rank == 0;
    memset(full, 0, sizeof *full);
    if (root) {
        AdamWConfig cfg = run->opt.cfg;
        optim_init(full, &cfg, run->params, run->n_params);
        full->step = run->opt.step;
    }
    for (size_t i = 0, j = 0; i < run->n_params; i++) {
        const size_t bytes = sizeof(float) * (size_t)run->params[i].n;
        const bool mine = run->owner[i] == run->rank;
        float *m = mine ? run->opt.m + run->opt.offset[j] : NULL, *v = mine ? run->opt.v + run->opt.offset[j] : NULL;
        j += mine;
        if (root && mine) {
            memcpy(full->m + full->offset[i], m, bytes);
            memcpy(full->v + full->offset[i], v, bytes);
        } else if (root) {
            m = full->m + full->offset[i], v = full->v + full->offset[i];
        }
        if (!dist_send_to(run->group, run->owner[i], 0, m, bytes, err, errlen) ||
            !dist_send_to(run->group, run->owner[i], 0, v, bytes, err, errlen)) {
            optim_free(full);
            return false;
        }
    }
    return true;
}

// --- batches

/* Row r of s into slot b of the micro-batch: ids, labels, a sequence id per token (attention
 * stays inside one; padding is sequence 0) and positions restarting per sequence. */
static void fill_slot(Run *run, const EncodedSet *s, uint64_t r, int64_t b) {
    int64_t T = run->T, len = (int64_t)enc_part_len(s, r, 0);
    uint64_t start = enc_part_start(s, r, 0);
    int32_t *ids = run->ids + b * T, *labels = run->labels + b * T, *seq = run->seq + b * T,
            *pos = run->posn + b * T;
    if (len > T) len = T; // plans are built for the longest row; a guard, not a rule
    for (int64_t t = 0; t < len; t++) {
        ids[t] = s->ids[start + t];
        labels[t] = s->labels[start + t];
        seq[t] = 1;
        pos[t] = (int32_t)t;
    }
    if (s->kind == ENC_ROWS_PACKED && s->neat) { // LF's attention_mask 1..k per sub-sequence
        enc_row_attention_mask(s, r, run->scratch);
        for (int64_t t = 0; t < len; t++) seq[t] = run->scratch[t];
        enc_row_position_ids(s, r, run->scratch);
        for (int64_t t = 0; t < len; t++) pos[t] = run->scratch[t];
    }
    for (int64_t t = len; t < T; t++) {
        ids[t] = run->pad_id;
        labels[t] = ENC_IGNORE;
        seq[t] = 0;
        pos[t] = (int32_t)(t - len);
    }
}

/* Fill the micro-batch from rows order[first .. first + B) (fewer at the end: empty slots are
 * padding). */
static void fill_batch(Run *run, const EncodedSet *s, const uint64_t *order, uint64_t first, uint64_t n_rows) {
    for (int64_t b = 0; b < run->B; b++) {
        if (first + (uint64_t)b < n_rows) {
            fill_slot(run, s, order ? order[first + b] : first + (uint64_t)b, b);
            continue;
        }
        for (int64_t t = 0; t < run->T; t++) {
            run->ids[b * run->T + t] = run->pad_id;
            run->labels[b * run->T + t] = ENC_IGNORE;
            run->seq[b * run->T + t] = 0;
            run->posn[b * run->T + t] = (int32_t)t;
        }
    }
}

/* The tokens whose loss counts in the micro-batch fill_batch would make from the same rows
 * (labels shifted, as transformers does; rows cut to T), read from the rows directly: the step
 * needs the count of its whole group before the first micro-batch runs. */
static int64_t count_tokens(const Run *run, const EncodedSet *s, const uint64_t *order, uint64_t first,
                            uint64_t n_rows) {
    int64_t counted = 0;
    for (uint64_t b = 0; b < (uint64_t)run->B && first + b < n_rows; b++) {
        uint64_t r = order ? order[first + b] : first + b;
        const int32_t *labels = s->labels + enc_part_start(s, r, 0);
        int64_t len = (int64_t)enc_part_len(s, r, 0);
        if (len > run->T) len = run->T;
        for (int64_t t = 1; t < len; t++) counted += labels[t] != ENC_IGNORE;
    }
    return counted;
}

static void shuffle_rows(Run *run, int64_t epoch) {
    uint64_t n = run->train.n_rows;
    for (uint64_t i = 0; i < n; i++) run->order[i] = i;
    if (R_BOOL(run->r, disable_shuffling)) return;
    uint64_t seed = R_NULL(run->r, data_seed) ? (uint64_t)R_INT(run->r, seed) : (uint64_t)R_INT(run->r, data_seed);
    uint64_t purpose = rng_purpose(RNG_DATA_ORDER, (uint32_t)epoch);
    for (uint64_t i = n - 1; i > 0; i--) { // Fisher-Yates; 64-bit draws keep the bias negligible
        uint64_t x = ((uint64_t)rng_u32(seed, purpose, 2 * i) << 32) | rng_u32(seed, purpose, 2 * i + 1);
        uint64_t j = x % (i + 1);
        uint64_t t = run->order[i];
        run->order[i] = run->order[j];
        run->order[j] = t;
    }
}

static ExecBatch batch_of(const Run *run, uint64_t step) {
    return (ExecBatch){run->ids, run->labels, run->seq, run->posn, step};
}

// --- evaluation

/* HF's evaluation loop: batches of per_device_eval_batch_size rows, each one's loss the mean
 * over its tokens, the eval_loss their mean weighted by rows. An eval batch is run as as many
 * plan micro-batches (of B rows) as it needs, their token sums added. */
static bool evaluate(Run *run, double *eval_loss, char *err, size_t errlen) {
    uint64_t E = (uint64_t)R_INT(run->r, per_device_eval_batch_size), rows = run->eval.n_rows;
    double sum = 0;
    for (uint64_t first = 0; first < rows; first += E) {
        uint64_t end = first + E < rows ? first + E : rows;
        double loss_sum = 0;
        int64_t count = 0;
        for (uint64_t m = first; m < end; m += (uint64_t)run->B) {
            fill_batch(run, &run->eval, NULL, m, end);
            ExecBatch b = batch_of(run, 0);
            ExecLoss loss;
            if (!ex_forward(run, &b, &loss, err, errlen)) return false;
            loss_sum += loss.loss_sum;
            count += loss.count;
        }
        if (count > 0) sum += loss_sum / (double)count * (double)(end - first);
    }
    *eval_loss = rows ? sum / (double)rows : 0;
    return true;
}

// --- outputs

static const char *module_of(const char *peft_name, char *buf, size_t len) {
    // base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> q_proj
    const char *end = strstr(peft_name, ".lora_");
    if (!end) return NULL;
    const char *start = end;
    while (start > peft_name && start[-1] != '.') start--;
    snprintf(buf, len, "%.*s", (int)(end - start), start);
    return buf;
}

static void lora_config(const Run *run, OutLora *c) {
    memset(c, 0, sizeof *c);
    c->r = run->plan->lora_rank;
    c->lora_alpha = R_NULL(run->r, lora_alpha) ? 2.0 * (double)c->r : (double)R_INT(run->r, lora_alpha);
    c->lora_dropout = R_FLOAT(run->r, lora_dropout);
    c->use_rslora = R_BOOL(run->r, use_rslora);
    c->base_model_name_or_path = xstrdup(R_STR(run->r, model_name_or_path));
    c->target_modules = xcalloc((size_t)run->plan->n_params + 1, sizeof *c->target_modules);
    c->modules_to_save = xcalloc((size_t)run->plan->n_params + 1, sizeof *c->modules_to_save);
    for (int32_t i = 0; i < run->plan->n_params; i++) {
        const PlanParam *pp = &run->plan->params[i];
        char mod[64];
        if (pp->kind != PARAM_LORA_A || !module_of(pp->name, mod, sizeof mod)) continue;
        bool seen = false;
        for (size_t k = 0; k < c->n_targets && !seen; k++) seen = !strcmp(c->target_modules[k], mod);
        if (!seen) c->target_modules[c->n_targets++] = xstrdup(mod);
    }
    if (!R_NULL(run->r, additional_target))
        for (size_t k = 0; k < R_LIST(run->r, additional_target).n; k++)
            c->modules_to_save[c->n_save++] = xstrdup(R_LIST(run->r, additional_target).items[k]);
}

/* The trainable tensors (lora) or every tensor (full, freeze) as fp32 safetensors. */
static StWriteTensor *tensors_to_write(const Run *run, bool all, size_t *n) {
    const ExecParam *ep = ex_params(run, all, n);
    StWriteTensor *t = xcalloc(*n, sizeof *t);
    for (size_t i = 0; i < *n; i++) {
        t[i] = (StWriteTensor){.name = ep[i].name, .dtype = ST_F32, .ndim = ep[i].ndim, .data = ep[i].value};
        for (int d = 0; d < ep[i].ndim; d++) t[i].shape[d] = ep[i].shape[d];
    }
    return t;
}

static bool write_outputs_to(void *ctx, const char *dir, char *err, size_t errlen) {
    const Run *run = ctx;
    bool lora = run->plan->finetune == FT_LORA;
    size_t n;
    StWriteTensor *t = tensors_to_write(run, !lora, &n);
    bool ok;
    if (lora) {
        OutLora c;
        lora_config(run, &c);
        ok = outputs_write_adapter(dir, &c, t, n, err, errlen) &&
             outputs_copy_tokenizer(dir, R_STR(run->r, model_name_or_path), err, errlen);
        outputs_lora_free(&c);
    } else {
        ok = outputs_write_model(dir, &run->spec, t, n, 0, R_STR(run->r, model_name_or_path), err, errlen);
    }
    free(t);
    return ok;
}

// --- the loop

static void log_step(Run *run, int64_t step, double loss, double grad_norm, double lr, double epoch,
                     double tokens_per_s) {
    LogRec e = {0};
    trainlog_train_entry(&e, loss, grad_norm, lr, epoch, step);
    trainlog_state_append(&run->state, &e);
    logrec_free(&e);
    char err[ERR_LEN];
    if (!trainlog_on_log(&run->log, &run->state, now_s(), NULL, err, sizeof err)) fprintf(stderr, "warning: %s\n", err);
    trainlog_progress(&run->log, step, loss, lr, grad_norm, tokens_per_s, now_s());
}

/* ZeRO-3: every value at rank 0 while it writes (a no-op otherwise); run->params follows. */
static void point_params(Run *run) {
    size_t n;
    const ExecParam *ep = ex_params(run, false, &n);
    for (size_t i = 0; i < n; i++) run->params[i].value = ep[i].value;
}

/* ZeRO-1/2 on GPUs: a rank's GPU keeps fp32 masters of its own parameters only, so each
 * parameter's host copy (current after ex_to_host) goes from its owner to rank 0, which writes
 * (over TCP: only before a checkpoint or the outputs). */
static bool share_values(Run *run, char *err, size_t errlen) {
    for (size_t i = 0; i < run->n_params; i++)
        if (!dist_send_to(run->group, run->owner[i], 0, run->params[i].value, sizeof(float) * (size_t)run->params[i].n,
                          err, errlen))
            return false;
    return true;
}

static bool collect_values(Run *run, char *err, size_t errlen) {
    if (run->gpu && run->zero && run->zero < 3) return share_values(run, err, errlen);
    if (run->zero < 3) return true;
    if (!(run->gpu ? exec_cuda_collect(run->gpu, err, errlen) : exec_cpu_collect(run->ex, err, errlen))) return false;
    point_params(run);
    return true;
}

static void uncollect_values(Run *run) {
    if (run->zero < 3) return;
    if (run->gpu) exec_cuda_uncollect(run->gpu);
    else exec_cpu_uncollect(run->ex);
    point_params(run);
}

/* Rank 0 writes checkpoint-N; under ZeRO every rank first sends its optimizer state there (off
 * its GPU first, on GPUs). */
static bool save_checkpoint(Run *run, char *err, size_t errlen) {
    AdamW full;
    bool zero = run->zero > 0 && !R_BOOL(run->r, save_only_model);
    if (!ex_to_host(run, err, errlen)) return false;
    if (zero && !gather_opt(run, &full, err, errlen)) return false;
    if (!collect_values(run, err, errlen)) {
        if (zero) optim_free(&full);
        return false;
    }
    bool ok = true;
    if (run->rank == 0) {
        CkptSave s = {R_STR(run->r, output_dir), run->params, run->n_params,
                      R_BOOL(run->r, save_only_model) ? NULL : zero ? &full : &run->opt, &run->state, &run->pos,
                      R_NULL(run->r, save_total_limit) ? 0 : R_INT(run->r, save_total_limit),
                      write_outputs_to, run};
        char *path = NULL;
        ok = ckpt_save(&s, &path, err, errlen);
        if (ok) fprintf(stderr, "\nsaved %s\n", path);
        free(path);
    }
    uncollect_values(run);
    if (zero) optim_free(&full);
    return ok;
}

/* The eval loss at this step, logged by rank 0 (the only rank that evaluates, except under
 * ZeRO-3, where every rank must take part in gathering the parameters). */
static bool log_eval(Run *run, int64_t step, char *err, size_t errlen) {
    if (run->rank != 0 && run->zero < 3) return true;
    double eval_loss;
    if (!evaluate(run, &eval_loss, err, errlen)) return false;
    if (run->rank != 0) return true;
    LogRec e = {0};
    logrec_float(&e, "eval_loss", eval_loss);
    logrec_float(&e, "epoch", run->state.epoch);
    logrec_int(&e, "step", step);
    trainlog_state_append(&run->state, &e);
    logrec_free(&e);
    trainlog_on_log(&run->log, &run->state, now_s(), NULL, err, errlen);
    return true;
}

static int64_t every(double v, int64_t total) { /* HF: a value < 1 is a fraction of the steps */
    if (v <= 0) return 0;
    return v < 1 ? (int64_t)ceil(v * (double)total) : (int64_t)v;
}

/* Sum x over the ranks (a no-op on one). */
static bool sum_ranks(Run *run, double *x, size_t n, char *err, size_t errlen) {
    return run->world == 1 || dist_allreduce_sum_f64(run->group, x, n, err, errlen);
}

/* Every trainable gradient summed over the ranks. */
static bool sum_grads(Run *run, char *err, size_t errlen) {
    for (size_t i = 0; run->world > 1 && i < run->n_params; i++)
        if (!dist_allreduce_sum(run->group, run->params[i].grad, (size_t)run->params[i].n, err, errlen)) return false;
    return true;
}

/* CPU data parallel: each layer's gradients reduced on gradsync's thread as soon as the last
 * micro-batch's backward pass is done with them, while it goes on with the layers below. */
static void grads_ready(void *sync, int32_t group) { gradsync_post(sync, group); }

static void start_gradsync(Run *run) {
    if (!run->ex || run->world == 1 || run->zero == 3) return;
    GradSyncTensor *t = xcalloc(run->n_params + 1, sizeof *t);
    int32_t *bucket = xcalloc(run->n_params + 1, sizeof *bucket);
    for (int32_t i = 0, k = 0; i < run->plan->n_params; i++) {
        if (!run->plan->params[i].trainable) continue;
        t[k] = (GradSyncTensor){run->params[k].grad, run->params[k].n, run->zero == 2 ? run->owner[k] : -1};
        bucket[k++] = run->plan->params[i].layer + 1;
    }
    run->sync = gradsync_new(run->group, t, run->n_params, bucket, (int32_t)run->plan->L + 1);
    free(t);
    free(bucket);
}

/* Gradients summed over the ranks: everywhere (no ZeRO, stage 1), or only at the parameter's
 * owner (stage 2). */
static bool reduce_grads(Run *run, char *err, size_t errlen) {
    if (run->zero == 3) return true; // the executor sent each layer's to its owners as it went
    if (run->sync) return gradsync_wait(run->sync, err, errlen);
    if (run->zero < 2) return sum_grads(run, err, errlen);
    for (size_t i = 0; i < run->n_params; i++)
        if (!dist_reduce_sum_to(run->group, run->owner[i], run->params[i].grad, (size_t)run->params[i].n, err, errlen))
            return false;
    return true;
}

/* Whether a GPU run's gradients take the data-parallel path: several ranks, or one through NCCL
 * (LLFC_NCCL_ONE_RANK=1). */
static bool gpu_data_parallel(const Run *run) { return run->gpu && (run->world > 1 || run->nccl_alone); }

/* The step's gradients summed over the ranks; on GPUs by NCCL on the devices (under ZeRO-2/3 the
 * executor sent each layer's to their owners as it went), or, where some rank has no NCCL (never
 * under ZeRO: open_nccl), through host copies and the TCP group. */
static bool sum_step_grads(Run *run, char *err, size_t errlen) {
    if (!gpu_data_parallel(run)) return reduce_grads(run, err, errlen);
    if (run->zero >= 2) return true;
    if (run->overlap) return exec_cuda_overlap_finish(run->gpu, err, errlen);
    if (run->nccl) return exec_cuda_allreduce_grads(run->gpu, run->nccl, err, errlen);
    return exec_cuda_grads_to_host(run->gpu, err, errlen) && reduce_grads(run, err, errlen) &&
           exec_cuda_grads_to_device(run->gpu, err, errlen);
}

/* ZeRO step: the global gradient norm from each rank's owned part, torch's clipping on the
 * owned gradients, AdamW on the owned parameters, then (stages 1, 2) every parameter from its
 * owner. */
static bool zero_update(Run *run, double factor, double *norm_out, char *err, size_t errlen) {
    double sq = 0;
    for (size_t i = 0; i < run->n_owned; i++)
        for (int64_t k = 0; k < run->owned[i].n; k++) sq += (double)run->owned[i].grad[k] * run->owned[i].grad[k];
    if (!sum_ranks(run, &sq, 1, err, errlen)) return false;
    float norm = (float)sqrt(sq);
    double max_norm = R_FLOAT(run->r, max_grad_norm);
    if (max_norm > 0 && isfinite(norm)) {
        float coef = (float)max_norm / (norm + 1e-6f); // torch.nn.utils.clip_grad_norm_
        if (coef > 1.0f) coef = 1.0f;
        for (size_t i = 0; i < run->n_owned; i++)
            for (int64_t k = 0; k < run->owned[i].n; k++) run->owned[i].grad[k] *= coef;
    }
    optim_step(&run->opt, run->owned, run->n_owned, factor);
    for (size_t i = 0; run->zero < 3 && i < run->n_params; i++) // stage 3 gathers them when used
        if (!dist_broadcast_from(run->group, run->owner[i], run->params[i].value,
                                 sizeof(float) * (size_t)run->params[i].n, err, errlen))
            return false;
    *norm_out = norm;
    return true;
}

/* What ZeRO-2/3's windows did in the first step: gathers (ZeRO-3), reductions overlapped. */
static void say_windows(const Run *run, int64_t step, int64_t micro_batches) {
    char gathered[160] = "";
    if (run->zero == 3)
        snprintf(gathered, sizeof gathered, "gathered %lld parameter groups from their owners (%lld of them ahead of "
                 "the layer that needed them) and ", (long long)exec_cuda_gathers(run->gpu),
                 (long long)exec_cuda_prefetched(run->gpu));
    fprintf(stderr, "\nZeRO-%d: step %lld %sstarted the reductions of %lld gradient groups to their owners during "
            "the backward pass, in %lld micro-batch%s\n", run->zero, (long long)step, gathered,
            (long long)exec_cuda_early_reductions(run->gpu), (long long)micro_batches, micro_batches == 1 ? "" : "es");
}

/* A change of the loss scale, on its own line: an overflow that skipped `step`, or growth. */
static void say_scale(const Run *run, int64_t step, bool skipped, double was, double norm) {
    if (skipped)
        fprintf(stderr, "\nfp16: step %lld skipped: %s in the gradients; loss scale %g -> %g\n", (long long)step,
                isnan(norm) ? "NaN" : "inf", was, run->scaler.scale);
    else
        fprintf(stderr, "\nfp16: loss scale %g -> %g after %lld steps without inf or NaN\n", was, run->scaler.scale,
                (long long)run->scaler.growth_interval);
}

/* First row of this rank's share of global micro-batch g. */
static uint64_t rank_first_row(const Run *run, uint64_t g) {
    return (g * (uint64_t)run->world + (uint64_t)run->rank) * (uint64_t)run->B;
}

static bool train_loop(Run *run, char *err, size_t errlen) {
    int64_t log_every = every(R_FLOAT(run->r, logging_steps), run->total_steps);
    int64_t save_every = strcmp(R_STR(run->r, save_strategy), "steps") ? 0 : every(R_FLOAT(run->r, save_steps), run->total_steps);
    int64_t eval_every = !run->have_eval || strcmp(R_STR(run->r, eval_strategy), "steps") ? 0
                         : every(R_NULL(run->r, eval_steps) ? R_FLOAT(run->r, logging_steps) : R_FLOAT(run->r, eval_steps), run->total_steps);
    uint64_t rows = run->train.n_rows, global_b = (uint64_t)(run->B * run->world);
    uint64_t per_epoch = (rows + global_b - 1) / global_b; // global micro-batches
    double logged_loss = 0, tokens_since = 0, t_log = now_s();
    int64_t logged_steps = 0;
    int64_t step = run->pos.global_step;
    const int64_t first_step = step;
    bool lead = run->rank == 0;
    for (int64_t epoch = run->pos.epoch; step < run->total_steps; epoch++) {
        shuffle_rows(run, epoch);
        uint64_t mb = epoch == run->pos.epoch ? (uint64_t)run->pos.batch_in_epoch : 0;
        while (mb < per_epoch && step < run->total_steps) {
            if (step == run->die_at_step) raise(SIGKILL); // a rank dying mid-run, for the tests
            uint64_t group = per_epoch - mb < (uint64_t)run->accum ? per_epoch - mb : (uint64_t)run->accum;
            const double loss_scale = run->fp16 ? run->scaler.scale : 1.0;
            double counted = 0; // the group's counted tokens first, over every rank: the loss is over all
            for (uint64_t k = 0; k < group; k++)
                counted += (double)count_tokens(run, &run->train, run->order, rank_first_row(run, mb + k), rows);
            if (!sum_ranks(run, &counted, 1, err, errlen)) return false;
            if (!ex_zero_grad(run, err, errlen)) return false;
            double sums[2] = {0, 0}; // this step's loss, tokens that are not padding
            for (uint64_t k = 0; k < group; k++) {
                fill_batch(run, &run->train, run->order, rank_first_row(run, mb + k), rows);
                ExecBatch b = batch_of(run, (uint64_t)step * (uint64_t)run->accum + k);
                ExecLoss loss;
                if (run->sync && k + 1 == group) exec_cpu_on_grads(run->ex, grads_ready, run->sync); // final ones
                if (run->overlap) exec_cuda_overlap(run->gpu, k + 1 == group);
                bool ok = ex_step(run, &b, counted > 0 ? (float)(loss_scale / counted) : (float)loss_scale, &loss, err,
                                  errlen);
                if (run->sync) exec_cpu_on_grads(run->ex, NULL, NULL);
                if (!ok) return false;
                sums[0] += counted > 0 ? loss.loss_sum / counted : 0;
                for (int64_t i = 0; i < run->B * run->T; i++) sums[1] += run->seq[i] != 0;
            }
            if (!sum_step_grads(run, err, errlen) || !sum_ranks(run, sums, 2, err, errlen)) return false;
            double step_loss = sums[0];
            tokens_since += sums[1];
            double norm, factor = schedule_factor(&run->sched, step - run->scaler.skipped);
            if (run->gpu) { // this rank's parameters (all of them without ZeRO), then ZeRO's from their owners
                bool skipped = false; // fp16: every rank alike (the norm is over every rank's gradients)
                if (!exec_cuda_adamw(run->gpu, &run->opt, run->owned, run->n_owned, factor,
                                     R_FLOAT(run->r, max_grad_norm), run->fp16 ? (float)(1.0 / loss_scale) : 1.0f,
                                     run->fp16 ? &skipped : NULL, &norm, err, errlen) ||
                    (run->zero && !skipped && !exec_cuda_broadcast_params(run->gpu, run->nccl, err, errlen)))
                    return false;
                if (run->fp16 && optim_scaler_update(&run->scaler, skipped) && lead)
                    say_scale(run, step + 1, skipped, loss_scale, norm);
                if (skipped) norm = NAN; // not logged (HF's would be inf or nan, which JSON cannot hold)
            } else if (!run->zero) {
                norm = R_FLOAT(run->r, max_grad_norm) > 0
                           ? optim_clip_grad_norm(run->params, run->n_params, R_FLOAT(run->r, max_grad_norm))
                           : optim_grad_norm(run->params, run->n_params);
                optim_step(&run->opt, run->params, run->n_params, factor);
            } else if (!zero_update(run, factor, &norm, err, errlen)) {
                return false;
            }
            step++;
            if (run->gpu && run->zero >= 2 && lead && step == first_step + 1) say_windows(run, step, (int64_t)group);
            mb += group;
            run->pos = (CkptPosition){step, epoch, (int64_t)mb, (int64_t)(mb * global_b),
                                      (uint64_t)R_INT(run->r, seed), (uint64_t)R_INT(run->r, seed),
                                      run->pos.loss_sum + step_loss, run->pos.tokens_seen + (int64_t)counted,
                                      run->fp16 ? run->scaler.scale : 0, run->fp16 ? run->scaler.clean : 0,
                                      run->fp16 ? run->scaler.skipped : 0};
            run->state.global_step = step;
            run->state.epoch = (double)epoch + (double)mb / (double)per_epoch;
            logged_loss += step_loss;
            logged_steps++;
            if (!isfinite(step_loss))
                return errf(err, errlen, "step %lld: the loss is %g; lower learning_rate or check the data%s",
                            (long long)step, step_loss,
                            run->fp16 ? " (fp16: activations above 65504 overflow in the forward pass, where loss "
                                        "scaling cannot help; bf16: true has the range of fp32)" : "");
            if ((log_every && step % log_every == 0) || step == run->total_steps) {
                double lr = R_FLOAT(run->r, learning_rate) * factor; // transformers 5: the rate just used
                double dt = now_s() - t_log;
                if (lead) log_step(run, step, logged_loss / (double)logged_steps, norm, lr, run->state.epoch,
                                   dt > 0 ? tokens_since / dt : 0);
                logged_loss = 0, logged_steps = 0, tokens_since = 0, t_log = now_s();
            }
            if (eval_every && step % eval_every == 0 && !log_eval(run, step, err, errlen)) return false;
            if (save_every && step % save_every == 0 && !save_checkpoint(run, err, errlen)) return false;
        }
        if (mb >= per_epoch) run->pos.batch_in_epoch = 0, run->pos.epoch = epoch + 1;
    }
    if (lead) trainlog_progress_done(&run->log);
    return true;
}

/* LF's rule: resume_from_checkpoint, else the latest checkpoint in output_dir unless
 * overwrite_output_dir (checkpoint.h: ckpt_auto_resume). */
static bool resume(Run *run, char *err, size_t errlen) {
    char *dir = NULL, note[ERR_LEN] = "";
    const char *want = R_NULL(run->r, resume_from_checkpoint) ? NULL : R_STR(run->r, resume_from_checkpoint);
    if (!ckpt_auto_resume(R_STR(run->r, output_dir), want, R_BOOL(run->r, overwrite_output_dir), &dir, note,
                          sizeof note, err, errlen))
        return false;
    if (note[0]) fprintf(stderr, "note: %s\n", note);
    if (!dir) { // a fresh start: LF's LogCallback deletes a previous run's log
        char *log = util_path_join(R_STR(run->r, output_dir), "trainer_log.jsonl");
        if (run->rank == 0 && unlink(log) == 0) fprintf(stderr, "note: removed the previous %s\n", log);
        free(log);
        return true;
    }
    bool *mine = xcalloc(run->n_params + 1, sizeof *mine); // ZeRO: each rank reads its own moments
    for (size_t i = 0; i < run->n_params; i++) mine[i] = run->owner[i] == run->rank;
    bool ok = ckpt_load(dir, run->params, run->n_params, mine, &run->opt, &run->state, &run->pos, err, errlen);
    free(mine);
    ok = ok && (run->rank != 0 || trainlog_resume_jsonl(R_STR(run->r, output_dir), run->pos.global_step, err, errlen));
    if (ok && run->gpu) ok = exec_cuda_to_device(run->gpu, &run->opt, err, errlen);
    if (ok && run->gpu && run->zero) ok = exec_cuda_broadcast_params(run->gpu, run->nccl, err, errlen);
    if (ok && run->fp16 && run->pos.loss_scale > 0) { // GradScaler's state, as HF restores it
        run->scaler.scale = run->pos.loss_scale;
        run->scaler.clean = run->pos.loss_scale_clean;
        run->scaler.skipped = run->pos.skipped_steps;
        if (run->rank == 0)
            fprintf(stderr, "fp16: loss scale %g from the checkpoint (%lld steps skipped before)\n", run->scaler.scale,
                    (long long)run->scaler.skipped);
    }
    if (ok) fprintf(stderr, "resuming from %s at step %lld\n", dir, (long long)run->pos.global_step);
    free(dir);
    return ok;
}

/* Rank 0's outputs, train metrics and (eval_s > 0) the final eval's, already computed. */
static bool finish(Run *run, double runtime, double eval_loss, double eval_s, char *err, size_t errlen) {
    const char *out = R_STR(run->r, output_dir);
    if (!write_outputs_to(run, out, err, errlen)) return false;
    LogRec m = {0};
    double train_loss = run->state.global_step ? run->pos.loss_sum / (double)run->state.global_step : 0;
    double samples = schedule_num_train_samples((int64_t)run->train.n_rows, run->world, run->B, run->accum,
                                                R_FLOAT(run->r, num_train_epochs), R_INT(run->r, max_steps));
    trainlog_train_metrics(&m, runtime, samples, run->state.global_step,
                           (double)(run->plan->flops_forward + run->plan->flops_backward) *
                               (double)run->state.global_step * (double)run->accum,
                           train_loss);
    StrBuf table = {0};
    trainlog_metrics_text("train", &m, &table);
    fputs(table.data ? table.data : "", stdout);
    sb_free(&table);
    bool ok = trainlog_save_metrics(out, "train", &m, err, errlen);
    logrec_free(&m);
    if (ok && run->have_eval) {
        LogRec e = {0};
        trainlog_eval_metrics(&e, eval_loss, eval_s, (int64_t)run->eval.n_rows, R_INT(run->r, per_device_eval_batch_size));
        logrec_float(&e, "epoch", run->state.epoch);
        StrBuf table = {0};
        trainlog_metrics_text("eval", &e, &table);
        fputs(table.data ? table.data : "", stdout);
        sb_free(&table);
        ok = trainlog_save_metrics(out, "eval", &e, err, errlen);
        logrec_free(&e);
    }
    ok = ok && trainlog_save_state(out, &run->state, err, errlen);
    if (ok && R_BOOL(run->r, plot_loss)) {
        const char *keys[] = {"loss", "eval_loss"};
        int n = 0;
        ok = plot_from_state(out, &run->state, keys, 2, &n, err, errlen);
    }
    return ok;
}

/* The final evaluation (every rank under ZeRO-3, else rank 0), then rank 0's outputs (with
 * every value there under ZeRO-3). */
static bool finish_all(Run *run, double t0, char *err, size_t errlen) {
    bool lead = run->rank == 0;
    double runtime = now_s() - t0, eval_loss = 0, t = now_s();
    if (run->have_eval && (lead || run->zero == 3) && !evaluate(run, &eval_loss, err, errlen)) return false;
    double eval_s = now_s() - t;
    if (!ex_to_host(run, err, errlen) || !collect_values(run, err, errlen)) return false;
    bool ok = !lead || finish(run, runtime, eval_loss, eval_s, err, errlen);
    uncollect_values(run);
    return ok;
}

/* This rank's place; with several ranks, meet them before the slow work so a missing rank is
 * reported at once. */
static bool join_ranks(Run *run, char *err, size_t errlen) {
    DistPlace place;
    run->rank = 0, run->world = 1;
    // under mpirun without MASTER_ADDR, rank 0's address comes through Open MPI
    if (!dist_place_from_env(&place, NULL, err, errlen) || !mpiboot_find_master(&place, err, errlen)) return false;
    const char *kill_spec = getenv("LLFC_TEST_KILL");
    int kill_rank = -1;
    long long kill_step = -1;
    run->die_at_step = -1;
    if (kill_spec && sscanf(kill_spec, "%d:%lld", &kill_rank, &kill_step) == 2 && kill_rank == place.rank)
        run->die_at_step = kill_step;
    run->local_rank = place.local_rank;
    // a check of the data-parallel NCCL path (communicator, buckets, all-reduces) on one GPU
    const char *alone = getenv("LLFC_NCCL_ONE_RANK");
    run->nccl_alone = place.world_size == 1 && alone && !strcmp(alone, "1");
    if (place.world_size == 1 && !run->nccl_alone) return true;
    run->group = dist_connect(&place, (int)R_INT(run->r, ddp_timeout), err, errlen);
    if (!run->group) return false;
    if (run->nccl_alone) {
        fprintf(stderr, "data parallel: one rank, its gradients through NCCL all the same (LLFC_NCCL_ONE_RANK=1)\n");
        return true;
    }
    run->rank = place.rank, run->world = place.world_size, run->local_rank = place.local_rank;
    run->zero = (int)R_INT(run->r, zero_stage);
    if (run->rank == 0 && mpiboot_active())
        fprintf(stderr, "ranks met through %s: MASTER_ADDR=%s MASTER_PORT=%d from rank 0 by MPI_Bcast\n",
                mpiboot_library(), place.master_addr, place.master_port);
    if (run->rank == 0)
        fprintf(stderr, "data parallel: %d ranks (%s) met at %s:%d; rank 0 writes the outputs%s\n", run->world,
                dist_source_name(place.source), place.master_addr, place.master_port,
                R_INT(run->r, zero_stage) == 1 ? "; ZeRO-1: AdamW state sharded"
                : R_INT(run->r, zero_stage) == 2 ? "; ZeRO-2: AdamW state and gradients sharded"
                : R_INT(run->r, zero_stage) == 3 ? "; ZeRO-3: AdamW state, gradients and parameters sharded, "
                                                   "parameters gathered a layer at a time" : "");
    return true;
}

/* Data parallel on GPUs: NCCL when every rank has it and it starts (chosen here, no recipe key),
 * else the host copies over TCP, said once; ZeRO on GPUs needs NCCL (its broadcasts of the
 * updated weights have no host-copy path) and stops without it. */
static bool open_nccl(Run *run, char *err, size_t errlen) {
    bool absent = false;
    char why[ERR_LEN];
    run->nccl = exec_cuda_open_nccl(run->gpu, run->group, (int)R_INT(run->r, ddp_timeout), &absent, why, sizeof why);
    if (!run->nccl && !absent) return errf(err, errlen, "%s", why);
    if (!run->nccl && run->nccl_alone) return errf(err, errlen, "LLFC_NCCL_ONE_RANK=1: %s", why);
    if (!run->nccl && run->zero)
        return errf(err, errlen, "zero_stage %d on GPUs needs NCCL on every rank: %s; install NCCL (libnccl2) or set "
                    "LLFC_NCCL, or set zero_stage: 0 (gradients through host copies over TCP, slow)", run->zero, why);
    exec_cuda_use_nccl(run->gpu, run->nccl); // ZeRO-3 gathers and reduces with it
    if (run->rank != 0) return true;
    char nccl[1200] = ""; // which NCCL, and how its unique id reached the ranks
    if (run->nccl)
        snprintf(nccl, sizeof nccl, "NCCL %s (%s; its unique id sent by %s)", ncl_version(run->nccl),
                 ncl_path(run->nccl), ncl_id_route(run->nccl));
    if (run->nccl && run->zero == 3)
        fprintf(stderr, "data parallel: ZeRO-3 on the GPUs by %s: each layer's parameters gathered from their owners "
                "when used, its gradients reduced to them, each rank's AdamW step on its own parameters\n", nccl);
    else if (run->nccl && run->zero)
        fprintf(stderr, "data parallel: ZeRO-%d on the GPUs by %s: gradients %s, each rank's AdamW step on its own "
                "parameters, their bf16 weights broadcast from it\n", run->zero, nccl, run->zero == 2 ? "of each "
                "layer reduced to their owners as its backward pass ends (each rank keeps its own only)" : "summed");
    else if (run->nccl)
        fprintf(stderr, "data parallel: gradients summed on the GPUs by %s\n", nccl);
    else
        fprintf(stderr, "data parallel: %s; gradients go through host copies over TCP, which is slow\n", why);
    return true;
}

/* GPU data parallel over NCCL (ZeRO-2/3 aside: their windows do it): each layer's gradients reduced on the GPU's
 * communication stream as soon as the last micro-batch's backward pass is done with them, while
 * it goes on with the layers below (exec_cuda_overlap_start). */
static bool start_overlap(Run *run, char *err, size_t errlen) {
    if (!gpu_data_parallel(run) || !run->nccl || run->zero >= 2) return true;
    if (!exec_cuda_overlap_start(run->gpu, run->nccl, err, errlen)) return false;
    run->overlap = true;
    const ExecCudaOverlap *st = exec_cuda_overlap_stats(run->gpu);
    if (run->rank == 0)
        fprintf(stderr, "data parallel: gradients reduced in %d buckets a step (a layer each), on the GPUs' "
                "communication stream, %s\n", (int)st->buckets, st->overlapped ? "overlapped with the backward pass"
                : "after the backward pass (an op of the plan uses two layers' parameters)");
    return true;
}

static bool setup(Run *run, char *err, size_t errlen) {
    const Recipe *r = run->r;
    if (!join_ranks(run, err, errlen)) return false;
    if (!model_load(&run->spec, R_STR(r, model_name_or_path), err, errlen)) return false;
    run->have_spec = true;
    if (!(run->tok = tok_load(R_STR(r, model_name_or_path), err, errlen))) return false;
    if (!load_data(run, err, errlen) || !encode_data(run, err, errlen) || !load_plan(run, err, errlen) ||
        !load_weights(run, err, errlen))
        return false;
    make_optimizer(run);
    run->fp16 = run->gpu && exec_cuda_fp16(run->gpu);
    const char *init_scale = getenv("LLFC_TEST_LOSS_SCALE"); // tests: an initial scale that overflows
    optim_scaler_init(&run->scaler, init_scale && *init_scale ? strtod(init_scale, NULL) : 65536.0);
    if (run->zero) report_memory(run);
    start_gradsync(run);
    if (gpu_data_parallel(run) && (!open_nccl(run, err, errlen) || !start_overlap(run, err, errlen))) return false;
    // ZeRO-1/2: a rank's host held only its own trained weights; the others' come from their owners
    if (run->gpu && run->zero && !exec_cuda_broadcast_params(run->gpu, run->nccl, err, errlen)) return false;
    run->accum = R_INT(r, gradient_accumulation_steps);
    run->total_steps = schedule_total_steps((int64_t)run->train.n_rows, run->world, run->B, run->accum,
                                            R_FLOAT(r, num_train_epochs), R_INT(r, max_steps));
    if (!schedule_from_recipe(&run->sched, r, run->total_steps, err, errlen)) return false;
    size_t bt = (size_t)(run->B * run->T);
    run->ids = xcalloc(bt, sizeof *run->ids);
    run->labels = xcalloc(bt, sizeof *run->labels);
    run->seq = xcalloc(bt, sizeof *run->seq);
    run->posn = xcalloc(bt, sizeof *run->posn);
    run->scratch = xcalloc((size_t)run->T * 2 + 2, sizeof *run->scratch);
    run->order = xcalloc(run->train.n_rows, sizeof *run->order);
    run->state.max_steps = run->total_steps;
    run->state.train_batch_size = run->B;
    run->state.logging_steps = every(R_FLOAT(r, logging_steps), run->total_steps);
    run->state.save_steps = every(R_FLOAT(r, save_steps), run->total_steps);
    if (mkdir(R_STR(r, output_dir), 0755) != 0 && errno != EEXIST)
        return errf(err, errlen, "output_dir: cannot create %s: %s", R_STR(r, output_dir), strerror(errno));
    return resume(run, err, errlen);
}

static void teardown(Run *run) {
    gradsync_free(run->sync);
    ncl_close(run->nccl);
    dist_close(run->group);
    free(run->owner), free(run->owned), free(run->plan_owner);
    if (run->have_opt) optim_free(&run->opt);
    free(run->params);
    exec_cpu_free(run->ex);
    exec_cuda_free(run->gpu);
    plan_free(run->plan);
    enc_set_free(&run->train);
    if (run->have_eval) enc_set_free(&run->eval);
    data_free(run->data);
    tok_free(run->tok);
    if (run->have_spec) model_free(&run->spec);
    trainlog_state_free(&run->state);
    trainlog_free(&run->log);
    free(run->ids), free(run->labels), free(run->seq), free(run->posn), free(run->scratch), free(run->order);
}

int trainer_run(const Recipe *r, const Payload *p) {
    char err[ERR_LEN];
    Run run = {.r = r, .payload = p};
    double t0 = now_s();
    bool ok = setup(&run, err, sizeof err);
    bool lead = run.rank == 0;
    if (ok && lead) {
        // the GPU computes in fp16 when the recipe says fp16, else in bf16 (decision: fp32 compute
        // is not built on the GPU path); the CPU executor always in fp32
        char fp16_line[160];
        snprintf(fp16_line, sizeof fp16_line, "fp16 with dynamic loss scaling (initial scale %g), fp32 masters of the "
                 "trained weights, AdamW state", run.scaler.scale);
        const char *precision = run.gpu ? (run.fp16 ? fp16_line : "bf16, fp32 masters of the trained weights, AdamW state")
                                        : R_BOOL(r, bf16) || R_BOOL(r, fp16) ? "fp32; bf16/fp16 apply on GPUs" : "fp32";
        fprintf(stderr, "training: %llu rows of %lld tokens, micro-batch %lld x %lld x %d rank%s, accumulation %lld, "
                "%lld steps, %s on the %s executor (%s), %zu trainable tensors\n",
                (unsigned long long)run.train.n_rows, (long long)run.T, (long long)run.B, (long long)run.T,
                run.world, run.world == 1 ? "" : "s", (long long)run.accum, (long long)run.total_steps,
                R_STR(r, finetuning_type), run.gpu ? "CUDA" : "CPU", precision, run.n_params);
        trainlog_init(&run.log, R_STR(r, output_dir), run.total_steps, now_s(), stdout);
    }
    if (ok) ok = train_loop(&run, err, sizeof err) && finish_all(&run, t0, err, sizeof err);
    // the others wait until rank 0 has written everything, so the run ends together
    if (ok && run.world > 1) ok = dist_barrier(run.group, err, sizeof err);
    if (ok && lead && run.sync && gradsync_stats(run.sync)->steps) {
        const GradSyncStats *st = gradsync_stats(run.sync);
        fprintf(stderr, "data parallel: gradients reduced in %lld buckets a step (a layer each), %.1f ms a step on "
                "their own thread; %.1f ms a step left to wait for after the backward pass\n",
                (long long)(st->buckets / st->steps), 1e3 * st->busy_s / (double)st->steps,
                1e3 * st->waited_s / (double)st->steps);
    }
    const ExecCudaOverlap *ov = run.overlap ? exec_cuda_overlap_stats(run.gpu) : NULL;
    if (ok && lead && ov && ov->steps)
        fprintf(stderr, "data parallel: %lld of %lld buckets a step started during the backward pass; %.1f ms a step "
                "left to wait for after it\n", (long long)(ov->started_early / ov->steps), (long long)ov->buckets,
                1e3 * ov->waited_s / (double)ov->steps);
    if (ok && lead && run.fp16)
        fprintf(stderr, "fp16: %lld of %lld steps skipped for inf or NaN gradients; loss scale %g\n",
                (long long)run.scaler.skipped, (long long)run.state.global_step, run.scaler.scale);
    if (ok && lead) fprintf(stderr, "done: %lld steps in %.1f s; outputs in %s\n", (long long)run.state.global_step,
                            now_s() - t0, R_STR(r, output_dir));
    teardown(&run);
    if (!ok && run.world > 1) { // name the rank that failed
        char *msg = xprintf("rank %d: %s", run.rank, err);
        snprintf(err, sizeof err, "%s", msg);
        free(msg);
    }
    return ok ? 0 : fail("", err);
}

int trainer_print_plan(const Recipe *r, const Payload *p) {
    char err[ERR_LEN];
    (void)r;
    const PayloadEntry *e = payload_find(p, "plan.bin");
    if (!e) return fail("", "this trainer has no compiled plan; rebuild it with llfc");
    Plan *plan = plan_deserialize(e->data, e->size, err, sizeof err);
    if (!plan) return fail("plan.bin", err);
    plan_print(plan, stdout);
    plan_free(plan);
    return 0;
}
