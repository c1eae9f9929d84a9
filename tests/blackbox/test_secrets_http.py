"""Black-box: secrets over HTTP (docs/http-api.md, the /v1/secrets rows;
docs/secrets.md, "Over HTTP, and least privilege"): GET /v1/secrets?prefix=,
GET, PUT and DELETE /v1/secrets/{path} on a real `keyward serve` on
127.0.0.1 (kwserver.py), with path scopes (secrets:read:<path>,
secrets:write:<path>, grants ending in "/*", secrets:read:*, secrets:*),
the master key at start, the audit trail, and the CLI (`keyward secret`)
on the same database.

Each class starts one server on its own database. Its master key is a
<db>.master from `keyward master-key init` unless the class tests the
master key itself; KEYWARD_MASTER_KEY and KEYWARD_MASTER_KEY_CMD are
removed from every process unless a case sets them. Application keys are
made with `keyward key create --json`.
"""

import base64
import json
import os
import secrets as pysecrets
import subprocess
import tempfile
import threading
import time
import unittest

import kwserver
import kwtest
from kwserver import HOST, LISTEN_RE, SANITIZER_MARKS, TIME_RE, Server, ServerTestCase

NO_MASTER = {"KEYWARD_MASTER_KEY": None, "KEYWARD_MASTER_KEY_CMD": None}
ITEM_FIELDS_TEXT = ["path", "version", "value"]
ITEM_FIELDS_B64 = ["path", "version", "value_base64"]
LIST_FIELDS = ["path", "version", "updated_at"]
ALLOW_ITEM = "GET, PUT, DELETE, POST"


def b64(data):
    return base64.b64encode(data).decode("ascii")


def cli_env(extra=None):
    e = dict(NO_MASTER)
    e.update(extra or {})
    return e


def run_raw(url, args, input=None, env=None, cwd=None):
    """keyward --db url args with bytes in and out: (code, out bytes, err)."""
    if not kwtest.BIN:
        raise unittest.SkipTest("KEYWARD_BIN is not set")
    e = {k: v for k, v in os.environ.items() if k not in kwtest._SCRUB}
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    for k, v in cli_env(env).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    p = subprocess.run([kwtest.BIN, "--db", url] + list(args), input=input,
                       stdin=subprocess.DEVNULL if input is None else None,
                       capture_output=True, env=e, cwd=cwd, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        if mark in err:
            raise AssertionError("sanitizer report from keyward %s:\n%s" % (args, err))
    return p.returncode, p.stdout, err


class SecretsServer(Server):
    """kwserver.Server with a master key chosen by the test and the server's
    stdout kept in a file.

    master: "file" (`keyward master-key init` before the start) or None (no
    <db>.master). env: added to the server's environment (which has no
    KEYWARD_* variable otherwise). before(srv): runs after `init`, before
    `serve`.
    """

    def __init__(self, threads=2, extra=(), master="file", env=None, before=None):
        if not kwtest.BIN:
            raise unittest.SkipTest("KEYWARD_BIN is not set")
        self.tmp = tempfile.mkdtemp(prefix="kwsechttp-")
        self.db = os.path.join(self.tmp, "k.db")
        self.url = "sqlite:" + self.db
        self.env = kwserver._env()  # no KEYWARD_* at all
        self.env.update(env or {})
        p = subprocess.run([kwtest.BIN, "--db", self.url, "init", "--json"],
                           env=kwserver._env(), cwd=self.tmp, capture_output=True,
                           text=True, timeout=60)
        self._check_sanitizers(p.stderr, "init")
        if p.returncode != 0:
            raise RuntimeError("keyward init failed: %s" % p.stderr)
        self.admin = json.loads(p.stdout)["key"]
        self.admin_id = kwtest.split_key(self.admin)[1]
        if master == "file":
            code, _, err = run_raw(self.url, ["master-key", "init"], cwd=self.tmp)
            if code != 0:
                raise RuntimeError("keyward master-key init failed: %s" % err)
        if before is not None:
            before(self)
        self.out_path = os.path.join(self.tmp, "serve.stdout")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [kwtest.BIN, "--db", self.url, "serve", "--listen", HOST + ":0",
             "--threads", str(threads)] + list(extra),
            env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.PIPE)
        self._err = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(30) or self.port is None:
            self.proc.kill()
            self.proc.wait(10)
            self._out.close()
            raise RuntimeError("server did not start:\n" + self.stderr())

    def stop(self):
        try:
            return super().stop()
        finally:
            self._out.close()

    def cleanup(self):
        self._out.close()
        if self.proc.poll() is not None and not self.proc.stderr.closed:
            self._reader.join(10)  # a server that died: its pipe too
            self.proc.stderr.close()
        super().cleanup()

    def stdout(self):
        self._out.flush()
        with open(self.out_path, "rb") as f:
            return f.read()

    def cli(self, *args, input=None, env=None):
        """The CLI on this server's database, text in and out (kwtest.run)."""
        return kwtest.run(["--db", self.url] + list(args), input=input,
                          env=cli_env(env), cwd=self.tmp)

    def raw(self, *args, input=None, env=None):
        return run_raw(self.url, args, input=input, env=env, cwd=self.tmp)

    def db_bytes(self):
        out = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = self.db + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out += f.read()
        return out


