/*
 * Verification at scale (issue P3): for each number of keys N, the cost of
 * opening the in-memory index (a server's start-up), its memory per key,
 * and single-thread verification through it (kw_index_verify over a sample
 * of valid keys in round robin) with p50/p99 latency.
 *
 * usage: bench_scale [SECONDS] [N ...]   prints a Markdown table on stdout
 *        defaults: 2 seconds of verification; N = 10000 1000000 10000000
 *
 * The populated databases are kept between runs under $BENCH_DATA (default
 * build/bench/data, relative to the working directory), one directory per N:
 *
 *   keys-N/keyward.db  N keys (kw_key_create_many, batches of 1000), all
 *                      alike: owner "acme", two scopes, no limits
 *   keys-N/pepper      the pepper, written by kw_pepper_create (64 hex chars
 *                      and a newline, mode 0600): the format keyward reads, so
 *                      `keyward --db sqlite:keys-N/keyward.db --pepper-file
 *                      keys-N/pepper serve` opens the same database
 *   keys-N/sample      about 1000 of the keys (every N/1000-th created; ids
 *                      are random, so they are spread over the id space), one
 *                      per line, mode 0600
 *
 * A directory that exists is reused as is; population happens in keys-N.tmp
 * and is renamed at the end, so an interrupted run leaves no half database
 * behind. Delete a directory to populate it again. Populating takes a
 * while: 1M keys took about a minute on the 2-core machine (schema 3; it
 * was 4 minutes with schema 2's six random index inserts a key), falling as
 * the database grows; expect tens of minutes and 6.5 GB for 10M. These are bench-only keys: the
 * sample file and this program's plain-memory copies of the sample keys exist only so that valid
 * keys can be verified at all.
 *
 * Sizes that do not fit are skipped with a message (and a table row saying
 * so): disk needed is estimated at DISK_PER_KEY bytes per key (measured on
 * 1M keys; corrected within a run by what smaller N measured), memory at
 * HEAP_PER_KEY (likewise).
 *
 * Measured:
 * - open (ms): kw_index_open, wall time (two loader threads from 50000
 *   keys; bench/run.sh runs this program on one core, so they share it).
 * - SQLite's scan alone (ms): one thread reading every column of every
 *   row, as the loaders do, keeping nothing (scan_ms): the part of open
 *   that is SQLite's row decoding.
 * - bytes/key (heap): heap in use (mallinfo2: uordblks + hblkhd) with the
 *   index open minus heap in use after kw_index_free, divided by N. Taking
 *   "before" after the free leaves out SQLite's page cache, which the scan
 *   grows (up to 2 MB: 200 bytes a key at N = 10000) and which the index
 *   does not hold.
 * - bytes/key (RSS): resident set (/proc/self/statm) after kw_index_open
 *   minus before, divided by N (includes that page cache).
 * - disk bytes/key: size of keyward.db (and its WAL, if any) divided by N.
 * - verifications/s: kw_index_verify calls per second of wall time, each
 *   one timed with clock_gettime(CLOCK_MONOTONIC) (two clock reads a call,
 *   included in the rate); p50/p99 from a histogram of 10 ns buckets.
 *
 * Note: ~1000 sample keys in round robin is a working set that stays in the
 * CPU caches; a large N shows up through the index's tables, not through
 * cache misses on the records of many distinct keys.
 *
 * A second table gives the floor for random valid keys: the time of one
 * dependent random read over a buffer as large as N keys' hashes alone (see
 * chase_ns), and the rate a random valid key could reach at best if its
 * lookup cost the smallest N's time plus that one read. (The valid-key
 * column above repeats 1000 keys, which stay cached: not random keys.)
 */
#define _GNU_SOURCE /* nftw, mallinfo2 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include <keyward/keyward.h>

#include "bench_util.h"

#define SAMPLE 1000 /* sample keys kept per N */
/* Keys per kw_key_create_many while populating: each new key is a kw_secret
 * in locked memory until freed, so the batch bounds how many exist at once. */
#define BATCH 1000
#define DISK_PER_KEY 650.0  /* bytes on disk per key (637 measured on 1M keys) */
#define HEAP_PER_KEY 250.0  /* bytes of index per key (234 measured on 1M keys) */
#define HIST_NS 10          /* histogram bucket width */
#define HIST_BUCKETS 100000 /* up to 1 ms; slower calls go in the last */
#define PATH_LEN 4096
#define N_MAX 1000000000L

