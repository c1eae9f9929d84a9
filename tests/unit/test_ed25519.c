/* Unit tests of format 2 tokens (Ed25519, docs/tokens.md): minting and
 * verifying under an Ed25519 signing key, attenuation, tampering, the key
 * deciding the format, the verification cache, and verifiers that hold
 * only public keys (the key set, its import, and that they cannot mint). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

static const char *const granted[] = {"orders:*", "billing:read"};

static const char *text(const kw_secret *s)
{
    return (const char *)kw_secret_cdata(s);
}

/* Start an Ed25519 signing key on t; its kid. */
static uint32_t ed_key(kwt_db *t)
{
    uint32_t kid;

    assert_int_equal(kw_signing_key_rotate(t->ctx, KW_SIGNING_ED25519, &kwt_actor, &kid), KW_OK);
    return kid;
}

static kw_secret *mint(kwt_db *t, char *id)
{
    kw_token_params p = {.owner = "acme", .scopes = granted, .nscopes = 2};
    char tmp[KW_ID_LEN + 1];
    kw_secret *tok = NULL;

    p.expires_at = kw_now() + 3600;
    if (kw_token_mint(t->ctx, &p, &kwt_actor, &tok, id ? id : tmp) != KW_OK)
        fail_msg("kw_token_mint: %s", kw_errmsg(t->ctx));
    return tok;
}

static kw_secret *narrow(const kw_secret *parent, const kw_token_restriction *r, char *id)
{
    kw_secret *child = NULL;
    char err[200] = "";

    if (kw_token_attenuate(&child, text(parent), kw_secret_len(parent), r, id, err, sizeof(err)) !=
        KW_OK)
        fail_msg("kw_token_attenuate: %s", err);
    return child;
}

static kw_verdict check_on(kw_ctx *ctx, const char *tok, size_t len, const char *scope,
                           const char *aud)
{
    kw_verify_request req = {.scopes = &scope, .nscopes = scope ? 1 : 0, .cost = 1};
    kw_verify_result r;
    kw_verdict v;

    req.audience = aud;
    assert_int_equal(kw_verify(ctx, tok, len, &req, &r), KW_OK);
    v = r.code;
    kw_verify_result_clear(&r);
    return v;
}

static kw_verdict check(kwt_db *t, const kw_secret *tok, const char *scope, const char *aud)
{
    return check_on(t->ctx, text(tok), kw_secret_len(tok), scope, aud);
}

static void test_mint_verify_attenuate(void **state)
{
    kwt_db *t = *state;
    uint32_t kid = ed_key(t);
    char id[KW_ID_LEN + 1], child_id[KW_ID_LEN + 1], err[200];
    kw_secret *tok = mint(t, id), *child, *grand, *wider = NULL;
    static const char *const read[] = {"orders:read"}, *const users[] = {"users:read"};
    kw_token_info *info;

    assert_int_equal(kw_token_parse(&info, text(tok), kw_secret_len(tok), err, sizeof(err)), KW_OK);
    assert_int_equal(info->version, KW_TOKEN_VERSION_ED25519);
    assert_int_equal(info->kid, kid);
    assert_string_equal(info->id, id);
    kw_token_info_free(info);
    assert_int_equal(check(t, tok, "orders:write", NULL), KW_VALID);
    assert_int_equal(check(t, tok, "users:read", NULL), KW_INSUFFICIENT_SCOPE);

    child =
        narrow(tok, &(kw_token_restriction){.scopes = read, .nscopes = 1, .audience = "api"}, NULL);
    assert_int_equal(check(t, child, "orders:read", "api"), KW_VALID);
    assert_int_equal(check(t, child, "orders:read", NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, child, "orders:write", "api"), KW_INSUFFICIENT_SCOPE);
    /* never broader: a scope the parent does not grant, a later expiry */
    assert_int_equal(kw_token_attenuate(&wider, text(child), kw_secret_len(child),
                                        &(kw_token_restriction){.scopes = users, .nscopes = 1},
                                        NULL, err, sizeof(err)),
                     KW_ERR_INVALID);
    assert_int_equal(kw_token_attenuate(&wider, text(child), kw_secret_len(child),
                                        &(kw_token_restriction){.expires_at = kw_now() + 7200},
                                        NULL, err, sizeof(err)),
                     KW_ERR_INVALID);
    assert_null(wider);

    grand = narrow(child, &(kw_token_restriction){.new_id = 1}, child_id);
    assert_int_equal(check(t, grand, "orders:read", "api"), KW_VALID);
    assert_int_equal(kw_token_revoke(t->ctx, child_id, &kwt_actor), KW_OK);
    assert_int_equal(check(t, grand, "orders:read", "api"), KW_REVOKED);
    assert_int_equal(check(t, child, "orders:read", "api"), KW_VALID);
    assert_int_equal(kw_token_revoke(t->ctx, id, &kwt_actor), KW_OK);
    assert_int_equal(check(t, tok, NULL, NULL), KW_REVOKED);
    assert_int_equal(check(t, child, "orders:read", "api"), KW_REVOKED);
    kw_secret_free(tok);
    kw_secret_free(child);
    kw_secret_free(grand);
}

