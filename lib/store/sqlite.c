/*
 * The SQLite back end: WAL, prepared statements (prepared once per
 * connection), schema migrations under PRAGMA user_version.
 */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The key columns of schema versions 1 to 3, frozen for migration 3's
 * copy; KEY_COLS is what this version reads and writes. */
#define KEY_COLS_V1                                                                                \
    "id, prefix, key_hash, legacy_sha256, owner, name, scopes, meta, created_at, not_before, "     \
    "expires_at, last_used_at, enabled, revoked_at, credits, credits_from, rate_limit, "           \
    "rate_window_ms, rl_start_ms, rl_count, rl_prev, rotated_from, rotated_to, external_id"
#define KEY_COLS KEY_COLS_V1

/* Migration N brings the schema from version N-1 to N. Only ever append. */
static const char *const migrations[] = {
    NULL,
    "CREATE TABLE kw_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE keys ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " prefix TEXT NOT NULL,"
    " key_hash BLOB UNIQUE,"
    " legacy_sha256 BLOB UNIQUE,"
    " owner TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " scopes TEXT NOT NULL,"
    " meta TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " not_before INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER NOT NULL DEFAULT 0,"
    " last_used_at INTEGER NOT NULL DEFAULT 0,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " revoked_at INTEGER NOT NULL DEFAULT 0,"
    " credits INTEGER,"
    " credits_from TEXT,"
    " rate_limit INTEGER NOT NULL DEFAULT 0,"
    " rate_window_ms INTEGER NOT NULL DEFAULT 0,"
    " rl_start_ms INTEGER NOT NULL DEFAULT 0,"
    " rl_count INTEGER NOT NULL DEFAULT 0,"
    " rl_prev INTEGER NOT NULL DEFAULT 0,"
    " rotated_from TEXT,"
    " rotated_to TEXT,"
    " external_id TEXT UNIQUE,"
    " CHECK (credits IS NULL OR credits >= 0));"
    "CREATE INDEX keys_owner ON keys (owner, id);"
    "CREATE INDEX keys_prefix ON keys (prefix, id);"
    "CREATE TABLE audit ("
    " seq INTEGER PRIMARY KEY NOT NULL,"
    " at INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " client TEXT NOT NULL,"
    " result TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " mac BLOB NOT NULL);",
    /* 2: usage per key, hour and result code */
    "CREATE TABLE key_usage ("
    " key_id TEXT NOT NULL,"
    " bucket INTEGER NOT NULL,"
    " code INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY (key_id, bucket, code)) WITHOUT ROWID;",
    /* 3: one random B-tree insert per new key instead of six. Key ids are
     * random, so an index ordered by id takes each new key at a random
     * page, and a commit rewrites one page per key and per such index.
     * Only the id index needs that. The owner and prefix indexes are
     * ordered by rowid (creation order) within an owner or prefix, so a
     * new key goes at the end. key_hash is looked up only for imported
     * keys (prefix ''): ours are found by id. legacy_sha256 and
     * external_id are mostly NULL and indexed only where set. SQLite
     * cannot drop a column's UNIQUE, hence the copy (rowids kept). The id
     * index is made after the copy, not as a primary key during it: one
     * sort instead of a random insert per row (minutes at 10M keys). */
    "CREATE TABLE keys_v3 ("
    " id TEXT NOT NULL,"
    " prefix TEXT NOT NULL,"
    " key_hash BLOB,"
    " legacy_sha256 BLOB,"
    " owner TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " scopes TEXT NOT NULL,"
    " meta TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " not_before INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER NOT NULL DEFAULT 0,"
    " last_used_at INTEGER NOT NULL DEFAULT 0,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " revoked_at INTEGER NOT NULL DEFAULT 0,"
    " credits INTEGER,"
    " credits_from TEXT,"
    " rate_limit INTEGER NOT NULL DEFAULT 0,"
    " rate_window_ms INTEGER NOT NULL DEFAULT 0,"
    " rl_start_ms INTEGER NOT NULL DEFAULT 0,"
    " rl_count INTEGER NOT NULL DEFAULT 0,"
    " rl_prev INTEGER NOT NULL DEFAULT 0,"
    " rotated_from TEXT,"
    " rotated_to TEXT,"
    " external_id TEXT,"
    " CHECK (credits IS NULL OR credits >= 0));"
    "INSERT INTO keys_v3 (rowid, " KEY_COLS_V1 ") SELECT rowid, " KEY_COLS_V1
    " FROM keys ORDER BY rowid;"
    "DROP TABLE keys;"
    "ALTER TABLE keys_v3 RENAME TO keys;"
    "CREATE UNIQUE INDEX keys_id ON keys (id);"
    "CREATE INDEX keys_owner ON keys (owner);"
    "CREATE INDEX keys_prefix ON keys (prefix);"
    "CREATE UNIQUE INDEX keys_hash ON keys (key_hash) WHERE prefix = '';"
    "CREATE UNIQUE INDEX keys_legacy ON keys (legacy_sha256) WHERE legacy_sha256 IS NOT NULL;"
    "CREATE UNIQUE INDEX keys_external ON keys (external_id) WHERE external_id IS NOT NULL;",
    /* 4: the token keyring (in the order keys were made: rowid) and revoked
     * token ids (docs/tokens.md) */
    "CREATE TABLE signing_keys ("
    " kid INTEGER NOT NULL UNIQUE CHECK (kid BETWEEN 0 AND 4294967295),"
    " kind TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('active', 'verify', 'retired')),"
    " created_at INTEGER NOT NULL,"
    " retired_at INTEGER NOT NULL DEFAULT 0,"
    " sealed BLOB NOT NULL);"
    "CREATE TABLE token_revocations ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " revoked_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 5: an Ed25519 signing key's public key (NULL for other kinds) */
    "ALTER TABLE signing_keys ADD COLUMN public_key BLOB"
    " CHECK (public_key IS NULL OR length(public_key) = 32);"
    /* ... and revoked token ids in the order they were revoked (rowid), so
     * that a verifier reads only those it has not seen */
    "CREATE TABLE token_revocations_v5 ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " revoked_at INTEGER NOT NULL);"
    "INSERT INTO token_revocations_v5 (id, revoked_at)"
    " SELECT id, revoked_at FROM token_revocations ORDER BY revoked_at, id;"
    "DROP TABLE token_revocations;"
    "ALTER TABLE token_revocations_v5 RENAME TO token_revocations;",
    /* 6: secrets (docs/secrets.md): a head per secret, a row per version */
    "CREATE TABLE secrets ("
    " path TEXT PRIMARY KEY NOT NULL,"
    " current INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " deleted_at INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE secret_versions ("
    " path TEXT NOT NULL,"
    " version INTEGER NOT NULL CHECK (version > 0),"
    " created_at INTEGER NOT NULL,"
    " destroyed_at INTEGER NOT NULL DEFAULT 0,"
    " master_id INTEGER NOT NULL,"
    " wrapped BLOB,"
    " sealed BLOB,"
    " PRIMARY KEY (path, version)) WITHOUT ROWID;",
    /* 7: how many versions each secret keeps */
    "ALTER TABLE secrets ADD COLUMN keep INTEGER NOT NULL DEFAULT 10"
    " CHECK (keep BETWEEN 1 AND 100);",
};

