/* luabox.h - Lua 5.4 in a sandbox, for templates and data hooks (compiler and trainer).
 *
 * Scripts get base, string, table, math, utf8 and coroutine; os only for clock/time/date/
 * difftime/getenv; io only to read files inside the folders the recipe names; require only
 * of registered modules or .lua files in those folders. os.execute, io.popen, package.loadlib,
 * C modules, bytecode and the debug library are refused with an error naming the script and
 * line. Memory and the VM instructions of each call are capped, so a runaway hook stops
 * with a message instead of hanging the run.
 */
#ifndef LLFC_LUABOX_H
#define LLFC_LUABOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct {
    const char *const *read_dirs; /* folders scripts may read files and modules from */
    size_t n_read_dirs;
    size_t mem_limit;    /* bytes; 0: 1 GiB */
    uint64_t step_limit; /* VM instructions per lbox_call; 0: 10^10 */
} LuaBoxLimits;

typedef struct LuaBox LuaBox;

LuaBox *lbox_new(const LuaBoxLimits *limits);
void lbox_free(LuaBox *box);
lua_State *lbox_lua(LuaBox *box);

/* Make `require(name)` return what src returns (name like "llfc.template"). */
void lbox_add_module(LuaBox *box, const char *name, const char *src, size_t len);

/* Compile a chunk (text only) and push it as a function. chunkname: the script's path, used in
 * messages as "path:line:". False with err set on a syntax error. */
bool lbox_load(LuaBox *box, const char *chunkname, const char *src, size_t len, char *err,
               size_t errlen);

/* lua_pcall with the instruction budget reset; err gets "script:line: message". */
bool lbox_call(LuaBox *box, int nargs, int nresults, char *err, size_t errlen);

/* Load and run a chunk, leaving nresults values on the stack. */
bool lbox_run(LuaBox *box, const char *chunkname, const char *src, size_t len, int nresults, char *err,
              size_t errlen);

#endif
