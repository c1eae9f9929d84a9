"""Black-box: secrets through the real `keyward` binary: `master-key init`,
`secret put|get|list|history|rm|undelete|destroy` and `keyward run`
(docs/secrets.md, the help texts of cli/cmd_secret.c, the env-file format of
lib/envfile.c).

Every case has its own database (`keyward init`) and, unless it tests the
master key itself, its own `<db>.master` from `keyward master-key init`.
KEYWARD_MASTER_KEY and KEYWARD_MASTER_KEY_CMD are removed from every run
unless a case sets them. Values go through stdin or --file only.
"""

import json
import os
import pty
import re
import secrets as pysecrets
import stat
import subprocess
import sys

import kwtest
from kwtest import BIN, SANITIZER_MARKS, KwTestCase

NO_MASTER = {"KEYWARD_MASTER_KEY": None, "KEYWARD_MASTER_KEY_CMD": None}
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
PUT_RE = re.compile(r"^(\S+): version (\d+)\n$")
# A child that prints its whole environment.
DUMP_ENV = [sys.executable, "-c",
            "import os, json, sys; sys.stdout.write(json.dumps(dict(os.environ)))"]
NOT_STARTED = "the command was not started"
# keyward's own secrets: `run` never hands them to the child (docs/secrets.md)
OWN = ("KEYWARD_MASTER_KEY", "KEYWARD_MASTER_KEY_CMD", "KEYWARD_PEPPER",
       "KEYWARD_SEED_SIGNING_SECRET", "KEYWARD_SEED_MASTER_KEY")


def child_env(extra=None):
    """The environment kwtest.run gives keyward (so: what `run` starts from)."""
    e = {k: v for k, v in os.environ.items() if k not in kwtest._SCRUB}
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    over = dict(NO_MASTER)
    over.update(extra or {})
    for k, v in over.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


class SecretsCase(KwTestCase):
    """An initialised database; with MASTER, its <db>.master too."""

    MASTER = True

    def setUp(self):
        super().setUp()
        self.errs = []  # every stderr captured: a value must never be in one
        self.init()
        self.master_file = self.db + ".master"
        self.master_hex = self.make_master() if self.MASTER else None

    # ---- running ----------------------------------------------------------

    def kw(self, *args, input=None, env=None, db=True):
        e = dict(NO_MASTER)
        e.update(env or {})
        r = super().kw(*args, input=input, env=e, db=db)
        self.errs.append(r.err)
        return r

    def raw(self, *args, input=None, env=None):
        """keyward --db <db> args with bytes in and out: (code, out, err)."""
        if not BIN:
            self.skipTest("KEYWARD_BIN is not set")
        p = subprocess.run([BIN, "--db", self.url] + list(args), input=input,
                           stdin=subprocess.DEVNULL if input is None else None,
                           capture_output=True, env=child_env(env), cwd=self.tmp,
                           timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err, "sanitizer report: %s" % err)
        self.errs.append(err)
        return p.returncode, p.stdout, err

    def make_master(self):
        r = self.expect(self.kw("master-key", "init"), 0)
        self.assertIn(self.master_file, r.out, r)
        with open(self.master_file) as f:
            text = f.read()
        self.assertRegex(text.strip(), HEX64_RE)
        return text.strip()

    def put(self, path, value, *args, env=None):
        """secret put PATH args with value on stdin; returns the version."""
        r = self.kw("secret", "put", path, *args, input=value, env=env)
        self.assertEqual(r.code, 0, r)
        m = PUT_RE.match(r.out)
        self.assertIsNotNone(m, r)
        self.assertEqual(m.group(1), path, r)
        return int(m.group(2))

    def get(self, path, *args, env=None):
        """secret get PATH args: the value's bytes (exit 0 asserted)."""
        code, out, err = self.raw("secret", "get", path, *args, env=env)
        self.assertEqual(code, 0, err)
        return out

    def history(self, path):
        return self.ok_json("secret", "history", path, "--json")

    def listing(self, *args):
        return self.ok_json("secret", "list", "--json", *args)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return path

    def run_env(self, *args, env=None):
        """keyward run args -- DUMP_ENV: (the child's environment, Result)."""
        r = self.kw("run", *args, "--", *DUMP_ENV, env=env)
        self.assertEqual(r.code, 0, r)
        return json.loads(r.out), r

    def assert_env(self, got, grants, env=None):
        """The child saw exactly keyward's environment (less keyward's own
        secrets) plus these grants."""
        want = child_env(env)
        for name in OWN:
            want.pop(name, None)
        want.update(grants)
        self.assertEqual(got, want)


# ---- 1. round trip ------------------------------------------------------------


