/*
 * keyward — key records: create, read, list, update, rotate, revoke.
 *
 * A record is everything keyward stores about a key except the key itself
 * (only HMAC-SHA-256(pepper, key) is stored). Every change writes an audit
 * record in the same transaction: if the audit record cannot be written,
 * the change does not happen.
 */
#ifndef KEYWARD_RECORD_H
#define KEYWARD_RECORD_H

#include <keyward/ctx.h>
#include <keyward/key.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_OWNER_MAX 128
#define KW_NAME_MAX 128
#define KW_META_MAX 4096
#define KW_CREDITS_UNLIMITED (-1)
#define KW_LIST_MAX 1000

/** A stored key record. Times are Unix seconds; 0 means "none". */
typedef struct kw_key_record {
    char id[KW_ID_LEN + 1];
    char prefix[KW_PREFIX_MAX + 1]; /**< "" for imported seed keys */
    char *owner;                    /**< never NULL */
    char *name;                     /**< never NULL */
    char **scopes;                  /**< nscopes strings */
    size_t nscopes;
    char *meta; /**< a JSON object, never NULL */
    int64_t created_at;
    int64_t not_before;
    int64_t expires_at;
    int64_t last_used_at;
    int enabled;
    int64_t revoked_at;
    int64_t credits;                  /**< remaining; KW_CREDITS_UNLIMITED if none */
    uint32_t rate_limit;              /**< requests per window; 0 = no limit */
    uint32_t rate_window_ms;          /**< window length */
    char rotated_from[KW_ID_LEN + 1]; /**< "" if none */
    char rotated_to[KW_ID_LEN + 1];   /**< "" if none */
    int legacy;                       /**< imported seed key still under its SHA-256 hash */
    char *external_id;                /**< id in the system it was imported from, or NULL */
} kw_key_record;

/** Settings of a new key. Initialise with kw_key_params_init(). */
typedef struct kw_key_params {
    const char *prefix; /**< NULL: KW_DEFAULT_PREFIX */
    const char *owner;  /**< NULL: "" */
    const char *name;   /**< NULL: "" */
    const char *const *scopes;
    size_t nscopes;
    const char *meta; /**< JSON object text, NULL: {} */
    int64_t not_before;
    int64_t expires_at;
    int64_t credits; /**< KW_CREDITS_UNLIMITED or >= 0 */
    uint32_t rate_limit;
    uint32_t rate_window_ms;
} kw_key_params;

KW_API void kw_key_params_init(kw_key_params *p);

/** Fields of a kw_key_change that are applied. */
enum {
    KW_CHANGE_NAME = 1u << 0,
    KW_CHANGE_OWNER = 1u << 1,
    KW_CHANGE_SCOPES = 1u << 2,
    KW_CHANGE_META = 1u << 3,
    KW_CHANGE_EXPIRES = 1u << 4,
    KW_CHANGE_NOT_BEFORE = 1u << 5,
    KW_CHANGE_ENABLED = 1u << 6,
    KW_CHANGE_CREDITS = 1u << 7,
    KW_CHANGE_RATE = 1u << 8,
};

/** A partial update: only the fields named in `fields` are changed. */
typedef struct kw_key_change {
    unsigned fields;
    kw_key_params p; /**< new values (prefix is ignored: it is part of the key) */
    int enabled;
} kw_key_change;

/**
 * Create a key.
 * @param key_out receives the key in locked memory: the only time it exists
 *        outside the caller's hands. Owned by the caller.
 * @param rec_out receives the record (free with kw_key_record_clear); may be NULL.
 * @return KW_OK, KW_ERR_INVALID (see kw_errmsg), KW_ERR_STORAGE,
 *         KW_ERR_READONLY, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_key_create(kw_ctx *ctx, const kw_key_params *p, const kw_actor *actor,
                           kw_secret **key_out, kw_key_record *rec_out) KW_WARN_UNUSED;

/**
 * Create n keys in one transaction with one durable commit: what a server
 * does with concurrent requests (group commit), and a bulk load. All are
 * created, or none.
 * @param params, actors n of each; actors[i] is audited as the creator of key i.
 * @param keys_out n pointers; each receives a key as kw_key_create's key_out.
 * @param recs_out n records, or NULL.
 * @param failed receives the index of the params refused (KW_ERR_INVALID),
 *        or n when nothing was refused; may be NULL.
 * @return as kw_key_create. On any failure nothing is created and every
 *         keys_out[i] is NULL.
 */
KW_API kw_rc kw_key_create_many(kw_ctx *ctx, const kw_key_params *params, const kw_actor *actors,
                                size_t n, kw_secret **keys_out, kw_key_record *recs_out,
                                size_t *failed) KW_WARN_UNUSED;

