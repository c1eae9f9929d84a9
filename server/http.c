/* Request and response helpers: headers, query strings, JSON bodies,
 * errors, admin authentication. */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

kws_thread *kws_thread_of(h2o_req_t *req)
{
    /* h2o_context_t is the first member of kws_thread. */
    return (kws_thread *)req->conn->ctx;
}

void kws_peer(h2o_req_t *req, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    char host[NI_MAXHOST];

    size_t n;

    if (len == 0 || (n = h2o_socket_getnumerichost((struct sockaddr *)&ss, len, host)) == SIZE_MAX)
        n = (size_t)snprintf(host, sizeof(host), "unknown");
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, host, n);
    buf[n] = '\0';
}

h2o_iovec_t kws_header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode src[0..n) into dst (n + 1 bytes); -1 if malformed or NUL. */
static int url_decode(char *dst, const char *src, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(src[i + 1])) < 0 || (lo = hexval(src[i + 2])) < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return -1;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

const char *kws_query(h2o_req_t *req, const char *name, int *bad)
{
    const char *q, *end;
    size_t nlen = strlen(name);

    if (req->query_at == SIZE_MAX)
        return NULL;
    q = req->path.base + req->query_at + 1;
    end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pair_end - q));
        const char *kend = eq ? eq : pair_end;
        char key[64];

        if ((size_t)(kend - q) < sizeof(key) && url_decode(key, q, (size_t)(kend - q)) == 0 &&
            strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : pair_end;
            size_t vlen = (size_t)(pair_end - v);
            char *out = h2o_mem_alloc_pool(&req->pool, vlen + 1);
            if (url_decode(out, v, vlen) != 0) {
                *bad = 1;
                return NULL;
            }
            return out;
        }
        q = pair_end + 1;
    }
    return NULL;
}

