/*
 * kw_secret: locked, wiped buffers (libsodium's secure memory).
 *
 * A buffer of its own (sodium_malloc: guard pages, mlock, no core dump)
 * costs about six system calls to make and free: a quarter of a key's
 * creation. So small secrets (keys, the pepper) take a 128-byte slot in a
 * shared slab instead: 64 KiB from sodium_malloc (locked, out of core
 * dumps, guard pages around the slab), slots wiped when freed and reused,
 * slabs kept for the process's life. What is lost is a guard page between
 * two small secrets; sanitizer builds (the tests) keep one buffer per
 * secret, so that ASan still sees any overrun.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_MAX 65536
#define SLOT 128
#define SLAB (64 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define KW_SECRET_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KW_SECRET_SLABS 0
#endif
#endif
#ifndef KW_SECRET_SLABS
#define KW_SECRET_SLABS 1
#endif

struct kw_secret {
    size_t len;
    size_t cap;
    unsigned char *buf; /* cap + 1 bytes: a slab slot, or from sodium_malloc */
    int slot;
};

/* Free slots, linked through their first bytes (zero otherwise). */
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *slab_free;

static unsigned char *slot_get(void)
{
    unsigned char *p;

    pthread_mutex_lock(&slab_lock);
    if (slab_free == NULL) {
        unsigned char *slab = sodium_malloc(SLAB);
        if (slab == NULL) {
            pthread_mutex_unlock(&slab_lock);
            return NULL;
        }
        for (size_t i = 0; i < SLAB; i += SLOT) {
            memcpy(slab + i, &slab_free, sizeof(slab_free));
            slab_free = slab + i;
        }
    }
    p = slab_free;
    memcpy(&slab_free, p, sizeof(slab_free));
    pthread_mutex_unlock(&slab_lock);
    memset(p, 0, SLOT);
    return p;
}

static void slot_put(unsigned char *p)
{
    sodium_memzero(p, SLOT);
    pthread_mutex_lock(&slab_lock);
    memcpy(p, &slab_free, sizeof(slab_free));
    slab_free = p;
    pthread_mutex_unlock(&slab_lock);
}

KW_API kw_rc kw_secret_new(kw_secret **out, size_t len)
{
    kw_secret *s;

    if (len == 0 || len > SECRET_MAX)
        return KW_ERR_INVALID;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KW_ERR_NOMEM;
    s->slot = KW_SECRET_SLABS && len + 1 <= SLOT;
    /* sodium_malloc: guard pages, mlock, MADV_DONTDUMP; sodium_free wipes. */
    s->buf = s->slot ? slot_get() : sodium_malloc(len + 1);
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
    if (s->slot)
        slot_put(s->buf);
    else
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
