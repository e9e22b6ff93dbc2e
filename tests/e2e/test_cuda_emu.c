/* test_cuda_emu.c - the CUDA executor follows the CPU executor over whole training runs, on the
 * emulated GPU of tests/gpu/emu (no GPU here): the same trainer runs with device=cuda (its own
 * NVRTC-generated kernels, compiled for the CPU by run_trainer.sh, a fake driver and a fake
 * cuBLASLt computing bf16 products with fp32 accumulation) and with device=cpu (the fp32 C
 * reference). Each step's loss and gradient norm must agree within bf16 tolerance, and the
 * weights the CUDA run wrote (copied back from the "device") must be close to the CPU run's.
 *
 * Each CUDA run also checks what the executor says it allocates (the "device memory:" line
 * against the plan: bf16 copies of every weight, fp32 masters of the trained ones only, the
 * activation layout at 2 bytes per bf16 element with no two live tensors sharing a byte), and
 * runs a second time with LLFC_CUDA_CHECK_BOUNDS=1 (every activation between poisoned guards,
 * checked after each op), which must give the same curve.
 *
 * This checks the executor's logic end to end: launch order and arguments, the memory layout,
 * every product's shape and transpose, the chunked loss with the LM head's backward, dropout
 * masks, AdamW and clipping on the device, gradient accumulation, checkpointed layers, and
 * the host copies. It cannot check what only a GPU shows (speed, races between blocks, memory
 * coalescing); tests/gpu/test_kernels_gpu and these same runs with a real GPU do.
 *
 * Needs NVRTC (the CUDA toolkit), gcc and g++ with C++20, and ../shared's stories260K; without
 * them each test is skipped by name. LLFC_BIN names the llfc under test. On a machine with a
 * GPU, LLFC_CUDA_REAL=1 runs the same comparisons on it instead of the emulation, and
 * LLFC_CUDA_STEPS=N makes every run N steps long (the 50-step curves).
 *
 * fp16: true runs the same comparison with f16 storage (the unit's floatX), f16 products and
 * dynamic loss scaling, and an initial loss scale that overflows (LLFC_TEST_LOSS_SCALE) must
 * skip every step: the scale halves each time and no weight moves. */
#include "testutil.h"

#include <math.h>

#include "exec_cuda.h"
#include "graph.h"
#include "json.h"
#include "nvrtc.h"
#include "payload.h"
#include "safetensors.h"
#include "util.h"

static char *tmp, *llfc;

static void must(const char *cmd) {
    char *out;
    if (test_shell(&out, cmd) != 0) fail_msg("command failed: %s\n%s", cmd, out);
    free(out);
}

static int setup(void **state) {
    (void)state;
    tmp = test_tmpdir();
    const char *bin = getenv("LLFC_BIN");
    llfc = xstrdup(bin && *bin ? bin : "build/llfc");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rm_rf(tmp);
    free(tmp);
    free(llfc);
    return 0;
}

/* Skip by name when the emulation cannot be built here. */
static bool emulation_or_skip(const char *test) {
    char why[ERR_LEN], *out;
    const char *real = getenv("LLFC_CUDA_REAL");
    if (real && *real == '1') return true;
    bool ok = nvrtc_available(why, sizeof why);
    if (!ok) {
        fprintf(stderr, "[  SKIPPED ] %s: no NVRTC (%s)\n", test, why);
        return false;
    }
    if (test_shell(&out, "echo 'int main(){}' | g++ -std=c++20 -x c++ - -o /dev/null") != 0) {
        fprintf(stderr, "[  SKIPPED ] %s: no g++ with C++20 to build the emulation\n", test);
        free(out);
        return false;
    }
    free(out);
    return true;
}

typedef struct {
    int n;
    double loss[1024], grad_norm[1024];
} Curve;

/* Each step's loss and grad_norm from trainer_state.json's log_history (logging_steps 1). */
static Curve read_curve(const char *out_dir) {
    char *path = xprintf("%s/trainer_state.json", out_dir);
    JsonDoc *d = test_load_json(path);
    const Json *hist = json_get(json_root(d), "log_history");
    assert_non_null(hist);
    Curve c = {0};
    for (size_t i = 0; json_at(hist, i) && c.n < 1024; i++) {
        double loss, norm;
        if (json_as_double(json_get(json_at(hist, i), "loss"), &loss) &&
            json_as_double(json_get(json_at(hist, i), "grad_norm"), &norm))
            c.loss[c.n] = loss, c.grad_norm[c.n++] = norm;
    }
    json_free(d);
    free(path);
    return c;
}

/* The curves written to two output folders agree step by step: the same bits (tol 0) or loss and
 * grad_norm within tol of b's, relative. */
static void curves_agree(const char *name, const char *a_dir, const char *a_is, const char *b_dir, const char *b_is,
                         int steps, double tol) {
    Curve a = read_curve(a_dir), b = read_curve(b_dir);
    assert_int_equal(a.n, steps);
    assert_int_equal(b.n, steps);
    for (int i = 0; i < a.n; i++) {
        printf("  %-18s step %d  loss %s %.6f %s %.6f  grad_norm %s %.6f %s %.6f\n", name, i + 1, a_is, a.loss[i], b_is,
               b.loss[i], a_is, a.grad_norm[i], b_is, b.grad_norm[i]);
        if (fabs(a.loss[i] - b.loss[i]) > tol * fabs(b.loss[i]) ||
            fabs(a.grad_norm[i] - b.grad_norm[i]) > tol * fabs(b.grad_norm[i]))
            fail_msg("%s step %d: %s and %s differ by more than %g", name, i + 1, a_is, b_is, tol);
    }
}

/* Largest |a - b| over every tensor of two safetensors files, relative to the largest |b|. */
static double weights_gap(const char *a_path, const char *b_path) {
    char err[ERR_LEN];
    StModel *a = st_open(a_path, err, sizeof err), *b = st_open(b_path, err, sizeof err);
    if (!a || !b) fail_msg("%s", err);
    assert_int_equal(a->n_tensors, b->n_tensors);
    double gap = 0, scale = 0;
    for (size_t i = 0; i < b->n_tensors; i++) {
        const StTensor *tb = &b->tensors[i], *ta = st_find(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->numel, tb->numel);
        float *va = xmalloc((size_t)ta->numel * sizeof *va), *vb = xmalloc((size_t)tb->numel * sizeof *vb);
        st_read_f32(ta, va);
        st_read_f32(tb, vb);
        for (int64_t k = 0; k < tb->numel; k++) {
            gap = fmax(gap, fabs((double)va[k] - vb[k]));
            scale = fmax(scale, fabs((double)vb[k]));
        }
        free(va), free(vb);
    }
    st_close(a), st_close(b);
    return scale > 0 ? gap / scale : gap;
}

