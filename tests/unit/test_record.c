/*
 * Key records through the public API (lib/record.c): validation on create,
 * get/list/paging, partial updates, revocation, rotation with a grace
 * period and credits that move to the new key, and the record's JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

static kw_key_params params(void)
{
    kw_key_params p;

    kw_key_params_init(&p);
    return p;
}

static kw_key_change change(unsigned fields)
{
    kw_key_change c;

    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = fields;
    return c;
}

static size_t count_keys(kwt_db *t)
{
    kw_key_filter f = {.limit = KW_LIST_MAX};
    kw_key_record *recs = NULL;
    char next[KW_ID_LEN + 1];
    size_t n = 0;

    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_OK);
    assert_string_equal(next, "");
    kw_key_records_free(recs, n);
    return n;
}

/* kw_key_create must refuse p with KW_ERR_INVALID and leave no trace. */
static void refuse(kwt_db *t, const kw_key_params *p)
{
    kw_secret *key = NULL;
    kw_key_record rec;
    size_t before = count_keys(t);

    memset(&rec, 0, sizeof(rec));
    assert_int_equal(kw_key_create(t->ctx, p, &kwt_actor, &key, &rec), KW_ERR_INVALID);
    assert_null(key);
    assert_null(rec.owner);
    assert_true(kw_errmsg(t->ctx)[0] != '\0');
    assert_int_equal(count_keys(t), before);
}

/* kw_key_create must accept p. */
static void accept(kwt_db *t, const kw_key_params *p)
{
    kw_secret *key = kwt_key(t, p, NULL);

    kw_secret_free(key);
}

/* ---- create validation ------------------------------------------------------ */

static void test_create_prefix(void **state)
{
    kwt_db *t = *state;
    static const char *const bad[] = {
        "",         "Kw_live",  "1abc",
        "kw__live", "kw_live_", "kw-live",
        "_kw",      "kw live",  "abcdefghijklmnopqrstu" /* 21 chars */};
    kw_key_params p = params();
    kw_key_record rec;
    kw_secret *key;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p.prefix = bad[i];
        refuse(t, &p);
    }
    p.prefix = "abcdefghijklmnopqrst"; /* 20 chars */
    accept(t, &p);
    p.prefix = "acme_live";
    key = kwt_key(t, &p, &rec);
    assert_string_equal(rec.prefix, "acme_live");
    assert_memory_equal(kw_secret_cdata(key), "acme_live_", 10);
    assert_int_equal(kw_secret_len(key), 10 + KW_BODY_LEN);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    p.prefix = NULL;
    key = kwt_key(t, &p, &rec);
    assert_string_equal(rec.prefix, KW_DEFAULT_PREFIX);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_create_owner_name(void **state)
{
    kwt_db *t = *state;
    char owner[KW_OWNER_MAX + 2];
    kw_key_params p = params();

    memset(owner, 'o', sizeof(owner));
    owner[KW_OWNER_MAX + 1] = '\0'; /* 129 chars */
    p.owner = owner;
    refuse(t, &p);
    p.owner = owner + 1; /* 128 chars */
    accept(t, &p);
    p.owner = "a\tb";
    refuse(t, &p);
    p.owner = "ok";
    p.name = "line\nbreak";
    refuse(t, &p);
    p.name = "bell\a";
    refuse(t, &p);
    p.name = "del\x7f";
    refuse(t, &p);
    p.name = owner; /* 129 chars */
    refuse(t, &p);
    p.name = "a fine name: na\xc3\xafve caf\xc3\xa9";
    accept(t, &p);
}

