/* The audit trail: an HMAC chain over every change, and its verification. */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_LEN (8 + 32 + 32)
static const char head_label[] = "keyward/audit-head/v1";

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void mac_str(kwi_hmac_stream *st, const char *s)
{
    unsigned char len[8];
    size_t n = strlen(s);

    put_be64(len, n);
    kwi_hmac_update(st, len, sizeof(len));
    kwi_hmac_update(st, s, n);
}

/* mac = HMAC(audit_key, prev || seq || at || len-prefixed fields). */
static void record_mac(unsigned char out[32], const kw_ctx *ctx, const unsigned char prev[32],
                       const kw_audit_record *r)
{
    kwi_hmac_stream st;
    unsigned char num[16];

    kwi_hmac_begin(&st, ctx->audit_pads);
    kwi_hmac_update(&st, prev, 32);
    put_be64(num, (uint64_t)r->seq);
    put_be64(num + 8, (uint64_t)r->at);
    kwi_hmac_update(&st, num, sizeof(num));
    mac_str(&st, r->actor);
    mac_str(&st, r->action);
    mac_str(&st, r->target);
    mac_str(&st, r->client);
    mac_str(&st, r->result);
    mac_str(&st, r->detail);
    kwi_hmac_end(&st, out);
}

static void head_mac(unsigned char out[32], const kw_ctx *ctx, const unsigned char *seq_and_mac)
{
    kwi_hmac_stream st;

    kwi_hmac_begin(&st, ctx->audit_pads);
    kwi_hmac_update(&st, head_label, sizeof(head_label) - 1);
    kwi_hmac_update(&st, seq_and_mac, 40);
    kwi_hmac_end(&st, out);
}

/* Read the head: seq 0 and a zero MAC when the trail is empty. */
static kw_rc head_read(kw_ctx *ctx, int64_t *seq, unsigned char mac[32], int *valid)
{
    unsigned char buf[HEAD_LEN], want[32];
    size_t len = 0;
    kw_rc rc = ctx->store->ops->meta_get(ctx->store, "audit_head", buf, sizeof(buf), &len);

    if (rc == KW_ERR_NOT_FOUND) {
        *seq = 0;
        memset(mac, 0, 32);
        *valid = -1;
        return KW_OK;
    }
    if (rc != KW_OK)
        return rc;
    if (len != HEAD_LEN) {
        *seq = 0;
        memset(mac, 0, 32);
        *valid = 0;
        return KW_OK;
    }
    *seq = (int64_t)get_be64(buf);
    memcpy(mac, buf + 8, 32);
    head_mac(want, ctx, buf);
    *valid = sodium_memcmp(want, buf + 40, 32) == 0;
    return KW_OK;
}

/* Write the head: seq ‖ mac ‖ HMAC(audit_key, label ‖ seq ‖ mac). */
static kw_rc head_write(kw_ctx *ctx, int64_t seq, const unsigned char mac[32])
{
    unsigned char head[HEAD_LEN];

    put_be64(head, (uint64_t)seq);
    memcpy(head + 8, mac, 32);
    head_mac(head + 40, ctx, head);
    return ctx->store->ops->meta_set(ctx->store, "audit_head", head, sizeof(head));
}

kw_rc kwi_audit_last_seq(kw_ctx *ctx, int64_t *seq)
{
    unsigned char mac[32];
    int valid;
    kw_rc rc = head_read(ctx, seq, mac, &valid);

    if (rc != KW_OK)
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    return rc;
}

kw_rc kwi_audit_genesis(kw_ctx *ctx)
{
    static const unsigned char zero[32];

    return head_write(ctx, 0, zero);
}

kw_rc kwi_audit_batch_begin(kw_ctx *ctx, kwi_audit_batch *b)
{
    int valid;
    kw_rc rc = head_read(ctx, &b->seq, b->mac, &valid);

    if (rc != KW_OK)
        kwi_seterr(ctx, "audit: %s", ctx->store->errmsg);
    return rc;
}

kw_rc kwi_audit_batch_add(kw_ctx *ctx, kwi_audit_batch *b, const kw_actor *actor,
                          const char *action, const char *target, const char *result,
                          const char *detail)
{
    kw_audit_row row;
    kw_rc rc;

    memset(&row, 0, sizeof(row));
    row.r.seq = b->seq + 1;
    row.r.at = kw_now();
    row.r.actor = (char *)(actor && actor->id ? actor->id : "unknown");
    row.r.client = (char *)(actor && actor->client ? actor->client : "unknown");
    row.r.action = (char *)action;
    row.r.target = (char *)(target ? target : "");
    row.r.result = (char *)(result ? result : "ok");
    row.r.detail = (char *)(detail ? detail : "{}");
    record_mac(row.mac, ctx, b->mac, &row.r);

    rc = ctx->store->ops->audit_append(ctx->store, &row);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "audit record not written (change refused): %s", ctx->store->errmsg);
        return rc;
    }
    b->seq = row.r.seq;
    memcpy(b->mac, row.mac, sizeof(b->mac));
    return KW_OK;
}

kw_rc kwi_audit_batch_end(kw_ctx *ctx, const kwi_audit_batch *b)
{
    kw_rc rc = head_write(ctx, b->seq, b->mac);

    if (rc != KW_OK)
        kwi_seterr(ctx, "audit record not written (change refused): %s", ctx->store->errmsg);
    return rc;
}

kw_rc kwi_audit_append(kw_ctx *ctx, const kw_actor *actor, const char *action, const char *target,
                       const char *result, const char *detail)
{
    kwi_audit_batch b;
    kw_rc rc = kwi_audit_batch_begin(ctx, &b);

    if (rc == KW_OK)
        rc = kwi_audit_batch_add(ctx, &b, actor, action, target, result, detail);
    if (rc == KW_OK)
        rc = kwi_audit_batch_end(ctx, &b);
    return rc;
}

