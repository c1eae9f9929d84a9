/* Unit tests of the precomputed-pad HMAC (lib/hmac.c) against libsodium's
 * HMAC-SHA-256 and the RFC 4231 vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "internal.h"

static void hmac_of(unsigned char out[32], const void *key, size_t klen, const void *msg,
                    size_t mlen)
{
    kw_secret *k, *pads;

    assert_int_equal(kw_secret_from(&k, key, klen), KW_OK);
    assert_int_equal(kwi_hmac_key_new(&pads, k), KW_OK);
    kwi_hmac_fast(out, pads, msg, mlen);
    kw_secret_free(pads);
    kw_secret_free(k);
}

static void hex(char *out, const unsigned char *b, size_t n)
{
    sodium_bin2hex(out, n * 2 + 1, b, n);
}

/* RFC 4231 test cases 1, 2 and 6 (the last has a 131-byte key, hashed first). */
static void test_rfc4231(void **state)
{
    unsigned char key1[20], key6[131], out[32];
    char h[65];

    (void)state;
    memset(key1, 0x0b, sizeof(key1));
    hmac_of(out, key1, sizeof(key1), "Hi There", 8);
    hex(h, out, 32);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    hmac_of(out, "Jefe", 4, "what do ya want for nothing?", 28);
    hex(h, out, 32);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key6, 0xaa, sizeof(key6));
    hmac_of(out, key6, sizeof(key6), "Test Using Larger Than Block-Size Key - Hash Key First", 54);
    hex(h, out, 32);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* Random keys and messages of every length around the block boundaries
 * agree with libsodium's HMAC-SHA-256. */
static void test_matches_libsodium(void **state)
{
    unsigned char key[32], msg[200], want[32], got[32];

    (void)state;
    for (size_t len = 0; len <= sizeof(msg); len++) {
        crypto_auth_hmacsha256_state st;
        randombytes_buf(key, sizeof(key));
        randombytes_buf(msg, len);
        crypto_auth_hmacsha256_init(&st, key, sizeof(key));
        crypto_auth_hmacsha256_update(&st, msg, len);
        crypto_auth_hmacsha256_final(&st, want);
        hmac_of(got, key, sizeof(key), msg, len);
        assert_memory_equal(got, want, 32);
    }
}

/* In pieces (any split, empty pieces included) the same as one-shot
 * libsodium; the stream is wiped at its end. */
static void test_stream(void **state)
{
    unsigned char key[32], msg[300], want[32], got[32];
    kw_secret *k, *pads;

    (void)state;
    for (size_t len = 0; len <= sizeof(msg); len += 7) {
        kwi_hmac_stream st;
        size_t at = 0;

        randombytes_buf(key, sizeof(key));
        randombytes_buf(msg, len);
        crypto_auth_hmacsha256(want, msg, len, key);
        assert_int_equal(kw_secret_from(&k, key, sizeof(key)), KW_OK);
        assert_int_equal(kwi_hmac_key_new(&pads, k), KW_OK);
        kwi_hmac_begin(&st, pads);
        while (at < len) {
            size_t piece = randombytes_uniform((uint32_t)(len - at + 1));
            kwi_hmac_update(&st, msg + at, piece);
            at += piece;
        }
        kwi_hmac_end(&st, got);
        assert_memory_equal(got, want, 32);
        for (size_t i = 0; i < sizeof(st.ctx); i++)
            assert_int_equal(st.ctx[i], 0);
        kw_secret_free(pads);
        kw_secret_free(k);
    }
}

/* One pad state serves many messages: nothing of the last one lingers. */
static void test_reuse(void **state)
{
    unsigned char key[32] = {7}, a1[32], a2[32], b[32];
    kw_secret *k, *pads;

    (void)state;
    assert_int_equal(kw_secret_from(&k, key, sizeof(key)), KW_OK);
    assert_int_equal(kwi_hmac_key_new(&pads, k), KW_OK);
    kwi_hmac_fast(a1, pads, "first", 5);
    kwi_hmac_fast(b, pads, "second", 6);
    kwi_hmac_fast(a2, pads, "first", 5);
    assert_memory_equal(a1, a2, 32);
    assert_memory_not_equal(a1, b, 32);
    kwi_hmac(b, k, "first", 5);
    assert_memory_equal(a1, b, 32);
    kw_secret_free(pads);
    kw_secret_free(k);
}

/* kwi_eq32: equal only when every byte is; a difference anywhere, in any
 * bit, is seen. */
static void test_eq32(void **state)
{
    unsigned char a[32], b[32];

    (void)state;
    randombytes_buf(a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(kwi_eq32(a, b));
    for (int i = 0; i < 32; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            assert_false(kwi_eq32(a, b));
            assert_false(kwi_eq32(b, a));
            b[i] ^= (unsigned char)(1u << bit);
        }
    assert_true(kwi_eq32(a, b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231), cmocka_unit_test(test_matches_libsodium),
        cmocka_unit_test(test_reuse),   cmocka_unit_test(test_stream),
        cmocka_unit_test(test_eq32),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
