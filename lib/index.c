/*
 * The in-memory verification index: every key, in shards of open
 * addressing tables keyed by id, each shard under its own mutex.
 *
 * Memory is the point of the layout (docs/internals/index.md): a key costs
 * one 96-byte entry (what the decision reads, in chunks of CHUNK entries,
 * no allocation of its own), a 4-byte slot, and one `cold` block holding
 * the record's strings, which verification results borrow (reference
 * counted) instead of copying; keys with the same scopes share one
 * interned scope set. What changes with use (spends not yet
 * written, usage counts, rate-limit windows) lives in an `ext` block that
 * exists only for keys in use.
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
#define CHUNK_BITS 8
#define CHUNK (1u << CHUNK_BITS)

/* Verifications by result code in one hourly bucket. */
typedef struct counts {
    int64_t bucket; /* 0: empty */
    uint32_t n[KW_VERDICT_COUNT];
} counts;

/* A set of scopes, shared by every key that has exactly these: interned in
 * the index's table, which holds one reference to each set it has seen
 * until the index is freed; each cold block holds another. */
typedef struct scopeset {
    _Atomic uint32_t refs;
    uint32_t n;
    uint64_t hash;
    struct scopeset *next; /* the table's chain */
    char *v[];             /* n pointers, then the strings */
} scopeset;

/* The record's fields that change only when the key is reloaded, and its
 * strings, in one block. Never modified after it is built; freed when the
 * entry and every result that borrows it have let go. The strings follow
 * the block, NUL-terminated, in the order of the C_ names: first those a
 * verification copies, whose lengths the block keeps (no strlen on the hot
 * path), then those it lends, then the pool, which only a spend of a
 * rotated key reads. */
enum {
    C_PREFIX,
    C_ROT_FROM,
    C_ROT_TO,
    C_OWNER,
    C_NAME,
    C_EXTERNAL,
    C_META,
    C_CREDITS_FROM,
    C_STRINGS
};

typedef struct cold {
    _Atomic uint32_t refs;
    uint8_t legacy : 1;
    uint8_t has_external : 1;
    uint8_t pooled : 1; /* spends from another key's credits (credits_from) */
    uint8_t prefix_len; /* at most KW_PREFIX_MAX */
    uint8_t from_len;   /* rotated_from's, at most KW_ID_LEN */
    uint8_t to_len;     /* rotated_to's */
    uint32_t rate_limit;
    uint32_t rate_window_ms;
    int64_t created_at;
    int64_t revoked_at;
    scopeset *scopes;
    char data[];
} cold;

/* What changes with use. Exists while a key has usage not yet written, or
 * a rate limit (its window). */
typedef struct ext {
    kwi_rl rl;
    int64_t spent;    /* credits spent since the last sync */
    int64_t flushing; /* credits a sync is writing right now */
    int64_t used_at;  /* last_used_at not yet written */
    counts cur, prev; /* usage not yet written: this hour's, and the last one's */
    int dirty;
    int queued; /* its id is on the shard's dirty list */
} ext;

/* What verification reads first: 96 bytes. */
typedef struct entry {
    char id[KW_ID_LEN];
    uint8_t has_hash;
    uint8_t enabled;
    uint8_t used; /* in a chunk: 1 while a slot points here */
    uint8_t pad_;
    unsigned char hash[32]; /* HMAC-SHA-256(pepper, key) */
    int64_t expires_at;
    int64_t not_before;
    int64_t credits; /* as of now: storage's balance minus spends not written */
    int64_t last_used_at;
    cold *c;
    ext *x;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    uint32_t *slots; /* open addressing, linear probing; 0 = empty, else entry ref + 1 */
    size_t cap;      /* power of two */
    size_t n;        /* keys */
    entry **chunks;  /* entries, CHUNK per chunk, never moved */
    size_t nchunks;
    size_t top;     /* entries ever handed out */
    uint32_t *free; /* refs of entries handed back */
    size_t nfree, freecap;
    uint64_t hits; /* verifications decided here: counted under the lock, no shared line */
    /* Ids of keys with usage to write, so that a sync reads those, not every
     * slot (a million keys took a fifth of a core, ten scans a second).
     * An id may be stale (key dropped) or twice (dropped and back): the
     * ext's `queued` says which entry is really waiting. */
    char (*dirty)[KW_ID_LEN];
    size_t ndirty, dirtycap;
    int dirty_lost; /* the list could not grow: the next sync scans every slot */
} shard;

struct kw_index {
    shard shards[SHARDS];
    size_t max_keys;
    int exact_spends;           /* credits spent in storage (several nodes): kw_store_ops */
    _Atomic int64_t reached_ms; /* monotonic: the last time changes were read from storage */
    _Atomic size_t keys;
    int64_t audit_seq; /* changes up to here are applied; only sync touches it */
    pthread_mutex_t sync_lock;
    _Atomic uint64_t fallbacks, syncs, reloads;
    pthread_mutex_t sets_lock; /* the scope sets' table; taken last, alone */
    scopeset **sets;
    size_t sets_cap, nsets;
};

/* Milliseconds on the monotonic clock (coarse: a few ms are enough here). */
static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static entry *ent(const shard *s, uint32_t ref)
{
    return &s->chunks[ref >> CHUNK_BITS][ref & (CHUNK - 1)];
}

/* A slot: 8 bits of the id's hash (most probes that miss are told by the
 * slot alone, without reading an entry) and the entry's number + 1. */
#define SLOT_REF_BITS 24
#define SLOT_REF_MASK ((1u << SLOT_REF_BITS) - 1)
#define SLOT_ENTRIES_MAX (SLOT_REF_MASK - 1) /* per shard: 1 billion keys in all */

static uint32_t slot_make(uint64_t h, uint32_t ref)
{
    return (uint32_t)(h >> 56) << SLOT_REF_BITS | (ref + 1);
}

static uint32_t slot_ref(uint32_t slot)
{
    return (slot & SLOT_REF_MASK) - 1;
}

