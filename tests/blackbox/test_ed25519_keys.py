"""Black-box: format 2 stateless keys (tokens) signed with Ed25519 signing
keys, through the real `keyward` binary and `keyward serve` (docs/tokens.md
"Format 2", "Through a database", "Verifiers that cannot mint";
docs/http-api.md `GET /v1/signing-keys`; docs/cli.md `signing-key`).

A minting database (its own `keyward init`, its own pepper) publishes its
Ed25519 public keys (`signing-key public`, `GET /v1/signing-keys`); a
second database imports them (`signing-key import [--sync]`) and verifies
what they signed without being able to mint. The pure-Python Ed25519 and
token code of test_token_vectors_v2.py (written from docs/tokens.md alone)
checks the published keys against the tokens, forges tokens under keys the
product does not hold, and tampers with blocks.
"""

import base64
import json
import os
import re
import sqlite3
import time
import unittest

import kwtest
import test_token_vectors_v2 as v2
from kwserver import ServerTestCase
from kwtest import ID_RE, TIME_RE, KwTestCase, run

TOKEN_RE = re.compile(r"^[a-z][a-z0-9_]*_[0-9A-Za-z]{93,}$")
KID_RE = re.compile(r"^[0-9a-f]{8}$")
X_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
ACTIVE_RE = re.compile(r"^signing key ([0-9a-f]{8}) is active\n$")
# docs/tokens.md: every entry of the key set, in this order.
JWK_FIELDS = ["kid", "kty", "crv", "x", "use", "alg", "state", "created_at"]
# `signing-key list --json`: every entry, in this order.
LIST_FIELDS = ["kid", "kind", "state", "public_only", "public_key", "created_at",
               "retired_at"]
SYNC_RETIRED = "%s retired: the set no longer lists it\n"
CANNOT_MINT = "no signing key here can mint"
PROPAGATION_S = 1.5  # "reaches it within a second" (docs/tokens.md), plus slack


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk(kid, x, **extra):
    d = {"kid": kid, "kty": "OKP", "crv": "Ed25519", "x": x}
    d.update(extra)
    return d


def key_set(*keys):
    return json.dumps({"keys": list(keys)})


def forge(kid, seed, owner="forger", scopes=(), expires_in=3600, token_id="Forged000001",
          prefix="kw_live"):
    """A format 2 token made outside keyward: claims under kid, signed with
    seed (a key keyward may or may not know), block 0's key from a fixed
    seed."""
    now = int(time.time())
    c = v2.claims(int(kid, 16), token_id, now - 5, 0, now + expires_in if expires_in else 0,
                  owner, list(scopes))
    return v2.mint(seed, prefix, c, bytes(range(0xa0, 0xc0)))


def flip(text, index_from_signature=None, last=False):
    """The token with one byte changed (and its check digits recomputed, so
    that it parses and only a signature or the proof is wrong): a byte of
    block 0's signature, or the last byte (the proof)."""
    prefix, data = v2.bytes_of(text)
    data = bytearray(data)
    if last:
        i = len(data) - 1
    else:
        sig = v2.parse(text)["blocks"][0]["signature"]
        i = bytes(data).find(sig) + index_from_signature
    data[i] ^= 0x01
    return v2.text_of(prefix, bytes(data))


class Ed25519Case(KwTestCase):
    """Database A (self.url, kwtest's) mints; helpers for a second one."""

    def setUp(self):
        super().setUp()
        self.admin = self.init()
        self.db_b = os.path.join(self.tmp, "verifier.db")
        self.url_b = "sqlite:" + self.db_b

    # ---- running ----------------------------------------------------------

    def kwb(self, *args, input=None):
        """keyward --db <database B> args..."""
        return run(["--db", self.url_b] + list(args), input=input, cwd=self.tmp)

    def on(self, url, *args, input=None):
        return run(["--db", url] + list(args), input=input, cwd=self.tmp)

    def ok_on(self, url, *args, input=None):
        r = self.on(url, *args, input=input)
        self.assertEqual(r.code, 0, r)
        return r

    def init_b(self):
        r = run(["--db", self.url_b, "init", "--json"], cwd=self.tmp)
        self.assertEqual(r.code, 0, r)
        self.keys.append(json.loads(r.out)["key"])
        # its own pepper, not A's
        pa, pb = self.pepper_path, self.db_b + ".pepper"
        self.assertTrue(os.path.exists(pb), r)
        self.assertNotEqual(self.file_digest(pa), self.file_digest(pb))

    # ---- keyring ----------------------------------------------------------

    def rotate(self, url, *args):
        r = self.ok_on(url, "signing-key", "rotate", *args)
        m = ACTIVE_RE.match(r.out)
        self.assertIsNotNone(m, r)
        self.assertEqual(r.err, "", r)
        return m.group(1)

    def rotate_ed(self, url=None):
        return self.rotate(url or self.url, "--kind", "ed25519")

    def retire(self, url, kid):
        r = self.ok_on(url, "signing-key", "retire", kid)
        self.assertEqual(r.out, "signing key %s is retired: its tokens no longer verify\n" % kid)

    def sk_list(self, url=None):
        r = self.ok_on(url or self.url, "signing-key", "list", "--json")
        keys = json.loads(r.out)
        for k in keys:
            self.assertEqual(list(k.keys()), LIST_FIELDS, r)
        return keys

    def sk_table(self, url=None):
        """signing-key list as text: {kid: (kind, state, holds, retired)}."""
        r = self.ok_on(url or self.url, "signing-key", "list")
        lines = r.out.splitlines()
        self.assertEqual(lines[0].split(),
                         ["KID", "KIND", "STATE", "HOLDS", "CREATED", "RETIRED"], r)
        rows = {}
        for line in lines[1:]:
            f = line.split()
            self.assertEqual(len(f), 6, r)
            self.assertRegex(f[4], TIME_RE)
            rows[f[0]] = (f[1], f[2], f[3], f[5])
        return rows

    def public(self, url=None):
        r = self.ok_on(url or self.url, "signing-key", "public")
        self.assertTrue(r.out.endswith("}\n") and r.out.count("\n") == 1, r)
        doc = json.loads(r.out)
        self.assertEqual(list(doc.keys()), ["keys"], r)
        return doc, r.out

    def assert_public_entry(self, e):
        self.assertEqual(list(e.keys()), JWK_FIELDS, e)
        self.assertRegex(e["kid"], KID_RE)
        self.assertEqual((e["kty"], e["crv"], e["use"], e["alg"]),
                         ("OKP", "Ed25519", "sig", "EdDSA"), e)
        self.assertRegex(e["x"], X_RE)
        self.assertEqual(len(unb64url(e["x"])), 32)
        self.assertIn(e["state"], ("active", "verify"))
        self.assertRegex(e["created_at"], TIME_RE)

    def import_set(self, url, text, *args):
        return self.on(url, "signing-key", "import", *args, input=text)

    # ---- tokens -----------------------------------------------------------

    def mint(self, url=None, *args):
        r = self.ok_on(url or self.url, "token", "mint", "--json", "--owner", "acme", *args)
        o = json.loads(r.out)
        self.assertEqual(list(o.keys()), ["token", "id"], r)
        self.assertRegex(o["token"], TOKEN_RE)
        self.assertRegex(o["id"], ID_RE)
        self.keys.append(o["token"])
        return o["token"], o["id"]

    def attenuate(self, token, *args):
        """Offline: no --db at all (kwtest scrubs KEYWARD_DB)."""
        r = run(["token", "attenuate"] + list(args), input=token, cwd=self.tmp)
        self.assertEqual(r.code, 0, r)
        child = r.out.strip()
        self.assertEqual(r.out, child + "\n", r)
        self.assertRegex(child, TOKEN_RE)
        self.keys.append(child)
        return child

    def inspect(self, token, *args, url=None):
        r = self.on(url or self.url, "token", "inspect", "--json", *args, input=token)
        self.assertIn(r.code, (0, 1), r)
        return json.loads(r.out)

    def code(self, url, token, *args):
        """key verify's verdict, with its exit status checked."""
        r = self.on(url, "key", "verify", *args, input=token)
        self.assertIn(r.code, (0, 1), r)
        verdict = r.out.strip()
        self.assertEqual(r.out, verdict + "\n", r)
        self.assertEqual(r.code, 0 if verdict == "VALID" else 1, r)
        return verdict

    def verify_json_on(self, url, token, *args):
        r = self.on(url, "key", "verify", "--json", *args, input=token)
        self.assertIn(r.code, (0, 1), r)
        return json.loads(r.out)


