/* encode.c - aligned examples -> input_ids and labels, as LLaMA-Factory 0.9.5 makes them.
 *
 * enc_run is two passes. (1) Every example on its own, in parallel: template pieces from Lua,
 * pieces to ids, the stage's cut to cutoff_len and its labels (LF's _encode_data_example).
 * (2) In order, batch by batch (LF's datasets.map batches): packing, pt blocks, counts.
 * Each thread has its own Lua state and tokenizer scratch; the Tokenizer is shared read-only.
 */
#include "encode.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "json.h"
#include "luabox.h"
#include "util.h"

// ---------------------------------------------------------------------------------------
// growable arrays

typedef struct {
    int32_t *v;
    size_t n, cap;
} IVec;

static void iv_reserve(IVec *a, size_t extra) {
    if (a->n + extra <= a->cap) return;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->n + extra) cap *= 2;
    a->v = xrealloc(a->v, cap * sizeof *a->v);
    a->cap = cap;
}
static void iv_push(IVec *a, int32_t x) {
    iv_reserve(a, 1);
    a->v[a->n++] = x;
}
static void iv_append(IVec *a, const int32_t *x, size_t n) {
    iv_reserve(a, n);
    if (n) memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
}
static void iv_fill(IVec *a, int32_t x, size_t n) {
    iv_reserve(a, n);
    for (size_t i = 0; i < n; i++) a->v[a->n++] = x;
}
static void iv_free(IVec *a) {
    free(a->v);
    *a = (IVec){0};
}

typedef struct { /* a growable array of any element size */
    void *p;
    size_t n, cap, esz;
} Vec;

static void *vec_add(Vec *v, size_t k) {
    if (v->n + k > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->n + k) cap *= 2;
        v->p = xrealloc(v->p, cap * v->esz);
        v->cap = cap;
    }
    void *at = (char *)v->p + v->n * v->esz;
    v->n += k;
    return at;
}
#define VEC_PUSH(vec, type, val) (*(type *)vec_add(&(vec), 1) = (val))

// ---------------------------------------------------------------------------------------
// options

void enc_options_from_recipe(const Recipe *r, EncodeOptions *o) {
    memset(o, 0, sizeof *o);
    const char *stage = R_STR(r, stage);
    o->stage = !strcmp(stage, "pt")    ? ENC_PT
               : !strcmp(stage, "kto") ? ENC_KTO
               : (!strcmp(stage, "rm") || !strcmp(stage, "dpo")) ? ENC_PAIRWISE
                                                                  : ENC_SFT;
    /* recipe.c fills a null packing in (ORIGIN_DERIVED: on for pt); LF's rule below needs to
     * know whether the user set it */
    bool explicit_packing =
        !R_NULL(r, packing) && R_BOOL(r, packing) && r->origin[RK_packing].kind != ORIGIN_DERIVED;
    o->neat_packing = R_BOOL(r, neat_packing);
    o->packing = R_NULL(r, packing) ? o->stage == ENC_PT : R_BOOL(r, packing);
    if (o->neat_packing) o->packing = true;
    /* LF's DataArguments.__post_init__: an explicit packing (or neat_packing) takes one token
     * off cutoff_len ("avoid pad_to_multiple_of"); packing that pt turns on later does not. */
    o->cutoff_len = R_INT(r, cutoff_len) - ((explicit_packing || o->neat_packing) ? 1 : 0);
    o->train_on_prompt = R_BOOL(r, train_on_prompt);
    o->mask_history = R_BOOL(r, mask_history);
    o->enable_thinking = R_NULL(r, enable_thinking) ? -1 : R_BOOL(r, enable_thinking) ? 1 : 0;
    o->preserve_thinking = R_BOOL(r, preserve_thinking);
    o->batch_size = (size_t)R_INT(r, preprocessing_batch_size);
    o->template_name = R_NULL(r, template) ? "empty" : R_STR(r, template);
    o->tool_format = R_NULL(r, tool_format) ? NULL : R_STR(r, tool_format);
    o->default_system = R_NULL(r, default_system) ? NULL : R_STR(r, default_system);
    o->n_threads = R_NULL(r, preprocessing_num_workers) ? 0 : (int)R_INT(r, preprocessing_num_workers);
}

// ---------------------------------------------------------------------------------------
// the encoder: template (Lua), special tokens (LF's fix_special_tokens)

/* Run once per Lua state: builds the template with the options, returns the entry points. */
static const char DRIVER[] =
    "local template = require 'llfc.template'\n"
    "local def, opts = ...\n"
    "local t = template.new(def, opts)\n"
    "local M = { efficient_eos = t.efficient_eos, tool_format = t.format_tools.tool_format,\n"
    "  function_format = t.format_function.tool_format }\n"
    "function M.multi(msgs, system, tools, discard)\n"
    "  return template.encode_multiturn(t, msgs, system, tools, discard)\n"
    "end\n"
    "function M.one(msgs, system, tools) return template.encode_oneturn(t, msgs, system, tools) end\n"
    "function M.special(eos, pad)\n"
    "  local s = template.special_tokens(t, { eos_token = eos, pad_token = pad })\n"
    "  return s.eos_token, s.pad_token, s.stop_words\n"
    "end\n"
    "return M\n";

struct Encoder {
    EncodeOptions o;
    const Tokenizer *tok; /* encodes: the caller's, or own_tok */
    Tokenizer *own_tok;   /* the caller's with LF's re-added special tokens (see readd_tokens) */
    const Tokenizer *caller_tok; /* ids of bos / eos / pad as its tokenizer_config.json names them */
    LuaSource *lib; /* copies */
    size_t n_lib;
    LuaSource tpl;
    char *tool_format, *default_system, *date, *template_name;
    int32_t eos_id, pad_id, bos_id;
    char *eos_text; /* pt appends it to each text */
    char *bos_text; /* pt prepends it when add_bos */
    bool add_bos;   /* transformers' tokenizer.add_bos_token (pt only) */
    bool efficient_eos;
    char *fmt_tools, *fmt_function; /* the template's tool formats as resolved */
};

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

