/* Unit tests of the opaque key format (lib/key.c, SPEC.md "Key format"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <keyward/keyward.h>
#include <sodium.h>
#include <zlib.h>

#define DATA_LEN(plen) ((plen) + 1 + KW_ID_LEN + KW_SECRET_LEN)

/*
 * Known-answer vectors for the check, computed independently of the library:
 *
 *   python3 -c 'import zlib; c = zlib.crc32(DATA.encode()) & 0xffffffff; ...'
 *
 * then written as 6 base62 digits (alphabet 0-9A-Za-z), most significant
 * first, zero-padded. The last two data strings were forged (each body char
 * 'A' or 'C', chosen by solving the CRC's linear system over GF(2)) so that
 * the CRC is 0x00000000 ("000000") and 0xffffffff ("4gfFC3", the largest
 * check there is).
 */
static const struct {
    const char *data;
    const char *check;
} vectors[] = {
    /* crc 0x3ab3998a */
    {"kw_live_00000000000000000000000000000000000000000000", "14eK9i"},
    /* crc 0x23d5ca69 */
    {"acme_live_Zq3xK9bT2mWp0123456789ABCDEFGHIJKLMNOPQRSTUV", "0egd6f"},
    /* crc 0xbd3df8ac */
    {"kw_test_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR", "3SrmsW"},
    /* crc 0x8ebadb15 */
    {"a_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "2c3XZF"},
    /* crc 0x8d577964, 20-char prefix */
    {"abcdefghij0123456789_99999999999999999999999999999999999999999999", "2aTohQ"},
    /* crc 0x00000000 */
    {"a_ACCAACCCCAACCAACCACCCAAAAACACCACAAAAAAAAAAAA", "000000"},
    /* crc 0xffffffff */
    {"kw_live_AAAACAACCAAAACACACCACCCCCCAACACAAAAAAAAAAAAA", "4gfFC3"},
};
#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

/* The library's own CRC-32 agrees with zlib's on every length and
 * alignment around its 8-byte steps. */
static void test_check_matches_zlib(void **state)
{
    unsigned char buf[300];
    char got[KW_CHECK_LEN + 1], want[KW_CHECK_LEN + 1];

    (void)state;
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= sizeof(buf) && len <= 200; len++) {
            uint32_t crc;
            randombytes_buf(buf, sizeof(buf));
            crc = (uint32_t)crc32(0L, buf + off, (uInt)len);
            for (int i = KW_CHECK_LEN - 1; i >= 0; i--) {
                want[i] = KW_BASE62_ALPHABET[crc % 62];
                crc /= 62;
            }
            want[KW_CHECK_LEN] = '\0';
            kw_key_check(got, (const char *)buf + off, len);
            assert_string_equal(got, want);
        }
}

/* data + its check (from the library, whose check the vectors pin down). */
static size_t with_check(char out[static KW_KEY_MAX + 16], const char *data)
{
    size_t n = strlen(data);

    assert_true(n + KW_CHECK_LEN < KW_KEY_MAX + 16);
    memcpy(out, data, n);
    kw_key_check(out + n, data, n);
    return n + KW_CHECK_LEN;
}

/* kw_key_parse on an exact-size heap copy, so ASan sees any over-read.
 * Also checks that a refused key leaves the output untouched. */
static int parse_exact(const char *key, size_t len, kw_key_parts *out)
{
    kw_key_parts parts, sentinel;
    char *copy = malloc(len ? len : 1);
    int ok;

    assert_non_null(copy);
    memcpy(copy, key, len);
    memset(&parts, 0xa5, sizeof(parts));
    memset(&sentinel, 0xa5, sizeof(sentinel));
    ok = kw_key_parse(&parts, copy, len);
    if (!ok)
        assert_memory_equal(&parts, &sentinel, sizeof(parts));
    else if (out != NULL) {
        /* views into the copy: rebase them onto the caller's string */
        assert_ptr_equal(parts.prefix, copy);
        assert_ptr_equal(parts.body, copy + len - KW_BODY_LEN);
        *out = parts;
        out->prefix = key;
        out->body = key + len - KW_BODY_LEN;
    }
    free(copy);
    return ok;
}

