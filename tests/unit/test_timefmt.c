/* Unit tests of durations and times (lib/timefmt.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <keyward/keyward.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* 2024-01-02T03:04:05Z (python3: calendar.timegm((2024, 1, 2, 3, 4, 5))) */
#define T_2024 INT64_C(1704164645)
/* 9999-12-31T23:59:59Z, the last second with a 4-digit year */
#define T_9999 INT64_C(253402300799)
#define DURATION_MAX (INT64_C(100) * 365 * 86400)

/* kw_time_parse on an exact-size heap copy, so ASan sees any over-read;
 * a refused input must leave *t untouched. */
static int time_parse_exact(const char *s, int64_t *t)
{
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    int64_t v = INT64_C(0x5a5a5a5a5a5a);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, n + 1);
    rc = kw_time_parse(copy, &v);
    free(copy);
    if (rc != 0)
        assert_int_equal(v, INT64_C(0x5a5a5a5a5a5a));
    else
        *t = v;
    return rc;
}

static int duration_parse_exact(const char *s, int64_t *sec)
{
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    int64_t v = -77;
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, n + 1);
    rc = kw_duration_parse(copy, &v);
    free(copy);
    if (rc != 0)
        assert_int_equal(v, -77);
    else
        *sec = v;
    return rc;
}

static void test_duration_valid(void **state)
{
    static const struct {
        const char *s;
        int64_t v;
    } cases[] = {
        {"30s", 30},
        {"15m", 900},
        {"24h", 86400},
        {"90d", 90 * 86400},
        {"1s", 1},
        {"0s", 0},
        {"007m", 420},
        {"36500d", DURATION_MAX}, /* exactly 100 years */
        {"3153600000s", DURATION_MAX},
        {"876000h", DURATION_MAX},
    };
    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int64_t v = 0;
        if (duration_parse_exact(cases[i].s, &v) != 0)
            fail_msg("duration \"%s\" refused", cases[i].s);
        assert_int_equal(v, cases[i].v);
    }
}

static void test_duration_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "s",
        "10",
        "10x",
        "10ss",
        "-5s",
        "+5s",
        " 5s",
        "5s ",
        "5 s",
        "5S",
        "5D",
        "1.5h",
        "0x10s",
        "5sm",
        "d",
        "99999999999d",
        "36501d",      /* just over 100 years */
        "3153600001s", /* likewise */
        "99999999999999999999999999s",
    };
    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        int64_t v = 0;
        if (duration_parse_exact(bad[i], &v) == 0)
            fail_msg("duration \"%s\" accepted as %lld", bad[i], (long long)v);
    }
}

static void test_time_valid(void **state)
{
    static const struct {
        const char *s;
        int64_t t;
    } cases[] = {
        {"2024-01-02T03:04:05Z", T_2024},
        {"2024-01-02t03:04:05z", T_2024},
        {"2024-01-02T05:04:05+02:00", T_2024},
        {"2024-01-01T21:34:05-05:30", T_2024},
        {"2024-01-02T03:04:05+00:00", T_2024},
        {"2024-01-02T03:04:05-00:00", T_2024},
        {"2024-01-02T03:04:05.999999Z", T_2024}, /* fractions are dropped */
        {"2024-01-02T03:04:05.1Z", T_2024},
        {"2024-01-02T05:04:05.5+02:00", T_2024},
        {"2024-01-02 03:04:05.123456", T_2024}, /* SQL form, UTC */
        {"2024-01-02 03:04:05", T_2024},
        {"2024-01-02 03:04:05Z", T_2024},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-29T12:00:00Z", INT64_C(1709208000)}, /* leap day */
        {"9999-12-31T23:59:59Z", T_9999},
    };
    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int64_t t = 0;
        if (time_parse_exact(cases[i].s, &t) != 0)
            fail_msg("time \"%s\" refused", cases[i].s);
        if (t != cases[i].t)
            fail_msg("time \"%s\": %lld, expected %lld", cases[i].s, (long long)t,
                     (long long)cases[i].t);
    }
}