class SecretsCase(ServerTestCase):
    """One SecretsServer per class (restarted, like ServerTestCase, if a
    test kills it)."""

    threads = 2
    master = "file"
    server_env = None

    @classmethod
    def before_start(cls, srv):
        """Runs between `init` and `serve` (subclasses)."""

    @classmethod
    def _start(cls):
        cls.srv = SecretsServer(cls.threads, cls.serve_args, master=cls.master,
                                env=cls.server_env, before=cls.before_start)
        cls.admin = cls.srv.admin
        cls.admin_id = cls.srv.admin_id
        cls.keys_made = [cls.admin]
        cls.fixtures()

    # ---- helpers ------------------------------------------------------------

    def cli_ok(self, *args, input=None, env=None):
        r = self.srv.cli(*args, input=input, env=env)
        self.assertEqual(r.code, 0, r)
        return r

    def app_key(self, *scopes):
        """A key made with `keyward key create --json --scope S...`; returns
        (key, id) once the running server knows it."""
        args = ["key", "create", "--json"]
        for s in scopes:
            args += ["--scope", s]
        o = json.loads(self.cli_ok(*args).out)
        key, id_ = o["key"], o["id"]
        self.assertEqual(o["scopes"], list(scopes), o)
        type(self).keys_made.append(key)
        # a CLI change reaches the server within 100 ms (docs/http-api.md):
        # wait for it with the root key's verify (no auth.fail record)
        deadline = time.time() + 5
        while True:
            st, _, d = self.call("POST", "/v1/keys/verify", {"key": key})
            if (st == 200 and d["code"] == "VALID") or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual((st, d["code"]), (200, "VALID"), "the server never learnt of the key")
        return key, id_

    def put(self, path, value=None, value_base64=None, cas=None, auth=None):
        body = {}
        if value is not None:
            body["value"] = value
        if value_base64 is not None:
            body["value_base64"] = value_base64
        if cas is not None:
            body["cas"] = cas
        return self.call("PUT", "/v1/secrets/" + path, body, auth=auth)

    def put_ok(self, path, value, want_version, auth=None):
        st, h, d = self.put(path, value, auth=auth)
        self.assertEqual(st, 201 if want_version == 1 else 200, (h, d))
        self.assertEqual(d, {"path": path, "version": want_version})
        return d

    def get_secret(self, path, query="", auth=None):
        return self.call("GET", "/v1/secrets/" + path + query, auth=auth)

    def value_of(self, path, query="", auth=None):
        """GET: the 200 body, checked for its exact shape."""
        d = self.expect(self.get_secret(path, query, auth), 200)
        self.assertIn(list(d.keys()), (ITEM_FIELDS_TEXT, ITEM_FIELDS_B64), d)
        self.assertEqual(d["path"], path)
        self.assertIsInstance(d["version"], int)
        return d

    def listing(self, query="", auth=None):
        d = self.expect(self.call("GET", "/v1/secrets" + query, auth=auth), 200)
        self.assertEqual(list(d.keys()), ["secrets"], d)
        for e in d["secrets"]:
            self.assertEqual(list(e.keys()), LIST_FIELDS, e)
            self.assertRegex(e["updated_at"], TIME_RE)
        return d["secrets"]

    def paths(self, query="", auth=None):
        return [e["path"] for e in self.listing(query, auth)]

    def audit_records(self):
        r = self.cli_ok("audit", "list", "--all", "--json")
        return json.loads(r.out)["records"]

    def refusals(self, key_id):
        """The scopes of the auth.fail records of this key, in order."""
        out = []
        for rec in self.audit_records():
            if rec["action"] == "auth.fail" and rec["actor"] == key_id:
                self.assertEqual(rec["target"], key_id, rec)
                self.assertEqual(rec["result"], "INSUFFICIENT_SCOPE", rec)
                out.append(rec["detail"]["scope"])
        return out

    def forbidden(self, got, scope):
        d = self.expect(got, 403, "forbidden")
        self.assertIn(scope, d["error"]["message"])
        return d


# ---- one server with a master key: the API itself ------------------------------