static void test_create_scopes(void **state)
{
    kwt_db *t = *state;
    char names[KW_SCOPES_MAX + 1][16];
    const char *scopes[KW_SCOPES_MAX + 1];
    kw_key_params p = params();
    kw_key_record rec;
    kw_secret *key;

    for (size_t i = 0; i < KW_SCOPES_MAX + 1; i++) {
        snprintf(names[i], sizeof(names[i]), "res%zu:read", i);
        scopes[i] = names[i];
    }
    p.scopes = scopes;
    p.nscopes = KW_SCOPES_MAX + 1;
    refuse(t, &p);
    p.nscopes = KW_SCOPES_MAX;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(rec.nscopes, KW_SCOPES_MAX);
    assert_string_equal(rec.scopes[KW_SCOPES_MAX - 1], names[KW_SCOPES_MAX - 1]);
    kw_key_record_clear(&rec);
    kw_secret_free(key);

    p.scopes = (const char *const[]){"orders:read", "users:read", "orders:read"};
    p.nscopes = 3;
    refuse(t, &p);
    p.scopes = (const char *const[]){"Orders:Read"};
    p.nscopes = 1;
    refuse(t, &p);
    p.scopes = (const char *const[]){"orders read"};
    refuse(t, &p);
    p.scopes = (const char *const[]){"orders:"};
    refuse(t, &p);
    p.scopes = (const char *const[]){""};
    refuse(t, &p);
    p.scopes = (const char *const[]){"*:orders"};
    refuse(t, &p);
    p.scopes = (const char *const[]){NULL};
    refuse(t, &p);
    p.scopes = (const char *const[]){"orders:*", "*", "a.b-c_d:e"};
    p.nscopes = 3;
    accept(t, &p);
}

