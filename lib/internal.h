/*
 * libkeyward internals: never installed, never exported. Names carry a
 * second prefix (kwi_) so they cannot be mistaken for the public API.
 */
#ifndef KEYWARD_INTERNAL_H
#define KEYWARD_INTERNAL_H

#include <keyward/keyward.h>

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "store/store.h"

#define KWI_ERRMSG_MAX 256
#define KWI_MAC_LEN 32

struct kw_ctx {
    kw_store *store;
    kw_secret *pepper;              /* HMAC key of stored key hashes */
    kw_secret *pepper_pads;         /* its HMAC pad states (kwi_hmac_key_new) */
    kw_secret *audit_pads;          /* HMAC pad states of the audit chain's key (from the pepper) */
    int64_t imported;               /* imported keys (found by hash lookup, not by id) */
    int64_t imported_checked_ms;    /* when `imported` was last read */
    struct kwi_keyring *keyring;    /* token signing keys, unsealed (lib/keyring.c) */
    int64_t keyring_ms;             /* when it was last read */
    uint64_t keyring_gen;           /* the process's keyring generation then */
    char (*revoked)[KW_ID_LEN + 1]; /* revoked token ids, sorted */
    size_t nrevoked;
    int64_t revoked_upto;           /* the store's number of the last one read */
    int64_t revoked_ms;             /* when they were last read */
    uint64_t revoked_gen;           /* the process's revocation generation then */
    struct kwi_seed *seed;          /* the seed system's secrets (lib/seed.c), or NULL */
    unsigned char (*sig_cache)[32]; /* format 2 tokens found good, by hash (lib/keyring.c) */
    kw_secret *master;              /* the secrets' master key (lib/secrets.c), or NULL */
    uint64_t master_id;             /* its id */
    char errmsg[KWI_ERRMSG_MAX];
};

/* End a write transaction begun on ctx's store: commit if rc is KW_OK,
 * else (or if the commit fails) roll back and keep the store's message.
 * Returns the final result. */
kw_rc kwi_finish(kw_ctx *ctx, kw_rc rc);

/* rc, and if it is a failure, the store's message on ctx. */
kw_rc kwi_store_rc(kw_ctx *ctx, kw_rc rc);
/* Begin a write transaction on ctx's store (kwi_store_rc on failure). */
kw_rc kwi_begin(kw_ctx *ctx);
/* End it: commit if rc is KW_OK (kwi_finish), else roll back keeping the
 * message already on ctx (kwi_finish would put the store's in its place). */
kw_rc kwi_end(kw_ctx *ctx, kw_rc rc);

