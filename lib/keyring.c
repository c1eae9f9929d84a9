/*
 * Stateless keys through a database: the signing keyring (secrets sealed
 * with XChaCha20-Poly1305 under a key derived from the pepper), minting,
 * revocation, and verification (docs/tokens.md). A context keeps the
 * keyring and the revoked ids in memory and reads them again at most
 * every second, so that a rotation, a retirement or a revocation made
 * elsewhere reaches it within a second, with no read per verification.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_MS 1000    /* the keyring and revocations are read again after this */
#define UNKNOWN_KID_MS 100 /* an unknown kid reads the keyring again, at most this often */
#define KIND_HMAC "hmac-sha256"
#define KIND_ED25519 "ed25519"
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_LEN (NONCE_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES) /* sealing nothing */
#define SECRET_LEN 32 /* an HMAC key; an Ed25519 key's seed */
#define PK_LEN KWI_ED25519_PK_LEN
#define AD_MAX 96
#define SIG_CACHE_SLOTS 4096 /* verified format 2 tokens remembered per context */

static const char wrap_label[] = "keyward signing-key wrap v1";

/* Changes made through any context of this process: every context reads
 * the keyring (or the revocations) again before its next use when these
 * move, so a change made through one server thread holds at once on all. */
static _Atomic uint64_t keyring_gen, revoked_gen;
static const char ad_label[] = "keyward signing key";

typedef struct ring_key {
    uint32_t kid;
    int retired;
    int ed25519;              /* else HMAC-SHA-256 */
    kw_secret *pads;          /* HMAC: the key's pad states (kwi_hmac_key_new) */
    unsigned char pk[PK_LEN]; /* Ed25519: the public key */
} ring_key;

struct kwi_keyring {
    ring_key *k;
    size_t n;
};

static void ring_free(struct kwi_keyring *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        kw_secret_free(r->k[i].pads);
    free(r->k);
    free(r);
}

void kwi_keyring_free(kw_ctx *ctx)
{
    ring_free(ctx->keyring);
    ctx->keyring = NULL;
    free(ctx->revoked);
    ctx->revoked = NULL;
    ctx->nrevoked = 0;
    ctx->revoked_upto = 0;
    free(ctx->sig_cache);
    ctx->sig_cache = NULL;
}

/* ---- sealing --------------------------------------------------------------- */

/* The associated data: what a sealed secret belongs to (kid, kind, and an
 * Ed25519 key's public key), so that a sealed blob moved to another row,
 * or a public key swapped in the database, does not open. */
static size_t ad_of(unsigned char ad[static AD_MAX], const kwi_signing_key_row *row)
{
    size_t n = 0, kl = strlen(row->kind);
    uint32_t kid = row->kid;

    memcpy(ad, ad_label, sizeof(ad_label)); /* with its NUL */
    n += sizeof(ad_label);
    memcpy(ad + n, row->kind, kl + 1);
    n += kl + 1;
    ad[n++] = (unsigned char)(kid >> 24);
    ad[n++] = (unsigned char)(kid >> 16);
    ad[n++] = (unsigned char)(kid >> 8);
    ad[n++] = (unsigned char)kid;
    if (row->has_public_key) {
        memcpy(ad + n, row->public_key, PK_LEN);
        n += PK_LEN;
    }
    return n;
}

static void wrap_key(unsigned char out[static 32], const kw_ctx *ctx)
{
    kwi_hmac(out, ctx->pepper, wrap_label, sizeof(wrap_label) - 1);
}

/* Seal a secret of len bytes (0: nothing, for a key known only by its
 * public key: the blob then only vouches for that public key). */
