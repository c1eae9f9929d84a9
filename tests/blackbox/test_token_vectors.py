"""The test vectors of docs/tokens.md, rebuilt from the format's text alone.

A second implementation of stateless keys (format version 1), written from
docs/tokens.md with nothing but Python's standard library: it builds each
vector's token from the same inputs and must get the very text the C
library gives (tests/unit/test_token.c checks the C side against the same
strings); it also reads each vector back and checks its tag, and refuses
it under another key or with any character changed.
"""

import hashlib
import hmac
import unittest
import zlib

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGITS = [0, 2, 3, 5, 6, 7, 9, 10, 11]  # base62 digits for a block of k bytes
LABEL = b"keyward token v1"
SCOPES, EXPIRES, NOT_BEFORE, AUDIENCE, ADDRESS, ID = 1, 2, 3, 4, 5, 6

KEY = bytes(range(32))  # the signing key of every vector
OTHER_KEY = bytes(range(1, 33))

# (name, text): the vectors, as docs/tokens.md lists them.
VECTORS = {
    "minted": "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbPEynV9BMM2iA0wFKk1vmHScDzmdTEVFvUO9vbaV4G1Vig2QB9UT",
    "child": "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbKeRWV59ouDwKVEaJx8MPJ1gK0Xs0B4RfirfDVtT3mK0Q0ug3lc1L2g83ffHHmCaaqiCTTUoy3h3ISYSU",
    "grandchild": "kw_live_05WyFRVrN1X9zmWARXay4u4CpjSFaHi40000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbKeRWV59ouDwKVEaJx8MPJ1gK0Xs0AzP28OvUgTo0LbvQSOXkuu8MbSqYAY5T59MJ9OSHe70K23zY9OYg8MVLUoc8QrXe010N5BqKom3go28UIlD9gbLK0r3erSm3",
    "minimal": "acme_test_05K1WLpBqeh9zmWARXay4u4I9kybNxPF20000000000007d7YOt2ZahLKO6FW1cbA2AOTBQEJvV3V7nKtxpKtH3y0ztif4YzAgg",
}


# ---- the format, from docs/tokens.md ------------------------------------------

def b62_block_encode(data):
    out = []
    for i in range(0, len(data), 8):
        block = data[i:i + 8]
        v = int.from_bytes(block, "big")
        digits = []
        for _ in range(DIGITS[len(block)]):
            digits.append(B62[v % 62])
            v //= 62
        out.append("".join(reversed(digits)))
    return "".join(out)


def b62_block_decode(text):
    data = bytearray()
    while text:
        d = min(len(text), 11)
        if d not in DIGITS:
            raise ValueError("no byte count takes %d digits" % d)
        k = DIGITS.index(d)
        v = 0
        for c in text[:d]:
            v = v * 62 + B62.index(c)
        if v >= 1 << (8 * k):
            raise ValueError("block out of range")
        data += v.to_bytes(k, "big")
        text = text[d:]
    return bytes(data)


def check(text):
    v = zlib.crc32(text.encode())
    out = ""
    for _ in range(6):
        out = B62[v % 62] + out
        v //= 62
    return out


def time5(t):
    return t.to_bytes(5, "big")


def s(text):
    b = text.encode()
    return bytes([len(b)]) + b


def claims(kid, token_id, issued_at, not_before, expires_at, owner, scopes):
    return (bytes([1]) + kid.to_bytes(4, "big") + token_id.encode() + time5(issued_at)
            + time5(not_before) + time5(expires_at) + s(owner) + bytes([len(scopes)])
            + b"".join(s(x) for x in scopes))


def caveat(kind, value):
    return bytes([kind, len(value)]) + value


def chain(key, prefix, claims_bytes, caveats):
    tag = hmac.new(key, LABEL + b"\0" + prefix.encode() + b"\0" + claims_bytes,
                   hashlib.sha256).digest()
    for c in caveats:
        tag = hmac.new(tag, c, hashlib.sha256).digest()
    return tag


