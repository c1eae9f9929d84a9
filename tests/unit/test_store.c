/*
 * The storage back-end contract (lib/store/store.h), written against the
 * kw_store_ops vtable only. Every back end must pass the `contract` table:
 * a back end is a pair of functions that make a fresh, empty, migrated
 * store and destroy it (see `backends`). The schema tests at the end are
 * specific to SQLite (files, PRAGMA user_version).
 *
 * With KW_TEST_PG_URL set (tests/pg/with-pg.sh, around a PostgreSQL that
 * tests/pg/pgtest.sh started), the contract runs on PostgreSQL instead, each
 * case on an emptied database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "store/store.h"

/* ---- back ends ------------------------------------------------------------ */

typedef struct backend {
    const char *name;
    /* Make a fresh empty store; *handle is whatever destroy needs. */
    kw_store *(*make)(void **handle);
    void (*destroy)(kw_store *s, void *handle);
} backend;

typedef struct tmpdir {
    char dir[64];
    char path[128];
} tmpdir;

static void tmpdir_make(tmpdir *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/kwstore.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/k.db", t->dir);
}

static void tmpdir_remove(tmpdir *t)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

static kw_store *sqlite_make(void **handle)
{
    tmpdir *t = calloc(1, sizeof(*t));
    char err[256] = "";
    kw_store *s = NULL;

    assert_non_null(t);
    tmpdir_make(t);
    assert_int_equal(kwi_sqlite_open(&s, t->path, 1, err), KW_OK);
    assert_non_null(s);
    *handle = t;
    return s;
}

static void sqlite_destroy(kw_store *s, void *handle)
{
    s->ops->close(s);
    tmpdir_remove(handle);
    free(handle);
}

/* PostgreSQL: every table dropped, then a fresh schema. */
static kw_store *pg_make(void **handle)
{
    const char *url = getenv("KW_TEST_PG_URL");
    PGconn *c = PQconnectdb(url);
    PGresult *r;
    char err[256] = "";
    kw_store *s = NULL;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, "SET client_min_messages = warning;"
                  "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    if (kwi_pg_open(&s, url, 1, err) != KW_OK)
        fail_msg("kwi_pg_open: %s", err);
    assert_non_null(s);
    *handle = NULL;
    return s;
}

static void pg_destroy(kw_store *s, void *handle)
{
    (void)handle;
    s->ops->close(s);
}

static const backend backends[] = {
    {"sqlite", sqlite_make, sqlite_destroy},
};
static const backend pg_backend = {"postgres", pg_make, pg_destroy};

/* ---- rows ------------------------------------------------------------------ */

#define ID_A "AAAAAAAAAAAA"
#define ID_B "BBBBBBBBBBBB"
#define ID_C "CCCCCCCCCCCC"
#define ID_D "DDDDDDDDDDDD"
#define ID_X "XXXXXXXXXXXX"
#define HEX32_A "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define HEX32_B "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

/* A hash that differs for different ids (and from the legacy hash). */
static void id_hash(unsigned char out[32], const char *id, unsigned char salt)
{
    for (size_t i = 0; i < 32; i++)
        out[i] = (unsigned char)(id[i % KW_ID_LEN] + i + salt);
}

static void row_scopes(kw_key_row *row, size_t n, const char *const *scopes)
{
    row->rec.scopes = calloc(n + 1, sizeof(char *));
    assert_non_null(row->rec.scopes);
    for (size_t i = 0; i < n; i++)
        row->rec.scopes[i] = xstrdup(scopes[i]);
    row->rec.nscopes = n;
}

/* A minimal valid row: enabled, unlimited, with a hash, no legacy hash. */
static void row_make(kw_key_row *row, const char *id, const char *prefix, const char *owner)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->rec.id, sizeof(row->rec.id), "%s", id);
    snprintf(row->rec.prefix, sizeof(row->rec.prefix), "%s", prefix);
    row->rec.owner = xstrdup(owner);
    row->rec.name = xstrdup("");
    row->rec.meta = xstrdup("{}");
    row_scopes(row, 0, NULL);
    row->rec.created_at = 1700000000;
    row->rec.enabled = 1;
    row->rec.credits = KW_CREDITS_UNLIMITED;
    id_hash(row->hash, id, 0);
    row->has_hash = 1;
}

/* A row with every column set to something other than its default. */
static void row_make_full(kw_key_row *row, const char *id)
{
    static const char *const scopes[] = {"orders:read", "orders:*", "*"};

    row_make(row, id, "acme_live", "owner-1");
    free(row->rec.name);
    row->rec.name = xstrdup("a name with spaces");
    free(row->rec.meta);
    row->rec.meta = xstrdup("{\"a\":1,\"b\":\"x\"}");
    free(row->rec.scopes);
    row_scopes(row, 3, scopes);
    row->rec.created_at = 1700000001;
    row->rec.not_before = 1700000002;
    row->rec.expires_at = 1700000003;
    row->rec.last_used_at = 1700000004;
    row->rec.enabled = 0;
    row->rec.revoked_at = 1700000005;
    row->rec.credits = 0;
    row->rec.rate_limit = 7;
    row->rec.rate_window_ms = 1500;
    snprintf(row->credits_from, sizeof(row->credits_from), "%s", ID_D);
    row->rl_start_ms = 1700000000123LL;
    row->rl_count = 3;
    row->rl_prev = 2;
    snprintf(row->rec.rotated_from, sizeof(row->rec.rotated_from), "%s", ID_C);
    snprintf(row->rec.rotated_to, sizeof(row->rec.rotated_to), "%s", ID_X);
    row->rec.external_id = xstrdup("seed:42");
    id_hash(row->legacy_sha256, id, 100);
    row->has_legacy = 1;
    row->rec.legacy = 1;
}

static void assert_rec_equal(const kw_key_record *a, const kw_key_record *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->prefix, b->prefix);
    assert_string_equal(a->owner, b->owner);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->meta, b->meta);
    assert_int_equal(a->nscopes, b->nscopes);
    for (size_t i = 0; i < a->nscopes; i++)
        assert_string_equal(a->scopes[i], b->scopes[i]);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->not_before, b->not_before);
    assert_int_equal(a->expires_at, b->expires_at);
    assert_int_equal(a->last_used_at, b->last_used_at);
    assert_int_equal(a->enabled, b->enabled);
    assert_int_equal(a->revoked_at, b->revoked_at);
    assert_int_equal(a->credits, b->credits);
    assert_int_equal(a->rate_limit, b->rate_limit);
    assert_int_equal(a->rate_window_ms, b->rate_window_ms);
    assert_string_equal(a->rotated_from, b->rotated_from);
    assert_string_equal(a->rotated_to, b->rotated_to);
    assert_int_equal(a->legacy, b->legacy);
    if (a->external_id == NULL)
        assert_null(b->external_id);
    else
        assert_string_equal(a->external_id, b->external_id);
}