#define KEY_PARAMS                                                                                 \
    "?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24"
#define AUDIT_COLS "seq, at, actor, action, target, client, result, detail, mac"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_META_GET,
    ST_META_SET,
    ST_KEY_INSERT,
    ST_KEY_GET,
    ST_KEY_HASH,
    ST_KEY_LEGACY,
    ST_KEY_EXTERNAL,
    ST_KEY_PUT,
    ST_KEY_LIST,
    ST_KEY_LIST_OWNER,
    ST_KEY_LIST_PREFIX,
    ST_KEY_ROWID,
    ST_KEY_SPEND,
    ST_KEY_CREDITS,
    ST_KEY_IMPORTED_COUNT,
    ST_KEY_COUNT,
    ST_KEY_LAST,
    ST_KEY_TOUCH,
    ST_KEY_SET_HASH,
    ST_KEY_SCAN,
    ST_USAGE_ADD,
    ST_USAGE_LIST,
    ST_KEY_USE,
    ST_AUDIT_APPEND,
    ST_AUDIT_LIST,
    ST_SK_INSERT,
    ST_SK_LIST,
    ST_SK_STATE,
    ST_TOKEN_REVOKE,
    ST_TOKEN_REVOKED,
    ST_SECRET_HEAD,
    ST_SECRET_HEAD_PUT,
    ST_SECRET_LIST,
    ST_SECRET_VERSION_PUT,
    ST_SECRET_VERSION_GET,
    ST_SECRET_VERSIONS,
    ST_SECRET_DESTROY,
    ST_SECRET_PRUNE,
    ST_SECRET_WRAPPED_ALL,
    ST_SECRET_REWRAP,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM kw_meta WHERE name = ?1",
    [ST_META_SET] = "INSERT INTO kw_meta (name, value) VALUES (?1, ?2) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    [ST_KEY_INSERT] = "INSERT INTO keys (" KEY_COLS ") VALUES (" KEY_PARAMS ")",
    [ST_KEY_GET] = "SELECT " KEY_COLS " FROM keys WHERE id = ?1",
    /* prefix '': the condition of the partial index keys_hash. */
    [ST_KEY_HASH] = "SELECT " KEY_COLS " FROM keys WHERE key_hash = ?1 AND prefix = ''",
    [ST_KEY_LEGACY] = "SELECT " KEY_COLS " FROM keys WHERE legacy_sha256 = ?1",
    [ST_KEY_EXTERNAL] = "SELECT " KEY_COLS " FROM keys WHERE external_id = ?1",
    [ST_KEY_PUT] = "UPDATE keys SET (" KEY_COLS ") = (" KEY_PARAMS ") WHERE id = ?1",
    /* Lists go in creation order (rowid), from after the cursor's rowid;
     * one statement per filter so that owner or prefix uses its index. */
    [ST_KEY_LIST] = "SELECT " KEY_COLS " FROM keys WHERE rowid > ?3 ORDER BY rowid LIMIT ?4",
    [ST_KEY_LIST_OWNER] = "SELECT " KEY_COLS " FROM keys WHERE owner = ?1 "
                          "AND (?2 IS NULL OR prefix = ?2) AND rowid > ?3 ORDER BY rowid LIMIT ?4",
    [ST_KEY_LIST_PREFIX] = "SELECT " KEY_COLS " FROM keys WHERE prefix = ?2 AND rowid > ?3 "
                           "ORDER BY rowid LIMIT ?4",
    [ST_KEY_ROWID] = "SELECT rowid FROM keys WHERE id = ?1",
    [ST_KEY_SPEND] = "UPDATE keys SET credits = credits - ?2 WHERE id = ?1 AND credits >= ?2 "
                     "RETURNING credits",
    [ST_KEY_CREDITS] = "SELECT credits FROM keys WHERE id = ?1",
    [ST_KEY_IMPORTED_COUNT] = "SELECT count(*) FROM keys WHERE prefix = ''",
    [ST_KEY_COUNT] = "SELECT count(*) FROM keys",
    [ST_KEY_TOUCH] = "UPDATE keys SET last_used_at = max(last_used_at, ?2), rl_start_ms = ?3, "
                     "rl_count = ?4, rl_prev = ?5 WHERE id = ?1",
    [ST_USAGE_ADD] =
        "INSERT INTO key_usage (key_id, bucket, code, count) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (key_id, bucket, code) DO UPDATE SET count = count + excluded.count",
    [ST_USAGE_LIST] =
        "SELECT bucket, code, count FROM key_usage WHERE key_id = ?1 AND bucket >= ?2 "
        "AND bucket < ?3 ORDER BY bucket, code LIMIT 100000",
    /* Storage order (rowid), not id order: ids are random, so id order would
     * read the table at random through the id index (7 s for a million
     * keys, against well under one this way). */
    [ST_KEY_SCAN] = "SELECT " KEY_COLS
                    ", rowid FROM keys WHERE rowid > ?1 AND rowid <= ?3 ORDER BY rowid LIMIT ?2",
    [ST_KEY_LAST] = "SELECT coalesce(max(rowid), 0) FROM keys",
    [ST_KEY_USE] = "UPDATE keys SET credits = CASE WHEN credits IS NULL THEN NULL "
                   "ELSE max(credits - ?2, 0) END, last_used_at = max(last_used_at, ?3) "
                   "WHERE id = ?1",
    [ST_KEY_SET_HASH] = "UPDATE keys SET key_hash = ?2, legacy_sha256 = NULL WHERE id = ?1",
    [ST_AUDIT_APPEND] = "INSERT INTO audit (" AUDIT_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    [ST_AUDIT_LIST] = "SELECT " AUDIT_COLS " FROM audit WHERE seq > ?1 "
                      "AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR target = ?3) "
                      "ORDER BY seq LIMIT ?4",
    [ST_SK_INSERT] = "INSERT INTO signing_keys (kid, kind, state, created_at, retired_at, sealed, "
                     "public_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_SK_LIST] = "SELECT kid, kind, state, created_at, retired_at, sealed, public_key "
                   "FROM signing_keys ORDER BY rowid",
    [ST_SK_STATE] = "UPDATE signing_keys SET state = ?2, retired_at = "
                    "CASE WHEN ?2 = 'retired' THEN ?3 ELSE retired_at END WHERE kid = ?1",
    [ST_TOKEN_REVOKE] = "INSERT INTO token_revocations (id, revoked_at) VALUES (?1, ?2)",
    [ST_SECRET_HEAD] = "SELECT path, current, created_at, updated_at, deleted_at, keep FROM "
                       "secrets WHERE path = ?1",
    [ST_SECRET_HEAD_PUT] = "INSERT OR REPLACE INTO secrets (path, current, created_at, updated_at, "
                           "deleted_at, keep) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_SECRET_LIST] = "SELECT path, current, created_at, updated_at, deleted_at, keep FROM "
                       "secrets WHERE substr(path, 1, length(?1)) = ?1 ORDER BY path",
    [ST_SECRET_VERSION_PUT] = "INSERT INTO secret_versions (path, version, created_at, "
                              "destroyed_at, master_id, wrapped, sealed) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_SECRET_VERSION_GET] =
        "SELECT version, created_at, destroyed_at, master_id, wrapped, sealed "
        "FROM secret_versions WHERE path = ?1 AND version = ?2",
    [ST_SECRET_VERSIONS] = "SELECT version, created_at, destroyed_at, master_id FROM "
                           "secret_versions WHERE path = ?1 ORDER BY version DESC",
    [ST_SECRET_DESTROY] = "UPDATE secret_versions SET destroyed_at = ?3, wrapped = NULL, "
                          "sealed = NULL WHERE path = ?1 AND version = ?2 AND destroyed_at = 0",
    [ST_SECRET_PRUNE] = "DELETE FROM secret_versions WHERE path = ?1 AND version < ?2",
    [ST_SECRET_WRAPPED_ALL] = "SELECT path, version, created_at, destroyed_at, master_id, wrapped "
                              "FROM secret_versions WHERE destroyed_at = 0 ORDER BY path, version",
    [ST_SECRET_REWRAP] = "UPDATE secret_versions SET wrapped = ?3, master_id = ?4 "
                         "WHERE path = ?1 AND version = ?2",
    [ST_TOKEN_REVOKED] = "SELECT rowid, id FROM token_revocations WHERE rowid > ?1 ORDER BY rowid",
};