static void test_time_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "2024-01-02",
        "2024-01-02T03:04:0",  /* too short */
        "2024-01-02T03:04:05", /* T form needs a zone */
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z", /* not a leap year */
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:60:00Z",
        "2024-01-02T03:04:61Z",
        "1969-12-31T23:59:59Z",
        "2024-1-02T03:04:05Z",
        "2024/01/02T03:04:05Z",
        "2024-01-02X03:04:05Z",
        "2024-01-02T03-04-05Z",
        "2024-01-02T03:04:05Zx", /* trailing junk */
        "2024-01-02T03:04:05ZZ",
        "2024-01-02T03:04:05+02:00x",
        "2024-01-02T03:04:05+02:00Z",
        "2024-01-02 03:04:05 ",
        "2024-01-02 03:04:05.",
        "2024-01-02T03:04:05.Z", /* a dot needs digits */
        "2024-01-02T03:04:05.12a4Z",
        " 2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05 Z",
        "2024-01-02T03:04:05+2:00",
        "2024-01-02T03:04:05+02:0",
        "2024-01-02T03:04:05+0200",
        "2024-01-02T03:04:05+24:00",
        "2024-01-02T03:04:05+02:60",
        "+024-01-02T03:04:05Z",
    };
    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        int64_t t = 0;
        if (time_parse_exact(bad[i], &t) == 0)
            fail_msg("time \"%s\" accepted as %lld", bad[i], (long long)t);
    }
    assert_int_equal(kw_duration_parse(NULL, &(int64_t){0}), -1);
    assert_int_equal(kw_time_parse(NULL, &(int64_t){0}), -1);
}

/* A zone cut short at the end of the string: refused, and (under ASan)
 * without reading past the terminating NUL. */
static void test_time_truncated_zone(void **state)
{
    static const char *const bad[] = {
        "2024-01-02T03:04:05+",   "2024-01-02T03:04:05-",    "2024-01-02T03:04:05+0",
        "2024-01-02T03:04:05+02", "2024-01-02T03:04:05+02:", "2024-01-02T03:04:05.5+02",
        "2024-01-02 03:04:05-1",
    };
    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        int64_t t = 0;
        if (time_parse_exact(bad[i], &t) == 0)
            fail_msg("time \"%s\" accepted as %lld", bad[i], (long long)t);
    }
}

static void test_time_format(void **state)
{
    char out[32];

    (void)state;
    kw_time_format(out, 0);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    kw_time_format(out, T_2024);
    assert_string_equal(out, "2024-01-02T03:04:05Z");
    kw_time_format(out, T_9999);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    kw_time_format(out, 1709208000);
    assert_string_equal(out, "2024-02-29T12:00:00Z");
}

static void test_time_round_trip(void **state)
{
    static const int64_t times[] = {
        0,          1,
        59,         86399,
        86400,      951782400 /* 2000-02-29 */,
        T_2024,     2147483647,
        2147483648, 4102444800 /* 2100-01-01 */,
        T_9999,
    };
    (void)state;
    for (size_t i = 0; i < NELEM(times); i++) {
        char out[32];
        int64_t t = -1;

        kw_time_format(out, times[i]);
        assert_int_equal(strlen(out), 20);
        if (time_parse_exact(out, &t) != 0)
            fail_msg("formatted \"%s\" refused", out);
        assert_int_equal(t, times[i]);
    }
    /* and every day of a leap year and the next, at an odd time of day */
    for (int64_t t = 1704067200 + 3723; t < 1704067200 + 731 * 86400; t += 86400) {
        char out[32], again[32];
        int64_t back = -1;

        kw_time_format(out, t);
        assert_int_equal(time_parse_exact(out, &back), 0);
        assert_int_equal(back, t);
        kw_time_format(again, back);
        assert_string_equal(again, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_valid),
        cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_time_valid),
        cmocka_unit_test(test_time_invalid),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_time_round_trip),
        /* last: an over-read aborts the whole run under ASan */
        cmocka_unit_test(test_time_truncated_zone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
