#!/usr/bin/env python3
"""The PostgreSQL rows of the benchmark suite (issue P6), measured side by
side in one run and printed as Markdown tables on stdout (progress on
stderr):

  1. GET /v1/auth through a keyward node on PostgreSQL beside one on SQLite,
     for a key without credits (answered from memory on both) and for a key
     with credits (spent in the database on PostgreSQL, one atomic UPDATE a
     request, so that credits stay exact across nodes; in memory on SQLite).
     Each node on core 0 with one event loop, wrk on core 1 (-t1 -c32),
     interleaved rounds, the median shown. PostgreSQL's own processes are
     not pinned.
  2. The time a revocation made through one node takes to be refused by a
     second node on the same PostgreSQL: DELETE /v1/keys/{id} on A, then
     GET /v1/auth on B every millisecond until it answers 401.

A throwaway PostgreSQL on loopback (tests/pg/pgtest.sh) and SQLite database,
in a 0700 temporary directory removed at the end. No key is ever in argv:
wrk reads it from the environment (its Lua script), everything else goes
through http.client.

usage: bench/pg.py [SECONDS_PER_ROW]     KEYWARD_BIN: the binary (required)
"""

import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGTEST = os.path.join(ROOT, "tests", "pg", "pgtest.sh")
ROUNDS = int(os.environ.get("KW_BENCH_ROUNDS", "3"))
TRIALS = 20  # revocations timed
LISTEN_RE = re.compile(r"keyward serve: listening on 127\.0\.0\.1:(\d+) ")

