/* extent.h - the bytes an ELF image spans and their FNV-1a: how fakecuda.c, given only a
 * pointer to a CUBIN, finds the emulated unit units.c wrote for it. */
#include <stdint.h>
#include <string.h>
static inline uint64_t rd(const void *p, size_t off, size_t n) { uint64_t v = 0; memcpy(&v, (const char *)p + off, n); return v; }
/* bytes an ELF64 image spans: headers and every section with file contents */
static inline size_t elf_extent(const void *img) {
    uint64_t shoff = rd(img, 0x28, 8), phoff = rd(img, 0x20, 8);
    uint64_t shentsize = rd(img, 0x3A, 2), shnum = rd(img, 0x3C, 2), phentsize = rd(img, 0x36, 2), phnum = rd(img, 0x38, 2);
    uint64_t end = shoff + shnum * shentsize;
    if (phoff + phnum * phentsize > end) end = phoff + phnum * phentsize;
    for (uint64_t i = 0; i < shnum; i++) {
        size_t h = shoff + i * shentsize;
        if (rd(img, h + 4, 4) == 8) continue; /* NOBITS */
        uint64_t e = rd(img, h + 0x18, 8) + rd(img, h + 0x20, 8);
        if (e > end) end = e;
    }
    return end;
}
static inline uint64_t fnv(const void *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}
