/*
 * The PostgreSQL back end's secrets (pg.h): a head row per secret and a row
 * per version, as on SQLite (sqlite.c), with the same results, order and
 * memory. Blobs are bytea: a value only ever sealed, its data key only
 * wrapped; neither reaches a message. master_id is a uint64 kept in a
 * BIGINT: the same 64 bits, read back as they were written.
 */
#include "pg.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_COLS "path, current, created_at, updated_at, deleted_at, keep"

static void head_of(const PGresult *r, int row, kwi_secret_head *h)
{
    memset(h, 0, sizeof(*h));
    (void)pg_get_text_into(r, row, 0, h->path, sizeof(h->path));
    h->current = pg_get_int(r, row, 1);
    h->created_at = pg_get_int(r, row, 2);
    h->updated_at = pg_get_int(r, row, 3);
    h->deleted_at = pg_get_int(r, row, 4);
    h->keep = pg_get_int(r, row, 5);
}

/* The columns version, created_at, destroyed_at, master_id from `col` on. */
static void version_of(const PGresult *r, int row, int col, kwi_secret_version *v)
{
    memset(v, 0, sizeof(*v));
    v->version = pg_get_int(r, row, col);
    v->created_at = pg_get_int(r, row, col + 1);
    v->destroyed_at = pg_get_int(r, row, col + 2);
    v->master_id = (uint64_t)pg_get_int(r, row, col + 3);
}

/* A wrapped data key into v (NULL: none, as SQLite reads it); 0 if it is
 * longer than the field or not in hex form. */
static int wrapped_of(const PGresult *r, int row, int col, kwi_secret_version *v)
{
    long n;

    v->wrapped_len = 0;
    if (pg_is_null(r, row, col))
        return 1;
    if ((n = pg_get_bytea(r, row, col, v->wrapped, sizeof(v->wrapped))) < 0)
        return 0;
    v->wrapped_len = (size_t)n;
    return 1;
}

kw_rc pg_secret_head(kw_store *base, const char *path, kwi_secret_head *out)
{
    pg_store *s = (pg_store *)base;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    pg_params_init(&p);
    pg_text(&p, path);
    r = pg_run(s, "SELECT " HEAD_COLS " FROM secrets WHERE path = $1", &p, &rc);
    if (r == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        snprintf(base->errmsg, sizeof(base->errmsg), "no secret at %s", path);
        return KW_ERR_NOT_FOUND;
    }
    head_of(r, 0, out);
    PQclear(r);
    return KW_OK;
}

kw_rc pg_secret_head_put(kw_store *base, const kwi_secret_head *h)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, h->path);
    pg_int(&p, h->current);
    pg_int(&p, h->created_at);
    pg_int(&p, h->updated_at);
    pg_int(&p, h->deleted_at);
    pg_int(&p, h->keep);
    return pg_exec((pg_store *)base,
                   "INSERT INTO secrets (" HEAD_COLS ") VALUES ($1, $2, $3, $4, $5, $6) "
                   "ON CONFLICT (path) DO UPDATE SET current = excluded.current, "
                   "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                   "deleted_at = excluded.deleted_at, keep = excluded.keep",
                   &p, NULL);
}

kw_rc pg_secret_list(kw_store *base, const char *prefix, kwi_secret_head **out, size_t *n)
{
    pg_store *s = (pg_store *)base;
    kwi_secret_head *h;
    size_t count;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    /* A byte prefix, not a pattern: no character of it is a wildcard. */
    pg_params_init(&p);
    pg_text(&p, prefix);
    r = pg_run(s,
               "SELECT " HEAD_COLS " FROM secrets "
               "WHERE substr(path, 1, length($1::text)) = $1::text ORDER BY path",
               &p, &rc);
    if (r == NULL)
        return rc;
    if ((rc = pg_rows_alloc(s, r, sizeof(*h), (void **)&h, &count)) == KW_OK) {
        for (size_t i = 0; i < count; i++)
            head_of(r, (int)i, &h[i]);
        *out = h;
        *n = count;
    }
    PQclear(r);
    return rc;
}

kw_rc pg_secret_version_put(kw_store *base, const char *path, const kwi_secret_version *v)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, path);
    pg_int(&p, v->version);
    pg_int(&p, v->created_at);
    pg_int(&p, v->destroyed_at);
    pg_int(&p, (int64_t)v->master_id);
    pg_bytea(&p, v->wrapped, v->wrapped_len);
    pg_bytea(&p, v->sealed, v->sealed_len); /* NULL: none */
    return pg_exec((pg_store *)base,
                   "INSERT INTO secret_versions (path, version, created_at, destroyed_at, "
                   "master_id, wrapped, sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                   &p, NULL);
}

