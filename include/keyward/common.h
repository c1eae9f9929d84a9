/*
 * keyward — common definitions: the result enum, export macros, attributes.
 *
 * Every fallible function of libkeyward returns a kw_rc. KW_OK is 0; all
 * other values are failures. The enum only ever grows: values are stable.
 */
#ifndef KEYWARD_COMMON_H
#define KEYWARD_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KW_BUILDING_LIBRARY)
#define KW_API __attribute__((visibility("default")))
#else
#define KW_API
#endif

#define KW_WARN_UNUSED __attribute__((warn_unused_result))

/** Result of a library operation. Stable values; new ones are appended. */
typedef enum kw_rc {
    KW_OK = 0,
    KW_ERR_NOMEM = 1,           /**< out of memory (or locked memory) */
    KW_ERR_INVALID = 2,         /**< an argument failed validation */
    KW_ERR_NOT_FOUND = 3,       /**< no such record */
    KW_ERR_CONFLICT = 4,        /**< record exists / state forbids the change */
    KW_ERR_STORAGE = 5,         /**< the database failed (I/O, corrupt, locked) */
    KW_ERR_READONLY = 6,        /**< the database cannot be written */
    KW_ERR_NO_DATABASE = 7,     /**< the database does not exist / not initialised */
    KW_ERR_PEPPER = 8,          /**< pepper missing, unreadable or malformed */
    KW_ERR_PEPPER_MISMATCH = 9, /**< pepper is not the one the database uses */
    KW_ERR_IO = 10,             /**< a file could not be read or written */
    KW_ERR_SCHEMA = 11,         /**< database schema is newer than this build */
    KW_ERR_TAMPERED = 12,       /**< audit chain verification failed */
    KW_ERR_CRYPTO = 13,         /**< the crypto library failed to initialise */
    KW_ERR_TOO_LARGE = 14,      /**< input exceeds a documented cap */
    KW_ERR_MASTER_KEY = 15,     /**< master key missing, malformed, or not this database's */
} kw_rc;

/**
 * Human-readable, constant description of a result code.
 * @return a static string; never NULL.
 */
KW_API const char *kw_strerror(kw_rc rc);

/** Library version string, e.g. "0.1.0". */
KW_API const char *kw_version(void);

/**
 * Initialise the library (libsodium). Idempotent and thread-safe.
 * @return KW_OK or KW_ERR_CRYPTO.
 */
KW_API kw_rc kw_init(void) KW_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif
