"""Black-box: stateless keys (tokens) through the real `keyward` binary:
token mint|attenuate|inspect|revoke, signing-key rotate|retire|list, and
`key verify` of tokens (docs/tokens.md)."""

import json
import re
import unittest

from kwtest import KwTestCase

TOKEN_RE = re.compile(r"^[a-z][a-z0-9_]*_[0-9A-Za-z]{51,}$")


class TokenTest(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()

    def mint(self, *args):
        o = self.ok_json("token", "mint", "--json", *args)
        self.assertRegex(o["token"], TOKEN_RE)
        self.keys.append(o["token"])
        return o["token"], o["id"]

    def narrow(self, token, *args, code=0):
        r = self.kw("token", "attenuate", *args, input=token + "\n")
        self.assertEqual(r.code, code, r)
        if code == 0:
            child = r.out.strip()
            self.assertRegex(child, TOKEN_RE)
            self.keys.append(child)
            return child
        return r

    def inspect(self, token, *args):
        r = self.kw("token", "inspect", "--json", *args, input=token)
        self.assertIn(r.code, (0, 1), r)
        return json.loads(r.out)

    def test_mint_verify_and_scopes(self):
        tok, id_ = self.mint("--owner", "acme", "--scope", "orders:*", "--expires", "1h")
        self.assert_code(tok, "VALID", "--scope", "orders:read")
        self.assert_code(tok, "INSUFFICIENT_SCOPE", "--scope", "users:read")
        o = self.verify_json(tok)
        self.assertEqual((o["id"], o["owner"], o["scopes"]), (id_, "acme", ["orders:*"]))
        self.assertEqual(o["meta"]["stateless"], True)
        self.assertIsNone(o["remaining"])

    def test_mint_needs_an_owner_and_valid_settings(self):
        self.expect(self.kw("token", "mint"), 2, err_has="--owner")
        self.expect(self.kw("token", "mint", "--owner", "o", "--scope", "BAD"), 2)
        self.expect(self.kw("token", "mint", "--owner", "o", "--prefix", "Bad"), 2,
                    err_has="invalid prefix")
        self.expect(self.kw("token", "mint", "--owner", "o", "--expires", "2001-01-01T00:00:00Z"), 2)

    def test_attenuate_offline_and_never_wider(self):
        tok, id_ = self.mint("--owner", "acme", "--scope", "orders:*")
        # offline: a database that does not exist is not needed
        r = self.kw("--db", "sqlite:" + self.tmp + "/none.db", "token", "attenuate",
                    "--scope", "orders:read", input=tok, db=False)
        self.assertEqual(r.code, 0, r)
        child = r.out.strip()
        self.keys.append(child)
        self.assert_code(child, "VALID", "--scope", "orders:read")
        self.assert_code(child, "INSUFFICIENT_SCOPE", "--scope", "orders:write")
        self.assert_code(tok, "VALID", "--scope", "orders:write")
        # wider: refused, with why
        r = self.narrow(child, "--scope", "orders:*", code=2)
        self.assertIn("does not grant", r.err)
        r = self.narrow(tok, "--scope", "*", code=2)
        self.narrow(tok, code=2)  # nothing to restrict
        self.narrow(tok, "--address", "10.0.0.1/8", code=2)  # host bits set
        self.assertNotIn(tok, r.err + r.out)

    def test_audience_and_address(self):
        tok, _ = self.mint("--owner", "acme")
        child = self.narrow(tok, "--audience", "api.example.com", "--address", "10.0.0.0/8")
        self.assert_code(child, "INSUFFICIENT_SCOPE")
        self.assert_code(child, "INSUFFICIENT_SCOPE", "--audience", "api.example.com")
        self.assert_code(child, "INSUFFICIENT_SCOPE", "--audience", "api.example.com",
                         "--client-address", "11.0.0.1")
        self.assert_code(child, "VALID", "--audience", "api.example.com",
                         "--client-address", "10.200.0.1")

    def test_inspect_without_trusting(self):
        tok, id_ = self.mint("--owner", "acme", "--scope", "orders:*", "--scope", "billing:read")
        child = self.narrow(tok, "--scope", "orders:read", "--new-id", "--audience", "a")
        o = self.inspect(child)
        self.assertEqual(o["root_id"], id_)
        self.assertNotEqual(o["id"], id_)
        self.assertEqual(o["scopes"], ["orders:read"])
        self.assertEqual(o["audiences"], ["a"])
        self.assertNotIn("verdict", o)
        o = self.inspect(child, "--verify")
        self.assertEqual(o["verdict"], "INSUFFICIENT_SCOPE")  # no audience stated
        o = self.inspect(child, "--verify", "--audience", "a")
        self.assertEqual(o["verdict"], "VALID")
        # a character changed: MALFORMED, exit 1, with the reason
        bad = child[:-1] + ("0" if child[-1] != "0" else "1")
        r = self.kw("token", "inspect", input=bad)
        self.expect(r, 1, err_has=())
        self.assertTrue(r.out.startswith("MALFORMED: "), r)
        self.assert_code(bad, "MALFORMED")

    def test_revoke_a_child_then_the_root(self):
        tok, id_ = self.mint("--owner", "acme")
        child = self.narrow(tok, "--new-id")
        child_id = self.inspect(child)["id"]
        grandchild = self.narrow(child, "--audience", "x")
        self.ok("token", "revoke", child_id)
        self.assert_code(child, "REVOKED")
        self.assert_code(grandchild, "REVOKED", "--audience", "x")
        self.assert_code(tok, "VALID")
        self.expect(self.kw("token", "revoke", child_id), 1, err_has="already revoked")
        self.ok("token", "revoke", id_)
        self.assert_code(tok, "REVOKED")
        self.expect(self.kw("token", "revoke", "nope"), 2)

    def test_signing_keys(self):
        old, _ = self.mint("--owner", "acme")
        keys = self.ok_json("signing-key", "list", "--json")
        self.assertEqual(len(keys), 1)
        first = keys[0]["kid"]
        self.assertEqual((keys[0]["kind"], keys[0]["state"]), ("hmac-sha256", "active"))
        r = self.ok("signing-key", "rotate")
        new_kid = r.out.split()[2]
        new, _ = self.mint("--owner", "acme")
        self.assertEqual(self.inspect(new)["kid"], new_kid)
        self.assertEqual(self.inspect(old)["kid"], first)
        self.assert_code(old, "VALID")
        states = {k["kid"]: k["state"] for k in self.ok_json("signing-key", "list", "--json")}
        self.assertEqual(states, {first: "verify", new_kid: "active"})
        self.ok("signing-key", "retire", first)
        self.assert_code(old, "NOT_FOUND")
        self.assert_code(new, "VALID")
        self.expect(self.kw("signing-key", "retire", first), 1, err_has="already retired")
        self.expect(self.kw("signing-key", "retire", "zz"), 2)

    def test_never_stored_or_audited(self):
        tok, id_ = self.mint("--owner", "acme", "--scope", "orders:*")
        child = self.narrow(tok, "--scope", "orders:read")
        self.ok("signing-key", "rotate")
        records = self.audit()
        actions = [r["action"] for r in records]
        for a in ("signing-key.create", "token.mint", "signing-key.rotate"):
            self.assertIn(a, actions)
        mint = [r for r in records if r["action"] == "token.mint"][0]
        self.assertEqual(mint["target"], id_)
        self.assert_no_keys_in(json.dumps(records), "the audit trail")
        self.assert_no_keys_in_db()
        for t in (tok, child):
            self.assertNotIn(t.encode(), self.db_bytes())


if __name__ == "__main__":
    unittest.main()
