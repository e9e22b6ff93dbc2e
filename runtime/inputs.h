/* inputs.h - check what a recipe names: model folder, adapters, datasets, template, data hook.
 *
 * The compiler runs these before it writes a trainer; the trainer runs them again where it
 * runs (the model and data may live elsewhere than where it was compiled). Problems are
 * reported at the key's origin (recipe file:line:col or argument).
 */
#ifndef LLFC_INPUTS_H
#define LLFC_INPUTS_H

#include "luabox.h"
#include "recipe.h"

typedef struct { /* one Lua source a trainer carries */
    char *name;  /* payload name: "lua/template.lua", "lua/hook.lua", "lua/llfc/template.lua" */
    char *origin; /* where it came from: "lua/templates/qwen3.lua (built in)", a path */
    char *text;
    size_t len;
} LuaSource;

void inputs_check_model(const Recipe *r, Diags *d);
void inputs_check_datasets(const Recipe *r, Diags *d);

/* A sandbox for a recipe's scripts: readable folders are dataset_dir and the folders of the
 * template and hook files; modules are the library sources (names "lua/llfc/x.lua"). */
LuaBox *inputs_sandbox(const Recipe *r, const LuaSource *lib, size_t n_lib);

/* Run the template source; it must return a table. Reported at the template key. */
bool inputs_check_template(const Recipe *r, LuaBox *box, const LuaSource *src, Diags *d);
/* Run the hook source; it must return a table with a transform function. */
bool inputs_check_hook(const Recipe *r, LuaBox *box, const LuaSource *src, Diags *d);

#endif
