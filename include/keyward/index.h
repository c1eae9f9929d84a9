/*
 * keyward — the in-memory verification index (for servers).
 *
 * Holds every key record in memory, so that verifying an opaque key reads
 * no storage: lookup by id, constant-time compare of the peppered hash, the
 * decision, rate limit and credits all happen under one shard lock.
 *
 * - Thread-safe: one index is shared by all threads; each thread passes its
 *   own kw_ctx (database connection) where one is needed.
 * - Complete: every key is loaded at open, so a miss is NOT_FOUND without a
 *   lookup. A store larger than `max_keys` is refused (KW_ERR_TOO_LARGE):
 *   the documented bound on memory (docs/internals/index.md).
 * - Usage (credits spent, last_used_at) is kept in memory and written by
 *   kw_index_sync(), which also picks up changes made by other processes
 *   (it follows the audit trail). Call it periodically (the server: every
 *   100 ms) and once at shutdown.
 * - Changes made through this process: call kw_index_refresh() after each.
 */
#ifndef KEYWARD_INDEX_H
#define KEYWARD_INDEX_H

#include <keyward/verify.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_index kw_index;

typedef struct kw_index_stats {
    size_t keys;        /**< records held */
    uint64_t hits;      /**< verifications decided in memory */
    uint64_t fallbacks; /**< verifications passed to storage (imported seed keys) */
    uint64_t syncs;     /**< kw_index_sync (or kw_index_follow) runs that completed */
    uint64_t reloads;   /**< records reloaded after a change */
} kw_index_stats;

/**
 * Load every key through ctx.
 * @return KW_OK, KW_ERR_TOO_LARGE (more than max_keys), KW_ERR_STORAGE, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_index_open(kw_index **out, kw_ctx *ctx, size_t max_keys) KW_WARN_UNUSED;

/** Free. Call kw_index_sync first, or usage since the last sync is lost. Accepts NULL. */
KW_API void kw_index_free(kw_index *idx);

/**
 * Verify like kw_verify(), from memory. Strings that are not opaque keys go
 * to kw_verify(ctx, …) (imported seed keys, found by hash).
 */
KW_API kw_rc kw_index_verify(kw_index *idx, kw_ctx *ctx, const char *key, size_t len,
                             const kw_verify_request *req, kw_verify_result *out) KW_WARN_UNUSED;

/**
 * Around a change to key `id` made through ctx (update, rotate, revoke):
 * begin writes the key's usage not yet written (so that the change sees
 * it: a new credit balance is absolute, a rotation carries the true
 * balance) and holds the key's shard until end, which reloads the key
 * (and `made`, the key a rotation made; may be NULL). On failure begin
 * holds nothing and the change must not be made.
 */
KW_API kw_rc kw_index_change_begin(kw_index *idx, kw_ctx *ctx, const char *id) KW_WARN_UNUSED;
KW_API kw_rc kw_index_change_end(kw_index *idx, kw_ctx *ctx, const char *id, const char *made);

/**
 * A copy of a key's record as the index holds it (credits and last use as
 * of now). @return KW_OK, KW_ERR_NOT_FOUND, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_index_get(kw_index *idx, const char *id, kw_key_record *out) KW_WARN_UNUSED;

/**
 * Add a key just created (kw_key_create or kw_key_create_many gave its
 * record and key): from memory, no storage read. Its hash is computed
 * under ctx's pepper. @return KW_OK, KW_ERR_TOO_LARGE (the index is full),
 * KW_ERR_NOMEM, KW_ERR_INVALID (not a new key's record).
 */
KW_API kw_rc kw_index_add(kw_index *idx, kw_ctx *ctx, const kw_key_record *rec,
                          const kw_secret *key) KW_WARN_UNUSED;

/** Reload one key from storage (after a change made through ctx). */
KW_API kw_rc kw_index_refresh(kw_index *idx, kw_ctx *ctx, const char *id) KW_WARN_UNUSED;

/** Write usage to storage and apply changes made elsewhere since the last sync. */
KW_API kw_rc kw_index_sync(kw_index *idx, kw_ctx *ctx) KW_WARN_UNUSED;

/**
 * kw_index_sync in two halves, for a process that does all its writing on
 * one connection: kw_index_write_usage writes the usage gathered in memory
 * (one write transaction on ctx); kw_index_follow applies changes made
 * elsewhere (it only reads). SQLite drops a connection's page cache when
 * another connection writes, so a server's key committer, writing usage
 * too, keeps its cache where a second writer would empty it ten times a
 * second. Each half serialises with kw_index_sync.
 */
KW_API kw_rc kw_index_write_usage(kw_index *idx, kw_ctx *ctx) KW_WARN_UNUSED;
KW_API kw_rc kw_index_follow(kw_index *idx, kw_ctx *ctx) KW_WARN_UNUSED;

/**
 * Milliseconds since changes were last read from storage (kw_index_sync or
 * kw_index_follow reached it; since kw_index_open if none has). A node on a
 * shared database bounds how long it answers from an index this old
 * (keyward serve --db-grace).
 */
KW_API int64_t kw_index_sync_age_ms(kw_index *idx);

KW_API void kw_index_stats_get(kw_index *idx, kw_index_stats *out);

#ifdef __cplusplus
}
#endif

#endif