typedef struct sqlite_store {
    kw_store base;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char *path; /* for another connection (reopen) */
} sqlite_store;

static kw_rc map_err(sqlite_store *s, int rc)
{
    int primary = rc & 0xff;

    snprintf(s->base.errmsg, sizeof(s->base.errmsg), "sqlite: %s",
             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    switch (primary) {
    case SQLITE_READONLY: return KW_ERR_READONLY;
    case SQLITE_NOMEM: return KW_ERR_NOMEM;
    case SQLITE_CONSTRAINT: return KW_ERR_CONFLICT;
    case SQLITE_NOTADB: return KW_ERR_NO_DATABASE;
    default: return KW_ERR_STORAGE;
    }
}

/* Run a prepared statement that returns no rows. */
static kw_rc exec_stmt(sqlite_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? KW_OK : map_err(s, rc);
}

static void sq_close(kw_store *base)
{
    sqlite_store *s = (sqlite_store *)base;

    if (s == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

static kw_rc sq_begin(kw_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    return exec_stmt(s, s->st[ST_BEGIN]);
}

static kw_rc sq_commit(kw_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    kw_rc rc = exec_stmt(s, s->st[ST_COMMIT]);

    if (rc != KW_OK && !sqlite3_get_autocommit(s->db))
        exec_stmt(s, s->st[ST_ROLLBACK]);
    return rc;
}

static void sq_rollback(kw_store *base)
{
    sqlite_store *s = (sqlite_store *)base;

    if (!sqlite3_get_autocommit(s->db))
        (void)exec_stmt(s, s->st[ST_ROLLBACK]);
}

static kw_rc sq_meta_get(kw_store *base, const char *name, unsigned char *buf, size_t cap,
                         size_t *len)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_META_GET];
    kw_rc ret = KW_ERR_NOT_FOUND;
    int rc;

    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        if (n > cap) {
            snprintf(base->errmsg, sizeof(base->errmsg), "meta value %s too large", name);
            ret = KW_ERR_STORAGE;
        } else {
            if (n > 0)
                memcpy(buf, sqlite3_column_blob(st, 0), n);
            *len = n;
            ret = KW_OK;
        }
    } else if (rc != SQLITE_DONE) {
        ret = map_err(s, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static kw_rc sq_meta_set(kw_store *base, const char *name, const void *val, size_t len)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_META_SET];

    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, val, (int)len, SQLITE_STATIC);
    return exec_stmt(s, st);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL || v[0] == '\0')
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Bind every column of a row as ?1..?24; strings bound must outlive the step. */
static void bind_row(sqlite3_stmt *st, const kw_key_row *row, const char *scopes)
{
    const kw_key_record *r = &row->rec;

    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->prefix, -1, SQLITE_STATIC);
    if (row->has_hash)
        sqlite3_bind_blob(st, 3, row->hash, 32, SQLITE_STATIC);
    if (row->has_legacy)
        sqlite3_bind_blob(st, 4, row->legacy_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, scopes, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, r->meta, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, r->created_at);
    sqlite3_bind_int64(st, 10, r->not_before);
    sqlite3_bind_int64(st, 11, r->expires_at);
    sqlite3_bind_int64(st, 12, r->last_used_at);
    sqlite3_bind_int(st, 13, r->enabled ? 1 : 0);
    sqlite3_bind_int64(st, 14, r->revoked_at);
    if (r->credits != KW_CREDITS_UNLIMITED)
        sqlite3_bind_int64(st, 15, r->credits);
    bind_text_or_null(st, 16, row->credits_from);
    sqlite3_bind_int64(st, 17, r->rate_limit);
    sqlite3_bind_int64(st, 18, r->rate_window_ms);
    sqlite3_bind_int64(st, 19, row->rl_start_ms);
    sqlite3_bind_int64(st, 20, row->rl_count);
    sqlite3_bind_int64(st, 21, row->rl_prev);
    bind_text_or_null(st, 22, r->rotated_from);
    bind_text_or_null(st, 23, r->rotated_to);
    bind_text_or_null(st, 24, r->external_id);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t == NULL ? "" : (const char *)t;
}

