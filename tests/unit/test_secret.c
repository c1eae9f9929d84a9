/* Unit tests of kw_secret (lib/secret.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <keyward/keyward.h>

#define SECRET_MAX 65536

static void test_new_limits(void **state)
{
    static char marker;
    kw_secret *const sentinel = (kw_secret *)&marker;
    kw_secret *s = sentinel;

    (void)state;
    assert_int_equal(kw_secret_new(&s, 0), KW_ERR_INVALID);
    assert_ptr_equal(s, sentinel);
    assert_int_equal(kw_secret_new(&s, SECRET_MAX + 1), KW_ERR_INVALID);
    assert_ptr_equal(s, sentinel);
    assert_int_equal(kw_secret_new(&s, SIZE_MAX), KW_ERR_INVALID);
    assert_ptr_equal(s, sentinel);

    assert_int_equal(kw_secret_new(&s, 1), KW_OK);
    assert_int_equal(kw_secret_len(s), 1);
    assert_int_equal(kw_secret_data(s)[0], 0);
    assert_int_equal(kw_secret_data(s)[1], 0);
    kw_secret_free(s);

    s = NULL;
    assert_int_equal(kw_secret_new(&s, SECRET_MAX), KW_OK);
    assert_int_equal(kw_secret_len(s), SECRET_MAX);
    for (size_t i = 0; i <= SECRET_MAX; i++) /* zeroed, NUL after */
        if (kw_secret_cdata(s)[i] != 0)
            fail_msg("byte %zu of a new secret is not zero", i);
    kw_secret_data(s)[SECRET_MAX - 1] = 0xff; /* writable to the end */
    assert_ptr_equal(kw_secret_data(s), kw_secret_cdata(s));
    kw_secret_free(s);
}

static void test_from(void **state)
{
    static const unsigned char bytes[] = {'s', 0, 'c', 0xff, 'r'};
    kw_secret *s = NULL;

    (void)state;
    assert_int_equal(kw_secret_from(&s, bytes, sizeof(bytes)), KW_OK);
    assert_int_equal(kw_secret_len(s), sizeof(bytes));
    assert_memory_equal(kw_secret_cdata(s), bytes, sizeof(bytes));
    assert_int_equal(kw_secret_cdata(s)[sizeof(bytes)], 0);
    kw_secret_free(s);

    s = NULL;
    assert_int_equal(kw_secret_from(&s, "hello", 5), KW_OK);
    assert_string_equal((const char *)kw_secret_cdata(s), "hello");
    kw_secret_free(s);

    s = NULL;
    assert_int_equal(kw_secret_from(&s, "x", 0), KW_ERR_INVALID);
    assert_null(s);
}

static kw_secret *mk(const char *str)
{
    kw_secret *s = NULL;

    assert_int_equal(kw_secret_from(&s, str, strlen(str)), KW_OK);
    return s;
}

static void test_equal(void **state)
{
    kw_secret *a = mk("correct horse"), *b = mk("correct horse"), *c = mk("correct horsf");
    kw_secret *d = mk("Correct horse"), *e = mk("correct hors"), *f = mk("correct horse ");

    (void)state;
    assert_true(kw_secret_equal(a, a));
    assert_true(kw_secret_equal(a, b));
    assert_true(kw_secret_equal(b, a));
    assert_false(kw_secret_equal(a, c)); /* last byte differs */
    assert_false(kw_secret_equal(a, d)); /* first byte differs */
    assert_false(kw_secret_equal(a, e)); /* a prefix of a */
    assert_false(kw_secret_equal(e, a));
    assert_false(kw_secret_equal(a, f)); /* a is a prefix */
    kw_secret_free(a);
    kw_secret_free(b);
    kw_secret_free(c);
    kw_secret_free(d);
    kw_secret_free(e);
    kw_secret_free(f);
}

