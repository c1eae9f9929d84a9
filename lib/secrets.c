/*
 * Secrets (docs/secrets.md): values sealed with XChaCha20-Poly1305 under a
 * data key per version, the data key sealed under the master key; the
 * associated data of both binds the path and the version. Every write,
 * read, deletion and destruction is an audit record, in the same
 * transaction: if the record cannot be written, nothing happens.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define DK_LEN 32
#define HEX_LEN (KW_MASTER_KEY_LEN * 2)
_Static_assert(KW_MASTER_KEY_LEN == KW_PEPPER_LEN, "kwi_key32_hex reads both");
#define AD_MAX (32 + KW_SECRET_PATH_MAX + 1 + 8)
#define CMD_OUTPUT_MAX 4096

static const char wrap_label[] = "keyward secret data key v1";
static const char value_label[] = "keyward secret value v1";
static const char id_label[] = "keyward master key id v1";
static const char meta_master[] = "secrets_master_id";

/* ---- the master key ------------------------------------------------------- */

kw_rc kwi_master_key_hex(kw_secret **out, const char *hex, size_t len)
{
    kw_rc rc;

    while (len > 0 && (hex[len - 1] == '\n' || hex[len - 1] == '\r'))
        len--;
    rc = kwi_key32_hex(out, hex, len); /* the pepper's form: 32 bytes as hex */
    return rc == KW_ERR_INVALID ? KW_ERR_MASTER_KEY : rc;
}

static void why_set(char *why, size_t why_len, const char *text)
{
    if (why != NULL && why_len > 0)
        snprintf(why, why_len, "%s", text);
}

/* The first line of a command's output (run with /bin/sh -c), in locked
 * memory; its exit status must be 0. */
static kw_rc key_from_cmd(kw_secret **out, const char *cmd, char *why, size_t why_len)
{
    kw_secret *buf;
    FILE *p;
    size_t n;
    int status;
    kw_rc rc;

    if ((rc = kw_secret_new(&buf, CMD_OUTPUT_MAX)) != KW_OK)
        return rc;
    if ((p = popen(cmd, "re")) == NULL) {
        kw_secret_free(buf);
        why_set(why, why_len, "KEYWARD_MASTER_KEY_CMD could not be started");
        return KW_ERR_MASTER_KEY;
    }
    n = fread(kw_secret_data(buf), 1, CMD_OUTPUT_MAX, p);
    status = pclose(p);
    if (status != 0) {
        kw_secret_free(buf);
        why_set(why, why_len, "KEYWARD_MASTER_KEY_CMD failed (a non-zero exit status)");
        return KW_ERR_MASTER_KEY;
    }
    {
        const char *s = (const char *)kw_secret_cdata(buf), *nl = memchr(s, '\n', n);
        rc = kwi_master_key_hex(out, s, nl != NULL ? (size_t)(nl - s) : n);
    }
    kw_secret_free(buf);
    if (rc == KW_ERR_MASTER_KEY)
        why_set(why, why_len, "KEYWARD_MASTER_KEY_CMD did not print 64 hex characters");
    return rc;
}

KW_API kw_rc kw_master_key_load(kw_secret **out, const char *file, char *why, size_t why_len)
{
    const char *env = getenv("KEYWARD_MASTER_KEY"), *cmd = getenv("KEYWARD_MASTER_KEY_CMD");
    kw_secret *text = NULL;
    struct stat st;
    kw_rc rc;
    int fd;

    if (env != NULL && env[0] != '\0') {
        rc = kwi_master_key_hex(out, env, strlen(env));
        if (rc == KW_ERR_MASTER_KEY)
            why_set(why, why_len, "KEYWARD_MASTER_KEY is not 64 hex characters");
        return rc;
    }
    if (cmd != NULL && cmd[0] != '\0')
        return key_from_cmd(out, cmd, why, why_len);
    if (file == NULL) {
        why_set(why, why_len, "no master key: set KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_CMD");
        return KW_ERR_MASTER_KEY;
    }
    if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        why_set(why, why_len,
                errno == ENOENT ? "no master key: set KEYWARD_MASTER_KEY or "
                                  "KEYWARD_MASTER_KEY_CMD, or make one with 'keyward master-key "
                                  "init'"
                                : "the master key file cannot be opened");
        return KW_ERR_MASTER_KEY;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        close(fd);
        why_set(why, why_len, "the master key file must be a regular file of mode 0600");
        return KW_ERR_MASTER_KEY;
    }
    rc = kw_secret_read_fd(&text, fd, HEX_LEN + 2);
    close(fd);
    if (rc != KW_OK) {
        why_set(why, why_len, "the master key file cannot be read");
        return rc == KW_ERR_NOMEM ? rc : KW_ERR_MASTER_KEY;
    }
    rc = kwi_master_key_hex(out, (const char *)kw_secret_cdata(text), kw_secret_len(text));
    kw_secret_free(text);
    if (rc == KW_ERR_MASTER_KEY)
        why_set(why, why_len, "the master key file does not hold 64 hex characters");
    return rc;
}

