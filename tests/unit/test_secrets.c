/* Unit tests of the secrets store (lib/secrets.c, include/keyward/secrets.h):
 * values read back exactly, the master key (required, fixed by the first
 * secret, loaded from the environment, a command or a file), ciphertext
 * bound to its path and version, check-and-set, the versions kept, soft
 * deletion and destruction, paths, listing, the audit, and that neither a
 * value nor the master key ever reaches the database's files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

/* ---- helpers ------------------------------------------------------------------ */

/* A master key of 32 random bytes. */
static kw_secret *new_master(void)
{
    kw_secret *k;

    assert_int_equal(kw_secret_new(&k, KW_MASTER_KEY_LEN), KW_OK);
    randombytes_buf(kw_secret_data(k), KW_MASTER_KEY_LEN);
    return k;
}

/* Give t's context a fresh master key; the key (caller frees). */
static kw_secret *with_master(kwt_db *t)
{
    kw_secret *k = new_master();

    assert_int_equal(kw_secrets_master(t->ctx, k), KW_OK);
    return k;
}

/* Write bytes at path with check-and-set cas; the version written. */
static int64_t put_bytes(kw_ctx *ctx, const char *path, const void *bytes, size_t len, int64_t cas)
{
    kw_secret *v;
    int64_t version = -1;
    kw_rc rc;

    assert_int_equal(kw_secret_from(&v, bytes, len), KW_OK);
    rc = kw_secrets_put(ctx, path, v, cas, &kwt_actor, &version);
    kw_secret_free(v);
    if (rc != KW_OK)
        fail_msg("kw_secrets_put %s: %s: %s", path, kw_strerror(rc), kw_errmsg(ctx));
    return version;
}

static int64_t put(kw_ctx *ctx, const char *path, const char *value)
{
    return put_bytes(ctx, path, value, strlen(value), -1);
}

/* kw_secrets_put's result, the value written being text. */
static kw_rc put_rc(kw_ctx *ctx, const char *path, const char *value, int64_t cas)
{
    kw_secret *v;
    kw_rc rc;

    assert_int_equal(kw_secret_from(&v, value, strlen(value)), KW_OK);
    rc = kw_secrets_put(ctx, path, v, cas, &kwt_actor, NULL);
    kw_secret_free(v);
    return rc;
}

/* kw_secrets_get's result; on failure, that no value was handed out. */
static kw_rc get_rc(kw_ctx *ctx, const char *path, int64_t version)
{
    kw_secret *v = NULL;
    kw_rc rc = kw_secrets_get(ctx, path, version, &kwt_actor, &v, NULL);

    if (rc != KW_OK)
        assert_null(v);
    kw_secret_free(v);
    return rc;
}

/* Read path at version: exactly these bytes, as version `want_version`. */
static void expect_bytes(kw_ctx *ctx, const char *path, int64_t version, const void *bytes,
                         size_t len, int64_t want_version)
{
    kw_secret *v = NULL;
    int64_t got = -1;
    kw_rc rc = kw_secrets_get(ctx, path, version, &kwt_actor, &v, &got);

    if (rc != KW_OK)
        fail_msg("kw_secrets_get %s@%lld: %s: %s", path, (long long)version, kw_strerror(rc),
                 kw_errmsg(ctx));
    assert_int_equal(kw_secret_len(v), len);
    assert_memory_equal(kw_secret_cdata(v), bytes, len);
    assert_int_equal(got, want_version);
    kw_secret_free(v);
}

static void expect(kw_ctx *ctx, const char *path, int64_t version, const char *value,
                   int64_t want_version)
{
    expect_bytes(ctx, path, version, value, strlen(value), want_version);
}

static void db_path(const kwt_db *t, char *out, size_t n)
{
    snprintf(out, n, "%s/k.db", t->dir);
}

