/* test_templates.c - the Lua chat templates (lua/templates) through lua/llfc/template.lua, against LLaMA-Factory.
 *
 * The fixtures tests/fixtures/templates/NAME.jsonl were written by
 * tests/parity/gen_template_fixtures.py running LLaMA-Factory's own template code: for each
 * conversation, the pieces (text / eos / bos / token) that encode_multiturn and encode_oneturn
 * tokenize, or the error LLaMA-Factory raised. Here each line is parsed by runtime/json.c,
 * handed to the Lua engine inside the sandbox (runtime/luabox.h), and compared piece by piece.
 * One cmocka test per template, so a failure names it; the log shows the first mismatches.
 * Run from the repository root (the Lua files and fixtures are read from disk).
 */
#include "testutil.h"

#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>

#include "json.h"
#include "luabox.h"
#include "util.h"

/* The fourteen templates issue 4 names; each must exist and match. Every other
 * lua/templates/NAME.lua is tested too, from its fixture. */
static const char *REQUIRED[] = {"default", "empty",  "alpaca", "chatml",    "qwen", "qwen3", "qwen3_nothink",
                                 "llama2",  "llama3", "mistral", "gemma", "gemma3", "deepseek3", "phi"};

/* The checker, in Lua: check(template_source, path, record) -> nil, or what differs.
 * JSON null arrives as the light userdata NULL, global `null`. */