static void test_prefix_valid(void **state)
{
    static const char *const good[] = {
        "kw_live", "kw_test", "acme_live", "a", "z", "a1", "a_b", "a0_9z", "abcdefghij0123456789",
    };
    static const char *const bad[] = {
        "",                      /* empty */
        "abcdefghij0123456789a", /* 21 chars */
        "1abc",                  /* leading digit */
        "_abc",                  /* leading underscore */
        "abc_",                  /* trailing underscore */
        "a__b",                  /* double underscore */
        "kw__live",
        "Kw_live", /* uppercase */
        "kw_Live",
        "kW",
        "a-b",
        "a.b",
        "a b",
        "a:b",
        "\xc3\xa9t\xc3\xa9",
        "kw_live\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!kw_prefix_valid(good[i]))
            fail_msg("prefix \"%s\" should be valid", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (kw_prefix_valid(bad[i]))
            fail_msg("prefix \"%s\" should be invalid", bad[i]);
    }
    assert_false(kw_prefix_valid(NULL));
}

static void test_key_id_valid(void **state)
{
    (void)state;
    assert_true(kw_key_id_valid("0123456789AB"));
    assert_true(kw_key_id_valid("zzzzzzzzzzzz"));
    assert_true(kw_key_id_valid("aZ09bY18cX27"));
    assert_false(kw_key_id_valid(NULL));
    assert_false(kw_key_id_valid(""));
    assert_false(kw_key_id_valid("0123456789A"));   /* 11 */
    assert_false(kw_key_id_valid("0123456789ABC")); /* 13 */
    assert_false(kw_key_id_valid("0123456789A_"));
    assert_false(kw_key_id_valid("0123456789A-"));
    assert_false(kw_key_id_valid("0123456789A "));
    assert_false(kw_key_id_valid("-123456789AB"));
    assert_false(kw_key_id_valid("0123456789\xc3\xa9"));
}

static void test_check_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVECTORS; i++) {
        char check[KW_CHECK_LEN + 1];
        char key[KW_KEY_MAX + 1];
        size_t n = strlen(vectors[i].data);
        kw_key_parts parts;

        memset(check, 'x', sizeof(check));
        kw_key_check(check, vectors[i].data, n);
        assert_string_equal(check, vectors[i].check);

        /* data + check is a valid key, and its parts are where they belong */
        assert_true(n + KW_CHECK_LEN <= KW_KEY_MAX);
        memcpy(key, vectors[i].data, n);
        memcpy(key + n, vectors[i].check, KW_CHECK_LEN + 1);
        assert_true(parse_exact(key, n + KW_CHECK_LEN, &parts));
        assert_int_equal(parts.prefix_len, n - 1 - KW_ID_LEN - KW_SECRET_LEN);
        assert_memory_equal(parts.prefix, vectors[i].data, parts.prefix_len);
        assert_memory_equal(parts.id, vectors[i].data + parts.prefix_len + 1, KW_ID_LEN);
        assert_int_equal(parts.id[KW_ID_LEN], '\0');
        assert_memory_equal(parts.body, vectors[i].data + parts.prefix_len + 1, KW_BODY_LEN - 6);
    }
}

/* The check of a substring: kw_key_check uses only `len` bytes. */
static void test_check_uses_len(void **state)
{
    char check[KW_CHECK_LEN + 1];
    char buf[128];
    size_t n = strlen(vectors[0].data);

    (void)state;
    memcpy(buf, vectors[0].data, n);
    memcpy(buf + n, "trailing garbage", 17);
    kw_key_check(check, buf, n);
    assert_string_equal(check, vectors[0].check);
}

/* Generate with `prefix` and assert everything the format promises. */
static void check_generated(const char *prefix, const char *expect_prefix)
{
    size_t plen = strlen(expect_prefix);
    char id[KW_ID_LEN + 1];
    char check[KW_CHECK_LEN + 1];
    kw_secret *key = NULL;
    kw_key_parts parts;
    const char *k;

    memset(id, 'x', sizeof(id));
    assert_int_equal(kw_key_generate(&key, id, prefix), KW_OK);
    assert_non_null(key);
    k = (const char *)kw_secret_cdata(key);
    assert_int_equal(kw_secret_len(key), plen + 1 + KW_BODY_LEN);
    assert_int_equal(strlen(k), plen + 1 + KW_BODY_LEN);
    assert_memory_equal(k, expect_prefix, plen);
    assert_int_equal(k[plen], '_');
    for (size_t i = plen + 1; i < plen + 1 + KW_BODY_LEN; i++)
        assert_non_null(memchr(KW_BASE62_ALPHABET, k[i], 62));

    assert_int_equal(id[KW_ID_LEN], '\0');
    assert_true(kw_key_id_valid(id));
    assert_memory_equal(id, k + plen + 1, KW_ID_LEN);

    kw_key_check(check, k, plen + 1 + KW_ID_LEN + KW_SECRET_LEN);
    assert_memory_equal(check, k + plen + 1 + KW_ID_LEN + KW_SECRET_LEN, KW_CHECK_LEN);

    assert_true(parse_exact(k, kw_secret_len(key), &parts));
    assert_int_equal(parts.prefix_len, plen);
    assert_memory_equal(parts.prefix, expect_prefix, plen);
    assert_string_equal(parts.id, id);
    kw_secret_free(key);
}

