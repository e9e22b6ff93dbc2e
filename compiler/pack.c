/* pack.c - the last stage of the compiler: what the trainer carries, checked and written.
 *
 *   Lua sources    the template (built in or the user's .lua), the data hook, the lua/llfc
 *                  library; each run once in the sandbox to check its shape
 *   files          the model folder, adapters and dataset names exist
 *   payload        recipe.yaml (resolved, with origins), recipe.source.yaml (as written),
 *                  the Lua sources, manifest.json, the CUDA (cuda/...: nvrtc.h); appended to
 *                  the runtime image
 */
#include "pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "graph.h"
#include "inputs.h"
#include "json.h"
#include "model.h"
#include "nvrtc.h"
#include "payload.h"

/* LLaMA-Factory's template names (0.9.5), so a missing one says "not yet" instead of "unknown". */
static const char *LF_TEMPLATES =
    " alpaca aquila atom baichuan baichuan2 bailing bailing_v2 belle bluelm breeze chatglm2 chatglm3"
    " chatml chatml_de codegeex2 codegeex4 cohere cpm cpm3 cpm4 dbrx deepseek deepseek3 deepseekr1"
    " deepseekcoder default dots_ocr empty ernie ernie_nothink ernie_vl exaone falcon falcon_h1"
    " fewshot gemma gemma2 gemma3 gemma3n gemma4 gemma4n glm4 glm4_moe glm4v glm4_5v glm_ocr glm4_7"
    " glmz1 gpt_oss granite3 granite3_vision granite4 hy3 index hunyuan hunyuan_small intern2"
    " intern_vl intern_s1 keye_vl kimi_vl lfm2 lfm2_vl llama2 llama2_zh llama3 llama4 mllama"
    " moonlight llava llava_next llava_next_llama3 llava_next_mistral llava_next_qwen llava_next_yi"
    " llava_next_video llava_next_video_mistral llava_next_video_yi mimo mimo_v2 mimo_vl minicpm_v"
    " minicpm_v_4_6 minicpm_o minimax1 minimax2 ministral mistral mistral_small ministral3 olmo"
    " openchat openchat-3.6 opencoder paligemma paligemma_chat phi phi_small phi4 phi4_mini pixtral"
    " qwen qwen3 qwen3_nothink qwen2_audio qwen2_omni qwen3_omni qwen3_omni_nothink qwen2_vl qwen3_vl"
    " qwen3_vl_nothink qwen3_5 qwen3_5_nothink qwen3_6 sailor seed_coder seed_oss smollm smollm2"
    " solar starchat telechat2 vicuna video_llava xuanyuan yi yi_vl youtu youtu_vl yuan zephyr aeva ";

typedef struct {
    LuaSource *items;
    size_t n;
} Sources;

static void add_source(Sources *s, const char *name, const char *origin, const char *text, size_t len) {
    s->items = xrealloc(s->items, (s->n + 1) * sizeof *s->items);
    s->items[s->n++] = (LuaSource){xstrdup(name), xstrdup(origin), xstrndup(text, len), len};
}

static void free_sources(Sources *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        free(s->items[i].origin);
        free(s->items[i].text);
    }
    free(s->items);
}

void pack_list_templates(void) {
    for (const BundleFile *f = llfc_lua_bundle; f->name; f++)
        if (!strncmp(f->name, "templates/", 10)) printf("%.*s\n", (int)(strlen(f->name) - 14), f->name + 10);
}

static void list_builtin(StrBuf *out) {
    for (const BundleFile *f = llfc_lua_bundle; f->name; f++)
        if (!strncmp(f->name, "templates/", 10))
            sb_printf(out, "%s%.*s", out->len ? ", " : "", (int)(strlen(f->name) - 14), f->name + 10);
}