static const char CHECKER[] =
    "local template = require 'llfc.template'\n"
    "local function nn(v) if v == null then return nil end return v end\n"
    "local function q(s) return (string.format('%q', s):gsub('\\\\\\n', '\\\\n')) end\n"
    "local function show1(p)\n"
    "  if p == nil then return '(nothing)' end\n"
    "  if p.text then return q(p.text) end\n"
    "  if p.special then return '<' .. p.special .. '>' end\n"
    "  return 'token(' .. tostring(p.token) .. ')'\n"
    "end\n"
    "local function same1(x, y)\n"
    "  return x ~= nil and y ~= nil and x.text == y.text and x.special == y.special and x.token == y.token\n"
    "end\n"
    "-- nil when equal, else where the two piece lists first differ (byte offset inside a text)\n"
    "local function diff(what, want, got)\n"
    "  local n = math.max(#want, #got)\n"
    "  for i = 1, n do\n"
    "    local x, y = want[i], got[i]\n"
    "    if not same1(x, y) then\n"
    "      local msg = string.format('%s: %d pieces (LF %d), first difference at piece %d', what, #got, #want, i)\n"
    "      if x and y and x.text and y.text then\n"
    "        local k = 1\n"
    "        while x.text:sub(k, k) == y.text:sub(k, k) do k = k + 1 end\n"
    "        local from = math.max(1, k - 30)\n"
    "        return msg .. ', byte ' .. k .. ':\\n    LF:   ...' .. q(x.text:sub(from, k + 40)) ..\n"
    "          '\\n    llfc: ...' .. q(y.text:sub(from, k + 40))\n"
    "      end\n"
    "      return msg .. ':\\n    LF:   ' .. show1(x) .. '\\n    llfc: ' .. show1(y)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function slot_eq(a, b)\n"
    "  if type(a) == 'string' or type(b) == 'string' then return a == b end\n"
    "  return a.special == b.special and a.token == b.token\n"
    "end\n"
    "local function strings_eq(a, b)\n"
    "  if #a ~= #b then return false end\n"
    "  for i = 1, #a do if a[i] ~= b[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "local M = {}\n"
    "function M.meta(src, path, m)\n"
    "  local t = template.load(src, path)\n"
    "  local bad = {}\n"
    "  local function chk(k, ok) if not ok then bad[#bad + 1] = k end end\n"
    "  chk('kind', t.kind == m.kind)\n"
    "  chk('default_system', t.default_system == m.default_system)\n"
    "  for _, k in ipairs { 'stop_words', 'thought_words', 'tool_call_words' } do chk(k, strings_eq(t[k], m[k])) end\n"
    "  for _, k in ipairs { 'efficient_eos', 'replace_eos', 'replace_jinja_template' } do chk(k, t[k] == m[k]) end\n"
    "  for k, f in pairs(m.formatters) do\n"
    "    local g = t[k]\n"
    "    local ok = #g.slots == #f.slots\n"
    "    for i = 1, #f.slots do ok = ok and slot_eq(g.slots[i], f.slots[i]) end\n"
    "    local tf = nn(f.tool_format)\n"
    "    if tf then ok = ok and g.tool_format == tf end\n"
    "    chk(k, ok)\n"
    "  end\n"
    "  local s = template.special_tokens(t, { eos_token = m.special_tokens.tokenizer_eos })\n"
    "  chk('special_tokens', s.eos_token == m.special_tokens.eos_token and s.pad_token == m.special_tokens.pad_token\n"
    "      and strings_eq(s.stop_words, m.special_tokens.stop_words))\n"
    "  if #bad > 0 then return 'meta differs in: ' .. table.concat(bad, ', ') end\n"
    "end\n"
    "function M.case(src, path, r)\n"
    "  local o = r.options\n"
    "  local et = o.enable_thinking\n"
    "  if et == null then et = 'none' end\n"
    "  local t = template.load(src, path, { tool_format = nn(o.tool_format), default_system = nn(o.default_system),\n"
    "    enable_thinking = et, preserve_thinking = o.preserve_thinking, date = o.date })\n"
    "  local system, tools = nn(r.system), nn(r.tools)\n"
    "  local discarding = (o.mask_history and not t.preserve_thinking) or false\n"
    "  local msgs = {}\n"
    "  local ok, turns = pcall(template.encode_multiturn, t, r.messages, system, tools, discarding)\n"
    "  if r.multiturn_error then\n"
    "    if ok then msgs[#msgs + 1] = 'multiturn: LF refused (' .. r.multiturn_error .. '), llfc did not' end\n"
    "  elseif not ok then msgs[#msgs + 1] = 'multiturn: llfc failed: ' .. tostring(turns)\n"
    "  else\n"
    "    if #turns ~= #r.multiturn then msgs[#msgs + 1] = 'multiturn: turn count ' .. #turns .. ' vs ' .. #r.multiturn end\n"
    "    for k, pair in ipairs(r.multiturn) do\n"
    "      local g = turns[k] or {}\n"
    "      msgs[#msgs + 1] = diff('multiturn turn ' .. k .. ' prompt', pair[1], g.prompt or {})\n"
    "      msgs[#msgs + 1] = diff('multiturn turn ' .. k .. ' response', pair[2], g.response or {})\n"
    "    end\n"
    "  end\n"
    "  local ok2, prompt, response = pcall(template.encode_oneturn, t, r.messages, system, tools)\n"
    "  if r.oneturn_error then\n"
    "    if ok2 then msgs[#msgs + 1] = 'oneturn: LF refused (' .. r.oneturn_error .. '), llfc did not' end\n"
    "  elseif not ok2 then msgs[#msgs + 1] = 'oneturn: llfc failed: ' .. tostring(prompt)\n"
    "  else\n"
    "    msgs[#msgs + 1] = diff('oneturn prompt', r.oneturn[1], prompt)\n"
    "    msgs[#msgs + 1] = diff('oneturn response', r.oneturn[2], response)\n"
    "  end\n"
    "  local out = {}\n"
    "  for _, m in pairs(msgs) do out[#out + 1] = m end\n"
    "  if #out > 0 then return table.concat(out, '\\n  ') end\n"
    "end\n"
    "return M\n";

// --- JSON (runtime/json.c) to Lua values

static void push_json(lua_State *L, const Json *v) {
    switch (v->type) {
    case JSON_NULL: lua_pushlightuserdata(L, NULL); break;
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
            lua_pushlstring(L, v->obj.keys[i], v->obj.key_lens[i]);
            push_json(L, v->obj.vals[i]);
            lua_rawset(L, -3);
        }
        break;
    }
}

// --- one template

static void add_module(LuaBox *box, const char *name, const char *path) {
    char err[ERR_LEN];
    size_t len;
    char *src = util_read_file(path, &len, err, sizeof err);
    if (!src) fail_msg("%s", err);
    lbox_add_module(box, name, src, len);
    free(src);
}

/* Call checker[fn](src, path, record) with the record on top of the stack; returns the
 * mismatch text (malloc'd) or NULL. */
