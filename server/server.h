/*
 * keyward serve: the HTTP server (libh2o-evloop). Internal to the binary:
 * names are kws_*. One event loop, one SO_REUSEPORT listener and one
 * library context (database connection) per thread.
 */
#ifndef KEYWARD_SERVER_H
#define KEYWARD_SERVER_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>
#include <jansson.h>
#include <keyward/keyward.h>

#define KWS_BODY_MAX (64 * 1024)
#define KWS_TRUSTED_MAX 16

/* A network: address and prefix length, v4 (mapped into v6) or v6. */
typedef struct kws_cidr {
    unsigned char addr[16];
    int bits;
} kws_cidr;

typedef struct kws_config {
    const char *listen;                /* "127.0.0.1:8700", "[::1]:8700" */
    int threads;                       /* event loops */
    const char *db_url;                /* opened once per thread */
    const kw_secret *pepper;           /* borrowed */
    kws_cidr trusted[KWS_TRUSTED_MAX]; /* who may call /v1/auth */
    int ntrusted;
    size_t index_max;              /* most keys the in-memory index holds */
    const char *tls_cert;          /* PEM chain; NULL: plain HTTP */
    const char *tls_key;           /* PEM private key, mode 0600 */
    int sync_ms;                   /* how often usage is written and changes picked up */
    int64_t db_grace_ms;           /* answer from an index older than this: no (503); 0: no bound */
    const kw_secret *seed_signing; /* the seed system's secrets, or NULL (borrowed) */
    const kw_secret *seed_master;
    const kw_secret *master_key; /* the secrets' master key, or NULL: /v1/secrets answers 503 */
    const char *master_key_file; /* where it is read again after a rotation (<db>.master) */
} kws_config;

/* Routes, for metrics. */
enum {
    KWS_R_HEALTHZ,
    KWS_R_READYZ,
    KWS_R_OPENAPI,
    KWS_R_AUTH,
    KWS_R_AUDIT,
    KWS_R_KEYS,
    KWS_R_KEY,
    KWS_R_ROTATE,
    KWS_R_VERIFY,
    KWS_R_USAGE,
    KWS_R_TOKENS,
    KWS_R_TOKEN,
    KWS_R_SIGNING_KEYS,
    KWS_R_SECRETS,
    KWS_R_SECRET,
    KWS_R_OTHER,
    KWS_ROUTES
};
/* Where a verification came from, for metrics. */
enum { KWS_SRC_AUTH, KWS_SRC_VERIFY, KWS_SRC_ADMIN, KWS_SOURCES };
#define KWS_VERDICTS 10
#define KWS_BUCKETS 10

/* One thread's counters; only that thread writes them. */
typedef struct kws_metrics {
    _Atomic uint64_t requests[KWS_ROUTES][5];
    _Atomic uint64_t latency_bucket[KWS_ROUTES][KWS_BUCKETS];
    _Atomic uint64_t latency_sum_us[KWS_ROUTES];
    _Atomic uint64_t verdicts[KWS_SOURCES][KWS_VERDICTS];
    _Atomic uint64_t db_errors;
} kws_metrics;

/* Per-thread state; handlers reach it from their request. */
typedef struct kws_thread {
    h2o_context_t h2o;
    h2o_accept_ctx_t accept;
    h2o_socket_t *listener;
    kw_ctx *kw;
    kw_index *index; /* shared by every thread */
    const kws_config *cfg;
    int fd;
    int num;
    pthread_t tid;
    int started;
    kws_metrics metrics;
    uint64_t req_started_us;            /* when the request being routed arrived */
    h2o_multithread_receiver_t created; /* finished creations (create.c) */
    struct kws_new_key *spare_jobs;     /* freed creations, for the next ones */
    unsigned nspare;
    int64_t master_reload_ms; /* when the master key was last read again */
} kws_thread;

/* The h2o configuration every loop shares: one handler, kws_route. */
void kws_setup_config(void);
h2o_globalconf_t *kws_h2o_config(void);

/* Run until SIGTERM or SIGINT; returns a process exit status. */
int kws_run(const kws_config *cfg);

