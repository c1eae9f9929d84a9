/* The opaque key format: prefix rules, base62, CRC-32 check, generate, parse. */
#include "internal.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char b62[] = KW_BASE62_ALPHABET;

/* Is c a base62 digit? A table: every verification checks 50 of them. */
static const unsigned char b62_ok[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* 1 if all n bytes are base62 digits (no early exit: one pass, no branch per byte). */
static int b62_all(const char *s, size_t n)
{
    unsigned ok = 1;

    for (size_t i = 0; i < n; i++)
        ok &= b62_ok[(unsigned char)s[i]];
    return (int)ok;
}

#ifdef __SSE2__
/* 1 if all 16 bytes at s are base62 digits. Signed byte compares: a byte
 * of 0x80 or more is negative and fails both ranges. Letters are tested
 * with bit 5 set, which makes 'A'-'Z' 'a'-'z' and nothing else land there. */
static int b62_16(const char *s)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
    const __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
    const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                        _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
    const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                                         _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));

    return _mm_movemask_epi8(_mm_or_si128(digit, letter)) == 0xFFFF;
}
#endif

/* b62_all for a key's body, 16 bytes at a time where the CPU can (every
 * verification checks one: about 180 instructions fewer). */
static int b62_body(const char *body)
{
#ifdef __SSE2__
    _Static_assert(KW_BODY_LEN >= 32 && KW_BODY_LEN <= 64,
                   "four overlapping blocks cover the body");
    return b62_16(body) & b62_16(body + 16) & b62_16(body + 32) & b62_16(body + KW_BODY_LEN - 16);
#else
    return b62_all(body, KW_BODY_LEN);
#endif
}

static int prefix_valid_n(const char *p, size_t n)
{
    if (n == 0 || n > KW_PREFIX_MAX)
        return 0;
    if (p[0] < 'a' || p[0] > 'z' || p[n - 1] == '_')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok || (c == '_' && p[i + 1] == '_'))
            return 0;
    }
    return 1;
}

KW_API int kw_prefix_valid(const char *prefix)
{
    if (prefix == NULL)
        return 0;
    return prefix_valid_n(prefix, strnlen(prefix, KW_PREFIX_MAX + 1));
}

KW_API int kw_key_id_valid(const char *id)
{
    if (id == NULL || strnlen(id, KW_ID_LEN + 1) != KW_ID_LEN)
        return 0;
    return b62_all(id, KW_ID_LEN);
}

/*
 * CRC-32 (IEEE 802.3, reflected, zlib's crc32()), sixteen bytes per step
 * ("slicing-by-16"), then one of eight and one of four: every verification
 * checks one over about 52 bytes, and each step is one round of table
 * reads, so fewer steps mean a shorter chain of dependent reads. Tables
 * (16 KiB) are built once, on first use.
 */
