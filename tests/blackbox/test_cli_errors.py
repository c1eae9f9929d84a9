"""Black-box: bad input, bad command lines, bad configuration, bad storage."""

import os
import secrets
import sqlite3
import subprocess
import unittest

from kwtest import BASE62, KEY_RE, KwTestCase, check_of, make_key, run, split_key

# Every command, with the arguments it needs to get past argument checks.
COMMANDS = [
    ("init",),
    ("key", "create"),
    ("key", "list"),
    ("key", "show"),
    ("key", "update"),
    ("key", "rotate"),
    ("key", "revoke"),
    ("key", "verify"),
    ("audit", "list"),
    ("audit", "verify"),
    ("import", "seed"),
]

# A flag that takes a value, per command.
VALUE_FLAGS = [
    (("key", "create"), "--owner"),
    (("key", "create"), "--scope"),
    (("key", "create"), "--expires"),
    (("key", "create"), "--prefix"),
    (("key", "create"), "--meta"),
    (("key", "list"), "--limit"),
    (("key", "list"), "--cursor"),
    (("key", "list"), "--owner"),
    (("key", "update", "AAAAAAAAAAAA"), "--name"),
    (("key", "update", "AAAAAAAAAAAA"), "--credits"),
    (("key", "rotate", "AAAAAAAAAAAA"), "--grace"),
    (("key", "verify"), "--scope"),
    (("key", "verify"), "--key-env"),
    (("key", "verify"), "--cost"),
    (("audit", "list"), "--action"),
    (("audit", "list"), "--limit"),
    (("import", "seed"), "--from"),
]


def random_key(prefix="kw_live"):
    """A well-formed key (correct check) that no database holds."""
    id_ = "".join(secrets.choice(BASE62) for _ in range(12))
    sec = "".join(secrets.choice(BASE62) for _ in range(32))
    return make_key(prefix, id_, sec)


def other_char(c):
    return "A" if c != "A" else "B"


class BadKeyInputTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()
        self.key, self.id = self.create()

    def malformed(self, text):
        r = self.verify(text)
        self.expect(r, 1, "MALFORMED\n")
        self.assert_no_keys_in(r.err, "stderr")
        return r

    def test_wrong_check(self):
        self.malformed(self.key[:-1] + other_char(self.key[-1]))
        self.malformed(self.key[:-6] + "000000" if self.key[-6:] != "000000"
                       else self.key[:-6] + "111111")

    def test_truncated(self):
        self.malformed(self.key[:-1])
        self.malformed(self.key[:-10])
        self.malformed(self.key[:20])
        self.malformed(self.key[1:])

    def test_changed_secret_char(self):
        p, kid, sec, chk = split_key(self.key)
        for i in (0, 15, 31):
            s2 = sec[:i] + other_char(sec[i]) + sec[i + 1:]
            self.malformed("%s_%s%s%s" % (p, kid, s2, chk))
        # A changed id char, a changed prefix: also caught by the check.
        k2 = "%s_%s%s%s" % (p, other_char(kid[0]) + kid[1:], sec, chk)
        self.malformed(k2)
        self.malformed("kw_test" + self.key[len(p):])

    def test_extra_characters(self):
        self.malformed(self.key + "x")
        self.malformed(self.key + "_")
        self.malformed("x" + self.key)
        self.malformed(self.key + " ")
        self.malformed(self.key + "\n\n")
        self.malformed(self.key.upper())
        self.malformed("Bearer " + self.key)

    def test_not_keys(self):
        for text in ("hello", "kw_live_", "_" * 58, "kw_live_" + "!" * 50,
                     "Kw_live" + self.key[7:], "kw__live" + self.key[7:],
                     "\x00" * 58, "é" * 29):
            self.malformed(text)
        # A prefix too long to be one.
        head = "a" * 21 + "_" + "A" * 44
        self.malformed(head + check_of(head))

    def test_empty_stdin(self):
        r = self.kw("key", "verify", input=b"")
        self.expect(r, 2, "", ("no key on stdin",
                               "Try 'keyward key verify --help'"))
        r = self.kw("key", "verify")  # /dev/null
        self.expect(r, 2, "", "no key on stdin")

    def test_huge_stdin(self):
        r = self.verify("A" * 10240)
        self.expect(r, 1, "MALFORMED\n")
        r = self.verify(self.key * 200)
        self.expect(r, 1, "MALFORMED\n")
        r = self.verify(b"\xff" * (1 << 20))
        self.expect(r, 1, "MALFORMED\n")
        self.assert_code(self.key, "VALID")

    def test_unknown_id_not_found(self):
        for prefix in ("kw_live", "kw_test", "acme_live"):
            k = random_key(prefix)
            self.assertRegex(k, KEY_RE)
            r = self.verify(k)
            self.expect(r, 1, "NOT_FOUND\n")
            self.assertEqual(r.err, "")
        # Same id, another secret.
        p, kid, sec, _ = split_key(self.key)
        self.assert_code(make_key(p, kid, sec[::-1]), "NOT_FOUND")

    def test_key_in_argv_refused(self):
        k = random_key()  # never a real key on a command line
        r = self.kw("key", "verify", k)
        self.expect(r, 2, "", ("never from the command line",
                               "Try 'keyward key verify --help'"))
        self.assertNotIn(k, r.err)
        self.assertNotIn(k, r.out)
        r = self.kw("key", "create", k)
        self.expect(r, 2, "", "unexpected argument")

    def test_key_env_errors(self):
        r = self.kw("key", "verify", "--key-env", "KW_BB_UNSET",
                    env={"KW_BB_UNSET": None})
        self.expect(r, 2, "", "KW_BB_UNSET")
        r = self.kw("key", "verify", "--key-env", "KW_BB_EMPTY",
                    env={"KW_BB_EMPTY": ""})
        self.expect(r, 2, "", "KW_BB_EMPTY")

    def test_errors_never_echo_keys(self):
        # Over everything above: no stderr ever held a key.
        r = self.verify(self.key + "x")
        self.assertNotIn(self.key, r.err + r.out)


