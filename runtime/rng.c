/* rng.c - Philox4x32-10 and the uniform/normal floats llfc derives from it (see rng.h). */
#include "rng.h"

#include <math.h>

// --- Philox4x32-10 (constants from Random123's philox.h)

#define PHILOX_M0 0xD2511F53u /* multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* key bumps: golden ratio, sqrt(3)-1 */
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

static inline void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(PHILOX_M0, c[0], &hi0, &lo0);
    mulhilo(PHILOX_M1, c[2], &hi1, &lo1);
    uint32_t next[4] = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    c[0] = next[0], c[1] = next[1], c[2] = next[2], c[3] = next[3];
}

void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) k[0] += PHILOX_W0, k[1] += PHILOX_W1;
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

// --- (seed, purpose, index) -> numbers

void rng_block(uint64_t seed, uint64_t purpose, uint64_t block, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)purpose,
                             (uint32_t)(purpose >> 32)};
    rng_philox4x32_10(ctr, key, out);
}

uint32_t rng_u32(uint64_t seed, uint64_t purpose, uint64_t index) {
    uint32_t r[4];
    rng_block(seed, purpose, index / 4, r);
    return r[index % 4];
}

float rng_uniform(uint64_t seed, uint64_t purpose, uint64_t index) {
    return (float)(rng_u32(seed, purpose, index) >> 8) * 0x1p-24f;
}

/* Box-Muller on one pair of u32s; writes both normals. u1 is kept away from 0 so log is finite. */
static inline void box_muller(uint32_t a, uint32_t b, float *z0, float *z1) {
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = ((double)a + 0.5) * 0x1p-32;
    double u2 = (double)b * 0x1p-32;
    double r = sqrt(-2.0 * log(u1));
    *z0 = (float)(r * cos(two_pi * u2));
    *z1 = (float)(r * sin(two_pi * u2));
}

float rng_normal(uint64_t seed, uint64_t purpose, uint64_t index) {
    uint32_t r[4];
    rng_block(seed, purpose, index / 4, r);
    unsigned pair = (unsigned)(index % 4) / 2;
    float z0, z1;
    box_muller(r[2 * pair], r[2 * pair + 1], &z0, &z1);
    return index % 2 ? z1 : z0;
}

void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t purpose, uint64_t first,
                     float std) {
    size_t k = 0;
    // head: up to the next block boundary, one at a time
    while (k < n && (first + k) % 4 != 0) {
        out[k] = rng_normal(seed, purpose, first + k) * std;
        k++;
    }
    // body: whole blocks, 4 normals per Philox call
    for (; k + 4 <= n; k += 4) {
        uint32_t r[4];
        rng_block(seed, purpose, (first + k) / 4, r);
        float z[4];
        box_muller(r[0], r[1], &z[0], &z[1]);
        box_muller(r[2], r[3], &z[2], &z[3]);
        for (int j = 0; j < 4; j++) out[k + j] = z[j] * std;
    }
    for (; k < n; k++) out[k] = rng_normal(seed, purpose, first + k) * std;
}
