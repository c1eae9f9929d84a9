/* Unit tests of stateless keys (lib/token.c): block base62, the claims, the
 * HMAC chain, attenuation. Every test that a token is refused also checks
 * that the same token, untouched, is accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define KID 0x01020304u
#define T0 INT64_C(1767225600) /* 2026-01-01T00:00:00Z */

static const unsigned char key1[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char key2[32] = "fedcba9876543210fedcba9876543210";

/* ---- block base62 ------------------------------------------------------------ */

static void test_b62blk_roundtrip(void **state)
{
    unsigned char in[64], back[64 + 8];
    char text[128];
    size_t n;

    (void)state;
    for (size_t len = 0; len <= 64; len++) {
        for (int fill = 0; fill < 3; fill++) {
            if (fill == 0)
                memset(in, 0, len);
            else if (fill == 1)
                memset(in, 0xff, len);
            else
                randombytes_buf(in, len);
            kwi_b62blk_encode(text, in, len);
            assert_true(kwi_b62blk_len(len) < sizeof(text));
            assert_true(kwi_b62blk_decode(back, &n, text, kwi_b62blk_len(len)));
            assert_int_equal(n, len);
            assert_memory_equal(back, in, len);
        }
    }
    /* 8 bytes of 0xff is the largest block: "LygHa16AHYF" */
    memset(in, 0xff, 8);
    kwi_b62blk_encode(text, in, 8);
    assert_memory_equal(text, "LygHa16AHYF", 11);
}

static void test_b62blk_refuses(void **state)
{
    unsigned char out[64];
    size_t n;
    static const char *const bad[] = {
        "0",            /* 1 digit: no byte count */
        "0000",         /* 4 */
        "00000000",     /* 8 */
        "LygHa16AHYG",  /* 2^64: one more than 8 bytes hold */
        "zzzzzzzzzzz",  /* far more */
        "48",           /* 256: more than 1 byte */
        "00+",          /* not base62 */
        "0000000000_0", /* nor this */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(kwi_b62blk_decode(out, &n, bad[i], strlen(bad[i])));
    assert_true(kwi_b62blk_decode(out, &n, "47", 2)); /* 255 */
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 255);
}

/* ---- helpers ------------------------------------------------------------------ */

static kw_secret *sign(const kw_token_params *p, const unsigned char *key)
{
    kw_secret *tok = NULL;
    char err[200] = "";

    if (kwi_token_sign(&tok, key, KID, p, "Abc123Def456", T0, err, sizeof(err)) != KW_OK)
        fail_msg("kwi_token_sign: %s", err);
    return tok;
}

static kw_token_params params(void)
{
    static const char *const scopes[] = {"orders:*", "billing:read"};
    kw_token_params p = {.owner = "acme", .scopes = scopes, .nscopes = 2};

    p.expires_at = T0 + 86400;
    return p;
}

static const char *text(const kw_secret *s)
{
    return (const char *)kw_secret_cdata(s);
}

/* Does the token verify under key? Its claims (if it parsed) go to *info. */
static int ok_under(const char *tok, size_t len, const unsigned char *key, kw_token_info **info)
{
    kw_token_info *t = NULL;
    int ok = kwi_token_tag_ok(tok, len, key, &t);

    if (info != NULL)
        *info = t;
    else
        kw_token_info_free(t);
    return ok;
}

static kw_secret *narrow(const kw_secret *parent, const kw_token_restriction *r)
{
    kw_secret *child = NULL;
    char err[200] = "";

    if (kw_token_attenuate(&child, text(parent), kw_secret_len(parent), r, NULL, err,
                           sizeof(err)) != KW_OK)
        fail_msg("kw_token_attenuate: %s", err);
    return child;
}

/* Re-encode bytes as a token with prefix and a correct check. */
static char *reencode(const char *prefix, const unsigned char *bytes, size_t n)
{
    size_t plen = strlen(prefix), blen = kwi_b62blk_len(n);
    char *s = malloc(plen + 1 + blen + KW_CHECK_LEN + 1), check[KW_CHECK_LEN + 1];

    assert_non_null(s);
    memcpy(s, prefix, plen);
    s[plen] = '_';
    kwi_b62blk_encode(s + plen + 1, bytes, n);
    kw_key_check(check, s, plen + 1 + blen);
    memcpy(s + plen + 1 + blen, check, KW_CHECK_LEN + 1);
    return s;
}

/* The bytes a token's text holds. */
static size_t bytes_of(const kw_secret *tok, unsigned char *out)
{
    const char *s = text(tok), *us = strrchr(s, '_');
    size_t n;

    assert_true(kwi_b62blk_decode(out, &n, us + 1, strlen(us + 1) - KW_CHECK_LEN));
    return n;
}

/* ---- claims and tag ------------------------------------------------------------ */

static void test_sign_and_read_back(void **state)
{
    kw_token_params p = params();
    kw_secret *tok;
    kw_token_info *t;
    char err[200];

    (void)state;
    p.not_before = T0 - 60;
    p.prefix = "acme_live";
    tok = sign(&p, key1);
    assert_true(kw_token_shape(text(tok), kw_secret_len(tok)));
    assert_true(strncmp(text(tok), "acme_live_", 10) == 0);
    assert_true(ok_under(text(tok), kw_secret_len(tok), key1, &t));
    assert_string_equal(t->prefix, "acme_live");
    assert_int_equal(t->kid, KID);
    assert_string_equal(t->id, "Abc123Def456");
    assert_string_equal(t->leaf_id, "Abc123Def456");
    assert_int_equal(t->issued_at, T0);
    assert_int_equal(t->not_before, T0 - 60);
    assert_int_equal(t->expires_at, T0 + 86400);
    assert_string_equal(t->owner, "acme");
    assert_int_equal(t->nscopes, 2);
    assert_string_equal(t->scopes[0], "orders:*");
    assert_string_equal(t->scopes[1], "billing:read");
    assert_int_equal(t->neff_scopes, 2);
    assert_int_equal(t->ncaveats, 0);
    kw_token_info_free(t);
    /* another key: parses, but the tag is wrong */
    assert_false(ok_under(text(tok), kw_secret_len(tok), key2, &t));
    assert_non_null(t);
    kw_token_info_free(t);
    /* kw_token_parse reads the same without a key */
    assert_int_equal(kw_token_parse(&t, text(tok), kw_secret_len(tok), err, sizeof(err)), KW_OK);
    assert_string_equal(t->owner, "acme");
    kw_token_info_free(t);
    kw_secret_free(tok);
}

static void test_sign_refuses(void **state)
{
    static const char *const dup[] = {"a:read", "a:read"};
    static const char *const badscope[] = {"A:READ"};
    kw_token_params p;
    kw_secret *tok = NULL;
    char err[200];

    (void)state;
    p = params();
    p.owner = NULL;
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    p = params();
    p.owner = "bad\xff";
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    p = params();
    p.scopes = dup;
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    p.scopes = badscope;
    p.nscopes = 1;
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    p = params();
    p.not_before = p.expires_at;
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    p = params();
    p.prefix = "Bad";
    assert_int_equal(kwi_token_sign(&tok, key1, KID, &p, "Abc123Def456", T0, err, sizeof(err)),
                     KW_ERR_INVALID);
    assert_null(tok);
}

/* Any byte changed (with the check made right again, so that the CRC is
 * not what catches it), and any change of prefix: never a good tag. */
static void test_tamper_every_byte(void **state)
{
    kw_token_params p = params();
    kw_token_restriction r = {.audience = "api.example", .new_id = 1};
    kw_secret *tok = sign(&p, key1), *child;
    unsigned char bytes[512];
    size_t n;

    (void)state;
    child = narrow(tok, &r);
    for (int which = 0; which < 2; which++) {
        kw_secret *s = which == 0 ? tok : child;
        n = bytes_of(s, bytes);
        assert_true(ok_under(text(s), kw_secret_len(s), key1, NULL));
        for (size_t i = 0; i < n; i++)
            for (int bit = 0; bit < 8; bit++) {
                char *bad;
                bytes[i] ^= (unsigned char)(1u << bit);
                bad = reencode("kw_live", bytes, n);
                assert_false(ok_under(bad, strlen(bad), key1, NULL));
                free(bad);
                bytes[i] ^= (unsigned char)(1u << bit);
            }
        {
            char *other = reencode("kw_test", bytes, n), *same = reencode("kw_live", bytes, n);
            assert_false(ok_under(other, strlen(other), key1, NULL));
            assert_true(ok_under(same, strlen(same), key1, NULL));
            free(other);
            free(same);
        }
        /* cut short, or a byte more */
        for (size_t cut = 1; cut < n; cut += 7) {
            char *bad = reencode("kw_live", bytes, n - cut);
            assert_false(ok_under(bad, strlen(bad), key1, NULL));
            free(bad);
        }
        bytes[n] = 0;
        {
            char *bad = reencode("kw_live", bytes, n + 1);
            assert_false(ok_under(bad, strlen(bad), key1, NULL));
            free(bad);
        }
    }
    kw_secret_free(child);
    kw_secret_free(tok);
}

/* ---- attenuation ---------------------------------------------------------------- */

static void test_attenuate_narrows(void **state)
{
    static const char *const one[] = {"orders:read"};
    static const char *const narrower[] = {"orders:read"};
    kw_token_params p = params();
    kw_token_restriction r1 = {.scopes = one, .nscopes = 1, .expires_at = T0 + 3600};
    kw_token_restriction r2 = {.scopes = narrower,
                               .nscopes = 1,
                               .not_before = T0 + 60,
                               .address = "10.1.0.0/16",
                               .new_id = 1};
    kw_secret *tok = sign(&p, key1), *c1, *c2;
    kw_token_info *t;
    char child_id[KW_ID_LEN + 1];
    char err[200];

    (void)state;
    c1 = narrow(tok, &r1);
    assert_true(ok_under(text(c1), kw_secret_len(c1), key1, &t));
    assert_int_equal(t->ncaveats, 2);
    assert_int_equal(t->neff_scopes, 1);
    assert_string_equal(t->eff_scopes[0], "orders:read");
    assert_int_equal(t->eff_expires_at, T0 + 3600);
    assert_string_equal(t->leaf_id, "Abc123Def456");
    kw_token_info_free(t);

    assert_int_equal(
        kw_token_attenuate(&c2, text(c1), kw_secret_len(c1), &r2, child_id, err, sizeof(err)),
        KW_OK);
    assert_true(ok_under(text(c2), kw_secret_len(c2), key1, &t));
    assert_int_equal(t->ncaveats, 6);
    assert_int_equal(t->eff_not_before, T0 + 60);
    assert_int_equal(t->eff_expires_at, T0 + 3600);
    assert_string_equal(t->leaf_id, child_id);
    assert_string_not_equal(child_id, "Abc123Def456");
    assert_string_equal(t->caveats[4].text, "10.1.0.0/16");
    kw_token_info_free(t);
    /* the child under another key: no */
    assert_false(ok_under(text(c2), kw_secret_len(c2), key2, NULL));
    kw_secret_free(c2);
    kw_secret_free(c1);
    kw_secret_free(tok);
}

/* A child can never be wider: what would widen is refused, and taking a
 * caveat off (without the parent's tag) breaks the tag. */
static void test_attenuate_cannot_widen(void **state)
{
    static const char *const wider[] = {"*"};
    static const char *const other[] = {"users:read"};
    static const char *const sub[] = {"orders:read"};
    kw_token_params p = params();
    kw_token_restriction r = {0};
    kw_secret *tok = sign(&p, key1), *child = NULL, *c1;
    unsigned char pb[512], cb[512];
    size_t pn, cn;
    char err[200];

    (void)state;
    r.scopes = wider;
    r.nscopes = 1;
    assert_int_equal(
        kw_token_attenuate(&child, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)),
        KW_ERR_INVALID);
    assert_non_null(strstr(err, "does not grant"));
    r.scopes = other;
    assert_int_equal(
        kw_token_attenuate(&child, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)),
        KW_ERR_INVALID);
    r = (kw_token_restriction){.expires_at = T0 + 2 * 86400}; /* later than the parent's */
    assert_int_equal(
        kw_token_attenuate(&child, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)),
        KW_ERR_INVALID);
    r = (kw_token_restriction){.address = "10.1.0.1/16"}; /* host bits set */
    assert_int_equal(
        kw_token_attenuate(&child, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)),
        KW_ERR_INVALID);
    r = (kw_token_restriction){0}; /* nothing */
    assert_int_equal(
        kw_token_attenuate(&child, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)),
        KW_ERR_INVALID);
    assert_null(child);

    /* narrow, then try to take the caveat off with the child's tag */
    r = (kw_token_restriction){.scopes = sub, .nscopes = 1};
    c1 = narrow(tok, &r);
    pn = bytes_of(tok, pb);
    cn = bytes_of(c1, cb);
    assert_true(cn > pn);
    memcpy(pb + pn - 32, cb + cn - 32, 32); /* parent's claims, child's tag */
    {
        char *bad = reencode("kw_live", pb, pn);
        assert_false(ok_under(bad, strlen(bad), key1, NULL));
        free(bad);
    }
    /* a sub-scope of a wildcard is allowed; the child of a child may not
     * come back to the wildcard */
    {
        static const char *const back[] = {"orders:*"};
        kw_token_restriction r2 = {.scopes = back, .nscopes = 1};
        assert_int_equal(
            kw_token_attenuate(&child, text(c1), kw_secret_len(c1), &r2, NULL, err, sizeof(err)),
            KW_ERR_INVALID);
    }
    kw_secret_free(c1);
    kw_secret_free(tok);
}