/* A Lua state with the engine and the template built; the driver table M on top. */
static LuaBox *make_box(const Encoder *e, char *err, size_t errlen) {
    LuaBox *box = lbox_new(NULL);
    lua_State *L = lbox_lua(box);
    for (size_t i = 0; i < e->n_lib; i++) {
        const char *base = e->lib[i].name;
        if (!strncmp(base, "lua/", 4)) base += 4;
        size_t bl = strlen(base);
        if (bl > 4 && !strcmp(base + bl - 4, ".lua")) bl -= 4;
        char *mod = xstrndup(base, bl);
        for (char *p = mod; *p; p++)
            if (*p == '/') *p = '.';
        lbox_add_module(box, mod, e->lib[i].text, e->lib[i].len);
        free(mod);
    }
    char e2[ERR_LEN];
    if (!lbox_run(box, e->tpl.origin, e->tpl.text, e->tpl.len, 1, e2, sizeof e2)) {
        errf(err, errlen, "template: %s", e2);
        goto fail;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        errf(err, errlen, "template: %s must return a table (see lua/templates/README.md), it returned %s",
             e->tpl.origin, luaL_typename(L, -1));
        goto fail;
    }
    if (!lbox_load(box, "llfc encode driver", DRIVER, sizeof DRIVER - 1, e2, sizeof e2)) {
        errf(err, errlen, "%s", e2);
        goto fail;
    }
    lua_insert(L, -2); /* driver below the definition */
    lua_newtable(L);
    lua_pushstring(L, e->tpl.origin);
    lua_setfield(L, -2, "source");
    if (e->tool_format) lua_pushstring(L, e->tool_format), lua_setfield(L, -2, "tool_format");
    if (e->default_system) lua_pushstring(L, e->default_system), lua_setfield(L, -2, "default_system");
    if (e->o.enable_thinking < 0) lua_pushliteral(L, "none");
    else lua_pushboolean(L, e->o.enable_thinking);
    lua_setfield(L, -2, "enable_thinking");
    lua_pushboolean(L, e->o.preserve_thinking);
    lua_setfield(L, -2, "preserve_thinking");
    lua_pushboolean(L, e->o.train_on_prompt);
    lua_setfield(L, -2, "train_on_prompt");
    if (e->date) lua_pushstring(L, e->date), lua_setfield(L, -2, "date");
    if (!lbox_call(box, 2, 1, e2, sizeof e2)) {
        errf(err, errlen, "template: %s", e2);
        goto fail;
    }
    return box;
fail:
    lbox_free(box);
    return NULL;
}

typedef struct { /* what tokenizer_config.json says, as transformers 4.5x reads it */
    char *eos, *bos, *pad, *cls;
    int add_bos; /* -1 absent, else 0/1 */
} TokConfig;

static char *config_token(const Json *v) {
    if (!v) return NULL;
    if (v->type == JSON_STRING) return xstrdup(v->str.s);
    const char *c = json_as_str(json_get(v, "content"));
    return c ? xstrdup(c) : NULL;
}

static void read_tok_config(const char *dir, TokConfig *c) {
    memset(c, 0, sizeof *c);
    c->add_bos = -1;
    if (!dir) return;
    char *path = util_path_join(dir, "tokenizer_config.json");
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    free(path);
    if (!text) return; /* tok_load already said what it needed */
    JsonDoc *doc = json_parse(text, len, "tokenizer_config.json", err, sizeof err);
    free(text);
    if (!doc) return;
    const Json *root = json_root(doc);
    c->eos = config_token(json_get(root, "eos_token"));
    c->bos = config_token(json_get(root, "bos_token"));
    c->pad = config_token(json_get(root, "pad_token"));
    const char *cls = json_as_str(json_get(root, "tokenizer_class"));
    c->cls = cls ? xstrdup(cls) : NULL;
    bool b;
    if (json_as_bool(json_get(root, "add_bos_token"), &b)) c->add_bos = b;
    json_free(doc);
}

static void tok_config_free(TokConfig *c) {
    free(c->eos);
    free(c->bos);
    free(c->pad);
    free(c->cls);
}

/* transformers 4.5x: only the Llama and Gemma tokenizer classes have add_bos_token (default
 * true); PretrainDatasetProcessor reads it with getattr(..., False). */
static bool has_add_bos(const char *cls) {
    static const char *const with[] = {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                                       "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"};
    for (size_t i = 0; cls && i < sizeof with / sizeof *with; i++)
        if (!strcmp(cls, with[i])) return true;
    return false;
}

static char *id_text(const Tokenizer *tok, int32_t id) {
    size_t len;
    const char *s = id >= 0 ? tok_id_to_token(tok, id, &len) : NULL;
    return s ? xstrndup(s, len) : NULL;
}

/* Byte offset of a JSON value from its line:col (col counts bytes). */
static size_t offset_of(const char *text, size_t len, int line, int col) {
    size_t off = 0;
    for (int l = 1; l < line && off < len; off++)
        if (text[off] == '\n') l++;
    return off + (size_t)col - 1;
}

typedef struct {
    size_t off, old_len;
    const char *with;
} Edit;

static int cmp_edit(const void *a, const void *b) {
    size_t x = ((const Edit *)a)->off, y = ((const Edit *)b)->off;
    return (x > y) - (x < y);
}

