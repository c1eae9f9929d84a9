/*
 * Seed import (lib/import.c, SPEC.md "Seed compatibility"): a SQLite file
 * with the seed's SQLAlchemy `api_keys` table, built here, whose key_hash is
 * the hex SHA-256 of the whole key. Imported keys verify with the seed's
 * owner, permissions, expiry and active state, and are re-hashed to the
 * peppered form on their first successful verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEED_KEY_LEN (8 + 32)
#define NSEED 4

/* The seed's SQLAlchemy model (seed 001), as SQLAlchemy creates it on SQLite. */
static const char seed_schema[] = "CREATE TABLE api_keys ("
                                  " id VARCHAR NOT NULL,"
                                  " key_hash VARCHAR NOT NULL,"
                                  " user_id VARCHAR NOT NULL,"
                                  " name VARCHAR,"
                                  " permissions JSON,"
                                  " created_at DATETIME,"
                                  " last_used_at DATETIME,"
                                  " expires_at DATETIME,"
                                  " is_active BOOLEAN,"
                                  " PRIMARY KEY (id),"
                                  " UNIQUE (key_hash))";

typedef struct seed_row {
    const char *id;
    const char *key_hash; /* NULL: the SHA-256 of key */
    const char *user_id;
    const char *name;
    const char *permissions;
    const char *created_at;
    const char *last_used_at;
    const char *expires_at;
    int is_active; /* -1: NULL */
} seed_row;

typedef struct fixture {
    kwt_db db;
    char seed[300];
    char keys[NSEED][SEED_KEY_LEN + 1]; /* the seed's keys, as its users hold them */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    kwt_db_open(&f->db);
    snprintf(f->seed, sizeof(f->seed), "%s/seed.db", f->db.dir);
    for (int i = 0; i < NSEED; i++) {
        memcpy(f->keys[i], "sk_live_", 8);
        kw_base62_random(f->keys[i] + 8, 32);
        f->keys[i][SEED_KEY_LEN] = '\0';
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    kwt_db_close(&f->db);
    free(f);
    return 0;
}

static void sha256_hex(char out[65], const char *key)
{
    unsigned char h[32];

    crypto_hash_sha256(h, (const unsigned char *)key, strlen(key));
    sodium_bin2hex(out, 65, h, sizeof(h));
}

static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        assert_int_equal(sqlite3_bind_null(st, i), SQLITE_OK);
    else
        assert_int_equal(sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT), SQLITE_OK);
}

