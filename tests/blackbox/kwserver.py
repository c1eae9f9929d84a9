"""Helpers for the HTTP black-box tests: run the real `keyward serve` on
loopback and talk to it with http.client.

A ServerTestCase class starts one server in setUpClass (a fresh database in
a temporary directory, `keyward init --json` for the root admin key) and
stops it in tearDownClass with SIGTERM, asserting exit status 0 within 10 s
and a stderr free of sanitizer reports. Only 127.0.0.1 is ever contacted.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import kwtest

HOST = "127.0.0.1"
LISTEN_RE = re.compile(
    r"keyward serve: listening on 127\.0\.0\.1:(\d+) \((\d+) threads[,)]")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ERROR: UndefinedBehaviorSanitizer")
# The full record of `keyward key show --json` (docs/http-api.md).
RECORD_FIELDS = [
    "id", "prefix", "owner", "name", "scopes", "meta", "status", "created_at",
    "not_before", "expires_at", "last_used_at", "enabled", "revoked_at",
    "credits", "ratelimit", "rotated_from", "rotated_to", "legacy",
    "external_id",
]
VERIFY_FIELDS = kwtest.VERIFY_FIELDS
KEY_RE = kwtest.KEY_RE
ID_RE = kwtest.ID_RE
TIME_RE = kwtest.TIME_RE


def _env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return e


class Server:
    """One `keyward serve` process on 127.0.0.1:<ephemeral port>."""

    def __init__(self, threads=2, extra=()):
        if not kwtest.BIN:
            raise unittest.SkipTest("KEYWARD_BIN is not set")
        self.tmp = tempfile.mkdtemp(prefix="kwhttp-")
        self.db = os.path.join(self.tmp, "k.db")
        self.url = "sqlite:" + self.db
        self.env = _env()
        p = subprocess.run([kwtest.BIN, "--db", self.url, "init", "--json"],
                           env=self.env, cwd=self.tmp, capture_output=True,
                           text=True, timeout=60)
        self._check_sanitizers(p.stderr, "init")
        if p.returncode != 0:
            raise RuntimeError("keyward init failed: %s" % p.stderr)
        self.admin = json.loads(p.stdout)["key"]
        self.proc = subprocess.Popen(
            [kwtest.BIN, "--db", self.url, "serve", "--listen", HOST + ":0",
             "--threads", str(threads)] + list(extra),
            env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._err = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(30) or self.port is None:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError("server did not start:\n" + self.stderr())

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._err.append(line)
            if self.port is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._ready.set()
        self._ready.set()

    def stderr(self):
        with self._lock:
            return "".join(self._err)

    @staticmethod
    def _check_sanitizers(err, what):
        for mark in SANITIZER_MARKS:
            if mark in err:
                raise AssertionError("sanitizer report from %s:\n%s" % (what, err))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM; returns (exit status, stderr). Asserts a clean exit."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("serve did not exit within 10 s of SIGTERM:\n"
                                     + self.stderr())
            self._reader.join(10)
            self.proc.stderr.close()
            err = self.stderr()
            self._check_sanitizers(err, "serve")
            if code != 0:
                raise AssertionError("serve exited %d:\n%s" % (code, err))
            return code, err
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def cleanup(self):
        shutil.rmtree(self.tmp, True)

    def kw(self, *args, input=None):
        """Run the CLI on this server's database (kwtest.run)."""
        return kwtest.run(["--db", self.url] + list(args), input=input, cwd=self.tmp)

    # ---- HTTP -------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, auth=None,
                timeout=15):
        """(status, headers dict with lower-case names, json or raw bytes).

        body: dict/list (sent as JSON), str or bytes (sent as is), or None.
        auth: a key sent as 'Authorization: Bearer <key>'; the default is
        no Authorization header.
        """
        h = dict(headers or {})
        if auth is not None:
            h["Authorization"] = "Bearer " + auth
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            raw = r.read()
            hdrs = {}
            for k, v in r.getheaders():
                k = k.lower()
                hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
            status = r.status
        finally:
            c.close()
        data = raw
        if "application/json" in hdrs.get("content-type", ""):
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
        return status, hdrs, data


