/*
 * keyward — a keyward context: one open database and its pepper.
 *
 * A context is used by one thread at a time. The pepper (32 random bytes
 * kept outside the database) keys every stored hash and the audit chain.
 */
#ifndef KEYWARD_CTX_H
#define KEYWARD_CTX_H

#include <keyward/common.h>
#include <keyward/secret.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_ctx kw_ctx;

#define KW_PEPPER_LEN 32
#define KW_DEFAULT_DB_URL "sqlite:./keyward.db"

/** Who makes a change: recorded in the audit trail. */
typedef struct kw_actor {
    const char *id;     /**< actor key id, or "cli" */
    const char *client; /**< client address or "local" */
} kw_actor;

typedef struct kw_open_opts {
    int create;     /**< 1: create the database and run migrations (keyward init) */
    char *err;      /**< optional: receives a failure message (no key material) */
    size_t err_len; /**< size of err */
} kw_open_opts;

/**
 * Load the pepper: from KEYWARD_PEPPER (64 hex chars) if set, else from
 * `file` (64 hex chars and an optional newline), which must be a regular
 * file with no group or other permissions.
 * @param out receives the 32-byte pepper, owned by the caller.
 * @return KW_OK, KW_ERR_PEPPER (missing, malformed, too open) or KW_ERR_NOMEM.
 */
KW_API kw_rc kw_pepper_load(kw_secret **out, const char *file) KW_WARN_UNUSED;

/**
 * Create a new random pepper and write it to `file` (mode 0600, O_EXCL:
 * an existing file is never overwritten).
 * @return KW_OK, KW_ERR_CONFLICT (file exists), KW_ERR_IO, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_pepper_create(kw_secret **out, const char *file) KW_WARN_UNUSED;

/**
 * The default pepper file for a database URL: "<db path>.pepper" for
 * sqlite:PATH. Returns a malloc'd string owned by the caller, or NULL.
 */
KW_API char *kw_pepper_default_path(const char *db_url);

/**
 * Open the database at `db_url` ("sqlite:PATH" or a plain path).
 * @param pepper borrowed; copied into the context.
 * @param opts may be NULL (open an existing database only).
 * @param out receives the context; set only on success.
 * @return KW_OK, KW_ERR_NO_DATABASE, KW_ERR_STORAGE, KW_ERR_READONLY,
 *         KW_ERR_SCHEMA, KW_ERR_PEPPER_MISMATCH, KW_ERR_INVALID, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_open(kw_ctx **out, const char *db_url, const kw_secret *pepper,
                     const kw_open_opts *opts) KW_WARN_UNUSED;

/** Close and free. Accepts NULL. */
KW_API void kw_close(kw_ctx *ctx);

/**
 * Stop this context's commits from copying the write-ahead log into the
 * database themselves (SQLite: a checkpoint every 1000 pages, which stalls
 * the commit that triggers it), for a process that runs kw_checkpoint
 * from a thread of its own instead. A commit still checkpoints once the
 * log reaches 8192 pages (32 MiB): by then the other thread has copied
 * nearly all of it, and only a commit can start the log over. A no-op for
 * back ends without such a log.
 * @return KW_OK or KW_ERR_STORAGE.
 */
KW_API kw_rc kw_defer_checkpoints(kw_ctx *ctx) KW_WARN_UNUSED;

/**
 * Copy what the write-ahead log holds into the database, as far as the
 * readers of the moment allow, waiting for no reader or writer (SQLite: a
 * PASSIVE checkpoint). Cheap when there is nothing new.
 * @param log_frames optional: receives the log's size, in pages.
 * @param copied optional: receives how many of them are now in the database.
 * @return KW_OK or KW_ERR_STORAGE.
 */
KW_API kw_rc kw_checkpoint(kw_ctx *ctx, int64_t *log_frames, int64_t *copied) KW_WARN_UNUSED;

/**
 * Wait up to timeout_ms for a change committed through another connection
 * (PostgreSQL: a NOTIFY that every commit of an audited change sends;
 * others: just sleep). A hint
 * for a process that follows changes (kw_index_follow): it may return early
 * for no change, and the changes themselves are read from the audit trail.
 * @return KW_OK, or KW_ERR_STORAGE when the connection failed (it is opened
 *         again for the next call).
 */
KW_API kw_rc kw_wait_change(kw_ctx *ctx, int timeout_ms) KW_WARN_UNUSED;

/**
 * Detail of the last failure on `ctx` (never holds key material).
 * @return a string owned by ctx, valid until the next call; never NULL.
 */
KW_API const char *kw_errmsg(const kw_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