/**
 * Check a new key's settings the way kw_key_create does, without creating
 * it. @return KW_OK or KW_ERR_INVALID (the reason in kw_errmsg).
 */
KW_API kw_rc kw_key_params_check(kw_ctx *ctx, const kw_key_params *p) KW_WARN_UNUSED;

/** Read one record. @return KW_OK, KW_ERR_NOT_FOUND, KW_ERR_STORAGE, KW_ERR_NOMEM. */
KW_API kw_rc kw_key_get(kw_ctx *ctx, const char *id, kw_key_record *out) KW_WARN_UNUSED;

/** Filters and paging of kw_key_list. Zero-initialise, then set. */
typedef struct kw_key_filter {
    const char *owner;  /**< NULL: any */
    const char *prefix; /**< NULL: any */
    const char *after;  /**< cursor: the keys created after this one; NULL or "": start */
    size_t limit;       /**< 1..KW_LIST_MAX; 0: 100 */
} kw_key_filter;

/**
 * List records in creation order. A cursor that names no key of this
 * database is KW_ERR_INVALID.
 * @param out receives an array of *n records (free with kw_key_records_free).
 * @param next receives the cursor of the next page, "" when this is the last.
 */
KW_API kw_rc kw_key_list(kw_ctx *ctx, const kw_key_filter *f, kw_key_record **out, size_t *n,
                         char next[static KW_ID_LEN + 1]) KW_WARN_UNUSED;

/**
 * Apply a partial update. A revoked key cannot be changed (KW_ERR_CONFLICT).
 * @param rec_out receives the updated record; may be NULL.
 */
KW_API kw_rc kw_key_update(kw_ctx *ctx, const char *id, const kw_key_change *c,
                           const kw_actor *actor, kw_key_record *rec_out) KW_WARN_UNUSED;

/**
 * Rotate: a new key with the same settings; the old key now expires at
 * now + grace_seconds (or earlier, if it already did). Credits move to the
 * new key; while in its grace period the old key draws on them.
 * @return KW_OK, KW_ERR_NOT_FOUND, KW_ERR_CONFLICT (revoked, already
 *         rotated, or expired), KW_ERR_INVALID, KW_ERR_STORAGE, ...
 */
KW_API kw_rc kw_key_rotate(kw_ctx *ctx, const char *id, int64_t grace_seconds,
                           const kw_actor *actor, kw_secret **key_out,
                           kw_key_record *rec_out) KW_WARN_UNUSED;

/** Revoke at once. Revoking a revoked key is KW_ERR_CONFLICT. */
KW_API kw_rc kw_key_revoke(kw_ctx *ctx, const char *id, const kw_actor *actor,
                           kw_key_record *rec_out) KW_WARN_UNUSED;

/**
 * The record's state at time `now`: "revoked", "disabled", "expired",
 * "pending" (not yet valid) or "active", in that order of precedence.
 * @return a static string.
 */
KW_API const char *kw_key_status(const kw_key_record *r, int64_t now);

/** Free what a record owns and zero it. Accepts NULL. */
KW_API void kw_key_record_clear(kw_key_record *r);

/** Free an array from kw_key_list. Accepts NULL. */
KW_API void kw_key_records_free(kw_key_record *r, size_t n);

/**
 * The record as a JSON object (the HTTP API's field names).
 * @return a malloc'd string owned by the caller, or NULL on OOM.
 */
KW_API char *kw_key_record_json(const kw_key_record *r);

/** Current time in Unix seconds (the library's clock). */
KW_API int64_t kw_now(void);

/**
 * Parse a duration: digits and one unit of s, m, h, d ("30s", "15m", "24h",
 * "90d"), at most 100 years.
 * @return 0 and *seconds on success, -1 if malformed or out of range.
 */
KW_API int kw_duration_parse(const char *s, int64_t *seconds) KW_WARN_UNUSED;

/**
 * Parse a time: RFC 3339 ("2026-11-22T07:31:52Z", "...+02:00", fractions
 * ignored, no leap second) or the SQL form "2026-11-22 07:31:52[.ffffff]" taken as UTC.
 * @return 0 and *t (Unix seconds) on success, -1 if malformed.
 */
KW_API int kw_time_parse(const char *s, int64_t *t) KW_WARN_UNUSED;

/** Format Unix seconds as RFC 3339 UTC into out (at least 32 bytes). */
KW_API void kw_time_format(char out[static 32], int64_t t);

#ifdef __cplusplus
}
#endif

#endif
