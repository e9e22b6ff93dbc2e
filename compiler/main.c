/* main.c - the llfc program: compile a recipe into a trainer, and the tools around it.
 *
 *   llfc RECIPE.yaml -o TRAINER [key=value ...]   check everything, write one executable
 *   llfc RECIPE.yaml --plan [key=value ...]       print the training step (ops, arena, FLOPs)
 *   llfc RECIPE.yaml --emit-cuda [key=value ...]  print the generated CUDA unit (compiler/cuda_gen.h)
 *   --arch sm_80,sm_90 | none                     GPUs the trainer's CUBINs are for (compiler/nvrtc.h)
 *   llfc check RECIPE.yaml [key=value ...]        check and print the resolved recipe
 *   llfc check --keys                             every key: type, default, meaning
 *   llfc templates                                the built-in chat templates
 *   llfc preview RECIPE.yaml [-n N] [--json]      the first encoded examples, as LLaMA-Factory prints them
 *   llfc tokenize --tokenizer DIR [--special|--decode]   JSONL text <-> ids, as HF gives them
 *   llfc init-model --family F --hidden H ... -o DIR     a HF model folder, seeded random weights
 *
 * Exit status: 0 done, 1 the recipe or an input is wrong (messages say where), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_init_model.h"
#include "cmd_preview.h"
#include "cmd_tokenize.h"
#include "cuda_gen.h"
#include "nvrtc.h"
#include "pack.h"
#include "recipe.h"

static const char *USAGE =
    "usage: llfc RECIPE.yaml -o TRAINER [key=value ...]   compile a recipe into a trainer\n"
    "       llfc RECIPE.yaml --plan [key=value ...]       print the training step: ops, memory, FLOPs\n"
    "       llfc RECIPE.yaml --emit-cuda [key=value ...]  print the generated CUDA kernels\n"
    "       (with -o: --arch sm_80,sm_90 (default) | none   GPUs to compile for; none: CPU-only trainer)\n"
    "       llfc check RECIPE.yaml [key=value ...]        check it; print every key and its origin\n"
    "       llfc check --keys                             list every recipe key\n"
    "       llfc templates                                list the built-in chat templates\n"
    "       llfc preview RECIPE.yaml [-n N] [--json]      the first examples as the trainer sees them\n"
    "       llfc tokenize --tokenizer DIR [--special] [--decode]   JSONL text <-> token ids\n"
    "       llfc init-model --family F --hidden H --layers L --heads N --kv-heads K\n"
    "                       --intermediate I --vocab V [--tokenizer DIR] -o DIR\n"
    "       llfc --version\n"
    "\n"
    "key=value overrides a recipe key, read as YAML (learning_rate=2.0e-4, dataset=a,b, "
    "max_samples=null).\n"
    "The trainer takes the same overrides: ./TRAINER key=value, ./TRAINER --help.\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "llfc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", USAGE);
    return 2;
}

/* Split argv into the recipe path, the -o path and key=value overrides. */
typedef struct {
    const char *recipe, *out;
    bool plan; /* --plan: print the training step instead of writing a trainer */
    // --- CUDA (compiler/cuda_gen.h, compiler/nvrtc.h)
    bool emit_cuda;   /* --emit-cuda: print the generated CUDA unit instead of writing a trainer */
    const char *arch; /* --arch LIST: GPU architectures, or "none"; NULL = NVRTC_DEFAULT_ARCH */
    RecipeOverride *ov;
    size_t n_ov;
} Args;

static int parse_args(int argc, char **argv, int first, Args *a) {
    a->ov = xcalloc((size_t)argc, sizeof *a->ov);
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--plan")) {
            a->plan = true;
        } else if (!strcmp(s, "--emit-cuda")) {
            a->emit_cuda = true;
        } else if (!strcmp(s, "--arch")) {
            if (i + 1 >= argc) return usage_error("%s needs a list, e.g. sm_80,sm_90 or none", s);
            a->arch = argv[++i];
            char err[ERR_LEN];
            if (!nvrtc_set_arch_list(a->arch, true, err, sizeof err)) return usage_error("%s", err);
        } else if (!strcmp(s, "-o")) {
            if (i + 1 >= argc) return usage_error("%s needs a path", s);
            a->out = argv[++i];
        } else if (s[0] == '-') {
            return usage_error("unknown option %s", s);
        } else if (strchr(s, '=')) {
            a->ov[a->n_ov++] = (RecipeOverride){s, xprintf("argument %d", i)};
        } else if (!a->recipe) {
            a->recipe = s;
        } else {
            return usage_error("unexpected argument '%s' (overrides are key=value)", s);
        }
    }
    if (!a->recipe) return usage_error("%s", "no recipe given");
    return 0;
}

