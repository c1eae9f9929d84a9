/* Scopes: "resource:action" segments, "*" and "prefix:*" grants. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static int seg_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Segments of seg_char joined by single ':' over s[0..n). */
static int segments_valid(const char *s, size_t n)
{
    size_t seg = 0;

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':') {
            if (seg == 0)
                return 0;
            seg = 0;
        } else if (seg_char((unsigned char)s[i])) {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

/* A secrets scope (docs/secrets.md): "secrets:read:" or "secrets:write:"
 * then a secret path; a grant may end the path in a slash and a star
 * (everything under it). -1 if s is not one (the general rules apply),
 * else 1 or 0. */
static int secrets_scope_valid(const char *s, size_t n, int grant)
{
    static const char *const heads[] = {"secrets:read:", "secrets:write:"};
    char path[KW_SECRETS_SCOPE_MAX_LEN + 1];

    for (size_t i = 0; i < 2; i++) {
        size_t h = strlen(heads[i]);
        if (n <= h || strncmp(s, heads[i], h) != 0)
            continue;
        if (grant && n == h + 1 && s[h] == '*')
            return 1;
        n -= h;
        if (grant && n > 2 && s[h + n - 1] == '*' && s[h + n - 2] == '/')
            n -= 2; /* "app/" "*": everything under the path "app" */
        memcpy(path, s + h, n);
        path[n] = '\0';
        return kw_secret_path_valid(path);
    }
    return -1;
}

KW_API int kw_scope_required_valid(const char *s)
{
    size_t n;
    int secrets;

    if (s == NULL)
        return 0;
    n = strnlen(s, KW_SECRETS_SCOPE_MAX_LEN + 1);
    if (n <= KW_SECRETS_SCOPE_MAX_LEN && (secrets = secrets_scope_valid(s, n, 0)) >= 0)
        return secrets;
    return n <= KW_SCOPE_MAX_LEN && segments_valid(s, n);
}

KW_API int kw_scope_grant_valid(const char *s)
{
    size_t n;
    int secrets;

    if (s == NULL)
        return 0;
    n = strnlen(s, KW_SCOPE_MAX_LEN + 1);
    if (n > KW_SCOPE_MAX_LEN)
        return 0;
    if (n == 1 && s[0] == '*')
        return 1;
    if ((secrets = secrets_scope_valid(s, n, 1)) >= 0)
        return secrets;
    if (n >= 3 && s[n - 1] == '*' && s[n - 2] == ':')
        return segments_valid(s, n - 2);
    return segments_valid(s, n);
}

KW_API int kw_scope_covers(const char *g, const char *r)
{
    size_t gn = strlen(g);

    if (gn == 1 && g[0] == '*')
        return 1;
    if (gn >= 2 && g[gn - 1] == '*' && (g[gn - 2] == ':' || g[gn - 2] == '/'))
        /* "orders:*" covers every scope that starts with "orders:", and
         * "secrets:read:app/" "*" every path under "app/" */
        return strncmp(g, r, gn - 1) == 0 && r[gn - 1] != '\0';
    return strcmp(g, r) == 0;
}

KW_API int kw_scopes_cover(const char *const *granted, size_t ngranted, const char *const *required,
                           size_t nreq)
{
    for (size_t i = 0; i < nreq; i++) {
        int covered = 0;
        for (size_t j = 0; j < ngranted && !covered; j++)
            covered = kw_scope_covers(granted[j], required[i]);
        if (!covered)
            return 0;
    }
    return 1;
}

int kwi_scopes_check(const char *const *scopes, size_t n, char *err, size_t err_len)
{
    if (n > KW_SCOPES_MAX) {
        snprintf(err, err_len, "too many scopes (at most %d)", KW_SCOPES_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!kw_scope_grant_valid(scopes[i])) {
            snprintf(err, err_len,
                     "invalid scope \"%.*s\" (segments of [a-z0-9_.-] joined by ':', "
                     "optionally ending in :*, or *)",
                     KW_SCOPE_MAX_LEN, scopes[i] ? scopes[i] : "");
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(scopes[i], scopes[j]) == 0) {
                snprintf(err, err_len, "duplicate scope \"%s\"", scopes[i]);
                return -1;
            }
    }
    return 0;
}
