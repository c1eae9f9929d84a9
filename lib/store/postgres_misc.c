/*
 * The PostgreSQL back end's smaller tables: usage per key and hour, the
 * audit trail, the token keyring and revoked token ids (pg.h).
 *
 * Positions (pos) stand for SQLite's rowid. They are taken at INSERT, not
 * at COMMIT, so they follow commit order only because every writer of
 * signing_keys and token_revocations holds the writers' lock (begin()):
 * a verifier that reads the revocations after the last number it saw
 * (token_revoked) then never skips one committed late.
 *
 * Inserts that can meet a taken key (a kid, a revoked id) use ON CONFLICT
 * DO NOTHING and report KW_ERR_CONFLICT when no row went in: unlike a
 * failed statement, that leaves the caller's transaction usable, as on
 * SQLite.
 */
#include "pg.h"

#include "../internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUDIT_COLS "seq, at, actor, action, target, client, result, detail, mac"

/* ---- usage ------------------------------------------------------------------- */

kw_rc pg_usage_add(kw_store *s, const char *id, int64_t bucket, int code, int64_t n)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_int(&p, bucket);
    pg_int(&p, code);
    pg_int(&p, n);
    return pg_exec((pg_store *)s,
                   "INSERT INTO key_usage (key_id, bucket, code, count) VALUES ($1, $2, $3, $4) "
                   "ON CONFLICT (key_id, bucket, code) "
                   "DO UPDATE SET count = key_usage.count + excluded.count",
                   &p, NULL);
}

kw_rc pg_usage_list(kw_store *s, const char *id, int64_t from, int64_t to, kw_usage_row **out,
                    size_t *n)
{
    kw_usage_row *rows = NULL;
    pg_params p;
    PGresult *r;
    kw_rc rc;
    size_t count;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_int(&p, from);
    pg_int(&p, to);
    r = pg_run((pg_store *)s,
               "SELECT bucket, code, count FROM key_usage WHERE key_id = $1 AND bucket >= $2 "
               "AND bucket < $3 ORDER BY bucket, code LIMIT 100000",
               &p, &rc);
    if (r == NULL)
        return rc;
    if ((rc = pg_rows_alloc((pg_store *)s, r, sizeof(*rows), (void **)&rows, &count)) != KW_OK) {
        PQclear(r);
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        rows[i].bucket = pg_get_int(r, (int)i, 0);
        rows[i].code = (int)pg_get_int(r, (int)i, 1);
        rows[i].count = pg_get_int(r, (int)i, 2);
    }
    PQclear(r);
    *out = rows;
    *n = count;
    return KW_OK;
}

/* ---- the audit trail ------------------------------------------------------------ */

kw_rc pg_audit_append(kw_store *s, const kw_audit_row *row)
{
    const kw_audit_record *a = &row->r;
    pg_params p;

    pg_params_init(&p);
    pg_int(&p, a->seq);
    pg_int(&p, a->at);
    pg_text(&p, a->actor);
    pg_text(&p, a->action);
    pg_text(&p, a->target);
    pg_text(&p, a->client);
    pg_text(&p, a->result);
    pg_text(&p, a->detail);
    pg_bytea(&p, row->mac, sizeof(row->mac));
    /* A sequence number taken already fails (KW_ERR_CONFLICT): the chain is
     * broken, and the caller rolls back. The commit notifies (pg_commit). */
    ((pg_store *)s)->audited = 1;
    return pg_exec((pg_store *)s,
                   "INSERT INTO audit (" AUDIT_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                   &p, NULL);
}

