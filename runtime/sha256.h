/* sha256.h - SHA-256 (FIPS 180-4), for the trainer's payload checksum and cache keys. */
#ifndef LLFC_SHA256_H
#define LLFC_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
void sha256_final(Sha256 *s, uint8_t digest[32]);
void sha256(const void *data, size_t len, uint8_t digest[32]);
void sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