class OneDatabase(Ed25519Case):
    """A keyring with an Ed25519 key: rotate, list, mint, inspect, verify,
    attenuate offline."""

    def test_rotate_ed25519_then_list(self):
        kid = self.rotate_ed()
        rows = self.sk_table()
        self.assertEqual(rows, {kid: ("ed25519", "active", "secret", "-")})
        keys = self.sk_list()
        self.assertEqual(len(keys), 1)
        k = keys[0]
        self.assertEqual((k["kid"], k["kind"], k["state"], k["public_only"], k["retired_at"]),
                         (kid, "ed25519", "active", False, None))
        self.assertRegex(k["public_key"], X_RE)
        self.assertEqual(len(unb64url(k["public_key"])), 32)
        self.assertEqual(b64url(unb64url(k["public_key"])), k["public_key"])
        self.assertRegex(k["created_at"], TIME_RE)
        # an unknown kind: usage, nothing made
        r = self.kw("signing-key", "rotate", "--kind", "rsa")
        self.expect(r, 2, "", ("--kind is hmac-sha256 or ed25519, not 'rsa'",
                               "Try 'keyward signing-key rotate --help'"))
        r = self.kw("signing-key", "rotate", "--kind", "Ed25519")
        self.expect(r, 2, "", "--kind")
        self.assertEqual(self.sk_list(), keys)
        # without --kind, the kind of the key it follows
        kid2 = self.rotate(self.url)
        kinds = {k["kid"]: (k["kind"], k["state"]) for k in self.sk_list()}
        self.assertEqual(kinds, {kid: ("ed25519", "verify"), kid2: ("ed25519", "active")})
        self.assertEqual([a["target"] for a in self.audit()
                          if a["action"] == "signing-key.rotate"], [kid, kid2])

    def test_mint_is_format_2_and_verifies(self):
        kid = self.rotate_ed()
        x = unb64url(self.sk_list()[0]["public_key"])
        tok, id_ = self.mint(None, "--scope", "orders:*", "--scope", "billing:read",
                             "--expires", "1h")
        o = self.inspect(tok)
        self.assertEqual((o["version"], o["kid"], o["id"], o["root_id"], o["owner"]),
                         (2, kid, id_, id_, "acme"))
        self.assertEqual((o["scopes"], o["caveats"]), (["orders:*", "billing:read"], 0))
        r = self.ok("token", "inspect", input=tok)
        self.assertIn("format        2 (Ed25519)\n", r.out)
        self.assertIn("signing key   %s\n" % kid, r.out)
        o = self.inspect(tok, "--verify")
        self.assertEqual(o["verdict"], "VALID")
        self.assertEqual(self.code(self.url, tok), "VALID")
        self.assertEqual(self.code(self.url, tok, "--scope", "orders:read"), "VALID")
        self.assertEqual(self.code(self.url, tok, "--scope", "users:read"), "INSUFFICIENT_SCOPE")
        v = self.verify_json_on(self.url, tok)
        self.assertEqual((v["code"], v["id"], v["owner"]), ("VALID", id_, "acme"))
        self.assertEqual(v["meta"], {"stateless": True, "root_id": id_, "kid": kid})
        # the listed public key is the one that signed it (an independent
        # Ed25519, from the page alone), and no other key is
        self.assertTrue(v2.verifies(tok, x))
        self.assertFalse(v2.verifies(tok, v2.public_key(v2.OTHER_SEED)))

    def test_attenuate_offline_and_verify(self):
        self.rotate_ed()
        x = unb64url(self.sk_list()[0]["public_key"])
        tok, id_ = self.mint(None, "--scope", "orders:*", "--expires", "1h")
        child = self.attenuate(tok, "--scope", "orders:read", "--audience", "api.example.com")
        self.assertTrue(child.startswith("kw_live_"))
        self.assertGreater(len(child), len(tok))
        o = self.inspect(child)
        self.assertEqual((o["version"], o["id"], o["scopes"], o["audiences"], o["caveats"]),
                         (2, id_, ["orders:read"], ["api.example.com"], 2))
        self.assertTrue(v2.verifies(child, x))
        aud = ("--audience", "api.example.com")
        self.assertEqual(self.code(self.url, child, *aud), "VALID")
        self.assertEqual(self.code(self.url, child, *aud, "--scope", "orders:read"), "VALID")
        self.assertEqual(self.code(self.url, child), "INSUFFICIENT_SCOPE")
        self.assertEqual(self.code(self.url, child, "--audience", "api.example.org"),
                         "INSUFFICIENT_SCOPE")
        self.assertEqual(self.code(self.url, child, *aud, "--scope", "orders:write"),
                         "INSUFFICIENT_SCOPE")
        self.assertEqual(self.code(self.url, tok, "--scope", "orders:write"), "VALID")
        # a grandchild: a block more
        gc = self.attenuate(child, "--address", "10.0.0.0/8", "--new-id")
        self.assertTrue(v2.verifies(gc, x))
        self.assertEqual(len(v2.parse(gc)["blocks"]), 3)
        self.assertEqual(self.code(self.url, gc, *aud, "--client-address", "10.1.2.3"), "VALID")
        self.assertEqual(self.code(self.url, gc, *aud, "--client-address", "11.1.2.3"),
                         "INSUFFICIENT_SCOPE")
        # never wider, with why
        r = run(["token", "attenuate", "--scope", "orders:*"], input=child, cwd=self.tmp)
        self.expect(r, 2, "", "does not grant")
        # no block can be taken off: the child's blocks before its last one,
        # with its proof, is no token of the key's
        _, pdata = v2.bytes_of(tok)
        prefix, cdata = v2.bytes_of(child)
        stripped = v2.text_of(prefix, pdata[:-32] + cdata[-32:])
        self.assertEqual(self.code(self.url, stripped), "NOT_FOUND")
        # one byte of a signature or of the proof: NOT_FOUND, not MALFORMED
        for bad in (flip(child, 3), flip(child, 40), flip(child, last=True),
                    flip(tok, 5), flip(tok, last=True)):
            self.assertEqual(self.code(self.url, bad, *aud), "NOT_FOUND")

    def test_hmac_and_ed25519_keys_side_by_side(self):
        old, old_id = self.mint()  # the first mint makes an HMAC key
        hmac_kid = self.inspect(old)["kid"]
        self.assertEqual(self.inspect(old)["version"], 1)
        ed = self.rotate_ed()
        new, _ = self.mint()
        self.assertEqual((self.inspect(new)["version"], self.inspect(new)["kid"]), (2, ed))
        self.assertEqual(self.code(self.url, old), "VALID")
        self.assertEqual(self.code(self.url, new), "VALID")
        self.assertEqual(self.sk_table(), {hmac_kid: ("hmac-sha256", "verify", "secret", "-"),
                                          ed: ("ed25519", "active", "secret", "-")})
        # the key decides, never the token: a format 2 token under the HMAC
        # kid, or under the Ed25519 kid signed by another key, is NOT_FOUND
        self.assertEqual(self.code(self.url, forge(hmac_kid, v2.ROOT_SEED)), "NOT_FOUND")
        self.assertEqual(self.code(self.url, forge(ed, v2.ROOT_SEED)), "NOT_FOUND")
        # retired: its tokens NOT_FOUND, the others untouched
        self.retire(self.url, ed)
        self.assertEqual(self.code(self.url, new), "NOT_FOUND")
        self.assertEqual(self.code(self.url, old), "VALID")
        self.expect(self.kw("signing-key", "retire", ed), 1, "", "already retired")
        # no active key holds a secret any more: minting refuses, exit 1
        r = self.kw("token", "mint", "--owner", "x")
        self.expect(r, 1, "", CANNOT_MINT)