static int64_t sql_int(const kwt_db *t, const char *sql)
{
    char path[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v;

    db_path(t, path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("sql: %s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const kwt_db *t, const char *sql)
{
    char path[400], *err = NULL;
    sqlite3 *db;

    db_path(t, path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

/* A blob column ("sealed" or "wrapped") of a version's row, read into buf
 * (cap bytes); its length. */
static size_t blob_get(const kwt_db *t, const char *col, const char *path, int64_t version,
                       unsigned char *buf, size_t cap)
{
    char file[400], sql[200];
    sqlite3 *db;
    sqlite3_stmt *st;
    size_t n;

    db_path(t, file, sizeof(file));
    snprintf(sql, sizeof(sql), "SELECT %s FROM secret_versions WHERE path = ?1 AND version = ?2",
             col);
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = (size_t)sqlite3_column_bytes(st, 0);
    assert_true(n > 0 && n <= cap);
    memcpy(buf, sqlite3_column_blob(st, 0), n);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void blob_set(const kwt_db *t, const char *col, const char *path, int64_t version,
                     const unsigned char *buf, size_t len)
{
    char file[400], sql[200];
    sqlite3 *db;
    sqlite3_stmt *st;

    db_path(t, file, sizeof(file));
    snprintf(sql, sizeof(sql),
             "UPDATE secret_versions SET %s = ?3 WHERE path = ?1 AND version = ?2", col);
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_blob(st, 3, buf, (int)len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Copy a blob column from one version's row to another's. */
static void blob_copy(const kwt_db *t, const char *col, const char *from, int64_t from_v,
                      const char *to, int64_t to_v)
{
    unsigned char buf[512];
    size_t n = blob_get(t, col, from, from_v, buf, sizeof(buf));

    blob_set(t, col, to, to_v, buf, n);
}

static int contains(const unsigned char *hay, size_t n, const void *needle, size_t len)
{
    for (size_t i = 0; len <= n && i <= n - len; i++)
        if (memcmp(hay + i, needle, len) == 0)
            return 1;
    return 0;
}

/* ---- 1. values read back exactly ----------------------------------------------------- */

/* What is written reads back byte for byte (a NUL inside, the largest
 * value allowed), versions count up from 1, version 0 reads the latest and
 * an older version still reads; an empty or too large value is refused
 * and writes nothing. */
static void test_round_trip(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t), *big, *empty;
    static const unsigned char nul[] = {'a', 0x00, 'b', 0x00};
    unsigned char *max = malloc(KW_SECRET_VALUE_MAX);
    kw_secret_version_info *h;
    size_t n;

    assert_non_null(max);
    randombytes_buf(max, KW_SECRET_VALUE_MAX);
    assert_int_equal(put(t->ctx, "app/db_password", "hunter2"), 1);
    expect(t->ctx, "app/db_password", 0, "hunter2", 1);
    assert_int_equal(put_bytes(t->ctx, "app/db_password", nul, sizeof(nul), -1), 2);
    expect_bytes(t->ctx, "app/db_password", 0, nul, sizeof(nul), 2);
    assert_int_equal(put_bytes(t->ctx, "app/db_password", max, KW_SECRET_VALUE_MAX, -1), 3);
    expect_bytes(t->ctx, "app/db_password", 0, max, KW_SECRET_VALUE_MAX, 3);
    expect(t->ctx, "app/db_password", 1, "hunter2", 1);
    expect_bytes(t->ctx, "app/db_password", 2, nul, sizeof(nul), 2);
    expect_bytes(t->ctx, "app/db_password", 3, max, KW_SECRET_VALUE_MAX, 3);
    assert_int_equal(get_rc(t->ctx, "app/db_password", 4), KW_ERR_NOT_FOUND);
    assert_int_equal(get_rc(t->ctx, "app/db_password", -1), KW_ERR_INVALID);
    assert_int_equal(get_rc(t->ctx, "app/other", 0), KW_ERR_NOT_FOUND);

    /* one byte too many; no bytes; no value; a bad check-and-set */
    assert_int_equal(kw_secret_new(&big, KW_SECRET_VALUE_MAX + 1), KW_OK);
    assert_int_equal(kw_secrets_put(t->ctx, "app/db_password", big, -1, &kwt_actor, NULL),
                     KW_ERR_INVALID);
    assert_int_equal(kw_secret_new(&empty, 1), KW_OK);
    kw_secret_truncate(empty, 0);
    assert_int_equal(kw_secret_len(empty), 0);
    assert_int_equal(kw_secrets_put(t->ctx, "app/db_password", empty, -1, &kwt_actor, NULL),
                     KW_ERR_INVALID);
    assert_int_equal(kw_secrets_put(t->ctx, "app/db_password", NULL, -1, &kwt_actor, NULL),
                     KW_ERR_INVALID);
    assert_int_equal(put_rc(t->ctx, "app/db_password", "x", -2), KW_ERR_INVALID);
    assert_int_equal(kw_secrets_put(t->ctx, "app/new", empty, -1, &kwt_actor, NULL),
                     KW_ERR_INVALID);
    assert_int_equal(get_rc(t->ctx, "app/new", 0), KW_ERR_NOT_FOUND);

    assert_int_equal(kw_secrets_history(t->ctx, "app/db_password", &h, &n), KW_OK);
    assert_int_equal(n, 3);
    assert_int_equal(h[0].version, 3);
    assert_int_equal(h[2].version, 1);
    free(h);
    expect_bytes(t->ctx, "app/db_password", 0, max, KW_SECRET_VALUE_MAX, 3);
    kw_secret_free(big);
    kw_secret_free(empty);
    kw_secret_free(mk);
    free(max);
}

/* ---- 2. the master key ------------------------------------------------------------- */

/* Without a master key nothing is written or read. The first secret fixes
 * the database's master key: another key is refused afterwards (and the
 * refused key does not replace the one held); a context that took another
 * key before the first secret was written cannot read it or write. */
static void test_master_key(void **state)
{
    kwt_db *t = *state;
    kw_secret *k1 = new_master(), *k2 = new_master(), *short_key, *v;
    kw_ctx *other, *third;
    kw_secret_version_info *h;
    size_t n;

    assert_int_equal(put_rc(t->ctx, "a", "value", -1), KW_ERR_MASTER_KEY);
    assert_int_equal(get_rc(t->ctx, "a", 0), KW_ERR_MASTER_KEY);
    assert_int_equal(kw_secret_new(&short_key, KW_MASTER_KEY_LEN - 1), KW_OK);
    assert_int_equal(kw_secrets_master(t->ctx, short_key), KW_ERR_MASTER_KEY);
    assert_int_equal(kw_secrets_master(t->ctx, NULL), KW_ERR_MASTER_KEY);
    assert_int_equal(put_rc(t->ctx, "a", "value", -1), KW_ERR_MASTER_KEY);

    /* a refused first write does not fix the master key: k1 still taken */
    assert_int_equal(kw_secrets_master(t->ctx, k2), KW_OK);
    assert_int_equal(put_rc(t->ctx, "a", "value", 3), KW_ERR_CONFLICT);
    assert_int_equal(kw_secrets_master(t->ctx, k1), KW_OK);

    /* before any secret, any key is taken: here two different ones */
    assert_int_equal(kw_open(&other, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
    assert_int_equal(kw_secrets_master(other, k2), KW_OK);
    assert_int_equal(put(t->ctx, "a", "value"), 1); /* k1 is the master key now */

    assert_int_equal(kw_secrets_master(t->ctx, k2), KW_ERR_MASTER_KEY);
    expect(t->ctx, "a", 0, "value", 1); /* still holds k1 */
    assert_int_equal(get_rc(other, "a", 0), KW_ERR_MASTER_KEY);
    assert_int_equal(put_rc(other, "a", "forged", -1), KW_ERR_MASTER_KEY);
    assert_int_equal(put_rc(other, "b", "forged", -1), KW_ERR_MASTER_KEY);
    assert_int_equal(get_rc(t->ctx, "b", 0), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_history(t->ctx, "a", &h, &n), KW_OK);
    assert_int_equal(n, 1);
    free(h);

    /* a context opened afterwards: the other key refused, the right one read */
    assert_int_equal(kw_open(&third, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
    assert_int_equal(kw_secrets_master(third, k2), KW_ERR_MASTER_KEY);
    assert_int_equal(get_rc(third, "a", 0), KW_ERR_MASTER_KEY);
    assert_int_equal(kw_secrets_master(third, k1), KW_OK);
    assert_int_equal(kw_secrets_get(third, "a", 0, &kwt_actor, &v, NULL), KW_OK);
    assert_int_equal(kw_secret_len(v), 5);
    assert_memory_equal(kw_secret_cdata(v), "value", 5);
    kw_secret_free(v);

    kw_close(third);
    kw_close(other);
    kw_secret_free(short_key);
    kw_secret_free(k1);
    kw_secret_free(k2);
}

/* ---- 3. ciphertext bound to its path and version ---------------------------------- */

/* A sealed value (or it and its wrapped data key) copied to another
 * secret, or to another version of the same secret, does not open: the
 * read fails with KW_ERR_MASTER_KEY and hands out no value, never the
 * other secret's. One byte changed in either blob: the same. Put back,
 * the originals read again. */
static void test_moved_or_altered(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    unsigned char sealed[512], wrapped[512], tmp[512];
    size_t sn, wn;

    assert_int_equal(put(t->ctx, "a/one", "value of one, version 1"), 1);
    assert_int_equal(put(t->ctx, "a/one", "value of one, version 2"), 2);
    assert_int_equal(put(t->ctx, "a/two", "value of two"), 1);
    sn = blob_get(t, "sealed", "a/two", 1, sealed, sizeof(sealed));
    wn = blob_get(t, "wrapped", "a/two", 1, wrapped, sizeof(wrapped));

    /* another secret's sealed value; then its data key as well */
    blob_copy(t, "sealed", "a/one", 1, "a/two", 1);
    assert_int_equal(get_rc(t->ctx, "a/two", 0), KW_ERR_MASTER_KEY);
    assert_int_equal(get_rc(t->ctx, "a/two", 1), KW_ERR_MASTER_KEY);
    blob_copy(t, "wrapped", "a/one", 1, "a/two", 1);
    assert_int_equal(get_rc(t->ctx, "a/two", 0), KW_ERR_MASTER_KEY);
    /* the data key only */
    blob_set(t, "sealed", "a/two", 1, sealed, sn);
    assert_int_equal(get_rc(t->ctx, "a/two", 0), KW_ERR_MASTER_KEY);
    blob_set(t, "wrapped", "a/two", 1, wrapped, wn);
    expect(t->ctx, "a/two", 0, "value of two", 1);

    /* another version of the same secret: value and data key of version 1
     * in version 2's row */
    sn = blob_get(t, "sealed", "a/one", 2, sealed, sizeof(sealed));
    wn = blob_get(t, "wrapped", "a/one", 2, wrapped, sizeof(wrapped));
    blob_copy(t, "sealed", "a/one", 1, "a/one", 2);
    blob_copy(t, "wrapped", "a/one", 1, "a/one", 2);
    assert_int_equal(get_rc(t->ctx, "a/one", 0), KW_ERR_MASTER_KEY);
    assert_int_equal(get_rc(t->ctx, "a/one", 2), KW_ERR_MASTER_KEY);
    expect(t->ctx, "a/one", 1, "value of one, version 1", 1);
    blob_set(t, "sealed", "a/one", 2, sealed, sn);
    blob_set(t, "wrapped", "a/one", 2, wrapped, wn);
    expect(t->ctx, "a/one", 0, "value of one, version 2", 2);

    /* a whole row moved to another path */
    sql_exec(t, "DELETE FROM secret_versions WHERE path = 'a/two';"
                "INSERT INTO secret_versions SELECT 'a/two', version, created_at, destroyed_at,"
                " master_id, wrapped, sealed FROM secret_versions"
                " WHERE path = 'a/one' AND version = 1");
    assert_int_equal(get_rc(t->ctx, "a/two", 1), KW_ERR_MASTER_KEY);

    /* one byte changed: in the ciphertext, in its tag, in the data key */
    sn = blob_get(t, "sealed", "a/one", 2, sealed, sizeof(sealed));
    memcpy(tmp, sealed, sn);
    tmp[30] ^= 0x01;
    blob_set(t, "sealed", "a/one", 2, tmp, sn);
    assert_int_equal(get_rc(t->ctx, "a/one", 0), KW_ERR_MASTER_KEY);
    memcpy(tmp, sealed, sn);
    tmp[sn - 1] ^= 0x80;
    blob_set(t, "sealed", "a/one", 2, tmp, sn);
    assert_int_equal(get_rc(t->ctx, "a/one", 0), KW_ERR_MASTER_KEY);
    blob_set(t, "sealed", "a/one", 2, sealed, sn);
    wn = blob_get(t, "wrapped", "a/one", 2, wrapped, sizeof(wrapped));
    memcpy(tmp, wrapped, wn);
    tmp[wn / 2] ^= 0x04;
    blob_set(t, "wrapped", "a/one", 2, tmp, wn);
    assert_int_equal(get_rc(t->ctx, "a/one", 0), KW_ERR_MASTER_KEY);
    blob_set(t, "wrapped", "a/one", 2, wrapped, wn);
    expect(t->ctx, "a/one", 0, "value of one, version 2", 2);
    kw_secret_free(mk);
}

/* ---- 4. check-and-set ---------------------------------------------------------------- */

/* cas 0 writes only a new secret; cas n only over version n; a refused
 * write writes nothing (history and value unchanged); -1 writes anyway. */
static void test_check_and_set(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    kw_secret_version_info *h;
    int64_t v = 0;
    size_t n;

    assert_int_equal(put_bytes(t->ctx, "cas/x", "first", 5, 0), 1);
    assert_int_equal(put_rc(t->ctx, "cas/x", "again", 0), KW_ERR_CONFLICT);
    assert_int_equal(put_bytes(t->ctx, "cas/x", "second", 6, 1), 2);
    assert_int_equal(put_rc(t->ctx, "cas/x", "stale", 1), KW_ERR_CONFLICT);
    assert_int_equal(put_rc(t->ctx, "cas/x", "ahead", 3), KW_ERR_CONFLICT);
    assert_int_equal(put_rc(t->ctx, "cas/x", "zero", 0), KW_ERR_CONFLICT);
    assert_int_equal(put_rc(t->ctx, "cas/new", "later", 1), KW_ERR_CONFLICT);
    assert_int_equal(get_rc(t->ctx, "cas/new", 0), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_history(t->ctx, "cas/x", &h, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].version, 2);
    assert_int_equal(h[1].version, 1);
    free(h);
    expect(t->ctx, "cas/x", 0, "second", 2);
    {
        kw_secret *val;
        assert_int_equal(kw_secret_from(&val, "third", 5), KW_OK);
        assert_int_equal(kw_secrets_put(t->ctx, "cas/x", val, 2, &kwt_actor, &v), KW_OK);
        assert_int_equal(v, 3);
        assert_int_equal(kw_secrets_put(t->ctx, "cas/x", val, -1, &kwt_actor, &v), KW_OK);
        assert_int_equal(v, 4);
        kw_secret_free(val);
    }
    expect(t->ctx, "cas/x", 0, "third", 4);
    expect(t->ctx, "cas/x", 2, "second", 2);
    kw_secret_free(mk);
}

/* ---- 5. the versions kept ---------------------------------------------------------- */

/* After 12 writes the last KW_SECRET_KEEP versions are kept, newest first;
 * the older ones are gone from the database and read as not found. Another
 * secret's versions are not touched. */
/* kw_secrets_keep: a secret keeps its own number of versions, pruned at
 * once and with every write after; refused out of range or unknown. */
static void test_keep_per_secret(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    kw_secret_info *info;
    size_t n;

    for (int i = 1; i <= 5; i++)
        assert_int_equal(put(t->ctx, "kp/x", "some value"), i);
    assert_int_equal(kw_secrets_keep(t->ctx, "kp/x", 2, &kwt_actor), KW_OK);
    assert_int_equal(sql_int(t, "SELECT count(*) FROM secret_versions WHERE path = 'kp/x'"), 2);
    assert_int_equal(get_rc(t->ctx, "kp/x", 3), KW_ERR_NOT_FOUND);
    assert_int_equal(put(t->ctx, "kp/x", "newer"), 6);
    assert_int_equal(sql_int(t, "SELECT min(version) FROM secret_versions WHERE path = 'kp/x'"), 5);
    assert_int_equal(kw_secrets_list(t->ctx, "kp/", 0, &info, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(info[0].keep, 2);
    free(info);
    assert_int_equal(kw_secrets_keep(t->ctx, "kp/x", 0, &kwt_actor), KW_ERR_INVALID);
    assert_int_equal(kw_secrets_keep(t->ctx, "kp/x", KW_SECRET_KEEP_MAX + 1, &kwt_actor),
                     KW_ERR_INVALID);
    assert_int_equal(kw_secrets_keep(t->ctx, "kp/none", 3, &kwt_actor), KW_ERR_NOT_FOUND);
    kw_secret_free(mk);
}

static void test_versions_kept(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    kw_secret_version_info *h;
    char value[16];
    size_t n;

    assert_int_equal(KW_SECRET_KEEP, 10);
    assert_int_equal(put(t->ctx, "keep/other", "untouched"), 1);
    for (int i = 1; i <= 12; i++) {
        snprintf(value, sizeof(value), "value %d", i);
        assert_int_equal(put(t->ctx, "keep/x", value), i);
    }
    assert_int_equal(kw_secrets_history(t->ctx, "keep/x", &h, &n), KW_OK);
    assert_int_equal(n, KW_SECRET_KEEP);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].version, 12 - (int64_t)i);
        assert_true(h[i].created_at > 0);
        assert_int_equal(h[i].destroyed_at, 0);
    }
    free(h);
    assert_int_equal(sql_int(t, "SELECT count(*) FROM secret_versions WHERE path = 'keep/x'"),
                     KW_SECRET_KEEP);
    assert_int_equal(get_rc(t->ctx, "keep/x", 1), KW_ERR_NOT_FOUND);
    assert_int_equal(get_rc(t->ctx, "keep/x", 2), KW_ERR_NOT_FOUND);
    expect(t->ctx, "keep/x", 3, "value 3", 3);
    expect(t->ctx, "keep/x", 0, "value 12", 12);
    expect(t->ctx, "keep/other", 1, "untouched", 1);
    assert_int_equal(kw_secrets_history(t->ctx, "keep/none", &h, &n), KW_ERR_NOT_FOUND);
    kw_secret_free(mk);
}

/* ---- 6. soft deletion ---------------------------------------------------------------- */

/* A deleted secret reads as not found and is listed only on request (with
 * deleted_at set); deleting twice is a conflict; undeleting brings the same
 * value back; a write brings it back too, a deleted secret counting as
 * version 0 for check-and-set while its versions go on counting. */
static void test_soft_delete(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    kw_secret_info *l;
    size_t n;

    assert_int_equal(put(t->ctx, "app/x", "one"), 1);
    assert_int_equal(put(t->ctx, "app/y", "why"), 1);
    assert_int_equal(kw_secrets_delete(t->ctx, "app/x", &kwt_actor), KW_OK);
    assert_int_equal(get_rc(t->ctx, "app/x", 0), KW_ERR_NOT_FOUND);
    assert_int_equal(get_rc(t->ctx, "app/x", 1), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_list(t->ctx, "", 0, &l, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].path, "app/y");
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "", 1, &l, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].path, "app/x");
    assert_true(l[0].deleted_at > 0);
    assert_int_equal(l[0].version, 1);
    assert_string_equal(l[1].path, "app/y");
    assert_int_equal(l[1].deleted_at, 0);
    free(l);
    assert_int_equal(kw_secrets_delete(t->ctx, "app/x", &kwt_actor), KW_ERR_CONFLICT);
    assert_int_equal(kw_secrets_delete(t->ctx, "app/none", &kwt_actor), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_undelete(t->ctx, "app/y", &kwt_actor), KW_ERR_CONFLICT);
    assert_int_equal(kw_secrets_undelete(t->ctx, "app/none", &kwt_actor), KW_ERR_NOT_FOUND);

    assert_int_equal(kw_secrets_undelete(t->ctx, "app/x", &kwt_actor), KW_OK);
    expect(t->ctx, "app/x", 0, "one", 1);
    assert_int_equal(kw_secrets_list(t->ctx, "", 0, &l, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(l[0].deleted_at, 0);
    free(l);

    /* a write over a deleted secret: cas 0 holds, cas of its version not */
    assert_int_equal(kw_secrets_delete(t->ctx, "app/x", &kwt_actor), KW_OK);
    assert_int_equal(put_rc(t->ctx, "app/x", "two", 1), KW_ERR_CONFLICT);
    assert_int_equal(get_rc(t->ctx, "app/x", 0), KW_ERR_NOT_FOUND);
    assert_int_equal(put_bytes(t->ctx, "app/x", "two", 3, 0), 2);
    expect(t->ctx, "app/x", 0, "two", 2);
    expect(t->ctx, "app/x", 1, "one", 1);
    assert_int_equal(kw_secrets_list(t->ctx, "app/x", 0, &l, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(l[0].version, 2);
    assert_int_equal(l[0].deleted_at, 0);
    free(l);
    /* and with -1 */
    assert_int_equal(kw_secrets_delete(t->ctx, "app/x", &kwt_actor), KW_OK);
    assert_int_equal(put(t->ctx, "app/x", "three"), 3);
    expect(t->ctx, "app/x", 0, "three", 3);
    kw_secret_free(mk);
}

/* ---- 7. destruction ------------------------------------------------------------------- */

/* A destroyed version reads as not found, its blobs are gone from the
 * database, and history shows when; the other versions still read; a
 * version destroyed already, or never written, is not found. */
static void test_destroy(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    kw_secret_version_info *h;
    size_t n;

    assert_int_equal(put(t->ctx, "d/x", "first"), 1);
    assert_int_equal(put(t->ctx, "d/x", "second"), 2);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", 1, &kwt_actor), KW_OK);
    assert_int_equal(get_rc(t->ctx, "d/x", 1), KW_ERR_NOT_FOUND);
    expect(t->ctx, "d/x", 0, "second", 2);
    expect(t->ctx, "d/x", 2, "second", 2);
    assert_int_equal(sql_int(t, "SELECT sealed IS NULL AND wrapped IS NULL FROM secret_versions"
                                " WHERE path = 'd/x' AND version = 1"),
                     1);
    assert_int_equal(sql_int(t, "SELECT sealed IS NULL OR wrapped IS NULL FROM secret_versions"
                                " WHERE path = 'd/x' AND version = 2"),
                     0);
    assert_int_equal(kw_secrets_history(t->ctx, "d/x", &h, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].version, 2);
    assert_int_equal(h[0].destroyed_at, 0);
    assert_int_equal(h[1].version, 1);
    assert_true(h[1].destroyed_at > 0);
    free(h);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", 1, &kwt_actor), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", 3, &kwt_actor), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/none", 1, &kwt_actor), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", 0, &kwt_actor), KW_ERR_INVALID);
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", -1, &kwt_actor), KW_ERR_INVALID);
    /* the current version: then nothing reads */
    assert_int_equal(kw_secrets_destroy(t->ctx, "d/x", 2, &kwt_actor), KW_OK);
    assert_int_equal(get_rc(t->ctx, "d/x", 0), KW_ERR_NOT_FOUND);
    kw_secret_free(mk);
}

/* ---- 8. paths ------------------------------------------------------------------------- */

/* Segments of [A-Za-z0-9_.-] separated by '/', 1 to 256 characters, no
 * empty, "." or ".." segment; every function refuses another path with
 * KW_ERR_INVALID. */
static void test_paths(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t), *v;
    static const char *const good[] = {"a",   "app/db_password", "a.b-c_d/E9", "a/.env",
                                       "...", "Z/z/0/_/-"};
    static const char *const bad[] = {
        "",  "/a",  "a/",         "a//b", "a/./b", "a/.", "./a", "..", "a/../b", "a/..",
        ".", "a b", "a/\xc3\xa9", "a\tb", "a\\b",  "a:b", "a*",  "a%", "a/b\n"};
    char longest[KW_SECRET_PATH_MAX + 2];
    kw_secret_version_info *h;
    size_t n;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!kw_secret_path_valid(good[i]))
            fail_msg("refused: \"%s\"", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (kw_secret_path_valid(bad[i]))
            fail_msg("accepted: \"%s\"", bad[i]);
    assert_false(kw_secret_path_valid(NULL));
    memset(longest, 'p', sizeof(longest));
    longest[KW_SECRET_PATH_MAX] = '\0';
    assert_true(kw_secret_path_valid(longest));
    longest[KW_SECRET_PATH_MAX] = 'p';
    longest[KW_SECRET_PATH_MAX + 1] = '\0';
    assert_int_equal(strlen(longest), 257);
    assert_false(kw_secret_path_valid(longest));

    /* a path of the largest length works end to end */
    longest[KW_SECRET_PATH_MAX] = '\0';
    assert_int_equal(put(t->ctx, longest, "long"), 1);
    expect(t->ctx, longest, 0, "long", 1);
    longest[KW_SECRET_PATH_MAX] = 'p';

    assert_int_equal(put(t->ctx, "a", "x"), 1);
    assert_int_equal(kw_secret_from(&v, "x", 1), KW_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) + 2; i++) {
        const char *p = i < sizeof(bad) / sizeof(bad[0])    ? bad[i]
                        : i == sizeof(bad) / sizeof(bad[0]) ? longest
                                                            : NULL;
        kw_secret *out = NULL;
        assert_int_equal(kw_secrets_put(t->ctx, p, v, -1, &kwt_actor, NULL), KW_ERR_INVALID);
        assert_int_equal(kw_secrets_get(t->ctx, p, 0, &kwt_actor, &out, NULL), KW_ERR_INVALID);
        assert_null(out);
        assert_int_equal(kw_secrets_delete(t->ctx, p, &kwt_actor), KW_ERR_INVALID);
        assert_int_equal(kw_secrets_undelete(t->ctx, p, &kwt_actor), KW_ERR_INVALID);
        assert_int_equal(kw_secrets_destroy(t->ctx, p, 1, &kwt_actor), KW_ERR_INVALID);
        assert_int_equal(kw_secrets_history(t->ctx, p, &h, &n), KW_ERR_INVALID);
    }
    /* "a/" is not "a" */
    assert_int_equal(kw_secrets_delete(t->ctx, "a/", &kwt_actor), KW_ERR_INVALID);
    expect(t->ctx, "a", 0, "x", 1);
    assert_int_equal(sql_int(t, "SELECT count(*) FROM secrets"), 2);
    kw_secret_free(v);
    kw_secret_free(mk);
}

/* ---- 9. listing -------------------------------------------------------------------------- */

/* A prefix is a plain string prefix (no wildcard: "ap_" matches nothing);
 * "" lists all; results in path order, with their current version. */
static void test_list_prefix(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    static const char *const all[] = {"app/x", "app/y", "apple/z", "b"};
    kw_secret_info *l;
    size_t n;

    put(t->ctx, "b", "4");
    put(t->ctx, "apple/z", "3");
    put(t->ctx, "app/y", "2");
    put(t->ctx, "app/x", "1");
    put(t->ctx, "app/x", "1 again");

    assert_int_equal(kw_secrets_list(t->ctx, "app/", 0, &l, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].path, "app/x");
    assert_int_equal(l[0].version, 2);
    assert_true(l[0].created_at > 0 && l[0].updated_at >= l[0].created_at);
    assert_string_equal(l[1].path, "app/y");
    assert_int_equal(l[1].version, 1);
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "", 0, &l, &n), KW_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l[i].path, all[i]);
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "app", 0, &l, &n), KW_OK);
    assert_int_equal(n, 3);
    assert_string_equal(l[2].path, "apple/z");
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "ap_", 0, &l, &n), KW_OK);
    assert_int_equal(n, 0);
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "app%", 0, &l, &n), KW_OK);
    assert_int_equal(n, 0);
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "c", 0, &l, &n), KW_OK);
    assert_int_equal(n, 0);
    free(l);
    assert_int_equal(kw_secrets_list(t->ctx, "apple/z", 0, &l, &n), KW_OK);
    assert_int_equal(n, 1);
    free(l);
    kw_secret_free(mk);
}

