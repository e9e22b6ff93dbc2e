/* luabox.c - a Lua state with only what data scripts need, and limits on what they take. */
#include "luabox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct LuaBox {
    lua_State *L;
    char **dirs; /* real paths of the readable folders, each ending in '/' */
    size_t n_dirs;
    size_t mem_used, mem_limit;
    uint64_t steps, step_limit;
};

#define STEP_GRAIN 10000 /* the count hook fires every this many instructions */

// --- limits

static void *box_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    LuaBox *box = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        box->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && box->mem_used - osize + nsize > box->mem_limit) return NULL; /* Lua raises */
    void *p = realloc(ptr, nsize);
    if (p) box->mem_used = box->mem_used - osize + nsize;
    return p;
}

static LuaBox *box_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
    LuaBox *box = box_of(L);
    box->steps += STEP_GRAIN;
    if (box->steps <= box->step_limit) return;
    lua_getinfo(L, "Sl", ar); /* in a hook the script itself is the running function */
    char msg[LUA_IDSIZE + 128]; /* lua_pushfstring has no %llu */
    snprintf(msg, sizeof msg, "%s:%d: sandbox: the script ran more than %llu instructions (an endless loop?)",
             ar->short_src, ar->currentline, (unsigned long long)box->step_limit);
    lua_pushstring(L, msg);
    lua_error(L);
}

// --- refused functions

static int refuse(lua_State *L) {
    return luaL_error(L, "sandbox: %s is not allowed in llfc scripts", lua_tostring(L, lua_upvalueindex(1)));
}

static void set_refused(lua_State *L, const char *table, const char *name) {
    char full[64];
    snprintf(full, sizeof full, "%s%s%s", strcmp(table, "_G") ? table : "", strcmp(table, "_G") ? "." : "", name);
    lua_pushstring(L, full);
    lua_pushcclosure(L, refuse, 1);
    lua_setfield(L, -2, name);
}

// --- reading files inside the allowed folders

/* The real path of `path` if it lies inside an allowed folder, else NULL (malloc'd). */
static char *allowed_path(LuaBox *box, const char *path) {
    char *real = realpath(path, NULL);
    if (!real) return NULL;
    for (size_t i = 0; i < box->n_dirs; i++)
        if (!strncmp(real, box->dirs[i], strlen(box->dirs[i]))) return real;
    free(real);
    return NULL;
}

static const char *checked_path(lua_State *L, int arg) {
    LuaBox *box = box_of(L);
    const char *path = luaL_checkstring(L, arg);
    char *real = allowed_path(box, path);
    if (!real) {
        if (box->n_dirs == 0) luaL_error(L, "sandbox: reading '%s' is not allowed (no readable folders)", path);
        luaL_error(L, "sandbox: reading '%s' is not allowed: scripts may read only inside %s%s", path,
                   box->dirs[0], box->n_dirs > 1 ? " and the other folders the recipe names" : "");
    }
    lua_pushstring(L, real);
    free(real);
    lua_replace(L, arg);
    return lua_tostring(L, arg);
}

static int safe_open(lua_State *L) {
    checked_path(L, 1);
    const char *mode = luaL_optstring(L, 2, "r");
    if (strcmp(mode, "r") != 0 && strcmp(mode, "rb") != 0)
        return luaL_error(L, "sandbox: io.open mode '%s' is not allowed: scripts may only read", mode);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L);
}

