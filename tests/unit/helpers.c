#include "helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const kw_actor kwt_actor = {"test", "local"};

void kwt_db_open(kwt_db *t)
{
    kw_open_opts opts = {.create = 1};

    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/kwtest.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->url, sizeof(t->url), "sqlite:%s/k.db", t->dir);
    assert_int_equal(kw_init(), KW_OK);
    assert_int_equal(kw_secret_new(&t->pepper, KW_PEPPER_LEN), KW_OK);
    memset(kw_secret_data(t->pepper), 0x42, KW_PEPPER_LEN);
    assert_int_equal(kw_open(&t->ctx, t->url, t->pepper, &opts), KW_OK);
}

void kwt_db_close(kwt_db *t)
{
    char cmd[300];

    kw_close(t->ctx);
    kw_secret_free(t->pepper);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

kw_secret *kwt_key(kwt_db *t, const kw_key_params *p, kw_key_record *rec)
{
    kw_key_params def;
    kw_secret *key = NULL;
    kw_rc rc;

    if (p == NULL) {
        kw_key_params_init(&def);
        p = &def;
    }
    rc = kw_key_create(t->ctx, p, &kwt_actor, &key, rec);
    if (rc != KW_OK)
        fprintf(stderr, "kw_key_create: %s: %s\n", kw_strerror(rc), kw_errmsg(t->ctx));
    assert_int_equal(rc, KW_OK);
    return key;
}

void kwt_keys_batch(kwt_db *t, size_t n)
{
    kw_key_params *p = calloc(n, sizeof(*p));
    kw_actor *actors = calloc(n, sizeof(*actors));
    kw_secret **keys = calloc(n, sizeof(*keys));
    kw_rc rc;

    assert_true(p != NULL && actors != NULL && keys != NULL);
    for (size_t i = 0; i < n; i++) {
        kw_key_params_init(&p[i]);
        actors[i] = kwt_actor;
    }
    rc = kw_key_create_many(t->ctx, p, actors, n, keys, NULL, NULL);
    if (rc != KW_OK)
        fprintf(stderr, "kw_key_create_many: %s: %s\n", kw_strerror(rc), kw_errmsg(t->ctx));
    assert_int_equal(rc, KW_OK);
    for (size_t i = 0; i < n; i++)
        kw_secret_free(keys[i]);
    free(keys);
    free(actors);
    free(p);
}

kw_verdict kwt_verify(kwt_db *t, const kw_secret *key, const char *const *scopes, uint32_t cost,
                      kw_verify_result *out)
{
    kw_verify_request req = {.scopes = scopes, .nscopes = 0, .cost = cost};
    kw_verify_result local;
    kw_verdict v;

    while (scopes != NULL && scopes[req.nscopes] != NULL)
        req.nscopes++;
    if (out == NULL)
        out = &local;
    assert_int_equal(
        kw_verify(t->ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), &req, out),
        KW_OK);
    v = out->code;
    if (out == &local)
        kw_verify_result_clear(&local);
    return v;
}

int kwt_setup(void **state)
{
    kwt_db *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    kwt_db_open(t);
    *state = t;
    return 0;
}

int kwt_teardown(void **state)
{
    kwt_db *t = *state;

    kwt_db_close(t);
    free(t);
    return 0;
}

int64_t kwt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kwt_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

void kwt_align_to_second(void)
{
    int64_t ms = kwt_now_ms() % 1000;

    if (ms > 300)
        kwt_sleep_ms(1000 - ms + 10);
}

void kwt_sleep_until(int64_t t)
{
    kwt_sleep_ms(t * 1000 - kwt_now_ms() + 20);
}
