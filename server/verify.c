/* Verification over HTTP: POST /v1/keys/verify and the gateway's GET /v1/auth. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_SCOPES_MAX 16

int kws_keys_verify(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    const char *scopes[REQ_SCOPES_MAX];
    kw_verify_request vr = {.scopes = scopes, .nscopes = 0, .cost = 1};
    kw_verify_result res;
    char admin[KW_ID_LEN + 1];
    json_t *o, *key, *sc, *cost, *s;
    const char *k;
    size_t i;
    kw_rc rc;

    if (!kws_admin(req, "keys:verify", admin))
        return 0;
    if ((o = kws_body_object(req)) == NULL)
        return 0;
    json_object_foreach(o, k, s)
    {
        if (strcmp(k, "key") && strcmp(k, "scopes") && strcmp(k, "cost") && strcmp(k, "audience") &&
            strcmp(k, "client_address")) {
            json_decref(o);
            return kws_send_error(req, 400, "bad_request", "unknown field in the body");
        }
    }
    key = json_object_get(o, "key");
    sc = json_object_get(o, "scopes");
    cost = json_object_get(o, "cost");
    if (!json_is_string(key)) {
        json_decref(o);
        return kws_send_error(req, 400, "bad_request", "key must be a string");
    }
    if (sc != NULL && (!json_is_array(sc) || json_array_size(sc) > REQ_SCOPES_MAX)) {
        json_decref(o);
        return kws_send_error(req, 400, "bad_request", "scopes must be an array of at most 16");
    }
    json_array_foreach(sc, i, s)
    {
        if (!json_is_string(s) || !kw_scope_required_valid(json_string_value(s))) {
            json_decref(o);
            return kws_send_error(req, 400, "bad_request",
                                  "scopes must be resource:action strings without wildcards");
        }
        scopes[vr.nscopes++] = json_string_value(s);
    }
    if (cost != NULL) {
        if (!json_is_integer(cost) || json_integer_value(cost) < 1 ||
            json_integer_value(cost) > 1000000) {
            json_decref(o);
            return kws_send_error(req, 400, "bad_request", "cost must be 1..1000000");
        }
        vr.cost = (uint32_t)json_integer_value(cost);
    }
    /* For a stateless key's audience and address caveats (docs/tokens.md). */
    for (i = 0; i < 2; i++) {
        json_t *v = json_object_get(o, i == 0 ? "audience" : "client_address");
        if (v == NULL)
            continue;
        if (!json_is_string(v)) {
            json_decref(o);
            return kws_send_error(req, 400, "bad_request",
                                  "audience and client_address must be strings");
        }
        if (i == 0)
            vr.audience = json_string_value(v);
        else
            vr.client_addr = json_string_value(v);
    }
    if (kws_db_stale(req)) {
        json_decref(o);
        return kws_send_stale(req);
    }
    rc =
        kws_verify(req, KWS_SRC_VERIFY, json_string_value(key), json_string_length(key), &vr, &res);
    json_decref(o);
    if (rc != KW_OK) {
        kw_verify_result_clear(&res);
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    }
    {
        char *txt = kw_verify_result_json(&res);
        if (txt != NULL)
            kws_send_text(req, 200, txt);
        else
            kws_send_error(req, 500, "internal", "out of memory");
        free(txt);
    }
    kw_verify_result_clear(&res);
    return 0;
}

/* ---- GET /v1/auth ------------------------------------------------------- */

static void add_header(h2o_req_t *req, const char *name, const char *value, size_t len)
{
    h2o_iovec_t v = h2o_strdup(&req->pool, value, len);

    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v.base,
                          v.len);
}

static h2o_generator_t no_body = {NULL, NULL};

static int auth_answer(h2o_req_t *req, int status, const char *code)
{
    add_header(req, "x-key-code", code, strlen(code));
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Refused";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    req->res.content_length = 0; /* keeps the gateway's connection alive on refusals */
    /* No body at all: h2o_send_inline(req, "", 0) would hand the socket an
     * empty buffer after the headers, which libh2o's writer waits on with a
     * second writev and two epoll_ctl calls per request (a fifth of the
     * throughput of /v1/auth). */
    h2o_start_response(req, &no_body);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    return 0;
}

/* Split "a b,c" into scopes (NUL-terminated copies in the pool); -1 if bad. */
static int required_scopes(h2o_req_t *req, const char **out, size_t *n)
{
    h2o_iovec_t v = kws_header(req, "x-required-scopes");
    char *buf, *p;

    *n = 0;
    if (v.len == 0)
        return 0;
    buf = h2o_mem_alloc_pool(&req->pool, v.len + 1);
    memcpy(buf, v.base, v.len);
    buf[v.len] = '\0';
    for (p = buf; *p;) {
        char *end;
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        end = p + strcspn(p, " ,");
        if (*end != '\0')
            *end++ = '\0';
        if (*n == REQ_SCOPES_MAX || !kw_scope_required_valid(p))
            return -1;
        out[(*n)++] = p;
        p = end;
    }
    return 0;
}

