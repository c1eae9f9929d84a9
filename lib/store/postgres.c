/*
 * The PostgreSQL back end (libpq): the connection, the schema, transactions,
 * named values, and what its other files share (pg.h). Every back end passes
 * tests/unit/test_store.c.
 *
 * Writers serialise on one transaction-scoped advisory lock, taken by begin()
 * (SQLite's BEGIN IMMEDIATE): the audit chain needs its records appended one
 * writer at a time, on every node of the database. Single statements outside
 * a transaction (a spend, usage) are atomic on their own and take no lock.
 */
#include "pg.h"

#include "../internal.h"

#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What every commit notifies, and wait_change listens to. */
#define CHANNEL "keyward_changes"

/* pg_advisory_xact_lock's key for writers: "keyw" */
#define WRITER_LOCK "1803122039"

/* The schema of version 1, made in one transaction. Positions (pos) stand
 * for SQLite's rowid: creation order for lists and scans. Paths compare
 * byte by byte (COLLATE "C"), as on SQLite, whatever the database's locale. */
static const char schema_v1[] =
    "CREATE TABLE kw_schema (version INTEGER NOT NULL);"
    "CREATE TABLE kw_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);"
    "CREATE TABLE keys ("
    " pos BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " key_hash BYTEA,"
    " legacy_sha256 BYTEA,"
    " owner TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " scopes TEXT NOT NULL,"
    " meta TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " not_before BIGINT NOT NULL DEFAULT 0,"
    " expires_at BIGINT NOT NULL DEFAULT 0,"
    " last_used_at BIGINT NOT NULL DEFAULT 0,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " revoked_at BIGINT NOT NULL DEFAULT 0,"
    " credits BIGINT,"
    " credits_from TEXT,"
    " rate_limit BIGINT NOT NULL DEFAULT 0,"
    " rate_window_ms BIGINT NOT NULL DEFAULT 0,"
    " rl_start_ms BIGINT NOT NULL DEFAULT 0,"
    " rl_count BIGINT NOT NULL DEFAULT 0,"
    " rl_prev BIGINT NOT NULL DEFAULT 0,"
    " rotated_from TEXT,"
    " rotated_to TEXT,"
    " external_id TEXT,"
    " CHECK (credits IS NULL OR credits >= 0));"
    "CREATE INDEX keys_owner ON keys (owner, pos);"
    "CREATE INDEX keys_prefix ON keys (prefix, pos);"
    "CREATE UNIQUE INDEX keys_hash ON keys (key_hash) WHERE prefix = '';"
    "CREATE UNIQUE INDEX keys_legacy ON keys (legacy_sha256) WHERE legacy_sha256 IS NOT NULL;"
    "CREATE UNIQUE INDEX keys_external ON keys (external_id) WHERE external_id IS NOT NULL;"
    "CREATE TABLE audit ("
    " seq BIGINT PRIMARY KEY,"
    " at BIGINT NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " client TEXT NOT NULL,"
    " result TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " mac BYTEA NOT NULL);"
    "CREATE TABLE key_usage ("
    " key_id TEXT NOT NULL,"
    " bucket BIGINT NOT NULL,"
    " code INTEGER NOT NULL,"
    " count BIGINT NOT NULL,"
    " PRIMARY KEY (key_id, bucket, code));"
    "CREATE TABLE signing_keys ("
    " pos BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " kid BIGINT NOT NULL UNIQUE CHECK (kid BETWEEN 0 AND 4294967295),"
    " kind TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('active', 'verify', 'retired')),"
    " created_at BIGINT NOT NULL,"
    " retired_at BIGINT NOT NULL DEFAULT 0,"
    " sealed BYTEA NOT NULL,"
    " public_key BYTEA CHECK (public_key IS NULL OR length(public_key) = 32));"
    "CREATE TABLE token_revocations ("
    " pos BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " revoked_at BIGINT NOT NULL);"
    "CREATE TABLE secrets ("
    " path TEXT COLLATE \"C\" PRIMARY KEY,"
    " current BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " deleted_at BIGINT NOT NULL DEFAULT 0,"
    " keep BIGINT NOT NULL DEFAULT 10 CHECK (keep BETWEEN 1 AND 100));"
    "CREATE TABLE secret_versions ("
    " path TEXT COLLATE \"C\" NOT NULL,"
    " version BIGINT NOT NULL CHECK (version > 0),"
    " created_at BIGINT NOT NULL,"
    " destroyed_at BIGINT NOT NULL DEFAULT 0,"
    " master_id BIGINT NOT NULL,"
    " wrapped BYTEA,"
    " sealed BYTEA,"
    " PRIMARY KEY (path, version));"
    "INSERT INTO kw_schema (version) VALUES (1);";