static void assert_row_equal(const kw_key_row *a, const kw_key_row *b)
{
    assert_rec_equal(&a->rec, &b->rec);
    assert_int_equal(a->has_hash, b->has_hash);
    if (a->has_hash)
        assert_memory_equal(a->hash, b->hash, 32);
    assert_int_equal(a->has_legacy, b->has_legacy);
    if (a->has_legacy)
        assert_memory_equal(a->legacy_sha256, b->legacy_sha256, 32);
    assert_string_equal(a->credits_from, b->credits_from);
    assert_int_equal(a->rl_start_ms, b->rl_start_ms);
    assert_int_equal(a->rl_count, b->rl_count);
    assert_int_equal(a->rl_prev, b->rl_prev);
}

static void insert_simple(kw_store *s, const char *id, const char *prefix, const char *owner)
{
    kw_key_row row;

    row_make(&row, id, prefix, owner);
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    kwi_key_row_clear(&row);
}

static int64_t credits_of(kw_store *s, const char *id)
{
    kw_key_row got;
    int64_t c;

    assert_int_equal(s->ops->key_get(s, id, &got), KW_OK);
    c = got.rec.credits;
    kwi_key_row_clear(&got);
    return c;
}

static void insert_with_credits(kw_store *s, const char *id, int64_t credits)
{
    kw_key_row row;

    row_make(&row, id, "kw_live", "o");
    row.rec.credits = credits;
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    kwi_key_row_clear(&row);
}

/* ---- the contract ---------------------------------------------------------- */

static void c_roundtrip_full(kw_store *s)
{
    kw_key_row row, got;

    row_make_full(&row, ID_A);
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_row_equal(&row, &got);
    kwi_key_row_clear(&got);
    kwi_key_row_clear(&row);
}

static void c_roundtrip_minimal(kw_store *s)
{
    kw_key_row row, got;

    /* Unlimited credits (NULL), no external id, no rotation, no hash but a
     * legacy one (an imported seed key), empty prefix. */
    row_make(&row, ID_B, "", "u");
    row.has_hash = 0;
    id_hash(row.legacy_sha256, ID_B, 9);
    row.has_legacy = 1;
    row.rec.legacy = 1;
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_B, &got), KW_OK);
    assert_row_equal(&row, &got);
    assert_int_equal(got.rec.credits, KW_CREDITS_UNLIMITED);
    assert_null(got.rec.external_id);
    assert_int_equal(got.has_hash, 0);
    assert_int_equal(got.rec.legacy, 1);
    kwi_key_row_clear(&got);
    kwi_key_row_clear(&row);
}

static void c_credits_null_vs_zero(kw_store *s)
{
    insert_with_credits(s, ID_A, 0);
    insert_with_credits(s, ID_B, KW_CREDITS_UNLIMITED);
    insert_with_credits(s, ID_C, 5);
    assert_int_equal(credits_of(s, ID_A), 0);
    assert_int_equal(credits_of(s, ID_B), KW_CREDITS_UNLIMITED);
    assert_int_equal(credits_of(s, ID_C), 5);
}

static void c_get_unknown(kw_store *s)
{
    kw_key_row got;
    unsigned char h[32];

    insert_simple(s, ID_A, "kw_live", "o");
    assert_int_equal(s->ops->key_get(s, ID_X, &got), KW_ERR_NOT_FOUND);
    id_hash(h, ID_X, 0);
    assert_int_equal(s->ops->key_find_hash(s, h, &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_find_legacy(s, h, &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_find_external(s, "seed:nope", &got), KW_ERR_NOT_FOUND);
}

static void c_find_by_hash_legacy_external(kw_store *s)
{
    kw_key_row row, got;

    row_make_full(&row, ID_A);
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    insert_simple(s, ID_B, "kw_live", "o");

    /* By hash: imported keys only (prefix ""); ours are found by id. */
    assert_int_equal(s->ops->key_find_hash(s, row.hash, &got), KW_ERR_NOT_FOUND);
    {
        kw_key_row imp;

        row_make(&imp, ID_C, "", "seeduser");
        assert_int_equal(s->ops->key_insert(s, &imp), KW_OK);
        assert_int_equal(s->ops->key_find_hash(s, imp.hash, &got), KW_OK);
        assert_row_equal(&imp, &got);
        kwi_key_row_clear(&got);
        kwi_key_row_clear(&imp);
    }
    assert_int_equal(s->ops->key_find_legacy(s, row.legacy_sha256, &got), KW_OK);
    assert_row_equal(&row, &got);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_external(s, "seed:42", &got), KW_OK);
    assert_row_equal(&row, &got);
    kwi_key_row_clear(&got);
    kwi_key_row_clear(&row);
}

static void c_duplicates_conflict(kw_store *s)
{
    kw_key_row row, dup, got;
    size_t n;
    kw_key_record *list;
    kw_key_filter f = {.limit = 10};

    row_make_full(&row, ID_A);
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);

    /* Same id, everything else different. */
    row_make(&dup, ID_A, "kw_live", "other");
    id_hash(dup.hash, ID_B, 0);
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);

    /* Same hash under another id, between imported keys (prefix ""). */
    row_make(&dup, ID_C, "", "other");
    assert_int_equal(s->ops->key_insert(s, &dup), KW_OK);
    kwi_key_row_clear(&dup);
    row_make(&dup, ID_B, "", "other");
    id_hash(dup.hash, ID_C, 0);
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);

    /* Same legacy hash under another id. */
    row_make(&dup, ID_B, "", "other");
    dup.has_hash = 0;
    memcpy(dup.legacy_sha256, row.legacy_sha256, 32);
    dup.has_legacy = 1;
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);

    /* Same external id under another id. */
    row_make(&dup, ID_B, "", "other");
    dup.rec.external_id = xstrdup("seed:42");
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);

    /* Nothing of the refused rows was stored; the original is intact. */
    assert_int_equal(s->ops->key_get(s, ID_B, &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_row_equal(&row, &got);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_list(s, &f, &list, &n), KW_OK);
    assert_int_equal(n, 2); /* the original and the imported ID_C */
    kw_key_records_free(list, n);
    kwi_key_row_clear(&row);
}

