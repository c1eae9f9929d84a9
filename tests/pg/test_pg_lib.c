/*
 * The library on PostgreSQL (issue P6), end to end through the public API:
 * a database made and reopened, a key's life, the audit chain, two
 * contexts standing for two nodes (a change made on one reaches the
 * other's index through the audit trail), and spends from two threads on
 * two connections. Needs KW_TEST_PG_URL (tests/pg/with-pg.sh); each case
 * starts from an emptied database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keyward/keyward.h>

static const kw_actor actor = {"test", "local"};

static const char *url(void)
{
    const char *u = getenv("KW_TEST_PG_URL");

    if (u == NULL)
        fail_msg("KW_TEST_PG_URL is not set (run through tests/pg/with-pg.sh)");
    return u;
}

/* Every table dropped. */
static void empty_database(void)
{
    PGconn *c = PQconnectdb(url());
    PGresult *r;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, "SET client_min_messages = warning;"
                  "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static kw_secret *pepper_new(void)
{
    kw_secret *p = NULL;

    assert_int_equal(kw_secret_new(&p, KW_PEPPER_LEN), KW_OK);
    randombytes_buf(kw_secret_data(p), KW_PEPPER_LEN);
    return p;
}

static kw_ctx *open_db(const kw_secret *pepper, int create)
{
    char err[256] = "";
    kw_open_opts oo = {.create = create, .err = err, .err_len = sizeof(err)};
    kw_ctx *ctx = NULL;

    if (kw_open(&ctx, url(), pepper, &oo) != KW_OK)
        fail_msg("kw_open: %s", err);
    return ctx;
}

static kw_secret *make_key(kw_ctx *ctx, int64_t credits, kw_key_record *rec)
{
    static const char *const scopes[] = {"orders:read"};
    kw_key_params p;
    kw_secret *key = NULL;

    kw_key_params_init(&p);
    p.owner = "acme";
    p.name = "pg";
    p.scopes = scopes;
    p.nscopes = 1;
    p.credits = credits;
    if (kw_key_create(ctx, &p, &actor, &key, rec) != KW_OK)
        fail_msg("kw_key_create: %s", kw_errmsg(ctx));
    return key;
}

static kw_verdict verify_db(kw_ctx *ctx, const kw_secret *key)
{
    kw_verify_result r;
    kw_verdict v;

    assert_int_equal(
        kw_verify(ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), NULL, &r), KW_OK);
    v = r.code;
    kw_verify_result_clear(&r);
    return v;
}

static kw_verdict verify_index(kw_index *idx, kw_ctx *ctx, const kw_secret *key)
{
    kw_verify_result r;
    kw_verdict v;

    assert_int_equal(
        kw_index_verify(idx, ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), NULL, &r),
        KW_OK);
    v = r.code;
    kw_verify_result_clear(&r);
    return v;
}

static int setup(void **state)
{
    (void)state;
    empty_database();
    return 0;
}

static void test_open_create_reopen(void **state)
{
    kw_secret *pepper = pepper_new(), *other = pepper_new();
    char err[256] = "";
    kw_open_opts no_create = {.create = 0, .err = err, .err_len = sizeof(err)};
    kw_ctx *ctx = NULL;

    (void)state;
    /* No schema yet: refused without create, and nothing made. */
    assert_int_equal(kw_open(&ctx, url(), pepper, &no_create), KW_ERR_NO_DATABASE);
    kw_close(open_db(pepper, 1));
    kw_close(open_db(pepper, 0));
    /* Another pepper is refused, not taken for an empty key set. */
    assert_int_equal(kw_open(&ctx, url(), other, &no_create), KW_ERR_PEPPER_MISMATCH);
    kw_secret_free(pepper);
    kw_secret_free(other);
}

static void test_key_life_and_audit(void **state)
{
    kw_secret *pepper = pepper_new();
    kw_ctx *ctx = open_db(pepper, 1);
    kw_key_record rec;
    kw_audit_report report;
    kw_secret *key = make_key(ctx, KW_CREDITS_UNLIMITED, &rec);

    (void)state;
    assert_int_equal(verify_db(ctx, key), KW_VALID);
    assert_int_equal(kw_key_revoke(ctx, rec.id, &actor, NULL), KW_OK);
    assert_int_equal(verify_db(ctx, key), KW_REVOKED);
    assert_int_equal(kw_key_revoke(ctx, rec.id, &actor, NULL), KW_ERR_CONFLICT);
    assert_int_equal(kw_audit_verify(ctx, &report), KW_OK);
    assert_true(report.checked >= 2); /* the creation and the revocation at least */
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(ctx);
    kw_secret_free(pepper);
}

/* Two contexts for two nodes: B's index learns of A's changes at its sync. */
static void test_change_reaches_other_node(void **state)
{
    kw_secret *pepper = pepper_new();
    kw_ctx *a = open_db(pepper, 1), *b = open_db(pepper, 0);
    kw_index *idx = NULL;
    kw_key_record rec;
    kw_secret *key;

    (void)state;
    assert_int_equal(kw_index_open(&idx, b, 1000), KW_OK);
    key = make_key(a, KW_CREDITS_UNLIMITED, &rec);
    assert_int_equal(verify_index(idx, b, key), KW_NOT_FOUND);
    assert_int_equal(kw_index_sync(idx, b), KW_OK);
    assert_int_equal(verify_index(idx, b, key), KW_VALID);
    assert_int_equal(kw_key_revoke(a, rec.id, &actor, NULL), KW_OK);
    assert_int_equal(kw_index_sync(idx, b), KW_OK);
    assert_int_equal(verify_index(idx, b, key), KW_REVOKED);
    kw_index_free(idx);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(a);
    kw_close(b);
    kw_secret_free(pepper);
}

