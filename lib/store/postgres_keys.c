/*
 * The PostgreSQL back end's keys: insert, read, find, overwrite, list,
 * spend, touch, scan and count, with the semantics of sqlite.c's. Positions
 * (pos) play SQLite's rowid: lists and scans go in pos order.
 */
#include "pg.h"

#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_COLS                                                                                   \
    "id, prefix, key_hash, legacy_sha256, owner, name, scopes, meta, created_at, not_before, "     \
    "expires_at, last_used_at, enabled, revoked_at, credits, credits_from, rate_limit, "           \
    "rate_window_ms, rl_start_ms, rl_count, rl_prev, rotated_from, rotated_to, external_id"
#define KEY_PARAMS                                                                                 \
    "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24"

/* The columns of KEY_COLS, by number. */
enum {
    C_ID,
    C_PREFIX,
    C_HASH,
    C_LEGACY,
    C_OWNER,
    C_NAME,
    C_SCOPES,
    C_META,
    C_CREATED,
    C_NOT_BEFORE,
    C_EXPIRES,
    C_LAST_USED,
    C_ENABLED,
    C_REVOKED,
    C_CREDITS,
    C_CREDITS_FROM,
    C_RATE_LIMIT,
    C_RATE_WINDOW,
    C_RL_START,
    C_RL_COUNT,
    C_RL_PREV,
    C_ROTATED_FROM,
    C_ROTATED_TO,
    C_EXTERNAL,
    C_POS /* key_scan only */
};

static const char sql_insert[] = "INSERT INTO keys (" KEY_COLS ") VALUES (" KEY_PARAMS ")";
static const char sql_put[] = "UPDATE keys SET (" KEY_COLS ") = (" KEY_PARAMS ") WHERE id = $1";
static const char sql_get[] = "SELECT " KEY_COLS " FROM keys WHERE id = $1";
/* prefix '': the condition of the partial index keys_hash. */
static const char sql_hash[] = "SELECT " KEY_COLS " FROM keys WHERE key_hash = $1 AND prefix = ''";
static const char sql_legacy[] = "SELECT " KEY_COLS " FROM keys WHERE legacy_sha256 = $1";
static const char sql_external[] = "SELECT " KEY_COLS " FROM keys WHERE external_id = $1";
/* Lists go in creation order (pos), from after the cursor's pos; one
 * statement per filter so that owner or prefix uses its index. */
static const char sql_list[] =
    "SELECT " KEY_COLS " FROM keys WHERE pos > $1::bigint ORDER BY pos LIMIT $2::bigint";
static const char sql_list_owner[] = "SELECT " KEY_COLS " FROM keys WHERE owner = $1::text "
                                     "AND ($2::text IS NULL OR prefix = $2::text) "
                                     "AND pos > $3::bigint ORDER BY pos LIMIT $4::bigint";
static const char sql_list_prefix[] = "SELECT " KEY_COLS " FROM keys WHERE prefix = $1::text "
                                      "AND pos > $2::bigint ORDER BY pos LIMIT $3::bigint";
static const char sql_pos[] = "SELECT pos FROM keys WHERE id = $1";
static const char sql_spend[] = "UPDATE keys SET credits = credits - $2::bigint "
                                "WHERE id = $1 AND credits >= $2::bigint RETURNING credits";
static const char sql_credits[] = "SELECT credits FROM keys WHERE id = $1";
static const char sql_touch[] =
    "UPDATE keys SET last_used_at = GREATEST(last_used_at, $2::bigint), "
    "rl_start_ms = $3::bigint, rl_count = $4::bigint, rl_prev = $5::bigint WHERE id = $1";
static const char sql_set_hash[] =
    "UPDATE keys SET key_hash = $2, legacy_sha256 = NULL WHERE id = $1";
/* Storage order (pos), not id order: ids are random. */
static const char sql_scan[] = "SELECT " KEY_COLS ", pos FROM keys WHERE pos > $1::bigint "
                               "AND pos <= $3::bigint ORDER BY pos LIMIT $2::bigint";
static const char sql_scan_end[] = "SELECT coalesce(max(pos), 0) FROM keys";
static const char sql_use[] =
    "UPDATE keys SET credits = CASE WHEN credits IS NULL THEN NULL "
    "ELSE GREATEST(credits - $2::bigint, 0) END, last_used_at = GREATEST(last_used_at, $3::bigint) "
    "WHERE id = $1";
static const char sql_count_imported[] = "SELECT count(*) FROM keys WHERE prefix = ''";
static const char sql_count[] = "SELECT count(*) FROM keys";

static kw_rc set_err(pg_store *s, kw_rc rc, const char *msg)
{
    snprintf(s->base.errmsg, sizeof(s->base.errmsg), "%s", msg);
    return rc;
}

