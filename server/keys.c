/* /v1/keys: create, list, read, update, rotate, revoke. */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define SCOPES_CAP KW_SCOPES_MAX

/* What a body sets, with the storage its strings point into. */
typedef struct body_params {
    kw_key_change c;
    const char *scopes[SCOPES_CAP];
    char *meta; /* owned */
} body_params;

static int ratelimit_field(h2o_req_t *req, json_t *v, kw_key_params *p)
{
    json_t *limit, *window;

    if (json_is_null(v)) {
        p->rate_limit = p->rate_window_ms = 0;
        return 0;
    }
    limit = json_object_get(v, "limit");
    window = json_object_get(v, "window_ms");
    if (!json_is_object(v) || json_object_size(v) != 2 || !json_is_integer(limit) ||
        !json_is_integer(window) || json_integer_value(limit) < 1 ||
        json_integer_value(limit) > 1000000000 || json_integer_value(window) < 1000 ||
        json_integer_value(window) > 30LL * 86400 * 1000)
        return kws_bad(req,
                       "%s must be {\"limit\": 1..1e9, \"window_ms\": 1000..2592000000} or null",
                       "ratelimit");
    p->rate_limit = (uint32_t)json_integer_value(limit);
    p->rate_window_ms = (uint32_t)json_integer_value(window);
    return 0;
}

static int scopes_field(h2o_req_t *req, json_t *v, body_params *bp)
{
    size_t i;
    json_t *s;

    if (!json_is_array(v) || json_array_size(v) > SCOPES_CAP)
        return kws_bad(req, "%s must be an array of at most 64 strings", "scopes");
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return kws_bad(req, "%s must be an array of at most 64 strings", "scopes");
        bp->scopes[i] = json_string_value(s);
    }
    bp->c.p.scopes = bp->scopes;
    bp->c.p.nscopes = json_array_size(v);
    return 0;
}

/* One field of a create (create=1) or update body. */
static int body_field(h2o_req_t *req, const char *k, json_t *v, body_params *bp, int create)
{
    kw_key_params *p = &bp->c.p;

    if (strcmp(k, "owner") == 0 || strcmp(k, "name") == 0 || (create && !strcmp(k, "prefix"))) {
        if (!json_is_string(v))
            return kws_bad(req, "%s must be a string", k);
        if (k[0] == 'o')
            p->owner = json_string_value(v), bp->c.fields |= KW_CHANGE_OWNER;
        else if (k[0] == 'n')
            p->name = json_string_value(v), bp->c.fields |= KW_CHANGE_NAME;
        else
            p->prefix = json_string_value(v);
        return 0;
    }
    if (strcmp(k, "scopes") == 0) {
        bp->c.fields |= KW_CHANGE_SCOPES;
        return scopes_field(req, v, bp);
    }
    if (strcmp(k, "meta") == 0) {
        if (!json_is_object(v))
            return kws_bad(req, "%s must be a JSON object", k);
        bp->meta = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        p->meta = bp->meta;
        bp->c.fields |= KW_CHANGE_META;
        return bp->meta ? 0 : kws_bad(req, "%s could not be stored", k);
    }
    if (strcmp(k, "expires_at") == 0) {
        bp->c.fields |= KW_CHANGE_EXPIRES;
        return kws_json_time(req, k, v, &p->expires_at);
    }
    if (strcmp(k, "not_before") == 0) {
        bp->c.fields |= KW_CHANGE_NOT_BEFORE;
        return kws_json_time(req, k, v, &p->not_before);
    }
    if (strcmp(k, "credits") == 0) {
        bp->c.fields |= KW_CHANGE_CREDITS;
        if (json_is_null(v)) {
            p->credits = KW_CREDITS_UNLIMITED;
            return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1LL << 53))
            return kws_bad(req, "%s must be a whole number from 0 to 2^53, or null", k);
        p->credits = json_integer_value(v);
        return 0;
    }
    if (strcmp(k, "ratelimit") == 0) {
        bp->c.fields |= KW_CHANGE_RATE;
        return ratelimit_field(req, v, p);
    }
    if (!create && strcmp(k, "enabled") == 0) {
        if (!json_is_boolean(v))
            return kws_bad(req, "%s must be true or false", k);
        bp->c.enabled = json_is_true(v);
        bp->c.fields |= KW_CHANGE_ENABLED;
        return 0;
    }
    return kws_bad(req, "unknown field \"%.64s\"", k);
}

static int body_params_read(h2o_req_t *req, json_t *o, body_params *bp, int create)
{
    const char *k;
    json_t *v;

    memset(bp, 0, sizeof(*bp));
    kw_key_params_init(&bp->c.p);
    json_object_foreach(o, k, v)
    {
        if (body_field(req, k, v, bp, create) != 0)
            return -1;
    }
    return 0;
}

