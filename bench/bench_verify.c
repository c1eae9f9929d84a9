/*
 * In-process verification speed (issue P3, row 2): verifications per second
 * through the in-memory index, on one thread, for a valid key, an unknown
 * id, a wrong secret and a malformed string, and stateless keys (issue P4:
 * docs/tokens.md): HMAC-signed as minted and with three caveats; Ed25519-
 * signed as minted and with one block, the first time each token is seen
 * (every signature checked) and again (the context's cache) -- beside the
 * cost of one bare HMAC-SHA-256 of a key measured in the same run (the
 * floor).
 *
 * Each row is measured in 50 ms slices that alternate with slices of the
 * floor, and its ratio is the median of the slices' ratios: a moment when
 * the machine is slow (another VM on the host) slows both sides of a pair,
 * where a row measured after the floor would carry it alone.
 *
 * usage: bench_verify [SECONDS_PER_ROW] [KEYS] [ROW]   prints a Markdown table;
 *        ROW ("valid key", ...) measures that row alone, for a profiler
 */
#define _GNU_SOURCE /* nftw, mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <keyward/keyward.h>

#include "bench_util.h"
#include "internal.h" /* kwi_hmac_fast: the floor keyward's own HMAC sets */

typedef struct row {
    const char *name;
    const char *key;
    size_t len;
    kw_verdict want;
    const char *audience; /* stated by the verifier (a token's audience caveat) */
} row;

static volatile unsigned char sink;

/* Bare HMAC-SHA-256 of a key: what any peppered verification must pay.
 * `fast`: with the pad states computed once, on OpenSSL's SHA-256 (what
 * keyward does: lib/hmac.c), else libsodium's one-shot HMAC (the obvious
 * way, shown for reference). */
static double hmac_rate(const char *key, size_t len, double seconds, int fast)
{
    unsigned char pepper[32] = {1}, out[32];
    unsigned long n = 0;
    double t0 = now_s(), t;
    kw_secret *k, *pads;

    if (kw_secret_from(&k, pepper, sizeof(pepper)) != KW_OK || kwi_hmac_key_new(&pads, k) != KW_OK)
        exit(1);
    do {
        for (int i = 0; i < 1000; i++) {
            if (fast)
                kwi_hmac_fast(out, pads, key, len);
            else
                crypto_auth_hmacsha256(out, (const unsigned char *)key, len, pepper);
            sink ^= out[0];
        }
        n += 1000;
    } while ((t = now_s() - t0) < seconds);
    kw_secret_free(pads);
    kw_secret_free(k);
    return (double)n / t;
}

/* First use: each of n distinct tokens verified once, in order (none is in
 * the cache yet). */
static double first_use_rate(kw_index *idx, kw_ctx *ctx, char *const *toks, size_t n,
                             const char *audience)
{
    double t0 = now_s();

    for (size_t i = 0; i < n; i++) {
        kw_verify_result res;
        kw_verify_request req = {.cost = 1, .audience = audience};
        if (kw_index_verify(idx, ctx, toks[i], strlen(toks[i]), &req, &res) != KW_OK ||
            res.code != KW_VALID) {
            fprintf(stderr, "bench_verify: a first-use token gave %s\n", kw_verdict_name(res.code));
            exit(1);
        }
        kw_verify_result_clear(&res);
    }
    return (double)n / (now_s() - t0);
}

static double verify_rate(kw_index *idx, kw_ctx *ctx, const row *r, double seconds)
{
    unsigned long n = 0;
    double t0 = now_s(), t;

    do {
        for (int i = 0; i < 1000; i++) {
            kw_verify_result res;
            kw_verify_request req = {.cost = 1, .audience = r->audience};
            if (kw_index_verify(idx, ctx, r->key, r->len, &req, &res) != KW_OK ||
                res.code != r->want) {
                fprintf(stderr, "bench_verify: %s gave %s\n", r->name, kw_verdict_name(res.code));
                exit(1);
            }
            kw_verify_result_clear(&res);
        }
        n += 1000;
    } while ((t = now_s() - t0) < seconds);
    return (double)n / t;
}

/* What a slice measures: a row through the index, or an HMAC of a key. */
typedef struct job {
    kw_index *idx;
    kw_ctx *ctx;
    const row *r;
    enum { J_VERIFY, J_HMAC_FAST, J_HMAC_NAIVE } kind;
} job;

#define SLICE_S 0.05

