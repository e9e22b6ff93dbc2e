/* main.c - a trainer's entry: verify the payload, read the embedded recipe, then the job.
 *
 *   ./TRAINER [key=value ...]            train (checks its inputs first)
 *   ./TRAINER --dry-run [key=value ...]  check everything a run needs and say what it would do
 *   ./TRAINER --plan                     print the compiled training step (ops, arena, FLOPs)
 *   ./TRAINER --recipe [key=value ...]   print the resolved recipe, each key with its origin
 *   ./TRAINER --help                     commands and the keys that can be overridden here
 *   ./TRAINER --version                  llfc version and the trainer's SHA-256
 *   ./TRAINER --nproc-per-node N [--nnodes M --node-rank R --master-addr H --master-port P] ...
 *                                        start N ranks here, torchrun-style (see dist.h)
 *
 * Overrides are checked exactly as llfc checks recipe values; keys compiled into the trainer
 * (shapes, method, template) cannot change here.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "inputs.h"
#include "mpiboot.h"
#include "payload.h"
#include "recipe.h"
#include "trainer.h"

enum { JOB_TRAIN, JOB_DRY_RUN, JOB_RECIPE, JOB_HELP, JOB_VERSION, JOB_PLAN };

static const char *USAGE =
    "usage: %s [--dry-run | --plan | --recipe | --help | --version] [key=value ...]\n"
    "\n"
    "  (no option)   train with the embedded recipe\n"
    "  --dry-run     check the model, data and scripts; print what a run would do; write nothing\n"
    "  --plan        print the training step: ops, the memory arena, FLOPs per step\n"
    "  --recipe      print the resolved recipe, every key with where its value came from\n"
    "  --help        this text and the keys that can be overridden\n"
    "  --version     llfc version and this trainer's SHA-256\n"
    "  --nproc-per-node N [--nnodes M --node-rank R --master-addr HOST --master-port PORT]\n"
    "                start N ranks on this node (torchrun-style); under torchrun, srun or mpirun\n"
    "                each rank reads its place from their variables\n"
    "\n"
    "key=value overrides a recipe key for this run, read as YAML (learning_rate=2.0e-4).\n";

static void print_help(const char *prog, const Recipe *r) {
    printf(USAGE, prog);
    printf("\nKeys that can be overridden here (current value):\n");
    for (int k = 0; k < RK_COUNT; k++) {
        if (recipe_keys[k].flags & RK_BAKED) continue;
        StrBuf v = {0};
        recipe_value_yaml(r, (RecipeKeyId)k, &v);
        printf("  %-30s %-24s %s\n", recipe_keys[k].name, v.data, recipe_keys[k].help);
        sb_free(&v);
    }
    printf("\nCompiled in (recompile with llfc to change): ");
    for (int k = 0, first = 1; k < RK_COUNT; k++)
        if (recipe_keys[k].flags & RK_BAKED) printf("%s%s", first ? "" : ", ", recipe_keys[k].name), first = 0;
    printf("\n");
}

/* Everything a run needs, checked where the trainer runs. */
static void check_inputs(const Recipe *r, const Payload *p, Diags *d) {
    inputs_check_model(r, d);
    inputs_check_datasets(r, d);
    LuaSource lib[64];
    size_t n_lib = 0;
    for (size_t i = 0; i < payload_count(p) && n_lib < 64; i++) {
        const PayloadEntry *e = payload_entry(p, i);
        if (!strncmp(e->name, "lua/llfc/", 9))
            lib[n_lib++] = (LuaSource){(char *)e->name, (char *)e->name, (char *)e->data, e->size};
    }
    LuaBox *box = inputs_sandbox(r, lib, n_lib);
    const PayloadEntry *t = payload_find(p, "lua/template.lua"), *h = payload_find(p, "lua/hook.lua");
    if (t) inputs_check_template(r, box, &(LuaSource){"lua/template.lua", "lua/template.lua (embedded)", (char *)t->data, t->size}, d);
    if (h) inputs_check_hook(r, box, &(LuaSource){"lua/hook.lua", "lua/hook.lua (embedded)", (char *)h->data, h->size}, d);
    lbox_free(box);
}

