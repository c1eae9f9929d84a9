/* Listeners, event-loop threads, signals and graceful shutdown. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define THREADS_MAX 64
#define DRAIN_MS 5000

static atomic_int stopping;
static kw_index *shared_index;
static kws_thread *threads; /* reachable until exit (see thread_main) */
static h2o_globalconf_t config;

/* "A.B.C.D:PORT" or "[V6]:PORT" into a sockaddr. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    size_t hlen;
    char *end;
    long port;

    if (colon == NULL || colon == s || (hlen = (size_t)(colon - s)) >= sizeof(host))
        return -1;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (host[0] == '[' && host[hlen - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return 0;
    }
    {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *len = sizeof(*a);
    }
    return 0;
}

static int open_listener(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Does another socket listen at this address already? Our threads share
 * the port with SO_REUSEPORT, and so could a second `keyward serve` of the
 * same user: it would quietly take part of the connections, perhaps to
 * another database. A socket without SO_REUSEPORT cannot bind where one
 * listens. */
static int address_taken(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1, taken, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return 0; /* open_listener reports what is wrong */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    taken = bind(fd, (const struct sockaddr *)ss, len) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    kws_thread *t = listener->data;
    h2o_socket_t *sock;

    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    h2o_accept(&t->accept, sock);
}

static int connections_gone(h2o_context_t *ctx)
{
    return h2o_linklist_is_empty(&ctx->http1._conns) && h2o_linklist_is_empty(&ctx->http2._conns);
}

/* TLS 1.2+ with HTTP/2 offered by ALPN; NULL (message printed) on failure. */
static SSL_CTX *tls_context(const kws_config *cfg)
{
    struct stat st;
    SSL_CTX *ssl;

    /* The private key is a secret like the pepper: refuse it readable by others. */
    if (stat(cfg->tls_key, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "keyward serve: %s must be a file of mode 0600 (it holds the TLS "
                "private key)\n",
                cfg->tls_key);
        return NULL;
    }
    ssl = SSL_CTX_new(TLS_server_method());
    if (ssl == NULL || SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ssl, cfg->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ssl) != 1) {
        fprintf(stderr, "keyward serve: cannot use the TLS certificate %s and key %s\n",
                cfg->tls_cert, cfg->tls_key);
        SSL_CTX_free(ssl);
        return NULL;
    }
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    h2o_ssl_register_alpn_protocols(ssl, h2o_http2_alpn_protocols);
    return ssl;
}

static SSL_CTX *tls;

static void *thread_main(void *arg)
{
    kws_thread *t = arg;
    int64_t drain_until;

    h2o_context_init(&t->h2o, h2o_evloop_create(), &config);
    kws_committer_attach(t);
    t->accept.ctx = &t->h2o;
    t->accept.hosts = config.hosts;
    t->accept.ssl_ctx = tls;
    t->listener = h2o_evloop_socket_create(t->h2o.loop, t->fd, H2O_SOCKET_FLAG_DONT_READ);
    t->listener->data = t;
    h2o_socket_read_start(t->listener, on_accept);
    while (!atomic_load(&stopping))
        h2o_evloop_run(t->h2o.loop, 100);
    /* Stop accepting; idle connections close, requests in flight finish. */
    h2o_socket_read_stop(t->listener);
    h2o_socket_close(t->listener);
    h2o_context_request_shutdown(&t->h2o);
    drain_until = h2o_now(t->h2o.loop) + DRAIN_MS;
    while (!connections_gone(&t->h2o) && h2o_now(t->h2o.loop) < (uint64_t)drain_until)
        h2o_evloop_run(t->h2o.loop, 50);
    kws_jobs_release(t);
    /* The h2o context is not disposed: libh2o 2.2 asserts on timers that
     * its own shutdown leaves armed. The process exits next; like h2o's own
     * server, it leaves that memory to the exit. */
    return NULL;
}

/* Write usage (unless the committer does) and pick up outside changes
 * every sync_ms, on a connection of its own, until the loops and the
 * committer have stopped; then both once more. */
/* The index writer follows changes at most this often (ms). */
#define FOLLOW_MIN_MS 5