class RoundTripTest(SecretsCase):
    def test_put_stdin_and_file_get_returns_exactly(self):
        # stdin: one trailing newline is dropped, nothing else
        self.assertEqual(self.put("app/db_password", "s3cret pass\n"), 1)
        self.assertEqual(self.get("app/db_password"), b"s3cret pass")
        self.assertEqual(self.put("app/no_newline", "abc"), 1)
        self.assertEqual(self.get("app/no_newline"), b"abc")
        self.assertEqual(self.put("app/two_newlines", "abc\n\n"), 1)
        self.assertEqual(self.get("app/two_newlines"), b"abc\n")
        # stdin: binary bytes, spaces, '=' and inner newlines kept as they are
        blob = b"\x00\x01 key = value ==\xff\xfe\tline1\nline2\x7f"
        code, out, err = self.raw("secret", "put", "app/blob", input=blob + b"\n")
        self.assertEqual((code, out), (0, b"app/blob: version 1\n"), err)
        self.assertEqual(self.get("app/blob"), blob)
        # --file: the same rule (one trailing newline dropped)
        f = self.write("value.bin", b"  a=b c==d \x00\x80 end \n")
        self.ok("secret", "put", "app/from_file", "--file", f)
        self.assertEqual(self.get("app/from_file"), b"  a=b c==d \x00\x80 end ")
        f2 = self.write("value2.bin", b"x=1\n\n")
        self.ok("secret", "put", "app/from_file", "--file", f2)
        self.assertEqual(self.get("app/from_file"), b"x=1\n")
        self.assertEqual(self.get("app/from_file", "--version", "1"),
                         b"  a=b c==d \x00\x80 end ")
        # --file wins over stdin, and a missing file is a storage error (4)
        self.ok("secret", "put", "app/from_file", "--file", f2, input="ignored\n")
        self.assertEqual(self.get("app/from_file"), b"x=1\n")
        self.expect(self.kw("secret", "put", "app/x", "--file", self.tmp + "/none"), 4)

    def test_versions_and_history_newest_first(self):
        for i in range(1, 4):
            self.assertEqual(self.put("app/key", "value-%d\n" % i), i)
        self.assertEqual(self.get("app/key"), b"value-3")
        for i in range(1, 4):
            self.assertEqual(self.get("app/key", "--version", str(i)), b"value-%d" % i)
        self.expect(self.kw("secret", "get", "app/key", "--version", "4"), 1)
        self.expect(self.kw("secret", "get", "app/key", "--version", "0"), 2)
        self.expect(self.kw("secret", "get", "app/key", "--version", "x"), 2)
        self.expect(self.kw("secret", "get", "app/none"), 1, err_has="app/none")
        self.expect(self.kw("secret", "history", "app/none"), 1)
        h = self.history("app/key")
        self.assertEqual([v["version"] for v in h], [3, 2, 1])
        for v in h:
            self.assertEqual(list(v.keys()), ["version", "created_at", "destroyed"])
            self.assertRegex(v["created_at"], kwtest.TIME_RE)
            self.assertIs(v["destroyed"], False)
        text = self.ok("secret", "history", "app/key").out.splitlines()
        self.assertEqual(text[0].split(), ["VERSION", "CREATED", "DESTROYED"])
        self.assertEqual([l.split()[0] for l in text[1:]], ["3", "2", "1"])
        # the last 10 versions are kept: the 11th write drops version 1
        for i in range(4, 12):
            self.put("app/key", "value-%d" % i)
        self.assertEqual([v["version"] for v in self.history("app/key")],
                         list(range(11, 1, -1)))
        self.expect(self.kw("secret", "get", "app/key", "--version", "1"), 1)
        self.assertEqual(self.get("app/key", "--version", "2"), b"value-2")
        self.assertEqual(self.get("app/key"), b"value-11")

    def test_list_shows_paths_and_versions_never_values(self):
        values = {"app/db_password": "pw-%s" % pysecrets.token_hex(8),
                  "app/api.key": "ak-%s" % pysecrets.token_hex(8),
                  "apple/y": "ap-%s" % pysecrets.token_hex(8),
                  "other/x": "ot-%s" % pysecrets.token_hex(8)}
        for p, v in values.items():
            self.put(p, v)
        self.put("app/db_password", values["app/db_password"] + "-2")
        o = self.listing()
        self.assertEqual([(e["path"], e["version"]) for e in o],
                         [("app/api.key", 1), ("app/db_password", 2),
                          ("apple/y", 1), ("other/x", 1)])
        for e in o:
            self.assertEqual(list(e.keys()), ["path", "version", "keep", "updated_at", "deleted"])
            self.assertRegex(e["updated_at"], kwtest.TIME_RE)
            self.assertIs(e["deleted"], False)
        self.assertEqual([e["path"] for e in self.listing("app/")],
                         ["app/api.key", "app/db_password"])
        self.assertEqual([e["path"] for e in self.listing("other")], ["other/x"])
        self.assertEqual(self.listing("nothing/"), [])
        text = self.ok("secret", "list").out
        lines = text.splitlines()
        self.assertEqual(lines[0].split(), ["PATH", "VERSION", "UPDATED", "DELETED"])
        self.assertEqual([l.split()[:2] for l in lines[1:]],
                         [["app/api.key", "1"], ["app/db_password", "2"],
                          ["apple/y", "1"], ["other/x", "1"]])
        listed = text + json.dumps(o) + self.ok("secret", "list", "app/").out
        for v in values.values():
            self.assertNotIn(v, listed)

    def test_get_adds_a_newline_only_on_a_terminal(self):
        self.put("app/t", "tty-value")
        self.assertEqual(self.get("app/t"), b"tty-value")  # a pipe: exactly
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([BIN, "--db", self.url, "secret", "get", "app/t"],
                                 stdin=subprocess.DEVNULL, stdout=slave,
                                 stderr=subprocess.PIPE, env=child_env(), cwd=self.tmp)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                out += chunk
            err = p.communicate(timeout=60)[1]
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.replace(b"\r\n", b"\n"), b"tty-value\n")


