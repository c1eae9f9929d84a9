/*
 * Verification through the public API on a real database (lib/verify.c,
 * SPEC.md "Verification"): every result code, the order of the checks, what
 * a refused request spends (nothing), and exact credits across processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "helpers.h"

#define NPROCS 4
#define PER_PROC 30
#define SHARED_CREDITS 50

/* Verify raw text (not necessarily a key). */
static kw_verdict verify_text(kwt_db *t, const char *text, size_t len)
{
    kw_verify_result r;
    kw_verdict v;

    assert_int_equal(kw_verify(t->ctx, text, len, NULL, &r), KW_OK);
    v = r.code;
    if (v == KW_MALFORMED || v == KW_NOT_FOUND)
        assert_int_equal(r.found, 0);
    kw_verify_result_clear(&r);
    return v;
}

/* A copy of the key's text in buf (NUL-terminated); returns its length. */
static size_t key_text(char buf[static KW_KEY_MAX + 1], const kw_secret *key)
{
    size_t n = kw_secret_len(key);

    assert_true(n <= KW_KEY_MAX);
    memcpy(buf, kw_secret_cdata(key), n);
    buf[n] = '\0';
    return n;
}

/* Recompute the trailing check of a key-shaped buffer of length n. */
static void fix_check(char *buf, size_t n)
{
    char check[KW_CHECK_LEN + 1];

    kw_key_check(check, buf, n - KW_CHECK_LEN);
    memcpy(buf + n - KW_CHECK_LEN, check, KW_CHECK_LEN);
}

static kw_key_params params(void)
{
    kw_key_params p;

    kw_key_params_init(&p);
    return p;
}

static int64_t stored_credits(kwt_db *t, const char *id)
{
    kw_key_record r;
    int64_t c;

    assert_int_equal(kw_key_get(t->ctx, id, &r), KW_OK);
    c = r.credits;
    kw_key_record_clear(&r);
    return c;
}

static int64_t stored_last_used(kwt_db *t, const char *id)
{
    kw_key_record r;
    int64_t c;

    assert_int_equal(kw_key_get(t->ctx, id, &r), KW_OK);
    c = r.last_used_at;
    kw_key_record_clear(&r);
    return c;
}

/* ---- VALID / MALFORMED / NOT_FOUND ---------------------------------------- */

static void test_valid(void **state)
{
    kwt_db *t = *state;
    static const char *const scopes[] = {"orders:read", "users:write"};
    kw_key_params p = params();
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key;

    p.owner = "acme";
    p.name = "ci";
    p.scopes = scopes;
    p.nscopes = 2;
    p.meta = "{\"tier\":\"gold\"}";
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
    assert_int_equal(r.found, 1);
    assert_string_equal(r.key.id, rec.id);
    assert_string_equal(r.key.owner, "acme");
    assert_string_equal(r.key.name, "ci");
    assert_int_equal(r.key.nscopes, 2);
    assert_string_equal(r.key.scopes[0], "orders:read");
    assert_string_equal(r.key.scopes[1], "users:write");
    assert_int_equal(r.remaining, KW_CREDITS_UNLIMITED);
    assert_int_equal(r.rl_limit, 0);
    kw_verify_result_clear(&r);
    /* A NULL request is "no scopes, cost 1". */
    assert_int_equal(
        kw_verify(t->ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), NULL, &r), KW_OK);
    assert_int_equal(r.code, KW_VALID);
    kw_verify_result_clear(&r);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_malformed(void **state)
{
    kwt_db *t = *state;
    char buf[KW_KEY_MAX + 1], big[KW_VERIFY_INPUT_MAX + 100];
    kw_secret *key = kwt_key(t, NULL, NULL);
    size_t n = key_text(buf, key);
    char c;

    assert_int_equal(verify_text(t, buf, n), KW_VALID);
    assert_int_equal(verify_text(t, "", 0), KW_MALFORMED);
    assert_int_equal(verify_text(t, "garbage", 7), KW_MALFORMED);
    assert_int_equal(verify_text(t, "kw_live_not a key at all, really", 32), KW_MALFORMED);

    /* Wrong check: the last char changed. */
    c = buf[n - 1];
    buf[n - 1] = c == 'A' ? 'B' : 'A';
    assert_int_equal(verify_text(t, buf, n), KW_MALFORMED);
    buf[n - 1] = c;
    /* A typo in the secret, check left as is. */
    c = buf[n - 10];
    buf[n - 10] = c == 'A' ? 'B' : 'A';
    assert_int_equal(verify_text(t, buf, n), KW_MALFORMED);
    buf[n - 10] = c;
    /* Truncated, and one char appended. */
    assert_int_equal(verify_text(t, buf, n - 1), KW_MALFORMED);
    assert_int_equal(verify_text(t, buf, 10), KW_MALFORMED);
    {
        char longer[KW_KEY_MAX + 2];
        memcpy(longer, buf, n);
        longer[n] = 'A';
        assert_int_equal(verify_text(t, longer, n + 1), KW_MALFORMED);
    }
    /* Longer than KW_VERIFY_INPUT_MAX, with the real key at its start and
     * at its end. */
    memset(big, 'a', sizeof(big));
    memcpy(big, buf, n);
    assert_int_equal(verify_text(t, big, KW_VERIFY_INPUT_MAX + 1), KW_MALFORMED);
    memcpy(big + KW_VERIFY_INPUT_MAX + 1 - n, buf, n);
    assert_int_equal(verify_text(t, big, KW_VERIFY_INPUT_MAX + 1), KW_MALFORMED);
    assert_int_equal(verify_text(t, big, sizeof(big)), KW_MALFORMED);
    /* NULL key. */
    assert_int_equal(verify_text(t, NULL, 0), KW_MALFORMED);
    /* The key itself still works (a malformed attempt changed nothing). */
    assert_int_equal(verify_text(t, buf, n), KW_VALID);
    kw_secret_free(key);
}

