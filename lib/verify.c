/*
 * Verification: format -> lookup and constant-time compare -> revoked ->
 * disabled -> expired / not yet valid -> scopes -> rate limit -> credits.
 */
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEGACY_MIN 8
#define LEGACY_MAX 256
#define CREDIT_HOPS 8

static const char *const verdict_names[] = {
    "VALID",   "MALFORMED",     "NOT_FOUND",          "REVOKED",      "DISABLED",
    "EXPIRED", "NOT_YET_VALID", "INSUFFICIENT_SCOPE", "RATE_LIMITED", "USAGE_EXCEEDED",
};

KW_API const char *kw_verdict_name(kw_verdict v)
{
    if ((unsigned)v >= sizeof(verdict_names) / sizeof(verdict_names[0]))
        return "UNKNOWN";
    return verdict_names[v];
}

/* The verify answer is written by hand (kwi_jw): it is on the path of every
 * POST /v1/keys/verify, and building it with jansson (meta parsed, then
 * everything serialised again) cost more than the verification. The output
 * is what jansson's compact form would be. */
KW_API char *kw_verify_result_json(const kw_verify_result *r)
{
    const kw_key_record *k = &r->key;
    /* Stored meta is compact JSON written by jansson; anything else shows as {}. */
    const char *meta = r->found && k->meta != NULL && k->meta[0] == '{' ? k->meta : "{}";
    size_t cap = 320 + strlen(meta), i;
    kwi_jw w;

    if (r->found) {
        cap += 6 * (strlen(k->id) + strlen(k->owner)) + 2;
        for (i = 0; i < k->nscopes; i++)
            cap += 6 * strlen(k->scopes[i]) + 3;
    }
    kwi_jw_init(&w, cap); /* room for it all: no copy on the way */
    kwi_jw_lit(&w, r->code == KW_VALID ? "{\"valid\":true,\"code\":\""
                                       : "{\"valid\":false,\"code\":\"");
    kwi_jw_lit(&w, kw_verdict_name(r->code));
    kwi_jw_lit(&w, "\",\"id\":");
    if (!r->found) {
        kwi_jw_lit(&w, "null,\"owner\":null,\"scopes\":null,\"meta\":null,\"expires_at\":null");
    } else {
        kwi_jw_str(&w, k->id);
        kwi_jw_lit(&w, ",\"owner\":");
        kwi_jw_str(&w, k->owner);
        kwi_jw_lit(&w, ",\"scopes\":");
        kwi_jw_strv(&w, (const char *const *)k->scopes, k->nscopes);
        kwi_jw_lit(&w, ",\"meta\":");
        kwi_jw_lit(&w, meta);
        kwi_jw_lit(&w, ",\"expires_at\":");
        kwi_jw_time(&w, k->expires_at);
    }
    kwi_jw_lit(&w, ",\"remaining\":");
    if (!r->found || r->remaining == KW_CREDITS_UNLIMITED)
        kwi_jw_lit(&w, "null");
    else
        kwi_jw_int(&w, (long long)r->remaining);
    kwi_jw_lit(&w, ",\"ratelimit\":");
    if (r->found && r->rl_limit) {
        kwi_jw_lit(&w, "{\"limit\":");
        kwi_jw_int(&w, (long long)r->rl_limit);
        kwi_jw_lit(&w, ",\"remaining\":");
        kwi_jw_int(&w, (long long)r->rl_remaining);
        kwi_jw_lit(&w, ",\"reset_ms\":");
        kwi_jw_int(&w, (long long)r->rl_reset_ms);
        kwi_jw_raw(&w, "}", 1);
    } else {
        kwi_jw_lit(&w, "null");
    }
    kwi_jw_raw(&w, "}", 1);
    return kwi_jw_finish(&w);
}

KW_API void kw_verify_result_clear(kw_verify_result *r)
{
    if (r == NULL)
        return;
    if (r->ref_ != NULL)
        kwi_index_ref_release(r->ref_);
    else
        kw_key_record_clear(&r->key);
    memset(r, 0, sizeof(*r));
}