static void col_copy(char *dst, size_t cap, sqlite3_stmt *st, int i)
{
    kwi_strlcpy(dst, col_text(st, i), cap);
}

static void col_blob32(unsigned char out[32], int *has, sqlite3_stmt *st, int i)
{
    *has = sqlite3_column_type(st, i) == SQLITE_BLOB && sqlite3_column_bytes(st, i) == 32;
    if (*has)
        memcpy(out, sqlite3_column_blob(st, i), 32);
}

/* Read the current row of a KEY_COLS statement. */
/* The columns of a key row that are not strings of their own. */
static void read_fixed(sqlite3_stmt *st, kw_key_row *row)
{
    kw_key_record *r = &row->rec;

    col_copy(r->id, sizeof(r->id), st, 0);
    col_copy(r->prefix, sizeof(r->prefix), st, 1);
    col_blob32(row->hash, &row->has_hash, st, 2);
    col_blob32(row->legacy_sha256, &row->has_legacy, st, 3);
    r->created_at = sqlite3_column_int64(st, 8);
    r->not_before = sqlite3_column_int64(st, 9);
    r->expires_at = sqlite3_column_int64(st, 10);
    r->last_used_at = sqlite3_column_int64(st, 11);
    r->enabled = sqlite3_column_int(st, 12) != 0;
    r->revoked_at = sqlite3_column_int64(st, 13);
    r->credits = sqlite3_column_type(st, 14) == SQLITE_NULL ? KW_CREDITS_UNLIMITED
                                                            : sqlite3_column_int64(st, 14);
    col_copy(row->credits_from, sizeof(row->credits_from), st, 15);
    r->rate_limit = (uint32_t)sqlite3_column_int64(st, 16);
    r->rate_window_ms = (uint32_t)sqlite3_column_int64(st, 17);
    row->rl_start_ms = sqlite3_column_int64(st, 18);
    row->rl_count = sqlite3_column_int64(st, 19);
    row->rl_prev = sqlite3_column_int64(st, 20);
    col_copy(r->rotated_from, sizeof(r->rotated_from), st, 21);
    col_copy(r->rotated_to, sizeof(r->rotated_to), st, 22);
    r->legacy = row->has_legacy;
}

static kw_rc read_row(sqlite3_stmt *st, kw_key_row *row)
{
    kw_key_record *r = &row->rec;

    memset(row, 0, sizeof(*row));
    read_fixed(st, row);
    r->owner = strdup(col_text(st, 4));
    r->name = strdup(col_text(st, 5));
    r->meta = strdup(col_text(st, 7));
    if (r->owner == NULL || r->name == NULL || r->meta == NULL ||
        kwi_scopes_split(col_text(st, 6), &r->scopes, &r->nscopes) != KW_OK)
        goto oom;
    if (sqlite3_column_type(st, 23) != SQLITE_NULL) {
        r->external_id = strdup(col_text(st, 23));
        if (r->external_id == NULL)
            goto oom;
    }
    return KW_OK;
oom:
    kwi_key_row_clear(row);
    return KW_ERR_NOMEM;
}

/* A row whose strings are borrowed: SQLite's column text (valid until the
 * next step) and the scratch. Nothing to free. */
static kw_rc read_row_borrowed(sqlite3_stmt *st, kw_key_row *row, kwi_scope_scratch *sc)
{
    kw_key_record *r = &row->rec;
    size_t len = (size_t)sqlite3_column_bytes(st, 6);

    memset(row, 0, sizeof(*row));
    read_fixed(st, row);
    r->owner = (char *)col_text(st, 4);
    r->name = (char *)col_text(st, 5);
    r->meta = (char *)col_text(st, 7);
    if (sqlite3_column_type(st, 23) != SQLITE_NULL)
        r->external_id = (char *)col_text(st, 23);
    return kwi_scopes_borrow(sc, col_text(st, 6), len, r);
}

static kw_rc write_row(sqlite_store *s, sqlite3_stmt *st, const kw_key_row *row, int must_change)
{
    char *scopes = kwi_scopes_join(row->rec.scopes, row->rec.nscopes);
    kw_rc rc;

    if (scopes == NULL)
        return KW_ERR_NOMEM;
    bind_row(st, row, scopes);
    rc = exec_stmt(s, st);
    free(scopes);
    if (rc == KW_OK && must_change && sqlite3_changes(s->db) == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no key %s", row->rec.id);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

static kw_rc sq_key_insert(kw_store *base, const kw_key_row *row)
{
    sqlite_store *s = (sqlite_store *)base;
    return write_row(s, s->st[ST_KEY_INSERT], row, 0);
}

static kw_rc sq_key_put(kw_store *base, const kw_key_row *row)
{
    sqlite_store *s = (sqlite_store *)base;
    return write_row(s, s->st[ST_KEY_PUT], row, 1);
}

/* Step a statement expected to give at most one KEY_COLS row. */
static kw_rc fetch_one(sqlite_store *s, sqlite3_stmt *st, kw_key_row *out)
{
    int rc = sqlite3_step(st);
    kw_rc ret;

    if (rc == SQLITE_ROW)
        ret = read_row(st, out);
    else if (rc == SQLITE_DONE)
        ret = KW_ERR_NOT_FOUND;
    else
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static kw_rc sq_key_get(kw_store *base, const char *id, kw_key_row *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_GET];

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return fetch_one(s, st, out);
}

static kw_rc sq_key_find_hash(kw_store *base, const unsigned char hash[32], kw_key_row *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_HASH];

    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    return fetch_one(s, st, out);
}

static kw_rc sq_key_find_legacy(kw_store *base, const unsigned char sha[32], kw_key_row *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_LEGACY];

    sqlite3_bind_blob(st, 1, sha, 32, SQLITE_STATIC);
    return fetch_one(s, st, out);
}

static kw_rc sq_key_find_external(kw_store *base, const char *external_id, kw_key_row *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_EXTERNAL];

    sqlite3_bind_text(st, 1, external_id, -1, SQLITE_STATIC);
    return fetch_one(s, st, out);
}