/* 201 with the record and "key" first. */
int kws_send_new_key(h2o_req_t *req, const kw_secret *key, const kw_key_record *rec)
{
    char *j = kw_key_record_json(rec);
    size_t klen = kw_secret_len(key), jlen;
    char *body;

    if (j == NULL)
        return kws_send_error(req, 500, "internal", "out of memory");
    jlen = strlen(j);
    body = h2o_mem_alloc_pool(&req->pool, klen + jlen + 16);
    memcpy(body, "{\"key\":\"", 8);
    memcpy(body + 8, kw_secret_cdata(key), klen);
    memcpy(body + 8 + klen, "\",", 2);
    memcpy(body + 10 + klen, j + 1, jlen); /* j + 1 skips '{', copies the NUL */
    free(j);
    kws_send_text(req, 201, body);
    /* kws_send_text copied it into the response; wipe this copy. */
    sodium_memzero(body, klen + 10);
    return 0;
}

static kw_actor actor_of(h2o_req_t *req, const char *id, char *client, size_t cap)
{
    kw_actor a = {id, client};

    kws_peer(req, client, cap);
    return a;
}

/* Parsed and checked here; created by the committer (create.c), with
 * whatever other creations are waiting, in one durable commit. */
static int create(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1];
    kws_new_key *j;
    body_params bp;
    json_t *o;

    if (!kws_admin(req, "keys:create", admin))
        return 0;
    if ((o = kws_body_object(req)) == NULL)
        return 0;
    if (body_params_read(req, o, &bp, 1) != 0) /* answered */
        goto out;
    if (kw_key_params_check(t->kw, &bp.c.p) != KW_OK) {
        kws_send_rc(req, KW_ERR_INVALID, kw_errmsg(t->kw));
        goto out;
    }
    if ((j = kws_new_key_get(t)) == NULL) {
        kws_send_error(req, 500, "internal", "out of memory");
        goto out;
    }
    j->p = bp.c.p;
    memcpy(j->scopes, bp.scopes, sizeof(j->scopes));
    j->p.scopes = j->scopes;
    j->meta = bp.meta; /* p.meta points at it, or is NULL */
    j->body = o;       /* the other strings point into it */
    memcpy(j->admin, admin, sizeof(j->admin));
    kws_peer(req, j->client, sizeof(j->client));
    return kws_create_submit(req, j);
out:
    free(bp.meta);
    json_decref(o);
    return 0;
}

static int list(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1], next[KW_ID_LEN + 1];
    kw_key_filter f = {0};
    kw_key_record *recs;
    size_t n;
    int badq = 0;
    json_t *arr, *out;
    kw_rc rc;

    if (!kws_admin(req, "keys:read", admin))
        return 0;
    f.owner = kws_query(req, "owner", &badq);
    f.prefix = kws_query(req, "prefix", &badq);
    f.after = kws_query(req, "cursor", &badq);
    if (badq)
        return kws_send_error(req, 400, "bad_request", "malformed query string");
    if (kws_query_limit(req, KW_LIST_MAX, &f.limit) != 0)
        return kws_send_error(req, 400, "bad_request", "limit must be 1..1000");
    rc = kw_key_list(t->kw, &f, &recs, &n, next);
    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char *j = kw_key_record_json(&recs[i]);
        json_array_append_new(arr, j ? json_loads(j, 0, NULL) : json_null());
        free(j);
    }
    kw_key_records_free(recs, n);
    out = json_pack("{s:o,s:o}", "keys", arr, "next_cursor",
                    next[0] ? json_string(next) : json_null());
    return kws_send_json(req, 200, out);
}

int kws_keys_collection(h2o_req_t *req)
{
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")))
        return create(req);
    return list(req);
}

static int send_record(h2o_req_t *req, int status, const kw_key_record *rec)
{
    char *j = kw_key_record_json(rec);

    if (j == NULL)
        return kws_send_error(req, 500, "internal", "out of memory");
    kws_send_text(req, status, j);
    free(j);
    return 0;
}

int kws_keys_item(h2o_req_t *req, const char *id)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1], client[64];
    kw_key_record rec = {0};
    const char *m = req->method.base;
    size_t ml = req->method.len;
    kw_actor a;
    kw_rc rc;

    if (h2o_memis(m, ml, H2O_STRLIT("GET"))) {
        if (!kws_admin(req, "keys:read", admin))
            return 0;
        /* From memory: credits and last use as of now, not of the last sync. */
        rc = kw_index_get(t->index, id, &rec);
        if (rc == KW_ERR_NOT_FOUND)
            rc = kw_key_get(t->kw, id, &rec);
    } else if (h2o_memis(m, ml, H2O_STRLIT("DELETE"))) {
        if (!kws_admin(req, "keys:revoke", admin))
            return 0;
        a = actor_of(req, admin, client, sizeof(client));
        if ((rc = kw_index_change_begin(t->index, t->kw, id)) == KW_OK) {
            rc = kw_key_revoke(t->kw, id, &a, &rec);
            kws_change_end(req, id, NULL);
        }
    } else {
        body_params bp;
        json_t *o;
        if (!kws_admin(req, "keys:update", admin))
            return 0;
        if ((o = kws_body_object(req)) == NULL)
            return 0;
        if (body_params_read(req, o, &bp, 0) != 0) {
            free(bp.meta);
            json_decref(o);
            return 0;
        }
        a = actor_of(req, admin, client, sizeof(client));
        if ((rc = kw_index_change_begin(t->index, t->kw, id)) == KW_OK) {
            rc = kw_key_update(t->kw, id, &bp.c, &a, &rec);
            kws_change_end(req, id, NULL);
        }
        free(bp.meta);
        json_decref(o);
    }
    if (rc == KW_OK)
        send_record(req, 200, &rec);
    else
        kws_send_rc(req, rc, kw_errmsg(t->kw));
    kw_key_record_clear(&rec);
    return 0;
}