class UsageTest(KwTestCase):
    """Command-line errors: no database needed, none touched."""

    def test_unknown_flag_every_command(self):
        for cmd in COMMANDS:
            name = "keyward " + " ".join(cmd)
            r = self.kw(*cmd, "--frobnicate")
            self.expect(r, 2, "", ("'--frobnicate'", "Try '%s --help'" % name))
            self.assertTrue(r.err.startswith(name + ": "), r)
            r = self.kw(*cmd, "-Z")
            self.expect(r, 2, "", ("-Z", "Try '%s --help'" % name))
        self.assertFalse(os.path.exists(self.db))

    def test_missing_value(self):
        for cmd, flag in VALUE_FLAGS:
            name = "keyward " + " ".join(cmd[:2])
            r = self.kw(*cmd, flag)
            self.expect(r, 2, "", ("'%s' needs a value" % flag,
                                   "Try '%s --help'" % name))
        self.assertFalse(os.path.exists(self.db))

    def test_unknown_noun_and_verb(self):
        r = self.kw("frob")
        self.expect(r, 2, "", ("unknown command 'frob'", "Try 'keyward --help'"))
        r = self.kw("key", "frob")
        self.expect(r, 2, "", "has no verb 'frob'")
        r = self.kw("key")
        self.expect(r, 2, "", "needs a verb")
        r = self.kw("audit", "delete")
        self.expect(r, 2, "", "has no verb 'delete'")
        r = self.kw("import", "legacy")
        self.expect(r, 2, "", "has no verb 'legacy'")
        r = self.kw(db=False)
        self.expect(r, 2, "", "usage:")
        self.assertFalse(os.path.exists(self.db))

    def test_help_everywhere(self):
        for cmd in COMMANDS:
            for h in ("--help", "-h"):
                r = self.kw(*cmd, h)
                self.expect(r, 0)
                self.assertTrue(r.out.startswith("usage: keyward"), r)
                self.assertIn(" ".join(cmd), r.out)
                self.assertEqual(r.err, "")
        for args in (("--help",), ("help",), ("-h",), ("key", "--help"),
                     ("audit", "--help"), ("import", "--help")):
            r = self.kw(*args)
            self.expect(r, 0)
            self.assertIn("usage:", r.out)
        self.assertFalse(os.path.exists(self.db))

    def test_version(self):
        r = run(["--version"])
        self.expect(r, 0)
        self.assertRegex(r.out, r"^keyward \d+\.\d+\.\d+\S*\n$")
        self.assertEqual(r.err, "")

    def test_extra_arguments(self):
        for cmd in (("init",), ("key", "create"), ("key", "list"),
                    ("audit", "list"), ("audit", "verify")):
            r = self.kw(*cmd, "stray")
            self.expect(r, 2, "", "unexpected argument 'stray'")
        r = self.kw("key", "show", "AAAAAAAAAAAA", "BBBBBBBBBBBB")
        self.expect(r, 2, "", "unexpected argument")

    def test_bad_ids(self):
        for verb in ("show", "revoke", "rotate"):
            for bad in ("x", "AAAAAAAAAAA", "AAAAAAAAAAAAA", "AAAAAA-AAAAA",
                        "../etc/passw", "AAAAAAAAAAA\u00e9"):
                r = self.kw("key", verb, bad)
                self.expect(r, 2, "", "not a key id")
            self.expect(self.kw("key", verb), 2, "", "missing key id")
        self.expect(self.kw("key", "update", "x", "--name", "n"), 2, "",
                    "not a key id")


class BadValuesTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()
        self.before = self.list_all()
        self.audit_before = self.audit()

    def tearDown(self):
        # No bad command created or changed anything.
        self.assertEqual(self.list_all(), self.before)
        self.assertEqual(self.audit(), self.audit_before)

    def bad(self, *args, phrase=None):
        r = self.kw("key", "create", *args)
        self.expect(r, 2, "", phrase or ())
        self.assertTrue(r.err.startswith("keyward key create: "), r)
        return r

    def test_bad_expires(self):
        for v in ("yesterday", "-5s", "5", "5y", "1.5h", "", "2020-13-01T00:00:00Z",
                  "soon"):
            self.bad("--expires", v, phrase="--expires")
        r = self.bad("--expires", "2020-01-01T00:00:00Z")
        self.assertIn("past", r.err)
        self.bad("--not-before", "whenever", phrase="--not-before")

    def test_bad_credits(self):
        for v in ("-1", "abc", "1.5", "", "1e3", "+5", " 5",
                  "99999999999999999999999"):
            self.bad("--credits", v, phrase="--credits")

    def test_bad_rate(self):
        for v in ("0/60s", "5/0s", "5", "5/", "/60s", "abc/60s", "5/60",
                  "-1/60s", "5/31d", "5/60s/1"):
            self.bad("--rate", v, phrase="--rate")

    def test_bad_scope(self):
        for v in ("Bad Scope", "ORDERS:read", "orders:", ":read", "orders::read",
                  "orders read", "", "orders:*:read", "a" * 129):
            r = self.bad("--scope", v)
            self.assertIn("scope", r.err)
        self.bad("--scope", "ok:scope", "--scope", "not ok")

    def test_bad_prefix(self):
        for v in ("Kw", "kw__x", "a" * 21, "kw_", "_kw", "1kw", "", "kw-live",
                  "kw live"):
            r = self.bad("--prefix", v)
            self.assertIn("prefix", r.err)

    def test_bad_meta(self):
        for v in ("novalue", "=v", "k" * 129 + "=v"):
            self.bad("--meta", v, phrase="--meta")
        self.bad("--meta", "a=b", "--meta", "broken")

    def test_bad_verify_flags(self):
        key, _ = self.create()
        self.before = self.list_all()
        self.audit_before = self.audit()
        for args in (("--scope", "orders:*"), ("--scope", "*"),
                     ("--scope", "Bad"), ("--cost", "0"), ("--cost", "x"),
                     ("--cost", "1000001")):
            r = self.verify(key, *args)
            self.expect(r, 2, "", "Try 'keyward key verify --help'")


