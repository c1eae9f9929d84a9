/*
 * The in-memory verification index: every key record, in shards of open
 * addressing tables keyed by id, each shard under its own mutex.
 */
#include "internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHARDS 64
#define SCAN_PAGE 1000
#define CREDIT_HOPS 8

/* Verifications by result code in one hourly bucket. */
typedef struct counts {
    int64_t bucket; /* 0: empty */
    uint32_t n[KW_VERDICT_COUNT];
} counts;

typedef struct entry {
    kw_key_row row;   /* the record, its hash, credit pool and rate-limit state */
    int64_t spent;    /* credits spent since the last sync */
    int64_t flushing; /* credits a sync is writing right now */
    int64_t used_at;  /* last_used_at not yet written */
    counts cur, prev; /* usage not yet written: this hour's, and the last one's */
    int dirty;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry **slots; /* open addressing, linear probing; NULL = empty */
    size_t cap;    /* power of two */
    size_t n;
} shard;

struct kw_index {
    shard shards[SHARDS];
    size_t max_keys;
    _Atomic size_t keys;
    int64_t audit_seq; /* changes up to here are applied; only sync touches it */
    pthread_mutex_t sync_lock;
    _Atomic uint64_t hits, fallbacks, syncs, reloads;
};

static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: ids are random already */

    for (int i = 0; i < KW_ID_LEN; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return h;
}

static shard *shard_of(kw_index *idx, uint64_t h)
{
    return &idx->shards[h % SHARDS];
}

/* Slot of id in s, or of the empty slot where it would go. Lock held. */
static size_t probe(const shard *s, const char *id, uint64_t h)
{
    size_t i = (h / SHARDS) & (s->cap - 1);

    while (s->slots[i] != NULL && memcmp(s->slots[i]->row.rec.id, id, KW_ID_LEN) != 0)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static entry *find(shard *s, const char *id, uint64_t h)
{
    return s->cap ? s->slots[probe(s, id, h)] : NULL;
}

static void entry_free(entry *e)
{
    if (e == NULL)
        return;
    kwi_key_row_clear(&e->row);
    free(e);
}

static int grow(shard *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    entry **old = s->slots;
    size_t oldcap = s->cap;

    s->slots = calloc(cap, sizeof(*s->slots));
    if (s->slots == NULL) {
        s->slots = old;
        return -1;
    }
    s->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] != NULL)
            s->slots[probe(s, old[i]->row.rec.id, id_hash(old[i]->row.rec.id))] = old[i];
    free(old);
    return 0;
}

/* Remove slot i, re-placing the probe run after it. Lock held. */
static void remove_slot(shard *s, size_t i)
{
    entry_free(s->slots[i]);
    s->slots[i] = NULL;
    s->n--;
    for (size_t j = (i + 1) & (s->cap - 1); s->slots[j] != NULL; j = (j + 1) & (s->cap - 1)) {
        entry *e = s->slots[j];
        s->slots[j] = NULL;
        s->slots[probe(s, e->row.rec.id, id_hash(e->row.rec.id))] = e;
    }
}

/*
 * Put a row loaded from storage (ownership moves in). An entry already
 * there keeps its rate-limit window (unless the limit changed) and the
 * spends not yet written, which storage does not know of yet.
 */
static kw_rc put_row_locked(kw_index *idx, shard *s, uint64_t h, kw_key_row *row)
{
    entry *e;
    size_t i;

    if ((s->n + 1) * 10 > s->cap * 7 && grow(s) != 0)
        return KW_ERR_NOMEM;
    i = probe(s, row->rec.id, h);
    e = s->slots[i];
    if (e != NULL) {
        if (e->row.rec.rate_limit == row->rec.rate_limit &&
            e->row.rec.rate_window_ms == row->rec.rate_window_ms) {
            row->rl_start_ms = e->row.rl_start_ms;
            row->rl_count = e->row.rl_count;
            row->rl_prev = e->row.rl_prev;
        }
        if (row->rec.credits != KW_CREDITS_UNLIMITED) {
            row->rec.credits -= e->spent + e->flushing;
            if (row->rec.credits < 0)
                row->rec.credits = 0;
        }
        if (e->used_at > row->rec.last_used_at)
            row->rec.last_used_at = e->used_at;
        kwi_key_row_clear(&e->row);
        e->row = *row;
    } else {
        if (atomic_load(&idx->keys) >= idx->max_keys)
            return KW_ERR_TOO_LARGE;
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return KW_ERR_NOMEM;
        e->row = *row;
        s->slots[i] = e;
        s->n++;
        atomic_fetch_add(&idx->keys, 1);
    }
    memset(row, 0, sizeof(*row));
    return KW_OK;
}