/* The offset just past the JSON object or array that starts at off (strings skipped). */
static size_t skip_json(const char *t, size_t len, size_t off) {
    int depth = 0;
    bool in_str = false;
    for (size_t i = off; i < len; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{' || c == '[') depth++;
        else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
    }
    return len;
}

/* s as a JSON string literal */
static void json_quote(StrBuf *out, const char *s) {
    sb_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(out, "\\%c", *p);
        else if (*p < 0x20) sb_printf(out, "\\u%04x", *p);
        else sb_append(out, (const char *)p, 1);
    }
    sb_puts(out, "\"");
}

/* LF's fix_special_tokens calls tokenizer.add_special_tokens for the eos it puts in and for the
 * stop words. transformers then (re-)adds each as AddedToken(lstrip=False, rstrip=False,
 * normalized=False, special=True): a token tokenizer.json has with other flags loses them
 * (Phi-3's <|end|> has rstrip, so after LF's fix "<|end|>\n" keeps its "\n"); an ordinary
 * vocabulary token becomes a special one; a word the vocabulary lacks gets the next id,
 * len(tokenizer) (llama3's <|eom_id|> on a Llama 3 tokenizer without it: 128256; LF warns
 * that the model needs resize_vocab). When any of this applies, tokenizer.json is loaded again
 * with those added tokens, so the ids are LF's. */
static bool readd_tokens(Encoder *e, const char *tok_dir, char **words, size_t n_words, StrBuf *notes, char *err,
                         size_t errlen) {
    if (!tok_dir || n_words == 0) return true;
    char *path = util_path_join(tok_dir, "tokenizer.json");
    size_t len;
    char *text = util_read_file(path, &len, err, errlen);
    if (!text) {
        free(path);
        return false;
    }
    /* only the added_tokens array is parsed (a vocabulary can be megabytes); offsets into it
     * are made offsets into text by adding base */
    size_t base = 0, sublen = 0;
    for (const char *p = text; (p = strstr(p, "\"added_tokens\"")) != NULL; p++) {
        const char *q = p + strlen("\"added_tokens\"");
        while (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t') q++;
        if (*q++ != ':') continue; /* a string, not the key */
        while (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t') q++;
        if (*q != '[') continue;
        base = (size_t)(q - text);
        sublen = skip_json(text, len, base) - base;
        break;
    }
    JsonDoc *doc = sublen ? json_parse(text + base, sublen, path, err, errlen) : NULL;
    if (sublen && !doc) {
        free(text);
        free(path);
        return false;
    }
    const Json *added = doc ? json_root(doc) : NULL;
    const char *sub = text + base;
    Edit *edits = NULL;
    size_t n_edits = 0;
    bool *found = xcalloc(n_words, sizeof *found);
    for (size_t i = 0; added && i < added->arr.n; i++) {
        const Json *a = added->arr.items[i];
        const char *content = json_as_str(json_get(a, "content"));
        bool hit = false;
        for (size_t k = 0; content && k < n_words; k++)
            if (!strcmp(content, words[k])) hit = found[k] = true;
        if (!hit) continue;
        static const struct { const char *key; bool want; } flags[] = {
            {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}};
        for (size_t f = 0; f < 4; f++) {
            const Json *v = json_get(a, flags[f].key);
            if (!v || v->type != JSON_BOOL || v->boolean == flags[f].want) continue;
            edits = xrealloc(edits, (n_edits + 1) * sizeof *edits);
            edits[n_edits++] = (Edit){base + offset_of(sub, sublen, v->line, v->col), v->boolean ? 4 : 5,
                                      flags[f].want ? "true" : "false"};
        }
    }
    /* the others become new entries of added_tokens, in LF's order, inserted after its "[" */
    StrBuf add = {0};
    size_t next_id = tok_vocab_size(e->tok);
    for (size_t k = 0; k < n_words; k++) {
        bool dup = false;
        for (size_t j = 0; j < k; j++) dup = dup || !strcmp(words[j], words[k]);
        if (found[k] || dup) continue;
        int32_t id = tok_token_to_id(e->tok, words[k], strlen(words[k]));
        if (id < 0) {
            id = (int32_t)next_id++;
            if (notes)
                sb_printf(notes, "note: template %s adds the special token '%s' as id %d (the tokenizer lacks it; "
                          "LLaMA-Factory does the same and the model needs resize_vocab)\n", e->tpl.origin,
                          words[k], id);
        }
        sb_printf(&add, ", {\"id\": %d, \"content\": ", id);
        StrBuf q = {0};
        json_quote(&q, words[k]);
        sb_append(&add, q.data, q.len);
        sb_free(&q);
        sb_puts(&add, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                      "\"normalized\": false, \"special\": true}");
    }
    free(found);
    if (add.len && added && added->type == JSON_ARRAY) { /* appended, as HF adds them: ids in order */
        size_t at;
        const char *with = add.data;
        if (added->arr.n == 0) {
            at = base + 1; /* after "[" */
            with += 2;     /* no ", " before the first */
        } else {
            const Json *last = added->arr.items[added->arr.n - 1];
            at = skip_json(text, len, base + offset_of(sub, sublen, last->line, last->col));
        }
        edits = xrealloc(edits, (n_edits + 1) * sizeof *edits);
        edits[n_edits++] = (Edit){at, 0, with};
    }
    bool ok = true;
    if (n_edits) {
        qsort(edits, n_edits, sizeof *edits, cmp_edit);
        StrBuf out = {0};
        size_t at = 0;
        for (size_t k = 0; k < n_edits; k++) {
            sb_append(&out, text + at, edits[k].off - at);
            sb_puts(&out, edits[k].with);
            at = edits[k].off + edits[k].old_len;
        }
        sb_append(&out, text + at, len - at);
        e->own_tok = tok_load_json(out.data, out.len, path, err, errlen);
        ok = e->own_tok != NULL;
        if (ok) e->tok = e->own_tok;
        sb_free(&out);
    }
    free(edits);
    sb_free(&add);
    json_free(doc);
    free(text);
    free(path);
    return ok;
}

/* LF's fix_special_tokens, without adding tokens: the eos must exist; missing stop words are
 * noted (LF adds them as new tokens; only texts containing them would differ). */
static bool fix_special_tokens(Encoder *e, LuaBox *box, const TokConfig *c, const char *tok_dir, StrBuf *notes,
                               char *err, size_t errlen) {
    lua_State *L = lbox_lua(box);
    char *eos0 = c->eos ? xstrdup(c->eos) : id_text(e->tok, tok_eos_id(e->tok));
    char *pad0 = c->pad ? xstrdup(c->pad) : id_text(e->tok, tok_pad_id(e->tok));
    e->caller_tok = e->tok;
    lua_getfield(L, -1, "special");
    if (eos0 && tok_token_to_id(e->tok, eos0, strlen(eos0)) >= 0) lua_pushstring(L, eos0);
    else lua_pushnil(L);
    if (pad0 && tok_token_to_id(e->tok, pad0, strlen(pad0)) >= 0) lua_pushstring(L, pad0);
    else lua_pushnil(L);
    free(eos0);
    free(pad0);
    char e2[ERR_LEN];
    if (!lbox_call(box, 2, 3, e2, sizeof e2)) return errf(err, errlen, "template: %s", e2);
    e->eos_text = xstrdup(lua_tostring(L, -3));
    char *pad = xstrdup(lua_tostring(L, -2));
    size_t n_stop = lua_rawlen(L, -1), n_words = 0;
    char **words = xcalloc(n_stop + 1, sizeof *words); /* what LF passes to add_special_tokens */
    if (!c->eos || strcmp(c->eos, e->eos_text) != 0) words[n_words++] = xstrdup(e->eos_text);
    for (size_t i = 1; i <= n_stop; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (lua_tostring(L, -1)) words[n_words++] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
    bool ok = readd_tokens(e, tok_dir, words, n_words, notes, err, errlen);
    for (size_t i = 0; i < n_words; i++) free(words[i]);
    free(words);
    e->eos_id = tok_token_to_id(e->tok, e->eos_text, strlen(e->eos_text));
    e->pad_id = tok_token_to_id(e->tok, pad, strlen(pad));
    free(pad);
    if (!ok) return false;
    if (e->eos_id < 0) /* only without tok_dir: nowhere to add it */
        return errf(err, errlen, "template %s: its eos token '%s' is not in the tokenizer's vocabulary",
                    e->tpl.origin, e->eos_text);
    if (e->pad_id < 0) e->pad_id = e->eos_id;
    e->bos_id = tok_bos_id(e->caller_tok);
    e->bos_text = c->bos ? xstrdup(c->bos) : id_text(e->tok, e->bos_id);
    e->add_bos = has_add_bos(c->cls) && c->add_bos != 0 && e->bos_id >= 0 && e->bos_text;
    if (e->o.stage == ENC_PT && e->template_name && !strcmp(e->template_name, "llama3")) {
        free(e->eos_text); /* PretrainDatasetProcessor's special case */
        e->eos_text = xstrdup("<|end_of_text|>");
    }
    return true;
}

Encoder *enc_new(const EncodeOptions *o, const Tokenizer *tok, const char *tok_dir, const LuaSource *lib,
                 size_t n_lib, const LuaSource *tpl, StrBuf *notes, char *err, size_t errlen) {
    if (o->cutoff_len < 1) {
        errf(err, errlen, "cutoff_len must be at least 1 (%lld after packing's adjustment)",
             (long long)o->cutoff_len);
        return NULL;
    }
    if (o->mask_history && o->train_on_prompt) {
        errf(err, errlen, "mask_history is incompatible with train_on_prompt (as in LLaMA-Factory)");
        return NULL;
    }
    Encoder *e = xcalloc(1, sizeof *e);
    e->o = *o;
    e->tok = tok;
    e->tool_format = dup_or_null(o->tool_format);
    e->default_system = dup_or_null(o->default_system);
    e->date = dup_or_null(o->date);
    e->template_name = dup_or_null(o->template_name);
    e->o.tool_format = e->tool_format;
    e->o.default_system = e->default_system;
    e->o.date = e->date;
    e->o.template_name = e->template_name;
    if (!e->o.batch_size) e->o.batch_size = ENC_BATCH;
    e->lib = xcalloc(n_lib ? n_lib : 1, sizeof *e->lib);
    e->n_lib = n_lib;
    for (size_t i = 0; i < n_lib; i++) {
        e->lib[i].name = xstrdup(lib[i].name);
        e->lib[i].origin = xstrdup(lib[i].origin ? lib[i].origin : lib[i].name);
        e->lib[i].text = xstrndup(lib[i].text, lib[i].len);
        e->lib[i].len = lib[i].len;
    }
    e->tpl.name = xstrdup(tpl->name ? tpl->name : "lua/template.lua");
    e->tpl.origin = xstrdup(tpl->origin ? tpl->origin : e->tpl.name);
    e->tpl.text = xstrndup(tpl->text, tpl->len);
    e->tpl.len = tpl->len;

    LuaBox *box = make_box(e, err, errlen);
    if (!box) {
        enc_free(e);
        return NULL;
    }
    lua_State *L = lbox_lua(box);
    lua_getfield(L, -1, "efficient_eos");
    e->efficient_eos = lua_toboolean(L, -1);
    lua_getfield(L, -2, "tool_format");
    e->fmt_tools = dup_or_null(lua_tostring(L, -1));
    lua_getfield(L, -3, "function_format");
    e->fmt_function = dup_or_null(lua_tostring(L, -1));
    lua_pop(L, 3);
    TokConfig c;
    read_tok_config(tok_dir, &c);
    bool ok = fix_special_tokens(e, box, &c, tok_dir, notes, err, errlen);
    tok_config_free(&c);
    lbox_free(box);
    if (!ok) {
        enc_free(e);
        return NULL;
    }
    return e;
}

void enc_free(Encoder *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_lib; i++) {
        free(e->lib[i].name);
        free(e->lib[i].origin);
        free(e->lib[i].text);
    }
    free(e->lib);
    free(e->tpl.name);
    free(e->tpl.origin);
    free(e->tpl.text);
    free(e->tool_format);
    free(e->default_system);
    free(e->date);
    free(e->template_name);
    free(e->eos_text);
    free(e->bos_text);
    free(e->fmt_tools);
    free(e->fmt_function);
    tok_free(e->own_tok);
    free(e);
}

int32_t enc_eos_id(const Encoder *e) { return e->eos_id; }
int32_t enc_pad_id(const Encoder *e) { return e->pad_id; }
int32_t enc_bos_id(const Encoder *e) { return e->bos_id; }

size_t enc_id_limit(const Encoder *e) { return tok_id_limit(e->tok); }

void enc_key_text(const Encoder *e, StrBuf *out) {
    const EncodeOptions *o = &e->o;
    sb_printf(out, "stage=%d cutoff_len=%lld packing=%d neat=%d train_on_prompt=%d mask_history=%d "
              "enable_thinking=%d preserve_thinking=%d batch=%zu efficient_eos=%d\n",
              (int)o->stage, (long long)o->cutoff_len, o->packing, o->neat_packing, o->train_on_prompt,
              o->mask_history, o->enable_thinking, o->preserve_thinking, o->batch_size, e->efficient_eos);
    sb_printf(out, "template_name=%s tool_format=%s function_format=%s\n", o->template_name ? o->template_name : "",
              e->fmt_tools ? e->fmt_tools : "", e->fmt_function ? e->fmt_function : "");
    sb_printf(out, "default_system=%zu:%s\n", o->default_system ? strlen(o->default_system) : 0,
              o->default_system ? o->default_system : "");
    bool llama3_tools = (e->fmt_tools && !strcmp(e->fmt_tools, "llama3")) ||
                        (e->fmt_function && !strcmp(e->fmt_function, "llama3"));
    if (llama3_tools) sb_printf(out, "date=%s\n", o->date ? o->date : "today");
    sb_printf(out, "eos=%d pad=%d bos=%d add_bos=%d eos_text=%s\n", e->eos_id, e->pad_id, e->bos_id, e->add_bos,
              e->eos_text);
    sb_printf(out, "template=%zu:", e->tpl.len);
    sb_append(out, e->tpl.text, e->tpl.len);
    for (size_t i = 0; i < e->n_lib; i++) {
        sb_printf(out, "\nlib %s=%zu:", e->lib[i].name, e->lib[i].len);
        sb_append(out, e->lib[i].text, e->lib[i].len);
    }
}

// ---------------------------------------------------------------------------------------
// one example (pass 1)

typedef struct { /* one thread's tools */
    const Encoder *e;
    LuaBox *box;
    int mod; /* stack index of the driver table */
    TokScratch *scratch;
    TokIds tmp;
} Worker;

typedef struct { /* one example's result */
    int32_t *ids, *labels; /* parts back to back */
    uint32_t len[2];
    uint8_t drop, truncated, tag;
} ExOut;

static const char *role_name(DataRole r) {
    switch (r) {
    case DATA_ROLE_USER: return "user";
    case DATA_ROLE_ASSISTANT: return "assistant";
    case DATA_ROLE_FUNCTION: return "function";
    case DATA_ROLE_OBSERVATION: return "observation";
    }
    return "unknown";
}

static void push_msg(lua_State *L, const DataMessage *m, int i) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, role_name(m->role));
    lua_setfield(L, -2, "role");
    lua_pushstring(L, m->content ? m->content : "");
    lua_setfield(L, -2, "content");
    lua_rawseti(L, -2, i);
}

/* messages = prompt + [last] (last may be NULL), then system, tools: 3 values pushed. */
static void push_conversation(lua_State *L, const DataExample *ex, const DataMessage *last) {
    lua_createtable(L, (int)ex->n_prompt + 1, 0);
    int k = 1;
    for (size_t i = 0; i < ex->n_prompt; i++) push_msg(L, &ex->prompt[i], k++);
    if (last) push_msg(L, last, k++);
    if (ex->system && *ex->system) lua_pushstring(L, ex->system);
    else lua_pushnil(L);
    if (ex->tools && *ex->tools) lua_pushstring(L, ex->tools);
    else lua_pushnil(L);
}

/* The pieces table at idx -> ids appended to out (LF's _convert_elements_to_ids). */
static bool pieces_to_ids(Worker *w, int idx, IVec *out, char *err, size_t errlen) {
    lua_State *L = lbox_lua(w->box);
    const Encoder *e = w->e;
    idx = lua_absindex(L, idx);
    size_t n = lua_rawlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        size_t len;
        lua_getfield(L, -1, "text");
        const char *text = lua_tolstring(L, -1, &len);
        if (text) {
            if (!tok_encode(e->tok, w->scratch, text, len, false, &w->tmp, err, errlen)) {
                lua_pop(L, 2);
                return false;
            }
            iv_append(out, w->tmp.ids, w->tmp.len);
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "special");
        const char *sp = lua_tostring(L, -1);
        if (sp) {
            if (!strcmp(sp, "eos_token")) iv_push(out, e->eos_id);
            else if (!strcmp(sp, "bos_token") && e->bos_id >= 0) iv_push(out, e->bos_id);
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "token");
        const char *t = lua_tolstring(L, -1, &len);
        int32_t id = t ? tok_token_to_id(e->tok, t, len) : -1;
        if (id < 0) {
            errf(err, errlen, "template %s: token '%s' is not in the tokenizer's vocabulary", e->tpl.origin,
                 t ? t : "?");
            lua_pop(L, 2);
            return false;
        }
        iv_push(out, id);
        lua_pop(L, 2);
    }
    return true;
}