/* ---- 10. the audit ----------------------------------------------------------------------- */

/* Each write, read, deletion, undeletion and destruction is one record,
 * in order, naming the path (and the version), never the value; the
 * chain verifies. */
static void test_audited(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    static const char v1[] = "Audit-Value-One-7f3a9c", v2[] = "Audit-Value-Two-c41e08";
    static const char *const want[] = {"secret.write",  "secret.write",    "secret.read",
                                       "secret.delete", "secret.undelete", "secret.destroy",
                                       "secret.read"};
    kw_audit_filter f = {.limit = 1000};
    kw_audit_record *recs;
    kw_audit_report rep;
    size_t n, k = 0;
    int64_t next;

    assert_int_equal(put(t->ctx, "audit/x", v1), 1);
    assert_int_equal(put(t->ctx, "audit/x", v2), 2);
    expect(t->ctx, "audit/x", 1, v1, 1);
    assert_int_equal(kw_secrets_delete(t->ctx, "audit/x", &kwt_actor), KW_OK);
    assert_int_equal(kw_secrets_undelete(t->ctx, "audit/x", &kwt_actor), KW_OK);
    assert_int_equal(kw_secrets_destroy(t->ctx, "audit/x", 1, &kwt_actor), KW_OK);
    expect(t->ctx, "audit/x", 0, v2, 2);

    assert_int_equal(kw_audit_list(t->ctx, &f, &recs, &n, &next), KW_OK);
    assert_int_equal(next, 0);
    for (size_t i = 0; i < n; i++) {
        const kw_audit_record *r = &recs[i];
        const char *fields[] = {r->actor, r->action, r->target, r->client, r->result, r->detail};
        for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j++) {
            if (fields[j] == NULL)
                continue;
            assert_null(strstr(fields[j], v1));
            assert_null(strstr(fields[j], v2));
        }
        if (strncmp(r->action, "secret.", 7) != 0)
            continue;
        assert_true(k < sizeof(want) / sizeof(want[0]));
        assert_string_equal(r->action, want[k]);
        assert_string_equal(r->target, "audit/x");
        assert_string_equal(r->actor, kwt_actor.id);
        assert_string_equal(r->result, "ok");
        if (k == 1) /* the second write: version 2 */
            assert_non_null(strstr(r->detail, "\"version\":2"));
        if (k == 2) /* the read of version 1 */
            assert_non_null(strstr(r->detail, "\"version\":1"));
        if (k == 5) /* the destruction of version 1 */
            assert_non_null(strstr(r->detail, "\"version\":1"));
        k++;
    }
    assert_int_equal(k, sizeof(want) / sizeof(want[0]));
    kw_audit_records_free(recs, n);
    assert_int_equal(kw_audit_verify(t->ctx, &rep), KW_OK);
    kw_secret_free(mk);
}