class PublicKeySet(Ed25519Case):
    """`signing-key public`: exactly the Ed25519 keys that verify."""

    def test_only_ed25519_keys_that_verify(self):
        self.assertEqual(self.public(), ({"keys": []}, '{"keys":[]}\n'))
        self.mint()  # HMAC key h
        self.assertEqual(self.public()[0], {"keys": []})
        e1 = self.rotate_ed()
        e2 = self.rotate_ed()
        self.retire(self.url, e1)
        e3 = self.rotate_ed()
        h2 = self.rotate(self.url, "--kind", "hmac-sha256")  # e3 -> verify
        listed = {k["kid"]: k for k in self.sk_list()}
        self.assertEqual(listed[e1]["state"], "retired")
        self.assertEqual(listed[h2]["public_key"], None)
        doc, text = self.public()
        kids = [e["kid"] for e in doc["keys"]]
        self.assertEqual(sorted(kids), sorted([e2, e3]))
        for e in doc["keys"]:
            self.assert_public_entry(e)
            self.assertEqual(e["x"], listed[e["kid"]]["public_key"])
            self.assertEqual(e["state"], listed[e["kid"]]["state"])
            self.assertEqual(e["state"], "verify")
            self.assertEqual(e["created_at"], listed[e["kid"]]["created_at"])
        self.assertEqual(len({e["x"] for e in doc["keys"]}), 2)
        # nothing but public fields (RFC 8037: "d" is the private key)
        for field in ('"d"', '"k"', "sealed", "secret", "seed"):
            self.assertNotIn(field, text)
        r = self.kw("signing-key", "public", "extra")
        self.expect(r, 2, "", "takes no argument")


