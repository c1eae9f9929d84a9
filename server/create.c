/*
 * Group commit of key creation. A creation must be durable before its key
 * is handed out, and a durable commit costs a sync of the disk (~0.3 ms
 * here): one commit per key would cap creation at a few thousand a second.
 * So loops hand validated requests to one committer thread, which creates
 * every request waiting at that moment in one transaction (one sync for
 * all: kw_key_create_many) and sends each answer back to the loop that
 * asked, which answers the client. While a commit runs the next batch
 * gathers, so batches grow with the load and latency stays one commit.
 *
 * The committer also writes the index's usage every sync_ms, so that the
 * server writes on this one connection: SQLite empties a connection's page
 * cache whenever another one has written, and the index writer's usage
 * writes, ten a second, made this thread read back the id index's pages
 * each time (three reads a key fewer, measured with strace).
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 256

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    kws_new_key *head, **tail;
    int stop;
    _Atomic int running; /* read by the index writer */
    pthread_t tid;
    kw_ctx *ctx;
    kw_index *index;
    int sync_ms;                       /* how often usage is written */
    _Atomic uint64_t commits, created; /* for /metrics */
} C = {.lock = PTHREAD_MUTEX_INITIALIZER, .tail = &C.head};

void kws_committer_stats(uint64_t *commits, uint64_t *created)
{
    *commits = atomic_load(&C.commits);
    *created = atomic_load(&C.created);
}

#define SPARE_MAX 64

kws_new_key *kws_new_key_get(kws_thread *t)
{
    kws_new_key *j = t->spare_jobs;

    if (j != NULL) {
        t->spare_jobs = j->next;
        t->nspare--;
        memset(j, 0, sizeof(*j));
    } else if ((j = calloc(1, sizeof(*j))) == NULL) {
        return NULL;
    }
    j->t = t;
    return j;
}

void kws_new_key_free(kws_new_key *j)
{
    kws_thread *t;

    if (j == NULL)
        return;
    kw_secret_free(j->key);
    kw_key_record_clear(&j->rec);
    free(j->meta);
    json_decref(j->body);
    t = j->t;
    if (t != NULL && t->nspare < SPARE_MAX) {
        j->key = NULL;
        j->body = NULL;
        j->meta = NULL;
        j->next = t->spare_jobs;
        t->spare_jobs = j;
        t->nspare++;
        return;
    }
    free(j);
}

void kws_jobs_release(kws_thread *t)
{
    while (t->spare_jobs != NULL) {
        kws_new_key *j = t->spare_jobs;
        t->spare_jobs = j->next;
        free(j);
    }
    t->nspare = 0;
}

/* Create the batch; a request the library refuses is answered alone and
 * the rest are tried again. */
static void commit_batch(kws_new_key **jobs, size_t n)
{
    kw_key_params params[BATCH_MAX];
    kw_actor actors[BATCH_MAX];
    kw_secret *keys[BATCH_MAX];
    kw_key_record recs[BATCH_MAX];
    size_t failed;
    kw_rc rc;

    while (n > 0) {
        for (size_t i = 0; i < n; i++) {
            params[i] = jobs[i]->p;
            actors[i] = (kw_actor){jobs[i]->admin, jobs[i]->client};
        }
        rc = kw_key_create_many(C.ctx, params, actors, n, keys, recs, &failed);
        if (rc == KW_OK) {
            atomic_fetch_add(&C.commits, 1);
            atomic_fetch_add(&C.created, n);
            for (size_t i = 0; i < n; i++) {
                jobs[i]->rc = KW_OK;
                jobs[i]->key = keys[i];
                jobs[i]->rec = recs[i];
                /* Committed; if this fails, the next sync (it follows the
                 * audit trail) brings the key in. */
                if (kw_index_add(C.index, C.ctx, &recs[i], keys[i]) != KW_OK)
                    fprintf(stderr, "keyward serve: indexing new key %s failed\n", recs[i].id);
            }
            return;
        }
        if (rc == KW_ERR_INVALID && failed < n) {
            jobs[failed]->rc = rc;
            snprintf(jobs[failed]->err, sizeof(jobs[failed]->err), "%s", kw_errmsg(C.ctx));
            jobs[failed] = jobs[n - 1]; /* answered: out of the batch */
            n--;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            jobs[i]->rc = rc;
            snprintf(jobs[i]->err, sizeof(jobs[i]->err), "%s", kw_errmsg(C.ctx));
        }
        return;
    }
}

/* Hand the finished jobs back to their loops: one message per loop, the
 * rest chained behind it on `next`. A message per job would wake the loop
 * once per key: a pipe write and a context switch each, a tenth of the
 * committer's time when both share a core. */
static void send_answers(kws_new_key **done, size_t n)
{
    kws_new_key *first[BATCH_MAX], **tail[BATCH_MAX];
    size_t loops = 0;

    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < loops && first[k]->t != done[i]->t)
            k++;
        done[i]->next = NULL;
        if (k == loops) {
            first[loops] = done[i];
            tail[loops++] = &done[i]->next;
        } else {
            *tail[k] = done[i];
            tail[k] = &done[i]->next;
        }
    }
    for (size_t k = 0; k < loops; k++)
        h2o_multithread_send_message(&first[k]->t->created, &first[k]->msg);
}

static struct timespec mono_after(const struct timespec *t, int ms)
{
    struct timespec r = *t;

    r.tv_sec += ms / 1000;
    r.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (r.tv_nsec >= 1000000000L) {
        r.tv_sec++;
        r.tv_nsec -= 1000000000L;
    }
    return r;
}

