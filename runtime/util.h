/* util.h - allocation that never returns NULL, growable strings, whole-file reads, messages.
 *
 * Error tiers (see ../shared/STYLE.md):
 *   (a) the user's fault: modules that parse user input take `char *err, size_t errlen`, return
 *       NULL/false/-1 and write one complete message "FILE:LINE:COL: what was wrong; what to do".
 *       Only the program drivers (compiler/main.c, runtime/main.c) print it and exit.
 *   (b) the machine's fault (out of memory, disk, CUDA): util_fatal() names the call and exits.
 *   (c) our fault: assert().
 */
#ifndef LLFC_UTIL_H
#define LLFC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ERR_LEN 1024 /* size of the `err` buffers passed to fallible functions */
#define LLFC_VERSION "0.1.0"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#else
#define PRINTF_LIKE(f, a)
#define NORETURN
#endif

/* tier (b): print "llfc: fatal: <message>" and exit(70) */
NORETURN void util_fatal(const char *fmt, ...) PRINTF_LIKE(1, 2);

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xprintf(const char *fmt, ...) PRINTF_LIKE(1, 2); /* malloc'd formatted string */

/* snprintf into err (if err != NULL); always returns false so callers can `return errf(...)` */
bool errf(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Growable byte string; always NUL-terminated. */
typedef struct {
    char *data;
    size_t len, cap;
} StrBuf;

void sb_append(StrBuf *sb, const char *s, size_t n);
void sb_puts(StrBuf *sb, const char *s);
void sb_printf(StrBuf *sb, const char *fmt, ...) PRINTF_LIKE(2, 3);
void sb_free(StrBuf *sb);

/* Read a whole file into a malloc'd, NUL-terminated buffer. On failure writes
 * "PATH: <strerror>" into err and returns NULL. */
char *util_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* Write a file atomically: PATH.tmp, fsync, rename. Returns false with err set. */
bool util_write_file_atomic(const char *path, const void *data, size_t len, int mode, char *err,
                            size_t errlen);

bool util_is_dir(const char *path);
bool util_is_file(const char *path);

/* Join a directory and a name with one '/', malloc'd. */
char *util_path_join(const char *dir, const char *name);

#endif