/* Write the seed file: rows[i] belongs to keys[i] (when key_hash is NULL). */
static void seed_write(fixture *f, const seed_row *rows, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    remove(f->seed);
    assert_int_equal(sqlite3_open(f->seed, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, seed_schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO api_keys VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                                        "?8, ?9)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        if (rows[i].key_hash == NULL) {
            assert_true(i < NSEED);
            sha256_hex(hex, f->keys[i]);
        }
        bind_opt(st, 1, rows[i].id);
        bind_opt(st, 2, rows[i].key_hash ? rows[i].key_hash : hex);
        bind_opt(st, 3, rows[i].user_id);
        bind_opt(st, 4, rows[i].name);
        bind_opt(st, 5, rows[i].permissions);
        bind_opt(st, 6, rows[i].created_at);
        bind_opt(st, 7, rows[i].last_used_at);
        bind_opt(st, 8, rows[i].expires_at);
        if (rows[i].is_active < 0)
            sqlite3_bind_null(st, 9);
        else
            sqlite3_bind_int(st, 9, rows[i].is_active);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static const seed_row standard[NSEED] = {
    {"k1", NULL, "user_1", "main", "[\"orders:read\", \"orders:write\"]",
     "2026-01-02 03:04:05.123456", "2026-03-04 05:06:07.000001", NULL, 1},
    {"k2", NULL, "user_2", "off", "[\"a:b\"]", "2026-01-02 03:04:05.123456", NULL, NULL, 0},
    {"k3", NULL, "user_3", "old", "[]", "2019-01-02 03:04:05.123456", NULL,
     "2020-01-02 03:04:05.123456", 1},
    {"k4", NULL, "user_4", NULL, NULL, "2026-01-02 03:04:05", NULL, "2099-01-01 00:00:00.000000",
     -1},
};

static kw_rc import(fixture *f, int dry_run, kw_import_report *rep)
{
    return kw_import_seed(f->db.ctx, f->seed, dry_run, &kwt_actor, rep);
}

static kw_verdict verify_seed(kw_ctx *ctx, const char *key, const char *const *scopes,
                              kw_verify_result *out)
{
    kw_verify_request req = {.scopes = scopes, .nscopes = 0, .cost = 1};
    kw_verify_result local;
    kw_verdict v;

    while (scopes != NULL && scopes[req.nscopes] != NULL)
        req.nscopes++;
    if (out == NULL)
        out = &local;
    assert_int_equal(kw_verify(ctx, key, strlen(key), &req, out), KW_OK);
    v = out->code;
    if (out == &local)
        kw_verify_result_clear(&local);
    return v;
}

static size_t count(kw_ctx *ctx, const char *action)
{
    kw_audit_filter af = {.limit = 1000, .action = action};
    kw_audit_record *r;
    size_t n;
    int64_t next;

    assert_int_equal(kw_audit_list(ctx, &af, &r, &n, &next), KW_OK);
    kw_audit_records_free(r, n);
    return n;
}

static size_t count_keys(kw_ctx *ctx)
{
    kw_key_filter kf = {.limit = 1000};
    kw_key_record *r;
    char next[KW_ID_LEN + 1];
    size_t n;

    assert_int_equal(kw_key_list(ctx, &kf, &r, &n, next), KW_OK);
    kw_key_records_free(r, n);
    return n;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_import_and_verify(void **state)
{
    fixture *f = *state;
    kw_import_report rep;
    kw_verify_result r;
    kw_key_record rec;
    char wrong[SEED_KEY_LEN + 1];

    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(rep.rows, NSEED);
    assert_int_equal(rep.imported, NSEED);
    assert_int_equal(rep.skipped, 0);
    assert_int_equal(rep.bad_row, 0);
    assert_int_equal(count_keys(f->db.ctx), NSEED);
    assert_int_equal(count(f->db.ctx, "key.import"), NSEED);

    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, &r), KW_VALID);
    assert_string_equal(r.key.owner, "user_1");
    assert_string_equal(r.key.name, "main");
    assert_int_equal(r.key.nscopes, 2);
    assert_string_equal(r.key.scopes[0], "orders:read");
    assert_string_equal(r.key.scopes[1], "orders:write");
    assert_string_equal(r.key.prefix, "");
    assert_int_equal(r.key.created_at, 1767323045);
    assert_int_equal(r.key.expires_at, 0);
    assert_string_equal(r.key.external_id, "seed:k1");
    assert_int_equal(r.key.enabled, 1);
    assert_int_equal(r.remaining, KW_CREDITS_UNLIMITED);
    kw_verify_result_clear(&r);
    assert_int_equal(
        verify_seed(f->db.ctx, f->keys[0], (const char *const[]){"orders:read", NULL}, NULL),
        KW_VALID);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], (const char *const[]){"admin", NULL}, NULL),
                     KW_INSUFFICIENT_SCOPE);

    assert_int_equal(verify_seed(f->db.ctx, f->keys[1], NULL, &r), KW_DISABLED);
    assert_string_equal(r.key.owner, "user_2");
    kw_verify_result_clear(&r);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[2], NULL, &r), KW_EXPIRED);
    assert_int_equal(r.key.expires_at, 1577934245);
    kw_verify_result_clear(&r);
    /* NULL is_active: active; NULL permissions: no scopes. */
    assert_int_equal(verify_seed(f->db.ctx, f->keys[3], NULL, &r), KW_VALID);
    assert_int_equal(r.key.expires_at, 4070908800LL);
    assert_int_equal(r.key.nscopes, 0);
    assert_string_equal(r.key.name, "");
    kw_verify_result_clear(&r);

    /* A wrong key of the same shape. */
    memcpy(wrong, f->keys[0], sizeof(wrong));
    wrong[SEED_KEY_LEN - 1] = wrong[SEED_KEY_LEN - 1] == 'a' ? 'b' : 'a';
    assert_int_equal(verify_seed(f->db.ctx, wrong, NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(verify_seed(f->db.ctx, "sk_live_", NULL, NULL), KW_NOT_FOUND);

    /* The stored record carries the seed's times. */
    {
        kw_key_filter kf = {.limit = 10};
        kw_key_record *recs;
        char next[KW_ID_LEN + 1];
        size_t n;
        int found = 0;
        assert_int_equal(kw_key_list(f->db.ctx, &kf, &recs, &n, next), KW_OK);
        for (size_t i = 0; i < n; i++)
            if (strcmp(recs[i].external_id, "seed:k1") == 0) {
                found = 1;
                assert_true(recs[i].last_used_at >= 1772600767);
                assert_int_equal(kw_key_get(f->db.ctx, recs[i].id, &rec), KW_OK);
                assert_string_equal(rec.owner, "user_1");
                kw_key_record_clear(&rec);
            }
        assert_true(found);
        kw_key_records_free(recs, n);
    }
    {
        kw_audit_report ar;
        assert_int_equal(kw_audit_verify(f->db.ctx, &ar), KW_OK);
    }
}

static void test_keyward_keys_unaffected(void **state)
{
    fixture *f = *state;
    kw_import_report rep;
    kw_secret *key;
    char buf[KW_KEY_MAX + 1];
    size_t n;

    key = kwt_key(&f->db, NULL, NULL);
    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(kwt_verify(&f->db, key, NULL, 0, NULL), KW_VALID);
    /* A mistyped keyward key stays MALFORMED even with seed keys around. */
    n = kw_secret_len(key);
    memcpy(buf, kw_secret_cdata(key), n);
    buf[n] = '\0';
    buf[n - 1] = buf[n - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_seed(f->db.ctx, buf, NULL, NULL), KW_MALFORMED);
    kw_secret_free(key);
}

static const char *imported_id(kw_ctx *ctx, const char *external, char id[KW_ID_LEN + 1])
{
    kw_key_filter kf = {.limit = 100};
    kw_key_record *recs;
    char next[KW_ID_LEN + 1];
    size_t n;

    id[0] = '\0';
    assert_int_equal(kw_key_list(ctx, &kf, &recs, &n, next), KW_OK);
    for (size_t i = 0; i < n; i++)
        if (recs[i].external_id && strcmp(recs[i].external_id, external) == 0)
            memcpy(id, recs[i].id, KW_ID_LEN + 1);
    kw_key_records_free(recs, n);
    assert_true(id[0] != '\0');
    return id;
}

static int legacy_of(kw_ctx *ctx, const char *id)
{
    kw_key_record rec;
    int legacy;

    assert_int_equal(kw_key_get(ctx, id, &rec), KW_OK);
    legacy = rec.legacy;
    kw_key_record_clear(&rec);
    return legacy;
}

static void test_rehash_on_first_use(void **state)
{
    fixture *f = *state;
    kw_import_report rep;
    kw_audit_filter af = {.action = "key.rehash"};
    kw_audit_record *ar;
    kw_audit_report rr;
    char id1[KW_ID_LEN + 1], id2[KW_ID_LEN + 1];
    kw_ctx *again = NULL;
    size_t n;
    int64_t next;

    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    imported_id(f->db.ctx, "seed:k1", id1);
    imported_id(f->db.ctx, "seed:k2", id2);
    assert_int_equal(legacy_of(f->db.ctx, id1), 1);
    assert_int_equal(count(f->db.ctx, "key.rehash"), 0);

    /* A refused verification (disabled key) re-hashes nothing. */
    assert_int_equal(verify_seed(f->db.ctx, f->keys[1], NULL, NULL), KW_DISABLED);
    assert_int_equal(legacy_of(f->db.ctx, id2), 1);
    /* Neither does a refused scope. */
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], (const char *const[]){"x:y", NULL}, NULL),
                     KW_INSUFFICIENT_SCOPE);
    assert_int_equal(legacy_of(f->db.ctx, id1), 1);
    assert_int_equal(count(f->db.ctx, "key.rehash"), 0);

    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    assert_int_equal(legacy_of(f->db.ctx, id1), 0);
    af.target = id1;
    assert_int_equal(kw_audit_list(f->db.ctx, &af, &ar, &n, &next), KW_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ar[0].target, id1);
    assert_null(strstr(ar[0].detail, f->keys[0]));
    kw_audit_records_free(ar, n);

    /* Still valid under the new hash, and only one re-hash. */
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    assert_int_equal(count(f->db.ctx, "key.rehash"), 1);
    assert_int_equal(kw_audit_verify(f->db.ctx, &rr), KW_OK);

    /* And after reopening. */
    kw_close(f->db.ctx);
    f->db.ctx = NULL;
    assert_int_equal(kw_open(&f->db.ctx, f->db.url, f->db.pepper, NULL), KW_OK);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[3], NULL, NULL), KW_VALID);
    assert_int_equal(legacy_of(f->db.ctx, id1), 0);

    /* A second context opened independently agrees. */
    assert_int_equal(kw_open(&again, f->db.url, f->db.pepper, NULL), KW_OK);
    assert_int_equal(verify_seed(again, f->keys[0], NULL, NULL), KW_VALID);
    kw_close(again);
}