# ---- 2. the master key --------------------------------------------------------


class MasterKeyTest(SecretsCase):
    MASTER = False

    def test_no_master_key_anywhere_says_how_to_make_one(self):
        self.expect(self.kw("secret", "put", "app/x", input="v\n"), 3, out="",
                    err_has=("no master key", "keyward master-key init", "KEYWARD_MASTER_KEY"))
        self.expect(self.kw("secret", "get", "app/x"), 3, err_has="master-key init")
        self.expect(self.kw("run", "--prefix", "app", "--", "true"), 3,
                    err_has="master-key init")
        self.expect(self.kw("run", "--", "true", env={"X": "kw://app/x"}), 3,
                    err_has="master-key init")
        # a run that needs no secret needs no master key
        self.expect(self.kw("run", "--", "true", env={"X": "plain"}), 0)
        self.assertFalse(os.path.exists(self.master_file))
        # nothing was written
        self.assertEqual(self.listing(), [])

    def test_init_makes_a_0600_file_and_never_overwrites(self):
        hexkey = self.make_master()
        st = os.lstat(self.master_file)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(self.pepper_path) as f:
            self.assertNotEqual(hexkey, f.read().strip())
        before = self.file_digest(self.master_file)
        self.expect(self.kw("master-key", "init"), 1, err_has="exists already")
        self.assertEqual(self.file_digest(self.master_file), before)
        self.assertEqual(stat.S_IMODE(os.stat(self.master_file).st_mode), 0o600)
        # and it is the key the secrets use
        self.put("app/x", "under the file key")
        self.assertEqual(self.get("app/x", env={"KEYWARD_MASTER_KEY": hexkey}),
                         b"under the file key")
        self.expect(self.kw("master-key", "init", "extra"), 2)

    def test_another_master_key_is_refused(self):
        hexkey = self.make_master()
        self.put("app/x", "sealed")
        other = pysecrets.token_hex(32)
        for cmd in (("secret", "get", "app/x"), ("run", "--prefix", "app", "--", "true")):
            self.expect(self.kw(*cmd, env={"KEYWARD_MASTER_KEY": other}), 3,
                        err_has="not the master key")
        r = self.kw("secret", "put", "app/y", input="v", env={"KEYWARD_MASTER_KEY": other})
        self.expect(r, 3, err_has="not the master key")
        self.expect(self.kw("secret", "get", "app/y"), 1)  # nothing written
        self.expect(self.kw("secret", "get", "app/x", env={"KEYWARD_MASTER_KEY": "abcd"}), 3,
                    err_has="64 hex")
        # KEYWARD_MASTER_KEY (the right one) wins over a failing command
        self.assertEqual(self.get("app/x", env={"KEYWARD_MASTER_KEY": hexkey.upper(),
                                                "KEYWARD_MASTER_KEY_CMD": "false"}),
                         b"sealed")

    def test_master_key_cmd(self):
        hexkey = self.make_master()
        self.put("app/x", "via command")
        keep = self.write("kms-answer", hexkey + "\nsecond line ignored\n")
        os.unlink(self.master_file)  # the command alone must do
        env = {"KEYWARD_MASTER_KEY_CMD": "cat '%s'" % keep}
        self.assertEqual(self.get("app/x", env=env), b"via command")
        self.put("app/y", "written via command", env=env)
        self.assertEqual(self.get("app/y", env={"KEYWARD_MASTER_KEY": hexkey}),
                         b"written via command")
        # the command wins over the file
        self.make_master()  # a new, different key in <db>.master
        self.assertEqual(self.get("app/x", env=env), b"via command")
        self.expect(self.kw("secret", "get", "app/x"), 3, err_has="not the master key")
        # a failing command, or one that prints no key
        self.expect(self.kw("secret", "get", "app/x", env={"KEYWARD_MASTER_KEY_CMD": "false"}),
                    3, err_has="KEYWARD_MASTER_KEY_CMD")
        self.expect(self.kw("secret", "get", "app/x",
                            env={"KEYWARD_MASTER_KEY_CMD": "echo nothex"}),
                    3, err_has="KEYWARD_MASTER_KEY_CMD")

    def test_master_key_file_others_can_read_is_refused(self):
        self.make_master()
        self.put("app/x", "v")
        os.chmod(self.master_file, 0o644)
        self.expect(self.kw("secret", "get", "app/x"), 3, err_has="0600")
        self.expect(self.kw("secret", "put", "app/x", input="w"), 3, err_has="0600")
        os.chmod(self.master_file, 0o640)
        self.expect(self.kw("secret", "get", "app/x"), 3, err_has="0600")
        os.chmod(self.master_file, 0o600)
        self.assertEqual(self.get("app/x"), b"v")
        # a symbolic link is refused too
        real = self.db + ".master.real"
        os.rename(self.master_file, real)
        os.symlink(real, self.master_file)
        self.expect(self.kw("secret", "get", "app/x"), 3)


# ---- 3. check-and-set -----------------------------------------------------------


