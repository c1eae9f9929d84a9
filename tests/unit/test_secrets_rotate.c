/* Unit tests of master key rotation (kw_secrets_rotate_master, docs/secrets.md):
 * every version stays readable under the new key and none under the old;
 * a rotation that meets a data key that does not open changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

static kw_secret *key_of(unsigned char fill)
{
    kw_secret *k;

    assert_int_equal(kw_secret_new(&k, KW_MASTER_KEY_LEN), KW_OK);
    memset(kw_secret_data(k), fill, KW_MASTER_KEY_LEN);
    return k;
}

static void put(kwt_db *t, const char *path, const char *value)
{
    kw_secret *v;

    assert_int_equal(kw_secret_from(&v, value, strlen(value)), KW_OK);
    if (kw_secrets_put(t->ctx, path, v, -1, &kwt_actor, NULL) != KW_OK)
        fail_msg("kw_secrets_put: %s", kw_errmsg(t->ctx));
    kw_secret_free(v);
}

/* The value of path's version on ctx, or NULL with *rc set. */
static char *get(kw_ctx *ctx, const char *path, int64_t version, kw_rc *rc)
{
    kw_secret *v = NULL;
    char *s = NULL;

    *rc = kw_secrets_get(ctx, path, version, &kwt_actor, &v, NULL);
    if (*rc == KW_OK) {
        s = strndup((const char *)kw_secret_cdata(v), kw_secret_len(v));
        kw_secret_free(v);
    }
    return s;
}

static void expect(kw_ctx *ctx, const char *path, int64_t version, const char *want)
{
    kw_rc rc;
    char *got = get(ctx, path, version, &rc);

    if (rc != KW_OK)
        fail_msg("%s#%lld: %s", path, (long long)version, kw_errmsg(ctx));
    assert_string_equal(got, want);
    free(got);
}

/* A context on t's database with master key `key`. */
static kw_ctx *reopen(kwt_db *t, const kw_secret *key, kw_rc *rc)
{
    kw_ctx *ctx;

    assert_int_equal(kw_open(&ctx, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
    *rc = kw_secrets_master(ctx, key);
    return ctx;
}

static void test_rotate_keeps_every_version(void **state)
{
    kwt_db *t = *state;
    kw_secret *old = key_of(1), *fresh = key_of(2);
    size_t count = 0;
    kw_ctx *other;
    kw_rc rc;
    char *none;

    assert_int_equal(kw_secrets_master(t->ctx, old), KW_OK);
    put(t, "app/a", "a1");
    put(t, "app/a", "a2");
    put(t, "app/b", "b1");
    put(t, "gone/c", "c1");
    assert_int_equal(kw_secrets_destroy(t->ctx, "gone/c", 1, &kwt_actor), KW_OK);
    assert_int_equal(kw_secrets_rotate_master(t->ctx, old, &kwt_actor, NULL), KW_ERR_INVALID);
    assert_int_equal(kw_secrets_rotate_master(t->ctx, fresh, &kwt_actor, &count), KW_OK);
    assert_int_equal(count, 3); /* the destroyed version has no data key */
    /* this context goes on with the new key */
    expect(t->ctx, "app/a", 1, "a1");
    expect(t->ctx, "app/a", 2, "a2");
    expect(t->ctx, "app/b", 0, "b1");
    /* another, with the new key: all readable; with the old: refused */
    other = reopen(t, fresh, &rc);
    assert_int_equal(rc, KW_OK);
    expect(other, "app/a", 1, "a1");
    expect(other, "app/b", 0, "b1");
    kw_close(other);
    other = reopen(t, old, &rc);
    assert_int_equal(rc, KW_ERR_MASTER_KEY);
    none = get(other, "app/a", 0, &rc);
    assert_null(none);
    assert_int_equal(rc, KW_ERR_MASTER_KEY);
    kw_close(other);
    kw_secret_free(old);
    kw_secret_free(fresh);
}

/* One data key that does not open (altered in the database): the rotation
 * stops, and everything is as it was: the old key still reads all. */
static void test_rotate_all_or_nothing(void **state)
{
    kwt_db *t = *state;
    kw_secret *old = key_of(3), *fresh = key_of(4);
    char path[400];
    sqlite3 *db;
    kw_ctx *other;
    kw_rc rc;

    assert_int_equal(kw_secrets_master(t->ctx, old), KW_OK);
    put(t, "a", "first");
    put(t, "b", "second");
    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "UPDATE secret_versions SET wrapped = "
                     "substr(wrapped, 1, 40) || CASE WHEN substr(wrapped, 41, 1) = x'00' "
                     "THEN x'01' ELSE x'00' END || substr(wrapped, 42) " /* always another byte */
                     "WHERE path = 'b'",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(kw_secrets_rotate_master(t->ctx, fresh, &kwt_actor, NULL), KW_ERR_MASTER_KEY);
    assert_non_null(strstr(kw_errmsg(t->ctx), "b"));
    expect(t->ctx, "a", 0, "first"); /* still the old key, here and anywhere */
    other = reopen(t, old, &rc);
    assert_int_equal(rc, KW_OK);
    expect(other, "a", 0, "first");
    kw_close(other);
    other = reopen(t, fresh, &rc);
    assert_int_equal(rc, KW_ERR_MASTER_KEY);
    kw_close(other);
    kw_secret_free(old);
    kw_secret_free(fresh);
}

/* The rotation is audited, with how many data keys, and the chain holds. */
static void test_rotate_audited(void **state)
{
    kwt_db *t = *state;
    kw_secret *old = key_of(5), *fresh = key_of(6);
    kw_audit_filter f = {.limit = 100};
    kw_audit_record *recs;
    kw_audit_report rep;
    size_t n;
    int64_t next;

    assert_int_equal(kw_secrets_master(t->ctx, old), KW_OK);
    put(t, "x", "value-x");
    assert_int_equal(kw_secrets_rotate_master(t->ctx, fresh, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kw_audit_list(t->ctx, &f, &recs, &n, &next), KW_OK);
    assert_string_equal(recs[n - 1].action, "master-key.rotate");
    assert_string_equal(recs[n - 1].detail, "{\"versions\":1}");
    for (size_t i = 0; i < n; i++)
        assert_null(strstr(recs[i].detail, "value-x"));
    kw_audit_records_free(recs, n);
    assert_int_equal(kw_audit_verify(t->ctx, &rep), KW_OK);
    kw_secret_free(old);
    kw_secret_free(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotate_keeps_every_version, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_all_or_nothing, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_audited, kwt_setup, kwt_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
