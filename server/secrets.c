/* Secrets over HTTP (docs/secrets.md): GET /v1/secrets?prefix= lists the
 * paths the admin key may read; GET, PUT and DELETE /v1/secrets/{path}
 * read, write and delete one, each behind secrets:read:<path> or
 * secrets:write:<path> (a grant may end in a slash and a star). */
#include "server.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCOPE_MAX (sizeof("secrets:write:") + KW_SECRET_PATH_MAX)

static void scope_of(char out[static SCOPE_MAX], const char *verb, const char *path)
{
    snprintf(out, SCOPE_MAX, "secrets:%s:%s", verb, path);
}

/* kw_secrets_* refusals: a server without a master key is unavailable
 * for secrets, not broken. */
static int send_secrets_rc(h2o_req_t *req, kw_rc rc, const char *msg)
{
    if (rc == KW_ERR_MASTER_KEY)
        return kws_send_error(req, 503, "master_key",
                              "secrets are unavailable: the server has no master key, or not the "
                              "one they are sealed under");
    return kws_send_rc(req, rc, msg);
}

/* After a rotation made elsewhere (keyward master-key rotate), the key a
 * thread holds no longer opens the secrets: read the master key again from
 * where the server took it (<db>.master, or KEYWARD_MASTER_KEY_CMD), at
 * most once a second per thread, and take it if it is the database's. */
static int master_reloaded(kws_thread *t)
{
    int64_t now = kw_now() * 1000;
    kw_secret *key = NULL;
    char why[200];
    kw_rc rc;

    if (t->cfg->master_key == NULL || now - t->master_reload_ms < 1000)
        return 0; /* none at start: none now; or just tried */
    t->master_reload_ms = now;
    if (kw_master_key_load(&key, t->cfg->master_key_file, why, sizeof(why)) != KW_OK)
        return 0;
    rc = kw_secrets_master(t->kw, key);
    kw_secret_free(key);
    return rc == KW_OK;
}

int kws_secrets_list(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    kw_verify_result who;
    kw_secret_info *v = NULL;
    char admin[KW_ID_LEN + 1], scope[SCOPE_MAX];
    const char *prefix, *need = scope;
    json_t *o, *list;
    size_t n = 0;
    int bad = 0;
    kw_rc rc;

    prefix = kws_query(req, "prefix", &bad);
    if (bad) {
        kws_bad(req, "prefix is not valid URL encoding");
        return 0; /* answered */
    }
    if (!kws_admin_key(req, NULL, admin, &who)) /* any valid key: it sees what it may read */
        return 0;
    rc = kw_secrets_list(t->kw, prefix ? prefix : "", 0, &v, &n);
    if (rc != KW_OK) {
        kw_verify_result_clear(&who);
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    }
    o = json_object();
    list = json_array();
    for (size_t i = 0; i < n; i++) {
        char at[32];
        json_t *e;
        scope_of(scope, "read", v[i].path);
        if (!kw_scopes_cover((const char *const *)who.key.scopes, who.key.nscopes, &need, 1))
            continue; /* nothing outside its paths, listing included */
        kw_time_format(at, v[i].updated_at);
        e = json_object();
        json_object_set_new(e, "path", json_string(v[i].path));
        json_object_set_new(e, "version", json_integer(v[i].version));
        json_object_set_new(e, "updated_at", json_string(at));
        json_array_append_new(list, e);
    }
    json_object_set_new(o, "secrets", list);
    kw_verify_result_clear(&who);
    free(v);
    return kws_send_json(req, 200, o);
}

/* An answer holding a value: sent from request memory that is wiped when
 * the request's memory is let go (h2o calls the dispose function first),
 * not through kws_send_text's plain copies. */
typedef struct wiped {
    size_t len;
    char data[];
} wiped;

static void wipe_body(void *p)
{
    wiped *w = p;

    sodium_memzero(w->data, w->len);
}