static void test_create_meta(void **state)
{
    kwt_db *t = *state;
    char big[KW_META_MAX + 64];
    kw_key_params p = params();
    kw_key_record rec;
    kw_secret *key;
    size_t n;

    p.meta = "{";
    refuse(t, &p);
    p.meta = "not json";
    refuse(t, &p);
    p.meta = "[1,2]";
    refuse(t, &p);
    p.meta = "\"a string\"";
    refuse(t, &p);
    p.meta = "42";
    refuse(t, &p);
    p.meta = "{\"a\":1,\"a\":2}";
    refuse(t, &p);

    /* A valid object just over the cap, and one at it. */
    n = (size_t)snprintf(big, sizeof(big), "{\"k\":\"");
    memset(big + n, 'x', KW_META_MAX + 1 - n - 2);
    memcpy(big + KW_META_MAX + 1 - 2, "\"}", 3);
    assert_int_equal(strlen(big), KW_META_MAX + 1);
    p.meta = big;
    refuse(t, &p);
    big[KW_META_MAX - 2] = '"';
    big[KW_META_MAX - 1] = '}';
    big[KW_META_MAX] = '\0';
    assert_int_equal(strlen(big), KW_META_MAX);
    accept(t, &p);

    p.meta = "{\"tier\": \"gold\", \"n\": [1, 2]}";
    key = kwt_key(t, &p, &rec);
    {
        json_t *want = json_loads(p.meta, 0, NULL), *got = json_loads(rec.meta, 0, NULL);
        assert_non_null(got);
        assert_true(json_equal(want, got));
        json_decref(want);
        json_decref(got);
    }
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    p.meta = NULL;
    key = kwt_key(t, &p, &rec);
    assert_string_equal(rec.meta, "{}");
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_create_times_credits_rate(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();

    p.expires_at = kw_now() - 10;
    refuse(t, &p);
    p.expires_at = kw_now();
    refuse(t, &p);
    p.expires_at = kw_now() + 3600;
    accept(t, &p);
    p = params();
    p.not_before = -5;
    refuse(t, &p);

    p = params();
    p.credits = -2;
    refuse(t, &p);
    p.credits = INT64_MIN;
    refuse(t, &p);
    p.credits = 0;
    accept(t, &p);
    p.credits = KW_CREDITS_UNLIMITED;
    accept(t, &p);

    p = params();
    p.rate_limit = 10;
    p.rate_window_ms = 999;
    refuse(t, &p);
    p.rate_window_ms = 0;
    refuse(t, &p);
    p.rate_window_ms = 31u * 86400u * 1000u;
    refuse(t, &p);
    p.rate_window_ms = 1000;
    accept(t, &p);
}

static void test_create_record(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, got;
    kw_secret *key;
    int64_t before = kw_now(), after;

    p.owner = "acme";
    p.name = "billing";
    p.scopes = (const char *const[]){"orders:read", "orders:*"};
    p.nscopes = 2;
    p.meta = "{\"a\":1}";
    p.not_before = before - 100;
    p.expires_at = before + 3600;
    p.credits = 7;
    p.rate_limit = 5;
    p.rate_window_ms = 2000;
    key = kwt_key(t, &p, &rec);
    after = kw_now();
    assert_true(kw_key_id_valid(rec.id));
    {
        kw_key_parts parts;
        assert_true(kw_key_parse(&parts, (const char *)kw_secret_cdata(key), kw_secret_len(key)));
        assert_string_equal(parts.id, rec.id);
    }
    assert_int_equal(kw_key_get(t->ctx, rec.id, &got), KW_OK);
    assert_string_equal(got.id, rec.id);
    assert_string_equal(got.prefix, KW_DEFAULT_PREFIX);
    assert_string_equal(got.owner, "acme");
    assert_string_equal(got.name, "billing");
    assert_int_equal(got.nscopes, 2);
    assert_string_equal(got.scopes[0], "orders:read");
    assert_string_equal(got.scopes[1], "orders:*");
    assert_string_equal(got.meta, "{\"a\":1}");
    assert_true(got.created_at >= before && got.created_at <= after);
    assert_int_equal(got.not_before, before - 100);
    assert_int_equal(got.expires_at, before + 3600);
    assert_int_equal(got.last_used_at, 0);
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(got.credits, 7);
    assert_int_equal(got.rate_limit, 5);
    assert_int_equal(got.rate_window_ms, 2000);
    assert_string_equal(got.rotated_from, "");
    assert_string_equal(got.rotated_to, "");
    assert_int_equal(got.legacy, 0);
    assert_null(got.external_id);
    kw_key_record_clear(&got);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* ---- get / list ------------------------------------------------------------- */

static void test_get_errors(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec;

    assert_int_equal(kw_key_get(t->ctx, "AAAAAAAAAAAA", &rec), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_key_get(t->ctx, "short", &rec), KW_ERR_INVALID);
    assert_int_equal(kw_key_get(t->ctx, "AAAAAAAAAAA!", &rec), KW_ERR_INVALID);
}

static void test_list_paging(void **state)
{
    kwt_db *t = *state;
    char ids[25][KW_ID_LEN + 1], seen[25][KW_ID_LEN + 1], next[KW_ID_LEN + 1] = "";
    static const size_t want[] = {10, 10, 5};
    kw_key_params p = params();
    kw_key_record rec;
    size_t nseen = 0;

    p.owner = "pager";
    for (size_t i = 0; i < 25; i++) {
        kw_secret_free(kwt_key(t, &p, &rec));
        memcpy(ids[i], rec.id, sizeof(ids[i]));
        kw_key_record_clear(&rec);
    }
    /* Keys of others, before and after, that the owner filter hides. */
    p.owner = "other";
    for (int i = 0; i < 3; i++)
        kw_secret_free(kwt_key(t, &p, NULL));

    for (size_t page = 0; page < 3; page++) {
        kw_key_filter f = {.owner = "pager", .after = page ? next : NULL, .limit = 10};
        kw_key_record *recs;
        size_t n;
        assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_OK);
        assert_int_equal(n, want[page]);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(recs[i].owner, "pager");
            memcpy(seen[nseen++], recs[i].id, KW_ID_LEN + 1);
        }
        if (page < 2) {
            assert_string_equal(next, recs[n - 1].id);
        } else {
            assert_string_equal(next, "");
        }
        kw_key_records_free(recs, n);
    }
    /* In creation order. */
    assert_int_equal(nseen, 25);
    for (size_t i = 0; i < 25; i++)
        assert_string_equal(ids[i], seen[i]);

    /* A cursor that is a key id, but of no key here, is refused. */
    {
        kw_key_filter f = {.owner = "pager", .after = "ZZZZZZZZZZZZ", .limit = 10};
        kw_key_record *recs = NULL;
        size_t n = 0;

        assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_ERR_INVALID);
        assert_non_null(strstr(kw_errmsg(t->ctx), "cursor"));
        assert_null(recs);
    }
}

