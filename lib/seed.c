/*
 * The seed system's own stateless keys (SPEC.md, "Seed compatibility";
 * docs/seed-import.md): teams that issued them move without re-issuing.
 *
 *   signed keys        base64url (padding stripped) of the JSON payload
 *                      bytes and HMAC-SHA-256(signing secret, payload);
 *                      valid 365 days after the payload's created_at
 *   hierarchical keys  sk_<scope>_<the first 32 hex digits of
 *                      HMAC-SHA-256(master key, scope)>
 *
 * Both verify only when their secret is configured (kw_seed_secrets), with
 * a constant-time compare, and answer with the same result codes as any
 * key. Their ids (for revocation with kw_token_revoke, and for logs) are
 * the first 12 hex digits of the payload's key_id, or of the derived hex.
 */
#define _GNU_SOURCE /* timegm */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIG_LEN 32
#define SEED_SIGNED_MAX 4096 /* the longest signed key considered */
#define SEED_LIFETIME (365 * INT64_C(86400))
#define HIER_HEX 32
#define HIER_SCOPE_MAX 128

struct kwi_seed {
    kw_secret *signing; /* KEYWARD_SEED_SIGNING_SECRET's bytes */
    kw_secret *master;  /* KEYWARD_SEED_MASTER_KEY's bytes */
};

void kwi_seed_free(kw_ctx *ctx)
{
    if (ctx->seed == NULL)
        return;
    kw_secret_free(ctx->seed->signing);
    kw_secret_free(ctx->seed->master);
    free(ctx->seed);
    ctx->seed = NULL;
}

static kw_rc copy_secret(kw_secret **dst, const kw_secret *src)
{
    kw_secret_free(*dst);
    *dst = NULL;
    if (src == NULL || kw_secret_len(src) == 0)
        return KW_OK;
    return kw_secret_from(dst, kw_secret_cdata(src), kw_secret_len(src));
}

KW_API kw_rc kw_seed_secrets(kw_ctx *ctx, const kw_secret *signing_secret,
                             const kw_secret *master_key)
{
    kw_rc rc;

    if (ctx->seed == NULL && (ctx->seed = calloc(1, sizeof(*ctx->seed))) == NULL)
        return KW_ERR_NOMEM;
    if ((rc = copy_secret(&ctx->seed->signing, signing_secret)) != KW_OK ||
        (rc = copy_secret(&ctx->seed->master, master_key)) != KW_OK)
        return rc;
    return KW_OK;
}

/* ---- shapes ------------------------------------------------------------------ */

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Could this be a seed signed key (base64url, long enough for a payload
 * and its signature)? */
static int signed_shape(const char *s, size_t len)
{
    if (len < 48 || len > SEED_SIGNED_MAX || len % 4 == 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!b64url_char((unsigned char)s[i]))
            return 0;
    return 1;
}

/* sk_<scope>_<32 lowercase hex>: where the scope is and how long. */
static int hier_shape(const char *s, size_t len, size_t *scope_len)
{
    if (len < 3 + 1 + 1 + HIER_HEX || memcmp(s, "sk_", 3) != 0 || s[len - HIER_HEX - 1] != '_')
        return 0;
    for (size_t i = len - HIER_HEX; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    *scope_len = len - HIER_HEX - 1 - 3;
    return *scope_len <= HIER_SCOPE_MAX;
}

int kwi_seed_shape(const kw_ctx *ctx, const char *s, size_t len)
{
    size_t sl;

    if (ctx->seed == NULL)
        return 0;
    return (ctx->seed->signing != NULL && signed_shape(s, len)) ||
           (ctx->seed->master != NULL && hier_shape(s, len, &sl));
}

/* ---- signed keys ------------------------------------------------------------- */

static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Python's datetime.isoformat() of a naive UTC time: YYYY-MM-DDTHH:MM:SS,
 * then optionally .ffffff. */
static int iso_naive(const char *s, int64_t *t)
{
    struct tm tm = {0};
    size_t n = strlen(s);
    const char *want = "dddd-dd-ddTdd:dd:dd";

    if (n != 19 && n != 26)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char w = i < 19 ? want[i] : i == 19 ? '.' : 'd';
        if (w == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != w)
            return 0;
    }
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return 0;
    *t = (int64_t)timegm(&tm);
    return 1;
}

/* The payload's fields, if it is what the seed writes. */
static int payload_read(json_t *j, const char **user, const char **key_id, int64_t *created,
                        const char **scopes, size_t *nscopes)
{
    json_t *perms = json_object_get(j, "permissions"), *v;
    const char *created_txt;
    size_t i;

    *user = json_string_value(json_object_get(j, "user_id"));
    *key_id = json_string_value(json_object_get(j, "key_id"));
    created_txt = json_string_value(json_object_get(j, "created_at"));
    /* user_id becomes the owner, which reaches headers (X-Key-Owner): the
     * same text rule as any owner, no control characters. */
    if (*user == NULL || *key_id == NULL || created_txt == NULL || !json_is_array(perms) ||
        (*user)[0] == '\0' || !kwi_text_ok(*user, KW_OWNER_MAX) || strlen(*key_id) < KW_ID_LEN ||
        !iso_naive(created_txt, created))
        return 0;
    for (i = 0; i < KW_ID_LEN; i++) /* token_hex: lowercase hex */
        if (!(((*key_id)[i] >= '0' && (*key_id)[i] <= '9') ||
              ((*key_id)[i] >= 'a' && (*key_id)[i] <= 'f')))
            return 0;
    *nscopes = 0;
    json_array_foreach(perms, i, v)
    {
        /* A permission that is not a scope keyward knows grants nothing
         * (least privilege), rather than something unintended; nor does
         * one keyward would read as a wildcard. */
        if (json_is_string(v) && kw_scope_grant_valid(json_string_value(v)) &&
            strchr(json_string_value(v), '*') == NULL && *nscopes < KW_SCOPES_MAX)
            scopes[(*nscopes)++] = json_string_value(v);
    }
    return 1;
}

