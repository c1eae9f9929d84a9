"""keyward serve --tls-cert/--tls-key: HTTPS with TLS 1.2+, HTTP/2 offered by
ALPN, and a private key readable by others refused."""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

import kwserver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("KEYWARD_BIN", os.path.join(ROOT, "build", "keyward"))
OPENSSL = shutil.which("openssl")


@unittest.skipUnless(OPENSSL, "openssl is not installed")
class Tls(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kwtls-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        self.db = "sqlite:" + os.path.join(self.tmp, "k.db")
        self.cert = os.path.join(self.tmp, "tls.crt")
        self.key = os.path.join(self.tmp, "tls.key")
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o600)
        subprocess.run([BIN, "--db", self.db, "init"], env=self.env, check=True,
                       capture_output=True)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self):
        server = kwserver.Server(threads=1, extra=("--tls-cert", self.cert, "--tls-key", self.key))
        self.assertIn("(1 threads, TLS, HTTP/2)", server.stderr())
        return server, server.port

    def stop(self, server):
        try:
            server.stop()  # asserts exit 0 and no sanitizer report
        finally:
            server.cleanup()

    def test_https_and_alpn(self):
        proc, port = self.serve()
        try:
            ctx = ssl.create_default_context(cafile=self.cert)
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    self.assertEqual(s.selected_alpn_protocol(), "h2")
                    self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
            plain = ssl.create_default_context(cafile=self.cert)
            c = http.client.HTTPSConnection("127.0.0.1", port, context=plain, timeout=10)
            c.request("GET", "/healthz")
            r = c.getresponse()
            self.assertEqual((r.status, json.loads(r.read())), (200, {"status": "ok"}))
            c.close()
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(self.cert)
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            with self.assertRaises((ssl.SSLError, OSError)):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    old.wrap_socket(raw, server_hostname="127.0.0.1").do_handshake()
        finally:
            self.stop(proc)

    def test_key_readable_by_others_is_refused(self):
        os.chmod(self.key, 0o644)
        r = subprocess.run([BIN, "--db", self.db, "serve", "--listen", "127.0.0.1:0",
                            "--tls-cert", self.cert, "--tls-key", self.key], env=self.env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("mode 0600", r.stderr)

    def test_cert_without_key_is_a_usage_error(self):
        r = subprocess.run([BIN, "--db", self.db, "serve", "--tls-cert", self.cert],
                           env=self.env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--tls-cert and --tls-key go together", r.stderr)


if __name__ == "__main__":
    unittest.main()
