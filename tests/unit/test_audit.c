/*
 * The audit trail (lib/audit.c, SPEC.md "Audit"): one record per change,
 * never a key in it, a chain that finds edits, deletions, reordering,
 * forgeries and truncation, and changes refused when the record cannot be
 * written (fail closed). Tampering is done with the sqlite3 API directly on
 * the database file, as an attacker with file access would.
 */
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

#define CHAIN_LEN 5

static const kw_actor admin = {"AdminKey0001", "10.1.2.3"};

/* Run SQL on the database file behind the context's back. */
static void sql(kwt_db *t, const char *text)
{
    char path[300];
    sqlite3 *db = NULL;
    char *err = NULL;

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, text, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql \"%s\": %s", text, err ? err : "?");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Read / write the audit head in kw_meta directly. */
static size_t head_get(kwt_db *t, unsigned char *buf, size_t cap)
{
    char path[300];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t n;

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM kw_meta WHERE name = 'audit_head'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = (size_t)sqlite3_column_bytes(st, 0);
    assert_true(n <= cap);
    memcpy(buf, sqlite3_column_blob(st, 0), n);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return n;
}

static void head_put(kwt_db *t, const unsigned char *buf, size_t len)
{
    char path[300];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    snprintf(path, sizeof(path), "%s/k.db", t->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO kw_meta (name, value) VALUES ('audit_head', "
                                        "?1) ON CONFLICT (name) DO UPDATE SET value = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_blob(st, 1, buf, (int)len, SQLITE_TRANSIENT), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Every audit record, through kw_audit_list's paging. */
static kw_audit_record *all_records(kwt_db *t, size_t *count)
{
    kw_audit_record *all = NULL;
    kw_audit_filter f = {.limit = 3};
    size_t total = 0;

    for (;;) {
        kw_audit_record *page;
        size_t n;
        int64_t next = -1;
        assert_int_equal(kw_audit_list(t->ctx, &f, &page, &n, &next), KW_OK);
        all = realloc(all, (total + n + 1) * sizeof(*all));
        assert_non_null(all);
        memcpy(all + total, page, n * sizeof(*page));
        free(page); /* the strings moved to `all` */
        total += n;
        if (next == 0)
            break;
        assert_int_equal(n, f.limit);
        assert_true(next > f.after);
        f.after = next;
    }
    for (size_t i = 0; i < total; i++)
        assert_int_equal(all[i].seq, (int64_t)i + 1);
    *count = total;
    return all;
}

static size_t audit_count(kwt_db *t)
{
    size_t n;
    kw_audit_record *r = all_records(t, &n);

    kw_audit_records_free(r, n);
    return n;
}

/* The change just made wrote exactly one record, the last, with these values. */
static void expect_one(kwt_db *t, size_t before, const char *action, const char *target,
                       const kw_actor *actor)
{
    size_t n;
    kw_audit_record *r = all_records(t, &n);
    int64_t now = kw_now();

    assert_int_equal(n, before + 1);
    assert_string_equal(r[n - 1].action, action);
    assert_string_equal(r[n - 1].target, target);
    assert_string_equal(r[n - 1].actor, actor->id);
    assert_string_equal(r[n - 1].client, actor->client);
    assert_string_equal(r[n - 1].result, "ok");
    assert_true(r[n - 1].at >= now - 5 && r[n - 1].at <= now);
    kw_audit_records_free(r, n);
}

static kw_key_change change(unsigned fields)
{
    kw_key_change c;

    memset(&c, 0, sizeof(c));
    kw_key_params_init(&c.p);
    c.fields = fields;
    return c;
}

static void assert_chain_ok(kwt_db *t, int64_t records)
{
    kw_audit_report rep;
    kw_rc rc = kw_audit_verify(t->ctx, &rep);

    if (rc != KW_OK)
        fail_msg("audit verify: %s at %lld: %s", kw_strerror(rc), (long long)rep.bad_seq,
                 rep.reason);
    assert_int_equal(rep.checked, records);
    assert_int_equal(rep.bad_seq, 0);
}

static void assert_tampered(kwt_db *t, int64_t bad_seq)
{
    kw_audit_report rep;

    assert_int_equal(kw_audit_verify(t->ctx, &rep), KW_ERR_TAMPERED);
    assert_int_equal(rep.bad_seq, bad_seq);
    assert_true(rep.reason[0] != '\0');
}

/* ---- one record per change ------------------------------------------------ */

static void test_every_change_one_record(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec, fresh;
    kw_key_change c;
    kw_secret *key, *nk = NULL;
    size_t n;

    assert_int_equal(audit_count(t), 0);
    assert_chain_ok(t, 0);

    n = audit_count(t);
    key = kwt_key(t, NULL, &rec);
    expect_one(t, n, "key.create", rec.id, &kwt_actor);

    n = audit_count(t);
    c = change(KW_CHANGE_NAME | KW_CHANGE_SCOPES);
    c.p.name = "renamed";
    c.p.scopes = (const char *const[]){"a:b"};
    c.p.nscopes = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    expect_one(t, n, "key.update", rec.id, &admin);

    n = audit_count(t);
    c = change(KW_CHANGE_ENABLED);
    c.enabled = 0;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    expect_one(t, n, "key.disable", rec.id, &admin);

    n = audit_count(t);
    c.enabled = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    expect_one(t, n, "key.enable", rec.id, &admin);

    n = audit_count(t);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 60, &admin, &nk, &fresh), KW_OK);
    expect_one(t, n, "key.rotate", rec.id, &admin);

    n = audit_count(t);
    assert_int_equal(kw_key_revoke(t->ctx, fresh.id, &kwt_actor, NULL), KW_OK);
    expect_one(t, n, "key.revoke", fresh.id, &kwt_actor);

    /* Verifications and refused changes write nothing. */
    n = audit_count(t);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(kwt_verify(t, nk, NULL, 0, NULL), KW_REVOKED);
    assert_int_equal(kw_key_revoke(t->ctx, fresh.id, &kwt_actor, NULL), KW_ERR_CONFLICT);
    c = change(KW_CHANGE_META);
    c.p.meta = "[]";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_ERR_INVALID);
    assert_int_equal(audit_count(t), n);

    /* A NULL actor is recorded as "unknown", not skipped. */
    c = change(KW_CHANGE_NAME);
    c.p.name = "x";
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, NULL, NULL), KW_OK);
    expect_one(t, n, "key.update", rec.id, &(kw_actor){"unknown", "unknown"});

    assert_chain_ok(t, (int64_t)n + 1);
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