KW_API char *kw_master_key_default_path(const char *db_url)
{
    char *pepper = kw_pepper_default_path(db_url), *out;
    size_t n;

    if (pepper == NULL)
        return NULL;
    n = strlen(pepper) - strlen(".pepper"); /* "<db path>.pepper" */
    if ((out = malloc(n + sizeof(".master"))) != NULL) {
        memcpy(out, pepper, n);
        memcpy(out + n, ".master", sizeof(".master"));
    }
    free(pepper);
    return out;
}

/* A master key's id: not secret, and tells keys apart. */
static uint64_t master_id_of(const kw_secret *master)
{
    unsigned char h[8];
    uint64_t id = 0;

    crypto_generichash(h, sizeof(h), (const unsigned char *)id_label, sizeof(id_label) - 1,
                       kw_secret_cdata(master), kw_secret_len(master));
    for (int i = 0; i < 8; i++)
        id = id << 8 | h[i];
    return id >> 1; /* fits a signed 64-bit column */
}

/* The database's master key id: 0 until the first secret is written. */
static kw_rc stored_master_id(kw_ctx *ctx, uint64_t *id)
{
    unsigned char buf[8];
    size_t len = 0;
    kw_rc rc = ctx->store->ops->meta_get(ctx->store, meta_master, buf, sizeof(buf), &len);

    *id = 0;
    if (rc == KW_ERR_NOT_FOUND)
        return KW_OK;
    if (rc != KW_OK || len != sizeof(buf)) {
        kwi_seterr(ctx, "%s", rc != KW_OK ? ctx->store->errmsg : "master key id is damaged");
        return rc != KW_OK ? rc : KW_ERR_STORAGE;
    }
    for (int i = 0; i < 8; i++)
        *id = *id << 8 | buf[i];
    return KW_OK;
}

KW_API kw_rc kw_secrets_master(kw_ctx *ctx, const kw_secret *master)
{
    uint64_t have;
    kw_secret *copy;
    kw_rc rc;

    if (master == NULL || kw_secret_len(master) != KW_MASTER_KEY_LEN) {
        kwi_seterr(ctx, "a master key is %d bytes", KW_MASTER_KEY_LEN);
        return KW_ERR_MASTER_KEY;
    }
    if ((rc = stored_master_id(ctx, &have)) != KW_OK)
        return rc;
    if (have != 0 && have != master_id_of(master)) {
        kwi_seterr(ctx, "this is not the master key the database's secrets are sealed under");
        return KW_ERR_MASTER_KEY;
    }
    if ((rc = kw_secret_from(&copy, kw_secret_cdata(master), KW_MASTER_KEY_LEN)) != KW_OK)
        return rc;
    kw_secret_free(ctx->master);
    ctx->master = copy;
    ctx->master_id = master_id_of(master);
    return KW_OK;
}

/* ---- paths ---------------------------------------------------------------- */

KW_API int kw_secret_path_valid(const char *path)
{
    size_t len, seg = 0;

    if (path == NULL || (len = strnlen(path, KW_SECRET_PATH_MAX + 1)) == 0 ||
        len > KW_SECRET_PATH_MAX)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '/' || c == '\0') {
            if (seg == 0 || (seg == 1 && path[i - 1] == '.') ||
                (seg == 2 && path[i - 1] == '.' && path[i - 2] == '.'))
                return 0; /* empty, "." or ".." */
            seg = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
        seg++;
    }
    return 1;
}