/* The template's source: a path to the user's file, or a built-in name. */
static bool resolve_template(const Recipe *r, Sources *s, Diags *d) {
    const char *t = R_NULL(r, template) ? "empty" : R_STR(r, template);
    if (R_NULL(r, template) && strcmp(R_STR(r, stage), "pt") != 0)
        recipe_diag(r, RK_template, d, "warning", "template is not set: using 'empty' (LLaMA-Factory "
                    "would try the tokenizer's Jinja chat template; llfc does not read those)");
    if (strchr(t, '/') || strstr(t, ".lua")) {
        char err[ERR_LEN];
        size_t len;
        char *text = util_read_file(t, &len, err, sizeof err);
        if (!text) {
            recipe_diag(r, RK_template, d, "error", "template: %s", err);
            return false;
        }
        add_source(s, "lua/template.lua", t, text, len);
        free(text);
        return true;
    }
    char *path = xprintf("templates/%s.lua", t);
    const BundleFile *f = bundle_find(path);
    free(path);
    if (f) {
        char *origin = xprintf("lua/templates/%s.lua", t);
        add_source(s, "lua/template.lua", origin, f->data, f->size);
        free(origin);
        return true;
    }
    StrBuf have = {0};
    list_builtin(&have);
    char *padded = xprintf(" %s ", t);
    if (strstr(LF_TEMPLATES, padded))
        recipe_diag(r, RK_template, d, "error", "template: '%s' is a LLaMA-Factory template that llfc "
                    "does not have yet (built in: %s; or write your own .lua, see "
                    "lua/templates/README.md)", t, have.data);
    else
        recipe_diag(r, RK_template, d, "error", "template: unknown template '%s' (built in: %s; or a "
                    "path to your own .lua file)", t, have.data);
    free(padded);
    sb_free(&have);
    return false;
}

static bool resolve_hook(const Recipe *r, Sources *s, Diags *d) {
    if (R_NULL(r, data_hook)) return true;
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(R_STR(r, data_hook), &len, err, sizeof err);
    if (!text) {
        recipe_diag(r, RK_data_hook, d, "error", "data_hook: %s", err);
        return false;
    }
    add_source(s, "lua/hook.lua", R_STR(r, data_hook), text, len);
    free(text);
    return true;
}

/* Check the Lua sources by running each once in the sandbox the trainer will use. */
static void check_lua(const Recipe *r, Sources *lib, Sources *own, Diags *d) {
    LuaBox *box = inputs_sandbox(r, lib->items, lib->n);
    for (size_t i = 0; i < own->n; i++) {
        if (!strcmp(own->items[i].name, "lua/template.lua")) inputs_check_template(r, box, &own->items[i], d);
        if (!strcmp(own->items[i].name, "lua/hook.lua")) inputs_check_hook(r, box, &own->items[i], d);
    }
    lbox_free(box);
}

static char *manifest(const Recipe *r, const Sources *all) {
    StrBuf m = {0};
    sb_printf(&m, "{\n  \"llfc_version\": \"%s\",\n  \"recipe\": ", LLFC_VERSION);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len); /* json_write_string writes to a FILE */
    json_write_string(f, r->source_name, strlen(r->source_name));
    fputs(",\n  \"lua\": [", f);
    for (size_t i = 0; i < all->n; i++) {
        fputs(i ? ", " : "", f);
        fputs("{\"name\": ", f);
        json_write_string(f, all->items[i].name, strlen(all->items[i].name));
        fputs(", \"from\": ", f);
        json_write_string(f, all->items[i].origin, strlen(all->items[i].origin));
        fputs("}", f);
    }
    fputs("]\n}\n", f);
    fclose(f);
    sb_append(&m, buf, len);
    free(buf);
    return m.data;
}

bool pack_build_plan(const Recipe *r, StrBuf *bytes, FILE *print, Diags *d) {
    char err[ERR_LEN];
    ModelSpec spec;
    if (!model_load(&spec, R_STR(r, model_name_or_path), err, sizeof err)) {
        recipe_diag(r, RK_model_name_or_path, d, "error", "%s", err);
        return false;
    }
    Plan *plan = graph_build_recipe(r, &spec, err, sizeof err);
    if (!plan) recipe_diag(r, RK_finetuning_type, d, "error", "%s", err);
    if (plan && bytes) plan_serialize(plan, bytes);
    if (plan && print) plan_print(plan, print);
    plan_free(plan);
    model_free(&spec);
    return plan != NULL;
}

