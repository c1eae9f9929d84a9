/*
 * keyward — verification (SPEC.md, "Verification").
 *
 * Order: format -> lookup and constant-time compare -> revoked -> disabled
 * -> expired / not yet valid -> scopes -> rate limit -> credits. A request
 * refused early spends no rate limit and no credit. An unknown id and a
 * wrong secret give the same code (KW_NOT_FOUND) after the same work.
 */
#ifndef KEYWARD_VERIFY_H
#define KEYWARD_VERIFY_H

#include <keyward/record.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Verification result codes. Stable; documented in docs/verification.md. */
typedef enum kw_verdict {
    KW_VALID = 0,
    KW_MALFORMED = 1,
    KW_NOT_FOUND = 2,
    KW_REVOKED = 3,
    KW_DISABLED = 4,
    KW_EXPIRED = 5,
    KW_NOT_YET_VALID = 6,
    KW_INSUFFICIENT_SCOPE = 7,
    KW_RATE_LIMITED = 8,
    KW_USAGE_EXCEEDED = 9,
} kw_verdict;

/** "VALID", "MALFORMED", ...; "UNKNOWN" for values outside the enum. */
KW_API const char *kw_verdict_name(kw_verdict v);

/** The longest key string kw_verify accepts; longer input is MALFORMED. */
#define KW_VERIFY_INPUT_MAX 2048 /* KW_TOKEN_MAX: a stateless key with caveats */

typedef struct kw_verify_request {
    const char *const *scopes; /**< required scopes (all must be covered) */
    size_t nscopes;
    uint32_t cost; /**< credits a VALID verification spends; 0 means 1 */
    /** For stateless keys (docs/tokens.md) with audience or address
     *  caveats: the audience this verifier serves, and the client's
     *  address ("192.0.2.7", "2001:db8::1"). NULL: none stated, and such a
     *  caveat is not met. */
    const char *audience;
    const char *client_addr;
} kw_verify_request;

typedef struct kw_verify_result {
    kw_verdict code;
    /** The key's record whenever the key itself matched (any code but
     *  MALFORMED and NOT_FOUND); zeroed otherwise. Read-only, and owned by
     *  the result: it lives until kw_verify_result_clear (from the index
     *  its strings are shared, not copied). */
    kw_key_record key;
    int found;
    int64_t remaining;     /**< credits left; KW_CREDITS_UNLIMITED if none */
    uint32_t rl_limit;     /**< 0 if the key has no rate limit */
    uint32_t rl_remaining; /**< requests left in the current window */
    int64_t rl_reset_ms;   /**< ms until a request is allowed again (if limited) */
    void *ref_;            /**< private: set when `key` borrows its strings from the index */
} kw_verify_result;

/**
 * Verify `key` (`len` bytes, need not be NUL-terminated).
 * @param req may be NULL (no scopes, cost 1).
 * @param out receives the verdict; clear with kw_verify_result_clear.
 * @return KW_OK when a verdict was reached (valid or not); KW_ERR_STORAGE,
 *         KW_ERR_NOMEM, KW_ERR_INVALID (bad required scope) otherwise, in
 *         which case the caller must deny.
 */
KW_API kw_rc kw_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                       kw_verify_result *out) KW_WARN_UNUSED;

/**
 * The result as a JSON object: {valid, code, id, owner, scopes, meta,
 * expires_at, remaining, ratelimit} (the HTTP API's verify answer; null
 * fields when no key was identified).
 * @return a malloc'd string owned by the caller, or NULL on OOM.
 */
KW_API char *kw_verify_result_json(const kw_verify_result *r);

/** Free what a result owns. Accepts NULL. */
KW_API void kw_verify_result_clear(kw_verify_result *r);

#ifdef __cplusplus
}
#endif

#endif
