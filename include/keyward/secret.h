/*
 * keyward — secrets as a type.
 *
 * A kw_secret is a byte buffer in locked memory (never swapped, excluded from
 * core dumps, guard pages around it or, for up to 127 bytes, around the slab
 * it shares with other small secrets), wiped when freed, compared only in
 * constant time, and printed only as "(hidden)". Key material and the pepper
 * live in kw_secret buffers and nowhere else.
 */
#ifndef KEYWARD_SECRET_H
#define KEYWARD_SECRET_H

#include <keyward/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_secret kw_secret;

/** What a secret prints as, wherever a value would be shown. */
#define KW_SECRET_HIDDEN "(hidden)"

/**
 * Allocate a zeroed secret of `len` bytes (1..65536) in locked memory.
 * @param out receives the new secret, owned by the caller; set only on success.
 * @return KW_OK, KW_ERR_INVALID or KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secret_new(kw_secret **out, size_t len) KW_WARN_UNUSED;

/**
 * Allocate a secret holding a copy of `len` bytes at `src`.
 * @return KW_OK, KW_ERR_INVALID or KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secret_from(kw_secret **out, const void *src, size_t len) KW_WARN_UNUSED;

/** Wipe and free. Accepts NULL. */
KW_API void kw_secret_free(kw_secret *s);

/** The bytes. The buffer is always followed by one NUL byte (not counted). */
KW_API unsigned char *kw_secret_data(kw_secret *s);
KW_API const unsigned char *kw_secret_cdata(const kw_secret *s);

/** Length in bytes (without the trailing NUL). */
KW_API size_t kw_secret_len(const kw_secret *s);

/** Shrink the visible length (e.g. after trimming a newline); wipes the tail. */
KW_API void kw_secret_truncate(kw_secret *s, size_t len);

/**
 * Constant-time equality of two secrets (time depends only on lengths).
 * @return 1 if equal, 0 otherwise.
 */
KW_API int kw_secret_equal(const kw_secret *a, const kw_secret *b);

/**
 * Read a secret from a file descriptor until EOF or `max` bytes; one trailing
 * "\n" or "\r\n" is removed. Fails with KW_ERR_TOO_LARGE past `max`.
 * @return KW_OK, KW_ERR_TOO_LARGE, KW_ERR_IO, KW_ERR_NOMEM.
 */
KW_API kw_rc kw_secret_read_fd(kw_secret **out, int fd, size_t max) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