class SecretsApiTest(SecretsCase):
    """Round trips, check-and-set, delete, bad requests, secrecy, audit."""

    def test_round_trip_text_and_versions(self):
        st, h, d = self.put("rt/text", "v-one")
        self.assertEqual((st, d), (201, {"path": "rt/text", "version": 1}), h)
        self.assertEqual(list(d.keys()), ["path", "version"])
        st, h, d = self.put("rt/text", "v-two")
        self.assertEqual((st, d), (200, {"path": "rt/text", "version": 2}), h)
        d = self.value_of("rt/text")
        self.assertEqual(d, {"path": "rt/text", "version": 2, "value": "v-two"})
        self.assertEqual(list(d.keys()), ITEM_FIELDS_TEXT)
        self.assertEqual(self.value_of("rt/text", "?version=1"),
                         {"path": "rt/text", "version": 1, "value": "v-one"})
        self.assertEqual(self.value_of("rt/text", "?version=2"),
                         {"path": "rt/text", "version": 2, "value": "v-two"})
        # the CLI reads what HTTP wrote, byte for byte
        code, out, err = self.srv.raw("secret", "get", "rt/text")
        self.assertEqual((code, out), (0, b"v-two"), err)
        code, out, err = self.srv.raw("secret", "get", "rt/text", "--version", "1")
        self.assertEqual((code, out), (0, b"v-one"), err)
        # and HTTP reads what the CLI wrote on top
        code, out, err = self.srv.raw("secret", "put", "rt/text", input=b"v-three\n")
        self.assertEqual((code, out), (0, b"rt/text: version 3\n"), err)
        self.assertEqual(self.value_of("rt/text"),
                         {"path": "rt/text", "version": 3, "value": "v-three"})
        # upper case, digits, '_', '.', '-' are path characters
        self.put_ok("rt/Mixed_Case.v-2/X", "ok", 1)
        self.assertEqual(self.value_of("rt/Mixed_Case.v-2/X")["value"], "ok")

    def test_round_trip_binary_and_utf8_with_cli(self):
        blob = b"\x00\xffbin\x00ary\x01\xfe\x80 end\n"
        st, h, d = self.put("rt/bin", value_base64=b64(blob))
        self.assertEqual((st, d), (201, {"path": "rt/bin", "version": 1}), h)
        d = self.value_of("rt/bin")
        self.assertEqual(d, {"path": "rt/bin", "version": 1, "value_base64": b64(blob)})
        self.assertEqual(base64.b64decode(d["value_base64"]), blob)
        # not UTF-8 (no NUL either): value_base64 as well
        latin = b"caf\xe9 \xff\xfe"
        self.put("rt/latin1", value_base64=b64(latin))
        self.assertEqual(self.value_of("rt/latin1"),
                         {"path": "rt/latin1", "version": 1, "value_base64": b64(latin)})
        # valid UTF-8 with non-ASCII characters: "value", sent as base64 or not
        text = "p\u00e4ssw\u00f6rd \u2713 \u65e5\u672c\u8a9e \U0001F511"
        self.put_ok("rt/utf8", text, 1)
        self.assertEqual(self.value_of("rt/utf8"),
                         {"path": "rt/utf8", "version": 1, "value": text})
        st, _, _ = self.put("rt/utf8b", value_base64=b64(text.encode()))
        self.assertEqual(st, 201)
        self.assertEqual(self.value_of("rt/utf8b"),
                         {"path": "rt/utf8b", "version": 1, "value": text})
        # the CLI reads them back exactly
        for path, want in (("rt/bin", blob), ("rt/latin1", latin),
                           ("rt/utf8", text.encode()), ("rt/utf8b", text.encode())):
            code, out, err = self.srv.raw("secret", "get", path)
            self.assertEqual((code, out), (0, want), (path, err))
        # CLI-written values over HTTP: binary as value_base64, text as value
        cli_blob = b"\x00cli\xff\x00"
        code, _, err = self.srv.raw("secret", "put", "rt/cli_bin", input=cli_blob + b"\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.value_of("rt/cli_bin"),
                         {"path": "rt/cli_bin", "version": 1, "value_base64": b64(cli_blob)})
        cli_text = "from the CLI: gr\u00fc\u00dfe \u00e9t\u00e9"
        code, _, err = self.srv.raw("secret", "put", "rt/cli_text",
                                    input=cli_text.encode() + b"\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.value_of("rt/cli_text"),
                         {"path": "rt/cli_text", "version": 1, "value": cli_text})

    def test_value_size_bounds(self):
        big = "x" * 64000
        self.put_ok("size/max", big, 1)
        self.assertEqual(self.value_of("size/max")["value"], big)
        st, h, d = self.put("size/over", "y" * 64001)
        self.expect((st, h, d), 400, "bad_request")
        self.assertIn("64000", d["error"]["message"])
        self.expect(self.get_secret("size/over"), 404, "not_found")
        one = b64(b"\x00")
        self.expect(self.put("size/one", value_base64=one), 201)
        self.assertEqual(self.value_of("size/one")["value_base64"], one)
        # a body over 64 KiB is refused before it is read as JSON
        self.expect(self.put("size/over", "z" * 70000), 413, "payload_too_large")
        self.expect(self.get_secret("size/over"), 404, "not_found")

    def test_check_and_set(self):
        self.put_ok("cas/a", "first", 1)
        # cas 0: only a new secret
        d = self.expect(self.put("cas/a", "not new", cas=0), 409, "conflict")
        self.assertIn("cas/a", d["error"]["message"])
        self.assertEqual(self.value_of("cas/a"),
                         {"path": "cas/a", "version": 1, "value": "first"})
        self.put_ok("cas/a", "second", 2)
        # stale and future versions: 409, nothing written
        for stale in (1, 3, 99):
            with self.subTest(cas=stale):
                self.expect(self.put("cas/a", "stale %d" % stale, cas=stale), 409, "conflict")
                self.assertEqual(self.value_of("cas/a"),
                                 {"path": "cas/a", "version": 2, "value": "second"})
                self.expect(self.get_secret("cas/a", "?version=3"), 404, "not_found")
        # the right one
        st, h, d = self.put("cas/a", "third", cas=2)
        self.assertEqual((st, d), (200, {"path": "cas/a", "version": 3}), h)
        self.assertEqual(self.value_of("cas/a")["value"], "third")
        # cas 0 on a path that does not exist: a first version
        st, h, d = self.put("cas/new", "fresh", cas=0)
        self.assertEqual((st, d), (201, {"path": "cas/new", "version": 1}), h)
        self.expect(self.put("cas/new", "again", cas=0), 409, "conflict")
        self.assertEqual(self.value_of("cas/new")["value"], "fresh")

    def test_delete_is_soft_and_cli_undelete_restores(self):
        self.put_ok("del/a", "keep me", 1)
        self.put_ok("del/a", "keep me 2", 2)
        self.put_ok("del/b", "neighbour", 1)
        self.assertEqual(self.paths("?prefix=del/"), ["del/a", "del/b"])
        st, h, d = self.call("DELETE", "/v1/secrets/del/a")
        self.assertEqual((st, d), (200, {"path": "del/a", "deleted": True}), h)
        self.assertEqual(list(d.keys()), ["path", "deleted"])
        self.expect(self.get_secret("del/a"), 404, "not_found")
        self.expect(self.get_secret("del/a", "?version=1"), 404, "not_found")
        self.assertEqual(self.paths("?prefix=del/"), ["del/b"])
        self.assertNotIn("del/a", self.paths())
        self.expect(self.call("DELETE", "/v1/secrets/del/a"), 409, "conflict")
        self.expect(self.call("DELETE", "/v1/secrets/del/never"), 404, "not_found")
        # the CLI sees it deleted, and brings it back
        lst = json.loads(self.cli_ok("secret", "list", "del/", "--deleted", "--json").out)
        self.assertEqual([(e["path"], e["deleted"]) for e in lst],
                         [("del/a", True), ("del/b", False)])
        self.cli_ok("secret", "undelete", "del/a")
        self.assertEqual(self.value_of("del/a"),
                         {"path": "del/a", "version": 2, "value": "keep me 2"})
        self.assertEqual(self.value_of("del/a", "?version=1")["value"], "keep me")
        self.assertEqual(self.paths("?prefix=del/"), ["del/a", "del/b"])
        # a deleted secret counts as not existing for cas 0 (docs/secrets.md)
        self.expect(self.call("DELETE", "/v1/secrets/del/b"), 200)
        st, h, d = self.put("del/b", "back", cas=0)
        self.assertEqual((st, d), (200, {"path": "del/b", "version": 2}), h)
        self.assertEqual(self.value_of("del/b")["value"], "back")
        recs = [(r["action"], r["target"]) for r in self.audit_records()
                if r["target"] in ("del/a", "del/b") and r["action"] != "secret.read"]
        self.assertIn(("secret.delete", "del/a"), recs)
        self.assertIn(("secret.undelete", "del/a"), recs)

    def test_bad_paths(self):
        self.put_ok("bp/x", "x", 1)
        for path in ("/v1/secrets/a//b", "/v1/secrets/a%20b", "/v1/secrets/bp/x/",
                     "/v1/secrets//bp/x", "/v1/secrets/a:b",
                     "/v1/secrets/a*", "/v1/secrets/" + "p" * 257):
            for method in ("GET", "PUT", "DELETE"):
                with self.subTest(method=method, path=path[:60]):
                    body = {"value": "nope"} if method == "PUT" else None
                    d = self.expect(self.call(method, path, body), 400, "bad_request")
                    self.assertIn("secret path", d["error"]["message"])
        # dot segments are resolved by the URL normalisation: "/v1/secrets/.."
        # is "/v1/", no route (docs/http-api.md: 404, no such route)
        for path in ("/v1/secrets/..", "/v1/secrets/%2e%2e", "/v1/secrets/a/../.."):
            with self.subTest(path=path):
                self.expect(self.call("GET", path), 404, "not_found")
        self.expect(self.call("GET", "/v1/secrets/"), 404, "not_found")
        # nothing was written by any of them
        self.assertEqual(self.paths("?prefix=bp/"), ["bp/x"])
        self.assertEqual(self.paths("?prefix=a"), [])
        self.assert_healthy()

    def test_nul_in_a_path_is_not_another_path(self):
        """"nul/x%00" (a NUL after the path) is not a secret path; it must not
        read, write or delete "nul/x"."""
        self.put_ok("nul/x", "untouched", 1)
        for method in ("GET", "PUT", "DELETE"):
            for suffix in ("%00", "%00/y"):
                with self.subTest(method=method, path="nul/x" + suffix):
                    body = {"value": "via NUL"} if method == "PUT" else None
                    st, h, d = self.call(method, "/v1/secrets/nul/x" + suffix, body)
                    self.assertIn(st, (400, 404), "%s /v1/secrets/nul/x%s: %s %s"
                                  % (method, suffix, st, d))
                    self.assertNotIn("untouched", json.dumps(d))
        self.assertEqual(self.value_of("nul/x"),
                         {"path": "nul/x", "version": 1, "value": "untouched"})

    def test_dot_segments_cannot_escape_a_grant(self):
        self.put_ok("esc/app/x", "in", 1)
        self.put_ok("esc/other/x", "outside", 1)
        key, id_ = self.app_key("secrets:read:esc/app/*", "secrets:write:esc/app/*")
        self.assertEqual(self.value_of("esc/app/x", auth=key)["value"], "in")
        for path in ("esc/app/../other/x", "esc/app/%2e%2e/other/x", "esc/app/..%2Fother/x",
                     "esc/app/%2E%2E%2Fother%2Fx"):
            with self.subTest(path=path):
                st, h, d = self.call("GET", "/v1/secrets/" + path, auth=key)
                self.assertIn(st, (400, 403, 404), (path, d))
                self.assertNotIn("outside", json.dumps(d))
                st, h, d = self.call("PUT", "/v1/secrets/" + path, {"value": "hijack"}, auth=key)
                self.assertIn(st, (400, 403, 404), (path, d))
        self.assertEqual(self.value_of("esc/other/x"),
                         {"path": "esc/other/x", "version": 1, "value": "outside"})

    def test_methods_not_allowed(self):
        for method in ("PATCH", "OPTIONS"):
            for auth in (self.admin, ""):
                with self.subTest(method=method, auth=bool(auth)):
                    st, h, d = self.req(method, "/v1/secrets/mna/x", {"value": "p"},
                                        auth=auth or None)
                    self.expect((st, h, d), 405, "method_not_allowed")
                    self.assertEqual(h.get("allow"), ALLOW_ITEM)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method, path="/v1/secrets"):
                st, h, d = self.call(method, "/v1/secrets", {"value": "p"})
                self.expect((st, h, d), 405, "method_not_allowed")
                self.assertEqual(h.get("allow"), "GET")
        self.expect(self.get_secret("mna/x"), 404, "not_found")

    def test_history_destroy_undelete(self):
        """GET ?history lists the versions (never a value); DELETE
        ?version=N destroys one; POST ?undelete brings a deleted secret back;
        each behind the path's read or write scope."""
        self.put_ok("hdu/x", "v-one", 1)
        self.put_ok("hdu/x", "v-two", 2)
        st, _, d = self.call("GET", "/v1/secrets/hdu/x?history")
        self.assertEqual(st, 200, d)
        self.assertEqual([v["version"] for v in d["versions"]], [2, 1])
        self.assertNotIn("v-one", json.dumps(d))
        st, _, d = self.call("DELETE", "/v1/secrets/hdu/x?version=1")
        self.assertEqual((st, d), (200, {"path": "hdu/x", "version": 1, "destroyed": True}))
        self.expect(self.get_secret("hdu/x", "?version=1"), 404, "not_found")
        self.assertEqual(self.value_of("hdu/x")["value"], "v-two")
        st, _, d = self.call("GET", "/v1/secrets/hdu/x?history")
        self.assertEqual([v["destroyed"] for v in d["versions"]], [False, True])
        self.expect(self.call("DELETE", "/v1/secrets/hdu/x?version=1"), 404, "not_found")
        self.expect(self.call("DELETE", "/v1/secrets/hdu/x?version=0"), 400, "bad_request")
        st, _, d = self.call("DELETE", "/v1/secrets/hdu/x")
        self.assertEqual((st, d), (200, {"path": "hdu/x", "deleted": True}))
        self.expect(self.get_secret("hdu/x"), 404, "not_found")
        self.expect(self.call("POST", "/v1/secrets/hdu/x"), 400, "bad_request")
        st, _, d = self.call("POST", "/v1/secrets/hdu/x?undelete")
        self.assertEqual((st, d), (200, {"path": "hdu/x", "deleted": False}))
        self.assertEqual(self.value_of("hdu/x")["value"], "v-two")
        self.expect(self.call("POST", "/v1/secrets/hdu/x?undelete"), 409, "conflict")
        # scopes: history is a read; destroy and undelete are writes
        reader, _ = self.app_key("secrets:read:hdu/*")
        st, _, _ = self.req("GET", "/v1/secrets/hdu/x?history", auth=reader)
        self.assertEqual(st, 200)
        for method, url in (("DELETE", "/v1/secrets/hdu/x?version=2"),
                            ("POST", "/v1/secrets/hdu/x?undelete")):
            st, _, d = self.req(method, url, auth=reader)
            self.assertEqual(st, 403, (method, url, d))
        self.assertEqual(self.value_of("hdu/x")["value"], "v-two")

    def test_keep_over_http(self):
        """"keep" in a PUT: the secret keeps that many versions from now on."""
        for i in range(1, 4):
            self.put_ok("kph/x", "v%d" % i, i)
        st, _, d = self.call("PUT", "/v1/secrets/kph/x", {"value": "v4", "keep": 1})
        self.assertEqual(st, 200, d)
        st, _, d = self.call("GET", "/v1/secrets/kph/x?history")
        self.assertEqual([v["version"] for v in d["versions"]], [4])
        for bad in (0, 101, "2", 1.5):
            st, _, d = self.call("PUT", "/v1/secrets/kph/x", {"value": "v5", "keep": bad})
            self.assertEqual(st, 400, (bad, d))
        self.assertEqual(self.value_of("kph/x")["version"], 4)

    def test_bad_put_bodies_write_nothing(self):
        self.put_ok("bad/p", "orig", 1)
        cases = [
            ("not json", b"not json", "invalid_json"),
            ("empty body", b"", "invalid_json"),
            ("an array", b"[]", "invalid_json"),
            ("a string", b'"v"', "invalid_json"),
            ("both", {"value": "a", "value_base64": b64(b"a")}, "bad_request"),
            ("neither", {}, "bad_request"),
            ("only cas", {"cas": 1}, "bad_request"),
            ("unknown field", {"value": "a", "ttl": 5}, "bad_request"),
            ("value a number", {"value": 5}, "bad_request"),
            ("value null", {"value": None}, "bad_request"),
            ("value an object", {"value": {"a": "b"}}, "bad_request"),
            ("value_base64 a number", {"value_base64": 5}, "bad_request"),
            ("empty value", {"value": ""}, "bad_request"),
            ("empty value_base64", {"value_base64": ""}, "bad_request"),
            ("64001 bytes", {"value": "v" * 64001}, "bad_request"),
            ("64001 bytes of UTF-8",  # sent unescaped: the body is under 64 KiB
             json.dumps({"value": "\u00e9" * 32000 + "v"}, ensure_ascii=False).encode(),
             "bad_request"),
            ("bad base64", {"value_base64": "!!not base64!!"}, "bad_request"),
            ("base64 without padding", {"value_base64": "YQ"}, "bad_request"),
            ("url-safe base64", {"value_base64": "_-8="}, "bad_request"),
            ("cas negative", {"value": "a", "cas": -1}, "bad_request"),
            ("cas a string", {"value": "a", "cas": "1"}, "bad_request"),
            ("cas a float", {"value": "a", "cas": 1.5}, "bad_request"),
            ("cas true", {"value": "a", "cas": True}, "bad_request"),
            ("cas null", {"value": "a", "cas": None}, "bad_request"),
            ("duplicate value", b'{"value":"a","value":"b"}', "invalid_json"),
            ("NUL in value", b'{"value":"a\\u0000b"}', "invalid_json"),
        ]
        for what, body, code in cases:
            for path in ("bad/p", "bad/fresh"):
                with self.subTest(what=what, path=path):
                    d = self.expect(self.call("PUT", "/v1/secrets/" + path, body), 400, code)
                    self.assertTrue(d["error"]["message"])
                    self.assertEqual(self.value_of("bad/p"),
                                     {"path": "bad/p", "version": 1, "value": "orig"})
                    self.expect(self.get_secret("bad/fresh"), 404, "not_found")
        self.assertEqual(self.paths("?prefix=bad/"), ["bad/p"])
        writes = [r for r in self.audit_records()
                  if r["action"] == "secret.write" and r["target"].startswith("bad/")]
        self.assertEqual(len(writes), 1, writes)

    def test_missing_version_and_missing_secret(self):
        self.put_ok("mv/a", "one", 1)
        d = self.expect(self.get_secret("mv/a", "?version=2"), 404, "not_found")
        self.assertNotIn("one", d["error"]["message"])
        self.expect(self.get_secret("mv/a", "?version=9223372036854775807"), 404, "not_found")
        self.expect(self.get_secret("mv/none"), 404, "not_found")
        self.expect(self.get_secret("mv/none", "?version=1"), 404, "not_found")
        self.assertEqual(self.value_of("mv/a", "?version=1")["value"], "one")
        # other query parameters are ignored
        self.assertEqual(self.value_of("mv/a", "?foo=bar")["value"], "one")

    def test_nothing_in_the_clear_and_every_read_audited(self):
        v1 = "kwleak1-" + pysecrets.token_hex(16)
        v2 = "kwleak2-" + pysecrets.token_hex(16)
        bin3 = b"\x00kwleak3-" + pysecrets.token_hex(16).encode()
        self.put_ok("clear/v", v1, 1)
        self.put_ok("clear/v", v2, 2)
        self.expect(self.put("clear/bin", value_base64=b64(bin3)), 201)
        key, app_id = self.app_key("secrets:read:clear/*")
        other, other_id = self.app_key("secrets:read:elsewhere/*")
        self.assertEqual(self.value_of("clear/v")["value"], v2)
        self.assertEqual(self.value_of("clear/v", "?version=1")["value"], v1)
        self.assertEqual(self.value_of("clear/v", auth=key)["value"], v2)
        self.assertEqual(self.value_of("clear/bin", auth=key)["value_base64"], b64(bin3))
        self.forbidden(self.get_secret("clear/v", auth=other), "secrets:read:clear/v")
        self.listing(auth=key)
        # every GET is a secret.read with the path as target and the key as actor
        recs = self.audit_records()
        reads = [(r["actor"], r["detail"]) for r in recs
                 if r["action"] == "secret.read" and r["target"] == "clear/v"]
        self.assertEqual(reads, [(self.admin_id, {"version": 2}),
                                 (self.admin_id, {"version": 1}),
                                 (app_id, {"version": 2})])
        reads = [(r["actor"], r["detail"], r["client"]) for r in recs
                 if r["action"] == "secret.read" and r["target"] == "clear/bin"]
        self.assertEqual(reads, [(app_id, {"version": 1}, "127.0.0.1")])
        writes = [(r["actor"], r["detail"]) for r in recs
                  if r["action"] == "secret.write" and r["target"] == "clear/v"]
        self.assertEqual(writes, [(self.admin_id, {"version": 1}),
                                  (self.admin_id, {"version": 2})])
        self.assertEqual(self.refusals(other_id), ["secrets:read:clear/v"])
        # and no value anywhere but the answers
        needles = []
        for v in (v1.encode(), v2.encode(), bin3[1:]):
            needles += [v, b64(v).encode(), v.hex().encode()]
        st, _, audit_http = self.call("GET", "/v1/audit?limit=1000")
        self.assertEqual(st, 200)
        st, _, metrics = self.req("GET", "/metrics")
        self.assertEqual(st, 200)
        places = {
            "the database files": self.srv.db_bytes(),
            "the server's stderr": self.srv.stderr().encode(),
            "the server's stdout": self.srv.stdout(),
            "keyward audit list --json": self.cli_ok("audit", "list", "--all",
                                                     "--json").out.encode(),
            "GET /v1/audit": json.dumps(audit_http).encode(),
            "GET /metrics": metrics if isinstance(metrics, bytes) else str(metrics).encode(),
            "keyward secret list": self.cli_ok("secret", "list", "--json").out.encode(),
        }
        self.assertTrue(places["the database files"])
        for where, data in places.items():
            for needle in needles:
                self.assertNotIn(needle, data, "a secret value is in %s" % where)

    def test_cache_control_no_store(self):
        key, _ = self.app_key("keys:read")
        self.put_ok("cc/a", "cached?", 1)
        answers = {
            "PUT 201": self.put("cc/b", "b"),
            "PUT 200": self.put("cc/a", "again"),
            "GET 200": self.get_secret("cc/a"),
            "GET ?version 200": self.get_secret("cc/a", "?version=1"),
            "PUT base64 201": self.put("cc/bin", value_base64=b64(b"\x00")),
            "GET base64 200": self.get_secret("cc/bin"),
            "list 200": self.call("GET", "/v1/secrets?prefix=cc/"),
            "list (no secrets scope) 200": self.call("GET", "/v1/secrets", auth=key),
            "DELETE 200": self.call("DELETE", "/v1/secrets/cc/b"),
            "GET 404": self.get_secret("cc/b"),
            "PUT 400": self.put("cc/a", ""),
            "PUT 409": self.put("cc/a", "x", cas=0),
            "DELETE 409": self.call("DELETE", "/v1/secrets/cc/b"),
            "GET 400 path": self.call("GET", "/v1/secrets/a//b"),
            "GET 403": self.get_secret("cc/a", auth=key),
            "GET 401": self.req("GET", "/v1/secrets/cc/a"),
            "list 401": self.req("GET", "/v1/secrets"),
            "POST 405": self.call("POST", "/v1/secrets/cc/a", {"value": "x"}),
        }
        for what, (st, h, d) in answers.items():
            with self.subTest(what=what):
                self.assertEqual(h.get("cache-control"), "no-store", (st, h, d))
                self.assertIn("application/json", h.get("content-type", ""))
        self.assertEqual(answers["GET 200"][0], 200)
        self.assertEqual(answers["GET 403"][0], 403)

    def test_paths_longer_than_a_scope_over_http(self):
        """docs/secrets.md: paths are 1-256 characters; a grant of one exact
        path works up to 114 characters, deeper paths are granted by a
        prefix. So the root key and prefix grants must reach every path."""
        p114 = "lp/" + "a" * 111
        p115 = "lp/" + "b" * 112
        p200 = "lp/" + "c" * 100 + "/" + "d" * 96
        p256 = "lp/" + "e" * 253
        self.assertEqual([len(p) for p in (p114, p115, p200, p256)], [114, 115, 200, 256])
        reader, _ = self.app_key("secrets:read:lp/*")
        writer, _ = self.app_key("secrets:write:lp/*")
        # written by the CLI first, so that reads are checked on their own
        for p in (p114, p115, p200, p256):
            code, _, err = self.srv.raw("secret", "put", p, input=b"cli-" + p[-3:].encode())
            self.assertEqual(code, 0, err)
        for p in (p114, p115, p200, p256):
            for who, auth in (("root key", None), ("secrets:read:lp/*", reader)):
                with self.subTest(op="GET", who=who, length=len(p)):
                    st, h, d = self.get_secret(p, auth=auth)
                    self.assertEqual(st, 200, "GET /v1/secrets/<%d-char path> with the %s: "
                                     "%s %s" % (len(p), who, st, d))
                    self.assertEqual(d, {"path": p, "version": 1, "value": "cli-" + p[-3:]})
            for who, auth in (("root key", None), ("secrets:write:lp/*", writer)):
                with self.subTest(op="PUT", who=who, length=len(p)):
                    st, h, d = self.put(p, "http-" + who, auth=auth)
                    self.assertEqual(st, 200, "PUT /v1/secrets/<%d-char path> with the %s: "
                                     "%s %s" % (len(p), who, st, d))
        with self.subTest(op="list"):
            # the listing shows them to the reader: it must be able to read them
            self.assertEqual(self.paths("?prefix=lp/", auth=reader),
                             sorted([p114, p115, p200, p256]))
        with self.subTest(op="DELETE", length=200):
            st, h, d = self.call("DELETE", "/v1/secrets/" + p200)
            self.assertEqual((st, d), (200, {"path": p200, "deleted": True}))


