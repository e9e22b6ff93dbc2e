/* data_numpy.c - numpy's random streams, bit for bit, so llfc's dataset orders equal the ones
 * Hugging Face `datasets` computes for LLaMA-Factory:
 *
 *   np.random.default_rng(seed)   SeedSequence(seed) -> PCG64 (XSL-RR 128/64)
 *       .permutation(n)           Fisher-Yates from the top, j = random_interval(i)
 *       .choice(k, size, p=p)     cdf = cumsum(p) / cdf[-1]; searchsorted(cdf, random(), right)
 *   np.random.seed(seed)          legacy MT19937 (init_genrand), as transformers.set_seed does
 *       np.random.permutation(n)  the same Fisher-Yates on MT19937's 32-bit draws
 *       np.random.choice(n, k)    randint(0, n, k): masked rejection on 32-bit draws
 *
 * Sources: numpy/random/bit_generator.pyx (SeedSequence), numpy/random/src/pcg64/pcg64.h,
 * numpy/random/src/distributions/distributions.c (random_interval, random_standard_uniform),
 * numpy/random/src/mt19937/mt19937.c. tests/unit/test_dataset.c checks them against numpy.
 */
#include "data_internal.h"

#include <string.h>

// --- SeedSequence (pool of 4 uint32 words, hashmix)

#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u

static uint32_t hashmix(uint32_t value, uint32_t *hash_const) {
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y) {
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    return r ^ (r >> 16);
}

/* SeedSequence(seed).generate_state(n_words, uint64) */
static void seed_sequence(uint64_t seed, uint64_t *out, size_t n_words) {
    uint32_t entropy[2];
    size_t n_ent = 0;
    do {
        entropy[n_ent++] = (uint32_t)seed;
        seed >>= 32;
    } while (seed);
    uint32_t pool[4];
    uint32_t hc = SS_INIT_A;
    for (size_t i = 0; i < 4; i++) pool[i] = hashmix(i < n_ent ? entropy[i] : 0, &hc);
    for (size_t src = 0; src < 4; src++)
        for (size_t dst = 0; dst < 4; dst++)
            if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], &hc));
    /* entropy longer than the pool (never: at most 2 words) would be mixed in here */
    uint32_t hb = SS_INIT_B;
    for (size_t i = 0; i < 2 * n_words; i++) {
        uint32_t v = pool[i % 4];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        if (i % 2 == 0) out[i / 2] = v;
        else out[i / 2] |= (uint64_t)v << 32;
    }
}

// --- PCG64

#define PCG_MULT (((u128)0x2360ED051FC65DA4ull << 64) | 0x4385DF649FCCF645ull)

static void pcg_step(NpRng *g) { g->state = g->state * PCG_MULT + g->inc; }

void np_rng_default(NpRng *g, uint64_t seed) {
    uint64_t s[4];
    seed_sequence(seed, s, 4);
    u128 initstate = ((u128)s[0] << 64) | s[1];
    u128 initseq = ((u128)s[2] << 64) | s[3];
    memset(g, 0, sizeof *g);
    g->kind = NP_PCG64;
    g->inc = (initseq << 1) | 1;
    pcg_step(g);
    g->state += initstate;
    pcg_step(g);
}

static uint64_t pcg_next64(NpRng *g) {
    pcg_step(g);
    uint64_t hi = (uint64_t)(g->state >> 64), lo = (uint64_t)g->state;
    unsigned rot = (unsigned)(g->state >> 122);
    uint64_t x = hi ^ lo;
    return (x >> rot) | (x << ((64 - rot) & 63));
}

// --- MT19937 (legacy np.random.seed)

#define MT_N 624
#define MT_M 397

void np_rng_legacy(NpRng *g, uint32_t seed) {
    memset(g, 0, sizeof *g);
    g->kind = NP_MT19937;
    g->mt[0] = seed;
    for (int i = 1; i < MT_N; i++)
        g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + (uint32_t)i;
    g->mti = MT_N;
}

static uint32_t mt_next32(NpRng *g) {
    if (g->mti >= MT_N) {
        for (int i = 0; i < MT_N; i++) {
            uint32_t y = (g->mt[i] & 0x80000000u) | (g->mt[(i + 1) % MT_N] & 0x7fffffffu);
            g->mt[i] = g->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        g->mti = 0;
    }
    uint32_t y = g->mt[g->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

// --- the bit generator interface numpy's distributions use

uint64_t np_next64(NpRng *g) {
    if (g->kind == NP_MT19937) {
        uint64_t hi = mt_next32(g);
        return (hi << 32) | mt_next32(g);
    }
    return pcg_next64(g);
}

uint32_t np_next32(NpRng *g) {
    if (g->kind == NP_MT19937) return mt_next32(g);
    if (g->has32) {
        g->has32 = false;
        return g->u32;
    }
    uint64_t v = pcg_next64(g);
    g->has32 = true;
    g->u32 = (uint32_t)(v >> 32);
    return (uint32_t)v;
}

double np_random(NpRng *g) { return (double)(np_next64(g) >> 11) * (1.0 / 9007199254740992.0); }

/* random_interval(max): uniform in [0, max] by masked rejection */
uint64_t np_interval(NpRng *g, uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max;
    for (int s = 1; s < 64; s <<= 1) mask |= mask >> s;
    uint64_t v;
    if (max <= 0xffffffffull) {
        while ((v = (np_next32(g) & mask)) > max) {
        }
    } else {
        while ((v = (np_next64(g) & mask)) > max) {
        }
    }
    return v;
}

void np_permutation(NpRng *g, size_t n, size_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = i;
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)np_interval(g, i);
        size_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

void np_choice_p(NpRng *g, const double *p, size_t k, size_t size, size_t *out) {
    double cdf[k ? k : 1];
    double acc = 0;
    for (size_t i = 0; i < k; i++) cdf[i] = acc += p[i];
    for (size_t i = 0; i < k; i++) cdf[i] /= acc;
    for (size_t s = 0; s < size; s++) {
        double u = np_random(g);
        size_t lo = 0, hi = k; /* first index with cdf[i] > u (searchsorted side=right) */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] <= u) lo = mid + 1;
            else hi = mid;
        }
        out[s] = lo;
    }
}
