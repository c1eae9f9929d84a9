/*
 * keyward — usage monitoring (seed 000, "Monitor and Audit Usage").
 *
 * Every verification of a known key is counted by result code in hourly
 * buckets (UTC). Verifications that identify no key (MALFORMED, NOT_FOUND)
 * are not attributable and are counted only in the server's metrics.
 */
#ifndef KEYWARD_USAGE_H
#define KEYWARD_USAGE_H

#include <keyward/verify.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_USAGE_HOUR 3600
#define KW_USAGE_DAY 86400
#define KW_VERDICT_COUNT 10

typedef struct kw_usage_bucket {
    int64_t start;                     /**< Unix time the bucket starts */
    uint64_t counts[KW_VERDICT_COUNT]; /**< by kw_verdict */
} kw_usage_bucket;

/**
 * Usage of key `id` in [from, to), per hour or per day (granularity
 * KW_USAGE_HOUR or KW_USAGE_DAY); only buckets with any count.
 * A range holds at most 744 hours or 400 days.
 * @param out receives an array of *n buckets (free()), in time order.
 * @return KW_OK, KW_ERR_INVALID, KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_usage_get(kw_ctx *ctx, const char *id, int64_t from, int64_t to,
                          int64_t granularity, kw_usage_bucket **out, size_t *n) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