static void c_put_overwrites(kw_store *s)
{
    kw_key_row row, full, got;

    insert_simple(s, ID_A, "kw_live", "o");
    /* Every column replaced with the full row's values (same id). */
    row_make_full(&full, ID_A);
    assert_int_equal(s->ops->key_put(s, &full), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_row_equal(&full, &got);
    kwi_key_row_clear(&got);

    /* And back: NULL credits, no external id, no legacy, no rotation. */
    row_make(&row, ID_A, "kw_live", "o2");
    assert_int_equal(s->ops->key_put(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_row_equal(&row, &got);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_external(s, "seed:42", &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_find_legacy(s, full.legacy_sha256, &got), KW_ERR_NOT_FOUND);
    kwi_key_row_clear(&row);
    kwi_key_row_clear(&full);
}

static void c_put_unknown(kw_store *s)
{
    kw_key_row row, got;

    insert_simple(s, ID_A, "kw_live", "o");
    row_make(&row, ID_X, "kw_live", "o");
    id_hash(row.hash, ID_X, 0);
    assert_int_equal(s->ops->key_put(s, &row), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_get(s, ID_X, &got), KW_ERR_NOT_FOUND);
    kwi_key_row_clear(&row);
}

/* List with a filter; the ids returned, in order, joined by ','. */
static void list_ids(kw_store *s, const char *owner, const char *prefix, const char *after,
                     size_t limit, char *out, size_t cap)
{
    kw_key_filter f = {.owner = owner, .prefix = prefix, .after = after, .limit = limit};
    kw_key_record *recs = NULL;
    size_t n = 0, used = 0;

    assert_int_equal(s->ops->key_list(s, &f, &recs, &n), KW_OK);
    assert_true(n <= limit);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? "," : "", recs[i].id);
        assert_true(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    kw_key_records_free(recs, n);
}

static void c_list(kw_store *s)
{
    char ids[256];

    /* Creation order, which is not id order. */
    insert_simple(s, ID_C, "kw_live", "alice");
    insert_simple(s, ID_A, "kw_live", "bob");
    insert_simple(s, ID_D, "kw_test", "alice");
    insert_simple(s, ID_B, "acme", "alice");
    insert_simple(s, ID_X, "kw_live", "carol");

    list_ids(s, NULL, NULL, NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_A "," ID_D "," ID_B "," ID_X);
    list_ids(s, "alice", NULL, NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_D "," ID_B);
    list_ids(s, NULL, "kw_live", NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_A "," ID_X);
    list_ids(s, "alice", "kw_live", NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C);
    list_ids(s, "nobody", NULL, NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, "");

    /* Cursor: the keys created after it. Limit. */
    list_ids(s, NULL, NULL, ID_A, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_D "," ID_B "," ID_X);
    list_ids(s, NULL, NULL, NULL, 2, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_A);
    list_ids(s, NULL, NULL, ID_A, 2, ids, sizeof(ids));
    assert_string_equal(ids, ID_D "," ID_B);
    list_ids(s, NULL, NULL, ID_B, 2, ids, sizeof(ids));
    assert_string_equal(ids, ID_X);
    list_ids(s, NULL, NULL, ID_X, 2, ids, sizeof(ids));
    assert_string_equal(ids, "");
    list_ids(s, "alice", NULL, ID_C, 1, ids, sizeof(ids));
    assert_string_equal(ids, ID_D);
    /* A cursor of another owner's key still places the page. */
    list_ids(s, "alice", NULL, ID_A, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_D "," ID_B);
    list_ids(s, NULL, "kw_live", ID_C, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_A "," ID_X);
    list_ids(s, NULL, "kw_live", "", 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_A "," ID_X);

    /* A cursor that names no key. */
    {
        kw_key_filter f = {.after = "ZZZZZZZZZZZZ", .limit = 10};
        kw_key_record *recs = NULL;
        size_t n = 99;

        assert_int_equal(s->ops->key_list(s, &f, &recs, &n), KW_ERR_NOT_FOUND);
        assert_null(recs);
        assert_int_equal(n, 99);
    }
}

static void c_list_records_complete(kw_store *s)
{
    kw_key_filter f = {.limit = 10};
    kw_key_record *recs;
    kw_key_row row;
    size_t n;

    row_make_full(&row, ID_A);
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);
    assert_int_equal(s->ops->key_list(s, &f, &recs, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_rec_equal(&row.rec, &recs[0]);
    kw_key_records_free(recs, n);
    kwi_key_row_clear(&row);
}

static void c_spend(kw_store *s)
{
    int64_t rem = 12345;

    insert_with_credits(s, ID_A, 3);
    assert_int_equal(s->ops->key_spend(s, ID_A, 1, &rem), KW_OK);
    assert_int_equal(rem, 2);
    assert_int_equal(s->ops->key_spend(s, ID_A, 2, &rem), KW_OK);
    assert_int_equal(rem, 0);
    assert_int_equal(credits_of(s, ID_A), 0);
    /* Never below zero. */
    assert_int_equal(s->ops->key_spend(s, ID_A, 1, &rem), KW_ERR_CONFLICT);
    assert_int_equal(credits_of(s, ID_A), 0);
}

/* key_scan's visitor in the test: count each wanted id; stop on "stop". */
typedef struct scan_seen {
    int seen[3];
    size_t calls, stop_after;
} scan_seen;

static const char *const scan_ids[3] = {ID_A, ID_B, ID_C};

static kw_rc scan_visit(void *arg, const kw_key_row *row)
{
    scan_seen *v = arg;
    int hit = 0;

    assert_true(row->has_hash);
    assert_string_equal(row->rec.owner, "o");
    for (int k = 0; k < 3; k++)
        if (strcmp(row->rec.id, scan_ids[k]) == 0)
            v->seen[k]++, hit = 1;
    assert_true(hit);
    return ++v->calls == v->stop_after ? KW_ERR_IO : KW_OK;
}

/* key_scan: every row exactly once, with its hash and strings, in pages
 * of at most `limit`, the cursor carried from page to page; a visitor's
 * failure stops the scan and comes back. */
static void c_scan(kw_store *s)
{
    scan_seen v = {{0, 0, 0}, 0, 0};
    int64_t cursor = 0, count = -1;
    size_t n, total = 0;

    insert_simple(s, ID_C, "p", "o");
    insert_simple(s, ID_A, "p", "o");
    insert_simple(s, ID_B, "p", "o");
    do {
        assert_int_equal(s->ops->key_scan(s, &cursor, INT64_MAX, 2, scan_visit, &v, &n), KW_OK);
        assert_true(n <= 2);
        total += n;
        assert_true(total <= 3);
    } while (n == 2);
    assert_int_equal(total, 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(v.seen[k], 1);
    assert_int_equal(s->ops->key_scan(s, &cursor, INT64_MAX, 2, scan_visit, &v, &n), KW_OK);
    assert_int_equal(n, 0); /* past the end */
    assert_int_equal(s->ops->key_count(s, &count), KW_OK);
    assert_int_equal(count, 3);

    /* Two ranges that meet at the middle cover every row once, each
     * through its own connection. */
    {
        scan_seen w = {{0, 0, 0}, 0, 0};
        int64_t end = 0, c1 = 0, c2;
        kw_store *other = NULL;
        assert_int_equal(s->ops->key_scan_end(s, &end), KW_OK);
        assert_true(end >= 3);
        c2 = end / 2;
        assert_int_equal(s->ops->reopen(s, &other), KW_OK);
        assert_int_equal(s->ops->key_scan(s, &c1, end / 2, 10, scan_visit, &w, &n), KW_OK);
        total = n;
        assert_int_equal(other->ops->key_scan(other, &c2, end, 10, scan_visit, &w, &n), KW_OK);
        assert_int_equal(total + n, 3);
        for (int k = 0; k < 3; k++)
            assert_int_equal(w.seen[k], 1);
        other->ops->close(other);
    }

    cursor = 0;
    v.calls = 0;
    v.stop_after = 2;
    assert_int_equal(s->ops->key_scan(s, &cursor, INT64_MAX, 10, scan_visit, &v, &n), KW_ERR_IO);
    assert_int_equal(n, 1);
}

/* key_use: deltas never below zero, unlimited stays unlimited, last use
 * never moves back. */
static void c_use(kw_store *s)
{
    kw_key_row got;

    insert_with_credits(s, ID_A, 5);
    insert_simple(s, ID_B, "p", "o");
    assert_int_equal(s->ops->key_use(s, ID_A, 2, 1800000000), KW_OK);
    assert_int_equal(credits_of(s, ID_A), 3);
    assert_int_equal(s->ops->key_use(s, ID_A, 10, 1700000000), KW_OK);
    assert_int_equal(credits_of(s, ID_A), 0);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_int_equal(got.rec.last_used_at, 1800000000);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_use(s, ID_B, 4, 0), KW_OK);
    assert_int_equal(credits_of(s, ID_B), KW_CREDITS_UNLIMITED);
}

/* usage_add adds up per (key, bucket, code); usage_list filters by key and range. */
static void c_usage(kw_store *s)
{
    kw_usage_row *rows;
    size_t n;

    assert_int_equal(s->ops->usage_add(s, ID_A, 3600, 0, 2), KW_OK);
    assert_int_equal(s->ops->usage_add(s, ID_A, 3600, 0, 3), KW_OK);
    assert_int_equal(s->ops->usage_add(s, ID_A, 3600, 7, 1), KW_OK);
    assert_int_equal(s->ops->usage_add(s, ID_A, 7200, 0, 4), KW_OK);
    assert_int_equal(s->ops->usage_add(s, ID_B, 3600, 0, 9), KW_OK);
    assert_int_equal(s->ops->usage_list(s, ID_A, 0, 7200, &rows, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].bucket, 3600);
    assert_int_equal(rows[0].code, 0);
    assert_int_equal(rows[0].count, 5);
    assert_int_equal(rows[1].code, 7);
    assert_int_equal(rows[1].count, 1);
    free(rows);
    assert_int_equal(s->ops->usage_list(s, ID_A, 7200, 7201, &rows, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].count, 4);
    free(rows);
}

static void c_spend_too_much_changes_nothing(kw_store *s)
{
    int64_t rem = 0;

    insert_with_credits(s, ID_A, 5);
    assert_int_equal(s->ops->key_spend(s, ID_A, 6, &rem), KW_ERR_CONFLICT);
    assert_int_equal(credits_of(s, ID_A), 5);
    assert_int_equal(s->ops->key_spend(s, ID_A, 5, &rem), KW_OK);
    assert_int_equal(rem, 0);
    assert_int_equal(credits_of(s, ID_A), 0);
}

static void c_spend_unlimited_and_unknown(kw_store *s)
{
    int64_t rem = 0;

    insert_with_credits(s, ID_A, KW_CREDITS_UNLIMITED);
    assert_int_equal(s->ops->key_spend(s, ID_A, 1000000, &rem), KW_OK);
    assert_int_equal(rem, KW_CREDITS_UNLIMITED);
    assert_int_equal(credits_of(s, ID_A), KW_CREDITS_UNLIMITED);
    assert_int_equal(s->ops->key_spend(s, ID_X, 1, &rem), KW_ERR_NOT_FOUND);
}

static void c_spend_only_that_key(kw_store *s)
{
    int64_t rem = 0;

    insert_with_credits(s, ID_A, 10);
    insert_with_credits(s, ID_B, 10);
    assert_int_equal(s->ops->key_spend(s, ID_A, 4, &rem), KW_OK);
    assert_int_equal(rem, 6);
    assert_int_equal(credits_of(s, ID_B), 10);
}

static void c_touch(kw_store *s)
{
    kw_key_row row, got;

    row_make(&row, ID_A, "kw_live", "o");
    row.rec.rate_limit = 5;
    row.rec.rate_window_ms = 1000;
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);

    row.rec.last_used_at = 2000;
    row.rl_start_ms = 111;
    row.rl_count = 2;
    row.rl_prev = 1;
    assert_int_equal(s->ops->key_touch(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_int_equal(got.rec.last_used_at, 2000);
    assert_int_equal(got.rl_start_ms, 111);
    assert_int_equal(got.rl_count, 2);
    assert_int_equal(got.rl_prev, 1);
    kwi_key_row_clear(&got);

    /* An older use never moves last_used_at backwards; rl state is taken. */
    row.rec.last_used_at = 1000;
    row.rl_start_ms = 222;
    row.rl_count = 4;
    row.rl_prev = 0;
    assert_int_equal(s->ops->key_touch(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_int_equal(got.rec.last_used_at, 2000);
    assert_int_equal(got.rl_start_ms, 222);
    assert_int_equal(got.rl_count, 4);
    assert_int_equal(got.rl_prev, 0);
    kwi_key_row_clear(&got);

    /* Touch changes nothing else (e.g. a stale owner in the row). */
    free(row.rec.owner);
    row.rec.owner = xstrdup("stale");
    row.rec.credits = 99;
    row.rec.last_used_at = 3000;
    assert_int_equal(s->ops->key_touch(s, &row), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_int_equal(got.rec.last_used_at, 3000);
    assert_string_equal(got.rec.owner, "o");
    assert_int_equal(got.rec.credits, KW_CREDITS_UNLIMITED);
    kwi_key_row_clear(&got);
    kwi_key_row_clear(&row);
}

static void c_set_hash(kw_store *s)
{
    kw_key_row row, got;
    unsigned char h[32];

    row_make(&row, ID_A, "", "seeduser");
    row.has_hash = 0;
    id_hash(row.legacy_sha256, ID_A, 50);
    row.has_legacy = 1;
    row.rec.legacy = 1;
    assert_int_equal(s->ops->key_insert(s, &row), KW_OK);

    id_hash(h, ID_A, 77);
    assert_int_equal(s->ops->key_set_hash(s, ID_A, h), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    assert_int_equal(got.has_hash, 1);
    assert_memory_equal(got.hash, h, 32);
    assert_int_equal(got.has_legacy, 0);
    assert_int_equal(got.rec.legacy, 0);
    assert_string_equal(got.rec.owner, "seeduser");
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_legacy(s, row.legacy_sha256, &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_find_hash(s, h, &got), KW_OK);
    assert_string_equal(got.rec.id, ID_A);
    kwi_key_row_clear(&got);
    kwi_key_row_clear(&row);
}

static void c_count_imported(kw_store *s)
{
    int64_t n = -1;

    assert_int_equal(s->ops->key_count_imported(s, &n), KW_OK);
    assert_int_equal(n, 0);
    insert_simple(s, ID_A, "kw_live", "o");
    insert_simple(s, ID_B, "", "o");
    insert_simple(s, ID_C, "", "o");
    assert_int_equal(s->ops->key_count_imported(s, &n), KW_OK);
    assert_int_equal(n, 2);
}

static void c_meta(kw_store *s)
{
    unsigned char buf[64], big[40];
    size_t len = 999;

    assert_int_equal(s->ops->meta_get(s, "nope", buf, sizeof(buf), &len), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->meta_set(s, "a", "hello", 5), KW_OK);
    assert_int_equal(s->ops->meta_get(s, "a", buf, sizeof(buf), &len), KW_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);

    /* Binary values with NUL bytes survive. */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 7);
    assert_int_equal(s->ops->meta_set(s, "b", big, sizeof(big)), KW_OK);

    /* Overwrite, shorter. */
    assert_int_equal(s->ops->meta_set(s, "a", "hi", 2), KW_OK);
    assert_int_equal(s->ops->meta_get(s, "a", buf, sizeof(buf), &len), KW_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);

    assert_int_equal(s->ops->meta_get(s, "b", buf, sizeof(buf), &len), KW_OK);
    assert_int_equal(len, sizeof(big));
    assert_memory_equal(buf, big, sizeof(big));

    /* Exactly fitting buffer is fine; one byte less is an error and the
     * buffer past its cap is untouched. */
    assert_int_equal(s->ops->meta_get(s, "b", buf, sizeof(big), &len), KW_OK);
    memset(buf, 0xAB, sizeof(buf));
    len = 999;
    {
        kw_rc rc = s->ops->meta_get(s, "b", buf, sizeof(big) - 1, &len);
        assert_int_not_equal(rc, KW_OK);
        assert_int_not_equal(rc, KW_ERR_NOT_FOUND);
    }
    assert_int_equal(buf[sizeof(big) - 1], 0xAB);
}

static void audit_row(kw_audit_row *row, int64_t seq, const char *action, const char *target)
{
    memset(row, 0, sizeof(*row));
    row->r.seq = seq;
    row->r.at = 1700000000 + seq;
    row->r.actor = xstrdup("actor1");
    row->r.action = xstrdup(action);
    row->r.target = xstrdup(target);
    row->r.client = xstrdup("10.0.0.1");
    row->r.result = xstrdup("ok");
    row->r.detail = xstrdup("{\"n\":1}");
    for (size_t i = 0; i < 32; i++)
        row->mac[i] = (unsigned char)(seq * 31 + (int64_t)i);
}

static void audit_fill(kw_store *s, int64_t n)
{
    for (int64_t seq = 1; seq <= n; seq++) {
        kw_audit_row row;
        audit_row(&row, seq, seq % 2 ? "key.create" : "key.revoke", seq <= 3 ? ID_A : ID_B);
        assert_int_equal(s->ops->audit_append(s, &row), KW_OK);
        kwi_audit_record_clear(&row.r);
    }
}

/* Audit list; the seqs returned joined by ','. */
static void audit_seqs(kw_store *s, int64_t after, size_t limit, const char *action,
                       const char *target, char *out, size_t cap)
{
    kw_audit_filter f = {.after = after, .limit = limit, .action = action, .target = target};
    kw_audit_row *rows = NULL;
    size_t n = 0, used = 0;

    assert_int_equal(s->ops->audit_list(s, &f, &rows, &n), KW_OK);
    assert_true(n <= limit);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%lld", i ? "," : "", (long long)rows[i].r.seq);
        assert_true(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    kwi_audit_rows_free(rows, n);
}

static void c_audit_roundtrip(kw_store *s)
{
    kw_audit_filter f = {.limit = 10};
    kw_audit_row row, *rows;
    size_t n;

    audit_row(&row, 1, "key.create", ID_A);
    assert_int_equal(s->ops->audit_append(s, &row), KW_OK);
    assert_int_equal(s->ops->audit_list(s, &f, &rows, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].r.seq, 1);
    assert_int_equal(rows[0].r.at, row.r.at);
    assert_string_equal(rows[0].r.actor, row.r.actor);
    assert_string_equal(rows[0].r.action, row.r.action);
    assert_string_equal(rows[0].r.target, row.r.target);
    assert_string_equal(rows[0].r.client, row.r.client);
    assert_string_equal(rows[0].r.result, row.r.result);
    assert_string_equal(rows[0].r.detail, row.r.detail);
    assert_memory_equal(rows[0].mac, row.mac, 32);
    kwi_audit_rows_free(rows, n);

    /* A sequence number is written once. */
    assert_int_equal(s->ops->audit_append(s, &row), KW_ERR_CONFLICT);
    kwi_audit_record_clear(&row.r);
}

static void c_audit_list(kw_store *s)
{
    char seqs[128];

    audit_seqs(s, 0, 10, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "");
    audit_fill(s, 6);
    audit_seqs(s, 0, 100, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "1,2,3,4,5,6");
    audit_seqs(s, 0, 4, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "1,2,3,4");
    audit_seqs(s, 4, 4, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "5,6");
    audit_seqs(s, 6, 4, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "");
    audit_seqs(s, 0, 100, "key.create", NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "1,3,5");
    audit_seqs(s, 0, 100, NULL, ID_B, seqs, sizeof(seqs));
    assert_string_equal(seqs, "4,5,6");
    audit_seqs(s, 0, 100, "key.revoke", ID_A, seqs, sizeof(seqs));
    assert_string_equal(seqs, "2");
    audit_seqs(s, 2, 1, "key.create", NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "3");
    audit_seqs(s, 0, 100, "key.rotate", NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "");
}

static void c_rollback_discards(kw_store *s)
{
    kw_key_row got;
    unsigned char buf[8];
    size_t len;
    char seqs[32];

    assert_int_equal(s->ops->begin(s), KW_OK);
    insert_simple(s, ID_A, "kw_live", "o");
    assert_int_equal(s->ops->meta_set(s, "m", "x", 1), KW_OK);
    audit_fill(s, 1);
    /* Inside the transaction the writes are visible... */
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    kwi_key_row_clear(&got);
    s->ops->rollback(s);
    /* ...and gone after the rollback. */
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->meta_get(s, "m", buf, sizeof(buf), &len), KW_ERR_NOT_FOUND);
    audit_seqs(s, 0, 10, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "");
    /* A rollback with no transaction open is harmless. */
    s->ops->rollback(s);
    insert_simple(s, ID_B, "kw_live", "o");
    assert_int_equal(s->ops->key_get(s, ID_B, &got), KW_OK);
    kwi_key_row_clear(&got);
}

static void c_commit_keeps(kw_store *s)
{
    kw_key_row got;
    unsigned char buf[8];
    size_t len = 0;
    char seqs[32];
    int64_t rem;

    insert_with_credits(s, ID_B, 4);
    assert_int_equal(s->ops->begin(s), KW_OK);
    insert_simple(s, ID_A, "kw_live", "o");
    assert_int_equal(s->ops->meta_set(s, "m", "x", 1), KW_OK);
    audit_fill(s, 1);
    assert_int_equal(s->ops->key_spend(s, ID_B, 3, &rem), KW_OK);
    assert_int_equal(s->ops->commit(s), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->meta_get(s, "m", buf, sizeof(buf), &len), KW_OK);
    assert_int_equal(len, 1);
    audit_seqs(s, 0, 10, NULL, NULL, seqs, sizeof(seqs));
    assert_string_equal(seqs, "1");
    assert_int_equal(credits_of(s, ID_B), 1);

    /* A spend inside a rolled back transaction is undone. */
    assert_int_equal(s->ops->begin(s), KW_OK);
    assert_int_equal(s->ops->key_spend(s, ID_B, 1, &rem), KW_OK);
    assert_int_equal(rem, 0);
    s->ops->rollback(s);
    assert_int_equal(credits_of(s, ID_B), 1);
}

/* A statement that failed inside a transaction: SQLite goes on, PostgreSQL
 * fails the whole transaction. Either is allowed, but a commit must never
 * say it kept what it dropped. */
static void c_commit_after_failed_statement(kw_store *s)
{
    kw_key_row got;
    kw_rc rc;

    insert_simple(s, ID_B, "kw_live", "o");
    assert_int_equal(s->ops->begin(s), KW_OK);
    insert_simple(s, ID_A, "kw_live", "o");
    {
        kw_key_row dup;
        row_make(&dup, ID_B, "kw_live", "o");
        assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
        kwi_key_row_clear(&dup);
    }
    rc = s->ops->commit(s);
    s->ops->rollback(s); /* a no-op unless the commit left something open */
    if (rc == KW_OK) {
        assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
        kwi_key_row_clear(&got);
    } else {
        assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_ERR_NOT_FOUND);
    }
    /* The store is usable afterwards. */
    insert_simple(s, ID_C, "kw_live", "o");
}

/* The token keyring: rows in the order made, a kid taken once, states. */
static void c_signing_keys(kw_store *s)
{
    kwi_signing_key_row a = {.kid = 1, .kind = "hmac-sha256", .state = "active", .created_at = 10},
                        b = {.kid = 0xffffffffu,
                             .kind = "ed25519",
                             .state = "verify",
                             .created_at = 11,
                             .has_public_key = 1};
    kwi_signing_key_row *rows = NULL;
    size_t n = 0;

    a.sealed_len = 40;
    memset(a.sealed, 0xA1, a.sealed_len);
    b.sealed_len = 48;
    memset(b.sealed, 0xB2, b.sealed_len);
    memset(b.public_key, 0x5C, sizeof(b.public_key));
    assert_int_equal(s->ops->signing_key_insert(s, &a), KW_OK);
    assert_int_equal(s->ops->signing_key_insert(s, &b), KW_OK);
    assert_int_equal(s->ops->signing_key_insert(s, &a), KW_ERR_CONFLICT);
    assert_int_equal(s->ops->signing_key_state(s, 1, "retired", 99), KW_OK);
    assert_int_equal(s->ops->signing_key_state(s, 7, "retired", 99), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->signing_key_list(s, &rows, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].kid, 1);
    assert_string_equal(rows[0].kind, "hmac-sha256");
    assert_string_equal(rows[0].state, "retired");
    assert_int_equal(rows[0].retired_at, 99);
    assert_int_equal(rows[0].created_at, 10);
    assert_int_equal(rows[0].sealed_len, 40);
    assert_memory_equal(rows[0].sealed, a.sealed, 40);
    assert_false(rows[0].has_public_key);
    assert_int_equal(rows[1].kid, 0xffffffffu);
    assert_string_equal(rows[1].state, "verify");
    assert_int_equal(rows[1].retired_at, 0);
    assert_int_equal(rows[1].sealed_len, 48);
    assert_memory_equal(rows[1].sealed, b.sealed, 48);
    assert_true(rows[1].has_public_key);
    assert_memory_equal(rows[1].public_key, b.public_key, 32);
    free(rows);
}

/* Revoked token ids: each once, read back in order after a position. */
static void c_token_revocations(kw_store *s)
{
    char(*ids)[KW_ID_LEN + 1] = NULL;
    size_t n = 0;
    int64_t last = -1, again = -1;

    assert_int_equal(s->ops->token_revoke(s, "tokAAAAAAAAA", 5), KW_OK);
    assert_int_equal(s->ops->token_revoke(s, "tokBBBBBBBBB", 6), KW_OK);
    assert_int_equal(s->ops->token_revoke(s, "tokAAAAAAAAA", 7), KW_ERR_CONFLICT);
    assert_int_equal(s->ops->token_revoked(s, 0, &ids, &n, &last), KW_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "tokAAAAAAAAA");
    assert_string_equal(ids[1], "tokBBBBBBBBB");
    assert_true(last > 0);
    free(ids);
    ids = NULL;
    assert_int_equal(s->ops->token_revoked(s, last, &ids, &n, &again), KW_OK);
    assert_int_equal(n, 0);
    assert_int_equal(again, last);
    free(ids);
}

/* Secrets: a head written whole, versions with their blobs, a byte-prefix
 * list, destroy (once) and prune. */
static void c_secrets(kw_store *s)
{
    kwi_secret_head h = {.path = "app/db",
                         .current = 1,
                         .created_at = 5,
                         .updated_at = 6,
                         .keep = 10},
                    got, *heads = NULL;
    kwi_secret_version v = {.version = 1,
                            .created_at = 5,
                            .master_id = UINT64_MAX,
                            .wrapped_len = KWI_WRAPPED_LEN},
                       out, *vs = NULL;
    unsigned char sealed[20];
    size_t n = 0;

    memset(v.wrapped, 0x77, sizeof(v.wrapped));
    memset(sealed, 0x33, sizeof(sealed));
    v.sealed = sealed;
    v.sealed_len = sizeof(sealed);
    assert_int_equal(s->ops->secret_head(s, "app/db", &got), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->secret_head_put(s, &h), KW_OK);
    h.updated_at = 8; /* written whole again */
    assert_int_equal(s->ops->secret_head_put(s, &h), KW_OK);
    assert_int_equal(s->ops->secret_head(s, "app/db", &got), KW_OK);
    assert_string_equal(got.path, "app/db");
    assert_int_equal(got.updated_at, 8);
    assert_int_equal(got.keep, 10);
    assert_int_equal(s->ops->secret_version_put(s, "app/db", &v), KW_OK);
    assert_int_equal(s->ops->secret_version_get(s, "app/db", 1, &out), KW_OK);
    assert_true(out.master_id == UINT64_MAX);
    assert_int_equal(out.wrapped_len, KWI_WRAPPED_LEN);
    assert_memory_equal(out.wrapped, v.wrapped, KWI_WRAPPED_LEN);
    assert_int_equal(out.sealed_len, sizeof(sealed));
    assert_memory_equal(out.sealed, sealed, sizeof(sealed));
    free(out.sealed);
    assert_int_equal(s->ops->secret_version_get(s, "app/db", 2, &out), KW_ERR_NOT_FOUND);
    /* A prefix is bytes, not a pattern. */
    assert_int_equal(s->ops->secret_list(s, "app/", &heads, &n), KW_OK);
    assert_int_equal(n, 1);
    free(heads);
    heads = NULL;
    assert_int_equal(s->ops->secret_list(s, "app%", &heads, &n), KW_OK);
    assert_int_equal(n, 0);
    free(heads);
    assert_int_equal(s->ops->secret_version_destroy(s, "app/db", 1, 9), KW_OK);
    assert_int_equal(s->ops->secret_version_destroy(s, "app/db", 1, 9), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->secret_version_get(s, "app/db", 1, &out), KW_OK);
    assert_int_equal(out.destroyed_at, 9);
    assert_null(out.sealed);
    assert_int_equal(s->ops->secret_versions(s, "app/db", &vs, &n), KW_OK);
    assert_int_equal(n, 1);
    free(vs);
    vs = NULL;
    assert_int_equal(s->ops->secret_prune(s, "app/db", 2), KW_OK);
    assert_int_equal(s->ops->secret_versions(s, "app/db", &vs, &n), KW_OK);
    assert_int_equal(n, 0);
    free(vs);
}

typedef struct contract_case {
    const char *name;
    void (*fn)(kw_store *s);
} contract_case;

/* clang-format off */
#define CASE(f) {#f, f}
/* clang-format on */
static const contract_case contract[] = {
    CASE(c_roundtrip_full),
    CASE(c_roundtrip_minimal),
    CASE(c_credits_null_vs_zero),
    CASE(c_get_unknown),
    CASE(c_find_by_hash_legacy_external),
    CASE(c_duplicates_conflict),
    CASE(c_put_overwrites),
    CASE(c_put_unknown),
    CASE(c_list),
    CASE(c_list_records_complete),
    CASE(c_spend),
    CASE(c_scan),
    CASE(c_use),
    CASE(c_usage),
    CASE(c_spend_too_much_changes_nothing),
    CASE(c_spend_unlimited_and_unknown),
    CASE(c_spend_only_that_key),
    CASE(c_touch),
    CASE(c_set_hash),
    CASE(c_count_imported),
    CASE(c_meta),
    CASE(c_audit_roundtrip),
    CASE(c_audit_list),
    CASE(c_rollback_discards),
    CASE(c_commit_keeps),
    CASE(c_commit_after_failed_statement),
    CASE(c_signing_keys),
    CASE(c_token_revocations),
    CASE(c_secrets),
};
#define NCONTRACT (sizeof(contract) / sizeof(contract[0]))

/* cmocka glue: *state starts as the case and becomes the fixture. */
typedef struct fixture {
    const contract_case *c;
    const backend *b;
    kw_store *s;
    void *handle;
} fixture;

static const backend *current_backend;

static int contract_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->c = *state;
    f->b = current_backend;
    f->s = f->b->make(&f->handle);
    *state = f;
    return 0;
}

static int contract_teardown(void **state)
{
    fixture *f = *state;

    f->b->destroy(f->s, f->handle);
    free(f);
    return 0;
}

static void contract_run(void **state)
{
    fixture *f = *state;

    f->c->fn(f->s);
}

/* ---- SQLite schema ------------------------------------------------------- */

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s", err ? err : "?");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_schema_missing_file(void **state)
{
    char err[256] = "";
    kw_store *s = NULL;
    tmpdir t;

    (void)state;
    tmpdir_make(&t);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_ERR_NO_DATABASE);
    assert_null(s);
    assert_true(err[0] != '\0');
    /* Nothing was created. */
    assert_int_not_equal(access(t.path, F_OK), 0);
    tmpdir_remove(&t);
}

static void test_schema_create_then_reopen(void **state)
{
    char err[256] = "";
    kw_store *s = NULL;
    kw_key_row got;
    tmpdir t;

    (void)state;
    tmpdir_make(&t);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 1, err), KW_OK);
    insert_simple(s, ID_A, "kw_live", "o");
    s->ops->close(s);
    s = NULL;
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    kwi_key_row_clear(&got);
    s->ops->close(s);
    /* create on an existing database keeps its data. */
    assert_int_equal(kwi_sqlite_open(&s, t.path, 1, err), KW_OK);
    assert_int_equal(s->ops->key_get(s, ID_A, &got), KW_OK);
    kwi_key_row_clear(&got);
    s->ops->close(s);
    tmpdir_remove(&t);
}

static void test_schema_newer(void **state)
{
    char err[256] = "", sql[64];
    kw_store *s = NULL;
    tmpdir t;

    (void)state;
    tmpdir_make(&t);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 1, err), KW_OK);
    s->ops->close(s);
    s = NULL;
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", KWI_SCHEMA_VERSION + 1);
    sql_exec(t.path, sql);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_ERR_SCHEMA);
    assert_null(s);
    assert_true(err[0] != '\0');
    /* Not even with create: a newer schema is never touched. */
    assert_int_equal(kwi_sqlite_open(&s, t.path, 1, err), KW_ERR_SCHEMA);
    assert_null(s);
    tmpdir_remove(&t);
}