static kw_rc sq_key_list(kw_store *base, const kw_key_filter *f, kw_key_record **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_LIST];
    kw_key_record *recs;
    size_t count = 0;
    sqlite3_int64 after = 0;
    kw_rc ret = KW_OK;
    int rc;

    if (f->after != NULL && f->after[0] != '\0') { /* the cursor's place */
        sqlite3_stmt *q = s->st[ST_KEY_ROWID];

        sqlite3_bind_text(q, 1, f->after, -1, SQLITE_STATIC);
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
            after = sqlite3_column_int64(q, 0);
        ret = rc == SQLITE_ROW ? KW_OK : rc == SQLITE_DONE ? KW_ERR_NOT_FOUND : map_err(s, rc);
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        if (ret != KW_OK)
            return ret;
    }
    if (f->owner != NULL)
        st = s->st[ST_KEY_LIST_OWNER];
    else if (f->prefix != NULL)
        st = s->st[ST_KEY_LIST_PREFIX];
    recs = calloc(f->limit, sizeof(*recs));
    if (recs == NULL)
        return KW_ERR_NOMEM;
    bind_text_or_null(st, 1, f->owner);
    bind_text_or_null(st, 2, f->prefix);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)f->limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && count < f->limit) {
        kw_key_row row;
        ret = read_row(st, &row);
        if (ret != KW_OK)
            break;
        recs[count++] = row.rec;
    }
    if (ret == KW_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != KW_OK) {
        kw_key_records_free(recs, count);
        return ret;
    }
    *out = recs;
    *n = count;
    return KW_OK;
}

static kw_rc sq_key_scan(kw_store *base, int64_t *cursor, int64_t end, size_t limit,
                         kw_rc (*fn)(void *arg, const kw_key_row *row), void *arg, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_SCAN];
    kwi_scope_scratch *sc = malloc(sizeof(*sc));
    size_t count = 0;
    kw_rc ret = KW_OK;
    int rc = SQLITE_DONE;

    if (sc == NULL)
        return KW_ERR_NOMEM;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)*cursor);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)end);
    while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        kw_key_row row;
        ret = read_row_borrowed(st, &row, sc);
        if (ret == KW_OK)
            ret = fn(arg, &row);
        if (ret != KW_OK)
            break;
        *cursor = sqlite3_column_int64(st, 24);
        count++;
    }
    if (ret == KW_OK && count < limit && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(sc);
    *n = count;
    return ret;
}

static kw_rc sq_usage_add(kw_store *base, const char *id, int64_t bucket, int code, int64_t n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_USAGE_ADD];

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, bucket);
    sqlite3_bind_int(st, 3, code);
    sqlite3_bind_int64(st, 4, n);
    return exec_stmt(s, st);
}

static kw_rc sq_usage_list(kw_store *base, const char *id, int64_t from, int64_t to,
                           kw_usage_row **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_USAGE_LIST];
    kw_usage_row *rows = NULL;
    size_t count = 0, cap = 0;
    kw_rc ret = KW_OK;
    int rc;

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            kw_usage_row *g = realloc(rows, (cap = cap ? cap * 2 : 64) * sizeof(*rows));
            if (g == NULL) {
                ret = KW_ERR_NOMEM;
                break;
            }
            rows = g;
        }
        rows[count].bucket = sqlite3_column_int64(st, 0);
        rows[count].code = sqlite3_column_int(st, 1);
        rows[count].count = sqlite3_column_int64(st, 2);
        count++;
    }
    if (ret == KW_OK && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != KW_OK) {
        free(rows);
        return ret;
    }
    *out = rows;
    *n = count;
    return KW_OK;
}

static kw_rc sq_key_use(kw_store *base, const char *id, int64_t spent, int64_t last_used_at)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_USE];

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, spent);
    sqlite3_bind_int64(st, 3, last_used_at);
    return exec_stmt(s, st);
}

static kw_rc sq_key_spend(kw_store *base, const char *id, int64_t cost, int64_t *remaining)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_SPEND];
    kw_rc ret;
    int rc;

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, cost);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *remaining = sqlite3_column_int64(st, 0);
        ret = KW_OK;
    } else if (rc == SQLITE_DONE) {
        ret = KW_ERR_CONFLICT;
    } else {
        ret = map_err(s, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != KW_ERR_CONFLICT)
        return ret;

    /* No row changed: unlimited credits, too few, or no such key. */
    st = s->st[ST_KEY_CREDITS];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL) {
        *remaining = KW_CREDITS_UNLIMITED;
        ret = KW_OK;
    } else if (rc == SQLITE_ROW) {
        *remaining = sqlite3_column_int64(st, 0);
        ret = KW_ERR_CONFLICT;
    } else if (rc == SQLITE_DONE) {
        ret = KW_ERR_NOT_FOUND;
    } else {
        ret = map_err(s, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static kw_rc sq_key_touch(kw_store *base, const kw_key_row *row)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_TOUCH];

    sqlite3_bind_text(st, 1, row->rec.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, row->rec.last_used_at);
    sqlite3_bind_int64(st, 3, row->rl_start_ms);
    sqlite3_bind_int64(st, 4, row->rl_count);
    sqlite3_bind_int64(st, 5, row->rl_prev);
    return exec_stmt(s, st);
}

static kw_rc sq_key_set_hash(kw_store *base, const char *id, const unsigned char hash[32])
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_KEY_SET_HASH];

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    return exec_stmt(s, st);
}

static kw_rc count_of(sqlite_store *s, sqlite3_stmt *st, int64_t *n)
{
    int rc = sqlite3_step(st);
    kw_rc ret = KW_OK;

    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    else
        ret = map_err(s, rc);
    sqlite3_reset(st);
    return ret;
}

static kw_rc sq_key_count_imported(kw_store *base, int64_t *n)
{
    sqlite_store *s = (sqlite_store *)base;

    return count_of(s, s->st[ST_KEY_IMPORTED_COUNT], n);
}

static kw_rc sq_key_count(kw_store *base, int64_t *n)
{
    sqlite_store *s = (sqlite_store *)base;

    return count_of(s, s->st[ST_KEY_COUNT], n);
}

static kw_rc sq_key_scan_end(kw_store *base, int64_t *end)
{
    sqlite_store *s = (sqlite_store *)base;

    return count_of(s, s->st[ST_KEY_LAST], end);
}

/* A deferring connection still checkpoints inline at this log size (in
 * pages: 32 MiB at 4 KiB). Needed, not only a safety net: under a steady
 * stream of commits a checkpoint from another connection never finds the
 * log wholly copied, and only then does the next commit start the log over
 * (seen: 270 MB of log at a limit of 65536). By this size the background
 * checkpoints have copied nearly all of it, so the inline one is short. */
#define WAL_DEFERRED_LIMIT 8192

static kw_rc sq_wal_defer(kw_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    int rc = sqlite3_wal_autocheckpoint(s->db, WAL_DEFERRED_LIMIT);

    return rc == SQLITE_OK ? KW_OK : map_err(s, rc);
}