/* ---- parameters and results ---------------------------------------------- */

void pg_params_init(pg_params *p)
{
    p->n = 0;
}

static int slot(pg_params *p)
{
    /* A statement with more parameters is a programming error. */
    if (p->n >= PG_PARAMS_MAX)
        abort();
    return p->n++;
}

void pg_text(pg_params *p, const char *v)
{
    int i = slot(p);

    p->v[i] = v;
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_text_or_null(pg_params *p, const char *v)
{
    pg_text(p, v != NULL && v[0] != '\0' ? v : NULL);
}

void pg_int(pg_params *p, int64_t v)
{
    int i = slot(p);

    snprintf(p->num[i], sizeof(p->num[i]), "%lld", (long long)v);
    p->v[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_null(pg_params *p)
{
    pg_text(p, NULL);
}

void pg_bytea(pg_params *p, const void *v, size_t len)
{
    int i = slot(p);

    p->v[i] = v;
    p->len[i] = (int)len;
    p->fmt[i] = 1;
}

/* The message of a failed statement: PostgreSQL's primary message only (its
 * DETAIL can quote the row, key hashes included). */
static kw_rc fail(pg_store *s, const PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (msg == NULL) {
        /* No result, or no server message: the connection's (no values in it). */
        const char *c = PQerrorMessage(s->conn);
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "postgres: %.*s", (int)strcspn(c, "\n"),
                 c);
    } else {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg), "postgres: %s", msg);
    }
    if (state == NULL)
        return KW_ERR_STORAGE;
    if (strncmp(state, "23", 2) == 0) /* integrity constraint violation */
        return KW_ERR_CONFLICT;
    if (strcmp(state, "25006") == 0) /* read-only transaction */
        return KW_ERR_READONLY;
    if (strcmp(state, "53200") == 0) /* out of memory */
        return KW_ERR_NOMEM;
    return KW_ERR_STORAGE;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the connection can take a statement now. A lost one (PostgreSQL
 * restarted, the network cut) is opened again without blocking the caller,
 * which may be an event loop answering from memory meanwhile: the attempt
 * (PQresetStart, at most one a second) moves on at each call (PQresetPoll),
 * and statements fail at once until it is through. A failed statement is
 * never run again: it may have taken effect (a spend) before its answer was
 * lost; the work of an open transaction goes with the connection, and its
 * commit fails. */
static int usable(pg_store *s)
{
    if (s->resetting) {
        PostgresPollingStatusType st = PQresetPoll(s->conn);
        if (st == PGRES_POLLING_OK) {
            s->resetting = 0;
            s->listening = 0; /* a new session listens to nothing */
            return 1;
        }
        if (st == PGRES_POLLING_FAILED)
            s->resetting = 0;
        return 0;
    }
    if (PQstatus(s->conn) == CONNECTION_OK)
        return 1;
    if (mono_ms() - s->reset_at_ms < 1000)
        return 0;
    s->reset_at_ms = mono_ms();
    s->resetting = PQresetStart(s->conn) == 1;
    return s->resetting && usable(s);
}

PGresult *pg_run(pg_store *s, const char *sql, const pg_params *p, kw_rc *rc)
{
    PGresult *r;
    ExecStatusType st;

    if (!usable(s)) {
        snprintf(s->base.errmsg, sizeof(s->base.errmsg),
                 "postgres: the connection is lost (opening it again)");
        *rc = KW_ERR_STORAGE;
        return NULL;
    }
    /* Without parameters, PQexec: it takes several statements (the schema). */
    r = p == NULL ? PQexec(s->conn, sql)
                  : PQexecParams(s->conn, sql, p->n, NULL, p->v, p->len, p->fmt, 0);
    st = PQresultStatus(r);

    if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        *rc = KW_OK;
        return r;
    }
    *rc = fail(s, r);
    PQclear(r);
    return NULL;
}

