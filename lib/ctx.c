/* Opening a keyward database: back-end choice, pepper check, derived keys. */
#include "internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char pepper_check_label[] = "keyward/pepper-check/v1";
static const char audit_key_label[] = "keyward/audit/v1";

/* "sqlite:PATH" or a bare path; NULL for anything else. */
static const char *sqlite_path(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return url[7] ? url + 7 : NULL;
    if (strstr(url, "://") != NULL)
        return NULL;
    return url;
}

/* A libpq URL (PostgreSQL). */
static int postgres_url(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

/* The database remembers a MAC of its pepper, so a wrong one is refused
 * instead of silently making every key NOT_FOUND. */
static kw_rc check_pepper(kw_ctx *ctx, int create)
{
    unsigned char want[32], have[32];
    size_t len = 0;
    kw_rc rc;

    kwi_hmac(want, ctx->pepper, pepper_check_label, sizeof(pepper_check_label) - 1);
    rc = ctx->store->ops->meta_get(ctx->store, "pepper_check", have, sizeof(have), &len);
    if (rc == KW_ERR_NOT_FOUND && create) {
        /* A new database: its pepper check and the audit chain's genesis
         * head, so that a wiped trail can never pass for an empty one.
         * Looked for again under the writers' lock: another process (a
         * second node) may have just done it, with its own pepper. */
        rc = ctx->store->ops->begin(ctx->store);
        if (rc == KW_OK)
            rc = ctx->store->ops->meta_get(ctx->store, "pepper_check", have, sizeof(have), &len);
        if (rc == KW_ERR_NOT_FOUND) {
            rc = ctx->store->ops->meta_set(ctx->store, "pepper_check", want, sizeof(want));
            if (rc == KW_OK)
                rc = kwi_audit_genesis(ctx);
            return kwi_finish(ctx, rc);
        }
        ctx->store->ops->rollback(ctx->store);
    }
    if (rc == KW_ERR_NOT_FOUND) {
        kwi_seterr(ctx, "database has no pepper check (not initialised)");
        return KW_ERR_NO_DATABASE;
    }
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
        return rc;
    }
    if (len != sizeof(have) || sodium_memcmp(want, have, sizeof(have)) != 0) {
        kwi_seterr(ctx, "it is not the one this database was initialised with "
                        "(check KEYWARD_PEPPER and the pepper file)");
        return KW_ERR_PEPPER_MISMATCH;
    }
    return KW_OK;
}

static kw_rc open_ctx(kw_ctx *ctx, const char *db_url, const kw_secret *pepper, int create)
{
    unsigned char ak[32];
    kw_secret *audit_key = NULL;
    const char *path;
    char err[256] = "";
    kw_rc rc;

    path = sqlite_path(db_url);
    if (path == NULL && !postgres_url(db_url)) {
        kwi_seterr(ctx, "unsupported database URL (sqlite:PATH or postgres://...)");
        return KW_ERR_INVALID;
    }
    if (kw_secret_len(pepper) != KW_PEPPER_LEN) {
        kwi_seterr(ctx, "pepper must be %d bytes", KW_PEPPER_LEN);
        return KW_ERR_PEPPER;
    }
    rc = kw_secret_from(&ctx->pepper, kw_secret_cdata(pepper), KW_PEPPER_LEN);
    if (rc != KW_OK)
        return rc;
    rc = kwi_hmac_key_new(&ctx->pepper_pads, ctx->pepper);
    if (rc != KW_OK)
        return rc;
    kwi_hmac(ak, ctx->pepper, audit_key_label, sizeof(audit_key_label) - 1);
    rc = kw_secret_from(&audit_key, ak, sizeof(ak));
    sodium_memzero(ak, sizeof(ak));
    if (rc == KW_OK)
        rc = kwi_hmac_key_new(&ctx->audit_pads, audit_key);
    kw_secret_free(audit_key);
    if (rc != KW_OK)
        return rc;
    rc = path != NULL ? kwi_sqlite_open(&ctx->store, path, create, err)
                      : kwi_pg_open(&ctx->store, db_url, create, err);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", err);
        return rc;
    }
    rc = check_pepper(ctx, create);
    if (rc != KW_OK)
        return rc;
    ctx->imported_checked_ms = kwi_now_ms();
    rc = ctx->store->ops->key_count_imported(ctx->store, &ctx->imported);
    if (rc != KW_OK)
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    return rc;
}

KW_API kw_rc kw_open(kw_ctx **out, const char *db_url, const kw_secret *pepper,
                     const kw_open_opts *opts)
{
    kw_ctx *ctx;
    kw_rc rc;

    if (out == NULL || db_url == NULL || pepper == NULL)
        return KW_ERR_INVALID;
    if (kw_init() != KW_OK)
        return KW_ERR_CRYPTO;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return KW_ERR_NOMEM;
    rc = open_ctx(ctx, db_url, pepper, opts != NULL && opts->create);
    if (rc != KW_OK) {
        if (opts != NULL && opts->err != NULL && opts->err_len > 0)
            kwi_strlcpy(opts->err, ctx->errmsg, opts->err_len);
        kw_close(ctx);
        return rc;
    }
    *out = ctx;
    return KW_OK;
}

KW_API void kw_close(kw_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->store != NULL)
        ctx->store->ops->close(ctx->store);
    kw_secret_free(ctx->pepper);
    kw_secret_free(ctx->pepper_pads);
    kw_secret_free(ctx->audit_pads);
    kwi_keyring_free(ctx);
    kwi_seed_free(ctx);
    kwi_secrets_free(ctx);
    free(ctx);
}

KW_API kw_rc kw_defer_checkpoints(kw_ctx *ctx)
{
    kw_rc rc;

    if (ctx->store->ops->wal_defer == NULL)
        return KW_OK;
    rc = ctx->store->ops->wal_defer(ctx->store);
    if (rc != KW_OK)
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    return rc;
}

KW_API kw_rc kw_wait_change(kw_ctx *ctx, int timeout_ms)
{
    if (ctx->store->ops->wait_change == NULL) {
        struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
        if (timeout_ms > 0)
            nanosleep(&ts, NULL);
        return KW_OK;
    }
    return kwi_store_rc(ctx, ctx->store->ops->wait_change(ctx->store, timeout_ms));
}

KW_API kw_rc kw_checkpoint(kw_ctx *ctx, int64_t *log_frames, int64_t *copied)
{
    kw_rc rc;

    if (ctx->store->ops->wal_checkpoint == NULL) {
        if (log_frames != NULL)
            *log_frames = 0;
        if (copied != NULL)
            *copied = 0;
        return KW_OK;
    }
    rc = ctx->store->ops->wal_checkpoint(ctx->store, log_frames, copied);
    if (rc != KW_OK)
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    return rc;
}