static void seal(const kw_ctx *ctx, kwi_signing_key_row *row, const unsigned char *secret,
                 size_t len)
{
    unsigned char wk[32], ad[AD_MAX];
    size_t adlen = ad_of(ad, row);
    unsigned long long clen;

    wrap_key(wk, ctx);
    randombytes_buf(row->sealed, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(row->sealed + NONCE_LEN, &clen, secret, len, ad,
                                               adlen, NULL, row->sealed, wk);
    row->sealed_len = NONCE_LEN + (size_t)clen;
    sodium_memzero(wk, sizeof(wk));
}

/* Does this row hold a secret (not just an Ed25519 public key)? */
static int has_secret(const kwi_signing_key_row *row)
{
    return row->sealed_len == SEAL_LEN + SECRET_LEN;
}

/* Open a row's sealed secret into *out; for a key known only by its public
 * key, check the seal on it and set *out to NULL. */
static kw_rc unseal(kw_ctx *ctx, const kwi_signing_key_row *row, kw_secret **out)
{
    unsigned char wk[32], ad[AD_MAX], none[1];
    size_t adlen = ad_of(ad, row);
    unsigned long long mlen;
    kw_secret *s = NULL;
    kw_rc rc;
    int bad, public_only = row->sealed_len == SEAL_LEN && row->has_public_key;

    *out = NULL;
    if (!has_secret(row) && !public_only) {
        kwi_seterr(ctx, "signing key %08x: its sealed secret is damaged", (unsigned)row->kid);
        return KW_ERR_STORAGE;
    }
    if (!public_only && (rc = kw_secret_new(&s, SECRET_LEN)) != KW_OK)
        return rc;
    wrap_key(wk, ctx);
    bad = crypto_aead_xchacha20poly1305_ietf_decrypt(
        s ? kw_secret_data(s) : none, &mlen, NULL, row->sealed + NONCE_LEN,
        row->sealed_len - NONCE_LEN, ad, adlen, row->sealed, wk);
    sodium_memzero(wk, sizeof(wk));
    if (bad || mlen != (public_only ? 0 : SECRET_LEN)) {
        kw_secret_free(s);
        kwi_seterr(ctx, "signing key %08x does not open: altered, or sealed under another pepper",
                   (unsigned)row->kid);
        return KW_ERR_PEPPER_MISMATCH;
    }
    *out = s;
    return KW_OK;
}

/* ---- the keyring in memory ----------------------------------------------- */

static void rows_free(kwi_signing_key_row *rows, size_t n)
{
    if (rows != NULL)
        sodium_memzero(rows, n * sizeof(*rows));
    free(rows);
}

/* One signing key as a verifier keeps it: KW_ERR_NOT_FOUND for a kind
 * this version does not know. */
static kw_rc ring_key_load(kw_ctx *ctx, const kwi_signing_key_row *row, ring_key *k)
{
    unsigned char pk[PK_LEN], sk[crypto_sign_SECRETKEYBYTES];
    kw_secret *secret = NULL;
    kw_rc rc;

    k->kid = row->kid;
    if ((k->retired = strcmp(row->state, "retired") == 0))
        return KW_OK;
    k->ed25519 = strcmp(row->kind, KIND_ED25519) == 0;
    if (!k->ed25519 && strcmp(row->kind, KIND_HMAC) != 0)
        return KW_ERR_NOT_FOUND;
    if (k->ed25519 && !row->has_public_key) {
        kwi_seterr(ctx, "signing key %08x: its public key is missing", (unsigned)row->kid);
        return KW_ERR_STORAGE;
    }
    if ((rc = unseal(ctx, row, &secret)) != KW_OK)
        return rc;
    if (!k->ed25519) {
        rc = kwi_hmac_key_new(&k->pads, secret);
    } else if (secret != NULL) { /* the public key must be the secret's own */
        crypto_sign_seed_keypair(pk, sk, kw_secret_cdata(secret));
        sodium_memzero(sk, sizeof(sk));
        if (sodium_memcmp(pk, row->public_key, PK_LEN) != 0) {
            kwi_seterr(ctx, "signing key %08x: its public key is not its secret's",
                       (unsigned)row->kid);
            rc = KW_ERR_PEPPER_MISMATCH;
        }
    }
    memcpy(k->pk, row->public_key, PK_LEN);
    kw_secret_free(secret);
    return rc;
}

/* Read the keyring again; a key that does not open fails the whole read
 * (a verifier must not quietly lose keys). */
static kw_rc ring_load(kw_ctx *ctx)
{
    uint64_t gen =
        atomic_load(&keyring_gen); /* before the read: a change after it is seen next time */
    kwi_signing_key_row *rows;
    struct kwi_keyring *r;
    size_t n;
    kw_rc rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_list(ctx->store, &rows, &n));

    if (rc != KW_OK)
        return rc;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->k = calloc(n ? n : 1, sizeof(*r->k))) == NULL) {
        free(r);
        rows_free(rows, n);
        return KW_ERR_NOMEM;
    }
    for (size_t i = 0; i < n && rc == KW_OK; i++) {
        rc = ring_key_load(ctx, &rows[i], &r->k[r->n]);
        if (rc == KW_OK)
            r->n++;
        else if (rc == KW_ERR_NOT_FOUND)
            rc = KW_OK; /* a kind this version does not verify */
    }
    rows_free(rows, n);
    if (rc != KW_OK) {
        ring_free(r);
        return rc;
    }
    ring_free(ctx->keyring);
    ctx->keyring = r;
    ctx->keyring_ms = kwi_now_ms();
    ctx->keyring_gen = gen;
    return KW_OK;
}