static int slot_may_be(uint32_t slot, uint64_t h)
{
    return slot >> SLOT_REF_BITS == (uint32_t)(h >> 56);
}

/* ---- scope sets and cold blocks ----------------------------------------- */

static void scopeset_release(scopeset *set)
{
    if (set != NULL && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
        free(set);
}

static uint64_t scopes_hash(char *const *v, size_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++)
        for (const unsigned char *p = (const unsigned char *)v[i];; p++) {
            h = (h ^ *p) * 1099511628211ULL; /* the NUL too: "a b" != "ab" */
            if (*p == '\0')
                break;
        }
    return h ^ n;
}

static int scopes_equal(const scopeset *set, char *const *v, size_t n)
{
    if (set->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(set->v[i], v[i]) != 0)
            return 0;
    return 1;
}

static scopeset *scopes_find_or_add(kw_index *idx, char *const *v, size_t n, uint64_t h);

/* The interned set of these scopes, with a reference for the caller; NULL
 * if out of memory. `hint` (may be NULL) remembers the last set found, so
 * that a loader whose keys share scopes skips the table's lock: the table's
 * own reference keeps a remembered set alive while the index lives. */
static scopeset *scopes_intern(kw_index *idx, char *const *v, size_t n, scopeset **hint)
{
    uint64_t h = scopes_hash(v, n);
    scopeset *set;

    if (hint != NULL && *hint != NULL && (*hint)->hash == h && scopes_equal(*hint, v, n)) {
        atomic_fetch_add_explicit(&(*hint)->refs, 1, memory_order_relaxed);
        return *hint;
    }
    set = scopes_find_or_add(idx, v, n, h);
    if (hint != NULL && set != NULL)
        *hint = set;
    return set;
}

static scopeset *scopes_find_or_add(kw_index *idx, char *const *v, size_t n, uint64_t h)
{
    scopeset *set;
    size_t len = 0;
    char *p;

    pthread_mutex_lock(&idx->sets_lock);
    if (idx->nsets * 2 >= idx->sets_cap) { /* keep chains short */
        size_t cap = idx->sets_cap ? idx->sets_cap * 2 : 64;
        scopeset **t = calloc(cap, sizeof(*t));
        if (t != NULL) {
            for (size_t i = 0; i < idx->sets_cap; i++)
                while (idx->sets[i] != NULL) {
                    scopeset *m = idx->sets[i];
                    idx->sets[i] = m->next;
                    m->next = t[m->hash & (cap - 1)];
                    t[m->hash & (cap - 1)] = m;
                }
            free(idx->sets);
            idx->sets = t;
            idx->sets_cap = cap;
        }
    }
    for (set = idx->sets_cap ? idx->sets[h & (idx->sets_cap - 1)] : NULL; set; set = set->next)
        if (set->hash == h && scopes_equal(set, v, n)) {
            atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
            pthread_mutex_unlock(&idx->sets_lock);
            return set;
        }
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    set = idx->sets_cap ? malloc(sizeof(*set) + n * sizeof(char *) + len) : NULL;
    if (set == NULL) {
        pthread_mutex_unlock(&idx->sets_lock);
        return NULL;
    }
    atomic_init(&set->refs, 2); /* the table's and the caller's */
    set->n = (uint32_t)n;
    set->hash = h;
    p = (char *)&set->v[n];
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        set->v[i] = memcpy(p, v[i], l);
        p += l;
    }
    set->next = idx->sets[h & (idx->sets_cap - 1)];
    idx->sets[h & (idx->sets_cap - 1)] = set;
    idx->nsets++;
    pthread_mutex_unlock(&idx->sets_lock);
    return set;
}

static void cold_release(cold *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        scopeset_release(c->scopes);
        free(c);
    }
}

void kwi_index_ref_release(void *ref)
{
    cold_release(ref);
}

/* The pool a key spends from ("" = its own credits). */
static const char *cold_pool(const cold *c)
{
    const char *p = c->data;

    for (int i = 0; i < C_CREDITS_FROM; i++)
        p += strlen(p) + 1;
    return p;
}