static void print_list(const StrList *l) {
    for (size_t i = 0; i < l->n; i++) printf("%s%s", i ? ", " : "", l->items[i]);
}

/* The recipe file the trainer was compiled from: recipe.yaml's first line names it. */
static void print_source(const PayloadEntry *resolved) {
    const char *tag = "source: ", *p = memchr(resolved->data, '\n', resolved->size);
    const char *s = p ? memmem(resolved->data, (size_t)(p - (const char *)resolved->data), tag, strlen(tag)) : NULL;
    if (s) printf("recipe:   %.*s\n", (int)(p - s - strlen(tag)), s + strlen(tag));
}

static void print_plan(const Recipe *r) {
    printf("method:   stage %s, finetuning_type %s", R_STR(r, stage), R_STR(r, finetuning_type));
    if (!strcmp(R_STR(r, finetuning_type), "lora"))
        printf(" (rank %lld, alpha %lld, target ", (long long)R_INT(r, lora_rank), (long long)R_INT(r, lora_alpha)),
            print_list(&R_LIST(r, lora_target)), printf(")");
    printf("\nmodel:    %s\n", R_STR(r, model_name_or_path));
    printf("data:     ");
    print_list(&R_LIST(r, dataset));
    printf(" from %s/dataset_info.json, cutoff_len %lld%s\n", R_STR(r, dataset_dir),
           (long long)R_INT(r, cutoff_len), R_BOOL(r, packing) ? ", packed" : "");
    printf("batch:    %lld rows x %lld tokens per micro-batch, %lld micro-batches per step\n",
           (long long)R_INT(r, per_device_train_batch_size), (long long)R_INT(r, cutoff_len),
           (long long)R_INT(r, gradient_accumulation_steps));
    printf("schedule: lr %g %s, warmup ratio %g, ", R_FLOAT(r, learning_rate), R_STR(r, lr_scheduler_type),
           R_FLOAT(r, warmup_ratio));
    if (R_INT(r, max_steps) > 0) printf("%lld steps\n", (long long)R_INT(r, max_steps));
    else printf("%g epochs\n", R_FLOAT(r, num_train_epochs));
    printf("output:   %s\n", R_STR(r, output_dir));
}

static int finish(Diags *d) {
    fputs(d->text.data ? d->text.data : "", stderr);
    int errors = d->errors;
    diags_free(d);
    return errors ? 1 : 0;
}

/* The torchrun-style launcher options: when --nproc-per-node is given, start the ranks with
 * the remaining arguments and return their status; else return -1. */