static void test_generate_default_prefix(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++)
        check_generated(NULL, KW_DEFAULT_PREFIX);
    assert_string_equal(KW_DEFAULT_PREFIX, "kw_live");
}

static void test_generate_custom_prefix(void **state)
{
    static const char *const prefixes[] = {"kw_test", "acme_live", "a", "abcdefghij0123456789"};

    (void)state;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        for (int j = 0; j < 50; j++)
            check_generated(prefixes[i], prefixes[i]);
}

static void test_generate_unique(void **state)
{
    kw_secret *a = NULL, *b = NULL;
    char ida[KW_ID_LEN + 1], idb[KW_ID_LEN + 1];

    (void)state;
    assert_int_equal(kw_key_generate(&a, ida, NULL), KW_OK);
    assert_int_equal(kw_key_generate(&b, idb, NULL), KW_OK);
    assert_false(kw_secret_equal(a, b));
    assert_string_not_equal(ida, idb);
    kw_secret_free(a);
    kw_secret_free(b);
}

static void test_generate_invalid_prefix(void **state)
{
    static const char *const bad[] = {
        "", "Kw_live", "kw_", "_kw", "1kw", "a__b", "abcdefghij0123456789a", "kw-live",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        static char marker;
        kw_secret *const sentinel = (kw_secret *)&marker; /* must stay untouched */
        kw_secret *key = sentinel;
        char id[KW_ID_LEN + 1] = "untouched!!";

        assert_int_equal(kw_key_generate(&key, id, bad[i]), KW_ERR_INVALID);
        assert_ptr_equal(key, sentinel);
        assert_string_equal(id, "untouched!!");
    }
}

/* Every key to mangle: the known vectors and a few fresh ones. */
#define NMANGLE (NVECTORS + 4)
static size_t mangle_key(size_t i, char out[static KW_KEY_MAX + 16], kw_secret **hold)
{
    static const char *const prefixes[] = {NULL, "acme_live", "a", "abcdefghij0123456789"};
    char id[KW_ID_LEN + 1];

    if (i < NVECTORS)
        return with_check(out, vectors[i].data);
    assert_int_equal(kw_key_generate(hold, id, prefixes[i - NVECTORS]), KW_OK);
    memcpy(out, kw_secret_cdata(*hold), kw_secret_len(*hold) + 1);
    return kw_secret_len(*hold);
}

/* Any single-byte change anywhere is refused: a changed prefix char breaks
 * the prefix rules or the CRC, a changed body char the charset or the CRC
 * (CRC-32 detects every error burst of up to 32 bits), a changed check char
 * the check itself. */
static void test_parse_rejects_substitution(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMANGLE; k++) {
        char key[KW_KEY_MAX + 16];
        kw_secret *hold = NULL;
        size_t len = mangle_key(k, key, &hold);

        assert_true(parse_exact(key, len, NULL));
        for (size_t pos = 0; pos < len; pos++) {
            char orig = key[pos];
            for (int c = 0; c < 256; c++) {
                if ((char)c == orig)
                    continue;
                key[pos] = (char)c;
                if (parse_exact(key, len, NULL))
                    fail_msg("key %zu: byte %zu changed to 0x%02x accepted", k, pos, c);
            }
            key[pos] = orig;
        }
        assert_true(parse_exact(key, len, NULL));
        kw_secret_free(hold);
    }
}

static void test_parse_rejects_truncated(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMANGLE; k++) {
        char key[KW_KEY_MAX + 16];
        kw_secret *hold = NULL;
        size_t len = mangle_key(k, key, &hold);

        for (size_t n = 0; n < len; n++) {
            if (parse_exact(key, n, NULL))
                fail_msg("key %zu truncated to %zu accepted", k, n);
            /* chopped at the front too */
            if (parse_exact(key + len - n, n, NULL))
                fail_msg("key %zu: last %zu bytes accepted", k, n);
        }
        kw_secret_free(hold);
    }
}