static void test_reimport_skips(void **state)
{
    fixture *f = *state;
    kw_import_report rep;

    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(rep.imported, NSEED);
    /* One key re-hashed in between: still matched by its seed id. */
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(rep.rows, NSEED);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(rep.skipped, NSEED);
    assert_int_equal(count_keys(f->db.ctx), NSEED);
    assert_int_equal(count(f->db.ctx, "key.import"), NSEED);
    for (int i = 0; i < NSEED; i++)
        assert_int_not_equal(verify_seed(f->db.ctx, f->keys[i], NULL, NULL), KW_NOT_FOUND);

    /* A seed with one more row: only that one is new. */
    {
        seed_row more[NSEED];
        memcpy(more, standard, sizeof(more));
        more[3].id = "k4-new";
        more[3].key_hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        seed_write(f, more, NSEED);
    }
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(rep.imported, 1);
    assert_int_equal(rep.skipped, NSEED - 1);
    assert_int_equal(count_keys(f->db.ctx), NSEED + 1);
}

/* Import must fail with KW_ERR_INVALID at bad_row and import nothing. */
static void expect_bad(fixture *f, const seed_row *rows, size_t n, int64_t bad_row)
{
    kw_import_report rep;

    seed_write(f, rows, n);
    assert_int_equal(import(f, 0, &rep), KW_ERR_INVALID);
    assert_int_equal(rep.bad_row, bad_row);
    assert_true(kw_errmsg(f->db.ctx)[0] != '\0');
    assert_int_equal(count_keys(f->db.ctx), 0);
    assert_int_equal(count(f->db.ctx, NULL), 0);
    assert_int_not_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
}

