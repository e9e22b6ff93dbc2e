/* pack.h - gather a trainer's payload (resolved recipe, Lua sources) and write the trainer. */
#ifndef LLFC_PACK_H
#define LLFC_PACK_H

#include <stdio.h>

#include "recipe.h"

/* Check what the recipe names and write the trainer to out_path (the runtime image built
 * into llfc plus the payload). Nothing is written when d->errors grows. */
bool pack_trainer(const Recipe *r, const char *out_path, Diags *d);

/* The training step for the recipe's model (graph.h): serialized into bytes and/or printed.
 * Problems (the model folder, a lora_target the model lacks) are reported into d. */
bool pack_build_plan(const Recipe *r, StrBuf *bytes, FILE *print, Diags *d);

/* Print the built-in templates, one per line. */
void pack_list_templates(void);

#endif
