/* data_hook.c - the recipe's data_hook: a Lua file returning {transform = function(example)}.
 * Each record goes in as a Lua table of its columns (JSON null: absent), the hook returns the
 * record (changed or not) or nil to drop it; it runs in luabox's sandbox, which may read
 * dataset_dir and the hook's own folder. */
#include "data_internal.h"

#include <lauxlib.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luabox.h"

// --- the data hook (Lua)

static void push_json(lua_State *L, const Json *v) {
    luaL_checkstack(L, 4, "record too deeply nested");
    switch (v->type) {
    case JSON_NULL: lua_pushnil(L); break;
    case JSON_BOOL: lua_pushboolean(L, v->boolean); break;
    case JSON_NUMBER:
        if (v->num.is_int) lua_pushinteger(L, (lua_Integer)v->num.i);
        else lua_pushnumber(L, v->num.f);
        break;
    case JSON_STRING: lua_pushlstring(L, v->str.s, v->str.len); break;
    case JSON_ARRAY:
        lua_createtable(L, (int)v->arr.n, 0);
        for (size_t i = 0; i < v->arr.n; i++) {
            push_json(L, v->arr.items[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)v->obj.n);
        for (size_t i = 0; i < v->obj.n; i++) {
            if (v->obj.vals[i]->type == JSON_NULL) continue;
            lua_pushlstring(L, v->obj.keys[i], v->obj.key_lens[i]);
            push_json(L, v->obj.vals[i]);
            lua_rawset(L, -3);
        }
        break;
    }
}

/* The Lua value at idx as a record tree in the arena; a table whose keys are 1..n is a list,
 * an empty table an empty list, any other table an object with string keys. */
static Json *from_lua(lua_State *L, int idx, Arena *ar, int depth, const char *path, char *err, size_t errlen) {
    idx = lua_absindex(L, idx);
    if (depth > 100) return errf(err, errlen, "value at %s is nested more than 100 levels", path), NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return jv_new(ar, JSON_NULL);
    case LUA_TBOOLEAN: {
        Json *v = jv_new(ar, JSON_BOOL);
        v->boolean = lua_toboolean(L, idx);
        return v;
    }
    case LUA_TNUMBER: {
        Json *v = jv_new(ar, JSON_NUMBER);
        if (lua_isinteger(L, idx)) {
            v->num.i = (int64_t)lua_tointeger(L, idx);
            v->num.f = (double)v->num.i;
            v->num.is_int = true;
        } else {
            v->num.f = lua_tonumber(L, idx);
            if (!isfinite(v->num.f)) return errf(err, errlen, "value at %s is not a finite number", path), NULL;
        }
        return v;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (data_utf8_check(s, n) != n)
            return errf(err, errlen, "string at %s is not valid UTF-8", path), NULL;
        return jv_str(ar, s, n);
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 6, "record too deeply nested");
        size_t n = (size_t)lua_rawlen(L, idx), count = 0;
        bool seq = true;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            count++;
            if (!lua_isinteger(L, -2)) seq = false;
            lua_pop(L, 1);
        }
        seq = seq && count == n;
        Json *v = jv_new(ar, seq ? JSON_ARRAY : JSON_OBJECT);
        char sub[256];
        if (seq) {
            v->arr.n = n;
            v->arr.items = arena_alloc(ar, (n ? n : 1) * sizeof *v->arr.items);
            for (size_t i = 0; i < n; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i + 1);
                snprintf(sub, sizeof sub, "%s[%zu]", path, i + 1);
                v->arr.items[i] = from_lua(L, -1, ar, depth + 1, sub, err, errlen);
                lua_pop(L, 1);
                if (!v->arr.items[i]) return NULL;
            }
            return v;
        }
        v->obj.keys = arena_alloc(ar, count * sizeof *v->obj.keys);
        v->obj.key_lens = arena_alloc(ar, count * sizeof *v->obj.key_lens);
        v->obj.vals = arena_alloc(ar, count * sizeof *v->obj.vals);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 2);
                return errf(err, errlen, "table at %s mixes list items and named fields (key of type %s)", path,
                            luaL_typename(L, -2)), NULL;
            }
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            Json *val = from_lua(L, -1, ar, depth + 1, sub, err, errlen);
            lua_pop(L, 1);
            if (!val) {
                lua_pop(L, 1);
                return NULL;
            }
            v->obj.keys[v->obj.n] = arena_strndup(ar, k, kl);
            v->obj.key_lens[v->obj.n] = kl;
            v->obj.vals[v->obj.n++] = val;
        }
        return v;
    }
    default:
        return errf(err, errlen, "value at %s is a %s; records hold only strings, numbers, booleans and tables",
                    path, luaL_typename(L, idx)), NULL;
    }
}