class Verifier(Ed25519Case):
    """A second database imports A's key set: it verifies, it cannot mint."""

    def setUp(self):
        super().setUp()
        self.init_b()

    def test_import_verify_and_cannot_mint(self):
        hmac_tok, _ = self.mint()  # format 1, A's HMAC key
        kid = self.rotate_ed()
        tok, id_ = self.mint(None, "--scope", "orders:*", "--expires", "1h")
        child = self.attenuate(tok, "--scope", "orders:read", "--audience", "api.example.com",
                               "--new-id")
        doc, text = self.public()
        self.assertEqual([e["kid"] for e in doc["keys"]], [kid])
        self.assertEqual(self.code(self.url_b, tok), "NOT_FOUND")  # before
        r = self.import_set(self.url_b, text)
        self.expect(r, 0, "%s added\n" % kid)
        r = self.import_set(self.url_b, text)
        self.expect(r, 0, "%s already here\n" % kid)
        # the imported key: state verify, its public key only
        self.assertEqual(self.sk_table(self.url_b), {kid: ("ed25519", "verify", "public", "-")})
        keys = self.sk_list(self.url_b)
        self.assertEqual(len(keys), 1)
        self.assertEqual((keys[0]["kid"], keys[0]["kind"], keys[0]["state"],
                          keys[0]["public_only"], keys[0]["public_key"]),
                         (kid, "ed25519", "verify", True, doc["keys"][0]["x"]))
        imports = [a for a in self.on_audit(self.url_b) if a["action"] == "signing-key.import"]
        self.assertEqual([a["target"] for a in imports], [kid])  # once: "already here" is not
        # A's Ed25519 tokens and their offline children verify on B
        self.assertEqual(self.code(self.url_b, tok), "VALID")
        self.assertEqual(self.code(self.url_b, tok, "--scope", "orders:write"), "VALID")
        v = self.verify_json_on(self.url_b, tok)
        self.assertEqual((v["code"], v["id"], v["owner"], v["meta"]["kid"]),
                         ("VALID", id_, "acme", kid))
        aud = ("--audience", "api.example.com")
        self.assertEqual(self.code(self.url_b, child, *aud), "VALID")
        self.assertEqual(self.code(self.url_b, child, *aud, "--scope", "orders:write"),
                         "INSUFFICIENT_SCOPE")
        self.assertEqual(self.code(self.url_b, child), "INSUFFICIENT_SCOPE")
        self.assertEqual(self.inspect(child, "--verify", *aud, url=self.url_b)["verdict"],
                         "VALID")
        for bad in (flip(tok, 7), flip(child, last=True)):
            self.assertEqual(self.code(self.url_b, bad, *aud), "NOT_FOUND")
        # A's HMAC (format 1) tokens: B has no such key
        self.assertEqual(self.code(self.url_b, hmac_tok), "NOT_FOUND")
        # B cannot mint, and trying changes nothing
        before = self.sk_list(self.url_b)
        r = self.kwb("token", "mint", "--owner", "x")
        self.expect(r, 1, "", ("keyward token mint:", CANNOT_MINT))
        r = self.kwb("token", "mint", "--owner", "x", "--json")
        self.expect(r, 1, "", CANNOT_MINT)
        self.assertEqual(self.sk_list(self.url_b), before)
        self.assertEqual(self.sk_table(self.url_b), {kid: ("ed25519", "verify", "public", "-")})
        # B republishes what it verifies
        bdoc, _ = self.public(self.url_b)
        self.assertEqual([(e["kid"], e["x"], e["state"]) for e in bdoc["keys"]],
                         [(kid, doc["keys"][0]["x"], "verify")])
        # revocation is the verifier's own: B revokes the child's id
        child_id = self.inspect(child)["id"]
        self.assertNotEqual(child_id, id_)
        self.ok_on(self.url_b, "token", "revoke", child_id)
        self.assertEqual(self.code(self.url_b, child, *aud), "REVOKED")
        self.assertEqual(self.code(self.url_b, tok), "VALID")

    def on_audit(self, url):
        r = self.ok_on(url, "audit", "list", "--all", "--json")
        return json.loads(r.out)["records"]

    def test_sync_adds_new_and_retires_unlisted(self):
        own, _ = self.mint(self.url_b)  # B's own HMAC key: never touched by --sync
        own_kid = self.inspect(own, url=self.url_b)["kid"]
        e1 = self.rotate_ed()
        t1, _ = self.mint()
        self.expect(self.import_set(self.url_b, self.public()[1]), 0, "%s added\n" % e1)
        self.assertEqual(self.code(self.url_b, t1), "VALID")
        # A rotates and retires the old key: the set lists only e2
        e2 = self.rotate_ed()
        t2, _ = self.mint()
        self.retire(self.url, e1)
        doc, text = self.public()
        self.assertEqual([e["kid"] for e in doc["keys"]], [e2])
        self.assertEqual(self.code(self.url_b, t2), "NOT_FOUND")  # not yet imported
        r = self.import_set(self.url_b, text, "--sync")
        self.expect(r, 0, "%s added\n" % e2 + SYNC_RETIRED % e1)
        rows = self.sk_table(self.url_b)
        self.assertEqual(rows[e1][:3], ("ed25519", "retired", "public"))
        self.assertRegex(rows[e1][3], TIME_RE)
        self.assertEqual(rows[e2], ("ed25519", "verify", "public", "-"))
        self.assertEqual(rows[own_kid], ("hmac-sha256", "active", "secret", "-"))
        self.assertEqual(self.code(self.url_b, t1), "NOT_FOUND")
        self.assertEqual(self.code(self.url_b, self.attenuate(t1, "--audience", "a"),
                                   "--audience", "a"), "NOT_FOUND")
        self.assertEqual(self.code(self.url_b, t2), "VALID")
        self.assertEqual(self.code(self.url_b, own), "VALID")
        # again: nothing to do
        self.expect(self.import_set(self.url_b, text, "--sync"), 0, "%s already here\n" % e2)
        # an old set that still lists e1 brings nothing back
        self.expect(self.import_set(self.url_b, key_set(jwk(e1, self.x_of(e1)))), 0,
                    "%s is retired here: not brought back\n" % e1)
        self.assertEqual(self.code(self.url_b, t1), "NOT_FOUND")
        self.assertEqual(self.sk_table(self.url_b)[e1][1], "retired")
        # an empty set with --sync is refused (retiring is final: a broken
        # source must not end every key at once); one by one works
        self.expect(self.import_set(self.url_b, '{"keys":[]}', "--sync"), 2, "",
                    "lists no key")
        self.assertEqual(self.code(self.url_b, t2), "VALID")
        self.ok_on(self.url_b, "signing-key", "retire", e2)
        self.assertEqual(self.code(self.url_b, t2), "NOT_FOUND")
        self.assertEqual(self.code(self.url_b, own), "VALID")
        self.assertEqual(self.sk_table(self.url_b)[own_kid][1], "active")
        retired = [a["target"] for a in self.on_audit(self.url_b)
                   if a["action"] == "signing-key.retire"]
        self.assertEqual(retired, [e1, e2])

    def x_of(self, kid):
        return {k["kid"]: k["public_key"] for k in self.sk_list()}[kid]

    def test_import_refuses_bad_input(self):
        kid = self.rotate_ed()
        good_x = self.x_of(kid)
        self.expect(self.import_set(self.url_b, self.public()[1]), 0, "%s added\n" % kid)
        before = self.sk_list(self.url_b)
        other_x = b64url(v2.public_key(v2.OTHER_SEED))
        # the last character of x with a padding bit set: another text, same bytes
        last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        noncanon = good_x[:-1] + last[last.index(good_x[-1]) | 1]
        small_order = b64url(b"\x01" + b"\x00" * 31)  # the identity point
        cases = [
            ("not JSON", "hello", "not JSON"),
            ("empty", "", "not JSON"),
            ("trailing garbage", '{"keys":[]} x', "not JSON"),
            ("no keys array", '{"key":[]}', "not a key set"),
            ("a private part", key_set(dict(jwk("01020304", other_x), d=other_x)),
             "private part"),
            ("use enc", key_set(dict(jwk("01020304", other_x), use="enc")), "for signatures"),
            ("alg ES256", key_set(dict(jwk("01020304", other_x), alg="ES256")),
             "for signatures"),
            ("state retired", key_set(dict(jwk("01020304", other_x), state="retired")),
             "state"),
            ("a bare array", json.dumps([jwk("01020304", other_x)]), "not a key set"),
            ("kty RSA", key_set(jwk("01020304", other_x, kty="RSA")), "not an Ed25519 key"),
            ("kty EC", key_set(jwk("01020304", other_x, kty="EC")), "not an Ed25519 key"),
            ("crv X25519", key_set(jwk("01020304", other_x, crv="X25519")),
             "not an Ed25519 key"),
            ("x short", key_set(jwk("01020304", other_x[:-1])), "x is not 32 bytes"),
            ("x long", key_set(jwk("01020304", other_x + "A")), "x is not 32 bytes"),
            ("x padded", key_set(jwk("01020304", other_x + "=")), "x is not 32 bytes"),
            ("x standard base64", key_set(jwk("01020304", other_x[:-2] + "+/")),
             "x is not 32 bytes"),
            ("x non-canonical", key_set(jwk("01020304", noncanon)), "x is not 32 bytes"),
            ("x small order", key_set(jwk("01020304", small_order)),
             "not an Ed25519 public key"),
            ("x all zero", key_set(jwk("01020304", b64url(bytes(32)))),
             "not an Ed25519 public key"),
            ("x a number", key_set(jwk("01020304", 5)), "x is not 32 bytes"),
            ("kid 7 digits", key_set(jwk("0102030", other_x)), "kid"),
            ("kid upper case", key_set(jwk("0102030A", other_x)), "kid"),
            ("kid a number", key_set(jwk(16909060, other_x)), "kid"),
            ("kid 0", key_set(jwk("00000000", other_x)), "kid other than 0"),
            ("kid twice", key_set(jwk("01020304", other_x), jwk("01020304", good_x)),
             "listed twice"),
            # a good key first, a bad one after: the set is refused whole
            ("good then bad", key_set(jwk("01020305", other_x), jwk("01020306", "nope")),
             "key 2 of the set"),
            ("257 keys", key_set(*[jwk("%08x" % (0x10000000 + i), other_x)
                                   for i in range(257)]), "more than 256 keys"),
        ]
        for name, text, phrase in cases:
            with self.subTest(name):
                r = self.import_set(self.url_b, text)
                self.expect(r, 2, "", ("keyward signing-key import: ", phrase))
                self.assertEqual(r.err.count("\n"), 1, r)
                self.assertEqual(self.sk_list(self.url_b), before)
        for sync in ((), ("--sync",)):
            with self.subTest("over 1 MiB", sync=sync):
                big = '{"keys":[]}' + " " * ((1 << 20) - 10)  # 1 MiB + 1 byte
                r = self.import_set(self.url_b, big, *sync)
                self.expect(r, 2, "", ("keyward signing-key import: ",
                                       "longer than 1 MiB"))
                self.assertEqual(self.sk_list(self.url_b), before)
        # exactly 1 MiB is read (an empty set, without --sync: nothing to do)
        r = self.import_set(self.url_b, '{"keys":[]}' + " " * ((1 << 20) - 11))
        self.expect(r, 0, "")
        self.assertEqual(self.sk_list(self.url_b), before)
        # a kid that names another key here: a conflict, exit 1, nothing
        # after it added (docs/cli.md)
        r = self.import_set(self.url_b, key_set(jwk("0a0b0c01", other_x),
                                                jwk(kid, other_x),
                                                jwk("0a0b0c02", other_x)))
        self.expect(r, 1, "0a0b0c01 added\n", ("conflict", kid, "another key"))
        kids = [k["kid"] for k in self.sk_list(self.url_b)]
        self.assertIn("0a0b0c01", kids)
        self.assertNotIn("0a0b0c02", kids)
        self.assertEqual({k["kid"]: k["public_key"] for k in self.sk_list(self.url_b)}[kid],
                         good_x)
        # an argument instead of stdin: usage
        r = self.kwb("signing-key", "import", "keys.json")
        self.expect(r, 2, "", "from stdin")

    def test_external_issuer(self):
        """A key set from outside keyward (minimal JWKs): tokens made by the
        page's construction alone verify on B; the same claims under
        another key do not."""
        kid = "5eed0001"
        x = b64url(v2.public_key(v2.ROOT_SEED))
        self.assertEqual(x, v2.ROOT_PUBLIC_B64URL)
        self.expect(self.import_set(self.url_b, key_set(jwk(kid, x))), 0, "%s added\n" % kid)
        tok = forge(kid, v2.ROOT_SEED, owner="ext", scopes=["orders:*"],
                    token_id="External0001")
        v = self.verify_json_on(self.url_b, tok, "--scope", "orders:read")
        self.assertEqual((v["code"], v["id"], v["owner"], v["scopes"], v["meta"]["kid"]),
                         ("VALID", "External0001", "ext", ["orders:*"], kid))
        child = self.attenuate(tok, "--scope", "orders:read", "--audience", "b")
        self.assertEqual(self.code(self.url_b, child, "--audience", "b"), "VALID")
        self.assertEqual(self.code(self.url_b, child, "--audience", "b", "--scope",
                                   "orders:write"), "INSUFFICIENT_SCOPE")
        self.assertEqual(self.code(self.url_b, forge(kid, v2.OTHER_SEED)), "NOT_FOUND")
        expired = forge(kid, v2.ROOT_SEED, expires_in=-1)
        self.assertEqual(self.code(self.url_b, expired), "EXPIRED")
        # the importer cannot mint with it; A (which never saw it) refuses it
        self.expect(self.kwb("token", "mint", "--owner", "x"), 1, "", CANNOT_MINT)
        self.assertEqual(self.code(self.url, tok), "NOT_FOUND")


