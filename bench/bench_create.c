/*
 * Key creation speed (issue P3): keys per second through the library, one
 * durable transaction per key (kw_key_create) and n keys per transaction
 * (kw_key_create_many with batches of 16, 64 and 256), each beside two
 * references of plain SQLite inserts measured in the same run: rows of the
 * same size into keyward's own `keys` table (and its indexes) of a database
 * keyward created, with the pragmas keyward uses (WAL, synchronous=FULL),
 * one transaction per batch of the same size; and the same with an audit
 * row of keyward's size written with each key row, as keyward does.
 *
 * What keyward does beyond the second reference, per key: generating the
 * key (CSPRNG, locked memory), its peppered HMAC, the audit record's JSON
 * detail and MAC, and the chain head. Each row alternates the two
 * sides in short rounds (SECONDS_PER_ROW in all for each side). Every
 * database is fresh and lives in a temporary directory under /tmp, removed
 * at the end.
 *
 * usage: bench_create [SECONDS_PER_ROW]   prints a Markdown table on stdout
 *        bench_create --cpu N SECONDS     prints one line: the CPU microseconds
 *                                         (user and system) plain SQLite spends
 *                                         per key writing key and audit rows, N
 *                                         keys per transaction, and its keys/s
 *                                         (bench/http.sh's floor for creation);
 *                                         then the same two numbers for
 *                                         kw_key_create_many at N a commit
 */
#define _GNU_SOURCE /* nftw, mkdtemp */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include <keyward/keyward.h>

#include "bench_util.h"

#define BATCH_MAX 256
#define ROUNDS 4     /* each row alternates keyward and SQLite this many times */
#define PATH_LEN 256 /* the temporary directory's paths are short */

static const size_t batches[] = {1, 16, 64, 256};

/* The settings of every key, and the same values in the reference's rows. */
static const char *const scopes[] = {"orders:read", "orders:write"};
#define OWNER "acme"
#define NAME "bench"
#define SCOPES_TEXT "orders:read orders:write" /* keyward stores scopes space-separated */
#define META "{}"

/* Every column, as keyward's insert binds them for a new key. */
static const char insert_sql[] =
    "INSERT INTO keys (id, prefix, key_hash, legacy_sha256, owner, name, scopes, meta, "
    "created_at, not_before, expires_at, last_used_at, enabled, revoked_at, credits, "
    "credits_from, rate_limit, rate_window_ms, rl_start_ms, rl_count, rl_prev, rotated_from, "
    "rotated_to, external_id) VALUES (?1, 'kw_live', ?2, NULL, '" OWNER "', '" NAME "', "
    "'" SCOPES_TEXT "', '" META "', ?3, 0, 0, 0, 1, 0, NULL, NULL, 0, 0, 0, 0, 0, NULL, NULL, "
    "NULL)";

/* The audit record keyward writes with each new key: its detail is the
 * record's settings as JSON (this one as long as keyward's for these keys),
 * its mac 32 bytes. */
#define DETAIL                                                                                     \
    "{\"id\":\"WcxgxY5NWzZc\",\"prefix\":\"kw_live\",\"owner\":\"acme\",\"name\":\"bench\","       \
    "\"scopes\":[\"orders:read\",\"orders:write\"],\"meta\":{},\"created_at\":"                    \
    "\"2026-11-28T18:47:59Z\",\"not_before\":null,\"expires_at\":null,\"enabled\":true,"           \
    "\"revoked_at\":null,\"credits\":null,\"ratelimit\":null,\"rotated_from\":null,"               \
    "\"rotated_to\":null,\"legacy\":false,\"external_id\":null}"
static const char audit_sql[] =
    "INSERT INTO audit (at, actor, action, target, client, result, detail, mac) VALUES (?3, "
    "'bench', 'key.create', ?1, 'local', 'ok', '" DETAIL "', ?2)";

/* Remove a database and its WAL and shared-memory files. */
static void db_remove(const char *path)
{
    char p[PATH_LEN + 8];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static kw_key_params params[BATCH_MAX];
static kw_actor actors[BATCH_MAX];

static kw_ctx *keyward_open(const char *path, const kw_secret *pepper)
{
    kw_open_opts oo = {.create = 1};
    char url[PATH_LEN + 8];
    kw_ctx *ctx;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    if (kw_open(&ctx, url, pepper, &oo) != KW_OK) {
        fprintf(stderr, "bench_create: cannot create %s\n", path);
        exit(3);
    }
    return ctx;
}

/* keyward: `batch` keys per transaction (kw_key_create when 1) for about
 * `seconds`; adds the keys made to *n and returns the time taken. */
static double keyward_run(kw_ctx *ctx, size_t batch, double seconds, unsigned long *n)
{
    kw_secret *keys[BATCH_MAX];
    double t0 = now_s(), t;

    do {
        kw_rc rc = batch == 1 ? kw_key_create(ctx, &params[0], &actors[0], &keys[0], NULL)
                              : kw_key_create_many(ctx, params, actors, batch, keys, NULL, NULL);
        if (rc != KW_OK) {
            fprintf(stderr, "bench_create: creating keys: %s (%s)\n", kw_strerror(rc),
                    kw_errmsg(ctx));
            exit(4);
        }
        /* The keys are not needed: free them at once (each is locked memory). */
        for (size_t i = 0; i < batch; i++)
            kw_secret_free(keys[i]);
        *n += batch;
    } while ((t = now_s() - t0) < seconds);
    return t;
}

static void sq_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_create: sqlite: %s: %s\n", what, sqlite3_errmsg(db));
        exit(5);
    }
}

