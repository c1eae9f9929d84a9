/*
 * HMAC-SHA-256 under the pepper, the cost every verification pays.
 *
 * The pepper never changes while a ctx is open, so its inner and outer
 * pad blocks are hashed once, at open; each HMAC then costs the message's
 * blocks plus one outer block (3 compressions for a key, not 5). The
 * compressions are OpenSSL's SHA-256, which uses the CPU's SHA extensions
 * where it has them: about 4x libsodium's portable code here. The result
 * is plain HMAC-SHA-256 (RFC 2104), byte for byte what libsodium computes
 * (tests/unit/test_hmac.c checks that).
 *
 * OpenSSL 3 marks the SHA256_* calls deprecated in favour of EVP, whose
 * context copy allocates on every call; the low-level calls are kept, and
 * still supported, for exactly this use.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "internal.h"

#include <openssl/sha.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

/* The precomputed states: as secret as the pepper, so kept in a kw_secret
 * (locked, wiped, never in a core dump). */
typedef struct pads {
    SHA256_CTX inner, outer;
} pads;

/* kw_secret's bytes sit at the end of a guarded page, at no particular
 * alignment: the states live at the first aligned address in them. */
#define PADS_ALIGN _Alignof(pads)

static pads *pads_of(const kw_secret *s)
{
    uintptr_t p = (uintptr_t)kw_secret_cdata(s);

    return (pads *)((p + PADS_ALIGN - 1) & ~(uintptr_t)(PADS_ALIGN - 1));
}

kw_rc kwi_hmac_key_new(kw_secret **out, const kw_secret *key)
{
    unsigned char block[SHA256_CBLOCK], digest[SHA256_DIGEST_LENGTH];
    const unsigned char *k = kw_secret_cdata(key);
    size_t klen = kw_secret_len(key);
    kw_secret *s;
    pads *p;
    kw_rc rc = kw_secret_new(&s, sizeof(pads) + PADS_ALIGN - 1);

    if (rc != KW_OK)
        return rc;
    p = pads_of(s);
    if (klen > sizeof(block)) { /* RFC 2104: a long key is hashed first */
        SHA256(k, klen, digest);
        k = digest;
        klen = sizeof(digest);
    }
    memset(block, 0x36, sizeof(block));
    for (size_t i = 0; i < klen; i++)
        block[i] ^= k[i];
    SHA256_Init(&p->inner);
    SHA256_Update(&p->inner, block, sizeof(block));
    memset(block, 0x5c, sizeof(block));
    for (size_t i = 0; i < klen; i++)
        block[i] ^= k[i];
    SHA256_Init(&p->outer);
    SHA256_Update(&p->outer, block, sizeof(block));
    sodium_memzero(block, sizeof(block));
    sodium_memzero(digest, sizeof(digest));
    *out = s;
    return KW_OK;
}

void kwi_hmac_fast(unsigned char out[static 32], const kw_secret *hkey, const void *data,
                   size_t len)
{
    const pads *p = pads_of(hkey);
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_CTX c = p->inner;

    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    c = p->outer;
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(out, &c);
    sodium_memzero(&c, sizeof(c));
    sodium_memzero(inner, sizeof(inner));
}

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((kwi_hmac_stream *)0)->ctx),
               "kwi_hmac_stream cannot hold a SHA256_CTX");
_Static_assert(_Alignof(SHA256_CTX) <= _Alignof(kwi_hmac_stream),
               "kwi_hmac_stream is not aligned for a SHA256_CTX");

void kwi_hmac_begin(kwi_hmac_stream *st, const kw_secret *hkey)
{
    st->hkey = hkey;
    memcpy(st->ctx, &pads_of(hkey)->inner, sizeof(SHA256_CTX));
}

void kwi_hmac_update(kwi_hmac_stream *st, const void *data, size_t len)
{
    SHA256_Update((SHA256_CTX *)(void *)st->ctx, data, len);
}

void kwi_hmac_end(kwi_hmac_stream *st, unsigned char out[static 32])
{
    SHA256_CTX *c = (SHA256_CTX *)(void *)st->ctx;
    unsigned char inner[SHA256_DIGEST_LENGTH];

    SHA256_Final(inner, c);
    *c = pads_of(st->hkey)->outer;
    SHA256_Update(c, inner, sizeof(inner));
    SHA256_Final(out, c);
    sodium_memzero(st, sizeof(*st));
    sodium_memzero(inner, sizeof(inner));
}

void kwi_hmac_key32(unsigned char out[static 32], const unsigned char key[static 32],
                    const void *data, size_t len)
{
    unsigned char block[SHA256_CBLOCK], inner[SHA256_DIGEST_LENGTH];
    SHA256_CTX c;

    memset(block, 0x36, sizeof(block));
    for (size_t i = 0; i < 32; i++)
        block[i] ^= key[i];
    SHA256_Init(&c);
    SHA256_Update(&c, block, sizeof(block));
    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    memset(block, 0x5c, sizeof(block));
    for (size_t i = 0; i < 32; i++)
        block[i] ^= key[i];
    SHA256_Init(&c);
    SHA256_Update(&c, block, sizeof(block));
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(out, &c); /* out may be key: key is no longer read */
    sodium_memzero(&c, sizeof(c));
    sodium_memzero(block, sizeof(block));
    sodium_memzero(inner, sizeof(inner));
}