/* Elements of two safetensors files (the same tensors) that are not the same float: a NaN counts. */
static int64_t weights_changed(const char *a_path, const char *b_path) {
    char err[ERR_LEN];
    StModel *a = st_open(a_path, err, sizeof err), *b = st_open(b_path, err, sizeof err);
    if (!a || !b) fail_msg("%s", err);
    assert_int_equal(a->n_tensors, b->n_tensors);
    int64_t changed = 0;
    for (size_t i = 0; i < b->n_tensors; i++) {
        const StTensor *tb = &b->tensors[i], *ta = st_find(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->numel, tb->numel);
        float *va = xmalloc((size_t)ta->numel * sizeof *va), *vb = xmalloc((size_t)tb->numel * sizeof *vb);
        st_read_f32(ta, va);
        st_read_f32(tb, vb);
        for (int64_t k = 0; k < tb->numel; k++) changed += !(va[k] == vb[k]);
        free(va), free(vb);
    }
    st_close(a), st_close(b);
    return changed;
}

/* A number after `key` in the "device memory:" line `mem`; fails when it is not there. */
static double mib_after(const char *mem, const char *key) {
    const char *at = strstr(mem, key);
    if (!at) fail_msg("no '%s' in: %s", key, mem);
    return strtod(at + strlen(key), NULL);
}

static bool same_mib(double printed, int64_t bytes) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%.1f", printed);
    snprintf(b, sizeof b, "%.1f", (double)bytes / (1 << 20));
    return !strcmp(a, b);
}

/* Under ZeRO (each rank prints its line): "of its N of M trained values", N into *own, M into
 * *all; false on a line without ZeRO. */
static bool zero_share(const char *mem, long long *own, long long *all) {
    const char *at = strstr(mem, "ZeRO-"), *end = mem + strcspn(mem, "\n");
    if (!at || at > end) return false;
    at = strstr(at, "of its ");
    if (!at || at > end || sscanf(at, "of its %lld of %lld trained values", own, all) != 2)
        fail_msg("no share of the trained values in: %.*s", (int)(end - mem), mem);
    return true;
}

/* ZeRO-3's line: "its own 16-bit weights, N of M values" (M the plan's PARAM region, N into *own)
 * and gather windows of more than nothing; false on a line without ZeRO-3. */
static bool zero3_share(const char *mem, const Plan *p, long long *own) {
    const char *at = strstr(mem, "its own 16-bit weights, "), *end = mem + strcspn(mem, "\n");
    if (!at || at > end) return false;
    long long of = 0;
    if (sscanf(at, "its own 16-bit weights, %lld of %lld values", own, &of) != 2)
        fail_msg("no share of the weights in: %.*s", (int)(end - mem), mem);
    assert_int_equal(of, p->region_size[PLAN_PARAM]);
    assert_true(*own < of);
    assert_true(mib_after(mem, "gather windows ") > 0);
    return true;
}

/* The "host memory ...: fp32 copies of H of A weight values" lines (A: every weight value): under
 * ZeRO-3 each rank's, holding its own so that the ranks hold each value once; under ZeRO-1/2 each
 * rank's, the others than rank 0 holding a share of the trained values only; otherwise (and at
 * rank 0) the trained values only (LoRA: the frozen base went to the GPU as it was read), or all
 * of them where it writes a whole model (full, freeze) or merges an adapter into the base. */
static void host_copies_are_planned(const char *name, const char *out, const Plan *p, int64_t trained, int64_t all) {
    long long lines = 0, zero3 = 0, sharded = 0, sum = 0;
    for (const char *at = strstr(out, "host memory"); at; at = strstr(at + 1, "host memory"), lines++) {
        const int len = (int)strcspn(at, "\n");
        const char *c = strstr(at, ": fp32 copies of "), *rank = strstr(at, ", rank ");
        long long held = -1, of = -1;
        int r = 0;
        if (!c || c > at + len || sscanf(c, ": fp32 copies of %lld of %lld weight values", &held, &of) != 2)
            fail_msg("%s: no host share in: %.*s", name, len, at);
        if (rank && rank < c && sscanf(rank, ", rank %d", &r) != 1) fail_msg("%s: no rank in: %.*s", name, len, at);
        printf("  %-18s %.*s\n", name, len, at);
        assert_int_equal(of, all);
        sum += held;
        const char *z3 = strstr(at, "(ZeRO-3: its own weights)");
        if (z3 && z3 < at + len) {
            zero3++;
            assert_true(held < all);
        } else if (r != 0) {
            sharded++;
            assert_true(held < trained);
        } else {
            const bool merged = strstr(out, "lora: merged the adapter in") != NULL; /* into the host's frozen weights */
            assert_int_equal(held, p->finetune == FT_LORA && !merged ? trained : all);
        }
    }
    if (!lines) fail_msg("%s: no host memory line in\n%s", name, out);
    if (zero3) {
        assert_int_equal(zero3, lines);
        assert_int_equal(sum, all);
    } else {
        assert_int_equal(lines, 1 + sharded);
    }
}

/* ZeRO-2/3's line: "its own gradients, N of M" (ZeRO-3: "... and their gradients, N of M"; M the
 * plan's GRAD region, N into *own) and windows of more than nothing; false on a line without. */
static bool grads_share(const char *mem, const Plan *p, long long *own) {
    const char *at = strstr(mem, "its own "), *end = mem + strcspn(mem, "\n");
    if (!at || at > end) return false;
    at = strstr(at, "gradients, ");
    long long of = 0;
    if (!at || at > end || sscanf(at, "gradients, %lld of %lld", own, &of) != 2)
        fail_msg("no share of the gradients in: %.*s", (int)(end - mem), mem);
    assert_int_equal(of, p->region_size[PLAN_GRAD]);
    assert_true(*own < of);
    assert_true(mib_after(mem, " windows ") > 0);
    return true;
}

/* The trainer's "device memory: ..." line says what its plan asks for: the bf16 copy of every
 * weight (2 bytes), fp32 masters and AdamW state of the trained ones only (frozen base weights
 * have none; under ZeRO, each rank's line: of its own share, and the shares add up to them all),
 * and the executor's activation layout, which is checked here: 2 bytes per bf16 element, 4 per
 * fp32 statistic, tensors whose lives overlap never share a byte, and less than the plan's 4-byte
 * slots. */