int kws_auth(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    struct sockaddr_storage ss;
    const char *scopes[REQ_SCOPES_MAX];
    kw_verify_request vr = {.scopes = scopes, .nscopes = 0, .cost = 1};
    kw_verify_result res;
    h2o_iovec_t key;
    int status;
    kw_rc rc;

    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) == 0 ||
        !kws_cidr_match(t->cfg->trusted, t->cfg->ntrusted, (struct sockaddr *)&ss))
        return kws_send_error(req, 403, "forbidden", "/v1/auth answers trusted addresses only");
    key = kws_bearer(req);
    if (key.len == 0)
        key = kws_header(req, "x-api-key");
    if (key.len == 0)
        return auth_answer(req, 401, "MISSING");
    if (required_scopes(req, scopes, &vr.nscopes) != 0) {
        fprintf(stderr, "keyward serve: /v1/auth: bad X-Required-Scopes from the gateway\n");
        return kws_send_error(req, 500, "internal", "X-Required-Scopes is malformed");
    }
    if (kw_token_shape(key.base, key.len)) {
        /* A stateless key's audience and address caveats: what the trusted
         * gateway says of the request (docs/nginx/keyward-gateway.conf). */
        h2o_iovec_t aud = kws_header(req, "x-key-audience");
        h2o_iovec_t ip = kws_header(req, "x-real-ip");
        if (aud.len > 0)
            vr.audience = h2o_strdup(&req->pool, aud.base, aud.len).base;
        if (ip.len > 0)
            vr.client_addr = h2o_strdup(&req->pool, ip.base, ip.len).base;
    }
    if (kws_db_stale(req))
        return kws_send_stale(req);
    rc = kws_verify(req, KWS_SRC_AUTH, key.base, key.len, &vr, &res);
    if (rc != KW_OK) {
        kw_verify_result_clear(&res);
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    }
    switch (res.code) {
    case KW_VALID: status = 200; break;
    case KW_INSUFFICIENT_SCOPE: status = 403; break;
    case KW_RATE_LIMITED:
    case KW_USAGE_EXCEEDED: {
        /* nginx's auth_request turns any subrequest status but 2xx, 401
         * and 403 into a 500: for nginx, say 403 and let X-Key-Code tell
         * the gateway to answer 429 (docs/nginx/keyward-gateway.conf). */
        h2o_iovec_t gateway = kws_header(req, "x-keyward-gateway");
        status = h2o_memis(gateway.base, gateway.len, H2O_STRLIT("nginx")) ? 403 : 429;
        break;
    }
    default: status = 401; break;
    }
    if (res.code == KW_VALID) {
        /* Space-separated; at most KW_SCOPES_MAX scopes of at most
         * KW_SCOPE_MAX_LEN bytes (stored keys are validated), each but the
         * first after a space: it fits. Joined by hand: snprintf was the
         * largest user-space cost of this answer. */
        char scopes_txt[KW_SCOPES_MAX * (KW_SCOPE_MAX_LEN + 1)];
        size_t off = 0;
        for (size_t i = 0; i < res.key.nscopes && i < KW_SCOPES_MAX; i++) {
            size_t n = strnlen(res.key.scopes[i], KW_SCOPE_MAX_LEN);
            if (i > 0)
                scopes_txt[off++] = ' ';
            memcpy(scopes_txt + off, res.key.scopes[i], n);
            off += n;
        }
        add_header(req, "x-key-id", res.key.id, strlen(res.key.id));
        add_header(req, "x-key-owner", res.key.owner, strlen(res.key.owner));
        add_header(req, "x-key-scopes", scopes_txt, off);
    }
    if (res.found && res.rl_limit) {
        /* draft-ietf-httpapi-ratelimit-headers-05: Limit, Remaining, Reset (s). */
        char v[48];
        int n = snprintf(v, sizeof(v), "%u", res.rl_limit);
        add_header(req, "ratelimit-limit", v, (size_t)n);
        n = snprintf(v, sizeof(v), "%u", res.rl_remaining);
        add_header(req, "ratelimit-remaining", v, (size_t)n);
        n = snprintf(v, sizeof(v), "%lld", (long long)kws_ms_to_s(res.rl_reset_ms));
        add_header(req, "ratelimit-reset", v, (size_t)n);
        n = snprintf(v, sizeof(v), "%u;w=%u", res.rl_limit, res.key.rate_window_ms / 1000);
        add_header(req, "ratelimit-policy", v, (size_t)n);
    }
    if (res.code == KW_RATE_LIMITED)
        kws_retry_after(req, res.rl_reset_ms);
    auth_answer(req, status, kw_verdict_name(res.code));
    kw_verify_result_clear(&res);
    return 0;
}
