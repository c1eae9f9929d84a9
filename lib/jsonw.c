/*
 * A JSON writer for the answers and audit details libkeyward builds on hot
 * paths (a verification, a key creation). jansson builds a tree of objects
 * and then serialises it: for a flat record that is most of the work, and
 * on the key committer it was a fifth of the time of a creation. The text
 * written is what jansson's compact form would be, so the two can be mixed.
 */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define JW_CAP_MAX (64u << 20) /* no record comes near this: refuse, not grow */

void kwi_jw_init(kwi_jw *w, size_t cap)
{
    w->n = 0;
    w->failed = 0;
    w->cap = cap < 64 ? 64 : cap;
    w->p = malloc(w->cap);
    if (w->p == NULL)
        w->failed = 1;
}

/* Room for len more bytes (and a final NUL), or the writer fails. */
static int room(kwi_jw *w, size_t len)
{
    size_t want, cap;
    char *p;

    if (w->failed)
        return 0;
    if (len < w->cap - w->n)
        return 1;
    want = w->n + len + 1;
    if (len > JW_CAP_MAX || want > JW_CAP_MAX)
        goto fail;
    for (cap = w->cap * 2; cap < want; cap *= 2)
        ;
    p = realloc(w->p, cap);
    if (p == NULL)
        goto fail;
    w->p = p;
    w->cap = cap;
    return 1;
fail:
    free(w->p);
    w->p = NULL;
    w->failed = 1;
    return 0;
}

void kwi_jw_raw(kwi_jw *w, const char *s, size_t len)
{
    if (!room(w, len))
        return;
    memcpy(w->p + w->n, s, len);
    w->n += len;
}

void kwi_jw_lit(kwi_jw *w, const char *s)
{
    kwi_jw_raw(w, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (1..4), 0 if it is not
 * one (overlong, surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

int kwi_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n;

    while (*p) {
        if ((n = utf8_seq(p)) == 0)
            return 0;
        p += n;
    }
    return 1;
}

void kwi_jw_str(kwi_jw *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    size_t len, n;
    char *o;

    if (s == NULL) {
        kwi_jw_raw(w, "null", 4);
        return;
    }
    len = strlen(s);
    if (!room(w, 6 * len + 2)) /* at most \u00XX (or \uFFFD) per byte */
        return;
    o = w->p + w->n;
    *o++ = '"';
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            p++;
        } else if (c < 0x20) {
            const char *e = c == '\b'   ? "b"
                            : c == '\f' ? "f"
                            : c == '\n' ? "n"
                            : c == '\r' ? "r"
                            : c == '\t' ? "t"
                                        : NULL;
            *o++ = '\\';
            if (e != NULL) {
                *o++ = *e;
            } else {
                memcpy(o, "u00", 3);
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
                o += 5;
            }
            p++;
        } else if (c < 0x80) {
            *o++ = (char)c;
            p++;
        } else if ((n = utf8_seq(p)) != 0) {
            memcpy(o, p, n);
            o += n;
            p += n;
        } else { /* not UTF-8: each such byte becomes U+FFFD */
            memcpy(o, "\\uFFFD", 6);
            o += 6;
            p++;
        }
    }
    *o++ = '"';
    w->n = (size_t)(o - w->p);
}

void kwi_jw_strv(kwi_jw *w, const char *const *v, size_t n)
{
    kwi_jw_raw(w, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            kwi_jw_raw(w, ",", 1);
        kwi_jw_str(w, v[i]);
    }
    kwi_jw_raw(w, "]", 1);
}

void kwi_jw_int(kwi_jw *w, long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", v);

    kwi_jw_raw(w, buf, (size_t)n);
}

void kwi_jw_time(kwi_jw *w, int64_t t)
{
    char buf[32];

    if (t == 0) {
        kwi_jw_raw(w, "null", 4);
        return;
    }
    kwi_time_format(buf, t);
    kwi_jw_str(w, buf);
}

void kwi_jw_object_text(kwi_jw *w, const char *text)
{
    json_t *j;
    char *out;

    if (text == NULL || strcmp(text, "{}") == 0) {
        kwi_jw_raw(w, "{}", 2);
        return;
    }
    j = json_loads(text, 0, NULL);
    out = json_is_object(j) ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    kwi_jw_lit(w, out != NULL ? out : "{}");
    free(out);
}

char *kwi_jw_finish(kwi_jw *w)
{
    char *p;

    if (!room(w, 0))
        return NULL;
    w->p[w->n] = '\0';
    p = w->p;
    w->p = NULL;
    return p;
}