/* A caveat list written by hand that a parser must refuse. */
static void test_parse_refuses(void **state)
{
    kw_token_params p = params();
    kw_secret *tok = sign(&p, key1);
    unsigned char b[512], tag[32];
    size_t n = bytes_of(tok, b);
    kw_token_info *t;
    char err[200], *bad;
    static const unsigned char unknown[] = {99, 1, 0};
    static const unsigned char zero_time[] = {KW_CAVEAT_EXPIRES, 5, 0, 0, 0, 0, 0};

    (void)state;
    memcpy(tag, b + n - 32, 32);
    /* unknown version */
    b[0] = 3;
    bad = reencode("kw_live", b, n);
    assert_int_equal(kw_token_parse(&t, bad, strlen(bad), err, sizeof(err)), KW_ERR_INVALID);
    assert_non_null(strstr(err, "version"));
    free(bad);
    b[0] = 1;
    /* a caveat of an unknown type, and a time caveat of 0 */
    for (int which = 0; which < 2; which++) {
        const unsigned char *c = which ? zero_time : unknown;
        size_t clen = which ? sizeof(zero_time) : sizeof(unknown);
        unsigned char b2[512];
        memcpy(b2, b, n - 32);
        memcpy(b2 + n - 32, c, clen);
        memcpy(b2 + n - 32 + clen, tag, 32);
        bad = reencode("kw_live", b2, n + clen);
        assert_int_equal(kw_token_parse(&t, bad, strlen(bad), err, sizeof(err)), KW_ERR_INVALID);
        free(bad);
    }
    /* not a token at all: an opaque key's shape, a wrong check */
    assert_int_equal(kw_token_parse(&t, "kw_live_abc", 11, err, sizeof(err)), KW_ERR_INVALID);
    bad = strdup(text(tok));
    bad[strlen(bad) - 1] ^= 1;
    assert_int_equal(kw_token_parse(&t, bad, strlen(bad), err, sizeof(err)), KW_ERR_INVALID);
    free(bad);
    kw_secret_free(tok);
}

