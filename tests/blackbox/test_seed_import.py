"""Black-box: `keyward import seed` of the seed system's SQLAlchemy table."""

import datetime
import hashlib
import json
import os
import secrets
import sqlite3
import string
import unittest

from kwtest import ID_RE, KEY_RE, KwTestCase, make_key

SEED_SCHEMA = """CREATE TABLE api_keys (
    id VARCHAR NOT NULL PRIMARY KEY,
    key_hash VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    name VARCHAR,
    permissions JSON,
    created_at DATETIME,
    last_used_at DATETIME,
    expires_at DATETIME,
    is_active BOOLEAN
)"""

ALPHABET = string.ascii_letters + string.digits


def seed_api_key(n=32):
    """generate_api_key() of seed 001."""
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def seed_prefixed_key(prefix="sk_live"):
    """generate_prefixed_key() of seed 001."""
    return "%s_%s" % (prefix, seed_api_key(32))


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def sa_time(dt):
    """How SQLAlchemy's DateTime stores a value in SQLite."""
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_id():
    h = secrets.token_hex(16)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Seed:
    """A seed SQLite file and the keys behind its rows."""

    def __init__(self, path):
        self.path = path
        self.rows = []  # dicts, with "key"
        c = sqlite3.connect(path)
        c.execute(SEED_SCHEMA)
        c.execute("CREATE INDEX ix_api_keys_key_hash ON api_keys (key_hash)")
        c.execute("CREATE INDEX ix_api_keys_user_id ON api_keys (user_id)")
        c.commit()
        c.close()

    def add(self, key=None, user_id="user_1", name="key", permissions=("orders:read",),
            created_at="default", last_used_at=None, expires_at=None, is_active=True,
            key_hash=None, raw_permissions=None):
        key = key if key is not None else seed_prefixed_key()
        if created_at == "default":
            created_at = utcnow() - datetime.timedelta(days=100)
        row = {
            "id": seed_id(), "key": key,
            "key_hash": key_hash if key_hash is not None else sha256_hex(key),
            "user_id": user_id, "name": name,
            "permissions": raw_permissions if raw_permissions is not None else (
                None if permissions is None else json.dumps(list(permissions))),
            "created_at": created_at, "last_used_at": last_used_at,
            "expires_at": expires_at,
            "is_active": None if is_active is None else int(bool(is_active)),
        }
        c = sqlite3.connect(self.path)
        c.execute(
            "INSERT INTO api_keys (id, key_hash, user_id, name, permissions, "
            "created_at, last_used_at, expires_at, is_active) VALUES (?,?,?,?,?,?,?,?,?)",
            (row["id"], row["key_hash"], row["user_id"], row["name"],
             row["permissions"],
             sa_time(created_at) if isinstance(created_at, datetime.datetime) else created_at,
             sa_time(last_used_at) if isinstance(last_used_at, datetime.datetime) else last_used_at,
             sa_time(expires_at) if isinstance(expires_at, datetime.datetime) else expires_at,
             row["is_active"]))
        c.commit()
        c.close()
        self.rows.append(row)
        return row


class SeedImportTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.admin = self.init()
        self.seed = Seed(os.path.join(self.tmp, "seed.sqlite"))
        now = utcnow()
        s = self.seed
        self.active = s.add(user_id="user_42", name="production",
                            permissions=["orders:read", "billing:*"],
                            expires_at=now + datetime.timedelta(days=30),
                            last_used_at=now - datetime.timedelta(days=2))
        self.plain = s.add(key=seed_api_key(), user_id="user_7", name=None,
                           permissions=["reports:read"])
        self.noperm = s.add(user_id="user_8", permissions=None, is_active=None)
        self.inactive = s.add(user_id="user_9", is_active=False)
        self.expired = s.add(user_id="user_10",
                             expires_at=now - datetime.timedelta(days=1))
        self.test_key = s.add(key=seed_prefixed_key("sk_test"), user_id="user_11",
                              permissions=["*"], created_at=None)
        self.before = self.list_all()
        self.audit_before = self.audit()

    def imp(self, *args):
        return self.kw("import", "seed", "--from", self.seed.path, *args)

    def by_external(self):
        return {k["external_id"]: k for k in self.list_all() if k["external_id"]}

    def test_dry_run_imports_nothing(self):
        r = self.imp("--dry-run")
        self.expect(r, 0, "would import 6 of 6 rows (0 imported before, skipped)\n")
        o = json.loads(self.imp("--dry-run", "--json").out)
        self.assertEqual(o, {"rows": 6, "imported": 6, "skipped": 0, "dry_run": True})
        self.assertEqual(self.list_all(), self.before)
        self.assertEqual(self.audit(), self.audit_before)
        r = self.verify(self.active["key"])
        self.assertNotEqual(r.code, 0, r)
        self.assertNotEqual(r.out, "VALID\n")

    def test_import_and_verify(self):
        r = self.imp()
        self.expect(r, 0, "imported 6 of 6 rows (0 imported before, skipped)\n")
        self.assert_no_keys_in(r.out + r.err)
        keys = self.list_all()
        self.assertEqual(len(keys), 7)
        ext = self.by_external()
        self.assertEqual(sorted(ext), sorted("seed:" + row["id"] for row in self.seed.rows))
        for row in self.seed.rows:
            rec = ext["seed:" + row["id"]]
            self.assertRegex(rec["id"], ID_RE)
            self.assertEqual(rec["prefix"], "")
            self.assertEqual(rec["owner"], row["user_id"])
            self.assertEqual(rec["name"], row["name"] or "")
            self.assertEqual(rec["scopes"], json.loads(row["permissions"] or "[]"))
            self.assertIs(rec["legacy"], True)
            self.assertIsNone(rec["credits"])
            self.assertIsNone(rec["revoked_at"])
            self.assertIsNone(rec["ratelimit"])
            if row["created_at"] is not None:
                self.assertEqual(rec["created_at"], rfc3339(row["created_at"]))
            if row["expires_at"] is not None:
                self.assertEqual(rec["expires_at"], rfc3339(row["expires_at"]))
            else:
                self.assertIsNone(rec["expires_at"])
        self.assertEqual(ext["seed:" + self.active["id"]]["last_used_at"],
                         rfc3339(self.active["last_used_at"]))
        self.assertIs(ext["seed:" + self.inactive["id"]]["enabled"], False)
        self.assertEqual(ext["seed:" + self.inactive["id"]]["status"], "disabled")
        self.assertIs(ext["seed:" + self.noperm["id"]]["enabled"], True)
        self.assertEqual(ext["seed:" + self.expired["id"]]["status"], "expired")

        # The seed's keys verify with owner and permissions as scopes.
        for row in (self.active, self.plain, self.noperm, self.test_key):
            v = self.verify_json(row["key"])
            self.assertEqual(v["code"], "VALID", row)
            self.assertEqual(v["owner"], row["user_id"])
            self.assertEqual(v["scopes"], json.loads(row["permissions"] or "[]"))
            self.assertEqual(v["id"], ext["seed:" + row["id"]]["id"])
            self.assertIsNone(v["remaining"])
        v = self.verify_json(self.active["key"])
        self.assertEqual(v["expires_at"], rfc3339(self.active["expires_at"]))
        self.assert_code(self.active["key"], "VALID", "--scope", "orders:read")
        self.assert_code(self.active["key"], "VALID", "--scope", "billing:refund")
        self.assert_code(self.active["key"], "INSUFFICIENT_SCOPE", "--scope",
                         "orders:write")
        self.assert_code(self.noperm["key"], "INSUFFICIENT_SCOPE", "--scope",
                         "orders:read")
        self.assert_code(self.test_key["key"], "VALID", "--scope", "any:thing")
        self.assert_code(self.inactive["key"], "DISABLED")
        self.assert_code(self.expired["key"], "EXPIRED")
        # A key the seed never issued; and one with a character changed.
        self.assert_code(seed_prefixed_key(), "NOT_FOUND")
        self.assert_code(seed_api_key(), "NOT_FOUND")
        k = self.active["key"]
        self.assert_code(k[:-1] + ("a" if k[-1] != "a" else "b"), "NOT_FOUND")
        # A mistyped keyward key stays MALFORMED.
        head = make_key("kw_live", "A" * 12, "B" * 32)
        self.assert_code(head[:-1] + ("x" if head[-1] != "x" else "y"), "MALFORMED")
        # Second verification: still VALID, now through the peppered hash.
        for row in (self.active, self.plain, self.noperm, self.test_key):
            self.assert_code(row["key"], "VALID")
            self.assert_code(row["key"] + "\n", "VALID")
        ext = self.by_external()
        for row in (self.active, self.plain, self.noperm, self.test_key):
            self.assertIs(ext["seed:" + row["id"]]["legacy"], False, row)
        for row in (self.inactive, self.expired):
            self.assertIs(ext["seed:" + row["id"]]["legacy"], True, row)
        # Inactive and expired keys stay refused.
        self.assert_code(self.inactive["key"], "DISABLED")
        self.assert_code(self.expired["key"], "EXPIRED")

        # Audit: one key.import per row, one key.rehash per key used.
        recs = self.audit()
        imports = [r["target"] for r in recs if r["action"] == "key.import"]
        rehash = [r["target"] for r in recs if r["action"] == "key.rehash"]
        self.assertEqual(sorted(imports), sorted(k["id"] for k in ext.values()))
        self.assertEqual(sorted(rehash), sorted(
            ext["seed:" + row["id"]]["id"]
            for row in (self.active, self.plain, self.noperm, self.test_key)))
        self.ok("audit", "verify")
        # The keys themselves are nowhere.
        self.keys += [row["key"] for row in self.seed.rows]
        audit_out = self.ok("audit", "list", "--all", "--json").out
        self.assert_no_keys_in(audit_out, "audit list")
        self.assert_no_keys_in(self.ok("key", "list", "--all").out)
        data = self.db_bytes()
        for row in self.seed.rows:
            self.assertNotIn(row["key"].encode(), data)
        self.assert_no_keys_in_db()

    def test_rehash_drops_the_unkeyed_hash(self):
        """After the re-hash, a stolen db must not allow offline guessing
        against the plain SHA-256 (docs/seed-import.md)."""
        self.expect(self.imp(), 0)
        row = self.active
        digest = hashlib.sha256(row["key"].encode()).digest()
        self.assertIn(digest, self.db_bytes())  # the import kept it, for now
        self.assert_code(row["key"], "VALID")
        data = self.db_bytes()
        self.assertNotIn(digest, data)
        self.assertNotIn(row["key_hash"].encode(), data)

    def test_reimport_skips(self):
        self.expect(self.imp(), 0)
        after = self.list_all()
        n_audit = len(self.audit())
        r = self.imp()
        self.expect(r, 0, "imported 0 of 6 rows (6 imported before, skipped)\n")
        o = json.loads(self.expect(self.imp("--json"), 0).out)
        self.assertEqual(o, {"rows": 6, "imported": 0, "skipped": 6, "dry_run": False})
        self.assertEqual(self.list_all(), after)
        self.assertEqual(len(self.audit()), n_audit)
        # New seed rows since: only those come in.
        new = self.seed.add(user_id="user_99", permissions=["x:y"])
        o = json.loads(self.expect(self.imp("--json"), 0).out)
        self.assertEqual(o, {"rows": 7, "imported": 1, "skipped": 6, "dry_run": False})
        v = self.verify_json(new["key"])
        self.assertEqual((v["code"], v["owner"], v["scopes"]), ("VALID", "user_99", ["x:y"]))

    def test_import_json(self):
        r = self.imp("--json")
        self.expect(r, 0)
        self.assertEqual(json.loads(r.out),
                         {"rows": 6, "imported": 6, "skipped": 0, "dry_run": False})

    def test_revoke_update_rotate_imported(self):
        self.expect(self.imp(), 0)
        ext = self.by_external()
        id_plain = ext["seed:" + self.plain["id"]]["id"]
        id_active = ext["seed:" + self.active["id"]]["id"]
        id_inactive = ext["seed:" + self.inactive["id"]]["id"]
        self.ok("key", "revoke", id_plain)
        self.assert_code(self.plain["key"], "REVOKED")
        self.ok("key", "update", id_inactive, "--enable")
        self.assert_code(self.inactive["key"], "VALID")
        o = self.ok_json("key", "rotate", id_active, "--json")
        self.keys.append(o["key"])
        self.assertRegex(o["key"], KEY_RE)
        self.assertTrue(o["key"].startswith("kw_live_"))
        self.assertEqual(o["owner"], "user_42")
        self.assertEqual(o["scopes"], ["orders:read", "billing:*"])
        self.assert_code(o["key"], "VALID", "--scope", "orders:read")
        self.assert_code(self.active["key"], "VALID")  # grace period

    def test_table_shows_imported(self):
        self.expect(self.imp(), 0)
        ext = self.by_external()
        rid = ext["seed:" + self.active["id"]]["id"]
        r = self.ok("key", "show", rid)
        self.assertIn("prefix        (imported)\n", r.out)
        self.assertIn("imported as   seed:%s (legacy hash)\n" % self.active["id"], r.out)
        r = self.ok("key", "list", "--owner", "user_42")
        self.assertEqual(len(r.out.splitlines()), 2)
        self.assertTrue(r.out.splitlines()[1].startswith(rid + "  -  "), r)


class SeedImportErrorsTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()
        self.path = os.path.join(self.tmp, "seed.sqlite")
        self.before = self.list_all()
        self.audit_before = self.audit()

    def assert_nothing_imported(self):
        self.assertEqual(self.list_all(), self.before)
        self.assertEqual(self.audit(), self.audit_before)

    def bad_import(self, row_no, phrase=None):
        r = self.kw("import", "seed", "--from", self.path)
        self.expect(r, 1, "", ("row %d" % row_no, "nothing was imported"))
        if phrase:
            self.assertIn(phrase, r.err)
        r2 = self.kw("import", "seed", "--from", self.path, "--dry-run")
        self.expect(r2, 1, "", "row %d" % row_no)
        self.assert_nothing_imported()
        return r

    def test_bad_permission(self):
        s = Seed(self.path)
        good = [s.add(), s.add()]
        s.add(permissions=["orders:read", "Admin Access"])
        s.add()
        self.bad_import(3, "scope")
        for row in good:
            self.assertNotEqual(self.verify(row["key"]).out, "VALID\n")

    def test_bad_rows(self):
        cases = [
            ({"key_hash": "abc"}, "key_hash"),
            ({"key_hash": "z" * 64}, "key_hash"),
            ({"created_at": "yesterday"}, "date"),
            ({"expires_at": "2026-13-45 99:00:00"}, "date"),
            ({"raw_permissions": "not json"}, "permissions"),
            ({"raw_permissions": '{"orders": "read"}'}, "permissions"),
            ({"raw_permissions": "[1, 2]"}, "permission"),
            ({"user_id": "u" * 129}, "user_id"),
        ]
        for i, (kw, phrase) in enumerate(cases):
            with self.subTest(case=kw):
                path = os.path.join(self.tmp, "seed%d.sqlite" % i)
                s = Seed(path)
                s.add()
                s.add(**kw)
                self.path = path
                self.bad_import(2, phrase)

    def test_missing_file(self):
        missing = os.path.join(self.tmp, "nope", "seed.sqlite")
        missing2 = os.path.join(self.tmp, "absent.sqlite")
        for p in (missing, missing2):
            r = self.kw("import", "seed", "--from", p)
            self.assertNotEqual(r.code, 0, r)
            self.assertIn(p, r.err)
            self.assertIn("nothing was imported", r.err)
            self.assertFalse(os.path.exists(p))
        self.assert_nothing_imported()

    def test_no_api_keys_table(self):
        c = sqlite3.connect(self.path)
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        c.commit()
        c.close()
        r = self.kw("import", "seed", "--from", self.path)
        self.expect(r, 1, "", ("api_keys", "nothing was imported"))
        self.assert_nothing_imported()

    def test_not_sqlite(self):
        with open(self.path, "w") as f:
            f.write("id,key_hash\n1,abc\n" * 100)
        r = self.kw("import", "seed", "--from", self.path)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("nothing was imported", r.err)
        self.assert_nothing_imported()

    def test_empty_table(self):
        Seed(self.path)
        r = self.kw("import", "seed", "--from", self.path)
        self.expect(r, 0, "imported 0 of 0 rows (0 imported before, skipped)\n")
        self.assert_nothing_imported()

    def test_seed_file_unchanged(self):
        s = Seed(self.path)
        s.add()
        digest = self.file_digest(self.path)
        self.ok("import", "seed", "--from", self.path)
        self.assertEqual(self.file_digest(self.path), digest)
        self.assertFalse(os.path.exists(self.path + "-wal"))
        self.assertFalse(os.path.exists(self.path + "-journal"))

    def test_usage(self):
        self.expect(self.kw("import", "seed"), 2, "", "--from")
        self.expect(self.kw("import", "seed", self.path), 2, "", "unexpected argument")


if __name__ == "__main__":
    unittest.main()