static void test_not_found(void **state)
{
    kwt_db *t = *state;
    char buf[KW_KEY_MAX + 1], fake[KW_KEY_MAX + 1];
    kw_key_record rec;
    kw_secret *key = kwt_key(t, NULL, &rec);
    size_t n = key_text(buf, key);
    size_t plen = n - KW_BODY_LEN; /* prefix and '_' */

    /* An unknown id with a correct check. */
    memcpy(fake, buf, plen);
    kw_base62_random(fake + plen, KW_ID_LEN + KW_SECRET_LEN);
    fix_check(fake, n);
    fake[n] = '\0';
    assert_int_equal(verify_text(t, fake, n), KW_NOT_FOUND);

    /* The existing id with a wrong secret and a recomputed, correct check. */
    memcpy(fake, buf, n);
    fake[plen + KW_ID_LEN] = buf[plen + KW_ID_LEN] == 'A' ? 'B' : 'A';
    fix_check(fake, n);
    assert_memory_equal(fake, buf, plen + KW_ID_LEN);
    assert_int_equal(verify_text(t, fake, n), KW_NOT_FOUND);
    kw_base62_random(fake + plen + KW_ID_LEN, KW_SECRET_LEN);
    fix_check(fake, n);
    assert_int_equal(verify_text(t, fake, n), KW_NOT_FOUND);

    /* The same id and secret under another prefix. */
    {
        char other[KW_KEY_MAX + 1];
        size_t m =
            (size_t)snprintf(other, sizeof(other), "kw_test_%.*s", (int)KW_BODY_LEN, buf + plen);
        fix_check(other, m);
        assert_int_equal(verify_text(t, other, m), KW_NOT_FOUND);
    }

    /* None of that touched the key. */
    assert_int_equal(stored_last_used(t, rec.id), 0);
    assert_int_equal(verify_text(t, buf, n), KW_VALID);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* ---- REVOKED / DISABLED / EXPIRED / NOT_YET_VALID ------------------------- */

static void test_revoked(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key = kwt_key(t, NULL, &rec);

    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_REVOKED);
    assert_int_equal(r.found, 1);
    assert_string_equal(r.key.id, rec.id);
    assert_true(r.key.revoked_at > 0);
    kw_verify_result_clear(&r);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_disabled(void **state)
{
    kwt_db *t = *state;
    kw_key_change c;
    kw_key_record rec;
    kw_secret *key = kwt_key(t, NULL, &rec);

    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_ENABLED;
    c.enabled = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_DISABLED);
    assert_int_equal(stored_last_used(t, rec.id), 0);
    c.enabled = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_expired(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_verify_result r;
    kw_secret *key;

    kwt_align_to_second();
    p.expires_at = kw_now() + 1;
    p.credits = 10;
    key = kwt_key(t, &p, NULL);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    kwt_sleep_until(p.expires_at);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_EXPIRED);
    assert_int_equal(r.found, 1);
    /* Refused: nothing spent. */
    assert_int_equal(stored_credits(t, r.key.id), 9);
    kw_verify_result_clear(&r);
    kw_secret_free(key);
}

