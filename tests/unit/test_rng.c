/* test_rng.c - Philox4x32-10 against Random123's known-answer vectors, and the floats on top. */
#include "testutil.h"

#include <math.h>

#include "rng.h"

// --- the block cipher

/* Random123 kat_vectors, "philox4x32 10" lines: counter[4] key[2] -> expected[4]. Written by
 * D. E. Shaw Research, not by us. */
static const uint32_t kat[][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5,
     0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
     0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
     0x94fdcceb, 0x5001e420, 0x24126ea1},
};

static void test_philox_known_answers(void **state) {
    (void)state;
    for (size_t v = 0; v < sizeof kat / sizeof kat[0]; v++) {
        uint32_t out[4];
        rng_philox4x32_10(&kat[v][0], &kat[v][4], out);
        for (int i = 0; i < 4; i++) assert_int_equal(out[i], kat[v][6 + i]);
    }
}

/* rng_block's mapping: key = seed split low/high, counter = block split, purpose split. */
static void test_block_mapping(void **state) {
    (void)state;
    uint64_t seed = ((uint64_t)0x299f31d0 << 32) | 0xa4093822;
    uint64_t block = ((uint64_t)0x85a308d3 << 32) | 0x243f6a88;
    uint64_t purpose = ((uint64_t)0x03707344 << 32) | 0x13198a2e;
    uint32_t out[4];
    rng_block(seed, purpose, block, out);
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], kat[2][6 + i]);
    // index = 4 * block + lane, for blocks below 2^62
    rng_block(seed, purpose, 12345, out);
    assert_int_equal(rng_u32(seed, purpose, 4 * 12345 + 2), out[2]);
    assert_int_equal(rng_purpose(RNG_DROPOUT, 7), ((uint64_t)3 << 32) | 7);
}

// --- floats

static void test_uniform_range_and_bits(void **state) {
    (void)state;
    uint32_t raw[4];
    rng_block(0, 0, 0, raw); // = kat[0] outputs
    assert_true(rng_uniform(0, 0, 1) == (float)(raw[1] >> 8) * 0x1p-24f);
    for (uint64_t i = 0; i < 10000; i++) {
        float u = rng_uniform(42, rng_purpose(RNG_DATA_ORDER, 1), i);
        assert_true(u >= 0.0f && u < 1.0f);
    }
}

/* Box-Muller of the first pair of kat[0]'s outputs, computed by hand from rng.h's formula. */
static void test_normal_formula(void **state) {
    (void)state;
    double u1 = ((double)0x6627e8d5u + 0.5) * 0x1p-32, u2 = (double)0xe169c58du * 0x1p-32;
    double r = sqrt(-2.0 * log(u1));
    assert_true(rng_normal(0, 0, 0) == (float)(r * cos(2 * M_PI * u2)));
    assert_true(rng_normal(0, 0, 1) == (float)(r * sin(2 * M_PI * u2)));
}

/* Filling any window gives exactly the per-index values: what makes chunked, multi-threaded
 * and multi-rank generation identical to one pass. */
static void test_fill_matches_pointwise(void **state) {
    (void)state;
    uint64_t purpose = rng_purpose(RNG_INIT_WEIGHTS, 5);
    float buf[37];
    for (uint64_t first = 0; first < 9; first++) {
        rng_fill_normal(buf, 37, 1234, purpose, first, 0.02f);
        for (size_t k = 0; k < 37; k++)
            assert_true(buf[k] == rng_normal(1234, purpose, first + k) * 0.02f);
    }
}

static void test_normal_statistics(void **state) {
    (void)state;
    enum { N = 1 << 18 };
    float *z = malloc(N * sizeof *z);
    rng_fill_normal(z, N, 7, rng_purpose(RNG_LORA_INIT, 0), 0, 1.0f);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < N; i++) sum += z[i], sq += (double)z[i] * z[i];
    double mean = sum / N, var = sq / N - mean * mean;
    assert_true(fabs(mean) < 0.01);    // 5 sigma for N = 2^18 is ~0.0098
    assert_true(fabs(var - 1) < 0.02); // 5 sigma of the variance estimate is ~0.014
    free(z);
}

static void test_streams_differ(void **state) {
    (void)state;
    assert_true(rng_u32(1, rng_purpose(RNG_INIT_WEIGHTS, 0), 0) !=
                rng_u32(1, rng_purpose(RNG_INIT_WEIGHTS, 1), 0));
    assert_true(rng_u32(1, 0, 0) != rng_u32(2, 0, 0));
    assert_true(rng_u32(((uint64_t)1 << 32), 0, 0) != rng_u32(0, 0, 0)); // seed high half used
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers), cmocka_unit_test(test_block_mapping),
        cmocka_unit_test(test_uniform_range_and_bits), cmocka_unit_test(test_normal_formula),
        cmocka_unit_test(test_fill_matches_pointwise), cmocka_unit_test(test_normal_statistics),
        cmocka_unit_test(test_streams_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