/* Run a prepared statement to completion and reset it. */
static void sq_step(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sq_check(db, rc, what);
}

/* A reference: a plain SQLite connection and its statements. */
typedef struct plain {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *insert, *audit;
} plain;

/* The reference writes into a database keyward made (kw_open), so that its
 * keys table and indexes are keyward's own, whatever the schema version. */
static void plain_open(plain *p, const char *path, const kw_secret *pepper)
{
    const unsigned flags = SQLITE_PREPARE_PERSISTENT;
    sqlite3 *db;

    kw_close(keyward_open(path, pepper));

    sq_check(NULL, sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), "open");
    /* The pragmas keyward sets (lib/store/sqlite.c). */
    sq_check(db, sqlite3_busy_timeout(db, 5000), "busy_timeout");
    sq_check(db, sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), "foreign_keys");
    sq_check(db, sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), "journal_mode");
    sq_check(db, sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL), "synchronous");
    sq_check(db, sqlite3_prepare_v3(db, "BEGIN IMMEDIATE", -1, flags, &p->begin, NULL), "prepare");
    sq_check(db, sqlite3_prepare_v3(db, "COMMIT", -1, flags, &p->commit, NULL), "prepare");
    sq_check(db, sqlite3_prepare_v3(db, insert_sql, -1, flags, &p->insert, NULL), "prepare");
    sq_check(db, sqlite3_prepare_v3(db, audit_sql, -1, flags, &p->audit, NULL), "prepare");
    p->db = db;
}

static void plain_close(plain *p)
{
    sqlite3_finalize(p->begin);
    sqlite3_finalize(p->commit);
    sqlite3_finalize(p->insert);
    sqlite3_finalize(p->audit);
    sqlite3_close(p->db);
}

/* Plain SQLite: `batch` key rows (and, if audit, as many audit rows) per
 * transaction for about `seconds`; adds the keys inserted to *n and returns
 * the time taken. */
static double plain_run(plain *p, size_t batch, int audit, double seconds, unsigned long *n)
{
    double t0 = now_s(), t;

    do {
        sq_step(p->db, p->begin, "begin");
        for (size_t i = 0; i < batch; i++) {
            char id[KW_ID_LEN];
            unsigned char hash[32];

            /* Values like keyward's: a random 12-char id, a random 32-byte hash. */
            kw_base62_random(id, sizeof(id));
            randombytes_buf(hash, sizeof(hash));
            sqlite3_bind_text(p->insert, 1, id, (int)sizeof(id), SQLITE_STATIC);
            sqlite3_bind_blob(p->insert, 2, hash, (int)sizeof(hash), SQLITE_STATIC);
            sqlite3_bind_int64(p->insert, 3, kw_now());
            sq_step(p->db, p->insert, "insert");
            if (audit) {
                randombytes_buf(hash, sizeof(hash)); /* stands for the record's MAC */
                sqlite3_bind_text(p->audit, 1, id, (int)sizeof(id), SQLITE_STATIC);
                sqlite3_bind_blob(p->audit, 2, hash, (int)sizeof(hash), SQLITE_STATIC);
                sqlite3_bind_int64(p->audit, 3, kw_now());
                sq_step(p->db, p->audit, "audit");
            }
        }
        sq_step(p->db, p->commit, "commit");
        *n += batch;
    } while ((t = now_s() - t0) < seconds);
    return t;
}

static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --cpu: the CPU per key (checkpoints included) of plain SQLite writing key
 * and audit rows, then of kw_key_create_many, `batch` keys per transaction,
 * each on a fresh database in dir. */