/*
 * Put a row loaded from storage (ownership moves in). An entry already
 * there keeps its rate-limit window (unless the limit changed) and the
 * spends not yet written, which storage does not know of yet.
 */
static kw_rc put_row(kw_index *idx, kw_key_row *row)
{
    uint64_t h = id_hash(row->rec.id);
    shard *s = shard_of(idx, h);
    kw_rc rc;

    pthread_mutex_lock(&s->lock);
    rc = put_row_locked(idx, s, h, row);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void drop_locked(kw_index *idx, shard *s, const char *id, uint64_t h)
{
    size_t i;

    if (s->cap && s->slots[i = probe(s, id, h)] != NULL) {
        remove_slot(s, i);
        atomic_fetch_sub(&idx->keys, 1);
    }
}

/*
 * Reload one key from storage. Locking: idx->sync_lock, then the shard's
 * lock, are held by the caller (sync_held / locked say which it already
 * holds; the rest are taken here). The read happens under both, so it can
 * never be older than a change bracketed by change_begin/end or a usage
 * write: a stale row never overwrites a fresh one.
 */
static kw_rc reload(kw_index *idx, kw_ctx *ctx, const char *id, int sync_held, int locked)
{
    uint64_t h = id_hash(id);
    shard *s = shard_of(idx, h);
    kw_key_row row;
    kw_rc rc;

    if (!kw_key_id_valid(id))
        return KW_ERR_INVALID;
    if (!sync_held)
        pthread_mutex_lock(&idx->sync_lock);
    if (!locked)
        pthread_mutex_lock(&s->lock);
    rc = ctx->store->ops->key_get(ctx->store, id, &row);
    if (rc == KW_ERR_NOT_FOUND) {
        drop_locked(idx, s, id, h);
        rc = KW_OK;
    } else if (rc == KW_OK) {
        atomic_fetch_add(&idx->reloads, 1);
        rc = put_row_locked(idx, s, h, &row);
        kwi_key_row_clear(&row);
    } else {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    }
    if (!locked)
        pthread_mutex_unlock(&s->lock);
    if (!sync_held)
        pthread_mutex_unlock(&idx->sync_lock);
    return rc;
}

/* Count n verifications with `code` in bucket; an hour that rolls over
 * while the last one is still unwritten folds into it (only if the writer
 * stalled for an hour). */
static void count_add(entry *e, int64_t bucket, int code, uint32_t n)
{
    if (e->cur.bucket != bucket) {
        if (e->cur.bucket != 0 && e->prev.bucket == 0) {
            e->prev = e->cur;
        } else if (e->cur.bucket != 0) {
            for (int i = 0; i < KW_VERDICT_COUNT; i++)
                e->prev.n[i] += e->cur.n[i];
        }
        memset(&e->cur, 0, sizeof(e->cur));
        e->cur.bucket = bucket;
    }
    e->cur.n[code] += n;
    e->dirty = 1;
}

KW_API kw_rc kw_index_get(kw_index *idx, const char *id, kw_key_record *out)
{
    uint64_t h;
    shard *s;
    entry *e;
    kw_rc rc = KW_ERR_NOT_FOUND;

    if (!kw_key_id_valid(id))
        return KW_ERR_NOT_FOUND;
    h = id_hash(id);
    s = shard_of(idx, h);
    pthread_mutex_lock(&s->lock);
    if ((e = find(s, id, h)) != NULL)
        rc = kwi_record_copy(out, &e->row.rec);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

KW_API kw_rc kw_index_refresh(kw_index *idx, kw_ctx *ctx, const char *id)
{
    return reload(idx, ctx, id, 0, 0);
}

KW_API kw_rc kw_index_change_begin(kw_index *idx, kw_ctx *ctx, const char *id)
{
    uint64_t h = id_hash(id);
    shard *s = shard_of(idx, h);
    entry *e;
    kw_rc rc = KW_OK;

    if (!kw_key_id_valid(id))
        return KW_ERR_INVALID;
    /* Serialised with the writer: no usage of this key is half written. */
    pthread_mutex_lock(&idx->sync_lock);
    pthread_mutex_lock(&s->lock);
    e = find(s, id, h);
    if (e != NULL && e->dirty) {
        rc = ctx->store->ops->begin(ctx->store);
        if (rc == KW_OK)
            rc = ctx->store->ops->key_use(ctx->store, id, e->spent, e->used_at);
        rc = kwi_finish(ctx, rc);
        if (rc == KW_OK) {
            e->spent = 0;
            e->dirty = e->cur.bucket != 0 || e->prev.bucket != 0; /* counts still to write */
        } else {
            pthread_mutex_unlock(&s->lock);
            pthread_mutex_unlock(&idx->sync_lock);
        }
    }
    return rc;
}

KW_API kw_rc kw_index_change_end(kw_index *idx, kw_ctx *ctx, const char *id, const char *made)
{
    shard *s = shard_of(idx, id_hash(id));
    kw_rc rc = KW_OK, rc2;

    /* A key the change made (rotation) first, so that the old key never
     * points at credits the index does not hold. Two shard locks at once
     * only here, under sync_lock, so no other path can hold them reversed. */
    if (made != NULL && kw_key_id_valid(made))
        rc = reload(idx, ctx, made, 1, shard_of(idx, id_hash(made)) == s);
    rc2 = reload(idx, ctx, id, 1, 1);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&idx->sync_lock);
    return rc != KW_OK ? rc : rc2;
}

KW_API kw_rc kw_index_open(kw_index **out, kw_ctx *ctx, size_t max_keys)
{
    char after[KW_ID_LEN + 1] = "";
    kw_index *idx = calloc(1, sizeof(*idx));
    kw_rc rc;

    if (idx == NULL)
        return KW_ERR_NOMEM;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&idx->shards[i].lock, NULL);
    pthread_mutex_init(&idx->sync_lock, NULL);
    idx->max_keys = max_keys;
    /* Changes after this point are replayed by the first sync. */
    rc = kwi_audit_last_seq(ctx, &idx->audit_seq);
    for (;;) {
        kw_key_row *rows;
        size_t n;
        if (rc != KW_OK)
            break;
        rc = ctx->store->ops->key_scan(ctx->store, after, SCAN_PAGE, &rows, &n);
        if (rc != KW_OK) {
            kwi_seterr(ctx, "%s", ctx->store->errmsg);
            break;
        }
        /* The cursor first: put_row takes each row over and clears it. */
        if (n > 0)
            kwi_strlcpy(after, rows[n - 1].rec.id, sizeof(after));
        for (size_t i = 0; i < n && rc == KW_OK; i++)
            rc = put_row(idx, &rows[i]);
        kwi_key_rows_free(rows, n);
        if (rc == KW_ERR_TOO_LARGE)
            kwi_seterr(ctx, "more than %zu keys: raise the index limit", max_keys);
        if (n < SCAN_PAGE)
            break;
    }
    if (rc != KW_OK) {
        kw_index_free(idx);
        return rc;
    }
    *out = idx;
    return KW_OK;
}

