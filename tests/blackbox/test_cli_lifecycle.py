"""Black-box: a key's whole life through the real `keyward` binary."""

import calendar
import json
import os
import sqlite3
import stat
import time
import unittest

from kwtest import (ID_RE, KEY_RE, RECORD_FIELDS, TIME_RE, KwTestCase,
                    check_of, split_key)


def ts(s):
    """RFC 3339 'YYYY-MM-DDTHH:MM:SSZ' -> epoch seconds."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


LIST_HEADER = "%-12s  %-10s  %-16s  %-16s  %-8s  %-20s  %s\n" % (
    "ID", "PREFIX", "OWNER", "NAME", "STATUS", "EXPIRES", "SCOPES")
AUDIT_HEADER = "%-6s  %-20s  %-12s  %-12s  %-14s  %-6s  %s\n" % (
    "SEQ", "AT", "ACTION", "TARGET", "ACTOR", "RESULT", "CLIENT")


class InitTest(KwTestCase):
    def test_init_creates_db_pepper_and_admin_key(self):
        r = self.ok("init")
        lines = r.out.split("\n")
        self.assertEqual(lines[0], "initialised " + self.url, r)
        self.assertEqual(
            lines[1], "pepper      %s (mode 0600; back it up apart from the "
            "database)" % self.pepper_path, r)
        self.assertEqual(lines[2], "first admin key (scope *):", r)
        self.assertEqual(lines[3], "", r)
        key = lines[4]
        self.keys.append(key)
        self.assertRegex(key, KEY_RE)
        self.assertEqual(lines[5], "", r)
        self.assertEqual(lines[6], "id            " + split_key(key)[1], r)
        self.assertIn("owner         admin\n", r.out)
        self.assertIn("scopes        *\n", r.out)
        # The key is printed exactly once.
        self.assertEqual(r.out.count(key), 1)
        self.assertIn("shown once", r.err)
        self.assertNotIn(key, r.err)

        self.assertTrue(os.path.isfile(self.db))
        st = os.stat(self.pepper_path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        # The database (hashes, the audit trail) and its WAL: the owner's only.
        for path in (self.db, self.db + "-wal"):
            if os.path.exists(path):
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
        with open(self.pepper_path) as f:
            self.assertRegex(f.read(), r"^[0-9a-fA-F]{64}\n?$")

        o = self.verify_json(key)
        self.assertEqual(o["code"], "VALID")
        self.assertEqual(o["owner"], "admin")
        self.assertEqual(o["scopes"], ["*"])
        self.assert_code(key, "VALID", "--scope", "anything:at:all")

    def test_init_twice_refused_and_db_unchanged(self):
        self.init()
        db = self.file_digest(self.db)
        pep = self.file_digest(self.pepper_path)
        r = self.kw("init")
        self.expect(r, 1, "", "already exists")
        self.assertEqual(self.file_digest(self.db), db)
        self.assertEqual(self.file_digest(self.pepper_path), pep)
        self.assertEqual(len(self.list_all()), 1)
        self.ok("audit", "verify")

    def test_init_json(self):
        o = self.ok_json("init", "--json")
        self.keys.append(o["key"])
        self.assertRegex(o["key"], KEY_RE)
        self.assertEqual(o["id"], split_key(o["key"])[1])
        for f in RECORD_FIELDS:
            self.assertIn(f, o)
        self.assertEqual(o["scopes"], ["*"])
        self.assert_code(o["key"], "VALID")

    def test_init_uses_keyward_pepper_without_file(self):
        pep = "0123456789abcdef" * 4
        r = self.kw("init", env={"KEYWARD_PEPPER": pep})
        self.expect(r, 0)
        self.assertIn("from KEYWARD_PEPPER", r.out)
        self.assertFalse(os.path.exists(self.pepper_path))
        key = [l for l in r.out.split("\n") if KEY_RE.match(l)][0]
        self.keys.append(key)
        self.expect(self.kw("key", "verify", input=key,
                            env={"KEYWARD_PEPPER": pep}), 0, "VALID\n")


    def test_init_uses_existing_pepper_file(self):
        pep = "5a" * 32 + "\n"
        fd = os.open(self.pepper_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, pep.encode())
        os.close(fd)
        r = self.kw("init")
        self.expect(r, 0)
        self.assertIn("pepper      %s\n" % self.pepper_path, r.out)
        with open(self.pepper_path) as f:
            self.assertEqual(f.read(), pep)
        key = [l for l in r.out.split("\n") if KEY_RE.match(l)][0]
        self.keys.append(key)
        r = self.kw("key", "verify", input=key,
                    env={"KEYWARD_PEPPER": "5a" * 32})
        self.expect(r, 0, "VALID\n")

    def test_init_refuses_open_pepper_file(self):
        with open(self.pepper_path, "w") as f:
            f.write("5a" * 32 + "\n")
        os.chmod(self.pepper_path, 0o644)
        r = self.kw("init")
        self.expect(r, 3, "", self.pepper_path)
        self.assertFalse(os.path.exists(self.db))


class CreateTest(KwTestCase):
    FLAGS = ("--owner", "acme", "--name", "orders bot", "--scope", "orders:*",
             "--scope", "billing:read", "--expires", "90d", "--credits", "10",
             "--rate", "5/60s", "--prefix", "acme_live", "--meta", "k=v",
             "--meta", "tier=gold")

    def setUp(self):
        super().setUp()
        self.init()

    def check_key_format(self, key, prefix):
        self.assertRegex(key, KEY_RE)
        self.assertTrue(key.startswith(prefix + "_"))
        self.assertEqual(len(key), len(prefix) + 1 + 50)
        self.assertEqual(key[-6:], check_of(key[:-6]))
        return key[len(prefix) + 1:len(prefix) + 13]

    def test_create_every_flag_human(self):
        t0 = int(time.time())
        r = self.ok("key", "create", *self.FLAGS)
        t1 = int(time.time())
        lines = r.out.split("\n")
        key = lines[0]
        self.keys.append(key)
        id_ = self.check_key_format(key, "acme_live")
        self.assertEqual(lines[1], "")
        self.assertEqual(r.out.count(key), 1)
        self.assertIn("shown once", r.err)
        rec = dict((l[:14].rstrip(), l[14:]) for l in lines[2:] if l)
        self.assertEqual(rec["id"], id_)
        self.assertEqual(rec["prefix"], "acme_live")
        self.assertEqual(rec["owner"], "acme")
        self.assertEqual(rec["name"], "orders bot")
        self.assertEqual(rec["status"], "active")
        self.assertEqual(rec["scopes"], "orders:* billing:read")
        self.assertEqual(json.loads(rec["meta"]), {"k": "v", "tier": "gold"})
        self.assertEqual(rec["credits"], "10")
        self.assertEqual(rec["rate limit"], "5 per 60 s")
        self.assertEqual(rec["last used"], "-")
        self.assertEqual(rec["revoked"], "-")
        self.assertRegex(rec["created"], TIME_RE)
        exp = ts(rec["expires"])
        self.assertGreaterEqual(exp, t0 + 90 * 86400)
        self.assertLessEqual(exp, t1 + 90 * 86400)
        self.assert_code(key, "VALID")

    def test_create_every_flag_json(self):
        t0 = int(time.time())
        o = self.create_json(*self.FLAGS)
        t1 = int(time.time())
        key = o["key"]
        id_ = self.check_key_format(key, "acme_live")
        self.assertEqual(o["id"], id_)
        self.assertRegex(o["id"], ID_RE)
        for f in RECORD_FIELDS:
            self.assertIn(f, o)
        self.assertEqual(o["prefix"], "acme_live")
        self.assertEqual(o["owner"], "acme")
        self.assertEqual(o["name"], "orders bot")
        self.assertEqual(o["scopes"], ["orders:*", "billing:read"])
        self.assertEqual(o["meta"], {"k": "v", "tier": "gold"})
        self.assertEqual(o["status"], "active")
        self.assertRegex(o["created_at"], TIME_RE)
        self.assertTrue(t0 <= ts(o["created_at"]) <= t1)
        self.assertTrue(t0 + 90 * 86400 <= ts(o["expires_at"]) <= t1 + 90 * 86400)
        self.assertIsNone(o["last_used_at"])
        self.assertIs(o["enabled"], True)
        self.assertIsNone(o["revoked_at"])
        self.assertEqual(o["credits"], 10)
        self.assertEqual(o["ratelimit"], {"limit": 5, "window_ms": 60000})
        self.assertIsNone(o["rotated_from"])
        self.assertIsNone(o["rotated_to"])
        # The record printed at creation is the stored one.
        shown = self.show(id_)
        self.assertNotIn("key", shown)
        for f in RECORD_FIELDS:
            self.assertEqual(shown[f], o[f], f)

    def test_create_defaults(self):
        o = self.create_json()
        self.check_key_format(o["key"], "kw_live")
        self.assertEqual(o["prefix"], "kw_live")
        self.assertEqual(o["scopes"], [])
        self.assertEqual(o["meta"], {})
        self.assertIsNone(o["expires_at"])
        self.assertIsNone(o["credits"])
        self.assertIsNone(o["ratelimit"])
        self.assert_code(o["key"], "VALID")

    def test_keys_are_unique_and_check_is_crc32(self):
        seen = set()
        for prefix in ("kw_test", "a", "acme_live", "x1_y2_z3"):
            key, id_ = self.create("--prefix", prefix)
            p, kid, secret, check = split_key(key)
            self.assertEqual(p, prefix)
            self.assertEqual(kid, id_)
            self.assertEqual(check, check_of(key[:-6]))
            self.assertNotIn(kid, seen)
            self.assertNotIn(secret, seen)
            seen.update((kid, secret))

    def test_twenty_char_prefix_ok(self):
        key, _ = self.create("--prefix", "abcdefghij0123456789")
        self.assertEqual(len(key), 71)
        self.assert_code(key, "VALID")


class VerifyTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()

    def test_verify_stdin_exact_output(self):
        key, id_ = self.create()
        r = self.verify(key)
        self.expect(r, 0, "VALID\n")
        self.assertEqual(r.err, "")
        # The usual way: echo adds a newline.
        self.expect(self.verify(key + "\n"), 0, "VALID\n")

    def test_verify_key_env(self):
        key, _ = self.create()
        r = self.kw("key", "verify", "--key-env", "MY_API_KEY",
                    env={"MY_API_KEY": key})
        self.expect(r, 0, "VALID\n")
        r = self.kw("key", "verify", "--key-env", "MY_API_KEY",
                    env={"MY_API_KEY": key[:-1] + ("A" if key[-1] != "A" else "B")})
        self.expect(r, 1, "MALFORMED\n")
        r = self.kw("key", "verify", "--key-env", "NOT_SET_ANYWHERE_X",
                    env={"NOT_SET_ANYWHERE_X": None})
        self.expect(r, 2, "", "NOT_SET_ANYWHERE_X")

    def test_verify_json_fields(self):
        o = self.create_json("--owner", "acme", "--scope", "orders:*",
                             "--meta", "plan=pro", "--expires", "1h",
                             "--credits", "10", "--rate", "5/60s")
        v = self.verify_json(o["key"])
        self.assertEqual(v["valid"], True)
        self.assertEqual(v["code"], "VALID")
        self.assertEqual(v["id"], o["id"])
        self.assertEqual(v["owner"], "acme")
        self.assertEqual(v["scopes"], ["orders:*"])
        self.assertEqual(v["meta"], {"plan": "pro"})
        self.assertEqual(v["expires_at"], o["expires_at"])
        self.assertEqual(v["remaining"], 9)
        self.assertEqual(v["ratelimit"]["limit"], 5)
        self.assertEqual(v["ratelimit"]["remaining"], 4)
        self.assertGreater(v["ratelimit"]["reset_ms"], 0)
        self.assertLessEqual(v["ratelimit"]["reset_ms"], 60000)
        self.assertNotIn(o["key"], json.dumps(v))
        # Unlimited credits and no rate limit: nulls.
        key, _ = self.create()
        v = self.verify_json(key)
        self.assertIsNone(v["remaining"])
        self.assertIsNone(v["ratelimit"])
        # Not found: nothing about any key.
        p, kid, secret, _ = split_key(key)
        other = key[:-6][:-1] + ("a" if secret[-1] != "a" else "b")
        other += check_of(other)
        v = self.verify_json(other)
        self.assertEqual(v["code"], "NOT_FOUND")
        self.assertIs(v["valid"], False)
        for f in ("id", "owner", "scopes", "meta", "expires_at", "remaining",
                  "ratelimit"):
            self.assertIsNone(v[f], f)

    def test_last_used_at_recorded(self):
        key, id_ = self.create()
        self.assertIsNone(self.show(id_)["last_used_at"])
        t0 = int(time.time())
        self.assert_code(key, "VALID")
        used = self.show(id_)["last_used_at"]
        self.assertRegex(used, TIME_RE)
        self.assertTrue(t0 <= ts(used) <= int(time.time()))

    def test_scopes(self):
        key, _ = self.create("--scope", "orders:*", "--scope", "billing:read")
        self.assert_code(key, "VALID", "--scope", "orders:read")
        self.assert_code(key, "VALID", "--scope", "orders:read:eu")
        self.assert_code(key, "VALID", "--scope", "orders:read",
                         "--scope", "billing:read")
        self.assert_code(key, "INSUFFICIENT_SCOPE", "--scope", "users:read")
        self.assert_code(key, "INSUFFICIENT_SCOPE", "--scope", "billing:write")
        self.assert_code(key, "INSUFFICIENT_SCOPE", "--scope", "orders")
        self.assert_code(key, "INSUFFICIENT_SCOPE", "--scope", "orders:read",
                         "--scope", "users:read")
        v = self.verify_json(key, "--scope", "users:read")
        self.assertEqual(v["code"], "INSUFFICIENT_SCOPE")
        # A required scope never holds a wildcard.
        r = self.verify(key, "--scope", "orders:*")
        self.expect(r, 2, "", "Try 'keyward key verify --help'")
        none, _ = self.create()
        self.assert_code(none, "INSUFFICIENT_SCOPE", "--scope", "orders:read")
        self.assert_code(none, "VALID")

    def test_credits(self):
        key, id_ = self.create("--credits", "2")
        self.assert_code(key, "VALID")
        self.assert_code(key, "VALID")
        self.assert_code(key, "USAGE_EXCEEDED")
        self.assert_code(key, "USAGE_EXCEEDED")
        self.assertEqual(self.show(id_)["credits"], 0)

    def test_credits_cost_and_refusals_spend_nothing(self):
        key, id_ = self.create("--credits", "3", "--scope", "orders:read")
        # A scope refusal spends no credit.
        self.assert_code(key, "INSUFFICIENT_SCOPE", "--scope", "users:read")
        self.assertEqual(self.show(id_)["credits"], 3)
        self.assertEqual(self.verify_json(key, "--cost", "2")["remaining"], 1)
        v = self.verify_json(key, "--cost", "2")
        self.assertEqual(v["code"], "USAGE_EXCEEDED")
        self.assertEqual(v["remaining"], 1)
        self.assert_code(key, "VALID")
        self.assert_code(key, "USAGE_EXCEEDED")
        self.assertEqual(self.show(id_)["credits"], 0)
        self.expect(self.verify(key, "--cost", "0"), 2, "", "--cost")

    def test_zero_credits_at_creation(self):
        key, _ = self.create("--credits", "0")
        self.assert_code(key, "USAGE_EXCEEDED")

    def test_credits_exact_under_concurrency(self):
        import threading
        key, id_ = self.create("--credits", "10")
        results = []
        lock = threading.Lock()

        def worker():
            for _ in range(5):
                r = self.verify(key)
                with lock:
                    results.append((r.code, r.out))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 20)
        self.assertEqual(sorted(set(results)),
                         [(0, "VALID\n"), (1, "USAGE_EXCEEDED\n")], results)
        self.assertEqual(results.count((0, "VALID\n")), 10, results)
        self.assertEqual(self.show(id_)["credits"], 0)

    def test_rate_limit(self):
        key, _ = self.create("--rate", "2/60s")
        self.assert_code(key, "VALID")
        self.assert_code(key, "VALID")
        self.assert_code(key, "RATE_LIMITED")
        v = self.verify_json(key)
        self.assertEqual(v["code"], "RATE_LIMITED")
        self.assertEqual(v["ratelimit"]["limit"], 2)
        self.assertEqual(v["ratelimit"]["remaining"], 0)
        self.assertGreater(v["ratelimit"]["reset_ms"], 0)

    def test_rate_limited_spends_no_credit(self):
        key, id_ = self.create("--rate", "1/60s", "--credits", "5")
        self.assert_code(key, "VALID")
        self.assert_code(key, "RATE_LIMITED")
        self.assert_code(key, "RATE_LIMITED")
        self.assertEqual(self.show(id_)["credits"], 4)

    def test_expires_short(self):
        key, id_ = self.create("--expires", "1s")
        deadline = time.time() + 3
        while True:
            r = self.verify(key)
            if r.out == "EXPIRED\n":
                break
            self.expect(r, 0, "VALID\n")
            self.assertLess(time.time(), deadline, "1s key never expired")
            time.sleep(0.3)
        self.expect(r, 1, "EXPIRED\n")
        self.assertEqual(self.show(id_)["status"], "expired")

    def test_not_yet_valid(self):
        key, id_ = self.create("--not-before", "1h")
        self.assert_code(key, "NOT_YET_VALID")
        self.ok("key", "update", id_, "--not-before", "none")
        self.assert_code(key, "VALID")

    def test_wrong_secret_is_not_found(self):
        key, _ = self.create()
        p, kid, secret, _ = split_key(key)
        s2 = ("B" if secret[0] != "B" else "C") + secret[1:]
        head = "%s_%s%s" % (p, kid, s2)
        self.assert_code(head + check_of(head), "NOT_FOUND")
        # Another prefix with the same id and secret is another key.
        head = "kw_test_%s%s" % (kid, secret)
        self.assert_code(head + check_of(head), "NOT_FOUND")
        self.assert_code(key, "VALID")


class ShowListTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.admin = self.init()
        self.admin_id = split_key(self.admin)[1]

    def test_show_human_and_json(self):
        key, id_ = self.create("--owner", "acme", "--name", "bot",
                               "--scope", "orders:read", "--credits", "7",
                               "--rate", "3/10s", "--meta", "a=b")
        r = self.ok("key", "show", id_)
        self.assertTrue(r.out.startswith("id            %s\n" % id_), r)
        for line in ("prefix        kw_live\n", "owner         acme\n",
                     "name          bot\n", "status        active\n",
                     "scopes        orders:read\n", 'meta          {"a":"b"}\n',
                     "expires       -\n", "credits       7\n",
                     "rate limit    3 per 10 s\n"):
            self.assertIn(line, r.out)
        self.assertEqual(r.err, "")
        self.assert_no_keys_in(r.out, "key show")
        o = self.show(id_)
        self.assertEqual(sorted(set(RECORD_FIELDS) - set(o)), [])
        self.assertNotIn("key", o)
        self.assertEqual(o["id"], id_)
        self.assertEqual(o["ratelimit"], {"limit": 3, "window_ms": 10000})
        self.assert_no_keys_in(json.dumps(o), "key show --json")

    def test_show_unknown_and_bad_ids(self):
        self.expect(self.kw("key", "show", "AAAAAAAAAAAA"), 1, "", "not found")
        self.expect(self.kw("key", "show", "AAAAAAAAAAAA", "--json"), 1, "",
                    "not found")
        for bad in ("nope", "AAAAAAAAAAA", "AAAAAAAAAAAAA", "AAAAAAAAAAA_",
                    "AAAAAAAAAAA-"):
            self.expect(self.kw("key", "show", bad), 2, "", "not a key id")
        self.expect(self.kw("key", "show"), 2, "", "missing key id")
        self.expect(self.kw("key", "show", self.admin_id, "extra"), 2, "",
                    "unexpected argument")

    def test_list_table(self):
        k1, id1 = self.create("--owner", "acme", "--name", "one",
                              "--scope", "a:b", "--scope", "c:d")
        k2, id2 = self.create("--owner", "globex", "--prefix", "gx_live")
        r = self.ok("key", "list")
        self.assertEqual(r.err, "")
        lines = r.out.splitlines(True)
        self.assertEqual(lines[0], LIST_HEADER)
        self.assertEqual(len(lines), 4, r)
        ids = [l[:12] for l in lines[1:]]
        self.assertEqual(ids, [self.admin_id, id1, id2])  # creation order
        row = [l for l in lines if l.startswith(id1)][0]
        self.assertEqual(
            row, "%-12s  %-10s  %-16s  %-16s  %-8s  %-20s  %s\n" % (
                id1, "kw_live", "acme", "one", "active", "-", "a:b,c:d"))
        row = [l for l in lines if l.startswith(id2)][0]
        self.assertEqual(
            row, "%-12s  %-10s  %-16s  %-16s  %-8s  %-20s  %s\n" % (
                id2, "gx_live", "globex", "-", "active", "-", "-"))
        self.assert_no_keys_in(r.out, "key list")

    def test_list_filters(self):
        _, id1 = self.create("--owner", "acme")
        _, id2 = self.create("--owner", "acme", "--prefix", "acme_live")
        _, id3 = self.create("--owner", "globex", "--prefix", "acme_live")
        o = self.ok_json("key", "list", "--owner", "acme", "--json")
        self.assertEqual([k["id"] for k in o["keys"]], [id1, id2])
        self.assertIsNone(o["next_cursor"])
        o = self.ok_json("key", "list", "--prefix", "acme_live", "--json")
        self.assertEqual([k["id"] for k in o["keys"]], [id2, id3])
        o = self.ok_json("key", "list", "--owner", "acme", "--prefix",
                         "acme_live", "--json")
        self.assertEqual([k["id"] for k in o["keys"]], [id2])
        o = self.ok_json("key", "list", "--owner", "nobody", "--json")
        self.assertEqual(o, {"keys": [], "next_cursor": None})
        r = self.ok("key", "list", "--owner", "globex")
        self.assertEqual(r.out, LIST_HEADER + r.out[len(LIST_HEADER):])
        self.assertEqual([l[:12] for l in r.out.splitlines()[1:]], [id3])

    def test_list_paging(self):
        # In creation order.
        ids = [self.admin_id] + [self.create("--owner", "p")[1] for _ in range(5)]
        o = self.ok_json("key", "list", "--limit", "2", "--json")
        self.assertEqual([k["id"] for k in o["keys"]], ids[:2])
        self.assertEqual(o["next_cursor"], ids[1])
        got, cursor, pages = [], None, 0
        while True:
            args = ["key", "list", "--limit", "2", "--json"]
            if cursor:
                args += ["--cursor", cursor]
            o = self.ok_json(*args)
            pages += 1
            got += [k["id"] for k in o["keys"]]
            for k in o["keys"]:
                self.assertEqual(sorted(set(RECORD_FIELDS) - set(k)), [])
            cursor = o["next_cursor"]
            if cursor is None:
                break
            self.assertLess(pages, 10)
        self.assertEqual(got, ids)
        o = self.ok_json("key", "list", "--limit", "2", "--all", "--json")
        self.assertEqual([k["id"] for k in o["keys"]], ids)
        self.assertIsNone(o["next_cursor"])
        # The table says where the next page starts, on stderr.
        r = self.ok("key", "list", "--limit", "4")
        self.assertEqual([l[:12] for l in r.out.splitlines()[1:]], ids[:4])
        self.assertIn("--cursor " + ids[3], r.err)
        r = self.ok("key", "list", "--limit", "4", "--cursor", ids[3])
        self.assertEqual([l[:12] for l in r.out.splitlines()[1:]], ids[4:])
        self.assertEqual(r.err, "")
        # A cursor naming no key: an error, and nothing on stdout.
        for fmt in ([], ["--json"]):
            r = self.kw("key", "list", "--cursor", "Zz0Zz0Zz0Zz0", *fmt)
            self.expect(r, 2, out="", err_has="invalid cursor")
        r = self.ok("key", "list", "--limit", "1", "--all")
        self.assertEqual([l[:12] for l in r.out.splitlines()[1:]], ids)
        for bad in ("0", "1001", "x", "-1"):
            self.expect(self.kw("key", "list", "--limit", bad), 2, "", "--limit")
        self.expect(self.kw("key", "list", "--cursor", "x"), 2, "", "--cursor")


class UpdateTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()
        self.key, self.id = self.create(
            "--owner", "acme", "--name", "old", "--scope", "a:b", "--scope",
            "c:d", "--meta", "k=v", "--expires", "1h", "--credits", "1",
            "--rate", "5/60s")

    def update(self, *args):
        return self.ok_json("key", "update", self.id, "--json", *args)

    def test_update_name(self):
        o = self.update("--name", "new name")
        self.assertEqual(o["name"], "new name")
        self.assertEqual(o["scopes"], ["a:b", "c:d"])
        self.assertEqual(o["meta"], {"k": "v"})
        self.assertEqual(self.show(self.id)["name"], "new name")
        r = self.ok("key", "update", self.id, "--owner", "globex")
        self.assertTrue(r.out.startswith("id            %s\n" % self.id), r)
        self.assertIn("owner         globex\n", r.out)
        self.assert_no_keys_in(r.out)

    def test_update_scope_replaces(self):
        o = self.update("--scope", "x:y")
        self.assertEqual(o["scopes"], ["x:y"])
        self.assert_code(self.key, "INSUFFICIENT_SCOPE", "--scope", "a:b")
        o = self.update("--no-scopes")
        self.assertEqual(o["scopes"], [])

    def test_update_meta_merges(self):
        o = self.update("--meta", "z=1")
        self.assertEqual(o["meta"], {"k": "v", "z": "1"})
        o = self.update("--meta", "k=w")
        self.assertEqual(o["meta"], {"k": "w", "z": "1"})
        o = self.update("--meta-json", '{"only":"this"}')
        self.assertEqual(o["meta"], {"only": "this"})
        self.assertEqual(self.show(self.id)["meta"], {"only": "this"})

    def test_disable_enable(self):
        o = self.update("--disable")
        self.assertIs(o["enabled"], False)
        self.assertEqual(o["status"], "disabled")
        self.assert_code(self.key, "DISABLED")
        self.assertEqual(self.show(self.id)["credits"], 1)  # spent nothing
        o = self.update("--enable")
        self.assertIs(o["enabled"], True)
        self.assertEqual(o["status"], "active")
        self.assert_code(self.key, "VALID")
        self.expect(self.kw("key", "update", self.id, "--enable", "--disable"),
                    2, "", "cannot be combined")

    def test_expires_credits_rate_cleared(self):
        self.assert_code(self.key, "VALID")
        self.assert_code(self.key, "USAGE_EXCEEDED")
        o = self.update("--expires", "never", "--credits", "unlimited",
                        "--rate", "none")
        self.assertIsNone(o["expires_at"])
        self.assertIsNone(o["credits"])
        self.assertIsNone(o["ratelimit"])
        for _ in range(7):  # over the old rate and credits
            self.assert_code(self.key, "VALID")
        v = self.verify_json(self.key)
        self.assertIsNone(v["remaining"])
        self.assertIsNone(v["ratelimit"])
        self.assertIsNone(v["expires_at"])

    def test_update_credits_and_rate_values(self):
        o = self.update("--credits", "3", "--rate", "1/60s", "--expires", "2h")
        self.assertEqual(o["credits"], 3)
        self.assertEqual(o["ratelimit"], {"limit": 1, "window_ms": 60000})
        self.assertAlmostEqual(ts(o["expires_at"]), time.time() + 7200, delta=3)
        self.assert_code(self.key, "VALID")
        self.assert_code(self.key, "RATE_LIMITED")

    def test_update_errors(self):
        self.expect(self.kw("key", "update", self.id), 2, "", "nothing to change")
        self.expect(self.kw("key", "update", "--name", "x"), 2, "",
                    "missing key id")
        self.expect(self.kw("key", "update", "AAAAAAAAAAAA", "--name", "x"), 1,
                    "", "not found")
        self.expect(self.kw("key", "update", "bad", "--name", "x"), 2, "",
                    "not a key id")
        self.expect(self.kw("key", "update", self.id, "--credits", "lots"), 2)
        self.expect(self.kw("key", "update", self.id, "--expires", "-1h"), 2)
        self.expect(self.kw("key", "update", self.id, "--scope", "Bad"), 2)
        self.expect(self.kw("key", "update", self.id, "--meta", "novalue"), 2)
        self.expect(self.kw("key", "update", self.id, "--meta-json", "[1]"), 2)
        self.expect(self.kw("key", "update", self.id, "--meta", "a=b",
                            "--meta-json", "{}"), 2, "", "cannot be combined")
        self.assertEqual(self.show(self.id)["name"], "old")


class RotateRevokeTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()

    def test_rotate_human(self):
        old, old_id = self.create("--owner", "acme", "--name", "n", "--scope",
                                  "orders:*", "--prefix", "acme_live",
                                  "--meta", "a=b", "--rate", "9/60s")
        t0 = int(time.time())
        r = self.ok("key", "rotate", old_id)
        lines = r.out.split("\n")
        new = lines[0]
        self.keys.append(new)
        self.assertRegex(new, KEY_RE)
        self.assertTrue(new.startswith("acme_live_"))
        new_id = split_key(new)[1]
        self.assertNotEqual(new_id, old_id)
        self.assertEqual(lines[1], "")
        self.assertEqual(lines[2], "id            " + new_id)
        self.assertIn("rotated from  %s\n" % old_id, r.out)
        self.assertIn("shown once", r.err)
        self.assertNotIn(old, r.out)
        # Both work during the grace period.
        self.assert_code(old, "VALID", "--scope", "orders:read")
        self.assert_code(new, "VALID", "--scope", "orders:read")
        o_old, o_new = self.show(old_id), self.show(new_id)
        self.assertEqual(o_old["rotated_to"], new_id)
        self.assertEqual(o_new["rotated_from"], old_id)
        self.assertAlmostEqual(ts(o_old["expires_at"]), t0 + 86400, delta=3)
        for f in ("prefix", "owner", "name", "scopes", "meta", "ratelimit"):
            self.assertEqual(o_new[f], o_old[f], f)
        self.assertIsNone(o_new["expires_at"])
        # A key rotates once.
        self.expect(self.kw("key", "rotate", old_id), 1, "", "already rotated")

    def test_rotate_json_and_credits_shared(self):
        old, old_id = self.create("--credits", "3")
        o = self.ok_json("key", "rotate", old_id, "--json")
        new = o["key"]
        self.keys.append(new)
        self.assertEqual(o["id"], split_key(new)[1])
        self.assertEqual(o["rotated_from"], old_id)
        self.assertEqual(o["credits"], 3)
        self.assertEqual(self.verify_json(old)["code"], "VALID")
        self.assertEqual(self.verify_json(new)["remaining"], 1)
        self.assert_code(old, "VALID")
        self.assert_code(old, "USAGE_EXCEEDED")
        self.assert_code(new, "USAGE_EXCEEDED")

    def test_rotate_grace_zero(self):
        old, old_id = self.create()
        o = self.ok_json("key", "rotate", old_id, "--grace", "0s", "--json")
        self.keys.append(o["key"])
        r = self.verify(old)
        if r.out == "VALID\n":  # whole seconds: allow one
            time.sleep(1.1)
            r = self.verify(old)
        self.expect(r, 1, "EXPIRED\n")
        self.assert_code(o["key"], "VALID")
        self.assertEqual(self.show(old_id)["status"], "expired")

    def test_rotate_errors(self):
        _, id_ = self.create()
        self.expect(self.kw("key", "rotate", id_, "--grace", "soon"), 2, "",
                    "--grace")
        self.expect(self.kw("key", "rotate"), 2, "", "missing key id")
        self.expect(self.kw("key", "rotate", "AAAAAAAAAAAA"), 1, "", "not found")
        self.ok("key", "revoke", id_)
        self.expect(self.kw("key", "rotate", id_), 1)

    def test_revoke(self):
        key, id_ = self.create()
        r = self.ok("key", "revoke", id_)
        self.assertEqual(r.out, "revoked %s\n" % id_)
        self.assert_code(key, "REVOKED")
        o = self.show(id_)
        self.assertEqual(o["status"], "revoked")
        self.assertRegex(o["revoked_at"], TIME_RE)
        self.expect(self.kw("key", "revoke", id_), 1, "")
        self.expect(self.kw("key", "update", id_, "--name", "x"), 1, "")
        self.expect(self.kw("key", "revoke", "AAAAAAAAAAAA"), 1, "", "not found")
        # Status is told only to whoever holds the key.
        p, kid, secret, _ = split_key(key)
        head = "%s_%s%s" % (p, kid, secret[::-1])
        self.assert_code(head + check_of(head), "NOT_FOUND")

    def test_revoke_json(self):
        key, id_ = self.create()
        o = self.ok_json("key", "revoke", id_, "--json")
        self.assertEqual(o["id"], id_)
        self.assertEqual(o["status"], "revoked")
        self.assertNotIn("key", o)


class AuditTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.admin = self.init()
        self.admin_id = split_key(self.admin)[1]

    def life(self):
        """create, update, disable, enable, rotate, revoke; returns ids."""
        key, id_ = self.create("--owner", "acme", "--credits", "5")
        self.ok("key", "update", id_, "--name", "renamed")
        self.ok("key", "update", id_, "--disable")
        self.ok("key", "update", id_, "--enable")
        self.assert_code(key, "VALID")
        o = self.ok_json("key", "rotate", id_, "--json")
        self.keys.append(o["key"])
        self.assert_code(o["key"], "VALID")
        self.ok("key", "revoke", o["id"])
        return id_, o["id"]

    def test_audit_records(self):
        old_id, new_id = self.life()
        recs = self.audit()
        self.assertEqual([r["seq"] for r in recs], list(range(1, len(recs) + 1)))
        self.assertEqual(recs[0]["action"], "key.create")
        self.assertEqual(recs[0]["target"], self.admin_id)
        mine = [(r["action"], r["target"]) for r in recs[1:]]
        self.assertEqual(mine[:5], [
            ("key.create", old_id), ("key.update", old_id),
            ("key.disable", old_id), ("key.enable", old_id),
            ("key.rotate", old_id)])
        self.assertIn(("key.revoke", new_id), mine)
        self.assertEqual(mine[-1], ("key.revoke", new_id))
        rot = [r for r in recs if r["action"] == "key.rotate"][0]
        self.assertEqual(rot["detail"]["new_id"], new_id)
        for r in recs:
            self.assertEqual(r["actor"], "cli")
            self.assertEqual(r["result"], "ok")
            self.assertRegex(r["at"], TIME_RE)
            self.assertTrue(r["client"].startswith("local uid="))
        # Filters.
        o = self.ok_json("audit", "list", "--action", "key.disable", "--json")
        self.assertEqual([(r["action"], r["target"]) for r in o["records"]],
                         [("key.disable", old_id)])
        o = self.ok_json("audit", "list", "--target", new_id, "--json")
        self.assertEqual(o["records"][-1]["action"], "key.revoke")
        self.assertTrue(all(r["target"] == new_id for r in o["records"]))
        o = self.ok_json("audit", "list", "--limit", "2", "--json")
        self.assertEqual([r["seq"] for r in o["records"]], [1, 2])
        self.assertEqual(o["next_cursor"], 2)
        o = self.ok_json("audit", "list", "--limit", "2", "--cursor", "2",
                         "--json")
        self.assertEqual([r["seq"] for r in o["records"]], [3, 4])
        # Table.
        r = self.ok("audit", "list")
        lines = r.out.splitlines(True)
        self.assertEqual(lines[0], AUDIT_HEADER)
        self.assertEqual(len(lines), len(recs) + 1)
        self.assertRegex(lines[2], r"^2\s+\S+Z\s+key\.create\s+%s\s+cli\s+ok\s+"
                         r"local uid=\d+\n$" % old_id)

    def test_no_key_anywhere(self):
        self.life()
        self.create("--prefix", "acme_live", "--meta", "x=y")
        outs = [self.ok("audit", "list", "--all", "--json").out,
                self.ok("audit", "list", "--all").out,
                self.ok("key", "list", "--all").out,
                self.ok("key", "list", "--all", "--json").out]
        for rec in self.list_all():
            outs.append(self.ok("key", "show", rec["id"]).out)
            outs.append(self.ok("key", "show", rec["id"], "--json").out)
        self.assertGreaterEqual(len(self.keys), 4)
        for o in outs:
            self.assert_no_keys_in(o)
        self.assert_no_keys_in_db()

    def test_audit_verify_intact(self):
        self.life()
        n = len(self.audit())
        r = self.ok("audit", "verify")
        self.assertRegex(r.out, r"^audit chain intact: %d records, head "
                         r"[0-9a-f]{64}\n$" % n)
        o = self.ok_json("audit", "verify", "--json")
        self.assertEqual(o["intact"], True)
        self.assertEqual(o["records"], n)
        self.assertRegex(o["head_mac"], r"^[0-9a-f]{64}$")
        self.assertIn(o["head_mac"], r.out)

    def tamper(self, sql):
        c = sqlite3.connect(self.db)
        with c:
            c.execute(sql)
        c.close()

    def test_audit_verify_detects_edit(self):
        self.life()
        self.ok("audit", "verify")
        self.tamper("UPDATE audit SET target='x' WHERE seq=2")
        r = self.kw("audit", "verify")
        self.expect(r, 1)
        self.assertRegex(r.out, r"^audit chain BROKEN at record 2: ")
        o = json.loads(self.kw("audit", "verify", "--json").out)
        self.assertEqual(o["intact"], False)
        self.assertEqual(o["bad_seq"], 2)

    def test_audit_verify_detects_deleted_tail(self):
        self.life()
        self.tamper("DELETE FROM audit WHERE seq=(SELECT max(seq) FROM audit)")
        r = self.kw("audit", "verify")
        self.expect(r, 1)
        self.assertIn("BROKEN", r.out)
        self.assertEqual(json.loads(self.kw("audit", "verify", "--json").out)
                         ["intact"], False)

    def test_audit_verify_detects_deleted_middle_and_detail_edit(self):
        self.life()
        self.tamper("DELETE FROM audit WHERE seq=3")
        r = self.kw("audit", "verify")
        self.expect(r, 1)
        self.assertIn("BROKEN", r.out)

    def test_audit_verify_detects_detail_edit(self):
        self.life()
        self.tamper("UPDATE audit SET detail=replace(detail, 'acme', 'evil') "
                    "WHERE seq=2")
        r = self.kw("audit", "verify")
        self.expect(r, 1)
        self.assertIn("BROKEN at record 2", r.out)

    def test_failed_change_writes_no_audit(self):
        n = len(self.audit())
        self.expect(self.kw("key", "create", "--scope", "Bad Scope"), 2)
        self.expect(self.kw("key", "revoke", "AAAAAAAAAAAA"), 1)
        self.assertEqual(len(self.audit()), n)
        self.ok("audit", "verify")


class EnvDbTest(KwTestCase):
    def test_keyward_db_env(self):
        r = self.kw("init", env={"KEYWARD_DB": self.url}, db=False)
        self.expect(r, 0)
        self.assertTrue(os.path.isfile(self.db))
        # cwd is the temp dir: nothing was made at the default path there
        # other than our db.
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "keyward.db")))
        key = [l for l in r.out.split("\n") if KEY_RE.match(l)][0]
        self.keys.append(key)
        r = self.kw("key", "verify", input=key, env={"KEYWARD_DB": self.url},
                    db=False)
        self.expect(r, 0, "VALID\n")
        o = json.loads(self.kw("key", "list", "--json",
                               env={"KEYWARD_DB": self.url}, db=False).out)
        self.assertEqual(len(o["keys"]), 1)
        # --db wins over KEYWARD_DB.
        other = os.path.join(self.tmp, "other.db")
        r = self.kw("key", "list", env={"KEYWARD_DB": "sqlite:" + other})
        self.expect(r, 0)
        self.assertFalse(os.path.exists(other))

    def test_db_flag_forms(self):
        self.expect(self.kw("--db=" + self.url, "init", db=False), 0)
        # The flag may stand after the command too; a bare path works.
        self.expect(self.kw("key", "list", "--db", self.db, db=False), 0)
        self.expect(self.kw("key", "list", "--db", db=False), 2, "",
                    "needs a value")


if __name__ == "__main__":
    unittest.main()