static void *sync_main(void *arg)
{
    const kws_config *cfg = arg;
    char err[256] = "";
    kw_open_opts oo = {.create = 0, .err = err, .err_len = sizeof(err)};
    kw_ctx *ctx = NULL;
    int failing = 0, ckpt_failing = 0, wait_failing = 0;

    if (kw_open(&ctx, cfg->db_url, cfg->pepper, &oo) != KW_OK) {
        fprintf(stderr, "keyward serve: the index writer cannot open the database: %s\n", err);
        return NULL;
    }
    if (kw_defer_checkpoints(ctx) != KW_OK)
        fprintf(stderr, "keyward serve: %s\n", kw_errmsg(ctx));
    /* Background work: when it shares a core with a loop, the loop goes
     * first (this thread's wake-ups every sync_ms showed in the loops' p99). */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        fprintf(stderr, "keyward serve: cannot lower the index writer's priority: %s\n",
                strerror(errno));
    while (atomic_load(&stopping) != 2) {
        /* With a committer, usage is its to write (server/create.c). */
        kw_rc rc = kws_committer_running() ? kw_index_follow(shared_index, ctx)
                                           : kw_index_sync(shared_index, ctx);

        if (rc != KW_OK && !failing)
            fprintf(stderr, "keyward serve: index sync failed (will retry): %s\n", kw_errmsg(ctx));
        failing = rc != KW_OK;
        /* The writers leave checkpoints to this thread (kw_defer_checkpoints):
         * the log's pages are copied into the database here, off their path. */
        rc = kw_checkpoint(ctx, NULL, NULL);
        if (rc != KW_OK && !ckpt_failing)
            fprintf(stderr, "keyward serve: checkpoint failed (will retry): %s\n", kw_errmsg(ctx));
        ckpt_failing = rc != KW_OK;
        if (atomic_load(&stopping) == 2)
            break;
        /* Until the next round, or a change committed elsewhere (another
         * node: PostgreSQL's NOTIFY), whichever comes first; but not more
         * often than every FOLLOW_MIN_MS, whatever the rate of commits. */
        {
            uint64_t t0 = kws_clock_us(), spent;

            rc = kw_wait_change(ctx, cfg->sync_ms);
            if (rc != KW_OK && !wait_failing)
                fprintf(stderr, "keyward serve: waiting for changes failed (will retry): %s\n",
                        kw_errmsg(ctx));
            wait_failing = rc != KW_OK;
            spent = kws_clock_us() - t0;
            if (rc != KW_OK && spent < (uint64_t)cfg->sync_ms * 1000)
                usleep((useconds_t)((uint64_t)cfg->sync_ms * 1000 - spent));
            else if (spent < FOLLOW_MIN_MS * 1000)
                usleep((useconds_t)(FOLLOW_MIN_MS * 1000 - spent));
        }
    }
    if (kw_index_sync(shared_index, ctx) != KW_OK)
        fprintf(stderr, "keyward serve: final index sync failed: %s\n", kw_errmsg(ctx));
    kw_close(ctx);
    return NULL;
}

h2o_globalconf_t *kws_h2o_config(void)
{
    return &config;
}

void kws_setup_config(void)
{
    h2o_hostconf_t *host;
    h2o_pathconf_t *path;
    h2o_handler_t *handler;

    h2o_config_init(&config);
    /* h2o refuses bodies over this itself; handlers cap JSON at KWS_BODY_MAX. */
    config.max_request_entity_size = 1024 * 1024;
    /* No Server header: it named libh2o and its version to every client,
     * and formatting it was a sprintf on every answer. */
    config.server_name = h2o_iovec_init("", 0);
    host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    path = h2o_config_register_path(host, "/", 0);
    handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = kws_route;
}