/* LF's infer_seqlen: how much of the source and the target fit in cutoff_len. */
static void infer_seqlen(int64_t source_len, int64_t target_len, int64_t cutoff_len, int64_t *src_out,
                         int64_t *tgt_out) {
    int64_t max_target_len;
    if (target_len * 2 < cutoff_len) max_target_len = cutoff_len; /* truncate source */
    else if (source_len * 2 < cutoff_len) max_target_len = cutoff_len - source_len; /* truncate target */
    else /* truncate both; Python: int(cutoff_len * (target_len / (source_len + target_len))) */
        max_target_len = (int64_t)((double)cutoff_len * ((double)target_len / (double)(source_len + target_len)));
    int64_t new_target_len = max_target_len < target_len ? max_target_len : target_len;
    int64_t max_source_len = cutoff_len - new_target_len > 0 ? cutoff_len - new_target_len : 0;
    *src_out = max_source_len < source_len ? max_source_len : source_len;
    *tgt_out = new_target_len;
}

static void set_part(ExOut *out, IVec *ids, IVec *labels, IVec *ids2, IVec *labels2) {
    size_t n0 = ids->n, n1 = ids2 ? ids2->n : 0;
    out->ids = xmalloc((n0 + n1 + 1) * sizeof *out->ids);
    out->labels = xmalloc((n0 + n1 + 1) * sizeof *out->labels);
    if (n0) memcpy(out->ids, ids->v, n0 * sizeof *out->ids);
    if (n0) memcpy(out->labels, labels->v, n0 * sizeof *out->labels);
    if (n1) memcpy(out->ids + n0, ids2->v, n1 * sizeof *out->ids);
    if (n1) memcpy(out->labels + n0, labels2->v, n1 * sizeof *out->labels);
    out->len[0] = (uint32_t)n0;
    out->len[1] = (uint32_t)n1;
}

