"""Black-box: the seed system's own signed and hierarchical keys verify
through `keyward key verify` when their secrets are configured
(SPEC.md, "Seed compatibility"; docs/seed-import.md).

The keys are made by the seed's own Python code (seed 001, APIKeyGenerator),
run here with Debian's python3. It is transcribed below as the seed prints
it, indentation restored; the seed forgot `import json` and `List`, which
are added.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import string
import unittest
from datetime import datetime, timedelta
from typing import Dict, List, Optional, Tuple

from kwtest import KwTestCase


# ---- seed 001, as written there -----------------------------------------------

class APIKeyGenerator:
    def __init__(self, signing_secret: str):
        self.signing_secret = signing_secret.encode()

    def generate_api_key(self, key_length: int = 32) -> str:
        """Generate a cryptographically secure API key"""
        # Use secrets module for cryptographic randomness
        alphabet = string.ascii_letters + string.digits
        key = ''.join(secrets.choice(alphabet) for _ in range(key_length))
        return key

    def generate_signed_key(self, user_id: str, permissions: List[str]) -> Tuple[str, str]:
        """Generate a signed API key with embedded metadata"""
        # Create key payload
        payload = {
            'user_id': user_id,
            'permissions': permissions,
            'created_at': datetime.utcnow().isoformat(),
            'key_id': secrets.token_hex(8)
        }
        # Serialize payload
        payload_json = json.dumps(payload, sort_keys=True)
        payload_bytes = payload_json.encode()
        # Create signature
        signature = hmac.new(
            self.signing_secret,
            payload_bytes,
            hashlib.sha256
        ).digest()
        # Combine payload and signature
        key_data = payload_bytes + signature
        # Encode as URL-safe base64
        api_key = base64.urlsafe_b64encode(key_data).decode().rstrip('=')
        return api_key, payload['key_id']

    def verify_signed_key(self, api_key: str) -> Optional[Dict]:
        """Verify and extract data from signed API key"""
        try:
            # Decode from base64
            key_data = base64.urlsafe_b64decode(api_key + '===')
            # Split payload and signature
            payload_bytes = key_data[:-32]  # SHA256 produces 32 bytes
            provided_signature = key_data[-32:]
            # Verify signature
            expected_signature = hmac.new(
                self.signing_secret,
                payload_bytes,
                hashlib.sha256
            ).digest()
            if not hmac.compare_digest(provided_signature, expected_signature):
                return None
            # Parse payload
            payload = json.loads(payload_bytes.decode())
            # Check expiration if implemented
            created_at = datetime.fromisoformat(payload['created_at'])
            if datetime.utcnow() - created_at > timedelta(days=365):
                return None
            return payload
        except Exception:
            return None

    def generate_hierarchical_keys(self, master_key: str, scope: str) -> str:
        """Generate scoped keys from master key"""
        # Derive scoped key using HMAC
        scoped_key = hmac.new(
            master_key.encode(),
            scope.encode(),
            hashlib.sha256
        ).hexdigest()
        return f"sk_{scope}_{scoped_key[:32]}"


# ---- the tests ------------------------------------------------------------------

SIGNING = "seed-signing-secret-" + secrets.token_hex(8)
MASTER = "seed-master-" + secrets.token_hex(8)


def signed_at(gen, user_id, permissions, created_at):
    """generate_signed_key's own steps, with a chosen created_at (for
    expiry tests): the same payload, serialisation and signature."""
    payload = {'user_id': user_id, 'permissions': permissions,
               'created_at': created_at.isoformat(), 'key_id': secrets.token_hex(8)}
    payload_bytes = json.dumps(payload, sort_keys=True).encode()
    sig = hmac.new(gen.signing_secret, payload_bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload_bytes + sig).decode().rstrip('='), payload['key_id']


class SeedKeys(KwTestCase):
    def setUp(self):
        super().setUp()
        self.init()
        self.gen = APIKeyGenerator(SIGNING)
        self.env = dict(os.environ, KEYWARD_SEED_SIGNING_SECRET=SIGNING,
                        KEYWARD_SEED_MASTER_KEY=MASTER)

    def code(self, key, *args, env=None):
        r = self.verify(key, *args, env=self.env if env is None else env)
        self.assertIn(r.code, (0, 1), r)
        return r.out.strip()

    def test_signed_key_verifies(self):
        key, key_id = self.gen.generate_signed_key("user-42", ["orders:read", "billing"])
        self.keys.append(key)
        self.assertIsNotNone(self.gen.verify_signed_key(key))  # the seed's own check agrees
        self.assertEqual(self.code(key), "VALID")
        self.assertEqual(self.code(key, "--scope", "orders:read"), "VALID")
        self.assertEqual(self.code(key, "--scope", "billing"), "VALID")
        self.assertEqual(self.code(key, "--scope", "orders:write"), "INSUFFICIENT_SCOPE")
        r = self.verify(key, "--json", env=self.env)
        o = json.loads(r.out)
        self.assertEqual((o["code"], o["owner"], o["scopes"], o["id"]),
                         ("VALID", "user-42", ["orders:read", "billing"], key_id[:12]))
        self.assertEqual(o["meta"], {"seed": "signed", "key_id": key_id})

    def test_signed_key_refused_when_altered_or_unconfigured(self):
        key, _ = self.gen.generate_signed_key("u", ["orders:read"])
        self.keys.append(key)
        # (not the last character: some of its bits may be padding, which
        # base64 decoders ignore)
        for i in (0, len(key) // 2, len(key) - 3):
            c = "A" if key[i] != "A" else "B"
            bad = key[:i] + c + key[i + 1:]
            self.assertIsNone(self.gen.verify_signed_key(bad))
            self.assertNotEqual(self.code(bad), "VALID", i)
        other = dict(self.env, KEYWARD_SEED_SIGNING_SECRET="another secret")
        self.assertNotEqual(self.code(key, env=other), "VALID")
        bare = {k: v for k, v in self.env.items() if not k.startswith("KEYWARD_SEED")}
        self.assertNotEqual(self.code(key, env=bare), "VALID")

    def test_signed_key_lifetime_is_365_days(self):
        now = datetime.utcnow()
        young, _ = signed_at(self.gen, "u", [], now - timedelta(days=364))
        old, _ = signed_at(self.gen, "u", [], now - timedelta(days=366))
        self.keys += [young, old]
        self.assertIsNotNone(self.gen.verify_signed_key(young))
        self.assertIsNone(self.gen.verify_signed_key(old))
        self.assertEqual(self.code(young), "VALID")
        self.assertEqual(self.code(old), "EXPIRED")

    def test_signed_key_owner_is_plain_text(self):
        # signed, but its user_id could break a header line: refused
        payload = {'user_id': "u\r\nX-Evil: 1", 'permissions': [],
                   'created_at': datetime.utcnow().isoformat(), 'key_id': secrets.token_hex(8)}
        payload_bytes = json.dumps(payload, sort_keys=True).encode()
        sig = hmac.new(self.gen.signing_secret, payload_bytes, hashlib.sha256).digest()
        key = base64.urlsafe_b64encode(payload_bytes + sig).decode().rstrip('=')
        self.keys.append(key)
        self.assertEqual(self.code(key), "MALFORMED")

    def test_signed_key_revocation(self):
        key, key_id = self.gen.generate_signed_key("u", [])
        self.keys.append(key)
        self.ok("token", "revoke", key_id[:12])
        self.assertEqual(self.code(key), "REVOKED")

    def test_hierarchical_key_grants_exactly_its_scope(self):
        key = self.gen.generate_hierarchical_keys(MASTER, "orders:read")
        self.keys.append(key)
        self.assertEqual(self.code(key), "VALID")
        self.assertEqual(self.code(key, "--scope", "orders:read"), "VALID")
        self.assertEqual(self.code(key, "--scope", "orders:write"), "INSUFFICIENT_SCOPE")
        o = json.loads(self.verify(key, "--json", env=self.env).out)
        self.assertEqual((o["owner"], o["scopes"]), ("seed-master", ["orders:read"]))
        # a seed scope keyward would read as a wildcard grants nothing
        wild = self.gen.generate_hierarchical_keys(MASTER, "orders:*")
        self.keys.append(wild)
        self.assertEqual(self.code(wild), "VALID")
        self.assertEqual(self.code(wild, "--scope", "orders:read"), "INSUFFICIENT_SCOPE")

    def test_hierarchical_key_refused_when_altered_or_unconfigured(self):
        key = self.gen.generate_hierarchical_keys(MASTER, "billing")
        forged = self.gen.generate_hierarchical_keys("not the master", "billing")
        other_scope = "sk_orders" + key[len("sk_billing"):]  # the hex of another scope
        self.keys += [key, forged]
        for bad in (forged, other_scope, key[:-1] + ("0" if key[-1] != "0" else "1")):
            self.assertNotEqual(self.code(bad), "VALID", bad[:12])
        bare = {k: v for k, v in self.env.items() if k != "KEYWARD_SEED_MASTER_KEY"}
        self.assertNotEqual(self.code(key, env=bare), "VALID")


if __name__ == "__main__":
    unittest.main()