kw_rc pg_secret_version_get(kw_store *base, const char *path, int64_t version,
                            kwi_secret_version *out)
{
    pg_store *s = (pg_store *)base;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    pg_params_init(&p);
    pg_text(&p, path);
    pg_int(&p, version);
    r = pg_run(s,
               "SELECT version, created_at, destroyed_at, master_id, wrapped, sealed "
               "FROM secret_versions WHERE path = $1 AND version = $2",
               &p, &rc);
    if (r == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        snprintf(base->errmsg, sizeof(base->errmsg), "no version %lld of %s", (long long)version,
                 path);
        return KW_ERR_NOT_FOUND;
    }
    version_of(r, 0, 0, out);
    if (!wrapped_of(r, 0, 4, out)) {
        rc = KW_ERR_STORAGE;
    } else if ((rc = pg_get_bytea_dup(r, 0, 5, &out->sealed, &out->sealed_len)) == KW_OK &&
               out->sealed_len == 0) {
        /* An empty blob reads as none, as on SQLite. */
        free(out->sealed);
        out->sealed = NULL;
    }
    /* The result's copy of the sealed value goes with it. */
    if (!pg_is_null(r, 0, 5))
        sodium_memzero(PQgetvalue(r, 0, 5), (size_t)PQgetlength(r, 0, 5));
    PQclear(r);
    if (rc == KW_ERR_NOMEM)
        return pg_nomem(s);
    if (rc != KW_OK)
        snprintf(base->errmsg, sizeof(base->errmsg), "secret %s: damaged row", path);
    return rc;
}

kw_rc pg_secret_versions(kw_store *base, const char *path, kwi_secret_version **out, size_t *n)
{
    pg_store *s = (pg_store *)base;
    kwi_secret_version *v;
    size_t count;
    pg_params p;
    kw_rc rc;
    PGresult *r;

    pg_params_init(&p);
    pg_text(&p, path);
    r = pg_run(s,
               "SELECT version, created_at, destroyed_at, master_id FROM secret_versions "
               "WHERE path = $1 ORDER BY version DESC",
               &p, &rc);
    if (r == NULL)
        return rc;
    if ((rc = pg_rows_alloc(s, r, sizeof(*v), (void **)&v, &count)) == KW_OK) {
        for (size_t i = 0; i < count; i++)
            version_of(r, (int)i, 0, &v[i]);
        *out = v;
        *n = count;
    }
    PQclear(r);
    return rc;
}

kw_rc pg_secret_version_destroy(kw_store *base, const char *path, int64_t version, int64_t at)
{
    pg_params p;
    int64_t changed = 0;
    kw_rc rc;

    pg_params_init(&p);
    pg_text(&p, path);
    pg_int(&p, version);
    pg_int(&p, at);
    rc = pg_exec((pg_store *)base,
                 "UPDATE secret_versions SET destroyed_at = $3, wrapped = NULL, sealed = NULL "
                 "WHERE path = $1 AND version = $2 AND destroyed_at = 0",
                 &p, &changed);
    if (rc == KW_OK && changed == 0) {
        snprintf(base->errmsg, sizeof(base->errmsg),
                 "no version %lld of %s, or it is destroyed already", (long long)version, path);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

kw_rc pg_secret_prune(kw_store *base, const char *path, int64_t below)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, path);
    pg_int(&p, below);
    return pg_exec((pg_store *)base, "DELETE FROM secret_versions WHERE path = $1 AND version < $2",
                   &p, NULL);
}

kw_rc pg_secret_wrapped_all(kw_store *base, kwi_secret_head **paths, kwi_secret_version **out,
                            size_t *n)
{
    pg_store *s = (pg_store *)base;
    kwi_secret_version *v = NULL;
    kwi_secret_head *h = NULL;
    size_t count = 0;
    kw_rc rc;
    PGresult *r;

    r = pg_run(s,
               "SELECT path, version, created_at, destroyed_at, master_id, wrapped "
               "FROM secret_versions WHERE destroyed_at = 0 ORDER BY path, version",
               NULL, &rc);
    if (r == NULL)
        return rc;
    rc = pg_rows_alloc(s, r, sizeof(*v), (void **)&v, &count);
    if (rc == KW_OK)
        rc = pg_rows_alloc(s, r, sizeof(*h), (void **)&h, &count);
    for (size_t i = 0; rc == KW_OK && i < count; i++) {
        (void)pg_get_text_into(r, (int)i, 0, h[i].path, sizeof(h[i].path));
        version_of(r, (int)i, 1, &v[i]);
        if (!wrapped_of(r, (int)i, 5, &v[i])) {
            snprintf(base->errmsg, sizeof(base->errmsg), "secret %.200s: damaged row", h[i].path);
            rc = KW_ERR_STORAGE;
        }
    }
    PQclear(r);
    if (rc != KW_OK) {
        free(v);
        free(h);
        return rc;
    }
    *paths = h;
    *out = v;
    *n = count;
    return KW_OK;
}

kw_rc pg_secret_rewrap(kw_store *base, const char *path, int64_t version,
                       const unsigned char *wrapped, size_t len, uint64_t master_id)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, path);
    pg_int(&p, version);
    pg_bytea(&p, wrapped, len);
    pg_int(&p, (int64_t)master_id);
    return pg_exec((pg_store *)base,
                   "UPDATE secret_versions SET wrapped = $3, master_id = $4 "
                   "WHERE path = $1 AND version = $2",
                   &p, NULL);
}
