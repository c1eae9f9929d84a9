#define _GNU_SOURCE /* execvpe */
/* keyward run --mask (docs/secrets.md): the command runs as a child whose
 * standard output and error pass through keyward, every secret value in
 * them replaced with "***". Signals keyward gets are passed on, and
 * keyward ends as the child did (its exit status, or its signal). */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK 65536

static volatile sig_atomic_t child_pid;

static void pass_on(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct stream {
    int in, out, open;
    unsigned char *buf; /* CHUNK + the longest value */
    size_t n;
} stream;

/* Write what is in s->buf with the values masked; keep back the last
 * bytes that could be the start of a value cut by the read, unless at_end. */
static void flush_masked(stream *s, const kw_secret *const *masks, size_t nmasks, size_t longest,
                         int at_end)
{
    static const unsigned char stars[] = "***";
    unsigned char out[CHUNK];
    size_t i = 0, o = 0,
           limit = at_end || s->n < longest ? (at_end ? s->n : 0) : s->n - (longest - 1);

    while (i < limit) {
        size_t hit = 0;
        for (size_t m = 0; m < nmasks && hit == 0; m++) { /* the longest first: sorted */
            size_t len = kw_secret_len(masks[m]);
            if (i + len <= s->n && memcmp(s->buf + i, kw_secret_cdata(masks[m]), len) == 0)
                hit = len;
        }
        if (o + 3 > sizeof(out)) {
            write_all(s->out, out, o);
            o = 0;
        }
        if (hit > 0) {
            memcpy(out + o, stars, 3);
            o += 3;
            i += hit;
        } else {
            out[o++] = s->buf[i++];
        }
    }
    write_all(s->out, out, o);
    memmove(s->buf, s->buf + i, s->n - i);
    s->n -= i;
}

static int by_length(const void *a, const void *b)
{
    size_t x = kw_secret_len(*(const kw_secret *const *)a),
           y = kw_secret_len(*(const kw_secret *const *)b);

    return x < y ? 1 : x > y ? -1 : 0;
}

int kwc_run_masked(const kwc_global *g, char **argv, char **envp, kw_secret **masks, size_t nmasks)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    int pout[2], perr[2], status;
    size_t longest = 1;
    stream st[2];
    pid_t pid;

    qsort(masks, nmasks, sizeof(*masks), by_length);
    if (nmasks > 0)
        longest = kw_secret_len(masks[0]);
    if (pipe(pout) != 0 || pipe(perr) != 0) {
        fprintf(stderr, "%s: cannot make pipes; the command was not started\n", g->name);
        return EXIT_INTERNAL;
    }
    fflush(NULL);
    if ((pid = fork()) < 0) {
        fprintf(stderr, "%s: cannot fork; the command was not started\n", g->name);
        return EXIT_INTERNAL;
    }
    if (pid == 0) {
        dup2(pout[1], STDOUT_FILENO);
        dup2(perr[1], STDERR_FILENO);
        close(pout[0]);
        close(pout[1]);
        close(perr[0]);
        close(perr[1]);
        execvpe(argv[0], argv, envp);
        fprintf(stderr, "%s: %s: cannot be started\n", g->name, argv[0]);
        _exit(127);
    }
    child_pid = pid;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct sigaction sa = {.sa_handler = pass_on};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(sigs[i], &sa, NULL);
    }
    close(pout[1]);
    close(perr[1]);
    st[0] = (stream){pout[0], STDOUT_FILENO, 1, malloc(CHUNK + longest), 0};
    st[1] = (stream){perr[0], STDERR_FILENO, 1, malloc(CHUNK + longest), 0};
    if (st[0].buf == NULL || st[1].buf == NULL) {
        kill(pid, SIGKILL);
        st[0].open = st[1].open = 0;
    }
    while (st[0].open || st[1].open) {
        struct pollfd fds[2] = {{st[0].open ? st[0].in : -1, POLLIN, 0},
                                {st[1].open ? st[1].in : -1, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            ssize_t r;
            if (!st[k].open || fds[k].revents == 0)
                continue;
            r = read(st[k].in, st[k].buf + st[k].n, CHUNK + longest - st[k].n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                flush_masked(&st[k], (const kw_secret *const *)masks, nmasks, longest, 1);
                st[k].open = 0;
                continue;
            }
            st[k].n += (size_t)r;
            flush_masked(&st[k], (const kw_secret *const *)masks, nmasks, longest, 0);
        }
    }
    for (int k = 0; k < 2; k++) {
        close(st[k].in);
        free(st[k].buf);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    child_pid = 0;
    if (WIFSIGNALED(status)) { /* end as the child did */
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_INTERNAL;
}