/* ---- sealing ---------------------------------------------------------------- */

/* The associated data of a path's version: label, path, version. */
static size_t ad_of(unsigned char ad[static AD_MAX], const char *label, const char *path,
                    int64_t version)
{
    size_t n = strlen(label) + 1, plen = strlen(path);

    memcpy(ad, label, n); /* with its NUL */
    memcpy(ad + n, path, plen + 1);
    n += plen + 1;
    for (int i = 7; i >= 0; i--)
        ad[n++] = (unsigned char)((uint64_t)version >> (8 * i));
    return n;
}

static void seal(unsigned char *out, const unsigned char *m, size_t mlen, const unsigned char *ad,
                 size_t adlen, const unsigned char key[static 32])
{
    unsigned long long clen;

    randombytes_buf(out, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE_LEN, &clen, m, mlen, ad, adlen, NULL,
                                               out, key);
}

static int open_sealed(unsigned char *m, const unsigned char *c, size_t clen,
                       const unsigned char *ad, size_t adlen, const unsigned char key[static 32])
{
    unsigned long long mlen;

    return clen >= NONCE_LEN + TAG_LEN &&
           crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c + NONCE_LEN,
                                                      clen - NONCE_LEN, ad, adlen, c, key) == 0;
}

/* ---- changes ------------------------------------------------------------------- */

static kw_rc audit(kw_ctx *ctx, const kw_actor *actor, const char *action, const char *path,
                   int64_t version)
{
    char detail[48];

    snprintf(detail, sizeof(detail), "{\"version\":%lld}", (long long)version);
    return kwi_audit_append(ctx, actor, action, path, "ok", version > 0 ? detail : NULL);
}

static kw_rc need(kw_ctx *ctx, const char *path, int master)
{
    if (!kw_secret_path_valid(path)) {
        kwi_seterr(ctx, "a secret path is 1 to 256 characters of A-Z a-z 0-9 _ . - in segments "
                        "separated by '/' (no empty, '.' or '..' segment)");
        return KW_ERR_INVALID;
    }
    if (master && ctx->master == NULL) {
        kwi_seterr(ctx, "no master key given (kw_secrets_master)");
        return KW_ERR_MASTER_KEY;
    }
    return KW_OK;
}

/* Write version v of path: a new data key, wrapped; the value sealed. */
static kw_rc version_write(kw_ctx *ctx, const char *path, int64_t v, const kw_secret *value)
{
    unsigned char dk[DK_LEN], ad[AD_MAX];
    kwi_secret_version row = {.version = v, .created_at = kw_now(), .master_id = ctx->master_id};
    kw_rc rc;

    if ((row.sealed = malloc(NONCE_LEN + kw_secret_len(value) + TAG_LEN)) == NULL)
        return KW_ERR_NOMEM;
    randombytes_buf(dk, sizeof(dk));
    seal(row.wrapped, dk, sizeof(dk), ad, ad_of(ad, wrap_label, path, v),
         kw_secret_cdata(ctx->master));
    row.wrapped_len = KWI_WRAPPED_LEN;
    seal(row.sealed, kw_secret_cdata(value), kw_secret_len(value), ad,
         ad_of(ad, value_label, path, v), dk);
    row.sealed_len = NONCE_LEN + kw_secret_len(value) + TAG_LEN;
    sodium_memzero(dk, sizeof(dk));
    rc = kwi_store_rc(ctx, ctx->store->ops->secret_version_put(ctx->store, path, &row));
    free(row.sealed);
    return rc;
}

