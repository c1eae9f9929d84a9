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
 * Detail of the last failure on `ctx` (never holds key material).
 * @return a string owned by ctx, valid until the next call; never NULL.
 */
KW_API const char *kw_errmsg(const kw_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