static void test_list_exact_page_and_filters(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_filter f = {.prefix = "acme_test", .limit = 10};
    kw_key_record *recs;
    char next[KW_ID_LEN + 1];
    size_t n;

    p.prefix = "acme_test";
    for (int i = 0; i < 10; i++)
        kw_secret_free(kwt_key(t, &p, NULL));
    p.prefix = NULL;
    kw_secret_free(kwt_key(t, &p, NULL));

    /* Exactly one full page: no next cursor. */
    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_OK);
    assert_int_equal(n, 10);
    assert_string_equal(next, "");
    for (size_t i = 0; i < n; i++)
        assert_string_equal(recs[i].prefix, "acme_test");
    kw_key_records_free(recs, n);

    f.prefix = KW_DEFAULT_PREFIX;
    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_OK);
    assert_int_equal(n, 1);
    kw_key_records_free(recs, n);

    f.prefix = NULL;
    f.limit = 0; /* default 100 */
    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_OK);
    assert_int_equal(n, 11);
    kw_key_records_free(recs, n);
    assert_int_equal(kw_key_list(t->ctx, NULL, &recs, &n, next), KW_OK);
    assert_int_equal(n, 11);
    kw_key_records_free(recs, n);

    f.limit = KW_LIST_MAX + 1;
    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_ERR_INVALID);
    f.limit = 10;
    f.after = "not a cursor";
    assert_int_equal(kw_key_list(t->ctx, &f, &recs, &n, next), KW_ERR_INVALID);
}

/* ---- update ----------------------------------------------------------------- */

static void test_update_each_field(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, got;
    kw_key_change c;
    kw_secret *key;
    int64_t exp = kw_now() + 7200, nb = kw_now() - 60;

    p.owner = "o1";
    p.name = "n1";
    p.scopes = (const char *const[]){"a:read"};
    p.nscopes = 1;
    p.meta = "{\"v\":1}";
    key = kwt_key(t, &p, &rec);

    c = change(KW_CHANGE_NAME);
    c.p.name = "n2";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, &got), KW_OK);
    assert_string_equal(got.name, "n2");
    assert_string_equal(got.owner, "o1"); /* untouched */
    kw_key_record_clear(&got);

    c = change(KW_CHANGE_OWNER);
    c.p.owner = "o2";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_SCOPES);
    c.p.scopes = (const char *const[]){"b:write", "c:*"};
    c.p.nscopes = 2;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_META);
    c.p.meta = "{\"v\":2}";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_EXPIRES);
    c.p.expires_at = exp;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_NOT_BEFORE);
    c.p.not_before = nb;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_CREDITS);
    c.p.credits = 2;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_RATE);
    c.p.rate_limit = 9;
    c.p.rate_window_ms = 5000;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);

    assert_int_equal(kw_key_get(t->ctx, rec.id, &got), KW_OK);
    assert_string_equal(got.name, "n2");
    assert_string_equal(got.owner, "o2");
    assert_int_equal(got.nscopes, 2);
    assert_string_equal(got.scopes[0], "b:write");
    assert_string_equal(got.scopes[1], "c:*");
    assert_string_equal(got.meta, "{\"v\":2}");
    assert_int_equal(got.expires_at, exp);
    assert_int_equal(got.not_before, nb);
    assert_int_equal(got.credits, 2);
    assert_int_equal(got.rate_limit, 9);
    assert_int_equal(got.rate_window_ms, 5000);
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.created_at, rec.created_at);
    kw_key_record_clear(&got);

    /* The changes take effect in verification. */
    assert_int_equal(kwt_verify(t, key, (const char *const[]){"a:read", NULL}, 0, NULL),
                     KW_INSUFFICIENT_SCOPE);
    assert_int_equal(kwt_verify(t, key, (const char *const[]){"c:x", NULL}, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_USAGE_EXCEEDED);

    c = change(KW_CHANGE_ENABLED);
    c.enabled = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, &got), KW_OK);
    assert_int_equal(got.enabled, 0);
    kw_key_record_clear(&got);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_DISABLED);

    /* Several fields at once; back to unlimited and no expiry. */
    c = change(KW_CHANGE_ENABLED | KW_CHANGE_CREDITS | KW_CHANGE_EXPIRES | KW_CHANGE_RATE);
    c.enabled = 1;
    c.p.credits = KW_CREDITS_UNLIMITED;
    c.p.expires_at = 0;
    c.p.rate_limit = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, &got), KW_OK);
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.credits, KW_CREDITS_UNLIMITED);
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(got.rate_limit, 0);
    kw_key_record_clear(&got);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_update_errors(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec, got;
    kw_key_change c;
    kw_secret *key = kwt_key(t, NULL, &rec);

    c = change(0);
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_INVALID);
    c = change(KW_CHANGE_NAME);
    c.p.name = "x";
    assert_int_equal(kw_key_update(t->ctx, "AAAAAAAAAAAA", &c, &kwt_actor, NULL), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_key_update(t->ctx, "bad", &c, &kwt_actor, NULL), KW_ERR_INVALID);
    c = change(KW_CHANGE_META);
    c.p.meta = "[]";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_INVALID);
    c = change(KW_CHANGE_EXPIRES);
    c.p.expires_at = kw_now() - 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_INVALID);
    c = change(KW_CHANGE_CREDITS);
    c.p.credits = -5;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_INVALID);
    c = change(KW_CHANGE_SCOPES);
    c.p.scopes = (const char *const[]){"a", "a"};
    c.p.nscopes = 2;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_INVALID);
    /* None of it changed anything. */
    assert_int_equal(kw_key_get(t->ctx, rec.id, &got), KW_OK);
    assert_string_equal(got.meta, "{}");
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(got.credits, KW_CREDITS_UNLIMITED);
    assert_int_equal(got.nscopes, 0);
    kw_key_record_clear(&got);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_revoke(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec, got;
    kw_key_change c;
    kw_secret *key = kwt_key(t, NULL, &rec), *nk = NULL;
    int64_t before = kw_now();

    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, &got), KW_OK);
    assert_true(got.revoked_at >= before && got.revoked_at <= kw_now());
    kw_key_record_clear(&got);
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL), KW_ERR_CONFLICT);
    c = change(KW_CHANGE_NAME);
    c.p.name = "after";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_CONFLICT);
    c = change(KW_CHANGE_ENABLED);
    c.enabled = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_ERR_CONFLICT);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 60, &kwt_actor, &nk, NULL), KW_ERR_CONFLICT);
    assert_null(nk);
    /* The record stays (for the audit), unchanged by the refused calls. */
    assert_int_equal(kw_key_get(t->ctx, rec.id, &got), KW_OK);
    assert_true(got.revoked_at > 0);
    assert_string_equal(got.name, "");
    kw_key_record_clear(&got);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_REVOKED);
    assert_int_equal(kw_key_revoke(t->ctx, "AAAAAAAAAAAA", &kwt_actor, NULL), KW_ERR_NOT_FOUND);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* ---- rotation ----------------------------------------------------------------- */

