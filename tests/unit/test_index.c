/* The in-memory verification index: same verdicts as storage, usage written
 * by sync, changes from other connections picked up by sync, exact credits
 * under threads, the size bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

static const kw_actor actor = {"test", "local"};

/* A second connection to the same database: another process, as far as
 * the index can tell. */
static kw_ctx *other(kwt_db *t)
{
    kw_ctx *c = NULL;

    assert_int_equal(kw_open(&c, t->url, t->pepper, NULL), KW_OK);
    return c;
}

static kw_verdict iverify(kw_index *idx, kwt_db *t, const kw_secret *key, const char *scope,
                          int64_t *remaining)
{
    const char *scopes[1] = {scope};
    kw_verify_request req = {.scopes = scopes, .nscopes = scope ? 1 : 0, .cost = 1};
    kw_verify_result res;
    kw_verdict v;

    assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(key),
                                     kw_secret_len(key), &req, &res),
                     KW_OK);
    v = res.code;
    if (remaining)
        *remaining = res.remaining;
    kw_verify_result_clear(&res);
    return v;
}

static kw_secret *make(kwt_db *t, int64_t credits, const char *scope, kw_key_record *rec)
{
    const char *scopes[1] = {scope};
    kw_key_params p;

    kw_key_params_init(&p);
    p.credits = credits;
    p.scopes = scopes;
    p.nscopes = scope ? 1 : 0;
    return kwt_key(t, &p, rec);
}

static void test_verdicts_match_storage(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0};
    kw_secret *key = make(t, -1, "orders:*", &rec);
    kw_index *idx;
    char bad[128];

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(iverify(idx, t, key, "orders:read", NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, key, "billing:read", NULL), KW_INSUFFICIENT_SCOPE);
    /* a wrong secret with a correct check: NOT_FOUND, like an unknown id */
    memcpy(bad, kw_secret_cdata(key), kw_secret_len(key));
    bad[20] = bad[20] == 'a' ? 'b' : 'a';
    kw_key_check(bad + kw_secret_len(key) - 6, bad, kw_secret_len(key) - 6);
    {
        kw_verify_result res;
        assert_int_equal(kw_index_verify(idx, t->ctx, bad, kw_secret_len(key), NULL, &res), KW_OK);
        assert_int_equal(res.code, KW_NOT_FOUND);
        assert_int_equal(res.found, 0);
        kw_verify_result_clear(&res);
        assert_int_equal(kw_index_verify(idx, t->ctx, "garbage", 7, NULL, &res), KW_OK);
        assert_int_equal(res.code, KW_MALFORMED);
        kw_verify_result_clear(&res);
    }
    /* The index checks the check after its probe: a wrong one is still
     * MALFORMED, for the real key's id and secret and for another id, and
     * goes on to storage's verdict (a fallback). */
    for (int i = 0; i < 2; i++) {
        kw_index_stats st0, st1;
        kw_verify_result res;
        size_t n = kw_secret_len(key);
        memcpy(bad, kw_secret_cdata(key), n);
        if (i == 1)
            bad[n - 40] = bad[n - 40] == 'a' ? 'b' : 'a'; /* another id */
        bad[n - 1] = bad[n - 1] == 'a' ? 'b' : 'a';
        kw_index_stats_get(idx, &st0);
        assert_int_equal(kw_index_verify(idx, t->ctx, bad, n, NULL, &res), KW_OK);
        assert_int_equal(res.code, KW_MALFORMED);
        assert_int_equal(res.found, 0);
        kw_verify_result_clear(&res);
        kw_index_stats_get(idx, &st1);
        assert_int_equal(st1.fallbacks, st0.fallbacks + 1);
        assert_int_equal(st1.hits, st0.hits);
    }
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &actor, NULL), KW_OK);
    assert_int_equal(kw_index_refresh(idx, t->ctx, rec.id), KW_OK); /* write-through */
    assert_int_equal(iverify(idx, t, key, "orders:read", NULL), KW_REVOKED);
    kw_index_free(idx);
    kw_secret_free(key);
    kw_key_record_clear(&rec);
}

