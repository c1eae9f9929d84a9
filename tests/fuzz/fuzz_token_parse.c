/*
 * libFuzzer harness for the token parser (lib/token.c). The input is taken
 * as a token's bytes: written out as a token's text (prefix, block base62,
 * a correct check) so that the fuzzer reaches the claims and caveats, not
 * just the CRC. Then:
 *   - kw_token_parse never crashes, and what it accepts has sane fields;
 *   - its tag (format 1) or signatures (format 2) under a fixed key are
 *     checked; a child narrowed from it parses and is good exactly when
 *     the parent was (narrowing neither repairs nor breaks a token);
 *   - the raw input, as text, is also parsed (the text-level rules).
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const unsigned char key[32] = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz";
/* Format 2: the public key of the test vectors' signing key (seed 0..31),
 * so that the corpus's format 2 tokens verify and mutations start there. */
static unsigned char ed_pk[32];
static int ready;

static const unsigned char *key_for(const kw_token_info *t)
{
    return t->version == KW_TOKEN_VERSION_ED25519 ? ed_pk : key;
}

static char *as_token(const uint8_t *data, size_t size)
{
    size_t blen = kwi_b62blk_len(size);
    char *s = malloc(8 + blen + KW_CHECK_LEN + 1), check[KW_CHECK_LEN + 1];

    if (s == NULL)
        return NULL;
    memcpy(s, "kw_live_", 8);
    kwi_b62blk_encode(s + 8, data, size);
    kw_key_check(check, s, 8 + blen);
    memcpy(s + 8 + blen, check, KW_CHECK_LEN + 1);
    return s;
}

static void check_info(const kw_token_info *t)
{
    if (t->nscopes > KW_SCOPES_MAX || t->ncaveats > KW_TOKEN_CAVEATS_MAX ||
        !kw_key_id_valid(t->id) || !kw_key_id_valid(t->leaf_id) || t->owner == NULL ||
        t->neff_scopes > t->nscopes + t->ncaveats * KW_SCOPES_MAX)
        abort();
    if (t->eff_expires_at != 0 && t->expires_at != 0 && t->eff_expires_at > t->expires_at)
        abort();
    if (t->eff_not_before < t->not_before)
        abort();
    for (size_t i = 0; i < t->neff_scopes; i++)
        if (!kw_scopes_cover((const char *const *)t->scopes, t->nscopes,
                             (const char *const *)&t->eff_scopes[i], 1))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kw_token_info *t = NULL, *ct = NULL;
    kw_token_restriction r = {.audience = "fuzz", .new_id = 1};
    kw_secret *child = NULL;
    char *s, *raw, err[200];
    int ok, cok;

    if (size > 1400 || kw_init() != KW_OK) /* kw_init: once, then a no-op */
        return 0;
    if (!ready) {
        unsigned char seed[32], sk[64];
        for (int i = 0; i < 32; i++)
            seed[i] = (unsigned char)i;
        crypto_sign_seed_keypair(ed_pk, sk, seed);
        ready = 1;
    }
    if ((raw = malloc(size + 1)) == NULL)
        return 0;
    memcpy(raw, data, size); /* the text rules, on the input as it is */
    if (kw_token_parse(&t, raw, size, err, sizeof(err)) == KW_OK) {
        check_info(t);
        kw_token_info_free(t);
        t = NULL;
    }
    free(raw);

    if ((s = as_token(data, size)) == NULL)
        return 0;
    if (kw_token_parse(&t, s, strlen(s), err, sizeof(err)) == KW_OK) {
        const unsigned char *k = key_for(t);
        check_info(t);
        kw_token_info_free(t);
        t = NULL;
        ok = kwi_token_tag_ok(s, strlen(s), k, &t);
        if (t == NULL)
            abort(); /* it parsed a moment ago */
        if (kw_token_attenuate(&child, s, strlen(s), &r, NULL, err, sizeof(err)) == KW_OK) {
            cok = kwi_token_tag_ok((const char *)kw_secret_cdata(child), kw_secret_len(child), k,
                                   &ct);
            if (ct == NULL || cok != ok || ct->ncaveats != t->ncaveats + 2)
                abort();
            kw_token_info_free(ct);
            kw_secret_free(child);
        }
        kw_token_info_free(t);
    }
    free(s);
    return 0;
}
