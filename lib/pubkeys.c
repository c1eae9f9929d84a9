/*
 * Ed25519 public keys as a JSON document (GET /v1/signing-keys, keyward
 * signing-key public | import): written from the keyring, and read back by
 * a verifier that holds no secret. Each entry is a JWK (RFC 8037).
 */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUBLIC_KEYS_MAX 256
#define X_LEN 43 /* 32 bytes in base64url without padding */

KW_API kw_rc kw_signing_keys_public_json(kw_ctx *ctx, char **out)
{
    kw_signing_key_info *keys;
    size_t n;
    int first = 1;
    kwi_jw w;
    kw_rc rc = kwi_signing_key_list_checked(ctx, &keys, &n); /* never publish a forged key */

    if (rc != KW_OK)
        return rc;
    kwi_jw_init(&w, 64 + n * 192);
    kwi_jw_lit(&w, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        char kid[9], x[X_LEN + 1];
        if (strcmp(keys[i].kind, KW_SIGNING_ED25519) != 0 || !keys[i].has_public_key ||
            strcmp(keys[i].state, "retired") == 0)
            continue;
        snprintf(kid, sizeof(kid), "%08x", (unsigned)keys[i].kid);
        sodium_bin2base64(x, sizeof(x), keys[i].public_key, sizeof(keys[i].public_key),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        kwi_jw_lit(&w, first ? "{\"kid\":" : ",{\"kid\":");
        kwi_jw_str(&w, kid);
        kwi_jw_lit(&w, ",\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":");
        kwi_jw_str(&w, x);
        kwi_jw_lit(&w, ",\"use\":\"sig\",\"alg\":\"EdDSA\",\"state\":");
        kwi_jw_str(&w, keys[i].state);
        kwi_jw_lit(&w, ",\"created_at\":");
        kwi_jw_time(&w, keys[i].created_at);
        kwi_jw_lit(&w, "}");
        first = 0;
    }
    kwi_jw_lit(&w, "]}");
    free(keys);
    return (*out = kwi_jw_finish(&w)) != NULL ? KW_OK : KW_ERR_NOMEM;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A kid as listed: exactly 8 lowercase hex digits. */
static int kid_parse(const char *s, uint32_t *kid)
{
    *kid = 0;
    for (int i = 0; i < 8; i++) {
        int v = hexval((unsigned char)s[i]);
        if (v < 0)
            return 0;
        *kid = *kid << 4 | (uint32_t)v;
    }
    return s[8] == '\0';
}

/* A key's x: 43 base64url characters, the last one's padding bits zero
 * (one text per key). */
static int x_parse(const char *s, unsigned char key[static 32])
{
    char again[X_LEN + 1];
    size_t n;

    if (strlen(s) != X_LEN ||
        sodium_base642bin(key, 32, s, X_LEN, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != 32)
        return 0;
    sodium_bin2base64(again, sizeof(again), key, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strcmp(again, s) == 0;
}

static const char *member(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Is the optional member `name` absent, or a string equal to a or b? */
static int member_is(json_t *o, const char *name, const char *a, const char *b)
{
    const char *s;

    if (json_object_get(o, name) == NULL)
        return 1;
    return (s = member(o, name)) != NULL && (strcmp(s, a) == 0 || (b && strcmp(s, b) == 0));
}

KW_API kw_rc kw_public_keys_parse(const char *json, size_t len, kw_public_key **out, size_t *n,
                                  char *err, size_t err_len)
{
    json_error_t je;
    json_t *doc, *keys, *e;
    kw_public_key *v = NULL;
    const char *why = NULL, *s;
    size_t i, count, at = 0;
    kw_rc rc = KW_ERR_INVALID;

    if (json == NULL || (doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je)) == NULL) {
        if (err != NULL)
            snprintf(err, err_len, "not JSON: %s (line %d)", je.text, je.line);
        return KW_ERR_INVALID;
    }
    keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        why = "not a key set: an object with an array \"keys\"";
        goto out;
    }
    if ((count = json_array_size(keys)) > PUBLIC_KEYS_MAX) {
        why = "more than 256 keys";
        rc = KW_ERR_TOO_LARGE;
        goto out;
    }
    if ((v = calloc(count ? count : 1, sizeof(*v))) == NULL) {
        rc = KW_ERR_NOMEM;
        goto out;
    }
    json_array_foreach(keys, i, e)
    {
        if (!json_is_object(e) || (s = member(e, "kid")) == NULL || !kid_parse(s, &v[i].kid))
            why = "a key's kid is not 8 lowercase hex digits";
        else if ((s = member(e, "kty")) == NULL || strcmp(s, "OKP") != 0 ||
                 (s = member(e, "crv")) == NULL || strcmp(s, "Ed25519") != 0)
            why = "a key is not an Ed25519 key (kty \"OKP\", crv \"Ed25519\")";
        else if ((s = member(e, "x")) == NULL || !x_parse(s, v[i].key))
            why = "a key's x is not 32 bytes in base64url without padding";
        else if (json_object_get(e, "d") != NULL)
            why = "a key holds its private part (d): a key set publishes public keys only, and "
                  "that key must be taken as leaked";
        else if (!member_is(e, "use", "sig", NULL) || !member_is(e, "alg", "EdDSA", NULL))
            why = "a key is not for signatures (use \"sig\", alg \"EdDSA\")";
        else if (!member_is(e, "state", "active", "verify"))
            why = "a key's state is not one that verifies (active, verify)";
        for (size_t j = 0; why == NULL && j < i; j++)
            if (v[j].kid == v[i].kid)
                why = "a kid is listed twice";
        if (why != NULL) {
            at = i + 1;
            break;
        }
    }
    if (why == NULL) {
        *out = v;
        *n = count;
        v = NULL;
        rc = KW_OK;
    }
out:
    if (why != NULL && err != NULL && at > 0)
        snprintf(err, err_len, "key %zu of the set: %s", at, why);
    else if (why != NULL && err != NULL)
        snprintf(err, err_len, "%s", why);
    free(v);
    json_decref(doc);
    return rc;
}