static void test_list_filters(void **state)
{
    kwt_db *t = *state;
    kw_audit_filter f = {.action = "key.revoke"};
    kw_key_record a, b;
    kw_audit_record *r;
    size_t n;
    int64_t next;

    kw_secret_free(kwt_key(t, NULL, &a));
    kw_secret_free(kwt_key(t, NULL, &b));
    assert_int_equal(kw_key_revoke(t->ctx, b.id, &kwt_actor, NULL), KW_OK);
    assert_int_equal(kw_key_revoke(t->ctx, a.id, &kwt_actor, NULL), KW_OK);

    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(next, 0);
    assert_string_equal(r[0].target, b.id);
    assert_string_equal(r[1].target, a.id);
    kw_audit_records_free(r, n);

    f.action = NULL;
    f.target = a.id;
    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].seq, 1);
    assert_string_equal(r[0].action, "key.create");
    assert_int_equal(r[1].seq, 4);
    kw_audit_records_free(r, n);

    /* Paging exactly at the end: no next cursor. */
    f.target = NULL;
    f.limit = 2;
    f.after = 2;
    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(next, 0);
    kw_audit_records_free(r, n);
    f.after = 1;
    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(next, 3);
    kw_audit_records_free(r, n);

    f.limit = 1001;
    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_ERR_INVALID);
    f.limit = 10;
    f.after = -1;
    assert_int_equal(kw_audit_list(t->ctx, &f, &r, &n, &next), KW_ERR_INVALID);
    kw_key_record_clear(&a);
    kw_key_record_clear(&b);
}