KW_API kw_rc kw_secrets_put(kw_ctx *ctx, const char *path, const kw_secret *value, int64_t cas,
                            const kw_actor *actor, int64_t *version_out)
{
    kwi_secret_head h = {0};
    uint64_t have;
    int64_t now = kw_now(), v;
    unsigned char id[8];
    kw_rc rc;

    if ((rc = need(ctx, path, 1)) != KW_OK)
        return rc;
    if (value == NULL || kw_secret_len(value) == 0 || kw_secret_len(value) > KW_SECRET_VALUE_MAX) {
        kwi_seterr(ctx, "a secret's value is 1 to %d bytes", KW_SECRET_VALUE_MAX);
        return KW_ERR_INVALID;
    }
    if (cas < -1) {
        kwi_seterr(ctx, "check-and-set takes -1 (any), 0 (new) or a version");
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    if ((rc = stored_master_id(ctx, &have)) == KW_OK && have == 0) {
        for (int i = 0; i < 8; i++) /* the first secret: this is the master key now */
            id[i] = (unsigned char)(ctx->master_id >> (56 - 8 * i));
        rc = kwi_store_rc(ctx, ctx->store->ops->meta_set(ctx->store, meta_master, id, sizeof(id)));
    } else if (rc == KW_OK && have != ctx->master_id) {
        kwi_seterr(ctx, "this is not the master key the database's secrets are sealed under");
        rc = KW_ERR_MASTER_KEY;
    }
    if (rc == KW_OK) {
        rc = ctx->store->ops->secret_head(ctx->store, path, &h);
        if (rc == KW_ERR_NOT_FOUND) {
            memset(&h, 0, sizeof(h));
            kwi_strlcpy(h.path, path, sizeof(h.path));
            h.created_at = now;
            h.keep = KW_SECRET_KEEP;
            rc = KW_OK;
        } else {
            kwi_store_rc(ctx, rc);
        }
    }
    if (rc == KW_OK && cas >= 0 && cas != (h.deleted_at ? 0 : h.current)) {
        kwi_seterr(ctx, "check-and-set: %s is at version %lld, not %lld", path,
                   (long long)(h.deleted_at ? 0 : h.current), (long long)cas);
        rc = KW_ERR_CONFLICT;
    }
    v = h.current + 1;
    if (rc == KW_OK)
        rc = version_write(ctx, path, v, value);
    if (rc == KW_OK) {
        h.current = v;
        h.updated_at = now;
        h.deleted_at = 0;
        rc = kwi_store_rc(ctx, ctx->store->ops->secret_head_put(ctx->store, &h));
    }
    if (rc == KW_OK && v > h.keep)
        rc = kwi_store_rc(ctx, ctx->store->ops->secret_prune(ctx->store, path, v - h.keep + 1));
    if (rc == KW_OK)
        rc = audit(ctx, actor, "secret.write", path, v);
    rc = kwi_end(ctx, rc);
    if (rc == KW_OK && version_out != NULL)
        *version_out = v;
    return rc;
}

/* The live head of path: KW_ERR_NOT_FOUND if there is none or it is deleted. */
static kw_rc live_head(kw_ctx *ctx, const char *path, kwi_secret_head *h)
{
    kw_rc rc = ctx->store->ops->secret_head(ctx->store, path, h);

    if (rc == KW_OK && h->deleted_at != 0) {
        kwi_seterr(ctx, "secret %s is deleted", path);
        return KW_ERR_NOT_FOUND;
    }
    return kwi_store_rc(ctx, rc);
}

KW_API kw_rc kw_secrets_get(kw_ctx *ctx, const char *path, int64_t version, const kw_actor *actor,
                            kw_secret **value_out, int64_t *version_out)
{
    unsigned char dk[DK_LEN], ad[AD_MAX];
    kwi_secret_version row = {0};
    kwi_secret_head h;
    kw_secret *value = NULL;
    kw_rc rc;

    if ((rc = need(ctx, path, 1)) != KW_OK)
        return rc;
    if (version < 0) {
        kwi_seterr(ctx, "a version is 1 or more (0: the current one)");
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK) /* a read writes its audit record */
        return rc;
    if ((rc = live_head(ctx, path, &h)) == KW_OK) {
        if (version == 0)
            version = h.current;
        rc =
            kwi_store_rc(ctx, ctx->store->ops->secret_version_get(ctx->store, path, version, &row));
    }
    if (rc == KW_OK && row.destroyed_at != 0) {
        kwi_seterr(ctx, "version %lld of %s is destroyed", (long long)version, path);
        rc = KW_ERR_NOT_FOUND;
    }
    if (rc == KW_OK && row.sealed_len < NONCE_LEN + TAG_LEN + 1) {
        kwi_seterr(ctx, "version %lld of %s does not open: altered", (long long)version, path);
        rc = KW_ERR_MASTER_KEY;
    }
    if (rc == KW_OK && row.master_id != ctx->master_id) {
        kwi_seterr(ctx, "version %lld of %s is sealed under another master key", (long long)version,
                   path);
        rc = KW_ERR_MASTER_KEY;
    }
    if (rc == KW_OK)
        rc = kw_secret_new(&value, row.sealed_len - NONCE_LEN - TAG_LEN);
    if (rc == KW_OK &&
        (!open_sealed(dk, row.wrapped, row.wrapped_len, ad, ad_of(ad, wrap_label, path, version),
                      kw_secret_cdata(ctx->master)) ||
         !open_sealed(kw_secret_data(value), row.sealed, row.sealed_len, ad,
                      ad_of(ad, value_label, path, version), dk))) {
        kwi_seterr(ctx, "version %lld of %s does not open: altered, or moved from another secret",
                   (long long)version, path);
        rc = KW_ERR_MASTER_KEY;
    }
    sodium_memzero(dk, sizeof(dk));
    if (row.sealed != NULL)
        sodium_memzero(row.sealed, row.sealed_len);
    free(row.sealed);
    if (rc == KW_OK)
        rc = audit(ctx, actor, "secret.read", path, version);
    rc = kwi_end(ctx, rc);
    if (rc != KW_OK) {
        kw_secret_free(value);
        return rc;
    }
    *value_out = value;
    if (version_out != NULL)
        *version_out = version;
    return KW_OK;
}

KW_API kw_rc kw_secrets_list(kw_ctx *ctx, const char *prefix, int deleted, kw_secret_info **out,
                             size_t *n)
{
    kwi_secret_head *h;
    kw_secret_info *v;
    size_t count, k = 0;
    kw_rc rc = ctx->store->ops->secret_list(ctx->store, prefix ? prefix : "", &h, &count);

    if (rc != KW_OK)
        return kwi_store_rc(ctx, rc);
    if ((v = calloc(count ? count : 1, sizeof(*v))) == NULL) {
        free(h);
        return KW_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        if (h[i].deleted_at != 0 && !deleted)
            continue;
        memcpy(v[k].path, h[i].path, sizeof(v[k].path));
        v[k].version = h[i].current;
        v[k].created_at = h[i].created_at;
        v[k].updated_at = h[i].updated_at;
        v[k].deleted_at = h[i].deleted_at;
        v[k].keep = h[i].keep;
        k++;
    }
    free(h);
    *out = v;
    *n = k;
    return KW_OK;
}

KW_API kw_rc kw_secrets_history(kw_ctx *ctx, const char *path, kw_secret_version_info **out,
                                size_t *n)
{
    kwi_secret_version *rows;
    kw_secret_version_info *v;
    kwi_secret_head h;
    size_t count;
    kw_rc rc;

    if ((rc = need(ctx, path, 0)) != KW_OK)
        return rc;
    if ((rc = kwi_store_rc(ctx, ctx->store->ops->secret_head(ctx->store, path, &h))) != KW_OK)
        return rc;
    if ((rc = kwi_store_rc(
             ctx, ctx->store->ops->secret_versions(ctx->store, path, &rows, &count))) != KW_OK)
        return rc;
    if ((v = calloc(count ? count : 1, sizeof(*v))) == NULL) {
        free(rows);
        return KW_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        v[i].version = rows[i].version;
        v[i].created_at = rows[i].created_at;
        v[i].destroyed_at = rows[i].destroyed_at;
    }
    free(rows);
    *out = v;
    *n = count;
    return KW_OK;
}

/* Delete (deleted = 1) or undelete (0) a secret. */
static kw_rc set_deleted(kw_ctx *ctx, const char *path, int deleted, const kw_actor *actor)
{
    kwi_secret_head h;
    kw_rc rc;

    if ((rc = need(ctx, path, 0)) != KW_OK || (rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = kwi_store_rc(ctx, ctx->store->ops->secret_head(ctx->store, path, &h));
    if (rc == KW_OK && (h.deleted_at != 0) == deleted) {
        kwi_seterr(ctx, "secret %s is %s", path, deleted ? "deleted already" : "not deleted");
        rc = KW_ERR_CONFLICT;
    }
    if (rc == KW_OK) {
        h.deleted_at = deleted ? kw_now() : 0;
        h.updated_at = kw_now();
        rc = kwi_store_rc(ctx, ctx->store->ops->secret_head_put(ctx->store, &h));
    }
    if (rc == KW_OK)
        rc = audit(ctx, actor, deleted ? "secret.delete" : "secret.undelete", path, 0);
    return kwi_end(ctx, rc);
}

KW_API kw_rc kw_secrets_keep(kw_ctx *ctx, const char *path, int64_t keep, const kw_actor *actor)
{
    kwi_secret_head h;
    char detail[48];
    kw_rc rc;

    if ((rc = need(ctx, path, 0)) != KW_OK)
        return rc;
    if (keep < 1 || keep > KW_SECRET_KEEP_MAX) {
        kwi_seterr(ctx, "a secret keeps 1 to %d versions", KW_SECRET_KEEP_MAX);
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = kwi_store_rc(ctx, ctx->store->ops->secret_head(ctx->store, path, &h));
    if (rc == KW_OK) {
        h.keep = keep;
        rc = kwi_store_rc(ctx, ctx->store->ops->secret_head_put(ctx->store, &h));
    }
    if (rc == KW_OK && h.current > keep)
        rc = kwi_store_rc(ctx,
                          ctx->store->ops->secret_prune(ctx->store, path, h.current - keep + 1));
    snprintf(detail, sizeof(detail), "{\"keep\":%lld}", (long long)keep);
    if (rc == KW_OK)
        rc = kwi_audit_append(ctx, actor, "secret.keep", path, "ok", detail);
    return kwi_end(ctx, rc);
}

KW_API kw_rc kw_secrets_delete(kw_ctx *ctx, const char *path, const kw_actor *actor)
{
    return set_deleted(ctx, path, 1, actor);
}

KW_API kw_rc kw_secrets_undelete(kw_ctx *ctx, const char *path, const kw_actor *actor)
{
    return set_deleted(ctx, path, 0, actor);
}

KW_API kw_rc kw_secrets_destroy(kw_ctx *ctx, const char *path, int64_t version,
                                const kw_actor *actor)
{
    kw_rc rc;

    if ((rc = need(ctx, path, 0)) != KW_OK)
        return rc;
    if (version <= 0) {
        kwi_seterr(ctx, "destroy takes a version (1 or more)");
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = kwi_store_rc(ctx,
                      ctx->store->ops->secret_version_destroy(ctx->store, path, version, kw_now()));
    if (rc == KW_OK)
        rc = audit(ctx, actor, "secret.destroy", path, version);
    return kwi_end(ctx, rc);
}

KW_API kw_rc kw_secrets_rotate_master(kw_ctx *ctx, const kw_secret *new_master,
                                      const kw_actor *actor, size_t *count_out)
{
    unsigned char dk[DK_LEN], ad[AD_MAX], wrapped[KWI_WRAPPED_LEN], id[8];
    kwi_secret_head *paths = NULL;
    kwi_secret_version *v = NULL;
    kw_secret *copy = NULL;
    uint64_t new_id;
    char detail[48];
    size_t n = 0;
    kw_rc rc;

    if (ctx->master == NULL) {
        kwi_seterr(ctx, "no master key given (kw_secrets_master): the data keys cannot be opened");
        return KW_ERR_MASTER_KEY;
    }
    if (new_master == NULL || kw_secret_len(new_master) != KW_MASTER_KEY_LEN) {
        kwi_seterr(ctx, "a master key is %d bytes", KW_MASTER_KEY_LEN);
        return KW_ERR_INVALID;
    }
    if ((new_id = master_id_of(new_master)) == ctx->master_id) {
        kwi_seterr(ctx, "the new master key is the current one");
        return KW_ERR_INVALID;
    }
    if ((rc = kw_secret_from(&copy, kw_secret_cdata(new_master), KW_MASTER_KEY_LEN)) != KW_OK)
        return rc;
    if ((rc = kwi_begin(ctx)) != KW_OK) {
        kw_secret_free(copy);
        return rc;
    }
    rc = kwi_store_rc(ctx, ctx->store->ops->secret_wrapped_all(ctx->store, &paths, &v, &n));
    for (size_t i = 0; rc == KW_OK && i < n; i++) {
        size_t adlen = ad_of(ad, wrap_label, paths[i].path, v[i].version);
        if (v[i].master_id != ctx->master_id || !open_sealed(dk, v[i].wrapped, v[i].wrapped_len, ad,
                                                             adlen, kw_secret_cdata(ctx->master))) {
            kwi_seterr(ctx, "version %lld of %s does not open under the current master key",
                       (long long)v[i].version, paths[i].path);
            rc = KW_ERR_MASTER_KEY;
            break;
        }
        seal(wrapped, dk, sizeof(dk), ad, adlen, kw_secret_cdata(new_master));
        rc = kwi_store_rc(ctx,
                          ctx->store->ops->secret_rewrap(ctx->store, paths[i].path, v[i].version,
                                                         wrapped, sizeof(wrapped), new_id));
    }
    sodium_memzero(dk, sizeof(dk));
    for (int i = 0; i < 8; i++)
        id[i] = (unsigned char)(new_id >> (56 - 8 * i));
    if (rc == KW_OK)
        rc = kwi_store_rc(ctx, ctx->store->ops->meta_set(ctx->store, meta_master, id, sizeof(id)));
    snprintf(detail, sizeof(detail), "{\"versions\":%zu}", n);
    if (rc == KW_OK)
        rc = kwi_audit_append(ctx, actor, "master-key.rotate", "secrets", "ok", detail);
    rc = kwi_end(ctx, rc);
    free(paths);
    free(v);
    if (rc != KW_OK) {
        kw_secret_free(copy);
        return rc;
    }
    kw_secret_free(ctx->master);
    ctx->master = copy;
    ctx->master_id = new_id;
    if (count_out != NULL)
        *count_out = n;
    return KW_OK;
}

kw_rc kwi_secret_value_of(json_t *answer, kw_secret **value)
{
    json_t *text = json_object_get(answer, "value"), *b64 = json_object_get(answer, "value_base64");
    kw_secret *out = NULL;
    size_t n = 0;
    kw_rc rc = KW_ERR_INVALID;

    if (json_is_string(text)) {
        n = json_string_length(text);
        if (n > 0 && n <= KW_SECRET_VALUE_MAX)
            rc = kw_secret_from(&out, json_string_value(text), n);
        sodium_memzero((char *)json_string_value(text), n);
    } else if (json_is_string(b64)) {
        const char *s = json_string_value(b64);
        size_t slen = json_string_length(b64);
        if (slen <= (KW_SECRET_VALUE_MAX + 2) / 3 * 4 &&
            (rc = kw_secret_new(&out, slen / 4 * 3 + 3)) == KW_OK &&
            (sodium_base642bin(kw_secret_data(out), kw_secret_len(out), s, slen, NULL, &n, NULL,
                               sodium_base64_VARIANT_ORIGINAL) != 0 ||
             n == 0 || n > KW_SECRET_VALUE_MAX)) {
            kw_secret_free(out);
            out = NULL;
            rc = KW_ERR_INVALID;
        } else if (rc == KW_OK) {
            kw_secret_truncate(out, n);
        }
        sodium_memzero((char *)s, slen);
    }
    if (rc == KW_OK)
        *value = out;
    return rc == KW_ERR_NOMEM ? rc : rc == KW_OK ? KW_OK : KW_ERR_INVALID;
}

void kwi_secrets_free(kw_ctx *ctx)
{
    kw_secret_free(ctx->master);
    ctx->master = NULL;
    ctx->master_id = 0;
}