static void test_truncate(void **state)
{
    kw_secret *s = mk("abcdefgh");
    kw_secret *t = mk("abc");

    (void)state;
    kw_secret_truncate(s, 3);
    assert_int_equal(kw_secret_len(s), 3);
    assert_memory_equal(kw_secret_cdata(s), "abc", 3);
    for (size_t i = 3; i <= 8; i++) /* the tail (and the NUL) reads 0 */
        assert_int_equal(kw_secret_cdata(s)[i], 0);
    assert_true(kw_secret_equal(s, t));

    kw_secret_truncate(s, 5); /* never grows */
    assert_int_equal(kw_secret_len(s), 3);
    kw_secret_truncate(s, 3);
    assert_int_equal(kw_secret_len(s), 3);

    kw_secret_truncate(s, 0);
    assert_int_equal(kw_secret_len(s), 0);
    for (size_t i = 0; i <= 8; i++)
        assert_int_equal(kw_secret_cdata(s)[i], 0);
    kw_secret_free(s);
    kw_secret_free(t);
}

/* Feed `n` bytes through a pipe (closed after) to kw_secret_read_fd. */
static kw_rc read_pipe(kw_secret **out, const void *data, size_t n, size_t max)
{
    int fds[2];
    kw_rc rc;

    assert_true(n < 65536); /* fits the pipe buffer: no writer thread needed */
    assert_int_equal(pipe(fds), 0);
    if (n > 0)
        assert_int_equal(write(fds[1], data, n), (ssize_t)n);
    close(fds[1]);
    rc = kw_secret_read_fd(out, fds[0], max);
    close(fds[0]);
    return rc;
}

/* Read `in` with a generous max and expect `want` (want_len bytes). */
static void expect_read(const char *in, size_t in_len, const char *want, size_t want_len)
{
    kw_secret *s = NULL;
    size_t got;
    int same;

    assert_int_equal(read_pipe(&s, in, in_len, 1024), KW_OK);
    assert_non_null(s);
    got = kw_secret_len(s);
    same = got == want_len && memcmp(kw_secret_cdata(s), want, want_len) == 0 &&
           kw_secret_cdata(s)[want_len] == 0;
    kw_secret_free(s);
    if (!same)
        fail_msg("read of %zu bytes gave %zu bytes, expected %zu", in_len, got, want_len);
}

#define EXPECT_READ(in, want) expect_read(in, sizeof(in) - 1, want, sizeof(want) - 1)

static void test_read_fd_newlines(void **state)
{
    (void)state;
    EXPECT_READ("abc", "abc");
    EXPECT_READ("abc\n", "abc");
    EXPECT_READ("abc\r\n", "abc");
    EXPECT_READ("abc\n\n", "abc\n");       /* only one newline */
    EXPECT_READ("abc\r\n\r\n", "abc\r\n"); /* only one CRLF */
    EXPECT_READ("abc\r\r\n", "abc\r");
    EXPECT_READ("\n", "");
    EXPECT_READ("\r\n", "");
    EXPECT_READ("a\nb\n", "a\nb");
    EXPECT_READ("a\0b\n", "a\0b"); /* binary-safe */
    EXPECT_READ(" abc \n", " abc ");
}

/* A lone trailing "\r" is not a newline: the header promises to remove one
 * "\n" or "\r\n", nothing else. */
static void test_read_fd_lone_cr_kept(void **state)
{
    (void)state;
    EXPECT_READ("abc\r", "abc\r");
}

static void test_read_fd_empty(void **state)
{
    kw_secret *s = NULL;

    (void)state;
    assert_int_equal(read_pipe(&s, "", 0, 16), KW_OK);
    assert_non_null(s);
    assert_int_equal(kw_secret_len(s), 0);
    assert_int_equal(kw_secret_cdata(s)[0], 0);
    kw_secret_free(s);
}