static kw_rc sq_wal_checkpoint(kw_store *base, int64_t *log_frames, int64_t *copied)
{
    sqlite_store *s = (sqlite_store *)base;
    int log = 0, ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt);

    /* BUSY: another connection is checkpointing; it copies what this would. */
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        return map_err(s, rc);
    if (log_frames != NULL)
        *log_frames = log < 0 ? 0 : log;
    if (copied != NULL)
        *copied = ckpt < 0 ? 0 : ckpt;
    return KW_OK;
}

static kw_rc sq_signing_key_insert(kw_store *base, const kwi_signing_key_row *row)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SK_INSERT];

    sqlite3_bind_int64(st, 1, row->kid);
    sqlite3_bind_text(st, 2, row->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, row->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, row->created_at);
    sqlite3_bind_int64(st, 5, row->retired_at);
    sqlite3_bind_blob(st, 6, row->sealed, (int)row->sealed_len, SQLITE_STATIC);
    if (row->has_public_key)
        sqlite3_bind_blob(st, 7, row->public_key, sizeof(row->public_key), SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    return exec_stmt(s, st);
}

/* Copy a text column into a fixed buffer; 0 if it does not fit. */
static int col_into(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    if (v == NULL || n >= cap)
        return 0;
    memcpy(dst, v, n + 1);
    return 1;
}

static kw_rc sq_signing_key_list(kw_store *base, kwi_signing_key_row **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SK_LIST];
    kwi_signing_key_row *rows = NULL, *grown;
    size_t count = 0, cap = 0;
    kw_rc ret = KW_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kwi_signing_key_row *r;
        int sealed_len = sqlite3_column_bytes(st, 5), pk_len = sqlite3_column_bytes(st, 6);

        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            if ((grown = realloc(rows, cap * sizeof(*rows))) == NULL) {
                ret = KW_ERR_NOMEM;
                break;
            }
            rows = grown;
        }
        r = &rows[count];
        memset(r, 0, sizeof(*r));
        r->kid = (uint32_t)sqlite3_column_int64(st, 0);
        r->created_at = sqlite3_column_int64(st, 3);
        r->retired_at = sqlite3_column_int64(st, 4);
        if (!col_into(st, 1, r->kind, sizeof(r->kind)) ||
            !col_into(st, 2, r->state, sizeof(r->state)) || sealed_len < 0 ||
            (size_t)sealed_len > sizeof(r->sealed) ||
            (pk_len != 0 && (size_t)pk_len != sizeof(r->public_key))) {
            snprintf(s->base.errmsg, sizeof(s->base.errmsg), "signing key %08x: damaged row",
                     (unsigned)r->kid);
            ret = KW_ERR_STORAGE;
            break;
        }
        if (sealed_len > 0)
            memcpy(r->sealed, sqlite3_column_blob(st, 5), (size_t)sealed_len);
        r->sealed_len = (size_t)sealed_len;
        if ((r->has_public_key = pk_len > 0))
            memcpy(r->public_key, sqlite3_column_blob(st, 6), sizeof(r->public_key));
        count++;
    }
    if (ret == KW_OK && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    if (ret != KW_OK) {
        if (rows != NULL)
            sodium_memzero(rows, count * sizeof(*rows));
        free(rows);
        return ret;
    }
    *out = rows;
    *n = count;
    return KW_OK;
}

static kw_rc sq_signing_key_state(kw_store *base, uint32_t kid, const char *state, int64_t at)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SK_STATE];
    kw_rc rc;

    sqlite3_bind_int64(st, 1, kid);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, at);
    rc = exec_stmt(s, st);
    if (rc == KW_OK && sqlite3_changes(s->db) == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no signing key %08x", (unsigned)kid);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

static kw_rc sq_token_revoke(kw_store *base, const char *id, int64_t at)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_TOKEN_REVOKE];

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, at);
    return exec_stmt(s, st);
}

static kw_rc sq_token_revoked(kw_store *base, int64_t after, char (**out)[KW_ID_LEN + 1], size_t *n,
                              int64_t *last)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_TOKEN_REVOKED];
    char(*ids)[KW_ID_LEN + 1] = NULL, (*grown)[KW_ID_LEN + 1];
    size_t count = 0, cap = 0;
    kw_rc ret = KW_OK;
    int rc;

    *last = after;
    sqlite3_bind_int64(st, 1, after);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *last = sqlite3_column_int64(st, 0);
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            if ((grown = realloc(ids, cap * sizeof(*ids))) == NULL) {
                ret = KW_ERR_NOMEM;
                break;
            }
            ids = grown;
        }
        if (!col_into(st, 1, ids[count], sizeof(ids[count])))
            continue; /* not an id: cannot match one */
        count++;
    }
    if (ret == KW_OK && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    if (ret != KW_OK) {
        free(ids);
        return ret;
    }
    *out = ids;
    *n = count;
    return KW_OK;
}

/* ---- secrets ------------------------------------------------------------------- */

static void head_of(sqlite3_stmt *st, kwi_secret_head *h)
{
    memset(h, 0, sizeof(*h));
    col_into(st, 0, h->path, sizeof(h->path));
    h->current = sqlite3_column_int64(st, 1);
    h->created_at = sqlite3_column_int64(st, 2);
    h->updated_at = sqlite3_column_int64(st, 3);
    h->deleted_at = sqlite3_column_int64(st, 4);
    h->keep = sqlite3_column_int64(st, 5);
}

static kw_rc sq_secret_head(kw_store *base, const char *path, kwi_secret_head *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_HEAD];
    int rc;

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        head_of(st, out);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW)
        return KW_OK;
    if (rc == SQLITE_DONE) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no secret at %s", path);
        return KW_ERR_NOT_FOUND;
    }
    return map_err(s, rc);
}

static kw_rc sq_secret_head_put(kw_store *base, const kwi_secret_head *h)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_HEAD_PUT];

    sqlite3_bind_text(st, 1, h->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, h->current);
    sqlite3_bind_int64(st, 3, h->created_at);
    sqlite3_bind_int64(st, 4, h->updated_at);
    sqlite3_bind_int64(st, 5, h->deleted_at);
    sqlite3_bind_int64(st, 6, h->keep);
    return exec_stmt(s, st);
}

/* Every row st gives, each filled in by fill into an element of `size`
 * bytes of a new array (*out, free()); st is reset and unbound after. */