/* The block of a row from storage; NULL if out of memory. */
static cold *cold_new(kw_index *idx, const kw_key_row *row, scopeset **hint)
{
    const kw_key_record *r = &row->rec;
    const char *str[C_STRINGS] = {
        [C_PREFIX] = r->prefix,        [C_CREDITS_FROM] = row->credits_from,
        [C_OWNER] = r->owner,          [C_NAME] = r->name,
        [C_EXTERNAL] = r->external_id, [C_ROT_FROM] = r->rotated_from,
        [C_ROT_TO] = r->rotated_to,    [C_META] = r->meta,
    };
    size_t len = 0, at = 0, n[C_STRINGS];
    cold *c;

    for (int i = 0; i < C_STRINGS; i++) {
        if (str[i] == NULL) /* no external id */
            str[i] = "";
        len += (n[i] = strlen(str[i])) + 1;
    }
    /* The record's arrays bound these; view() copies them back into such
     * arrays by the lengths kept here. */
    if (n[C_PREFIX] > KW_PREFIX_MAX || n[C_ROT_FROM] > KW_ID_LEN || n[C_ROT_TO] > KW_ID_LEN)
        return NULL;
    c = malloc(sizeof(*c) + len);
    if (c == NULL)
        return NULL;
    c->scopes = scopes_intern(idx, r->scopes, r->nscopes, hint);
    if (c->scopes == NULL) {
        free(c);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->legacy = (uint8_t)(r->legacy != 0);
    c->has_external = r->external_id != NULL;
    c->pooled = row->credits_from[0] != '\0';
    c->prefix_len = (uint8_t)n[C_PREFIX];
    c->from_len = (uint8_t)n[C_ROT_FROM];
    c->to_len = (uint8_t)n[C_ROT_TO];
    c->rate_limit = r->rate_limit;
    c->rate_window_ms = r->rate_window_ms;
    c->created_at = r->created_at;
    c->revoked_at = r->revoked_at;
    for (int i = 0; i < C_STRINGS; i++) {
        memcpy(c->data + at, str[i], n[i] + 1);
        at += n[i] + 1;
    }
    return c;
}

/* The record of e, its strings borrowed from e's cold block (no copy). */
static void view(const entry *e, kw_key_record *out)
{
    const cold *c = e->c;
    char *p = (char *)c->data;

    memcpy(out->id, e->id, KW_ID_LEN);
    out->id[KW_ID_LEN] = '\0';
    memcpy(out->prefix, p, c->prefix_len + 1u);
    p += c->prefix_len + 1u;
    memcpy(out->rotated_from, p, c->from_len + 1u);
    p += c->from_len + 1u;
    memcpy(out->rotated_to, p, c->to_len + 1u);
    p += c->to_len + 1u;
    out->owner = p;
    p += strlen(p) + 1;
    out->name = p;
    p += strlen(p) + 1;
    out->external_id = c->has_external ? p : NULL;
    p += strlen(p) + 1;
    out->meta = p;
    out->scopes = c->scopes->v;
    out->nscopes = c->scopes->n;
    out->created_at = c->created_at;
    out->not_before = e->not_before;
    out->expires_at = e->expires_at;
    out->last_used_at = e->last_used_at;
    out->enabled = e->enabled;
    out->revoked_at = c->revoked_at;
    out->credits = e->credits;
    out->rate_limit = c->rate_limit;
    out->rate_window_ms = c->rate_window_ms;
    out->legacy = c->legacy;
}

/* ---- entries and slots ---------------------------------------------------- */

static ext *ext_of(entry *e)
{
    if (e->x == NULL)
        e->x = calloc(1, sizeof(*e->x));
    return e->x;
}

/* An ext with nothing pending and no window to keep goes. */
static void ext_trim(entry *e)
{
    if (e->x != NULL && !e->x->dirty && e->x->flushing == 0 && e->x->spent == 0 &&
        e->c->rate_limit == 0) {
        free(e->x);
        e->x = NULL;
    }
}

static int entry_alloc(shard *s, uint32_t *ref)
{
    if (s->nfree > 0) {
        *ref = s->free[--s->nfree];
        return 0;
    }
    if (s->top == s->nchunks * CHUNK) {
        entry **g = realloc(s->chunks, (s->nchunks + 1) * sizeof(*g));
        if (g == NULL)
            return -1;
        s->chunks = g;
        if ((g[s->nchunks] = calloc(CHUNK, sizeof(entry))) == NULL)
            return -1;
        s->nchunks++;
    }
    if (s->top >= SLOT_ENTRIES_MAX)
        return -1;
    *ref = (uint32_t)s->top++;
    return 0;
}

/* Hand an entry back (its slot already cleared). */
static void entry_release(shard *s, uint32_t ref)
{
    entry *e = ent(s, ref);

    cold_release(e->c);
    free(e->x);
    memset(e, 0, sizeof(*e));
    if (s->nfree == s->freecap) {
        size_t cap = s->freecap ? s->freecap * 2 : 64;
        uint32_t *g = realloc(s->free, cap * sizeof(*g));
        if (g == NULL)
            return; /* the entry is lost to reuse, not to correctness */
        s->free = g;
        s->freecap = cap;
    }
    s->free[s->nfree++] = ref;
}

/* Slot of id in s, or of the empty slot where it would go. Lock held. */
static size_t probe(const shard *s, const char *id, uint64_t h)
{
    size_t i = (h / SHARDS) & (s->cap - 1);

    while (s->slots[i] != 0 && (!slot_may_be(s->slots[i], h) ||
                                memcmp(ent(s, slot_ref(s->slots[i]))->id, id, KW_ID_LEN) != 0))
        i = (i + 1) & (s->cap - 1);
    return i;
}

static entry *find(shard *s, const char *id, uint64_t h)
{
    size_t i;

    if (s->cap == 0)
        return NULL;
    i = probe(s, id, h);
    return s->slots[i] ? ent(s, slot_ref(s->slots[i])) : NULL;
}

/* Resize the table to cap slots (a power of two, above n / 0.7). */
static int resize(shard *s, size_t cap)
{
    uint32_t *old = s->slots;
    size_t oldcap = s->cap;

    s->slots = calloc(cap, sizeof(*s->slots));
    if (s->slots == NULL) {
        s->slots = old;
        return -1;
    }
    s->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] != 0) {
            const char *id = ent(s, slot_ref(old[i]))->id;
            s->slots[probe(s, id, id_hash(id))] = old[i];
        }
    free(old);
    return 0;
}

/*
 * Write to every page of a fresh zeroed table now, on one thread. A loader
 * would otherwise read a page first (a probe), which maps the shared zero
 * page, then write it: a copy-on-write fault whose TLB flush interrupts
 * the other loader's core, once per page.
 */
static void touch(void *p, size_t len)
{
    volatile unsigned char *b = p;

    for (size_t i = 0; i < len; i += 4096)
        b[i] = 0;
}

static int grow(shard *s)
{
    return resize(s, s->cap ? s->cap * 2 : 16);
}

/* Remove slot i, re-placing the probe run after it. Lock held. */
static void remove_slot(shard *s, size_t i)
{
    entry_release(s, slot_ref(s->slots[i]));
    s->slots[i] = 0;
    s->n--;
    for (size_t j = (i + 1) & (s->cap - 1); s->slots[j] != 0; j = (j + 1) & (s->cap - 1)) {
        uint32_t r = s->slots[j];
        const char *id = ent(s, slot_ref(r))->id;
        s->slots[j] = 0;
        s->slots[probe(s, id, id_hash(id))] = r;
    }
}