/* Signing key kid, if it may verify: KW_ERR_NOT_FOUND if it is unknown
 * or retired. */
static kw_rc ring_key_of(kw_ctx *ctx, uint32_t kid, const ring_key **out)
{
    int64_t now = kwi_now_ms(), age = now - ctx->keyring_ms;
    kw_rc rc;

    if (ctx->keyring_gen != atomic_load(&keyring_gen))
        age = REFRESH_MS; /* changed in this process since it was read */
    for (int pass = 0; pass < 2; pass++) {
        if (ctx->keyring == NULL || age >= REFRESH_MS || age < 0 ||
            (pass == 1 && age >= UNKNOWN_KID_MS)) {
            if ((rc = ring_load(ctx)) != KW_OK)
                return rc;
            age = 0;
        }
        for (size_t i = 0; i < ctx->keyring->n; i++)
            if (ctx->keyring->k[i].kid == kid) {
                if (ctx->keyring->k[i].retired)
                    return KW_ERR_NOT_FOUND;
                *out = &ctx->keyring->k[i];
                return KW_OK;
            }
        if (age == 0)
            break; /* just read: it is not there */
    }
    return KW_ERR_NOT_FOUND;
}

/* ---- revocations ------------------------------------------------------------ */

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, KW_ID_LEN + 1);
}

/* Read the ids revoked since the last read and merge them in: a read
 * that finds nothing new costs one indexed query, however many ids are
 * revoked. */
static kw_rc revoked_load(kw_ctx *ctx)
{
    uint64_t gen = atomic_load(&revoked_gen);
    char(*ids)[KW_ID_LEN + 1], (*merged)[KW_ID_LEN + 1];
    size_t n, i = 0, j = 0, k = 0;
    int64_t last;
    kw_rc rc = kwi_store_rc(
        ctx, ctx->store->ops->token_revoked(ctx->store, ctx->revoked_upto, &ids, &n, &last));

    if (rc != KW_OK)
        return rc;
    if (n > 1) /* revocation order, not memcmp's */
        qsort(ids, n, sizeof(*ids), id_cmp);
    if (n > 0 && ctx->nrevoked == 0) {
        free(ctx->revoked);
        ctx->revoked = ids;
        ctx->nrevoked = n;
    } else if (n > 0) {
        if ((merged = malloc((ctx->nrevoked + n) * sizeof(*merged))) == NULL) {
            free(ids);
            return KW_ERR_NOMEM;
        }
        while (i < ctx->nrevoked || j < n) /* ids are unique: no ties */
            memcpy(merged[k++],
                   j == n || (i < ctx->nrevoked && id_cmp(ctx->revoked[i], ids[j]) < 0)
                       ? ctx->revoked[i++]
                       : ids[j++],
                   KW_ID_LEN + 1);
        free(ctx->revoked);
        free(ids);
        ctx->revoked = merged;
        ctx->nrevoked = k;
    } else {
        free(ids);
    }
    ctx->revoked_upto = last;
    ctx->revoked_ms = kwi_now_ms();
    ctx->revoked_gen = gen;
    return KW_OK;
}

kw_rc kwi_token_revoked(kw_ctx *ctx, const char *id, int *yes)
{
    char key[KW_ID_LEN + 1] = {0};
    int64_t age = kwi_now_ms() - ctx->revoked_ms;
    kw_rc rc;

    if ((ctx->revoked == NULL && ctx->revoked_ms == 0) || age >= REFRESH_MS || age < 0 ||
        ctx->revoked_gen != atomic_load(&revoked_gen))
        if ((rc = revoked_load(ctx)) != KW_OK)
            return rc;
    memcpy(key, id, KW_ID_LEN);
    *yes = ctx->nrevoked > 0 &&
           bsearch(key, ctx->revoked, ctx->nrevoked, sizeof(*ctx->revoked), id_cmp) != NULL;
    return KW_OK;
}

/* ---- verification ------------------------------------------------------------ */

/* Is the address text `addr` inside the range "ADDR/BITS"? */
static int addr_in(const char *cidr, const char *addr)
{
    unsigned char net[16], a[16];
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(cidr, '/');
    int fam;
    unsigned bits;

    if (addr == NULL || slash == NULL || (size_t)(slash - cidr) > INET6_ADDRSTRLEN)
        return 0;
    memcpy(host, cidr, (size_t)(slash - cidr));
    host[slash - cidr] = '\0';
    fam = strchr(host, ':') ? AF_INET6 : AF_INET;
    bits = (unsigned)strtoul(slash + 1, NULL, 10);
    if (inet_pton(fam, host, net) != 1 || inet_pton(fam, addr, a) != 1)
        return 0; /* not the same family: not inside */
    for (unsigned i = 0; i < bits / 8; i++)
        if (a[i] != net[i])
            return 0;
    if (bits % 8) {
        unsigned char mask = (unsigned char)(0xffu << (8 - bits % 8));
        if ((a[bits / 8] & mask) != net[bits / 8])
            return 0;
    }
    return 1;
}

