/*
 * libFuzzer harness for request handling: raw bytes from a client, through
 * h2o's HTTP/1 parser, keyward's router, query strings, JSON bodies and
 * every handler, on an in-memory database. The token ADMINKEY in the input
 * is replaced by a real admin key (scope *), so that admin routes are
 * reached past authentication.
 *
 * Each input is one connection: a socketpair whose far end writes the
 * bytes, then half-closes; the loop runs until the server closes or a
 * bounded number of turns. Crashes, leaks and sanitizer reports are the
 * findings.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../server/server.h"

#define INPUT_MAX (16 * 1024)
#define TURNS 64

static kws_thread thread;
static kws_config cfg;
static char admin[KW_KEY_MAX + 1];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static void setup(void)
{
    static const char *const all[] = {"*"};
    kw_open_opts opts = {.create = 1};
    kw_secret *pepper = NULL, *key = NULL;
    kw_key_params p;

    if (kw_init() != KW_OK || kw_secret_new(&pepper, KW_PEPPER_LEN) != KW_OK)
        die("init");
    memset(kw_secret_data(pepper), 9, KW_PEPPER_LEN);
    if (kw_open(&thread.kw, "sqlite::memory:", pepper, &opts) != KW_OK)
        die("open");
    kw_key_params_init(&p);
    p.scopes = all;
    p.nscopes = 1;
    if (kw_key_create(thread.kw, &p, &(kw_actor){"fuzz", "local"}, &key, NULL) != KW_OK)
        die("admin key");
    memcpy(admin, kw_secret_cdata(key), kw_secret_len(key));
    kw_secret_free(key);
    kw_secret_free(pepper);
    if (kw_index_open(&thread.index, thread.kw, 100000) != KW_OK)
        die("index");
    if (kws_cidr_parse("127.0.0.0/8", &cfg.trusted[0]) != 0)
        die("cidr");
    cfg.ntrusted = 1;
    thread.cfg = &cfg;
    kws_setup_config();
    h2o_context_init(&thread.h2o, h2o_evloop_create(), kws_h2o_config());
    thread.accept.ctx = &thread.h2o;
    thread.accept.hosts = kws_h2o_config()->hosts;
    kws_metrics_register(&thread, 1);
}

/* The input with every "ADMINKEY" replaced by the admin key. */
static size_t expand(char *out, size_t cap, const uint8_t *data, size_t size)
{
    size_t o = 0, alen = strlen(admin);

    for (size_t i = 0; i < size && o < cap; i++) {
        if (i + 8 <= size && memcmp(data + i, "ADMINKEY", 8) == 0 && o + alen <= cap) {
            memcpy(out + o, admin, alen);
            o += alen;
            i += 7;
        } else {
            out[o++] = (char)data[i];
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[INPUT_MAX * 8];
    int fds[2], big = 1 << 20;
    char sink[4096];
    size_t len;
    h2o_socket_t *sock;

    if (thread.kw == NULL)
        setup();
    if (size > INPUT_MAX)
        return 0;
    len = expand(buf, sizeof(buf), data, size);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        die("socketpair");
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (write(fds[1], buf, len) != (ssize_t)len)
        die("write");
    shutdown(fds[1], SHUT_WR);
    sock = h2o_evloop_socket_create(thread.h2o.loop, fds[0], 0);
    h2o_accept(&thread.accept, sock);
    for (int turn = 0; turn < TURNS; turn++) {
        ssize_t n;
        h2o_evloop_run(thread.h2o.loop, 0);
        n = recv(fds[1], sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0)
            break; /* the server closed the connection */
    }
    close(fds[1]);
    /* Let h2o notice the close and free the connection. */
    for (int turn = 0; turn < 8; turn++)
        h2o_evloop_run(thread.h2o.loop, 0);
    return 0;
}