static void device_memory_is_planned(const char *name, const char *trainer, const char *out) {
    const char *mem = strstr(out, "device memory:");
    if (!mem) fail_msg("%s: no device memory line in\n%s", name, out);
    char err[ERR_LEN];
    Payload *pl = payload_open(trainer, err, sizeof err);
    if (!pl) fail_msg("%s", err);
    const PayloadEntry *pe = payload_find(pl, "plan.bin"), *le = payload_find(pl, "cuda/launches.txt");
    assert_non_null(pe);
    assert_non_null(le);
    Plan *p = plan_deserialize(pe->data, pe->size, err, sizeof err);
    if (!p) fail_msg("%s", err);
    CudaActLayout l;
    if (!exec_cuda_act_layout(p, le->data, le->size, 0, &l, err, sizeof err)) fail_msg("%s", err);
    int64_t trained = 0, all = 0;
    for (int32_t i = 0; i < p->n_params; i++) {
        const PlanParam *pp = &p->params[i];
        all += p->tensors[pp->tensor].numel;
        if (pp->trainable && pp->grad >= 0) trained += p->tensors[pp->tensor].numel;
    }
    long long shares = 0, lines = 0, zero = 0, z3 = 0, values = 0, z2 = 0, grads = 0;
    for (; mem; mem = strstr(mem + 1, "device memory:"), lines++) {
        printf("  %-18s %.*s\n", name, (int)strcspn(mem, "\n"), mem);
        long long own = trained, of = trained, own16 = p->region_size[PLAN_PARAM];
        if (zero_share(mem, &own, &of)) {
            zero++;
            assert_int_equal(of, trained);
            assert_true(own < trained);
        }
        shares += own;
        if (zero3_share(mem, p, &own16)) z3++;
        values += own16;
        long long own_grad = p->region_size[PLAN_GRAD];
        if (grads_share(mem, p, &own_grad)) z2++;
        grads += own_grad;
        const double fp32 = mib_after(mem, "weights "), bf16 = mib_after(mem, "fp32 trained + ");
        const double act = mib_after(mem, "activations "), adam = mib_after(mem, "AdamW ");
        const double grad = mib_after(mem, "gradients ");
        if (!same_mib(fp32, own * 4) || !same_mib(bf16, own16 * 2) || !same_mib(act, l.bytes) ||
            !same_mib(adam, own * 8) || !same_mib(grad, own_grad * 4))
            fail_msg("%s: printed weights %.1f fp32 + %.1f bf16, AdamW %.1f, activations %.1f, gradients %.1f MiB; the "
                     "plan gives %.2f, %.2f, %.2f, %.2f, %.2f", name, fp32, bf16, adam, act, grad,
                     (double)own * 4 / (1 << 20), (double)own16 * 2 / (1 << 20), (double)own * 8 / (1 << 20),
                     (double)l.bytes / (1 << 20), (double)own_grad * 4 / (1 << 20));
    }
    if (zero) { // every rank's line, their shares adding up to every trained value once
        assert_int_equal(zero, lines);
        assert_int_equal(shares, trained);
    }
    if (z3) { // ZeRO-3: the ranks' 16-bit slices cover the weights once (less the padding between slices)
        assert_int_equal(z3, lines);
        assert_true(values <= p->region_size[PLAN_PARAM] && values > p->region_size[PLAN_PARAM] - PLAN_ALIGN * lines);
    }
    if (z2) { // ZeRO-2/3: the ranks' gradient slices cover the gradients once (less the padding)
        assert_int_equal(z2, lines);
        assert_true(grads <= p->region_size[PLAN_GRAD] && grads > p->region_size[PLAN_GRAD] - PLAN_ALIGN * lines);
    }
    if (p->finetune != FT_FULL) assert_true(trained < all / 2); /* the frozen base has no master */
    host_copies_are_planned(name, out, p, trained, all);
    int64_t f32 = 0, placed = 0;
    for (int32_t a = 0; a < p->n_tensors; a++) {
        if (l.at[a] < 0) continue;
        const PlanTensor *ta = &p->tensors[a];
        const int64_t end_a = l.at[a] + ta->numel * l.width[a];
        placed++;
        f32 += l.width[a] == 4;
        assert_int_equal(ta->region, PLAN_ACT);
        assert_int_equal(l.at[a] % 64, 0);
        assert_true(end_a <= l.bytes);
        assert_true(l.width[a] == 2 || l.width[a] == 4);
        if (strstr(ta->name, "rstd") || strstr(ta->name, "lse")) assert_int_equal(l.width[a], 4);
        for (int32_t b = a + 1; b < p->n_tensors; b++) {
            if (l.at[b] < 0 || l.first[b] > l.last[a] || l.first[a] > l.last[b]) continue;
            const int64_t end_b = l.at[b] + p->tensors[b].numel * l.width[b];
            if (l.at[a] < end_b && l.at[b] < end_a)
                fail_msg("%s: %s and %s live at once in the same bytes", name, ta->name, p->tensors[b].name);
        }
    }
    assert_true(f32 > 0);
    assert_true(l.bytes < p->region_size[PLAN_ACT] * 4);
    printf("  %-18s layout: %lld activations (%lld fp32) in %.3f MiB, the plan's 4-byte slots %.3f MiB; weights "
           "%.3f MiB fp32 for %lld trained of %lld values\n", name, (long long)placed, (long long)f32,
           (double)l.bytes / (1 << 20), (double)p->region_size[PLAN_ACT] * 4 / (1 << 20),
           (double)trained * 4 / (1 << 20), (long long)trained, (long long)all);
    exec_cuda_act_layout_free(&l);
    plan_free(p);
    payload_close(pl);
}

/* The CUDA run again with LLFC_CUDA_CHECK_BOUNDS=1: every activation between poisoned guards,
 * checked after each op (a kernel that writes past its tensor stops the run), and the same
 * curve as the run in `gpu_dir` (the layout moves bytes, not arithmetic). */
static void bounds_are_kept(const char *name, const char *trainer, const char *gpu_dir, const char *args) {
    const char *real = getenv("LLFC_CUDA_REAL");
    char *dir = xprintf("%s_bounds", gpu_dir), *out;
    char *cmd = xprintf("LLFC_CUDA_CHECK_BOUNDS=1 %s %s device=cuda output_dir=%s %s",
                        real && *real == '1' ? "" : "tests/gpu/emu/run_trainer.sh", trainer, dir, args);
    int rc = test_shell(&out, cmd);
    if (rc != 0 || !strstr(out, "unshared, with bounds guards")) fail_msg("%s: exit %d\n%s", cmd, rc, out);
    Curve a = read_curve(gpu_dir), b = read_curve(dir);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++)
        if (a.loss[i] != b.loss[i] || a.grad_norm[i] != b.grad_norm[i])
            fail_msg("%s step %d: loss %.9g / %.9g, grad_norm %.9g / %.9g with bounds guards", name, i + 1, a.loss[i],
                     b.loss[i], a.grad_norm[i], b.grad_norm[i]);
    printf("  %-18s with bounds guards: no kernel wrote outside its activation, same %d steps\n", name, a.n);
    free(out), free(cmd), free(dir);
}

/* The cases rerun with bounds guards: one per family, fine-tuning method and storage type, and
 * the sharded one. The layout code is the same for every case; the guards double a case's
 * emulated time, and CI runs this program twice (release, sanitizers). */
static bool guarded(const char *name) {
    static const char *const names[] = {"llama_lora", "llama_fp16_full", "llama_freeze", "llama_full_zero2",
                                        "qwen2_full", "qwen3_lora", "gemma2_lora"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i])) return true;
    return false;
}

/* Whether out holds every line of `lines`. */
static bool says_all(const char *out, const char *lines) {
    for (const char *l = lines; *l; l += strcspn(l, "\n"), l += *l == '\n') {
        char *want = xstrndup(l, strcspn(l, "\n"));
        const bool found = strstr(out, want) != NULL;
        free(want);
        if (!found) return false;
    }
    return true;
}

