"""keyward on PostgreSQL (issue P6): the command line on a postgres:// URL,
and two `keyward serve` nodes on one database, where a change made through
one reaches the other within a second.

The class starts its own PostgreSQL on loopback (tests/pg/pgtest.sh: initdb
in a temporary directory, as an unprivileged user) and stops it at the end.
Only 127.0.0.1 is ever contacted.
"""

import http.client
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest

import kwtest

HERE = os.path.dirname(os.path.abspath(__file__))
PGTEST = os.path.join(HERE, "..", "pg", "pgtest.sh")
LISTEN_RE = re.compile(r"keyward serve: listening on 127\.0\.0\.1:(\d+) ")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")


def request(port, method, path, token=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


class Node:
    """One `keyward serve` on the shared database."""

    def __init__(self, env, cwd, extra=()):
        self.proc = subprocess.Popen(
            [kwtest.BIN, "serve", "--listen", "127.0.0.1:0", "--threads", "1"]
            + list(extra),
            env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.err = []
        self.port = None
        deadline = time.monotonic() + 30
        while self.port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.err.append(line)
            m = LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("node did not start: " + "".join(self.err))

    def stop(self):
        self.proc.terminate()
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        code = self.proc.wait(20)
        text = "".join(self.err) + rest
        return code, text


@unittest.skipUnless(kwtest.BIN, "KEYWARD_BIN is not set")
class PostgresNodes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kwpgnodes-")
        os.chmod(cls.tmp, 0o755)  # the server's own user reaches its directory
        cls.pgdir = os.path.join(cls.tmp, "pg")
        p = subprocess.run(["sh", PGTEST, "start", cls.pgdir],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("PostgreSQL did not start: " + p.stderr)
        cls.url = p.stdout.strip()

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["sh", PGTEST, "stop", cls.pgdir], timeout=120)
        subprocess.run(["rm", "-rf", cls.tmp])

    def setUp(self):
        # Each test on an emptied database, with a pepper file of its own.
        subprocess.run(["psql", self.url, "-q", "-X", "-c",
                        "SET client_min_messages = warning;"
                        "DROP SCHEMA public CASCADE; CREATE SCHEMA public"],
                       check=True, capture_output=True, timeout=60)
        self.pepper = os.path.join(self.tmp, "pepper-%s" % self._testMethodName)
        if os.path.exists(self.pepper):
            os.unlink(self.pepper)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("KEYWARD_")}
        self.env.update(KEYWARD_DB=self.url, KEYWARD_PEPPER_FILE=self.pepper)
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            code, err = n.stop()
            self.assertEqual(code, 0, err)
            for mark in SANITIZER_MARKS:
                self.assertNotIn(mark, err)

    def kw(self, *args, env=None):
        return kwtest.run(list(args), env=env or self.env, cwd=self.tmp)

    def init(self):
        r = self.kw("init", "--json")
        self.assertEqual(r.code, 0, r)
        return json.loads(r.out)["key"]

    def test_init(self):
        """init needs a pepper file named for PostgreSQL, makes it 0600,
        refuses a second time, and never shows the URL's user."""
        env = dict(self.env)
        del env["KEYWARD_PEPPER_FILE"]
        r = self.kw("init", env=env)
        self.assertEqual(r.code, 3, r)
        self.assertIn("KEYWARD_PEPPER_FILE", r.err)
        self.init()
        self.assertEqual(os.stat(self.pepper).st_mode & 0o777, 0o600)
        r = self.kw("init")
        self.assertEqual(r.code, 1, r)
        self.assertIn("initialised already", r.err)
        self.assertNotIn("keyward@", r.err)
        r = self.kw("key", "list")
        self.assertEqual(r.code, 0, r)
        self.assertIn("first admin key", r.out)

    def test_secrets(self):
        """The secrets store on PostgreSQL: the master key file goes beside
        the pepper file (no database path to put it beside), a secret is
        written and read back exactly, and never lands in the database in
        clear."""
        self.init()
        r = self.kw("master-key", "init")
        self.assertEqual(r.code, 0, r)
        master = self.pepper[:-len(".pepper")] + ".master" \
            if self.pepper.endswith(".pepper") else self.pepper + ".master"
        self.assertEqual(os.stat(master).st_mode & 0o777, 0o600)
        r = kwtest.run(["secret", "put", "app/db"], input="s3cret-value\n",
                       env=self.env, cwd=self.tmp)
        self.assertEqual(r.code, 0, r)
        r = self.kw("secret", "get", "app/db")
        self.assertEqual((r.code, r.out), (0, "s3cret-value"), r)
        dump = subprocess.run(["pg_dump", "--data-only", self.url],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertIn("app/db", dump.stdout)
        self.assertNotIn("s3cret-value", dump.stdout)

    def test_password_not_in_argv(self):
        """A password in --db is refused: every user can read a command line."""
        r = self.kw("--db", "postgres://kw:hunter2@127.0.0.1/kw", "key", "list")
        self.assertEqual(r.code, 2, r)
        self.assertNotIn("hunter2", r.err)

    def test_change_reaches_other_node(self):
        """A key made on node A verifies on node B; revoked on A, B refuses
        it within a second."""
        admin = self.init()
        a, b = Node(self.env, self.tmp), Node(self.env, self.tmp)
        self.nodes += [a, b]
        status, out = request(a.port, "POST", "/v1/keys", admin,
                              {"owner": "acme", "name": "nodes"})
        self.assertEqual(status, 201, out)
        made = json.loads(out)
        key, id_ = made["key"], made["id"]
        deadline = time.monotonic() + 1.0
        while request(b.port, "GET", "/v1/auth", key)[0] != 200:
            self.assertLess(time.monotonic(), deadline, "B never knew the key")
            time.sleep(0.01)
        status, out = request(a.port, "DELETE", "/v1/keys/" + id_, admin)
        self.assertEqual(status, 200, out)
        t0 = time.monotonic()
        while True:
            status, _ = request(b.port, "GET", "/v1/auth", key)
            if status != 200:
                break
            self.assertLess(time.monotonic() - t0, 1.0,
                            "B still accepts a key revoked on A")
            time.sleep(0.01)
        self.assertEqual(status, 401)
        # And A refused it at once.
        self.assertEqual(request(a.port, "GET", "/v1/auth", key)[0], 401)

    def test_credits_exact_across_nodes(self):
        """A key with N credits, spent through both nodes at once: exactly N
        answers of 200 between them, the rest 429."""
        credits = 40
        admin = self.init()
        a, b = Node(self.env, self.tmp), Node(self.env, self.tmp)
        self.nodes += [a, b]
        status, out = request(a.port, "POST", "/v1/keys", admin,
                              {"owner": "acme", "name": "credits", "credits": credits})
        self.assertEqual(status, 201, out)
        key = json.loads(out)["key"]
        self.wait_for("B never knew the key",
                      lambda: request(b.port, "GET", "/v1/keys/" + json.loads(out)["id"],
                                      admin)[0] == 200, 5)
        time.sleep(0.3)  # B's index has it too (it follows the audit trail)
        counts = {a.port: {}, b.port: {}}

        def spend(port):
            for _ in range(35):
                st, _ = request(port, "GET", "/v1/auth", key)
                counts[port][st] = counts[port].get(st, 0) + 1

        threads = [threading.Thread(target=spend, args=(n.port,)) for n in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ok = counts[a.port].get(200, 0) + counts[b.port].get(200, 0)
        self.assertEqual(ok, credits, counts)
        self.assertGreater(counts[a.port].get(200, 0), 0, counts)
        self.assertGreater(counts[b.port].get(200, 0), 0, counts)
        for c in counts.values():
            self.assertEqual(set(c) - {200, 429}, set(), counts)

    def pg(self, cmd):
        p = subprocess.run(["sh", PGTEST, cmd, self.pgdir],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)

    def wait_for(self, what, fn, seconds):
        deadline = time.monotonic() + seconds
        while not fn():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.05)

    def test_outage(self):
        """PostgreSQL stopped and started again under load: a node goes on
        verifying the keys it holds for --db-grace, refuses keys it never
        saw, says not ready, then 503 once the grace is over; and recovers
        by itself. No answer is ever wrong: the valid key gets 200 or 503,
        an unknown one 401 or 503."""
        admin = self.init()
        node = Node(self.env, self.tmp, ["--db-grace", "2"])
        self.nodes.append(node)
        status, out = request(node.port, "POST", "/v1/keys", admin,
                              {"owner": "acme", "name": "outage"})
        self.assertEqual(status, 201, out)
        key = json.loads(out)["key"]
        status, out = request(node.port, "POST", "/v1/keys", admin,
                              {"owner": "acme", "name": "credits", "credits": 1000})
        self.assertEqual(status, 201, out)
        credit_key = json.loads(out)["key"]
        # A key of the right shape that the database never held.
        head = "kw_live_" + "Z" * 12 + "q" * 32
        unknown = head + kwtest.check_of(head)
        wrong = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                for k, allowed in ((key, (200, 503)), (unknown, (401, 503))):
                    try:
                        st, _ = request(node.port, "GET", "/v1/auth", k)
                    except OSError as e:
                        wrong.append(("no answer", str(e)))
                        continue
                    if st not in allowed:
                        wrong.append((k == key, st))

        t = threading.Thread(target=load)
        t.start()
        try:
            time.sleep(0.3)
            self.pg("pause")
            # Within the grace: the held key verifies, the unknown one not;
            # one with credits cannot be spent exactly: 503, never 200.
            self.assertEqual(request(node.port, "GET", "/v1/auth", key)[0], 200)
            self.assertEqual(request(node.port, "GET", "/v1/auth", unknown)[0], 401)
            for _ in range(20):
                self.assertEqual(request(node.port, "GET", "/v1/auth", credit_key)[0], 503)
            self.wait_for("/readyz still ready with the database down",
                          lambda: request(node.port, "GET", "/readyz")[0] == 503, 5)
            # Past the grace: refused with 503 (it may have missed a revocation).
            self.wait_for("still verifying past --db-grace",
                          lambda: request(node.port, "GET", "/v1/auth", key)[0] == 503, 10)
            self.pg("resume")
            self.wait_for("never ready again",
                          lambda: request(node.port, "GET", "/readyz")[0] == 200, 20)
            self.wait_for("never verified again",
                          lambda: request(node.port, "GET", "/v1/auth", key)[0] == 200, 10)
            self.wait_for("credits never spent again",
                          lambda: request(node.port, "GET", "/v1/auth", credit_key)[0] == 200, 10)
            # Writes work again too (the committer's connection came back).
            self.wait_for("cannot create keys again",
                          lambda: request(node.port, "POST", "/v1/keys", admin,
                                          {"owner": "acme", "name": "after"})[0] == 201, 10)
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(wrong, [])


if __name__ == "__main__":
    unittest.main()
