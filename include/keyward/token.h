/*
 * keyward — stateless keys ("tokens"): signed, attenuable, verified with no
 * storage read. The format is docs/tokens.md; verification goes through
 * kw_verify like any key, with the same result codes.
 */
#ifndef KEYWARD_TOKEN_H
#define KEYWARD_TOKEN_H

#include <keyward/common.h>
#include <keyward/ctx.h>
#include <keyward/key.h>
#include <keyward/record.h>
#include <keyward/secret.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_TOKEN_VERSION 1         /**< signed with an HMAC-SHA-256 key: a macaroon chain */
#define KW_TOKEN_VERSION_ED25519 2 /**< signed with an Ed25519 key: a signature per block */
/** Longest token text accepted (and longest kw_verify accepts). */
#define KW_TOKEN_MAX 2048
#define KW_TOKEN_CAVEATS_MAX 16
#define KW_AUDIENCE_MAX 64

typedef enum kw_caveat_type {
    KW_CAVEAT_SCOPES = 1,
    KW_CAVEAT_EXPIRES = 2,
    KW_CAVEAT_NOT_BEFORE = 3,
    KW_CAVEAT_AUDIENCE = 4,
    KW_CAVEAT_ADDRESS = 5,
    KW_CAVEAT_ID = 6,
} kw_caveat_type;

/** One restriction of a token, as read from it. */
typedef struct kw_token_caveat {
    kw_caveat_type type;
    char **scopes; /**< SCOPES */
    size_t nscopes;
    int64_t time; /**< EXPIRES, NOT_BEFORE */
    char *text;   /**< AUDIENCE; ADDRESS as "ADDR/BITS"; ID */
} kw_token_caveat;

/** What a token claims, read without trusting it (kw_token_parse). */
typedef struct kw_token_info {
    unsigned version; /**< KW_TOKEN_VERSION or KW_TOKEN_VERSION_ED25519 */
    char prefix[KW_PREFIX_MAX + 1];
    uint32_t kid; /**< the signing key it names */
    char id[KW_ID_LEN + 1];
    int64_t issued_at, not_before, expires_at; /**< 0: none */
    char *owner;
    char **scopes;
    size_t nscopes;
    kw_token_caveat *caveats;
    size_t ncaveats;
    /* What the claims and caveats add up to. */
    char leaf_id[KW_ID_LEN + 1]; /**< the last id caveat's id, else id */
    int64_t eff_not_before, eff_expires_at;
    char **eff_scopes; /**< covered by the claims and by every scopes caveat */
    size_t neff_scopes;
} kw_token_info;

/**
 * Does `s` have a token's shape (more than an opaque key's 50 characters
 * after its last '_')? Says nothing about validity.
 */
KW_API int kw_token_shape(const char *s, size_t len);

/**
 * Read a token's claims and caveats without checking its tag.
 * @param out receives the claims (free with kw_token_info_free).
 * @param err optional: why it is malformed.
 * @return KW_OK, KW_ERR_INVALID (malformed), KW_ERR_NOMEM.
 */
KW_API kw_rc kw_token_parse(kw_token_info **out, const char *token, size_t len, char *err,
                            size_t err_len) KW_WARN_UNUSED;

/** Free a kw_token_info. Accepts NULL. */
KW_API void kw_token_info_free(kw_token_info *t);

/** What a new token claims. Zero-initialise, then set. */
typedef struct kw_token_params {
    const char *prefix; /**< NULL: KW_DEFAULT_PREFIX */
    const char *owner;  /**< required */
    const char *const *scopes;
    size_t nscopes;
    int64_t not_before, expires_at; /**< 0: none */
} kw_token_params;

/** How to narrow a token. Zero-initialise, then set what to add. */
typedef struct kw_token_restriction {
    const char *const *scopes; /**< nscopes > 0: grant only these (each covered by the parent) */
    size_t nscopes;
    int64_t expires_at;   /**< not 0: expire then (earlier than the parent) */
    int64_t not_before;   /**< not 0: not valid before */
    const char *audience; /**< not NULL: only for verifiers stating it */
    const char *address;  /**< not NULL: only from this CIDR range ("10.0.0.0/8") */
    int new_id;           /**< 1: give the child an id of its own, revocable alone */
} kw_token_restriction;

/**
 * Derive a narrower child from a token, offline: no signing key, no
 * storage. The parent is parsed, not verified (a child of a bad token is
 * just as bad). Refuses a restriction that would not narrow the parent
 * (a scope it does not grant, an expiry later than its own).
 * @param child_out receives the child token (a secret).
 * @param child_id_out optional: receives the child's id (its new id, or
 *        the parent's leaf id).
 * @param err optional: why it was refused.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_token_attenuate(kw_secret **child_out, const char *token, size_t len,
                                const kw_token_restriction *r, char *child_id_out, char *err,
                                size_t err_len) KW_WARN_UNUSED;

/* ---- through a database: the keyring, minting, revocation --------------- */

/**
 * Mint a token under the keyring's active signing key (one is made, and
 * audited, on first use). Audited as "token.mint": its id and claims,
 * never the token.
 * @param token_out receives the token text (a secret: shown once).
 * @param id_out receives its id.
 * @return KW_OK, KW_ERR_INVALID (bad params; kw_errmsg says which),
 *         KW_ERR_STORAGE, KW_ERR_PEPPER_MISMATCH (the keyring cannot be
 *         opened with this pepper), KW_ERR_NOMEM.
 */
KW_API kw_rc kw_token_mint(kw_ctx *ctx, const kw_token_params *p, const kw_actor *actor,
                           kw_secret **token_out, char id_out[static KW_ID_LEN + 1]) KW_WARN_UNUSED;

