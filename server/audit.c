/* GET /v1/audit and the health endpoints. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

int kws_audit(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    kw_audit_filter f = {0};
    kw_audit_record *recs;
    char admin[KW_ID_LEN + 1];
    const char *cursor;
    int64_t next;
    size_t n;
    int badq = 0;
    json_t *arr;
    kw_rc rc;

    if (!kws_admin(req, "audit:read", admin))
        return 0;
    f.action = kws_query(req, "action", &badq);
    f.target = kws_query(req, "target", &badq);
    cursor = kws_query(req, "cursor", &badq);
    if (badq)
        return kws_send_error(req, 400, "bad_request", "malformed query string");
    if (kws_query_limit(req, 1000, &f.limit) != 0)
        return kws_send_error(req, 400, "bad_request", "limit must be 1..1000");
    if (cursor != NULL) {
        char *end;
        long long v = strtoll(cursor, &end, 10);
        if (*cursor == '\0' || *end != '\0' || v < 0)
            return kws_send_error(req, 400, "bad_request", "cursor must be a record number");
        f.after = v;
    }
    rc = kw_audit_list(t->kw, &f, &recs, &n, &next);
    if (rc != KW_OK)
        return kws_send_rc(req, rc, kw_errmsg(t->kw));
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char *j = kw_audit_record_json(&recs[i]);
        json_array_append_new(arr, j ? json_loads(j, 0, NULL) : json_null());
        free(j);
    }
    kw_audit_records_free(recs, n);
    return kws_send_json(req, 200,
                         json_pack("{s:o,s:o}", "records", arr, "next_cursor",
                                   next ? json_integer((json_int_t)next) : json_null()));
}

int kws_healthz(h2o_req_t *req)
{
    return kws_send_text(req, 200, "{\"status\":\"ok\"}");
}

int kws_openapi_doc(h2o_req_t *req)
{
    return kws_send_text(req, 200, kws_openapi);
}

int kws_readyz(h2o_req_t *req)
{
    kws_thread *t = kws_thread_of(req);
    kw_audit_filter f = {.limit = 1};
    kw_audit_record *recs;
    int64_t next;
    size_t n;

    /* A one-row read proves the database answers. */
    if (kw_audit_list(t->kw, &f, &recs, &n, &next) != KW_OK)
        return kws_send_text(req, 503, "{\"status\":\"unavailable\"}");
    kw_audit_records_free(recs, n);
    return kws_send_text(req, 200, "{\"status\":\"ready\"}");
}