def token(key, prefix, claims_bytes, caveats):
    body = claims_bytes + b"".join(caveats) + chain(key, prefix, claims_bytes, caveats)
    text = prefix + "_" + b62_block_encode(body)
    return text + check(text)


def read(text):
    """(prefix, claims bytes, caveats, tag) of a token's text."""
    prefix, _, rest = text.rpartition("_")
    if len(rest) <= 50 or check(prefix + "_" + rest[:-6]) != rest[-6:]:
        raise ValueError("not a token")
    data = b62_block_decode(rest[:-6])
    body, tag = data[:-32], data[-32:]
    if body[0] != 1:
        raise ValueError("unknown version")
    off = 1 + 4 + 12 + 15
    off += 1 + body[off]              # owner
    n, off = body[off], off + 1
    for _ in range(n):                # scopes
        off += 1 + body[off]
    claims_bytes, caveats = body[:off], []
    while off < len(body):
        end = off + 2 + body[off + 1]
        caveats.append(body[off:end])
        off = end
    if off != len(body):
        raise ValueError("cut short")
    return prefix, claims_bytes, caveats, tag


def verifies(text, key):
    try:
        prefix, c, cav, tag = read(text)
    except (ValueError, IndexError):
        return False
    return hmac.compare_digest(chain(key, prefix, c, cav), tag)


# ---- the vectors --------------------------------------------------------------

MINTED = claims(0x0A0B0C0D, "Vector000001", 1767225600, 0, 1798761600, "acme",
                ["orders:*", "billing:read"])
CHILD_CAVEATS = [caveat(SCOPES, s("orders:read")), caveat(EXPIRES, time5(1782864000))]
GRANDCHILD_CAVEATS = CHILD_CAVEATS + [
    caveat(NOT_BEFORE, time5(1769904000)),
    caveat(AUDIENCE, b"api.example.com"),
    caveat(ADDRESS, bytes([4, 192, 0, 2, 0, 24])),
]
MINIMAL = claims(1, "Vector000002", 1767225600, 0, 0, "o", [])


class Vectors(unittest.TestCase):
    def test_built_from_the_spec(self):
        self.assertEqual(token(KEY, "kw_live", MINTED, []), VECTORS["minted"])
        self.assertEqual(token(KEY, "kw_live", MINTED, CHILD_CAVEATS), VECTORS["child"])
        self.assertEqual(token(KEY, "kw_live", MINTED, GRANDCHILD_CAVEATS),
                         VECTORS["grandchild"])
        self.assertEqual(token(KEY, "acme_test", MINIMAL, []), VECTORS["minimal"])

    def test_attenuation_needs_no_key(self):
        # The child's tag from the parent's tag and the caveats alone.
        _, c, _, parent_tag = read(VECTORS["minted"])
        tag = parent_tag
        for cav in CHILD_CAVEATS:
            tag = hmac.new(tag, cav, hashlib.sha256).digest()
        self.assertEqual(read(VECTORS["child"])[3], tag)
        self.assertEqual(read(VECTORS["child"])[1], c)

    def test_verify_and_refuse(self):
        for name, text in VECTORS.items():
            with self.subTest(name=name):
                self.assertTrue(verifies(text, KEY))
                self.assertFalse(verifies(text, OTHER_KEY))
                # a caveat taken off, the child's tag kept: refused
                prefix, c, cav, tag = read(text)
                if cav:
                    body = c + b"".join(cav[:-1]) + tag
                    t = prefix + "_" + b62_block_encode(body)
                    self.assertFalse(verifies(t + check(t), KEY))
                # any character changed (the check then fails, or the tag)
                for i in range(len(prefix) + 1, len(text)):
                    c2 = "0" if text[i] != "0" else "1"
                    self.assertFalse(verifies(text[:i] + c2 + text[i + 1:], KEY), i)


if __name__ == "__main__":
    unittest.main()