/* Row i of an AUDIT_COLS result; on failure nothing is left allocated. */
static kw_rc read_audit(const PGresult *r, int i, kw_audit_row *row)
{
    kw_audit_record *a = &row->r;
    unsigned char mac[sizeof(row->mac)];

    memset(row, 0, sizeof(*row));
    a->seq = pg_get_int(r, i, 0);
    a->at = pg_get_int(r, i, 1);
    a->actor = strdup(pg_get_text(r, i, 2));
    a->action = strdup(pg_get_text(r, i, 3));
    a->target = strdup(pg_get_text(r, i, 4));
    a->client = strdup(pg_get_text(r, i, 5));
    a->result = strdup(pg_get_text(r, i, 6));
    a->detail = strdup(pg_get_text(r, i, 7));
    /* A MAC of another length stays zero: the chain's check reports it. */
    if (pg_get_bytea(r, i, 8, mac, sizeof(mac)) == (long)sizeof(mac))
        memcpy(row->mac, mac, sizeof(mac));
    if (!a->actor || !a->action || !a->target || !a->client || !a->result || !a->detail) {
        kwi_audit_record_clear(a);
        return KW_ERR_NOMEM;
    }
    return KW_OK;
}

kw_rc pg_audit_list(kw_store *s, const kw_audit_filter *f, kw_audit_row **out, size_t *n)
{
    kw_audit_row *rows;
    pg_params p;
    PGresult *r;
    kw_rc rc;
    int count;

    pg_params_init(&p);
    pg_int(&p, f->after);
    pg_text_or_null(&p, f->action);
    pg_text_or_null(&p, f->target);
    pg_int(&p, (int64_t)f->limit);
    r = pg_run((pg_store *)s,
               "SELECT " AUDIT_COLS " FROM audit WHERE seq > $1 "
               "AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR target = $3) "
               "ORDER BY seq LIMIT $4",
               &p, &rc);
    if (r == NULL)
        return rc;
    count = PQntuples(r);
    /* Never NULL on success, even with no rows (as on SQLite). */
    if ((rows = calloc(count > 0 ? (size_t)count : 1, sizeof(*rows))) == NULL) {
        PQclear(r);
        return pg_nomem((pg_store *)s);
    }
    for (int i = 0; i < count; i++) {
        if (read_audit(r, i, &rows[i]) != KW_OK) {
            kwi_audit_rows_free(rows, (size_t)i); /* row i freed itself */
            PQclear(r);
            return pg_nomem((pg_store *)s);
        }
    }
    PQclear(r);
    *out = rows;
    *n = (size_t)count;
    return KW_OK;
}

/* ---- the token keyring -------------------------------------------------------- */

kw_rc pg_signing_key_insert(kw_store *s, const kwi_signing_key_row *row)
{
    pg_params p;
    int64_t changed = 0;
    kw_rc rc;

    pg_params_init(&p);
    pg_int(&p, (int64_t)row->kid);
    pg_text(&p, row->kind);
    pg_text(&p, row->state);
    pg_int(&p, row->created_at);
    pg_int(&p, row->retired_at);
    pg_bytea(&p, row->sealed, row->sealed_len);
    if (row->has_public_key)
        pg_bytea(&p, row->public_key, sizeof(row->public_key));
    else
        pg_null(&p);
    rc = pg_exec((pg_store *)s,
                 "INSERT INTO signing_keys (kid, kind, state, created_at, retired_at, sealed, "
                 "public_key) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kid) DO NOTHING",
                 &p, &changed);
    if (rc == KW_OK && changed == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "signing key %08x exists already",
                 (unsigned)row->kid);
        rc = KW_ERR_CONFLICT;
    }
    return rc;
}

/* Row i of a signing_keys result into *k; 0 if the row is damaged. */
static int read_signing_key(const PGresult *r, int i, kwi_signing_key_row *k)
{
    long sealed_len;

    memset(k, 0, sizeof(*k));
    k->kid = (uint32_t)pg_get_int(r, i, 0);
    k->created_at = pg_get_int(r, i, 3);
    k->retired_at = pg_get_int(r, i, 4);
    if (!pg_get_text_into(r, i, 1, k->kind, sizeof(k->kind)) ||
        !pg_get_text_into(r, i, 2, k->state, sizeof(k->state)))
        return 0;
    if ((sealed_len = pg_get_bytea(r, i, 5, k->sealed, sizeof(k->sealed))) < 0)
        return 0;
    k->sealed_len = (size_t)sealed_len;
    if (!pg_is_null(r, i, 6)) {
        long pk_len = pg_get_bytea(r, i, 6, k->public_key, sizeof(k->public_key));
        if (pk_len != 0 && pk_len != (long)sizeof(k->public_key))
            return 0;
        k->has_public_key = pk_len > 0;
    }
    return 1;
}