static void test_credits_in_memory_then_written(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0}, now = {0};
    kw_secret *key = make(t, 5, NULL, &rec);
    kw_index *idx;
    int64_t left = -2;
    int valid = 0;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    for (int i = 0; i < 7; i++)
        valid += iverify(idx, t, key, NULL, &left) == KW_VALID;
    assert_int_equal(valid, 5);
    assert_int_equal(left, 0);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 5); /* not written yet */
    assert_int_equal(now.last_used_at, 0);
    kw_key_record_clear(&now);
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 0);
    assert_true(now.last_used_at >= kw_now() - 2);
    kw_key_record_clear(&now);
    kw_index_free(idx);
    kw_secret_free(key);
    kw_key_record_clear(&rec);
}

static void test_changes_elsewhere_arrive_with_sync(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0}, fresh = {0};
    kw_secret *key = make(t, 10, NULL, &rec), *k2 = NULL;
    kw_ctx *cli = other(t);
    kw_key_params p;
    kw_key_change c = {0};
    kw_index *idx;
    int64_t left;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(iverify(idx, t, key, NULL, &left), KW_VALID);
    assert_int_equal(iverify(idx, t, key, NULL, &left), KW_VALID);
    assert_int_equal(left, 8);

    /* "keyward key update --credits 100" from another process: the two
     * spends not yet written still count after the sync. */
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_CREDITS;
    c.p.credits = 100;
    assert_int_equal(kw_key_update(cli, rec.id, &c, &actor, NULL), KW_OK);
    /* a key created elsewhere is unknown until the sync */
    kw_key_params_init(&p);
    assert_int_equal(kw_key_create(cli, &p, &actor, &k2, &fresh), KW_OK);
    assert_int_equal(iverify(idx, t, k2, NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(kw_key_revoke(cli, rec.id, &actor, NULL), KW_OK);
    assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_VALID); /* stale until sync */

    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(iverify(idx, t, k2, NULL, NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_REVOKED);
    {
        kw_key_record now = {0};
        assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
        assert_int_equal(now.credits, 97); /* 100 set, minus 3 spends written after */
        kw_key_record_clear(&now);
    }
    kw_close(cli);
    kw_index_free(idx);
    kw_secret_free(key);
    kw_secret_free(k2);
    kw_key_record_clear(&rec);
    kw_key_record_clear(&fresh);
}

static void test_rotation_shares_credits(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0}, nrec = {0};
    kw_secret *old = make(t, 4, NULL, &rec), *fresh = NULL;
    kw_ctx *cli = other(t);
    kw_index *idx;
    int valid = 0;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(kw_key_rotate(cli, rec.id, 3600, &actor, &fresh, &nrec), KW_OK);
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    for (int i = 0; i < 3; i++) {
        valid += iverify(idx, t, old, NULL, NULL) == KW_VALID;
        valid += iverify(idx, t, fresh, NULL, NULL) == KW_VALID;
    }
    assert_int_equal(valid, 4);
    assert_int_equal(iverify(idx, t, old, NULL, NULL), KW_USAGE_EXCEEDED);
    assert_int_equal(iverify(idx, t, fresh, NULL, NULL), KW_USAGE_EXCEEDED);
    kw_close(cli);
    kw_index_free(idx);
    kw_secret_free(old);
    kw_secret_free(fresh);
    kw_key_record_clear(&rec);
    kw_key_record_clear(&nrec);
}

/* A change made through the server brackets itself with change_begin/end:
 * the credits it sets are absolute, a rotation carries the true balance. */