KW_API kw_rc kw_audit_append(kw_ctx *ctx, const kw_actor *actor, const char *action,
                             const char *target, const char *result, const char *detail)
{
    json_t *j = detail ? json_loads(detail, 0, NULL) : NULL;
    int ok = detail == NULL || json_is_object(j);
    kw_rc rc;

    json_decref(j);
    if (!ok || action == NULL || action[0] == '\0') {
        kwi_seterr(ctx, "an audit record needs an action and a JSON object detail");
        return KW_ERR_INVALID;
    }
    rc = ctx->store->ops->begin(ctx->store);
    if (rc == KW_OK)
        rc = kwi_audit_append(ctx, actor, action, target, result, detail);
    return kwi_finish(ctx, rc);
}

void kwi_audit_record_clear(kw_audit_record *r)
{
    free(r->actor);
    free(r->action);
    free(r->target);
    free(r->client);
    free(r->result);
    free(r->detail);
    memset(r, 0, sizeof(*r));
}

void kwi_audit_rows_free(kw_audit_row *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kwi_audit_record_clear(&rows[i].r);
    free(rows);
}

KW_API void kw_audit_records_free(kw_audit_record *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kwi_audit_record_clear(&r[i]);
    free(r);
}

static kw_rc check_filter(kw_ctx *ctx, kw_audit_filter *q)
{
    if (q->limit == 0)
        q->limit = 100;
    if (q->limit > 1000 || q->after < 0) {
        kwi_seterr(ctx, "limit must be 1..1000 and the cursor not negative");
        return KW_ERR_INVALID;
    }
    return KW_OK;
}

KW_API kw_rc kw_audit_list(kw_ctx *ctx, const kw_audit_filter *f, kw_audit_record **out, size_t *n,
                           int64_t *next)
{
    kw_audit_filter q = {0};
    kw_audit_record *recs;
    kw_audit_row *rows;
    size_t count, total;
    kw_rc rc;

    if (f != NULL)
        q = *f;
    rc = check_filter(ctx, &q);
    if (rc != KW_OK)
        return rc;
    q.limit++;
    rc = ctx->store->ops->audit_list(ctx->store, &q, &rows, &total);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
        return rc;
    }
    count = total;
    *next = 0;
    if (total == q.limit) {
        count = total - 1;
        *next = rows[count - 1].r.seq;
    }
    recs = calloc(count + 1, sizeof(*recs));
    if (recs == NULL) {
        kwi_audit_rows_free(rows, total);
        return KW_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        recs[i] = rows[i].r;
        memset(&rows[i].r, 0, sizeof(rows[i].r));
    }
    kwi_audit_rows_free(rows, total);
    *out = recs;
    *n = count;
    return KW_OK;
}

KW_API char *kw_audit_record_json(const kw_audit_record *r)
{
    char at[32];
    json_t *detail = json_loads(r->detail, 0, NULL);
    json_t *o;
    char *out;

    kwi_time_format(at, r->at);
    o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "seq", (json_int_t)r->seq, "at", at, "actor",
                  r->actor, "action", r->action, "target", r->target, "client", r->client, "result",
                  r->result, "detail", detail ? detail : json_object());
    if (o == NULL)
        return NULL;
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return out;
}

static kw_rc tampered(kw_audit_report *rep, int64_t seq, const char *why)
{
    rep->bad_seq = seq;
    kwi_strlcpy(rep->reason, why, sizeof(rep->reason));
    return KW_ERR_TAMPERED;
}

KW_API kw_rc kw_audit_verify(kw_ctx *ctx, kw_audit_report *rep)
{
    unsigned char prev[32] = {0}, head[32];
    kw_audit_filter q = {.after = 0, .limit = 500};
    int64_t expect = 1, head_seq;
    int valid;
    kw_rc rc;

    memset(rep, 0, sizeof(*rep));
    for (;;) {
        kw_audit_row *rows;
        size_t n;

        rc = ctx->store->ops->audit_list(ctx->store, &q, &rows, &n);
        if (rc != KW_OK) {
            kwi_seterr(ctx, "%s", ctx->store->errmsg);
            return rc;
        }
        for (size_t i = 0; i < n && rc == KW_OK; i++) {
            unsigned char mac[32];
            if (rows[i].r.seq != expect) {
                rc = tampered(rep, expect,
                              rows[i].r.seq > expect ? "record missing (sequence gap)"
                                                     : "record out of order");
                break;
            }
            record_mac(mac, ctx, prev, &rows[i].r);
            if (sodium_memcmp(mac, rows[i].mac, 32) != 0) {
                rc = tampered(rep, expect, "record altered, inserted or reordered (MAC mismatch)");
                break;
            }
            memcpy(prev, mac, 32);
            rep->checked++;
            expect++;
        }
        if (n > 0)
            q.after = rows[n - 1].r.seq;
        kwi_audit_rows_free(rows, n);
        if (rc != KW_OK)
            return rc;
        if (n < q.limit)
            break;
    }
    rc = head_read(ctx, &head_seq, head, &valid);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
        return rc;
    }
    memcpy(rep->head_mac, prev, 32);
    /* Every database has a head from its creation on: none means wiped. */
    if (valid != 1)
        return tampered(rep, expect, "audit head missing or altered");
    if (head_seq != expect - 1 || sodium_memcmp(head, prev, 32) != 0)
        return tampered(rep, expect,
                        head_seq > expect - 1 ? "records missing at the end (truncated)"
                                              : "head does not match the last record");
    return KW_OK;
}