/* Compile `recipe` with `overrides`, train it on both executors (with the launcher's `flags`),
 * compare (the relative loss gap within loss_tol, grad_norm's within 2.5 times that); the CUDA
 * run must print every line of `must_say`. */
static void runs_agree(const char *name, const char *model, const char *overrides, const char *weights_file,
                       double weights_tol, double loss_tol, const char *flags, const char *must_say) {
    char *trainer = xprintf("%s/%s", tmp, name), *recipe = xprintf("%s/%s.yaml", tmp, name);
    char *cmd = xprintf("sed -e 's#^model_name_or_path:.*#model_name_or_path: %s#' -e '/^output_dir:/d' "
                        "-e '/^save_steps:/d' -e '/^plot_loss:/d' recipes/demo_lora_sft.yaml > %s && "
                        "printf 'output_dir: %s/out_%s\\nsave_steps: 1000\\n' >> %s && "
                        "%s %s -o %s cutoff_len=32 per_device_train_batch_size=2 %s",
                        model, recipe, tmp, name, recipe, llfc, recipe, trainer, overrides);
    must(cmd);
    free(cmd);
    char *gpu_dir = xprintf("%s/out_%s_cuda", tmp, name), *cpu_dir = xprintf("%s/out_%s_cpu", tmp, name);
    const char *real = getenv("LLFC_CUDA_REAL"), *steps = getenv("LLFC_CUDA_STEPS");
    char *more = steps && *steps ? xprintf("max_steps=%s", steps) : xstrdup("");
    cmd = xprintf("%s %s %s device=cuda output_dir=%s %s", real && *real == '1' ? "" : "tests/gpu/emu/run_trainer.sh",
                  trainer, flags, gpu_dir, more);
    char *out;
    int rc = test_shell(&out, cmd);
    if (rc != 0 || !strstr(out, "on the CUDA executor") || !says_all(out, must_say))
        fail_msg("%s: exit %d (wanted '%s')\n%s", cmd, rc, must_say, out);
    device_memory_is_planned(name, trainer, out);
    free(out);
    free(cmd);
    if (guarded(name)) {
        char *args = xprintf("%s %s", flags, more);
        bounds_are_kept(name, trainer, gpu_dir, args);
        free(args);
    }
    cmd = xprintf("%s %s device=cpu output_dir=%s %s", trainer, flags, cpu_dir, more);
    free(more);
    must(cmd);
    free(cmd);
    Curve g = read_curve(gpu_dir), c = read_curve(cpu_dir);
    assert_int_equal(g.n, c.n);
    assert_true(c.n >= 3);
    double worst_loss = 0, worst_norm = 0;
    for (int i = 0; i < c.n; i++) {
        double dl = fabs(g.loss[i] - c.loss[i]) / fabs(c.loss[i]), dn = fabs(g.grad_norm[i] - c.grad_norm[i]) / c.grad_norm[i];
        printf("  %-18s step %2d  loss cuda %.4f cpu %.4f (%.2e)  grad_norm cuda %.4f cpu %.4f (%.2e)\n", name, i + 1,
               g.loss[i], c.loss[i], dl, g.grad_norm[i], c.grad_norm[i], dn);
        worst_loss = fmax(worst_loss, dl), worst_norm = fmax(worst_norm, dn);
    }
    char *wg = xprintf("%s/%s", gpu_dir, weights_file), *wc = xprintf("%s/%s", cpu_dir, weights_file);
    double wgap = weights_gap(wg, wc);
    printf("  %-18s worst relative gap: loss %.2e, grad_norm %.2e; weights %.2e of the largest\n", name, worst_loss,
           worst_norm, wgap);
    // bf16 activations and weights (2^-8 relative) against fp32, compounded over a few steps: 0.02;
    // fp16 (2^-11) 0.004
    assert_true(worst_loss < loss_tol);
    assert_true(worst_norm < 2.5 * loss_tol);
    assert_true(wgap < weights_tol);
    free(wg), free(wc), free(gpu_dir), free(cpu_dir), free(trainer), free(recipe);
}

/* tmp/name: the demo recipe on model, cutoff_len 32, with overrides (the trainer's path). */
static char *small_trainer(const char *name, const char *model, const char *overrides) {
    char *trainer = xprintf("%s/%s", tmp, name);
    char *cmd = xprintf("%s recipes/demo_lora_sft.yaml -o %s model_name_or_path=%s cutoff_len=32 %s", llfc, trainer,
                        model, overrides);
    must(cmd);
    free(cmd);
    return trainer;
}

/* tmp/a_dir's weights file within 1e-5 (of the largest value) of tmp/dp_dir's, plain data parallel's. */
static void weights_like_dp(const char *name, const char *a_dir, const char *dp_dir, const char *file) {
    char *a = xprintf("%s/%s/%s", tmp, a_dir, file), *b = xprintf("%s/%s/%s", tmp, dp_dir, file);
    const double gap = weights_gap(a, b);
    printf("  %-18s %s: %.2e of the largest from plain data parallel's\n", name, file, gap);
    assert_true(gap < 1e-5);
    free(a), free(b);
}

static void both_executors_agree(const char *name, const char *model, const char *overrides, const char *weights_file,
                                 double weights_tol) {
    runs_agree(name, model, overrides, weights_file, weights_tol, 0.02, "", "on the CUDA executor");
}

static void test_llama_lora_with_dropout(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    both_executors_agree("llama_lora", model, "max_steps=6 lora_dropout=0.1 gradient_accumulation_steps=2",
                         "adapter_model.safetensors", 0.05);
    free(model);
}

/* LoRA on top of an adapter merged into the base weights (create_new_adapter): the GPU run keeps
 * every weight in host memory for the merge, sends the merged base up, and follows the CPU
 * executor, which merges the same adapter. */
static void test_llama_lora_on_a_merged_adapter(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    char *first = small_trainer("first_lora", model, "max_steps=2 learning_rate=0.01 warmup_ratio=0");
    char *cmd = xprintf("%s device=cpu output_dir=%s/adapter0", first, tmp);
    must(cmd);
    char *over = xprintf("max_steps=3 adapter_name_or_path=%s/adapter0 create_new_adapter=true", tmp);
    both_executors_agree("llama_lora_merged", model, over, "adapter_model.safetensors", 0.05);
    free(over), free(cmd), free(first), free(model);
}

static void test_llama_full(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    both_executors_agree("llama_full", model, "max_steps=4 finetuning_type=full learning_rate=1e-4",
                         "model.safetensors", 0.02);
    free(model);
}

/* What a data-parallel CUDA run over NCCL must say, after `first`: its gradients in a bucket per
 * layer of the model (config.json's count) and one for those outside the layers, every bucket
 * started during the backward pass (exec_cuda's overlap). */