static void test_changes_through_this_process(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0}, nrec = {0}, now = {0};
    kw_secret *key = make(t, 10, NULL, &rec), *fresh = NULL;
    kw_key_change c = {0};
    kw_index *idx;
    int64_t left;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_VALID);
    kw_key_params_init(&c.p);
    c.fields = KW_CHANGE_CREDITS;
    c.p.credits = 5;
    assert_int_equal(kw_index_change_begin(idx, t->ctx, rec.id), KW_OK);
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &actor, NULL), KW_OK);
    assert_int_equal(kw_index_change_end(idx, t->ctx, rec.id, NULL), KW_OK);
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(kw_index_get(idx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 5);
    kw_key_record_clear(&now);

    assert_int_equal(iverify(idx, t, key, NULL, &left), KW_VALID); /* 4 left */
    assert_int_equal(kw_index_change_begin(idx, t->ctx, rec.id), KW_OK);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 3600, &actor, &fresh, &nrec), KW_OK);
    assert_int_equal(kw_index_change_end(idx, t->ctx, rec.id, nrec.id), KW_OK);
    assert_int_equal(iverify(idx, t, fresh, NULL, &left), KW_VALID);
    assert_int_equal(left, 3);
    assert_int_equal(iverify(idx, t, key, NULL, &left), KW_VALID); /* the old one, in grace */
    assert_int_equal(left, 2);
    kw_index_free(idx);
    kw_secret_free(key);
    kw_secret_free(fresh);
    kw_key_record_clear(&rec);
    kw_key_record_clear(&nrec);
}

/* Verifications are counted per key, hour and result code, from memory
 * (after a sync) and from storage alike. */
static void test_usage_counts(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0};
    kw_secret *key = make(t, -1, "orders:read", &rec);
    kw_usage_bucket *b;
    kw_index *idx;
    size_t n;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iverify(idx, t, key, "orders:read", NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, key, "orders:write", NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(
        kw_usage_get(t->ctx, rec.id, kw_now() - 3600, kw_now() + 1, KW_USAGE_HOUR, &b, &n), KW_OK);
    assert_int_equal(n, 0); /* not written before the sync */
    free(b);
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(kwt_verify(t, key, NULL, 1, NULL), KW_VALID); /* the storage path */
    assert_int_equal(
        kw_usage_get(t->ctx, rec.id, kw_now() - 86400, kw_now() + 1, KW_USAGE_DAY, &b, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(b[0].start % 86400, 0);
    assert_int_equal(b[0].counts[KW_VALID], 4);
    assert_int_equal(b[0].counts[KW_INSUFFICIENT_SCOPE], 1);
    assert_int_equal(b[0].counts[KW_REVOKED], 0);
    free(b);
    assert_int_equal(kw_usage_get(t->ctx, rec.id, 10, 5, KW_USAGE_HOUR, &b, &n), KW_ERR_INVALID);
    assert_int_equal(kw_usage_get(t->ctx, rec.id, 0, 800 * 3600, KW_USAGE_HOUR, &b, &n),
                     KW_ERR_INVALID);
    kw_index_free(idx);
    kw_secret_free(key);
    kw_key_record_clear(&rec);
}

static void test_size_bound(void **state)
{
    kwt_db *t = *state;
    kw_secret *k[3];
    kw_key_record first = {0};
    kw_index *idx = NULL;

    k[0] = make(t, -1, NULL, &first);
    for (int i = 1; i < 3; i++)
        k[i] = make(t, -1, NULL, NULL);
    assert_int_equal(kw_index_open(&idx, t->ctx, 2), KW_ERR_TOO_LARGE);
    assert_null(idx);
    assert_int_equal(kw_index_open(&idx, t->ctx, 3), KW_OK);
    {
        kw_index_stats st;
        kw_index_stats_get(idx, &st);
        assert_int_equal(st.keys, 3);
    }
    /* A key made elsewhere beyond the bound stays out, and does not stop
     * later changes from arriving. */
    {
        kw_key_record rec = {0};
        kw_secret *over = make(t, -1, NULL, &rec);
        assert_int_equal(kw_index_sync(idx, t->ctx), KW_ERR_TOO_LARGE);
        assert_int_equal(iverify(idx, t, over, NULL, NULL), KW_NOT_FOUND);
        assert_int_equal(kw_key_revoke(t->ctx, first.id, &actor, NULL), KW_OK);
        assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK); /* not retried */
        assert_int_equal(iverify(idx, t, k[0], NULL, NULL), KW_REVOKED);
        kw_secret_free(over);
        kw_key_record_clear(&rec);
    }
    kw_index_free(idx);
    kw_key_record_clear(&first);
    for (int i = 0; i < 3; i++)
        kw_secret_free(k[i]);
}

/* Regression: a store of more than one scan page (1000 rows) made
 * kw_index_open loop forever (the cursor was read from a row already
 * handed over and cleared). */
static void test_open_more_than_a_page(void **state)
{
    kwt_db *t = *state;
    kw_secret *last = NULL;
    kw_index *idx;
    kw_index_stats st;

    for (int i = 0; i < 1001; i++) {
        kw_secret_free(last);
        last = make(t, -1, NULL, NULL);
    }
    assert_int_equal(kw_index_open(&idx, t->ctx, 5000), KW_OK);
    kw_index_stats_get(idx, &st);
    assert_int_equal(st.keys, 1001);
    assert_int_equal(iverify(idx, t, last, NULL, NULL), KW_VALID);
    kw_index_free(idx);
    kw_secret_free(last);
}

typedef struct worker {
    kw_index *idx;
    kwt_db *t;
    const kw_secret *key;
    int valid;
} worker;

static void *spend_loop(void *arg)
{
    worker *w = arg;

    for (int i = 0; i < 50; i++) {
        kw_verify_result res;
        if (kw_index_verify(w->idx, w->t->ctx, (const char *)kw_secret_cdata(w->key),
                            kw_secret_len(w->key), NULL, &res) == KW_OK &&
            res.code == KW_VALID)
            w->valid++;
        kw_verify_result_clear(&res);
    }
    return NULL;
}

static void test_exact_credits_under_threads(void **state)
{
    kwt_db *t = *state;
    kw_secret *key = make(t, 100, NULL, NULL);
    worker w[4];
    pthread_t tid[4];
    kw_index *idx;
    int total = 0;

    /* kw_index_verify only reads the pepper from ctx for opaque keys, so
     * the threads may share t->ctx here. */
    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){idx, t, key, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, spend_loop, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        total += w[i].valid;
    }
    assert_int_equal(total, 100);
    kw_index_free(idx);
    kw_secret_free(key);
}