class CheckAndSetTest(SecretsCase):
    def test_check_and_set(self):
        self.assertEqual(self.put("app/c", "one", "--cas", "0"), 1)
        before = self.history("app/c")
        self.expect(self.kw("secret", "put", "app/c", "--cas", "0", input="two"), 1,
                    err_has="check-and-set")
        self.assertEqual(self.history("app/c"), before)
        self.assertEqual(self.put("app/c", "two", "--cas", "1"), 2)
        before = self.history("app/c")
        for stale in ("1", "3", "99"):
            self.expect(self.kw("secret", "put", "app/c", "--cas", stale, input="lost"), 1,
                        err_has="check-and-set")
        self.assertEqual(self.history("app/c"), before)
        self.assertEqual(self.get("app/c"), b"two")
        self.expect(self.kw("secret", "put", "app/c", "--cas", "-1", input="x"), 2)
        self.expect(self.kw("secret", "put", "app/c", "--cas", "one", input="x"), 2)
        # a deleted secret counts as not existing: --cas 0 writes it again
        self.ok("secret", "rm", "app/c")
        self.expect(self.kw("secret", "put", "app/c", "--cas", "2", input="x"), 1,
                    err_has="check-and-set")
        self.assertEqual(self.put("app/c", "three", "--cas", "0"), 3)
        self.assertEqual(self.get("app/c"), b"three")


# ---- 4. rm / undelete / destroy ---------------------------------------------------


class DeleteDestroyTest(SecretsCase):
    def test_rm_and_undelete(self):
        self.put("app/r", "kept")
        self.put("app/other", "o")
        self.ok("secret", "rm", "app/r")
        self.expect(self.kw("secret", "get", "app/r"), 1, err_has="deleted")
        self.expect(self.kw("secret", "get", "app/r", "--version", "1"), 1)
        self.assertEqual([e["path"] for e in self.listing()], ["app/other"])
        gone = self.listing("--deleted")
        self.assertEqual([(e["path"], e["deleted"]) for e in gone],
                         [("app/other", False), ("app/r", True)])
        self.expect(self.kw("secret", "rm", "app/r"), 1)  # deleted already
        self.expect(self.kw("secret", "rm", "app/none"), 1)
        self.ok("secret", "undelete", "app/r")
        self.assertEqual(self.get("app/r"), b"kept")
        self.assertEqual([e["path"] for e in self.listing()], ["app/other", "app/r"])
        self.expect(self.kw("secret", "undelete", "app/r"), 1)  # not deleted
        # a put brings a deleted secret back, as its next version
        self.ok("secret", "rm", "app/r")
        self.assertEqual(self.put("app/r", "new"), 2)
        self.assertEqual(self.get("app/r"), b"new")
        self.assertEqual(self.get("app/r", "--version", "1"), b"kept")

    def test_destroy_one_version(self):
        self.put("app/d", "first")
        self.put("app/d", "second")
        self.expect(self.kw("secret", "destroy", "app/d"), 2, err_has="--version")
        self.expect(self.kw("secret", "destroy", "app/d", "--version", "0"), 2)
        self.expect(self.kw("secret", "rm", "app/d", "--version", "1"), 2)
        self.assertEqual(self.get("app/d", "--version", "1"), b"first")
        self.ok("secret", "destroy", "app/d", "--version", "1")
        self.expect(self.kw("secret", "get", "app/d", "--version", "1"), 1,
                    err_has="destroyed")
        self.assertEqual(self.get("app/d"), b"second")
        self.assertEqual(self.get("app/d", "--version", "2"), b"second")
        h = self.history("app/d")
        self.assertEqual([(v["version"], v["destroyed"]) for v in h], [(2, False), (1, True)])
        self.expect(self.kw("secret", "destroy", "app/d", "--version", "1"), 1)
        self.expect(self.kw("secret", "destroy", "app/d", "--version", "9"), 1)
        # destroying the current version leaves nothing to read
        self.ok("secret", "destroy", "app/d", "--version", "2")
        self.expect(self.kw("secret", "get", "app/d"), 1)
        self.assertEqual(self.put("app/d", "third"), 3)
        self.assertEqual(self.get("app/d"), b"third")


# ---- 5. bad input -----------------------------------------------------------------


