/* Shared helpers of the unit tests. */
#ifndef KW_TEST_HELPERS_H
#define KW_TEST_HELPERS_H

#include <keyward/keyward.h>

/* A fresh keyward database in a new temporary directory. */
typedef struct kwt_db {
    char dir[256];
    char url[300];
    kw_secret *pepper;
    kw_ctx *ctx;
} kwt_db;

/* Create and open; aborts the test on failure. */
void kwt_db_open(kwt_db *t);
/* Close and remove the directory. */
void kwt_db_close(kwt_db *t);
/* The actor used by tests. */
extern const kw_actor kwt_actor;

/* Create a key with the given scopes (NULL-terminated list) and settings;
 * returns the key (caller frees) and fills rec. Aborts on failure. */
kw_secret *kwt_key(kwt_db *t, const kw_key_params *p, kw_key_record *rec);

/* Create n keys with default settings in one kw_key_create_many (one
 * transaction, actor kwt_actor); the keys are not kept. Aborts on failure. */
void kwt_keys_batch(kwt_db *t, size_t n);

/* Verify helper: NULL-terminated required scopes, cost; returns the verdict. */
kw_verdict kwt_verify(kwt_db *t, const kw_secret *key, const char *const *scopes, uint32_t cost,
                      kw_verify_result *out);

/* cmocka fixtures: a fresh kwt_db in *state. */
int kwt_setup(void **state);
int kwt_teardown(void **state);

/* The library's clock (CLOCK_REALTIME) in ms, and sleeping on it. */
int64_t kwt_now_ms(void);
void kwt_sleep_ms(int64_t ms);
/* Wait for the start of a second, so that "now + 1" is most of a second away. */
void kwt_align_to_second(void);
/* Sleep until the library's clock reads at least `t` (Unix seconds). */
void kwt_sleep_until(int64_t t);

#endif