# ---- least privilege ----------------------------------------------------------


class LeastPrivilegeTest(SecretsCase):
    """Path scopes on GET, PUT, DELETE and the listing."""

    FIXTURE = {
        "app": "v-app-itself",
        "app/x": "v-app-x",
        "app/deep/y": "v-app-deep-y",
        "app/deep/z": "v-app-deep-z",
        "apple/x": "v-apple-x",
        "other/x": "v-other-x",
        "zz/app/x": "v-zz-app-x",
    }

    @classmethod
    def fixtures(cls):
        for path, value in cls.FIXTURE.items():
            st, h, d = cls.srv.request("PUT", "/v1/secrets/" + path, {"value": value},
                                       auth=cls.admin)
            if st != 201:
                raise AssertionError("fixture PUT %s: %s %s" % (path, st, d))

    def all_paths(self):
        return sorted(self.paths())

    def test_prefix_read_grant(self):
        key, id_ = self.app_key("secrets:read:app/*")
        for path in ("app/x", "app/deep/y", "app/deep/z"):
            d = self.value_of(path, auth=key)
            self.assertEqual(d["value"], self.FIXTURE[path])
            self.assertEqual(d, self.value_of(path))  # what the root key reads
        self.assertEqual(self.value_of("app/x", "?version=1", auth=key)["value"], "v-app-x")
        snapshot = self.value_of("app/x")
        before = len(self.refusals(id_))
        refused = []
        for path in ("other/x", "apple/x", "app", "zz/app/x", "apples/x"):
            with self.subTest(path=path):
                self.forbidden(self.get_secret(path, auth=key), "secrets:read:" + path)
                refused.append("secrets:read:" + path)
        for method in ("PUT", "DELETE"):
            with self.subTest(method=method):
                body = {"value": "overwrite"} if method == "PUT" else None
                self.forbidden(self.call(method, "/v1/secrets/app/x", body, auth=key),
                               "secrets:write:app/x")
                refused.append("secrets:write:app/x")
        self.forbidden(self.put("app/new", "n", auth=key), "secrets:write:app/new")
        refused.append("secrets:write:app/new")
        # nothing changed
        self.assertEqual(self.value_of("app/x"), snapshot)
        self.expect(self.get_secret("app/new"), 404, "not_found")
        # a missing secret under the grant is a 404, not a 403
        self.expect(self.get_secret("app/missing", auth=key), 404, "not_found")
        # every refusal is an auth.fail record naming the key and the scope
        self.assertEqual(self.refusals(id_)[before:], refused)

    def test_exact_write_grant(self):
        key, id_ = self.app_key("secrets:write:app/x")
        before = len(self.refusals(id_))
        v = self.value_of("app/x")["version"]
        st, h, d = self.put("app/x", "written by the writer", auth=key)
        self.assertEqual((st, d), (200, {"path": "app/x", "version": v + 1}), h)
        self.forbidden(self.get_secret("app/x", auth=key), "secrets:read:app/x")
        self.forbidden(self.put("app/y", "no", auth=key), "secrets:write:app/y")
        self.forbidden(self.put("app/x/sub", "no", auth=key), "secrets:write:app/x/sub")
        self.forbidden(self.put("app/deep/y", "no", auth=key), "secrets:write:app/deep/y")
        self.assertEqual(self.paths(auth=key), [])  # it may read nothing
        self.assertEqual(self.refusals(id_)[before:],
                         ["secrets:read:app/x", "secrets:write:app/y",
                          "secrets:write:app/x/sub", "secrets:write:app/deep/y"])
        self.expect(self.get_secret("app/y"), 404, "not_found")
        self.assertEqual(self.value_of("app/deep/y")["version"], 1)
        self.assertEqual(self.value_of("app/x"),
                         {"path": "app/x", "version": v + 1, "value": "written by the writer"})
        # put the fixture's value back for the other tests
        self.expect(self.put("app/x", "v-app-x"), 200)

    def test_listing_shows_only_readable_paths(self):
        key, _ = self.app_key("secrets:read:app/*")
        everything = self.all_paths()
        for p in self.FIXTURE:
            self.assertIn(p, everything)
        want = [p for p in everything if p.startswith("app/")]
        self.assertEqual(sorted(self.paths(auth=key)), want)
        got = self.paths(auth=key)
        for p in ("app", "apple/x", "other/x", "zz/app/x"):
            self.assertNotIn(p, got)
        self.assertEqual(self.paths("?prefix=app/deep", auth=key), ["app/deep/y", "app/deep/z"])
        self.assertEqual(self.paths("?prefix=app/deep/y", auth=key), ["app/deep/y"])
        self.assertEqual(self.paths("?prefix=app/", auth=key), want)
        self.assertEqual(self.paths("?prefix=app", auth=key), want)  # not "app", not apple/
        self.assertEqual(self.paths("?prefix=apple", auth=key), [])
        self.assertEqual(self.paths("?prefix=other/", auth=key), [])
        self.assertEqual(self.paths("?prefix=app%2Fdeep", auth=key),
                         ["app/deep/y", "app/deep/z"])
        # never a value, for anyone
        for auth in (key, None):
            st, h, d = self.call("GET", "/v1/secrets", auth=auth)
            self.assertEqual(st, 200)
            for v in self.FIXTURE.values():
                self.assertNotIn(v, json.dumps(d))
        # a deleted secret leaves the reader's listing too
        self.put_ok("app/gone", "g", 1)
        self.assertIn("app/gone", self.paths(auth=key))
        self.expect(self.call("DELETE", "/v1/secrets/app/gone"), 200)
        self.assertNotIn("app/gone", self.paths(auth=key))
        # and the listing needs a valid key
        self.expect(self.req("GET", "/v1/secrets"), 401, "unauthorized")
        self.expect(self.req("GET", "/v1/secrets", auth=key[:-1] + ("A" if key[-1] != "A"
                                                                     else "B")),
                    401, "unauthorized")

    def test_keys_without_a_secrets_scope(self):
        for scopes in ((), ("keys:read",), ("keys:*", "audit:read")):
            with self.subTest(scopes=scopes):
                key, id_ = self.app_key(*scopes)
                before = len(self.refusals(id_))
                self.assertEqual(self.listing(auth=key), [])
                self.assertEqual(self.listing("?prefix=app/", auth=key), [])
                self.forbidden(self.get_secret("app/x", auth=key), "secrets:read:app/x")
                self.forbidden(self.put("app/x", "no", auth=key), "secrets:write:app/x")
                self.forbidden(self.call("DELETE", "/v1/secrets/other/x", auth=key),
                               "secrets:write:other/x")
                self.assertEqual(self.refusals(id_)[before:],
                                 ["secrets:read:app/x", "secrets:write:app/x",
                                  "secrets:write:other/x"])
        self.assertEqual(self.value_of("other/x")["value"], "v-other-x")

    def test_read_star_and_secrets_star(self):
        rstar, rid = self.app_key("secrets:read:*")
        everything = self.all_paths()
        self.assertEqual(sorted(self.paths(auth=rstar)), everything)
        for path, value in self.FIXTURE.items():
            with self.subTest(path=path):
                self.assertEqual(self.value_of(path, auth=rstar)["value"],
                                 self.value_of(path)["value"])
        before = len(self.refusals(rid))
        self.forbidden(self.put("other/x", "no", auth=rstar), "secrets:write:other/x")
        self.forbidden(self.call("DELETE", "/v1/secrets/other/x", auth=rstar),
                       "secrets:write:other/x")
        self.assertEqual(self.refusals(rid)[before:],
                         ["secrets:write:other/x", "secrets:write:other/x"])
        # secrets:* reads and writes everything, and nothing else
        sstar, sid = self.app_key("secrets:*")
        self.assertEqual(sorted(self.paths(auth=sstar)), everything)
        self.assertEqual(self.value_of("apple/x", auth=sstar)["value"], "v-apple-x")
        self.put_ok("star/new", "by secrets:*", 1, auth=sstar)
        self.assertEqual(self.value_of("star/new", auth=rstar)["value"], "by secrets:*")
        self.expect(self.call("DELETE", "/v1/secrets/star/new", auth=sstar), 200)
        before = len(self.refusals(sid))
        self.forbidden(self.call("GET", "/v1/keys", auth=sstar), "keys:read")
        self.assertEqual(self.refusals(sid)[before:], ["keys:read"])
        # a write grant under a prefix
        wpre, _ = self.app_key("secrets:write:wp/*")
        self.put_ok("wp/a", "1", 1, auth=wpre)
        self.put_ok("wp/deep/b", "2", 1, auth=wpre)
        self.forbidden(self.put("wpx/a", "no", auth=wpre), "secrets:write:wpx/a")
        self.forbidden(self.put("wp", "no", auth=wpre), "secrets:write:wp")
        self.expect(self.call("DELETE", "/v1/secrets/wp/a", auth=wpre), 200)
        self.forbidden(self.get_secret("wp/deep/b", auth=wpre), "secrets:read:wp/deep/b")