class BadInputTest(SecretsCase):
    def test_value_in_argv_is_refused_and_never_echoed(self):
        for value in ("hunter2", "S3cr3t-Value!", "p@ss word", "x" * 40):
            r = self.kw("secret", "put", "app/x", value, input="from stdin")
            self.expect(r, 2)
            self.assertNotIn(value, r.err, "a value given in argv is echoed on stderr")
            self.assertNotIn(value, r.out)
        self.expect(self.kw("secret", "get", "app/x"), 1)  # nothing written

    def test_bad_paths(self):
        for path in ("a//b", "../x", "a/../b", "./a", "a/", "/a", "a b", "a\\b", "é",
                     "p" * 257, "a/" * 150 + "z"):
            r = self.kw("secret", "put", path, input="v")
            self.expect(r, 2, err_has="not a secret path")
            self.expect(self.kw("secret", "get", path), 2)
        self.assertEqual(self.put("p" * 256, "longest"), 1)
        self.assertEqual(self.put("A-Z_a.z/0-9/..x/.y", "odd but valid"), 1)
        self.expect(self.kw("secret", "put", input="v"), 2, err_has="path")
        self.assertEqual(len(self.listing()), 2)

    def test_empty_value(self):
        self.expect(self.kw("secret", "put", "app/e", input=""), 2, err_has="no value")
        self.expect(self.kw("secret", "put", "app/e"), 2, err_has="no value")  # /dev/null
        self.expect(self.kw("secret", "put", "app/e", input="\n"), 2, err_has="no value")
        f = self.write("empty", "")
        self.expect(self.kw("secret", "put", "app/e", "--file", f), 2, err_has="no value")
        self.assertEqual(self.listing(), [])

    def test_value_size_limit(self):
        """A value is 1 to 64,000 bytes (docs/secrets.md); the trailing
        newline that is dropped does not count."""
        self.expect(self.kw("secret", "put", "app/big", input="a" * 64001), 2,
                    err_has="64000")
        self.expect(self.kw("secret", "put", "app/big", input="a" * 70000 + "\n"), 2)
        self.expect(self.kw("secret", "get", "app/big"), 1)
        self.assertEqual(self.put("app/max", "b" * 64000), 1)
        self.assertEqual(self.get("app/max"), b"b" * 64000)
        # 64000 bytes and the trailing newline that is dropped: a 64000-byte value
        r = self.kw("secret", "put", "app/max", input="c" * 64000 + "\r\n")
        self.assertEqual(r.code, 0, "a 64000-byte value with its trailing newline is "
                                    "refused as too large: " + r.err)
        self.assertEqual(self.get("app/max"), b"c" * 64000)


# ---- 6-8. keyward run ---------------------------------------------------------------


class RunEnvTest(SecretsCase):
    def setUp(self):
        super().setUp()
        self.v = {"app/db_password": ["pw-one", "pw-two"], "app/api.key": ["ak"],
                  "app/sub/dir-name": ["nested"], "other/x": ["ox"], "apple/y": ["ay"]}
        for p, vals in self.v.items():
            for val in vals:
                self.put(p, val)

    def test_prefix_grants_exactly_the_secrets_under_it(self):
        env, _ = self.run_env("--prefix", "app")
        self.assert_env(env, {"DB_PASSWORD": "pw-two", "API_KEY": "ak",
                              "SUB_DIR_NAME": "nested"})
        env, _ = self.run_env("--prefix", "app/")
        self.assert_env(env, {"DB_PASSWORD": "pw-two", "API_KEY": "ak",
                              "SUB_DIR_NAME": "nested"})
        env, _ = self.run_env("--prefix", "app/sub")
        self.assert_env(env, {"DIR_NAME": "nested"})
        env, _ = self.run_env("--prefix", "other", "--prefix", "apple")
        self.assert_env(env, {"X": "ox", "Y": "ay"})
        # a deleted secret is not granted
        self.ok("secret", "rm", "app/api.key")
        env, _ = self.run_env("--prefix", "app")
        self.assert_env(env, {"DB_PASSWORD": "pw-two", "SUB_DIR_NAME": "nested"})
        # prefixes come last: they win over the environment
        env, _ = self.run_env("--prefix", "other", env={"X": "from the environment"})
        self.assert_env(env, {"X": "ox"}, env={"X": "from the environment"})

    def test_references_in_the_environment(self):
        given = {"DB": "kw://app/db_password", "OLD": "kw://app/db_password#1",
                 "NEW": "kw://app/db_password#2", "NESTED": "kw://app/sub/dir-name",
                 "LIT1": "plain value", "LIT2": "KW://app/db_password",
                 "LIT3": "https://example.com/kw://app/db_password",
                 "LIT4": "kw:/app/db_password", "LIT5": " kw://app/db_password",
                 "EMPTY": ""}
        env, _ = self.run_env(env=given)
        expect = {"DB": "pw-two", "OLD": "pw-one", "NEW": "pw-two", "NESTED": "nested"}
        self.assert_env(env, expect, env=given)
        for k in ("LIT1", "LIT2", "LIT3", "LIT4", "LIT5", "EMPTY"):
            self.assertEqual(env[k], given[k])
        # no secret: the command runs with the environment as it is
        env, _ = self.run_env(env={"LIT1": "plain"})
        self.assert_env(env, {}, env={"LIT1": "plain"})

    def test_env_file(self):
        f = self.write("app.env", (
            "# a comment\n"
            "\n"
            "export DB=kw://app/db_password\n"
            "  OLD=\"kw://app/db_password#1\"\n"
            "KEY='kw://app/api.key'   # after the quote\n"
            "LITERAL='kw is not a reference = fine'\n"
            "DQ=\"a \\\"quoted\\\" \\\\ value\\tTAB\\nNL\"\n"
            "UNQUOTED=spaces inside   \n"
            "EQ=a=b=c\n"
            "EMPTY=\n"
            "CRLF=windows\r\n"
            "OVERRIDE=from the file\n"))
        given = {"OVERRIDE": "from the environment", "KEEP": "kept"}
        env, r = self.run_env("--env-file", f, env=given)
        self.assert_env(env, {
            "DB": "pw-two", "OLD": "pw-one", "KEY": "ak",
            "LITERAL": "kw is not a reference = fine",
            "DQ": 'a "quoted" \\ value\tTAB\nNL', "UNQUOTED": "spaces inside",
            "EQ": "a=b=c", "EMPTY": "", "CRLF": "windows", "OVERRIDE": "from the file",
        }, env=given)
        # files in order, later ones win; then the prefixes
        g = self.write("later.env", "OVERRIDE=later\nX=kw://apple/y\n")
        env, r = self.run_env("--env-file", f, "--env-file", g, "--prefix", "other")
        self.assertEqual((env["OVERRIDE"], env["X"], env["DB"]), ("later", "ox", "pw-two"))

    def test_the_child_never_gets_keyward_own_secrets(self):
        with open(self.pepper_path) as f:
            pepper = f.read().strip()
        given = {"KEYWARD_MASTER_KEY": self.master_hex, "KEYWARD_PEPPER": pepper,
                 "DB": "kw://app/db_password"}
        env, _ = self.run_env("--prefix", "other", env=given)
        self.assert_env(env, {"DB": "pw-two", "X": "ox"}, env=given)
        for name in ("KEYWARD_MASTER_KEY", "KEYWARD_PEPPER"):
            self.assertNotIn(name, env)
        self.assertNotIn(self.master_hex, json.dumps(env))
        self.assertNotIn(pepper, json.dumps(env))
        # with no secret to read, nothing is opened, and still none is passed on
        given = {name: pysecrets.token_hex(32) for name in OWN}
        given["KEYWARD_MASTER_KEY_CMD"] = "false"
        given["KEEP_ME"] = "yes"
        env, _ = self.run_env(env=given)
        self.assert_env(env, {}, env=given)
        self.assertEqual(env["KEEP_ME"], "yes")
        for name in OWN:
            self.assertNotIn(name, env)

    def test_a_nul_byte_cannot_become_a_variable(self):
        code, _, err = self.raw("secret", "put", "nul/v", input=b"a\x00b")
        self.assertEqual(code, 0, err)
        marker = os.path.join(self.tmp, "started")
        r = self.kw("run", "--prefix", "nul", "--", "touch", marker)
        self.expect(r, 1, err_has=("NUL", NOT_STARTED, "V"))
        self.assertFalse(os.path.exists(marker))


    def test_two_secrets_making_one_name_start_nothing(self):
        """app/a.b and app/a-b both make A_B: an error naming both, never a
        silent choice; and a secret at the prefix itself is not under it."""
        self.put("dup/a.b", "one")
        self.put("dup/a-b", "two")
        marker = os.path.join(self.tmp, "started")
        r = self.kw("run", "--prefix", "dup", "--", "touch", marker)
        self.expect(r, 2, err_has=("dup/a-b", "dup/a.b", "A_B", NOT_STARTED))
        self.assertNotIn("one", r.err)
        self.assertNotIn("two", r.err)
        self.assertFalse(os.path.exists(marker))
        self.put("app", "the prefix itself")
        env, _ = self.run_env("--prefix", "app")
        self.assert_env(env, {"DB_PASSWORD": "pw-two", "API_KEY": "ak",
                              "SUB_DIR_NAME": "nested"})


