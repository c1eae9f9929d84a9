/*
 * keyward — secrets: values kept encrypted in the database, versioned, and
 * read back by path (docs/secrets.md). Each version's value is sealed with
 * XChaCha20-Poly1305 under a data key of its own; the data key is sealed
 * under the master key, which never enters the database. The associated
 * data binds path and version: no ciphertext can be moved to another
 * secret or version.
 *
 * (kw_secret, in secret.h, is the locked memory every secret lives in;
 * these functions are kw_secrets_*.)
 */
#ifndef KEYWARD_SECRETS_H
#define KEYWARD_SECRETS_H

#include <keyward/common.h>
#include <keyward/ctx.h>
#include <keyward/record.h>
#include <keyward/secret.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_SECRET_PATH_MAX 256
#define KW_SECRET_VALUE_MAX 64000 /**< bytes (a value read with its newline still fits a read) */
#define KW_SECRET_KEEP 10 /**< versions kept per secret by default; older ones are deleted */
#define KW_SECRET_KEEP_MAX 100
#define KW_MASTER_KEY_LEN 32

/**
 * Load the master key: KEYWARD_MASTER_KEY (64 hex characters) if set, else
 * the output of KEYWARD_MASTER_KEY_CMD (run with /bin/sh; its first line,
 * 64 hex characters), else `file` (64 hex characters, mode 0600, not a
 * symbolic link). NULL file: the environment only.
 * @param why optional: what was wrong, for the operator.
 * @return KW_OK, KW_ERR_MASTER_KEY (missing, malformed, a file others can
 *         read, a command that failed), KW_ERR_NOMEM.
 */
KW_API kw_rc kw_master_key_load(kw_secret **out, const char *file, char *why,
                                size_t why_len) KW_WARN_UNUSED;

/** The default master key file of a database URL: "<db path>.master". */
KW_API char *kw_master_key_default_path(const char *db_url);

/**
 * Let ctx read and write secrets with this master key (copied). The first
 * key given to a database is its master key from then on (its id is kept
 * in the database); another key is refused with KW_ERR_MASTER_KEY.
 */
KW_API kw_rc kw_secrets_master(kw_ctx *ctx, const kw_secret *master) KW_WARN_UNUSED;

/** Is path a secret path: 1–256 characters of [A-Za-z0-9_.-] in segments
 * separated by '/', no empty segment, no "." or ".." segment? */
KW_API int kw_secret_path_valid(const char *path);

/**
 * Write a new version of the secret at path (made if it is not there, or
 * brought back if it was deleted). Audited as "secret.write" (path and
 * version, never the value).
 * @param value 1 to KW_SECRET_VALUE_MAX bytes.
 * @param cas check-and-set: -1 writes whatever the current version is; 0
 *        only if the secret does not exist; n only if n is its current
 *        version (else KW_ERR_CONFLICT).
 * @param version_out optional: the version written.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_CONFLICT, KW_ERR_MASTER_KEY,
 *         KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secrets_put(kw_ctx *ctx, const char *path, const kw_secret *value, int64_t cas,
                            const kw_actor *actor, int64_t *version_out) KW_WARN_UNUSED;

/**
 * Read a version of a secret (0: the current one). Audited as
 * "secret.read". A deleted secret, a destroyed version, or one older than
 * the versions kept: KW_ERR_NOT_FOUND.
 * @param value_out receives the value (locked memory).
 * @param version_out optional: the version read.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOT_FOUND, KW_ERR_MASTER_KEY
 *         (not the database's master key, or a value that does not open:
 *         altered, or moved), KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secrets_get(kw_ctx *ctx, const char *path, int64_t version, const kw_actor *actor,
                            kw_secret **value_out, int64_t *version_out) KW_WARN_UNUSED;

/** A secret as listed (never its value). */
typedef struct kw_secret_info {
    char path[KW_SECRET_PATH_MAX + 1];
    int64_t version; /**< its current version */
    int64_t created_at, updated_at;
    int64_t deleted_at; /**< 0 unless deleted */
    int64_t keep;       /**< how many versions it keeps */
} kw_secret_info;

/**
 * How many versions the secret at path keeps (1 to KW_SECRET_KEEP_MAX;
 * KW_SECRET_KEEP until set). Older ones are deleted at once, and with every
 * write after. Audited as "secret.keep".
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOT_FOUND, KW_ERR_STORAGE.
 */
KW_API kw_rc kw_secrets_keep(kw_ctx *ctx, const char *path, int64_t keep,
                             const kw_actor *actor) KW_WARN_UNUSED;

/**
 * The secrets whose path starts with prefix ("" for all), in path order;
 * deleted ones only with `deleted`.
 * @param out receives *n entries (free with free()).
 */
KW_API kw_rc kw_secrets_list(kw_ctx *ctx, const char *prefix, int deleted, kw_secret_info **out,
                             size_t *n) KW_WARN_UNUSED;

/** A version of a secret, as listed. */
typedef struct kw_secret_version_info {
    int64_t version, created_at;
    int64_t destroyed_at; /**< 0 unless destroyed */
} kw_secret_version_info;

/**
 * The versions kept of a secret, newest first.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOT_FOUND, KW_ERR_STORAGE.
 */
KW_API kw_rc kw_secrets_history(kw_ctx *ctx, const char *path, kw_secret_version_info **out,
                                size_t *n) KW_WARN_UNUSED;

/**
 * Soft-delete a secret: it reads as not found and is not listed, until
 * kw_secrets_undelete (or a new write). Audited as "secret.delete" /
 * "secret.undelete".
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOT_FOUND, KW_ERR_CONFLICT
 *         (already deleted / not deleted), KW_ERR_STORAGE.
 */
KW_API kw_rc kw_secrets_delete(kw_ctx *ctx, const char *path, const kw_actor *actor) KW_WARN_UNUSED;
KW_API kw_rc kw_secrets_undelete(kw_ctx *ctx, const char *path,
                                 const kw_actor *actor) KW_WARN_UNUSED;

/**
 * Destroy one version for good: its sealed value and data key are erased
 * from the database. Audited as "secret.destroy".
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOT_FOUND, KW_ERR_STORAGE.
 */
KW_API kw_rc kw_secrets_destroy(kw_ctx *ctx, const char *path, int64_t version,
                                const kw_actor *actor) KW_WARN_UNUSED;

/**
 * Rotate the master key: every data key is unsealed with ctx's master key
 * and sealed again under new_master, in one transaction (values are not
 * touched, and no plaintext leaves locked memory); from the commit on,
 * only new_master opens them, and ctx uses it. Audited as
 * "master-key.rotate".
 * @param count_out optional: how many versions were sealed again.
 * @return KW_OK, KW_ERR_INVALID (the same key), KW_ERR_MASTER_KEY (ctx has
 *         none, or a data key does not open), KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secrets_rotate_master(kw_ctx *ctx, const kw_secret *new_master,
                                      const kw_actor *actor, size_t *count_out) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