# ---- query parameters (their own server: a bad one has crashed it) --------------


class QueryParamsTest(SecretsCase):
    """?version= and ?prefix= that are not valid: 400, and the server
    keeps answering."""

    threads = 1

    @classmethod
    def fixtures(cls):
        st, _, d = cls.srv.request("PUT", "/v1/secrets/q/x", {"value": "qv"}, auth=cls.admin)
        if st != 201:
            raise AssertionError("fixture: %s %s" % (st, d))

    def ensure_server(self):
        """ServerTestCase.setUp's restart, between sub-tests."""
        self.setUp()

    def bad_query(self, path, auth="admin", what="version"):
        self.ensure_server()
        st, h, d = self.req("GET", path, auth=self.admin if auth == "admin" else auth)
        self.assertEqual(st, 400, (path, h, d))
        self.assertEqual(d["error"]["code"], "bad_request", d)
        self.assertIn(what, d["error"]["message"])
        self.assertEqual(h.get("cache-control"), "no-store")
        self.assert_healthy()

    def test_version_zero(self):
        self.bad_query("/v1/secrets/q/x?version=0")

    def test_version_not_a_number(self):
        self.bad_query("/v1/secrets/q/x?version=abc")

    def test_version_other_malformed(self):
        for q in ("-1", "1.5", "", "1x", "%zz", "1%00"):
            with self.subTest(version=q):
                self.bad_query("/v1/secrets/q/x?version=" + q)

    def test_version_with_a_sign_or_a_blank(self):
        # "+" in a query is a space: none of these is "a whole number"
        for q in ("+1", "%2B1", "%201", "%091"):
            with self.subTest(version=q):
                self.bad_query("/v1/secrets/q/x?version=" + q)

    def test_prefix_bad_encoding_with_a_key(self):
        self.bad_query("/v1/secrets?prefix=%zz", what="prefix")

    def test_prefix_bad_encoding_without_a_key(self):
        # before authentication: anyone can send it
        self.bad_query("/v1/secrets?prefix=%zz", auth=None, what="prefix")

    def test_good_queries_still_work(self):
        self.assertEqual(self.value_of("q/x", "?version=1"),
                         {"path": "q/x", "version": 1, "value": "qv"})
        self.assertEqual(self.paths("?prefix=q%2F"), ["q/x"])
        self.assert_healthy()