static void test_schema_not_keyward(void **state)
{
    char err[256] = "";
    kw_store *s = NULL;
    tmpdir t;
    FILE *fp;

    (void)state;
    tmpdir_make(&t);
    /* An empty (zero-byte) file is an empty SQLite database. */
    fp = fopen(t.path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_ERR_NO_DATABASE);
    assert_null(s);

    /* Another application's SQLite database. */
    sql_exec(t.path, "CREATE TABLE api_keys (id TEXT PRIMARY KEY); INSERT INTO api_keys VALUES "
                     "('x');");
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_ERR_NO_DATABASE);
    assert_null(s);

    /* Not SQLite at all. */
    fp = fopen(t.path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++)
        fputs("this is not a database\n", fp);
    fclose(fp);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_ERR_NO_DATABASE);
    assert_null(s);
    tmpdir_remove(&t);
}

/* A version-2 database as keyward 2026-11-28 made it, with three keys: one
 * of ours, an imported one not yet used (legacy SHA-256) and an imported
 * one already upgraded (its hash set), created in the order C, A, B. */
static const char schema_v2[] =
    "CREATE TABLE kw_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE keys ( id TEXT PRIMARY KEY NOT NULL, prefix TEXT NOT NULL, key_hash BLOB "
    "UNIQUE, legacy_sha256 BLOB UNIQUE, owner TEXT NOT NULL, name TEXT NOT NULL, scopes TEXT "
    "NOT NULL, meta TEXT NOT NULL, created_at INTEGER NOT NULL, not_before INTEGER NOT NULL "
    "DEFAULT 0, expires_at INTEGER NOT NULL DEFAULT 0, last_used_at INTEGER NOT NULL DEFAULT "
    "0, enabled INTEGER NOT NULL DEFAULT 1, revoked_at INTEGER NOT NULL DEFAULT 0, credits "
    "INTEGER, credits_from TEXT, rate_limit INTEGER NOT NULL DEFAULT 0, rate_window_ms INTEGER "
    "NOT NULL DEFAULT 0, rl_start_ms INTEGER NOT NULL DEFAULT 0, rl_count INTEGER NOT NULL "
    "DEFAULT 0, rl_prev INTEGER NOT NULL DEFAULT 0, rotated_from TEXT, rotated_to TEXT, "
    "external_id TEXT UNIQUE, CHECK (credits IS NULL OR credits >= 0));"
    "CREATE INDEX keys_owner ON keys (owner, id);"
    "CREATE INDEX keys_prefix ON keys (prefix, id);"
    "CREATE TABLE audit ( seq INTEGER PRIMARY KEY NOT NULL, at INTEGER NOT NULL, actor TEXT "
    "NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, client TEXT NOT NULL, result TEXT "
    "NOT NULL, detail TEXT NOT NULL, mac BLOB NOT NULL);"
    "CREATE TABLE key_usage ( key_id TEXT NOT NULL, bucket INTEGER NOT NULL, code INTEGER NOT "
    "NULL, count INTEGER NOT NULL, PRIMARY KEY (key_id, bucket, code)) WITHOUT ROWID;"
    "INSERT INTO keys (id, prefix, key_hash, owner, name, scopes, meta, created_at, credits, "
    "rate_limit, rate_window_ms) VALUES ('" ID_C "', 'kw_live', zeroblob(32), 'alice', 'c', "
    "'orders:read', '{}', 1700000000, 5, 10, 1000);"
    "INSERT INTO keys (id, prefix, legacy_sha256, owner, name, scopes, meta, created_at, "
    "external_id) VALUES ('" ID_A "', '', x'" HEX32_A "', 'bob', 'a', '', "
    "'{\"imported_from\":\"seed\"}', 1600000000, 'seed:1');"
    "INSERT INTO keys (id, prefix, key_hash, owner, name, scopes, meta, created_at, "
    "external_id) VALUES ('" ID_B "', '', x'" HEX32_B "', 'alice', 'b', '*', "
    "'{\"imported_from\":\"seed\"}', 1600000001, 'seed:2');"
    "INSERT INTO kw_meta VALUES ('m', 'x');"
    "PRAGMA user_version = 2;";

