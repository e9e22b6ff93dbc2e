/* test_luabox.c - what the sandbox refuses (each with script:line), what it allows, and that
 * runaway scripts stop. */
#include "testutil.h"

#include <lua.h>
#include <unistd.h>

#include "luabox.h"
#include "util.h"

static LuaBox *box_reading(const char *dir) {
    const char *dirs[] = {dir};
    return lbox_new(&(LuaBoxLimits){.read_dirs = dirs, .n_read_dirs = dir ? 1 : 0,
                                    .mem_limit = 64 << 20, .step_limit = 50000000});
}

/* Running src as "hook.lua" must fail with a message containing want. */
static void refused(const char *src, const char *want) {
    LuaBox *box = box_reading("tests");
    char err[ERR_LEN];
    bool ok = lbox_run(box, "hook.lua", src, strlen(src), 0, err, sizeof err);
    if (ok || !strstr(err, want)) fail_msg("script: %s\nwanted error: %s\ngot: %s", src, want, ok ? "(ran)" : err);
    lbox_free(box);
}

static void test_refused_calls_name_script_and_line(void **state) {
    (void)state;
    refused("local x = 1\nos.execute('echo hi')", "hook.lua:2: sandbox: os.execute is not allowed");
    refused("io.popen('ls')", "hook.lua:1: sandbox: io.popen is not allowed");
    refused("package.loadlib('libc.so.6', 'puts')", "hook.lua:1: sandbox: package.loadlib is not allowed");
    refused("os.remove('x')", "hook.lua:1: sandbox: os.remove is not allowed");
    refused("dofile('/etc/passwd')", "hook.lua:1: sandbox: dofile is not allowed");
    refused("string.dump(print)", "hook.lua:1: sandbox: string.dump is not allowed");
    refused("require('socket.core')", "module 'socket.core' not found");
    refused("io.open('/etc/passwd')", "hook.lua:1: sandbox: reading '/etc/passwd' is not allowed");
    refused("io.open('tests/testutil.h', 'w')", "hook.lua:1: sandbox: io.open mode 'w' is not allowed");
    refused("io.lines('../shared/DESIGN.md')", "is not allowed");
    refused("load('\\27Lua', 'x', 'b')", "load mode 'b' is not allowed");
    refused("assert(debug == nil); debug.sethook()", "attempt to index a nil value");
}

static void test_runaway_scripts_stop(void **state) {
    (void)state;
    refused("while true do end", "hook.lua:1: sandbox: the script ran more than");
    refused("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end", "not enough memory");
}

static void test_allowed_things_work(void **state) {
    (void)state;
    LuaBox *box = box_reading("tests");
    lbox_add_module(box, "llfc.util", "return {twice = function(x) return 2 * x end}", 45);
    const char *src =
        "local u = require 'llfc.util'\n"
        "local f = assert(io.open('tests/testutil.h'))\n"
        "local first = f:read('l') f:close()\n"
        "return u.twice(21), first, string.format('%d', utf8.len('héllo')), os.time() > 0\n";
    char err[ERR_LEN];
    assert_true(lbox_run(box, "hook.lua", src, strlen(src), 4, err, sizeof err));
    lua_State *L = lbox_lua(box);
    assert_int_equal(lua_tointeger(L, -4), 42);
    assert_non_null(strstr(lua_tostring(L, -3), "testutil.h"));
    assert_string_equal(lua_tostring(L, -2), "5");
    assert_true(lua_toboolean(L, -1));
    lua_settop(L, 0);
    lbox_free(box);
}

static void test_syntax_error_names_line(void **state) {
    (void)state;
    LuaBox *box = box_reading(NULL);
    char err[ERR_LEN];
    assert_false(lbox_run(box, "lua/templates/x.lua", "return {\n  a = ,\n}", 17, 1, err, sizeof err));
    assert_non_null(strstr(err, "lua/templates/x.lua:2:"));
    lbox_free(box);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_calls_name_script_and_line),
        cmocka_unit_test(test_runaway_scripts_stop),
        cmocka_unit_test(test_allowed_things_work),
        cmocka_unit_test(test_syntax_error_names_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