static int send_wiped(h2o_req_t *req, const char *json)
{
    static h2o_generator_t generator = {NULL, NULL};
    size_t len = strlen(json);
    wiped *w = h2o_mem_alloc_shared(&req->pool, sizeof(*w) + len, wipe_body);
    h2o_iovec_t body;

    w->len = len;
    memcpy(w->data, json, len);
    kws_json_head(req, 200, len);
    body = h2o_iovec_init(w->data, len);
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

/* 200: {"path", "version", "value"} (UTF-8 text) or "value_base64". */
static int send_value(h2o_req_t *req, const char *path, int64_t version, const kw_secret *value)
{
    const unsigned char *b = kw_secret_cdata(value);
    /* room for the JSON escaping of any text (\u0001 is six bytes for one) */
    size_t len = kw_secret_len(value), cap = 64 + 2 * KW_SECRET_PATH_MAX + 6 * len;
    char *body = malloc(cap), *text = NULL;
    json_t *s;
    int n, ret;

    if (body == NULL)
        return kws_send_error(req, 500, "internal", "out of memory");
    n = snprintf(body, cap, "{\"path\":\"%s\",\"version\":%lld,", path, (long long)version);
    /* a path needs no escaping: [A-Za-z0-9_./-] */
    s = memchr(b, '\0', len) == NULL ? json_stringn((const char *)b, len) : NULL;
    if (s != NULL && (text = json_dumps(s, JSON_ENCODE_ANY)) != NULL && strlen(text) < cap - n - 16)
        n += snprintf(body + n, cap - (size_t)n, "\"value\":%s}", text);
    else {
        n += snprintf(body + n, cap - (size_t)n, "\"value_base64\":\"");
        sodium_bin2base64(body + n, cap - (size_t)n - 2, b, len, sodium_base64_VARIANT_ORIGINAL);
        n += (int)strlen(body + n);
        snprintf(body + n, cap - (size_t)n, "\"}");
    }
    if (text != NULL)
        sodium_memzero(text, strlen(text));
    free(text);
    if (s != NULL) /* jansson's copy, written over in place */
        sodium_memzero((char *)json_string_value(s), json_string_length(s));
    json_decref(s);
    ret = send_wiped(req, body);
    sodium_memzero(body, cap);
    free(body);
    return ret;
}

/* ?version=N into *version (0 when absent); -1 if it is not a whole
 * number of 1 or more (then answered with 400). */
static int query_version(h2o_req_t *req, int64_t *version)
{
    int bad = 0;
    const char *q = kws_query(req, "version", &bad);
    char *end = NULL;
    long long v;

    *version = 0;
    if (q == NULL && !bad)
        return 0;
    v = bad || q[0] < '0' || q[0] > '9' ? 0 : strtoll(q, &end, 10);
    if (v <= 0 || *end != '\0') {
        kws_bad(req, "version is a whole number of 1 or more");
        return -1;
    }
    *version = v;
    return 0;
}

static int get_one(h2o_req_t *req, const char *path, const kw_actor *actor)
{
    kws_thread *t = kws_thread_of(req);
    kw_secret *value = NULL;
    int64_t version;
    int ret;
    kw_rc rc;

    if (query_version(req, &version) != 0)
        return 0; /* answered */
    rc = kw_secrets_get(t->kw, path, version, actor, &value, &version);
    if (rc == KW_ERR_MASTER_KEY && master_reloaded(t))
        rc = kw_secrets_get(t->kw, path, version, actor, &value, &version);
    if (rc != KW_OK)
        return send_secrets_rc(req, rc, kw_errmsg(t->kw));
    ret = send_value(req, path, version, value);
    kw_secret_free(value);
    return ret;
}

/* The value of a PUT body: "value" (text) or "value_base64", into locked
 * memory (the caller wipes the body's copies). */
static kw_secret *body_value(h2o_req_t *req, json_t *o, int64_t *cas)
{
    json_t *text = json_object_get(o, "value"), *b64 = json_object_get(o, "value_base64"),
           *c = json_object_get(o, "cas");
    const char *k;
    kw_secret *out = NULL;
    json_t *v;
    size_t len;

    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "value") != 0 && strcmp(k, "value_base64") != 0 && strcmp(k, "cas") != 0 &&
            strcmp(k, "keep") != 0) {
            kws_bad(req, "unknown field \"%.64s\"", k);
            return NULL;
        }
    }
    if ((text != NULL) == (b64 != NULL) || (text != NULL && !json_is_string(text)) ||
        (b64 != NULL && !json_is_string(b64))) {
        kws_bad(req, "give the value as \"value\" (a string) or \"value_base64\"");
        return NULL;
    }
    if (c != NULL && (!json_is_integer(c) || json_integer_value(c) < 0)) {
        kws_bad(req, "cas is a version (0: only a new secret)");
        return NULL;
    }
    c = json_object_get(o, "keep");
    if (c != NULL && (!json_is_integer(c) || json_integer_value(c) < 1 ||
                      json_integer_value(c) > KW_SECRET_KEEP_MAX)) {
        kws_bad(req, "keep is how many versions to keep: 1 to %d", KW_SECRET_KEEP_MAX);
        return NULL;
    }
    c = json_object_get(o, "cas");
    *cas = c != NULL ? json_integer_value(c) : -1;
    if (text != NULL) {
        len = json_string_length(text);
        if (len > 0 && len <= KW_SECRET_VALUE_MAX &&
            kw_secret_from(&out, json_string_value(text), len) != KW_OK)
            out = NULL;
    } else {
        const char *s = json_string_value(b64);
        size_t slen = json_string_length(b64);
        if (kw_secret_new(&out, slen * 3 / 4 + 3) == KW_OK &&
            (sodium_base642bin(kw_secret_data(out), kw_secret_len(out), s, slen, NULL, &len, NULL,
                               sodium_base64_VARIANT_ORIGINAL) != 0 ||
             len == 0 || len > KW_SECRET_VALUE_MAX)) {
            kw_secret_free(out);
            out = NULL;
        } else if (out != NULL) {
            kw_secret_truncate(out, len);
        }
    }
    if (out == NULL)
        kws_bad(req, "a value is 1 to 64000 bytes (value_base64: standard base64 with padding)");
    return out;
}

