/* inputs.c - the files a recipe names exist and have the shape llfc expects. */
#include "inputs.h"

#include <lauxlib.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

// --- model

/* "Qwen/Qwen3-4B" and friends: a Hub id, which llfc does not fetch. */
static bool looks_like_hub_id(const char *s) {
    const char *slash = strchr(s, '/');
    return slash && slash != s && !strchr(slash + 1, '/') && s[0] != '.' && slash[1];
}

static void check_model_dir(const Recipe *r, RecipeKeyId k, const char *dir, const char *must_have,
                            Diags *d) {
    if (!util_is_dir(dir)) {
        if (looks_like_hub_id(dir))
            recipe_diag(r, k, d, "error", "%s: '%s' is not a local folder; llfc does not download "
                        "from the Hugging Face Hub: run `huggingface-cli download %s --local-dir DIR` "
                        "and set %s: DIR", recipe_keys[k].name, dir, dir, recipe_keys[k].name);
        else
            recipe_diag(r, k, d, "error", "%s: no such folder: %s", recipe_keys[k].name, dir);
        return;
    }
    char *file = util_path_join(dir, must_have);
    if (!util_is_file(file))
        recipe_diag(r, k, d, "error", "%s: %s has no %s", recipe_keys[k].name, dir, must_have);
    free(file);
}

void inputs_check_model(const Recipe *r, Diags *d) {
    check_model_dir(r, RK_model_name_or_path, R_STR(r, model_name_or_path), "config.json", d);
    StrList a = R_LIST(r, adapter_name_or_path);
    for (size_t i = 0; i < a.n; i++) check_model_dir(r, RK_adapter_name_or_path, a.items[i], "adapter_config.json", d);
    if (!R_NULL(r, ref_model)) check_model_dir(r, RK_ref_model, R_STR(r, ref_model), "config.json", d);
}

// --- datasets

static void check_names(const Recipe *r, RecipeKeyId k, const Json *info, const char *info_path,
                        Diags *d) {
    StrList names = r->v[k].list;
    for (size_t i = 0; i < names.n; i++) {
        if (json_get(info, names.items[i])) continue;
        const char *best = NULL;
        size_t best_d = 4;
        for (size_t j = 0; j < info->obj.n; j++) {
            // a cheap closeness: shared prefix length against total length
            const char *cand = info->obj.keys[j];
            size_t common = 0;
            while (cand[common] && cand[common] == names.items[i][common]) common++;
            size_t dist = strlen(cand) + strlen(names.items[i]) - 2 * common;
            if (dist < best_d) best_d = dist, best = cand;
        }
        recipe_diag(r, k, d, "error", "%s: '%s' is not defined in %s%s%s%s", recipe_keys[k].name,
                    names.items[i], info_path, best ? "; did you mean '" : "", best ? best : "",
                    best ? "'?" : "");
    }
}

void inputs_check_datasets(const Recipe *r, Diags *d) {
    if (R_NULL(r, dataset) && R_NULL(r, eval_dataset)) return;
    char *path = util_path_join(R_STR(r, dataset_dir), "dataset_info.json");
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    JsonDoc *doc = text ? json_parse(text, len, path, err, sizeof err) : NULL;
    if (!doc) {
        recipe_diag(r, RK_dataset_dir, d, "error", "dataset_dir: %s", err);
    } else if (json_root(doc)->type != JSON_OBJECT) {
        recipe_diag(r, RK_dataset_dir, d, "error", "%s: expected an object of dataset names", path);
    } else {
        check_names(r, RK_dataset, json_root(doc), path, d);
        check_names(r, RK_eval_dataset, json_root(doc), path, d);
    }
    json_free(doc);
    free(text);
    free(path);
}

// --- Lua

static char *dir_of(const char *path) {
    char *copy = xstrdup(path);
    char *dir = xstrdup(dirname(copy));
    free(copy);
    return dir;
}