/* Does any field (or the JSON) of any record contain `needle`? */
static void assert_nowhere(const kw_audit_record *r, size_t n, const char *needle)
{
    for (size_t i = 0; i < n; i++) {
        const char *fields[] = {r[i].actor,  r[i].action, r[i].target,
                                r[i].client, r[i].result, r[i].detail};
        char *js = kw_audit_record_json(&r[i]);
        assert_non_null(js);
        for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j++)
            if (strstr(fields[j], needle) != NULL)
                fail_msg("audit record %lld field %zu holds key material", (long long)r[i].seq, j);
        if (strstr(js, needle) != NULL)
            fail_msg("audit record %lld JSON holds key material", (long long)r[i].seq);
        free(js);
    }
}

static void key_parts_text(const kw_secret *key, char text[static KW_KEY_MAX + 1],
                           char secret[static KW_SECRET_LEN + 1])
{
    size_t n = kw_secret_len(key);

    memcpy(text, kw_secret_cdata(key), n);
    text[n] = '\0';
    memcpy(secret, text + n - KW_CHECK_LEN - KW_SECRET_LEN, KW_SECRET_LEN);
    secret[KW_SECRET_LEN] = '\0';
}

static void test_no_key_material(void **state)
{
    kwt_db *t = *state;
    kw_key_params p;
    kw_key_record rec, fresh;
    kw_key_change c;
    kw_secret *key, *nk = NULL;
    char text[2][KW_KEY_MAX + 1], secret[2][KW_SECRET_LEN + 1];
    kw_audit_record *r;
    size_t n;

    kw_key_params_init(&p);
    p.owner = "acme";
    p.scopes = (const char *const[]){"orders:*"};
    p.nscopes = 1;
    p.credits = 10;
    key = kwt_key(t, &p, &rec);
    c = change(KW_CHANGE_NAME | KW_CHANGE_META | KW_CHANGE_CREDITS);
    c.p.name = "n";
    c.p.meta = "{\"x\":1}";
    c.p.credits = 20;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    c = change(KW_CHANGE_ENABLED);
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    c.enabled = 1;
    assert_int_equal(kw_key_update(t->ctx, rec.id, &c, &admin, NULL), KW_OK);
    assert_int_equal(kw_key_rotate(t->ctx, rec.id, 60, &admin, &nk, &fresh), KW_OK);
    assert_int_equal(kw_key_revoke(t->ctx, fresh.id, &admin, NULL), KW_OK);
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &admin, NULL), KW_OK);

    key_parts_text(key, text[0], secret[0]);
    key_parts_text(nk, text[1], secret[1]);
    r = all_records(t, &n);
    assert_int_equal(n, 7);
    for (int k = 0; k < 2; k++) {
        assert_nowhere(r, n, text[k]);
        assert_nowhere(r, n, secret[k]);
        /* Not even half of the secret. */
        secret[k][KW_SECRET_LEN / 2] = '\0';
        assert_nowhere(r, n, secret[k]);
    }
    /* The ids are there: the trail names what changed. */
    assert_string_equal(r[0].target, rec.id);
    assert_non_null(strstr(r[4].detail, fresh.id));
    kw_audit_records_free(r, n);
    kw_key_record_clear(&fresh);
    kw_key_record_clear(&rec);
    kw_secret_free(nk);
    kw_secret_free(key);
}

/* ---- tamper evidence ------------------------------------------------------- */

/* CHAIN_LEN records (key.create); their key records are kept in ids. */
static void make_chain(kwt_db *t)
{
    for (int i = 0; i < CHAIN_LEN; i++)
        kw_secret_free(kwt_key(t, NULL, NULL));
    assert_chain_ok(t, CHAIN_LEN);
}

static void test_intact_after_many(void **state)
{
    kwt_db *t = *state;
    kw_audit_report rep;
    kw_ctx *again = NULL;

    /* More than one page of kw_audit_verify's internal reads (500). */
    for (int i = 0; i < 520; i++)
        kw_secret_free(kwt_key(t, NULL, NULL));
    assert_chain_ok(t, 520);
    /* A second context (the same pepper) agrees. */
    assert_int_equal(kw_open(&again, t->url, t->pepper, NULL), KW_OK);
    assert_int_equal(kw_audit_verify(again, &rep), KW_OK);
    assert_int_equal(rep.checked, 520);
    kw_close(again);
}

