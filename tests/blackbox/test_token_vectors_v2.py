"""The format 2 test vectors of docs/tokens.md, rebuilt from the format's text alone.

A second implementation of stateless keys, format version 2 (Ed25519, a
signature per block), written from docs/tokens.md with nothing but Python's
standard library: it builds each "ed25519" vector's token from the same
inputs and must get the very text the C library gives; it attenuates the
minted token into the child, and the child into the grandchild, from the
text alone (no signing key); it reads each vector back, verifies every
signature and the proof, and refuses it under another key, with any byte
changed, with its last block dropped, or with blocks moved to another
token.

Ed25519 itself (RFC 8032 section 5.1: pure Ed25519, no context) is written
here too, from the RFC's mathematics, on hashlib's SHA-512: extended
homogeneous coordinates and double-and-add, slow but plenty for a few
hundred signatures. It is checked against RFC 8032 section 7.1, TEST 1.

This file shares no code with test_token_vectors.py (format 1) on purpose:
the two stay independent readings of the page.
"""

import base64
import hashlib
import re
import unittest
import zlib

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGITS = [0, 2, 3, 5, 6, 7, 9, 10, 11]  # base62 digits for a block of k bytes
ROOT_LABEL = b"keyward token v2"
BLOCK_LABEL = b"keyward token v2 block"
VERSION = 0x02
SCOPES, EXPIRES, NOT_BEFORE, AUDIENCE, ADDRESS, ID = 1, 2, 3, 4, 5, 6
MAX_CAVEATS = 16

ROOT_SEED = bytes(range(0x00, 0x20))  # the signing key of every format 2 vector
ROOT_PUBLIC_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
ROOT_PUBLIC_B64URL = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
OTHER_SEED = bytes(range(0x01, 0x21))
BLOCK0_SEED = bytes(range(0x20, 0x40))
CHILD_SEED = bytes(range(0x40, 0x60))
GRANDCHILD_SEED = bytes(range(0x60, 0x80))

# (name, text): the format 2 vectors, as docs/tokens.md lists them.
VECTORS = {
    "ed25519 minted": "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbLOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3e1qF5136Om1ce4A8p3n9K86LILOF4TtsEa2WWdf16OZLT4F237p",
    "ed25519 child": "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbLOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3dUlwxH9ZEC2HVcB8s8he1vKDPN2a7b5BwiAq2NK8i7fSRhFJR08XI4iqsVvPN0nfsxFbWISfIq10Gzq416XANMf0bL5fmWEXMW6mM2uIh1fM8o4LkgEqDOCgq2p0TuLDIeFefJbVOtCjw3tZsO5PU6a5ii3TxAeUKKlRJNUBHsgEAUmaMfER1HJcQQ3iWcLrA5wkICqe8PXg6dUqJKLMan67KFOPo2am2W0Pfpf1lOcJN",
    "ed25519 grandchild": "kw_live_0AwA6blMR7b9zmWARXay4u4NTmUxBd6Q4000001xjQ3s0NJe7yj3iJj9ouDwKVEVVE8RqJPNELKWI9ovUbLOZWoz5duyhwFzW2GI8kVDbFpg9V11poGlvuwuh2y6lCwhR8NE6sr6q4dIOQQJim00ErDSqyGzxWK0ZmRy6Ky8avg4v1O2CiHJEBaYYTD0rhNEI9OyqsKwEZf6FFckb9pZV3dUlwxH9ZEC2HVcB8s8he1vKDPN2a7b5BwiAq2NK8i7fSRhFJR08XI4iqsVvPN0nfsxFbWISfIq10Gzq416XANMf0bL5fmWEXMW6mM2uIh1fM8o4LkgEqDOCgq2p0TuLDIeFefJbVOtCjw3tZsO5PU6a5ii3TxAeUKKlRJNUBHsgEAUmaMfER1HJcQPyw4JcHY002Zss18Nka7SO8mxog8fpGZNJ4GZgwUU0WQPMMCxr9ABDAkigu2HjLHjMuK7FuGOW24evZAoYGDIAcZISDz51SvGJFBLyb8Jvp6vn6Z8lIcX36OY8Ez7cEj30oY1SntjdxsKuiA2OE6IrL8cPArSDtc8B9J9ixvv7nNb9zuH4PcLyd12HLY3L0Zqgtz",
}