static char *overlap_lines(const char *model, const char *first) {
    char *path = xprintf("%s/config.json", model);
    JsonDoc *d = test_load_json(path);
    double layers = 0;
    assert_true(json_as_double(json_get(json_root(d), "num_hidden_layers"), &layers));
    json_free(d);
    free(path);
    const int buckets = (int)layers + 1;
    return xprintf("%s\ndata parallel: gradients reduced in %d buckets a step (a layer each), on the GPUs' "
                   "communication stream, overlapped with the backward pass\n"
                   "data parallel: %d of %d buckets a step started during the backward pass", first, buckets,
                   buckets, buckets);
}

/* Data parallel on 2 ranks: the CUDA run sums gradients with NCCL on the "GPUs" (fakenccl.c
 * between the rank processes), a layer's bucket at a time on the communication stream while the
 * backward pass goes on, and follows the CPU executor's 2-rank run; where NCCL is missing the
 * gradients go through host copies over TCP, after the backward pass, with the same sums (rank
 * order) and losses, bit for bit. (fakenccl.c reads a collective's input when it is started and
 * writes its result when a wait sees it done, so a bucket started too early or used before the
 * wait would change the sums; fakecuda.c refuses a collective whose stream did not wait for the
 * executor's launches.) */
static void test_two_ranks_over_nccl(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    char *says = overlap_lines(model, "data parallel: gradients summed on the GPUs by NCCL");
    runs_agree("llama_full_dp2", model, "max_steps=3 finetuning_type=full learning_rate=1e-4", "model.safetensors",
               0.02, 0.02, "--nproc-per-node 2", says);
    free(says);
    const char *real = getenv("LLFC_CUDA_REAL");
    char *out, *cmd = xprintf("LLFC_NCCL=/nonexistent/libnccl.so.2 %s %s/llama_full_dp2 --nproc-per-node 2 device=cuda "
                              "output_dir=%s/out_tcp", real && *real == '1' ? "" : "tests/gpu/emu/run_trainer.sh",
                              tmp, tmp);
    int rc = test_shell(&out, cmd);
    if (rc != 0 || !strstr(out, "data parallel: NCCL not found: tried /nonexistent/libnccl.so.2") ||
        !strstr(out, "gradients go through host copies over TCP, which is slow") || strstr(out, "buckets"))
        fail_msg("%s: exit %d\n%s", cmd, rc, out);
    free(out), free(cmd);
    char *nccl_dir = xprintf("%s/out_llama_full_dp2_cuda", tmp), *tcp_dir = xprintf("%s/out_tcp", tmp);
    curves_agree("llama_full_dp2", nccl_dir, "nccl", tcp_dir, "tcp", 3, 0);
    free(nccl_dir), free(tcp_dir), free(model);
}

static char *gpu_run(const char *trainer, const char *args) {
    const char *real = getenv("LLFC_CUDA_REAL");
    return xprintf("%s %s %s", real && *real == '1' ? "" : "tests/gpu/emu/run_trainer.sh", trainer, args);
}

/* Each rank's "AdamW N" figure in out (rank order of the lines, not of the ranks). */
static int adamw_figures(const char *out, double *mib, int max) {
    int n = 0;
    for (const char *m = strstr(out, "device memory:"); m && n < max; m = strstr(m + 1, "device memory:"))
        mib[n++] = mib_after(m, "AdamW ");
    return n;
}

/* Runs `trainer` on 2 emulated GPUs with `args`, into tmp/`dir`; its output, which must say
 * `must_say` (NULL: anything). */
static char *two_ranks(const char *trainer, const char *dir, const char *args, const char *must_say) {
    char *all = xprintf("--nproc-per-node 2 device=cuda output_dir=%s/%s %s", tmp, dir, args), *out;
    char *cmd = gpu_run(trainer, all);
    int rc = test_shell(&out, cmd);
    if (rc != 0 || (must_say && !strstr(out, must_say))) fail_msg("%s: exit %d (wanted '%s')\n%s", cmd, rc, must_say, out);
    free(cmd), free(all);
    return out;
}

/* `stage` on 2 ranks saved at step 2 and resumed ends with the same model bytes at step 4 as the
 * run straight through. */
static void resume_is_exact(const char *name, const char *trainer, const char *stage) {
    char *args = xprintf("%s max_steps=4 save_steps=2", stage);
    free(two_ranks(trainer, "out_saved", args, NULL));
    free(args);
    args = xprintf("%s max_steps=4 save_steps=2 resume_from_checkpoint=%s/out_saved/checkpoint-2", stage, tmp);
    free(two_ranks(trainer, "out_resumed", args, "resuming from"));
    free(args);
    char *cmd = xprintf("cmp %s/out_saved/model.safetensors %s/out_resumed/model.safetensors", tmp, tmp);
    must(cmd);
    free(cmd);
    printf("  %-18s saved at step 2, resumed: the same model bytes at step 4\n", name);
}

/* ZeRO-2 on 2 ranks' GPUs (fakenccl.c between the rank processes): each rank keeps fp32 masters,
 * AdamW state and gradients of its own parameters only (its device memory line says so, smaller
 * than without ZeRO; the two gradient slices cover the gradients once), the others' gradients of
 * a layer are added in a window and reduced to their owners by ncclReduce as the layer's backward
 * pass ends (every group's during the backward pass: 6 for stories260K's 5 layers and the
 * parameters outside them), and the updated bf16 weights broadcast from the owners; the curve
 * follows the CPU executor's 2-rank ZeRO-2 run within bf16 tolerance. On the emulation, where
 * NCCL's sums are in rank order, ZeRO-1 and ZeRO-2 give the very curves and model bytes of plain
 * data parallel. Accumulating over 2 micro-batches (the owners' slices accumulate, the windows are
 * reduced each micro-batch) follows ZeRO-1. A ZeRO-2 run saved at step 2 and resumed (moments and
 * masters off each rank's GPU, gathered; scattered back) ends with the same model bytes as the run
 * straight through. Without NCCL, ZeRO on GPUs stops and says why. */
