/* Key records: validation, create, read, list, update, rotate, revoke. */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define RATE_WINDOW_MIN_MS 1000u
#define RATE_WINDOW_MAX_MS (30u * 86400u * 1000u)

KW_API void kw_key_params_init(kw_key_params *p)
{
    memset(p, 0, sizeof(*p));
    p->credits = KW_CREDITS_UNLIMITED;
}

int kwi_text_ok(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return 1;
    n = strnlen(s, max + 1);
    if (n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return kwi_utf8_valid(s);
}

static kw_rc scopes_check(kw_ctx *ctx, const char *const *scopes, size_t n)
{
    char why[KWI_ERRMSG_MAX];

    if (kwi_scopes_check(scopes, n, why, sizeof(why)) == 0)
        return KW_OK;
    kwi_seterr(ctx, "%s", why);
    return KW_ERR_INVALID;
}

static kw_rc meta_check(kw_ctx *ctx, const char *meta)
{
    json_error_t jerr;
    json_t *j;
    int is_obj;

    if (meta == NULL)
        return KW_OK;
    if (strnlen(meta, KW_META_MAX + 1) > KW_META_MAX) {
        kwi_seterr(ctx, "meta is larger than %d bytes", KW_META_MAX);
        return KW_ERR_INVALID;
    }
    j = json_loads(meta, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        kwi_seterr(ctx, "meta is not valid JSON: %s", jerr.text);
        return KW_ERR_INVALID;
    }
    is_obj = json_is_object(j);
    json_decref(j);
    if (!is_obj) {
        kwi_seterr(ctx, "meta must be a JSON object");
        return KW_ERR_INVALID;
    }
    return KW_OK;
}

kw_rc kwi_params_check(kw_ctx *ctx, const kw_key_params *p, unsigned fields)
{
    int64_t now = kw_now();
    kw_rc rc;

    if ((fields & KW_CHANGE_OWNER) && !kwi_text_ok(p->owner, KW_OWNER_MAX)) {
        kwi_seterr(ctx, "owner must be UTF-8 text of at most %d bytes, without control characters",
                   KW_OWNER_MAX);
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_NAME) && !kwi_text_ok(p->name, KW_NAME_MAX)) {
        kwi_seterr(ctx, "name must be UTF-8 text of at most %d bytes, without control characters",
                   KW_NAME_MAX);
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_SCOPES) && (rc = scopes_check(ctx, p->scopes, p->nscopes)) != KW_OK)
        return rc;
    if ((fields & KW_CHANGE_META) && (rc = meta_check(ctx, p->meta)) != KW_OK)
        return rc;
    if ((fields & KW_CHANGE_EXPIRES) && p->expires_at != 0 && p->expires_at <= now) {
        kwi_seterr(ctx, "expiry is in the past");
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_NOT_BEFORE) && (fields & KW_CHANGE_EXPIRES) && p->not_before != 0 &&
        p->expires_at != 0 && p->not_before >= p->expires_at) {
        kwi_seterr(ctx, "not_before must be earlier than the expiry");
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_NOT_BEFORE) && p->not_before < 0) {
        kwi_seterr(ctx, "not_before is negative");
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_CREDITS) && p->credits < KW_CREDITS_UNLIMITED) {
        kwi_seterr(ctx, "credits must be at least 0");
        return KW_ERR_INVALID;
    }
    if ((fields & KW_CHANGE_RATE) && p->rate_limit > 0 &&
        (p->rate_window_ms < RATE_WINDOW_MIN_MS || p->rate_window_ms > RATE_WINDOW_MAX_MS)) {
        kwi_seterr(ctx, "rate-limit window must be between 1s and 30d");
        return KW_ERR_INVALID;
    }
    return KW_OK;
}

/* Compact, canonical JSON text of a meta object ("{}" for NULL). */
static char *meta_canonical(const char *meta)
{
    json_t *j;
    char *out;

    if (meta == NULL)
        return strdup("{}");
    j = json_loads(meta, 0, NULL);
    if (j == NULL)
        return NULL;
    out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return out;
}