KW_API void kw_index_free(kw_index *idx)
{
    if (idx == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &idx->shards[i];
        for (size_t j = 0; j < s->cap; j++)
            entry_free(s->slots[j]);
        free(s->slots);
        pthread_mutex_destroy(&s->lock);
    }
    pthread_mutex_destroy(&idx->sync_lock);
    free(idx);
}

/* Spend from the key that holds the credits (after a rotation, the new
 * one). Returns 1 if spent (or unlimited), 0 if too few; -1 if the pool
 * is missing. Takes each shard's lock in turn, never two at once. */
static int spend(kw_index *idx, const char *id, int64_t cost, int64_t *remaining)
{
    char pool[KW_ID_LEN + 1];

    kwi_strlcpy(pool, id, sizeof(pool));
    for (int hop = 0; hop < CREDIT_HOPS; hop++) {
        uint64_t h = id_hash(pool);
        shard *s = shard_of(idx, h);
        entry *e;
        int ret = -1;

        pthread_mutex_lock(&s->lock);
        e = find(s, pool, h);
        if (e != NULL && e->row.credits_from[0] != '\0') {
            kwi_strlcpy(pool, e->row.credits_from, sizeof(pool));
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        if (e != NULL) {
            *remaining = e->row.rec.credits;
            ret = 1;
            if (e->row.rec.credits != KW_CREDITS_UNLIMITED && e->row.rec.credits < cost) {
                ret = 0;
            } else if (e->row.rec.credits != KW_CREDITS_UNLIMITED) {
                e->row.rec.credits -= cost;
                e->spent += cost;
                e->dirty = 1;
                *remaining = e->row.rec.credits;
            }
        }
        pthread_mutex_unlock(&s->lock);
        return ret;
    }
    return -1;
}

KW_API kw_rc kw_index_verify(kw_index *idx, kw_ctx *ctx, const char *key, size_t len,
                             const kw_verify_request *req, kw_verify_result *out)
{
    static const kw_verify_request none = {NULL, 0, 1};
    static const unsigned char dummy[32];
    unsigned char hash[32];
    int64_t now_ms = kwi_now_ms();
    kw_key_parts parts;
    kw_verdict code;
    uint64_t h;
    shard *s;
    entry *e;
    int spent;
    kw_rc rc = KW_OK;

    if (req == NULL)
        req = &none;
    if (key == NULL || len > KW_VERIFY_INPUT_MAX || !kw_key_parse(&parts, key, len)) {
        atomic_fetch_add(&idx->fallbacks, 1);
        return kw_verify(ctx, key, len, req, out); /* MALFORMED, or an imported key */
    }
    memset(out, 0, sizeof(*out));
    out->code = KW_MALFORMED;
    out->remaining = KW_CREDITS_UNLIMITED;
    for (size_t i = 0; i < req->nscopes; i++)
        if (!kw_scope_required_valid(req->scopes[i])) {
            kwi_seterr(ctx, "invalid required scope");
            return KW_ERR_INVALID;
        }
    atomic_fetch_add(&idx->hits, 1);
    kwi_pepper_hmac(ctx, hash, key, len);
    h = id_hash(parts.id);
    s = shard_of(idx, h);
    pthread_mutex_lock(&s->lock);
    e = find(s, parts.id, h);
    if (e == NULL || sodium_memcmp(hash, e ? e->row.hash : dummy, 32) != 0 || !e->row.has_hash) {
        pthread_mutex_unlock(&s->lock);
        out->code = KW_NOT_FOUND;
        goto out;
    }
    out->remaining = e->row.rec.credits;
    code = kwi_decide(&e->row, now_ms, req, out);
    pthread_mutex_unlock(&s->lock);
    if (code == KW_VALID) {
        spent = spend(idx, parts.id, req->cost ? req->cost : 1, &out->remaining);
        if (spent < 0) {
            kwi_seterr(ctx, "the credits of key %s are held by a key that is gone", parts.id);
            rc = KW_ERR_STORAGE;
            goto out;
        }
        code = spent ? KW_VALID : KW_USAGE_EXCEEDED;
    }
    /* Note the use and copy the record out; the entry may have been
     * reloaded or dropped while no lock was held. */
    pthread_mutex_lock(&s->lock);
    e = find(s, parts.id, h);
    if (e == NULL) {
        code = KW_NOT_FOUND;
    } else {
        if (code == KW_VALID) {
            e->used_at = now_ms / 1000;
            e->row.rec.last_used_at = e->used_at;
            e->dirty = 1;
        }
        count_add(e, kwi_usage_bucket(now_ms / 1000), code, 1);
        rc = kwi_record_copy(&out->key, &e->row.rec);
        out->found = rc == KW_OK;
    }
    pthread_mutex_unlock(&s->lock);
    out->code = code;
out:
    sodium_memzero(hash, sizeof(hash));
    if (rc != KW_OK) {
        kw_verify_result_clear(out);
        out->code = KW_NOT_FOUND;
    }
    return rc;
}

/* Usage gathered in memory, taken out of the entries for writing. */
typedef struct usage {
    char id[KW_ID_LEN + 1];
    int64_t spent;
    int64_t used_at;
    counts c[2];
} usage;

static kw_rc collect(kw_index *idx, usage **out, size_t *n)
{
    size_t cap = 0, count = 0;
    usage *u = NULL;

    for (int i = 0; i < SHARDS; i++) {
        shard *s = &idx->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t j = 0; j < s->cap; j++) {
            entry *e = s->slots[j];
            if (e == NULL || !e->dirty)
                continue;
            if (count == cap) {
                usage *g = realloc(u, (cap = cap ? cap * 2 : 64) * sizeof(*u));
                if (g == NULL) {
                    pthread_mutex_unlock(&s->lock);
                    free(u); /* the entries stay dirty: nothing is lost */
                    return KW_ERR_NOMEM;
                }
                u = g;
            }
            memcpy(u[count].id, e->row.rec.id, KW_ID_LEN + 1);
            u[count].spent = e->spent;
            u[count].used_at = e->used_at;
            u[count].c[0] = e->prev;
            u[count].c[1] = e->cur;
            memset(&e->prev, 0, sizeof(e->prev));
            memset(&e->cur, 0, sizeof(e->cur));
            e->flushing += e->spent;
            e->spent = 0;
            e->dirty = 0;
            count++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    *out = u;
    *n = count;
    return KW_OK;
}

/* After the write: the flushed spends are in storage now (ok), or go back
 * to the entries for the next sync (failed). */
static void settle(kw_index *idx, const usage *u, size_t n, int ok)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t h = id_hash(u[i].id);
        shard *s = shard_of(idx, h);
        entry *e;

        pthread_mutex_lock(&s->lock);
        if ((e = find(s, u[i].id, h)) != NULL) {
            e->flushing -= u[i].spent;
            if (!ok) {
                e->spent += u[i].spent;
                if (u[i].used_at > e->used_at)
                    e->used_at = u[i].used_at;
                for (int k = 0; k < 2; k++)
                    for (int c = 0; c < KW_VERDICT_COUNT; c++)
                        if (u[i].c[k].bucket != 0 && u[i].c[k].n[c] != 0)
                            count_add(e, u[i].c[k].bucket, c, u[i].c[k].n[c]);
                e->dirty = 1;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
}

static kw_rc write_usage(kw_index *idx, kw_ctx *ctx)
{
    usage *u;
    size_t n;
    kw_rc rc = collect(idx, &u, &n);

    if (rc != KW_OK || n == 0)
        return rc;
    rc = ctx->store->ops->begin(ctx->store);
    for (size_t i = 0; i < n && rc == KW_OK; i++) {
        rc = ctx->store->ops->key_use(ctx->store, u[i].id, u[i].spent, u[i].used_at);
        for (int k = 0; k < 2 && rc == KW_OK; k++)
            for (int c = 0; c < KW_VERDICT_COUNT && rc == KW_OK; c++)
                if (u[i].c[k].bucket != 0 && u[i].c[k].n[c] != 0)
                    rc = ctx->store->ops->usage_add(ctx->store, u[i].id, u[i].c[k].bucket, c,
                                                    u[i].c[k].n[c]);
    }
    rc = kwi_finish(ctx, rc);
    settle(idx, u, n, rc == KW_OK);
    free(u);
    return rc;
}

/* Reload what the audit trail says changed since the last sync. */
static kw_rc apply_changes(kw_index *idx, kw_ctx *ctx)
{
    int full = 0;

    for (;;) {
        kw_audit_filter f = {.after = idx->audit_seq, .limit = 500};
        kw_audit_record *recs;
        int64_t next;
        size_t n;
        kw_rc rc = kw_audit_list(ctx, &f, &recs, &n, &next);

        if (rc != KW_OK)
            return rc;
        for (size_t i = 0; i < n && rc == KW_OK; i++) {
            const kw_audit_record *r = &recs[i];
            const char *new_id;
            if (strncmp(r->action, "key.", 4) != 0 || !kw_key_id_valid(r->target))
                continue;
            rc = reload(idx, ctx, r->target, 1, 0);
            /* A rotation also made a key: its id is in the detail. */
            new_id = strstr(r->detail, "\"new_id\":\"");
            if (rc == KW_OK && new_id != NULL) {
                char id[KW_ID_LEN + 1];
                kwi_strlcpy(id, new_id + 10, sizeof(id));
                if (kw_key_id_valid(id))
                    rc = reload(idx, ctx, id, 1, 0);
            }
            if (rc == KW_ERR_TOO_LARGE) {
                /* Over the bound: that key stays out (NOT_FOUND), but the
                 * changes after it must still arrive. Reported, not retried. */
                kwi_seterr(ctx, "key %s not indexed: the index holds its maximum", r->target);
                full = 1;
                rc = KW_OK;
            }
            if (rc == KW_OK)
                idx->audit_seq = r->seq;
        }
        kw_audit_records_free(recs, n);
        if (rc != KW_OK)
            return rc;
        if (next == 0)
            return full ? KW_ERR_TOO_LARGE : KW_OK;
    }
}

KW_API kw_rc kw_index_sync(kw_index *idx, kw_ctx *ctx)
{
    kw_rc rc, rc2;

    pthread_mutex_lock(&idx->sync_lock);
    rc = write_usage(idx, ctx);
    rc2 = apply_changes(idx, ctx);
    pthread_mutex_unlock(&idx->sync_lock);
    if (rc == KW_OK && rc2 == KW_OK)
        atomic_fetch_add(&idx->syncs, 1);
    return rc != KW_OK ? rc : rc2;
}

KW_API void kw_index_stats_get(kw_index *idx, kw_index_stats *out)
{
    out->keys = atomic_load(&idx->keys);
    out->hits = atomic_load(&idx->hits);
    out->fallbacks = atomic_load(&idx->fallbacks);
    out->syncs = atomic_load(&idx->syncs);
    out->reloads = atomic_load(&idx->reloads);
}