static char *meta_of(const kw_token_info *t)
{
    char kid[9];
    kwi_jw w;

    snprintf(kid, sizeof(kid), "%08x", (unsigned)t->kid);
    kwi_jw_init(&w, 96);
    kwi_jw_lit(&w, "{\"stateless\":true,\"root_id\":");
    kwi_jw_str(&w, t->id);
    kwi_jw_lit(&w, ",\"kid\":");
    kwi_jw_str(&w, kid);
    kwi_jw_lit(&w, "}");
    return kwi_jw_finish(&w);
}

kw_rc kwi_stateless_fill(kw_verify_result *out, const char *id, const char *prefix,
                         const char *owner, const char *const *scopes, size_t nscopes, char *meta,
                         int64_t created_at, int64_t not_before, int64_t expires_at)
{
    kw_key_record *r = &out->key;

    r->meta = meta;
    memcpy(r->id, id, KW_ID_LEN);
    r->id[KW_ID_LEN] = '\0';
    kwi_strlcpy(r->prefix, prefix, sizeof(r->prefix));
    r->owner = strdup(owner);
    r->name = strdup("");
    r->scopes = calloc(nscopes ? nscopes : 1, sizeof(char *));
    if (meta == NULL || r->owner == NULL || r->name == NULL || r->scopes == NULL)
        return KW_ERR_NOMEM;
    for (size_t i = 0; i < nscopes; i++) {
        if ((r->scopes[i] = strdup(scopes[i])) == NULL)
            return KW_ERR_NOMEM;
        r->nscopes++;
    }
    r->created_at = created_at;
    r->not_before = not_before;
    r->expires_at = expires_at;
    r->enabled = 1;
    r->credits = KW_CREDITS_UNLIMITED;
    out->found = 1;
    return KW_OK;
}

kw_verdict kwi_stateless_decide(kw_ctx *ctx, const kw_key_record *r, const char *const *ids,
                                size_t nids, const kw_verify_request *req, kw_rc *rc)
{
    int64_t now = kw_now();
    int revoked = 0;

    *rc = KW_OK;
    for (size_t i = 0; i < nids && *rc == KW_OK && !revoked; i++)
        *rc = kwi_token_revoked(ctx, ids[i], &revoked);
    if (*rc != KW_OK)
        return KW_NOT_FOUND;
    if (revoked)
        return KW_REVOKED;
    if (r->expires_at && now >= r->expires_at)
        return KW_EXPIRED;
    if (r->not_before && now < r->not_before)
        return KW_NOT_YET_VALID;
    if (!kw_scopes_cover((const char *const *)r->scopes, r->nscopes, req->scopes, req->nscopes))
        return KW_INSUFFICIENT_SCOPE;
    return KW_VALID;
}

/* A token's verdict: the checks of every stateless key, over its own id and
 * those of its id caveats, then its audience and address caveats. */
static kw_verdict decide(kw_ctx *ctx, const kw_token_info *t, const kw_key_record *r,
                         const kw_verify_request *req, kw_rc *rc)
{
    const char *ids[1 + KW_TOKEN_CAVEATS_MAX];
    size_t nids = 0;
    kw_verdict v;

    ids[nids++] = t->id;
    for (size_t i = 0; i < t->ncaveats; i++)
        if (t->caveats[i].type == KW_CAVEAT_ID)
            ids[nids++] = t->caveats[i].text;
    v = kwi_stateless_decide(ctx, r, ids, nids, req, rc);
    for (size_t i = 0; i < t->ncaveats && v == KW_VALID; i++) {
        const kw_token_caveat *c = &t->caveats[i];
        if (c->type == KW_CAVEAT_AUDIENCE &&
            (req->audience == NULL || strcmp(req->audience, c->text) != 0))
            v = KW_INSUFFICIENT_SCOPE;
        if (c->type == KW_CAVEAT_ADDRESS && !addr_in(c->text, req->client_addr))
            v = KW_INSUFFICIENT_SCOPE;
    }
    return v;
}

/* Format 2: are the token's signatures good under k? A context remembers
 * the tokens it has found good (by a hash of kid and all their bytes,
 * proof included), so a token used again costs a hash, not its signature
 * checks. Only k's own state is looked at again: it comes first. */