static char *check_one(LuaBox *box, int checker, const char *fn, const char *src, size_t srclen,
                       const char *path) {
    lua_State *L = lbox_lua(box);
    int rec = lua_gettop(L);
    lua_getfield(L, checker, fn);
    lua_pushlstring(L, src, srclen);
    lua_pushstring(L, path);
    lua_pushvalue(L, rec);
    char err[ERR_LEN];
    char *out = NULL;
    if (!lbox_call(box, 3, 1, err, sizeof err)) return xprintf("error: %s", err);
    if (!lua_isnil(L, -1)) out = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

static void run_template(void **state) {
    const char *name = *state;
    char err[ERR_LEN];
    LuaBox *box = lbox_new(NULL);
    lua_State *L = lbox_lua(box);
    add_module(box, "llfc.json", "lua/llfc/json.lua");
    add_module(box, "llfc.tools", "lua/llfc/tools.lua");
    add_module(box, "llfc.template", "lua/llfc/template.lua");
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    if (!lbox_run(box, "test_templates.c:CHECKER", CHECKER, sizeof CHECKER - 1, 1, err, sizeof err))
        fail_msg("%s", err);
    int checker = lua_gettop(L);

    char *tpath = xprintf("lua/templates/%s.lua", name);
    char *fpath = xprintf("tests/fixtures/templates/%s.jsonl", name);
    size_t srclen, flen;
    char *src = util_read_file(tpath, &srclen, err, sizeof err);
    if (!src) fail_msg("%s", err);
    char *fix = util_read_file(fpath, &flen, err, sizeof err);
    if (!fix) fail_msg("%s (run tests/parity/gen_template_fixtures.py)", err);

    int n_cases = 0, n_bad = 0, line = 0;
    for (char *p = fix, *end = fix + flen; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        if (len > 0) {
            JsonDoc *doc = json_parse_at(p, len, fpath, line, err, sizeof err);
            if (!doc) fail_msg("%s", err);
            const Json *root = json_root(doc);
            const Json *meta = json_get(root, "meta");
            push_json(L, meta ? meta : root);
            char *bad = check_one(box, checker, meta ? "meta" : "case", src, srclen, tpath);
            lua_pop(L, 1);
            if (!meta) n_cases++;
            if (bad) {
                n_bad++;
                const char *cname = meta ? "meta" : json_as_str(json_get(root, "case"));
                if (n_bad <= 5) fprintf(stderr, "%s:%d: %s/%s:\n  %s\n", fpath, line, name, cname, bad);
                free(bad);
            }
            json_free(doc);
        }
        p += len + 1;
    }
    fprintf(stderr, "[ %-9s ] %s: %d/%d cases match LLaMA-Factory\n", n_bad ? "MISMATCH" : "MATCH", name,
            n_cases - n_bad, n_cases);
    free(src);
    free(fix);
    free(tpath);
    free(fpath);
    lbox_free(box);
    assert_int_equal(n_bad, 0);
    assert_true(n_cases > 0);
}

// --- the engine's own rules, beyond the fixtures

/* A user template with a typo, a missing placeholder, a bad slot: each a clear message. */
static void test_bad_templates(void **state) {
    (void)state;
    static const struct { const char *src, *want; } cases[] = {
        {"return { format_usr = { '{{content}}' } }", "did you mean 'format_user'"},
        {"return { format_user = { 'no placeholder' } }", "needs a {{content}} placeholder"},
        {"return { format_user = { '{{content}}', { 'eos' } } }", "format_user[2]: a slot is"},
        {"return { format_prefix = { '{{content}}' } }", "format_prefix takes no"},
        {"return { kind = 'reasonin' }", "did you mean 'reasoning'"},
        {"return { format_tools = { tool_format = 'qwen9' } }", "unknown tool_format 'qwen9'"},
        {"return 42", "must return a table"},
    };
    LuaBox *box = lbox_new(NULL);
    add_module(box, "llfc.json", "lua/llfc/json.lua");
    add_module(box, "llfc.tools", "lua/llfc/tools.lua");
    add_module(box, "llfc.template", "lua/llfc/template.lua");
    lua_State *L = lbox_lua(box);
    static const char run[] = "local src = ...\n"
                              "local ok, e = pcall(require('llfc.template').load, src, 'my_template.lua')\n"
                              "return ok and 'no error' or e\n";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[ERR_LEN];
        assert_true(lbox_load(box, "run", run, sizeof run - 1, err, sizeof err));
        lua_pushstring(L, cases[i].src);
        assert_true(lbox_call(box, 1, 1, err, sizeof err));
        const char *got = lua_tostring(L, -1);
        if (!strstr(got, cases[i].want) || !strstr(got, "my_template.lua"))
            fail_msg("%s\n  got:  %s\n  want: ...%s...", cases[i].src, got, cases[i].want);
        lua_pop(L, 1);
    }
    lbox_free(box);
}

