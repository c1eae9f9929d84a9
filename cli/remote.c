/* A keyward server as the source of `keyward run`'s secrets
 * (KEYWARD_ADDR, KEYWARD_TOKEN; docs/secrets.md): GET /v1/secrets and
 * GET /v1/secrets/{path} with libcurl. Bodies are wiped after use. */
#include "cli.h"

#include "../lib/internal.h" /* kwi_secret_value_of */

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (1 << 20)
#define TIMEOUT_S 30

struct kwc_remote {
    CURL *curl;
    struct curl_slist *headers;
    char *addr;
};

typedef struct body {
    char *p;
    size_t n, cap;
    int over;
} body;

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
    body *b = user;
    size_t len = size * nmemb;

    if (b->over || len > BODY_MAX - b->n) {
        b->over = 1;
        return 0;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *grown;
        while (cap < b->n + len + 1)
            cap *= 2;
        if ((grown = malloc(cap)) == NULL) {
            b->over = 1;
            return 0;
        }
        if (b->p != NULL) { /* moved by hand, so the old copy can be wiped */
            memcpy(grown, b->p, b->n);
            sodium_memzero(b->p, b->cap);
            free(b->p);
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

static void body_free(body *b)
{
    if (b->p != NULL)
        sodium_memzero(b->p, b->cap);
    free(b->p);
}

int kwc_remote_open(kwc_remote **out, const char *addr, const kw_secret *token)
{
    kwc_remote *r = calloc(1, sizeof(*r));
    size_t tlen = kw_secret_len(token), hlen = sizeof("Authorization: Bearer ") + tlen;
    char *h = malloc(hlen);

    if (r == NULL || h == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
        (r->curl = curl_easy_init()) == NULL || (r->addr = strdup(addr)) == NULL) {
        free(h);
        kwc_remote_close(r);
        return -1;
    }
    while (r->addr[0] != '\0' && r->addr[strlen(r->addr) - 1] == '/')
        r->addr[strlen(r->addr) - 1] = '\0';
    snprintf(h, hlen, "Authorization: Bearer %.*s", (int)tlen,
             (const char *)kw_secret_cdata(token));
    r->headers = curl_slist_append(NULL, h);
    sodium_memzero(h, hlen);
    free(h);
    if (r->headers == NULL) {
        kwc_remote_close(r);
        return -1;
    }
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->curl, CURLOPT_TIMEOUT, (long)TIMEOUT_S);
    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_data);
    *out = r;
    return 0;
}

void kwc_remote_close(kwc_remote *r)
{
    if (r == NULL)
        return;
    if (r->curl != NULL)
        curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->headers); /* holds the token: freed by curl, not wiped */
    free(r->addr);
    free(r);
}

/* GET addr + rest: the status and the JSON body (NULL on a transport
 * failure, with err set). */
static json_t *get(kwc_remote *r, const char *rest, long *status, char *err, size_t err_len)
{
    size_t len = strlen(r->addr) + strlen(rest) + 1;
    char *url = malloc(len);
    body b = {0};
    json_t *j = NULL;
    CURLcode cc;

    if (url == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    snprintf(url, len, "%s%s", r->addr, rest);
    curl_easy_setopt(r->curl, CURLOPT_URL, url);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, &b);
    cc = curl_easy_perform(r->curl);
    free(url);
    if (cc != CURLE_OK) {
        snprintf(err, err_len, "%s: %s", r->addr,
                 b.over ? "the answer is too long" : curl_easy_strerror(cc));
        body_free(&b);
        return NULL;
    }
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, status);
    if (b.p == NULL || (j = json_loadb(b.p, b.n, 0, NULL)) == NULL || !json_is_object(j)) {
        snprintf(err, err_len, "%s: the answer (HTTP %ld) is not JSON", r->addr, *status);
        json_decref(j);
        j = NULL;
    }
    body_free(&b);
    return j;
}

/* A refusal's rc and message: 404 not found, 401/403 refused, else the
 * server's trouble. */
static kw_rc refusal(json_t *j, long status, char *err, size_t err_len)
{
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

    snprintf(err, err_len, "HTTP %ld: %s", status, msg ? msg : "no message");
    return status == 404                                     ? KW_ERR_NOT_FOUND
           : status == 401 || status == 403 || status == 409 ? KW_ERR_CONFLICT
                                                             : KW_ERR_IO;
}

kw_rc kwc_remote_get(kwc_remote *r, const char *path, int64_t version, kw_secret **value, char *err,
                     size_t err_len)
{
    char rest[64 + KW_SECRET_PATH_MAX];
    json_t *j;
    long status = 0;
    kw_rc rc = KW_OK;

    if (version > 0)
        snprintf(rest, sizeof(rest), "/v1/secrets/%s?version=%lld", path, (long long)version);
    else
        snprintf(rest, sizeof(rest), "/v1/secrets/%s", path); /* a path needs no escaping */
    if ((j = get(r, rest, &status, err, err_len)) == NULL)
        return KW_ERR_IO;
    if (status != 200) {
        rc = refusal(j, status, err, err_len);
    } else {
        rc = kwi_secret_value_of(j, value);
    }
    if (rc == KW_ERR_INVALID)
        snprintf(err, err_len, "%s: the answer holds no value", r->addr);
    json_decref(j);
    return rc;
}

kw_rc kwc_remote_list(kwc_remote *r, const char *prefix, kw_secret_info **out, size_t *n, char *err,
                      size_t err_len)
{
    char rest[64 + 3 * KW_SECRET_PATH_MAX];
    json_t *j, *list, *e;
    kw_secret_info *v;
    long status = 0;
    size_t i, k = 0;
    char *esc = curl_easy_escape(r->curl, prefix, 0);
    kw_rc rc = KW_OK;

    if (esc == NULL) {
        snprintf(err, err_len, "out of memory");
        return KW_ERR_NOMEM;
    }
    snprintf(rest, sizeof(rest), "/v1/secrets?prefix=%s", esc);
    curl_free(esc);
    if ((j = get(r, rest, &status, err, err_len)) == NULL)
        return KW_ERR_IO;
    if (status != 200) {
        rc = refusal(j, status, err, err_len);
        json_decref(j);
        return rc;
    }
    list = json_object_get(j, "secrets");
    if ((v = calloc(json_array_size(list) + 1, sizeof(*v))) == NULL) {
        json_decref(j);
        return KW_ERR_NOMEM;
    }
    json_array_foreach(list, i, e)
    {
        const char *p = json_string_value(json_object_get(e, "path"));
        if (p == NULL || !kw_secret_path_valid(p))
            continue;
        snprintf(v[k].path, sizeof(v[k].path), "%s", p);
        v[k].version = json_integer_value(json_object_get(e, "version"));
        k++;
    }
    json_decref(j);
    *out = v;
    *n = k;
    return KW_OK;
}