static void test_rotate_copies_settings(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, fresh, old;
    kw_secret *key, *nk = NULL;
    int64_t now;

    p.prefix = "acme_live";
    p.owner = "acme";
    p.name = "prod";
    p.scopes = (const char *const[]){"orders:read", "users:*"};
    p.nscopes = 2;
    p.meta = "{\"team\":\"pay\"}";
    p.rate_limit = 4;
    p.rate_window_ms = 3000;
    key = kwt_key(t, &p, &rec);
    now = kw_now();
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 3600, &kwt_actor, &nk, &fresh), KW_OK);
    assert_non_null(nk);
    assert_string_not_equal(fresh.id, rec.id);
    assert_memory_equal(kw_secret_cdata(nk), "acme_live_", 10);
    assert_string_equal(fresh.prefix, "acme_live");
    assert_string_equal(fresh.owner, "acme");
    assert_string_equal(fresh.name, "prod");
    assert_int_equal(fresh.nscopes, 2);
    assert_string_equal(fresh.scopes[0], "orders:read");
    assert_string_equal(fresh.scopes[1], "users:*");
    assert_string_equal(fresh.meta, "{\"team\":\"pay\"}");
    assert_int_equal(fresh.rate_limit, 4);
    assert_int_equal(fresh.rate_window_ms, 3000);
    assert_int_equal(fresh.expires_at, 0);
    assert_int_equal(fresh.enabled, 1);
    assert_string_equal(fresh.rotated_from, rec.id);
    assert_string_equal(fresh.rotated_to, "");

    assert_int_equal(kw_key_get(t->ctx, rec.id, &old), KW_OK);
    assert_string_equal(old.rotated_to, fresh.id);
    assert_true(old.expires_at >= now + 3600 - 2 && old.expires_at <= now + 3600 + 2);
    kw_key_record_clear(&old);
    assert_int_equal(kw_key_get(t->ctx, fresh.id, &old), KW_OK);
    assert_string_equal(old.rotated_from, rec.id);
    kw_key_record_clear(&old);

    /* Both verify within the grace period, each with the copied scopes. */
    assert_int_equal(kwt_verify(t, nk, (const char *const[]){"users:x", NULL}, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, key, (const char *const[]){"users:x", NULL}, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, nk, (const char *const[]){"admin", NULL}, 0, NULL),
                     KW_INSUFFICIENT_SCOPE);

    /* The old key cannot be rotated again; the new one can. */
    {
        kw_secret *again = NULL;
        assert_int_equal(kw_key_rotate(t->ctx, rec.id, 60, &kwt_actor, &again, NULL),
                         KW_ERR_CONFLICT);
        assert_null(again);
        assert_int_equal(kw_key_rotate(t->ctx, fresh.id, 60, &kwt_actor, &again, NULL), KW_OK);
        assert_non_null(again);
        assert_int_equal(kwt_verify(t, again, NULL, 0, NULL), KW_VALID);
        kw_secret_free(again);
    }
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