/* SupervisedDatasetProcessor._encode_data_example */
static bool encode_sft(Worker *w, const DataExample *ex, ExOut *out, char *err, size_t errlen) {
    const Encoder *e = w->e;
    const EncodeOptions *o = &e->o;
    lua_State *L = lbox_lua(w->box);
    if (ex->n_prompt % 2 != 1 || ex->n_response != 1) {
        out->drop = ENC_DROP_SHAPE;
        return true;
    }
    lua_getfield(L, w->mod, "multi");
    push_conversation(L, ex, &ex->response[0]);
    lua_pushboolean(L, o->mask_history && !o->preserve_thinking); /* discarding_history_cot */
    char e2[ERR_LEN];
    if (!lbox_call(w->box, 4, 1, e2, sizeof e2)) return errf(err, errlen, "%s", e2);
    int turns = lua_gettop(L);
    size_t n_turns = lua_rawlen(L, turns);
    IVec src = {0}, tgt = {0}, ids = {0}, labels = {0};
    int64_t total = e->efficient_eos ? 1 : 0;
    bool ok = true;
    for (size_t k = 0; k < n_turns; k++) {
        /* mask_history: last turns first (they have priority for the budget) */
        size_t t = o->mask_history ? n_turns - k : k + 1;
        if (total >= o->cutoff_len) {
            out->truncated = 1;
            break;
        }
        src.n = tgt.n = 0;
        lua_rawgeti(L, turns, (lua_Integer)t);
        lua_getfield(L, -1, "prompt");
        lua_getfield(L, -2, "response");
        ok = pieces_to_ids(w, -2, &src, err, errlen) && pieces_to_ids(w, -1, &tgt, err, errlen);
        lua_pop(L, 3);
        if (!ok) break;
        int64_t sl, tl;
        infer_seqlen((int64_t)src.n, (int64_t)tgt.n, o->cutoff_len - total, &sl, &tl);
        if ((size_t)sl < src.n || (size_t)tl < tgt.n) out->truncated = 1;
        total += sl + tl;
        IVec part = {0}, plab = {0};
        iv_append(&part, src.v, (size_t)sl);
        iv_append(&part, tgt.v, (size_t)tl);
        if (o->train_on_prompt) iv_append(&plab, src.v, (size_t)sl);
        /* LF: [eos] + [IGNORE] * (sl - 1); with sl == 0 LF's labels would come out one longer
         * than its input_ids, so that case keeps them aligned instead */
        else if (e->efficient_eos && k != 0 && sl > 0) {
            iv_push(&plab, e->eos_id);
            iv_fill(&plab, ENC_IGNORE, (size_t)sl - 1);
        } else iv_fill(&plab, ENC_IGNORE, (size_t)sl);
        if (o->mask_history && k != 0) iv_fill(&plab, ENC_IGNORE, (size_t)tl);
        else iv_append(&plab, tgt.v, (size_t)tl);
        if (o->mask_history) { /* prepend: the turns come last first */
            iv_append(&part, ids.v, ids.n);
            iv_append(&plab, labels.v, labels.n);
            iv_free(&ids);
            iv_free(&labels);
            ids = part;
            labels = plab;
        } else {
            iv_append(&ids, part.v, part.n);
            iv_append(&labels, plab.v, plab.n);
            iv_free(&part);
            iv_free(&plab);
        }
    }
    lua_pop(L, 1);
    if (ok) {
        if (e->efficient_eos) {
            iv_push(&ids, e->eos_id);
            iv_push(&labels, e->eos_id);
        }
        set_part(out, &ids, &labels, NULL, NULL);
    }
    iv_free(&src);
    iv_free(&tgt);
    iv_free(&ids);
    iv_free(&labels);
    return ok;
}

/* encode_oneturn(prompt + [last]) -> prompt ids, response ids (+ eos when efficient_eos) */
static bool oneturn(Worker *w, const DataExample *ex, const DataMessage *last, IVec *p, IVec *r, char *err,
                    size_t errlen) {
    lua_State *L = lbox_lua(w->box);
    lua_getfield(L, w->mod, "one");
    push_conversation(L, ex, last);
    char e2[ERR_LEN];
    if (!lbox_call(w->box, 3, 2, e2, sizeof e2)) return errf(err, errlen, "%s", e2);
    p->n = r->n = 0;
    bool ok = pieces_to_ids(w, -2, p, err, errlen) && pieces_to_ids(w, -1, r, err, errlen);
    lua_pop(L, 2);
    if (ok && w->e->efficient_eos) iv_push(r, w->e->eos_id);
    return ok;
}

/* prompt[:sl] + resp[:tl] with labels [IGNORE] * sl + resp[:tl] */
static void join_part(const IVec *p, const IVec *r, int64_t sl, int64_t tl, IVec *ids, IVec *labels) {
    ids->n = labels->n = 0;
    iv_append(ids, p->v, (size_t)sl);
    iv_append(ids, r->v, (size_t)tl);
    iv_fill(labels, ENC_IGNORE, (size_t)sl);
    iv_append(labels, r->v, (size_t)tl);
}