class Secrecy(Ed25519Case):
    """No token in listings or key sets; no secret field published; no
    token echoed in errors."""

    def test_tokens_never_in_listings_or_storage(self):
        self.init_b()
        self.mint()
        kid = self.rotate_ed()
        tok, _ = self.mint(None, "--scope", "orders:*")
        child = self.attenuate(tok, "--audience", "a")
        self.import_set(self.url_b, self.public()[1])
        outs = []
        for url in (self.url, self.url_b):
            for args in (("signing-key", "list"), ("signing-key", "list", "--json"),
                         ("signing-key", "public"), ("audit", "list", "--all", "--json")):
                r = self.ok_on(url, *args)
                outs.append(r.out + r.err)
        proofs = [v2.bytes_of(t)[1][-32:] for t in (tok, child)]  # one-time seeds
        for text in outs:
            self.assert_no_keys_in(text)
            for p in proofs:
                self.assertNotIn(b64url(p), text)
                self.assertNotIn(p.hex(), text)
        for path in (self.db, self.db_b):
            data = b""
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(path + suffix):
                    with open(path + suffix, "rb") as f:
                        data += f.read()
            for t in (tok, child):
                self.assertNotIn(t.encode(), data)
            for p in proofs:
                self.assertNotIn(p, data)
        doc, _ = self.public()
        for e in doc["keys"]:
            self.assert_public_entry(e)  # exactly the public fields
        self.assertEqual([e["kid"] for e in doc["keys"]], [kid])

    def test_token_on_the_command_line_is_not_echoed(self):
        """docs/cli.md: "no error ever contains a key": a token in argv is
        refused and never printed back (it once was)."""
        self.rotate_ed()
        tok, _ = self.mint()
        leaks = []
        for args in (("token", "attenuate", "--audience", "a", tok),
                     ("token", "inspect", tok),
                     ("token", "inspect", "--verify", tok)):
            r = self.kw(*args)
            self.expect(r, 2, "", "never passed on the command line")
            if tok in r.err + r.out:
                leaks.append(args[:2])
        self.assertEqual(leaks, [], "the token is echoed on stderr by %s" % leaks)

    def test_tampered_keyring_is_never_published(self):
        """docs/tokens.md: a public key swapped in the database does not
        verify, and a key that does not open fails closed; `signing-key
        public` (and GET /v1/signing-keys, the same function) fails closed
        too (it once published such keys), so a verifier never imports a
        key that someone with write access to the database alone chose."""
        kid = self.rotate_ed()
        tok, _ = self.mint()
        forged_kid = "11223344"
        evil = v2.public_key(v2.ROOT_SEED)
        con = sqlite3.connect(self.db)
        try:
            con.execute("INSERT INTO signing_keys (kid, kind, state, created_at, sealed, "
                        "public_key) VALUES (?, 'ed25519', 'verify', ?, ?, ?)",
                        (int(forged_kid, 16), int(time.time()), bytes(40), evil))
            con.commit()
        finally:
            con.close()
        # verifying here fails closed (exit 3: the key does not open)
        r = self.verify(forge(forged_kid, v2.ROOT_SEED))
        self.expect(r, 3, "", "does not open")
        problems = []
        r = self.kw("signing-key", "public")
        if r.code == 0 and forged_kid in r.out:
            problems.append("the inserted key %s is published" % forged_kid)
        # a public key swapped under a real kid: also published
        con = sqlite3.connect(self.db)
        try:
            con.execute("DELETE FROM signing_keys WHERE kid = ?", (int(forged_kid, 16),))
            con.execute("UPDATE signing_keys SET public_key = ? WHERE kid = ?",
                        (evil, int(kid, 16)))
            con.commit()
        finally:
            con.close()
        self.expect(self.verify(tok), 3, "", "does not open")
        r = self.kw("signing-key", "public")
        if r.code == 0 and b64url(evil) in r.out:
            problems.append("the swapped public key of %s is published" % kid)
        self.assertEqual(problems, [])