static kw_rc collect(sqlite_store *s, sqlite3_stmt *st, size_t size,
                     void (*fill)(sqlite3_stmt *, void *), void **out, size_t *n)
{
    unsigned char *v = NULL, *grown;
    size_t count = 0, cap = 0;
    kw_rc ret = KW_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            if ((grown = realloc(v, cap * size)) == NULL) {
                ret = KW_ERR_NOMEM;
                break;
            }
            v = grown;
        }
        fill(st, v + count++ * size);
    }
    if (ret == KW_OK && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != KW_OK) {
        free(v);
        return ret;
    }
    *out = v;
    *n = count;
    return KW_OK;
}

static void head_fill(sqlite3_stmt *st, void *h)
{
    head_of(st, h);
}

static kw_rc sq_secret_list(kw_store *base, const char *prefix, kwi_secret_head **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_LIST];

    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    return collect(s, st, sizeof(**out), head_fill, (void **)out, n);
}

static kw_rc sq_secret_version_put(kw_store *base, const char *path, const kwi_secret_version *v)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_VERSION_PUT];

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v->version);
    sqlite3_bind_int64(st, 3, v->created_at);
    sqlite3_bind_int64(st, 4, v->destroyed_at);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)v->master_id);
    sqlite3_bind_blob(st, 6, v->wrapped, (int)v->wrapped_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, v->sealed, (int)v->sealed_len, SQLITE_STATIC);
    return exec_stmt(s, st);
}

static void version_of(sqlite3_stmt *st, kwi_secret_version *v)
{
    memset(v, 0, sizeof(*v));
    v->version = sqlite3_column_int64(st, 0);
    v->created_at = sqlite3_column_int64(st, 1);
    v->destroyed_at = sqlite3_column_int64(st, 2);
    v->master_id = (uint64_t)sqlite3_column_int64(st, 3);
}

static kw_rc sq_secret_version_get(kw_store *base, const char *path, int64_t version,
                                   kwi_secret_version *out)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_VERSION_GET];
    kw_rc ret = KW_OK;
    int rc;

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int wl = sqlite3_column_bytes(st, 4), sl = sqlite3_column_bytes(st, 5);
        version_of(st, out);
        if (wl < 0 || (size_t)wl > sizeof(out->wrapped) || sl < 0) {
            snprintf(s->base.errmsg, sizeof(s->base.errmsg), "secret %s: damaged row", path);
            ret = KW_ERR_STORAGE;
        } else {
            if (wl > 0)
                memcpy(out->wrapped, sqlite3_column_blob(st, 4), (size_t)wl);
            out->wrapped_len = (size_t)wl;
            if (sl > 0 && (out->sealed = malloc((size_t)sl)) == NULL)
                ret = KW_ERR_NOMEM;
            else if (sl > 0)
                memcpy(out->sealed, sqlite3_column_blob(st, 5), (size_t)sl);
            out->sealed_len = (size_t)sl;
        }
    } else if (rc == SQLITE_DONE) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no version %lld of %s",
                 (long long)version, path);
        ret = KW_ERR_NOT_FOUND;
    } else {
        ret = map_err(s, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static void version_fill(sqlite3_stmt *st, void *v)
{
    version_of(st, v);
}

static kw_rc sq_secret_versions(kw_store *base, const char *path, kwi_secret_version **out,
                                size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_VERSIONS];

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    return collect(s, st, sizeof(**out), version_fill, (void **)out, n);
}

static kw_rc sq_secret_version_destroy(kw_store *base, const char *path, int64_t version,
                                       int64_t at)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_DESTROY];
    kw_rc rc;

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int64(st, 3, at);
    rc = exec_stmt(s, st);
    if (rc == KW_OK && sqlite3_changes(s->db) == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg),
                 "no version %lld of %s, or it is destroyed already", (long long)version, path);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

static kw_rc sq_secret_prune(kw_store *base, const char *path, int64_t below)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_PRUNE];

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, below);
    return exec_stmt(s, st);
}

static kw_rc sq_secret_wrapped_all(kw_store *base, kwi_secret_head **paths,
                                   kwi_secret_version **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_WRAPPED_ALL];
    kwi_secret_version *v = NULL, *gv;
    kwi_secret_head *p = NULL, *gp;
    size_t count = 0, cap = 0;
    kw_rc ret = KW_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int wl = sqlite3_column_bytes(st, 5);
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            gv = realloc(v, cap * sizeof(*v));
            if (gv != NULL)
                v = gv;
            gp = gv != NULL ? realloc(p, cap * sizeof(*p)) : NULL;
            if (gp == NULL) {
                ret = KW_ERR_NOMEM;
                break;
            }
            p = gp;
        }
        memset(&p[count], 0, sizeof(p[count]));
        memset(&v[count], 0, sizeof(v[count]));
        col_into(st, 0, p[count].path, sizeof(p[count].path));
        v[count].version = sqlite3_column_int64(st, 1);
        v[count].created_at = sqlite3_column_int64(st, 2);
        v[count].destroyed_at = sqlite3_column_int64(st, 3);
        v[count].master_id = (uint64_t)sqlite3_column_int64(st, 4);
        if (wl < 0 || (size_t)wl > sizeof(v[count].wrapped)) {
            snprintf(s->base.errmsg, sizeof(s->base.errmsg), "secret %.200s: damaged row",
                     p[count].path);
            ret = KW_ERR_STORAGE;
            break;
        }
        if (wl > 0)
            memcpy(v[count].wrapped, sqlite3_column_blob(st, 5), (size_t)wl);
        v[count].wrapped_len = (size_t)wl;
        count++;
    }
    if (ret == KW_OK && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    if (ret != KW_OK) {
        free(v);
        free(p);
        return ret;
    }
    *paths = p;
    *out = v;
    *n = count;
    return KW_OK;
}

static kw_rc sq_secret_rewrap(kw_store *base, const char *path, int64_t version,
                              const unsigned char *wrapped, size_t len, uint64_t master_id)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_SECRET_REWRAP];

    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_blob(st, 3, wrapped, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)master_id);
    return exec_stmt(s, st);
}

static kw_rc sq_reopen(kw_store *base, kw_store **out)
{
    sqlite_store *s = (sqlite_store *)base;
    char err[256];
    kw_rc rc = kwi_sqlite_open(out, s->path, 0, err);

    if (rc != KW_OK)
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "%s", err);
    return rc;
}

static kw_rc sq_audit_append(kw_store *base, const kw_audit_row *row)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_AUDIT_APPEND];
    const kw_audit_record *r = &row->r;

    sqlite3_bind_int64(st, 1, r->seq);
    sqlite3_bind_int64(st, 2, r->at);
    sqlite3_bind_text(st, 3, r->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->target, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, r->result, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, r->detail, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 9, row->mac, 32, SQLITE_STATIC);
    return exec_stmt(s, st);
}