/* PairwiseDatasetProcessor._encode_data_example */
static bool encode_pairwise(Worker *w, const DataExample *ex, ExOut *out, char *err, size_t errlen) {
    if (ex->n_prompt % 2 != 1 || ex->n_response < 2) {
        out->drop = ENC_DROP_SHAPE;
        return true;
    }
    IVec p = {0}, c = {0}, r = {0}, p2 = {0}, ids = {0}, lab = {0}, ids2 = {0}, lab2 = {0};
    bool ok = oneturn(w, ex, &ex->response[0], &p, &c, err, errlen) &&
              oneturn(w, ex, &ex->response[1], &p2, &r, err, errlen);
    if (ok) {
        size_t tmax = c.n > r.n ? c.n : r.n;
        int64_t sl, tl;
        infer_seqlen((int64_t)p.n, (int64_t)tmax, w->e->o.cutoff_len, &sl, &tl);
        if ((size_t)sl < p.n || (size_t)tl < tmax) out->truncated = 1;
        int64_t tc = tl < (int64_t)c.n ? tl : (int64_t)c.n, tr = tl < (int64_t)r.n ? tl : (int64_t)r.n;
        join_part(&p, &c, sl, tc, &ids, &lab);
        join_part(&p, &r, sl, tr, &ids2, &lab2);
        set_part(out, &ids, &lab, &ids2, &lab2);
    }
    iv_free(&p), iv_free(&c), iv_free(&r), iv_free(&p2);
    iv_free(&ids), iv_free(&lab), iv_free(&ids2), iv_free(&lab2);
    return ok;
}

/* FeedbackDatasetProcessor._encode_data_example; kl: the response list of the KL partner */
static bool encode_kto(Worker *w, const DataExample *ex, const DataExample *kl, ExOut *out, char *err,
                       size_t errlen) {
    if (ex->n_prompt % 2 != 1 || ex->n_response < 2) {
        out->drop = ENC_DROP_SHAPE;
        return true;
    }
    const DataMessage *kl_msg = NULL;
    if (kl->n_response >= 1 && kl->response[0].content && *kl->response[0].content) kl_msg = &kl->response[0];
    else if (kl->n_response >= 2) kl_msg = &kl->response[1];
    if (!kl_msg) { /* LF fails here with an IndexError */
        out->drop = ENC_DROP_KL;
        return true;
    }
    bool desirable = ex->response[0].content && *ex->response[0].content;
    const DataMessage *msg = desirable ? &ex->response[0] : &ex->response[1];
    out->tag = desirable;
    IVec p = {0}, r = {0}, kp = {0}, kr = {0}, ids = {0}, lab = {0}, ids2 = {0}, lab2 = {0};
    bool ok = oneturn(w, ex, msg, &p, &r, err, errlen) && oneturn(w, ex, kl_msg, &kp, &kr, err, errlen);
    if (ok) {
        int64_t sl, tl, ksl, ktl;
        infer_seqlen((int64_t)p.n, (int64_t)r.n, w->e->o.cutoff_len, &sl, &tl);
        infer_seqlen((int64_t)kp.n, (int64_t)kr.n, w->e->o.cutoff_len, &ksl, &ktl);
        if ((size_t)sl < p.n || (size_t)tl < r.n) out->truncated = 1;
        join_part(&p, &r, sl, tl, &ids, &lab);
        join_part(&kp, &kr, ksl, ktl, &ids2, &lab2);
        set_part(out, &ids, &lab, &ids2, &lab2);
    }
    iv_free(&p), iv_free(&r), iv_free(&kp), iv_free(&kr);
    iv_free(&ids), iv_free(&lab), iv_free(&ids2), iv_free(&lab2);
    return ok;
}

/* PretrainDatasetProcessor, per text: [bos +] text + eos, truncated unless packing */
static bool encode_pt(Worker *w, const DataExample *ex, ExOut *out, char *err, size_t errlen) {
    const Encoder *e = w->e;
    if (ex->n_prompt < 1) {
        out->drop = ENC_DROP_NO_TEXT;
        return true;
    }
    StrBuf text = {0};
    if (!e->o.packing && e->add_bos) sb_puts(&text, e->bos_text);
    const char *c = ex->prompt[0].content ? ex->prompt[0].content : "";
    sb_puts(&text, c);
    sb_puts(&text, e->eos_text);
    bool ok = tok_encode(e->tok, w->scratch, text.data, text.len, false, &w->tmp, err, errlen);
    sb_free(&text);
    if (!ok) return false;
    size_t n = w->tmp.len;
    if (!e->o.packing && n > (size_t)e->o.cutoff_len) {
        n = (size_t)e->o.cutoff_len;
        out->truncated = 1;
    }
    IVec ids = {.v = w->tmp.ids, .n = n};
    set_part(out, &ids, &ids, NULL, NULL);
    return true;
}

// ---------------------------------------------------------------------------------------
// threads

enum { CHUNK = 16 };

typedef struct {
    const Encoder *e;
    const DataExample *ex;
    size_t n;
    ExOut *outs;
    atomic_size_t next;
    atomic_bool failed;
    pthread_mutex_t lock;
    size_t err_index; /* the failing example with the lowest index seen */
    char err[ERR_LEN];
} Job;

static void record_error(Job *job, size_t i, const char *msg) {
    pthread_mutex_lock(&job->lock);
    if (i < job->err_index) {
        job->err_index = i;
        snprintf(job->err, sizeof job->err, "%s", msg);
    }
    pthread_mutex_unlock(&job->lock);
    atomic_store(&job->failed, true);
}

static bool encode_one(Worker *w, const Job *job, size_t i, char *err, size_t errlen) {
    const DataExample *ex = &job->ex[i];
    ExOut *out = &job->outs[i];
    switch (w->e->o.stage) {
    case ENC_SFT: return encode_sft(w, ex, out, err, errlen);
    case ENC_PAIRWISE: return encode_pairwise(w, ex, out, err, errlen);
    case ENC_PT: return encode_pt(w, ex, out, err, errlen);
    case ENC_KTO: {
        /* LF: kl_response = [responses[-1]] + responses[:-1] within each batch */
        size_t bs = w->e->o.batch_size, b0 = i / bs * bs, b1 = b0 + bs < job->n ? b0 + bs : job->n;
        const DataExample *kl = &job->ex[i == b0 ? b1 - 1 : i - 1];
        return encode_kto(w, ex, kl, out, err, errlen);
    }
    }
    return errf(err, errlen, "unknown stage");
}

static void *worker_main(void *arg) {
    Job *job = arg;
    Worker w = {.e = job->e, .scratch = tok_scratch_new()};
    char err[ERR_LEN];
    w.box = make_box(job->e, err, sizeof err);
    if (!w.box) {
        record_error(job, 0, err);
        tok_scratch_free(w.scratch);
        return NULL;
    }
    w.mod = lua_gettop(lbox_lua(w.box));
    while (!atomic_load(&job->failed)) {
        size_t i0 = atomic_fetch_add(&job->next, CHUNK);
        if (i0 >= job->n) break;
        size_t i1 = i0 + CHUNK < job->n ? i0 + CHUNK : job->n;
        for (size_t i = i0; i < i1; i++) {
            if (!encode_one(&w, job, i, err, sizeof err)) {
                const DataExample *ex = &job->ex[i];
                char *msg = xprintf("%s:%d: record %zu: %s", ex->source ? ex->source : "(examples)", ex->line,
                                    ex->record, err);
                record_error(job, i, msg);
                free(msg);
                break;
            }
        }
    }
    lbox_free(w.box);
    tok_scratch_free(w.scratch);
    tok_ids_free(&w.tmp);
    return NULL;
}