json_t *kws_body_object(h2o_req_t *req)
{
    json_error_t err;
    json_t *o;

    if (req->entity.len > KWS_BODY_MAX) {
        kws_send_error(req, 413, "payload_too_large", "the body is larger than 64 KiB");
        return NULL;
    }
    if (req->entity.base == NULL || req->entity.len == 0) {
        kws_send_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    o = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "the body is not valid JSON: %s (at byte %d)", err.text,
                 err.position);
        kws_send_error(req, 400, "invalid_json", msg);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        kws_send_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

void kws_json_head(h2o_req_t *req, int status, size_t len)
{
    req->res.status = status;
    req->res.reason = status < 300 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    /* A known length: no chunked encoding, and h2o keeps the connection
     * alive after non-200 answers (it closes chunked ones). */
    req->res.content_length = len;
}

int kws_send_text(h2o_req_t *req, int status, const char *json)
{
    size_t len = strlen(json);
    char *body = h2o_mem_alloc_pool(&req->pool, len + 1);

    memcpy(body, json, len + 1);
    kws_json_head(req, status, len);
    h2o_send_inline(req, body, len);
    return 0;
}

int kws_send_json(h2o_req_t *req, int status, json_t *obj)
{
    char *txt = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(obj);
    if (txt == NULL)
        return kws_send_error(req, 500, "internal", "out of memory");
    kws_send_text(req, status, txt);
    free(txt);
    return 0;
}

int kws_send_error(h2o_req_t *req, int status, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(o);
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer"));
    kws_send_text(req, status,
                  txt ? txt : "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
    free(txt);
    return 0;
}

/* One line a second at most: a database that is away fails every request
 * that needs it (the metrics count them all). */
static void log_db_error(const char *msg)
{
    static _Atomic uint64_t logged_us, quiet;
    uint64_t now = kws_clock_us(), last = atomic_load(&logged_us), n;

    if (now - last < 1000000 || !atomic_compare_exchange_strong(&logged_us, &last, now)) {
        atomic_fetch_add(&quiet, 1);
        return;
    }
    if ((n = atomic_exchange(&quiet, 0)) > 0)
        fprintf(stderr, "keyward serve: database: %s (and %llu more such errors)\n", msg,
                (unsigned long long)n);
    else
        fprintf(stderr, "keyward serve: database: %s\n", msg);
}

int kws_send_rc(h2o_req_t *req, kw_rc rc, const char *detail)
{
    const char *msg = detail && detail[0] ? detail : kw_strerror(rc);

    switch (rc) {
    case KW_ERR_INVALID:
    case KW_ERR_TOO_LARGE: return kws_send_error(req, 400, "bad_request", msg);
    case KW_ERR_NOT_FOUND: return kws_send_error(req, 404, "not_found", msg);
    case KW_ERR_CONFLICT: return kws_send_error(req, 409, "conflict", msg);
    case KW_ERR_STORAGE:
    case KW_ERR_READONLY:
    case KW_ERR_IO:
        log_db_error(msg);
        kws_metrics_db_error(req);
        return kws_send_error(req, 503, "unavailable", "the database cannot be used");
    default:
        fprintf(stderr, "keyward serve: %s: %s\n", kw_strerror(rc), msg);
        return kws_send_error(req, 500, "internal", kw_strerror(rc));
    }
}

int kws_db_stale(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);

    return t->cfg->db_grace_ms > 0 && kw_index_sync_age_ms(t->index) > t->cfg->db_grace_ms;
}

int kws_send_stale(h2o_req_t *req)
{
    kws_retry_after(req, 1000);
    return kws_send_error(req, 503, "unavailable",
                          "keyward has not reached its database for longer than its grace "
                          "period (--db-grace): it verifies again once it has");
}

kw_rc kws_verify(h2o_req_t *req, int source, const char *key, size_t len,
                 const kw_verify_request *vr, kw_verify_result *res)
{
    kws_thread *t = kws_thread_of(req);
    kw_rc rc = kw_index_verify(t->index, t->kw, key, len, vr, res);

    if (rc == KW_OK)
        kws_metrics_verdict(req, source, res->code);
    return rc;
}

void kws_retry_after(h2o_req_t *req, int64_t ms)
{
    char v[24];
    int n = snprintf(v, sizeof(v), "%lld", (long long)kws_ms_to_s(ms));

    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   h2o_strdup(&req->pool, v, (size_t)n).base, (size_t)n);
}

int kws_query_limit(h2o_req_t *req, size_t max, size_t *out)
{
    int bad = 0;
    const char *v = kws_query(req, "limit", &bad);
    char *end;
    long n;

    if (bad)
        return -1;
    if (v == NULL)
        return 0;
    n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 1 || (size_t)n > max)
        return -1;
    *out = (size_t)n;
    return 0;
}

void kws_changed(h2o_req_t *req, const char *id)
{
    kws_thread *t = kws_thread_of(req);

    /* The change is committed; if the reload fails, the next sync (it
     * follows the audit trail) brings it in. */
    if (kw_index_refresh(t->index, t->kw, id) != KW_OK)
        fprintf(stderr, "keyward serve: index reload of %s failed: %s\n", id, kw_errmsg(t->kw));
}

void kws_change_end(h2o_req_t *req, const char *id, const char *made)
{
    kws_thread *t = kws_thread_of(req);

    if (kw_index_change_end(t->index, t->kw, id, made) != KW_OK)
        fprintf(stderr, "keyward serve: index reload of %s failed: %s\n", id, kw_errmsg(t->kw));
}

/* The key of "Authorization: Bearer <key>", or a zero iovec. */
h2o_iovec_t kws_bearer(h2o_req_t *req)
{
    h2o_iovec_t v = kws_header(req, "authorization");

    if (v.len < 7 || strncasecmp(v.base, "bearer ", 7) != 0)
        return h2o_iovec_init(NULL, 0);
    v.base += 7;
    v.len -= 7;
    while (v.len > 0 && v.base[0] == ' ') {
        v.base++;
        v.len--;
    }
    return v;
}