static int safe_lines(lua_State *L) {
    if (lua_isnoneornil(L, 1)) return luaL_error(L, "sandbox: io.lines needs a file name");
    checked_path(L, 1);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* io: open and lines for reading inside the allowed folders, write to stdout; nothing else. */
static void install_io(lua_State *L) {
    luaL_requiref(L, "io", luaopen_io, 0); /* the real library, kept only as upvalues */
    lua_newtable(L);
    lua_getfield(L, -2, "open");
    lua_pushcclosure(L, safe_open, 1);
    lua_setfield(L, -2, "open");
    lua_getfield(L, -2, "lines");
    lua_pushcclosure(L, safe_lines, 1);
    lua_setfield(L, -2, "lines");
    lua_getfield(L, -2, "write");
    lua_setfield(L, -2, "write");
    static const char *refused[] = {"popen", "tmpfile", "output", "input", "close", "read", "type"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) set_refused(L, "io", refused[i]);
    lua_setglobal(L, "io");
    lua_pop(L, 1);
}

static void install_os(lua_State *L) {
    luaL_requiref(L, "os", luaopen_os, 0);
    lua_newtable(L);
    static const char *kept[] = {"clock", "time", "date", "difftime", "getenv"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        lua_getfield(L, -2, kept[i]);
        lua_setfield(L, -2, kept[i]);
    }
    static const char *refused[] = {"execute", "exit", "remove", "rename", "tmpname", "setlocale"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) set_refused(L, "os", refused[i]);
    lua_setglobal(L, "os");
    lua_pop(L, 1);
}

// --- require: registered modules, then NAME.lua inside the allowed folders

static int safe_require(lua_State *L) {
    LuaBox *box = box_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "llfc.loaded");
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "llfc.modules");
    size_t len;
    const char *src = NULL;
    char *file = NULL;
    if (lua_getfield(L, -1, name) == LUA_TSTRING) src = lua_tolstring(L, -1, &len);
    for (size_t i = 0; !src && i < box->n_dirs; i++) {
        char *rel = xstrdup(name);
        for (char *p = rel; *p; p++)
            if (*p == '.') *p = '/';
        char *path = xprintf("%s%s.lua", box->dirs[i], rel);
        free(rel);
        char err[ERR_LEN];
        char *real = allowed_path(box, path);
        if (real) file = util_read_file(real, &len, err, sizeof err);
        if (file) {
            lua_pushlstring(L, file, len);
            src = lua_tolstring(L, -1, &len);
        }
        free(real);
        free(path);
        free(file);
        file = NULL;
    }
    if (!src) return luaL_error(L, "module '%s' not found (scripts may require only Lua files "
                                "inside the recipe's folders; C modules are not allowed)", name);
    if (luaL_loadbufferx(L, src, len, lua_pushfstring(L, "@%s", name), "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "llfc.loaded");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
    return 1;
}

/* load() without binary chunks. */
static int safe_load(lua_State *L) {
    int n = lua_gettop(L);
    if (n >= 3 && !lua_isnil(L, 3) && strcmp(luaL_checkstring(L, 3), "t") != 0)
        return luaL_error(L, "sandbox: load mode '%s' is not allowed (text chunks only)", lua_tostring(L, 3));
    lua_settop(L, n < 4 ? 4 : n);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (lua_isnil(L, 4)) {
        lua_pushglobaltable(L);
        lua_replace(L, 4);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void install_base(lua_State *L) {
    static const lua_CFunction opens[] = {luaopen_base, luaopen_string, luaopen_table, luaopen_math,
                                          luaopen_utf8, luaopen_coroutine};
    static const char *names[] = {"_G", "string", "table", "math", "utf8", "coroutine"};
    for (size_t i = 0; i < sizeof opens / sizeof *opens; i++) {
        luaL_requiref(L, names[i], opens[i], 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    lua_getfield(L, -1, "load");
    lua_pushcclosure(L, safe_load, 1);
    lua_setfield(L, -2, "load");
    set_refused(L, "_G", "dofile");
    set_refused(L, "_G", "loadfile");
    lua_pushcfunction(L, safe_require);
    lua_setfield(L, -2, "require");
    lua_newtable(L); /* package: no loadlib, no paths */
    set_refused(L, "package", "loadlib");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_setfield(L, -2, "package");
    lua_getfield(L, -1, "string");
    set_refused(L, "string", "dump");
    lua_pop(L, 2);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "llfc.loaded");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "llfc.modules");
}

// --- the box

LuaBox *lbox_new(const LuaBoxLimits *limits) {
    LuaBox *box = xcalloc(1, sizeof *box);
    box->mem_limit = limits && limits->mem_limit ? limits->mem_limit : (size_t)1 << 30;
    box->step_limit = limits && limits->step_limit ? limits->step_limit : 10000000000ull;
    for (size_t i = 0; limits && i < limits->n_read_dirs; i++) {
        char *real = realpath(limits->read_dirs[i], NULL);
        if (!real) continue; /* a folder that does not exist holds nothing to read */
        box->dirs = xrealloc(box->dirs, (box->n_dirs + 1) * sizeof *box->dirs);
        box->dirs[box->n_dirs++] = xprintf("%s%s", real, real[strlen(real) - 1] == '/' ? "" : "/");
        free(real);
    }
    box->L = lua_newstate(box_alloc, box);
    if (!box->L) util_fatal("cannot create a Lua state");
    install_base(box->L);
    install_io(box->L);
    install_os(box->L);
    lua_sethook(box->L, count_hook, LUA_MASKCOUNT, STEP_GRAIN);
    return box;
}

void lbox_free(LuaBox *box) {
    if (!box) return;
    lua_close(box->L);
    for (size_t i = 0; i < box->n_dirs; i++) free(box->dirs[i]);
    free(box->dirs);
    free(box);
}

lua_State *lbox_lua(LuaBox *box) { return box->L; }

void lbox_add_module(LuaBox *box, const char *name, const char *src, size_t len) {
    lua_getfield(box->L, LUA_REGISTRYINDEX, "llfc.modules");
    lua_pushlstring(box->L, src, len);
    lua_setfield(box->L, -2, name);
    lua_pop(box->L, 1);
}

static bool take_error(lua_State *L, char *err, size_t errlen) {
    const char *msg = lua_tostring(L, -1);
    errf(err, errlen, "%s", msg ? msg : "error object is not a string");
    lua_pop(L, 1);
    return false;
}

bool lbox_load(LuaBox *box, const char *chunkname, const char *src, size_t len, char *err,
               size_t errlen) {
    char *name = xprintf("@%s", chunkname);
    int rc = luaL_loadbufferx(box->L, src, len, name, "t");
    free(name);
    return rc == LUA_OK || take_error(box->L, err, errlen);
}

bool lbox_call(LuaBox *box, int nargs, int nresults, char *err, size_t errlen) {
    box->steps = 0;
    return lua_pcall(box->L, nargs, nresults, 0) == LUA_OK || take_error(box->L, err, errlen);
}

bool lbox_run(LuaBox *box, const char *chunkname, const char *src, size_t len, int nresults, char *err,
              size_t errlen) {
    return lbox_load(box, chunkname, src, len, err, errlen) && lbox_call(box, 0, nresults, err, errlen);
}