/* Record a failure detail on ctx (printf-style; never pass key material). */
void kwi_seterr(kw_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* HMAC-SHA-256(key, data). */
void kwi_hmac(unsigned char out[static 32], const kw_secret *key, const void *data, size_t len);

/* A key's HMAC-SHA-256 pad states, computed once (lib/hmac.c), and the
 * HMAC under them: the same result as kwi_hmac, for a fraction of the cost. */
kw_rc kwi_hmac_key_new(kw_secret **out, const kw_secret *key);
void kwi_hmac_fast(unsigned char out[static 32], const kw_secret *hkey, const void *data,
                   size_t len);

/* HMAC-SHA-256 under a 32-byte key that changes every call (a token's
 * running tag), on the stack and with OpenSSL's SHA-256; out may be key. */
void kwi_hmac_key32(unsigned char out[static 32], const unsigned char key[static 32],
                    const void *data, size_t len);

/* The same HMAC over data given in pieces: begin, update..., end (which
 * wipes the state). The state holds an OpenSSL SHA256_CTX. */
typedef struct kwi_hmac_stream {
    _Alignas(16) unsigned char ctx[128];
    const kw_secret *hkey;
} kwi_hmac_stream;

void kwi_hmac_begin(kwi_hmac_stream *st, const kw_secret *hkey);
void kwi_hmac_update(kwi_hmac_stream *st, const void *data, size_t len);
void kwi_hmac_end(kwi_hmac_stream *st, unsigned char out[static 32]);

/* HMAC-SHA-256 under ctx's pepper (the stored hash of a key). */
#define kwi_pepper_hmac(ctx, out, data, len) kwi_hmac_fast((out), (ctx)->pepper_pads, (data), (len))

/* Constant-time equality of two 32-byte values (hashes, MACs): eight
 * bytes at a time, every byte looked at whatever the data, no early exit
 * (the empty asm keeps the compiler from inventing one). 1 if equal. */
static inline int kwi_eq32(const unsigned char *a, const unsigned char *b)
{
    uint64_t d = 0;

    for (int i = 0; i < 32; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d |= x ^ y;
        __asm__("" : "+r"(d));
    }
    return d == 0;
}

/* Milliseconds since the epoch (CLOCK_REALTIME_COARSE: to the kernel's tick). */
int64_t kwi_now_ms(void);

/* strdup that returns NULL on NULL; caps nothing. */
char *kwi_strdup(const char *s);

/* Copy at most cap-1 bytes and NUL-terminate. */
void kwi_strlcpy(char *dst, const char *src, size_t cap);

/* Append one audit record to the chain inside the caller's transaction.
 * detail is a JSON object text or NULL. */
kw_rc kwi_audit_append(kw_ctx *ctx, const kw_actor *actor, const char *action, const char *target,
                       const char *result, const char *detail);

/* Several records in one transaction: the chain's head is read once
 * (begin), each record chained to the one before (add), and the head
 * written once after the last (end, before the commit; a rollback drops
 * the records and leaves the head as it was). */
typedef struct kwi_audit_batch {
    int64_t seq;           /* the last record's */
    unsigned char mac[32]; /* the last record's MAC */
} kwi_audit_batch;

kw_rc kwi_audit_batch_begin(kw_ctx *ctx, kwi_audit_batch *b);
kw_rc kwi_audit_batch_add(kw_ctx *ctx, kwi_audit_batch *b, const kw_actor *actor,
                          const char *action, const char *target, const char *result,
                          const char *detail);
kw_rc kwi_audit_batch_end(kw_ctx *ctx, const kwi_audit_batch *b);

/* A key's sliding-window rate-limit state. */
typedef struct kwi_rl {
    int64_t start_ms; /* current window start; 0: none yet */
    int64_t count;    /* requests in the current window */
    int64_t prev;     /* requests in the previous window */
} kwi_rl;

/* The checks of verification after the key matched, up to and including
 * the rate limit (counted in rl): KW_VALID means "spend the credits next".
 * out receives the rate-limit fields. */
kw_verdict kwi_decide(const kw_key_record *r, kwi_rl *rl, int64_t now_ms,
                      const kw_verify_request *req, kw_verify_result *out);

/* From how many keys kw_index_open loads on two threads (default 50000). */
extern size_t kwi_index_parallel_min;

/* Let go of the index's record a verification result borrows (lib/index.c). */
void kwi_index_ref_release(void *ref);

/* The sequence number of the last audit record (0 for none). */
kw_rc kwi_audit_last_seq(kw_ctx *ctx, int64_t *seq);

/* The hourly usage bucket a time falls in. */
int64_t kwi_usage_bucket(int64_t t);

/* Write the audit head of an empty trail (a new database). */
kw_rc kwi_audit_genesis(kw_ctx *ctx);

/* A list of granted scopes: at most KW_SCOPES_MAX, each valid, none twice.
 * 0, or -1 with why in err (lib/scope.c). */
int kwi_scopes_check(const char *const *scopes, size_t n, char *err, size_t err_len);

/* UTF-8 text without control characters, at most max bytes (NULL is ok). */
int kwi_text_ok(const char *s, size_t max);

/* Validate params the way create and update do; message goes to ctx. */
kw_rc kwi_params_check(kw_ctx *ctx, const kw_key_params *p, unsigned fields);

/* Deep-copy the fields of p into record r (owner, name, scopes, meta...). */
kw_rc kwi_record_set(kw_key_record *r, const kw_key_params *p, unsigned fields);

/* Deep copy of a record. */
kw_rc kwi_record_copy(kw_key_record *dst, const kw_key_record *src);

/* Scopes joined by ' ' (malloc'd) and split back. */
char *kwi_scopes_join(char *const *scopes, size_t n);
kw_rc kwi_scopes_split(const char *s, char ***out, size_t *n);

/* Scratch room for a borrowed row's scopes: the stored text, split in place
 * (a back end's key_scan, which copies nothing else). */
typedef struct kwi_scope_scratch {
    char text[KW_SCOPES_MAX * (KW_SCOPE_MAX_LEN + 1) + 1];
    char *v[KW_SCOPES_MAX];
} kwi_scope_scratch;

/* Split the stored scopes `s` (len bytes) into sc: r->scopes points into it.
 * KW_ERR_STORAGE for more than validation ever lets in (not ours). */
kw_rc kwi_scopes_borrow(kwi_scope_scratch *sc, const char *s, size_t len, kw_key_record *r);

/* Format Unix seconds as RFC 3339 UTC ("2026-11-22T07:31:52Z"). */
void kwi_time_format(char out[static 32], int64_t t);

/* A growable JSON text (lib/jsonw.c), written the way jansson's compact
 * form would be. A failed allocation (or a text beyond 64 MiB) makes every
 * later call a no-op and kwi_jw_finish return NULL. */
typedef struct kwi_jw {
    char *p;
    size_t n, cap;
    int failed;
} kwi_jw;

void kwi_jw_init(kwi_jw *w, size_t cap);
void kwi_jw_raw(kwi_jw *w, const char *s, size_t len);
void kwi_jw_lit(kwi_jw *w, const char *s);
/* A JSON string (NULL: null); bytes that are not UTF-8 become U+FFFD. */
void kwi_jw_str(kwi_jw *w, const char *s);
/* A JSON array of n strings. */
void kwi_jw_strv(kwi_jw *w, const char *const *v, size_t n);
void kwi_jw_int(kwi_jw *w, long long v);
/* An RFC 3339 time as a string, or null for 0. */
void kwi_jw_time(kwi_jw *w, int64_t t);
/* A stored JSON object text, compacted ("{}" for NULL or anything that is
 * not a JSON object). */
void kwi_jw_object_text(kwi_jw *w, const char *text);
/* The NUL-terminated text (the caller frees it), or NULL if anything failed. */
char *kwi_jw_finish(kwi_jw *w);

/* Block base62 (docs/tokens.md): 8 bytes to 11 digits, a last block of k
 * bytes to the fewest digits that hold it. decode refuses any text that is
 * not the encoding of some bytes; out needs room for len * 8 / 11 + 8. */
size_t kwi_b62blk_len(size_t nbytes);
void kwi_b62blk_encode(char *out, const unsigned char *in, size_t n);
int kwi_b62blk_decode(unsigned char *out, size_t *n, const char *in, size_t len);

/* A new token's text (lib/token.c), under keyring entry kid: format 1
 * signed with the 32-byte HMAC key `key`; err gets why it was refused. */
kw_rc kwi_token_sign(kw_secret **out, const unsigned char key[static 32], uint32_t kid,
                     const kw_token_params *p, const char id[static KW_ID_LEN + 1],
                     int64_t issued_at, char *err, size_t err_len);
/* The same in format 2, signed with the Ed25519 key of 32-byte seed
 * `seed`; eph is the seed of the token's first block key (NULL: random;
 * given only by the test vectors). */
kw_rc kwi_token_sign_ed25519(kw_secret **out, const unsigned char seed[static 32],
                             const unsigned char *eph, uint32_t kid, const kw_token_params *p,
                             const char id[static KW_ID_LEN + 1], int64_t issued_at, char *err,
                             size_t err_len);
/* kw_token_attenuate with the new block key's seed given (format 2; NULL:
 * random), for the test vectors. */
kw_rc kwi_token_attenuate_seeded(kw_secret **child_out, const char *token, size_t len,
                                 const kw_token_restriction *r, const unsigned char *eph,
                                 char *child_id_out, char *err, size_t err_len);
/* A token read from its text once, for verification: its claims, its
 * bytes, and where its parts start. */
#define KWI_TOKEN_BYTES_MAX (KW_TOKEN_MAX / 11 * 8 + 8)
#define KWI_ED25519_PK_LEN 32
typedef struct kwi_token_layout {
    size_t claims_len; /* where the claims end */
    size_t tag_at;     /* where the tag (format 1) or the proof (format 2) starts */
    size_t
        key_at[KW_TOKEN_CAVEATS_MAX + 1]; /* format 2: each block's next key (then its signature) */
    size_t nkeys;
} kwi_token_layout;
typedef struct kwi_token {
    kw_token_info *info;
    size_t n;
    kwi_token_layout lay;
    unsigned char bytes[KWI_TOKEN_BYTES_MAX];
} kwi_token;
/* 1 if the text is a well-formed token (then call kwi_token_done), else 0. */
int kwi_token_read(kwi_token *t, const char *text, size_t len);
/* Format 1: is its tag right under the signing key's pad states
 * (kwi_hmac_key_new)? */
int kwi_token_tag_matches(const kwi_token *t, const kw_secret *pads);
/* Format 2: is every block signed, the first under the signing key's
 * public key `root`, and does the proof open the last block's key? */
int kwi_token_sigs_ok(const kwi_token *t, const unsigned char root[static KWI_ED25519_PK_LEN]);
void kwi_token_done(kwi_token *t);
/* Parse a token and check it under key (format 1: the HMAC key; format 2:
 * the Ed25519 public key): 1 if it is right. *info gets what it claims
 * whenever it parsed (free it), NULL otherwise. */
int kwi_token_tag_ok(const char *token, size_t len, const unsigned char key[static 32],
                     kw_token_info **info);

/* Stateless keys through a context (lib/keyring.c): verify a token (what
 * kw_verify does with one), and free the context's keyring and revocations. */
kw_rc kwi_token_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                       kw_verify_result *out);
void kwi_keyring_free(kw_ctx *ctx);
/* kw_signing_key_list, each key that verifies opened first: one that does
 * not open (altered in the database) fails it, KW_ERR_PEPPER_MISMATCH. */