static int64_t sql_count(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return n;
}

static void test_schema_migrate_v2(void **state)
{
    unsigned char ha[32], hb[32];
    char err[256] = "", ids[256];
    kw_store *s = NULL;
    kw_key_row got, dup;
    size_t len;
    tmpdir t;

    (void)state;
    assert_int_equal(sodium_hex2bin(ha, 32, HEX32_A, 64, NULL, &len, NULL), 0);
    assert_int_equal(sodium_hex2bin(hb, 32, HEX32_B, 64, NULL, &len, NULL), 0);
    tmpdir_make(&t);
    sql_exec(t.path, schema_v2);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 0, err), KW_OK);

    /* Every row and column kept, in creation order. */
    list_ids(s, NULL, NULL, NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_A "," ID_B);
    list_ids(s, "alice", NULL, NULL, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_C "," ID_B);
    assert_int_equal(s->ops->key_get(s, ID_C, &got), KW_OK);
    assert_string_equal(got.rec.scopes[0], "orders:read");
    assert_int_equal(got.rec.credits, 5);
    assert_int_equal(got.rec.rate_limit, 10);
    assert_int_equal(got.rec.rate_window_ms, 1000);
    assert_int_equal(got.rec.created_at, 1700000000);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_legacy(s, ha, &got), KW_OK);
    assert_string_equal(got.rec.id, ID_A);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_hash(s, hb, &got), KW_OK);
    assert_string_equal(got.rec.id, ID_B);
    kwi_key_row_clear(&got);
    assert_int_equal(s->ops->key_find_external(s, "seed:1", &got), KW_OK);
    assert_string_equal(got.rec.id, ID_A);
    kwi_key_row_clear(&got);

    /* Still unique: ids, imported hashes, legacy hashes, external ids. */
    row_make(&dup, ID_C, "kw_live", "x");
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);
    row_make(&dup, ID_D, "", "x");
    memcpy(dup.hash, hb, 32);
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    dup.has_hash = 0;
    memcpy(dup.legacy_sha256, ha, 32);
    dup.has_legacy = 1;
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    dup.has_legacy = 0;
    dup.rec.external_id = xstrdup("seed:2");
    assert_int_equal(s->ops->key_insert(s, &dup), KW_ERR_CONFLICT);
    kwi_key_row_clear(&dup);

    /* A new key goes after the migrated ones. */
    insert_simple(s, ID_D, "kw_live", "alice");
    list_ids(s, "alice", NULL, ID_B, 100, ids, sizeof(ids));
    assert_string_equal(ids, ID_D);
    s->ops->close(s);

    assert_int_equal(sql_count(t.path, "PRAGMA user_version"), KWI_SCHEMA_VERSION);
    assert_int_equal(sql_count(t.path, "SELECT count(*) FROM kw_meta WHERE name = 'm'"), 1);
    /* Exactly the indexes of version 3 (none of them automatic). */
    assert_int_equal(sql_count(t.path, "SELECT count(*) FROM sqlite_master WHERE tbl_name = "
                                       "'keys' AND type = 'index'"),
                     6);
    assert_int_equal(sql_count(t.path, "SELECT count(*) FROM sqlite_master WHERE tbl_name = "
                                       "'keys' AND type = 'index' AND name IN ('keys_id', "
                                       "'keys_owner', 'keys_prefix', 'keys_hash', 'keys_legacy', "
                                       "'keys_external')"),
                     6);
    assert_int_equal(sql_count(t.path, "SELECT count(*) FROM sqlite_master WHERE name = "
                                       "'keys_v3'"),
                     0);
    tmpdir_remove(&t);
}