/* Every column of a row as $1..$24; the strings must outlive the run. */
static void params_row(pg_params *p, const kw_key_row *row, const char *scopes)
{
    const kw_key_record *r = &row->rec;

    pg_params_init(p);
    pg_text(p, r->id);
    pg_text(p, r->prefix);
    pg_bytea(p, row->has_hash ? row->hash : NULL, 32);
    pg_bytea(p, row->has_legacy ? row->legacy_sha256 : NULL, 32);
    pg_text(p, r->owner);
    pg_text(p, r->name);
    pg_text(p, scopes);
    pg_text(p, r->meta);
    pg_int(p, r->created_at);
    pg_int(p, r->not_before);
    pg_int(p, r->expires_at);
    pg_int(p, r->last_used_at);
    pg_int(p, r->enabled ? 1 : 0);
    pg_int(p, r->revoked_at);
    if (r->credits != KW_CREDITS_UNLIMITED)
        pg_int(p, r->credits);
    else
        pg_null(p);
    pg_text_or_null(p, row->credits_from);
    pg_int(p, (int64_t)r->rate_limit);
    pg_int(p, (int64_t)r->rate_window_ms);
    pg_int(p, row->rl_start_ms);
    pg_int(p, row->rl_count);
    pg_int(p, row->rl_prev);
    pg_text_or_null(p, r->rotated_from);
    pg_text_or_null(p, r->rotated_to);
    pg_text_or_null(p, r->external_id);
}

static void col_hash(unsigned char out[32], int *has, const PGresult *r, int i, int c)
{
    *has = pg_get_bytea(r, i, c, out, 32) == 32;
    if (!*has)
        memset(out, 0, 32);
}

/* The columns of a key row that are not strings of their own. */
static void read_fixed(const PGresult *res, int i, kw_key_row *row)
{
    kw_key_record *r = &row->rec;

    kwi_strlcpy(r->id, pg_get_text(res, i, C_ID), sizeof(r->id));
    kwi_strlcpy(r->prefix, pg_get_text(res, i, C_PREFIX), sizeof(r->prefix));
    col_hash(row->hash, &row->has_hash, res, i, C_HASH);
    col_hash(row->legacy_sha256, &row->has_legacy, res, i, C_LEGACY);
    r->created_at = pg_get_int(res, i, C_CREATED);
    r->not_before = pg_get_int(res, i, C_NOT_BEFORE);
    r->expires_at = pg_get_int(res, i, C_EXPIRES);
    r->last_used_at = pg_get_int(res, i, C_LAST_USED);
    r->enabled = pg_get_int(res, i, C_ENABLED) != 0;
    r->revoked_at = pg_get_int(res, i, C_REVOKED);
    r->credits =
        pg_is_null(res, i, C_CREDITS) ? KW_CREDITS_UNLIMITED : pg_get_int(res, i, C_CREDITS);
    kwi_strlcpy(row->credits_from, pg_get_text(res, i, C_CREDITS_FROM), sizeof(row->credits_from));
    r->rate_limit = (uint32_t)pg_get_int(res, i, C_RATE_LIMIT);
    r->rate_window_ms = (uint32_t)pg_get_int(res, i, C_RATE_WINDOW);
    row->rl_start_ms = pg_get_int(res, i, C_RL_START);
    row->rl_count = pg_get_int(res, i, C_RL_COUNT);
    row->rl_prev = pg_get_int(res, i, C_RL_PREV);
    kwi_strlcpy(r->rotated_from, pg_get_text(res, i, C_ROTATED_FROM), sizeof(r->rotated_from));
    kwi_strlcpy(r->rotated_to, pg_get_text(res, i, C_ROTATED_TO), sizeof(r->rotated_to));
    r->legacy = row->has_legacy;
}

/* Row i of a KEY_COLS result, its strings copied. */
static kw_rc read_row(const PGresult *res, int i, kw_key_row *row)
{
    kw_key_record *r = &row->rec;

    memset(row, 0, sizeof(*row));
    read_fixed(res, i, row);
    r->owner = strdup(pg_get_text(res, i, C_OWNER));
    r->name = strdup(pg_get_text(res, i, C_NAME));
    r->meta = strdup(pg_get_text(res, i, C_META));
    if (r->owner == NULL || r->name == NULL || r->meta == NULL ||
        kwi_scopes_split(pg_get_text(res, i, C_SCOPES), &r->scopes, &r->nscopes) != KW_OK)
        goto oom;
    if (!pg_is_null(res, i, C_EXTERNAL)) {
        r->external_id = strdup(pg_get_text(res, i, C_EXTERNAL));
        if (r->external_id == NULL)
            goto oom;
    }
    return KW_OK;
oom:
    kwi_key_row_clear(row);
    return KW_ERR_NOMEM;
}