class ServerTestCase(unittest.TestCase):
    """One server per class; helpers for the admin API."""

    maxDiff = None
    threads = 2
    serve_args = ()

    @classmethod
    def setUpClass(cls):
        cls.deaths = []  # stderr of servers that died during the class
        cls._start()

    @classmethod
    def _start(cls):
        cls.srv = Server(cls.threads, cls.serve_args)
        cls.admin = cls.srv.admin
        cls.keys_made = [cls.admin]
        cls.fixtures()

    @classmethod
    def fixtures(cls):
        """Per-server setup for subclasses (runs again after a restart)."""

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
        finally:
            cls.srv.cleanup()
        if cls.deaths:
            raise AssertionError("the server died during %s (%d time(s)); first stderr:\n%s"
                                 % (cls.__name__, len(cls.deaths), cls.deaths[0]))

    def setUp(self):
        # A server that died (a crash, a sanitizer abort) fails the test that
        # killed it, then tearDownClass; the rest of the class gets a new one.
        if not self.srv.alive():
            self.srv.proc.wait(10)
            self.srv._reader.join(10)
            type(self).deaths.append("exit %s\n%s" % (self.srv.proc.returncode,
                                                       self.srv.stderr()))
            self.srv.cleanup()
            type(self)._start()

    # ---- plumbing ---------------------------------------------------------

    def req(self, method, path, body=None, headers=None, auth=None):
        try:
            return self.srv.request(method, path, body, headers, auth)
        except (OSError, http.client.HTTPException) as e:
            time.sleep(0.2)
            if self.srv.alive():
                raise
            self.fail("%s %s: %r; the server died (exit %s):\n%s" % (
                method, path[:80], e, self.srv.proc.poll(), self.srv.stderr()[-6000:]))

    def call(self, method, path, body=None, auth=None, headers=None):
        """An admin call with the root admin key by default."""
        return self.req(method, path, body, headers,
                        self.admin if auth is None else auth)

    def expect(self, got, status, code=None):
        """Assert the status (and for errors, the JSON error code)."""
        st, h, data = got
        self.assertEqual(st, status, (h, data))
        if code is not None:
            self.assertIsInstance(data, dict, (st, h, data))
            self.assertEqual(data.get("error", {}).get("code"), code, data)
            self.assertIsInstance(data["error"].get("message"), str, data)
            self.assertIn("application/json", h.get("content-type", ""))
        return data

    def assert_healthy(self):
        time.sleep(0.02)  # a crash needs a moment to show
        try:
            st, _, data = self.req("GET", "/healthz")
        except OSError as e:
            st, data = None, repr(e)
        if st is None or not self.srv.alive():
            self.srv.proc.poll()
            self.fail("the server is gone (exit %s): %s\n%s" % (
                self.srv.proc.returncode, data, self.srv.stderr()[-6000:]))
        self.assertEqual(st, 200, "healthz after the request: %r\n%s"
                         % (data, self.srv.stderr()[-2000:]))
        self.assertEqual(data, {"status": "ok"})

    # ---- keys -------------------------------------------------------------

    def create(self, auth=None, **body):
        """POST /v1/keys; returns the answer (with "key")."""
        data = self.expect(self.call("POST", "/v1/keys", body, auth=auth), 201)
        self.assertRegex(data["key"], KEY_RE)
        type(self).keys_made.append(data["key"])
        return data

    def get(self, id_):
        return self.expect(self.call("GET", "/v1/keys/" + id_), 200)

    def verify(self, key, scopes=None, cost=None, auth=None):
        body = {"key": key}
        if scopes is not None:
            body["scopes"] = scopes
        if cost is not None:
            body["cost"] = cost
        data = self.expect(self.call("POST", "/v1/keys/verify", body, auth=auth), 200)
        self.assertEqual(list(data.keys()), VERIFY_FIELDS, data)
        self.assertEqual(data["valid"], data["code"] == "VALID", data)
        return data

    def code_of(self, key, scopes=None):
        return self.verify(key, scopes)["code"]

    def auth(self, key=None, scopes=None, header="bearer", extra=None):
        """GET /v1/auth; returns (status, headers, body)."""
        h = dict(extra or {})
        if key is not None:
            if header == "bearer":
                h["Authorization"] = "Bearer " + key
            else:
                h["X-API-Key"] = key
        if scopes is not None:
            h["X-Required-Scopes"] = scopes
        return self.req("GET", "/v1/auth", headers=h)

    def audit(self, query=""):
        return self.expect(self.call("GET", "/v1/audit" + query), 200)

    def wait_field(self, id_, field, want, timeout=3.0):
        """Poll GET /v1/keys/{id} until field == want (usage is written
        to the database in batches); returns the last value seen."""
        deadline = time.time() + timeout
        while True:
            got = self.get(id_)[field]
            if got == want or time.time() > deadline:
                return got
            time.sleep(0.05)

    def wait_code(self, key, code, timeout=3.0):
        """Poll verify until it says code (for time-based verdicts)."""
        deadline = time.time() + timeout
        while True:
            got = self.code_of(key)
            if got == code or time.time() > deadline:
                return got
            time.sleep(0.1)


def raw_exchange(port, data, read_timeout=5.0, shutdown=True):
    """Send raw bytes on a fresh connection; return what came back (bytes)."""
    s = socket.create_connection((HOST, port), timeout=read_timeout)
    try:
        if data:
            s.sendall(data)
        if shutdown:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def statuses(raw):
    """The status codes of every HTTP response in raw bytes, in order."""
    return [int(m.group(1)) for m in re.finditer(rb"HTTP/1\.[01] (\d{3}) ", raw)]