static void test_zero2_two_ranks_over_nccl(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    const char *real = getenv("LLFC_CUDA_REAL");
    const bool emulated = !(real && *real == '1');
    runs_agree("llama_full_zero2", model, "max_steps=3 finetuning_type=full learning_rate=1e-4", "model.safetensors",
               0.02, 0.02, "--nproc-per-node 2 zero_stage=2",
               "data parallel: ZeRO-2 on the GPUs by NCCL\n"
               "ZeRO-2: step 1 started the reductions of 6 gradient groups to their owners during the backward "
               "pass, in 1 micro-batch");
    char *trainer = xprintf("%s/llama_full_zero2", tmp), *out, *cmd;
    // the same trainer without ZeRO, and with ZeRO-1
    const char *stage[2] = {"zero_stage=0", "zero_stage=1"}, *dir[2] = {"out_dp", "out_zero1"};
    double plain[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char *args = xprintf("--nproc-per-node 2 device=cuda output_dir=%s/%s %s", tmp, dir[k], stage[k]);
        cmd = gpu_run(trainer, args);
        int rc = test_shell(&out, cmd);
        if (rc != 0) fail_msg("%s: exit %d\n%s", cmd, rc, out);
        if (k == 0) { // rank 0's line only
            assert_int_equal(adamw_figures(out, plain, 2), 1);
            const char *mem = strstr(out, "device memory:");
            printf("  llama_full_dp2     %.*s\n", (int)strcspn(mem, "\n"), mem);
        }
        else device_memory_is_planned("llama_full_zero1", trainer, out);
        free(out), free(cmd), free(args);
    }
    // each rank's AdamW figure (rerun ZeRO-2 just for its lines: runs_agree keeps no output)
    char *args = xprintf("--nproc-per-node 2 device=cuda output_dir=%s/out_zero2_again zero_stage=2", tmp);
    cmd = gpu_run(trainer, args);
    if (test_shell(&out, cmd) != 0) fail_msg("%s\n%s", cmd, out);
    double zero[2];
    assert_int_equal(adamw_figures(out, zero, 2), 2);
    for (int r = 0; r < 2; r++) {
        printf("  llama_full_zero2   AdamW on the device: %.1f MiB on one rank (line %d) with ZeRO-2, %.1f without\n",
               zero[r], r + 1, plain[0]);
        assert_true(zero[r] < plain[0]);
    }
    free(out), free(cmd), free(args);
    char *z2 = xprintf("%s/out_llama_full_zero2_cuda", tmp), *dp = xprintf("%s/out_dp", tmp), *z1 = xprintf("%s/out_zero1", tmp);
    Curve a = read_curve(z2), b = read_curve(dp), c = read_curve(z1);
    assert_int_equal(a.n, 3);
    assert_int_equal(b.n, 3);
    assert_int_equal(c.n, 3);
    for (int i = 0; i < a.n; i++) {
        printf("  llama_full_zero2   step %d  loss zero2 %.6f zero1 %.6f dp %.6f  grad_norm zero2 %.6f zero1 %.6f dp "
               "%.6f\n", i + 1, a.loss[i], c.loss[i], b.loss[i], a.grad_norm[i], c.grad_norm[i], b.grad_norm[i]);
        if (emulated) assert_true(a.loss[i] == b.loss[i] && c.loss[i] == b.loss[i]);
        assert_true(fabs(a.grad_norm[i] - b.grad_norm[i]) <= 1e-5 * b.grad_norm[i]);
        assert_true(fabs(c.grad_norm[i] - b.grad_norm[i]) <= 1e-5 * b.grad_norm[i]);
    }
    if (emulated) {
        cmd = xprintf("cmp %s/model.safetensors %s/model.safetensors && cmp %s/model.safetensors %s/model.safetensors",
                      z2, dp, z1, dp);
        must(cmd);
        free(cmd);
        printf("  llama_full_zero2   ZeRO-2 and ZeRO-1 wrote the same model bytes as plain data parallel\n");
    }
    free(z2), free(dp), free(z1);
    free(two_ranks(trainer, "accum_zero2", "zero_stage=2 gradient_accumulation_steps=2 max_steps=2",
                   "ZeRO-2: step 1 started the reductions of 12 gradient groups to their owners during the backward "
                   "pass, in 2 micro-batches"));
    free(two_ranks(trainer, "accum_zero1", "zero_stage=1 gradient_accumulation_steps=2 max_steps=2", NULL));
    z2 = xprintf("%s/accum_zero2", tmp), z1 = xprintf("%s/accum_zero1", tmp);
    curves_agree("llama_full_zero2", z2, "zero2_accum2", z1, "zero1_accum2", 2, 1e-5);
    char *w2 = xprintf("%s/model.safetensors", z2), *w1 = xprintf("%s/model.safetensors", z1);
    const double gap = weights_gap(w2, w1);
    printf("  llama_full_zero2   accumulating 2 micro-batches: weights %.2e of the largest from ZeRO-1's\n", gap);
    assert_true(gap < 1e-5);
    free(w2), free(w1), free(z2), free(z1);
    resume_is_exact("llama_full_zero2", trainer, "zero_stage=2");
    // without NCCL on a rank: a clear stop
    args = xprintf("--nproc-per-node 2 device=cuda zero_stage=2 output_dir=%s/out_no_nccl", tmp);
    char *run = gpu_run(trainer, args);
    cmd = xprintf("LLFC_NCCL=/nonexistent/libnccl.so.2 %s", run);
    int rc = test_shell(&out, cmd);
    if (rc == 0 || !strstr(out, "zero_stage 2 on GPUs needs NCCL on every rank: NCCL not found"))
        fail_msg("%s: exit %d\n%s", cmd, rc, out);
    free(out), free(cmd), free(run), free(args), free(trainer), free(model);
}

/* ZeRO-3 on 2 ranks' GPUs: each GPU keeps the 16-bit weights and gradients of its own parameters
 * only (its memory line says which, and the two slices cover the weights once), gathers the
 * others a layer at a time into windows and reduces each window's gradients to their owners.
 * The curve follows the CPU executor's 2-rank ZeRO-3 run; on the emulation (sums in rank order)
 * it is the very curve and model of GPU ZeRO-2; a step gathers the parameters outside the layers
 * once, every layer forward and all but the two still in their windows backward (2L - 1 = 9 for
 * stories260K's 5 layers), all but the first (the parameters outside the layers) gathered ahead
 * of the op that needs them, in the recompute's order too with gradient checkpointing; a save at
 * step 2 resumed gives the same bytes. LoRA with gradient accumulation (the owners' gradients
 * accumulate in place, the others' are reduced per micro-batch) and an evaluation on both ranks
 * follows plain data parallel, under ZeRO-3 and under ZeRO-2 (whose rank 1 holds only its own
 * LoRA weights in host memory: the others' first values come from their owners). Freeze under
 * ZeRO-3: rank 0 gathers the frozen layers from their owners to write the model, and resumes. */
