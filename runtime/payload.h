/* payload.h - the files a trainer carries after its own code, and their checksum.
 *
 * A trainer is the runtime image (an ordinary ELF executable) with a payload appended:
 *
 *   [runtime image][entry bytes ...][table of contents][trailer, PAYLOAD_TRAILER_LEN bytes]
 *
 *   table of contents: "LLFCTOC1", u32 count, then per entry
 *                      u32 name length, name bytes, u64 offset (from the payload start), u64 size
 *   trailer:           16 bytes magic "LLFC-PAYLOAD-V1\0", u64 payload start (= image size),
 *                      u64 table offset (from file start), u64 file size (all of it),
 *                      32 bytes SHA-256 of every byte before it, 8 bytes zero
 *
 * Integers are little-endian. The checksum covers the runtime code too, so a damaged or
 * truncated trainer says so at start instead of misbehaving.
 */
#ifndef LLFC_PAYLOAD_H
#define LLFC_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAYLOAD_TRAILER_LEN 80

typedef struct {
    const char *name; /* e.g. "recipe.yaml", "lua/template.lua" */
    const void *data;
    size_t size;
} PayloadEntry;

/* Write image + entries to path atomically with mode 0755. */
bool payload_write(const char *path, const void *image, size_t image_len, const PayloadEntry *entries,
                   size_t n, char *err, size_t errlen);

typedef struct Payload Payload;

/* Map a trainer file and verify its payload (path: usually "/proc/self/exe"). */
Payload *payload_open(const char *path, char *err, size_t errlen);
void payload_close(Payload *p);
size_t payload_count(const Payload *p);
const PayloadEntry *payload_entry(const Payload *p, size_t i);
/* The entry called name, or NULL. */
const PayloadEntry *payload_find(const Payload *p, const char *name);
/* Hex SHA-256 of the trainer (identifies exactly what runs). */
const char *payload_digest(const Payload *p);

#endif