# ---- the master key at start --------------------------------------------------


class NoMasterKeyTest(SecretsCase):
    """A server with no master key (no <db>.master, no KEYWARD_MASTER_KEY or
    _CMD) on a database that holds secrets: it starts, says so, and answers
    503 master_key for values."""

    master = None

    @classmethod
    def before_start(cls, srv):
        cls.mk = pysecrets.token_hex(32)
        code, _, err = srv.raw("secret", "put", "nm/x", input=b"sealed-value",
                               env={"KEYWARD_MASTER_KEY": cls.mk})
        if code != 0:
            raise RuntimeError("secret put: %s" % err)
        assert not os.path.exists(srv.db + ".master")

    def test_starts_and_says_so(self):
        self.assertNotIn("KEYWARD_MASTER_KEY", self.srv.env)
        self.assertFalse(os.path.exists(self.srv.db + ".master"))
        err = self.srv.stderr()
        self.assertIn("no master key", err)
        self.assertIn("503", err)
        self.assert_healthy()
        st, _, d = self.req("GET", "/readyz")
        self.assertEqual(st, 200, d)

    def test_values_answer_503_master_key(self):
        for what, got in (
                ("GET existing", self.get_secret("nm/x")),
                ("GET ?version", self.get_secret("nm/x", "?version=1")),
                ("PUT existing", self.put("nm/x", "new")),
                ("PUT new", self.put("nm/new", "new")),
                ("PUT base64", self.put("nm/new", value_base64=b64(b"\x00"))),
                ("PUT cas", self.put("nm/new", "new", cas=0))):
            with self.subTest(what=what):
                st, h, d = got
                d = self.expect(got, 503, "master_key")
                self.assertEqual(h.get("cache-control"), "no-store")
                self.assertNotIn("sealed-value", json.dumps(d))
        # a key without the scope is still refused first
        key, _ = self.app_key("keys:read")
        self.forbidden(self.get_secret("nm/x", auth=key), "secrets:read:nm/x")
        # nothing was written
        lst = json.loads(self.cli_ok("secret", "list", "--deleted", "--json").out)
        self.assertEqual([(e["path"], e["version"]) for e in lst], [("nm/x", 1)])
        code, out, err = self.srv.raw("secret", "get", "nm/x",
                                      env={"KEYWARD_MASTER_KEY": self.mk})
        self.assertEqual((code, out), (0, b"sealed-value"), err)
        self.assert_healthy()