static void test_zero3_two_ranks_over_nccl(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    const char *real = getenv("LLFC_CUDA_REAL");
    const bool emulated = !(real && *real == '1');
    runs_agree("llama_full_zero3", model, "max_steps=3 finetuning_type=full learning_rate=1e-4", "model.safetensors",
               0.02, 0.02, "--nproc-per-node 2 zero_stage=3", "data parallel: ZeRO-3 on the GPUs by NCCL");
    char *trainer = xprintf("%s/llama_full_zero3", tmp);
    char *out = two_ranks(trainer, "out_zero2", "zero_stage=2", NULL);
    free(out);
    out = two_ranks(trainer, "out_again", "zero_stage=3 gradient_accumulation_steps=2 max_steps=1",
                    "ZeRO-3: step 1 gathered 18 parameter groups from their owners (16 of them ahead of the layer that "
                    "needed them) and started the reductions of 12 gradient groups to their owners during the backward "
                    "pass, in 2 micro-batches");
    free(out);
    char *z3 = xprintf("%s/out_llama_full_zero3_cuda", tmp), *z2 = xprintf("%s/out_zero2", tmp);
    curves_agree("llama_full_zero3", z3, "zero3", z2, "zero2", 3, emulated ? 0 : 1e-5);
    char *cmd;
    if (emulated) {
        cmd = xprintf("cmp %s/model.safetensors %s/model.safetensors", z3, z2);
        must(cmd);
        free(cmd);
        printf("  llama_full_zero3   ZeRO-3 wrote the same model bytes as ZeRO-2; 9 gathers a micro-batch\n");
        // recomputing each layer in the backward pass: the gathers ahead follow the recompute's order
        char *gc = xprintf("%s/llama_full_zero3_gc", tmp);
        cmd = xprintf("%s %s/llama_full_zero3.yaml -o %s cutoff_len=32 per_device_train_batch_size=2 max_steps=3 "
                      "finetuning_type=full learning_rate=1e-4 gradient_checkpointing=true", llfc, tmp, gc);
        must(cmd);
        free(two_ranks(gc, "out_zero3_gc", "zero_stage=3", "ZeRO-3: step 1 gathered 9 parameter groups from their "
                       "owners (8 of them ahead of the layer that needed them)"));
        free(cmd);
        cmd = xprintf("cmp %s/out_zero3_gc/model.safetensors %s/model.safetensors", tmp, z2);
        must(cmd);
        free(cmd), free(gc);
        printf("  llama_full_zero3   recomputing in the backward pass: the same model bytes again\n");
    }
    free(z3), free(z2);
    resume_is_exact("llama_full_zero3", trainer, "zero_stage=3");
    free(trainer);
    // LoRA, accumulating over 2 micro-batches, evaluated on every rank
    char *lora = small_trainer("lora_trainer", model, "per_device_train_batch_size=2 max_steps=3 val_size=4 "
                               "eval_strategy=steps eval_steps=2 gradient_accumulation_steps=2");
    // (ZeRO-2: rank 1's host holds its own LoRA weights only, the others come from their owners)
    const char *stage[3] = {"zero_stage=3", "zero_stage=0", "zero_stage=2"}, *label[3] = {"zero3", "dp", "zero2"};
    const char *dir[3] = {"lora_zero3", "lora_dp", "lora_zero2"};
    for (int k = 0; k < 3; k++) free(two_ranks(lora, dir[k], stage[k], NULL));
    char *d0 = xprintf("%s/lora_dp", tmp);
    for (int k = 0; k < 3; k += 2) {
        char *dk = xprintf("%s/%s", tmp, dir[k]);
        curves_agree(dir[k], dk, label[k], d0, label[1], 3, 1e-5);
        weights_like_dp(dir[k], dir[k], dir[1], "adapter_model.safetensors");
        free(dk);
    }
    free(d0), free(lora);
    // freeze: the frozen layers' host copies are their owners' only; rank 0 gathers them to write
    char *freeze = small_trainer("freeze_trainer", model, "per_device_train_batch_size=2 max_steps=3 "
                                 "finetuning_type=freeze freeze_trainable_layers=1 learning_rate=1e-4");
    const char *fdir[2] = {"freeze_zero3", "freeze_dp"};
    for (int k = 0; k < 2; k++) free(two_ranks(freeze, fdir[k], stage[k], NULL));
    weights_like_dp("freeze_zero3", fdir[0], fdir[1], "model.safetensors");
    resume_is_exact("freeze_zero3", freeze, "zero_stage=3");
    free(freeze), free(model);
}

/* LLFC_NCCL_ONE_RANK=1: one GPU's gradients go through the data-parallel NCCL path (a
 * communicator of one rank, a bucket a layer all-reduced on the communication stream as the
 * backward pass goes on) and the run is the one without it, to the bit. On a real GPU
 * (LLFC_CUDA_REAL=1, tests/gpu/device_checks.sh) this is issue 8's check of the NCCL code on one
 * GPU; without NCCL the run stops saying so. */
static void test_one_gpu_through_nccl(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    char *trainer = small_trainer("one_gpu", model, "per_device_train_batch_size=2 max_steps=3 finetuning_type=full "
                                  "learning_rate=1e-4");
    char *cmd;
    const char *dir[2] = {"one_alone", "one_nccl"}, *env[2] = {"", "LLFC_NCCL_ONE_RANK=1"};
    for (int k = 0; k < 2; k++) {
        char *args = xprintf("device=cuda output_dir=%s/%s", tmp, dir[k]), *run = gpu_run(trainer, args), *out;
        cmd = xprintf("%s %s", env[k], run);
        int rc = test_shell(&out, cmd);
        bool said = strstr(out, "data parallel: gradients summed on the GPUs by NCCL") &&
                    strstr(out, "data parallel: gradients reduced in 6 buckets a step");
        if (rc != 0 || said != (k == 1)) fail_msg("%s: exit %d\n%s", cmd, rc, out);
        free(out), free(cmd), free(run), free(args);
    }
    char *a = xprintf("%s/%s", tmp, dir[0]), *b = xprintf("%s/%s", tmp, dir[1]);
    curves_agree("one_gpu_nccl", b, "nccl", a, "alone", 3, 0);
    cmd = xprintf("cmp %s/model.safetensors %s/model.safetensors", a, b);
    must(cmd);
    printf("  one_gpu_nccl       through NCCL's path on one rank: the same model bytes\n");
    free(cmd);
    char *args = xprintf("device=cuda output_dir=%s/one_none", tmp), *run = gpu_run(trainer, args), *out;
    cmd = xprintf("LLFC_NCCL_ONE_RANK=1 LLFC_NCCL=/nonexistent/libnccl.so.2 %s", run);
    int rc = test_shell(&out, cmd);
    if (rc == 0 || !strstr(out, "LLFC_NCCL_ONE_RANK=1: NCCL not found: tried /nonexistent/libnccl.so.2"))
        fail_msg("%s: exit %d\n%s", cmd, rc, out);
    free(out), free(cmd), free(run), free(args), free(a), free(b), free(trainer), free(model);
}

/* Freeze: the last layer trains, everything else has no fp32 master on the device and its host
 * copy is what the written model holds. */
static void test_llama_freeze(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    both_executors_agree("llama_freeze", model, "max_steps=4 finetuning_type=freeze freeze_trainable_layers=1 "
                         "learning_rate=1e-4", "model.safetensors", 0.02);
    free(model);
}

/* fp16: true: f16 activations, weights' copy and products, the loss scaled by 65536 (no step of
 * these overflows), against the fp32 CPU run; f16 has 3 more mantissa bits than bf16. */
static void test_llama_fp16_full(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    runs_agree("llama_fp16_full", model, "max_steps=4 finetuning_type=full learning_rate=1e-4 bf16=false fp16=true",
               "model.safetensors", 0.02, 0.004, "", "fp16 with dynamic loss scaling (initial scale 65536)");
    free(model);
}

static void test_llama_fp16_lora(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    runs_agree("llama_fp16_lora", model, "max_steps=4 lora_dropout=0.1 gradient_accumulation_steps=2 bf16=false "
               "fp16=true", "adapter_model.safetensors", 0.05, 0.004, "", "fp16 with dynamic loss scaling");
    free(model);
}

