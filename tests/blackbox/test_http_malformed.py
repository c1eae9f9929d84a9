"""Malformed requests to the real `keyward serve` (docs/http-api.md, Errors).

Table-driven: each case asserts the status and, where keyward answers JSON,
the error code; after each, GET /healthz must still answer 200. h2o answers
some requests itself (plain-text 400/413): for those only the status class
and the server's survival are asserted. Then raw-socket cases: truncated,
oversized and garbage requests, pipelining, a stalled client.
"""

import http.client
import json
import socket
import threading
import time
import unittest

import kwtest
from kwserver import HOST, ServerTestCase, raw_exchange, statuses

PAST = "2001-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"
ANY4XX = "4xx"  # status class only (h2o's own answer)

# (name, method, path, body, headers, status, error code or None)
# body: a dict/list is sent as JSON; str/bytes as is. "{id}" in the path is
# a live key's id. Requests carry the root admin key unless headers say
# otherwise (headers={"Authorization": None} removes it).
CASES = [
    # -- bodies that are not a JSON object ----------------------------------
    ("bad_json", "POST", "/v1/keys", "{owner:", None, 400, "invalid_json"),
    ("truncated_json", "POST", "/v1/keys", '{"owner": "a"', None, 400, "invalid_json"),
    ("trailing_garbage", "POST", "/v1/keys", '{"owner": "a"} x', None, 400, "invalid_json"),
    ("array_body", "POST", "/v1/keys", "[]", None, 400, "invalid_json"),
    ("string_body", "POST", "/v1/keys", '"owner"', None, 400, "invalid_json"),
    ("number_body", "POST", "/v1/keys", "5", None, 400, "invalid_json"),
    ("null_body", "POST", "/v1/keys", "null", None, 400, "invalid_json"),
    ("empty_body", "POST", "/v1/keys", "", None, 400, "invalid_json"),
    ("not_utf8", "POST", "/v1/keys", b'{"owner": "\xff\xfe"}', None, 400, "invalid_json"),
    ("duplicate_keys", "POST", "/v1/keys", '{"owner": "a", "owner": "b"}', None, 400,
     "invalid_json"),
    ("patch_array_body", "PATCH", "/v1/keys/{id}", "[1]", None, 400, "invalid_json"),
    ("verify_bad_json", "POST", "/v1/keys/verify", "{", None, 400, "invalid_json"),
    ("rotate_bad_json", "POST", "/v1/keys/{id}/rotate", "{", None, 400, "invalid_json"),
    # -- wrong types and values: create -------------------------------------
    ("owner_number", "POST", "/v1/keys", {"owner": 5}, None, 400, "bad_request"),
    ("owner_null", "POST", "/v1/keys", {"owner": None}, None, 400, "bad_request"),
    ("name_array", "POST", "/v1/keys", {"name": []}, None, 400, "bad_request"),
    ("prefix_number", "POST", "/v1/keys", {"prefix": 7}, None, 400, "bad_request"),
    ("scopes_string", "POST", "/v1/keys", {"scopes": "x"}, None, 400, "bad_request"),
    ("scopes_number_item", "POST", "/v1/keys", {"scopes": [1]}, None, 400, "bad_request"),
    ("scopes_null_item", "POST", "/v1/keys", {"scopes": [None]}, None, 400, "bad_request"),
    ("scopes_too_many", "POST", "/v1/keys", {"scopes": ["s:%d" % i for i in range(65)]},
     None, 400, "bad_request"),
    ("scope_uppercase", "POST", "/v1/keys", {"scopes": ["Orders:Read"]}, None, 400,
     "bad_request"),
    ("scope_empty_segment", "POST", "/v1/keys", {"scopes": ["a::b"]}, None, 400,
     "bad_request"),
    ("scope_empty", "POST", "/v1/keys", {"scopes": [""]}, None, 400, "bad_request"),
    ("scope_space", "POST", "/v1/keys", {"scopes": ["a b"]}, None, 400, "bad_request"),
    ("scope_inner_wildcard", "POST", "/v1/keys", {"scopes": ["a:*:b"]}, None, 400,
     "bad_request"),
    ("meta_array", "POST", "/v1/keys", {"meta": []}, None, 400, "bad_request"),
    ("meta_string", "POST", "/v1/keys", {"meta": "k=v"}, None, 400, "bad_request"),
    ("credits_negative", "POST", "/v1/keys", {"credits": -1}, None, 400, "bad_request"),
    ("credits_fraction", "POST", "/v1/keys", {"credits": 1.5}, None, 400, "bad_request"),
    ("credits_string", "POST", "/v1/keys", {"credits": "3"}, None, 400, "bad_request"),
    ("credits_bool", "POST", "/v1/keys", {"credits": True}, None, 400, "bad_request"),
    ("credits_huge", "POST", "/v1/keys", '{"credits": 99999999999999999999999}', None, 400,
     None),
    ("ratelimit_limit_zero", "POST", "/v1/keys", {"ratelimit": {"limit": 0, "window_ms": 1000}},
     None, 400, "bad_request"),
    ("ratelimit_no_window", "POST", "/v1/keys", {"ratelimit": {"limit": 5}}, None, 400,
     "bad_request"),
    ("ratelimit_window_short", "POST", "/v1/keys",
     {"ratelimit": {"limit": 5, "window_ms": 999}}, None, 400, "bad_request"),
    ("ratelimit_window_long", "POST", "/v1/keys",
     {"ratelimit": {"limit": 5, "window_ms": 30 * 86400 * 1000 + 1}}, None, 400,
     "bad_request"),
    ("ratelimit_extra_field", "POST", "/v1/keys",
     {"ratelimit": {"limit": 5, "window_ms": 1000, "burst": 1}}, None, 400, "bad_request"),
    ("ratelimit_number", "POST", "/v1/keys", {"ratelimit": 5}, None, 400, "bad_request"),
    ("ratelimit_string_limit", "POST", "/v1/keys",
     {"ratelimit": {"limit": "5", "window_ms": 1000}}, None, 400, "bad_request"),
    ("expires_at_words", "POST", "/v1/keys", {"expires_at": "yesterday"}, None, 400,
     "bad_request"),
    ("expires_at_past", "POST", "/v1/keys", {"expires_at": PAST}, None, 400, "bad_request"),
    ("expires_at_number", "POST", "/v1/keys", {"expires_at": 1700000000}, None, 400,
     "bad_request"),
    ("expires_at_bad_date", "POST", "/v1/keys", {"expires_at": "2099-02-30T00:00:00Z"},
     None, 400, "bad_request"),
    ("not_before_words", "POST", "/v1/keys", {"not_before": "soon"}, None, 400,
     "bad_request"),
    ("create_enabled", "POST", "/v1/keys", {"enabled": False}, None, 400, "bad_request"),
    ("create_unknown_field", "POST", "/v1/keys", {"owner": "a", "colour": "red"}, None, 400,
     "bad_request"),
    ("create_id_field", "POST", "/v1/keys", {"id": "AAAAAAAAAAAA"}, None, 400, "bad_request"),
    ("create_key_field", "POST", "/v1/keys", {"key": "kw_live_x"}, None, 400, "bad_request"),
    ("prefix_uppercase", "POST", "/v1/keys", {"prefix": "Bad"}, None, 400, "bad_request"),
    ("prefix_double_underscore", "POST", "/v1/keys", {"prefix": "a__b"}, None, 400,
     "bad_request"),
    ("prefix_trailing_underscore", "POST", "/v1/keys", {"prefix": "ab_"}, None, 400,
     "bad_request"),
    ("prefix_digit_first", "POST", "/v1/keys", {"prefix": "1abc"}, None, 400, "bad_request"),
    ("prefix_too_long", "POST", "/v1/keys", {"prefix": "a" * 21}, None, 400, "bad_request"),
    ("prefix_empty", "POST", "/v1/keys", {"prefix": ""}, None, 400, "bad_request"),
    ("prefix_dash", "POST", "/v1/keys", {"prefix": "my-app"}, None, 400, "bad_request"),
    # -- wrong types and values: update and rotate --------------------------
    ("patch_enabled_string", "PATCH", "/v1/keys/{id}", {"enabled": "yes"}, None, 400,
     "bad_request"),
    ("patch_enabled_null", "PATCH", "/v1/keys/{id}", {"enabled": None}, None, 400,
     "bad_request"),
    ("patch_owner_number", "PATCH", "/v1/keys/{id}", {"owner": 5}, None, 400, "bad_request"),
    ("patch_scopes_string", "PATCH", "/v1/keys/{id}", {"scopes": "x"}, None, 400,
     "bad_request"),
    ("patch_meta_null", "PATCH", "/v1/keys/{id}", {"meta": None}, None, 400, "bad_request"),
    ("patch_credits_negative", "PATCH", "/v1/keys/{id}", {"credits": -1}, None, 400,
     "bad_request"),
    ("patch_expires_past", "PATCH", "/v1/keys/{id}", {"expires_at": PAST}, None, 400,
     "bad_request"),
    ("patch_prefix", "PATCH", "/v1/keys/{id}", {"prefix": "abc"}, None, 400, "bad_request"),
    ("patch_unknown_field", "PATCH", "/v1/keys/{id}", {"status": "active"}, None, 400,
     "bad_request"),
    ("patch_ratelimit_zero", "PATCH", "/v1/keys/{id}",
     {"ratelimit": {"limit": 0, "window_ms": 1000}}, None, 400, "bad_request"),
    ("rotate_grace_negative", "POST", "/v1/keys/{id}/rotate", {"grace_seconds": -1}, None,
     400, "bad_request"),
    ("rotate_grace_string", "POST", "/v1/keys/{id}/rotate", {"grace_seconds": "10"}, None,
     400, "bad_request"),
    ("rotate_grace_fraction", "POST", "/v1/keys/{id}/rotate", {"grace_seconds": 1.5}, None,
     400, "bad_request"),
    ("rotate_grace_too_long", "POST", "/v1/keys/{id}/rotate",
     {"grace_seconds": 365 * 86400 + 1}, None, 400, "bad_request"),
    ("rotate_unknown_field", "POST", "/v1/keys/{id}/rotate", {"grace": 10}, None, 400,
     "bad_request"),
    ("rotate_array_body", "POST", "/v1/keys/{id}/rotate", "[]", None, 400, "invalid_json"),
    # -- verify ---------------------------------------------------------------
    ("verify_key_number", "POST", "/v1/keys/verify", {"key": 5}, None, 400, "bad_request"),
    ("verify_key_missing", "POST", "/v1/keys/verify", {"scopes": []}, None, 400,
     "bad_request"),
    ("verify_key_null", "POST", "/v1/keys/verify", {"key": None}, None, 400, "bad_request"),
    ("verify_scopes_string", "POST", "/v1/keys/verify", {"key": "k", "scopes": "a:b"}, None,
     400, "bad_request"),
    ("verify_scopes_wildcard", "POST", "/v1/keys/verify", {"key": "k", "scopes": ["a:*"]},
     None, 400, "bad_request"),
    ("verify_scopes_star", "POST", "/v1/keys/verify", {"key": "k", "scopes": ["*"]}, None,
     400, "bad_request"),
    ("verify_scopes_number", "POST", "/v1/keys/verify", {"key": "k", "scopes": [1]}, None,
     400, "bad_request"),
    ("verify_scopes_too_many", "POST", "/v1/keys/verify",
     {"key": "k", "scopes": ["s:%d" % i for i in range(17)]}, None, 400, "bad_request"),
    ("verify_cost_zero", "POST", "/v1/keys/verify", {"key": "k", "cost": 0}, None, 400,
     "bad_request"),
    ("verify_cost_negative", "POST", "/v1/keys/verify", {"key": "k", "cost": -1}, None, 400,
     "bad_request"),
    ("verify_cost_string", "POST", "/v1/keys/verify", {"key": "k", "cost": "1"}, None, 400,
     "bad_request"),
    ("verify_cost_fraction", "POST", "/v1/keys/verify", {"key": "k", "cost": 1.5}, None, 400,
     "bad_request"),
    ("verify_cost_too_big", "POST", "/v1/keys/verify", {"key": "k", "cost": 1000001}, None,
     400, "bad_request"),
    ("verify_unknown_field", "POST", "/v1/keys/verify", {"key": "k", "debug": True}, None,
     400, "bad_request"),
    # -- sizes ----------------------------------------------------------------
    ("body_over_64k", "POST", "/v1/keys", {"meta": {"pad": "x" * (65 * 1024)}}, None, 413,
     "payload_too_large"),
    ("patch_body_over_64k", "PATCH", "/v1/keys/{id}", {"meta": {"pad": "x" * (65 * 1024)}},
     None, 413, "payload_too_large"),
    ("verify_body_over_64k", "POST", "/v1/keys/verify", {"key": "k" * (65 * 1024)}, None,
     413, "payload_too_large"),
    # -- routes, ids, methods -----------------------------------------------
    ("unknown_path", "GET", "/v1/nope", None, None, 404, "not_found"),
    ("unknown_version", "GET", "/v2/keys", None, None, 404, "not_found"),
    ("root_path", "GET", "/", None, None, 404, "not_found"),
    ("keys_trailing_slash_extra", "GET", "/v1/keys/{id}/extra", None, None, 404, "not_found"),
    ("verify_subpath", "POST", "/v1/keys/verify/x", {"key": "k"}, None, 404, "not_found"),
    ("id_short", "GET", "/v1/keys/short", None, None, 404, "not_found"),
    ("id_bangs", "GET", "/v1/keys/!!!!!!!!!!!!", None, None, 404, "not_found"),
    ("id_too_long", "GET", "/v1/keys/AAAAAAAAAAAAA", None, None, 404, "not_found"),
    ("id_percent", "DELETE", "/v1/keys/%41AAAAAAAAAA%00", None, None, 404, "not_found"),
    ("id_unknown", "GET", "/v1/keys/Zz0Zz0Zz0Zz0", None, None, 404, "not_found"),
    ("rotate_bad_id", "POST", "/v1/keys/short/rotate", {}, None, 404, "not_found"),
    ("put_keys", "PUT", "/v1/keys", {}, None, 405, "method_not_allowed"),
    ("delete_healthz", "DELETE", "/healthz", None, None, 405, "method_not_allowed"),
    ("post_readyz", "POST", "/readyz", {}, None, 405, "method_not_allowed"),
    ("post_auth", "POST", "/v1/auth", {}, None, 405, "method_not_allowed"),
    ("get_verify", "GET", "/v1/keys/verify", None, None, 405, "method_not_allowed"),
    ("put_key", "PUT", "/v1/keys/{id}", {}, None, 405, "method_not_allowed"),
    ("get_rotate", "GET", "/v1/keys/{id}/rotate", None, None, 405, "method_not_allowed"),
    ("delete_audit", "DELETE", "/v1/audit", None, None, 405, "method_not_allowed"),
    ("weird_method", "BREW", "/v1/keys", None, None, 405, "method_not_allowed"),
    # -- query strings ----------------------------------------------------------
    ("limit_zero", "GET", "/v1/keys?limit=0", None, None, 400, "bad_request"),
    ("limit_abc", "GET", "/v1/keys?limit=abc", None, None, 400, "bad_request"),
    ("limit_5000", "GET", "/v1/keys?limit=5000", None, None, 400, "bad_request"),
    ("limit_empty", "GET", "/v1/keys?limit=", None, None, 400, "bad_request"),
    ("limit_negative", "GET", "/v1/keys?limit=-1", None, None, 400, "bad_request"),
    ("limit_overflow", "GET", "/v1/keys?limit=99999999999999999999999", None, None, 400,
     "bad_request"),
    ("cursor_bad_escape", "GET", "/v1/keys?cursor=%zz", None, None, 400, "bad_request"),
    ("owner_nul", "GET", "/v1/keys?owner=%00", None, None, 400, "bad_request"),
    ("owner_truncated_escape", "GET", "/v1/keys?owner=%4", None, None, 400, "bad_request"),
    ("audit_limit_zero", "GET", "/v1/audit?limit=0", None, None, 400, "bad_request"),
    ("audit_limit_5000", "GET", "/v1/audit?limit=5000", None, None, 400, "bad_request"),
    ("audit_cursor_negative", "GET", "/v1/audit?cursor=-1", None, None, 400, "bad_request"),
    ("audit_cursor_abc", "GET", "/v1/audit?cursor=abc", None, None, 400, "bad_request"),
    ("audit_action_bad_escape", "GET", "/v1/audit?action=%zz", None, None, 400,
     "bad_request"),
    # -- authentication ---------------------------------------------------------
    ("no_auth_bad_body", "POST", "/v1/keys", "{", {"Authorization": None}, 401,
     "unauthorized"),
    ("bearer_empty", "GET", "/v1/keys", None, {"Authorization": "Bearer "}, 401,
     "unauthorized"),
    ("bearer_10k", "GET", "/v1/keys", None, {"Authorization": "Bearer " + "k" * 10000}, 401,
     "unauthorized"),
    ("bearer_nul_escape", "GET", "/v1/keys", None, {"Authorization": "Bearer kw_live_%00"},
     401, "unauthorized"),
]