int kws_keys_rotate(h2o_req_t *req, const char *id)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1], client[64];
    kw_key_record rec = {0};
    kw_secret *key = NULL;
    int64_t grace = 86400;
    kw_actor a;
    json_t *o = NULL, *g;
    kw_rc rc;

    if (!kws_admin(req, "keys:update", admin))
        return 0;
    if (req->entity.len > 0) {
        const char *k;
        json_t *v;
        if ((o = kws_body_object(req)) == NULL)
            return 0;
        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "grace_seconds") != 0) {
                kws_bad(req, "unknown field \"%.64s\"", k); /* k lives in o: answer first */
                json_decref(o);
                return 0;
            }
        }
        g = json_object_get(o, "grace_seconds");
        if (g != NULL && (!json_is_integer(g) || json_integer_value(g) < 0 ||
                          json_integer_value(g) > 365LL * 86400)) {
            json_decref(o);
            return kws_bad(req, "%s must be a whole number of seconds, 0 to 365 days",
                           "grace_seconds"),
                   0;
        }
        if (g != NULL)
            grace = json_integer_value(g);
        json_decref(o);
    }
    a = actor_of(req, admin, client, sizeof(client));
    if ((rc = kw_index_change_begin(t->index, t->kw, id)) == KW_OK) {
        rc = kw_key_rotate(t->kw, id, grace, &a, &key, &rec);
        kws_change_end(req, id, rc == KW_OK ? rec.id : NULL);
    }
    if (rc == KW_OK)
        kws_send_new_key(req, key, &rec);
    else
        kws_send_rc(req, rc, kw_errmsg(t->kw));
    kw_secret_free(key);
    kw_key_record_clear(&rec);
    return 0;
}

/* A time query parameter (RFC 3339), or def when absent; -1 if malformed. */
static int time_param(h2o_req_t *req, const char *name, int64_t def, int64_t *out)
{
    int badq = 0;
    const char *v = kws_query(req, name, &badq);

    if (badq)
        return -1;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    return kw_time_parse(v, out);
}

int kws_keys_usage(h2o_req_t *req, const char *id)
{
    kws_thread *t = kws_thread_of(req);
    char admin[KW_ID_LEN + 1], start[32];
    kw_key_record rec = {0};
    kw_usage_bucket *b;
    int64_t to, from, gran = KW_USAGE_HOUR;
    const char *g;
    int badq = 0;
    size_t n;
    json_t *arr;
    kw_rc rc;

    if (!kws_admin(req, "keys:read", admin))
        return 0;
    g = kws_query(req, "granularity", &badq);
    if (badq || (g != NULL && strcmp(g, "hour") != 0 && strcmp(g, "day") != 0))
        return kws_send_error(req, 400, "bad_request", "granularity is hour or day");
    if (g != NULL && strcmp(g, "day") == 0)
        gran = KW_USAGE_DAY;
    if (time_param(req, "to", kw_now() + 1, &to) != 0 ||
        time_param(req, "from", to - (gran == KW_USAGE_DAY ? 30 : 1) * 86400, &from) != 0)
        return kws_send_error(req, 400, "bad_request", "from and to are RFC 3339 times");
    rc = kw_index_get(t->index, id, &rec);
    if (rc == KW_ERR_NOT_FOUND)
        rc = kw_key_get(t->kw, id, &rec);
    kw_key_record_clear(&rec);
    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    rc = kw_usage_get(t->kw, id, from, to, gran, &b, &n);
    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_object();
        for (int k = 0; k < KW_VERDICT_COUNT; k++)
            if (b[i].counts[k])
                json_object_set_new(c, kw_verdict_name((kw_verdict)k),
                                    json_integer((json_int_t)b[i].counts[k]));
        kw_time_format(start, b[i].start);
        json_array_append_new(arr, json_pack("{s:s,s:o}", "start", start, "counts", c));
    }
    free(b);
    return kws_send_json(req, 200,
                         json_pack("{s:s,s:s,s:o}", "id", id, "granularity",
                                   gran == KW_USAGE_DAY ? "day" : "hour", "buckets", arr));
}
