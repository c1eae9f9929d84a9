/* Unit tests of stateless keys through a database (lib/keyring.c): mint,
 * verify through kw_verify and the index, caveats at verification, the
 * keyring (rotation, retirement, sealing), revocation, the audit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

static kw_secret *mint(kwt_db *t, int64_t not_before, int64_t expires_at, char *id)
{
    kw_token_params p = {.owner = "acme", .scopes = granted, .nscopes = 2};
    char tmp[KW_ID_LEN + 1];
    kw_secret *tok = NULL;

    p.not_before = not_before;
    p.expires_at = expires_at;
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

/* The verdict for a token, with one required scope (or none), an
 * audience and a client address (either NULL). */
static kw_verdict check(kwt_db *t, const kw_secret *tok, const char *scope, const char *aud,
                        const char *addr)
{
    kw_verify_request req = {.scopes = &scope, .nscopes = scope ? 1 : 0, .cost = 1};
    kw_verify_result r;
    kw_verdict v;

    req.audience = aud;
    req.client_addr = addr;
    assert_int_equal(kw_verify(t->ctx, text(tok), kw_secret_len(tok), &req, &r), KW_OK);
    v = r.code;
    if (v == KW_MALFORMED || v == KW_NOT_FOUND)
        assert_false(r.found);
    else
        assert_true(r.found);
    kw_verify_result_clear(&r);
    return v;
}

static void test_mint_and_verify(void **state)
{
    kwt_db *t = *state;
    char id[KW_ID_LEN + 1];
    kw_secret *tok = mint(t, 0, kw_now() + 3600, id);
    kw_verify_result r;
    const char *need = "orders:read";
    kw_verify_request req = {.scopes = &need, .nscopes = 1, .cost = 1};
    char *js;

    assert_true(kw_token_shape(text(tok), kw_secret_len(tok)));
    assert_int_equal(kw_verify(t->ctx, text(tok), kw_secret_len(tok), &req, &r), KW_OK);
    assert_int_equal(r.code, KW_VALID);
    assert_string_equal(r.key.id, id);
    assert_string_equal(r.key.owner, "acme");
    assert_int_equal(r.key.nscopes, 2);
    assert_string_equal(r.key.prefix, KW_DEFAULT_PREFIX);
    assert_int_equal(r.remaining, KW_CREDITS_UNLIMITED);
    js = kw_verify_result_json(&r);
    assert_non_null(strstr(js, "\"stateless\":true"));
    assert_null(strstr(js, text(tok)));
    free(js);
    kw_verify_result_clear(&r);
    assert_int_equal(check(t, tok, "users:read", NULL, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, tok, "billing:read", NULL, NULL), KW_VALID);
    kw_secret_free(tok);
}

/* Signed with a key the keyring does not hold: like a wrong secret. And a
 * token's text with a character changed: MALFORMED (the check), never
 * VALID. */
static void test_unknown_key_and_damage(void **state)
{
    kwt_db *t = *state;
    static const unsigned char other[32] = "another key, not in the keyring";
    kw_token_params p = {.owner = "acme", .scopes = granted, .nscopes = 2};
    kw_secret *tok = mint(t, 0, 0, NULL), *forged, *bad;
    char err[200];

    assert_int_equal(
        kwi_token_sign(&forged, other, 0x12345678, &p, "Forged000001", kw_now(), err, sizeof(err)),
        KW_OK);
    assert_int_equal(check(t, forged, NULL, NULL, NULL), KW_NOT_FOUND);
    kw_secret_free(forged);
    assert_int_equal(kw_secret_from(&bad, text(tok), kw_secret_len(tok)), KW_OK);
    kw_secret_data(bad)[20] ^= 1;
    assert_int_equal(check(t, bad, NULL, NULL, NULL), KW_MALFORMED);
    kw_secret_free(bad);
    assert_int_equal(check(t, tok, NULL, NULL, NULL), KW_VALID);
    kw_secret_free(tok);
}