# ---- HTTP --------------------------------------------------------------------

def settle(tc, checks, want, since, timeout=PROPAGATION_S, again=3):
    """Each of checks ({name: fn}) answers want within timeout of since (the
    moment the other process's change was made), and keeps answering it.

    A server's threads each hold a context that rereads the keyring on its
    own clock (docs/tokens.md: within a second, an unknown kid within
    100 ms), so right after one thread sees a change another may not yet:
    every check is polled against the same deadline, and once it is past,
    every check is asked `again` times more (by then every context has
    reread)."""
    late = {}
    for name, fn in checks.items():
        while True:
            got = fn()
            took = time.monotonic() - since
            if got == want or took > timeout:
                break
            time.sleep(0.02)
        if got != want:
            late[name] = "%s after %.2f s" % (got, took)
    tc.assertEqual(late, {}, "not %s within %.1f s of the change" % (want, timeout))
    rest = since + timeout - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    for name, fn in checks.items():
        for _ in range(again):
            tc.assertEqual(fn(), want, "%s: no longer %s %.2f s after the change"
                           % (name, want, time.monotonic() - since))


class HttpMinter(ServerTestCase):
    """keyward serve on a database whose active key is Ed25519."""

    @classmethod
    def fixtures(cls):
        r = cls.srv.kw("signing-key", "rotate", "--kind", "ed25519")
        if r.code != 0:
            raise AssertionError(repr(r))
        cls.kid = r.out.split()[2]

    def cli(self, *args, input=None):
        r = self.srv.kw(*args, input=input)
        self.assertEqual(r.code, 0, r)
        return r

    def cli_public(self):
        return json.loads(self.cli("signing-key", "public").out)

    def http_public(self):
        st, h, data = self.req("GET", "/v1/signing-keys")
        self.assertEqual(st, 200, (h, data))
        self.assertIn("application/json", h.get("content-type", ""))
        return data

    def attenuate(self, token, *args):
        r = kwtest.run(["token", "attenuate"] + list(args), input=token)
        self.assertEqual(r.code, 0, r)
        type(self).keys_made.append(r.out.strip())
        return r.out.strip()

    def auth_code(self, token, audience=None, scopes=None):
        extra = {"X-Key-Audience": audience} if audience else None
        st, h, body = self.auth(token, scopes=scopes, extra=extra)
        return st, h.get("x-key-code"), h

    def test_signing_keys_endpoint(self):
        data = self.http_public()
        self.assertEqual(data, self.cli_public())
        self.assertIn(self.kid, [e["kid"] for e in data["keys"]])
        for e in data["keys"]:
            self.assertEqual(list(e.keys()), JWK_FIELDS, e)
            self.assertEqual((e["kty"], e["crv"]), ("OKP", "Ed25519"))
        # public: a bad Authorization header changes nothing
        st, _, d2 = self.req("GET", "/v1/signing-keys", auth="kw_live_garbage")
        self.assertEqual((st, d2), (200, data))
        # read-only
        for method, auth in (("POST", None), ("POST", self.admin), ("PUT", self.admin),
                             ("DELETE", self.admin)):
            with self.subTest(method=method, admin=auth is not None):
                st, h, body = self.req(method, "/v1/signing-keys", body={"keys": []},
                                       auth=auth)
                self.assertEqual(st, 405, (h, body))
                self.assertEqual(body["error"]["code"], "method_not_allowed")
                self.assertIn("GET", [m.strip() for m in h.get("allow", "").split(",")], h)
        self.assertEqual(self.http_public(), data)
        # an HMAC key is never listed; the Ed25519 key it follows still is
        r = self.cli("signing-key", "rotate", "--kind", "hmac-sha256")
        h_kid = r.out.split()[2]
        r = self.cli("signing-key", "rotate", "--kind", "ed25519")
        changed = time.monotonic()
        e_kid = r.out.split()[2]
        want = self.cli_public()
        kids = [e["kid"] for e in want["keys"]]
        self.assertNotIn(h_kid, kids)
        self.assertIn(self.kid, kids)
        self.assertIn(e_kid, kids)
        # the server answers what the CLI prints (within the keyring's reread)
        settle(self, {"GET /v1/signing-keys": self.http_public}, want, changed)
        self.assert_healthy()

    def test_tokens_over_http(self):
        st, _, d = self.call("POST", "/v1/tokens", {"owner": "web", "scopes": ["orders:*"]})
        self.assertEqual(st, 201, d)
        tok = d["token"]
        type(self).keys_made.append(tok)
        published = {e["kid"]: e["x"] for e in self.http_public()["keys"]}
        self.assertIn(d["kid"], published)
        r = self.cli("token", "inspect", "--json", input=tok)
        self.assertEqual(json.loads(r.out)["version"], 2)
        self.assertTrue(v2.verifies(tok, unb64url(published[d["kid"]])))
        v = self.verify(tok, ["orders:read"])
        self.assertEqual((v["code"], v["id"], v["owner"], v["meta"]["kid"]),
                         ("VALID", d["id"], "web", d["kid"]))
        st, code, h = self.auth_code(tok, scopes="orders:read")
        self.assertEqual((st, code, h.get("x-key-id"), h.get("x-key-owner")),
                         (200, "VALID", d["id"], "web"))
        # a child made offline
        child = self.attenuate(tok, "--scope", "orders:read", "--audience", "api.example.com")
        body = {"key": child, "audience": "api.example.com"}
        v = self.expect(self.call("POST", "/v1/keys/verify", body), 200)
        self.assertEqual((v["code"], v["scopes"]), ("VALID", ["orders:read"]))
        # the cache remembers the signatures, never the verdict
        self.assertEqual(self.code_of(child), "INSUFFICIENT_SCOPE")
        body = {"key": child, "audience": "api.example.com", "scopes": ["orders:write"]}
        self.assertEqual(self.expect(self.call("POST", "/v1/keys/verify", body), 200)["code"],
                         "INSUFFICIENT_SCOPE")
        st, code, h = self.auth_code(child, audience="api.example.com", scopes="orders:read")
        self.assertEqual((st, code, h.get("x-key-scopes")), (200, "VALID", "orders:read"))
        self.assertEqual(self.auth_code(child)[:2], (403, "INSUFFICIENT_SCOPE"))
        self.assertEqual(self.auth_code(child, audience="api.example.com",
                                        scopes="orders:write")[:2], (403, "INSUFFICIENT_SCOPE"))
        # a changed signature or proof
        for bad in (flip(child, 9), flip(child, last=True), flip(tok, 33)):
            self.assertEqual(self.verify(bad)["code"], "NOT_FOUND")
            self.assertEqual(self.auth_code(bad, audience="api.example.com")[:2],
                             (401, "NOT_FOUND"))
        # revoked over HTTP: the child with it
        self.expect(self.call("DELETE", "/v1/tokens/" + d["id"]), 200)
        self.assertEqual(self.code_of(tok), "REVOKED")
        self.assertEqual(self.auth_code(child, audience="api.example.com")[:2],
                         (401, "REVOKED"))
        self.assert_healthy()

    def test_retire_by_cli_reaches_the_server(self):
        kid = self.cli("signing-key", "rotate", "--kind", "ed25519").out.split()[2]
        o = json.loads(self.cli("token", "mint", "--owner", "cli", "--json").out)
        made = time.monotonic()
        tok = o["token"]
        type(self).keys_made.append(tok)
        aud = "api.example.com"
        child = self.attenuate(tok, "--audience", aud)
        checks = {
            "verify token": lambda: self.code_of(tok),
            "verify child": lambda: self.verify_aud(child, aud),
            "auth token": lambda: self.auth_code(tok)[1],
            "auth child": lambda: self.auth_code(child, audience=aud)[1],
        }
        # a kid the server has not seen yet (docs: within 100 ms)
        settle(self, checks, "VALID", made)
        self.cli("signing-key", "rotate", "--kind", "ed25519")  # the server keeps minting
        self.cli("signing-key", "retire", kid)
        retired = time.monotonic()
        self.assertNotIn(kid, [e["kid"] for e in self.http_public()["keys"]])
        settle(self, checks, "NOT_FOUND", retired)
        self.assertEqual(self.auth_code(child, audience=aud)[0], 401)
        st, _, d = self.call("POST", "/v1/tokens", {"owner": "after"})
        self.assertEqual(st, 201, d)
        type(self).keys_made.append(d["token"])
        self.assertNotEqual(d["kid"], kid)
        self.assertEqual(self.code_of(d["token"]), "VALID")
        self.assert_healthy()

    def verify_aud(self, token, audience):
        body = {"key": token, "audience": audience}
        return self.expect(self.call("POST", "/v1/keys/verify", body), 200)["code"]

    def test_no_secret_in_the_key_set(self):
        st, _, d = self.call("POST", "/v1/tokens", {"owner": "s"})
        self.assertEqual(st, 201, d)
        type(self).keys_made.append(d["token"])
        st, h, raw = self.srv.request("GET", "/v1/signing-keys")
        text = json.dumps(raw)
        for made in type(self).keys_made:
            self.assertNotIn(made, text)
        for e in raw["keys"]:
            self.assertEqual(list(e.keys()), JWK_FIELDS, e)


