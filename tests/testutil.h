/* testutil.h - what every cmocka test shares: where ../shared is, and skipping by name.
 *
 * The real test assets that nobody here wrote (tokenizers, stories260K, LLaMA-Factory's demo
 * data) live in ../shared beside the clone. One setting finds them: the environment variable
 * LLFC_SHARED (default "../shared", relative to the repository root, where tests run). A test
 * that needs them and finds them missing is reported as skipped, by name; .ci/run refuses to
 * run at all without ../shared, so CI never skips.
 */
#ifndef LLFC_TESTUTIL_H
#define LLFC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

/* Path of a file or folder under the shared assets, malloc'd; NULL if it does not exist. */
static inline char *test_shared_path(const char *rel) {
    const char *root = getenv("LLFC_SHARED");
    if (!root || !*root) root = "../shared";
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", root, rel);
    struct stat st;
    if (stat(p, &st) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Inside a test: get a shared asset or skip this test, saying which asset was missing. */
#define SHARED_OR_SKIP(var, rel)                                                              \
    char *var = test_shared_path(rel);                                                        \
    if (!var) {                                                                               \
        fprintf(stderr, "[  SKIPPED ] %s: needs shared asset '%s' (set LLFC_SHARED)\n", __func__, \
                rel);                                                                         \
        skip();                                                                               \
        return; /* skip() does not return; this says so to the compiler */                  \
    }

#endif
