/*
 * libFuzzer harness for kw_verify: the whole verification path on an
 * in-memory database holding one keyward key and one imported seed key
 * (so the legacy hash lookup is reached too).
 *
 * Input: the first byte picks a mode, the rest is data.
 *   mode 0  the data is the presented key
 *   mode 1  the data is XORed over the real key (near misses)
 *   mode 2  the real key, with the data as required scopes (split on NUL)
 *   mode 3  the data is a seed signed key's payload, signed here with the
 *           configured seed secret (so the payload parser is reached)
 * Invariants (abort on violation): VALID only for the exact real keys (or
 * a payload signed here), and only when every required scope is covered;
 * results are released cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"

static const char seed_key[] = "sk_live_0123456789abcdefghijABCDEFGHIJKL";
static const char *const granted[] = {"orders:*", "billing:read"};

static kw_ctx *ctx;
static kw_secret *real_key;
static const char seed_secret[] = "fuzz seed signing secret";

static void die(const char *what)
{
    fprintf(stderr, "fuzz_verify: %s\n", what);
    abort();
}

/* An imported seed row, inserted through the back end directly. */
static void add_seed_key(void)
{
    kw_key_row row;
    char *scopes[] = {"legacy:read", NULL};

    memset(&row, 0, sizeof(row));
    memcpy(row.rec.id, "SEEDSEEDSEED", KW_ID_LEN);
    row.rec.owner = "seed-user";
    row.rec.name = "";
    row.rec.meta = "{}";
    row.rec.scopes = scopes;
    row.rec.nscopes = 1;
    row.rec.created_at = kw_now();
    row.rec.enabled = 1;
    row.rec.credits = KW_CREDITS_UNLIMITED;
    row.rec.external_id = "seed:1";
    crypto_hash_sha256(row.legacy_sha256, (const unsigned char *)seed_key, strlen(seed_key));
    row.has_legacy = 1;
    if (ctx->store->ops->key_insert(ctx->store, &row) != KW_OK)
        die("seed insert");
    ctx->imported = 1;
}

static void setup(void)
{
    kw_open_opts opts = {.create = 1};
    kw_key_params p;
    kw_secret *pepper = NULL;

    if (kw_init() != KW_OK || kw_secret_new(&pepper, KW_PEPPER_LEN) != KW_OK)
        die("init");
    memset(kw_secret_data(pepper), 7, KW_PEPPER_LEN);
    if (kw_open(&ctx, "sqlite::memory:", pepper, &opts) != KW_OK)
        die("open");
    kw_secret_free(pepper);
    {
        kw_secret *signing = NULL, *master = NULL;
        if (kw_secret_from(&signing, seed_secret, sizeof(seed_secret) - 1) != KW_OK ||
            kw_secret_from(&master, "fuzz master", 11) != KW_OK ||
            kw_seed_secrets(ctx, signing, master) != KW_OK)
            die("seed secrets");
        kw_secret_free(signing);
        kw_secret_free(master);
    }
    kw_key_params_init(&p);
    p.scopes = granted;
    p.nscopes = 2;
    if (kw_key_create(ctx, &p, &(kw_actor){"fuzz", "local"}, &real_key, NULL) != KW_OK)
        die("create");
    add_seed_key();
}

static int is_real(const char *k, size_t n)
{
    return (n == kw_secret_len(real_key) && memcmp(k, kw_secret_cdata(real_key), n) == 0) ||
           (n == strlen(seed_key) && memcmp(k, seed_key, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *scopes[16];
    kw_verify_request req = {.scopes = scopes, .nscopes = 0, .cost = 1};
    kw_verify_result res;
    char *buf, *key;
    size_t klen;
    int signed_here = 0;
    kw_rc rc;

    if (ctx == NULL)
        setup();
    if (size == 0 || size > 4096)
        return 0;
    buf = malloc(size + 1);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    key = buf;
    klen = size - 1;
    if (data[0] % 4 == 3) { /* a payload, signed as the seed signs it */
        unsigned char *signed_bytes = malloc(size - 1 + 32);
        size_t cap =
            sodium_base64_encoded_len(size - 1 + 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        memcpy(signed_bytes, data + 1, size - 1);
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)seed_secret,
                                    sizeof(seed_secret) - 1);
        crypto_auth_hmacsha256_update(&st, data + 1, size - 1);
        crypto_auth_hmacsha256_final(&st, signed_bytes + size - 1);
        key = malloc(cap);
        sodium_bin2base64(key, cap, signed_bytes, size - 1 + 32,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        klen = strlen(key);
        free(signed_bytes);
        signed_here = 1;
    } else if (data[0] % 4 == 1) {
        klen = kw_secret_len(real_key);
        key = malloc(klen);
        memcpy(key, kw_secret_cdata(real_key), klen);
        for (size_t i = 0; i + 1 < size && i < klen; i++)
            key[i] ^= (char)data[i + 1];
    } else if (data[0] % 4 == 2) {
        for (char *p = buf; p < buf + size - 1 && req.nscopes < 16; p += strlen(p) + 1)
            scopes[req.nscopes++] = p;
        key = (char *)kw_secret_cdata(real_key);
        klen = kw_secret_len(real_key);
    }

    rc = kw_verify(ctx, key, klen, &req, &res);
    if (rc == KW_OK && res.code == KW_VALID) {
        if (!is_real(key, klen) && !signed_here)
            die("VALID for a key that was never issued");
        if (!kw_scopes_cover((const char *const *)res.key.scopes, res.key.nscopes, req.scopes,
                             req.nscopes))
            die("VALID without the required scopes");
    }
    if (rc != KW_OK && res.code == KW_VALID)
        die("an error left VALID behind");
    if (rc == KW_OK) { /* the hand-written answer is always JSON jansson reads */
        char *txt = kw_verify_result_json(&res);
        json_t *o = txt ? json_loads(txt, 0, NULL) : NULL;
        if (o == NULL || json_is_true(json_object_get(o, "valid")) != (res.code == KW_VALID))
            die("kw_verify_result_json gave no JSON, or the wrong verdict");
        json_decref(o);
        free(txt);
    }
    kw_verify_result_clear(&res);
    if (key != buf && key != (char *)kw_secret_cdata(real_key))
        free(key);
    free(buf);
    return 0;
}