static void test_caveat_limit(void **state)
{
    kw_token_params p = params();
    kw_token_restriction r = {.new_id = 1};
    kw_secret *tok = sign(&p, key1), *next = NULL;
    char err[200];
    int made = 0;

    (void)state;
    while (kw_token_attenuate(&next, text(tok), kw_secret_len(tok), &r, NULL, err, sizeof(err)) ==
           KW_OK) {
        kw_secret_free(tok);
        tok = next;
        made++;
        assert_true(made <= KW_TOKEN_CAVEATS_MAX);
    }
    assert_int_equal(made, KW_TOKEN_CAVEATS_MAX);
    assert_non_null(strstr(err, "16 caveats"));
    assert_true(ok_under(text(tok), kw_secret_len(tok), key1, NULL));
    kw_secret_free(tok);
}

/* ---- the vectors of docs/tokens.md (also rebuilt from the spec alone by
 * tests/blackbox/test_token_vectors.py) ----------------------------------------- */

static const char v_minted[] =
    "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbP"
    "EynV9BMM2iA0wFKk1vmHScDzmdTEVFvUO9vbaV4G1Vig2QB9UT";
static const char v_child[] =
    "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbK"
    "eRWV59ouDwKVEaJx8MPJ1gK0Xs0B4RfirfDVtT3mK0Q0ug3lc1L2g83ffHHmCaaqiCTTUoy3h3ISYSU";