/* Row i with its strings borrowed: the result's text (valid until PQclear)
 * and the scratch. Nothing to free. */
static kw_rc read_row_borrowed(const PGresult *res, int i, kw_key_row *row, kwi_scope_scratch *sc)
{
    kw_key_record *r = &row->rec;
    size_t len = (size_t)PQgetlength(res, i, C_SCOPES);

    memset(row, 0, sizeof(*row));
    read_fixed(res, i, row);
    r->owner = (char *)pg_get_text(res, i, C_OWNER);
    r->name = (char *)pg_get_text(res, i, C_NAME);
    r->meta = (char *)pg_get_text(res, i, C_META);
    if (!pg_is_null(res, i, C_EXTERNAL))
        r->external_id = (char *)pg_get_text(res, i, C_EXTERNAL);
    return kwi_scopes_borrow(sc, pg_get_text(res, i, C_SCOPES), len, r);
}

static kw_rc write_row(pg_store *s, const char *sql, const kw_key_row *row, int must_change)
{
    char *scopes = kwi_scopes_join(row->rec.scopes, row->rec.nscopes);
    pg_params p;
    int64_t changed = 0;
    kw_rc rc;

    if (scopes == NULL)
        return pg_nomem(s);
    params_row(&p, row, scopes);
    rc = pg_exec(s, sql, &p, &changed);
    free(scopes);
    if (rc == KW_OK && must_change && changed == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no key %s", row->rec.id);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

kw_rc pg_key_insert(kw_store *base, const kw_key_row *row)
{
    return write_row((pg_store *)base, sql_insert, row, 0);
}

kw_rc pg_key_put(kw_store *base, const kw_key_row *row)
{
    return write_row((pg_store *)base, sql_put, row, 1);
}

/* Run a statement expected to give at most one KEY_COLS row. */
static kw_rc fetch_one(pg_store *s, const char *sql, const pg_params *p, kw_key_row *out)
{
    kw_rc rc;
    PGresult *r = pg_run(s, sql, p, &rc);

    if (r == NULL)
        return rc;
    if (PQntuples(r) == 0)
        rc = set_err(s, KW_ERR_NOT_FOUND, "no such key");
    else if ((rc = read_row(r, 0, out)) != KW_OK)
        rc = pg_nomem(s); /* read_row fails only so */
    PQclear(r);
    return rc;
}

kw_rc pg_key_get(kw_store *base, const char *id, kw_key_row *out)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, id);
    return fetch_one((pg_store *)base, sql_get, &p, out);
}

kw_rc pg_key_find_hash(kw_store *base, const unsigned char hash[32], kw_key_row *out)
{
    pg_params p;

    pg_params_init(&p);
    pg_bytea(&p, hash, 32);
    return fetch_one((pg_store *)base, sql_hash, &p, out);
}

kw_rc pg_key_find_legacy(kw_store *base, const unsigned char sha[32], kw_key_row *out)
{
    pg_params p;

    pg_params_init(&p);
    pg_bytea(&p, sha, 32);
    return fetch_one((pg_store *)base, sql_legacy, &p, out);
}

kw_rc pg_key_find_external(kw_store *base, const char *external_id, kw_key_row *out)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, external_id);
    return fetch_one((pg_store *)base, sql_external, &p, out);
}