static void test_times(void **state)
{
    kwt_db *t = *state;
    int64_t now;
    kw_secret *later, *tok, *child;
    kw_token_restriction r = {0};

    kwt_align_to_second(); /* now + 1 is most of a second away */
    now = kw_now();
    later = mint(t, now + 3600, 0, NULL);
    tok = mint(t, 0, now + 3600, NULL);
    r.expires_at = now + 1;
    assert_int_equal(check(t, later, NULL, NULL, NULL), KW_NOT_YET_VALID);
    child = narrow(tok, &r, NULL);
    assert_int_equal(check(t, child, NULL, NULL, NULL), KW_VALID);
    kwt_sleep_until(now + 1);
    assert_int_equal(check(t, child, NULL, NULL, NULL), KW_EXPIRED);
    assert_int_equal(check(t, tok, NULL, NULL, NULL), KW_VALID); /* the parent lives on */
    kw_secret_free(child);
    kw_secret_free(later);
    kw_secret_free(tok);
}

static void test_caveats_at_verification(void **state)
{
    kwt_db *t = *state;
    static const char *const read_only[] = {"orders:read"};
    kw_token_restriction ra = {.audience = "api.example.com"};
    kw_token_restriction rn = {.address = "10.1.0.0/16"};
    kw_token_restriction r6 = {.address = "2001:db8::/32"};
    kw_token_restriction rs = {.scopes = read_only, .nscopes = 1};
    kw_secret *tok = mint(t, 0, 0, NULL), *a, *n, *n6, *s;

    a = narrow(tok, &ra, NULL);
    assert_int_equal(check(t, a, NULL, NULL, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, a, NULL, "other.example.com", NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, a, NULL, "api.example.com", NULL), KW_VALID);
    n = narrow(tok, &rn, NULL);
    assert_int_equal(check(t, n, NULL, NULL, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, n, NULL, NULL, "10.2.0.1"), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, n, NULL, NULL, "10.1.200.7"), KW_VALID);
    assert_int_equal(check(t, n, NULL, NULL, "2001:db8::1"), KW_INSUFFICIENT_SCOPE);
    n6 = narrow(tok, &r6, NULL);
    assert_int_equal(check(t, n6, NULL, NULL, "2001:db8:1::5"), KW_VALID);
    assert_int_equal(check(t, n6, NULL, NULL, "2001:db9::5"), KW_INSUFFICIENT_SCOPE);
    s = narrow(tok, &rs, NULL);
    assert_int_equal(check(t, s, "orders:read", NULL, NULL), KW_VALID);
    assert_int_equal(check(t, s, "orders:write", NULL, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, s, "billing:read", NULL, NULL), KW_INSUFFICIENT_SCOPE);
    assert_int_equal(check(t, tok, "orders:write", NULL, NULL), KW_VALID);
    kw_secret_free(a);
    kw_secret_free(n);
    kw_secret_free(n6);
    kw_secret_free(s);
    kw_secret_free(tok);
}

static void test_revocation(void **state)
{
    kwt_db *t = *state;
    kw_token_restriction rid = {.new_id = 1};
    char id[KW_ID_LEN + 1], child_id[KW_ID_LEN + 1];
    kw_secret *tok = mint(t, 0, 0, id), *child, *grandchild, *other = mint(t, 0, 0, NULL);
    kw_ctx *elsewhere;
    kw_open_opts oo = {0};

    child = narrow(tok, &rid, child_id);
    grandchild = narrow(child, &(kw_token_restriction){.audience = "x"}, NULL);
    assert_int_equal(kw_open(&elsewhere, t->url, t->pepper, &oo), KW_OK);
    {
        kw_verify_result r;
        assert_int_equal(kw_verify(elsewhere, text(child), kw_secret_len(child), NULL, &r), KW_OK);
        assert_int_equal(r.code, KW_VALID); /* read its revocations: none */
        kw_verify_result_clear(&r);
    }
    /* revoking the child: it and its descendants, not its parent */
    assert_int_equal(kw_token_revoke(t->ctx, child_id, &kwt_actor), KW_OK);
    assert_int_equal(check(t, child, NULL, NULL, NULL), KW_REVOKED);
    assert_int_equal(check(t, grandchild, NULL, "x", NULL), KW_REVOKED);
    assert_int_equal(check(t, tok, NULL, NULL, NULL), KW_VALID);
    assert_int_equal(kw_token_revoke(t->ctx, child_id, &kwt_actor), KW_ERR_CONFLICT);
    /* the root: everything derived from it */
    assert_int_equal(kw_token_revoke(t->ctx, id, &kwt_actor), KW_OK);
    assert_int_equal(check(t, tok, NULL, NULL, NULL), KW_REVOKED);
    assert_int_equal(check(t, other, NULL, NULL, NULL), KW_VALID);
    assert_int_equal(kw_token_revoke(t->ctx, "not an id", &kwt_actor), KW_ERR_INVALID);
    /* another context of this process sees it at once (one of another
     * process, within a second: it reads them again by then) */
    {
        kw_verify_result r;
        assert_int_equal(kw_verify(elsewhere, text(child), kw_secret_len(child), NULL, &r), KW_OK);
        assert_int_equal(r.code, KW_REVOKED);
        kw_verify_result_clear(&r);
    }
    kw_close(elsewhere);
    kw_secret_free(grandchild);
    kw_secret_free(child);
    kw_secret_free(other);
    kw_secret_free(tok);
}