static int launch_if_asked(int argc, char **argv) {
    int nproc = 0, nnodes = 1, node_rank = 0, port = 0;
    const char *addr = NULL;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        int *target = !strcmp(s, "--nproc-per-node") ? &nproc : !strcmp(s, "--nnodes") ? &nnodes
                    : !strcmp(s, "--node-rank") ? &node_rank : !strcmp(s, "--master-port") ? &port : NULL;
        if ((target || !strcmp(s, "--master-addr")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (target && (*end || v < 0 || v > 65535)) {
                fprintf(stderr, "%s: %s %s: expected a number\n", argv[0], s, argv[i + 1]);
                free(rest);
                return 2;
            }
            if (target) *target = (int)v;
            else addr = argv[i + 1];
            i++;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    int rc = nproc > 0 ? dist_launch(nproc, nnodes, node_rank, addr, port, rest) : -1;
    free(rest);
    return rc;
}

/* Where this rank sits; with several, meet them all (the dry run proves the rendezvous). */
static void check_place(const Recipe *r, Diags *d) {
    char err[ERR_LEN];
    DistPlace place;
    if (!dist_place_from_env(&place, NULL, err, sizeof err) || !mpiboot_find_master(&place, err, sizeof err)) {
        sb_printf(&d->text, "launch: error: %s\n", err), d->errors++;
        return;
    }
    if (place.world_size == 1) return;
    DistGroup *g = dist_connect(&place, (int)R_INT(r, ddp_timeout), err, sizeof err);
    if (!g || !dist_barrier(g, err, sizeof err)) sb_printf(&d->text, "launch: error: %s\n", err), d->errors++;
    else printf("rank %d of %d (%s, local rank %d of %d on %s): met every rank at %s:%d%s%s\n", place.rank,
                place.world_size, dist_source_name(place.source), place.local_rank,
                place.local_world_size, place.host, place.master_addr, place.master_port,
                mpiboot_active() ? ", rank 0's address by MPI_Bcast of " : "", mpiboot_library());
    dist_close(g);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); // progress lines interleave with stderr in order
    int launched = launch_if_asked(argc, argv);
    if (launched >= 0) return launched;
    char err[ERR_LEN];
    Payload *p = payload_open("/proc/self/exe", err, sizeof err);
    if (!p) {
        fprintf(stderr, "%s: error: %s\n", argv[0], err);
        return 1;
    }
    int job = JOB_TRAIN;
    RecipeOverride *ov = xcalloc((size_t)argc, sizeof *ov);
    size_t n_ov = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--dry-run")) job = JOB_DRY_RUN;
        else if (!strcmp(s, "--recipe")) job = JOB_RECIPE;
        else if (!strcmp(s, "--plan")) job = JOB_PLAN;
        else if (!strcmp(s, "--help") || !strcmp(s, "-h")) job = JOB_HELP;
        else if (!strcmp(s, "--version")) job = JOB_VERSION;
        else if (s[0] != '-' && strchr(s, '=')) ov[n_ov++] = (RecipeOverride){s, xprintf("trainer argument %d", i)};
        else {
            fprintf(stderr, "%s: unknown argument '%s'\n\n", argv[0], s);
            fprintf(stderr, USAGE, argv[0]);
            job = -1;
            break;
        }
    }
    Diags d = {0};
    Recipe *r = NULL;
    int rc = job < 0 ? 2 : 0;
    const PayloadEntry *e = payload_find(p, "recipe.yaml");
    if (job == JOB_VERSION) printf("llfc trainer %s, sha256 %s\n", LLFC_VERSION, payload_digest(p));
    else if (job >= 0 && !e)
        fprintf(stderr, "%s: error: the payload has no recipe.yaml; rebuild the trainer with llfc\n", argv[0]), rc = 1;
    else if (job >= 0)
        r = recipe_parse("embedded recipe", e->data, e->size, ov, n_ov, RECIPE_EMBEDDED, &d);
    if (r && job == JOB_HELP) print_help(argv[0], r);
    if (r && job == JOB_PLAN) rc = trainer_print_plan(r, p);
    if (r && job == JOB_RECIPE) {
        StrBuf out = {0};
        recipe_write_yaml(r, &out);
        fputs(out.data, stdout);
        sb_free(&out);
    }
    if (r && (job == JOB_DRY_RUN || job == JOB_TRAIN)) {
        check_inputs(r, p, &d);
        if (!d.errors && job == JOB_DRY_RUN) check_place(r, &d);
        if (!d.errors) {
            printf("llfc trainer %s (sha256 %.16s)\n", LLFC_VERSION, payload_digest(p));
            print_source(e);
            print_plan(r);
        }
        if (!d.errors && job == JOB_DRY_RUN) printf("dry run: every input checked; nothing was trained or written\n");
        if (!d.errors && job == JOB_TRAIN) rc = trainer_run(r, p);
    }
    for (size_t i = 0; i < n_ov; i++) free((char *)ov[i].origin);
    free(ov);
    recipe_free(r);
    payload_close(p);
    int status = finish(&d);
    rc = status ? status : rc;
    mpiboot_set_exit_status(rc); // under mpirun: MPI_Finalize at exit when this rank succeeded
    return rc;
}