/* Parse "A.B.C.D/N" or "v6/N" (or a bare address); 0 or -1. */
int kws_cidr_parse(const char *s, kws_cidr *out);
/* Is the address inside one of the networks? */
int kws_cidr_match(const kws_cidr *nets, int n, const struct sockaddr *sa);

/* ---- request helpers (http.c) ---- */

kws_thread *kws_thread_of(h2o_req_t *req);
/* The client's numeric address into buf (at least 64 bytes). */
void kws_peer(h2o_req_t *req, char *buf, size_t cap);
/* The key of "Authorization: Bearer <key>" (any case, extra spaces
 * skipped), or a zero iovec. */
h2o_iovec_t kws_bearer(h2o_req_t *req);
/* A request header's value (name in lower case), or a zero iovec. */
h2o_iovec_t kws_header(h2o_req_t *req, const char *name);
/* The value of query parameter `name`, percent-decoded, NUL-terminated in
 * the request's pool; NULL if absent; sets *bad on a malformed query. */
const char *kws_query(h2o_req_t *req, const char *name, int *bad);
/* Parse the body as a JSON object (caps checked); on failure an error
 * response has been sent and NULL is returned. */
json_t *kws_body_object(h2o_req_t *req);

/* Send a JSON text / object (the object is released). Always return 0. */
int kws_send_text(h2o_req_t *req, int status, const char *json);
/* The status and headers every JSON answer has (type, no-store, length). */
void kws_json_head(h2o_req_t *req, int status, size_t len);
int kws_send_json(h2o_req_t *req, int status, json_t *obj);
/* {"error":{"code":code,"message":msg}} */
int kws_send_error(h2o_req_t *req, int status, const char *code, const char *msg);
/* The error for a library failure (message from kw_errmsg, never a key). */
int kws_send_rc(h2o_req_t *req, kw_rc rc, const char *detail);

