/* Usage monitoring: hourly counts per key and result code. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define HOURS_MAX 744
#define DAYS_MAX 400

int64_t kwi_usage_bucket(int64_t t)
{
    return t - t % KW_USAGE_HOUR;
}

KW_API kw_rc kw_usage_get(kw_ctx *ctx, const char *id, int64_t from, int64_t to,
                          int64_t granularity, kw_usage_bucket **out, size_t *n)
{
    kw_usage_bucket *b = NULL;
    kw_usage_row *rows;
    size_t nrows, count = 0;
    kw_rc rc;

    if (!kw_key_id_valid(id) || from < 0 || to <= from ||
        (granularity != KW_USAGE_HOUR && granularity != KW_USAGE_DAY) ||
        to - from > (granularity == KW_USAGE_HOUR ? HOURS_MAX * 3600LL : DAYS_MAX * 86400LL)) {
        kwi_seterr(ctx, "usage takes a key id, from < to, hour (at most 744) or day (at most "
                        "400) buckets");
        return KW_ERR_INVALID;
    }
    from -= from % granularity;
    rc = ctx->store->ops->usage_list(ctx->store, id, from, to, &rows, &nrows);
    if (rc != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
        return rc;
    }
    for (size_t i = 0; i < nrows; i++) {
        int64_t start = rows[i].bucket - rows[i].bucket % granularity;
        if (rows[i].code < 0 || rows[i].code >= KW_VERDICT_COUNT)
            continue;
        if (count == 0 || b[count - 1].start != start) {
            kw_usage_bucket *g = realloc(b, (count + 1) * sizeof(*b));
            if (g == NULL) {
                free(b);
                free(rows);
                return KW_ERR_NOMEM;
            }
            b = g;
            memset(&b[count], 0, sizeof(b[count]));
            b[count++].start = start;
        }
        b[count - 1].counts[rows[i].code] += (uint64_t)rows[i].count;
    }
    free(rows);
    *out = b;
    *n = count;
    return KW_OK;
}