/* KW_ERR_NOT_FOUND: not a seed signed key under this secret (the caller
 * goes on to other kinds of key). */
static kw_rc signed_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                           kw_verify_result *out)
{
    unsigned char *data, mac[SIG_LEN];
    const char *user, *key_id, *scopes[KW_SCOPES_MAX];
    size_t n = 0, nscopes;
    int64_t created;
    json_t *j = NULL;
    char *meta;
    kw_rc rc = KW_ERR_NOT_FOUND;

    if ((data = malloc(len)) == NULL)
        return KW_ERR_NOMEM;
    if (sodium_base642bin(data, len, key, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n <= SIG_LEN)
        goto out;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, kw_secret_cdata(ctx->seed->signing),
                                kw_secret_len(ctx->seed->signing));
    crypto_auth_hmacsha256_update(&st, data, n - SIG_LEN);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    if (sodium_memcmp(mac, data + n - SIG_LEN, SIG_LEN) != 0)
        goto out;
    /* Signed by the seed secret: from here on it is this kind of key. */
    j = json_loadb((const char *)data, n - SIG_LEN, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j) || !payload_read(j, &user, &key_id, &created, scopes, &nscopes)) {
        out->code = KW_MALFORMED; /* signed, but not a payload the seed writes */
        rc = KW_OK;
        goto out;
    }
    {
        kwi_jw w; /* key_id is signed, but still only text: escaped */
        kwi_jw_init(&w, 64);
        kwi_jw_lit(&w, "{\"seed\":\"signed\",\"key_id\":");
        kwi_jw_str(&w, key_id);
        kwi_jw_lit(&w, "}");
        meta = kwi_jw_finish(&w);
    }
    rc = kwi_stateless_fill(out, key_id, "", user, scopes, nscopes, meta, created, 0,
                            created + SEED_LIFETIME);
    if (rc == KW_OK)
        out->code =
            kwi_stateless_decide(ctx, &out->key, (const char *const[]){out->key.id}, 1, req, &rc);
out:
    json_decref(j);
    sodium_memzero(data, len);
    free(data);
    sodium_memzero(mac, sizeof(mac));
    return rc;
}

/* ---- hierarchical keys ------------------------------------------------------- */

static kw_rc hier_verify(kw_ctx *ctx, const char *key, size_t len, size_t scope_len,
                         const kw_verify_request *req, kw_verify_result *out)
{
    unsigned char mac[32];
    char hex[65], scope[HIER_SCOPE_MAX + 1];
    const char *scopes[1];
    kw_rc rc;

    memcpy(scope, key + 3, scope_len);
    scope[scope_len] = '\0';
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, kw_secret_cdata(ctx->seed->master),
                                kw_secret_len(ctx->seed->master));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)scope, scope_len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    sodium_memzero(mac, sizeof(mac));
    if (sodium_memcmp(hex, key + len - HIER_HEX, HIER_HEX) != 0) {
        sodium_memzero(hex, sizeof(hex));
        return KW_ERR_NOT_FOUND;
    }
    scopes[0] = scope;
    /* Exactly that scope: one keyward would read as a wildcard (x:*, *)
     * would grant more, and one it cannot read grants nothing. */
    rc = kwi_stateless_fill(out, hex, "", "seed-master", scopes,
                            kw_scope_grant_valid(scope) && strchr(scope, '*') == NULL ? 1 : 0,
                            strdup("{\"seed\":\"hierarchical\"}"), 0, 0, 0);
    sodium_memzero(hex, sizeof(hex));
    if (rc == KW_OK)
        out->code =
            kwi_stateless_decide(ctx, &out->key, (const char *const[]){out->key.id}, 1, req, &rc);
    return rc;
}

kw_rc kwi_seed_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                      kw_verify_result *out)
{
    size_t scope_len;
    kw_rc rc = KW_ERR_NOT_FOUND;

    if (ctx->seed == NULL)
        return KW_ERR_NOT_FOUND;
    if (ctx->seed->master != NULL && hier_shape(key, len, &scope_len))
        rc = hier_verify(ctx, key, len, scope_len, req, out);
    if (rc == KW_ERR_NOT_FOUND && ctx->seed->signing != NULL && signed_shape(key, len))
        rc = signed_verify(ctx, key, len, req, out);
    if (rc != KW_OK) {
        kw_key_record_clear(&out->key);
        out->found = 0;
    }
    return rc;
}