/**
 * Revoke a token id: the token with that id, and every token derived from
 * it, verify as REVOKED from now on (through this context at once; through
 * others within a second). Audited as "token.revoke".
 * @return KW_OK, KW_ERR_INVALID (not an id), KW_ERR_CONFLICT (already
 *         revoked), KW_ERR_STORAGE.
 */
KW_API kw_rc kw_token_revoke(kw_ctx *ctx, const char *id, const kw_actor *actor) KW_WARN_UNUSED;

#define KW_SIGNING_HMAC "hmac-sha256" /**< mints format 1 tokens; verifying needs the secret */
#define KW_SIGNING_ED25519 "ed25519"  /**< mints format 2; its public key verifies them */

/** A signing key of the keyring, as listed (never its secret). */
typedef struct kw_signing_key_info {
    uint32_t kid;
    char kind[16]; /**< KW_SIGNING_HMAC or KW_SIGNING_ED25519 */
    char state[8]; /**< "active" (mints), "verify" (verifies only), "retired" */
    int64_t created_at;
    int64_t retired_at; /**< 0 unless retired */
    int public_only;    /**< an Ed25519 key known here by its public key alone: it never mints */
    int has_public_key;
    unsigned char public_key[32]; /**< Ed25519 */
} kw_signing_key_info;

/**
 * Start a new signing key: it mints from now on; the one that minted until
 * now keeps verifying its tokens until it is retired. Audited.
 * @param kind KW_SIGNING_HMAC or KW_SIGNING_ED25519; NULL: the kind of the
 *        key it follows (HMAC for the first).
 * @param kid_out optional: receives the new key's id.
 * @return KW_OK, KW_ERR_INVALID (kind), KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_signing_key_rotate(kw_ctx *ctx, const char *kind, const kw_actor *actor,
                                   uint32_t *kid_out) KW_WARN_UNUSED;

/**
 * Retire a signing key: every token it signed stops verifying (NOT_FOUND),
 * through this context at once, through others within a second. Audited.
 * @return KW_OK, KW_ERR_NOT_FOUND, KW_ERR_CONFLICT (already retired),
 *         KW_ERR_STORAGE.
 */
KW_API kw_rc kw_signing_key_retire(kw_ctx *ctx, uint32_t kid, const kw_actor *actor) KW_WARN_UNUSED;

/**
 * The keyring, oldest first.
 * @param out receives *n entries (free with free()).
 */
KW_API kw_rc kw_signing_key_list(kw_ctx *ctx, kw_signing_key_info **out, size_t *n) KW_WARN_UNUSED;

/* ---- Ed25519 public keys: published, and imported by verifiers ---------- */

/** An Ed25519 signing key's public half. */
typedef struct kw_public_key {
    uint32_t kid;
    unsigned char key[32];
} kw_public_key;

/**
 * The keyring's Ed25519 public keys that verify (state active or verify),
 * as the JSON document GET /v1/signing-keys serves: {"keys":[{"kid",
 * "kty":"OKP","crv":"Ed25519","x","use","alg","state","created_at"}]},
 * each entry a JWK (RFC 8037). HMAC keys are never listed.
 * @param out receives the text (free with free()).
 */
KW_API kw_rc kw_signing_keys_public_json(kw_ctx *ctx, char **out) KW_WARN_UNUSED;

/**
 * Read such a document: every entry's kid (8 hex digits) and x (the
 * 32-byte key, base64url without padding); kty must be "OKP" and crv
 * "Ed25519"; use, alg and state, when present, "sig", "EdDSA" and
 * "active" or "verify"; an entry with a private part ("d") is refused;
 * other members are ignored. At most 256 keys, no kid twice.
 * @param out receives *n keys (free with free()).
 * @param err optional: why it was refused.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_TOO_LARGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_public_keys_parse(const char *json, size_t len, kw_public_key **out, size_t *n,
                                  char *err, size_t err_len) KW_WARN_UNUSED;

/**
 * Add an Ed25519 public key to the keyring, in state "verify": tokens its
 * secret signed verify here, and nothing here can mint with it. Its seal
 * under the pepper binds it to its kid, so a key written into the
 * database by hand does not verify. Audited as "signing-key.import".
 * @param added optional: 1 if it was added, 0 if the keyring had it already.
 * @return KW_OK, KW_ERR_CONFLICT (the kid names another key here),
 *         KW_ERR_STORAGE.
 */
KW_API kw_rc kw_signing_key_add_public(kw_ctx *ctx, const kw_public_key *key, const kw_actor *actor,
                                       int *added) KW_WARN_UNUSED;

/* ---- the seed system's own keys (SPEC.md, "Seed compatibility") -------- */

/**
 * Let ctx verify the seed system's signed keys (base64url of a JSON payload
 * and its HMAC-SHA-256 under `signing_secret`, valid 365 days after its
 * created_at; owner = user_id, scopes = permissions) and hierarchical keys
 * (`sk_<scope>_<32 hex>` under `master_key`, granting exactly that scope).
 * Either may be NULL (that kind is not accepted); the bytes are copied.
 * Their ids are the first 12 hex digits of the key_id, or of the derived
 * hex; kw_token_revoke revokes them. The CLI and the server take them from
 * KEYWARD_SEED_SIGNING_SECRET and KEYWARD_SEED_MASTER_KEY.
 * @return KW_OK or KW_ERR_NOMEM.
 */
KW_API kw_rc kw_seed_secrets(kw_ctx *ctx, const kw_secret *signing_secret,
                             const kw_secret *master_key) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