/* Open every thread's database context and listener. */
static int prepare(const kws_config *cfg, kws_thread *ts, int n, char *where, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (parse_listen(cfg->listen, &ss, &len) != 0) {
        fprintf(stderr, "keyward serve: --listen takes ADDR:PORT (127.0.0.1:8700, [::1]:8700)\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        char err[256] = "";
        kw_open_opts oo = {.create = 0, .err = err, .err_len = sizeof(err)};
        kw_rc rc = kw_open(&ts[i].kw, cfg->db_url, cfg->pepper, &oo);
        if (rc == KW_OK && (rc = kw_defer_checkpoints(ts[i].kw)) != KW_OK)
            snprintf(err, sizeof(err), "%s", kw_errmsg(ts[i].kw));
        if (rc == KW_OK && (cfg->seed_signing != NULL || cfg->seed_master != NULL) &&
            (rc = kw_seed_secrets(ts[i].kw, cfg->seed_signing, cfg->seed_master)) != KW_OK)
            snprintf(err, sizeof(err), "the seed secrets: out of memory");
        if (rc == KW_OK && cfg->master_key != NULL &&
            (rc = kw_secrets_master(ts[i].kw, cfg->master_key)) != KW_OK)
            snprintf(err, sizeof(err), "the master key: %s", kw_errmsg(ts[i].kw));
        if (rc != KW_OK) {
            fprintf(stderr, "keyward serve: %s: %s\n", kw_strerror(rc), err);
            return rc == KW_ERR_NOMEM ? 5 : 3;
        }
        if (i == 0 && address_taken(&ss, len)) {
            fprintf(stderr, "keyward serve: cannot listen on %s: %s (another server?)\n",
                    cfg->listen, strerror(EADDRINUSE));
            return 4;
        }
        ts[i].fd = open_listener(&ss, len);
        if (ts[i].fd < 0) {
            fprintf(stderr, "keyward serve: cannot listen on %s: %s\n", cfg->listen,
                    strerror(errno));
            return 4;
        }
        if (i == 0) { /* port 0: every thread binds the port the first one got */
            len = sizeof(ss);
            getsockname(ts[0].fd, (struct sockaddr *)&ss, &len);
        }
        ts[i].cfg = cfg;
        ts[i].num = i;
    }
    {
        char host[NI_MAXHOST];
        h2o_socket_getnumerichost((struct sockaddr *)&ss, len, host);
        snprintf(where, cap, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
                 h2o_socket_getport((struct sockaddr *)&ss));
    }
    return 0;
}

int kws_run(const kws_config *cfg)
{
    int n = cfg->threads < 1 ? 1 : cfg->threads > THREADS_MAX ? THREADS_MAX : cfg->threads;
    sigset_t sigs;
    char where[80];
    int sig, ret;

    threads = calloc((size_t)n, sizeof(*threads));
    if (threads == NULL)
        return 5;
    for (int i = 0; i < n; i++)
        threads[i].fd = -1;
    kws_metrics_register(threads, n);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* threads inherit: only sigwait sees them */
    kws_setup_config();
    ret = prepare(cfg, threads, n, where, sizeof(where));
    if (ret == 0 && cfg->tls_cert != NULL && (tls = tls_context(cfg)) == NULL)
        ret = 3;
    if (ret == 0) {
        uint64_t t0 = kws_clock_us();
        kw_rc rc = kw_index_open(&shared_index, threads[0].kw, cfg->index_max);
        if (rc != KW_OK) {
            fprintf(stderr, "keyward serve: cannot build the index: %s: %s\n", kw_strerror(rc),
                    kw_errmsg(threads[0].kw));
            ret = rc == KW_ERR_TOO_LARGE ? 2 : 4;
        } else {
            kw_index_stats st;
            kw_index_stats_get(shared_index, &st);
            fprintf(stderr, "keyward serve: %zu keys indexed in %.3f s\n", st.keys,
                    (double)(kws_clock_us() - t0) / 1e6);
        }
    }
    if (ret == 0) {
        pthread_t sync_tid;
        int started = 0, syncing;
        /* Before the loops: they read whether it runs. */
        if (kws_committer_start(cfg, shared_index) != 0)
            fprintf(stderr, "keyward serve: creating keys without group commit\n");
        for (int i = 0; i < n; i++) {
            threads[i].index = shared_index;
            if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0)
                break;
            threads[i].started = 1;
            started++;
        }
        syncing = pthread_create(&sync_tid, NULL, sync_main, (void *)cfg) == 0;
        fprintf(stderr, "keyward serve: listening on %s (%d threads%s)\n", where, started,
                tls ? ", TLS, HTTP/2" : "");
        fflush(stderr);
        sigwait(&sigs, &sig);
        fprintf(stderr, "keyward serve: %s, shutting down\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
        atomic_store(&stopping, 1);
        for (int i = 0; i < n; i++)
            if (threads[i].started)
                pthread_join(threads[i].tid, NULL);
        kws_committer_stop();
        atomic_store(&stopping, 2); /* loops done: the writer's last sync sees everything */
        if (syncing)
            pthread_join(sync_tid, NULL);
    }
    kw_index_free(shared_index);
    shared_index = NULL;
    for (int i = 0; i < n; i++) {
        kw_close(threads[i].kw);
        if (!threads[i].started && threads[i].fd >= 0)
            close(threads[i].fd);
    }
    /* threads[] stays allocated: the h2o contexts in it live until exit. */
    return ret;
}