static const char v_grandchild[] =
    "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbK"
    "eRWV59ouDwKVEaJx8MPJ1gK0Xs0AzP28OvUgTo0LbvQSOXkuu8MbSqYAY5T59MJ9OSHe70K23zY9OYg8MVLUoc8QrXe"
    "010N5BqKom3go28UIlD9gbLK0r3erSm3";
static const char v_minimal[] = "acme_test_05K1WLpBqeh9zmWARXay4u4I9kybNxPF20000000000007d7YOt2"
                                "ZahLKO6FW1cbA2AOTBQEJvV3V7nKtxpKtH3y0ztif4YzAgg";

/* Format 2 (docs/tokens.md, "Format 2"): the signing key's seed and each
 * block key's seed are given, so the texts are fixed. */
static const char v2_minted[] =
    "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUb"
    "LOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4"
    "v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3e1qF5136Om1ce4A8p3n9K86LILOF4TtsEa2WWdf16OZLT4F2"
    "37p";
static const char v2_child[] =
    "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUb"
    "LOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4"
    "v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3dUlwxH9ZEC2HVcB8s8he1vKDPN2a7b5BwiAq2NK8i7fSRhFJ"
    "R08XI4iqsVvPN0nfsxFbWISfIq10Gzq416XANMf0bL5fmWEXMW6mM2uIh1fM8o4LkgEqDOCgq2p0TuLDIeFefJbVOt"
    "Cjw3tZsO5PU6a5ii3TxAeUKKlRJNUBHsgEAUmaMfER1HJcQQ3iWcLrA5wkICqe8PXg6dUqJKLMan67KFOPo2am2W0P"
    "fpf1lOcJN";