static void free_args(Args *a) {
    for (size_t i = 0; i < a->n_ov; i++) free((char *)a->ov[i].origin);
    free(a->ov);
}

static void print_keys(void) {
    const char *types[] = {"bool", "int", "float", "string", "choice", "list", "mapping"};
    const char *group = "";
    for (int k = 0; k < RK_COUNT; k++) {
        const RecipeKey *key = &recipe_keys[k];
        if (strcmp(group, key->group) != 0) printf("%s### %s\n", k ? "\n" : "", group = key->group);
        printf("%-32s %-7s default %-12s %s%s%s\n", key->name, types[key->type], key->def ? key->def : "null",
               key->help, (key->flags & RK_BAKED) ? " [compiled in]" : "",
               (key->flags & RK_LLFC) ? " [llfc only]" : "");
        if (key->choices) printf("%32s choices: %s\n", "", key->choices);
    }
}

static int finish(Diags *d, int rc) {
    fputs(d->text.data ? d->text.data : "", stderr);
    if (d->errors)
        fprintf(stderr, "llfc: %d error%s, %d warning%s; nothing was written\n", d->errors,
                d->errors == 1 ? "" : "s", d->warnings, d->warnings == 1 ? "" : "s");
    diags_free(d);
    return d->errors ? 1 : rc;
}

static int cmd_check(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[2], "--keys")) {
        print_keys();
        return 0;
    }
    Args a = {0};
    int rc = parse_args(argc, argv, 2, &a);
    if (rc) return rc;
    Diags d = {0};
    Recipe *r = recipe_load(a.recipe, a.ov, a.n_ov, RECIPE_FOR_CHECK, &d);
    if (r) {
        StrBuf out = {0};
        recipe_write_table(r, &out);
        fputs(out.data, stdout);
        sb_free(&out);
        fprintf(stderr, "%s: ok (%d warning%s)\n", a.recipe, d.warnings, d.warnings == 1 ? "" : "s");
    }
    recipe_free(r);
    free_args(&a);
    return finish(&d, 0);
}

static int cmd_compile(int argc, char **argv) {
    Args a = {0};
    int rc = parse_args(argc, argv, 1, &a);
    if (rc) return rc;
    Diags d = {0};
    if (a.plan) { // the step the trainer would run: ops, arena, FLOPs
        Recipe *r = recipe_load(a.recipe, a.ov, a.n_ov, RECIPE_FOR_TRAINER, &d);
        if (r) pack_build_plan(r, NULL, stdout, &d);
        recipe_free(r);
        free_args(&a);
        return finish(&d, 0);
    }
    if (a.emit_cuda) { // the CUDA unit the trainer would carry
        Recipe *r = recipe_load(a.recipe, a.ov, a.n_ov, RECIPE_FOR_TRAINER, &d);
        StrBuf plan = {0};
        char err[ERR_LEN] = "";
        bool ok = r && pack_build_plan(r, &plan, NULL, &d);
        ok = ok && cuda_gen_print(plan.data, plan.len, R_BOOL(r, fp16) ? CUDA_F16 : CUDA_BF16, stdout, err, sizeof err);
        if (r && !ok && d.errors == 0) {
            sb_printf(&d.text, "llfc: error: %s\n", err);
            d.errors++;
        }
        sb_free(&plan);
        recipe_free(r);
        free_args(&a);
        return finish(&d, 0);
    }
    if (!a.out) return usage_error("%s", "no output given: -o TRAINER");
    Recipe *r = recipe_load(a.recipe, a.ov, a.n_ov, RECIPE_FOR_TRAINER, &d);
    if (r && pack_trainer(r, a.out, &d))
        fprintf(stderr, "llfc: wrote %s (stage %s, finetuning_type %s); run %s%s --help\n", a.out,
                R_STR(r, stage), R_STR(r, finetuning_type), strchr(a.out, '/') ? "" : "./", a.out);
    recipe_free(r);
    free_args(&a);
    return finish(&d, 0);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("llfc %s\n", LLFC_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "check")) return cmd_check(argc, argv);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "preview")) return cmd_preview(argc - 1, argv + 1);
    if (!strcmp(argv[1], "init-model")) return cmd_init_model(argc - 1, argv + 1);
    if (!strcmp(argv[1], "templates")) {
        pack_list_templates();
        return 0;
    }
    return cmd_compile(argc, argv);
}
