/*
 * keyward — the audit trail.
 *
 * One record per change, written in the change's transaction. Each record
 * carries mac = HMAC-SHA-256(audit_key, prev_mac || record), audit_key being
 * derived from the pepper; a head record (also MACed) names the last one.
 * kw_audit_verify finds edited, deleted, inserted and reordered records, and
 * a truncated tail. Never holds a key or secret value.
 */
#ifndef KEYWARD_AUDIT_H
#define KEYWARD_AUDIT_H

#include <keyward/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_audit_record {
    int64_t seq;
    int64_t at; /**< Unix seconds */
    char *actor;
    char *action; /**< "key.create", "key.update", "key.rotate", ... */
    char *target;
    char *client;
    char *result; /**< "ok" or a reason */
    char *detail; /**< JSON object */
} kw_audit_record;

typedef struct kw_audit_filter {
    int64_t after;      /**< cursor: seq strictly greater; 0: from the start */
    size_t limit;       /**< 1..1000; 0: 100 */
    const char *action; /**< NULL: any */
    const char *target; /**< NULL: any */
} kw_audit_filter;

/**
 * Append one record in its own transaction (for events that are not a
 * change made through the library, e.g. a refused admin call).
 * @param detail a JSON object text, or NULL for {}.
 * @return KW_OK, KW_ERR_INVALID (bad detail), KW_ERR_STORAGE, ...
 */
KW_API kw_rc kw_audit_append(kw_ctx *ctx, const kw_actor *actor, const char *action,
                             const char *target, const char *result,
                             const char *detail) KW_WARN_UNUSED;

/** @param next receives the next cursor, 0 when this page is the last. */
KW_API kw_rc kw_audit_list(kw_ctx *ctx, const kw_audit_filter *f, kw_audit_record **out, size_t *n,
                           int64_t *next) KW_WARN_UNUSED;

KW_API void kw_audit_records_free(kw_audit_record *r, size_t n);

/** The record as a JSON object. malloc'd, owned by the caller; NULL on OOM. */
KW_API char *kw_audit_record_json(const kw_audit_record *r);

typedef struct kw_audit_report {
    int64_t checked;            /**< records whose MAC was checked */
    int64_t bad_seq;            /**< first record found wrong; 0 if none */
    char reason[128];           /**< why, when KW_ERR_TAMPERED */
    unsigned char head_mac[32]; /**< MAC of the last record, for anchoring */
} kw_audit_report;

/**
 * Walk the whole chain.
 * @return KW_OK if intact, KW_ERR_TAMPERED (report says where and why),
 *         KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_audit_verify(kw_ctx *ctx, kw_audit_report *report) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
