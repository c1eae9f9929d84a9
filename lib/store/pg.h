/*
 * The PostgreSQL back end's shared parts: the connection, statement
 * parameters and result columns (postgres.c), and the operations of the
 * other files (postgres_keys.c, postgres_misc.c, postgres_secrets.c).
 *
 * Conventions: statements are run with PQexecParams, $1..$n; parameters
 * go as text, except bytea, which goes binary; results come as text (bytea
 * as PostgreSQL's hex form, decoded by pg_get_bytea). A failure leaves a
 * message in base.errmsg that holds no value of the statement (only
 * PostgreSQL's primary message: never its DETAIL, which can quote a row).
 */
#ifndef KEYWARD_STORE_PG_H
#define KEYWARD_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The schema's version on PostgreSQL (its own line, not SQLite's). */
#define KWI_PG_SCHEMA_VERSION 1

typedef struct pg_store {
    kw_store base;
    PGconn *conn;
    char *url;           /* for another connection (reopen); may hold a password: never printed */
    int listening;       /* LISTEN sent on this connection (wait_change) */
    int audited;         /* the open transaction appended to the audit trail */
    int resetting;       /* a reconnection under way (PQresetStart) */
    int64_t reset_at_ms; /* when the last one began (monotonic) */
} pg_store;

#define PG_PARAMS_MAX 32

/* The parameters of one statement, added in order ($1, $2, ...). */
typedef struct pg_params {
    int n;
    const char *v[PG_PARAMS_MAX];
    int len[PG_PARAMS_MAX];
    int fmt[PG_PARAMS_MAX];
    char num[PG_PARAMS_MAX][24]; /* integers, printed */
} pg_params;

void pg_params_init(pg_params *p);
void pg_text(pg_params *p, const char *v);         /* NULL: SQL NULL */
void pg_text_or_null(pg_params *p, const char *v); /* NULL or "": SQL NULL */
void pg_int(pg_params *p, int64_t v);
void pg_null(pg_params *p);
void pg_bytea(pg_params *p, const void *v, size_t len); /* v NULL: SQL NULL */

/* Run sql. The result (rows or none), for the caller to PQclear; NULL on
 * failure, with *rc set and errmsg filled. p NULL: no parameters, and sql
 * may hold several statements. */
PGresult *pg_run(pg_store *s, const char *sql, const pg_params *p, kw_rc *rc);
/* Run a statement whose rows are not wanted; *changed (if not NULL) gets
 * the number of rows it inserted, updated or deleted. */
kw_rc pg_exec(pg_store *s, const char *sql, const pg_params *p, int64_t *changed);

/* Out of memory: the message, and KW_ERR_NOMEM. */
kw_rc pg_nomem(pg_store *s);
/* An array of `size`-byte elements, zeroed, for the rows of r: *out NULL
 * and *n 0 when there are none. KW_ERR_NOMEM (message set). */
kw_rc pg_rows_alloc(pg_store *s, const PGresult *r, size_t size, void **out, size_t *n);

/* A result column, text format. */
int pg_is_null(const PGresult *r, int row, int col);
int64_t pg_get_int(const PGresult *r, int row, int col);      /* NULL: 0 */
const char *pg_get_text(const PGresult *r, int row, int col); /* NULL: "" */
/* A text column copied into dst: 1, or 0 (dst untouched) if it is NULL or
 * does not fit in cap bytes with its NUL. */
int pg_get_text_into(const PGresult *r, int row, int col, char *dst, size_t cap);
/* PostgreSQL's hex form of a bytea ("\x", then two hex digits a byte;
 * tlen bytes, no NUL needed) into buf: the length, or -1 if not that form
 * or longer than cap. Fuzzed: tests/fuzz/fuzz_pg_hex.c. */
long kwi_pg_unhex(const char *t, size_t tlen, unsigned char *buf, size_t cap);
/* A bytea decoded into buf: its length, or -1 if NULL, longer than cap, or
 * not in PostgreSQL's hex form. */
