/*
 * keyward — the opaque key format (SPEC.md, "Key format").
 *
 *     <prefix>_<id><secret><check>
 *
 *   prefix  1..20 chars of [a-z0-9_], starts with a letter, no trailing '_',
 *           no "__"
 *   id      12 base62 chars (public)
 *   secret  32 base62 chars (about 190 bits), drawn without modulo bias
 *   check   CRC-32 (IEEE, as zlib's crc32()) of "<prefix>_<id><secret>",
 *           6 base62 digits, most significant first, zero-padded
 *
 * Parsing is pure: it never touches storage, and rejects anything malformed
 * or mistyped.
 */
#ifndef KEYWARD_KEY_H
#define KEYWARD_KEY_H

#include <keyward/common.h>
#include <keyward/secret.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_PREFIX_MAX 20
#define KW_ID_LEN 12
#define KW_SECRET_LEN 32
#define KW_CHECK_LEN 6
#define KW_BODY_LEN (KW_ID_LEN + KW_SECRET_LEN + KW_CHECK_LEN)
/** Longest possible key: prefix, '_', body. */
#define KW_KEY_MAX (KW_PREFIX_MAX + 1 + KW_BODY_LEN)
#define KW_DEFAULT_PREFIX "kw_live"

/** The base62 alphabet, in digit order. */
#define KW_BASE62_ALPHABET "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** A parsed key: views into the caller's string, which must outlive it. */
typedef struct kw_key_parts {
    const char *prefix;
    size_t prefix_len;
    char id[KW_ID_LEN + 1]; /**< NUL-terminated copy of the public id */
    const char *body;       /**< the 50-char body (id, secret, check) */
} kw_key_parts;

/**
 * Is `prefix` (NUL-terminated) a valid key prefix?
 * @return 1 if valid, 0 otherwise.
 */
KW_API int kw_prefix_valid(const char *prefix);

/** Is `id` (NUL-terminated) a well-formed 12-char base62 key id? */
KW_API int kw_key_id_valid(const char *id);

/**
 * Parse and check a key of `len` bytes. Pure: no storage access.
 * @param out filled only on success.
 * @return 1 if well formed with a correct check, 0 otherwise.
 */
KW_API int kw_key_parse(kw_key_parts *out, const char *key, size_t len) KW_WARN_UNUSED;

/**
 * The 6-char check of `data` (the "<prefix>_<id><secret>" string).
 * @param out receives 6 base62 chars and a NUL.
 */
KW_API void kw_key_check(char out[static KW_CHECK_LEN + 1], const char *data, size_t len);

/**
 * Write `n` uniformly random base62 chars from the CSPRNG (rejection
 * sampling: no modulo bias). No NUL is written.
 */
KW_API void kw_base62_random(char *out, size_t n);

/**
 * Generate a new key with `prefix` (NULL for the default).
 * @param key_out receives the key (NUL-terminated) in locked memory.
 * @param id_out receives the 12-char id and a NUL.
 * @return KW_OK, KW_ERR_INVALID (bad prefix) or KW_ERR_NOMEM.
 */
KW_API kw_rc kw_key_generate(kw_secret **key_out, char id_out[static KW_ID_LEN + 1],
                             const char *prefix) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
