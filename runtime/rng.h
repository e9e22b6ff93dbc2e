/* rng.h - counter-based random numbers: Philox4x32-10 keyed by (seed, purpose, index).
 *
 * DESIGN.md "Same random numbers everywhere": every random number llfc uses is a pure function
 * of (seed, purpose, index), never of a generator's state. So the CPU executor, a CUDA kernel,
 * rank 3 of 8 and a resumed run all compute the same number for the same element, in any
 * order, with nothing to save in a checkpoint.
 *
 * Mapping onto Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11; the Random123 reference):
 *     key     = { seed low 32 bits, seed high 32 bits }
 *     counter = { block low 32, block high 32, purpose low 32, purpose high 32 }
 * where block = index / 4 and the block's 4 outputs are indices 4*block .. 4*block+3. A
 * purpose is a kind (RngKind) in its high 32 bits and a caller-chosen stream (tensor number,
 * layer, epoch) in its low 32 bits: rng_purpose(RNG_INIT_WEIGHTS, tensor_index).
 *
 * Floats on top (the same formulas must be used by generated CUDA code):
 *     uniform(i) = (u32(i) >> 8) * 2^-24                    in [0, 1), 24 exact bits
 *     normal(i)  = Box-Muller on the pair of u32s (2k, 2k+1) containing i:
 *                  u1 = (u32(2k) + 0.5) * 2^-32  in (0, 1),  u2 = u32(2k+1) * 2^-32
 *                  r = sqrt(-2 ln u1);  normal(2k) = r cos(2 pi u2),  normal(2k+1) = r sin(2 pi u2)
 *                  computed in double, rounded to float once.
 */
#ifndef LLFC_RNG_H
#define LLFC_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What the numbers are for; the high half of a purpose. Never renumber: a recipe's seed must
 * keep producing the same model/data order across llfc versions. */
typedef enum {
    RNG_INIT_WEIGHTS = 1, /* llfc init-model: stream = tensor number in HF order */
    RNG_LORA_INIT = 2,    /* LoRA A matrices: stream = adapter number */
    RNG_DROPOUT = 3,      /* dropout masks: stream = step */
    RNG_DATA_ORDER = 4,   /* epoch shuffles: stream = epoch */
} RngKind;

static inline uint64_t rng_purpose(RngKind kind, uint32_t stream) {
    return ((uint64_t)kind << 32) | stream;
}

/* The raw block cipher: 10 rounds of Philox4x32 on ctr[4] with key[2]. */
void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The 4 u32 outputs for indices 4*block .. 4*block+3 of (seed, purpose). */
void rng_block(uint64_t seed, uint64_t purpose, uint64_t block, uint32_t out[4]);

uint32_t rng_u32(uint64_t seed, uint64_t purpose, uint64_t index);
float rng_uniform(uint64_t seed, uint64_t purpose, uint64_t index); /* [0, 1) */
float rng_normal(uint64_t seed, uint64_t purpose, uint64_t index);  /* mean 0, std 1 */

/* out[k] = rng_normal(seed, purpose, first + k) * std, for k < n; fast path over whole blocks
 * so filling a chunk of a large tensor costs one Philox call per 4 values. */
void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t purpose, uint64_t first,
                     float std);

#endif