static int thread_count(const EncodeOptions *o, size_t n) {
    long cores = o->n_threads > 0 ? o->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    size_t useful = (n + CHUNK - 1) / CHUNK;
    if ((size_t)cores > useful) cores = useful ? (long)useful : 1;
    return (int)cores;
}

// ---------------------------------------------------------------------------------------
// rows (pass 2)

typedef struct {
    Vec off, ids, labels, src, tag, row_seq, seq_len;
} Rows;

static void rows_init(Rows *r) {
    *r = (Rows){.off = {.esz = 8}, .ids = {.esz = 4}, .labels = {.esz = 4}, .src = {.esz = 8}, .tag = {.esz = 1},
                .row_seq = {.esz = 8}, .seq_len = {.esz = 4}};
    VEC_PUSH(r->off, uint64_t, 0);
}

static void rows_add_part(Rows *r, const int32_t *ids, const int32_t *labels, size_t n) {
    if (n) {
        memcpy(vec_add(&r->ids, n), ids, n * 4);
        memcpy(vec_add(&r->labels, n), labels, n * 4);
    }
    VEC_PUSH(r->off, uint64_t, (uint64_t)r->ids.n);
}

/* Python's bisect.bisect (bisect_right) */
static size_t bisect_right(const int64_t *a, size_t n, int64_t x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* PackedSupervisedDatasetProcessor for one batch: valid[] are example indexes in order. */
static void pack_batch(const Encoder *e, ExOut *outs, const size_t *valid, size_t nv, Rows *r, EncodeStats *st) {
    int64_t cutoff = e->o.cutoff_len;
    int64_t *lens = xmalloc((nv + 1) * sizeof *lens);
    size_t *kept = xmalloc((nv + 1) * sizeof *kept);
    size_t nk = 0;
    for (size_t k = 0; k < nv; k++) {
        int64_t len = outs[valid[k]].len[0];
        if (len > cutoff) {
            outs[valid[k]].drop = ENC_DROP_LENGTHY; /* "Dropped lengthy example" */
            continue;
        }
        lens[nk] = len;
        kept[nk++] = valid[k];
    }
    /* length2indexes: per length, the kept examples in order; pop() takes the last */
    int64_t *sorted = xmalloc((nk + 1) * sizeof *sorted);
    memcpy(sorted, lens, nk * sizeof *sorted);
    qsort(sorted, nk, sizeof *sorted, cmp_i64);
    bool *used = xcalloc(nk + 1, 1);
    size_t n = nk;
    IVec knap = {0};
    while (n > 0) { /* greedy_knapsack */
        knap.n = 0;
        int64_t remaining = cutoff;
        for (;;) {
            size_t idx = bisect_right(sorted, n, remaining);
            if (idx == 0) break;
            idx--;
            remaining -= sorted[idx];
            iv_push(&knap, (int32_t)sorted[idx]);
            memmove(sorted + idx, sorted + idx + 1, (n - idx - 1) * sizeof *sorted);
            n--;
        }
        if (knap.n == 0) break; /* cannot happen: every length fits */
        uint64_t row_start = r->ids.n;
        VEC_PUSH(r->row_seq, uint64_t, (uint64_t)r->seq_len.n);
        uint64_t first_src = UINT64_MAX;
        for (size_t k = 0; k < knap.n; k++) {
            size_t j = nk; /* the last unused kept example with this length */
            while (j-- > 0)
                if (!used[j] && lens[j] == knap.v[k]) break;
            used[j] = true;
            ExOut *o = &outs[kept[j]];
            if (first_src == UINT64_MAX) first_src = kept[j];
            memcpy(vec_add(&r->ids, o->len[0]), o->ids, o->len[0] * 4);
            memcpy(vec_add(&r->labels, o->len[0]), o->labels, o->len[0] * 4);
            VEC_PUSH(r->seq_len, uint32_t, o->len[0]);
        }
        size_t have = r->ids.n - row_start; /* pad to cutoff_len + 1 */
        size_t pad = (size_t)cutoff + 1 - have;
        int32_t *pi = vec_add(&r->ids, pad), *pl = vec_add(&r->labels, pad);
        for (size_t k = 0; k < pad; k++) pi[k] = e->pad_id, pl[k] = ENC_IGNORE;
        VEC_PUSH(r->off, uint64_t, (uint64_t)r->ids.n);
        VEC_PUSH(r->src, uint64_t, first_src);
        st->n_rows++;
    }
    iv_free(&knap);
    free(used);
    free(sorted);
    free(lens);
    free(kept);
}

/* PretrainDatasetProcessor with packing, one batch: concatenate, cut into blocks, drop the tail */
static void pt_blocks(const Encoder *e, ExOut *outs, const size_t *valid, size_t nv, Rows *r, EncodeStats *st) {
    uint64_t total = 0;
    for (size_t k = 0; k < nv; k++) total += outs[valid[k]].len[0];
    uint64_t block = (uint64_t)e->o.cutoff_len, usable = total / block * block;
    st->pt_tail_tokens += total - usable;
    uint64_t pos = 0; /* tokens of this batch emitted so far */
    uint64_t row_start = r->ids.n;
    bool row_open = false;
    for (size_t k = 0; k < nv && pos < usable; k++) {
        ExOut *o = &outs[valid[k]];
        for (uint32_t t = 0; t < o->len[0] && pos < usable;) {
            if (!row_open) {
                row_start = r->ids.n;
                VEC_PUSH(r->src, uint64_t, (uint64_t)valid[k]);
                row_open = true;
            }
            uint64_t room = block - (r->ids.n - row_start);
            uint64_t take = o->len[0] - t < room ? o->len[0] - t : room;
            memcpy(vec_add(&r->ids, take), o->ids + t, take * 4);
            memcpy(vec_add(&r->labels, take), o->ids + t, take * 4);
            t += (uint32_t)take;
            pos += take;
            if (r->ids.n - row_start == block) {
                if (e->add_bos) { /* LF: result["input_ids"][i][0] = bos_token_id */
                    ((int32_t *)r->ids.p)[row_start] = e->bos_id;
                    ((int32_t *)r->labels.p)[row_start] = e->bos_id;
                }
                VEC_PUSH(r->off, uint64_t, (uint64_t)r->ids.n);
                st->n_rows++;
                row_open = false;
            }
        }
    }
}

static void emit_rows(const Encoder *e, ExOut *outs, size_t n, Rows *r, EncodeStats *st) {
    const EncodeOptions *o = &e->o;
    size_t *valid = xmalloc((o->batch_size + 1) * sizeof *valid);
    for (size_t b0 = 0; b0 < n; b0 += o->batch_size) {
        size_t b1 = b0 + o->batch_size < n ? b0 + o->batch_size : n, nv = 0;
        for (size_t i = b0; i < b1; i++)
            if (!outs[i].drop) valid[nv++] = i;
        if (o->stage == ENC_SFT && o->packing) {
            pack_batch(e, outs, valid, nv, r, st);
            continue;
        }
        if (o->stage == ENC_PT && o->packing) {
            pt_blocks(e, outs, valid, nv, r, st);
            continue;
        }
        for (size_t k = 0; k < nv; k++) {
            ExOut *x = &outs[valid[k]];
            rows_add_part(r, x->ids, x->labels, x->len[0]);
            if (o->stage == ENC_PAIRWISE || o->stage == ENC_KTO)
                rows_add_part(r, x->ids + x->len[0], x->labels + x->len[0], x->len[1]);
            VEC_PUSH(r->src, uint64_t, (uint64_t)valid[k]);
            if (o->stage == ENC_KTO) {
                VEC_PUSH(r->tag, uint8_t, x->tag);
                if (x->tag) st->kto_desirable++;
                else st->kto_undesirable++;
            }
            st->n_rows++;
        }
    }
    free(valid);
}

bool enc_run(Encoder *e, const DataExample *ex, size_t n, EncodedSet *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    Job job = {.e = e, .ex = ex, .n = n, .outs = xcalloc(n ? n : 1, sizeof(ExOut)), .err_index = SIZE_MAX};
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, false);
    pthread_mutex_init(&job.lock, NULL);
    int nt = thread_count(&e->o, n);
    pthread_t *th = xcalloc((size_t)nt, sizeof *th);
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[t], NULL, worker_main, &job) != 0) util_fatal("pthread_create failed");
    worker_main(&job);
    for (int t = 1; t < nt; t++) pthread_join(th[t], NULL);
    free(th);
    pthread_mutex_destroy(&job.lock);
    bool ok = !atomic_load(&job.failed);
    if (!ok) errf(err, errlen, "%s", job.err);

    EncodeStats st = {.n_examples = n, .first_dropped = UINT64_MAX};
    if (ok) {
        const EncodeOptions *o = &e->o;
        Rows r;
        rows_init(&r);
        emit_rows(e, job.outs, n, &r, &st);
        for (size_t i = 0; i < n; i++) {
            if (job.outs[i].drop) {
                st.dropped[job.outs[i].drop]++;
                if (st.first_dropped == UINT64_MAX) st.first_dropped = i;
            } else if (job.outs[i].truncated) st.truncated++;
        }
        out->kind = o->stage == ENC_PT         ? ENC_ROWS_PT
                    : o->stage == ENC_PAIRWISE ? ENC_ROWS_PAIRWISE
                    : o->stage == ENC_KTO      ? ENC_ROWS_KTO
                    : o->packing               ? ENC_ROWS_PACKED
                                               : ENC_ROWS_SFT;
        out->n_parts = (o->stage == ENC_PAIRWISE || o->stage == ENC_KTO) ? 2 : 1;
        out->neat = out->kind == ENC_ROWS_PACKED && o->neat_packing;
        out->n_rows = st.n_rows;
        out->n_tokens = r.ids.n;
        out->off = r.off.p;
        out->ids = r.ids.n ? r.ids.p : xcalloc(1, 4);
        out->labels = r.labels.n ? r.labels.p : xcalloc(1, 4);
        if (!r.ids.n) free(r.ids.p), free(r.labels.p);
        out->src = r.src.n ? r.src.p : xcalloc(1, 8);
        if (!r.src.n) free(r.src.p);
        out->kto_tag = r.tag.p;
        if (out->kind == ENC_ROWS_PACKED) {
            VEC_PUSH(r.row_seq, uint64_t, (uint64_t)r.seq_len.n);
            out->row_seq = r.row_seq.p;
            out->seq_len = r.seq_len.n ? r.seq_len.p : xcalloc(1, 4);
            if (!r.seq_len.n) free(r.seq_len.p);
            out->n_seqs = r.seq_len.n;
        } else {
            free(r.row_seq.p);
            free(r.seq_len.p);
        }
        out->stats = st;
    }
    for (size_t i = 0; i < n; i++) {
        free(job.outs[i].ids);
        free(job.outs[i].labels);
    }
    free(job.outs);
    return ok;
}