/* 400 bad_request with a printf-style message; returns -1. */
int kws_bad(h2o_req_t *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON time field: an RFC 3339 string, or null (0). -1 (answered 400) if not. */
int kws_json_time(h2o_req_t *req, const char *k, json_t *v, int64_t *out);

/* Check the bearer admin key for `scope`. Returns 1 if allowed (actor
 * filled: id points into storage of at least KW_ID_LEN+1 bytes); otherwise
 * an error response has been sent and 0 is returned. */
int kws_admin(h2o_req_t *req, const char *scope, char actor_id[static KW_ID_LEN + 1]);

/* ---- handlers ---- */
int kws_keys_collection(h2o_req_t *req);               /* /v1/keys */
int kws_keys_item(h2o_req_t *req, const char *id);     /* /v1/keys/{id} */
int kws_keys_rotate(h2o_req_t *req, const char *id);   /* /v1/keys/{id}/rotate */
int kws_keys_usage(h2o_req_t *req, const char *id);    /* /v1/keys/{id}/usage */
int kws_keys_verify(h2o_req_t *req);                   /* /v1/keys/verify */
int kws_tokens_collection(h2o_req_t *req);             /* POST /v1/tokens */
int kws_tokens_item(h2o_req_t *req, const char *id);   /* DELETE /v1/tokens/{id} */
int kws_signing_keys(h2o_req_t *req);                  /* GET /v1/signing-keys */
int kws_secrets_list(h2o_req_t *req);                  /* GET /v1/secrets?prefix= */
int kws_secret_item(h2o_req_t *req, const char *path); /* GET, PUT, DELETE /v1/secrets/{path} */
/* kws_admin, and with `keep` the verified admin key's record too (clear
 * it); scope NULL asks for no scope, only a valid key. */
int kws_admin_key(h2o_req_t *req, const char *scope, char actor_id[static KW_ID_LEN + 1],
                  kw_verify_result *keep);
int kws_auth(h2o_req_t *req);  /* /v1/auth */
int kws_audit(h2o_req_t *req); /* /v1/audit */
int kws_healthz(h2o_req_t *req);
int kws_openapi_doc(h2o_req_t *req);

/* docs/openapi.json, embedded at build time. */
extern const char kws_openapi[];
extern const size_t kws_openapi_len;
int kws_readyz(h2o_req_t *req);

/* ---- metrics (metrics.c) ---- */
void kws_metrics_register(kws_thread *threads, int n);
uint64_t kws_clock_us(void);
void kws_metrics_request(h2o_req_t *req, int route, uint64_t started_us);
void kws_metrics_verdict(h2o_req_t *req, int source, kw_verdict code);
void kws_metrics_db_error(h2o_req_t *req);
int kws_metrics_text(h2o_req_t *req); /* GET /metrics */

/* Verify through the shared index (storage only for imported keys). */
/* The index has not reached the database for longer than --db-grace: true
 * when verifications must be refused (503 from kws_send_stale). */
int kws_db_stale(h2o_req_t *req);
int kws_send_stale(h2o_req_t *req);
kw_rc kws_verify(h2o_req_t *req, int source, const char *key, size_t len,
                 const kw_verify_request *vr, kw_verify_result *res);
/* Milliseconds to whole seconds, rounded up (Retry-After, RateLimit-Reset). */
static inline int64_t kws_ms_to_s(int64_t ms)
{
    return (ms + 999) / 1000;
}
/* Retry-After for a wait of `ms`. */
void kws_retry_after(h2o_req_t *req, int64_t ms);
/* ?limit=: 0 and *out untouched when absent, *out = 1..max when given,
 * -1 when malformed or out of range. */
int kws_query_limit(h2o_req_t *req, size_t max, size_t *out);
/* After a change made through this thread's context: update the index. */
void kws_changed(h2o_req_t *req, const char *id);
/* End a change bracketed by kw_index_change_begin (made: a new key or NULL). */
void kws_change_end(h2o_req_t *req, const char *id, const char *made);

/* ---- group commit of key creation (create.c) ---- */

/* One POST /v1/keys on its way through the committer. */
typedef struct kws_new_key {
    h2o_multithread_message_t msg; /* the way back to the loop */
    struct kws_new_key *next;      /* the committer's queue; then its answers to one loop */
    kws_thread *t;                 /* the loop that answers */
    h2o_req_t *req;                /* NULL once the client is gone */
    struct kws_new_key **hold;     /* the request pool's pointer to this */
    uint64_t started_us;
    kw_key_params p; /* strings point into body, scopes and meta */
    const char *scopes[KW_SCOPES_MAX];
    char *meta;
    json_t *body;
    char admin[KW_ID_LEN + 1];
    char client[64];
    kw_rc rc; /* the result: key and rec, or rc and err */
    kw_secret *key;
    kw_key_record rec;
    char err[256];
} kws_new_key;

/* Start the committer on a database connection of its own; -1 if it cannot
 * (creation then commits on the loops, one key per transaction). */
int kws_committer_start(const kws_config *cfg, kw_index *index);
/* Finish what is queued and stop. Call after the loops have stopped. */
void kws_committer_stop(void);
/* 1 while the committer runs: it writes the index's usage then, and the
 * index writer only follows changes (kw_index_follow). */
int kws_committer_running(void);
/* On each loop's thread, once its context exists. */
void kws_committer_attach(kws_thread *t);
/* Create j's key (validated already); the answer comes later, on this
 * loop. Takes j. Returns 0. */
int kws_create_submit(h2o_req_t *req, kws_new_key *j);
/* A zeroed job for t's loop: one of its spares, or a new one; NULL if out
 * of memory. kws_new_key_free keeps up to a few dozen spares per loop (a
 * job is over 1 KiB: malloc's large-request path, and its consolidation,
 * on every creation otherwise); kws_jobs_release frees them. Loop thread
 * only. */
kws_new_key *kws_new_key_get(kws_thread *t);
void kws_new_key_free(kws_new_key *j);
void kws_jobs_release(kws_thread *t);
/* Commits made and keys created so far (for /metrics). */
void kws_committer_stats(uint64_t *commits, uint64_t *created);
/* 201 with the new key and its record. */
int kws_send_new_key(h2o_req_t *req, const kw_secret *key, const kw_key_record *rec);

/* Route a request; answers it, now or (key creation) when its commit is done. */
int kws_route(h2o_handler_t *self, h2o_req_t *req);

#endif