LuaBox *inputs_sandbox(const Recipe *r, const LuaSource *lib, size_t n_lib) {
    const char *dirs[3];
    char *owned[2] = {0};
    size_t n = 0;
    dirs[n++] = R_STR(r, dataset_dir);
    if (!R_NULL(r, data_hook)) dirs[n++] = owned[0] = dir_of(R_STR(r, data_hook));
    if (!R_NULL(r, template) && strstr(R_STR(r, template), ".lua"))
        dirs[n++] = owned[1] = dir_of(R_STR(r, template));
    LuaBox *box = lbox_new(&(LuaBoxLimits){.read_dirs = dirs, .n_read_dirs = n});
    free(owned[0]);
    free(owned[1]);
    for (size_t i = 0; i < n_lib; i++) {
        // "lua/llfc/template.lua" is required as "llfc.template"
        const char *base = lib[i].name + strlen("lua/");
        char *mod = xstrndup(base, strlen(base) - strlen(".lua"));
        for (char *p = mod; *p; p++)
            if (*p == '/') *p = '.';
        lbox_add_module(box, mod, lib[i].text, lib[i].len);
        free(mod);
    }
    return box;
}

/* Run src; on success leave its single result on the stack. */
static bool run_source(const Recipe *r, RecipeKeyId k, LuaBox *box, const LuaSource *src, Diags *d) {
    char err[ERR_LEN];
    if (lbox_run(box, src->origin, src->text, src->len, 1, err, sizeof err)) return true;
    recipe_diag(r, k, d, "error", "%s: %s", recipe_keys[k].name, err);
    return false;
}

/* The recipe's template options, as the engine (lua/llfc/template.lua) takes them. */
static void push_template_opts(lua_State *L, const Recipe *r, const LuaSource *src) {
    lua_newtable(L);
    lua_pushstring(L, src->origin);
    lua_setfield(L, -2, "source");
    if (!R_NULL(r, tool_format)) lua_pushstring(L, R_STR(r, tool_format)), lua_setfield(L, -2, "tool_format");
    if (!R_NULL(r, default_system)) lua_pushstring(L, R_STR(r, default_system)), lua_setfield(L, -2, "default_system");
    if (R_NULL(r, enable_thinking)) lua_pushliteral(L, "none");
    else lua_pushboolean(L, R_BOOL(r, enable_thinking));
    lua_setfield(L, -2, "enable_thinking");
    lua_pushboolean(L, R_BOOL(r, train_on_prompt));
    lua_setfield(L, -2, "train_on_prompt");
}

/* The source returns a table; the template engine builds it with the recipe's options, which
 * checks every field and refuses what LLaMA-Factory refuses. */
bool inputs_check_template(const Recipe *r, LuaBox *box, const LuaSource *src, Diags *d) {
    static const char BUILD[] = "local def, opts = ...\nreturn require('llfc.template').new(def, opts)\n";
    if (!run_source(r, RK_template, box, src, d)) return false;
    lua_State *L = lbox_lua(box);
    if (lua_type(L, -1) != LUA_TTABLE) {
        recipe_diag(r, RK_template, d, "error", "template: %s must return a table (the template's "
                    "definition; see lua/templates/README.md), it returned %s", src->origin,
                    luaL_typename(L, -1));
        lua_pop(L, 1);
        return false;
    }
    char err[ERR_LEN];
    bool ok = lbox_load(box, "llfc template check", BUILD, sizeof BUILD - 1, err, sizeof err);
    if (ok) {
        lua_insert(L, -2); /* the builder below the definition */
        push_template_opts(L, r, src);
        ok = lbox_call(box, 2, 0, err, sizeof err);
    } else {
        lua_pop(L, 1);
    }
    if (!ok) recipe_diag(r, RK_template, d, "error", "template: %s", err);
    return ok;
}

bool inputs_check_hook(const Recipe *r, LuaBox *box, const LuaSource *src, Diags *d) {
    if (!run_source(r, RK_data_hook, box, src, d)) return false;
    lua_State *L = lbox_lua(box);
    bool ok = lua_type(L, -1) == LUA_TTABLE;
    if (ok) {
        lua_getfield(L, -1, "transform");
        ok = lua_type(L, -1) == LUA_TFUNCTION;
        lua_pop(L, 1);
    }
    if (!ok)
        recipe_diag(r, RK_data_hook, d, "error", "data_hook: %s must return a table with a "
                    "function transform(example) (return the example, a changed copy, or nil to "
                    "drop it)", src->origin);
    lua_pop(L, 1);
    return ok;
}