static LuaBox *hook_box(DataHook *h, int thread, char *err, size_t errlen) {
    if (h->boxes[thread]) return h->boxes[thread];
    LuaBox *box = lbox_new(&(LuaBoxLimits){.read_dirs = (const char *const *)h->dirs,
                                           .n_read_dirs = h->n_dirs});
    lua_State *L = lbox_lua(box);
    if (!lbox_run(box, h->name, h->src, h->len, 1, err, errlen)) {
        lbox_free(box);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TTABLE || (lua_getfield(L, -1, "transform"), lua_type(L, -1) != LUA_TFUNCTION)) {
        errf(err, errlen, "data_hook: %s must return a table with a function transform(example) (return the "
             "example, a changed copy, or nil to drop it)", h->name);
        lbox_free(box);
        return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "llfc.data_hook");
    lua_pop(L, 1);
    h->boxes[thread] = box;
    return box;
}

/* Run the hook on rec: *out is the record to convert, NULL when the hook dropped it. */
bool data_hook_run(DataHook *h, int thread, const Json *rec, Arena *ar, const Json **out, char *err, size_t errlen) {
    LuaBox *box = hook_box(h, thread, err, errlen);
    if (!box) return false;
    lua_State *L = lbox_lua(box);
    lua_getfield(L, LUA_REGISTRYINDEX, "llfc.data_hook");
    push_json(L, rec);
    if (!lbox_call(box, 1, 1, err, errlen)) return false;
    bool ok = true;
    if (lua_isnil(L, -1)) *out = NULL;
    else if (lua_type(L, -1) != LUA_TTABLE)
        ok = errf(err, errlen, "%s: transform must return the example (a table) or nil, it returned a %s",
                  h->name, luaL_typename(L, -1));
    else {
        char why[ERR_LEN];
        Json *v = from_lua(L, -1, ar, 0, "example", why, sizeof why);
        if (!v) ok = errf(err, errlen, "%s: transform returned a bad example: %s", h->name, why);
        else if (v->type != JSON_OBJECT)
            ok = errf(err, errlen, "%s: transform returned a list; return the example table", h->name);
        *out = v;
    }
    lua_settop(L, 0);
    return ok;
}

static char *dir_of(const char *path) {
    char *copy = xstrdup(path);
    char *d = xstrdup(dirname(copy));
    free(copy);
    return d;
}

bool data_hook_open(DataHook *h, const DataOptions *opt, int threads, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    if (!opt->data_hook && !opt->hook_text) return true;
    h->name = opt->data_hook ? opt->data_hook : "data_hook";
    if (opt->hook_text) {
        h->src = xstrndup(opt->hook_text, opt->hook_len);
        h->len = opt->hook_len;
    } else {
        char why[ERR_LEN];
        h->src = util_read_file(opt->data_hook, &h->len, why, sizeof why);
        if (!h->src) return errf(err, errlen, "data_hook: %s", why);
    }
    h->dirs = xmalloc(2 * sizeof *h->dirs);
    h->dirs[h->n_dirs++] = xstrdup(opt->dataset_dir ? opt->dataset_dir : ".");
    if (opt->data_hook) h->dirs[h->n_dirs++] = dir_of(opt->data_hook);
    h->n_boxes = threads;
    h->boxes = xcalloc((size_t)threads, sizeof *h->boxes);
    return hook_box(h, 0, err, errlen) != NULL; /* a broken hook fails here, before any record */
}

void data_hook_close(DataHook *h) {
    for (int t = 0; t < h->n_boxes; t++)
        if (h->boxes[t]) lbox_free(h->boxes[t]);
    free(h->boxes);
    free(h->src);
    for (size_t i = 0; i < h->n_dirs; i++) free(h->dirs[i]);
    free(h->dirs);
    memset(h, 0, sizeof *h);
}