static void test_parse_rejects_appended(void **state)
{
    static const char extra[] = "0aZ_-\n\r \t";

    (void)state;
    for (size_t k = 0; k < NMANGLE; k++) {
        char key[KW_KEY_MAX + 16];
        char buf[KW_KEY_MAX + 32];
        kw_secret *hold = NULL;
        size_t len = mangle_key(k, key, &hold);

        for (size_t e = 0; e < sizeof(extra); e++) { /* also the NUL */
            for (size_t more = 1; more <= 8; more++) {
                memcpy(buf, key, len);
                memset(buf + len, extra[e], more);
                if (parse_exact(buf, len + more, NULL))
                    fail_msg("key %zu + %zu x 0x%02x accepted", k, more, extra[e]);
                /* and prepended */
                memset(buf, extra[e], more);
                memcpy(buf + more, key, len);
                if (parse_exact(buf, len + more, NULL))
                    fail_msg("%zu x 0x%02x + key %zu accepted", more, extra[e], k);
            }
        }
        kw_secret_free(hold);
    }
}

/* The parser honours `len` and never reads the bytes after it. */
static void test_parse_uses_len(void **state)
{
    char buf[KW_KEY_MAX + 16];
    size_t len = with_check(buf, vectors[0].data);
    kw_key_parts parts;

    (void)state;
    memcpy(buf + len, "junk", 5);
    assert_true(kw_key_parse(&parts, buf, len));
    assert_false(kw_key_parse(&parts, buf, len + 4));
    assert_false(kw_key_parse(&parts, NULL, 0));
    assert_false(kw_key_parse(&parts, NULL, len));
}

/* Malformed keys whose check is correct for their bytes: refused for the
 * format itself, not by luck of the CRC. */
static void test_parse_rejects_bad_format_with_good_check(void **state)
{
    static const char *const bad_data[] = {
        /* missing '_' separator */
        "kwlive00000000000000000000000000000000000000000000",
        "kw_live00000000000000000000000000000000000000000000",
        "kw_liveX00000000000000000000000000000000000000000000",
        /* empty prefix */
        "_00000000000000000000000000000000000000000000",
        /* non-base62 chars in the id or secret */
        "kw_live_0000000000000000000000000000000000000000000-",
        "kw_live_-0000000000000000000000000000000000000000000",
        "kw_live_000000000000000000000+0000000000000000000000",
        "kw_live_00000000000_00000000000000000000000000000000",
        "kw_live_0000000000000000000000 000000000000000000000",
        "kw_live_000000000000000000000\303\251000000000000000000000", /* UTF-8 e-acute */
        /* bad prefixes */
        "KW_live_00000000000000000000000000000000000000000000",
        "kw_Live_00000000000000000000000000000000000000000000",
        "1kw_00000000000000000000000000000000000000000000",
        "kw__live_00000000000000000000000000000000000000000000",
        "kw__00000000000000000000000000000000000000000000", /* prefix "kw_" */
        "kw-live_00000000000000000000000000000000000000000000",
        /* 21-char prefix: key of 72 chars */
        "abcdefghij0123456789a_00000000000000000000000000000000000000000000",
        /* body one char short / one char long */
        "kw_live_0000000000000000000000000000000000000000000",
        "kw_live_000000000000000000000000000000000000000000000",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad_data) / sizeof(bad_data[0]); i++) {
        char key[KW_KEY_MAX + 16];
        size_t len = with_check(key, bad_data[i]);

        if (parse_exact(key, len, NULL))
            fail_msg("malformed key \"%.*s\" accepted", (int)len, key);
    }
    /* the control: the same construction does accept a well-formed key */
    {
        char key[KW_KEY_MAX + 16];
        size_t len = with_check(key, "kw_live_00000000000000000000000000000000000000000000");
        assert_true(parse_exact(key, len, NULL));
    }
}

/* The body's charset, byte by byte: every one of the 256 byte values at
 * each of the 44 positions of id and secret (the check recomputed, so only
 * the charset decides), and of the 6 check digits, against the alphabet. The parser tests 16 bytes
 * at a time where it can; this pins that down to the definition. */