/* ---- 11. nothing in the clear on disk ------------------------------------------------------ */

/* Scan every file of the database's directory for each needle; the number
 * of files scanned. found[i] is set if needle i is in some file. */
static int scan_dir(const char *dir, const void *const *needles, const size_t *lens, size_t count,
                    int *found)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[600];
        struct stat st;
        unsigned char *buf;
        FILE *fp;
        size_t got;

        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        buf = malloc((size_t)st.st_size + 1);
        assert_non_null(buf);
        fp = fopen(path, "rb");
        assert_non_null(fp);
        got = fread(buf, 1, (size_t)st.st_size, fp);
        fclose(fp);
        assert_int_equal(got, (size_t)st.st_size);
        for (size_t i = 0; i < count; i++)
            if (contains(buf, got, needles[i], lens[i]))
                found[i] = 1;
        free(buf);
        files++;
    }
    closedir(d);
    return files;
}

/* A value written, read and its context closed (checkpointed): neither the
 * value nor the master key (raw, or in hex of either case) is in any of the
 * database's files; the path, which is not secret, is (the scan sees the
 * data). */
static void test_nothing_in_clear(void **state)
{
    kwt_db *t = *state;
    kw_secret *mk = with_master(t);
    char value[41], hex[2 * KW_MASTER_KEY_LEN + 1], upper[sizeof(hex)];
    static const char path[] = "scan/distinctive_path_for_the_scan";
    const void *needles[5];
    size_t lens[5];
    int found[5] = {0};

    for (size_t i = 0; i < 40; i++)
        value[i] = (char)('!' + randombytes_uniform('~' - '!' + 1));
    value[40] = '\0';
    sodium_bin2hex(hex, sizeof(hex), kw_secret_cdata(mk), KW_MASTER_KEY_LEN);
    for (size_t i = 0; i < sizeof(hex); i++)
        upper[i] = (char)toupper((unsigned char)hex[i]);
    assert_int_equal(put(t->ctx, path, value), 1);
    assert_int_equal(put(t->ctx, "scan/other", value), 1);
    expect(t->ctx, path, 0, value, 1);
    kw_close(t->ctx);
    t->ctx = NULL;

    needles[0] = value, lens[0] = 40;
    needles[1] = kw_secret_cdata(mk), lens[1] = KW_MASTER_KEY_LEN;
    needles[2] = hex, lens[2] = 2 * KW_MASTER_KEY_LEN;
    needles[3] = upper, lens[3] = 2 * KW_MASTER_KEY_LEN;
    needles[4] = path, lens[4] = strlen(path);
    assert_true(scan_dir(t->dir, needles, lens, 5, found) >= 1);
    assert_false(found[0]); /* the value */
    assert_false(found[1]); /* the master key */
    assert_false(found[2]);
    assert_false(found[3]);
    assert_true(found[4]); /* the path: the scan reads the data */

    assert_int_equal(kw_open(&t->ctx, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
    assert_int_equal(kw_secrets_master(t->ctx, mk), KW_OK);
    expect(t->ctx, path, 0, value, 1);
    kw_secret_free(mk);
}

/* ---- 12. loading the master key --------------------------------------------------------- */

static char *saved_key, *saved_cmd;

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    char *d = v ? strdup(v) : NULL;

    assert_true(v == NULL || d != NULL);
    return d;
}

static void env_put(const char *name, const char *value)
{
    if (value != NULL)
        assert_int_equal(setenv(name, value, 1), 0);
    else
        assert_int_equal(unsetenv(name), 0);
}

static int env_setup(void **state)
{
    saved_key = env_dup("KEYWARD_MASTER_KEY");
    saved_cmd = env_dup("KEYWARD_MASTER_KEY_CMD");
    env_put("KEYWARD_MASTER_KEY", NULL);
    env_put("KEYWARD_MASTER_KEY_CMD", NULL);
    return kwt_setup(state);
}

/* The environment as it was, whatever the test did. */
static int env_teardown(void **state)
{
    env_put("KEYWARD_MASTER_KEY", saved_key);
    env_put("KEYWARD_MASTER_KEY_CMD", saved_cmd);
    free(saved_key);
    free(saved_cmd);
    saved_key = saved_cmd = NULL;
    return kwt_teardown(state);
}

/* kw_master_key_load's result; on success, that the key is `want`
 * (32 bytes). On failure, that `why` says something (and not the text
 * given, which may be a key). */
static kw_rc load(const char *file, const unsigned char *want, const char *not_in_why)
{
    kw_secret *k = NULL;
    char why[256];
    kw_rc rc;

    why[0] = '\0';
    rc = kw_master_key_load(&k, file, why, sizeof(why));
    if (rc == KW_OK) {
        assert_non_null(k);
        assert_int_equal(kw_secret_len(k), KW_MASTER_KEY_LEN);
        if (want != NULL)
            assert_memory_equal(kw_secret_cdata(k), want, KW_MASTER_KEY_LEN);
    } else {
        assert_true(why[0] != '\0');
        if (not_in_why != NULL && not_in_why[0] != '\0')
            assert_null(strstr(why, not_in_why));
    }
    kw_secret_free(k);
    return rc;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* The master key from KEYWARD_MASTER_KEY (64 hex characters, either case),
 * else KEYWARD_MASTER_KEY_CMD (its first line; a failing command refused),
 * else a file of mode 0600 that is not a symbolic link. Anything else is
 * KW_ERR_MASTER_KEY with a reason that does not repeat the text. */
static void test_master_key_load(void **state)
{
    kwt_db *t = *state;
    unsigned char key[KW_MASTER_KEY_LEN], key2[KW_MASTER_KEY_LEN];
    char hex[2 * KW_MASTER_KEY_LEN + 1], hex2[sizeof(hex)], upper[sizeof(hex)], text[300];
    char file[400], link_path[400], *def;

    randombytes_buf(key, sizeof(key));
    randombytes_buf(key2, sizeof(key2));
    sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
    sodium_bin2hex(hex2, sizeof(hex2), key2, sizeof(key2));
    for (size_t i = 0; i < sizeof(hex); i++)
        upper[i] = (char)toupper((unsigned char)hex[i]);

    /* nothing given */
    assert_int_equal(load(NULL, NULL, NULL), KW_ERR_MASTER_KEY);

    /* the environment */
    env_put("KEYWARD_MASTER_KEY", hex);
    assert_int_equal(load(NULL, key, NULL), KW_OK);
    env_put("KEYWARD_MASTER_KEY", upper);
    assert_int_equal(load(NULL, key, NULL), KW_OK);
    memcpy(text, hex, 63);
    text[63] = '\0';
    env_put("KEYWARD_MASTER_KEY", text);
    assert_int_equal(load(NULL, NULL, text), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "%s0", hex);
    env_put("KEYWARD_MASTER_KEY", text);
    assert_int_equal(load(NULL, NULL, text), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "%s", hex);
    text[10] = 'g';
    env_put("KEYWARD_MASTER_KEY", text);
    assert_int_equal(load(NULL, NULL, text), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "%s", hex);
    text[63] = 'x';
    env_put("KEYWARD_MASTER_KEY", text);
    assert_int_equal(load(NULL, NULL, text), KW_ERR_MASTER_KEY);
    /* it comes before the command */
    env_put("KEYWARD_MASTER_KEY", hex);
    env_put("KEYWARD_MASTER_KEY_CMD", "exit 1");
    assert_int_equal(load(NULL, key, NULL), KW_OK);
    env_put("KEYWARD_MASTER_KEY", NULL);

    /* a command */
    snprintf(text, sizeof(text), "printf %%s %s", hex);
    env_put("KEYWARD_MASTER_KEY_CMD", text);
    assert_int_equal(load(NULL, key, NULL), KW_OK);
    snprintf(text, sizeof(text), "printf '%%s\\n' %s; echo a second line", hex2);
    env_put("KEYWARD_MASTER_KEY_CMD", text);
    assert_int_equal(load(NULL, key2, NULL), KW_OK);
    snprintf(text, sizeof(text), "printf %%s %s; exit 3", hex);
    env_put("KEYWARD_MASTER_KEY_CMD", text);
    assert_int_equal(load(NULL, NULL, hex), KW_ERR_MASTER_KEY);
    env_put("KEYWARD_MASTER_KEY_CMD", "false");
    assert_int_equal(load(NULL, NULL, NULL), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "printf %%s %.63s", hex);
    env_put("KEYWARD_MASTER_KEY_CMD", text);
    assert_int_equal(load(NULL, NULL, NULL), KW_ERR_MASTER_KEY);

    /* a file; the command comes before it */
    snprintf(file, sizeof(file), "%s/k.db.master", t->dir);
    def = kw_master_key_default_path(t->url);
    assert_non_null(def);
    assert_string_equal(def, file);
    free(def);
    snprintf(text, sizeof(text), "%s\n", hex2);
    write_file(file, text, 0600);
    snprintf(text, sizeof(text), "printf %%s %s", hex);
    env_put("KEYWARD_MASTER_KEY_CMD", text);
    assert_int_equal(load(file, key, NULL), KW_OK);
    env_put("KEYWARD_MASTER_KEY_CMD", NULL);
    assert_int_equal(load(file, key2, NULL), KW_OK);
    assert_int_equal(chmod(file, 0644), 0);
    assert_int_equal(load(file, NULL, hex2), KW_ERR_MASTER_KEY);
    assert_int_equal(chmod(file, 0640), 0);
    assert_int_equal(load(file, NULL, hex2), KW_ERR_MASTER_KEY);
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(load(file, key2, NULL), KW_OK);
    snprintf(link_path, sizeof(link_path), "%s/link.master", t->dir);
    assert_int_equal(symlink(file, link_path), 0);
    assert_int_equal(load(link_path, NULL, NULL), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "%.63s\n", hex2);
    write_file(file, text, 0600);
    assert_int_equal(load(file, NULL, NULL), KW_ERR_MASTER_KEY);
    snprintf(text, sizeof(text), "%s/none.master", t->dir);
    assert_int_equal(load(text, NULL, NULL), KW_ERR_MASTER_KEY);

    /* a key loaded is one the secrets take */
    {
        kw_secret *k = NULL;
        env_put("KEYWARD_MASTER_KEY", hex);
        assert_int_equal(kw_master_key_load(&k, NULL, NULL, 0), KW_OK);
        assert_int_equal(kw_secrets_master(t->ctx, k), KW_OK);
        assert_int_equal(put(t->ctx, "loaded", "works"), 1);
        expect(t->ctx, "loaded", 0, "works", 1);
        kw_secret_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_master_key, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_moved_or_altered, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_check_and_set, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_versions_kept, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_keep_per_secret, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_soft_delete, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_destroy, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_paths, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_list_prefix, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_audited, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_nothing_in_clear, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_master_key_load, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