/* A result borrows the index's record: it stays whole (and the same)
 * after the key changes, is dropped, and after the index is freed. ASan
 * sees any use after free. Every field matches kw_key_get's copy. */
static void test_result_outlives_changes(void **state)
{
    kwt_db *t = *state;
    const char *scopes[2] = {"orders:*", "billing:read"};
    kw_key_params p;
    kw_key_record rec, stored;
    kw_verify_result r1, r2;
    kw_index *idx;
    kw_secret *key;
    char *json1, *json2;

    kw_key_params_init(&p);
    p.owner = "acme";
    p.name = "ci";
    p.scopes = scopes;
    p.nscopes = 2;
    p.meta = "{\"team\":\"payments\"}";
    p.credits = 10;
    p.rate_limit = 100;
    p.rate_window_ms = 60000;
    key = kwt_key(t, &p, &rec);
    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(key),
                                     kw_secret_len(key), NULL, &r1),
                     KW_OK);
    assert_int_equal(r1.code, KW_VALID);
    /* The view holds what storage holds (credits and last use as of now). */
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &stored), KW_OK);
    json1 = kw_key_record_json(&r1.key);
    json2 = kw_key_record_json(&stored);
    assert_non_null(json1);
    assert_string_equal(json1, json2);
    free(json2);
    kw_key_record_clear(&stored);

    /* Revoked and reloaded: r1 still shows the record it was given. */
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &actor, NULL), KW_OK);
    assert_int_equal(kw_index_refresh(idx, t->ctx, rec.id), KW_OK);
    assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(key),
                                     kw_secret_len(key), NULL, &r2),
                     KW_OK);
    assert_int_equal(r2.code, KW_REVOKED);
    assert_string_equal(r2.key.scopes[1], "billing:read");
    kw_index_free(idx);
    json2 = kw_key_record_json(&r1.key);
    assert_string_equal(json1, json2);
    assert_string_equal(r2.key.meta, "{\"team\":\"payments\"}");
    assert_int_not_equal(r2.key.revoked_at, 0);
    free(json1);
    free(json2);
    kw_verify_result_clear(&r1);
    kw_verify_result_clear(&r2);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* Keys with the same scopes share one set in the index: each still shows
 * (and is judged by) its own, before and after one of them changes. */
