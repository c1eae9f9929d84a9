/*
 * libFuzzer harness for kw_time_parse and kw_duration_parse, run on an
 * exact-size NUL-terminated copy of the input (so ASan sees any read past
 * the terminator).
 *
 * kw_duration_parse is checked against a reference parser written here;
 * an accepted time must format and parse back to itself, and an accepted
 * "YYYY-MM-DDTHH:MM:SSZ" must format to exactly the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keyward/keyward.h>

#define DURATION_MAX (INT64_C(100) * 365 * 86400)
#define T_9999 INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/* digits, then exactly one of s m h d; at most 100 years. */
static int ref_duration(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0, mult;
    size_t i;

    if (n < 2)
        return -1;
    for (i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v <= DURATION_MAX)
            v = v * 10 + (s[i] - '0');
    }
    switch (s[n - 1]) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: return -1;
    }
    if (v > DURATION_MAX || v * mult > DURATION_MAX)
        return -1;
    *out = v * mult;
    return 0;
}

static void check_duration(const char *s, size_t n)
{
    int64_t got = -1, want = -1;
    int rc = kw_duration_parse(s, &got);

    if (rc != ref_duration(s, n, &want))
        abort();
    if (rc == 0 && (got != want || got < 0 || got > DURATION_MAX))
        abort();
}

static void check_time(const char *s, size_t n)
{
    char out[32];
    int64_t t = 0, back = 0;

    if (kw_time_parse(s, &t) != 0)
        return;
    kw_time_format(out, t);
    if (t >= 0 && t <= T_9999) {
        if (kw_time_parse(out, &back) != 0 || back != t)
            abort();
    }
    /* canonical Z form (no leap second): formats to the input itself */
    if (n == 20 && s[10] == 'T' && s[19] == 'Z' && memcmp(s + 17, "60", 2) != 0 &&
        strcmp(out, s) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size > 4096)
        return 0;
    s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    /* the parsers see a C string: stop at an embedded NUL */
    check_time(s, strlen(s));
    check_duration(s, strlen(s));
    free(s);
    return 0;
}