/* An initial loss scale of 1e30 overflows f16 in the loss gradient: every step is skipped on the
 * device (the weights written are the model's own, bit for bit), the scale halves each step, the
 * steps still count, their loss is logged and their grad_norm is not, and the learning-rate
 * schedule does not advance (cosine without warmup: every step logs the first step's rate). */
static void test_fp16_overflow_skips_steps(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    if (!emulation_or_skip(__func__)) return;
    const char *real = getenv("LLFC_CUDA_REAL");
    char *cmd = xprintf("%s recipes/demo_lora_sft.yaml -o %s/run model_name_or_path=%s cutoff_len=32 "
                        "per_device_train_batch_size=2 max_steps=3 finetuning_type=full learning_rate=1e-3 "
                        "warmup_ratio=0 bf16=false fp16=true output_dir=%s/out plot_loss=false", llfc, tmp, model, tmp);
    must(cmd);
    free(cmd);
    char *out;
    cmd = xprintf("LLFC_TEST_LOSS_SCALE=1e30 %s %s/run device=cuda", real && *real == '1' ? "" : "tests/gpu/emu/run_trainer.sh",
                  tmp);
    int rc = test_shell(&out, cmd);
    const char *want[] = {"fp16 with dynamic loss scaling (initial scale 1e+30)", "fp16: step 1 skipped: ",
                          "loss scale 1e+30 -> 5e+29\n", "fp16: step 2 skipped: ", "loss scale 5e+29 -> 2.5e+29\n",
                          "fp16: step 3 skipped: ", "loss scale 2.5e+29 -> 1.25e+29\n",
                          "fp16: 3 of 3 steps skipped for inf or NaN gradients; loss scale 1.25e+29", "done: 3 steps"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (rc != 0 || !strstr(out, want[i])) fail_msg("%s: exit %d, no '%s' in\n%s", cmd, rc, want[i], out);
    for (const char *at = strstr(out, "fp16: step"); at; at = strstr(at + 1, "fp16: step"))
        printf("  fp16_overflow      %.*s\n", (int)strcspn(at, "\n"), at);
    free(out), free(cmd);
    char *written = xprintf("%s/out/model.safetensors", tmp), *given = xprintf("%s/model.safetensors", model);
    const int64_t changed = weights_changed(written, given);
    printf("  fp16_overflow      weights after 3 skipped steps: %lld values differ from the model's\n",
           (long long)changed);
    assert_int_equal(changed, 0);
    char *path = xprintf("%s/out/trainer_state.json", tmp);
    JsonDoc *d = test_load_json(path);
    const Json *hist = json_get(json_root(d), "log_history");
    int steps = 0;
    double lr0 = -1;
    for (size_t i = 0; json_at(hist, i); i++) {
        const Json *e = json_at(hist, i);
        double loss, lr;
        if (!json_as_double(json_get(e, "loss"), &loss)) continue;
        assert_true(isfinite(loss) && loss > 0);
        assert_null(json_get(e, "grad_norm"));
        assert_true(json_as_double(json_get(e, "learning_rate"), &lr));
        if (steps++ == 0) lr0 = lr;
        assert_true(lr == lr0 && lr > 0);
    }
    assert_int_equal(steps, 3);
    json_free(d);
    free(path), free(written), free(given), free(model);
}

/* A random model of the family (llfc init-model) with stories260K's tokenizer (vocab 512). Its
 * biases (qwen2's) are N(0, 0.2), not Hugging Face's zeros, so that a bias the CUDA run drops or
 * adds twice shows in the loss from the first step. */
static char *family_model(const char *family, const char *tok) {
    char *dir = xprintf("%s/%s_model", tmp, family);
    char *cmd = xprintf("%s init-model --family %s --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 "
                        "--vocab 512 --tokenizer %s --seed 3 --bias-std 0.2 -o %s", llfc, family, tok, dir);
    must(cmd);
    free(cmd);
    return dir;
}

/* A random model of `family` with tokenizer `tok` trained on both executors, for `test`. */
static void family_agrees(const char *test, const char *tok, const char *family, const char *name,
                          const char *overrides, const char *weights_file, double weights_tol) {
    if (!emulation_or_skip(test)) return;
    char *model = family_model(family, tok);
    both_executors_agree(name, model, overrides, weights_file, weights_tol);
    free(model);
}

static void test_qwen2_full_with_biases(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "models/stories260K/hf");
    family_agrees(__func__, tok, "qwen2", "qwen2_full", "max_steps=4 finetuning_type=full learning_rate=1e-4",
                  "model.safetensors", 0.02);
    free(tok);
}

static void test_qwen3_lora_checkpointed(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "models/stories260K/hf");
    family_agrees(__func__, tok, "qwen3", "qwen3_lora", "max_steps=5 gradient_checkpointing=true",
                  "adapter_model.safetensors", 0.05);
    free(tok);
}

static void test_gemma2_lora_softcaps_and_window(void **state) {
    (void)state;
    SHARED_OR_SKIP(tok, "models/stories260K/hf");
    family_agrees(__func__, tok, "gemma2", "gemma2_lora", "max_steps=5", "adapter_model.safetensors", 0.05);
    free(tok);
}

/* device=cuda where no GPU is usable stops and says why; device=auto says so and trains on the
 * CPU; a trainer built without CUDA says that. */
static void test_device_choice_is_explained(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/hf");
    char *cmd = xprintf("%s recipes/demo_lora_sft.yaml -o %s/run model_name_or_path=%s max_steps=1 output_dir=%s/o", llfc,
                        tmp, model, tmp);
    must(cmd);
    free(cmd);
    char *out;
    cmd = xprintf("LLFC_CUDA_DRIVER=/nonexistent/libcuda.so.1 %s/run device=cuda", tmp);
    assert_int_equal(test_shell(&out, cmd), 1);
    if (!strstr(out, "device: cuda: no CUDA driver: /nonexistent/libcuda.so.1 not found")) fail_msg("%s", out);
    free(out), free(cmd);
    cmd = xprintf("LLFC_CUDA_DRIVER=/nonexistent/libcuda.so.1 %s/run", tmp);
    assert_int_equal(test_shell(&out, cmd), 0);
    if (!strstr(out, "the CPU executor trains") || !strstr(out, "on the CPU executor (fp32")) fail_msg("%s", out);
    free(out), free(cmd);
    free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_choice_is_explained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_lora_with_dropout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_lora_on_a_merged_adapter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_fp16_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_fp16_lora, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fp16_overflow_skips_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_ranks_over_nccl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero2_two_ranks_over_nccl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero3_two_ranks_over_nccl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_freeze, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_gpu_through_nccl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qwen2_full_with_biases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qwen3_lora_checkpointed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gemma2_lora_softcaps_and_window, setup, teardown),
    };
    if (getenv("LLFC_TEST_FILTER")) cmocka_set_test_filter(getenv("LLFC_TEST_FILTER")); // e.g. "*rank*", "*qwen2*"
    if (getenv("LLFC_TEST_SKIP")) cmocka_set_skip_filter(getenv("LLFC_TEST_SKIP")); // one GPU: "*ranks*"
    return cmocka_run_group_tests(tests, NULL, NULL);
}