static void test_shared_scopes(void **state)
{
    kwt_db *t = *state;
    const char *two[2] = {"x:read", "y:*"}, *one[1] = {"x:read"};
    kw_key_params p;
    kw_key_record ra, rb, rc;
    kw_secret *a, *b, *c;
    kw_key_change ch;
    kw_index *idx;

    kw_key_params_init(&p);
    p.scopes = two;
    p.nscopes = 2;
    a = kwt_key(t, &p, &ra);
    b = kwt_key(t, &p, &rb);
    p.scopes = one;
    p.nscopes = 1;
    c = kwt_key(t, &p, &rc);
    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(iverify(idx, t, a, "y:write", NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, b, "y:write", NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, c, "y:write", NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(iverify(idx, t, c, "x:read", NULL), KW_VALID);

    memset(&ch, 0, sizeof(ch));
    kw_key_params_init(&ch.p);
    ch.fields = KW_CHANGE_SCOPES;
    ch.p.scopes = one;
    ch.p.nscopes = 1;
    assert_int_equal(kw_key_update(t->ctx, rb.id, &ch, &actor, NULL), KW_OK);
    assert_int_equal(kw_index_refresh(idx, t->ctx, rb.id), KW_OK);
    assert_int_equal(iverify(idx, t, a, "y:write", NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, b, "y:write", NULL), KW_INSUFFICIENT_SCOPE);
    {
        kw_verify_result r;
        assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(a),
                                         kw_secret_len(a), NULL, &r),
                         KW_OK);
        kw_index_free(idx);
        assert_int_equal(r.key.nscopes, 2);
        assert_string_equal(r.key.scopes[0], "x:read");
        assert_string_equal(r.key.scopes[1], "y:*");
        kw_verify_result_clear(&r);
    }
    kw_key_record_clear(&ra);
    kw_key_record_clear(&rb);
    kw_key_record_clear(&rc);
    kw_secret_free(a);
    kw_secret_free(b);
    kw_secret_free(c);
}

/* Loading on two threads (the threshold lowered to every store) gives the
 * same index: every key there exactly once, verifying as it should. */
static void test_parallel_load(void **state)
{
    kwt_db *t = *state;
    enum { N = 300 };
    kw_key_params p[N];
    kw_actor actors[N];
    kw_secret *keys[N];
    kw_index_stats st;
    kw_index *idx;

    for (int i = 0; i < N; i++) {
        kw_key_params_init(&p[i]);
        p[i].credits = i % 3 == 0 ? 1 : KW_CREDITS_UNLIMITED;
        actors[i] = actor;
    }
    assert_int_equal(kw_key_create_many(t->ctx, p, actors, N, keys, NULL, NULL), KW_OK);
    kwi_index_parallel_min = 0;
    assert_int_equal(kw_index_open(&idx, t->ctx, N), KW_OK);
    kwi_index_parallel_min = 50000;
    kw_index_stats_get(idx, &st);
    assert_int_equal(st.keys, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(iverify(idx, t, keys[i], NULL, NULL), KW_VALID);
        assert_int_equal(iverify(idx, t, keys[i], NULL, NULL),
                         i % 3 == 0 ? KW_USAGE_EXCEEDED : KW_VALID);
        kw_secret_free(keys[i]);
    }
    /* Counted in each key's shard, summed here: every one is there. */
    kw_index_stats_get(idx, &st);
    assert_int_equal(st.hits, 2 * N);
    assert_int_equal(st.fallbacks, 0);
    kw_index_free(idx);
}