static void test_tamper_edit_each_field(void **state)
{
    kwt_db *t = *state;
    static const char *const edits[] = {
        "UPDATE audit SET at = at + 1 WHERE seq = 3",
        "UPDATE audit SET actor = 'someone-else' WHERE seq = 3",
        "UPDATE audit SET action = 'key.update' WHERE seq = 3",
        "UPDATE audit SET target = 'AAAAAAAAAAAA' WHERE seq = 3",
        "UPDATE audit SET client = '6.6.6.6' WHERE seq = 3",
        "UPDATE audit SET result = 'denied' WHERE seq = 3",
        "UPDATE audit SET detail = '{}' WHERE seq = 3",
        "UPDATE audit SET mac = randomblob(32) WHERE seq = 3",
    };

    make_chain(t);
    sql(t, "CREATE TABLE backup AS SELECT * FROM audit");
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        sql(t, edits[i]);
        assert_tampered(t, 3);
        /* Restored, the chain is whole again: the check is about content. */
        sql(t, "DELETE FROM audit WHERE seq = 3; INSERT INTO audit SELECT * FROM backup "
               "WHERE seq = 3");
        assert_chain_ok(t, CHAIN_LEN);
    }
}

/* A batch of creations (one transaction, the chain's head written once):
 * one record per key, chained like any others, and the head at the last;
 * an edit inside the batch, or losing its last record, is found. */
static void test_batch_chains(void **state)
{
    kwt_db *t = *state;
    enum { N = 5 };
    kw_key_record rec;

    kw_secret_free(kwt_key(t, NULL, &rec)); /* record 1, alone */
    kw_key_record_clear(&rec);
    kwt_keys_batch(t, N);
    assert_int_equal(audit_count(t), N + 1);
    assert_chain_ok(t, N + 1);
    kw_secret_free(kwt_key(t, NULL, &rec)); /* chained after the batch */
    kw_key_record_clear(&rec);
    assert_chain_ok(t, N + 2);

    sql(t, "UPDATE audit SET actor = 'mallory' WHERE seq = 3");
    assert_tampered(t, 3);
}

static void test_batch_last_record_lost(void **state)
{
    kwt_db *t = *state;
    enum { N = 4 };

    kwt_keys_batch(t, N);
    assert_chain_ok(t, N);
    sql(t, "DELETE FROM audit WHERE seq = 4");
    assert_tampered(t, 4);
}

static void test_tamper_delete_middle(void **state)
{
    kwt_db *t = *state;

    make_chain(t);
    sql(t, "DELETE FROM audit WHERE seq = 3");
    assert_tampered(t, 3);
}

static void test_tamper_delete_middle_renumbered(void **state)
{
    kwt_db *t = *state;

    /* Deleted and the later records renumbered to close the gap. */
    make_chain(t);
    sql(t, "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq = 4; "
           "UPDATE audit SET seq = seq - 1 WHERE seq = 5");
    assert_tampered(t, 3);
}

static void test_tamper_truncate(void **state)
{
    kwt_db *t = *state;

    make_chain(t);
    sql(t, "DELETE FROM audit WHERE seq = 5");
    assert_tampered(t, 5);
}

static void test_tamper_truncate_all(void **state)
{
    kwt_db *t = *state;

    make_chain(t);
    sql(t, "DELETE FROM audit");
    assert_tampered(t, 1);
}

static void test_tamper_wipe_all(void **state)
{
    kwt_db *t = *state;

    /* Every record and the head deleted: a database that holds keys (each
     * created with an audit record) but no trail at all was tampered with.
     * Found only if the head exists from `init` on (seq 0), so that a
     * missing head always means tampering. */
    make_chain(t);
    sql(t, "DELETE FROM audit; DELETE FROM kw_meta WHERE name = 'audit_head'");
    assert_tampered(t, 1);
}

static void test_tamper_swap(void **state)
{
    kwt_db *t = *state;

    make_chain(t);
    /* Records 2 and 3 trade places: each keeps its seq, takes the other's
     * content (with its MAC). */
    sql(t, "CREATE TEMP TABLE s AS SELECT * FROM audit WHERE seq IN (2, 3);"
           "UPDATE audit SET (at, actor, action, target, client, result, detail, mac) = "
           "(SELECT at, actor, action, target, client, result, detail, mac FROM s "
           " WHERE s.seq = 5 - audit.seq) WHERE seq IN (2, 3)");
    assert_tampered(t, 2);
}