class RunProcessTest(SecretsCase):
    def popen(self, *cmd, env=None):
        p = subprocess.Popen([BIN, "--db", self.url, "run", "--"] + list(cmd),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(env), cwd=self.tmp)
        out, err = p.communicate(timeout=60)
        err = err.decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        return p, out.decode(), err

    def test_exec_in_place_same_pid(self):
        p, out, err = self.popen("sh", "-c", "echo $$")
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(int(out.strip()), p.pid)

    def test_exit_status_passes_through(self):
        for status in (0, 1, 7, 42):
            p, _, err = self.popen("sh", "-c", "exit %d" % status)
            self.assertEqual(p.returncode, status, err)

    def test_signal_passes_through(self):
        p, _, err = self.popen("sh", "-c", "kill -TERM $$")
        self.assertEqual(p.returncode, -15, err)
        p, _, err = self.popen("sh", "-c", "kill -KILL $$")
        self.assertEqual(p.returncode, -9, err)

    def test_no_command_or_not_found(self):
        self.expect(self.kw("run"), 2, err_has="no command")
        self.expect(self.kw("run", "--prefix", "app"), 2, err_has="no command")
        self.expect(self.kw("run", "--", self.tmp + "/no-such-program"), 127,
                    err_has="cannot be started")


class RunFailureTest(SecretsCase):
    """Anything that fails stops the start: the command is never run."""

    def setUp(self):
        super().setUp()
        self.put("app/db_password", "pw-one")
        self.put("app/db_password", "pw-two")
        self.put("app/gone", "deleted-value")
        self.ok("secret", "rm", "app/gone")
        self.marker = os.path.join(self.tmp, "started")

    def refused(self, *args, env=None, code=None, err_has=(), says_not_started=True,
                secret_text=()):
        """keyward run args -- touch MARKER fails, and MARKER is not made."""
        r = self.kw("run", *args, "--", "touch", self.marker, env=env)
        self.assertNotEqual(r.code, 0, r)
        if code is not None:
            self.assertEqual(r.code, code, r)
        if says_not_started:
            self.assertIn(NOT_STARTED, r.err, r)
        if isinstance(err_has, str):
            err_has = (err_has,)
        for phrase in err_has:
            self.assertIn(phrase, r.err, r)
        self.assertFalse(os.path.exists(self.marker), "the command was started: %r" % r)
        for value in ("pw-one", "pw-two", "deleted-value") + tuple(secret_text):
            self.assertNotIn(value, r.err + r.out, r)
        return r

    def test_failures_start_nothing(self):
        cases = [
            ("missing secret", (), {"MISSING_REF": "kw://app/none"}, 1, ("MISSING_REF",)),
            ("deleted secret", (), {"DELETED_REF": "kw://app/gone"}, 1, ("DELETED_REF",)),
            ("version too new", (), {"V9": "kw://app/db_password#9"}, 1, ("V9",)),
            ("malformed reference", (), {"BAD_REF": "kw://a//b"}, 2, ("BAD_REF",)),
            ("version 0", (), {"V0": "kw://app/db_password#0"}, 2, ("V0",)),
            ("empty reference", (), {"NOPATH": "kw://"}, 2, ("NOPATH",)),
            ("empty prefix", ("--prefix", "nothing"), None, 1, ("nothing",)),
            ("deleted only", ("--prefix", "app/gone"), None, 1, ()),
            ("good and bad", ("--prefix", "app"), {"BAD_REF": "kw://app/none"}, 1,
             ("BAD_REF",)),
            ("missing env file", ("--env-file", self.tmp + "/none.env"), None, 4,
             ("none.env",)),
        ]
        for name, args, env, code, phrases in cases:
            with self.subTest(name):
                self.refused(*args, env=env, code=code, err_has=phrases)

    def test_no_master_key_starts_nothing(self):
        os.unlink(self.master_file)
        # (this message is kwc_fail's: it does not add "the command was not started")
        self.refused(env={"DB": "kw://app/db_password"}, code=3, err_has="master key",
                     says_not_started=False)
        self.refused("--prefix", "app", code=3, err_has="master key", says_not_started=False)
        self.refused("--prefix", "app", env={"KEYWARD_MASTER_KEY": pysecrets.token_hex(32)},
                     code=3, err_has="not the master key", says_not_started=False)

    def test_destroyed_version_starts_nothing(self):
        self.ok("secret", "destroy", "app/db_password", "--version", "1")
        self.refused(env={"OLD": "kw://app/db_password#1"}, code=1, err_has="OLD")

    def test_bad_env_file_line_starts_nothing(self):
        # every bad file also holds a value that must not be echoed
        cases = [
            ("name with a space", "A=val-SECRETTOKEN\nB C=val-SECRETTOKEN\n", "line 2"),
            ("no equals sign", "A=1\n# c\nSECRETTOKEN\n", "line 3"),
            ("digit first", "1A=SECRETTOKEN\n", "line 1"),
            ("unterminated quote", "A=1\nB=\"SECRETTOKEN\n", "line 2"),
            ("text after the quote", "A='SECRETTOKEN' y\n", "line 1"),
            ("unknown escape", "A=\"SECRETTOKEN\\q\"\n", "line 1"),
            ("malformed reference", "A=SECRETTOKEN\nREF=kw://a//b\n", "REF"),
            ("missing secret", "A=SECRETTOKEN\nREF=kw://app/none\n", "REF"),
        ]
        for name, text, phrase in cases:
            with self.subTest(name):
                f = self.write("bad.env", text)
                self.refused("--env-file", f, err_has=phrase, secret_text=("SECRETTOKEN",))