/* Record a refused admin call: the key's id when it parses, never the key. */
static void audit_refusal(h2o_req_t *req, h2o_iovec_t key, const char *scope, const char *code)
{
    kws_thread *t = kws_thread_of(req);
    char client[64], detail[64 + KW_SECRETS_SCOPE_MAX_LEN]; /* scopes need no escaping */
    kw_key_parts parts;
    const char *target = "";
    kw_actor actor;

    if (key.len > 0 && kw_key_parse(&parts, key.base, key.len))
        target = parts.id;
    kws_peer(req, client, sizeof(client));
    actor.id = target[0] ? target : "anonymous";
    actor.client = client;
    snprintf(detail, sizeof(detail), "{\"scope\":\"%s\",\"code\":\"%s\"}", scope ? scope : "",
             code);
    if (kw_audit_append(t->kw, &actor, "auth.fail", target, code, detail) != KW_OK)
        fprintf(stderr, "keyward serve: audit of a refused admin call failed: %s\n",
                kw_errmsg(t->kw));
}

int kws_admin(h2o_req_t *req, const char *scope, char actor_id[static KW_ID_LEN + 1])
{
    return kws_admin_key(req, scope, actor_id, NULL);
}

int kws_admin_key(h2o_req_t *req, const char *scope, char actor_id[static KW_ID_LEN + 1],
                  kw_verify_result *keep)
{
    kws_thread *t = kws_thread_of(req);
    const char *scopes[1] = {scope};
    kw_verify_request vr = {.scopes = scopes, .nscopes = scope ? 1 : 0, .cost = 1};
    kw_verify_result res;
    h2o_iovec_t key = kws_bearer(req);
    char msg[64 + KW_SECRETS_SCOPE_MAX_LEN];
    kw_rc rc;

    if (key.len == 0) {
        audit_refusal(req, key, scope, "MISSING");
        kws_send_error(req, 401, "unauthorized", "an admin key is needed: Authorization: Bearer");
        return 0;
    }
    rc = kws_verify(req, KWS_SRC_ADMIN, key.base, key.len, &vr, &res);
    if (rc != KW_OK) {
        kw_verify_result_clear(&res);
        kws_send_rc(req, rc, kw_errmsg(t->kw));
        return 0;
    }
    if (res.code == KW_VALID) {
        memcpy(actor_id, res.key.id, KW_ID_LEN + 1);
        if (keep != NULL)
            *keep = res;
        else
            kw_verify_result_clear(&res);
        return 1;
    }
    audit_refusal(req, key, scope, kw_verdict_name(res.code));
    if (res.code == KW_INSUFFICIENT_SCOPE) {
        snprintf(msg, sizeof(msg), "the admin key lacks the scope %s", scope);
        kws_send_error(req, 403, "forbidden", msg);
    } else if (res.code == KW_RATE_LIMITED || res.code == KW_USAGE_EXCEEDED) {
        if (res.code == KW_RATE_LIMITED)
            kws_retry_after(req, res.rl_reset_ms);
        snprintf(msg, sizeof(msg), "the admin key is %s",
                 res.code == KW_RATE_LIMITED ? "over its rate limit" : "out of credits");
        kws_send_error(req, 429, "rate_limited", msg);
    } else {
        snprintf(msg, sizeof(msg), "the admin key is not valid (%s)", kw_verdict_name(res.code));
        kws_send_error(req, 401, "unauthorized", msg);
    }
    kw_verify_result_clear(&res);
    return 0;
}

int kws_bad(h2o_req_t *req, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kws_send_error(req, 400, "bad_request", msg);
    return -1;
}

int kws_json_time(h2o_req_t *req, const char *k, json_t *v, int64_t *out)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_string(v) || kw_time_parse(json_string_value(v), out) != 0)
        return kws_bad(req, "%s must be an RFC 3339 time or null", k);
    return 0;
}