static uint32_t crc_table[16][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 16; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The CRC of the four bytes of w, the last of a step: table t is the byte
 * followed by t zero bytes. */
static uint32_t crc_word(uint32_t w, int t)
{
    return crc_table[t + 3][w & 0xff] ^ crc_table[t + 2][(w >> 8) & 0xff] ^
           crc_table[t + 1][(w >> 16) & 0xff] ^ crc_table[t][w >> 24];
}

static uint32_t crc32_ieee(const unsigned char *p, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;

    pthread_once(&crc_once, crc_init);
    for (; len >= 16; p += 16, len -= 16)
        c = crc_word(c ^ le32(p), 12) ^ crc_word(le32(p + 4), 8) ^ crc_word(le32(p + 8), 4) ^
            crc_word(le32(p + 12), 0);
    if (len >= 8) {
        c = crc_word(c ^ le32(p), 4) ^ crc_word(le32(p + 4), 0);
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        c = crc_word(c ^ le32(p), 0);
        p += 4;
        len -= 4;
    }
    while (len-- > 0)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The check digits, most significant first. Each digit is computed from
 * the CRC on its own (a division by a constant power of 62), not from the
 * one before it: six short computations side by side, not one long chain. */
_Static_assert(KW_CHECK_LEN == 6, "six base62 digits hold a CRC-32");

KW_API void kw_key_check(char out[static KW_CHECK_LEN + 1], const char *data, size_t len)
{
    const uint32_t crc = crc32_ieee((const unsigned char *)data, len);
    uint32_t q[KW_CHECK_LEN + 1];

    q[0] = crc;
    q[1] = crc / 62u;
    q[2] = crc / (62u * 62u);
    q[3] = crc / (62u * 62u * 62u);
    q[4] = crc / (62u * 62u * 62u * 62u);
    q[5] = crc / (62u * 62u * 62u * 62u * 62u);
    q[6] = 0; /* 62^6 > 2^32 */
    for (int i = 0; i < KW_CHECK_LEN; i++)
        out[KW_CHECK_LEN - 1 - i] = b62[q[i] - q[i + 1] * 62u];
    out[KW_CHECK_LEN] = '\0';
}

KW_API void kw_base62_random(char *out, size_t n)
{
    unsigned char pool[64];
    size_t used = sizeof(pool);

    /* 248 = 4 * 62: bytes >= 248 are rejected so every digit is uniform. */
    while (n > 0) {
        if (used == sizeof(pool)) {
            randombytes_buf(pool, sizeof(pool));
            used = 0;
        }
        unsigned char b = pool[used++];
        if (b >= 248)
            continue;
        *out++ = b62[b % 62];
        n--;
    }
    sodium_memzero(pool, sizeof(pool));
}

KW_API kw_rc kw_key_generate(kw_secret **key_out, char id_out[static KW_ID_LEN + 1],
                             const char *prefix)
{
    kw_secret *key;
    size_t plen;
    char *k;
    kw_rc rc;

    if (prefix == NULL)
        prefix = KW_DEFAULT_PREFIX;
    if (!kw_prefix_valid(prefix))
        return KW_ERR_INVALID;
    plen = strlen(prefix);
    rc = kw_secret_new(&key, plen + 1 + KW_BODY_LEN);
    if (rc != KW_OK)
        return rc;
    k = (char *)kw_secret_data(key);
    memcpy(k, prefix, plen);
    k[plen] = '_';
    kw_base62_random(k + plen + 1, KW_ID_LEN + KW_SECRET_LEN);
    kw_key_check(k + plen + 1 + KW_ID_LEN + KW_SECRET_LEN, k, plen + 1 + KW_ID_LEN + KW_SECRET_LEN);
    memcpy(id_out, k + plen + 1, KW_ID_LEN);
    id_out[KW_ID_LEN] = '\0';
    *key_out = key;
    return KW_OK;
}

int kwi_key_shape(kw_key_parts *out, const char *key, size_t len)
{
    const char *body;
    size_t plen;

    if (key == NULL || len < KW_BODY_LEN + 2 || len > KW_KEY_MAX)
        return 0;
    body = key + len - KW_BODY_LEN;
    if (body[-1] != '_')
        return 0;
    plen = len - KW_BODY_LEN - 1;
    if (!prefix_valid_n(key, plen))
        return 0;
    if (!b62_body(body))
        return 0;
    out->prefix = key;
    out->prefix_len = plen;
    memcpy(out->id, body, KW_ID_LEN);
    out->id[KW_ID_LEN] = '\0';
    out->body = body;
    return 1;
}

int kwi_key_check_ok(const char *key, size_t len)
{
    char check[KW_CHECK_LEN + 1];

    kw_key_check(check, key, len - KW_CHECK_LEN);
    return memcmp(check, key + len - KW_CHECK_LEN, KW_CHECK_LEN) == 0;
}

KW_API int kw_key_parse(kw_key_parts *out, const char *key, size_t len)
{
    kw_key_parts parts;

    if (!kwi_key_shape(&parts, key, len) || !kwi_key_check_ok(key, len))
        return 0;
    *out = parts;
    return 1;
}