static void test_rotate_grace_expires(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec, fresh, old;
    kw_verify_result r;
    kw_secret *key = kwt_key(t, NULL, &rec), *nk = NULL;
    int64_t now;

    kwt_align_to_second();
    now = kw_now();
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 1, &kwt_actor, &nk, &fresh), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &old), KW_OK);
    assert_true(old.expires_at >= now + 1 && old.expires_at <= now + 1 + 2);
    /* Within the grace period both keys work. */
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_VALID);
    kwt_sleep_until(old.expires_at);
    kw_key_record_clear(&old);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_EXPIRED);
    assert_string_equal(r.key.rotated_to, fresh.id);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_VALID);
    {
        kw_secret *again = NULL;
        assert_int_equal(kw_key_rotate(t->ctx, rec.id, 60, &kwt_actor, &again, NULL),
                         KW_ERR_CONFLICT);
        assert_null(again);
    }
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

static void test_rotate_zero_grace_and_earlier_expiry(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, fresh, old;
    kw_secret *key, *nk = NULL;
    int64_t exp = kw_now() + 100;

    /* An old key that expires before the grace period ends keeps its expiry. */
    p.expires_at = exp;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 86400, &kwt_actor, &nk, &fresh), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &old), KW_OK);
    assert_int_equal(old.expires_at, exp);
    kw_key_record_clear(&old);
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);

    /* Grace 0: the old key stops at once. */
    key = kwt_key(t, NULL, &rec);
    nk = NULL;
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 0, &kwt_actor, &nk, NULL), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_EXPIRED);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_VALID);
    kw_secret_free(nk);
    nk = NULL;
    /* Bad grace periods. */
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    key = kwt_key(t, NULL, &rec);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, -1, &kwt_actor, &nk, NULL), KW_ERR_INVALID);
    assert_int_equal(kw_key_rotate(t->ctx, "AAAAAAAAAAAA", 10, &kwt_actor, &nk, NULL),
                     KW_ERR_NOT_FOUND);
    assert_null(nk);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_rotate_credits_move(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, fresh, got;
    kw_verify_result r;
    kw_secret *key, *nk = NULL;
    int valid = 0;

    p.credits = 5;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    valid++;
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 3600, &kwt_actor, &nk, &fresh), KW_OK);
    assert_int_equal(fresh.credits, 4);

    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_VALID);
    assert_int_equal(r.remaining, 3);
    kw_verify_result_clear(&r);
    valid++;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kwt_verify(t, nk, NULL, 0, &r), KW_VALID);
        assert_int_equal(r.remaining, 2 - i);
        kw_verify_result_clear(&r);
        valid++;
    }
    assert_int_equal(valid, 5);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, &r), KW_USAGE_EXCEEDED);
    assert_int_equal(r.remaining, 0);
    kw_verify_result_clear(&r);
    assert_int_equal(kwt_verify(t, key, NULL, 0, &r), KW_USAGE_EXCEEDED);
    assert_int_equal(r.remaining, 0);
    kw_verify_result_clear(&r);
    assert_int_equal(kw_key_get(t->ctx, fresh.id, &got), KW_OK);
    assert_int_equal(got.credits, 0);
    kw_key_record_clear(&got);

    /* Topping up the new key serves both again. */
    {
        kw_key_change c = change(KW_CHANGE_CREDITS);
        c.p.credits = 1;
        assert_int_equal(kw_key_update(t->ctx, fresh.id, &c, &kwt_actor, NULL), KW_OK);
        assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
        assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    }
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