kw_rc kwi_signing_key_list_checked(kw_ctx *ctx, kw_signing_key_info **out, size_t *n);
/* A stateless key's verify result (tokens, the seed's keys; lib/keyring.c):
 * fill its record (strings copied; meta, a JSON object, taken over even on
 * failure) and set found; then decide from that record: revoked (any of
 * ids), expired, not yet valid, scopes. */
kw_rc kwi_stateless_fill(kw_verify_result *out, const char *id, const char *prefix,
                         const char *owner, const char *const *scopes, size_t nscopes, char *meta,
                         int64_t created_at, int64_t not_before, int64_t expires_at);
kw_verdict kwi_stateless_decide(kw_ctx *ctx, const kw_key_record *r, const char *const *ids,
                                size_t nids, const kw_verify_request *req, kw_rc *rc);
/* Is this token id (or a seed key's id) revoked? Read again after a second. */
kw_rc kwi_token_revoked(kw_ctx *ctx, const char *id, int *yes);

/* The seed system's signed and hierarchical keys (lib/seed.c): could key
 * be one that ctx's secrets verify; verify it (KW_ERR_NOT_FOUND: it is not
 * one, go on with other kinds); free ctx's seed secrets. */
int kwi_seed_shape(const kw_ctx *ctx, const char *key, size_t len);
kw_rc kwi_seed_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                      kw_verify_result *out);
void kwi_seed_free(kw_ctx *ctx);
/* 32 bytes from exactly 64 hex characters, in locked memory (the pepper's
 * and the master key's form; lib/pepper.c): KW_ERR_INVALID if not that. */
