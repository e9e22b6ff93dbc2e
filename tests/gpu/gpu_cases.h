/* gpu_cases.h - the small plans whose kernels tests/gpu/test_kernels_gpu.c checks (and that
 * tests/gpu/emu/units.c generates for the CPU emulation): one place, so the two agree.
 * Shapes are small but exercise every template: GQA 4:2, qk-norm (qwen3), biases (qwen2),
 * gemma2's soft-caps, norm offset, GeGLU and a sliding window shorter than the rows. */
#ifndef LLFC_GPU_CASES_H
#define LLFC_GPU_CASES_H

#include "graph.h"
#include "model.h"

typedef struct {
    const char *family;
    PlanFinetune ft;
    float dropout;
    int64_t window; /* > 0: sliding_window for the family's sliding layers */
} GpuCase;

enum { CASE_QWEN3_FULL, CASE_QWEN3_LORA, CASE_QWEN3_LORA_DROPOUT, CASE_GEMMA2_FULL, CASE_QWEN2_FULL,
       CASE_QWEN2_LORA_DROPOUT, GPU_CASES };

static const GpuCase GPU_CASE[GPU_CASES] = {
    {"qwen3", FT_FULL, 0, 0},  {"qwen3", FT_LORA, 0, 0},      {"qwen3", FT_LORA, 0.1f, 0},
    {"gemma2", FT_FULL, 0, 16}, {"qwen2", FT_FULL, 0, 0},     {"qwen2", FT_LORA, 0.1f, 0},
};

static inline Plan *gpu_case_plan(const GpuCase *c, char *err, size_t errlen) {
    static const char *const lora_all[] = {"all"};
    ModelSpec m;
    if (!model_init_defaults(&m, c->family, 1000, 128, 2, 4, 2, 32, 256, err, errlen)) return NULL;
    if (c->window > 0) m.sliding_window = c->window;
    GraphOptions o = {.finetune = c->ft, .B = 2, .T = 64, .lora_rank = 8, .lora_dropout = c->dropout,
                      .lora_target = lora_all, .n_lora_target = 1};
    Plan *p = graph_build(&o, &m, err, errlen);
    model_free(&m);
    return p;
}

#endif