static int sigs_ok(kw_ctx *ctx, const kwi_token *t, const ring_key *k)
{
    unsigned char h[32], kid[4] = {k->kid >> 24, k->kid >> 16, k->kid >> 8, k->kid};
    crypto_generichash_state st;
    uint32_t slot;

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, kid, sizeof(kid));
    crypto_generichash_update(&st, (const unsigned char *)t->info->prefix,
                              strlen(t->info->prefix) + 1);
    crypto_generichash_update(&st, t->bytes, t->n);
    crypto_generichash_final(&st, h, sizeof(h));
    memcpy(&slot, h, sizeof(slot));
    slot %= SIG_CACHE_SLOTS;
    if (ctx->sig_cache != NULL && sodium_memcmp(ctx->sig_cache[slot], h, sizeof(h)) == 0)
        return 1;
    if (!kwi_token_sigs_ok(t, k->pk))
        return 0;
    if (ctx->sig_cache == NULL)
        ctx->sig_cache = calloc(SIG_CACHE_SLOTS, sizeof(*ctx->sig_cache));
    if (ctx->sig_cache != NULL)
        memcpy(ctx->sig_cache[slot], h, sizeof(h));
    return 1;
}

/* Is token t signed by k, in the format k's kind signs? The key decides
 * the algorithm: a format 1 token under an Ed25519 kid fails, and the
 * other way round. */
static int signed_by(kw_ctx *ctx, const kwi_token *t, const ring_key *k)
{
    if (t->info->version == KW_TOKEN_VERSION)
        return !k->ed25519 && kwi_token_tag_matches(t, k->pads);
    return k->ed25519 && sigs_ok(ctx, t, k);
}

kw_rc kwi_token_verify(kw_ctx *ctx, const char *key, size_t len, const kw_verify_request *req,
                       kw_verify_result *out)
{
    const ring_key *k;
    kwi_token t;
    kw_rc rc;

    out->code = KW_MALFORMED;
    if (!kwi_token_read(&t, key, len)) {
        kwi_token_done(&t);
        return KW_OK;
    }
    rc = ring_key_of(ctx, t.info->kid, &k);
    if (rc == KW_ERR_NOT_FOUND || (rc == KW_OK && !signed_by(ctx, &t, k))) {
        kwi_token_done(&t);
        out->code = KW_NOT_FOUND; /* like a wrong secret */
        return KW_OK;
    }
    if (rc == KW_OK)
        rc = kwi_stateless_fill(out, t.info->leaf_id, t.info->prefix, t.info->owner,
                                (const char *const *)t.info->eff_scopes, t.info->neff_scopes,
                                meta_of(t.info), t.info->issued_at, t.info->eff_not_before,
                                t.info->eff_expires_at);
    if (rc == KW_OK)
        out->code = decide(ctx, t.info, &out->key, req, &rc);
    kwi_token_done(&t);
    if (rc != KW_OK) {
        kw_key_record_clear(&out->key);
        out->found = 0;
        out->code = KW_MALFORMED;
    }
    return rc;
}

/* ---- changes: keyring, mint, revoke ----------------------------------------- */

/* An audit record of a keyring change: the kid, its kind (unless NULL),
 * and for a rotation the key it follows. */
static kw_rc audit_kid(kw_ctx *ctx, const kw_actor *actor, const char *action, uint32_t kid,
                       const char *kind, uint32_t previous)
{
    char target[9], detail[96];
    int n;

    snprintf(target, sizeof(target), "%08x", (unsigned)kid);
    n = snprintf(detail, sizeof(detail), "{\"kid\":\"%08x\"", (unsigned)kid);
    if (kind != NULL) /* one of ours: no escaping */
        n += snprintf(detail + n, sizeof(detail) - (size_t)n, ",\"kind\":\"%s\"", kind);
    if (strcmp(action, "signing-key.rotate") == 0)
        n += snprintf(detail + n, sizeof(detail) - (size_t)n, ",\"previous\":\"%08x\"",
                      (unsigned)previous);
    snprintf(detail + n, sizeof(detail) - (size_t)n, "}");
    return kwi_audit_append(ctx, actor, action, target, "ok", detail);
}

/* Add a signing key to the keyring (inside the caller's transaction):
 * with secret (SECRET_LEN bytes) in state "active", else (an Ed25519 key
 * known by its public key only) in state "verify". */