/* llfc.json against Python's json.loads / json.dumps / str() (python_json.jsonl): the tool
 * formats re-serialize JSON, so its text must be Python's to the byte. */
static void test_python_json(void **state) {
    (void)state;
    static const char check[] =
        "local json = require 'llfc.json'\n"
        "local r = ...\n"
        "local v = json.decode(r.json)\n"
        "for _, c in ipairs { { 'dumps', json.encode(v) }, { 'dumps_indent4', json.encode(v, 4) },\n"
        "                      { 'str', json.py_str(v) } } do\n"
        "  if c[2] ~= r[c[1]] then return c[1] .. ' of ' .. r.json .. '\\n  Python: ' .. r[c[1]] ..\n"
        "    '\\n  llfc:   ' .. c[2] end\n"
        "end\n";
    const char *path = "tests/fixtures/templates/python_json.jsonl";
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    LuaBox *box = lbox_new(NULL);
    add_module(box, "llfc.json", "lua/llfc/json.lua");
    lua_State *L = lbox_lua(box);
    int line = 0, bad = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        if (n > 0) {
            JsonDoc *doc = json_parse_at(p, n, path, line, err, sizeof err);
            if (!doc) fail_msg("%s", err);
            assert_true(lbox_load(box, "test_python_json", check, sizeof check - 1, err, sizeof err));
            push_json(L, json_root(doc));
            if (!lbox_call(box, 1, 1, err, sizeof err)) fail_msg("%s:%d: %s", path, line, err);
            if (!lua_isnil(L, -1)) fprintf(stderr, "%s:%d: %s\n", path, line, lua_tostring(L, -1)), bad++;
            lua_pop(L, 1);
            json_free(doc);
        }
        p += n + 1;
    }
    lbox_free(box);
    free(text);
    assert_int_equal(bad, 0);
}

// --- the list of templates

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* NAME for every NAME.lua in lua/templates, sorted; *n gets the count. */
static char **template_names(size_t *n) {
    DIR *dir = opendir("lua/templates");
    if (!dir) {
        fprintf(stderr, "lua/templates: cannot open (run from the repository root)\n");
        exit(1);
    }
    char **names = NULL;
    *n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".lua")) continue;
        names = xrealloc(names, (*n + 1) * sizeof *names);
        names[(*n)++] = xstrndup(e->d_name, len - 4);
    }
    closedir(dir);
    qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

/* Every required template is there, and every template has its fixture. */
static void test_all_templates_have_fixtures(void **state) {
    (void)state;
    size_t n;
    char **names = template_names(&n);
    for (size_t i = 0; i < sizeof REQUIRED / sizeof *REQUIRED; i++)
        if (!bsearch(&REQUIRED[i], names, n, sizeof *names, cmp_str))
            fail_msg("lua/templates/%s.lua is missing", REQUIRED[i]);
    for (size_t i = 0; i < n; i++) {
        char *f = xprintf("tests/fixtures/templates/%s.jsonl", names[i]);
        if (!util_is_file(f)) fail_msg("%s is missing: run tests/parity/gen_template_fixtures.py %s", f, names[i]);
        free(f);
        free(names[i]);
    }
    free(names);
}

int main(void) {
    size_t n;
    char **names = template_names(&n);
    struct CMUnitTest *tests = xcalloc(n + 3, sizeof *tests);
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = run_template, .initial_state = names[i]};
    tests[n] = (struct CMUnitTest)cmocka_unit_test(test_all_templates_have_fixtures);
    tests[n + 1] = (struct CMUnitTest)cmocka_unit_test(test_bad_templates);
    tests[n + 2] = (struct CMUnitTest)cmocka_unit_test(test_python_json);
    int rc = _cmocka_run_group_tests("templates", tests, n + 3, NULL, NULL);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(tests);
    return rc;
}
