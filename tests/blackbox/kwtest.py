"""Helpers for the black-box tests: drive the real `keyward` binary.

The binary comes from $KEYWARD_BIN (ctest sets it). Every test case gets its
own temporary directory and passes --db sqlite:<tmp>/k.db explicitly. Keys
are never passed in argv: they go through stdin or --key-env.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import zlib

BIN = os.environ.get("KEYWARD_BIN", "")

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*_[0-9A-Za-z]{50}$")
ID_RE = re.compile(r"^[0-9A-Za-z]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

RECORD_FIELDS = [
    "id", "prefix", "owner", "name", "scopes", "meta", "status", "created_at",
    "expires_at", "last_used_at", "enabled", "revoked_at", "credits",
    "ratelimit", "rotated_from", "rotated_to",
]
VERIFY_FIELDS = ["valid", "code", "id", "owner", "scopes", "meta",
                 "expires_at", "remaining", "ratelimit"]

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ERROR: UndefinedBehaviorSanitizer")

# Inherited KEYWARD_* settings would make the tests depend on the caller.
_SCRUB = ("KEYWARD_DB", "KEYWARD_PEPPER", "KEYWARD_PEPPER_FILE",
          "KEYWARD_SEED_SIGNING_SECRET", "KEYWARD_SEED_MASTER_KEY")


def base62(n, width):
    out = ""
    for _ in range(width):
        n, r = divmod(n, 62)
        out = BASE62[r] + out
    assert n == 0
    return out


def check_of(head):
    """The 6-char check of '<prefix>_<id><secret>' (SPEC: CRC-32, base62)."""
    return base62(zlib.crc32(head.encode("ascii")) & 0xFFFFFFFF, 6)


def make_key(prefix, id_, secret):
    head = "%s_%s%s" % (prefix, id_, secret)
    return head + check_of(head)


def split_key(key):
    """(prefix, id, secret, check) of a keyward key."""
    body = key[-50:]
    assert key[-51] == "_", key
    return key[:-51], body[:12], body[12:44], body[44:]


class Result:
    def __init__(self, args, code, out, err):
        self.args, self.code, self.out, self.err = args, code, out, err

    def __iter__(self):  # (code, out, err) = run(...)
        return iter((self.code, self.out, self.err))

    def __repr__(self):
        return "keyward %s -> exit %d\n--- stdout:\n%s--- stderr:\n%s" % (
            " ".join(self.args), self.code, self.out, self.err)


def run(args, input=None, env=None, cwd=None, timeout=60):
    """Run keyward with args; returns Result(code, out, err) as text.

    input: str or bytes for stdin (stdin is /dev/null when None).
    env: extra variables (None values remove a variable).
    Fails the calling test on any sanitizer report.
    """
    if not BIN:
        raise unittest.SkipTest("KEYWARD_BIN is not set")
    e = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    if isinstance(input, str):
        input = input.encode()
    p = subprocess.run([BIN] + list(args), input=input,
                       stdin=subprocess.DEVNULL if input is None else None,
                       capture_output=True, env=e, cwd=cwd, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    r = Result(list(args), p.returncode, out, err)
    for mark in SANITIZER_MARKS:
        if mark in err:
            raise AssertionError("sanitizer report:\n%r" % r)
    return r


class KwTestCase(unittest.TestCase):
    """A temp directory with a database path; helpers to drive keyward."""

    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kwbb-")
        self.db = os.path.join(self.tmp, "k.db")
        self.url = "sqlite:" + self.db
        self.pepper_path = self.db + ".pepper"
        self.keys = []  # every key this test made: must never leak
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # ---- running ----------------------------------------------------------

    def kw(self, *args, input=None, env=None, db=True):
        """keyward --db <our db> args..."""
        pre = ["--db", self.url] if db else []
        return run(pre + list(args), input=input, env=env, cwd=self.tmp)

    def expect(self, r, code, out=None, err_has=()):
        """Assert the exit status (and stdout exactly, and stderr phrases)."""
        self.assertEqual(r.code, code, r)
        if out is not None:
            self.assertEqual(r.out, out, r)
        if isinstance(err_has, str):
            err_has = (err_has,)
        for phrase in err_has:
            self.assertIn(phrase, r.err, r)
        return r

    def ok(self, *args, **kw):
        r = self.kw(*args, **kw)
        self.assertEqual(r.code, 0, r)
        return r

    def ok_json(self, *args, **kw):
        r = self.ok(*args, **kw)
        self.assertTrue(r.out.endswith("\n"), r)
        return json.loads(r.out)

    # ---- setup ------------------------------------------------------------

    def init(self):
        """Initialise the database; returns the admin key."""
        r = self.ok("init")
        lines = r.out.split("\n")
        keys = [l for l in lines if KEY_RE.match(l)]
        self.assertEqual(len(keys), 1, r)
        self.keys.append(keys[0])
        return keys[0]

    def create(self, *args):
        """key create --json args...; returns (key, id)."""
        o = self.ok_json("key", "create", "--json", *args)
        key = o["key"]
        self.assertRegex(key, KEY_RE)
        self.keys.append(key)
        return key, o["id"]

    def create_json(self, *args):
        o = self.ok_json("key", "create", "--json", *args)
        self.keys.append(o["key"])
        return o

    def verify(self, key, *args, env=None):
        """key verify args... with the key on stdin; returns the Result."""
        return self.kw("key", "verify", *args, input=key, env=env)

    def assert_code(self, key, code, *args):
        r = self.verify(key, *args)
        self.expect(r, 0 if code == "VALID" else 1, code + "\n")
        return r

    def verify_json(self, key, *args):
        r = self.verify(key, "--json", *args)
        self.assertIn(r.code, (0, 1), r)
        o = json.loads(r.out)
        self.assertEqual(list(o.keys()), VERIFY_FIELDS, r)
        self.assertEqual(o["valid"], o["code"] == "VALID", r)
        self.assertEqual(r.code, 0 if o["valid"] else 1, r)
        return o

    def show(self, id_):
        return self.ok_json("key", "show", id_, "--json")

    def list_all(self):
        return self.ok_json("key", "list", "--all", "--json")["keys"]

    def audit(self):
        return self.ok_json("audit", "list", "--all", "--json")["records"]

    # ---- secrecy ----------------------------------------------------------

    def assert_no_keys_in(self, text, what="output"):
        for key in self.keys:
            self.assertNotIn(key, text, "a key appears in %s" % what)
            if KEY_RE.match(key):
                secret = split_key(key)[2]
                self.assertNotIn(secret, text,
                                 "a key's secret appears in %s" % what)

    def db_bytes(self):
        out = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = self.db + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out += f.read()
        return out

    def assert_no_keys_in_db(self):
        data = self.db_bytes()
        self.assertTrue(data)
        for key in self.keys:
            self.assertNotIn(key.encode(), data, "a key is stored in the db")
            if KEY_RE.match(key):
                secret = split_key(key)[2].encode()
                self.assertNotIn(secret, data, "a secret is stored in the db")

    def file_digest(self, path):
        import hashlib
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
