/*
 * keyward — importing keys from other systems.
 *
 * kw_import_seed reads the seeds' SQLAlchemy `api_keys` table (key_hash is
 * the hex SHA-256 of the whole key) from a SQLite file. Imported keys keep
 * owner (user_id), scopes (permissions), name, created/last-used/expiry
 * times and active state; they verify under their SHA-256 hash until their
 * first successful verification, which re-hashes them to the peppered form.
 * The import is one transaction: all rows or none. Re-importing skips rows
 * already imported (matched by their seed id).
 */
#ifndef KEYWARD_IMPORT_H
#define KEYWARD_IMPORT_H

#include <keyward/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_import_report {
    size_t rows;     /**< rows read */
    size_t imported; /**< new records */
    size_t skipped;  /**< already imported earlier */
    int64_t bad_row; /**< 1-based row number of the first bad row, or 0 */
} kw_import_report;

/**
 * Import the seed table at `path`. With dry_run, validates and counts only.
 * @return KW_OK, KW_ERR_IO (cannot open), KW_ERR_INVALID (a bad row; nothing
 *         imported; kw_errmsg says which and why), KW_ERR_STORAGE, ...
 */
KW_API kw_rc kw_import_seed(kw_ctx *ctx, const char *path, int dry_run, const kw_actor *actor,
                            kw_import_report *report) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