/*
 * A database its user cannot write. Root ignores file modes, so when run as
 * root the check runs in a child that drops to an unprivileged uid (nobody);
 * if that is not possible the case is skipped.
 */
static int readonly_check(const char *path)
{
    char err[256] = "";
    kw_store *s = NULL;
    kw_rc rc;

    rc = kwi_sqlite_open(&s, path, 0, err);
    if (rc == KW_ERR_READONLY)
        return 0;
    if (rc != KW_OK) {
        fprintf(stderr, "read-only open: rc %d: %s\n", rc, err);
        return 10 + (int)rc;
    }
    rc = s->ops->meta_set(s, "m", "x", 1);
    s->ops->close(s);
    if (rc != KW_ERR_READONLY) {
        fprintf(stderr, "write to read-only database: rc %d\n", rc);
        return 40 + (int)rc;
    }
    return 0;
}

static void test_schema_readonly(void **state)
{
    char err[256] = "";
    kw_store *s = NULL;
    tmpdir t;
    int status = 0;
    pid_t pid;

    (void)state;
    tmpdir_make(&t);
    assert_int_equal(kwi_sqlite_open(&s, t.path, 1, err), KW_OK);
    insert_simple(s, ID_A, "kw_live", "o");
    s->ops->close(s);
    assert_int_equal(chmod(t.path, 0444), 0);
    assert_int_equal(chmod(t.dir, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(readonly_check(t.path), 0);
    } else {
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(99);
            _exit(readonly_check(t.path));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 99) {
            assert_int_equal(chmod(t.dir, 0700), 0);
            tmpdir_remove(&t);
            skip(); /* root without CAP_SETUID: cannot make a read-only file */
        }
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(chmod(t.dir, 0700), 0);
    tmpdir_remove(&t);
}

int main(void)
{
    struct CMUnitTest tests[NCONTRACT];
    const struct CMUnitTest schema[] = {
        cmocka_unit_test(test_schema_missing_file),
        cmocka_unit_test(test_schema_create_then_reopen),
        cmocka_unit_test(test_schema_newer),
        cmocka_unit_test(test_schema_not_keyward),
        cmocka_unit_test(test_schema_migrate_v2),
        cmocka_unit_test(test_schema_readonly),
    };
    int failed = 0;

    if (kw_init() != KW_OK)
        return 1;
    for (size_t i = 0; i < NCONTRACT; i++) {
        tests[i].name = contract[i].name;
        tests[i].test_func = contract_run;
        tests[i].setup_func = contract_setup;
        tests[i].teardown_func = contract_teardown;
        tests[i].initial_state = (void *)&contract[i];
    }
    if (getenv("KW_TEST_PG_URL") != NULL) {
        current_backend = &pg_backend;
        return cmocka_run_group_tests_name(pg_backend.name, tests, NULL, NULL);
    }
    for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
        current_backend = &backends[b];
        failed += cmocka_run_group_tests_name(backends[b].name, tests, NULL, NULL);
    }
    failed += cmocka_run_group_tests_name("sqlite_schema", schema, NULL, NULL);
    return failed;
}