static void test_not_yet_valid(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_key_change c;
    kw_secret *key;

    p.not_before = kw_now() + 3600;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_NOT_YET_VALID);
    assert_int_equal(stored_last_used(t, rec.id), 0);
    /* A not_before in the past is no obstacle. */
    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_NOT_BEFORE;
    c.p.not_before = kw_now() - 10;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* ---- scopes ----------------------------------------------------------------- */

static kw_secret *key_with_scopes(kwt_db *t, const char *const *scopes, size_t n)
{
    kw_key_params p = params();

    p.scopes = scopes;
    p.nscopes = n;
    return kwt_key(t, &p, NULL);
}

static void test_scopes(void **state)
{
    kwt_db *t = *state;
    static const char *const read_only[] = {"orders:read"};
    static const char *const orders_all[] = {"orders:*"};
    static const char *const all[] = {"*"};
    static const char *const two[] = {"orders:read", "users:read"};
    static const char *const req_read[] = {"orders:read", NULL};
    static const char *const req_write[] = {"orders:write", NULL};
    static const char *const req_deep[] = {"orders:read:eu", NULL};
    static const char *const req_orders[] = {"orders", NULL};
    static const char *const req_users[] = {"users:read", NULL};
    static const char *const req_both[] = {"orders:read", "users:read", NULL};
    static const char *const req_mixed[] = {"orders:read", "users:write", NULL};
    static const char *const req_ordersx[] = {"ordersx:read", NULL};
    kw_secret *k_read = key_with_scopes(t, read_only, 1);
    kw_secret *k_orders = key_with_scopes(t, orders_all, 1);
    kw_secret *k_all = key_with_scopes(t, all, 1);
    kw_secret *k_two = key_with_scopes(t, two, 2);
    kw_secret *k_none = key_with_scopes(t, NULL, 0);

    assert_int_equal(kwt_verify(t, k_read, req_read, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_read, req_write, 0, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(kwt_verify(t, k_read, req_deep, 0, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(kwt_verify(t, k_read, req_both, 0, NULL), KW_INSUFFICIENT_SCOPE);

    assert_int_equal(kwt_verify(t, k_orders, req_read, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_orders, req_write, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_orders, req_deep, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_orders, req_orders, 0, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(kwt_verify(t, k_orders, req_users, 0, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(kwt_verify(t, k_orders, req_ordersx, 0, NULL), KW_INSUFFICIENT_SCOPE);

    assert_int_equal(kwt_verify(t, k_all, req_read, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_all, req_orders, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_all, req_mixed, 0, NULL), KW_VALID);

    assert_int_equal(kwt_verify(t, k_two, req_both, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_two, req_mixed, 0, NULL), KW_INSUFFICIENT_SCOPE);

    assert_int_equal(kwt_verify(t, k_none, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, k_none, req_read, 0, NULL), KW_INSUFFICIENT_SCOPE);

    kw_secret_free(k_read);
    kw_secret_free(k_orders);
    kw_secret_free(k_all);
    kw_secret_free(k_two);
    kw_secret_free(k_none);
}

static void test_invalid_required_scope(void **state)
{
    kwt_db *t = *state;
    static const char *const bad[][1] = {{"orders:*"}, {"*"},    {"Bad Scope"},
                                         {""},         {"a::b"}, {NULL}};
    kw_secret *key = key_with_scopes(t, (const char *const[]){"*"}, 1);
    kw_verdict codes[sizeof(bad) / sizeof(bad[0])];
    kw_rc rcs[sizeof(bad) / sizeof(bad[0])];
    kw_verify_result r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kw_verify_request req = {.scopes = bad[i], .nscopes = 1, .cost = 1};
        rcs[i] =
            kw_verify(t->ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), &req, &r);
        codes[i] = r.code;
        kw_verify_result_clear(&r);
    }
    kw_secret_free(key);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rcs[i], KW_ERR_INVALID);
        /* The caller must deny on an error, but the verdict left behind must
         * not say VALID either (as on the storage-error path). */
        if (codes[i] == KW_VALID)
            fail_msg("KW_ERR_INVALID left out->code == KW_VALID (scope %zu)", i);
    }
}

/* ---- rate limit, credits ------------------------------------------------ */

static void test_rate_limited(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_verify_result r;
    kw_secret *key;

    p.rate_limit = 3;
    p.rate_window_ms = 1000;
    key = kwt_key(t, &p, NULL);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
        assert_int_equal(r.rl_limit, 3);
        assert_int_equal(r.rl_remaining, 2 - i);
        kw_verify_result_clear(&r);
    }
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_RATE_LIMITED);
    assert_int_equal(r.found, 1);
    assert_int_equal(r.rl_limit, 3);
    assert_int_equal(r.rl_remaining, 0);
    assert_true(r.rl_reset_ms > 0);
    assert_true(r.rl_reset_ms <= 1000);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_RATE_LIMITED);

    /* Two whole windows later nothing of the burst counts any more. */
    kwt_sleep_ms(2100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_RATE_LIMITED);
    kw_secret_free(key);
}

static void test_usage_exceeded(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key;

    p.credits = 3;
    key = kwt_key(t, &p, &rec);
    for (int64_t want = 2; want >= 0; want--) {
        assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
        assert_int_equal(r.remaining, want);
        kw_verify_result_clear(&r);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_USAGE_EXCEEDED);
        assert_int_equal(r.found, 1);
        assert_int_equal(r.remaining, 0);
        kw_verify_result_clear(&r);
    }
    assert_int_equal(stored_credits(t, rec.id), 0);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_usage_cost(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key;

    p.credits = 3;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 2, &r), KW_VALID);
    assert_int_equal(r.remaining, 1);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, NULL, 2, &r), KW_USAGE_EXCEEDED);
    assert_int_equal(r.remaining, 1);
    kw_verify_result_clear(&r);
    assert_int_equal(stored_credits(t, rec.id), 1);
    assert_int_equal(kwt_verify(t, key, NULL, 1, &r), KW_VALID);
    assert_int_equal(r.remaining, 0);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, NULL, 1, NULL), KW_USAGE_EXCEEDED);
    assert_int_equal(stored_credits(t, rec.id), 0);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_zero_credits(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_secret *key;

    p.credits = 0;
    key = kwt_key(t, &p, NULL);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    kw_secret_free(key);
}

