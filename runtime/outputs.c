/* outputs.c - PEFT adapter folders in and out; Hugging Face model folders out. */
#include "outputs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "trainlog.h"

void outputs_lora_free(OutLora *c) {
    for (size_t i = 0; i < c->n_targets; i++) free(c->target_modules[i]);
    for (size_t i = 0; i < c->n_save; i++) free(c->modules_to_save[i]);
    free(c->target_modules);
    free(c->modules_to_save);
    free(c->base_model_name_or_path);
    memset(c, 0, sizeof *c);
}

// --- names

/* "model.layers.3.self_attn.q_proj.weight" -> does its module name (the component before
 * ".weight") equal `module`? */
static bool is_module_weight(const char *hf_name, const char *module) {
    size_t n = strlen(hf_name), m = strlen(module);
    if (n < m + 8 || strcmp(hf_name + n - 7, ".weight") != 0) return false;
    const char *start = hf_name + n - 7 - m;
    return strncmp(start, module, m) == 0 && (start == hf_name || start[-1] == '.');
}

OutLoraTensor *outputs_lora_tensors(const ModelSpec *spec, const OutLora *cfg, size_t *n,
                                    char *err, size_t errlen) {
    size_t nt;
    ModelTensor *mt = model_tensors(spec, &nt);
    OutLoraTensor *out = xcalloc(2 * nt + 1, sizeof *out);
    *n = 0;
    bool *target_used = xcalloc(cfg->n_targets + 1, 1), *save_used = xcalloc(cfg->n_save + 1, 1);
    for (size_t i = 0; i < nt; i++) {
        const ModelTensor *t = &mt[i];
        for (size_t k = 0; k < cfg->n_targets; k++) {
            if (t->ndim != 2 || t->layer < 0 || !is_module_weight(t->name, cfg->target_modules[k]))
                continue;
            target_used[k] = true;
            size_t base_len = strlen(t->name) - 7; /* without ".weight" */
            for (int ab = 0; ab < 2; ab++) {
                OutLoraTensor *o = &out[(*n)++];
                snprintf(o->name, sizeof o->name, "base_model.model.%.*s.lora_%c.weight",
                         (int)base_len, t->name, ab ? 'B' : 'A');
                o->kind = ab ? 'B' : 'A';
                o->layer = t->layer;
                o->ndim = 2;
                o->shape[0] = ab ? t->shape[0] : cfg->r;  /* A (R, in), B (out, R) */
                o->shape[1] = ab ? cfg->r : t->shape[1];
                snprintf(o->hf_name, sizeof o->hf_name, "%s", t->name);
            }
        }
    }
    for (size_t i = 0; i < nt; i++) { /* modules_to_save, after the adapters as PEFT sorts them */
        const ModelTensor *t = &mt[i];
        for (size_t k = 0; k < cfg->n_save; k++) {
            size_t m = strlen(cfg->modules_to_save[k]);
            const char *dot = strrchr(t->name, '.');
            bool match = dot && (size_t)(dot - t->name) >= m &&
                         strncmp(dot - m, cfg->modules_to_save[k], m) == 0 &&
                         (dot - m == t->name || dot[-(long)m - 1] == '.');
            if (!match) continue;
            save_used[k] = true;
            OutLoraTensor *o = &out[(*n)++];
            snprintf(o->name, sizeof o->name, "base_model.model.%s", t->name);
            o->kind = 'S';
            o->layer = t->layer;
            o->ndim = t->ndim;
            o->shape[0] = t->shape[0];
            o->shape[1] = t->shape[1];
            snprintf(o->hf_name, sizeof o->hf_name, "%s", t->name);
        }
    }
    bool ok = true;
    for (size_t k = 0; ok && k < cfg->n_targets; k++)
        if (!target_used[k])
            ok = errf(err, errlen, "LoRA target '%s' is not a linear layer of this %s model "
                                   "(targets: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                   "down_proj)", cfg->target_modules[k], spec->model_type);
    for (size_t k = 0; ok && k < cfg->n_save; k++)
        if (!save_used[k])
            ok = errf(err, errlen, "modules_to_save '%s' is not a module of this %s model%s",
                      cfg->modules_to_save[k], spec->model_type,
                      strcmp(cfg->modules_to_save[k], "lm_head") == 0 && spec->tie_word_embeddings
                          ? " (its lm_head is tied to embed_tokens: save embed_tokens)" : "");
    free(target_used);
    free(save_used);
    free(mt);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

// --- adapter_config.json

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void str_list(StrBuf *out, char *const *items, size_t n) {
    if (n == 0) {
        sb_puts(out, "null");
        return;
    }
    char **s = xmalloc(n * sizeof *s);
    memcpy(s, items, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    sb_puts(out, "[\n");
    for (size_t i = 0; i < n; i++) {
        sb_puts(out, "    ");
        sb_printf(out, "\"%s\"%s\n", s[i], i + 1 < n ? "," : "");
    }
    sb_puts(out, "  ]");
    free(s);
}

static void py_num(StrBuf *out, double x, bool int_if_whole) {
    if (int_if_whole && x == floor(x) && fabs(x) < 1e15) {
        sb_printf(out, "%lld", (long long)x);
        return;
    }
    char buf[32];
    trainlog_py_repr(x, buf);
    sb_puts(out, buf);
}

void outputs_adapter_config_json(const OutLora *c, StrBuf *out) {
    sb_puts(out, "{\n  \"alora_invocation_tokens\": null,\n  \"alpha_pattern\": {},\n"
                 "  \"arrow_config\": null,\n  \"auto_mapping\": null,\n"
                 "  \"base_model_name_or_path\": ");
    StrBuf esc = {0};
    const char *base = c->base_model_name_or_path ? c->base_model_name_or_path : "";
    sb_puts(&esc, "\"");
    for (const char *p = base; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(&esc, "\\%c", *p);
        else if ((unsigned char)*p < 0x20) sb_printf(&esc, "\\u%04x", *p);
        else sb_append(&esc, p, 1);
    }
    sb_puts(&esc, "\"");
    sb_puts(out, esc.data);
    sb_free(&esc);
    sb_puts(out, ",\n  \"bias\": \"none\",\n  \"corda_config\": null,\n"
                 "  \"ensure_weight_tying\": false,\n  \"eva_config\": null,\n"
                 "  \"exclude_modules\": null,\n  \"fan_in_fan_out\": false,\n"
                 "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                 "  \"layer_replication\": null,\n  \"layers_pattern\": null,\n"
                 "  \"layers_to_transform\": null,\n  \"loftq_config\": {},\n  \"lora_alpha\": ");
    py_num(out, c->lora_alpha, true);
    sb_puts(out, ",\n  \"lora_bias\": false,\n  \"lora_dropout\": ");
    py_num(out, c->lora_dropout, false);
    sb_puts(out, ",\n  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n"
                 "  \"modules_to_save\": ");
    str_list(out, c->modules_to_save, c->n_save);
    sb_puts(out, ",\n  \"peft_type\": \"LORA\",\n  \"peft_version\": \"" OUTPUTS_PEFT_VERSION "\",\n"
                 "  \"qalora_group_size\": 16,\n");
    sb_printf(out, "  \"r\": %lld,\n", (long long)c->r);
    sb_puts(out, "  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": ");
    str_list(out, c->target_modules, c->n_targets);
    sb_printf(out, ",\n  \"target_parameters\": null,\n  \"task_type\": \"CAUSAL_LM\",\n"
                   "  \"trainable_token_indices\": null,\n  \"use_dora\": false,\n"
                   "  \"use_qalora\": false,\n  \"use_rslora\": %s\n}",
              c->use_rslora ? "true" : "false");
}

bool outputs_write_adapter(const char *dir, const OutLora *cfg, const StWriteTensor *tensors,
                           size_t n, char *err, size_t errlen) {
    StWriteOptions o = {.dir = dir, .base = "adapter_model", .max_shard_bytes = UINT64_MAX};
    if (!st_write(tensors, n, &o, NULL, err, errlen)) return false;
    StrBuf b = {0};
    outputs_adapter_config_json(cfg, &b);
    char *p = util_path_join(dir, "adapter_config.json");
    bool ok = util_write_file_atomic(p, b.data, b.len, 0644, err, errlen);
    free(p);
    sb_free(&b);
    return ok;
}

// --- reading an adapter folder

static bool names_list(const Json *v, char ***items, size_t *n, const char *path, const char *key,
                       char *err, size_t errlen) {
    *items = NULL;
    *n = 0;
    if (!v || v->type == JSON_NULL) return true;
    if (v->type == JSON_STRING)
        return errf(err, errlen, "%s:%d:%d: \"%s\" is a regular expression; llfc reads adapters "
                                 "whose %s is a list of module names", path, v->line, v->col, key, key);
    if (v->type != JSON_ARRAY)
        return errf(err, errlen, "%s:%d:%d: \"%s\" should be a list of module names", path, v->line,
                    v->col, key);
    *items = xcalloc(v->arr.n + 1, sizeof **items);
    for (size_t i = 0; i < v->arr.n; i++) {
        const char *s = json_as_str(v->arr.items[i]);
        if (!s)
            return errf(err, errlen, "%s:%d:%d: \"%s\" items should be strings", path,
                        v->arr.items[i]->line, v->arr.items[i]->col, key);
        (*items)[(*n)++] = xstrdup(s);
    }
    return true;
}

/* A key that must be absent or have its default for llfc to read the adapter. */
static bool must_be(const Json *root, const char *key, const char *want, const char *path,
                    char *err, size_t errlen) {
    const Json *v = json_get(root, key);
    if (!v || v->type == JSON_NULL) return true;
    bool ok;
    if (strcmp(want, "false") == 0) ok = v->type == JSON_BOOL && !v->boolean;
    else if (strcmp(want, "{}") == 0) ok = v->type == JSON_OBJECT && v->obj.n == 0;
    else if (strcmp(want, "null") == 0) ok = false;
    else ok = json_as_str(v) && strcmp(json_as_str(v), want) == 0;
    if (ok) return true;
    return errf(err, errlen, "%s:%d:%d: \"%s\" must be %s for llfc to load this adapter (it does "
                             "not support that PEFT feature yet)", path, v->line, v->col, key, want);
}

static bool read_config(const char *path, OutLora *cfg, char *err, size_t errlen) {
    size_t len;
    char *text = util_read_file(path, &len, err, errlen);
    if (!text) return false;
    JsonDoc *doc = json_parse(text, len, path, err, errlen);
    free(text);
    if (!doc) return false;
    const Json *root = json_root(doc);
    bool ok = root->type == JSON_OBJECT || errf(err, errlen, "%s: expected a JSON object", path);
    const char *pt = ok ? json_as_str(json_get(root, "peft_type")) : NULL;
    if (ok && (!pt || strcmp(pt, "LORA") != 0))
        ok = errf(err, errlen, "%s: peft_type is %s; llfc loads LoRA adapters (peft_type \"LORA\")",
                  path, pt ? pt : "missing");
    const Json *r = ok ? json_get(root, "r") : NULL;
    if (ok && (!json_as_int(r, &cfg->r) || cfg->r < 1))
        ok = errf(err, errlen, "%s: \"r\" should be a positive integer", path);
    if (ok && !json_as_double(json_get(root, "lora_alpha"), &cfg->lora_alpha))
        ok = errf(err, errlen, "%s: \"lora_alpha\" should be a number", path);
    cfg->lora_dropout = 0;
    if (ok) json_as_double(json_get(root, "lora_dropout"), &cfg->lora_dropout);
    if (ok) json_as_bool(json_get(root, "use_rslora"), &cfg->use_rslora);
    ok = ok && must_be(root, "use_dora", "false", path, err, errlen) &&
         must_be(root, "bias", "none", path, err, errlen) &&
         must_be(root, "fan_in_fan_out", "false", path, err, errlen) &&
         must_be(root, "lora_bias", "false", path, err, errlen) &&
         must_be(root, "rank_pattern", "{}", path, err, errlen) &&
         must_be(root, "alpha_pattern", "{}", path, err, errlen) &&
         must_be(root, "layers_to_transform", "null", path, err, errlen) &&
         must_be(root, "layer_replication", "null", path, err, errlen) &&
         must_be(root, "trainable_token_indices", "null", path, err, errlen) &&
         must_be(root, "target_parameters", "null", path, err, errlen) &&
         names_list(json_get(root, "target_modules"), &cfg->target_modules, &cfg->n_targets, path,
                    "target_modules", err, errlen) &&
         names_list(json_get(root, "modules_to_save"), &cfg->modules_to_save, &cfg->n_save, path,
                    "modules_to_save", err, errlen);
    if (ok && cfg->n_targets == 0) ok = errf(err, errlen, "%s: \"target_modules\" is empty", path);
    const char *base = ok ? json_as_str(json_get(root, "base_model_name_or_path")) : NULL;
    if (base) cfg->base_model_name_or_path = xstrdup(base);
    json_free(doc);
    return ok;
}

bool outputs_read_adapter(const char *dir, const ModelSpec *spec, OutLora *cfg,
                          StModel **weights, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    *weights = NULL;
    char *cpath = util_path_join(dir, "adapter_config.json");
    char *wpath = util_path_join(dir, "adapter_model.safetensors");
    char *bin = util_path_join(dir, "adapter_model.bin");
    bool ok = true;
    if (!util_is_dir(dir))
        ok = errf(err, errlen, "adapter_name_or_path: %s is not a folder", dir);
    else if (!util_is_file(cpath))
        ok = errf(err, errlen, "%s: missing; a PEFT adapter folder has adapter_config.json and "
                               "adapter_model.safetensors", cpath);
    else if (!util_is_file(wpath))
        ok = errf(err, errlen, "%s: missing%s", wpath,
                  util_is_file(bin) ? " (this adapter is in the old .bin format: load it with PEFT "
                                      "and save_pretrained(..., safe_serialization=True))" : "");
    ok = ok && read_config(cpath, cfg, err, errlen);
    size_t n = 0;
    OutLoraTensor *want = ok ? outputs_lora_tensors(spec, cfg, &n, err, errlen) : NULL;
    ok = ok && want;
    StModel *m = ok ? st_open(wpath, err, errlen) : NULL;
    ok = ok && m;
    for (size_t i = 0; ok && i < n; i++) {
        const StTensor *t = st_find(m, want[i].name);
        if (!t) {
            ok = errf(err, errlen, "%s: no tensor %s; the config targets %s", wpath, want[i].name,
                      want[i].kind == 'S' ? "it in modules_to_save" : "this module");
        } else if (t->ndim != want[i].ndim || t->shape[0] != want[i].shape[0] ||
                   (t->ndim == 2 && t->shape[1] != want[i].shape[1])) {
            ok = errf(err, errlen, "%s: tensor %s has shape (%lld, %lld), this model needs "
                                   "(%lld, %lld): the adapter was made for another model (its "
                                   "base_model_name_or_path: %s)",
                      wpath, t->name, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                      (long long)want[i].shape[0], (long long)(want[i].ndim > 1 ? want[i].shape[1] : 0),
                      cfg->base_model_name_or_path ? cfg->base_model_name_or_path : "unknown");
        }
    }
    if (ok && m->n_tensors != n) { /* something we would not load */
        for (size_t k = 0; k < m->n_tensors; k++) {
            bool known = false;
            for (size_t i = 0; i < n && !known; i++) known = strcmp(m->tensors[k].name, want[i].name) == 0;
            if (!known) {
                ok = errf(err, errlen, "%s: unexpected tensor %s (not in what adapter_config.json "
                                       "describes for this model)", wpath, m->tensors[k].name);
                break;
            }
        }
    }
    free(want);
    free(cpath);
    free(wpath);
    free(bin);
    if (!ok) {
        st_close(m);
        outputs_lora_free(cfg);
        return false;
    }
    *weights = m;
    return true;
}

// --- Hugging Face model folder

static bool write_text(const char *dir, const char *name, const StrBuf *b, char *err, size_t errlen) {
    char *p = util_path_join(dir, name);
    bool ok = util_write_file_atomic(p, b->data, b->len, 0644, err, errlen);
    free(p);
    return ok;
}

bool outputs_write_model(const char *dir, const ModelSpec *spec, const StWriteTensor *tensors,
                         size_t n, uint64_t max_shard_bytes, const char *base_dir, char *err,
                         size_t errlen) {
    if (!util_is_dir(dir) && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return errf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
    StrBuf b = {0};
    model_write_config(spec, &b);
    bool ok = write_text(dir, "config.json", &b, err, errlen);
    b.len = 0;
    model_write_generation_config(spec, &b);
    ok = ok && write_text(dir, "generation_config.json", &b, err, errlen);
    sb_free(&b);
    StWriteOptions o = {.dir = dir, .base = "model", .max_shard_bytes = max_shard_bytes};
    ok = ok && st_write(tensors, n, &o, NULL, err, errlen);
    return ok && (!base_dir || outputs_copy_tokenizer(dir, base_dir, err, errlen));
}

bool outputs_copy_tokenizer(const char *dir, const char *base_dir, char *err, size_t errlen) {
    bool ok = true;
    static const char *const tok_files[] = {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"};
    for (size_t i = 0; ok && i < sizeof tok_files / sizeof *tok_files; i++) {
        char *src = util_path_join(base_dir, tok_files[i]);
        if (util_is_file(src)) {
            size_t len;
            char *data = util_read_file(src, &len, err, errlen);
            char *dst = util_path_join(dir, tok_files[i]);
            ok = data && util_write_file_atomic(dst, data, len, 0644, err, errlen);
            free(dst);
            free(data);
        }
        free(src);
    }
    return ok;
}