static kw_rc key_insert(kw_ctx *ctx, uint32_t kid, const char *kind, const unsigned char *secret,
                        const unsigned char *public_key)
{
    kwi_signing_key_row row = {.kid = kid};
    kw_rc rc;

    kwi_strlcpy(row.kind, kind, sizeof(row.kind));
    kwi_strlcpy(row.state, secret ? "active" : "verify", sizeof(row.state));
    row.created_at = kw_now();
    if ((row.has_public_key = public_key != NULL))
        memcpy(row.public_key, public_key, PK_LEN);
    seal(ctx, &row, secret, secret ? SECRET_LEN : 0);
    rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_insert(ctx->store, &row));
    sodium_memzero(&row.sealed, sizeof(row.sealed));
    if (rc != KW_OK)
        return rc;
    atomic_fetch_add(&keyring_gen, 1); /* every context reads it again (committed or not) */
    return KW_OK;
}

/* Make a new active signing key of kind (inside the caller's transaction). */
static kw_rc key_create(kw_ctx *ctx, const kwi_signing_key_row *rows, size_t n, const char *kind,
                        uint32_t *kid_out)
{
    unsigned char secret[SECRET_LEN], pk[PK_LEN], sk[crypto_sign_SECRETKEYBYTES];
    uint32_t kid;
    int ed = strcmp(kind, KIND_ED25519) == 0;
    kw_rc rc;

    do { /* a kid not taken yet, never 0 */
        kid = randombytes_random();
        for (size_t i = 0; i < n && kid != 0; i++)
            if (rows[i].kid == kid)
                kid = 0;
    } while (kid == 0);
    randombytes_buf(secret, sizeof(secret));
    if (ed) {
        crypto_sign_seed_keypair(pk, sk, secret);
        sodium_memzero(sk, sizeof(sk));
    }
    rc = key_insert(ctx, kid, kind, secret, ed ? pk : NULL);
    sodium_memzero(secret, sizeof(secret));
    if (rc == KW_OK)
        *kid_out = kid;
    return rc;
}

/* The key that mints: active, and holding its secret. */
static const kwi_signing_key_row *active_of(const kwi_signing_key_row *rows, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (strcmp(rows[i].state, "active") == 0 && has_secret(&rows[i]) &&
            (strcmp(rows[i].kind, KIND_HMAC) == 0 || strcmp(rows[i].kind, KIND_ED25519) == 0))
            return &rows[i];
    return NULL;
}

static char *mint_detail(const kw_token_params *p, const char *id, uint32_t kid)
{
    char k[9];
    kwi_jw w;

    snprintf(k, sizeof(k), "%08x", (unsigned)kid);
    kwi_jw_init(&w, 256);
    kwi_jw_lit(&w, "{\"id\":");
    kwi_jw_str(&w, id);
    kwi_jw_lit(&w, ",\"kid\":");
    kwi_jw_str(&w, k);
    kwi_jw_lit(&w, ",\"owner\":");
    kwi_jw_str(&w, p->owner);
    kwi_jw_lit(&w, ",\"scopes\":");
    kwi_jw_strv(&w, p->scopes, p->nscopes);
    kwi_jw_lit(&w, ",\"not_before\":");
    kwi_jw_time(&w, p->not_before);
    kwi_jw_lit(&w, ",\"expires_at\":");
    kwi_jw_time(&w, p->expires_at);
    kwi_jw_lit(&w, "}");
    return kwi_jw_finish(&w);
}

KW_API kw_rc kw_token_mint(kw_ctx *ctx, const kw_token_params *p, const kw_actor *actor,
                           kw_secret **token_out, char id_out[static KW_ID_LEN + 1])
{
    kwi_signing_key_row *rows = NULL, made;
    const kwi_signing_key_row *active;
    kw_secret *secret = NULL, *token = NULL;
    char id[KW_ID_LEN + 1], err[KWI_ERRMSG_MAX] = "", *detail = NULL;
    size_t n = 0;
    uint32_t kid;
    kw_rc rc;

    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    if ((rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_list(ctx->store, &rows, &n))) != KW_OK)
        goto out;
    if ((active = active_of(rows, n)) == NULL && n > 0) {
        /* a keyring set up by hand (keys retired, or only public keys
         * imported: a verifier) never gets a minting key by itself */
        kwi_seterr(ctx, "no signing key here can mint: the keyring has no active key that holds "
                        "its secret (keyward signing-key rotate starts one)");
        rc = KW_ERR_CONFLICT;
        goto out;
    }
    if (active == NULL) { /* the first token: the first key */
        if ((rc = key_create(ctx, rows, n, KIND_HMAC, &kid)) != KW_OK ||
            (rc = audit_kid(ctx, actor, "signing-key.create", kid, KIND_HMAC, 0)) != KW_OK)
            goto out;
        rows_free(rows, n);
        rows = NULL;
        if ((rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_list(ctx->store, &rows, &n))) !=
            KW_OK)
            goto out;
        if ((active = active_of(rows, n)) == NULL) {
            rc = KW_ERR_STORAGE;
            kwi_seterr(ctx, "the new signing key is not in the keyring");
            goto out;
        }
    }
    made = *active;
    if ((rc = unseal(ctx, &made, &secret)) != KW_OK)
        goto out;
    kw_base62_random(id, KW_ID_LEN);
    id[KW_ID_LEN] = '\0';
    if (strcmp(made.kind, KIND_ED25519) == 0)
        rc = kwi_token_sign_ed25519(&token, kw_secret_cdata(secret), NULL, made.kid, p, id,
                                    kw_now(), err, sizeof(err));
    else
        rc = kwi_token_sign(&token, kw_secret_cdata(secret), made.kid, p, id, kw_now(), err,
                            sizeof(err));
    if (rc != KW_OK) {
        if (rc == KW_ERR_INVALID)
            kwi_seterr(ctx, "%s", err);
        goto out;
    }
    if ((detail = mint_detail(p, id, made.kid)) == NULL) {
        rc = KW_ERR_NOMEM;
        goto out;
    }
    rc = kwi_audit_append(ctx, actor, "token.mint", id, "ok", detail);