static const long default_sizes[] = {10000, 1000000, 10000000};
static const char *const scopes[] = {"orders:read", "orders:write"};

typedef char key_text[KW_KEY_MAX + 1];

static uint64_t hist[HIST_BUCKETS];

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* MemAvailable from /proc/meminfo, in bytes; 0 if unknown. */
static double mem_available(void)
{
    char line[256];
    double kib = 0;
    FILE *f = fopen("/proc/meminfo", "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1)
            break;
    fclose(f);
    return kib * 1024;
}

static double disk_available(const char *dir)
{
    struct statvfs vfs;

    if (statvfs(dir, &vfs) != 0)
        return 0;
    return (double)vfs.f_bavail * (double)vfs.f_frsize;
}

static double file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int mkdir_p(const char *dir)
{
    char p[PATH_LEN];

    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return -1;
    for (char *s = p + 1; *s != '\0'; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Write the sample keys, one per line, to a new file of mode 0600. */
static int sample_write(const char *path, const key_text *keys, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f;

    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", keys[i]);
    if (fflush(f) != 0 || fsync(fd) != 0) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Read the sample keys; *out is calloc'd (wipe it before freeing). */
static int sample_read(const char *path, key_text **out, size_t *n)
{
    key_text *keys = calloc(SAMPLE, sizeof(*keys));
    char line[KW_KEY_MAX + 3];
    size_t count = 0;
    FILE *f = fopen(path, "r");

    if (keys == NULL || f == NULL) {
        free(keys);
        if (f != NULL)
            fclose(f);
        return -1;
    }
    while (count < SAMPLE && fgets(line, sizeof(line), f) != NULL) {
        size_t len = strcspn(line, "\n");
        if (len == 0 || len > KW_KEY_MAX)
            continue;
        memcpy(keys[count], line, len);
        keys[count][len] = '\0';
        count++;
    }
    sodium_memzero(line, sizeof(line));
    fclose(f);
    if (count == 0) {
        free(keys);
        return -1;
    }
    *out = keys;
    *n = count;
    return 0;
}

/*
 * Populate dir (which must not exist) with n keys, through dir.tmp.
 * Returns 0, or -1 after a message.
 */
static int populate(const char *dir, long n)
{
    kw_open_opts oo = {.create = 1};
    char tmp[PATH_LEN], path[PATH_LEN + 16], url[PATH_LEN + 32];
    kw_key_params params[BATCH];
    kw_actor actors[BATCH];
    kw_secret *keys[BATCH];
    key_text *sample = calloc(SAMPLE, sizeof(*sample));
    long every = n / SAMPLE > 0 ? n / SAMPLE : 1, done = 0;
    size_t nsample = 0;
    kw_secret *pepper = NULL;
    kw_ctx *ctx = NULL;
    double t0 = now_s(), shown = t0;
    int ret = -1;
    kw_rc rc;

    snprintf(tmp, sizeof(tmp), "%s.tmp", dir);
    if (sample == NULL || rm_rf(tmp) != 0 || mkdir(tmp, 0700) != 0) {
        fprintf(stderr, "bench_scale: cannot make %s\n", tmp);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/pepper", tmp);
    if ((rc = kw_pepper_create(&pepper, path)) != KW_OK) {
        fprintf(stderr, "bench_scale: %s: %s\n", path, kw_strerror(rc));
        goto out;
    }
    snprintf(url, sizeof(url), "sqlite:%s/keyward.db", tmp);
    if ((rc = kw_open(&ctx, url, pepper, &oo)) != KW_OK) {
        fprintf(stderr, "bench_scale: %s: %s\n", url, kw_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < BATCH; i++) {
        kw_key_params_init(&params[i]);
        params[i].owner = "acme";
        params[i].name = "bench";
        params[i].scopes = scopes;
        params[i].nscopes = sizeof(scopes) / sizeof(scopes[0]);
        actors[i] = (kw_actor){"bench", "local"};
    }
    while (done < n) {
        size_t b = n - done < BATCH ? (size_t)(n - done) : BATCH;
        double t;

        rc = kw_key_create_many(ctx, params, actors, b, keys, NULL, NULL);
        if (rc != KW_OK) {
            fprintf(stderr, "bench_scale: creating keys: %s (%s)\n", kw_strerror(rc),
                    kw_errmsg(ctx));
            goto out;
        }
        for (size_t i = 0; i < b; i++) {
            /* Bench-only: a plain-memory copy of every N/1000-th key. */
            if ((done + (long)i) % every == 0 && nsample < SAMPLE) {
                size_t len = kw_secret_len(keys[i]);
                memcpy(sample[nsample], kw_secret_cdata(keys[i]), len);
                sample[nsample++][len] = '\0';
            }
            kw_secret_free(keys[i]); /* locked memory: never hold many */
        }
        done += (long)b;
        if ((t = now_s()) - shown >= 5 || done == n) {
            double rate = (double)done / (t - t0);
            fprintf(stderr, "bench_scale: keys-%ld: %ld keys (%.0f%%), %.0f keys/s, %.0f s left\n",
                    n, done, 100.0 * (double)done / (double)n, rate, (double)(n - done) / rate);
            shown = t;
        }
    }
    kw_close(ctx);
    ctx = NULL;
    snprintf(path, sizeof(path), "%s/sample", tmp);
    if (sample_write(path, sample, nsample) != 0) {
        fprintf(stderr, "bench_scale: cannot write %s\n", path);
        goto out;
    }
    if (rename(tmp, dir) != 0) {
        fprintf(stderr, "bench_scale: cannot rename %s to %s\n", tmp, dir);
        goto out;
    }
    ret = 0;
out:
    kw_close(ctx);
    kw_secret_free(pepper);
    if (sample != NULL)
        sodium_memzero(sample, SAMPLE * sizeof(*sample));
    free(sample);
    return ret;
}

typedef struct result {
    double open_ms, scan_ms, heap_per_key, rss_per_key, disk_per_key;
    double rate, p50_us, p99_us;
    double miss_rate; /* unknown ids spread over the whole table */
    size_t keys;
} result;

/* Well-formed keys with random ids (unknown, almost surely): their lookups
 * land all over the index's tables, so that, unlike the sample's 1000 keys,
 * they show what the size of the index costs once it outgrows the caches. */
#define MISSES 65536

static double miss_rate(kw_index *idx, kw_ctx *ctx, double seconds)
{
    static char keys[MISSES][64];
    const size_t plen = strlen(KW_DEFAULT_PREFIX), len = plen + 1 + KW_BODY_LEN;
    uint64_t calls = 0;
    double t0, t;

    for (size_t i = 0; i < MISSES; i++) {
        memcpy(keys[i], KW_DEFAULT_PREFIX "_", plen + 1);
        kw_base62_random(keys[i] + plen + 1, KW_ID_LEN + KW_SECRET_LEN);
        kw_key_check(keys[i] + len - KW_CHECK_LEN, keys[i], len - KW_CHECK_LEN);
    }
    t0 = now_s();
    do {
        for (size_t i = 0; i < MISSES; i++) {
            kw_verify_result res;
            if (kw_index_verify(idx, ctx, keys[i], len, NULL, &res) != KW_OK ||
                res.code != KW_NOT_FOUND) {
                fprintf(stderr, "bench_scale: a random key gave %s\n", kw_verdict_name(res.code));
                return -1;
            }
            kw_verify_result_clear(&res);
        }
        calls += MISSES;
    } while ((t = now_s() - t0) < seconds);
    return (double)calls / t;
}

/*
 * The floor under "open": SQLite alone, on one thread, reading every key
 * column of every row in storage order as the loaders' statement does
 * (lib/store/sqlite.c, ST_KEY_SCAN), and keeping nothing. kw_index_open
 * reads the same rows on two threads and also builds the index. Returns
 * milliseconds, or -1.
 */
static const char scan_sql[] =
    "SELECT id, prefix, key_hash, legacy_sha256, owner, name, scopes, meta, created_at, "
    "not_before, expires_at, last_used_at, enabled, revoked_at, credits, credits_from, "
    "rate_limit, rate_window_ms, rl_start_ms, rl_count, rl_prev, rotated_from, rotated_to, "
    "external_id, rowid FROM keys WHERE rowid > ?1 ORDER BY rowid";

static double scan_ms(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    volatile size_t sink = 0;
    double t0, t = -1;
    int rc;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, scan_sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_scale: %s: %s\n", path, sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, 0);
    t0 = now_s();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        for (int i = 0; i < 25; i++)
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: sink += (size_t)sqlite3_column_int64(st, i); break;
            case SQLITE_TEXT: sink += strlen((const char *)sqlite3_column_text(st, i)); break;
            case SQLITE_BLOB: sink += (size_t)sqlite3_column_bytes(st, i); break;
            default: break;
            }
    if (rc == SQLITE_DONE)
        t = (now_s() - t0) * 1000;
    else
        fprintf(stderr, "bench_scale: scan of %s: %s\n", path, sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    (void)sink;
    return t;
}

/*
 * The floor under random valid keys: nanoseconds per dependent random read
 * over a buffer of `bytes` (one 64-byte node per cache line, linked in one
 * random cycle, so no read can start before the previous one ends and no
 * prefetcher can guess it). A valid key's lookup must read the key's hash,
 * and N keys' hashes take 32 * N bytes whatever the layout: at 10M, far
 * more than any cache. (An unknown id need not: a table of small tags, as
 * the index's slots are, can answer most misses.) Returns -1 if the buffer
 * cannot be had.
 */
typedef struct node {
    size_t next;
    char pad[64 - sizeof(size_t)];
} node;

static double chase_ns(size_t bytes, double seconds)
{
    size_t n = bytes / sizeof(node), p = 0;
    uint64_t steps = 0;
    node *v;
    double t0, t;

    if (n < 2 || n > UINT32_MAX || (v = malloc(n * sizeof(node))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i].next = i;
    /* Sattolo: a uniformly random permutation that is one cycle. */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = randombytes_uniform((uint32_t)i), x = v[i].next;
        v[i].next = v[j].next;
        v[j].next = x;
    }
    t0 = now_s();
    do {
        for (int k = 0; k < 100000; k++)
            p = v[p].next;
        steps += 100000;
    } while ((t = now_s() - t0) < seconds);
    free(v);
    if (p == n) /* never: keeps the chase from being optimised away */
        return -1;
    return t * 1e9 / (double)steps;
}

static double percentile_us(uint64_t total, double q)
{
    uint64_t want = (uint64_t)((double)total * q), seen = 0;

    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want)
            return (double)(i + 1) * HIST_NS / 1000.0; /* the bucket's upper edge */
    }
    return (double)HIST_BUCKETS * HIST_NS / 1000.0;
}

/* Open the index on dir's database and measure. Returns 0, or -1 after a message. */
static int measure(const char *dir, long n, double seconds, result *r)
{
    char path[PATH_LEN + 16], url[PATH_LEN + 32];
    kw_secret *pepper = NULL;
    key_text *sample = NULL;
    size_t nsample = 0, heap0, heap_open, heap_free, rss0, rss1;
    kw_index_stats stats;
    kw_index *idx = NULL;
    kw_ctx *ctx = NULL;
    uint64_t calls = 0;
    double t0, t;
    int ret = -1;
    kw_rc rc;

    snprintf(path, sizeof(path), "%s/pepper", dir);
    if ((rc = kw_pepper_load(&pepper, path)) != KW_OK) {
        fprintf(stderr, "bench_scale: %s: %s\n", path, kw_strerror(rc));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/keyward.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    rc = kw_open(&ctx, url, pepper, NULL);
    kw_secret_free(pepper);
    if (rc != KW_OK) {
        fprintf(stderr, "bench_scale: %s: %s\n", url, kw_strerror(rc));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/sample", dir);
    if (sample_read(path, &sample, &nsample) != 0) {
        fprintf(stderr, "bench_scale: cannot read %s\n", path);
        goto out;
    }

    fprintf(stderr, "bench_scale: keys-%ld: opening the index...\n", n);
    heap0 = heap_in_use();
    rss0 = rss_bytes();
    t0 = now_s();
    rc = kw_index_open(&idx, ctx, (size_t)n * 2 + 1000);
    t = now_s() - t0;
    if (rc != KW_OK) {
        fprintf(stderr, "bench_scale: kw_index_open: %s (%s)\n", kw_strerror(rc), kw_errmsg(ctx));
        goto out;
    }
    heap_open = heap_in_use();
    rss1 = rss_bytes();
    kw_index_stats_get(idx, &stats);
    if (stats.keys != (size_t)n)
        fprintf(stderr, "bench_scale: keys-%ld holds %zu keys; per-key figures use %zu\n", n,
                stats.keys, stats.keys);
    r->keys = stats.keys > 0 ? stats.keys : 1;
    r->open_ms = t * 1000;
    r->rss_per_key = ((double)rss1 - (double)rss0) / (double)r->keys;

    /* Every sample key must be VALID (and this warms the caches). */
    for (size_t i = 0; i < nsample; i++) {
        kw_verify_result res;
        if (kw_index_verify(idx, ctx, sample[i], strlen(sample[i]), NULL, &res) != KW_OK ||
            res.code != KW_VALID) {
            fprintf(stderr, "bench_scale: sample key %zu of keys-%ld is not VALID\n", i, n);
            goto out;
        }
        kw_verify_result_clear(&res);
    }
    fprintf(stderr, "bench_scale: keys-%ld: verifying %zu keys in round robin...\n", n, nsample);
    memset(hist, 0, sizeof(hist));
    t0 = now_s();
    do {
        for (size_t i = 0; i < nsample; i++) {
            kw_verify_result res;
            uint64_t a = now_ns(), d;
            kw_rc vrc = kw_index_verify(idx, ctx, sample[i], strlen(sample[i]), NULL, &res);
            d = (now_ns() - a) / HIST_NS;
            if (vrc != KW_OK || res.code != KW_VALID) {
                fprintf(stderr, "bench_scale: a sample key gave %s\n", kw_verdict_name(res.code));
                goto out;
            }
            kw_verify_result_clear(&res);
            hist[d < HIST_BUCKETS ? d : HIST_BUCKETS - 1]++;
        }
        calls += nsample;
    } while ((t = now_s() - t0) < seconds);
    r->rate = (double)calls / t;
    r->p50_us = percentile_us(calls, 0.50);
    r->p99_us = percentile_us(calls, 0.99);
    fprintf(stderr, "bench_scale: keys-%ld: verifying random unknown ids...\n", n);
    if ((r->miss_rate = miss_rate(idx, ctx, seconds)) < 0)
        goto out;

    kw_index_free(idx);
    idx = NULL;
    heap_free = heap_in_use();
    r->heap_per_key = ((double)heap_open - (double)heap_free) / (double)r->keys;
    fprintf(stderr,
            "bench_scale: keys-%ld: heap %+.1f MB over kw_index_open (with SQLite's page "
            "cache), %.1f MB freed by kw_index_free (the index)\n",
            n, ((double)heap_open - (double)heap0) / 1e6,
            ((double)heap_open - (double)heap_free) / 1e6);
    snprintf(path, sizeof(path), "%s/keyward.db", dir);
    fprintf(stderr, "bench_scale: keys-%ld: SQLite alone: scanning every row...\n", n);
    if ((r->scan_ms = scan_ms(path)) < 0)
        goto out;
    r->disk_per_key = file_size(path);
    snprintf(path, sizeof(path), "%s/keyward.db-wal", dir);
    r->disk_per_key = (r->disk_per_key + file_size(path)) / (double)r->keys;
    ret = 0;
out:
    kw_index_free(idx);
    kw_close(ctx);
    if (sample != NULL)
        sodium_memzero(sample, SAMPLE * sizeof(*sample));
    free(sample);
    return ret;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? strtod(argv[1], NULL) : 2.0;
    const char *data = getenv("BENCH_DATA");
    double disk_est = DISK_PER_KEY, heap_est = HEAP_PER_KEY, base_rate = 0, base_miss = 0;
    long base_n = 0, *sizes;
    size_t nsizes, nmeasured = 0;
    result *results;

    if (!(seconds > 0)) {
        fprintf(stderr, "usage: bench_scale [SECONDS] [N ...]\n");
        return 2;
    }
    nsizes = argc > 2 ? (size_t)(argc - 2) : sizeof(default_sizes) / sizeof(default_sizes[0]);
    sizes = calloc(nsizes, sizeof(*sizes));
    results = calloc(nsizes, sizeof(*results));
    if (sizes == NULL || results == NULL)
        return 2;
    for (size_t i = 0; i < nsizes; i++) {
        char *end;
        sizes[i] = argc > 2 ? strtol(argv[i + 2], &end, 10) : default_sizes[i];
        if (argc > 2 && (*end != '\0' || sizes[i] < 1 || sizes[i] > N_MAX)) {
            fprintf(stderr, "bench_scale: N must be 1..%ld, not '%s'\n", N_MAX, argv[i + 2]);
            return 2;
        }
    }
    qsort(sizes, nsizes, sizeof(*sizes), cmp_long);
    if (data == NULL || data[0] == '\0')
        data = "build/bench/data";
    /* The cached databases' pepper is in their pepper files: KEYWARD_PEPPER
     * would override it (kw_pepper_load) and fail the pepper check. */
    unsetenv("KEYWARD_PEPPER");
    if (kw_init() != KW_OK || mkdir_p(data) != 0) {
        fprintf(stderr, "bench_scale: cannot make %s\n", data);
        return 3;
    }

    printf("| verification at scale (1 thread) N | open (ms) | SQLite's scan alone (ms) "
           "| bytes/key (heap) | bytes/key (RSS) "
           "| disk bytes/key | verifications/s | vs smallest N | p50 µs | p99 µs "
           "| unknown ids/s | vs smallest N |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (size_t i = 0; i < nsizes; i++) {
        long n = sizes[i];
        char dir[PATH_LEN];
        double need_mem = (double)n * heap_est * 1.3, avail_mem = mem_available();
        result r;

        if (i > 0 && n == sizes[i - 1])
            continue;
        if (snprintf(dir, sizeof(dir), "%s/keys-%ld", data, n) >= (int)sizeof(dir))
            return 3;
        if (avail_mem > 0 && need_mem > avail_mem) {
            fprintf(stderr,
                    "bench_scale: skipping N = %ld: the index needs about %.1f GB of memory, "
                    "%.1f GB available\n",
                    n, need_mem / 1e9, avail_mem / 1e9);
            printf("| %ld | skipped: needs ~%.1f GB of memory, %.1f GB available | | | | | | | | | "
                   "| |\n",
                   n, need_mem / 1e9, avail_mem / 1e9);
            continue;
        }
        if (!exists(dir)) {
            double need = (double)n * disk_est * 1.2 + 256e6, avail = disk_available(data);
            if (need > avail) {
                fprintf(stderr,
                        "bench_scale: skipping N = %ld: populating needs about %.1f GB of disk "
                        "in %s, %.1f GB free\n",
                        n, need / 1e9, data, avail / 1e9);
                printf(
                    "| %ld | skipped: needs ~%.1f GB of disk, %.1f GB free | | | | | | | | | | |\n",
                    n, need / 1e9, avail / 1e9);
                continue;
            }
            fprintf(stderr, "bench_scale: populating %s (about %.2f GB on disk)...\n", dir,
                    (double)n * disk_est / 1e9);
            if (populate(dir, n) != 0)
                return 4;
        } else {
            fprintf(stderr, "bench_scale: reusing %s\n", dir);
        }
        if (measure(dir, n, seconds, &r) != 0)
            return 5;
        if (base_n == 0) {
            base_n = n;
            base_rate = r.rate;
            base_miss = r.miss_rate;
        }
        /* Better estimates for the larger sizes to come. */
        if (r.keys >= 100000) {
            disk_est = r.disk_per_key;
            heap_est = r.heap_per_key;
        }
        printf("| %ld | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | %.2f "
               "|\n",
               n, r.open_ms, r.scan_ms, r.heap_per_key, r.rss_per_key, r.disk_per_key, r.rate,
               r.rate / base_rate, r.p50_us, r.p99_us, r.miss_rate, r.miss_rate / base_miss);
        fflush(stdout);
        results[nmeasured++] = r;
    }

    /* What memory alone allows a random valid key: one read of its 32-byte
     * hash from among N (the least any index of N keys holds), added to
     * the smallest N's cost of a valid key, where everything is cached. */
    if (nmeasured > 0) {
        printf("\n| floor for random valid keys: keys | their hashes alone, bytes | one random "
               "read among them, ns | at most, valid keys/s | at most, vs smallest N |\n");
        printf("|---:|---:|---:|---:|---:|\n");
    }
    for (size_t i = 0; i < nmeasured; i++) {
        const result *r = &results[i];
        size_t bytes = r->keys * 32;
        double ns = chase_ns(bytes, seconds / 2), cap;

        if (ns < 0) {
            printf("| %zu | %zu | no memory for the probe | | |\n", r->keys, bytes);
            continue;
        }
        cap = 1.0 / (1.0 / base_rate + ns * 1e-9);
        printf("| %zu | %zu | %.1f | %.0f | %.2f |\n", r->keys, bytes, ns, cap, cap / base_rate);
        fflush(stdout);
    }
    free(results);
    free(sizes);
    return 0;
}