class ConfigTest(KwTestCase):
    """Exit 3: no database, pepper missing, wrong, or too open."""

    ALL = [
        ("key", "create"),
        ("key", "list"),
        ("key", "show", "AAAAAAAAAAAA"),
        ("key", "update", "AAAAAAAAAAAA", "--name", "x"),
        ("key", "rotate", "AAAAAAAAAAAA"),
        ("key", "revoke", "AAAAAAAAAAAA"),
        ("key", "verify"),
        ("audit", "list"),
        ("audit", "verify"),
    ]

    def cmds(self):
        seed = os.path.join(self.tmp, "seed.db")
        return self.ALL + [("import", "seed", "--from", seed)]

    def run_all(self, code, phrase, env=None):
        k = make_key("kw_live", "A" * 12, "B" * 32)
        for cmd in self.cmds():
            r = self.kw(*cmd, input=k, env=env)
            self.expect(r, code, "", phrase)

    def test_missing_database(self):
        self.run_all(3, "keyward init")
        self.assertEqual(os.listdir(self.tmp), [])  # nothing was created
        # Not even with a pepper at hand.
        self.run_all(3, "keyward init", env={"KEYWARD_PEPPER": "ab" * 32})
        self.assertEqual(os.listdir(self.tmp), [])

    def test_missing_db_directory(self):
        self.url = "sqlite:" + os.path.join(self.tmp, "no", "such", "k.db")
        r = self.kw("key", "list")
        self.expect(r, 3, "", "keyward init")
        r = self.kw("init")
        self.assertNotEqual(r.code, 0, r)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_pepper_missing(self):
        self.init()
        os.unlink(self.pepper_path)
        self.run_all(3, ("pepper", self.pepper_path))

    def test_pepper_too_open(self):
        key = self.init()
        os.chmod(self.pepper_path, 0o644)
        self.run_all(3, ("pepper", "0600"))
        os.chmod(self.pepper_path, 0o640)
        self.expect(self.verify(key), 3, "", "pepper")
        os.chmod(self.pepper_path, 0o600)
        self.expect(self.verify(key), 0, "VALID\n")

    def test_pepper_file_malformed(self):
        key = self.init()
        for content in ("", "xyz\n", "ab" * 31 + "\n", "zz" * 32 + "\n",
                        "ab" * 40 + "\n"):
            with open(self.pepper_path, "w") as f:
                f.write(content)
            self.expect(self.verify(key), 3, "", "pepper")

    def test_wrong_pepper_env(self):
        key = self.init()
        with open(self.pepper_path) as f:
            real = f.read().strip()
        wrong = ("0" if real[0] != "0" else "1") + real[1:]
        self.assertRegex(wrong, r"^[0-9a-f]{64}$")
        env = {"KEYWARD_PEPPER": wrong}
        self.run_all(3, "pepper does not belong", env=env)
        # KEYWARD_PEPPER wins over the file: the right one works.
        r = self.verify(key, env={"KEYWARD_PEPPER": real})
        self.expect(r, 0, "VALID\n")
        r = self.verify(key, env={"KEYWARD_PEPPER": real.upper()})
        self.expect(r, 0, "VALID\n")

    def test_wrong_pepper_message_says_it_once(self):
        key = self.init()
        r = self.verify(key, env={"KEYWARD_PEPPER": "cd" * 32})
        self.expect(r, 3, "", "pepper does not belong")
        self.assertEqual(r.err.count("does not belong"), 1, r)

    def test_wrong_pepper_file(self):
        key = self.init()
        other = os.path.join(self.tmp, "other.pepper")
        with open(other, "w") as f:
            f.write("cd" * 32 + "\n")
        os.chmod(other, 0o600)
        r = self.kw("--pepper-file", other, "key", "verify", input=key)
        self.expect(r, 3, "", "pepper does not belong")
        r = self.kw("key", "verify", input=key,
                    env={"KEYWARD_PEPPER_FILE": other})
        self.expect(r, 3, "", "pepper does not belong")

    def test_malformed_pepper_env(self):
        key = self.init()
        for bad in ("zz", "ab" * 31, "ab" * 33, "g" * 64, "ab" * 31 + "a\n"):
            r = self.verify(key, env={"KEYWARD_PEPPER": bad})
            self.expect(r, 3, "", "KEYWARD_PEPPER")
            self.assertNotIn(bad.strip(), r.err)  # the pepper is not echoed

    def test_pepper_not_echoed(self):
        key = self.init()
        with open(self.pepper_path) as f:
            real = f.read().strip()
        for cmd in self.cmds():
            r = self.kw(*cmd, input=key)
            self.assertNotIn(real, r.out + r.err)
            self.assert_no_keys_in(r.err, "stderr")

    def test_not_a_keyward_database(self):
        c = sqlite3.connect(self.db)
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO customers (name) VALUES ('alice')")
        c.commit()
        c.close()
        digest = self.file_digest(self.db)
        env = {"KEYWARD_PEPPER": "ab" * 32}
        for cmd in self.cmds():
            r = self.kw(*cmd, input="x", env=env)
            self.expect(r, 3, "", "not a keyward database")
        self.assertEqual(self.file_digest(self.db), digest)
        # init never takes over an existing file.
        r = self.kw("init", env=env)
        self.expect(r, 1, "", "already exists")
        r = self.kw("init")
        self.expect(r, 1, "", "already exists")
        self.assertEqual(self.file_digest(self.db), digest)
        self.assertFalse(os.path.exists(self.pepper_path))
        c = sqlite3.connect(self.db)
        self.assertEqual(c.execute("SELECT name FROM sqlite_master").fetchall(),
                         [("customers",)])
        c.close()

    def test_foreign_database_message(self):
        """The message should not tell the user to run `keyward init` twice
        (nor at all: init refuses an existing file)."""
        c = sqlite3.connect(self.db)
        c.execute("CREATE TABLE t (a)")
        c.commit()
        c.close()
        r = self.kw("key", "list", env={"KEYWARD_PEPPER": "ab" * 32})
        self.expect(r, 3, "", "not a keyward database")
        self.assertLessEqual(r.err.count("run keyward init"), 1, r)

    def test_not_a_database_file(self):
        with open(self.db, "wb") as f:
            f.write(b"this is not sqlite at all\n" * 100)
        r = self.kw("key", "list", env={"KEYWARD_PEPPER": "ab" * 32})
        self.expect(r, 3)
        r = self.kw("init")
        self.expect(r, 1, "", "already exists")

    def test_unsupported_url(self):
        """docs/cli.md: a URL of no back end is refused with a clear message
        (not 'run keyward init', not a pepper-file error), and nothing is
        made beside it."""
        for cmd in (("key", "list"), ("init",)):
            r = run(["--db", "mysql://kw@localhost/kw"] + list(cmd),
                    cwd=self.tmp)
            self.assertIn(r.code, (2, 3), r)
            self.assertIn("unsupported database URL", r.err, r)
        self.assertEqual(os.listdir(self.tmp), [])