/* Could this be a key issued by another system (seed import)? Printable
 * ASCII without spaces, of a plausible length, and not shaped like one of
 * ours: a mistyped keyward key stays MALFORMED without a lookup. */
static int legacy_shape(const char *key, size_t len)
{
    if (len < LEGACY_MIN || len > LEGACY_MAX)
        return 0;
    if (len >= KW_BODY_LEN + 2 && len <= KW_KEY_MAX && key[len - KW_BODY_LEN - 1] == '_')
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
            return 0;
    return 1;
}

/*
 * Sliding-window counter: the previous window's count, weighted by how much
 * of it still overlaps the sliding window, plus the current window's count.
 * Returns 1 if one more request is allowed (and counts it).
 */
static int rate_allow(const kw_key_record *r, kwi_rl *row, int64_t now_ms, kw_verify_result *out)
{
    const int64_t w = r->rate_window_ms, limit = r->rate_limit;
    int64_t elapsed, used;

    /* A time a little before the window's start is a thread that read the
     * clock before another one took the key's lock: it counts in this
     * window. Only a step back of a whole window (the clock was set back)
     * starts afresh; reset, a late reader would let the limit be passed. */
    if (row->start_ms != 0 && now_ms < row->start_ms && row->start_ms - now_ms < w)
        now_ms = row->start_ms;
    if (row->start_ms == 0 || now_ms < row->start_ms) {
        row->start_ms = now_ms;
        row->count = row->prev = 0;
    } else if (now_ms - row->start_ms >= w) {
        int64_t windows = (now_ms - row->start_ms) / w;
        row->prev = windows == 1 ? row->count : 0;
        row->count = 0;
        row->start_ms += windows * w;
    }
    elapsed = now_ms - row->start_ms;
    /* ceil(prev * (w - elapsed) / w): the estimate never under-counts. */
    used = (row->prev * (w - elapsed) + w - 1) / w + row->count;
    out->rl_limit = (uint32_t)limit;
    if (used + 1 > limit) {
        int64_t wait = row->start_ms + w - now_ms;
        if (row->count + 1 <= limit && row->prev > 0) {
            /* Wait until enough of the previous window has slid out. */
            int64_t need = w - ((limit - row->count - 1) * w) / row->prev;
            if (need - elapsed < wait)
                wait = need - elapsed;
        }
        out->rl_remaining = 0;
        out->rl_reset_ms = wait > 0 ? wait : 1;
        return 0;
    }
    row->count++;
    out->rl_remaining = (uint32_t)(limit - used - 1);
    out->rl_reset_ms = row->start_ms + w - now_ms;
    return 1;
}

/* Spend credits from the key that holds them (its own, or the successor's
 * after a rotation). */
static kw_rc spend(kw_ctx *ctx, const kw_key_row *row, int64_t cost, int64_t *remaining)
{
    char pool[KW_ID_LEN + 1];
    kw_rc rc;

    kwi_strlcpy(pool, row->credits_from[0] ? row->credits_from : row->rec.id, sizeof(pool));
    for (int hop = 0; hop < CREDIT_HOPS; hop++) {
        kw_key_row next;
        rc = ctx->store->ops->key_get(ctx->store, pool, &next);
        if (rc != KW_OK)
            return rc;
        if (next.credits_from[0] == '\0') {
            kwi_key_row_clear(&next);
            return ctx->store->ops->key_spend(ctx->store, pool, cost, remaining);
        }
        kwi_strlcpy(pool, next.credits_from, sizeof(pool));
        kwi_key_row_clear(&next);
    }
    kwi_seterr(ctx, "credit chain of key %s is too long", row->rec.id);
    return KW_ERR_STORAGE;
}