static bool write_trainer(const Recipe *r, const Sources *lua, const StrBuf *plan, const char *out_path, Diags *d) {
    char err[ERR_LEN];
    size_t image_len = (size_t)(llfc_runtime_image_end - llfc_runtime_image);
    StrBuf resolved = {0};
    recipe_write_yaml(r, &resolved);
    char *man = manifest(r, lua);
    // the generated unit, its CUBINs and PTX for llfc's --arch (compiler/nvrtc.h)
    NvrtcPayload cuda = {0};
    static char cuda_err[16384]; /* NVRTC's log with the generated lines can be long */
    if (!nvrtc_payload_build(&cuda, plan->data, plan->len, R_BOOL(r, fp16) ? CUDA_F16 : CUDA_BF16, cuda_err,
                             sizeof cuda_err)) {
        sb_printf(&d->text, "llfc: error: %s\n", cuda_err);
        d->errors++;
        nvrtc_payload_free(&cuda);
        free(man);
        sb_free(&resolved);
        return false;
    }
    if (cuda.note) {
        sb_printf(&d->text, "llfc: warning: %s\n", cuda.note);
        d->warnings++;
    }
    size_t n = 0;
    PayloadEntry *e = xcalloc(lua->n + 4 + cuda.n, sizeof *e);
    e[n++] = (PayloadEntry){"recipe.yaml", resolved.data, resolved.len};
    e[n++] = (PayloadEntry){"plan.bin", plan->data, plan->len};
    e[n++] = (PayloadEntry){"recipe.source.yaml", r->source_text, strlen(r->source_text)};
    e[n++] = (PayloadEntry){"manifest.json", man, strlen(man)};
    for (size_t i = 0; i < lua->n; i++) e[n++] = (PayloadEntry){lua->items[i].name, lua->items[i].text, lua->items[i].len};
    for (size_t i = 0; i < cuda.n; i++) e[n++] = cuda.entries[i];
    bool ok = payload_write(out_path, llfc_runtime_image, image_len, e, n, err, sizeof err);
    if (!ok) {
        sb_printf(&d->text, "llfc: error: %s\n", err);
        d->errors++;
    }
    free(e);
    nvrtc_payload_free(&cuda);
    free(man);
    sb_free(&resolved);
    return ok;
}

bool pack_trainer(const Recipe *r, const char *out_path, Diags *d) {
    int errors = d->errors;
    Sources lib = {0}, own = {0}, all = {0};
    for (const BundleFile *f = llfc_lua_bundle; f->name; f++)
        if (!strncmp(f->name, "llfc/", 5)) {
            char *name = xprintf("lua/%s", f->name);
            add_source(&lib, name, name, f->data, f->size);
            free(name);
        }
    resolve_template(r, &own, d);
    resolve_hook(r, &own, d);
    check_lua(r, &lib, &own, d);
    inputs_check_model(r, d);
    inputs_check_datasets(r, d);
    StrBuf plan = {0};
    if (d->errors == errors) pack_build_plan(r, &plan, NULL, d);
    bool ok = d->errors == errors;
    if (ok) {
        for (size_t i = 0; i < own.n; i++) add_source(&all, own.items[i].name, own.items[i].origin, own.items[i].text, own.items[i].len);
        for (size_t i = 0; i < lib.n; i++) add_source(&all, lib.items[i].name, lib.items[i].origin, lib.items[i].text, lib.items[i].len);
        ok = write_trainer(r, &all, &plan, out_path, d);
    }
    sb_free(&plan);
    free_sources(&lib);
    free_sources(&own);
    free_sources(&all);
    return ok;
}

const BundleFile *bundle_find(const char *name) {
    for (const BundleFile *f = llfc_lua_bundle; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}