kw_rc kwi_key32_hex(kw_secret **out, const char *hex, size_t len);

/* kw_key_parse in two halves: the shape (prefix, separator, base62 body),
 * filling `out`; and the check, for a key kwi_key_shape accepted. A key
 * whose HMAC matches a stored one was issued by keyward with a correct
 * check, so the index computes the check only for keys it did not find
 * (docs/internals/index.md). */
int kwi_key_shape(kw_key_parts *out, const char *key, size_t len) KW_WARN_UNUSED;
int kwi_key_check_ok(const char *key, size_t len) KW_WARN_UNUSED;
/* A master key from 64 hex characters (a trailing newline allowed):
 * KW_ERR_MASTER_KEY if it is not that (lib/secrets.c). */
kw_rc kwi_master_key_hex(kw_secret **out, const char *hex, size_t len);
/* Forget ctx's master key (lib/secrets.c). */
void kwi_secrets_free(kw_ctx *ctx);

/* The value in a server's answer to GET /v1/secrets/{path} (a parsed JSON
 * object: "value" text or "value_base64"), into locked memory; the
 * answer's copy is wiped. KW_ERR_INVALID if it holds no value of 1 to
 * KW_SECRET_VALUE_MAX bytes (lib/secrets.c). */
struct json_t;
kw_rc kwi_secret_value_of(struct json_t *answer, kw_secret **value);

/* Environment files and secret references (lib/envfile.c, `keyward run`). */
#define KWI_ENV_NAME_MAX 128
#define KWI_ENV_VARS_MAX 4096
typedef struct kwi_env_var {
    char name[KWI_ENV_NAME_MAX + 1];
    char *value; /* wiped by kwi_env_free: it may be a secret */
} kwi_env_var;
/* Is s[0..len) a variable name: letters, digits, '_', not a digit first? */
int kwi_env_name_valid(const char *s, size_t len);
/* Read NAME=VALUE lines (blank lines and # comments skipped, "export "
 * allowed, values unquoted, '...' or "..."): 0, or -1 with err saying
 * which line and why (never a value). */
int kwi_env_parse(const char *text, size_t len, kwi_env_var **out, size_t *n, char *err,
                  size_t err_len);
void kwi_env_free(kwi_env_var *v, size_t n);
/* Is value a secret reference, kw://path[#version]? 1 (path and version,
 * 0 for the current one, filled), 0 (not a reference), -1 (kw:// but not
 * a valid path or version). */
int kwi_secret_ref(const char *value, char path[static KW_SECRET_PATH_MAX + 1], int64_t *version);

/* Is s well-formed UTF-8 (no overlong forms, surrogates, or code points
 * beyond U+10FFFF)? */
int kwi_utf8_valid(const char *s);

#endif