/* A row open cannot read, after enough rows that some slots are still
 * waiting to be placed: open fails cleanly, on one loader and on two (the
 * sanitizer build checks that nothing leaks or is freed twice). */
static void test_open_fails_midway(void **state)
{
    kwt_db *t = *state;
    enum { N = 200 };
    kw_index *idx = NULL;
    char path[512], sql[160];
    sqlite3 *db;

    kwt_keys_batch(t, N);
    /* More scopes than any key may hold: the loader refuses the row. */
    snprintf(path, sizeof(path), "%s", t->url + strlen("sqlite:"));
    snprintf(sql, sizeof(sql),
             "UPDATE keys SET scopes = (SELECT group_concat('a:b', ' ') FROM "
             "(SELECT 1 FROM keys LIMIT %d)) WHERE rowid = 150",
             KW_SCOPES_MAX + 1);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    assert_int_equal(kw_index_open(&idx, t->ctx, N), KW_ERR_STORAGE);
    kwi_index_parallel_min = 0;
    assert_int_equal(kw_index_open(&idx, t->ctx, N), KW_ERR_STORAGE);
    kwi_index_parallel_min = 50000;
}

/* A key added from its creation verifies at once, with no storage read,
 * and shows the record storage has; a key that is not a new key's is
 * refused. */
static void test_add_new_key(void **state)
{
    kwt_db *t = *state;
    const char *scopes[1] = {"a:b"};
    kw_key_params p;
    kw_key_record rec, stored;
    kw_verify_result r;
    kw_index_stats st;
    kw_secret *key, *other;
    kw_index *idx;
    char *j1, *j2;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    kw_key_params_init(&p);
    p.owner = "o";
    p.scopes = scopes;
    p.nscopes = 1;
    p.credits = 2;
    key = kwt_key(t, &p, &rec);
    other = kwt_key(t, &p, &stored);
    assert_int_equal(kw_index_add(idx, t->ctx, &rec, other), KW_ERR_INVALID);
    kw_key_record_clear(&stored);
    assert_int_equal(kw_index_add(idx, t->ctx, &rec, key), KW_OK);
    kw_index_stats_get(idx, &st);
    assert_int_equal(st.keys, 1);
    assert_int_equal(st.reloads, 0);
    assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(key),
                                     kw_secret_len(key), NULL, &r),
                     KW_OK);
    assert_int_equal(r.code, KW_VALID);
    assert_int_equal(r.remaining, 1);
    kw_verify_result_clear(&r);
    assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &stored), KW_OK);
    {
        kw_key_record held;
        assert_int_equal(kw_index_get(idx, rec.id, &held), KW_OK);
        j1 = kw_key_record_json(&stored);
        j2 = kw_key_record_json(&held);
        assert_string_equal(j1, j2);
        kw_key_record_clear(&held);
    }
    free(j1);
    free(j2);
    kw_key_record_clear(&stored);

    /* The sync read from storage only the key that was not added. */
    kw_index_stats_get(idx, &st);
    assert_int_equal(st.reloads, 1);
    assert_int_equal(st.keys, 2);
    assert_int_equal(kw_index_verify(idx, t->ctx, (const char *)kw_secret_cdata(other),
                                     kw_secret_len(other), NULL, &r),
                     KW_OK);
    assert_int_equal(r.code, KW_VALID);
    kw_verify_result_clear(&r);

    /* Changed in storage and synced: a late add of the old record does
     * not undo the change. */
    {
        kw_key_change c = {0};
        kw_key_record held;

        kw_key_params_init(&c.p);
        c.fields = KW_CHANGE_NAME;
        c.p.name = "renamed";
        assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &actor, NULL), KW_OK);
        assert_int_equal(kw_index_sync(idx, t->ctx), KW_OK);
        assert_int_equal(kw_index_add(idx, t->ctx, &rec, key), KW_OK);
        assert_int_equal(kw_index_get(idx, rec.id, &held), KW_OK);
        assert_string_equal(held.name, "renamed");
        kw_key_record_clear(&held);
    }
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_secret_free(other);
    kw_index_free(idx);
}