class Malformed(ServerTestCase):

    @classmethod
    def fixtures(cls):
        st, _, d = cls.srv.request("POST", "/v1/keys", {"owner": "target"}, auth=cls.admin)
        assert st == 201, d
        cls.target = d
        cls.keys_made.append(d["key"])

    def run_case(self, method, path, body, headers, status, code):
        h = {"Authorization": "Bearer " + self.admin}
        for k, v in (headers or {}).items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        path = path.replace("{id}", self.target["id"])
        st, hdrs, data = self.req(method, path, body, headers=h)
        if status == ANY4XX:
            self.assertTrue(400 <= st < 500, (st, hdrs, data))
        else:
            self.assertEqual(st, status, (hdrs, data))
        if code is not None:
            self.expect((st, hdrs, data), st, code)
        elif "application/json" in hdrs.get("content-type", ""):
            self.assertIn("error", data)
        if st == 401:
            self.assertEqual(hdrs.get("www-authenticate"), "Bearer")
        if st == 405:
            self.assertIn("allow", hdrs)
            self.assertNotIn(method, [m.strip() for m in hdrs["allow"].split(",")])
        self.assert_healthy()
        # A refused request changes nothing.
        cur = self.get(self.target["id"])
        self.assertEqual(cur["status"], "active")
        self.assertIsNone(cur["rotated_to"])

    def test_nothing_was_created(self):
        # Every refused create above ran in some order; none made a key
        # besides the target (run last by name order would be fragile:
        # compare against the audit instead).
        recs = self.audit("?action=key.create&limit=1000")["records"]
        ids = {r["target"] for r in recs}
        st, _, d = self.call("GET", "/v1/keys?limit=1000")
        self.assertEqual({k["id"] for k in d["keys"]}, ids)

    def test_allow_headers(self):
        for method, path, allow in (("PUT", "/v1/keys", "GET, POST"),
                                    ("DELETE", "/healthz", "GET"),
                                    ("GET", "/v1/keys/verify", "POST"),
                                    ("PUT", "/v1/keys/{id}", "GET, PATCH, DELETE"),
                                    ("GET", "/v1/keys/{id}/rotate", "POST")):
            with self.subTest(method=method, path=path):
                st, h, d = self.call(method, path.replace("{id}", self.target["id"]))
                self.expect((st, h, d), 405, "method_not_allowed")
                self.assertEqual(h.get("allow"), allow)

    def test_auth_overlong_key(self):
        for hdr in ("Authorization", "X-API-Key"):
            with self.subTest(header=hdr):
                v = ("Bearer " if hdr == "Authorization" else "") + "k" * 10240
                st, h, body = self.req("GET", "/v1/auth", headers={hdr: v})
                self.assertEqual(st, 401, h)
                self.assertEqual(h.get("x-key-code"), "MALFORMED")
                self.assert_healthy()
        long_valid_shape = kwtest.make_key("a" * 20, "Zz0Zz0Zz0Zz0", "Q" * 32)
        st, h, _ = self.req("GET", "/v1/auth", headers={"X-API-Key": long_valid_shape})
        self.assertEqual((st, h.get("x-key-code")), (401, "NOT_FOUND"))
        st, h, _ = self.req("GET", "/v1/auth",
                            headers={"X-API-Key": "b" * 21 + long_valid_shape[20:]})
        self.assertEqual((st, h.get("x-key-code")), (401, "MALFORMED"))

    def test_body_over_1mib(self):
        """h2o's own limit: 413 (any body), or a closed connection."""
        size = 1024 * 1024 + 4096
        head = ("POST /v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (self.admin, size)).encode()
        s = socket.create_connection((HOST, self.srv.port), timeout=10)
        got = b""
        try:
            s.sendall(head)
            try:
                chunk = b'{"meta":{"pad":"' + b"x" * (size - 19) + b'"}}'
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                while True:
                    c = s.recv(65536)
                    if not c:
                        break
                    got += c
                    if b"\r\n\r\n" in got and len(got) > 200:
                        break
            except (ConnectionResetError, socket.timeout):
                pass
        finally:
            s.close()
        st = statuses(got)
        self.assertTrue(st, got[:300])
        self.assertEqual(st[0], 413, got[:300])
        self.assert_healthy()

    def test_content_length_lies(self):
        # Declares more than it sends, then closes: no answer owed; alive.
        raw_exchange(self.srv.port,
                     b"POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        self.assert_healthy()
        # Negative / garbage Content-Length.
        for cl in (b"-1", b"abc"):
            out = raw_exchange(self.srv.port, b"POST /v1/keys HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: " + cl + b"\r\n\r\n{}")
            for st in statuses(out):
                self.assertTrue(400 <= st < 500, out[:300])
            self.assert_healthy()


def _make(case):
    name, method, path, body, headers, status, code = case

    def test(self):
        self.run_case(method, path, body, headers, status, code)
    test.__doc__ = "%s %s -> %s %s" % (method, path[:60], status, code or "")
    return "test_case_" + name, test


for _case in CASES:
    _n, _t = _make(_case)
    assert not hasattr(Malformed, _n), _n
    setattr(Malformed, _n, _t)


class RawSocket(ServerTestCase):
    """Requests that http.client cannot send; h2o answers some itself."""

    def assert_4xx_or_closed(self, out):
        for st in statuses(out):
            self.assertTrue(400 <= st < 500, out[:300])

    def test_truncated_request_line_then_close(self):
        out = raw_exchange(self.srv.port, b"GET /heal")
        self.assertEqual(statuses(out), [])
        self.assert_healthy()
        out = raw_exchange(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A")
        self.assertEqual(statuses(out), [])
        self.assert_healthy()

    def test_100kb_header(self):
        out = raw_exchange(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                           + b"a" * 100 * 1024 + b"\r\n\r\n")
        st = statuses(out)
        self.assertTrue(st, out[:300])
        # h2o may accept it (its cap is larger) or refuse it; never 5xx.
        self.assertTrue(st[0] == 200 or 400 <= st[0] < 500, out[:300])
        self.assert_healthy()

    def test_100kb_bearer_admin(self):
        out = raw_exchange(self.srv.port, b"GET /v1/keys HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + b"k" * 100 * 1024 + b"\r\n\r\n")
        st = statuses(out)
        self.assertTrue(st, out[:300])
        self.assertTrue(400 <= st[0] < 500, out[:300])
        self.assert_healthy()

    def test_500_headers(self):
        hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        out = raw_exchange(self.srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + hdrs
                           + b"\r\n")
        st = statuses(out)
        self.assertTrue(st, out[:300])
        self.assertTrue(400 <= st[0] < 500, out[:300])
        self.assert_healthy()

    def test_garbage_line(self):
        for junk in (b"\x00\x01garbage garbage\r\n\r\n", b"HELLO\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
                     b"GET / HTTP/9.9\r\n\r\n", b"GET\r\n\r\n"):
            with self.subTest(junk=junk[:12]):
                out = raw_exchange(self.srv.port, junk)
                self.assert_4xx_or_closed(out)
                self.assert_healthy()

    def test_http10_without_host(self):
        out = raw_exchange(self.srv.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(statuses(out), [200], out[:300])
        self.assertIn(b'{"status":"ok"}', out)
        out = raw_exchange(self.srv.port, b"GET /v1/keys HTTP/1.0\r\n"
                           b"Authorization: Bearer " + self.admin.encode() + b"\r\n\r\n")
        self.assertEqual(statuses(out), [200], out[:300])
        self.assert_healthy()

    def test_pipelined_pair(self):
        out = raw_exchange(self.srv.port,
                           b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", shutdown=False,
                           read_timeout=2)
        self.assertEqual(statuses(out), [200, 200], out)
        self.assertLess(out.index(b'"ok"'), out.index(b'"ready"'))
        a = self.admin.encode()
        out = raw_exchange(self.srv.port,
                           b"GET /v1/keys?limit=1 HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + a + b"\r\n\r\n"
                           b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", shutdown=False,
                           read_timeout=2)
        self.assertEqual(statuses(out), [200, 200], out)

    def test_keepalive_after_non_200(self):
        """A 404 (or 201, 401...) must not cost the client its connection:
        both pipelined requests are answered (a gateway keeps its upstream
        connections alive through refusals)."""
        a = self.admin.encode()
        out = raw_exchange(self.srv.port,
                           b"GET /v1/keys/short HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + a + b"\r\n\r\n"
                           b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + a + b"\r\nContent-Length: 15\r\n\r\n"
                           b'{"key":"short"}', shutdown=False, read_timeout=2)
        self.assertEqual(statuses(out), [404, 200], out)
        self.assertIn(b'"MALFORMED"', out)

    def test_keepalive_gateway_refusal(self):
        """/v1/auth 401 then 200 on one connection (http.client, keep-alive)."""
        st, _, d = self.call("POST", "/v1/keys", {"owner": "ka"})
        self.assertEqual(st, 201, d)
        c = http.client.HTTPConnection(HOST, self.srv.port, timeout=5)
        try:
            answers = []
            for key in ("kw_live_bad", d["key"], "kw_live_bad", d["key"]):
                c.request("GET", "/v1/auth", headers={"X-API-Key": key})
                r = c.getresponse()
                r.read()
                answers.append((r.status, r.getheader("Connection", "").lower()))
            self.assertEqual([a for a, _ in answers], [401, 200, 401, 200])
            self.assertNotIn("close", [b for _, b in answers], answers)
        finally:
            c.close()

    def test_slow_client_does_not_block_others(self):
        stalled = []
        try:
            for part in (b"POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                         b"Authorization: Bearer " + self.admin.encode() + b"\r\n\r\n{\"own",
                         b"GET /heal", b"GET /healthz HTTP/1.1\r\nHo"):
                for _ in range(3):  # more stalled connections than threads
                    s = socket.create_connection((HOST, self.srv.port), timeout=5)
                    s.sendall(part)
                    stalled.append(s)
            time.sleep(0.2)
            t0 = time.time()
            for _ in range(10):
                self.assert_healthy()
            self.expect(self.call("GET", "/v1/keys?limit=1"), 200)
            self.assertLess(time.time() - t0, 5)
            # The stalled POST then completes normally.
            s = stalled[0]
            s.sendall(b'er": "slow"}' + b" " * (100 - 5 - 12))
            got = b""
            while b"\r\n\r\n" not in got:
                c = s.recv(65536)
                if not c:
                    break
                got += c
            self.assertEqual(statuses(got), [201], got[:300])
        finally:
            for s in stalled:
                s.close()
        self.assert_healthy()

    def test_many_connections_at_once(self):
        socks = []
        try:
            for _ in range(100):
                socks.append(socket.create_connection((HOST, self.srv.port), timeout=5))
            for s in socks:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for s in socks:
                out = b""
                while True:
                    c = s.recv(65536)
                    if not c:
                        break
                    out += c
                self.assertEqual(statuses(out), [200], out[:200])
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    unittest.main()