class HttpVerifier(ServerTestCase):
    """keyward serve on a database that only imported another's key set."""

    @classmethod
    def fixtures(cls):
        import tempfile
        cls.mtmp = tempfile.mkdtemp(prefix="kwminter-")
        cls.murl = "sqlite:" + os.path.join(cls.mtmp, "m.db")
        for args in (["init"], ["signing-key", "rotate", "--kind", "ed25519"]):
            r = kwtest.run(["--db", cls.murl] + args, cwd=cls.mtmp)
            if r.code != 0:
                raise AssertionError(repr(r))
        cls.mkid = r.out.split()[2]

    @classmethod
    def tearDownClass(cls):
        import shutil
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.mtmp, True)

    def minter(self, *args, input=None):
        r = kwtest.run(["--db", self.murl] + list(args), input=input, cwd=self.mtmp)
        self.assertEqual(r.code, 0, r)
        return r

    def test_import_verify_sync_over_http(self):
        tok = json.loads(self.minter("token", "mint", "--owner", "m", "--json").out)["token"]
        type(self).keys_made.append(tok)
        self.assertEqual(self.code_of(tok), "NOT_FOUND")
        keyset = self.minter("signing-key", "public").out
        r = self.srv.kw("signing-key", "import", input=keyset)
        self.assertEqual((r.code, r.out), (0, "%s added\n" % self.mkid), r)
        imported = time.monotonic()
        settle(self, {"verify": lambda: self.code_of(tok),
                      "auth": lambda: self.auth(tok)[1].get("x-key-code")}, "VALID", imported)
        # it republishes the key, and cannot mint
        st, _, data = self.req("GET", "/v1/signing-keys")
        self.assertEqual(st, 200)
        self.assertEqual([(e["kid"], e["state"]) for e in data["keys"]], [(self.mkid, "verify")])
        self.assertEqual(data["keys"][0]["x"], json.loads(keyset)["keys"][0]["x"])
        st, _, d = self.call("POST", "/v1/tokens", {"owner": "x"})
        self.assertEqual(st, 409, d)
        self.assertEqual(d["error"]["code"], "conflict")
        self.assertIn(CANNOT_MINT, d["error"]["message"])
        # the minter rotates and retires; the verifier syncs
        new_kid = self.minter("signing-key", "rotate").out.split()[2]
        tok2 = json.loads(self.minter("token", "mint", "--owner", "m", "--json").out)["token"]
        type(self).keys_made.append(tok2)
        self.minter("signing-key", "retire", self.mkid)
        r = self.srv.kw("signing-key", "import", "--sync",
                        input=self.minter("signing-key", "public").out)
        self.assertEqual((r.code, r.out),
                         (0, "%s added\n" % new_kid + SYNC_RETIRED % self.mkid), r)
        synced = time.monotonic()
        settle(self, {"verify old": lambda: self.code_of(tok),
                      "auth old": lambda: self.auth(tok)[1].get("x-key-code")},
               "NOT_FOUND", synced)
        settle(self, {"verify new": lambda: self.code_of(tok2),
                      "auth new": lambda: self.auth(tok2)[1].get("x-key-code")},
               "VALID", synced)
        self.assert_healthy()


if __name__ == "__main__":
    unittest.main()