static const char v2_grandchild[] =
    "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUb"
    "LOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4"
    "v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3dUlwxH9ZEC2HVcB8s8he1vKDPN2a7b5BwiAq2NK8i7fSRhFJ"
    "R08XI4iqsVvPN0nfsxFbWISfIq10Gzq416XANMf0bL5fmWEXMW6mM2uIh1fM8o4LkgEqDOCgq2p0TuLDIeFefJbVOt"
    "Cjw3tZsO5PU6a5ii3TxAeUKKlRJNUBHsgEAUmaMfER1HJcQPyw4JcHY002Zss18Nka7SO8mxog8fpGZNJ4GZgwUU0W"
    "QPMMCxr9ABDAkigu2HjLHjMuK7FuGOW24evZAoYGDIAcZISDz51SvGJFBLyb8Jvp6vn6Z8lIcX36OY8Ez7cEj30oY1"
    "SntjdxsKuiA2OE6IrL8cPArSDtc8B9J9ixvv7nNb9zuH4PcLyd12HLY3L0Zqgtz";

static void test_vectors_v2(void **state)
{
    static const char *const scopes[] = {"orders:*", "billing:read"};
    static const char *const one[] = {"orders:read"};
    unsigned char key[32], e[3][32], pk[32], sk[64];
    kw_token_params p = {.owner = "acme",
                         .scopes = scopes,
                         .nscopes = 2,
                         .expires_at = 1798761600,
                         .prefix = "kw_live"};
    kw_token_restriction r1 = {
        .scopes = one, .nscopes = 1, .expires_at = 1782864000, .audience = "api.example.com"};
    kw_token_restriction r2 = {.address = "192.0.2.0/24"};
    kw_secret *t, *c, *g;
    char err[200];

    (void)state;
    for (int i = 0; i < 32; i++) {
        key[i] = (unsigned char)i;
        for (int j = 0; j < 3; j++)
            e[j][i] = (unsigned char)(0x20 * (j + 1) + i);
    }
    assert_int_equal(kwi_token_sign_ed25519(&t, key, e[0], 0x0e0d0c0b, &p, "Vector000003",
                                            1767225600, err, sizeof(err)),
                     KW_OK);
    assert_string_equal(text(t), v2_minted);
    assert_int_equal(kwi_token_attenuate_seeded(&c, text(t), kw_secret_len(t), &r1, e[1], NULL, err,
                                                sizeof(err)),
                     KW_OK);
    assert_string_equal(text(c), v2_child);
    assert_int_equal(kwi_token_attenuate_seeded(&g, text(c), kw_secret_len(c), &r2, e[2], NULL, err,
                                                sizeof(err)),
                     KW_OK);
    assert_string_equal(text(g), v2_grandchild);
    crypto_sign_seed_keypair(pk, sk, key);
    assert_true(ok_under(v2_grandchild, strlen(v2_grandchild), pk, NULL));
    pk[0] ^= 1;
    assert_false(ok_under(v2_grandchild, strlen(v2_grandchild), pk, NULL));
    kw_secret_free(t);
    kw_secret_free(c);
    kw_secret_free(g);
}