kw_verdict kwi_decide(const kw_key_record *r, kwi_rl *rl, int64_t now_ms,
                      const kw_verify_request *req, kw_verify_result *out)
{
    const int64_t now = now_ms / 1000;

    if (r->revoked_at != 0)
        return KW_REVOKED;
    if (!r->enabled)
        return KW_DISABLED;
    if (r->expires_at != 0 && now >= r->expires_at)
        return KW_EXPIRED;
    if (r->not_before != 0 && now < r->not_before)
        return KW_NOT_YET_VALID;
    if (!kw_scopes_cover((const char *const *)r->scopes, r->nscopes, req->scopes, req->nscopes))
        return KW_INSUFFICIENT_SCOPE;
    if (r->rate_limit != 0 && !rate_allow(r, rl, now_ms, out))
        return KW_RATE_LIMITED;
    return KW_VALID;
}

/* The checks after the key matched. Writes what changed; caller commits. */
static kw_rc decide(kw_ctx *ctx, kw_key_row *row, const kw_verify_request *req,
                    kw_verify_result *out, int *changed)
{
    const int64_t now_ms = kwi_now_ms();
    kw_rc rc;

    out->remaining = row->rec.credits;
    kwi_rl rl = {row->rl_start_ms, row->rl_count, row->rl_prev};

    out->code = kwi_decide(&row->rec, &rl, now_ms, req, out);
    row->rl_start_ms = rl.start_ms;
    row->rl_count = rl.count;
    row->rl_prev = rl.prev;
    if (out->code != KW_VALID)
        return KW_OK;
    if (row->rec.rate_limit != 0)
        *changed = 1;
    rc = spend(ctx, row, req->cost ? req->cost : 1, &out->remaining);
    if (rc == KW_ERR_CONFLICT) {
        out->code = KW_USAGE_EXCEEDED;
        return KW_OK;
    }
    if (rc != KW_OK)
        return rc;
    row->rec.last_used_at = now_ms / 1000;
    *changed = 1;
    return KW_OK;
}

/* Seed keys still under SHA-256 move to the peppered hash on first use. */
static kw_rc upgrade_legacy(kw_ctx *ctx, kw_key_row *row, const unsigned char hash[32])
{
    kw_rc rc = ctx->store->ops->key_set_hash(ctx->store, row->rec.id, hash);

    if (rc == KW_OK)
        rc = kwi_audit_append(ctx, &(kw_actor){"keyward", "local"}, "key.rehash", row->rec.id, "ok",
                              "{\"from\":\"sha256\",\"to\":\"hmac-sha256\"}");
    if (rc == KW_OK) {
        row->has_legacy = 0;
        row->rec.legacy = 0;
    }
    return rc;
}

/* Does the database hold imported keys? Another process may import while
 * this context is open, so a "no" is re-read, at most once a second. */
static int has_imported(kw_ctx *ctx)
{
    int64_t now_ms = kwi_now_ms();

    if (ctx->imported == 0 && now_ms - ctx->imported_checked_ms >= 1000) {
        int64_t n = 0;
        if (ctx->store->ops->key_count_imported(ctx->store, &n) == KW_OK)
            ctx->imported = n;
        ctx->imported_checked_ms = now_ms;
    }
    return ctx->imported > 0;
}

/* Find the row a key belongs to. KW_ERR_NOT_FOUND covers unknown ids and
 * wrong secrets alike, after the same work. */
static kw_rc lookup(kw_ctx *ctx, const char *key, size_t len, int opaque,
                    const unsigned char hash[32], kw_key_row *row, int *legacy_hit)
{
    static const unsigned char dummy[32];
    kw_key_parts parts;
    kw_rc rc;

    *legacy_hit = 0;
    if (opaque) {
        if (!kw_key_parse(&parts, key, len))
            return KW_ERR_NOT_FOUND;
        rc = ctx->store->ops->key_get(ctx->store, parts.id, row);
        if (rc == KW_ERR_NOT_FOUND) {
            /* Same work as a wrong secret: compare against a dummy. */
            volatile int sink = sodium_memcmp(hash, dummy, 32);
            (void)sink;
            return rc;
        }
        if (rc != KW_OK)
            return rc;
        if (!row->has_hash || sodium_memcmp(hash, row->hash, 32) != 0) {
            kwi_key_row_clear(row);
            return KW_ERR_NOT_FOUND;
        }
        return KW_OK;
    }
    rc = ctx->store->ops->key_find_hash(ctx->store, hash, row);
    if (rc != KW_ERR_NOT_FOUND)
        return rc;
    {
        unsigned char sha[32];
        crypto_hash_sha256(sha, (const unsigned char *)key, len);
        rc = ctx->store->ops->key_find_legacy(ctx->store, sha, row);
        sodium_memzero(sha, sizeof(sha));
    }
    if (rc == KW_OK)
        *legacy_hit = 1;
    return rc;
}

