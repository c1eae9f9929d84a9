/* Unit tests of the JSON writer (lib/jsonw.c): its text must be what
 * jansson's compact form would be, byte for byte, for strings, records and
 * stored meta; bytes that are not UTF-8 must still give valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

/* kwi_jw_str of s, as a new string. */
static char *jw_str(const char *s)
{
    kwi_jw w;
    char *out;

    kwi_jw_init(&w, 8); /* small: the string must make it grow */
    kwi_jw_str(&w, s);
    out = kwi_jw_finish(&w);
    assert_non_null(out);
    return out;
}

/* jansson's compact text of the string s. */
static char *jansson_str(const char *s)
{
    json_t *j = json_string(s);
    char *out;

    assert_non_null(j);
    out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(out);
    return out;
}

static void same_as_jansson(const char *s)
{
    char *a = jw_str(s), *b = jansson_str(s);

    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_strings_as_jansson(void **state)
{
    static const char *const samples[] = {
        "",
        "plain",
        "quote \" and backslash \\ and slash /",
        "tab\tnewline\nreturn\rbell\aback\bfeed\f",
        "\x01\x1f\x7f",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",  /* é € 😀 */
        "\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf", /* U+D7FF U+E000 U+10FFFF */
    };
    char one[2] = {0, 0};

    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
        same_as_jansson(samples[i]);
    for (int c = 1; c < 0x80; c++) { /* every ASCII byte alone */
        one[0] = (char)c;
        same_as_jansson(one);
    }
}

/* Not UTF-8: each offending byte is U+FFFD, the rest kept; the text parses. */
static void test_invalid_utf8(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a\xff"
         "b",
         "\"a\\uFFFDb\""},
        {"\xc0\x80", "\"\\uFFFD\\uFFFD\""},                       /* overlong NUL */
        {"\xed\xa0\x80", "\"\\uFFFD\\uFFFD\\uFFFD\""},            /* a surrogate */
        {"\xf4\x90\x80\x80", "\"\\uFFFD\\uFFFD\\uFFFD\\uFFFD\""}, /* beyond U+10FFFF */
        {"x\xe2\x82", "\"x\\uFFFD\\uFFFD\""},                     /* cut short at the end */
        {"\xe2\x82"
         "a",
         "\"\\uFFFD\\uFFFDa\""}, /* cut short in the middle */
        {"\x80", "\"\\uFFFD\""}, /* a lone continuation */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = jw_str(cases[i].in);
        json_t *j = json_loads(got, JSON_DECODE_ANY, NULL);

        assert_string_equal(got, cases[i].want);
        assert_true(json_is_string(j));
        assert_false(kwi_utf8_valid(cases[i].in));
        json_decref(j);
        free(got);
    }
    assert_true(kwi_utf8_valid(""));
    assert_true(kwi_utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80"));
}

/* Many pieces, well past the first allocation: nothing lost or reordered. */
static void test_growth(void **state)
{
    char big[5000];
    kwi_jw w;
    json_t *j;
    char *out;

    (void)state;
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kwi_jw_init(&w, 1);
    kwi_jw_lit(&w, "[");
    for (int i = 0; i < 1000; i++) {
        if (i > 0)
            kwi_jw_raw(&w, ",", 1);
        kwi_jw_int(&w, (long long)i * -7);
    }
    kwi_jw_raw(&w, ",", 1);
    kwi_jw_str(&w, big);
    kwi_jw_raw(&w, ",", 1);
    kwi_jw_time(&w, 0);
    kwi_jw_lit(&w, "]");
    out = kwi_jw_finish(&w);
    assert_non_null(out);
    j = json_loads(out, 0, NULL);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 1002);
    assert_int_equal(json_integer_value(json_array_get(j, 999)), -6993);
    assert_string_equal(json_string_value(json_array_get(j, 1000)), big);
    assert_true(json_is_null(json_array_get(j, 1001)));
    json_decref(j);
    free(out);
}

static char *object_text(const char *in)
{
    kwi_jw w;

    kwi_jw_init(&w, 16);
    kwi_jw_object_text(&w, in);
    return kwi_jw_finish(&w);
}