static void test_rotate_and_retire(void **state)
{
    kwt_db *t = *state;
    kw_secret *old = mint(t, 0, 0, NULL), *child, *fresh;
    kw_token_info *oi, *fi;
    kw_signing_key_info *keys;
    uint32_t kid;
    size_t n;
    char err[200];

    child = narrow(old, &(kw_token_restriction){.audience = "a"}, NULL);
    assert_int_equal(kw_signing_key_rotate(t->ctx, NULL, &kwt_actor, &kid), KW_OK);
    fresh = mint(t, 0, 0, NULL);
    assert_int_equal(kw_token_parse(&oi, text(old), kw_secret_len(old), err, sizeof(err)), KW_OK);
    assert_int_equal(kw_token_parse(&fi, text(fresh), kw_secret_len(fresh), err, sizeof(err)),
                     KW_OK);
    assert_int_equal(fi->kid, kid);
    assert_int_not_equal(oi->kid, kid);
    assert_int_equal(check(t, old, NULL, NULL, NULL), KW_VALID);
    assert_int_equal(check(t, fresh, NULL, NULL, NULL), KW_VALID);

    assert_int_equal(kw_signing_key_list(t->ctx, &keys, &n), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(keys[0].kid, oi->kid);
    assert_string_equal(keys[0].state, "verify");
    assert_string_equal(keys[1].state, "active");
    assert_string_equal(keys[1].kind, "hmac-sha256");
    free(keys);

    assert_int_equal(kw_signing_key_retire(t->ctx, oi->kid, &kwt_actor), KW_OK);
    assert_int_equal(check(t, old, NULL, NULL, NULL), KW_NOT_FOUND);
    assert_int_equal(check(t, child, NULL, "a", NULL), KW_NOT_FOUND);
    assert_int_equal(check(t, fresh, NULL, NULL, NULL), KW_VALID);
    assert_int_equal(kw_signing_key_retire(t->ctx, oi->kid, &kwt_actor), KW_ERR_CONFLICT);
    assert_int_equal(kw_signing_key_retire(t->ctx, 0xdeadbeef, &kwt_actor), KW_ERR_NOT_FOUND);
    kw_token_info_free(oi);
    kw_token_info_free(fi);
    kw_secret_free(child);
    kw_secret_free(old);
    kw_secret_free(fresh);
}

/* The secret is sealed: not in the database in the clear, and a sealed
 * blob altered (or moved to another row) does not open: verification
 * fails closed with an error. */
static void test_sealed(void **state)
{
    kwt_db *t = *state;
    kw_secret *tok = mint(t, 0, 0, NULL);
    kw_verify_result r;
    sqlite3 *db;
    char path[400];

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "UPDATE signing_keys SET sealed = "
                     "substr(sealed, 1, 30) || CASE WHEN substr(sealed, 31, 1) = x'00' "
                     "THEN x'01' ELSE x'00' END || substr(sealed, 32)", /* always another byte */
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    kw_close(t->ctx); /* a fresh context: it must read the keyring again */
    assert_int_equal(kw_open(&t->ctx, t->url, t->pepper, &(kw_open_opts){0}), KW_OK);
    assert_int_equal(kw_verify(t->ctx, text(tok), kw_secret_len(tok), NULL, &r),
                     KW_ERR_PEPPER_MISMATCH);
    assert_int_not_equal(r.code, KW_VALID);
    kw_verify_result_clear(&r);
    kw_secret_free(tok);
}

/* Minting is audited with the id and claims, never the token; the
 * keyring's changes too; and the chain still verifies. */
static void test_audited(void **state)
{
    kwt_db *t = *state;
    char id[KW_ID_LEN + 1];
    kw_secret *tok = mint(t, 0, 0, id);
    kw_audit_filter f = {.limit = 100};
    kw_audit_record *recs;
    kw_audit_report rep;
    size_t n;
    int64_t next;
    int minted = 0, created = 0;

    assert_int_equal(kw_signing_key_rotate(t->ctx, NULL, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kw_token_revoke(t->ctx, id, &kwt_actor), KW_OK);
    assert_int_equal(kw_audit_list(t->ctx, &f, &recs, &n, &next), KW_OK);
    for (size_t i = 0; i < n; i++) {
        assert_null(strstr(recs[i].detail, text(tok)));
        if (strcmp(recs[i].action, "token.mint") == 0) {
            minted++;
            assert_string_equal(recs[i].target, id);
            assert_non_null(strstr(recs[i].detail, "\"owner\":\"acme\""));
        }
        created += strcmp(recs[i].action, "signing-key.create") == 0;
    }
    assert_int_equal(minted, 1);
    assert_int_equal(created, 1);
    assert_string_equal(recs[n - 1].action, "token.revoke");
    assert_string_equal(recs[n - 2].action, "signing-key.rotate");
    kw_audit_records_free(recs, n);
    assert_int_equal(kw_audit_verify(t->ctx, &rep), KW_OK);
    kw_secret_free(tok);
}

/* The server's path (kw_index_verify) gives the same verdicts. */
static void test_through_the_index(void **state)
{
    kwt_db *t = *state;
    kw_secret *tok = mint(t, 0, 0, NULL);
    kw_index *idx;
    kw_verify_result r;
    const char *need = "users:read";
    kw_verify_request req = {.scopes = &need, .nscopes = 1, .cost = 1};

    assert_int_equal(kw_index_open(&idx, t->ctx, 0), KW_OK);
    assert_int_equal(kw_index_verify(idx, t->ctx, text(tok), kw_secret_len(tok), NULL, &r), KW_OK);
    assert_int_equal(r.code, KW_VALID);
    kw_verify_result_clear(&r);
    assert_int_equal(kw_index_verify(idx, t->ctx, text(tok), kw_secret_len(tok), &req, &r), KW_OK);
    assert_int_equal(r.code, KW_INSUFFICIENT_SCOPE);
    kw_verify_result_clear(&r);
    kw_index_free(idx);
    kw_secret_free(tok);
}

/* Revocations are read incrementally (only those made since the last
 * read) and merged into the sorted list: after each of many revocations in
 * random order, every id revoked so far is found, and no other. */
static void test_revocations_merge(void **state)
{
    kwt_db *t = *state;
    char ids[40][KW_ID_LEN + 1], other[KW_ID_LEN + 1];
    int yes;

    for (int i = 0; i < 40; i++) {
        kw_base62_random(ids[i], KW_ID_LEN);
        ids[i][KW_ID_LEN] = '\0';
        assert_int_equal(kw_token_revoke(t->ctx, ids[i], &kwt_actor), KW_OK);
        for (int j = 0; j <= i; j++) {
            assert_int_equal(kwi_token_revoked(t->ctx, ids[j], &yes), KW_OK);
            assert_true(yes);
        }
        kw_base62_random(other, KW_ID_LEN);
        other[KW_ID_LEN] = '\0';
        assert_int_equal(kwi_token_revoked(t->ctx, other, &yes), KW_OK);
        assert_false(yes);
    }
    assert_int_equal(t->ctx->nrevoked, 40);
    for (size_t i = 1; i < t->ctx->nrevoked; i++)
        assert_true(memcmp(t->ctx->revoked[i - 1], t->ctx->revoked[i], KW_ID_LEN + 1) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mint_and_verify, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_and_damage, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_times, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_caveats_at_verification, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_revocation, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_and_retire, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_sealed, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_audited, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_through_the_index, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_revocations_merge, kwt_setup, kwt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
