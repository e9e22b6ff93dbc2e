/* test_sha256.c - SHA-256 against the FIPS 180-2 / NIST test vectors. */
#include "testutil.h"

#include "sha256.h"

static void check(const char *msg, size_t len, const char *want) {
    uint8_t d[32];
    char hex[65];
    sha256(msg, len, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, want);
}

static void test_nist_vectors(void **state) {
    (void)state;
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_in_odd_pieces(void **state) {
    (void)state;
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    Sha256 s;
    sha256_init(&s);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 7 % 997 + 1)
        sha256_update(&s, a + off, off + step > 1000000 ? 1000000 - off : step);
    uint8_t d[32];
    char hex[65];
    sha256_final(&s, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),
        cmocka_unit_test(test_million_a_in_odd_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