kw_rc pg_exec(pg_store *s, const char *sql, const pg_params *p, int64_t *changed)
{
    kw_rc rc;
    PGresult *r = pg_run(s, sql, p, &rc);

    if (r == NULL)
        return rc;
    if (changed != NULL) {
        const char *t = PQcmdTuples(r);
        *changed = t[0] != '\0' ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(r);
    return KW_OK;
}

kw_rc pg_nomem(pg_store *s)
{
    snprintf(s->base.errmsg, sizeof(s->base.errmsg), "postgres: out of memory");
    return KW_ERR_NOMEM;
}

kw_rc pg_rows_alloc(pg_store *s, const PGresult *r, size_t size, void **out, size_t *n)
{
    int rows = PQntuples(r);

    *out = NULL;
    *n = rows > 0 ? (size_t)rows : 0;
    if (*n > 0 && (*out = calloc(*n, size)) == NULL) {
        *n = 0;
        return pg_nomem(s);
    }
    return KW_OK;
}

int pg_is_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

int64_t pg_get_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *pg_get_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

int pg_get_text_into(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    size_t n = (size_t)PQgetlength(r, row, col);

    if (PQgetisnull(r, row, col) || n >= cap)
        return 0;
    memcpy(dst, PQgetvalue(r, row, col), n + 1);
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long kwi_pg_unhex(const char *t, size_t tlen, unsigned char *buf, size_t cap)
{
    size_t n;

    if (tlen < 2 || t[0] != '\\' || t[1] != 'x' || (tlen - 2) % 2 != 0)
        return -1;
    n = (tlen - 2) / 2;
    if (n > cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(t[2 + 2 * i]), lo = hexval(t[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return -1;
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    return (long)n;
}

long pg_get_bytea(const PGresult *r, int row, int col, unsigned char *buf, size_t cap)
{
    if (PQgetisnull(r, row, col))
        return -1;
    return kwi_pg_unhex(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col), buf, cap);
}

kw_rc pg_get_bytea_dup(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    size_t tlen = (size_t)PQgetlength(r, row, col), cap = tlen / 2 + 1;
    unsigned char *buf;
    long n;

    *out = NULL;
    *len = 0;
    if (PQgetisnull(r, row, col))
        return KW_OK;
    if ((buf = malloc(cap)) == NULL)
        return KW_ERR_NOMEM;
    n = kwi_pg_unhex(PQgetvalue(r, row, col), tlen, buf, cap);
    if (n < 0) {
        free(buf);
        return KW_ERR_STORAGE;
    }
    *out = buf;
    *len = (size_t)n;
    return KW_OK;
}

/* ---- the connection --------------------------------------------------------- */

static void pg_close(kw_store *base)
{
    pg_store *s = (pg_store *)base;

    if (s == NULL)
        return;
    PQfinish(s->conn);
    if (s->url != NULL) {
        sodium_memzero(s->url, strlen(s->url));
        free(s->url);
    }
    free(s);
}

static kw_rc pg_begin(kw_store *base)
{
    pg_store *s = (pg_store *)base;
    /* Durable: a change and its audit record survive a crash once
     * committed (the session's default is asynchronous: kwi_pg_open). */
    kw_rc rc = pg_exec(s, "BEGIN; SET LOCAL synchronous_commit = on", NULL, NULL);

    if (rc == KW_OK &&
        (rc = pg_exec(s, "SELECT pg_advisory_xact_lock(" WRITER_LOCK ")", NULL, NULL)) != KW_OK)
        (void)pg_exec(s, "ROLLBACK", NULL, NULL);
    return rc;
}

static kw_rc pg_commit(kw_store *base)
{
    pg_store *s = (pg_store *)base;
    kw_rc rc;
    /* A change (it has its audit record) wakes every node following
     * changes (wait_change), which read them from the audit trail; a commit
     * without one (usage) has nothing for them. PostgreSQL sends the
     * notification only if the transaction commits. */
    PGresult *r = pg_run(s, s->audited ? "NOTIFY " CHANNEL "; COMMIT" : "COMMIT", NULL, &rc);
    int committed;

    s->audited = 0;
    if (r == NULL)
        return rc;
    /* A transaction in which a statement failed answers COMMIT with
     * ROLLBACK, and no error: that is a failed commit. (SQLite lets a
     * transaction go on after a failed statement; PostgreSQL does not.) */
    committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!committed) {
        snprintf(base->errmsg, sizeof(base->errmsg),
                 "postgres: the transaction had failed and was rolled back");
        return KW_ERR_STORAGE;
    }
    return KW_OK;
}

static void pg_rollback(kw_store *base)
{
    pg_store *s = (pg_store *)base;

    s->audited = 0;
    /* A lost connection took its transaction with it (usable() opens it again). */
    if (PQstatus(s->conn) == CONNECTION_OK && !s->resetting &&
        PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        (void)pg_exec(s, "ROLLBACK", NULL, NULL);
}

static kw_rc pg_meta_get(kw_store *base, const char *name, unsigned char *buf, size_t cap,
                         size_t *len)
{
    pg_store *s = (pg_store *)base;
    pg_params p;
    kw_rc rc;
    PGresult *r;
    long n;

    pg_params_init(&p);
    pg_text(&p, name);
    r = pg_run(s, "SELECT value FROM kw_meta WHERE name = $1", &p, &rc);
    if (r == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return KW_ERR_NOT_FOUND;
    }
    n = pg_get_bytea(r, 0, 0, buf, cap);
    PQclear(r);
    if (n < 0) {
        snprintf(base->errmsg, sizeof(base->errmsg), "meta value %s too large", name);
        return KW_ERR_STORAGE;
    }
    *len = (size_t)n;
    return KW_OK;
}

static kw_rc pg_meta_set(kw_store *base, const char *name, const void *val, size_t len)
{
    pg_params p;

    pg_params_init(&p);
    pg_text(&p, name);
    pg_bytea(&p, len > 0 ? val : "", len);
    return pg_exec((pg_store *)base,
                   "INSERT INTO kw_meta (name, value) VALUES ($1, $2) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   &p, NULL);
}

static kw_rc pg_wait_change(kw_store *base, int timeout_ms)
{
    pg_store *s = (pg_store *)base;
    struct pollfd pfd;
    PGnotify *n;
    int got;

    if (!usable(s)) {
        snprintf(base->errmsg, sizeof(base->errmsg), "postgres: the connection is lost");
        return KW_ERR_STORAGE;
    }
    if (!s->listening) {
        kw_rc rc = pg_exec(s, "LISTEN " CHANNEL, NULL, NULL);
        if (rc != KW_OK)
            return rc;
        s->listening = 1;
    }
    /* Notifications that came with earlier answers first. */
    PQconsumeInput(s->conn);
    for (got = 0; (n = PQnotifies(s->conn)) != NULL; got = 1)
        PQfreemem(n);
    if (got)
        return KW_OK;
    pfd.fd = PQsocket(s->conn);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (pfd.fd < 0 || poll(&pfd, 1, timeout_ms) < 0)
        return KW_OK; /* interrupted: the caller follows now, as after a wait */
    if (pfd.revents != 0 && !PQconsumeInput(s->conn)) {
        snprintf(base->errmsg, sizeof(base->errmsg), "postgres: the connection is lost");
        return KW_ERR_STORAGE; /* usable() opens it again, and LISTEN follows */
    }
    while ((n = PQnotifies(s->conn)) != NULL)
        PQfreemem(n);
    return KW_OK;
}

static kw_rc pg_reopen(kw_store *base, kw_store **out)
{
    pg_store *s = (pg_store *)base;
    char err[256];
    kw_rc rc = kwi_pg_open(out, s->url, 0, err);

    if (rc != KW_OK)
        snprintf(base->errmsg, sizeof(base->errmsg), "%s", err);
    return rc;
}

static const kw_store_ops pg_ops = {
    .name = "postgres",
    .exact_spends = 1,
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .key_insert = pg_key_insert,
    .key_get = pg_key_get,
    .key_find_hash = pg_key_find_hash,
    .key_find_legacy = pg_key_find_legacy,
    .key_find_external = pg_key_find_external,
    .key_put = pg_key_put,
    .key_list = pg_key_list,
    .key_spend = pg_key_spend,
    .key_touch = pg_key_touch,
    .key_set_hash = pg_key_set_hash,
    .key_scan = pg_key_scan,
    .key_scan_end = pg_key_scan_end,
    .key_use = pg_key_use,
    .usage_add = pg_usage_add,
    .usage_list = pg_usage_list,
    .key_count_imported = pg_key_count_imported,
    .key_count = pg_key_count,
    .reopen = pg_reopen,
    .wait_change = pg_wait_change,
    .signing_key_insert = pg_signing_key_insert,
    .signing_key_list = pg_signing_key_list,
    .signing_key_state = pg_signing_key_state,
    .token_revoke = pg_token_revoke,
    .token_revoked = pg_token_revoked,
    .secret_head = pg_secret_head,
    .secret_head_put = pg_secret_head_put,
    .secret_list = pg_secret_list,
    .secret_version_put = pg_secret_version_put,
    .secret_version_get = pg_secret_version_get,
    .secret_versions = pg_secret_versions,
    .secret_version_destroy = pg_secret_version_destroy,
    .secret_prune = pg_secret_prune,
    .secret_wrapped_all = pg_secret_wrapped_all,
    .secret_rewrap = pg_secret_rewrap,
    .audit_append = pg_audit_append,
    .audit_list = pg_audit_list,
};

/* The schema's version: 0 when there is no keyward schema at all. */
static kw_rc schema_version(pg_store *s, int *v)
{
    kw_rc rc;
    PGresult *r = pg_run(s, "SELECT to_regclass('kw_schema') IS NOT NULL", NULL, &rc);
    int exists;

    if (r == NULL)
        return rc;
    exists = strcmp(pg_get_text(r, 0, 0), "t") == 0;
    PQclear(r);
    *v = 0;
    if (!exists)
        return KW_OK;
    if ((r = pg_run(s, "SELECT max(version) FROM kw_schema", NULL, &rc)) == NULL)
        return rc;
    *v = (int)pg_get_int(r, 0, 0);
    PQclear(r);
    return KW_OK;
}

/* Make the schema, unless another node made it first (the writers' lock
 * keeps two from making it at once). */
static kw_rc create_schema(pg_store *s)
{
    int v = 0;
    kw_rc rc = pg_begin(&s->base);

    if (rc == KW_OK)
        rc = schema_version(s, &v);
    if (rc == KW_OK && v == 0)
        rc = pg_exec(s, schema_v1, NULL, NULL);
    if (rc == KW_OK)
        return pg_commit(&s->base);
    pg_rollback(&s->base);
    return rc;
}

kw_rc kwi_pg_open(kw_store **out, const char *url, int create, char err[static 256])
{
    pg_store *s = calloc(1, sizeof(*s));
    int version = 0;
    kw_rc rc;

    err[0] = '\0';
    if (s == NULL || (s->url = strdup(url)) == NULL) {
        free(s);
        return KW_ERR_NOMEM;
    }
    s->base.ops = &pg_ops;
    {
        /* A connect_timeout unless the URL has its own (later keywords win):
         * a node must not hang for minutes reconnecting to a host that is
         * gone. Statements outside begin() (a verification's spend, usage)
         * commit without waiting for the disk: still atomic, and exact
         * across nodes, but a crash of PostgreSQL may undo the last few
         * hundred milliseconds of them (credits spent then come back).
         * Every change made through begin() waits (SET LOCAL there). */
        static const char *const keys[] = {"connect_timeout", "options", "dbname", NULL};
        const char *vals[] = {"5", "-c synchronous_commit=off", url, NULL};
        s->conn = PQconnectdbParams(keys, vals, 1);
    }
    if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
        const char *m = s->conn != NULL ? PQerrorMessage(s->conn) : "out of memory";
        /* libpq's message names the host and port, never the password. */
        snprintf(err, 256, "postgres: cannot connect: %.*s", (int)strcspn(m, "\n"), m);
        pg_close(&s->base);
        return KW_ERR_STORAGE;
    }
    rc = schema_version(s, &version);
    if (rc == KW_OK && version == 0 && create) {
        rc = create_schema(s);
        if (rc == KW_OK)
            rc = schema_version(s, &version);
    }
    if (rc != KW_OK) {
        snprintf(err, 256, "%s", s->base.errmsg);
    } else if (version == 0) {
        snprintf(err, 256, "the PostgreSQL database is not a keyward database (run keyward init)");
        rc = KW_ERR_NO_DATABASE;
    } else if (version > KWI_PG_SCHEMA_VERSION) {
        snprintf(err, 256, "schema version %d is newer than this keyward (%d)", version,
                 KWI_PG_SCHEMA_VERSION);
        rc = KW_ERR_SCHEMA;
    }
    if (rc != KW_OK) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return KW_OK;
}