/* The rate-limit window, decided at given times: a thread that read the
 * clock just before another took the key's lock is late by a little and
 * still counts in the window; a clock set back a whole window starts a
 * new one. */
static void test_rate_window_late_reader(void **state)
{
    kw_key_record r = {.enabled = 1, .rate_limit = 3, .rate_window_ms = 1000};
    const kw_verify_request req = {.cost = 1};
    const int64_t t0 = 1700000000000;
    kw_verify_result out;
    kwi_rl rl = {0};

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kwi_decide(&r, &rl, t0 + i, &req, &out), KW_VALID);
    /* Late by 4 ms, and by 999: the same window, which is full. */
    assert_int_equal(kwi_decide(&r, &rl, t0 - 4, &req, &out), KW_RATE_LIMITED);
    assert_int_equal(kwi_decide(&r, &rl, t0 - 999, &req, &out), KW_RATE_LIMITED);
    assert_true(out.rl_reset_ms > 0 && out.rl_reset_ms <= 1000);
    /* Set back by a whole window: a new one. */
    assert_int_equal(kwi_decide(&r, &rl, t0 - 1000, &req, &out), KW_VALID);
    assert_int_equal(rl.start_ms, t0 - 1000);
}

/* kw_index_sync in halves, as the server runs it: following changes
 * writes nothing; usage is written by whichever connection is given. */
static void test_sync_in_halves(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec = {0}, fresh = {0}, now = {0};
    kw_secret *key = make(t, 5, NULL, &rec), *k2 = NULL;
    kw_ctx *writer = other(t);
    kw_index_stats st0, st1;
    kw_key_params p;
    kw_index *idx;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_VALID);
    assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_VALID);
    kw_key_params_init(&p);
    assert_int_equal(kw_key_create(writer, &p, &actor, &k2, &fresh), KW_OK);
    assert_int_equal(iverify(idx, t, k2, NULL, NULL), KW_NOT_FOUND);

    kw_index_stats_get(idx, &st0);
    assert_int_equal(kw_index_follow(idx, t->ctx), KW_OK);
    kw_index_stats_get(idx, &st1);
    assert_int_equal(st1.syncs, st0.syncs + 1);
    assert_int_equal(iverify(idx, t, k2, NULL, NULL), KW_VALID); /* the change arrived */
    assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 5); /* and nothing was written */
    kw_key_record_clear(&now);

    assert_int_equal(kw_index_write_usage(idx, writer), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 3);
    assert_true(now.last_used_at >= kw_now() - 2);
    kw_key_record_clear(&now);
    /* Written once: a second write adds nothing, and the balance in memory
     * is still the stored one. */
    assert_int_equal(kw_index_write_usage(idx, writer), KW_OK);
    assert_int_equal(kw_index_follow(idx, t->ctx), KW_OK);
    assert_int_equal(kw_key_get(t->ctx, rec.id, &now), KW_OK);
    assert_int_equal(now.credits, 3);
    kw_key_record_clear(&now);
    {
        int64_t left = -1;
        assert_int_equal(iverify(idx, t, key, NULL, &left), KW_VALID);
        assert_int_equal(left, 2);
    }
    kw_index_free(idx);
    kw_close(writer);
    kw_secret_free(key);
    kw_secret_free(k2);
    kw_key_record_clear(&rec);
    kw_key_record_clear(&fresh);
}

/* Only keys used since the last sync are written (the shards keep a list
 * of them), every one of them, exactly once: hundreds of keys, so the
 * lists grow; a second round on half of them; a key dropped meanwhile. */
