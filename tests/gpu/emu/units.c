/* units.c - the CUDA units tests/gpu/test_kernels_gpu.c builds (the plans of ../gpu_cases.h),
 * or with a second argument the unit a trainer carries (cuda/source.cu, its kernels named in
 * cuda/launches.txt), each written as DIR/u<FNV-1a of its sm_90 CUBIN>.cpp: the unit between
 * prelude.hpp and epilogue.hpp, plus emu_lookup(name) -> a trampoline that unpacks
 * cuLaunchKernel's argument array. fakecuda.c finds the unit by the CUBIN it is given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_gen.h"
#include "model.h"
#include "nvrtc.h"
#include "payload.h"
#include "extent.h"
#include "../gpu_cases.h"
static void write_unit(const char *dir, const char *cubin, const char *src, size_t len, char **names, int n) {
    size_t ext = elf_extent(cubin);
    char path[4096];
    snprintf(path, sizeof path, "%s/u%016llx.cpp", dir, (unsigned long long)fnv(cubin, ext));
    FILE *f = fopen(path, "w");
    fputs("#include \"prelude.hpp\"\n", f);
    fwrite(src, 1, len, f);
    fputs("#include \"epilogue.hpp\"\n", f);
    for (int k = 0; k < n; k++) fprintf(f, "static void t_%s(void **a) { emu_tramp_of(%s, a); }\n", names[k], names[k]);
    fputs("extern \"C\" int emu_lookup(const char *name, void (**t)(void **)) {\n", f);
    for (int k = 0; k < n; k++) fprintf(f, "    if (!strcmp(name, \"%s\")) return *t = t_%s, 1;\n", names[k], names[k]);
    fputs("    return 0;\n}\n", f);
    fclose(f);
    printf("%s (extent %zu)\n", path, ext);
}

static int trainer_unit(const char *dir, const char *trainer) {
    char err[8192];
    Payload *p = payload_open(trainer, err, sizeof err);
    if (!p) { fprintf(stderr, "%s\n", err); return 1; }
    const PayloadEntry *src = payload_find(p, "cuda/source.cu"), *lt = payload_find(p, "cuda/launches.txt");
    const PayloadEntry *cubin = payload_find(p, "cuda/sm_90.cubin");
    if (!src || !lt || !cubin) { fprintf(stderr, "%s: no cuda/source.cu, launches.txt or sm_90.cubin\n", trainer); return 1; }
    char *text = calloc(1, lt->size + 1), *names[4096];
    memcpy(text, lt->data, lt->size);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        int i;
        if (sscanf(line, "kernel %d %127s", &i, name) == 2 && n < 4096) names[n++] = strdup(name);
    }
    char *img = malloc(cubin->size);
    memcpy(img, cubin->data, cubin->size);
    write_unit(dir, img, src->data, src->size, names, n);
    for (int k = 0; k < n; k++) free(names[k]);
    free(img), free(text);
    payload_close(p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3) return trainer_unit(argv[1], argv[2]);
    if (argc != 2) { fprintf(stderr, "usage: units DIR [TRAINER]\n"); return 2; }
    for (int c = 0; c < GPU_CASES; c++) {
        char err[8192];
        Plan *p = gpu_case_plan(&GPU_CASE[c], err, sizeof err);
        if (!p) { fprintf(stderr, "%s\n", err); return 1; }
        CudaUnit u;
        if (!cuda_gen(p, CUDA_BF16, &u, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        int arch = 90;
        NvrtcOutput out;
        if (!nvrtc_compile(u.source, u.len, &arch, 1, &out, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        char *names[4096];
        for (int k = 0; k < u.n_kernels && k < 4096; k++) names[k] = u.kernels[k].name;
        write_unit(argv[1], out.cubin[0].data, u.source, u.len, names, u.n_kernels < 4096 ? u.n_kernels : 4096);
        nvrtc_output_free(&out); cuda_unit_free(&u); plan_free(p);
    }
    return 0;
}