LUA = """
wrk.method = "GET"
wrk.path = "/v1/auth"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KWB_KEY")
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("KWBENCH rps=%.1f p50_us=%d p99_us=%d non2xx=%d sockerr=%d\\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50),
        latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def log(msg):
    print("pg.py: " + msg, file=sys.stderr, flush=True)


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
    def __init__(self, kw, env, cwd, cores):
        self.proc = subprocess.Popen(
            ["taskset", "-c", cores, kw, "serve", "--listen", "127.0.0.1:0",
             "--threads", "1"],
            env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        lines = []
        while self.port is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("keyward serve did not start: " + "".join(lines))
            lines.append(line)
            m = LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(1))
        for _ in range(500):
            if request(self.port, "GET", "/readyz")[0] == 200:
                break
            time.sleep(0.01)

    def stop(self):
        self.proc.terminate()
        self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.wait(30) != 0:
            raise RuntimeError("keyward serve exited %d" % self.proc.returncode)


def wrk(port, key, secs, lua):
    env = dict(os.environ, KWB_KEY=key)
    p = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", "-d%ds" % secs, "--latency",
         "-s", lua, "http://127.0.0.1:%d" % port],
        env=env, capture_output=True, text=True, timeout=secs + 60)
    m = re.search(r"KWBENCH rps=([0-9.]+) p50_us=(\d+) p99_us=(\d+) non2xx=(\d+) sockerr=(\d+)",
                  p.stdout)
    if p.returncode != 0 or m is None:
        raise RuntimeError("wrk failed: " + p.stdout + p.stderr)
    rps, p50, p99, non2xx, sockerr = m.groups()
    if int(non2xx) or int(sockerr):
        raise RuntimeError("wrk saw %s non-2xx answers and %s socket errors" % (non2xx, sockerr))
    return float(rps), int(p50), int(p99)


def median_round(rounds):
    return sorted(rounds)[(len(rounds) - 1) // 2]


def make_key(port, admin, body):
    status, out = request(port, "POST", "/v1/keys", admin, body)
    if status != 201:
        raise RuntimeError("POST /v1/keys answered %d" % status)
    made = json.loads(out)
    return made["key"], made["id"]


def main():
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    kw = os.environ.get("KEYWARD_BIN")
    if not kw or not os.access(kw, os.X_OK):
        sys.exit("pg.py: set KEYWARD_BIN to the keyward binary")
    kw = os.path.abspath(kw)
    if shutil.which("wrk") is None:
        sys.exit("pg.py: wrk is not installed (bench/http.sh installs it)")
    tmp = tempfile.mkdtemp(prefix="kwbench-pg-")
    os.chmod(tmp, 0o755)  # PostgreSQL's own user reaches its directory below
    pgdir = os.path.join(tmp, "pg")
    nodes = []
    try:
        log("starting PostgreSQL")
        url = subprocess.run(["sh", PGTEST, "start", pgdir], capture_output=True,
                             text=True, check=True, timeout=120).stdout.strip()
        base = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        env_pg = dict(base, KEYWARD_DB=url, KEYWARD_PEPPER_FILE=os.path.join(tmp, "pg.pepper"))
        env_sq = dict(base, KEYWARD_DB="sqlite:" + os.path.join(tmp, "sq.db"))
        admins = {}
        for name, env in (("pg", env_pg), ("sq", env_sq)):
            p = subprocess.run([kw, "init", "--json"], env=env, cwd=tmp,
                               capture_output=True, text=True, check=True, timeout=60)
            admins[name] = json.loads(p.stdout)["key"]
        lua = os.path.join(tmp, "auth.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        pg_node = Node(kw, env_pg, tmp, "0")
        sq_node = Node(kw, env_sq, tmp, "0")
        nodes += [pg_node, sq_node]
        keys = {}
        for name, node in (("pg", pg_node), ("sq", sq_node)):
            keys[name, "plain"] = make_key(node.port, admins[name],
                                           {"owner": "bench", "name": "plain"})[0]
            keys[name, "credits"] = make_key(node.port, admins[name],
                                             {"owner": "bench", "name": "credits",
                                              "credits": 1000000000})[0]
        time.sleep(0.3)  # each node's index has its keys
        results = {}
        for kind in ("plain", "credits"):
            for name in ("pg", "sq"):
                results[name, kind] = []
            for r in range(ROUNDS):
                for name, node in (("sq", sq_node), ("pg", pg_node)):
                    log("%s key, %s node, round %d/%d" % (kind, name, r + 1, ROUNDS))
                    results[name, kind].append(wrk(node.port, keys[name, kind], secs, lua))
        pg_node.stop()
        sq_node.stop()
        nodes = []

        # Revocation between two nodes on PostgreSQL (both cores, no load).
        a = Node(kw, env_pg, tmp, "0,1")
        b = Node(kw, env_pg, tmp, "0,1")
        nodes += [a, b]
        times = []
        for i in range(TRIALS):
            key, id_ = make_key(a.port, admins["pg"], {"owner": "bench", "name": "revoke"})
            deadline = time.monotonic() + 5
            while request(b.port, "GET", "/v1/auth", key)[0] != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("node B never knew the key")
                time.sleep(0.002)
            time.sleep(0.0137 * (i % 8))  # not always at the same point of B's poll
            t0 = time.monotonic()
            status, _ = request(a.port, "DELETE", "/v1/keys/" + id_, admins["pg"])
            if status != 200:
                raise RuntimeError("DELETE answered %d" % status)
            while request(b.port, "GET", "/v1/auth", key)[0] == 200:
                if time.monotonic() - t0 > 5:
                    raise RuntimeError("node B still accepts a revoked key after 5 s")
                time.sleep(0.001)
            times.append((time.monotonic() - t0) * 1000)
        for n in nodes:
            n.stop()
        nodes = []
    finally:
        for n in nodes:
            try:
                n.stop()
            except Exception:  # noqa: BLE001 - the cleanup goes on
                pass
        subprocess.run(["sh", PGTEST, "stop", pgdir], capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)

    print("## PostgreSQL, one core each")
    print()
    print("Loopback, `GET /v1/auth` with a valid key; keyward `serve --threads 1` on core 0, "
          "on PostgreSQL %s (its own processes unpinned) or on SQLite; wrk on core 1: "
          "`-t1 -c32 -d%ds`, %d interleaved rounds, the median shown."
          % (subprocess.run(["psql", "--version"], capture_output=True,
                            text=True).stdout.split()[2], secs, ROUNDS))
    print()
    print("| key | SQLite node, req/s | p99 ms | PostgreSQL node, req/s | p99 ms "
          "| PostgreSQL / SQLite |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, label in (("plain", "no credits (from memory on both)"),
                        ("credits", "with credits (PostgreSQL: one atomic `UPDATE` a "
                                    "request, exact across nodes; SQLite: in memory)")):
        sq = median_round(results["sq", kind])
        pg = median_round(results["pg", kind])
        print("| %s | %.0f | %.2f | %.0f | %.2f | %.2f |"
              % (label, sq[0], sq[2] / 1000, pg[0], pg[2] / 1000, pg[0] / sq[0]))
    print()
    print("A key with credits costs a database round trip a request on PostgreSQL, on the "
          "event loop's thread (the spend is one atomic `UPDATE`, committed without waiting "
          "for the disk); keys without credits never reach the database.")
    print()
    print("| a revocation through node A, refused by node B (same PostgreSQL) | median ms "
          "| max ms | trials |")
    print("|---|---:|---:|---:|")
    print("| `DELETE /v1/keys/{id}` on A, then `GET /v1/auth` on B every ms until 401 "
          "| %.0f | %.0f | %d |" % (statistics.median(times), max(times), len(times)))


if __name__ == "__main__":
    main()