/* The keyring's changes are audited with the kind of key. */
static void test_audited_with_kind(void **state)
{
    kwt_db *t = *state;
    kw_public_key k = {.kid = 0x0a0b0c0d};
    unsigned char sk[64], seed[32] = {3};
    kw_audit_filter f = {.limit = 100};
    kw_audit_record *recs;
    kw_audit_report rep;
    size_t n;
    int64_t next;
    int rotated = 0, imported = 0;

    ed_key(t);
    crypto_sign_seed_keypair(k.key, sk, seed);
    assert_int_equal(kw_signing_key_add_public(t->ctx, &k, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kw_audit_list(t->ctx, &f, &recs, &n, &next), KW_OK);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i].action, "signing-key.rotate") == 0) {
            rotated++;
            assert_non_null(strstr(recs[i].detail, "\"kind\":\"ed25519\""));
        }
        if (strcmp(recs[i].action, "signing-key.import") == 0) {
            imported++;
            assert_string_equal(recs[i].target, "0a0b0c0d");
        }
    }
    assert_int_equal(rotated, 1);
    assert_int_equal(imported, 1);
    kw_audit_records_free(recs, n);
    assert_int_equal(kw_audit_verify(t->ctx, &rep), KW_OK);
}

/* Text with one bit of its bytes changed, and a correct check again. */
static char *flipped(const kw_secret *tok, size_t byte, unsigned bit, size_t *len_out)
{
    const char *s = text(tok), *us = strrchr(s, '_');
    size_t plen = (size_t)(us - s), blen = kw_secret_len(tok) - plen - 1 - KW_CHECK_LEN, n;
    unsigned char b[KWI_TOKEN_BYTES_MAX];
    char *out = malloc(KW_TOKEN_MAX + 1), check[KW_CHECK_LEN + 1];
    size_t len;

    assert_non_null(out);
    assert_true(kwi_b62blk_decode(b, &n, us + 1, blen));
    if (byte >= n) {
        free(out);
        return NULL;
    }
    b[byte] ^= (unsigned char)(1u << bit);
    memcpy(out, s, plen + 1);
    kwi_b62blk_encode(out + plen + 1, b, n);
    len = plen + 1 + kwi_b62blk_len(n);
    kw_key_check(check, out, len);
    memcpy(out + len, check, KW_CHECK_LEN + 1);
    *len_out = len + KW_CHECK_LEN;
    return out;
}

/* Changing any byte (the claims, a caveat, a block key, a signature, the
 * proof) never gives a token that verifies. */
static void test_tampering(void **state)
{
    kwt_db *t = *state;
    kw_secret *tok, *child;
    size_t len, tried = 0;
    char *bad;

    ed_key(t);
    tok = mint(t, NULL);
    child = narrow(tok, &(kw_token_restriction){.audience = "api", .new_id = 1}, NULL);
    for (int which = 0; which < 2; which++) {
        const kw_secret *s = which ? child : tok;
        for (size_t i = 0; (bad = flipped(s, i, (unsigned)(i % 8), &len)) != NULL; i++) {
            assert_int_not_equal(check_on(t->ctx, bad, len, NULL, "api"), KW_VALID);
            free(bad);
            tried++;
        }
        assert_int_equal(check(t, s, NULL, "api"), KW_VALID); /* and the token itself does */
    }
    assert_true(tried > 400);
    kw_secret_free(tok);
    kw_secret_free(child);
}

/* A block cannot be taken off: the child without its last block (and with
 * the only proof it has) does not verify. */