# ---- 9-10. secrecy and audit -------------------------------------------------------------


class SecrecyAuditTest(SecretsCase):
    def test_values_never_stored_or_logged_in_the_clear(self):
        v1 = "kwv1-" + pysecrets.token_hex(24)
        v2 = "kwv2-" + pysecrets.token_hex(24)
        self.put("app/token", v1)
        f = self.write("v2.txt", v2 + "\n")
        self.ok("secret", "put", "app/token", "--file", f)
        os.unlink(f)
        self.assertEqual(self.get("app/token"), v2.encode())
        self.assertEqual(self.get("app/token", "--version", "1"), v1.encode())
        env, r = self.run_env("--prefix", "app", env={"OLD": "kw://app/token#1"})
        self.assertEqual((env["TOKEN"], env["OLD"]), (v2, v1))
        outs = [self.ok("secret", "list").out, self.ok("secret", "list", "--json").out,
                self.ok("secret", "list", "--deleted").out,
                self.ok("secret", "history", "app/token").out,
                self.ok("secret", "history", "app/token", "--json").out]
        self.ok("secret", "rm", "app/token")
        self.ok("secret", "undelete", "app/token")
        # a failing start says nothing of the values either
        self.expect(self.kw("run", "--prefix", "app", "--", self.tmp + "/nope"), 127)
        audit_json = self.ok("audit", "list", "--all", "--json").out
        outs.append(audit_json)
        outs.append(self.ok("audit", "list", "--all").out)
        outs.append(self.ok("audit", "verify").out)
        data = self.db_bytes()
        self.assertTrue(data)
        for v in (v1, v2):
            self.assertNotIn(v.encode(), data, "a value is in the database in the clear")
            for i, text in enumerate(outs):
                self.assertNotIn(v, text, "a value in output %d" % i)
            for err in self.errs:
                self.assertNotIn(v, err, "a value on stderr")
        # nor is the master key in the database
        self.assertNotIn(self.master_hex.encode(), data)
        self.assertNotIn(bytes.fromhex(self.master_hex), data)
        self.assertNotIn(self.master_hex, audit_json)

    def test_audit_one_record_per_operation(self):
        base = len(self.audit())
        self.put("app/a", "v1")
        self.put("app/a", "v2")
        self.get("app/a")
        self.get("app/a", "--version", "1")
        self.ok("secret", "list")
        self.ok("secret", "history", "app/a")
        self.ok("secret", "rm", "app/a")
        self.ok("secret", "undelete", "app/a")
        self.ok("secret", "destroy", "app/a", "--version", "1")
        self.put("other/b", "b")
        self.run_env("--prefix", "app", env={"B": "kw://other/b"})
        records = self.audit()[base:]
        got = [(r["action"], r["target"], r["result"], r["detail"].get("version"))
               for r in records]
        self.assertEqual(got, [
            ("secret.write", "app/a", "ok", 1),
            ("secret.write", "app/a", "ok", 2),
            ("secret.read", "app/a", "ok", 2),
            ("secret.read", "app/a", "ok", 1),
            ("secret.delete", "app/a", "ok", None),
            ("secret.undelete", "app/a", "ok", None),
            ("secret.destroy", "app/a", "ok", 1),
            ("secret.write", "other/b", "ok", 1),
            ("secret.read", "other/b", "ok", 1),  # the reference, then the prefix
            ("secret.read", "app/a", "ok", 2),
        ])
        for r in records:
            self.assertRegex(r["at"], kwtest.TIME_RE)
            self.assertEqual(r["actor"], "cli")
        filtered = self.ok_json("audit", "list", "--all", "--json",
                                "--action", "secret.read", "--target", "app/a")["records"]
        self.assertEqual([r["detail"]["version"] for r in filtered], [2, 1, 2])
        r = self.ok("audit", "verify")
        self.assertIn("intact", r.out)
        o = self.ok_json("audit", "verify", "--json")
        self.assertIs(o["intact"], True)
        self.assertEqual(o["records"], base + len(got))