# ---- Ed25519, from RFC 8032 section 5.1 ----------------------------------------

P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)  # (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z


def point_add(p1, p2):
    """RFC 8032 5.1.4: addition in extended homogeneous coordinates."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_double(p1):
    """RFC 8032 5.1.4: doubling."""
    x1, y1, z1, _ = p1
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(n, point):
    """[n]point, double-and-add from the most significant bit."""
    q = IDENTITY
    for i in reversed(range(n.bit_length())):
        q = point_double(q)
        if (n >> i) & 1:
            q = point_add(q, point)
    return q


def point_equal(p1, p2):
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def recover_x(y, sign):
    """RFC 8032 5.1.3 steps 2-4: x from y and x's low bit, or None."""
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx == u:
        pass
    elif vxx == (-u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def point_decode(data):
    """RFC 8032 5.1.3; None for any encoding that is not canonical."""
    if len(data) != 32:
        return None
    n = int.from_bytes(data, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def point_encode(point):
    """RFC 8032 5.1.2."""
    x, y, z, _ = point
    zinv = pow(z, P - 2, P)
    x, y = x * zinv % P, y * zinv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


BASE = point_decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))  # B: y = 4/5, x even


def small_order(point):
    return point_equal(point_mul(8, point), IDENTITY)


def sha512_int(data):
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


def expand_seed(seed):
    """RFC 8032 5.1.5: the scalar s and the prefix of a 32-byte seed."""
    if len(seed) != 32:
        raise ValueError("a seed is 32 bytes")
    h = hashlib.sha512(seed).digest()
    s = int.from_bytes(h[:32], "little")
    s &= (1 << 254) - 8   # clear the low 3 bits and bits 254, 255
    s |= 1 << 254         # set bit 254
    return s, h[32:]


def public_key(seed):
    return point_encode(point_mul(expand_seed(seed)[0], BASE))


def sign(seed, message):
    """RFC 8032 5.1.6."""
    s, prefix = expand_seed(seed)
    a = point_encode(point_mul(s, BASE))
    r = sha512_int(prefix + message) % L
    big_r = point_encode(point_mul(r, BASE))
    k = sha512_int(big_r + a + message) % L
    return big_r + ((r + k * s) % L).to_bytes(32, "little")