static char **scopes_dup(const char *const *scopes, size_t n)
{
    char **out = calloc(n + 1, sizeof(*out));

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(scopes[i]);
        if (out[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void scopes_free(char **scopes, size_t n)
{
    if (scopes == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(scopes[i]);
    free(scopes);
}

/* Replace a string field: the new copy is made before the old is freed. */
static int replace_str(char **field, const char *v)
{
    char *copy = strdup(v ? v : "");

    if (copy == NULL)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

kw_rc kwi_record_set(kw_key_record *r, const kw_key_params *p, unsigned fields)
{
    if ((fields & KW_CHANGE_OWNER) && replace_str(&r->owner, p->owner) != 0)
        return KW_ERR_NOMEM;
    if ((fields & KW_CHANGE_NAME) && replace_str(&r->name, p->name) != 0)
        return KW_ERR_NOMEM;
    if (fields & KW_CHANGE_SCOPES) {
        char **s = scopes_dup(p->scopes, p->nscopes);
        if (s == NULL)
            return KW_ERR_NOMEM;
        scopes_free(r->scopes, r->nscopes);
        r->scopes = s;
        r->nscopes = p->nscopes;
    }
    if (fields & KW_CHANGE_META) {
        char *m = meta_canonical(p->meta);
        if (m == NULL)
            return KW_ERR_NOMEM;
        free(r->meta);
        r->meta = m;
    }
    if (fields & KW_CHANGE_EXPIRES)
        r->expires_at = p->expires_at;
    if (fields & KW_CHANGE_NOT_BEFORE)
        r->not_before = p->not_before;
    if (fields & KW_CHANGE_CREDITS)
        r->credits = p->credits;
    if (fields & KW_CHANGE_RATE) {
        r->rate_limit = p->rate_limit;
        r->rate_window_ms = p->rate_limit ? p->rate_window_ms : 0;
    }
    return KW_OK;
}

kw_rc kwi_record_copy(kw_key_record *dst, const kw_key_record *src)
{
    *dst = *src;
    dst->owner = strdup(src->owner);
    dst->name = strdup(src->name);
    dst->meta = strdup(src->meta);
    dst->scopes = scopes_dup((const char *const *)src->scopes, src->nscopes);
    dst->external_id = kwi_strdup(src->external_id);
    if (!dst->owner || !dst->name || !dst->meta || !dst->scopes ||
        (src->external_id && !dst->external_id)) {
        kw_key_record_clear(dst);
        return KW_ERR_NOMEM;
    }
    return KW_OK;
}

KW_API void kw_key_record_clear(kw_key_record *r)
{
    if (r == NULL)
        return;
    free(r->owner);
    free(r->name);
    free(r->meta);
    free(r->external_id);
    scopes_free(r->scopes, r->nscopes);
    memset(r, 0, sizeof(*r));
}

KW_API void kw_key_records_free(kw_key_record *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kw_key_record_clear(&r[i]);
    free(r);
}

void kwi_key_row_clear(kw_key_row *row)
{
    if (row == NULL)
        return;
    kw_key_record_clear(&row->rec);
    sodium_memzero(row, sizeof(*row));
}

void kwi_key_rows_free(kw_key_row *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kwi_key_row_clear(&rows[i]);
    free(rows);
}

char *kwi_scopes_join(char *const *scopes, size_t n)
{
    size_t len = 1;
    char *out, *p;

    for (size_t i = 0; i < n; i++)
        len += strlen(scopes[i]) + 1;
    out = malloc(len);
    if (out == NULL)
        return NULL;
    p = out;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(scopes[i]);
        if (i > 0)
            *p++ = ' ';
        memcpy(p, scopes[i], l);
        p += l;
    }
    *p = '\0';
    return out;
}

kw_rc kwi_scopes_borrow(kwi_scope_scratch *sc, const char *s, size_t len, kw_key_record *r)
{
    char *p;

    if (len >= sizeof(sc->text))
        return KW_ERR_STORAGE;
    memcpy(sc->text, s, len + 1);
    r->scopes = sc->v;
    r->nscopes = 0;
    for (p = sc->text; *p != '\0';) {
        while (*p == ' ')
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (r->nscopes == KW_SCOPES_MAX)
            return KW_ERR_STORAGE;
        sc->v[r->nscopes++] = p;
        p += strcspn(p, " ");
    }
    return KW_OK;
}

kw_rc kwi_scopes_split(const char *s, char ***out, size_t *n)
{
    size_t count = 0, i = 0;
    const char *p = s;
    char **v;

    for (const char *q = s; *q; q++)
        if (*q != ' ' && (q == s || q[-1] == ' '))
            count++;
    v = calloc(count + 1, sizeof(*v));
    if (v == NULL)
        return KW_ERR_NOMEM;
    while (*p) {
        const char *end;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        end = strchr(p, ' ');
        if (end == NULL)
            end = p + strlen(p);
        v[i] = strndup(p, (size_t)(end - p));
        if (v[i] == NULL) {
            scopes_free(v, i);
            return KW_ERR_NOMEM;
        }
        i++;
        p = end;
    }
    *out = v;
    *n = i;
    return KW_OK;
}

/* ---- JSON --------------------------------------------------------------- */

KW_API const char *kw_key_status(const kw_key_record *r, int64_t now)
{
    if (r->revoked_at)
        return "revoked";
    if (!r->enabled)
        return "disabled";
    if (r->expires_at && now >= r->expires_at)
        return "expired";
    if (r->not_before && now < r->not_before)
        return "pending";
    return "active";
}

/* The record as a JSON object. The audit detail (audit != 0) leaves out
 * what changes without a change (last use, status) and may add one field. */
static char *record_json(const kw_key_record *r, int audit, const char *extra_name,
                         const char *extra)
{
    kwi_jw w;

    kwi_jw_init(&w, 512);
    kwi_jw_lit(&w, "{\"id\":");
    kwi_jw_str(&w, r->id);
    kwi_jw_lit(&w, ",\"prefix\":");
    kwi_jw_str(&w, r->prefix);
    kwi_jw_lit(&w, ",\"owner\":");
    kwi_jw_str(&w, r->owner);
    kwi_jw_lit(&w, ",\"name\":");
    kwi_jw_str(&w, r->name);
    kwi_jw_lit(&w, ",\"scopes\":");
    kwi_jw_strv(&w, (const char *const *)r->scopes, r->nscopes);
    kwi_jw_lit(&w, ",\"meta\":");
    kwi_jw_object_text(&w, r->meta);
    if (!audit) {
        kwi_jw_lit(&w, ",\"status\":");
        kwi_jw_str(&w, kw_key_status(r, kw_now()));
    }
    kwi_jw_lit(&w, ",\"created_at\":");
    kwi_jw_time(&w, r->created_at);
    kwi_jw_lit(&w, ",\"not_before\":");
    kwi_jw_time(&w, r->not_before);
    kwi_jw_lit(&w, ",\"expires_at\":");
    kwi_jw_time(&w, r->expires_at);
    if (!audit) {
        kwi_jw_lit(&w, ",\"last_used_at\":");
        kwi_jw_time(&w, r->last_used_at);
    }
    kwi_jw_lit(&w, r->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    kwi_jw_lit(&w, ",\"revoked_at\":");
    kwi_jw_time(&w, r->revoked_at);
    kwi_jw_lit(&w, ",\"credits\":");
    if (r->credits == KW_CREDITS_UNLIMITED)
        kwi_jw_lit(&w, "null");
    else
        kwi_jw_int(&w, (long long)r->credits);
    kwi_jw_lit(&w, ",\"ratelimit\":");
    if (r->rate_limit != 0) {
        kwi_jw_lit(&w, "{\"limit\":");
        kwi_jw_int(&w, (long long)r->rate_limit);
        kwi_jw_lit(&w, ",\"window_ms\":");
        kwi_jw_int(&w, (long long)r->rate_window_ms);
        kwi_jw_raw(&w, "}", 1);
    } else {
        kwi_jw_lit(&w, "null");
    }
    kwi_jw_lit(&w, ",\"rotated_from\":");
    kwi_jw_str(&w, r->rotated_from[0] ? r->rotated_from : NULL);
    kwi_jw_lit(&w, ",\"rotated_to\":");
    kwi_jw_str(&w, r->rotated_to[0] ? r->rotated_to : NULL);
    kwi_jw_lit(&w, r->legacy ? ",\"legacy\":true" : ",\"legacy\":false");
    kwi_jw_lit(&w, ",\"external_id\":");
    kwi_jw_str(&w, r->external_id);
    if (extra_name != NULL) {
        kwi_jw_raw(&w, ",", 1);
        kwi_jw_str(&w, extra_name);
        kwi_jw_raw(&w, ":", 1);
        kwi_jw_str(&w, extra);
    }
    kwi_jw_raw(&w, "}", 1);
    return kwi_jw_finish(&w);
}

KW_API char *kw_key_record_json(const kw_key_record *r)
{
    return record_json(r, 0, NULL, NULL);
}

/* ---- changes ------------------------------------------------------------ */

/* Audit detail: the record's settings after the change (never the key). */
static char *audit_detail(const kw_key_record *r, const char *extra_name, const char *extra)
{
    return record_json(r, 1, extra_name, extra);
}

/* Write the audit record and commit; on any failure roll back (fail closed). */
static kw_rc audit_and_commit(kw_ctx *ctx, const kw_actor *actor, const char *action,
                              const kw_key_record *r, const char *extra_name, const char *extra)
{
    char *detail = audit_detail(r, extra_name, extra);
    kw_rc rc;

    if (detail == NULL) {
        ctx->store->ops->rollback(ctx->store);
        return KW_ERR_NOMEM;
    }
    rc = kwi_audit_append(ctx, actor, action, r->id, "ok", detail);
    free(detail);
    if (rc != KW_OK) { /* keep the audit's own message: the change is refused */
        ctx->store->ops->rollback(ctx->store);
        return rc;
    }
    return kwi_finish(ctx, KW_OK);
}

/* Fill a fresh row for a new key from params; the hash comes from key. */
static kw_rc new_row(kw_ctx *ctx, kw_key_row *row, const kw_key_params *p, const kw_secret *key,
                     const char *id, const char *prefix)
{
    const unsigned all = KW_CHANGE_OWNER | KW_CHANGE_NAME | KW_CHANGE_SCOPES | KW_CHANGE_META |
                         KW_CHANGE_EXPIRES | KW_CHANGE_NOT_BEFORE | KW_CHANGE_CREDITS |
                         KW_CHANGE_RATE;
    kw_rc rc;

    memset(row, 0, sizeof(*row));
    kwi_strlcpy(row->rec.id, id, sizeof(row->rec.id));
    kwi_strlcpy(row->rec.prefix, prefix, sizeof(row->rec.prefix));
    row->rec.created_at = kw_now();
    row->rec.enabled = 1;
    row->rec.credits = KW_CREDITS_UNLIMITED;
    rc = kwi_record_set(&row->rec, p, all);
    if (rc != KW_OK) {
        kwi_key_row_clear(row);
        return rc;
    }
    kwi_pepper_hmac(ctx, row->hash, kw_secret_cdata(key), kw_secret_len(key));
    row->has_hash = 1;
    return KW_OK;
}

/* Hand the caller a copy of a record if they asked for one. */
static kw_rc give_record(kw_key_record *out, const kw_key_record *r)
{
    return out == NULL ? KW_OK : kwi_record_copy(out, r);
}

/* Check one new key's settings; its prefix or the default. */
static kw_rc create_check(kw_ctx *ctx, const kw_key_params *p)
{
    const char *prefix = p->prefix ? p->prefix : KW_DEFAULT_PREFIX;

    if (!kw_prefix_valid(prefix)) {
        kwi_seterr(ctx, "invalid prefix (1-20 of [a-z0-9_], starting with a letter, "
                        "no trailing or double '_')");
        return KW_ERR_INVALID;
    }
    return kwi_params_check(ctx, p, ~0u);
}

KW_API kw_rc kw_key_params_check(kw_ctx *ctx, const kw_key_params *p)
{
    return create_check(ctx, p);
}

/* Insert one new key and its audit record inside the open transaction. */
static kw_rc create_one(kw_ctx *ctx, kwi_audit_batch *audit, const kw_key_params *p,
                        const kw_actor *actor, kw_secret **key_out, kw_key_record *rec_out)
{
    const char *prefix = p->prefix ? p->prefix : KW_DEFAULT_PREFIX;
    kw_secret *key = NULL;
    char id[KW_ID_LEN + 1];
    char *detail = NULL;
    kw_key_row row;
    kw_rc rc;

    rc = kw_key_generate(&key, id, prefix);
    if (rc != KW_OK)
        return rc;
    rc = new_row(ctx, &row, p, key, id, prefix);
    if (rc != KW_OK) {
        kw_secret_free(key);
        return rc;
    }
    rc = ctx->store->ops->key_insert(ctx->store, &row);
    if (rc != KW_OK) { /* a clash of 72 random bits is a storage fault, not the caller's */
        rc = kwi_store_rc(ctx, rc == KW_ERR_CONFLICT ? KW_ERR_STORAGE : rc);
    } else if ((detail = audit_detail(&row.rec, NULL, NULL)) == NULL) {
        rc = KW_ERR_NOMEM;
    } else {
        rc = kwi_audit_batch_add(ctx, audit, actor, "key.create", row.rec.id, "ok", detail);
    }
    if (rc == KW_OK)
        rc = give_record(rec_out, &row.rec);
    free(detail);
    kwi_key_row_clear(&row);
    if (rc != KW_OK) {
        kw_secret_free(key);
        return rc;
    }
    *key_out = key;
    return KW_OK;
}

KW_API kw_rc kw_key_create_many(kw_ctx *ctx, const kw_key_params *params, const kw_actor *actors,
                                size_t n, kw_secret **keys_out, kw_key_record *recs_out,
                                size_t *failed)
{
    kwi_audit_batch audit;
    size_t done = 0;
    kw_rc rc = KW_OK;

    if (failed != NULL)
        *failed = n;
    for (size_t i = 0; i < n; i++) {
        keys_out[i] = NULL;
        if (recs_out != NULL)
            memset(&recs_out[i], 0, sizeof(recs_out[i]));
    }
    for (size_t i = 0; i < n && rc == KW_OK; i++)
        if ((rc = create_check(ctx, &params[i])) != KW_OK && failed != NULL)
            *failed = i;
    if (rc != KW_OK || n == 0)
        return rc;
    rc = kwi_begin(ctx);
    if (rc == KW_OK)
        rc = kwi_audit_batch_begin(ctx, &audit);
    for (; done < n && rc == KW_OK; done++)
        rc = create_one(ctx, &audit, &params[done], &actors[done], &keys_out[done],
                        recs_out != NULL ? &recs_out[done] : NULL);
    if (rc == KW_OK)
        rc = kwi_audit_batch_end(ctx, &audit); /* the chain's head, once for the batch */
    if (rc == KW_OK)
        rc = kwi_finish(ctx, KW_OK); /* one durable commit for the batch */
    else
        ctx->store->ops->rollback(ctx->store);
    if (rc != KW_OK) /* all or nothing: hand back no key of a batch that is not stored */
        for (size_t i = 0; i < done; i++) {
            kw_secret_free(keys_out[i]);
            keys_out[i] = NULL;
            if (recs_out != NULL)
                kw_key_record_clear(&recs_out[i]);
        }
    return rc;
}

KW_API kw_rc kw_key_create(kw_ctx *ctx, const kw_key_params *p, const kw_actor *actor,
                           kw_secret **key_out, kw_key_record *rec_out)
{
    return kw_key_create_many(ctx, p, actor, 1, key_out, rec_out, NULL);
}

KW_API kw_rc kw_key_get(kw_ctx *ctx, const char *id, kw_key_record *out)
{
    kw_key_row row;
    kw_rc rc;

    if (!kw_key_id_valid(id)) {
        kwi_seterr(ctx, "not a key id (12 base62 chars)");
        return KW_ERR_INVALID;
    }
    rc = ctx->store->ops->key_get(ctx->store, id, &row);
    if (rc == KW_ERR_NOT_FOUND) {
        kwi_seterr(ctx, "no key with id %s", id);
        return rc;
    }
    if (rc != KW_OK)
        return kwi_store_rc(ctx, rc);
    *out = row.rec;
    memset(&row.rec, 0, sizeof(row.rec));
    kwi_key_row_clear(&row);
    return KW_OK;
}

KW_API kw_rc kw_key_list(kw_ctx *ctx, const kw_key_filter *f, kw_key_record **out, size_t *n,
                         char next[static KW_ID_LEN + 1])
{
    kw_key_filter q = {0};
    kw_key_record *recs;
    size_t count;
    kw_rc rc;

    if (f != NULL)
        q = *f;
    if (q.limit == 0)
        q.limit = 100;
    if (q.limit > KW_LIST_MAX) {
        kwi_seterr(ctx, "limit must be 1..%d", KW_LIST_MAX);
        return KW_ERR_INVALID;
    }
    if (q.after != NULL && q.after[0] != '\0' && !kw_key_id_valid(q.after)) {
        kwi_seterr(ctx, "invalid cursor");
        return KW_ERR_INVALID;
    }
    q.limit++; /* one more tells whether there is a next page */
    rc = ctx->store->ops->key_list(ctx->store, &q, &recs, &count);
    if (rc == KW_ERR_NOT_FOUND) {
        kwi_seterr(ctx, "invalid cursor: no key %s", q.after);
        return KW_ERR_INVALID;
    }
    if (rc != KW_OK)
        return kwi_store_rc(ctx, rc);
    next[0] = '\0';
    if (count == q.limit) {
        count--;
        kw_key_record_clear(&recs[count]);
        kwi_strlcpy(next, recs[count - 1].id, KW_ID_LEN + 1);
    }
    *out = recs;
    *n = count;
    return KW_OK;
}

/* Begin a transaction and load the row of a key that may still change. */
static kw_rc load_mutable(kw_ctx *ctx, const char *id, kw_key_row *row)
{
    kw_rc rc;

    if (!kw_key_id_valid(id)) {
        kwi_seterr(ctx, "not a key id (12 base62 chars)");
        return KW_ERR_INVALID;
    }
    rc = kwi_begin(ctx);
    if (rc != KW_OK)
        return rc;
    rc = ctx->store->ops->key_get(ctx->store, id, row);
    if (rc != KW_OK) {
        ctx->store->ops->rollback(ctx->store);
        if (rc == KW_ERR_NOT_FOUND)
            kwi_seterr(ctx, "no key with id %s", id);
        else
            kwi_store_rc(ctx, rc);
        return rc;
    }
    if (row->rec.revoked_at != 0) {
        ctx->store->ops->rollback(ctx->store);
        kwi_seterr(ctx, "key %s is revoked", id);
        kwi_key_row_clear(row);
        return KW_ERR_CONFLICT;
    }
    return KW_OK;
}

static const char *update_action(unsigned fields, int enabled)
{
    if (fields == KW_CHANGE_ENABLED)
        return enabled ? "key.enable" : "key.disable";
    return "key.update";
}

KW_API kw_rc kw_key_update(kw_ctx *ctx, const char *id, const kw_key_change *c,
                           const kw_actor *actor, kw_key_record *rec_out)
{
    kw_key_row row;
    kw_rc rc;

    if (c->fields == 0) {
        kwi_seterr(ctx, "nothing to change");
        return KW_ERR_INVALID;
    }
    rc = kwi_params_check(ctx, &c->p, c->fields);
    if (rc != KW_OK)
        return rc;
    rc = load_mutable(ctx, id, &row);
    if (rc != KW_OK)
        return rc;
    rc = kwi_record_set(&row.rec, &c->p, c->fields);
    if (rc == KW_OK && (c->fields & KW_CHANGE_ENABLED))
        row.rec.enabled = c->enabled ? 1 : 0;
    if (rc == KW_OK && (c->fields & KW_CHANGE_CREDITS))
        row.credits_from[0] = '\0'; /* credits set explicitly are the key's own */
    if (rc == KW_OK && (c->fields & KW_CHANGE_RATE))
        row.rl_start_ms = row.rl_count = row.rl_prev = 0;
    if (rc == KW_OK) {
        rc = ctx->store->ops->key_put(ctx->store, &row);
        if (rc != KW_OK)
            kwi_store_rc(ctx, rc);
    }
    if (rc != KW_OK) {
        ctx->store->ops->rollback(ctx->store);
        goto out;
    }
    rc = audit_and_commit(ctx, actor, update_action(c->fields, c->enabled), &row.rec, NULL, NULL);
    if (rc == KW_OK)
        rc = give_record(rec_out, &row.rec);
out:
    kwi_key_row_clear(&row);
    return rc;
}

/* The settings of `r` as params for a new key. */
static void params_of(kw_key_params *p, const kw_key_record *r)
{
    kw_key_params_init(p);
    p->owner = r->owner;
    p->name = r->name;
    p->scopes = (const char *const *)r->scopes;
    p->nscopes = r->nscopes;
    p->meta = r->meta;
    p->not_before = r->not_before;
    p->expires_at = r->expires_at;
    p->credits = r->credits;
    p->rate_limit = r->rate_limit;
    p->rate_window_ms = r->rate_window_ms;
}

KW_API kw_rc kw_key_rotate(kw_ctx *ctx, const char *id, int64_t grace_seconds,
                           const kw_actor *actor, kw_secret **key_out, kw_key_record *rec_out)
{
    kw_key_row old, fresh;
    kw_key_params p;
    kw_secret *key = NULL;
    char new_id[KW_ID_LEN + 1];
    int64_t now = kw_now(), until;
    kw_rc rc;

    memset(&fresh, 0, sizeof(fresh));
    if (grace_seconds < 0 || grace_seconds > 365LL * 86400) {
        kwi_seterr(ctx, "grace period must be between 0 and 365 days");
        return KW_ERR_INVALID;
    }
    rc = load_mutable(ctx, id, &old);
    if (rc != KW_OK)
        return rc;
    if (old.rec.rotated_to[0] != '\0' || (old.rec.expires_at && old.rec.expires_at <= now)) {
        kwi_seterr(ctx,
                   old.rec.rotated_to[0] ? "key %s was already rotated (to %s)"
                                         : "key %s has expired%s",
                   id, old.rec.rotated_to);
        rc = KW_ERR_CONFLICT;
        goto fail;
    }
    rc = kw_key_generate(&key, new_id, old.rec.prefix[0] ? old.rec.prefix : KW_DEFAULT_PREFIX);
    if (rc != KW_OK)
        goto fail;
    params_of(&p, &old.rec);
    if (old.credits_from[0] == '\0')
        p.credits = old.rec.credits;
    rc = new_row(ctx, &fresh, &p, key, new_id,
                 old.rec.prefix[0] ? old.rec.prefix : KW_DEFAULT_PREFIX);
    if (rc != KW_OK)
        goto fail;
    fresh.rec.enabled = old.rec.enabled;
    kwi_strlcpy(fresh.rec.rotated_from, old.rec.id, sizeof(fresh.rec.rotated_from));

    /* The old key lives out its grace period on the new key's credits. */
    until = now + grace_seconds;
    if (old.rec.expires_at == 0 || old.rec.expires_at > until)
        old.rec.expires_at = until;
    kwi_strlcpy(old.rec.rotated_to, new_id, sizeof(old.rec.rotated_to));
    kwi_strlcpy(old.credits_from, new_id, sizeof(old.credits_from));
    old.rec.credits = KW_CREDITS_UNLIMITED;

    rc = ctx->store->ops->key_insert(ctx->store, &fresh);
    if (rc == KW_OK)
        rc = ctx->store->ops->key_put(ctx->store, &old);
    if (rc != KW_OK) {
        kwi_store_rc(ctx, rc);
        goto fail;
    }
    rc = audit_and_commit(ctx, actor, "key.rotate", &old.rec, "new_id", new_id);
    if (rc == KW_OK)
        rc = give_record(rec_out, &fresh.rec);
    if (rc == KW_OK) {
        *key_out = key;
        key = NULL;
    }
    goto out;
fail:
    ctx->store->ops->rollback(ctx->store);
out:
    kwi_key_row_clear(&old);
    kwi_key_row_clear(&fresh);
    kw_secret_free(key);
    return rc;
}

KW_API kw_rc kw_key_revoke(kw_ctx *ctx, const char *id, const kw_actor *actor,
                           kw_key_record *rec_out)
{
    kw_key_row row;
    kw_rc rc;

    rc = load_mutable(ctx, id, &row);
    if (rc != KW_OK)
        return rc;
    row.rec.revoked_at = kw_now();
    rc = ctx->store->ops->key_put(ctx->store, &row);
    if (rc != KW_OK) {
        kwi_store_rc(ctx, rc);
        ctx->store->ops->rollback(ctx->store);
        goto out;
    }
    rc = audit_and_commit(ctx, actor, "key.revoke", &row.rec, NULL, NULL);
    if (rc == KW_OK)
        rc = give_record(rec_out, &row.rec);
out:
    kwi_key_row_clear(&row);
    return rc;
}