static double job_rate(const job *j, double seconds)
{
    if (j->kind == J_VERIFY)
        return verify_rate(j->idx, j->ctx, j->r, seconds);
    return hmac_rate(j->r->key, j->r->len, seconds, j->kind == J_HMAC_FAST);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* j's rate and its ratio to the floor's, from slices of each in turn (the
 * medians); the floor's own rate in those slices too. */
static void side_by_side(const job *j, const job *floor_job, double seconds, double *rate,
                         double *ratio, double *floor_rate)
{
    size_t n = (size_t)(seconds / (2 * SLICE_S));
    double *fr, *jr, *q;

    if (n < 3)
        n = 3;
    fr = calloc(n, sizeof(*fr));
    jr = calloc(n, sizeof(*jr));
    q = calloc(n, sizeof(*q));
    if (fr == NULL || jr == NULL || q == NULL)
        exit(1);
    for (size_t i = 0; i < n; i++) {
        fr[i] = job_rate(floor_job, SLICE_S);
        jr[i] = job_rate(j, SLICE_S);
        q[i] = jr[i] / fr[i];
    }
    *ratio = median(q, n);
    *rate = median(jr, n);
    *floor_rate = median(fr, n);
    free(fr);
    free(jr);
    free(q);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? strtod(argv[1], NULL) : 2.0;
    long keys = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    char dir[] = "/tmp/kwbench.XXXXXX", url[128];
    kw_open_opts oo = {.create = 1};
    kw_secret *pepper, *valid = NULL, *token = NULL, *child = NULL, *ed = NULL, *ed_child = NULL;
    char **ed_pool = NULL, **ed_child_pool = NULL; /* plain copies: locked memory is scarce */
    size_t npool = 0;
    char unknown[KW_KEY_MAX + 1], wrong[KW_KEY_MAX + 1];
    kw_key_params p;
    kw_index *idx;
    kw_ctx *ctx;
    size_t len;
    double floor;

    if (seconds <= 0 || keys < 1 || kw_init() != KW_OK || mkdtemp(dir) == NULL ||
        kw_secret_new(&pepper, KW_PEPPER_LEN) != KW_OK)
        return 2;
    randombytes_buf(kw_secret_data(pepper), KW_PEPPER_LEN);
    snprintf(url, sizeof(url), "sqlite:%s/b.db", dir);
    if (kw_open(&ctx, url, pepper, &oo) != KW_OK)
        return 3;
    kw_key_params_init(&p);
    for (long i = 0; i < keys; i++) {
        kw_secret *k = NULL;
        if (kw_key_create(ctx, &p, &(kw_actor){"bench", "local"}, &k, NULL) != KW_OK)
            return 4;
        if (valid == NULL)
            valid = k;
        else
            kw_secret_free(k);
    }
    if (kw_index_open(&idx, ctx, (size_t)keys + 1) != KW_OK)
        return 5;
    len = kw_secret_len(valid);
    memcpy(unknown, kw_secret_cdata(valid), len);
    memcpy(wrong, kw_secret_cdata(valid), len);
    /* another id / another secret, each with a correct check */
    unknown[len - 50] = unknown[len - 50] == 'A' ? 'B' : 'A';
    kw_key_check(unknown + len - 6, unknown, len - 6);
    wrong[len - 10] = wrong[len - 10] == 'A' ? 'B' : 'A';
    kw_key_check(wrong + len - 6, wrong, len - 6);

    /* Stateless keys (docs/tokens.md): one as minted, one narrowed by three
     * caveats (each one more HMAC at verification). */
    {
        static const char *const scopes[] = {"orders:*", "billing:read"};
        static const char *const one[] = {"orders:read"};
        kw_token_params tp = {.owner = "bench", .scopes = scopes, .nscopes = 2};
        kw_token_restriction tr = {.scopes = one, .nscopes = 1, .audience = "bench", .new_id = 1};
        char tid[KW_ID_LEN + 1];

        kw_token_restriction one_block = {.scopes = one, .nscopes = 1, .audience = "bench"};

        if (kw_token_mint(ctx, &tp, &(kw_actor){"bench", "local"}, &token, tid) != KW_OK ||
            kw_token_attenuate(&child, (const char *)kw_secret_cdata(token), kw_secret_len(token),
                               &tr, NULL, NULL, 0) != KW_OK)
            return 7;
        /* Ed25519 (format 2): one token and one child for the cached rows,
         * and pools of distinct ones, each verified once, for first use
         * (a third of a second to a second each, at the rates measured) */
        npool = argc > 3 && strstr(argv[3], "first use") == NULL ? 0 : (size_t)(seconds * 4000);
        ed_pool = calloc(npool + 1, sizeof(*ed_pool));
        ed_child_pool = calloc(npool + 1, sizeof(*ed_child_pool));
        if (ed_pool == NULL || ed_child_pool == NULL ||
            kw_signing_key_rotate(ctx, KW_SIGNING_ED25519, &(kw_actor){"bench", "local"}, NULL) !=
                KW_OK ||
            kw_token_mint(ctx, &tp, &(kw_actor){"bench", "local"}, &ed, tid) != KW_OK ||
            kw_token_attenuate(&ed_child, (const char *)kw_secret_cdata(ed), kw_secret_len(ed),
                               &one_block, NULL, NULL, 0) != KW_OK) {
            fprintf(stderr, "bench_verify: the Ed25519 tokens: %s\n", kw_errmsg(ctx));
            return 7;
        }
        for (size_t i = 0; i < npool; i++) {
            kw_secret *m = NULL, *c = NULL;
            if (kw_token_mint(ctx, &tp, &(kw_actor){"bench", "local"}, &m, tid) != KW_OK ||
                kw_token_attenuate(&c, (const char *)kw_secret_cdata(ed), kw_secret_len(ed),
                                   &one_block, NULL, NULL, 0) != KW_OK ||
                (ed_pool[i] = strndup((const char *)kw_secret_cdata(m), kw_secret_len(m))) ==
                    NULL ||
                (ed_child_pool[i] = strndup((const char *)kw_secret_cdata(c), kw_secret_len(c))) ==
                    NULL) {
                fprintf(stderr, "bench_verify: token %zu of the pools: %s\n", i, kw_errmsg(ctx));
                return 7;
            }
            kw_secret_free(m);
            kw_secret_free(c);
        }
    }
    const row rows[] = {
        {"valid key", (const char *)kw_secret_cdata(valid), len, KW_VALID, NULL},
        {"unknown id", unknown, len, KW_NOT_FOUND, NULL},
        {"wrong secret", wrong, len, KW_NOT_FOUND, NULL},
        {"malformed", "kw_live_not-a-key", 17, KW_MALFORMED, NULL},
        {"stateless key (HMAC), as minted", (const char *)kw_secret_cdata(token),
         kw_secret_len(token), KW_VALID, NULL},
        {"stateless key (HMAC), 3 caveats (scopes, audience, id)",
         (const char *)kw_secret_cdata(child), kw_secret_len(child), KW_VALID, "bench"},
        {"stateless key (Ed25519), as minted, cached", (const char *)kw_secret_cdata(ed),
         kw_secret_len(ed), KW_VALID, NULL},
        {"stateless key (Ed25519), 1 block (scopes, audience), cached",
         (const char *)kw_secret_cdata(ed_child), kw_secret_len(ed_child), KW_VALID, "bench"},
    };
    const struct {
        const char *name;
        char **pool;
        const char *audience;
    } first_use[] = {
        {"stateless key (Ed25519), as minted, first use", ed_pool, NULL},
        {"stateless key (Ed25519), 1 block (scopes, audience), first use", ed_child_pool, "bench"},
    };
    const job floor_job = {.r = &rows[0], .kind = J_HMAC_FAST};
    double ratio, rate, floor_here;

    floor = hmac_rate(rows[0].key, len, seconds, 1);
    printf("| in-process verification (1 thread, %ld keys) | per second | vs bare HMAC "
           "(median of paired slices) | bare HMAC in those slices, per second |\n",
           keys);
    printf("|---|---:|---:|---:|\n");
    printf("| bare HMAC-SHA-256 of a key, pads precomputed (floor) | %.0f | 1.00 | |\n", floor);
    side_by_side(&(job){.r = &rows[0], .kind = J_HMAC_NAIVE}, &floor_job, seconds, &rate, &ratio,
                 &floor_here);
    printf("| bare HMAC-SHA-256 of a key, libsodium one-shot | %.0f | %.2f | %.0f |\n", rate, ratio,
           floor_here);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (argc > 3 && strcmp(argv[3], rows[i].name) != 0)
            continue;
        side_by_side(&(job){idx, ctx, &rows[i], J_VERIFY}, &floor_job, seconds, &rate, &ratio,
                     &floor_here);
        printf("| %s | %.0f | %.2f | %.0f |\n", rows[i].name, rate, ratio, floor_here);
    }
    for (size_t i = 0; i < sizeof(first_use) / sizeof(first_use[0]); i++) {
        double r;
        if (argc > 3 && strcmp(argv[3], first_use[i].name) != 0)
            continue;
        r = first_use_rate(idx, ctx, first_use[i].pool, npool, first_use[i].audience);
        printf("| %s | %.0f | %.2f | (the floor above) |\n", first_use[i].name, r, r / floor);
    }
    kw_index_free(idx);
    kw_close(ctx);
    kw_secret_free(valid);
    kw_secret_free(token);
    kw_secret_free(child);
    kw_secret_free(ed);
    kw_secret_free(ed_child);
    for (size_t i = 0; i < npool; i++) {
        free(ed_pool[i]);
        free(ed_child_pool[i]);
    }
    free(ed_pool);
    free(ed_child_pool);
    kw_secret_free(pepper);
    return rm_rf(dir) == 0 ? 0 : 6;
}