/* A new entry for a row (its slot is the caller's to place). Lock held. */
static int entry_new(shard *s, const kw_key_row *row, uint32_t *ref)
{
    entry *e;

    if (entry_alloc(s, ref) != 0)
        return -1;
    e = ent(s, *ref);
    memcpy(e->id, row->rec.id, KW_ID_LEN);
    if (row->rec.rate_limit != 0 && row->rl_start_ms != 0 && ext_of(e) != NULL)
        e->x->rl = (kwi_rl){row->rl_start_ms, row->rl_count, row->rl_prev};
    return 0;
}

/* Point e at its cold block c and set the fields a verdict reads from the
 * row; the spends not yet written, which storage does not know of yet,
 * still count. Lock held. */
static void entry_set(entry *e, cold *c, const kw_key_row *row)
{
    e->c = c;
    memcpy(e->hash, row->hash, sizeof(e->hash));
    e->has_hash = (uint8_t)(row->has_hash != 0);
    e->enabled = (uint8_t)(row->rec.enabled != 0);
    e->expires_at = row->rec.expires_at;
    e->not_before = row->rec.not_before;
    e->credits = row->rec.credits;
    if (e->credits != KW_CREDITS_UNLIMITED && e->x != NULL) {
        e->credits -= e->x->spent + e->x->flushing;
        if (e->credits < 0)
            e->credits = 0;
    }
    e->last_used_at = row->rec.last_used_at;
    if (e->x != NULL && e->x->used_at > e->last_used_at)
        e->last_used_at = e->x->used_at;
}

/*
 * Put a row loaded from storage. An entry already there keeps its
 * rate-limit window (unless the limit changed) and the spends not yet
 * written; or, if only_new, is left as it is.
 */
static kw_rc put_row_locked(kw_index *idx, shard *s, uint64_t h, const kw_key_row *row,
                            int only_new)
{
    cold *c;
    entry *e;
    size_t i;
    uint32_t ref;

    if ((s->n + 1) * 10 > s->cap * 7 && grow(s) != 0)
        return KW_ERR_NOMEM;
    i = probe(s, row->rec.id, h);
    if (s->slots[i] != 0 && only_new)
        return KW_OK;
    if (s->slots[i] == 0 && atomic_load(&idx->keys) >= idx->max_keys)
        return KW_ERR_TOO_LARGE;
    if ((c = cold_new(idx, row, NULL)) == NULL)
        return KW_ERR_NOMEM;
    if (s->slots[i] != 0) {
        e = ent(s, slot_ref(s->slots[i]));
        if (e->x != NULL && (e->c->rate_limit != row->rec.rate_limit ||
                             e->c->rate_window_ms != row->rec.rate_window_ms))
            memset(&e->x->rl, 0, sizeof(e->x->rl));
        cold_release(e->c);
    } else {
        if (entry_new(s, row, &ref) != 0) {
            cold_release(c);
            return KW_ERR_NOMEM;
        }
        e = ent(s, ref);
        s->slots[i] = slot_make(h, ref);
        s->n++;
        atomic_fetch_add(&idx->keys, 1);
    }
    entry_set(e, c, row);
    return KW_OK;
}