static int mono_reached(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void *committer_main(void *arg)
{
    kws_new_key *jobs[BATCH_MAX], *done[BATCH_MAX];
    struct timespec next_usage;
    int failing = 0;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &next_usage);
    next_usage = mono_after(&next_usage, C.sync_ms);
    for (;;) {
        size_t n = 0;
        int stop;

        pthread_mutex_lock(&C.lock);
        while (C.head == NULL && !C.stop && !mono_reached(&next_usage))
            pthread_cond_timedwait(&C.cond, &C.lock, &next_usage);
        while (C.head != NULL && n < BATCH_MAX) {
            jobs[n++] = C.head;
            C.head = C.head->next;
        }
        if (C.head == NULL)
            C.tail = &C.head;
        stop = C.stop && n == 0;
        pthread_mutex_unlock(&C.lock);
        if (stop) /* stopping, and nothing left; the index writer's last sync writes usage */
            return NULL;

        if (n > 0) {
            memcpy(done, jobs, n * sizeof(*jobs)); /* commit_batch reorders jobs */
            commit_batch(jobs, n);
            send_answers(done, n);
        }
        if (mono_reached(&next_usage)) {
            kw_rc rc = kw_index_write_usage(C.index, C.ctx);
            if (rc != KW_OK && !failing)
                fprintf(stderr, "keyward serve: writing usage failed (will retry): %s\n",
                        kw_errmsg(C.ctx));
            failing = rc != KW_OK;
            clock_gettime(CLOCK_MONOTONIC, &next_usage);
            next_usage = mono_after(&next_usage, C.sync_ms);
        }
    }
}

int kws_committer_running(void)
{
    return C.running;
}

/* The request is gone (client closed): its answer will be dropped. */
static void on_request_gone(void *p)
{
    kws_new_key *j = *(kws_new_key **)p;

    if (j != NULL)
        j->req = NULL;
}

/* 201 with the new key, or the error. */
static void answer(h2o_req_t *req, const kws_new_key *j)
{
    if (j->rc == KW_OK)
        kws_send_new_key(req, j->key, &j->rec);
    else
        kws_send_rc(req, j->rc, j->err);
}

/* On the loop that asked: answer each finished creation (each message
 * carries a chain of them). */
static void on_created(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        kws_new_key *j = H2O_STRUCT_FROM_MEMBER(kws_new_key, msg.link, messages->next);

        h2o_linklist_unlink(&j->msg.link);
        while (j != NULL) {
            kws_new_key *next = j->next;
            h2o_req_t *req = j->req;
            if (req != NULL) {
                *j->hold = NULL;
                answer(req, j);
                kws_metrics_request(req, KWS_R_KEYS, j->started_us);
            }
            kws_new_key_free(j);
            j = next;
        }
    }
}

void kws_committer_attach(kws_thread *t)
{
    h2o_multithread_register_receiver(t->h2o.queue, &t->created, on_created);
}

int kws_create_submit(h2o_req_t *req, kws_new_key *j)
{
    kws_thread *t = kws_thread_of(req);

    if (!C.running) { /* no committer: one transaction per key, on this thread */
        j->rc = kw_key_create(t->kw, &j->p, &(kw_actor){j->admin, j->client}, &j->key, &j->rec);
        if (j->rc == KW_OK) {
            atomic_fetch_add(&C.commits, 1);
            atomic_fetch_add(&C.created, 1);
            kws_changed(req, j->rec.id);
        } else {
            snprintf(j->err, sizeof(j->err), "%s", kw_errmsg(t->kw));
        }
        answer(req, j);
        kws_new_key_free(j);
        return 0;
    }
    j->req = req;
    j->started_us = t->req_started_us;
    j->hold = h2o_mem_alloc_shared(&req->pool, sizeof(*j->hold), on_request_gone);
    *j->hold = j;
    pthread_mutex_lock(&C.lock);
    j->next = NULL;
    *C.tail = j;
    C.tail = &j->next;
    pthread_cond_signal(&C.cond);
    pthread_mutex_unlock(&C.lock);
    return 0;
}

int kws_committer_start(const kws_config *cfg, kw_index *index)
{
    char err[256] = "";
    kw_open_opts oo = {.create = 0, .err = err, .err_len = sizeof(err)};

    if (kw_open(&C.ctx, cfg->db_url, cfg->pepper, &oo) != KW_OK) {
        fprintf(stderr, "keyward serve: the key committer cannot open the database: %s\n", err);
        return -1;
    }
    /* Its commits must not stall on copying the log: the index writer
     * thread checkpoints (server/loop.c). */
    if (kw_defer_checkpoints(C.ctx) != KW_OK)
        fprintf(stderr, "keyward serve: %s\n", kw_errmsg(C.ctx));
    C.index = index;
    C.sync_ms = cfg->sync_ms;
    C.stop = 0;
    {
        /* Waits end at the next usage write, on the monotonic clock. */
        pthread_condattr_t ca;
        int bad = pthread_condattr_init(&ca) != 0;
        if (!bad) {
            bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
                  pthread_cond_init(&C.cond, &ca) != 0;
            pthread_condattr_destroy(&ca);
        }
        if (bad) {
            kw_close(C.ctx);
            C.ctx = NULL;
            return -1;
        }
    }
    if (pthread_create(&C.tid, NULL, committer_main, NULL) != 0) {
        pthread_cond_destroy(&C.cond);
        kw_close(C.ctx);
        C.ctx = NULL;
        return -1;
    }
    C.running = 1;
    return 0;
}

void kws_committer_stop(void)
{
    if (!C.running)
        return;
    pthread_mutex_lock(&C.lock);
    C.stop = 1;
    pthread_cond_signal(&C.cond);
    pthread_mutex_unlock(&C.lock);
    pthread_join(C.tid, NULL);
    pthread_cond_destroy(&C.cond);
    C.running = 0;
    kw_close(C.ctx);
    C.ctx = NULL;
}