static void test_block_removal(void **state)
{
    kwt_db *t = *state;
    kw_secret *tok, *child;
    kwi_token c;
    unsigned char b[KWI_TOKEN_BYTES_MAX];
    char *s = malloc(KW_TOKEN_MAX + 1), crc[KW_CHECK_LEN + 1];
    size_t n, len;

    assert_non_null(s);
    ed_key(t);
    tok = mint(t, NULL);
    child = narrow(tok, &(kw_token_restriction){.audience = "api"}, NULL);
    assert_true(kwi_token_read(&c, text(child), kw_secret_len(child)));
    assert_int_equal(c.lay.nkeys, 2);
    /* claims and block 0, then the child's proof */
    n = c.lay.key_at[0] + 96;
    memcpy(b, c.bytes, n);
    memcpy(b + n, c.bytes + c.lay.tag_at, 32);
    n += 32;
    kwi_token_done(&c);
    memcpy(s, "kw_live_", 8);
    kwi_b62blk_encode(s + 8, b, n);
    len = 8 + kwi_b62blk_len(n);
    kw_key_check(crc, s, len);
    memcpy(s + len, crc, KW_CHECK_LEN + 1);
    assert_int_equal(check_on(t->ctx, s, len + KW_CHECK_LEN, NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(check(t, child, NULL, "api"), KW_VALID);
    free(s);
    kw_secret_free(tok);
    kw_secret_free(child);
}

/* The key decides the algorithm: a format 1 token naming an Ed25519 kid,
 * or a format 2 token naming an HMAC kid, is refused like a wrong tag,
 * whatever it was signed with. */
static void test_key_decides(void **state)
{
    kwt_db *t = *state;
    kw_token_params p = {.owner = "acme", .scopes = granted, .nscopes = 2};
    kw_signing_key_info *keys;
    kw_secret *hmac_tok, *forged;
    uint32_t ed_kid, hmac_kid;
    unsigned char seed[32] = {1};
    char err[200];
    size_t n;

    hmac_tok = mint(t, NULL); /* the first key: HMAC */
    assert_int_equal(kw_signing_key_list(t->ctx, &keys, &n), KW_OK);
    hmac_kid = keys[0].kid;
    assert_string_equal(keys[0].kind, KW_SIGNING_HMAC);
    free(keys);
    ed_kid = ed_key(t);
    assert_int_equal(check(t, hmac_tok, NULL, NULL), KW_VALID);

    /* format 1 under the Ed25519 kid, keyed with its public key (all a
     * verifier of format 2 publishes) */
    assert_int_equal(kw_signing_key_list(t->ctx, &keys, &n), KW_OK);
    assert_true(keys[1].has_public_key);
    assert_int_equal(kwi_token_sign(&forged, keys[1].public_key, ed_kid, &p, "Forged000001",
                                    kw_now(), err, sizeof(err)),
                     KW_OK);
    free(keys);
    assert_int_equal(check(t, forged, NULL, NULL), KW_NOT_FOUND);
    kw_secret_free(forged);
    /* format 2 under the HMAC kid */
    assert_int_equal(kwi_token_sign_ed25519(&forged, seed, NULL, hmac_kid, &p, "Forged000002",
                                            kw_now(), err, sizeof(err)),
                     KW_OK);
    assert_int_equal(check(t, forged, NULL, NULL), KW_NOT_FOUND);
    kw_secret_free(forged);
    kw_secret_free(hmac_tok);
}

/* A token found good is remembered, but the kid's state, revocation and
 * scopes are checked on every use: a retired key's tokens stop at once. */
static void test_cache(void **state)
{
    kwt_db *t = *state;
    uint32_t kid = ed_key(t);
    char id[KW_ID_LEN + 1];
    kw_secret *tok = mint(t, id), *other = mint(t, NULL);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(check(t, tok, "orders:read", NULL), KW_VALID);
        assert_int_equal(check(t, tok, "users:read", NULL), KW_INSUFFICIENT_SCOPE);
    }
    assert_non_null(t->ctx->sig_cache);
    assert_int_equal(kw_token_revoke(t->ctx, id, &kwt_actor), KW_OK);
    assert_int_equal(check(t, tok, NULL, NULL), KW_REVOKED);
    assert_int_equal(check(t, other, NULL, NULL), KW_VALID);
    assert_int_equal(kw_signing_key_rotate(t->ctx, NULL, &kwt_actor, NULL), KW_OK);
    assert_int_equal(check(t, other, NULL, NULL), KW_VALID); /* its key still verifies */
    assert_int_equal(kw_signing_key_retire(t->ctx, kid, &kwt_actor), KW_OK);
    assert_int_equal(check(t, other, NULL, NULL), KW_NOT_FOUND);
    kw_secret_free(tok);
    kw_secret_free(other);
}

/* The key set of a, imported into b. */
static void import_keys(kwt_db *a, kwt_db *b, size_t expect_added)
{
    kw_public_key *set;
    char *doc, err[200];
    size_t n, added = 0;
    int one;

    assert_int_equal(kw_signing_keys_public_json(a->ctx, &doc), KW_OK);
    assert_int_equal(kw_public_keys_parse(doc, strlen(doc), &set, &n, err, sizeof(err)), KW_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(kw_signing_key_add_public(b->ctx, &set[i], &kwt_actor, &one), KW_OK);
        added += (size_t)one;
    }
    assert_int_equal(added, expect_added);
    free(set);
    free(doc);
}

static int sql_int(const kwt_db *t, const char *sql)
{
    char path[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    int v;

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const kwt_db *t, const char *sql)
{
    char path[400];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A verifier that imported the public keys verifies what they signed, and
 * cannot mint: it holds no secret at all. */
static void test_verifier_cannot_mint(void **state)
{
    kwt_db *a = *state, b;
    kw_token_params p = {.owner = "acme"};
    kw_signing_key_info *keys;
    kw_secret *hmac_tok, *tok, *child, *made = NULL;
    char id[KW_ID_LEN + 1];
    size_t n;

    kwt_db_open(&b);
    hmac_tok = mint(a, NULL); /* an HMAC key first: never published */
    ed_key(a);
    tok = mint(a, NULL);
    child = narrow(tok, &(kw_token_restriction){.audience = "b"}, NULL);
    import_keys(a, &b, 1);
    import_keys(a, &b, 0); /* again: nothing new */

    assert_int_equal(check(&b, tok, "orders:read", NULL), KW_VALID);
    assert_int_equal(check(&b, child, "orders:read", "b"), KW_VALID);
    assert_int_equal(check(&b, hmac_tok, NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(kw_token_mint(b.ctx, &p, &kwt_actor, &made, id), KW_ERR_CONFLICT);
    assert_null(made);
    assert_non_null(strstr(kw_errmsg(b.ctx), "can mint"));

    assert_int_equal(kw_signing_key_list(b.ctx, &keys, &n), KW_OK);
    assert_int_equal(n, 1);
    assert_true(keys[0].public_only);
    assert_string_equal(keys[0].state, "verify");
    assert_string_equal(keys[0].kind, KW_SIGNING_ED25519);
    free(keys);
    /* nothing sealed in b's keyring: only the pepper's seal on the public key */
    assert_int_equal(sql_int(&b, "SELECT max(length(sealed)) FROM signing_keys"),
                     crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
                         crypto_aead_xchacha20poly1305_ietf_ABYTES);

    /* a's key retired: it leaves the set; b still has it until it retires it */
    assert_int_equal(kw_signing_key_list(a->ctx, &keys, &n), KW_OK);
    assert_int_equal(kw_signing_key_retire(a->ctx, keys[1].kid, &kwt_actor), KW_OK);
    assert_int_equal(kw_signing_key_retire(b.ctx, keys[1].kid, &kwt_actor), KW_OK);
    free(keys);
    assert_int_equal(check(&b, tok, NULL, NULL), KW_NOT_FOUND);
    {
        char *doc;
        assert_int_equal(kw_signing_keys_public_json(a->ctx, &doc), KW_OK);
        assert_string_equal(doc, "{\"keys\":[]}");
        free(doc);
    }
    kw_secret_free(hmac_tok);
    kw_secret_free(tok);
    kw_secret_free(child);
    kwt_db_close(&b);
}

/* A public key written into the database by hand does not verify: its
 * seal is on the key that was imported (or made). */
static void test_public_key_swapped(void **state)
{
    kwt_db *a = *state, b;
    kw_secret *tok;
    kw_verify_result r;
    char sql[300], *doc = NULL;
    unsigned char pk[32], sk[64], seed[32] = {7};

    kwt_db_open(&b);
    ed_key(a);
    tok = mint(a, NULL);
    import_keys(a, &b, 1);
    assert_int_equal(check(&b, tok, NULL, NULL), KW_VALID);

    crypto_sign_seed_keypair(pk, sk, seed);
    snprintf(sql, sizeof(sql), "UPDATE signing_keys SET public_key = x'");
    for (int i = 0; i < 32; i++)
        snprintf(sql + strlen(sql), 3, "%02x", pk[i]);
    snprintf(sql + strlen(sql), 2, "'");
    for (int which = 0; which < 2; which++) {
        kwt_db *t = which ? a : &b;
        sql_exec(t, sql);
        kw_close(t->ctx); /* a fresh context reads the keyring again */
        assert_int_equal(kw_open(&t->ctx, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
        assert_int_equal(kw_verify(t->ctx, text(tok), kw_secret_len(tok), NULL, &r),
                         KW_ERR_PEPPER_MISMATCH);
        assert_int_not_equal(r.code, KW_VALID);
        kw_verify_result_clear(&r);
        /* and never published, so no verifier imports it */
        assert_int_equal(kw_signing_keys_public_json(t->ctx, &doc), KW_ERR_PEPPER_MISMATCH);
    }
    /* a key written in by hand, with no seal of this pepper: the same */
    sql_exec(&b, "DELETE FROM signing_keys");
    snprintf(sql, sizeof(sql),
             "INSERT INTO signing_keys (kid, kind, state, created_at, sealed, public_key) VALUES "
             "(287454020, 'ed25519', 'verify', 1, zeroblob(40), x'");
    for (int i = 0; i < 32; i++)
        snprintf(sql + strlen(sql), 3, "%02x", pk[i]);
    snprintf(sql + strlen(sql), 3, "')");
    sql_exec(&b, sql);
    kw_close(b.ctx);
    assert_int_equal(kw_open(&b.ctx, b.url, b.pepper, &(kw_open_opts){0}), KW_OK);
    assert_int_equal(kw_signing_keys_public_json(b.ctx, &doc), KW_ERR_PEPPER_MISMATCH);
    kw_secret_free(tok);
    kwt_db_close(&b);
}

/* Importing: a kid that names another key here is a conflict; a point
 * that is not a usable public key is refused. */
static void test_add_public_refuses(void **state)
{
    kwt_db *t = *state;
    kw_public_key k = {.kid = 0x01020304};
    unsigned char sk[64], seed[32] = {9};
    int added = 5;

    crypto_sign_seed_keypair(k.key, sk, seed);
    assert_int_equal(kw_signing_key_add_public(t->ctx, &k, &kwt_actor, &added), KW_OK);
    assert_int_equal(added, 1);
    seed[0]++; /* another key under the same kid */
    crypto_sign_seed_keypair(k.key, sk, seed);
    assert_int_equal(kw_signing_key_add_public(t->ctx, &k, &kwt_actor, &added), KW_ERR_CONFLICT);
    memset(k.key, 0, sizeof(k.key)); /* small order */
    k.kid = 0x05060708;
    assert_int_equal(kw_signing_key_add_public(t->ctx, &k, &kwt_actor, &added), KW_ERR_INVALID);
    crypto_sign_seed_keypair(k.key, sk, seed); /* a good key, but kid 0 */
    k.kid = 0;
    assert_int_equal(kw_signing_key_add_public(t->ctx, &k, &kwt_actor, &added), KW_ERR_INVALID);
}

static kw_rc parse(const char *doc, size_t *n, char *err, size_t err_len)
{
    kw_public_key *set = NULL;
    kw_rc rc = kw_public_keys_parse(doc, strlen(doc), &set, n, err, err_len);

    free(set);
    return rc;
}

static void test_key_set_parse(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"keys\":{}}",
        "{\"keys\":[{\"kid\":\"0A0B0C0D\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\"}]}",
        "{\"keys\":[{\"kid\":\"0a0b0c0d\",\"kty\":\"EC\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\"}]}",
        "{\"keys\":[{\"kid\":\"0a0b0c0d\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbh\"}]}", /* padding bits */
        "{\"keys\":[{\"kid\":\"0a0b0c0d\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMb\"}]}",
        "{\"keys\":[{\"kid\":\"0a0b0c0d\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\"},"
        "{\"kid\":\"0a0b0c0d\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\"}]}",
    };
    char err[200], *many;
    size_t n = 99, len;

    (void)state;
    assert_int_equal(kw_init(), KW_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(parse(bad[i], &n, err, sizeof(err)), KW_ERR_INVALID);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(parse("{\"keys\":[{\"kid\":\"0a0b0c0d\",\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                           "\"x\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\",\"use\":\"sig\","
                           "\"extra\":[1,2]}],\"other\":true}",
                           &n, err, sizeof(err)),
                     KW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(parse("{\"keys\":[]}", &n, err, sizeof(err)), KW_OK);
    assert_int_equal(n, 0);
    /* 257 keys: too many */
    len = 16 + 257 * 4;
    assert_non_null(many = malloc(len));
    snprintf(many, len, "{\"keys\":[");
    for (int i = 0; i < 257; i++)
        snprintf(many + strlen(many), len - strlen(many), "%s", i ? ",{}" : "{}");
    snprintf(many + strlen(many), len - strlen(many), "]}");
    assert_int_equal(parse(many, &n, err, sizeof(err)), KW_ERR_TOO_LARGE);
    free(many);
}

/* The set lists Ed25519 keys that verify, never HMAC or retired ones, and
 * each entry is a JWK whose x is the key. */
static void test_key_set_lists(void **state)
{
    kwt_db *t = *state;
    kw_signing_key_info *keys;
    kw_public_key *set;
    char *doc, err[200];
    size_t n, nset;
    uint32_t first, second;

    kw_secret_free(mint(t, NULL)); /* an HMAC key */
    first = ed_key(t);
    second = ed_key(t);
    assert_int_equal(kw_signing_keys_public_json(t->ctx, &doc), KW_OK);
    assert_non_null(strstr(doc, "\"kty\":\"OKP\",\"crv\":\"Ed25519\""));
    assert_non_null(strstr(doc, "\"state\":\"verify\""));
    assert_non_null(strstr(doc, "\"state\":\"active\""));
    assert_int_equal(kw_public_keys_parse(doc, strlen(doc), &set, &nset, err, sizeof(err)), KW_OK);
    free(doc);
    assert_int_equal(nset, 2);
    assert_int_equal(set[0].kid, first);
    assert_int_equal(set[1].kid, second);
    assert_int_equal(kw_signing_key_list(t->ctx, &keys, &n), KW_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(set[0].key, keys[1].public_key, 32);
    assert_memory_equal(set[1].key, keys[2].public_key, 32);
    assert_false(keys[0].has_public_key);
    free(keys);
    free(set);
    assert_int_equal(kw_signing_key_retire(t->ctx, first, &kwt_actor), KW_OK);
    assert_int_equal(kw_signing_keys_public_json(t->ctx, &doc), KW_OK);
    assert_int_equal(kw_public_keys_parse(doc, strlen(doc), &set, &nset, err, sizeof(err)), KW_OK);
    assert_int_equal(nset, 1);
    assert_int_equal(set[0].kid, second);
    free(doc);
    free(set);
}

/* A keyring whose active key was retired does not start a new one by
 * itself when asked to mint. */
static void test_no_silent_new_key(void **state)
{
    kwt_db *t = *state;
    kw_token_params p = {.owner = "acme"};
    kw_signing_key_info *keys;
    kw_secret *made = NULL;
    char id[KW_ID_LEN + 1];
    size_t n;
    uint32_t kid = ed_key(t);

    assert_int_equal(kw_signing_key_retire(t->ctx, kid, &kwt_actor), KW_OK);
    assert_int_equal(kw_token_mint(t->ctx, &p, &kwt_actor, &made, id), KW_ERR_CONFLICT);
    assert_int_equal(kw_signing_key_list(t->ctx, &keys, &n), KW_OK);
    assert_int_equal(n, 1);
    free(keys);
    assert_int_equal(kw_signing_key_rotate(t->ctx, NULL, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kw_token_mint(t->ctx, &p, &kwt_actor, &made, id), KW_OK);
    kw_secret_free(made);
    assert_int_equal(kw_signing_key_rotate(t->ctx, "rsa", &kwt_actor, NULL), KW_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mint_verify_attenuate, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_audited_with_kind, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tampering, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_block_removal, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_key_decides, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_cache, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_verifier_cannot_mint, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_public_key_swapped, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_add_public_refuses, kwt_setup, kwt_teardown),
        cmocka_unit_test(test_key_set_parse),
        cmocka_unit_test_setup_teardown(test_key_set_lists, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_no_silent_new_key, kwt_setup, kwt_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
