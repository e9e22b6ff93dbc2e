/* bundle.h - what the llfc program carries inside itself (tools/bundle.sh writes it):
 * the runtime image every trainer starts as, and the Lua sources under lua/. */
#ifndef LLFC_BUNDLE_H
#define LLFC_BUNDLE_H

#include <stddef.h>

typedef struct {
    const char *name; /* path under lua/, e.g. "templates/qwen3.lua" */
    const char *data; /* NUL-terminated */
    size_t size;
} BundleFile;

extern const BundleFile llfc_lua_bundle[]; /* ends with a {NULL, NULL, 0} entry */
extern const unsigned char llfc_runtime_image[], llfc_runtime_image_end[];

/* The bundled Lua file at that path under lua/, or NULL. */
const BundleFile *bundle_find(const char *name);

#endif