/* A thread spending a key: through storage (idx NULL) or an index. */
typedef struct spender {
    kw_index *idx;
    kw_ctx *ctx;
    const kw_secret *key;
    int tries, valid, other;
} spender;

static void *spend_main(void *arg)
{
    spender *s = arg;

    for (int i = 0; i < s->tries; i++) {
        const char *k = (const char *)kw_secret_cdata(s->key);
        size_t n = kw_secret_len(s->key);
        kw_verify_result r;
        kw_rc rc = s->idx != NULL ? kw_index_verify(s->idx, s->ctx, k, n, NULL, &r)
                                  : kw_verify(s->ctx, k, n, NULL, &r);
        if (rc != KW_OK) {
            s->other++;
            continue;
        }
        if (r.code == KW_VALID)
            s->valid++;
        else if (r.code != KW_USAGE_EXCEEDED)
            s->other++;
        kw_verify_result_clear(&r);
    }
    return NULL;
}

/* Both spenders at once: between them exactly `credits` successes, some
 * each, and no answer but VALID or USAGE_EXCEEDED. */
static void spend_both(spender *sa, spender *sb, int credits)
{
    pthread_t ta, tb;

    assert_int_equal(pthread_create(&ta, NULL, spend_main, sa), 0);
    assert_int_equal(pthread_create(&tb, NULL, spend_main, sb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(sa->other + sb->other, 0);
    assert_int_equal(sa->valid + sb->valid, credits);
    assert_true(sa->valid > 0 && sb->valid > 0);
}

/* A key with N credits, spent from two connections at once: exactly N. */
static void test_spends_exact_across_connections(void **state)
{
    enum { CREDITS = 60, TRIES = 50 };
    kw_secret *pepper = pepper_new();
    kw_ctx *a = open_db(pepper, 1), *b = open_db(pepper, 0);
    kw_key_record rec;
    kw_secret *key = make_key(a, CREDITS, &rec);
    spender sa = {NULL, a, key, TRIES, 0, 0}, sb = {NULL, b, key, TRIES, 0, 0};

    (void)state;
    spend_both(&sa, &sb, CREDITS);
    assert_int_equal(verify_db(a, key), KW_USAGE_EXCEEDED);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(a);
    kw_close(b);
    kw_secret_free(pepper);
}

/* Two nodes, each verifying from its own index: a key's N credits give
 * exactly N successes between them (spent in storage, not in memory). */
static void test_index_spends_exact_across_nodes(void **state)
{
    enum { CREDITS = 60, TRIES = 50 };
    kw_secret *pepper = pepper_new();
    kw_ctx *a = open_db(pepper, 1), *b = open_db(pepper, 0);
    kw_index *ia = NULL, *ib = NULL;
    kw_key_record rec, got;
    kw_secret *key = make_key(a, CREDITS, &rec);
    spender sa = {NULL, a, key, TRIES, 0, 0}, sb = {NULL, b, key, TRIES, 0, 0};

    (void)state;
    assert_int_equal(kw_index_open(&ia, a, 1000), KW_OK);
    assert_int_equal(kw_index_open(&ib, b, 1000), KW_OK);
    sa.idx = ia;
    sb.idx = ib;
    spend_both(&sa, &sb, CREDITS);
    /* The syncs write nothing more off: storage holds the truth, 0. */
    assert_int_equal(kw_index_sync(ia, a), KW_OK);
    assert_int_equal(kw_index_sync(ib, b), KW_OK);
    assert_int_equal(kw_key_get(a, rec.id, &got), KW_OK);
    assert_int_equal(got.credits, 0);
    kw_key_record_clear(&got);
    kw_index_free(ia);
    kw_index_free(ib);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(a);
    kw_close(b);
    kw_secret_free(pepper);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *create_later(void *arg)
{
    kw_ctx *ctx = arg;
    kw_key_record rec;
    struct timespec d = {0, 200 * 1000000L};

    nanosleep(&d, NULL);
    kw_secret_free(make_key(ctx, KW_CREDITS_UNLIMITED, &rec));
    kw_key_record_clear(&rec);
    return NULL;
}

/* A commit through one connection wakes a wait on another (NOTIFY): the
 * wait ends long before its timeout. */
static void test_wait_change_wakes(void **state)
{
    kw_secret *pepper = pepper_new();
    kw_ctx *a = open_db(pepper, 1), *b = open_db(pepper, 0);
    pthread_t t;
    int64_t t0, took;

    (void)state;
    assert_int_equal(kw_wait_change(b, 1), KW_OK); /* listening from here */
    assert_int_equal(pthread_create(&t, NULL, create_later, a), 0);
    t0 = mono_ms();
    assert_int_equal(kw_wait_change(b, 5000), KW_OK);
    took = mono_ms() - t0;
    pthread_join(t, NULL);
    assert_true(took >= 100); /* woken by the commit, not at once */
    assert_true(took < 2000); /* and not by the timeout */
    kw_close(a);
    kw_close(b);
    kw_secret_free(pepper);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_open_create_reopen, setup),
        cmocka_unit_test_setup(test_key_life_and_audit, setup),
        cmocka_unit_test_setup(test_change_reaches_other_node, setup),
        cmocka_unit_test_setup(test_spends_exact_across_connections, setup),
        cmocka_unit_test_setup(test_index_spends_exact_across_nodes, setup),
        cmocka_unit_test_setup(test_wait_change_wakes, setup),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests_name("postgres_library", tests, NULL, NULL);
}