static void test_tamper_insert_forged(void **state)
{
    kwt_db *t = *state;

    /* In the middle: later records moved up one, a forged record at 4. */
    make_chain(t);
    sql(t, "UPDATE audit SET seq = 6 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 4;"
           "INSERT INTO audit SELECT 4, at, actor, 'key.revoke', target, client, result, "
           "detail, mac FROM audit WHERE seq = 3");
    assert_tampered(t, 4);
}

static void test_tamper_append_forged(void **state)
{
    kwt_db *t = *state;

    /* At the end, with a copied MAC. */
    make_chain(t);
    sql(t, "INSERT INTO audit SELECT 6, at, actor, action, target, client, result, detail, "
           "mac FROM audit WHERE seq = 5");
    assert_tampered(t, 6);
}

static void test_tamper_head(void **state)
{
    kwt_db *t = *state;
    unsigned char head[128], bad[128];
    size_t n;

    make_chain(t);
    n = head_get(t, head, sizeof(head));
    assert_int_equal(n, 8 + 32 + 32);
    /* One bit of the head's own MAC, of the last record's MAC, of its seq. */
    for (size_t off = 0; off < n; off += 8) {
        memcpy(bad, head, n);
        bad[off == 0 ? 7 : off] ^= 1;
        head_put(t, bad, n);
        assert_tampered(t, CHAIN_LEN + 1);
    }
    /* Garbage of the right length. */
    memset(bad, 0, sizeof(bad));
    head_put(t, bad, n);
    assert_tampered(t, CHAIN_LEN + 1);
    /* Wrong length. */
    head_put(t, head, n - 1);
    assert_tampered(t, CHAIN_LEN + 1);
    /* Gone. */
    sql(t, "DELETE FROM kw_meta WHERE name = 'audit_head'");
    assert_tampered(t, CHAIN_LEN + 1);
    /* Restored. */
    head_put(t, head, n);
    assert_chain_ok(t, CHAIN_LEN);
}

static void test_tamper_head_and_tail(void **state)
{
    kwt_db *t = *state;
    unsigned char head[128];
    size_t n;

    /* The last record deleted and the head pointed back at seq 4 (but the
     * attacker cannot compute the head's MAC). */
    make_chain(t);
    n = head_get(t, head, sizeof(head));
    sql(t, "DELETE FROM audit WHERE seq = 5");
    head[7] = 4;
    head_put(t, head, n);
    assert_tampered(t, 5);
}

static void test_wrong_pepper_cannot_forge(void **state)
{
    kwt_db *t = *state;
    char url[300];
    kw_secret *other = NULL;
    kw_ctx *ctx2 = NULL;
    kw_key_params p;
    kw_secret *key = NULL;
    kw_open_opts opts = {.create = 1};

    /* A record appended by another keyward database (other pepper) and
     * spliced in is refused. */
    make_chain(t);
    snprintf(url, sizeof(url), "sqlite:%s/other.db", t->dir);
    assert_int_equal(kw_secret_new(&other, KW_PEPPER_LEN), KW_OK);
    memset(kw_secret_data(other), 0x17, KW_PEPPER_LEN);
    assert_int_equal(kw_open(&ctx2, url, other, &opts), KW_OK);
    kw_key_params_init(&p);
    for (int i = 0; i < CHAIN_LEN + 1; i++) {
        assert_int_equal(kw_key_create(ctx2, &p, &kwt_actor, &key, NULL), KW_OK);
        kw_secret_free(key);
    }
    kw_close(ctx2);
    kw_secret_free(other);
    {
        char q[700];
        snprintf(q, sizeof(q),
                 "ATTACH '%s/other.db' AS o; INSERT INTO audit SELECT * FROM o.audit "
                 "WHERE seq = 6; DETACH o",
                 t->dir);
        sql(t, q);
    }
    assert_tampered(t, 6);
}

/* ---- fail closed ----------------------------------------------------------- */