if __name__ == "__main__":
    import unittest
    unittest.main()


class KeepTest(SecretsCase):
    def test_put_keep(self):
        """--keep N: the secret keeps its last N versions, from now on."""
        for i in range(1, 5):
            self.put("kp/x", "v%d" % i)
        r = self.kw("secret", "put", "kp/x", "--keep", "2", input="v5")
        self.assertEqual(r.code, 0, r)
        versions = [v["version"] for v in json.loads(self.kw("secret", "history", "kp/x",
                                                             "--json").out)]
        self.assertEqual(versions, [5, 4])
        listed = json.loads(self.kw("secret", "list", "kp/", "--json").out)
        self.assertEqual(listed[0]["keep"], 2)
        for bad in ("0", "101", "x"):
            self.expect(self.kw("secret", "put", "kp/x", "--keep", bad, input="v6"), 2)
        self.assertEqual([v["version"] for v in json.loads(
            self.kw("secret", "history", "kp/x", "--json").out)], [5, 4])


class RunMaskTest(SecretsCase):
    """keyward run --mask: the command runs as a child, and every secret
    value of 4 bytes or more in its stdout and stderr becomes ***."""

    def popen(self, *args):
        p = subprocess.Popen([BIN, "--db", self.url, "run", "--mask"] + list(args),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(None), cwd=self.tmp)
        out, err = p.communicate(timeout=60)
        err = err.decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        return p, out.decode("utf-8", "replace"), err

    def setUp(self):
        super().setUp()
        self.value = "m4sk-" + pysecrets.token_hex(8)
        self.put("mk/api_key", self.value)
        self.put("mk/longer", self.value + "-and-more")
        self.put("mk/pin", "42")

    def test_masked_in_stdout_and_stderr(self):
        p, out, err = self.popen("--prefix", "mk", "--", "sh", "-c",
                                 'echo "a=$API_KEY b=$LONGER pin=$PIN"; '
                                 'echo "e=$API_KEY$API_KEY" >&2; exit 3')
        self.assertEqual(p.returncode, 3, err)
        self.assertEqual(out, "a=*** b=*** pin=42\n")  # the longer value as one; 2 bytes shown
        self.assertIn("e=******", err)
        self.assertNotIn(self.value, out + err)

    def test_a_value_across_reads_is_masked(self):
        script = ("import os, sys; v = os.environ['API_KEY']; "
                  "sys.stdout.write('x' * 65530 + v + 'y' + v[:3]); sys.stdout.flush()")
        p, out, err = self.popen("--prefix", "mk", "--", "python3", "-c", script)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, "x" * 65530 + "***y" + self.value[:3])
        self.assertNotIn(self.value, out)

    def test_signal_passes_through(self):
        p, _, err = self.popen("--prefix", "mk", "--", "sh", "-c", "kill -TERM $$")
        self.assertEqual(p.returncode, -15, err)

    def test_not_started(self):
        marker = os.path.join(self.tmp, "started")
        p, _, err = self.popen("--prefix", "mk/none", "--", "touch", marker)
        self.assertNotEqual(p.returncode, 0)
        self.assertFalse(os.path.exists(marker))
        p, _, err = self.popen("--", "no-such-command-here")
        self.assertEqual(p.returncode, 127, err)
