/* Stateless keys over HTTP (docs/tokens.md): POST /v1/tokens mints one,
 * DELETE /v1/tokens/{id} revokes an id and everything derived from it,
 * GET /v1/signing-keys publishes the Ed25519 public keys that verify. */
#include "server.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCOPES_CAP KW_SCOPES_MAX

/* 201: {"token", "id", "kid", "owner", "scopes", "not_before", "expires_at"}. */
static int send_token(h2o_req_t *req, const kw_secret *tok, const char *id,
                      const kw_token_params *p)
{
    kw_token_info *t = NULL;
    json_t *o, *scopes;
    char kid[9], at[32], *txt;

    if (kw_token_parse(&t, (const char *)kw_secret_cdata(tok), kw_secret_len(tok), NULL, 0) !=
        KW_OK)
        return kws_send_error(req, 500, "internal", "the new token does not read back");
    snprintf(kid, sizeof(kid), "%08x", (unsigned)t->kid);
    kw_token_info_free(t);
    o = json_object();
    scopes = json_array();
    for (size_t i = 0; i < p->nscopes; i++)
        json_array_append_new(scopes, json_string(p->scopes[i]));
    json_object_set_new(o, "token",
                        json_stringn((const char *)kw_secret_cdata(tok), kw_secret_len(tok)));
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "kid", json_string(kid));
    json_object_set_new(o, "owner", json_string(p->owner));
    json_object_set_new(o, "scopes", scopes);
    kw_time_format(at, p->not_before);
    json_object_set_new(o, "not_before", p->not_before ? json_string(at) : json_null());
    kw_time_format(at, p->expires_at);
    json_object_set_new(o, "expires_at", p->expires_at ? json_string(at) : json_null());
    txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o); /* jansson's copy of the token: freed, not wiped (its allocator) */
    if (txt == NULL)
        return kws_send_error(req, 500, "internal", "out of memory");
    kws_send_text(req, 201, txt);
    sodium_memzero(txt, strlen(txt));
    free(txt);
    return 0;
}

int kws_tokens_collection(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    const char *scopes[SCOPES_CAP], *k;
    kw_token_params p = {.scopes = scopes};
    char admin[KW_ID_LEN + 1], client[64], id[KW_ID_LEN + 1];
    kw_secret *tok = NULL;
    json_t *o, *v;
    size_t i;
    kw_rc rc;
    int ret = 0;

    if (!kws_admin(req, "tokens:create", admin))
        return 0;
    if ((o = kws_body_object(req)) == NULL)
        return 0;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "owner") == 0 || strcmp(k, "prefix") == 0) {
            if (!json_is_string(v)) {
                kws_bad(req, "%s must be a string", k);
                goto out;
            }
            *(k[0] == 'o' ? &p.owner : &p.prefix) = json_string_value(v);
        } else if (strcmp(k, "scopes") == 0) {
            json_t *s;
            if (!json_is_array(v) || json_array_size(v) > SCOPES_CAP) {
                kws_bad(req, "scopes must be an array of at most %d strings", SCOPES_CAP);
                goto out;
            }
            json_array_foreach(v, i, s)
            {
                if (!json_is_string(s)) {
                    kws_bad(req, "scopes must be an array of at most %d strings", SCOPES_CAP);
                    goto out;
                }
                scopes[i] = json_string_value(s);
            }
            p.nscopes = json_array_size(v);
        } else if (strcmp(k, "expires_at") == 0 || strcmp(k, "not_before") == 0) {
            if (kws_json_time(req, k, v, k[0] == 'e' ? &p.expires_at : &p.not_before) != 0)
                goto out;
        } else {
            kws_bad(req, "unknown field \"%.64s\"", k);
            goto out;
        }
    }
    if (p.owner == NULL) {
        kws_bad(req, "owner is required: a token names its owner");
        goto out;
    }
    if (p.expires_at != 0 && p.expires_at <= kw_now()) {
        kws_bad(req, "expires_at is in the past");
        goto out;
    }
    kws_peer(req, client, sizeof(client));
    rc = kw_token_mint(t->kw, &p, &(kw_actor){admin, client}, &tok, id);
    ret = rc == KW_OK ? send_token(req, tok, id, &p) : kws_send_rc(req, rc, kw_errmsg(t->kw));
out:
    kw_secret_free(tok);
    json_decref(o);
    return ret;
}

int kws_tokens_item(h2o_req_t *req, const char *id)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1], client[64], body[64];
    kw_rc rc;

    if (!kws_admin(req, "tokens:revoke", admin))
        return 0;
    kws_peer(req, client, sizeof(client));
    rc = kw_token_revoke(t->kw, id, &(kw_actor){admin, client});
    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"revoked\":true}", id); /* base62: no escaping */
    return kws_send_text(req, 200, body);
}

/* The Ed25519 public keys that verify, for verifiers that hold no secret.
 * Public by nature: no admin key is asked for (like a JWKS endpoint). */
int kws_signing_keys(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    char *doc = NULL;
    kw_rc rc = kw_signing_keys_public_json(t->kw, &doc);
    int ret;

    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    ret = kws_send_text(req, 200, doc);
    free(doc);
    return ret;
}
