"""A real nginx (Debian's) in front of a tiny upstream, asking keyward
through auth_request, with the shipped docs/nginx/keyward-gateway.conf."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import kwserver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("KEYWARD_BIN", os.path.join(ROOT, "build", "keyward"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

UPSTREAM = r'''
    server {
        listen 127.0.0.1:%(api)d;
        location / {
            return 200 "api owner=$http_x_key_owner id=$http_x_key_id auth=$http_authorization apikey=$http_x_api_key\n";
        }
    }
'''

MAIN = r'''
%(user)s
daemon off;
master_process off;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(tmp)s/body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    include %(tmp)s/gateway.conf;
    %(upstream)s
}
'''


def settle():
    """Changes made with the command line reach a running server with its
    next index sync (every 100 ms): give it three."""
    time.sleep(0.3)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


@unittest.skipUnless(os.path.exists(NGINX), "nginx is not installed")
class NginxGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kwnginx-")
        cls.server = kwserver.Server(threads=1)
        cls.env, cls.db = cls.server.env, cls.server.url
        kw_port, cls.api, cls.gw = cls.server.port, free_port(), free_port()
        with open(os.path.join(ROOT, "docs", "nginx", "keyward-gateway.conf")) as f:
            conf = f.read()
        conf = (conf.replace("127.0.0.1:8700", "127.0.0.1:%d" % kw_port)
                .replace("127.0.0.1:9000", "127.0.0.1:%d" % cls.api)
                .replace("127.0.0.1:8080", "127.0.0.1:%d" % cls.gw))
        with open(os.path.join(cls.tmp, "gateway.conf"), "w") as f:
            f.write(conf)
        with open(os.path.join(cls.tmp, "nginx.conf"), "w") as f:
            f.write(MAIN % {"tmp": cls.tmp, "upstream": UPSTREAM % {"api": cls.api},
                            "user": "user root;" if os.geteuid() == 0 else ""})
        cls.nginx = subprocess.Popen([NGINX, "-p", cls.tmp, "-c", os.path.join(cls.tmp, "nginx.conf")],
                                     stderr=subprocess.DEVNULL)
        wait_port(cls.gw)
        wait_port(cls.api)

    @classmethod
    def tearDownClass(cls):
        cls.nginx.send_signal(signal.SIGQUIT)
        cls.nginx.wait(timeout=10)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        try:
            cls.server.stop()  # asserts exit 0 and no sanitizer report
        finally:
            cls.server.cleanup()

    def create(self, *args):
        out = subprocess.run([BIN, "--db", self.db, "key", "create", "--json"] + list(args),
                             env=self.env, check=True, capture_output=True, text=True).stdout
        rec = json.loads(out)
        settle()
        return rec["key"], rec["id"]

    def get(self, path, key=None, header="Authorization"):
        headers = {}
        if key is not None:
            headers[header] = ("Bearer " + key) if header == "Authorization" else key
        c = http.client.HTTPConnection("127.0.0.1", self.gw, timeout=10)
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read().decode("latin-1")
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body

    def test_valid_key_passes_and_the_api_never_sees_it(self):
        key, kid = self.create("--owner", "acme", "--scope", "orders:*")
        for header in ("Authorization", "X-API-Key"):
            status, _, body = self.get("/orders/1", key, header)
            self.assertEqual(status, 200, body)
            self.assertIn("owner=acme id=%s auth= apikey=\n" % kid, body)
            self.assertNotIn(key, body)

    def test_missing_malformed_and_unknown_keys_get_401(self):
        key, _ = self.create("--scope", "orders:read")
        self.assertEqual(self.get("/orders/1")[0], 401)
        self.assertEqual(self.get("/orders/1", "not-a-key")[0], 401)
        self.assertEqual(self.get("/orders/1", key[:-1] + ("A" if key[-1] != "A" else "B"))[0],
                         401)

    def test_revoked_and_expired_keys_get_401(self):
        revoked, rid = self.create("--scope", "orders:read")
        subprocess.run([BIN, "--db", self.db, "key", "revoke", rid], env=self.env, check=True,
                       capture_output=True)
        settle()
        status, headers, _ = self.get("/orders/1", revoked)
        self.assertEqual(status, 401)
        expiring, _ = self.create("--scope", "orders:read", "--expires", "1s")
        time.sleep(2.05)
        self.assertEqual(self.get("/orders/1", expiring)[0], 401)

    def mint(self, *args):
        out = subprocess.run([BIN, "--db", self.db, "token", "mint", "--json"] + list(args),
                             env=self.env, check=True, capture_output=True, text=True).stdout
        return json.loads(out)["token"]

    def narrow(self, token, *args):
        return subprocess.run([BIN, "token", "attenuate"] + list(args), input=token,
                              check=True, capture_output=True, text=True).stdout.strip()

    def get_with(self, path, key, extra):
        c = http.client.HTTPConnection("127.0.0.1", self.gw, timeout=10)
        c.request("GET", path, headers=dict({"Authorization": "Bearer " + key}, **extra))
        r = c.getresponse()
        r.read()
        c.close()
        return r.status

    def test_stateless_keys_and_their_caveats(self):
        tok = self.mint("--owner", "acme", "--scope", "orders:*")
        self.assertEqual(self.get("/orders/1", tok)[0], 200)
        self.assertEqual(self.get("/billing/1", tok)[0], 403)
        # the gateway states the audience and the client's address
        ok = self.narrow(tok, "--audience", "api.example.com", "--address", "127.0.0.0/8")
        self.assertEqual(self.get("/orders/1", ok)[0], 200)
        other = self.narrow(tok, "--audience", "other.example.com")
        far = self.narrow(tok, "--address", "10.0.0.0/8")
        # a client cannot speak for the gateway: its own headers are replaced
        spoof = {"X-Key-Audience": "other.example.com", "X-Real-IP": "10.1.2.3"}
        for t in (other, far):
            self.assertEqual(self.get("/orders/1", t)[0], 403)
            self.assertEqual(self.get_with("/orders/1", t, spoof), 403)

    def test_wrong_scope_gets_403(self):
        key, _ = self.create("--scope", "orders:read")
        status, headers, _ = self.get("/billing/1", key)
        self.assertEqual(status, 403)
        self.assertEqual(headers.get("x-key-code"), "INSUFFICIENT_SCOPE")
        key2, _ = self.create("--scope", "billing:read")  # needs billing:write too
        self.assertEqual(self.get("/billing/1", key2)[0], 403)

    def test_over_the_rate_limit_gets_429_with_retry_after(self):
        key, _ = self.create("--scope", "orders:read", "--rate", "2/60s")
        self.assertEqual(self.get("/orders/1", key)[0], 200)
        self.assertEqual(self.get("/orders/2", key)[0], 200)
        status, headers, _ = self.get("/orders/3", key)
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("x-key-code"), "RATE_LIMITED")
        self.assertGreaterEqual(int(headers["retry-after"]), 1)
        self.assertLessEqual(int(headers["retry-after"]), 60)

    def test_out_of_credits_gets_429(self):
        key, _ = self.create("--scope", "orders:read", "--credits", "1")
        self.assertEqual(self.get("/orders/1", key)[0], 200)
        status, headers, _ = self.get("/orders/1", key)
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("x-key-code"), "USAGE_EXCEEDED")


if __name__ == "__main__":
    unittest.main()