static void test_rotate_credits_five_split(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    kw_secret *key, *nk = NULL;
    int valid = 0;

    /* Rotated before any use: old twice, new three times, 5 in all. */
    p.credits = 5;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 3600, &kwt_actor, &nk, NULL), KW_OK);
    for (int i = 0; i < 2; i++)
        valid += kwt_verify(t, key, NULL, 0, NULL) == KW_VALID;
    for (int i = 0; i < 3; i++)
        valid += kwt_verify(t, nk, NULL, 0, NULL) == KW_VALID;
    assert_int_equal(valid, 5);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

static void test_rotate_chain_credits(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec, r2;
    kw_secret *k1, *k2 = NULL, *k3 = NULL;
    int valid = 0;

    /* Rotated twice within the grace: all three draw on one pool of 4. */
    p.credits = 4;
    k1 = kwt_key(t, &p, &rec);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 3600, &kwt_actor, &k2, &r2), KW_OK);
    assert_int_equal(kw_key_rotate(t->ctx, r2.id, 3600, &kwt_actor, &k3, NULL), KW_OK);
    valid += kwt_verify(t, k1, NULL, 0, NULL) == KW_VALID;
    valid += kwt_verify(t, k2, NULL, 0, NULL) == KW_VALID;
    valid += kwt_verify(t, k3, NULL, 0, NULL) == KW_VALID;
    valid += kwt_verify(t, k1, NULL, 0, NULL) == KW_VALID;
    assert_int_equal(valid, 4);
    assert_int_equal(kwt_verify(t, k1, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    assert_int_equal(kwt_verify(t, k2, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    assert_int_equal(kwt_verify(t, k3, NULL, 0, NULL), KW_USAGE_EXCEEDED);
    kw_key_record_clear(&r2);
    kw_key_record_clear(&rec);
    kw_secret_free(k1);
    kw_secret_free(k2);
    kw_secret_free(k3);
}

/* ---- JSON --------------------------------------------------------------------- */

static void test_record_json(void **state)
{
    kwt_db *t = *state;
    kw_key_params p = params();
    kw_key_record rec;
    char text[KW_KEY_MAX + 1], secret[KW_SECRET_LEN + 1], id[KW_ID_LEN + 1];
    kw_secret *key;
    json_t *o, *v;
    char *js;
    size_t n;

    p.owner = "acme";
    p.name = "billing";
    p.scopes = (const char *const[]){"orders:read"};
    p.nscopes = 1;
    p.meta = "{\"a\":1}";
    p.credits = 9;
    p.rate_limit = 3;
    p.rate_window_ms = 1000;
    p.expires_at = kw_now() + 3600;
    key = kwt_key(t, &p, &rec);
    n = kw_secret_len(key);
    memcpy(text, kw_secret_cdata(key), n);
    text[n] = '\0';
    memcpy(secret, text + n - KW_CHECK_LEN - KW_SECRET_LEN, KW_SECRET_LEN);
    secret[KW_SECRET_LEN] = '\0';

    js = kw_key_record_json(&rec);
    assert_non_null(js);
    assert_null(strstr(js, text));
    assert_null(strstr(js, secret));
    o = json_loads(js, 0, NULL);
    assert_true(json_is_object(o));
    assert_string_equal(json_string_value(json_object_get(o, "id")), rec.id);
    assert_string_equal(json_string_value(json_object_get(o, "prefix")), KW_DEFAULT_PREFIX);
    assert_string_equal(json_string_value(json_object_get(o, "owner")), "acme");
    assert_string_equal(json_string_value(json_object_get(o, "name")), "billing");
    v = json_object_get(o, "scopes");
    assert_true(json_is_array(v) && json_array_size(v) == 1);
    assert_string_equal(json_string_value(json_array_get(v, 0)), "orders:read");
    v = json_object_get(o, "meta");
    assert_true(json_is_object(v));
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "credits")), 9);
    v = json_object_get(o, "ratelimit");
    assert_int_equal(json_integer_value(json_object_get(v, "limit")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "window_ms")), 1000);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "active");
    assert_true(json_is_true(json_object_get(o, "enabled")));
    assert_true(json_is_string(json_object_get(o, "created_at")));
    assert_true(json_is_string(json_object_get(o, "expires_at")));
    assert_true(json_is_null(json_object_get(o, "revoked_at")));
    assert_true(json_is_null(json_object_get(o, "last_used_at")));
    assert_null(json_object_get(o, "key"));
    assert_null(json_object_get(o, "hash"));
    json_decref(o);
    free(js);

    /* After a revocation: status and time, still no key. */
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL), KW_OK);
    memcpy(id, rec.id, sizeof(id));
    kw_key_record_clear(&rec);
    assert_int_equal(kw_key_get(t->ctx, id, &rec), KW_OK);
    js = kw_key_record_json(&rec);
    assert_non_null(js);
    assert_null(strstr(js, text));
    assert_null(strstr(js, secret));
    o = json_loads(js, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "revoked");
    assert_true(json_is_string(json_object_get(o, "revoked_at")));
    json_decref(o);
    free(js);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* A batch is one transaction: every key created, verifiable, audited with
 * its own actor; a refused item leaves nothing behind. */