out:
    rc = kwi_end(ctx, rc);
    rows_free(rows, n);
    sodium_memzero(&made, sizeof(made));
    kw_secret_free(secret);
    free(detail);
    if (rc != KW_OK) {
        kw_secret_free(token);
        return rc;
    }
    *token_out = token;
    memcpy(id_out, id, KW_ID_LEN + 1);
    return KW_OK;
}

KW_API kw_rc kw_token_revoke(kw_ctx *ctx, const char *id, const kw_actor *actor)
{
    kw_rc rc;

    if (id == NULL || !kw_key_id_valid(id)) {
        kwi_seterr(ctx, "a token id is 12 base62 characters");
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = ctx->store->ops->token_revoke(ctx->store, id, kw_now());
    if (rc == KW_ERR_CONFLICT)
        kwi_seterr(ctx, "token %s is already revoked", id);
    else if (rc != KW_OK)
        kwi_seterr(ctx, "%s", ctx->store->errmsg);
    if (rc == KW_OK)
        rc = kwi_audit_append(ctx, actor, "token.revoke", id, "ok", NULL);
    rc = kwi_end(ctx, rc);
    if (rc == KW_OK)
        atomic_fetch_add(&revoked_gen, 1); /* every context reads them again */
    return rc;
}

KW_API kw_rc kw_signing_key_rotate(kw_ctx *ctx, const char *kind, const kw_actor *actor,
                                   uint32_t *kid_out)
{
    kwi_signing_key_row *rows = NULL;
    const kwi_signing_key_row *active;
    uint32_t kid = 0, previous = 0;
    size_t n = 0;
    kw_rc rc;

    if (kind != NULL && strcmp(kind, KIND_HMAC) != 0 && strcmp(kind, KIND_ED25519) != 0) {
        kwi_seterr(ctx, "a signing key's kind is hmac-sha256 or ed25519");
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = ctx->store->ops->signing_key_list(ctx->store, &rows, &n);
    if (rc == KW_OK && (active = active_of(rows, n)) != NULL) {
        previous = active->kid;
        if (kind == NULL) /* the kind of the key it follows */
            kind = strcmp(active->kind, KIND_ED25519) == 0 ? KIND_ED25519 : KIND_HMAC;
        rc = ctx->store->ops->signing_key_state(ctx->store, previous, "verify", kw_now());
    }
    rc = kwi_store_rc(ctx, rc);
    if (kind == NULL) /* a first key */
        kind = KIND_HMAC;
    if (rc == KW_OK)
        rc = key_create(ctx, rows, n, kind, &kid);
    if (rc == KW_OK)
        rc = audit_kid(ctx, actor, "signing-key.rotate", kid, kind, previous);
    rc = kwi_end(ctx, rc);
    rows_free(rows, n);
    if (rc == KW_OK && kid_out != NULL)
        *kid_out = kid;
    return rc;
}

KW_API kw_rc kw_signing_key_retire(kw_ctx *ctx, uint32_t kid, const kw_actor *actor)
{
    kwi_signing_key_row *rows = NULL;
    size_t n = 0;
    int found = 0;
    kw_rc rc;

    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = ctx->store->ops->signing_key_list(ctx->store, &rows, &n);
    for (size_t i = 0; rc == KW_OK && i < n; i++)
        if (rows[i].kid == kid) {
            found = 1;
            if (strcmp(rows[i].state, "retired") == 0) {
                kwi_seterr(ctx, "signing key %08x is already retired", (unsigned)kid);
                rc = KW_ERR_CONFLICT;
            }
        }
    if (rc == KW_OK && !found) {
        kwi_seterr(ctx, "no signing key %08x", (unsigned)kid);
        rc = KW_ERR_NOT_FOUND;
    }
    if (rc == KW_OK)
        rc = kwi_store_rc(ctx,
                          ctx->store->ops->signing_key_state(ctx->store, kid, "retired", kw_now()));
    if (rc == KW_OK)
        rc = audit_kid(ctx, actor, "signing-key.retire", kid, NULL, 0);
    rc = kwi_end(ctx, rc);
    rows_free(rows, n);
    if (rc == KW_OK)
        atomic_fetch_add(&keyring_gen, 1); /* every context reads it again */
    return rc;
}

/* The keyring; with `checked`, every key that verifies is opened first
 * (its seal under this pepper, an Ed25519 key's public key its own), and
 * one that does not open fails the list as it fails verification. */
static kw_rc key_list(kw_ctx *ctx, int checked, kw_signing_key_info **out, size_t *n)
{
    kwi_signing_key_row *rows;
    kw_signing_key_info *info;
    size_t count;
    kw_rc rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_list(ctx->store, &rows, &count));

    if (rc != KW_OK)
        return rc;
    for (size_t i = 0; checked && i < count && rc == KW_OK; i++) {
        ring_key k = {0};
        if ((rc = ring_key_load(ctx, &rows[i], &k)) == KW_ERR_NOT_FOUND)
            rc = KW_OK; /* a kind this version does not know: never published */
        kw_secret_free(k.pads);
    }
    if (rc != KW_OK) {
        rows_free(rows, count);
        return rc;
    }
    if ((info = calloc(count ? count : 1, sizeof(*info))) == NULL) {
        rows_free(rows, count);
        return KW_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        info[i].kid = rows[i].kid;
        memcpy(info[i].kind, rows[i].kind, sizeof(info[i].kind));
        memcpy(info[i].state, rows[i].state, sizeof(info[i].state));
        info[i].created_at = rows[i].created_at;
        info[i].retired_at = rows[i].retired_at;
        info[i].public_only = !has_secret(&rows[i]);
        if ((info[i].has_public_key = rows[i].has_public_key))
            memcpy(info[i].public_key, rows[i].public_key, PK_LEN);
    }
    rows_free(rows, count);
    *out = info;
    *n = count;
    return KW_OK;
}

KW_API kw_rc kw_signing_key_list(kw_ctx *ctx, kw_signing_key_info **out, size_t *n)
{
    return key_list(ctx, 0, out, n);
}

kw_rc kwi_signing_key_list_checked(kw_ctx *ctx, kw_signing_key_info **out, size_t *n)
{
    return key_list(ctx, 1, out, n);
}

KW_API kw_rc kw_signing_key_add_public(kw_ctx *ctx, const kw_public_key *key, const kw_actor *actor,
                                       int *added)
{
    kwi_signing_key_row *rows = NULL;
    size_t n = 0;
    int have = 0;
    kw_rc rc;

    if (added != NULL)
        *added = 0;
    if (key->kid == 0 || !crypto_core_ed25519_is_valid_point(key->key)) {
        kwi_seterr(ctx,
                   "%08x: not an Ed25519 public key (a point of the curve, not of small "
                   "order; a kid other than 0)",
                   (unsigned)key->kid);
        return KW_ERR_INVALID;
    }
    if ((rc = kwi_begin(ctx)) != KW_OK)
        return rc;
    rc = kwi_store_rc(ctx, ctx->store->ops->signing_key_list(ctx->store, &rows, &n));
    for (size_t i = 0; rc == KW_OK && i < n; i++) {
        if (rows[i].kid != key->kid)
            continue;
        if (strcmp(rows[i].kind, KIND_ED25519) != 0 || !rows[i].has_public_key ||
            memcmp(rows[i].public_key, key->key, PK_LEN) != 0) {
            kwi_seterr(ctx, "signing key %08x here is another key", (unsigned)key->kid);
            rc = KW_ERR_CONFLICT;
        }
        have = 1; /* kept as it is: a retired key stays retired */
    }
    if (rc == KW_OK && !have &&
        (rc = key_insert(ctx, key->kid, KIND_ED25519, NULL, key->key)) == KW_OK)
        rc = audit_kid(ctx, actor, "signing-key.import", key->kid, KIND_ED25519, 0);
    rc = kwi_end(ctx, rc);
    rows_free(rows, n);
    if (rc == KW_OK && added != NULL)
        *added = !have;
    return rc;
}