static kw_rc read_audit(sqlite3_stmt *st, kw_audit_row *row)
{
    kw_audit_record *r = &row->r;
    int has;

    memset(row, 0, sizeof(*row));
    r->seq = sqlite3_column_int64(st, 0);
    r->at = sqlite3_column_int64(st, 1);
    r->actor = strdup(col_text(st, 2));
    r->action = strdup(col_text(st, 3));
    r->target = strdup(col_text(st, 4));
    r->client = strdup(col_text(st, 5));
    r->result = strdup(col_text(st, 6));
    r->detail = strdup(col_text(st, 7));
    col_blob32(row->mac, &has, st, 8);
    if (!r->actor || !r->action || !r->target || !r->client || !r->result || !r->detail) {
        kwi_audit_record_clear(r);
        return KW_ERR_NOMEM;
    }
    return KW_OK;
}

static kw_rc sq_audit_list(kw_store *base, const kw_audit_filter *f, kw_audit_row **out, size_t *n)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = s->st[ST_AUDIT_LIST];
    kw_audit_row *rows;
    size_t count = 0;
    kw_rc ret = KW_OK;
    int rc;

    rows = calloc(f->limit, sizeof(*rows));
    if (rows == NULL)
        return KW_ERR_NOMEM;
    sqlite3_bind_int64(st, 1, f->after);
    bind_text_or_null(st, 2, f->action);
    bind_text_or_null(st, 3, f->target);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)f->limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && count < f->limit) {
        ret = read_audit(st, &rows[count]);
        if (ret != KW_OK)
            break;
        count++;
    }
    if (ret == KW_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = map_err(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != KW_OK) {
        kwi_audit_rows_free(rows, count);
        return ret;
    }
    *out = rows;
    *n = count;
    return KW_OK;
}

static const kw_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .key_insert = sq_key_insert,
    .key_get = sq_key_get,
    .key_find_hash = sq_key_find_hash,
    .key_find_legacy = sq_key_find_legacy,
    .key_find_external = sq_key_find_external,
    .key_put = sq_key_put,
    .key_list = sq_key_list,
    .key_spend = sq_key_spend,
    .key_touch = sq_key_touch,
    .key_scan = sq_key_scan,
    .usage_add = sq_usage_add,
    .usage_list = sq_usage_list,
    .key_use = sq_key_use,
    .key_set_hash = sq_key_set_hash,
    .key_count_imported = sq_key_count_imported,
    .key_count = sq_key_count,
    .key_scan_end = sq_key_scan_end,
    .reopen = sq_reopen,
    .wal_defer = sq_wal_defer,
    .wal_checkpoint = sq_wal_checkpoint,
    .signing_key_insert = sq_signing_key_insert,
    .signing_key_list = sq_signing_key_list,
    .signing_key_state = sq_signing_key_state,
    .token_revoke = sq_token_revoke,
    .token_revoked = sq_token_revoked,
    .secret_head = sq_secret_head,
    .secret_head_put = sq_secret_head_put,
    .secret_list = sq_secret_list,
    .secret_version_put = sq_secret_version_put,
    .secret_version_get = sq_secret_version_get,
    .secret_versions = sq_secret_versions,
    .secret_version_destroy = sq_secret_version_destroy,
    .secret_prune = sq_secret_prune,
    .secret_wrapped_all = sq_secret_wrapped_all,
    .secret_rewrap = sq_secret_rewrap,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
};

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Bring the schema to KWI_SCHEMA_VERSION, one transaction per step. */
static kw_rc migrate(sqlite_store *s, int from)
{
    const int last = (int)(sizeof(migrations) / sizeof(migrations[0])) - 1;
    char sql[64];

    for (int v = from + 1; v <= last; v++) {
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            kw_rc ret = map_err(s, rc);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
    }
    return KW_OK;
}

void kwi_sqlite_init(void)
{
    /* No count of SQLite's memory: keeping it takes a process-wide mutex on
     * every allocation SQLite makes (its page cache's, its statements'),
     * which every thread's connection then contends for; keyward never
     * reads it. Too late (SQLITE_MISUSE) if the embedding program already
     * used SQLite: then nothing changes. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

kw_rc kwi_sqlite_open(kw_store **out, const char *path, int create, char err[static 256])
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    sqlite_store *s;
    int version = 0;
    kw_rc ret;
    int rc;

    int in_memory = strcmp(path, ":memory:") == 0; /* SQLite's own name: no file */

    if (!create && !in_memory && access(path, F_OK) != 0) {
        snprintf(err, 256, "no database at %s (run keyward init)", path);
        return KW_ERR_NO_DATABASE;
    }
    if (create && !in_memory && access(path, F_OK) != 0) {
        /* Made here, mode 0600, so that SQLite opens an empty file instead
         * of creating one under the umask; its -wal and -shm files take the
         * database's mode. */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            snprintf(err, 256, "cannot create %s: %s", path, strerror(errno));
            return KW_ERR_IO;
        }
        if (fd >= 0)
            close(fd);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KW_ERR_NOMEM;
    s->base.ops = &sqlite_ops;
    if ((s->path = strdup(path)) == NULL) {
        free(s);
        return KW_ERR_NOMEM;
    }
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(s->db, 5000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = user_version(s->db, &version);
    if (rc != SQLITE_OK) {
        ret = map_err(s, rc);
        goto fail;
    }
    if (version > KWI_SCHEMA_VERSION) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg),
                 "schema version %d is newer than this keyward (%d)", version, KWI_SCHEMA_VERSION);
        ret = KW_ERR_SCHEMA;
        goto fail;
    }
    if (version == 0 && !create) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg),
                 "%s is not a keyward database (pass --db to keyward's own)", path);
        ret = KW_ERR_NO_DATABASE;
        goto fail;
    }
    if (version == 0) {
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            ret = map_err(s, rc);
            goto fail;
        }
    }
    /* FULL: a committed change (and its audit record) survives power loss. */
    rc = sqlite3_exec(s->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        ret = map_err(s, rc);
        goto fail;
    }
    if (version < KWI_SCHEMA_VERSION) {
        ret = migrate(s, version);
        if (ret != KW_OK)
            goto fail;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            ret = map_err(s, rc);
            goto fail;
        }
    }
    *out = &s->base;
    return KW_OK;
fail:
    snprintf(err, 256, "%s", s->base.errmsg);
    sq_close(&s->base);
    return ret;
}