/* ---- order ------------------------------------------------------------------ */

static void test_order_revoked_first(void **state)
{
    kwt_db *t = *state;
    static const char *const req[] = {"admin:write", NULL};
    kw_key_params p = params();
    kw_key_record rec;
    kw_key_change c;
    kw_secret *key;

    /* Revoked beats disabled, expiry and scope. */
    p.scopes = (const char *const[]){"orders:read"};
    p.nscopes = 1;
    p.not_before = kw_now() + 3600;
    key = kwt_key(t, &p, &rec);
    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_ENABLED;
    c.enabled = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, req, 0, NULL), KW_DISABLED);
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, req, 0, NULL), KW_REVOKED);
    kw_key_record_clear(&rec);
    kw_secret_free(key);

    /* Not yet valid beats scope. */
    key = kwt_key(t, &p, NULL);
    assert_int_equal(kwt_verify(t, key, req, 0, NULL), KW_NOT_YET_VALID);
    kw_secret_free(key);
}

static void test_order_scope_spends_nothing(void **state)
{
    kwt_db *t = *state;
    static const char *const ok[] = {"orders:read", NULL};
    static const char *const no[] = {"orders:write", NULL};
    kw_key_params p = params();
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key;

    p.scopes = (const char *const[]){"orders:read"};
    p.nscopes = 1;
    p.credits = 2;
    p.rate_limit = 2;
    p.rate_window_ms = 60000;
    key = kwt_key(t, &p, &rec);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kwt_verify(t, key, no, 0, &r), KW_INSUFFICIENT_SCOPE);
        assert_int_equal(r.remaining, 2);
        kw_verify_result_clear(&r);
    }
    assert_int_equal(stored_credits(t, rec.id), 2);
    assert_int_equal(stored_last_used(t, rec.id), 0);
    /* Both the rate limit (2) and the credits (2) are still whole. */
    assert_int_equal(kwt_verify(t, key, ok, 0, &r), KW_VALID);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(r.rl_remaining, 1);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, ok, 0, &r), KW_VALID);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.rl_remaining, 0);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, ok, 0, NULL), KW_RATE_LIMITED);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_order_rate_limited_spends_no_credit(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key;

    p.credits = 5;
    p.rate_limit = 1;
    p.rate_window_ms = 60000;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
    assert_int_equal(r.remaining, 4);
    kw_verify_result_clear(&r);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_RATE_LIMITED);
        assert_int_equal(r.remaining, 4);
        kw_verify_result_clear(&r);
    }
    assert_int_equal(stored_credits(t, rec.id), 4);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_order_disabled_spends_nothing(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_key_change c;
    kw_secret *key;

    p.credits = 1;
    p.rate_limit = 1;
    p.rate_window_ms = 60000;
    key = kwt_key(t, &p, &rec);
    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_ENABLED;
    c.enabled = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_DISABLED);
    c.enabled = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(stored_credits(t, rec.id), 0);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_last_used(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec;
    kw_verify_result r;
    kw_secret *key = kwt_key(t, NULL, &rec);
    int64_t before, after;

    assert_int_equal(rec.last_used_at, 0);
    assert_int_equal(stored_last_used(t, rec.id), 0);
    before = kw_now();
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
    after = kw_now();
    assert_true(r.key.last_used_at >= before && r.key.last_used_at <= after);
    kw_verify_result_clear(&r);
    assert_true(stored_last_used(t, rec.id) >= before);
    assert_true(stored_last_used(t, rec.id) <= after);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* ---- context ----------------------------------------------------------------- */

static void test_wrong_pepper(void **state)
{
    kwt_db *t = *state;
    kw_secret *other;
    kw_ctx *ctx = NULL;
    char err[256] = "";
    kw_open_opts opts = {.create = 0, .err = err, .err_len = sizeof(err)};

    assert_int_equal(kw_secret_new(&other, KW_PEPPER_LEN), KW_OK);
    memset(kw_secret_data(other), 0x43, KW_PEPPER_LEN);
    assert_int_equal(kw_open(&ctx, t->url, other, &opts), KW_ERR_PEPPER_MISMATCH);
    assert_null(ctx);
    assert_true(err[0] != '\0');
    /* Not even with create (keyward init on an existing database). */
    opts.create = 1;
    assert_int_equal(kw_open(&ctx, t->url, other, &opts), KW_ERR_PEPPER_MISMATCH);
    assert_null(ctx);
    kw_secret_free(other);
    /* The right pepper opens it. */
    assert_int_equal(kw_open(&ctx, t->url, t->pepper, NULL), KW_OK);
    kw_close(ctx);
}

/* ---- concurrency ------------------------------------------------------------- */

/* Child: its own context, PER_PROC verifications; writes {valid, errors}. */
static void child_verify(const char *url, const kw_secret *pepper, const char *key, size_t len,
                         int fd)
{
    int counts[2] = {0, 0};
    kw_ctx *ctx = NULL;

    if (kw_open(&ctx, url, pepper, NULL) != KW_OK) {
        counts[1] = PER_PROC;
    } else {
        for (int i = 0; i < PER_PROC; i++) {
            kw_verify_result r;
            kw_rc rc = kw_verify(ctx, key, len, NULL, &r);
            if (rc == KW_OK && r.code == KW_VALID)
                counts[0]++;
            else if (rc != KW_OK || r.code != KW_USAGE_EXCEEDED)
                counts[1]++;
            kw_verify_result_clear(&r);
        }
        kw_close(ctx);
    }
    if (write(fd, counts, sizeof(counts)) != (ssize_t)sizeof(counts))
        _exit(2);
    _exit(0);
}

static void test_concurrent_credits(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    char buf[KW_KEY_MAX + 1];
    kw_secret *key;
    int fds[2], valid = 0, errors = 0;
    pid_t pids[NPROCS];
    size_t n;

    p.credits = SHARED_CREDITS;
    key = kwt_key(t, &p, &rec);
    n = key_text(buf, key);
    assert_int_equal(pipe(fds), 0);
    for (int i = 0; i < NPROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(fds[0]);
            child_verify(t->url, t->pepper, buf, n, fds[1]);
        }
    }
    close(fds[1]);
    for (int i = 0; i < NPROCS; i++) {
        int counts[2], status = 0;
        assert_int_equal(read(fds[0], counts, sizeof(counts)), (ssize_t)sizeof(counts));
        valid += counts[0];
        errors += counts[1];
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    close(fds[0]);
    assert_int_equal(errors, 0);
    assert_int_equal(valid, SHARED_CREDITS);
    assert_int_equal(stored_credits(t, rec.id), 0);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* kw_verify_result_json: valid JSON whatever the owner holds, the same
 * fields and values as the record, nulls when no key was identified. */
static void test_result_json(void **state)
{
    kwt_db *t = *state;
    const char *scopes[2] = {"orders:read", "b:*"};
    kw_key_params p;
    kw_key_record rec;
    kw_verify_result r;
    json_t *o, *want;
    kw_secret *key;
    char *txt;

    kw_key_params_init(&p);
    p.owner = "q\"uo\\te / \xc3\xa9t\xc3\xa9";
    p.scopes = scopes;
    p.nscopes = 2;
    p.meta = "{\"b\":[1,2],\"a\":\"x\\\"y\"}";
    p.expires_at = 4102444800; /* 2100-01-01 */
    p.credits = 5;
    p.rate_limit = 10;
    p.rate_window_ms = 60000;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
    txt = kw_verify_result_json(&r);
    assert_non_null(txt);
    o = json_loads(txt, 0, NULL);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "valid")));
    assert_string_equal(json_string_value(json_object_get(o, "code")), "VALID");
    assert_string_equal(json_string_value(json_object_get(o, "id")), rec.id);
    assert_string_equal(json_string_value(json_object_get(o, "owner")), p.owner);
    assert_int_equal(json_array_size(json_object_get(o, "scopes")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "scopes"), 1)), "b:*");
    want = json_loads(p.meta, 0, NULL);
    assert_true(json_equal(json_object_get(o, "meta"), want));
    json_decref(want);
    assert_string_equal(json_string_value(json_object_get(o, "expires_at")),
                        "2100-01-01T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(o, "remaining")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "ratelimit"), "limit")),
                     10);
    assert_int_equal(json_object_size(o), 9);
    json_decref(o);
    free(txt);
    kw_verify_result_clear(&r);

    memset(&r, 0, sizeof(r));
    r.code = KW_NOT_FOUND;
    r.remaining = KW_CREDITS_UNLIMITED;
    txt = kw_verify_result_json(&r);
    assert_string_equal(txt, "{\"valid\":false,\"code\":\"NOT_FOUND\",\"id\":null,\"owner\":null,"
                             "\"scopes\":null,\"meta\":null,\"expires_at\":null,\"remaining\":null,"
                             "\"ratelimit\":null}");
    free(txt);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_result_json, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_valid, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_malformed, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_not_found, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_revoked, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_disabled, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_expired, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_not_yet_valid, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_scopes, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_required_scope, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_usage_exceeded, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_usage_cost, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_zero_credits, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_order_revoked_first, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_order_scope_spends_nothing, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_order_rate_limited_spends_no_credit, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_order_disabled_spends_nothing, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_last_used, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_pepper, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_credits, kwt_setup, kwt_teardown),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