static void test_fail_closed(void **state)
{
    kwt_db *t = *state;
    kw_key_record rec, got;
    kw_key_params p;
    kw_key_change c;
    kw_secret *key, *nk = NULL;
    size_t nrec;
    kw_rc rc;

    make_chain(t);
    key = kwt_key(t, NULL, &rec);
    sql(t, "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'x'); END");

    kw_key_params_init(&p);
    p.owner = "never";
    nk = NULL;
    rc = kw_key_create(t->ctx, &p, &kwt_actor, &nk, NULL);
    assert_int_not_equal(rc, KW_OK);
    assert_null(nk);
    assert_true(kw_errmsg(t->ctx)[0] != '\0');

    rc = kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL);
    assert_int_not_equal(rc, KW_OK);

    c = change(KW_CHANGE_NAME | KW_CHANGE_CREDITS);
    c.p.name = "changed";
    c.p.credits = 1;
    assert_int_not_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    c = change(KW_CHANGE_ENABLED);
    assert_int_not_equal(kw_key_update(t->ctx, rec.id, &c, &kwt_actor, NULL), KW_OK);
    assert_int_not_equal(kw_key_rotate(t->ctx, rec.id, 60, &kwt_actor, &nk, NULL), KW_OK);
    assert_null(nk);

    /* The key table is as it was. */
    {
        kw_key_filter f = {.limit = 100};
        kw_key_record *recs;
        char next[KW_ID_LEN + 1];
        assert_int_equal(kw_key_list(t->ctx, &f, &recs, &nrec, next), KW_OK);
        assert_int_equal(nrec, CHAIN_LEN + 1);
        for (size_t i = 0; i < nrec; i++) {
            assert_string_not_equal(recs[i].owner, "never");
            assert_int_equal(recs[i].revoked_at, 0);
            assert_string_equal(recs[i].rotated_to, "");
        }
        kw_key_records_free(recs, nrec);
    }
    assert_int_equal(kw_key_get(t->ctx, rec.id, &got), KW_OK);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(got.enabled, 1);
    assert_string_equal(got.name, "");
    assert_int_equal(got.credits, KW_CREDITS_UNLIMITED);
    assert_int_equal(got.expires_at, 0);
    kw_key_record_clear(&got);
    assert_int_equal(kwt_verify(t, key, NULL, 0, NULL), KW_VALID);
    assert_int_equal(audit_count(t), CHAIN_LEN + 1);

    /* Once the trail can be written again, so can changes; the chain held. */
    sql(t, "DROP TRIGGER no_audit");
    assert_int_equal(kw_key_revoke(t->ctx, rec.id, &kwt_actor, NULL), KW_OK);
    assert_chain_ok(t, CHAIN_LEN + 2);
    kw_key_record_clear(&rec);
    kw_secret_free(key);
}

static void test_fail_closed_head(void **state)
{
    kwt_db *t = *state;
    kw_key_params p;
    kw_secret *key = NULL;

    /* The head update (not the record insert) fails: still nothing. */
    make_chain(t);
    sql(t, "CREATE TRIGGER no_head BEFORE UPDATE ON kw_meta BEGIN SELECT RAISE(ABORT, 'x'); "
           "END");
    kw_key_params_init(&p);
    assert_int_not_equal(kw_key_create(t->ctx, &p, &kwt_actor, &key, NULL), KW_OK);
    assert_null(key);
    assert_int_equal(audit_count(t), CHAIN_LEN);
    sql(t, "DROP TRIGGER no_head");
    assert_chain_ok(t, CHAIN_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_change_one_record, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_list_filters, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_no_key_material, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_intact_after_many, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_edit_each_field, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_batch_chains, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_batch_last_record_lost, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_middle, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_middle_renumbered, kwt_setup,
                                        kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_truncate, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_truncate_all, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_wipe_all, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_swap, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_insert_forged, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_append_forged, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_head, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_head_and_tail, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_pepper_cannot_forge, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_fail_closed, kwt_setup, kwt_teardown),
        cmocka_unit_test_setup_teardown(test_fail_closed_head, kwt_setup, kwt_teardown),
    };

    if (kw_init() != KW_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
