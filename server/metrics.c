/* Prometheus metrics: per-thread counters (relaxed atomics, no sharing on
 * the hot path), summed when /metrics is read. No key material in any label:
 * labels are route names, status classes and verdict codes only. */
#include "server.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const route_names[KWS_ROUTES] = {
    "healthz",      "readyz",      "openapi",     "auth",       "audit",  "keys",
    "key",          "keys_rotate", "keys_verify", "keys_usage", "tokens", "token",
    "signing_keys", "secrets",     "secret",      "other",
};
static const char *const source_names[KWS_SOURCES] = {"auth", "verify", "admin"};
/* Latency bucket upper bounds, in microseconds. */
static const uint64_t bucket_us[KWS_BUCKETS] = {50,   100,   250,   500,    1000,
                                                2500, 10000, 50000, 250000, 1000000};

static kws_thread *all_threads;
static int nthreads;

void kws_metrics_register(kws_thread *threads, int n)
{
    all_threads = threads;
    nthreads = n;
}

static uint64_t get(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

uint64_t kws_clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void kws_metrics_request(h2o_req_t *req, int route, uint64_t started_us)
{
    kws_metrics *m = &kws_thread_of(req)->metrics;
    uint64_t us = kws_clock_us() - started_us;
    int cls = req->res.status / 100;

    if (cls < 1 || cls > 5)
        cls = 5;
    add(&m->requests[route][cls - 1], 1);
    add(&m->latency_sum_us[route], us);
    for (int b = 0; b < KWS_BUCKETS; b++)
        if (us <= bucket_us[b]) {
            add(&m->latency_bucket[route][b], 1);
            break;
        }
}

void kws_metrics_verdict(h2o_req_t *req, int source, kw_verdict code)
{
    if ((unsigned)code < KWS_VERDICTS)
        add(&kws_thread_of(req)->metrics.verdicts[source][code], 1);
}

void kws_metrics_db_error(h2o_req_t *req)
{
    add(&kws_thread_of(req)->metrics.db_errors, 1);
}

/* Sum one counter over every thread. */
#define SUM(field)                                                                                 \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (int t_ = 0; t_ < nthreads; t_++)                                                      \
            s_ += get(&all_threads[t_].metrics.field);                                             \
        s_;                                                                                        \
    })

int kws_metrics_text(h2o_req_t *req)
{
    h2o_buffer_t *buf;
    char line[256];
    int n;

    h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        n = snprintf(line, sizeof(line), __VA_ARGS__);                                             \
        h2o_iovec_t r_ = h2o_buffer_reserve(&buf, (size_t)n + 1);                                  \
        memcpy(r_.base, line, (size_t)n);                                                          \
        buf->size += (size_t)n;                                                                    \
    } while (0)
    EMIT("# HELP keyward_http_requests_total HTTP requests by route and status class.\n");
    EMIT("# TYPE keyward_http_requests_total counter\n");
    for (int r = 0; r < KWS_ROUTES; r++)
        for (int c = 0; c < 5; c++)
            EMIT("keyward_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n", route_names[r],
                 c + 1, (unsigned long long)SUM(requests[r][c]));
    EMIT("# HELP keyward_http_request_duration_seconds Time to answer, by route.\n");
    EMIT("# TYPE keyward_http_request_duration_seconds histogram\n");
    for (int r = 0; r < KWS_ROUTES; r++) {
        uint64_t cum = 0, count = 0;
        for (int c = 0; c < 5; c++)
            count += SUM(requests[r][c]);
        for (int b = 0; b < KWS_BUCKETS; b++) {
            cum += SUM(latency_bucket[r][b]);
            EMIT("keyward_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                 route_names[r], (double)bucket_us[b] / 1e6, (unsigned long long)cum);
        }
        EMIT("keyward_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
             route_names[r], (unsigned long long)count);
        EMIT("keyward_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
             (double)SUM(latency_sum_us[r]) / 1e6);
        EMIT("keyward_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
             (unsigned long long)count);
    }
    EMIT("# HELP keyward_verifications_total Verifications by source and result code.\n");
    EMIT("# TYPE keyward_verifications_total counter\n");
    for (int s = 0; s < KWS_SOURCES; s++)
        for (int v = 0; v < KWS_VERDICTS; v++)
            EMIT("keyward_verifications_total{source=\"%s\",code=\"%s\"} %llu\n", source_names[s],
                 kw_verdict_name((kw_verdict)v), (unsigned long long)SUM(verdicts[s][v]));
    EMIT("# HELP keyward_database_errors_total Database failures seen by the server.\n");
    EMIT("# TYPE keyward_database_errors_total counter\n");
    EMIT("keyward_database_errors_total %llu\n", (unsigned long long)SUM(db_errors));
    if (nthreads > 0 && all_threads[0].index != NULL) {
        kw_index_stats st;
        kw_index_stats_get(all_threads[0].index, &st);
        EMIT("# HELP keyward_index_keys Key records held in memory.\n");
        EMIT("# TYPE keyward_index_keys gauge\nkeyward_index_keys %zu\n", st.keys);
        EMIT("# HELP keyward_index_lookups_total Verifications by where they were decided.\n");
        EMIT("# TYPE keyward_index_lookups_total counter\n");
        EMIT("keyward_index_lookups_total{where=\"memory\"} %llu\n", (unsigned long long)st.hits);
        EMIT("keyward_index_lookups_total{where=\"storage\"} %llu\n",
             (unsigned long long)st.fallbacks);
        EMIT("# HELP keyward_index_syncs_total Completed writes of usage and reloads.\n");
        EMIT("# TYPE keyward_index_syncs_total counter\nkeyward_index_syncs_total %llu\n",
             (unsigned long long)st.syncs);
    }
    {
        uint64_t commits, created;
        kws_committer_stats(&commits, &created);
        EMIT("# HELP keyward_key_commits_total Durable commits of created keys (group commit: "
             "several keys each).\n");
        EMIT("# TYPE keyward_key_commits_total counter\nkeyward_key_commits_total %llu\n",
             (unsigned long long)commits);
        EMIT("# HELP keyward_keys_created_total Keys created through this server.\n");
        EMIT("# TYPE keyward_keys_created_total counter\nkeyward_keys_created_total %llu\n",
             (unsigned long long)created);
    }
    EMIT("# HELP keyward_threads Event-loop threads.\n# TYPE keyward_threads gauge\n");
    EMIT("keyward_threads %d\n", nthreads);
#undef EMIT
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4"));
    req->res.content_length = buf->size;
    h2o_send_inline(req, buf->bytes, buf->size);
    h2o_buffer_dispose(&buf);
    return 0;
}
