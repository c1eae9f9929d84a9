/* The opaque key format: prefix rules, base62, CRC-32 check, generate, parse. */
#include "internal.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

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
 * CRC-32 (IEEE 802.3, reflected, zlib's crc32()), eight bytes per step
 * ("slicing-by-8"): every verification checks one, and this is about 3x
 * zlib's speed on a 60-byte key. Tables are built once, on first use.
 */
static uint32_t crc_table[8][256];
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
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc32_ieee(const unsigned char *p, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;

    pthread_once(&crc_once, crc_init);
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        uint32_t hi =
            (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
            crc_table[0][hi >> 24];
    }
    while (len-- > 0)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

KW_API void kw_key_check(char out[static KW_CHECK_LEN + 1], const char *data, size_t len)
{
    uint32_t crc = crc32_ieee((const unsigned char *)data, len);

    for (int i = KW_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = b62[crc % 62];
        crc /= 62;
    }
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

KW_API int kw_key_parse(kw_key_parts *out, const char *key, size_t len)
{
    char check[KW_CHECK_LEN + 1];
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
    if (!b62_all(body, KW_BODY_LEN))
        return 0;
    kw_key_check(check, key, len - KW_CHECK_LEN);
    if (memcmp(check, body + KW_ID_LEN + KW_SECRET_LEN, KW_CHECK_LEN) != 0)
        return 0;
    out->prefix = key;
    out->prefix_len = plen;
    memcpy(out->id, body, KW_ID_LEN);
    out->id[KW_ID_LEN] = '\0';
    out->body = body;
    return 1;
}
