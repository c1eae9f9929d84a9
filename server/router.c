/* Routing: path and method to handler; 404 and 405 answered here. */
#include "server.h"

#include <string.h>

#define PREFIX "/v1/keys/"
#define TOKENS "/v1/tokens/"
#define SECRETS "/v1/secrets/"

static int method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* 405 with Allow, when the path exists but not the method. */
static int not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    return kws_send_error(req, 405, "method_not_allowed", "method not allowed on this path");
}

enum { SUB_ITEM, SUB_ROTATE, SUB_USAGE };

/* "{id}", "{id}/rotate" or "{id}/usage" after /v1/keys/; id copied out. */
static int keys_subpath(h2o_iovec_t rest, char id_out[static KW_ID_LEN + 1], int *sub)
{
    if (rest.len == KW_ID_LEN)
        *sub = SUB_ITEM;
    else if (rest.len == KW_ID_LEN + 7 && memcmp(rest.base + KW_ID_LEN, "/rotate", 7) == 0)
        *sub = SUB_ROTATE;
    else if (rest.len == KW_ID_LEN + 6 && memcmp(rest.base + KW_ID_LEN, "/usage", 6) == 0)
        *sub = SUB_USAGE;
    else
        return -1;
    memcpy(id_out, rest.base, KW_ID_LEN);
    id_out[KW_ID_LEN] = '\0';
    return kw_key_id_valid(id_out) ? 0 : -1;
}

/* Answer the request; *route names it for the metrics. */
static int dispatch(h2o_req_t *req, int *route)
{
    h2o_iovec_t p = req->path_normalized;
    char id[KW_ID_LEN + 1];
    int sub;

#define IS(lit) h2o_memis(p.base, p.len, H2O_STRLIT(lit))
    *route = KWS_R_OTHER;
    if (IS("/healthz"))
        return *route = KWS_R_HEALTHZ,
               method_is(req, "GET") ? kws_healthz(req) : not_allowed(req, "GET");
    if (IS("/readyz"))
        return *route = KWS_R_READYZ,
               method_is(req, "GET") ? kws_readyz(req) : not_allowed(req, "GET");
    if (IS("/metrics"))
        return method_is(req, "GET") ? kws_metrics_text(req) : not_allowed(req, "GET");
    if (IS("/v1/openapi.json"))
        return *route = KWS_R_OPENAPI,
               method_is(req, "GET") ? kws_openapi_doc(req) : not_allowed(req, "GET");
    if (IS("/v1/auth"))
        return *route = KWS_R_AUTH, method_is(req, "GET") ? kws_auth(req) : not_allowed(req, "GET");
    if (IS("/v1/audit"))
        return *route = KWS_R_AUDIT,
               method_is(req, "GET") ? kws_audit(req) : not_allowed(req, "GET");
    if (IS("/v1/keys"))
        return *route = KWS_R_KEYS, method_is(req, "GET") || method_is(req, "POST")
                                        ? kws_keys_collection(req)
                                        : not_allowed(req, "GET, POST");
    if (IS("/v1/keys/verify"))
        return *route = KWS_R_VERIFY,
               method_is(req, "POST") ? kws_keys_verify(req) : not_allowed(req, "POST");
    if (IS("/v1/tokens"))
        return *route = KWS_R_TOKENS,
               method_is(req, "POST") ? kws_tokens_collection(req) : not_allowed(req, "POST");
    if (IS("/v1/signing-keys"))
        return *route = KWS_R_SIGNING_KEYS,
               method_is(req, "GET") ? kws_signing_keys(req) : not_allowed(req, "GET");
    if (IS("/v1/secrets"))
        return *route = KWS_R_SECRETS,
               method_is(req, "GET") ? kws_secrets_list(req) : not_allowed(req, "GET");
#undef IS
    if (p.len > sizeof(SECRETS) - 1 && memcmp(p.base, SECRETS, sizeof(SECRETS) - 1) == 0) {
        size_t n = p.len - (sizeof(SECRETS) - 1);
        char *path = h2o_mem_alloc_pool(&req->pool, n + 1);
        memcpy(path, p.base + sizeof(SECRETS) - 1, n);
        path[n] = '\0';
        *route = KWS_R_SECRET;
        if (!method_is(req, "GET") && !method_is(req, "PUT") && !method_is(req, "DELETE") &&
            !method_is(req, "POST"))
            return not_allowed(req, "GET, PUT, DELETE, POST");
        if (memchr(path, '\0', n) != NULL || !kw_secret_path_valid(path)) /* %00 */
            return kws_send_error(req, 400, "bad_request",
                                  "not a secret path (segments of A-Z a-z 0-9 _ . - separated by "
                                  "'/')");
        return kws_secret_item(req, path);
    }
    if (p.len == sizeof(TOKENS) - 1 + KW_ID_LEN &&
        memcmp(p.base, TOKENS, sizeof(TOKENS) - 1) == 0) {
        memcpy(id, p.base + sizeof(TOKENS) - 1, KW_ID_LEN);
        id[KW_ID_LEN] = '\0';
        if (kw_key_id_valid(id))
            return *route = KWS_R_TOKEN,
                   method_is(req, "DELETE") ? kws_tokens_item(req, id) : not_allowed(req, "DELETE");
    }
    if (p.len > sizeof(PREFIX) - 1 && memcmp(p.base, PREFIX, sizeof(PREFIX) - 1) == 0 &&
        keys_subpath(h2o_iovec_init(p.base + sizeof(PREFIX) - 1, p.len - (sizeof(PREFIX) - 1)), id,
                     &sub) == 0) {
        if (sub == SUB_USAGE)
            return *route = KWS_R_USAGE,
                   method_is(req, "GET") ? kws_keys_usage(req, id) : not_allowed(req, "GET");
        if (sub == SUB_ROTATE)
            return *route = KWS_R_ROTATE,
                   method_is(req, "POST") ? kws_keys_rotate(req, id) : not_allowed(req, "POST");
        *route = KWS_R_KEY;
        if (method_is(req, "GET") || method_is(req, "PATCH") || method_is(req, "DELETE"))
            return kws_keys_item(req, id);
        return not_allowed(req, "GET, PATCH, DELETE");
    }
    return kws_send_error(req, 404, "not_found", "no such route");
}

int kws_route(h2o_handler_t *self, h2o_req_t *req)
{
    uint64_t started = kws_clock_us();
    int route, ret;

    (void)self;
    kws_thread_of(req)->req_started_us = started;
    ret = dispatch(req, &route);
    /* Every handler answers before returning, except a key creation, which
     * answers (and counts itself) when its commit is done. */
    if (req->res.status != 0)
        kws_metrics_request(req, route, started);
    return ret;
}