static void test_usage_of_many_keys_written_once(void **state)
{
    kwt_db *t = *state;
    enum { N = 300 };
    kw_key_params p[N];
    kw_actor actors[N];
    kw_secret *keys[N];
    kw_key_record recs[N];
    kw_index *idx;

    for (int i = 0; i < N; i++) {
        kw_key_params_init(&p[i]);
        p[i].credits = 10;
        actors[i] = actor;
    }
    assert_int_equal(kw_key_create_many(t->ctx, p, actors, N, keys, recs, NULL), KW_OK);
    assert_int_equal(kw_index_open(&idx, t->ctx, N), KW_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(iverify(idx, t, keys[i], NULL, NULL), KW_VALID);
    assert_int_equal(kw_index_write_usage(idx, t->ctx), KW_OK);
    for (int i = 0; i < N; i += 2) {
        assert_int_equal(iverify(idx, t, keys[i], NULL, NULL), KW_VALID);
        assert_int_equal(iverify(idx, t, keys[i], NULL, NULL), KW_VALID);
    }
    /* key 0's row removed by hand and the key dropped from the index: its
     * pending spends have nowhere to go, and the others are still written */
    {
        char sql[128];
        sqlite3 *db;
        snprintf(sql, sizeof(sql), "DELETE FROM keys WHERE id = '%s'", recs[0].id);
        assert_int_equal(sqlite3_open(t->url + strlen("sqlite:"), &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_changes(db), 1);
        sqlite3_close(db);
    }
    assert_int_equal(kw_index_refresh(idx, t->ctx, recs[0].id), KW_OK);
    assert_int_equal(iverify(idx, t, keys[0], NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(kw_index_write_usage(idx, t->ctx), KW_OK);
    assert_int_equal(kw_index_write_usage(idx, t->ctx), KW_OK); /* nothing more */
    for (int i = 1; i < N; i++) {
        kw_key_record now;
        assert_int_equal(kw_key_get(t->ctx, recs[i].id, &now), KW_OK);
        if (now.credits != (i % 2 == 0 ? 7 : 9))
            fail_msg("key %d: %lld credits stored", i, (long long)now.credits);
        kw_key_record_clear(&now);
    }
    for (int i = 0; i < N; i++) {
        kw_secret_free(keys[i]);
        kw_key_record_clear(&recs[i]);
    }
    kw_index_free(idx);
}

/* A key changed elsewhere arrives after more than a page (500) of audit
 * records that change no key (refused admin calls, secret reads): the
 * follower moves past them. It once read that page again and again,
 * forever, holding the sync lock. */
static void test_follow_past_a_page_of_other_records(void **state)
{
    kwt_db *t = *state;
    kw_ctx *cli = other(t);
    kw_key_record rec = {0};
    kw_secret *key = NULL;
    kw_key_params p;
    kw_index *idx;

    assert_int_equal(kw_index_open(&idx, t->ctx, 100), KW_OK);
    for (int i = 0; i < 1200; i++)
        assert_int_equal(kw_audit_append(cli, &actor, "auth.fail", "-", "denied", NULL), KW_OK);
    kw_key_params_init(&p);
    assert_int_equal(kw_key_create(cli, &p, &actor, &key, &rec), KW_OK);
    alarm(30); /* a follower that never returns fails here, not at ctest's timeout */
    assert_int_equal(kw_index_follow(idx, t->ctx), KW_OK);
    alarm(0);
    assert_int_equal(iverify(idx, t, key, NULL, NULL), KW_VALID);
    /* and the next round, with nothing new, returns at once */
    assert_int_equal(kw_index_follow(idx, t->ctx), KW_OK);
    kw_index_free(idx);
    kw_close(cli);
    kw_secret_free(key);
    kw_key_record_clear(&rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verdicts_match_storage, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_credits_in_memory_then_written, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_changes_elsewhere_arrive_with_sync, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotation_shares_credits, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_changes_through_this_process, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_usage_counts, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_size_bound, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_open_more_than_a_page, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_exact_credits_under_threads, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_result_outlives_changes, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_shared_scopes, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_parallel_load, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_add_new_key, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_midway, kwt_setup, kwt_teardown),
        cmocka_unit_test(test_rate_window_late_reader),
        cmocka_unit_test_setup_teardown(test_sync_in_halves, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_usage_of_many_keys_written_once, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_follow_past_a_page_of_other_records, kwt_setup,
                                        kwt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