/* The position of key `id`: KW_ERR_NOT_FOUND if there is none. */
static kw_rc key_pos(pg_store *s, const char *id, int64_t *pos)
{
    pg_params p;
    kw_rc rc;
    PGresult *r;

    pg_params_init(&p);
    pg_text(&p, id);
    if ((r = pg_run(s, sql_pos, &p, &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no key %s", id);
        rc = KW_ERR_NOT_FOUND;
    } else {
        *pos = pg_get_int(r, 0, 0);
    }
    PQclear(r);
    return rc;
}

kw_rc pg_key_list(kw_store *base, const kw_key_filter *f, kw_key_record **out, size_t *n)
{
    pg_store *s = (pg_store *)base;
    const char *sql = sql_list;
    kw_key_record *recs;
    int64_t after = 0;
    size_t count = 0, rows;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    if (f->after != NULL && f->after[0] != '\0' && (rc = key_pos(s, f->after, &after)) != KW_OK)
        return rc;
    /* NULL or "" as SQL NULL, as sqlite.c binds them. */
    pg_params_init(&p);
    if (f->owner != NULL) {
        sql = sql_list_owner;
        pg_text_or_null(&p, f->owner);
        pg_text_or_null(&p, f->prefix);
    } else if (f->prefix != NULL) {
        sql = sql_list_prefix;
        pg_text_or_null(&p, f->prefix);
    }
    pg_int(&p, after);
    pg_int(&p, f->limit > INT64_MAX ? INT64_MAX : (int64_t)f->limit);
    if ((r = pg_run(s, sql, &p, &rc)) == NULL)
        return rc;
    rows = (size_t)PQntuples(r);
    if (rows > f->limit)
        rows = f->limit;
    recs = calloc(rows > 0 ? rows : 1, sizeof(*recs));
    if (recs == NULL) {
        PQclear(r);
        return pg_nomem(s);
    }
    for (; count < rows; count++) {
        kw_key_row row;
        if ((rc = read_row(r, (int)count, &row)) != KW_OK)
            break;
        recs[count] = row.rec;
    }
    PQclear(r);
    if (rc != KW_OK) {
        kw_key_records_free(recs, count);
        return pg_nomem(s); /* read_row fails only so */
    }
    *out = recs;
    *n = count;
    return KW_OK;
}

kw_rc pg_key_spend(kw_store *base, const char *id, int64_t cost, int64_t *remaining)
{
    pg_store *s = (pg_store *)base;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_int(&p, cost);
    if ((r = pg_run(s, sql_spend, &p, &rc)) == NULL)
        return rc;
    if (PQntuples(r) > 0) {
        *remaining = pg_get_int(r, 0, 0);
        PQclear(r);
        return KW_OK;
    }
    PQclear(r);

    /* No row changed: unlimited credits, too few, or no such key. */
    pg_params_init(&p);
    pg_text(&p, id);
    if ((r = pg_run(s, sql_credits, &p, &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "no key %s", id);
        rc = KW_ERR_NOT_FOUND;
    } else if (pg_is_null(r, 0, 0)) {
        *remaining = KW_CREDITS_UNLIMITED;
        rc = KW_OK;
    } else {
        *remaining = pg_get_int(r, 0, 0);
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "not enough credits on key %s", id);
        rc = KW_ERR_CONFLICT;
    }
    PQclear(r);
    return rc;
}

kw_rc pg_key_touch(kw_store *base, const kw_key_row *row)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, row->rec.id);
    pg_int(&p, row->rec.last_used_at);
    pg_int(&p, row->rl_start_ms);
    pg_int(&p, row->rl_count);
    pg_int(&p, row->rl_prev);
    return pg_exec((pg_store *)base, sql_touch, &p, NULL);
}

kw_rc pg_key_set_hash(kw_store *base, const char *id, const unsigned char hash[32])
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_bytea(&p, hash, 32);
    return pg_exec((pg_store *)base, sql_set_hash, &p, NULL);
}

kw_rc pg_key_scan(kw_store *base, int64_t *cursor, int64_t end, size_t limit,
                  kw_rc (*fn)(void *arg, const kw_key_row *row), void *arg, size_t *n)
{
    pg_store *s = (pg_store *)base;
    kwi_scope_scratch *sc;
    size_t count = 0, rows;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    *n = 0;
    if ((sc = malloc(sizeof(*sc))) == NULL)
        return pg_nomem(s);
    pg_params_init(&p);
    pg_int(&p, *cursor);
    pg_int(&p, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    pg_int(&p, end);
    if ((r = pg_run(s, sql_scan, &p, &rc)) == NULL) {
        free(sc);
        return rc;
    }
    rows = (size_t)PQntuples(r);
    while (count < rows && count < limit) {
        kw_key_row row;
        if ((rc = read_row_borrowed(r, (int)count, &row, sc)) != KW_OK) {
            set_err(s, rc, "a stored key has too many scopes");
            break;
        }
        if ((rc = fn(arg, &row)) != KW_OK)
            break;
        *cursor = pg_get_int(r, (int)count, C_POS);
        count++;
    }
    PQclear(r);
    free(sc);
    *n = count;
    return rc;
}

/* A statement giving one integer. */
static kw_rc int_of(pg_store *s, const char *sql, int64_t *v)
{
    kw_rc rc;
    PGresult *r = pg_run(s, sql, NULL, &rc);

    if (r == NULL)
        return rc;
    if (PQntuples(r) == 0)
        rc = set_err(s, KW_ERR_STORAGE, "postgres: no result row");
    else
        *v = pg_get_int(r, 0, 0);
    PQclear(r);
    return rc;
}

kw_rc pg_key_scan_end(kw_store *base, int64_t *end)
{
    return int_of((pg_store *)base, sql_scan_end, end);
}

kw_rc pg_key_use(kw_store *base, const char *id, int64_t spent, int64_t last_used_at)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_int(&p, spent);
    pg_int(&p, last_used_at);
    return pg_exec((pg_store *)base, sql_use, &p, NULL);
}

kw_rc pg_key_count_imported(kw_store *base, int64_t *n)
{
    return int_of((pg_store *)base, sql_count_imported, n);
}

kw_rc pg_key_count(kw_store *base, int64_t *n)
{
    return int_of((pg_store *)base, sql_count, n);
}
