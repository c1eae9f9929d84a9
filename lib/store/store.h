/*
 * The storage back-end interface. One file per back end (sqlite.c; later
 * postgres.c); every back end passes tests/unit/test_store.c.
 *
 * Contract:
 *  - Every call returns KW_OK or a kw_rc; a message for the failure is
 *    left in store->errmsg (never holding key material).
 *  - begin() opens a write transaction that serialises against every other
 *    writer (SQLite: BEGIN IMMEDIATE); commit() or rollback() ends it.
 *    Reads outside a transaction see committed data.
 *  - key_get / key_find_* return KW_ERR_NOT_FOUND when there is no row.
 *  - key_spend is atomic on its own: it never takes credits below zero and
 *    returns KW_ERR_CONFLICT, changing nothing, when cost > remaining.
 */
#ifndef KEYWARD_STORE_H
#define KEYWARD_STORE_H

#include <keyward/audit.h>
#include <keyward/record.h>

#define KWI_SCHEMA_VERSION 7

/* A record plus what only storage and verification see. */
typedef struct kw_key_row {
    kw_key_record rec;
    unsigned char hash[32]; /* HMAC-SHA-256(pepper, key) */
    int has_hash;
    unsigned char legacy_sha256[32]; /* imported seed keys */
    int has_legacy;
    char credits_from[KW_ID_LEN + 1]; /* spend from this key's credits ("" = own) */
    int64_t rl_start_ms;              /* sliding window: current window start */
    int64_t rl_count;                 /* requests in the current window */
    int64_t rl_prev;                  /* requests in the previous window */
} kw_key_row;

typedef struct kw_audit_row {
    kw_audit_record r;
    unsigned char mac[32];
} kw_audit_row;

typedef struct kw_usage_row {
    int64_t bucket; /* Unix time of the hour's start */
    int code;       /* kw_verdict */
    int64_t count;
} kw_usage_row;

/* A signing key of the token keyring (lib/keyring.c); its secret only
 * sealed (XChaCha20-Poly1305 under a key derived from the pepper). An
 * Ed25519 key has its public key beside it (bound to the sealed blob as
 * associated data); one known only by its public key seals nothing, so
 * the blob is just the pepper's seal on that public key. */
#define KWI_SEALED_MAX 96
typedef struct kwi_signing_key_row {
    uint32_t kid;
    char kind[16]; /* "hmac-sha256", "ed25519" */
    char state[8]; /* "active" (mints and verifies), "verify", "retired" */
    int64_t created_at;
    int64_t retired_at; /* 0 unless retired */
    unsigned char sealed[KWI_SEALED_MAX];
    size_t sealed_len;
    unsigned char public_key[32]; /* ed25519 */
    int has_public_key;
} kwi_signing_key_row;

/* The secrets store (lib/secrets.c): a head row per secret and a row per
 * version; a value is only ever there sealed under its data key, and the
 * data key only wrapped under the master key. */
#define KWI_SECRET_PATH_MAX 256
#define KWI_WRAPPED_LEN 72 /* nonce 24, key 32, tag 16 */
typedef struct kwi_secret_head {
    char path[KWI_SECRET_PATH_MAX + 1];
    int64_t current; /* the latest version written */
    int64_t created_at, updated_at;
    int64_t deleted_at; /* 0 unless soft-deleted */
    int64_t keep;       /* versions kept (1..100) */
} kwi_secret_head;

typedef struct kwi_secret_version {
    int64_t version, created_at;
    int64_t destroyed_at; /* 0 unless destroyed (then no blobs) */
    uint64_t master_id;   /* which master key wrapped the data key */
    unsigned char wrapped[KWI_WRAPPED_LEN];
    size_t wrapped_len;
    unsigned char *sealed; /* malloc'd by secret_version_get; NULL in lists */
    size_t sealed_len;
} kwi_secret_version;

typedef struct kw_store kw_store;