def chattr(flag, *paths):
    try:
        p = subprocess.run(["chattr", flag] + list(paths), capture_output=True)
    except OSError:
        return False
    return p.returncode == 0


class ReadOnlyTest(KwTestCase):
    """Exit 4 when the database cannot be written (root ignores modes, so the
    immutable attribute stands in for a read-only file)."""

    def setUp(self):
        super().setUp()
        self.key = self.init()
        self.k2, self.id2 = self.create("--credits", "5")
        self.before = self.list_all()
        self.audit_before = self.audit()

    def immutable(self, *paths):
        if not chattr("+i", *paths):
            self.skipTest("chattr +i not available here")
        self.addCleanup(chattr, "-i", *paths)

    def test_readonly_db_file(self):
        digest = self.file_digest(self.db)
        self.immutable(self.db)
        r = self.kw("key", "create")
        self.expect(r, 4, "", "read-only")
        self.assertFalse(KEY_RE.match(r.out.split("\n")[0] or "x"))
        for cmd in (("key", "update", self.id2, "--name", "x"),
                    ("key", "revoke", self.id2),
                    ("key", "rotate", self.id2)):
            r = self.kw(*cmd)
            self.expect(r, 4, "", "read-only")
        # Verification writes (credits, last use): it fails closed.
        r = self.verify(self.k2)
        self.expect(r, 4, "", "read-only")
        # Reads still work.
        self.assertEqual(self.list_all(), self.before)
        self.ok("audit", "verify")
        self.assertEqual(self.file_digest(self.db), digest)
        chattr("-i", self.db)
        self.assertEqual(self.list_all(), self.before)
        self.assertEqual(self.audit(), self.audit_before)
        self.assertEqual(self.show(self.id2)["credits"], 5)
        self.assert_code(self.k2, "VALID")

    def test_readonly_db_and_directory(self):
        digest = self.file_digest(self.db)
        self.immutable(self.db, self.tmp)
        r = self.kw("key", "create")
        self.expect(r, 4, "")
        self.assertRegex(r.err, r"read-only|database")
        self.assertEqual(self.file_digest(self.db), digest)
        chattr("-i", self.db, self.tmp)
        self.assertEqual(self.list_all(), self.before)
        self.assertEqual(self.audit(), self.audit_before)


if __name__ == "__main__":
    unittest.main()