static int put_one(h2o_req_t *req, const char *path, const kw_actor *actor)
{
    kws_thread *t = kws_thread_of(req);
    kw_secret *value;
    int64_t cas, version, keep;
    char body[64 + KW_SECRET_PATH_MAX];
    json_t *o;
    kw_rc rc;

    if ((o = kws_body_object(req)) == NULL) {
        sodium_memzero(req->entity.base, req->entity.len);
        return 0;
    }
    value = body_value(req, o, &cas);
    keep = json_integer_value(json_object_get(o, "keep")); /* 0 when absent */
    /* the value's copies outside locked memory, wiped whatever happened:
     * jansson's strings (written over in place) and the request body */
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(o, i ? "value_base64" : "value");
        if (json_is_string(v))
            sodium_memzero((char *)json_string_value(v), json_string_length(v));
    }
    sodium_memzero(req->entity.base, req->entity.len);
    json_decref(o);
    if (value == NULL)
        return 0;
    rc = kw_secrets_put(t->kw, path, value, cas, actor, &version);
    if (rc == KW_ERR_MASTER_KEY && master_reloaded(t))
        rc = kw_secrets_put(t->kw, path, value, cas, actor, &version);
    kw_secret_free(value);
    if (rc == KW_OK && keep > 0)
        rc = kw_secrets_keep(t->kw, path, keep, actor);
    if (rc != KW_OK)
        return send_secrets_rc(req, rc, kw_errmsg(t->kw));
    snprintf(body, sizeof(body), "{\"path\":\"%s\",\"version\":%lld}", path, (long long)version);
    return kws_send_text(req, version == 1 ? 201 : 200, body);
}

/* GET ?history: the versions kept, newest first (never a value). */
static int history(h2o_req_t *req, const char *path)
{
    kws_thread *t = kws_thread_of(req);
    kw_secret_version_info *v = NULL;
    json_t *o, *list;
    size_t n = 0;
    kw_rc rc = kw_secrets_history(t->kw, path, &v, &n);

    if (rc != KW_OK)
        return send_secrets_rc(req, rc, kw_errmsg(t->kw));
    o = json_object();
    list = json_array();
    for (size_t i = 0; i < n; i++) {
        char at[32];
        json_t *e = json_object();
        kw_time_format(at, v[i].created_at);
        json_object_set_new(e, "version", json_integer(v[i].version));
        json_object_set_new(e, "created_at", json_string(at));
        json_object_set_new(e, "destroyed", json_boolean(v[i].destroyed_at != 0));
        json_array_append_new(list, e);
    }
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "versions", list);
    free(v);
    return kws_send_json(req, 200, o);
}

/* DELETE: soft delete; with ?version=N, destroy that version for good. */
static int delete_one(h2o_req_t *req, const char *path, const kw_actor *actor)
{
    kws_thread *t = kws_thread_of(req);
    char body[96 + KW_SECRET_PATH_MAX];
    int64_t v;
    kw_rc rc;

    if (query_version(req, &v) != 0)
        return 0; /* answered */
    rc = v > 0 ? kw_secrets_destroy(t->kw, path, v, actor) : kw_secrets_delete(t->kw, path, actor);
    if (rc != KW_OK)
        return send_secrets_rc(req, rc, kw_errmsg(t->kw));
    if (v > 0)
        snprintf(body, sizeof(body), "{\"path\":\"%s\",\"version\":%lld,\"destroyed\":true}", path,
                 (long long)v);
    else
        snprintf(body, sizeof(body), "{\"path\":\"%s\",\"deleted\":true}", path);
    return kws_send_text(req, 200, body);
}

int kws_secret_item(h2o_req_t *req, const char *path)
{
    kws_thread *t = kws_thread_of(req);
    int read = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")), bad = 0;
    char admin[KW_ID_LEN + 1], client[64], scope[SCOPE_MAX], body[64 + KW_SECRET_PATH_MAX];
    kw_actor actor = {admin, client};
    kw_rc rc;

    scope_of(scope, read ? "read" : "write", path);
    if (!kws_admin(req, scope, admin))
        return 0;
    kws_peer(req, client, sizeof(client));
    if (read)
        return kws_query(req, "history", &bad) != NULL ? history(req, path)
                                                       : get_one(req, path, &actor);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("PUT")))
        return put_one(req, path, &actor);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE")))
        return delete_one(req, path, &actor);
    /* POST ?undelete */
    if (kws_query(req, "undelete", &bad) == NULL)
        return kws_send_error(req, 400, "bad_request", "POST takes ?undelete");
    rc = kw_secrets_undelete(t->kw, path, &actor);
    if (rc != KW_OK)
        return send_secrets_rc(req, rc, kw_errmsg(t->kw));
    snprintf(body, sizeof(body), "{\"path\":\"%s\",\"deleted\":false}", path);
    return kws_send_text(req, 200, body);
}
