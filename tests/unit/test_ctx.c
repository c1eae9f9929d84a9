/* Unit tests of a context's checkpoints (lib/ctx.c): kw_defer_checkpoints
 * and kw_checkpoint, as `keyward serve` uses them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyward/keyward.h>

#include "helpers.h"

#define BATCHES 100       /* of 64 keys: a few thousand pages of log */
#define INLINE_LIMIT 1000 /* SQLite's own checkpoint, every 1000 pages of log */

static kw_ctx *second_ctx(const kwt_db *t)
{
    kw_open_opts oo = {0};
    kw_ctx *c = NULL;

    assert_int_equal(kw_open(&c, t->url, t->pepper, &oo), KW_OK);
    return c;
}

static int64_t count_keys(kw_ctx *ctx)
{
    kw_key_filter f = {.limit = KW_LIST_MAX};
    kw_key_record *recs;
    size_t n;
    int64_t total = 0;
    char cursor[KW_ID_LEN + 1] = "", after[KW_ID_LEN + 1];

    for (;;) {
        memcpy(after, cursor, sizeof(after));
        f.after = after;
        assert_int_equal(kw_key_list(ctx, &f, &recs, &n, cursor), KW_OK);
        total += (int64_t)n;
        kw_key_records_free(recs, n);
        if (cursor[0] == '\0')
            return total;
    }
}

static void test_deferred_checkpoints(void **state)
{
    kwt_db *t = *state;
    kw_ctx *bg = second_ctx(t);
    int64_t log, copied, keys_before;

    /* By default a commit checkpoints once the log passes 1000 pages, and
     * the log starts over: it never holds much more. */
    for (int i = 0; i < BATCHES; i++)
        kwt_keys_batch(t, 64);
    assert_int_equal(kw_checkpoint(bg, &log, &copied), KW_OK);
    assert_true(log > 0);
    assert_true(log < INLINE_LIMIT + 500);
    assert_int_equal(copied, log); /* no reader held anything back */
    keys_before = count_keys(bg);

    /* Deferred: the same commits leave the whole log to kw_checkpoint... */
    assert_int_equal(kw_defer_checkpoints(t->ctx), KW_OK);
    for (int i = 0; i < BATCHES; i++)
        kwt_keys_batch(t, 64);
    assert_int_equal(kw_checkpoint(bg, &log, &copied), KW_OK);
    assert_true(log > INLINE_LIMIT + 500);
    assert_int_equal(copied, log);

    /* ...which copied it all, so the next commit starts the log over. */
    kwt_keys_batch(t, 64);
    assert_int_equal(kw_checkpoint(bg, &log, &copied), KW_OK);
    assert_true(log > 0 && log < 500);
    assert_int_equal(copied, log);

    /* Nothing lost, seen from either context. */
    assert_int_equal(count_keys(bg), keys_before + (BATCHES + 1) * 64);
    assert_int_equal(count_keys(t->ctx), keys_before + (BATCHES + 1) * 64);
    kw_close(bg);
}

/* With nothing new, a checkpoint copies nothing and fails nothing. */
static void test_checkpoint_idle(void **state)
{
    kwt_db *t = *state;
    int64_t log = -1, copied = -1;

    assert_int_equal(kw_checkpoint(t->ctx, &log, &copied), KW_OK);
    assert_int_equal(kw_checkpoint(t->ctx, &log, &copied), KW_OK);
    assert_int_equal(copied, log);
    assert_int_equal(kw_checkpoint(t->ctx, NULL, NULL), KW_OK);
}

/* An in-memory database is SQLite's ":memory:": no file of that name
 * appears (keyward made an empty one, mode 0600, before). */
static void test_memory_database_makes_no_file(void **state)
{
    char dir[] = "/tmp/kwctx.XXXXXX", cwd[4096];
    kw_open_opts oo = {.create = 1};
    kw_secret *pepper;
    kw_ctx *c = NULL;

    (void)state;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(kw_secret_new(&pepper, KW_PEPPER_LEN), KW_OK);
    assert_int_equal(kw_open(&c, "sqlite::memory:", pepper, &oo), KW_OK);
    kwt_keys_batch(&(kwt_db){.ctx = c}, 3);
    assert_int_not_equal(access(":memory:", F_OK), 0);
    kw_close(c);
    kw_secret_free(pepper);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0); /* fails if anything was left in it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deferred_checkpoints, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_idle, kwt_setup, kwt_teardown),
        cmocka_unit_test(test_memory_database_makes_no_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