static void test_bad_rows_import_nothing(void **state)
{
    fixture *f = *state;
    seed_row rows[NSEED];
    static const struct {
        int field;
        const char *value;
    } bad[] = {
        {4, "[\"orders:read\", \"Bad Perm\"]"},
        {4, "[\"orders:*\", 42]"},
        {4, "{\"orders\": \"read\"}"},
        {4, "not json"},
        {1, "xyz"},
        {1, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeZZ"},
        {1, "00112233445566778899aabbccddeeff00112233445566778899aabbccddee"},
        {5, "yesterday"},
        {7, "2026-13-40 00:00:00"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(rows, standard, sizeof(rows));
        switch (bad[i].field) {
        case 1: rows[2].key_hash = bad[i].value; break;
        case 4: rows[2].permissions = bad[i].value; break;
        case 5: rows[2].created_at = bad[i].value; break;
        case 7: rows[2].expires_at = bad[i].value; break;
        }
        expect_bad(f, rows, NSEED, 3);
    }
    /* A name longer than the cap. */
    {
        char name[KW_NAME_MAX + 2];
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        memcpy(rows, standard, sizeof(rows));
        rows[1].name = name;
        expect_bad(f, rows, NSEED, 2);
    }
    /* The good rows alone import fine afterwards. */
    {
        kw_import_report rep;
        seed_write(f, standard, NSEED);
        assert_int_equal(import(f, 0, &rep), KW_OK);
        assert_int_equal(rep.imported, NSEED);
    }
}

static void test_bad_rows_validated_like_create(void **state)
{
    fixture *f = *state;
    seed_row rows[NSEED];

    /* kw_key_create refuses control characters in owner and name (they end
     * up in logs and in the X-Key-Owner header of /v1/auth); an imported
     * row must meet the same rules. */
    memcpy(rows, standard, sizeof(rows));
    rows[1].user_id = "user\r\nX-Injected: 1";
    expect_bad(f, rows, NSEED, 2);
    memcpy(rows, standard, sizeof(rows));
    rows[1].name = "tab\there";
    expect_bad(f, rows, NSEED, 2);
}

static void test_dry_run(void **state)
{
    fixture *f = *state;
    kw_import_report rep;

    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 1, &rep), KW_OK);
    assert_int_equal(rep.rows, NSEED);
    assert_int_equal(rep.bad_row, 0);
    assert_int_equal(count_keys(f->db.ctx), 0);
    assert_int_equal(count(f->db.ctx, NULL), 0);
    assert_int_not_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
    /* A dry run still finds a bad row. */
    {
        seed_row rows[NSEED];
        memcpy(rows, standard, sizeof(rows));
        rows[3].permissions = "[\"Bad Perm\"]";
        seed_write(f, rows, NSEED);
        assert_int_equal(import(f, 1, &rep), KW_ERR_INVALID);
        assert_int_equal(rep.bad_row, 4);
    }
    /* And the real import afterwards imports everything. */
    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(rep.imported, NSEED);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[0], NULL, NULL), KW_VALID);
}