static void test_vectors(void **state)
{
    static const char *const scopes[] = {"orders:*", "billing:read"};
    static const char *const one[] = {"orders:read"};
    unsigned char key[32];
    kw_token_params p = {.owner = "acme",
                         .scopes = scopes,
                         .nscopes = 2,
                         .expires_at = 1798761600,
                         .prefix = "kw_live"};
    kw_token_params q = {.owner = "o", .prefix = "acme_test"};
    kw_token_restriction r1 = {.scopes = one, .nscopes = 1, .expires_at = 1782864000};
    kw_token_restriction r2 = {
        .audience = "api.example.com", .address = "192.0.2.0/24", .not_before = 1769904000};
    kw_secret *t, *c, *g, *m;
    char err[200];

    (void)state;
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    assert_int_equal(
        kwi_token_sign(&t, key, 0x0a0b0c0d, &p, "Vector000001", 1767225600, err, sizeof(err)),
        KW_OK);
    assert_string_equal(text(t), v_minted);
    c = narrow(t, &r1);
    assert_string_equal(text(c), v_child);
    g = narrow(c, &r2);
    assert_string_equal(text(g), v_grandchild);
    assert_int_equal(kwi_token_sign(&m, key, 1, &q, "Vector000002", 1767225600, err, sizeof(err)),
                     KW_OK);
    assert_string_equal(text(m), v_minimal);
    assert_true(ok_under(v_grandchild, strlen(v_grandchild), key, NULL));
    kw_secret_free(t);
    kw_secret_free(c);
    kw_secret_free(g);
    kw_secret_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b62blk_roundtrip),
        cmocka_unit_test(test_b62blk_refuses),
        cmocka_unit_test(test_sign_and_read_back),
        cmocka_unit_test(test_sign_refuses),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_attenuate_narrows),
        cmocka_unit_test(test_attenuate_cannot_widen),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_caveat_limit),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_vectors_v2),
    };
    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
