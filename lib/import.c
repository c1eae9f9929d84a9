/*
 * Seed import: the SQLAlchemy `api_keys` table of seed 001, read from its
 * SQLite file. One transaction; a bad row aborts the import and names itself.
 */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define EXTERNAL_MAX 200

static const char seed_sql[] =
    "SELECT id, key_hash, user_id, name, permissions, created_at, last_used_at, expires_at, "
    "is_active FROM api_keys ORDER BY rowid";

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* A NULL column is "no time"; anything else must parse. */
static int col_time(sqlite3_stmt *st, int i, int64_t *t)
{
    *t = 0;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    return kw_time_parse(col(st, i), t);
}

/* permissions: a JSON array of scope strings (or NULL: no scopes). */
static kw_rc perms_to_scopes(kw_ctx *ctx, int64_t rowno, const char *text, kw_key_record *r)
{
    json_t *arr;
    size_t i;
    json_t *v;
    kw_rc rc = KW_OK;

    r->scopes = calloc(KW_SCOPES_MAX + 1, sizeof(char *));
    if (r->scopes == NULL)
        return KW_ERR_NOMEM;
    if (text == NULL)
        return KW_OK;
    arr = json_loads(text, 0, NULL);
    if (!json_is_array(arr) || json_array_size(arr) > KW_SCOPES_MAX) {
        json_decref(arr);
        kwi_seterr(ctx, "row %lld: permissions is not a JSON array of at most %d scopes",
                   (long long)rowno, KW_SCOPES_MAX);
        return KW_ERR_INVALID;
    }
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL || !kw_scope_grant_valid(s)) {
            kwi_seterr(ctx, "row %lld: permission %zu is not a valid scope", (long long)rowno,
                       i + 1);
            rc = KW_ERR_INVALID;
            break;
        }
        r->scopes[r->nscopes] = strdup(s);
        if (r->scopes[r->nscopes] == NULL) {
            rc = KW_ERR_NOMEM;
            break;
        }
        r->nscopes++;
    }
    json_decref(arr);
    return rc;
}

/* Build the row for seed row `rowno`; checks everything before touching storage. */
static kw_rc seed_row(kw_ctx *ctx, sqlite3_stmt *st, int64_t rowno, kw_key_row *row)
{
    kw_key_record *r = &row->rec;
    const char *seed_id = col(st, 0), *hash = col(st, 1), *owner = col(st, 2), *name = col(st, 3);
    size_t bin_len = 0;
    char ext[EXTERNAL_MAX + 8];
    kw_rc rc;

    memset(row, 0, sizeof(*row));
    if (seed_id == NULL || strlen(seed_id) > EXTERNAL_MAX) {
        kwi_seterr(ctx, "row %lld: id missing or longer than %d", (long long)rowno, EXTERNAL_MAX);
        return KW_ERR_INVALID;
    }
    if (hash == NULL || strlen(hash) != 64 ||
        sodium_hex2bin(row->legacy_sha256, 32, hash, 64, NULL, &bin_len, NULL) != 0 ||
        bin_len != 32) {
        kwi_seterr(ctx, "row %lld: key_hash is not 64 hex chars (SHA-256)", (long long)rowno);
        return KW_ERR_INVALID;
    }
    row->has_legacy = 1;
    if (owner == NULL || !kwi_text_ok(owner, KW_OWNER_MAX) || !kwi_text_ok(name, KW_NAME_MAX)) {
        kwi_seterr(ctx,
                   "row %lld: user_id missing, or user_id/name longer than %d bytes, not UTF-8 or "
                   "holding control characters",
                   (long long)rowno, KW_OWNER_MAX);
        return KW_ERR_INVALID;
    }
    if (col_time(st, 5, &r->created_at) || col_time(st, 6, &r->last_used_at) ||
        col_time(st, 7, &r->expires_at)) {
        kwi_seterr(ctx, "row %lld: a date is not in SQL or RFC 3339 form", (long long)rowno);
        return KW_ERR_INVALID;
    }
    if (r->created_at == 0)
        r->created_at = kw_now();
    snprintf(ext, sizeof(ext), "seed:%s", seed_id);
    kw_base62_random(r->id, KW_ID_LEN);
    r->owner = strdup(owner);
    r->name = strdup(name ? name : "");
    r->meta = strdup("{\"imported_from\":\"seed\"}");
    r->external_id = strdup(ext);
    if (!r->owner || !r->name || !r->meta || !r->external_id)
        return KW_ERR_NOMEM;
    rc = perms_to_scopes(ctx, rowno, col(st, 4), r);
    if (rc != KW_OK)
        return rc;
    r->enabled = sqlite3_column_type(st, 8) == SQLITE_NULL || sqlite3_column_int(st, 8) != 0;
    r->credits = KW_CREDITS_UNLIMITED;
    r->legacy = 1;
    return KW_OK;
}

static kw_rc import_rows(kw_ctx *ctx, sqlite3_stmt *st, const kw_actor *actor,
                         kw_import_report *rep)
{
    kw_rc rc = KW_OK;
    int step;

    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        kw_key_row row, existing;
        char *detail;

        rep->rows++;
        rc = seed_row(ctx, st, (int64_t)rep->rows, &row);
        if (rc == KW_OK)
            rc = ctx->store->ops->key_find_external(ctx->store, row.rec.external_id, &existing);
        if (rc == KW_OK) {
            kwi_key_row_clear(&existing);
            kwi_key_row_clear(&row);
            rep->skipped++;
            continue;
        }
        if (rc == KW_ERR_NOT_FOUND)
            rc = ctx->store->ops->key_insert(ctx->store, &row);
        if (rc == KW_OK) {
            detail = kw_key_record_json(&row.rec);
            rc = detail ? kwi_audit_append(ctx, actor, "key.import", row.rec.id, "ok", detail)
                        : KW_ERR_NOMEM;
            free(detail);
        } else if (rc != KW_ERR_INVALID) {
            kwi_seterr(ctx, "row %zu: %s", rep->rows, ctx->store->errmsg);
        }
        kwi_key_row_clear(&row);
        if (rc != KW_OK) {
            rep->bad_row = (int64_t)rep->rows;
            return rc;
        }
        rep->imported++;
    }
    if (step != SQLITE_DONE) {
        kwi_seterr(ctx, "reading the seed table: %s", sqlite3_errstr(step));
        return KW_ERR_IO;
    }
    return KW_OK;
}

KW_API kw_rc kw_import_seed(kw_ctx *ctx, const char *path, int dry_run, const kw_actor *actor,
                            kw_import_report *rep)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    kw_rc rc;

    memset(rep, 0, sizeof(*rep));
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        kwi_seterr(ctx, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return KW_ERR_IO;
    }
    if (sqlite3_prepare_v2(db, seed_sql, -1, &st, NULL) != SQLITE_OK) {
        kwi_seterr(ctx, "%s has no seed api_keys table: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return KW_ERR_INVALID;
    }
    rc = ctx->store->ops->begin(ctx->store);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
        goto out;
    }
    rc = import_rows(ctx, st, actor, rep);
    if (rc == KW_OK && !dry_run) {
        rc = ctx->store->ops->commit(ctx->store);
        if (rc != KW_OK)
            kwi_seterr(ctx, "%s", ctx->store->errmsg);
        else
            ctx->imported += (int64_t)rep->imported;
    }
    if (rc != KW_OK || dry_run)
        ctx->store->ops->rollback(ctx->store);
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
