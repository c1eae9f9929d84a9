/* Unit tests of scopes (lib/scope.c, SPEC.md "Verification"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <keyward/keyward.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void test_valid_both(void **state)
{
    static const char *const ok[] = {
        "orders:read", "a",       "a.b-c_d:x", "orders",      "orders:read:eu",
        "0:1",         "a-b.c_d", "x:y:z:w",   "keys:create", "secrets:read:db.password",
    };
    (void)state;
    for (size_t i = 0; i < NELEM(ok); i++) {
        if (!kw_scope_grant_valid(ok[i]))
            fail_msg("grant \"%s\" should be valid", ok[i]);
        if (!kw_scope_required_valid(ok[i]))
            fail_msg("required \"%s\" should be valid", ok[i]);
    }
}

static void test_wildcards_grant_only(void **state)
{
    static const char *const wild[] = {"*", "orders:*", "a:b:*", "a.b-c_d:*"};

    (void)state;
    for (size_t i = 0; i < NELEM(wild); i++) {
        if (!kw_scope_grant_valid(wild[i]))
            fail_msg("grant \"%s\" should be valid", wild[i]);
        if (kw_scope_required_valid(wild[i]))
            fail_msg("required \"%s\" should be invalid", wild[i]);
    }
}

static void test_invalid_both(void **state)
{
    static const char *const bad[] = {
        "",    ":",        "a:",           ":a",    "a::b", "A",    "Orders:read", "orders:Read",
        "a b", " a",       "a ",           "a\tb",  "a\n",  "*:a",  "orders*",     "orders:*:x",
        "**",  ":*",       "*:*",          "a:*:*", "a:**", "a:b*", "*a",          "a/b",
        "a,b", "\xc3\xa9", "orders:read:",
    };
    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        if (kw_scope_grant_valid(bad[i]))
            fail_msg("grant \"%s\" should be invalid", bad[i]);
        if (kw_scope_required_valid(bad[i]))
            fail_msg("required \"%s\" should be invalid", bad[i]);
    }
    assert_false(kw_scope_grant_valid(NULL));
    assert_false(kw_scope_required_valid(NULL));
}

static void test_length_limit(void **state)
{
    char s[KW_SCOPE_MAX_LEN + 2];

    (void)state;
    assert_int_equal(KW_SCOPE_MAX_LEN, 128);
    memset(s, 'a', sizeof(s));
    s[128] = '\0';
    assert_true(kw_scope_grant_valid(s));
    assert_true(kw_scope_required_valid(s));
    s[128] = 'a';
    s[129] = '\0';
    assert_false(kw_scope_grant_valid(s));
    assert_false(kw_scope_required_valid(s));

    /* the limit counts the wildcard too */
    memset(s, 'a', sizeof(s));
    memcpy(s + 126, ":*", 3);
    assert_int_equal(strlen(s), 128);
    assert_true(kw_scope_grant_valid(s));
    memset(s, 'a', sizeof(s));
    memcpy(s + 127, ":*", 3);
    assert_int_equal(strlen(s), 129);
    assert_false(kw_scope_grant_valid(s));
}

static void test_covers(void **state)
{
    static const struct {
        const char *g, *r;
        int covers;
    } cases[] = {
        {"*", "orders", 1},
        {"*", "orders:read", 1},
        {"*", "a:b:c:d", 1},
        {"orders:*", "orders:read", 1},
        {"orders:*", "orders:read:eu", 1},
        {"orders:*", "orders", 0},
        {"orders:*", "ordersx:read", 0},
        {"orders:*", "order:read", 0},
        {"orders:*", "users:read", 0},
        {"orders:read", "orders:read", 1},
        {"orders:read", "orders:write", 0},
        {"orders:read", "orders:read:eu", 0},
        {"orders:read", "orders", 0},
        {"orders", "orders:read", 0},
        {"orders", "orders", 1},
        {"a:b:*", "a:b:c", 1},
        {"a:b:*", "a:b:c:d", 1},
        {"a:b:*", "a:b", 0},
        {"a:b:*", "a:c:d", 0},
        {"a:b:*", "a:bc:d", 0},
    };
    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        if (kw_scope_covers(cases[i].g, cases[i].r) != cases[i].covers)
            fail_msg("\"%s\" covers \"%s\": expected %d", cases[i].g, cases[i].r, cases[i].covers);
    }
}