class WrongMasterKeyTest(unittest.TestCase):
    """A master key that is given but is not the one the secrets are sealed
    under stops the start."""

    def serve_fails(self, srv, env, what):
        e = kwserver._env()
        e.update(env)
        try:
            p = subprocess.run([kwtest.BIN, "--db", srv.url, "serve", "--listen", HOST + ":0",
                                "--threads", "1"], env=e, cwd=srv.tmp,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        except subprocess.TimeoutExpired as ex:
            self.fail("%s: the server started (still running after 20 s): %r"
                      % (what, ex.stderr))
        err = p.stderr.decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        self.assertNotEqual(p.returncode, 0, "%s: exit 0\n%s" % (what, err))
        self.assertIsNone(LISTEN_RE.search(err), (what, err))
        self.assertIn("master key", err, what)
        return p.returncode, err

    def test_wrong_master_key_stops_the_start(self):
        right, wrong = pysecrets.token_hex(32), pysecrets.token_hex(32)

        def seed(srv):
            code, _, err = srv.raw("secret", "put", "wk/x", input=b"under the right key",
                                   env={"KEYWARD_MASTER_KEY": right})
            self.assertEqual(code, 0, err)

        srv = SecretsServer(1, master=None, env={"KEYWARD_MASTER_KEY": right}, before=seed)
        self.addCleanup(srv.cleanup)
        try:
            st, h, d = srv.request("GET", "/v1/secrets/wk/x", auth=srv.admin)
            self.assertEqual((st, d), (200, {"path": "wk/x", "version": 1,
                                             "value": "under the right key"}))
            self.assertNotIn("no master key", srv.stderr())
        finally:
            srv.stop()
        code, err = self.serve_fails(srv, {"KEYWARD_MASTER_KEY": wrong}, "KEYWARD_MASTER_KEY")
        self.assertIn("not the master key", err)
        self.serve_fails(srv, {"KEYWARD_MASTER_KEY": "abcd"}, "a malformed KEYWARD_MASTER_KEY")
        self.serve_fails(srv, {"KEYWARD_MASTER_KEY_CMD": "echo " + wrong},
                         "KEYWARD_MASTER_KEY_CMD")
        # the wrong key in <db>.master (mode 0600)
        path = srv.db + ".master"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(wrong + "\n")
        code, err = self.serve_fails(srv, {}, "<db>.master")
        self.assertIn("not the master key", err)
        # the value is still there under the right key
        code, out, err = srv.raw("secret", "get", "wk/x", env={"KEYWARD_MASTER_KEY": right})
        self.assertEqual((code, out), (0, b"under the right key"), err)


if __name__ == "__main__":
    unittest.main()


# ---- keyward run against a server (KEYWARD_ADDR, KEYWARD_TOKEN) ----------------


class RunAgainstServerTest(SecretsCase):
    """`keyward run` with KEYWARD_ADDR and an application key in
    KEYWARD_TOKEN reads its secrets over HTTP, with that key's scopes, and
    never opens a database."""

    def run_child(self, token, *args, env=None):
        """keyward run ARGS -- (dump the environment), against the server,
        with --db naming no database: (code, the child's env or None, stderr)."""
        e = {"KEYWARD_ADDR": "http://%s:%d" % (HOST, self.srv.port)}
        if token is not None:
            e["KEYWARD_TOKEN"] = token
        e.update(env or {})
        code, out, err = run_raw("sqlite:" + os.path.join(self.srv.tmp, "none", "x.db"),
                                 ["run"] + list(args) + ["--", "python3", "-c",
                                  "import os, json; print(json.dumps(dict(os.environ)))"],
                                 env=e)
        return code, (json.loads(out) if code == 0 else None), err

    def test_values_and_scopes(self):
        self.put_ok("rs/app/db_password", "pw-over-http", 1)
        self.put_ok("rs/app/api.key", "ak", 1)
        self.put_ok("rs/other/x", "not-granted", 1)
        key, _ = self.app_key("secrets:read:rs/app/*")
        code, env, err = self.run_child(key, "--prefix", "rs/app",
                                        env={"REF": "kw://rs/app/db_password#1"})
        self.assertEqual(code, 0, err)
        self.assertEqual(env["DB_PASSWORD"], "pw-over-http")
        self.assertEqual(env["API_KEY"], "ak")
        self.assertEqual(env["REF"], "pw-over-http")
        self.assertNotIn("X", env)
        self.assertNotIn("KEYWARD_TOKEN", env)  # keyward's own key stays with keyward
        # a path outside the key's scopes: refused, nothing started
        code, env, err = self.run_child(key, env={"REF": "kw://rs/other/x"})
        self.assertEqual(code, 1, err)
        self.assertIn("403", err)
        self.assertIn("the command was not started", err)
        self.assertNotIn("not-granted", err)
        # a missing one: 404
        code, _, err = self.run_child(key, env={"REF": "kw://rs/app/nope"})
        self.assertEqual(code, 1, err)
        self.assertIn("404", err)
        # no token: a usage error, nothing started
        code, _, err = self.run_child(None, env={"REF": "kw://rs/app/db_password"})
        self.assertEqual(code, 2, err)
        self.assertIn("KEYWARD_TOKEN", err)
        self.assertNotIn(key, err)
        # no server there: a storage error
        e = {"KEYWARD_ADDR": "http://%s:1" % HOST, "KEYWARD_TOKEN": key,
             "REF": "kw://rs/app/db_password"}
        code, _, err = run_raw("sqlite:/nonexistent/x.db", ["run", "--", "true"], env=e)
        self.assertEqual(code, 4, err)
        self.assertNotIn(key, err)
        # every read was audited on the server, with the app key as actor
        reads = [a for a in self.audit_records()
                 if a["action"] == "secret.read" and a["target"].startswith("rs/")]
        self.assertGreaterEqual(len(reads), 3)


class RotationWhileServingTest(SecretsCase):
    """`keyward master-key rotate` while a server runs: the server reads the
    master key again from <db>.master when its own no longer opens the
    secrets, so reads and writes go on without a restart."""

    def test_rotation_without_restart(self):
        self.put_ok("rot/x", "before-rotation", 1)
        r = self.cli_ok("master-key", "rotate")
        self.assertIn("master key rotated", r.out)
        deadline = time.time() + 3
        while True:
            st, _, d = self.get_secret("rot/x")
            if st == 200 or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual((st, d.get("value")), (200, "before-rotation"), d)
        # every thread of the server: a few more reads and a write
        for _ in range(6):
            deadline = time.time() + 3
            while True:
                st, _, d = self.get_secret("rot/x")
                if st == 200 or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(st, 200, d)
        self.put_ok("rot/x", "after-rotation", 2)
        self.assertEqual(self.value_of("rot/x")["value"], "after-rotation")