long pg_get_bytea(const PGresult *r, int row, int col, unsigned char *buf, size_t cap);
/* A bytea decoded into a malloc'd buffer (*out NULL and *len 0 if NULL);
 * KW_ERR_NOMEM, or KW_ERR_STORAGE if not in hex form. */
kw_rc pg_get_bytea_dup(const PGresult *r, int row, int col, unsigned char **out, size_t *len);

/* postgres_keys.c */
kw_rc pg_key_insert(kw_store *s, const kw_key_row *row);
kw_rc pg_key_get(kw_store *s, const char *id, kw_key_row *out);
kw_rc pg_key_find_hash(kw_store *s, const unsigned char hash[32], kw_key_row *out);
kw_rc pg_key_find_legacy(kw_store *s, const unsigned char sha[32], kw_key_row *out);
kw_rc pg_key_find_external(kw_store *s, const char *external_id, kw_key_row *out);
kw_rc pg_key_put(kw_store *s, const kw_key_row *row);
kw_rc pg_key_list(kw_store *s, const kw_key_filter *f, kw_key_record **out, size_t *n);
kw_rc pg_key_spend(kw_store *s, const char *id, int64_t cost, int64_t *remaining);
kw_rc pg_key_touch(kw_store *s, const kw_key_row *row);
kw_rc pg_key_set_hash(kw_store *s, const char *id, const unsigned char hash[32]);
kw_rc pg_key_scan(kw_store *s, int64_t *cursor, int64_t end, size_t limit,
                  kw_rc (*fn)(void *arg, const kw_key_row *row), void *arg, size_t *n);
kw_rc pg_key_scan_end(kw_store *s, int64_t *end);
kw_rc pg_key_use(kw_store *s, const char *id, int64_t spent, int64_t last_used_at);
kw_rc pg_key_count_imported(kw_store *s, int64_t *n);
kw_rc pg_key_count(kw_store *s, int64_t *n);

/* postgres_misc.c */
kw_rc pg_usage_add(kw_store *s, const char *id, int64_t bucket, int code, int64_t n);
kw_rc pg_usage_list(kw_store *s, const char *id, int64_t from, int64_t to, kw_usage_row **out,
                    size_t *n);
kw_rc pg_audit_append(kw_store *s, const kw_audit_row *row);
kw_rc pg_audit_list(kw_store *s, const kw_audit_filter *f, kw_audit_row **out, size_t *n);
kw_rc pg_signing_key_insert(kw_store *s, const kwi_signing_key_row *row);
kw_rc pg_signing_key_list(kw_store *s, kwi_signing_key_row **out, size_t *n);
kw_rc pg_signing_key_state(kw_store *s, uint32_t kid, const char *state, int64_t at);
kw_rc pg_token_revoke(kw_store *s, const char *id, int64_t at);
kw_rc pg_token_revoked(kw_store *s, int64_t after, char (**out)[KW_ID_LEN + 1], size_t *n,
                       int64_t *last);

/* postgres_secrets.c */
kw_rc pg_secret_head(kw_store *s, const char *path, kwi_secret_head *out);
kw_rc pg_secret_head_put(kw_store *s, const kwi_secret_head *h);
kw_rc pg_secret_list(kw_store *s, const char *prefix, kwi_secret_head **out, size_t *n);
kw_rc pg_secret_version_put(kw_store *s, const char *path, const kwi_secret_version *v);
kw_rc pg_secret_version_get(kw_store *s, const char *path, int64_t version,
                            kwi_secret_version *out);
kw_rc pg_secret_versions(kw_store *s, const char *path, kwi_secret_version **out, size_t *n);
kw_rc pg_secret_version_destroy(kw_store *s, const char *path, int64_t version, int64_t at);
kw_rc pg_secret_prune(kw_store *s, const char *path, int64_t below);
kw_rc pg_secret_wrapped_all(kw_store *s, kwi_secret_head **paths, kwi_secret_version **out,
                            size_t *n);
kw_rc pg_secret_rewrap(kw_store *s, const char *path, int64_t version, const unsigned char *wrapped,
                       size_t len, uint64_t master_id);

#endif