static void test_parse_body_charset_every_byte(void **state)
{
    static const char base[] = "kw_live_00000000000000000000000000000000000000000000";
    const size_t plen = strlen("kw_live_");

    (void)state;
    for (size_t pos = 0; pos < KW_ID_LEN + KW_SECRET_LEN; pos++)
        for (int b = 0; b < 256; b++) {
            char data[sizeof(base)], key[KW_KEY_MAX + 16];
            int want = b != 0 && strchr(KW_BASE62_ALPHABET, b) != NULL;
            size_t len;
            memcpy(data, base, sizeof(base));
            data[plen + pos] = (char)b;
            len = plen + KW_ID_LEN + KW_SECRET_LEN;
            memcpy(key, data, len);
            kw_key_check(key + len, key, len);
            len += KW_CHECK_LEN;
            if (parse_exact(key, len, NULL) != want)
                fail_msg("byte 0x%02x at body position %zu: parse gave %d", b, pos, !want);
        }
    /* and in the check digits: a byte outside the alphabet is refused
     * there too, whatever the CRC */
    for (size_t pos = 0; pos < KW_CHECK_LEN; pos++)
        for (int b = 0; b < 256; b++) {
            char key[KW_KEY_MAX + 16];
            size_t len = with_check(key, base);
            if (b != 0 && strchr(KW_BASE62_ALPHABET, b) != NULL)
                continue;
            key[len - KW_CHECK_LEN + pos] = (char)b;
            assert_false(parse_exact(key, len, NULL));
        }
}

/* A 50-char body after a 21..30-char prefix (otherwise valid) is refused. */
static void test_parse_rejects_long_prefix(void **state)
{
    (void)state;
    for (size_t plen = KW_PREFIX_MAX - 1; plen <= KW_PREFIX_MAX + 10; plen++) {
        char data[KW_KEY_MAX + 16];
        char key[KW_KEY_MAX + 32];
        size_t len;

        for (size_t i = 0; i < plen; i++)
            data[i] = (char)('a' + i % 26);
        data[plen] = '_';
        memset(data + plen + 1, 'Q', KW_ID_LEN + KW_SECRET_LEN);
        data[DATA_LEN(plen)] = '\0';
        len = with_check(key, data);
        assert_int_equal(parse_exact(key, len, NULL), plen <= KW_PREFIX_MAX);
    }
}

/* 620000 draws over 62 buckets: 10000 expected in each. With 61 degrees of
 * freedom P(chi2 > 130) is about 6.6e-7, so a correct generator fails this
 * about once in 1.5 million runs; a modulo-biased one (b % 62 over 0..255
 * gives digits 0-7 a 25% excess) scores in the thousands. */
static void test_base62_random_uniform(void **state)
{
    enum { N = 620000, CHUNK = 1000 };
    static const char alphabet[] = KW_BASE62_ALPHABET;
    unsigned long count[62] = {0};
    char buf[CHUNK + 1];
    double chi2 = 0, expected = (double)N / 62;

    (void)state;
    assert_int_equal(sizeof(alphabet) - 1, 62);
    for (int round = 0; round < N / CHUNK; round++) {
        buf[CHUNK] = '#';
        kw_base62_random(buf, CHUNK);
        assert_int_equal(buf[CHUNK], '#'); /* wrote exactly n */
        for (int i = 0; i < CHUNK; i++) {
            const char *p = memchr(alphabet, buf[i], 62);
            if (p == NULL || buf[i] == '\0')
                fail_msg("non-base62 char 0x%02x", (unsigned char)buf[i]);
            count[p - alphabet]++;
        }
    }
    for (int i = 0; i < 62; i++) {
        double d = (double)count[i] - expected;
        chi2 += d * d / expected;
    }
    if (chi2 >= 130.0)
        fail_msg("chi-square %.1f over 62 buckets (bound 130)", chi2);
}

static void test_base62_random_small(void **state)
{
    char buf[4] = {'#', '#', '#', '#'};

    (void)state;
    kw_base62_random(buf, 0);
    assert_memory_equal(buf, "####", 4);
    kw_base62_random(buf, 1);
    assert_non_null(memchr(KW_BASE62_ALPHABET, buf[0], 62));
    assert_memory_equal(buf + 1, "###", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_valid),
        cmocka_unit_test(test_key_id_valid),
        cmocka_unit_test(test_check_vectors),
        cmocka_unit_test(test_check_matches_zlib),
        cmocka_unit_test(test_check_uses_len),
        cmocka_unit_test(test_generate_default_prefix),
        cmocka_unit_test(test_generate_custom_prefix),
        cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_generate_invalid_prefix),
        cmocka_unit_test(test_parse_rejects_substitution),
        cmocka_unit_test(test_parse_rejects_truncated),
        cmocka_unit_test(test_parse_rejects_appended),
        cmocka_unit_test(test_parse_uses_len),
        cmocka_unit_test(test_parse_body_charset_every_byte),
        cmocka_unit_test(test_parse_rejects_bad_format_with_good_check),
        cmocka_unit_test(test_parse_rejects_long_prefix),
        cmocka_unit_test(test_base62_random_uniform),
        cmocka_unit_test(test_base62_random_small),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