def verify(public, message, signature):
    """RFC 8032 5.1.7 (cofactorless), and, as libsodium and the page ask,
    refusing non-canonical encodings, S >= L and small-order A or R."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = point_decode(public)
    r = point_decode(signature[:32])
    if a is None or r is None or small_order(a) or small_order(r):
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = sha512_int(signature[:32] + public + message) % L
    return point_equal(point_mul(s, BASE), point_add(r, point_mul(k, a)))


# ---- the text form, from docs/tokens.md ----------------------------------------

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
            if c not in B62:
                raise ValueError("not a base62 digit")
            v = v * 62 + B62.index(c)
        if v >= 1 << (8 * k):
            raise ValueError("block out of range")
        data += v.to_bytes(k, "big")
        text = text[d:]
    return bytes(data)


def check(text):
    """CRC-32 (zlib's) of the ASCII text, as 6 base62 digits."""
    v = zlib.crc32(text.encode("ascii"))
    out = ""
    for _ in range(6):
        out = B62[v % 62] + out
        v //= 62
    return out


PREFIX_RE = re.compile(r"[a-z][a-z0-9_]{0,19}")


def text_of(prefix, data):
    text = prefix + "_" + b62_block_encode(data)
    return text + check(text)


def bytes_of(text):
    """(prefix, bytes) of a token's text; ValueError if the text is not one."""
    prefix, _, rest = text.rpartition("_")
    if (not PREFIX_RE.fullmatch(prefix) or prefix.endswith("_") or "__" in prefix):
        raise ValueError("bad prefix")
    if len(rest) <= 50:
        raise ValueError("an opaque key, not a token")
    if check(prefix + "_" + rest[:-6]) != rest[-6:]:
        raise ValueError("check digits")
    return prefix, b62_block_decode(rest[:-6])


# ---- the bytes: claims and caveats (format 1's, version 0x02) --------------------

SCOPE_RE = re.compile(r"\*|[a-z0-9_.-]+(:[a-z0-9_.-]+)*(:\*)?")


def time5(t):
    return t.to_bytes(5, "big")


def string(text):
    b = text.encode("utf-8")
    if len(b) > 255:
        raise ValueError("str too long")
    return bytes([len(b)]) + b


def claims(kid, token_id, issued_at, not_before, expires_at, owner, scopes):
    return (bytes([VERSION]) + kid.to_bytes(4, "big") + token_id.encode("ascii")
            + time5(issued_at) + time5(not_before) + time5(expires_at)
            + string(owner) + bytes([len(scopes)]) + b"".join(string(x) for x in scopes))


def caveat(kind, value):
    return bytes([kind, len(value)]) + value


def scopes_caveat(scopes):
    return caveat(SCOPES, b"".join(string(x) for x in scopes))


def address_caveat(family, address, prefix_len):
    return caveat(ADDRESS, bytes([family]) + bytes(address) + bytes([prefix_len]))


class Reader:
    """Reads a byte string front to back; ValueError when it runs short."""

    def __init__(self, data):
        self.data, self.off = data, 0

    def take(self, n):
        if self.off + n > len(self.data):
            raise ValueError("cut short")
        out = self.data[self.off:self.off + n]
        self.off += n
        return out

    def byte(self):
        return self.take(1)[0]

    def time(self):
        return int.from_bytes(self.take(5), "big")

    def string(self):
        b = self.take(self.byte())
        text = b.decode("utf-8")  # UnicodeDecodeError is a ValueError
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise ValueError("control character in str")
        return text

    def left(self):
        return len(self.data) - self.off


def is_base62_id(b):
    return len(b) == 12 and all(chr(c) in B62 for c in b)


def read_claims(r):
    """The claims (a dict) at the reader's position, checked by the page's rules."""
    start = r.off
    if r.byte() != VERSION:
        raise ValueError("not format 2")
    c = {"kid": r.take(4).hex()}
    token_id = r.take(12)
    if not is_base62_id(token_id):
        raise ValueError("id")
    c["id"] = token_id.decode("ascii")
    c["issued_at"], c["not_before"], c["expires_at"] = r.time(), r.time(), r.time()
    if c["issued_at"] == 0:
        raise ValueError("issued_at 0")
    if c["not_before"] and c["expires_at"] and c["not_before"] >= c["expires_at"]:
        raise ValueError("not_before after expires_at")
    c["owner"] = r.string()
    if not 1 <= len(c["owner"].encode()) <= 128:
        raise ValueError("owner")
    n = r.byte()
    if n > 64:
        raise ValueError("too many scopes")
    c["scopes"] = [r.string() for _ in range(n)]
    if len(set(c["scopes"])) != n or not all(valid_scope(x) for x in c["scopes"]):
        raise ValueError("scopes")
    c["bytes"] = r.data[start:r.off]
    return c


def valid_scope(scope):
    return len(scope) <= 128 and SCOPE_RE.fullmatch(scope) is not None


def read_caveat(r):
    """(type, value) of the caveat at the reader's position, checked."""
    kind, value = r.byte(), None
    raw = r.take(r.byte())
    v = Reader(raw)
    if kind == SCOPES:
        value = []
        while v.left():
            value.append(v.string())
        if not 1 <= len(value) <= 64 or not all(valid_scope(x) for x in value):
            raise ValueError("scopes caveat")
    elif kind in (EXPIRES, NOT_BEFORE):
        value = v.time()
        if value == 0 or v.left():
            raise ValueError("time caveat")
    elif kind == AUDIENCE:
        value = raw
        if not 1 <= len(raw) <= 64:
            raise ValueError("audience caveat")
    elif kind == ADDRESS:
        family = v.byte()
        size = {4: 4, 6: 16}.get(family)
        if size is None:
            raise ValueError("address family")
        address = int.from_bytes(v.take(size), "big")
        bits = v.byte()
        if bits > size * 8 or v.left() or address & ((1 << (size * 8 - bits)) - 1):
            raise ValueError("address caveat")
        value = (family, address.to_bytes(size, "big"), bits)
    elif kind == ID:
        if not is_base62_id(raw):
            raise ValueError("id caveat")
        value = raw.decode("ascii")
    else:
        raise ValueError("unknown caveat type %d" % kind)
    return kind, value


# ---- format 2: blocks, signatures and the proof ---------------------------------

def root_message(prefix, claims_bytes, next_key0):
    return ROOT_LABEL + b"\0" + prefix.encode("ascii") + b"\0" + claims_bytes + next_key0


def block_message(previous_signature, caveats, next_key):
    return (BLOCK_LABEL + b"\0" + previous_signature + bytes([len(caveats)])
            + b"".join(caveats) + next_key)


def mint(root_seed, prefix, claims_bytes, block0_seed):
    """claims block0 proof: block0 = next_key0 S0, the proof its seed."""
    next_key0 = public_key(block0_seed)
    s0 = sign(root_seed, root_message(prefix, claims_bytes, next_key0))
    return text_of(prefix, claims_bytes + next_key0 + s0 + block0_seed)


def attenuate(text, caveats, new_seed):
    """One more block, signed with the seed the proof held; no signing key."""
    prefix, data = bytes_of(text)
    body, proof = data[:-32], data[-32:]
    previous_signature = body[-64:]  # every block ends with its signature
    if not 1 <= len(caveats) <= MAX_CAVEATS:
        raise ValueError("a block holds 1 to 16 caveats")
    next_key = public_key(new_seed)
    si = sign(proof, block_message(previous_signature, caveats, next_key))
    block = bytes([len(caveats)]) + b"".join(caveats) + next_key + si
    return text_of(prefix, body + block + new_seed)


def parse(text):
    """A token's parts: prefix, claims, blocks, proof. ValueError if malformed.

    Each block is a dict: caveats (raw bytes each), parsed (type, value)
    each, next_key, signature.
    """
    prefix, data = bytes_of(text)
    r = Reader(data)
    c = read_claims(r)
    blocks = [{"caveats": [], "parsed": [], "next_key": r.take(32), "signature": r.take(64)}]
    total = 0
    while r.left() > 32:
        count = r.byte()
        if not 1 <= count <= MAX_CAVEATS:
            raise ValueError("block caveat count")
        total += count
        if total > MAX_CAVEATS:
            raise ValueError("too many caveats")
        raw, parsed = [], []
        for _ in range(count):
            start = r.off
            parsed.append(read_caveat(r))
            raw.append(data[start:r.off])
        blocks.append({"caveats": raw, "parsed": parsed,
                       "next_key": r.take(32), "signature": r.take(64)})
    proof = r.take(32)
    if r.left():
        raise ValueError("bytes left over")
    return {"prefix": prefix, "claims": c, "blocks": blocks, "proof": proof}


def verifies(text, root_public):
    """True when the text parses, every signature holds and the proof fits."""
    try:
        t = parse(text)
    except (ValueError, IndexError):
        return False
    blocks = t["blocks"]
    if not verify(root_public, root_message(t["prefix"], t["claims"]["bytes"],
                                            blocks[0]["next_key"]),
                  blocks[0]["signature"]):
        return False
    for previous, block in zip(blocks, blocks[1:]):
        message = block_message(previous["signature"], block["caveats"], block["next_key"])
        if not verify(previous["next_key"], message, block["signature"]):
            return False
    return public_key(t["proof"]) == blocks[-1]["next_key"]


def covers(granted, required):
    if granted == "*":
        return True
    if granted.endswith(":*"):
        return required.startswith(granted[:-1])
    return granted == required


def effective(text):
    """What the claims and every caveat grant together (the verify record's view)."""
    t = parse(text)
    c = t["claims"]
    grants = [list(c["scopes"])]
    out = {"id": c["id"], "expires_at": c["expires_at"], "not_before": c["not_before"],
           "audiences": [], "addresses": []}
    for block in t["blocks"]:
        for kind, value in block["parsed"]:
            if kind == SCOPES:
                grants.append(value)
            elif kind == EXPIRES:
                if out["expires_at"] == 0 or value < out["expires_at"]:
                    out["expires_at"] = value
            elif kind == NOT_BEFORE:
                out["not_before"] = max(out["not_before"], value)
            elif kind == AUDIENCE:
                out["audiences"].append(value)
            elif kind == ADDRESS:
                out["addresses"].append(value)
            elif kind == ID:
                out["id"] = value
    # The candidates for "what they grant together" are the scopes any
    # list names; each is kept when every list covers it.
    out["scope_lists"] = grants
    out["scopes"] = [x for x in sorted({x for g in grants for x in g})
                     if granted(out, x)]
    return out


def granted(eff, required):
    """A required scope is granted when the claims' scopes and every scopes
    caveat's all cover it."""
    return all(any(covers(g, required) for g in gs) for gs in eff["scope_lists"])


# ---- the vectors ----------------------------------------------------------------

PREFIX = "kw_live"
MINTED = claims(0x0E0D0C0B, "Vector000003", 1767225600, 0, 1798761600, "acme",
                ["orders:*", "billing:read"])
CHILD_CAVEATS = [scopes_caveat(["orders:read"]), caveat(EXPIRES, time5(1782864000)),
                 caveat(AUDIENCE, b"api.example.com")]
GRANDCHILD_CAVEATS = [address_caveat(4, [192, 0, 2, 0], 24)]


def build_from_parts(prefix, claims_bytes, blocks):
    """The token's text from its claims and (caveats, seed) blocks, every
    signature made here from the seeds: block 0 under the root key."""
    key0 = public_key(blocks[0][1])
    sig = sign(ROOT_SEED, root_message(prefix, claims_bytes, key0))
    data = claims_bytes + key0 + sig
    previous_seed = blocks[0][1]
    for caveats, seed in blocks[1:]:
        key = public_key(seed)
        sig = sign(previous_seed, block_message(sig, caveats, key))
        data += bytes([len(caveats)]) + b"".join(caveats) + key + sig
        previous_seed = seed
    return text_of(prefix, data + previous_seed)


def changed_byte(text, i, mask=0x01):
    prefix, data = bytes_of(text)
    data = bytearray(data)
    data[i] ^= mask
    return text_of(prefix, bytes(data))


class Ed25519(unittest.TestCase):
    def test_rfc8032_test1(self):
        seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        signature = bytes.fromhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
            "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        self.assertEqual(public_key(seed), public)
        self.assertEqual(sign(seed, b""), signature)
        self.assertTrue(verify(public, b"", signature))
        # the message with one bit more (it is empty: nothing to flip), or changed
        self.assertFalse(verify(public, b"\x01", signature))
        self.assertFalse(verify(public, b"\x00", signature))
        # one bit flipped in each byte of the signature (R's, then S's)
        for i in range(64):
            for bit in (0x01, 0x80):
                bad = bytearray(signature)
                bad[i] ^= bit
                self.assertFalse(verify(public, b"", bytes(bad)), (i, bit))
        # the key from another seed, or a key flipped in one bit
        self.assertFalse(verify(public_key(OTHER_SEED), b"", signature))
        self.assertFalse(verify(bytes([public[0] ^ 1]) + public[1:], b"", signature))
        # S + L (the same point, not canonical) is refused
        s = int.from_bytes(signature[32:], "little")
        self.assertFalse(verify(public, b"", signature[:32] + (s + L).to_bytes(32, "little")))
        # the identity as the public key (small order) is refused
        self.assertFalse(verify(point_encode(IDENTITY), b"", signature))

    def test_root_public_key(self):
        public = public_key(ROOT_SEED)
        self.assertEqual(public.hex(), ROOT_PUBLIC_HEX)
        self.assertEqual(base64.urlsafe_b64encode(public).rstrip(b"=").decode(),
                         ROOT_PUBLIC_B64URL)


class Vectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root_public = public_key(ROOT_SEED)
        cls.other_public = public_key(OTHER_SEED)

    def test_built_from_the_spec(self):
        built = {
            "ed25519 minted": build_from_parts(PREFIX, MINTED, [([], BLOCK0_SEED)]),
            "ed25519 child": build_from_parts(PREFIX, MINTED, [([], BLOCK0_SEED),
                                                               (CHILD_CAVEATS, CHILD_SEED)]),
            "ed25519 grandchild": build_from_parts(
                PREFIX, MINTED, [([], BLOCK0_SEED), (CHILD_CAVEATS, CHILD_SEED),
                                 (GRANDCHILD_CAVEATS, GRANDCHILD_SEED)]),
        }
        for name, text in VECTORS.items():
            with self.subTest(name=name):
                self.assertEqual(built[name], text)

    def test_attenuation_needs_no_key(self):
        # From the text alone: parse it, sign the new block with its proof seed.
        self.assertEqual(mint(ROOT_SEED, PREFIX, MINTED, BLOCK0_SEED), VECTORS["ed25519 minted"])
        self.assertEqual(attenuate(VECTORS["ed25519 minted"], CHILD_CAVEATS, CHILD_SEED),
                         VECTORS["ed25519 child"])
        self.assertEqual(attenuate(VECTORS["ed25519 child"], GRANDCHILD_CAVEATS,
                                   GRANDCHILD_SEED),
                         VECTORS["ed25519 grandchild"])
        # each vector's proof is the seed the page names for its last block
        for name, seed in (("ed25519 minted", BLOCK0_SEED), ("ed25519 child", CHILD_SEED),
                           ("ed25519 grandchild", GRANDCHILD_SEED)):
            self.assertEqual(parse(VECTORS[name])["proof"], seed, name)

    def test_verify_and_refuse(self):
        for name, text in VECTORS.items():
            with self.subTest(name=name):
                self.assertTrue(verifies(text, self.root_public))
                self.assertFalse(verifies(text, self.other_public))
                prefix, data = bytes_of(text)
                # any byte of the bytes changed, re-encoded with a good check:
                # every byte of the minted token (its low bit, then its high
                # bit), every fifth byte and the last of the others (its low bit)
                minted = name == "ed25519 minted"
                for i in list(range(0, len(data), 1 if minted else 5)) + [len(data) - 1]:
                    for mask in (0x01, 0x80) if minted else (0x01,):
                        self.assertFalse(verifies(changed_byte(text, i, mask),
                                                  self.root_public), (name, i, mask))
                # the prefix changed: S0 covers it
                self.assertFalse(verifies(text_of("kw_test", data), self.root_public))

        # dropping the last block, the child's proof kept (the previous proof
        # is not in the token): refused
        child = parse(VECTORS["ed25519 child"])
        c = child["claims"]["bytes"]
        b0 = child["blocks"][0]
        dropped = text_of(PREFIX, c + b0["next_key"] + b0["signature"] + child["proof"])
        self.assertFalse(verifies(dropped, self.root_public))
        grandchild = parse(VECTORS["ed25519 grandchild"])
        prefix, data = bytes_of(VECTORS["ed25519 grandchild"])
        last = grandchild["blocks"][-1]
        last_len = 1 + sum(len(x) for x in last["caveats"]) + 32 + 64
        dropped = text_of(PREFIX, data[:-32 - last_len] + data[-32:])
        self.assertFalse(verifies(dropped, self.root_public))
        # ... and with the previous proof (which only the child's holder has) it
        # is the child again: the check above failed for the right reason
        self.assertEqual(text_of(PREFIX, data[:-32 - last_len] + CHILD_SEED),
                         VECTORS["ed25519 child"])

        # a block moved from the grandchild into another token fails
        other_claims = claims(0x0E0D0C0B, "Vector000004", 1767225600, 0, 1798761600,
                              "acme", ["orders:*", "billing:read"])
        other = mint(ROOT_SEED, PREFIX, other_claims, BLOCK0_SEED)  # same next_key0
        self.assertTrue(verifies(other, self.root_public))
        _, other_data = bytes_of(other)
        _, g_data = bytes_of(VECTORS["ed25519 grandchild"])
        g_blocks_start = len(c) + 96
        moved = other_data[:-32] + g_data[g_blocks_start:]  # blocks 1, 2 and the proof
        self.assertFalse(verifies(text_of(PREFIX, moved), self.root_public))
        moved = other_data[:-32] + g_data[-32 - last_len:]  # block 2 and the proof
        self.assertFalse(verifies(text_of(PREFIX, moved), self.root_public))
        # the other token attenuated itself with the same caveats and seeds verifies
        # (so the failures above are the moved signatures, not the blocks' contents)
        own = attenuate(attenuate(other, CHILD_CAVEATS, CHILD_SEED),
                        GRANDCHILD_CAVEATS, GRANDCHILD_SEED)
        self.assertTrue(verifies(own, self.root_public))
        self.assertNotEqual(own[len(PREFIX):], VECTORS["ed25519 grandchild"][len(PREFIX):])

        # a character of the text changed: the check digits refuse it
        text = VECTORS["ed25519 minted"]
        for i in range(len(PREFIX) + 1, len(text)):
            c2 = "0" if text[i] != "0" else "1"
            self.assertFalse(verifies(text[:i] + c2 + text[i + 1:], self.root_public), i)

    def test_grandchild_is_narrower(self):
        e = effective(VECTORS["ed25519 grandchild"])
        self.assertEqual(e["scopes"], ["orders:read"])
        self.assertEqual(e["expires_at"], 1782864000)
        self.assertEqual(e["not_before"], 0)
        self.assertEqual(e["audiences"], [b"api.example.com"])
        self.assertEqual(e["addresses"], [(4, bytes([192, 0, 2, 0]), 24)])
        self.assertEqual(e["id"], "Vector000003")
        self.assertTrue(granted(e, "orders:read"))
        for required in ("orders:write", "billing:read", "orders:read:eu", "orders"):
            self.assertFalse(granted(e, required), required)
        # the minted token grants what its claims say, with no audience or address
        m = effective(VECTORS["ed25519 minted"])
        self.assertEqual(m["scopes"], ["billing:read", "orders:*"])
        self.assertEqual(m["expires_at"], 1798761600)
        self.assertEqual((m["audiences"], m["addresses"]), ([], []))
        self.assertTrue(granted(m, "orders:read:eu"))
        # the child has the audience already, the address not yet
        ch = effective(VECTORS["ed25519 child"])
        self.assertEqual((ch["scopes"], ch["expires_at"]), (["orders:read"], 1782864000))
        self.assertEqual((ch["audiences"], ch["addresses"]), ([b"api.example.com"], []))


if __name__ == "__main__":
    unittest.main()