static void test_not_a_seed(void **state)
{
    fixture *f = *state;
    kw_import_report rep;
    sqlite3 *db = NULL;
    char missing[320];

    remove(f->seed);
    assert_int_equal(sqlite3_open(f->seed, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE users (id TEXT)", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_int_equal(import(f, 0, &rep), KW_ERR_INVALID);
    assert_int_equal(count_keys(f->db.ctx), 0);

    snprintf(missing, sizeof(missing), "%s/no-such-seed.db", f->db.dir);
    assert_int_equal(kw_import_seed(f->db.ctx, missing, 0, &kwt_actor, &rep), KW_ERR_IO);
    assert_int_equal(count_keys(f->db.ctx), 0);
}

static void test_other_context_sees_import(void **state)
{
    fixture *f = *state;
    kw_import_report rep;
    kw_ctx *server = NULL;

    /* A long-running process (keyward serve) has the database open when
     * `keyward import seed` runs in another: the imported keys must verify
     * there too, without a restart, within a second (the library re-reads
     * "are there imported keys?" at most once a second). */
    assert_int_equal(kw_open(&server, f->db.url, f->db.pepper, NULL), KW_OK);
    seed_write(f, standard, NSEED);
    assert_int_equal(import(f, 0, &rep), KW_OK);
    assert_int_equal(verify_seed(f->db.ctx, f->keys[3], NULL, NULL), KW_VALID);
    {
        kw_verdict v = KW_MALFORMED;
        for (int tries = 0; tries < 15 && v != KW_VALID; tries++) {
            v = verify_seed(server, f->keys[0], NULL, NULL);
            if (v != KW_VALID)
                usleep(100 * 1000);
        }
        kw_close(server);
        assert_string_equal(kw_verdict_name(v), kw_verdict_name(KW_VALID));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyward_keys_unaffected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rehash_on_first_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reimport_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows_import_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows_validated_like_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_context_sees_import, setup, teardown),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