static int cpu_per_key(const char *dir, const kw_secret *pepper, size_t batch, double seconds)
{
    char path[PATH_LEN];
    unsigned long n = 0;
    double c0, t;
    kw_ctx *ctx;
    plain p;

    snprintf(path, sizeof(path), "%s/sqlite-cpu.db", dir);
    plain_open(&p, path, pepper);
    c0 = cpu_s();
    t = plain_run(&p, batch, 1, seconds, &n);
    c0 = cpu_s() - c0;
    plain_close(&p);
    db_remove(path);
    printf("%.1f %.0f", c0 * 1e6 / (double)n, (double)n / t);

    snprintf(path, sizeof(path), "%s/keyward-cpu.db", dir);
    ctx = keyward_open(path, pepper);
    n = 0;
    c0 = cpu_s();
    t = keyward_run(ctx, batch, seconds, &n);
    c0 = cpu_s() - c0;
    kw_close(ctx);
    db_remove(path);
    printf(" %.1f %.0f\n", c0 * 1e6 / (double)n, (double)n / t);
    return 0;
}

int main(int argc, char **argv)
{
    int cpu = argc == 4 && strcmp(argv[1], "--cpu") == 0;
    double seconds = strtod(cpu ? argv[3] : argc > 1 ? argv[1] : "2", NULL);
    long cpu_batch = cpu ? strtol(argv[2], NULL, 10) : 0;
    char dir[] = "/tmp/kwbench.XXXXXX";
    kw_secret *pepper;
    int rc;

    if ((!cpu && argc > 2) || !(seconds > 0) || (cpu && (cpu_batch < 1 || cpu_batch > BATCH_MAX))) {
        fprintf(stderr,
                "usage: bench_create [SECONDS_PER_ROW]\n"
                "       bench_create --cpu KEYS_PER_TRANSACTION(1-%d) SECONDS\n",
                BATCH_MAX);
        return 2;
    }
    if (kw_init() != KW_OK || mkdtemp(dir) == NULL ||
        kw_secret_new(&pepper, KW_PEPPER_LEN) != KW_OK)
        return 2;
    randombytes_buf(kw_secret_data(pepper), KW_PEPPER_LEN);
    for (size_t i = 0; i < BATCH_MAX; i++) {
        kw_key_params_init(&params[i]);
        params[i].owner = OWNER;
        params[i].name = NAME;
        params[i].scopes = scopes;
        params[i].nscopes = sizeof(scopes) / sizeof(scopes[0]);
        actors[i] = (kw_actor){"bench", "local"};
    }
    if (cpu) {
        rc = cpu_per_key(dir, pepper, (size_t)cpu_batch, seconds);
        kw_secret_free(pepper);
        return rm_rf(dir) == 0 ? rc : 6;
    }

    printf("| key creation (durable: WAL, synchronous=FULL) | keyward keys/s | plain SQLite, "
           "key rows/s | keyward / that | plain SQLite, key and audit rows, keys/s "
           "| keyward / that |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
        size_t b = batches[i];
        char kw_path[PATH_LEN], sq_path[PATH_LEN], au_path[PATH_LEN];
        unsigned long kw_n = 0, sq_n = 0, au_n = 0;
        double kw_t = 0, sq_t = 0, au_t = 0, kw, sq, au;
        kw_ctx *ctx;
        plain ref, refa;

        fprintf(stderr, "bench_create: %zu keys per transaction...\n", b);
        snprintf(kw_path, sizeof(kw_path), "%s/keyward-%zu.db", dir, b);
        snprintf(sq_path, sizeof(sq_path), "%s/sqlite-%zu.db", dir, b);
        snprintf(au_path, sizeof(au_path), "%s/sqlite-audit-%zu.db", dir, b);
        ctx = keyward_open(kw_path, pepper);
        plain_open(&ref, sq_path, pepper);
        plain_open(&refa, au_path, pepper);
        /* Alternate in short rounds, so that the other work on the machine
         * (and the disk's) weighs on all sides alike. */
        for (int r = 0; r < ROUNDS; r++) {
            kw_t += keyward_run(ctx, b, seconds / ROUNDS, &kw_n);
            sq_t += plain_run(&ref, b, 0, seconds / ROUNDS, &sq_n);
            au_t += plain_run(&refa, b, 1, seconds / ROUNDS, &au_n);
        }
        kw_close(ctx);
        plain_close(&ref);
        plain_close(&refa);
        db_remove(kw_path);
        db_remove(sq_path);
        db_remove(au_path);
        kw = (double)kw_n / kw_t;
        sq = (double)sq_n / sq_t;
        au = (double)au_n / au_t;
        if (b == 1)
            printf("| kw_key_create, 1 key per transaction | %.0f | %.0f | %.2f | %.0f | %.2f |\n",
                   kw, sq, kw / sq, au, kw / au);
        else
            printf("| kw_key_create_many, %zu keys per transaction | %.0f | %.0f | %.2f | %.0f | "
                   "%.2f |\n",
                   b, kw, sq, kw / sq, au, kw / au);
        fflush(stdout);
    }
    kw_secret_free(pepper);
    return rm_rf(dir) == 0 ? 0 : 6;
}