kw_rc pg_signing_key_list(kw_store *s, kwi_signing_key_row **out, size_t *n)
{
    kwi_signing_key_row *rows = NULL;
    PGresult *r;
    size_t count;
    kw_rc rc;

    r = pg_run((pg_store *)s,
               "SELECT kid, kind, state, created_at, retired_at, sealed, public_key "
               "FROM signing_keys ORDER BY pos",
               NULL, &rc);
    if (r == NULL)
        return rc;
    if ((rc = pg_rows_alloc((pg_store *)s, r, sizeof(*rows), (void **)&rows, &count)) != KW_OK) {
        PQclear(r);
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        if (!read_signing_key(r, (int)i, &rows[i])) {
            snprintf(s->errmsg, sizeof(s->errmsg), "signing key %08x: damaged row",
                     (unsigned)rows[i].kid);
            sodium_memzero(rows, count * sizeof(*rows));
            free(rows);
            PQclear(r);
            return KW_ERR_STORAGE;
        }
    }
    PQclear(r);
    *out = rows;
    *n = count;
    return KW_OK;
}

kw_rc pg_signing_key_state(kw_store *s, uint32_t kid, const char *state, int64_t at)
{
    pg_params p;
    int64_t changed = 0;
    kw_rc rc;

    pg_params_init(&p);
    pg_int(&p, (int64_t)kid);
    pg_text(&p, state);
    pg_int(&p, at);
    rc = pg_exec((pg_store *)s,
                 "UPDATE signing_keys SET state = $2::text, retired_at = "
                 "CASE WHEN $2::text = 'retired' THEN $3::bigint ELSE retired_at END "
                 "WHERE kid = $1::bigint",
                 &p, &changed);
    if (rc == KW_OK && changed == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no signing key %08x", (unsigned)kid);
        rc = KW_ERR_NOT_FOUND;
    }
    return rc;
}

/* ---- revoked tokens ----------------------------------------------------------- */

kw_rc pg_token_revoke(kw_store *s, const char *id, int64_t at)
{
    pg_params p;
    int64_t changed = 0;
    kw_rc rc;

    pg_params_init(&p);
    pg_text(&p, id);
    pg_int(&p, at);
    rc = pg_exec((pg_store *)s,
                 "INSERT INTO token_revocations (id, revoked_at) VALUES ($1, $2) "
                 "ON CONFLICT (id) DO NOTHING",
                 &p, &changed);
    if (rc == KW_OK && changed == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "the token is revoked already");
        rc = KW_ERR_CONFLICT;
    }
    return rc;
}

kw_rc pg_token_revoked(kw_store *s, int64_t after, char (**out)[KW_ID_LEN + 1], size_t *n,
                       int64_t *last)
{
    char(*ids)[KW_ID_LEN + 1] = NULL;
    size_t count = 0;
    pg_params p;
    size_t rows;
    PGresult *r;
    kw_rc rc;

    *last = after;
    pg_params_init(&p);
    pg_int(&p, after);
    r = pg_run((pg_store *)s, "SELECT pos, id FROM token_revocations WHERE pos > $1 ORDER BY pos",
               &p, &rc);
    if (r == NULL)
        return rc;
    if ((rc = pg_rows_alloc((pg_store *)s, r, sizeof(*ids), (void **)&ids, &rows)) != KW_OK) {
        PQclear(r);
        return rc;
    }
    for (size_t i = 0; i < rows; i++) {
        *last = pg_get_int(r, (int)i, 0);
        if (pg_get_text_into(r, (int)i, 1, ids[count], sizeof(ids[count])))
            count++; /* else not an id: it cannot match one */
    }
    PQclear(r);
    *out = ids;
    *n = count;
    return KW_OK;
}