static void test_create_many(void **state)
{
    kwt_db *t = *state;
    kw_key_params p[3] = {params(), params(), params()};
    const kw_actor actors[3] = {{"alice", "10.0.0.1"}, {"bob", "10.0.0.2"}, {"carol", "local"}};
    kw_secret *keys[3];
    kw_key_record recs[3];
    kw_audit_filter f = {.limit = 100};
    kw_audit_record *audit;
    size_t failed = 99, n;
    int64_t next;

    p[0].owner = "a";
    p[1].owner = "b";
    p[1].credits = 5;
    p[2].prefix = "sk_test";
    assert_int_equal(kw_key_create_many(t->ctx, p, actors, 3, keys, recs, &failed), KW_OK);
    assert_int_equal(failed, 3);
    assert_int_equal(count_keys(t), 3);
    assert_string_equal(recs[2].prefix, "sk_test");
    assert_memory_equal(kw_secret_cdata(keys[2]), "sk_test_", 8);
    for (int i = 0; i < 3; i++) {
        kw_verify_result r;
        assert_non_null(keys[i]);
        assert_int_equal(kwt_verify(t, keys[i], NULL, 0, &r), KW_VALID);
        assert_string_equal(r.key.id, recs[i].id);
        assert_string_equal(r.key.owner, p[i].owner ? p[i].owner : "");
        kw_verify_result_clear(&r);
        kw_secret_free(keys[i]);
        kw_key_record_clear(&recs[i]);
    }
    assert_int_equal(kw_audit_list(t->ctx, &f, &audit, &n, &next), KW_OK);
    size_t creates = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(audit[i].action, "key.create") == 0) {
            assert_string_equal(audit[i].actor, actors[creates].id);
            creates++;
        }
    assert_int_equal(creates, 3);
    kw_audit_records_free(audit, n);

    /* The middle item is refused: nothing of the batch is stored. */
    p[1].rate_limit = 10; /* without a window: invalid */
    p[1].rate_window_ms = 0;
    assert_int_equal(kw_key_create_many(t->ctx, p, actors, 3, keys, NULL, &failed), KW_ERR_INVALID);
    assert_int_equal(failed, 1);
    for (int i = 0; i < 3; i++)
        assert_null(keys[i]);
    assert_int_equal(count_keys(t), 3);
    assert_int_equal(kw_key_create_many(t->ctx, p, actors, 0, keys, NULL, &failed), KW_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_prefix, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_owner_name, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_scopes, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_meta, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_times_credits_rate, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_record, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_get_errors, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_list_exact_page_and_filters, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_update_each_field, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_update_errors, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_revoke, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_copies_settings, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_grace_expires, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_zero_grace_and_earlier_expiry, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_credits_move, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_credits_five_split, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_chain_credits, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_record_json, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_create_many, kwt_setup, kwt_teardown),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
