/* kw_secret: locked, guarded, wiped buffers (libsodium's secure memory). */
#include "internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_MAX 65536

struct kw_secret {
    size_t len;
    size_t cap;
    unsigned char *buf; /* cap + 1 bytes from sodium_malloc */
};

KW_API kw_rc kw_secret_new(kw_secret **out, size_t len)
{
    kw_secret *s;

    if (len == 0 || len > SECRET_MAX)
        return KW_ERR_INVALID;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KW_ERR_NOMEM;
    /* sodium_malloc: guard pages, mlock, MADV_DONTDUMP; sodium_free wipes. */
    s->buf = sodium_malloc(len + 1);
    if (s->buf == NULL) {
        free(s);
        return KW_ERR_NOMEM;
    }
    memset(s->buf, 0, len + 1);
    s->len = len;
    s->cap = len;
    *out = s;
    return KW_OK;
}

KW_API kw_rc kw_secret_from(kw_secret **out, const void *src, size_t len)
{
    kw_secret *s;
    kw_rc rc = kw_secret_new(&s, len);

    if (rc != KW_OK)
        return rc;
    memcpy(s->buf, src, len);
    *out = s;
    return KW_OK;
}

KW_API void kw_secret_free(kw_secret *s)
{
    if (s == NULL)
        return;
    sodium_free(s->buf);
    free(s);
}

KW_API unsigned char *kw_secret_data(kw_secret *s)
{
    return s->buf;
}

KW_API const unsigned char *kw_secret_cdata(const kw_secret *s)
{
    return s->buf;
}

KW_API size_t kw_secret_len(const kw_secret *s)
{
    return s->len;
}

KW_API void kw_secret_truncate(kw_secret *s, size_t len)
{
    if (len >= s->len)
        return;
    sodium_memzero(s->buf + len, s->cap + 1 - len);
    s->len = len;
}

KW_API int kw_secret_equal(const kw_secret *a, const kw_secret *b)
{
    if (a->len != b->len)
        return 0;
    return sodium_memcmp(a->buf, b->buf, a->len) == 0;
}

KW_API kw_rc kw_secret_read_fd(kw_secret **out, int fd, size_t max)
{
    kw_secret *s;
    size_t len = 0;
    kw_rc rc;

    if (max == 0 || max >= SECRET_MAX)
        return KW_ERR_INVALID;
    /* One byte more than allowed, to tell "exactly max" from "too long". */
    rc = kw_secret_new(&s, max + 1);
    if (rc != KW_OK)
        return rc;
    for (;;) {
        ssize_t r = read(fd, s->buf + len, s->cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            kw_secret_free(s);
            return KW_ERR_IO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == s->cap) {
            kw_secret_free(s);
            return KW_ERR_TOO_LARGE;
        }
    }
    if (len > 0 && s->buf[len - 1] == '\n') {
        len--;
        if (len > 0 && s->buf[len - 1] == '\r')
            len--;
    }
    kw_secret_truncate(s, len);
    *out = s;
    return KW_OK;
}