static void test_scopes_cover(void **state)
{
    static const char *const granted[] = {"orders:read", "users:*"};
    static const char *const all[] = {"orders:read", "users:write", "users:read:eu"};
    static const char *const some[] = {"orders:read", "orders:write"};
    static const char *const some_rev[] = {"orders:write", "orders:read"};
    static const char *const one[] = {"users:delete"};
    static const char *const star[] = {"*"};

    (void)state;
    assert_true(kw_scopes_cover(granted, 2, all, 3));
    assert_true(kw_scopes_cover(granted, 2, one, 1));
    assert_false(kw_scopes_cover(granted, 2, some, 2));
    assert_false(kw_scopes_cover(granted, 2, some_rev, 2));
    /* only the first ngranted / nreq entries count */
    assert_false(kw_scopes_cover(granted, 1, one, 1));
    assert_true(kw_scopes_cover(granted, 2, some, 1));
    /* empty required is always covered, even by nothing */
    assert_true(kw_scopes_cover(granted, 2, NULL, 0));
    assert_true(kw_scopes_cover(NULL, 0, NULL, 0));
    /* empty granted covers nothing */
    assert_false(kw_scopes_cover(NULL, 0, one, 1));
    assert_false(kw_scopes_cover(NULL, 0, all, 3));
    /* "*" covers everything */
    assert_true(kw_scopes_cover(star, 1, all, 3));
    assert_true(kw_scopes_cover(star, 1, some, 2));
}

/* Secrets scopes (docs/secrets.md): "secrets:read:" / "secrets:write:"
 * and a secret path, a grant ending the path in a slash and a star. */
static void test_secrets_scopes(void **state)
{
    static const char *const grants[] = {"secrets:read:app/db_Password", "secrets:write:a.b/c-d",
                                         "secrets:read:*", "secrets:read:app/*"};
    static const char *const bad[] = {
        "secrets:read:",    "secrets:read:app//x",   "secrets:read:/app",  "secrets:read:app/*x",
        "secrets:read:a b", "secrets:read:app/../x", "secrets:read:app/**"};

    (void)state;
    for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++)
        assert_true(kw_scope_grant_valid(grants[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(kw_scope_grant_valid(bad[i]));
        assert_false(kw_scope_required_valid(bad[i]));
    }
    assert_true(kw_scope_required_valid("secrets:read:app/db_Password"));
    assert_false(kw_scope_required_valid("secrets:read:app/*"));
    assert_false(kw_scope_required_valid("secrets:read:*"));
    /* upper case and '/' only in a secret path */
    assert_false(kw_scope_grant_valid("Orders:read"));
    assert_false(kw_scope_grant_valid("orders/x:read"));

    assert_true(kw_scope_covers("secrets:read:app/*", "secrets:read:app/x"));
    assert_true(kw_scope_covers("secrets:read:app/*", "secrets:read:app/x/y"));
    assert_false(kw_scope_covers("secrets:read:app/*", "secrets:read:app"));
    assert_false(kw_scope_covers("secrets:read:app/*", "secrets:read:apple/x"));
    assert_false(kw_scope_covers("secrets:read:app/*", "secrets:write:app/x"));
    assert_true(kw_scope_covers("secrets:read:*", "secrets:read:any/path"));
    assert_false(kw_scope_covers("secrets:read:*", "secrets:write:any/path"));
    assert_true(kw_scope_covers("secrets:*", "secrets:write:any/path"));
    /* a required secrets scope may name a path of 256 characters; a grant,
     * and any other scope, stays within 128 */
    {
        char longer[300];
        snprintf(longer, sizeof(longer), "secrets:write:%0256d", 0);
        assert_true(kw_scope_required_valid(longer));
        assert_false(kw_scope_grant_valid(longer));
        snprintf(longer, sizeof(longer), "secrets:write:%0257d", 0);
        assert_false(kw_scope_required_valid(longer));
        snprintf(longer, sizeof(longer), "orders:%0200d", 0);
        assert_false(kw_scope_required_valid(longer));
    }
    assert_true(kw_scope_covers("secrets:read:app/x", "secrets:read:app/x"));
    assert_false(kw_scope_covers("secrets:read:app/x", "secrets:read:app/x/y"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_both),     cmocka_unit_test(test_wildcards_grant_only),
        cmocka_unit_test(test_invalid_both),   cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_covers),         cmocka_unit_test(test_scopes_cover),
        cmocka_unit_test(test_secrets_scopes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
