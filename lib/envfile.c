/*
 * Environment files and secret references for `keyward run`
 * (docs/secrets.md): NAME=VALUE lines, and values of the form
 * kw://path[#version] that name a secret.
 */
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_SCHEME "kw://"

int kwi_env_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > KWI_ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

int kwi_secret_ref(const char *value, char path[static KW_SECRET_PATH_MAX + 1], int64_t *version)
{
    const char *p, *hash;
    size_t plen;

    if (strncmp(value, REF_SCHEME, sizeof(REF_SCHEME) - 1) != 0)
        return 0;
    p = value + sizeof(REF_SCHEME) - 1;
    hash = strchr(p, '#');
    plen = hash != NULL ? (size_t)(hash - p) : strlen(p);
    if (plen == 0 || plen > KW_SECRET_PATH_MAX)
        return -1;
    memcpy(path, p, plen);
    path[plen] = '\0';
    if (!kw_secret_path_valid(path))
        return -1;
    *version = 0;
    if (hash != NULL) {
        const char *d = hash + 1;
        int64_t v = 0;
        if (*d == '\0' || *d == '0')
            return -1;
        for (; *d != '\0'; d++) {
            if (*d < '0' || *d > '9' || v > (INT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (*d - '0');
        }
        *version = v;
    }
    return 1;
}

void kwi_env_free(kwi_env_var *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        if (v[i].value != NULL)
            sodium_memzero(v[i].value, strlen(v[i].value));
        free(v[i].value);
    }
    free(v);
}

static int env_fail(char *err, size_t err_len, size_t line, const char *why)
{
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "line %zu: %s", line, why);
    return -1;
}

/* One value, from s to the end of its line: unquoted (trailing blanks
 * trimmed), '...' (as it is) or "..." (with \n, \t, \" and \\); after a
 * closing quote, only blanks or a comment. */
static char *value_of(const char *s, const char *eol, const char **why)
{
    char *out = malloc((size_t)(eol - s) + 1), *o = out;

    if (out == NULL) {
        *why = "out of memory";
        return NULL;
    }
    if (*s == '\'' || *s == '"') {
        char q = *s++;
        for (; s < eol && *s != q; s++) {
            if (q == '"' && *s == '\\' && s + 1 < eol) {
                char e = *++s;
                *o++ = e == 'n' ? '\n' : e == 't' ? '\t' : e;
                if (e != 'n' && e != 't' && e != '"' && e != '\\') {
                    *why = "an unknown escape in a double-quoted value (\\n \\t \\\" \\\\)";
                    goto bad;
                }
                continue;
            }
            *o++ = *s;
        }
        if (s >= eol) {
            *why = "a quoted value does not end on its line";
            goto bad;
        }
        for (s++; s < eol && (*s == ' ' || *s == '\t'); s++)
            ;
        if (s < eol && *s != '#') {
            *why = "something after the closing quote";
            goto bad;
        }
    } else {
        const char *e = eol;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        memcpy(o, s, (size_t)(e - s));
        o += e - s;
    }
    *o = '\0';
    if (strlen(out) != (size_t)(o - out)) {
        *why = "a value holds a NUL byte";
        goto bad;
    }
    return out;
bad:
    sodium_memzero(out, (size_t)(o - out));
    free(out);
    return NULL;
}

int kwi_env_parse(const char *text, size_t len, kwi_env_var **out, size_t *n, char *err,
                  size_t err_len)
{
    kwi_env_var *v = NULL, *grown;
    const char *s = text, *end = text + len;
    size_t count = 0, cap = 0, line = 0;

    *out = NULL;
    *n = 0;
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s)), *name, *eq, *why = NULL;
        const char *next;
        char *value;
        size_t nlen;

        eol = eol != NULL ? eol : end;
        next = eol < end ? eol + 1 : end;
        line++;
        if (eol > s && eol[-1] == '\r')
            eol--;
        while (s < eol && (*s == ' ' || *s == '\t'))
            s++;
        if (s == eol || *s == '#') {
            s = next;
            continue;
        }
        if ((size_t)(eol - s) > 7 && memcmp(s, "export", 6) == 0 && (s[6] == ' ' || s[6] == '\t'))
            for (s += 7; s < eol && (*s == ' ' || *s == '\t'); s++)
                ;
        name = s;
        eq = memchr(s, '=', (size_t)(eol - s));
        if (eq == NULL) {
            kwi_env_free(v, count);
            return env_fail(err, err_len, line, "not NAME=VALUE");
        }
        nlen = (size_t)(eq - name);
        if (!kwi_env_name_valid(name, nlen)) {
            kwi_env_free(v, count);
            return env_fail(err, err_len, line,
                            "a name is letters, digits and '_', not starting with a digit");
        }
        if ((value = value_of(eq + 1, eol, &why)) == NULL) {
            kwi_env_free(v, count);
            return env_fail(err, err_len, line, why);
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            if (cap > KWI_ENV_VARS_MAX || (grown = realloc(v, cap * sizeof(*v))) == NULL) {
                sodium_memzero(value, strlen(value));
                free(value);
                kwi_env_free(v, count);
                return env_fail(err, err_len, line,
                                cap > KWI_ENV_VARS_MAX ? "too many variables" : "out of memory");
            }
            v = grown;
        }
        memcpy(v[count].name, name, nlen);
        v[count].name[nlen] = '\0';
        v[count].value = value;
        count++;
        s = next;
    }
    *out = v;
    *n = count;
    return 0;
}