KW_API kw_rc kw_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                       kw_verify_result *out)
{
    static const kw_verify_request none = {.cost = 1};
    unsigned char hash[32];
    kw_key_parts parts;
    kw_key_row row;
    int opaque, legacy_hit = 0, changed = 0;
    kw_rc rc;

    memset(out, 0, sizeof(*out));
    out->code = KW_MALFORMED; /* never VALID by default, whatever path returns */
    out->remaining = KW_CREDITS_UNLIMITED;
    if (req == NULL)
        req = &none;
    for (size_t i = 0; i < req->nscopes; i++)
        if (!kw_scope_required_valid(req->scopes[i])) {
            kwi_seterr(ctx, "invalid required scope");
            return KW_ERR_INVALID;
        }
    if (key == NULL || len > KW_VERIFY_INPUT_MAX)
        return KW_OK;
    if (kw_token_shape(key, len)) { /* longer than an opaque key: docs/tokens.md */
        rc = kwi_token_verify(ctx, key, len, req, out);
        if (rc != KW_OK || out->code != KW_MALFORMED || !kwi_seed_shape(ctx, key, len))
            return rc;
    }
    if (kwi_seed_shape(ctx, key, len)) { /* the seed's own signed or hierarchical keys */
        rc = kwi_seed_verify(ctx, key, len, req, out);
        if (rc != KW_ERR_NOT_FOUND)
            return rc;
        out->code = KW_MALFORMED;
    }
    opaque = kw_key_parse(&parts, key, len);
    if (!opaque && !(legacy_shape(key, len) && has_imported(ctx)))
        return KW_OK;

    kwi_pepper_hmac(ctx, hash, key, len);
    rc = ctx->store->ops->begin(ctx->store);
    if (rc != KW_OK)
        goto storage;
    rc = lookup(ctx, key, len, opaque, hash, &row, &legacy_hit);
    if (rc == KW_ERR_NOT_FOUND) {
        ctx->store->ops->rollback(ctx->store);
        out->code = KW_NOT_FOUND;
        rc = KW_OK;
        goto out;
    }
    if (rc != KW_OK)
        goto storage;
    rc = decide(ctx, &row, req, out, &changed);
    if (rc == KW_OK && changed)
        rc = ctx->store->ops->key_touch(ctx->store, &row);
    if (rc == KW_OK)
        rc = ctx->store->ops->usage_add(ctx->store, row.rec.id, kwi_usage_bucket(kw_now()),
                                        out->code, 1);
    if (rc == KW_OK && legacy_hit && out->code == KW_VALID)
        rc = upgrade_legacy(ctx, &row, hash);
    if (rc == KW_OK)
        rc = ctx->store->ops->commit(ctx->store);
    if (rc == KW_OK) {
        out->found = 1;
        rc = kwi_record_copy(&out->key, &row.rec);
    }
    kwi_key_row_clear(&row);
    if (rc != KW_OK)
        goto storage;
    goto out;
storage:
    kwi_seterr(ctx, "%s", rc == KW_ERR_NOMEM ? "out of memory" : ctx->store->errmsg);
    ctx->store->ops->rollback(ctx->store);
    kw_verify_result_clear(out);
    out->code = KW_NOT_FOUND; /* callers must deny on error; never VALID */
out:
    sodium_memzero(hash, sizeof(hash));
    return rc;
}