static int indexed(kw_index *idx, const char *id)
{
    uint64_t h = id_hash(id);
    shard *s = shard_of(idx, h);
    int found;

    pthread_mutex_lock(&s->lock);
    found = find(s, id, h) != NULL;
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void drop_locked(kw_index *idx, shard *s, const char *id, uint64_t h)
{
    size_t i;

    if (s->cap && s->slots[i = probe(s, id, h)] != 0) {
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
        rc = put_row_locked(idx, s, h, &row, 0);
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
static void count_add(ext *x, int64_t bucket, int code, uint32_t n)
{
    if (x->cur.bucket != bucket) {
        if (x->cur.bucket != 0 && x->prev.bucket == 0) {
            x->prev = x->cur;
        } else if (x->cur.bucket != 0) {
            for (int i = 0; i < KW_VERDICT_COUNT; i++)
                x->prev.n[i] += x->cur.n[i];
        }
        memset(&x->cur, 0, sizeof(x->cur));
        x->cur.bucket = bucket;
    }
    x->cur.n[code] += n;
}

/* e (with an ext) has usage to write: flag it, and list it once. Lock held. */
static void mark_dirty(shard *s, entry *e)
{
    ext *x = e->x;

    x->dirty = 1;
    if (x->queued)
        return;
    if (s->ndirty == s->dirtycap) {
        size_t cap = s->dirtycap ? s->dirtycap * 2 : 64;
        char(*g)[KW_ID_LEN] = realloc(s->dirty, cap * sizeof(*g));
        if (g == NULL) {
            s->dirty_lost = 1;
            return;
        }
        s->dirty = g;
        s->dirtycap = cap;
    }
    memcpy(s->dirty[s->ndirty++], e->id, KW_ID_LEN);
    x->queued = 1;
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
    if ((e = find(s, id, h)) != NULL) {
        kw_key_record v;
        view(e, &v);
        rc = kwi_record_copy(out, &v);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

KW_API kw_rc kw_index_add(kw_index *idx, kw_ctx *ctx, const kw_key_record *rec,
                          const kw_secret *key)
{
    kw_key_parts parts;
    kw_key_row row;
    uint64_t h;
    shard *s;
    kw_rc rc;

    /* Only what a creation hands out: the key must be the record's. */
    if (!kw_key_parse(&parts, (const char *)kw_secret_cdata(key), kw_secret_len(key)) ||
        strcmp(parts.id, rec->id) != 0 || rec->revoked_at != 0 || rec->rotated_from[0] != '\0')
        return KW_ERR_INVALID;
    memset(&row, 0, sizeof(row));
    row.rec = *rec; /* borrowed strings: put_row_locked copies what it keeps */
    kwi_pepper_hmac(ctx, row.hash, kw_secret_cdata(key), kw_secret_len(key));
    row.has_hash = 1;
    /* If the key is there already, a sync loaded it from storage after the
     * commit: that row is at least as new as rec. */
    h = id_hash(rec->id);
    s = shard_of(idx, h);
    pthread_mutex_lock(&s->lock);
    rc = put_row_locked(idx, s, h, &row, 1);
    pthread_mutex_unlock(&s->lock);
    sodium_memzero(row.hash, sizeof(row.hash));
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
    if (e != NULL && e->x != NULL && e->x->dirty) {
        rc = ctx->store->ops->begin(ctx->store);
        if (rc == KW_OK)
            rc = ctx->store->ops->key_use(ctx->store, id, e->x->spent, e->x->used_at);
        rc = kwi_finish(ctx, rc);
        if (rc == KW_OK) {
            e->x->spent = 0;
            /* counts still to write */
            e->x->dirty = e->x->cur.bucket != 0 || e->x->prev.bucket != 0;
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

/*
 * Loading at open: a row's entry is made at once, but its slot is placed
 * LOAD_AHEAD rows later, the slot's cache line fetched meanwhile (a random
 * read in a table larger than the caches: most of a put otherwise). Ids
 * are unique in storage, so the slot is the first empty one from its home,
 * found without reading any entry. Keys are counted at the end of the
 * load, not in the one counter both loaders would fight over.
 */
#define LOAD_AHEAD 16

typedef struct pending {
    shard *s;
    uint64_t h;
    uint32_t ref;
} pending;

/* One loader's state: its index, the last scope set it found, and the
 * entries made whose slots are not placed yet (ring[made % LOAD_AHEAD]). */
typedef struct load_ctx {
    kw_index *idx;
    scopeset *hint;
    pending ring[LOAD_AHEAD];
    size_t made;
} load_ctx;

/* Place p's slot; or, if ok is 0 (the load failed), hand its entry back. */
static int place(const pending *p, int ok)
{
    shard *s = p->s;
    size_t i;

    pthread_mutex_lock(&s->lock);
    if (ok && (s->n + 1) * 10 > s->cap * 7 && grow(s) != 0)
        ok = 0; /* more rows than counted at open, and no memory for them */
    if (!ok) {
        entry_release(s, p->ref);
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    i = (p->h / SHARDS) & (s->cap - 1);
    while (s->slots[i] != 0)
        i = (i + 1) & (s->cap - 1);
    s->slots[i] = slot_make(p->h, p->ref);
    s->n++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* key_scan's visitor at open. */
static kw_rc load_row(void *arg, const kw_key_row *row)
{
    load_ctx *l = arg;
    pending *p = &l->ring[l->made % LOAD_AHEAD];
    uint64_t h = id_hash(row->rec.id);
    shard *s = shard_of(l->idx, h);
    uint32_t ref;
    cold *c;

    if (l->made >= LOAD_AHEAD) {
        int placed = place(p, 1) == 0;
        p->s = NULL; /* placed or handed back: the drain must not see it again */
        if (!placed)
            return KW_ERR_NOMEM;
    }
    if ((c = cold_new(l->idx, row, &l->hint)) == NULL)
        return KW_ERR_NOMEM;
    pthread_mutex_lock(&s->lock);
    if (entry_new(s, row, &ref) != 0) {
        pthread_mutex_unlock(&s->lock);
        cold_release(c);
        return KW_ERR_NOMEM;
    }
    entry_set(ent(s, ref), c, row);
    __builtin_prefetch(&s->slots[(h / SHARDS) & (s->cap - 1)], 1);
    pthread_mutex_unlock(&s->lock);
    *p = (pending){s, h, ref};
    l->made++;
    return KW_OK;
}

/* Load the rows at positions from (excluded) to end (included) through st. */
static kw_rc load_range(kw_index *idx, kw_store *st, int64_t from, int64_t end)
{
    load_ctx l = {.idx = idx};
    int64_t cursor = from;
    kw_rc rc = KW_OK;
    size_t n = SCAN_PAGE;

    while (rc == KW_OK && n == SCAN_PAGE)
        rc = st->ops->key_scan(st, &cursor, end, SCAN_PAGE, load_row, &l, &n);
    /* The slots still to place, oldest first. */
    for (size_t k = l.made > LOAD_AHEAD ? l.made - LOAD_AHEAD : 0; k < l.made; k++)
        if (l.ring[k % LOAD_AHEAD].s != NULL && place(&l.ring[k % LOAD_AHEAD], rc == KW_OK) != 0 &&
            rc == KW_OK)
            rc = KW_ERR_NOMEM;
    return rc;
}

/* Keys from which open loads on two threads (internal.h: tests lower it). */
size_t kwi_index_parallel_min = 50000;

/* The second half of a parallel load, on a connection of its own. */
typedef struct loader {
    kw_index *idx;
    kw_store *store;
    int64_t from, end;
    kw_rc rc;
} loader;

static void *loader_main(void *arg)
{
    loader *l = arg;

    l->rc = load_range(l->idx, l->store, l->from, l->end);
    return NULL;
}

/* Load every key: large stores on two threads (each half of the rows read
 * and put in on its own connection; the shards' locks keep them apart),
 * when the machine has a second core. */
static kw_rc load_all(kw_index *idx, kw_ctx *ctx, int64_t count)
{
    kw_store *st = ctx->store;
    loader l = {idx, NULL, 0, 0, KW_OK};
    int64_t end = INT64_MAX;
    pthread_t tid;
    kw_rc rc;

    if ((size_t)count < kwi_index_parallel_min || sysconf(_SC_NPROCESSORS_ONLN) < 2 ||
        st->ops->key_scan_end(st, &end) != KW_OK || st->ops->reopen(st, &l.store) != KW_OK)
        return load_range(idx, st, 0, end);
    l.from = end / 2;
    l.end = end;
    if (pthread_create(&tid, NULL, loader_main, &l) != 0) {
        l.store->ops->close(l.store);
        return load_range(idx, st, 0, end);
    }
    rc = load_range(idx, st, 0, end / 2);
    pthread_join(tid, NULL);
    if (rc == KW_OK && l.rc != KW_OK) {
        rc = l.rc;
        snprintf(st->errmsg, sizeof(st->errmsg), "%s", l.store->errmsg);
    }
    l.store->ops->close(l.store);
    return rc;
}

KW_API kw_rc kw_index_open(kw_index **out, kw_ctx *ctx, size_t max_keys)
{
    int64_t count = 0;
    kw_index *idx = calloc(1, sizeof(*idx));
    kw_rc rc;

    if (idx == NULL)
        return KW_ERR_NOMEM;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&idx->shards[i].lock, NULL);
    pthread_mutex_init(&idx->sync_lock, NULL);
    pthread_mutex_init(&idx->sets_lock, NULL);
    idx->max_keys = max_keys;
    idx->exact_spends = ctx->store->ops->exact_spends;
    atomic_store(&idx->reached_ms, mono_ms());
    /* Changes after this point are replayed by the first sync. */
    rc = kwi_audit_last_seq(ctx, &idx->audit_seq);
    /* The bound, and tables sized for the keys there are (no rehash while
     * loading), from the count: the loaders check neither. */
    if (rc == KW_OK && (rc = ctx->store->ops->key_count(ctx->store, &count)) != KW_OK) {
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    } else if (rc == KW_OK && (size_t)count > max_keys) {
        kwi_seterr(ctx, "%lld keys, more than %zu: raise the index limit", (long long)count,
                   max_keys);
        rc = KW_ERR_TOO_LARGE;
    } else if (rc == KW_OK && count > 0) {
        size_t per = (size_t)count / SHARDS + 1, cap = 16;
        while (per * 10 > cap * 7)
            cap *= 2;
        for (int i = 0; i < SHARDS && rc == KW_OK; i++)
            if (resize(&idx->shards[i], cap) != 0)
                rc = KW_ERR_NOMEM;
            else
                touch(idx->shards[i].slots, cap * sizeof(uint32_t));
    }
    if (rc == KW_OK) {
        rc = load_all(idx, ctx, count);
        for (int i = 0; i < SHARDS; i++)
            atomic_fetch_add(&idx->keys, idx->shards[i].n);
        if (rc != KW_OK)
            kwi_seterr(ctx, "%s", ctx->store->errmsg);
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
            if (s->slots[j] != 0) {
                entry *e = ent(s, slot_ref(s->slots[j]));
                cold_release(e->c); /* results may still hold it */
                free(e->x);
            }
        for (size_t j = 0; j < s->nchunks; j++)
            free(s->chunks[j]);
        free(s->chunks);
        free(s->free);
        free(s->slots);
        free(s->dirty);
        pthread_mutex_destroy(&s->lock);
    }
    pthread_mutex_destroy(&idx->sync_lock);
    for (size_t i = 0; i < idx->sets_cap; i++) /* the table's references */
        while (idx->sets[i] != NULL) {
            scopeset *set = idx->sets[i];
            idx->sets[i] = set->next;
            scopeset_release(set);
        }
    free(idx->sets);
    pthread_mutex_destroy(&idx->sets_lock);
    free(idx);
}

/* Take cost from e's own credits. Returns 1 if spent (or unlimited), 0 if
 * too few. Lock held. */
static int spend_here(shard *s, entry *e, int64_t cost, int64_t *remaining)
{
    if (e->credits == KW_CREDITS_UNLIMITED) {
        *remaining = KW_CREDITS_UNLIMITED;
        return 1;
    }
    *remaining = e->credits;
    if (e->credits < cost || ext_of(e) == NULL)
        return 0;
    e->credits -= cost;
    e->x->spent += cost;
    mark_dirty(s, e);
    *remaining = e->credits;
    return 1;
}

/* Spend from the key that holds the credits after a rotation (the new
 * one). Returns 1 if spent (or unlimited), 0 if too few; -1 if the pool is
 * missing. Takes each shard's lock in turn, never two at once. */
static int spend_pool(kw_index *idx, const char *from, int64_t cost, int64_t *remaining)
{
    char pool[KW_ID_LEN + 1];

    kwi_strlcpy(pool, from, sizeof(pool));
    for (int hop = 0; hop < CREDIT_HOPS; hop++) {
        uint64_t h = id_hash(pool);
        shard *s = shard_of(idx, h);
        entry *e;
        int ret = -1;

        pthread_mutex_lock(&s->lock);
        e = find(s, pool, h);
        if (e != NULL && e->c->pooled) {
            kwi_strlcpy(pool, cold_pool(e->c), sizeof(pool));
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        if (e != NULL)
            ret = spend_here(s, e, cost, remaining);
        pthread_mutex_unlock(&s->lock);
        return ret;
    }
    return -1;
}

/* Exact spends (several nodes): take cost from the credits in storage, one
 * atomic statement, from the key itself or, for a rotated key, from the
 * key at the end of its chain of successors (found in the index). Returns
 * 1 if spent (or unlimited), 0 if too few, -1 if storage failed or the
 * pool is gone (the caller denies). No lock held. */
static int spend_stored(kw_index *idx, kw_ctx *ctx, const char *id, const void *ref, int64_t cost,
                        int64_t *remaining)
{
    const cold *c = ref;
    char pool[KW_ID_LEN + 1];
    kw_rc rc;

    kwi_strlcpy(pool, c->pooled ? cold_pool(c) : id, sizeof(pool));
    for (int hop = 0; c->pooled && hop < CREDIT_HOPS; hop++) {
        uint64_t h = id_hash(pool);
        shard *s = shard_of(idx, h);
        entry *e;
        int pooled;

        pthread_mutex_lock(&s->lock);
        e = find(s, pool, h);
        pooled = e != NULL && e->c->pooled;
        if (pooled)
            kwi_strlcpy(pool, cold_pool(e->c), sizeof(pool));
        pthread_mutex_unlock(&s->lock);
        if (e == NULL) {
            kwi_seterr(ctx, "the credits of key %s are held by a key that is gone", id);
            return -1;
        }
        if (!pooled)
            break;
    }
    rc = kwi_store_rc(ctx, ctx->store->ops->key_spend(ctx->store, pool, cost, remaining));
    return rc == KW_OK ? 1 : rc == KW_ERR_CONFLICT ? 0 : -1;
}

/* Note a verification of e: its last use and its count. Lock held. */
static int note_use(shard *s, entry *e, kw_verdict code, int64_t now_ms)
{
    if (ext_of(e) == NULL)
        return -1;
    if (code == KW_VALID) {
        e->x->used_at = now_ms / 1000;
        e->last_used_at = e->x->used_at;
    }
    count_add(e->x, kwi_usage_bucket(now_ms / 1000), code, 1);
    mark_dirty(s, e);
    return 0;
}

KW_API kw_rc kw_index_verify(kw_index *idx, kw_ctx *ctx, const char *key, size_t len,
                             const kw_verify_request *req, kw_verify_result *out)
{
    static const kw_verify_request none = {.cost = 1};
    static const unsigned char dummy[32];
    static kwi_rl no_rl;
    unsigned char hash[32];
    int64_t now_ms = kwi_now_ms();
    const int64_t cost = req == NULL || req->cost == 0 ? 1 : req->cost;
    kw_key_parts parts;
    kw_verdict code;
    uint64_t h;
    shard *s;
    entry *e;
    kw_rc rc = KW_OK;

    if (req == NULL)
        req = &none;
    if (key == NULL || len > KW_VERIFY_INPUT_MAX || !kwi_key_shape(&parts, key, len))
        goto fallback;
    memset(out, 0, sizeof(*out));
    out->code = KW_MALFORMED;
    out->remaining = KW_CREDITS_UNLIMITED;
    for (size_t i = 0; i < req->nscopes; i++)
        if (!kw_scope_required_valid(req->scopes[i])) {
            kwi_seterr(ctx, "invalid required scope");
            return KW_ERR_INVALID;
        }
    kwi_pepper_hmac(ctx, hash, key, len);
    h = id_hash(parts.id);
    s = shard_of(idx, h);
    pthread_mutex_lock(&s->lock);
    e = find(s, parts.id, h);
    if (!kwi_eq32(hash, e != NULL ? e->hash : dummy) || e == NULL || !e->has_hash) {
        /* Only now the check: a key that matched was issued with a right
         * one. Unknown ids and wrong secrets both pay for it here. */
        int ours = kwi_key_check_ok(key, len);
        s->hits += (uint64_t)ours;
        pthread_mutex_unlock(&s->lock);
        if (!ours) {
            sodium_memzero(hash, sizeof(hash));
            goto fallback;
        }
        out->code = KW_NOT_FOUND;
        goto out;
    }
    s->hits++;
    /* The record, borrowed: the result holds a reference to its strings. */
    view(e, &out->key);
    atomic_fetch_add_explicit(&e->c->refs, 1, memory_order_relaxed);
    out->ref_ = e->c;
    out->found = 1;
    out->remaining = e->credits;
    if (e->c->rate_limit != 0 && ext_of(e) == NULL) {
        rc = KW_ERR_NOMEM;
    } else {
        code = kwi_decide(&out->key, e->x != NULL ? &e->x->rl : &no_rl, now_ms, req, out);
        if (code == KW_VALID && idx->exact_spends &&
            (e->c->pooled || e->credits != KW_CREDITS_UNLIMITED))
            code = KW_VERDICT_COUNT; /* spend in storage, below */
        else if (code == KW_VALID && !e->c->pooled)
            code = spend_here(s, e, cost, &out->remaining) ? KW_VALID : KW_USAGE_EXCEEDED;
        else if (code == KW_VALID)
            code = KW_VERDICT_COUNT; /* spend from the pool, below */
    }
    if (rc == KW_OK && code != KW_VERDICT_COUNT) {
        if (note_use(s, e, code, now_ms) != 0)
            rc = KW_ERR_NOMEM;
        out->key.credits = e->credits;
        out->key.last_used_at = e->last_used_at;
        out->code = code;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc != KW_OK || code != KW_VERDICT_COUNT)
        goto out;

    /* A rotated key spends from its successor's credits: another entry,
     * perhaps in another shard, so this one's lock is let go first. With
     * exact spends, storage takes them (either key's), no lock held. */
    switch (idx->exact_spends ? spend_stored(idx, ctx, parts.id, out->ref_, cost, &out->remaining)
                              : spend_pool(idx, cold_pool(out->ref_), cost, &out->remaining)) {
    case 1: code = KW_VALID; break;
    case 0: code = KW_USAGE_EXCEEDED; break;
    default: /* spend_stored has said why */
        if (!idx->exact_spends)
            kwi_seterr(ctx, "the credits of key %s are held by a key that is gone", parts.id);
        rc = KW_ERR_STORAGE;
        goto out;
    }
    pthread_mutex_lock(&s->lock);
    e = find(s, parts.id, h); /* reloaded or dropped meanwhile? */
    if (e == NULL) {
        code = KW_NOT_FOUND;
    } else {
        if (note_use(s, e, code, now_ms) != 0)
            rc = KW_ERR_NOMEM;
        /* Storage's balance, as of this spend: the freshest there is. */
        if (idx->exact_spends && !e->c->pooled && e->credits != KW_CREDITS_UNLIMITED &&
            out->remaining != KW_CREDITS_UNLIMITED)
            e->credits = out->remaining;
        out->key.credits = e->credits;
        out->key.last_used_at = e->last_used_at;
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
fallback: /* MALFORMED (a typo: a wrong check), a token, or an imported key */
    atomic_fetch_add_explicit(&idx->fallbacks, 1, memory_order_relaxed);
    return kw_verify(ctx, key, len, req, out);
}

/* Usage gathered in memory, taken out of the entries for writing. */
typedef struct usage {
    char id[KW_ID_LEN + 1];
    int64_t spent;
    int64_t used_at;
    counts c[2];
} usage;

/* Room for one more in u; 0 if out of memory. */
static int usage_room(usage **u, size_t count, size_t *cap)
{
    if (count == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        usage *g = realloc(*u, c * sizeof(**u));
        if (g == NULL)
            return 0;
        *u = g;
        *cap = c;
    }
    return 1;
}

/* Move e's pending usage into *to (the spends to `flushing`). Lock held. */
static void take(usage *to, entry *e)
{
    ext *x = e->x;

    memcpy(to->id, e->id, KW_ID_LEN);
    to->id[KW_ID_LEN] = '\0';
    to->spent = x->spent;
    to->used_at = x->used_at;
    to->c[0] = x->prev;
    to->c[1] = x->cur;
    memset(&x->prev, 0, sizeof(x->prev));
    memset(&x->cur, 0, sizeof(x->cur));
    x->flushing += x->spent;
    x->spent = 0;
    x->dirty = 0;
}

/* The usage of every listed key (every key, after a list that could not
 * grow). Out of memory, it stops early: what it took is written, the rest
 * stays pending for the next sync. */
static kw_rc collect(kw_index *idx, usage **out, size_t *n)
{
    size_t cap = 0, count = 0;
    usage *u = NULL;
    int full = 0;

    for (int i = 0; i < SHARDS && !full; i++) {
        shard *s = &idx->shards[i];
        size_t j;

        pthread_mutex_lock(&s->lock);
        if (s->dirty_lost) {
            for (j = 0; j < s->cap; j++) {
                entry *e;
                if (s->slots[j] == 0 || (e = ent(s, slot_ref(s->slots[j])))->x == NULL)
                    continue;
                e->x->queued = 0;
                if (!e->x->dirty)
                    continue;
                if (!usage_room(&u, count, &cap)) {
                    full = 1;
                    break;
                }
                take(&u[count++], e);
            }
            if (!full) {
                s->dirty_lost = 0;
                s->ndirty = 0;
            }
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        for (j = 0; j < s->ndirty; j++) {
            entry *e = find(s, s->dirty[j], id_hash(s->dirty[j]));
            if (e == NULL || e->x == NULL || !e->x->queued)
                continue; /* dropped since, or listed again later */
            if (e->x->dirty && !usage_room(&u, count, &cap)) {
                full = 1;
                break;
            }
            e->x->queued = 0;
            if (e->x->dirty)
                take(&u[count++], e);
        }
        /* what is left of the list waits for the next sync */
        if (j < s->ndirty)
            memmove(s->dirty, s->dirty + j, (s->ndirty - j) * sizeof(*s->dirty));
        s->ndirty -= j;
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
        if ((e = find(s, u[i].id, h)) != NULL && e->x != NULL) {
            ext *x = e->x;
            x->flushing -= u[i].spent;
            if (!ok) {
                x->spent += u[i].spent;
                if (u[i].used_at > x->used_at)
                    x->used_at = u[i].used_at;
                for (int k = 0; k < 2; k++)
                    for (int c = 0; c < KW_VERDICT_COUNT; c++)
                        if (u[i].c[k].bucket != 0 && u[i].c[k].n[c] != 0)
                            count_add(x, u[i].c[k].bucket, c, u[i].c[k].n[c]);
                mark_dirty(s, e);
            }
            ext_trim(e);
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
            if (strncmp(r->action, "key.", 4) != 0 || !kw_key_id_valid(r->target)) {
                /* Nothing to apply, but past it: a page of such records
                 * (failed admin calls, secret reads) read again and again
                 * held this loop forever. */
                idx->audit_seq = r->seq;
                continue;
            }
            /* A creation here (kw_index_add) is indexed already, from the
             * same row; any later change has its own record after this. */
            if (strcmp(r->action, "key.create") == 0 && indexed(idx, r->target)) {
                idx->audit_seq = r->seq;
                continue;
            }
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

/* Changes were read from storage (all of them, or all the index can hold). */
static void reached(kw_index *idx, kw_rc rc)
{
    if (rc == KW_OK || rc == KW_ERR_TOO_LARGE)
        atomic_store(&idx->reached_ms, mono_ms());
}

KW_API int64_t kw_index_sync_age_ms(kw_index *idx)
{
    int64_t age = mono_ms() - atomic_load(&idx->reached_ms);

    return age > 0 ? age : 0;
}

KW_API kw_rc kw_index_sync(kw_index *idx, kw_ctx *ctx)
{
    kw_rc rc, rc2;

    pthread_mutex_lock(&idx->sync_lock);
    rc = write_usage(idx, ctx);
    rc2 = apply_changes(idx, ctx);
    reached(idx, rc2);
    pthread_mutex_unlock(&idx->sync_lock);
    if (rc == KW_OK && rc2 == KW_OK)
        atomic_fetch_add(&idx->syncs, 1);
    return rc != KW_OK ? rc : rc2;
}

KW_API kw_rc kw_index_write_usage(kw_index *idx, kw_ctx *ctx)
{
    kw_rc rc;

    pthread_mutex_lock(&idx->sync_lock);
    rc = write_usage(idx, ctx);
    pthread_mutex_unlock(&idx->sync_lock);
    return rc;
}

KW_API kw_rc kw_index_follow(kw_index *idx, kw_ctx *ctx)
{
    kw_rc rc;

    pthread_mutex_lock(&idx->sync_lock);
    rc = apply_changes(idx, ctx);
    reached(idx, rc);
    pthread_mutex_unlock(&idx->sync_lock);
    if (rc == KW_OK)
        atomic_fetch_add(&idx->syncs, 1);
    return rc;
}

KW_API void kw_index_stats_get(kw_index *idx, kw_index_stats *out)
{
    out->keys = atomic_load(&idx->keys);
    out->hits = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&idx->shards[i].lock);
        out->hits += idx->shards[i].hits;
        pthread_mutex_unlock(&idx->shards[i].lock);
    }
    out->fallbacks = atomic_load(&idx->fallbacks);
    out->syncs = atomic_load(&idx->syncs);
    out->reloads = atomic_load(&idx->reloads);
}