typedef struct kw_store_ops {
    const char *name;
    /* Several processes verify against this database at once (several
     * nodes): credits are spent in storage, one atomic key_spend per
     * verification, not gathered in an index's memory (kw_index_verify). */
    int exact_spends;
    void (*close)(kw_store *s);
    kw_rc (*begin)(kw_store *s);
    kw_rc (*commit)(kw_store *s);
    void (*rollback)(kw_store *s);

    /* Small named values (schema facts, pepper check, audit head). */
    kw_rc (*meta_get)(kw_store *s, const char *name, unsigned char *buf, size_t cap, size_t *len);
    kw_rc (*meta_set)(kw_store *s, const char *name, const void *val, size_t len);

    kw_rc (*key_insert)(kw_store *s, const kw_key_row *row);
    kw_rc (*key_get)(kw_store *s, const char *id, kw_key_row *out);
    /* Imported keys only (prefix ""): keys with a prefix are found by id,
     * and their hashes are unique because their ids are (the id is part of
     * the hashed key), so they are neither indexed nor checked by hash. */
    kw_rc (*key_find_hash)(kw_store *s, const unsigned char hash[32], kw_key_row *out);
    kw_rc (*key_find_legacy)(kw_store *s, const unsigned char sha[32], kw_key_row *out);
    kw_rc (*key_find_external)(kw_store *s, const char *external_id, kw_key_row *out);
    /* Overwrite every column of the row with this id. */
    kw_rc (*key_put)(kw_store *s, const kw_key_row *row);
    /* Up to f->limit records in creation order, after the key f->after
     * (KW_ERR_NOT_FOUND if there is no such key). */
    kw_rc (*key_list)(kw_store *s, const kw_key_filter *f, kw_key_record **out, size_t *n);
    kw_rc (*key_spend)(kw_store *s, const char *id, int64_t cost, int64_t *remaining);
    /* Record a use: last_used_at (never moved backwards) and rate-limit state. */
    kw_rc (*key_touch)(kw_store *s, const kw_key_row *row);
    /* Replace the stored hash and drop the legacy SHA-256 (seed key upgrade). */
    kw_rc (*key_set_hash)(kw_store *s, const char *id, const unsigned char hash[32]);
    /* Hand fn the full rows in the back end's storage order, at most limit,
     * after the position *cursor (0: the start) and up to `end` (included),
     * *cursor moving past the last row handed over; *n receives how many. Every row that exists for
     * the whole scan comes exactly once. The row is borrowed: its strings live only during the call
     * (no copy is made: a million keys load in about a second). fn returns KW_OK to go on; anything
     * else stops the scan and is returned. */
    kw_rc (*key_scan)(kw_store *s, int64_t *cursor, int64_t end, size_t limit,
                      kw_rc (*fn)(void *arg, const kw_key_row *row), void *arg, size_t *n);
    /* The position of the last row now (0: none): scans up to `end` =
     * this cover every row, and ranges of it can be scanned in parallel. */
    kw_rc (*key_scan_end)(kw_store *s, int64_t *end);
    /* Apply usage gathered in memory: credits -= spent (never below zero,
     * unlimited stays unlimited), last_used_at never moved backwards. */
    kw_rc (*key_use)(kw_store *s, const char *id, int64_t spent, int64_t last_used_at);
    /* Add n verifications with verdict `code` to key id's hour `bucket`. */
    kw_rc (*usage_add)(kw_store *s, const char *id, int64_t bucket, int code, int64_t n);
    /* The usage rows of id with from <= bucket < to, in bucket order. */
    kw_rc (*usage_list)(kw_store *s, const char *id, int64_t from, int64_t to, kw_usage_row **out,
                        size_t *n);
    /* Number of imported keys (prefix ""), which are found by hash, not id. */
    kw_rc (*key_count_imported)(kw_store *s, int64_t *n);
    /* Number of keys. */
    kw_rc (*key_count)(kw_store *s, int64_t *n);
    /* Another connection to the same database (for a second thread). */
    kw_rc (*reopen)(kw_store *s, kw_store **out);
    /* Checkpoints of a write-ahead log (NULL for a back end without one).
     * wal_defer: this connection's commits no longer copy the log into the
     * database themselves, but at a far larger log;
     * wal_checkpoint: copy what it can now, waiting for no reader or
     * writer; log_frames / copied get the log's size and how much of it is
     * in the database (either may be NULL). */
    kw_rc (*wal_defer)(kw_store *s);
    kw_rc (*wal_checkpoint)(kw_store *s, int64_t *log_frames, int64_t *copied);
    /* Wait up to timeout_ms for a commit made through another connection
     * (a hint only: changes are still read from the audit trail); KW_OK
     * either way, or a failure of the connection. NULL: the caller sleeps. */
    kw_rc (*wait_change)(kw_store *s, int timeout_ms);

    /* The token keyring: insert (KW_ERR_CONFLICT if the kid is taken), all
     * rows oldest first, and a change of state (KW_ERR_NOT_FOUND). */
    kw_rc (*signing_key_insert)(kw_store *s, const kwi_signing_key_row *row);
    kw_rc (*signing_key_list)(kw_store *s, kwi_signing_key_row **out, size_t *n);
    kw_rc (*signing_key_state)(kw_store *s, uint32_t kid, const char *state, int64_t at);
    /* Revoked token ids: add one (KW_ERR_CONFLICT if there), list all. */
    kw_rc (*token_revoke)(kw_store *s, const char *id, int64_t at);
    /* The ids revoked after sequence number `after` (0: all), in the order
     * they were revoked; *last receives the last one's number (or after). */
    kw_rc (*token_revoked)(kw_store *s, int64_t after, char (**out)[KW_ID_LEN + 1], size_t *n,
                           int64_t *last);

    /* Secrets: a head (KW_ERR_NOT_FOUND), written whole; the heads under a
     * path prefix, in path order; a version written, read (its sealed blob
     * malloc'd; KW_ERR_NOT_FOUND), listed newest first (no blobs),
     * destroyed (blobs dropped), and the versions below `below` deleted. */
    kw_rc (*secret_head)(kw_store *s, const char *path, kwi_secret_head *out);
    kw_rc (*secret_head_put)(kw_store *s, const kwi_secret_head *h);
    kw_rc (*secret_list)(kw_store *s, const char *prefix, kwi_secret_head **out, size_t *n);
    kw_rc (*secret_version_put)(kw_store *s, const char *path, const kwi_secret_version *v);
    kw_rc (*secret_version_get)(kw_store *s, const char *path, int64_t version,
                                kwi_secret_version *out);
    kw_rc (*secret_versions)(kw_store *s, const char *path, kwi_secret_version **out, size_t *n);
    kw_rc (*secret_version_destroy)(kw_store *s, const char *path, int64_t version, int64_t at);
    kw_rc (*secret_prune)(kw_store *s, const char *path, int64_t below);
    /* Every version that is not destroyed, with its wrapped data key
     * (sealed NULL), in path and version order; and a version's data key
     * wrapped again (master key rotation). */
    kw_rc (*secret_wrapped_all)(kw_store *s, kwi_secret_head **paths, kwi_secret_version **out,
                                size_t *n);
    kw_rc (*secret_rewrap)(kw_store *s, const char *path, int64_t version,
                           const unsigned char *wrapped, size_t len, uint64_t master_id);

    kw_rc (*audit_append)(kw_store *s, const kw_audit_row *row);
    kw_rc (*audit_list)(kw_store *s, const kw_audit_filter *f, kw_audit_row **out, size_t *n);
} kw_store_ops;

struct kw_store {
    const kw_store_ops *ops;
    char errmsg[256];
};

/* Open the SQLite back end at `path`. create: make it and migrate. */
kw_rc kwi_sqlite_open(kw_store **out, const char *path, int create, char err[static 256]);
/* Open the PostgreSQL back end at a libpq URL (postgres://...). create:
 * make the schema if there is none. */
kw_rc kwi_pg_open(kw_store **out, const char *url, int create, char err[static 256]);
/* Process-wide SQLite settings, before its first use (kw_init). */
void kwi_sqlite_init(void);

/* Free a row's owned memory. */
void kwi_key_row_clear(kw_key_row *row);
void kwi_audit_rows_free(kw_audit_row *rows, size_t n);
void kwi_key_rows_free(kw_key_row *rows, size_t n);
void kwi_audit_record_clear(kw_audit_record *r);

#endif
