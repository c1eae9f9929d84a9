/* Durations and times: "90d", RFC 3339, SQLAlchemy's SQLite DateTime text. */
#include "internal.h"

#include <string.h>
#include <time.h>

#define DURATION_MAX (100LL * 365 * 86400)

KW_API int kw_duration_parse(const char *s, int64_t *seconds)
{
    int64_t v = 0, mult;
    size_t i = 0;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > DURATION_MAX)
            return -1;
    }
    switch (s[i]) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: return -1;
    }
    if (s[i + 1] != '\0' || v * mult > DURATION_MAX)
        return -1;
    *seconds = v * mult;
    return 0;
}

/* n decimal digits at p; -1 if any is not a digit. */
static int digits(const char *p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

KW_API int kw_time_parse(const char *s, int64_t *t)
{
    struct tm tm;
    int year, mon, day, hh, mm, ss, offset = 0;
    const char *p;
    time_t base;

    if (s == NULL || strlen(s) < 19 || strlen(s) > 40)
        return -1;
    year = digits(s, 4);
    mon = digits(s + 5, 2);
    day = digits(s + 8, 2);
    hh = digits(s + 11, 2);
    mm = digits(s + 14, 2);
    ss = digits(s + 17, 2);
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh < 0 || hh > 23 || mm < 0 ||
        mm > 59 || ss < 0 || ss > 60 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
        return -1;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* Each check stops at the NUL before the next one could read past it. */
        int oh = digits(p + 1, 2), om;
        if (oh < 0 || oh > 23 || p[3] != ':' || (om = digits(p + 4, 2)) < 0 || om > 59)
            return -1;
        offset = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else if (*p != '\0' || s[10] != ' ') {
        return -1; /* only the SQL form may omit the zone (taken as UTC) */
    }
    if (*p != '\0')
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    base = timegm(&tm);
    if (base == (time_t)-1 || tm.tm_mday != day)
        return -1; /* timegm normalises 31 Feb: refuse it */
    *t = (int64_t)base - offset;
    return 0;
}

KW_API void kw_time_format(char out[static 32], int64_t t)
{
    kwi_time_format(out, t);
}