// ---------------------------------------------------------------------------------------
// results

void enc_set_free(EncodedSet *s) {
    if (s->map) {
        munmap(s->map, s->map_len); /* the arrays point into a token cache (tokcache.h) */
    } else {
        free(s->off);
        free(s->ids);
        free(s->labels);
        free(s->src);
        free(s->kto_tag);
        free(s->row_seq);
        free(s->seq_len);
    }
    memset(s, 0, sizeof *s);
}

void enc_row_attention_mask(const EncodedSet *s, uint64_t r, int32_t *out) {
    uint64_t len = enc_part_len(s, r, 0), k = 0;
    if (s->kind != ENC_ROWS_PACKED) {
        for (uint64_t i = 0; i < len; i++) out[i] = 1;
        return;
    }
    for (uint64_t q = s->row_seq[r]; q < s->row_seq[r + 1]; q++)
        for (uint32_t i = 0; i < s->seq_len[q]; i++) out[k++] = s->neat ? (int32_t)(q - s->row_seq[r] + 1) : 1;
    while (k < len) out[k++] = s->neat ? 0 : 1;
}

void enc_row_position_ids(const EncodedSet *s, uint64_t r, int32_t *out) {
    uint64_t len = enc_part_len(s, r, 0), k = 0;
    if (s->kind != ENC_ROWS_PACKED) {
        for (uint64_t i = 0; i < len; i++) out[i] = (int32_t)i;
        return;
    }
    for (uint64_t q = s->row_seq[r]; q < s->row_seq[r + 1]; q++)
        for (uint32_t i = 0; i < s->seq_len[q]; i++) out[k++] = (int32_t)i;
    while (k < len) out[k++] = 0;
}

const char *enc_drop_reason_name(EncDropReason r) {
    switch (r) {
    case ENC_DROP_NONE: return "kept";
    case ENC_DROP_SHAPE: return "invalid (prompt/response shape, e.g. empty response)";
    case ENC_DROP_LENGTHY: return "lengthy (longer than cutoff_len, packing)";
    case ENC_DROP_NO_TEXT: return "no text";
    case ENC_DROP_KL: return "KL partner has no response";
    case ENC_DROP_COUNT: break;
    }
    return "?";
}

void enc_stats_summary(const EncodedSet *s, StrBuf *out) {
    const EncodeStats *st = &s->stats;
    sb_printf(out, "encoded %llu examples -> %llu rows (%llu tokens)", (unsigned long long)st->n_examples,
              (unsigned long long)st->n_rows, (unsigned long long)s->n_tokens);
    for (int k = 1; k < ENC_DROP_COUNT; k++)
        if (st->dropped[k])
            sb_printf(out, "; dropped %llu %s", (unsigned long long)st->dropped[k], enc_drop_reason_name(k));
    if (st->truncated) sb_printf(out, "; %llu truncated to cutoff_len", (unsigned long long)st->truncated);
    if (st->pt_tail_tokens)
        sb_printf(out, "; %llu tokens of batch tails left out of blocks", (unsigned long long)st->pt_tail_tokens);
    if (s->kind == ENC_ROWS_KTO)
        sb_printf(out, "; %llu desirable, %llu undesirable", (unsigned long long)st->kto_desirable,
                  (unsigned long long)st->kto_undesirable);
}