static void test_read_fd_limit(void **state)
{
    char buf[4096];
    kw_secret *s = NULL;

    (void)state;
    memset(buf, 'k', sizeof(buf));

    /* exactly max bytes: fine */
    assert_int_equal(read_pipe(&s, buf, 16, 16), KW_OK);
    assert_int_equal(kw_secret_len(s), 16);
    assert_memory_equal(kw_secret_cdata(s), buf, 16);
    kw_secret_free(s);

    /* max + 1: too large, and *out untouched */
    s = NULL;
    assert_int_equal(read_pipe(&s, buf, 17, 16), KW_ERR_TOO_LARGE);
    assert_null(s);
    assert_int_equal(read_pipe(&s, buf, sizeof(buf), 16), KW_ERR_TOO_LARGE);
    assert_null(s);

    /* the same at a larger size */
    assert_int_equal(read_pipe(&s, buf, 4000, 4000), KW_OK);
    assert_int_equal(kw_secret_len(s), 4000);
    kw_secret_free(s);
    s = NULL;
    assert_int_equal(read_pipe(&s, buf, 4001, 4000), KW_ERR_TOO_LARGE);
    assert_null(s);

    /* max of 1 */
    assert_int_equal(read_pipe(&s, "x", 1, 1), KW_OK);
    assert_int_equal(kw_secret_len(s), 1);
    kw_secret_free(s);
    s = NULL;
    assert_int_equal(read_pipe(&s, "xy", 2, 1), KW_ERR_TOO_LARGE);
    assert_null(s);

    /* a max of 0 cannot be honoured */
    assert_int_not_equal(read_pipe(&s, "", 0, 0), KW_OK);
    assert_null(s);
}

/* Input arriving in several pieces is read to EOF. */
static void test_read_fd_pieces(void **state)
{
    static const char *const pieces[] = {"ab", "cd", "ef\n"};
    kw_secret *s = NULL;
    int fds[2], status;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (size_t i = 0; i < 3; i++) {
            if (write(fds[1], pieces[i], strlen(pieces[i])) < 0)
                _exit(1);
            usleep(20000);
        }
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(kw_secret_read_fd(&s, fds[0], 64), KW_OK);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(kw_secret_len(s), 6);
    assert_memory_equal(kw_secret_cdata(s), "abcdef", 6);
    kw_secret_free(s);
}

static void test_read_fd_bad_fd(void **state)
{
    kw_secret *s = NULL;

    (void)state;
    assert_int_equal(kw_secret_read_fd(&s, -1, 16), KW_ERR_IO);
    assert_null(s);
}

static void test_free_null(void **state)
{
    (void)state;
    kw_secret_free(NULL);
}

/* Many small secrets at once (in release builds, slab slots across several
 * slabs): each keeps its own bytes, new ones start zeroed, freed slots are
 * reused without leaking a previous secret's bytes. */
static void test_many_small(void **state)
{
    enum { N = 1500 };
    static kw_secret *v[N];

    (void)state;
    for (int i = 0; i < N; i++) {
        assert_int_equal(kw_secret_new(&v[i], 1 + (size_t)i % 120), KW_OK);
        for (size_t k = 0; k < kw_secret_len(v[i]); k++)
            assert_int_equal(kw_secret_cdata(v[i])[k], 0);
        memset(kw_secret_data(v[i]), 'a' + i % 26, kw_secret_len(v[i]));
    }
    for (int i = 0; i < N; i += 2)
        kw_secret_free(v[i]);
    for (int i = 0; i < N; i += 2) {
        assert_int_equal(kw_secret_new(&v[i], 127), KW_OK);
        for (size_t k = 0; k <= 127; k++) /* zeroed, and the NUL after */
            assert_int_equal(kw_secret_cdata(v[i])[k], 0);
    }
    for (int i = 1; i < N; i += 2)
        for (size_t k = 0; k < kw_secret_len(v[i]); k++)
            assert_int_equal(kw_secret_cdata(v[i])[k], 'a' + i % 26);
    for (int i = 0; i < N; i++)
        kw_secret_free(v[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_small),
        cmocka_unit_test(test_new_limits),
        cmocka_unit_test(test_from),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_read_fd_newlines),
        cmocka_unit_test(test_read_fd_lone_cr_kept),
        cmocka_unit_test(test_read_fd_empty),
        cmocka_unit_test(test_read_fd_limit),
        cmocka_unit_test(test_read_fd_pieces),
        cmocka_unit_test(test_read_fd_bad_fd),
        cmocka_unit_test(test_free_null),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
