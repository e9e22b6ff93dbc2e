/* payload.c - append files to a runtime image; find and verify them in a trainer. */
#include "payload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"
#include "util.h"

static const char MAGIC[16] = "LLFC-PAYLOAD-V1";
static const char TOC_MAGIC[8] = {'L', 'L', 'F', 'C', 'T', 'O', 'C', '1'};

struct Payload {
    const uint8_t *map;
    size_t size;
    PayloadEntry *entries;
    size_t n;
    char digest[65];
};

static void put_u32(StrBuf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    sb_append(b, (const char *)x, 4);
}

static void put_u64(StrBuf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    sb_append(b, (const char *)x, 8);
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// --- writing

bool payload_write(const char *path, const void *image, size_t image_len, const PayloadEntry *entries,
                   size_t n, char *err, size_t errlen) {
    StrBuf out = {0};
    sb_append(&out, image, image_len);
    uint64_t *offsets = xcalloc(n, sizeof *offsets);
    for (size_t i = 0; i < n; i++) {
        offsets[i] = out.len - image_len;
        sb_append(&out, entries[i].data, entries[i].size);
    }
    uint64_t toc_offset = out.len;
    sb_append(&out, TOC_MAGIC, sizeof TOC_MAGIC);
    put_u32(&out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u32(&out, (uint32_t)strlen(entries[i].name));
        sb_puts(&out, entries[i].name);
        put_u64(&out, offsets[i]);
        put_u64(&out, entries[i].size);
    }
    free(offsets);
    uint64_t total = out.len + PAYLOAD_TRAILER_LEN;
    sb_append(&out, MAGIC, sizeof MAGIC);
    put_u64(&out, image_len);
    put_u64(&out, toc_offset);
    put_u64(&out, total);
    uint8_t digest[32];
    sha256(out.data, out.len, digest); /* every byte before the digest */
    sb_append(&out, (const char *)digest, 32);
    put_u64(&out, 0);
    bool ok = util_write_file_atomic(path, out.data, out.len, 0755, err, errlen);
    sb_free(&out);
    return ok;
}

// --- reading

static Payload *fail(Payload *p, char *err, size_t errlen, const char *fmt, const char *path,
                     const char *detail) {
    errf(err, errlen, fmt, path, detail);
    payload_close(p);
    return NULL;
}

#define NOT_A_TRAINER "%s: no llfc payload found (%s): the file is truncated or was not built by " \
                      "llfc; copy it again or rebuild it with `llfc RECIPE -o TRAINER`"
#define DAMAGED "%s: this trainer is damaged (%s); copy it again or rebuild it with llfc"

static bool read_toc(Payload *p, uint64_t start, uint64_t toc, uint64_t end) {
    const uint8_t *q = p->map + toc, *stop = p->map + end;
    if (end - toc < 12 || memcmp(q, TOC_MAGIC, 8) != 0) return false;
    uint32_t n = get_u32(q + 8);
    q += 12;
    if (n > (end - toc) / 20) return false;
    p->entries = xcalloc(n, sizeof *p->entries);
    for (p->n = 0; p->n < n; p->n++) {
        if (stop - q < 4) return false;
        uint32_t name_len = get_u32(q);
        q += 4;
        if ((uint64_t)(stop - q) < (uint64_t)name_len + 16) return false;
        uint64_t off = get_u64(q + name_len), size = get_u64(q + name_len + 8);
        if (off > toc - start || size > toc - start - off) return false;
        p->entries[p->n] = (PayloadEntry){xstrndup((const char *)q, name_len),
                                          p->map + start + off, (size_t)size};
        q += name_len + 16;
    }
    return q == stop;
}

Payload *payload_open(const char *path, char *err, size_t errlen) {
    Payload *p = xcalloc(1, sizeof *p);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(p, err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < PAYLOAD_TRAILER_LEN) {
        close(fd);
        return fail(p, err, errlen, NOT_A_TRAINER, path, "file too short");
    }
    p->size = (size_t)st.st_size;
    void *map = mmap(NULL, p->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return fail(p, err, errlen, "%s: cannot map: %s", path, strerror(errno));
    p->map = map;
    const uint8_t *t = p->map + p->size - PAYLOAD_TRAILER_LEN;
    if (memcmp(t, MAGIC, sizeof MAGIC) != 0)
        return fail(p, err, errlen, NOT_A_TRAINER, path, "no trailer at the end");
    uint64_t start = get_u64(t + 16), toc = get_u64(t + 24), total = get_u64(t + 32);
    if (total != p->size) {
        char d[128];
        snprintf(d, sizeof d, "it should be %llu bytes, it is %zu", (unsigned long long)total, p->size);
        return fail(p, err, errlen, DAMAGED, path, d);
    }
    uint8_t digest[32];
    sha256(p->map, p->size - 40, digest);
    if (memcmp(digest, t + 40, 32) != 0) return fail(p, err, errlen, DAMAGED, path, "checksum mismatch");
    if (get_u64(t + 72) != 0) return fail(p, err, errlen, DAMAGED, path, "bad trailer");
    sha256_hex(digest, p->digest);
    uint64_t end = p->size - PAYLOAD_TRAILER_LEN;
    if (start > toc || toc > end || !read_toc(p, start, toc, end))
        return fail(p, err, errlen, DAMAGED, path, "bad table of contents");
    return p;
}

void payload_close(Payload *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free((char *)p->entries[i].name);
    free(p->entries);
    if (p->map) munmap((void *)p->map, p->size);
    free(p);
}

size_t payload_count(const Payload *p) { return p->n; }
const PayloadEntry *payload_entry(const Payload *p, size_t i) { return i < p->n ? &p->entries[i] : NULL; }
const char *payload_digest(const Payload *p) { return p->digest; }

const PayloadEntry *payload_find(const Payload *p, const char *name) {
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->entries[i].name, name)) return &p->entries[i];
    return NULL;
}