static void test_object_text(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {NULL, "{}"},
        {"{}", "{}"},
        {"{ \"b\" : 1, \"a\" : [true, null, \"x\"] }", "{\"b\":1,\"a\":[true,null,\"x\"]}"},
        {"[1, 2]", "{}"},  /* not an object */
        {"{\"a\":", "{}"}, /* not JSON */
        {"", "{}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = object_text(cases[i].in);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

/* ---- records: the writer against the same record built with jansson ------ */

static json_t *jtime(int64_t t)
{
    char buf[32];

    if (t == 0)
        return json_null();
    kwi_time_format(buf, t);
    return json_string(buf);
}

/* The record as the library built it with jansson before the writer. */
static char *record_by_jansson(const kw_key_record *r)
{
    json_t *o = json_object(), *scopes = json_array(), *meta;
    char *out;

    for (size_t i = 0; i < r->nscopes; i++)
        json_array_append_new(scopes, json_string(r->scopes[i]));
    meta = json_loads(r->meta, 0, NULL);
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "prefix", json_string(r->prefix));
    json_object_set_new(o, "owner", json_string(r->owner));
    json_object_set_new(o, "name", json_string(r->name));
    json_object_set_new(o, "scopes", scopes);
    json_object_set_new(o, "meta", meta ? meta : json_object());
    json_object_set_new(o, "status", json_string(kw_key_status(r, kw_now())));
    json_object_set_new(o, "created_at", jtime(r->created_at));
    json_object_set_new(o, "not_before", jtime(r->not_before));
    json_object_set_new(o, "expires_at", jtime(r->expires_at));
    json_object_set_new(o, "last_used_at", jtime(r->last_used_at));
    json_object_set_new(o, "enabled", json_boolean(r->enabled));
    json_object_set_new(o, "revoked_at", jtime(r->revoked_at));
    json_object_set_new(o, "credits",
                        r->credits == KW_CREDITS_UNLIMITED ? json_null()
                                                           : json_integer((json_int_t)r->credits));
    json_object_set_new(o, "ratelimit",
                        r->rate_limit ? json_pack("{s:I,s:I}", "limit", (json_int_t)r->rate_limit,
                                                  "window_ms", (json_int_t)r->rate_window_ms)
                                      : json_null());
    json_object_set_new(o, "rotated_from",
                        r->rotated_from[0] ? json_string(r->rotated_from) : json_null());
    json_object_set_new(o, "rotated_to",
                        r->rotated_to[0] ? json_string(r->rotated_to) : json_null());
    json_object_set_new(o, "legacy", json_boolean(r->legacy));
    json_object_set_new(o, "external_id",
                        r->external_id ? json_string(r->external_id) : json_null());
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return out;
}

static void same_record(const kw_key_record *r)
{
    char *a = kw_key_record_json(r), *b = record_by_jansson(r);

    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_record_as_jansson(void **state)
{
    kwt_db *t = *state;
    kw_key_params p;
    kw_key_record rec, rot;
    kw_secret *key, *next;
    char id[KW_ID_LEN + 1];

    /* Every optional field set, meta with nesting, escapes and UTF-8. */
    kw_key_params_init(&p);
    p.owner = "acme \"ops\" caf\xc3\xa9";
    p.name = "back\\slash";
    p.scopes = (const char *const[]){"orders:read", "billing:*"};
    p.nscopes = 2;
    p.meta = "{\"team\":\"pay\xe2\x82\xac\",\"n\":[1,2.5,{\"x\":null}],\"ok\":true}";
    p.credits = 12;
    p.rate_limit = 5;
    p.rate_window_ms = 60000;
    p.not_before = kw_now() - 10;
    p.expires_at = kw_now() + 3600;
    assert_int_equal(kw_key_create(t->ctx, &p, &kwt_actor, &key, &rec), KW_OK);
    same_record(&rec);

    /* Rotated: rotated_from on the new key, rotated_to on the old one;
     * revoked; disabled. */
    memcpy(id, rec.id, sizeof(id));
    assert_int_equal(kw_key_rotate(t->ctx, id, 0, &kwt_actor, &next, &rot), KW_OK);
    same_record(&rot);
    kw_key_record_clear(&rec);
    assert_int_equal(kw_key_get(t->ctx, id, &rec), KW_OK);
    same_record(&rec);
    assert_int_equal(kw_key_revoke(t->ctx, rot.id, &kwt_actor, NULL), KW_OK);
    kw_key_record_clear(&rot);
    kw_key_record_clear(&rec);
    assert_int_equal(kw_key_get(t->ctx, id, &rec), KW_OK);
    same_record(&rec);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_secret_free(next);

    /* The defaults: no meta, unlimited, no limit, no times. */
    kw_key_params_init(&p);
    p.owner = "o";
    assert_int_equal(kw_key_create(t->ctx, &p, &kwt_actor, &key, &rec), KW_OK);
    same_record(&rec);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

/* Owner and name must be UTF-8: a record's JSON can always be written. */
static void test_owner_not_utf8_refused(void **state)
{
    kwt_db *t = *state;
    kw_key_params p;
    kw_key_record rec;
    kw_secret *key = NULL;

    kw_key_params_init(&p);
    p.owner = "acme\xff";
    assert_int_equal(kw_key_create(t->ctx, &p, &kwt_actor, &key, &rec), KW_ERR_INVALID);
    assert_non_null(strstr(kw_errmsg(t->ctx), "UTF-8"));
    assert_null(key);
    p.owner = "acme";
    p.name = "n\xc0\x80";
    assert_int_equal(kw_key_create(t->ctx, &p, &kwt_actor, &key, &rec), KW_ERR_INVALID);
    assert_null(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_as_jansson),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_object_text),
        cmocka_unit_test_setup_teardown(test_record_as_jansson, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_owner_not_utf8_refused, kwt_setup, kwt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
