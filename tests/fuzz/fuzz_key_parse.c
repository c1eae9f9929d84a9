/*
 * libFuzzer harness for kw_key_parse, checked against a reference parser
 * written here from SPEC.md ("Key format") with zlib's crc32() directly.
 *
 * Each input is tried twice: as a key, and as "<prefix>_<id><secret>" with
 * its correct check appended (random bytes almost never carry a correct
 * CRC, so this is what reaches the accepting paths). The library and the
 * reference must agree, and every accepted key must satisfy the format's
 * invariants; any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <keyward/keyward.h>

static const char alphabet[] = KW_BASE62_ALPHABET;

static int ref_base62(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int ref_prefix_ok(const uint8_t *p, size_t n)
{
    if (n < 1 || n > 20 || !(p[0] >= 'a' && p[0] <= 'z') || p[n - 1] == '_')
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
        if (i > 0 && c == '_' && p[i - 1] == '_')
            return 0;
    }
    return 1;
}

static void ref_check(char out[6], const uint8_t *data, size_t n)
{
    uint32_t crc = (uint32_t)crc32(0L, data, (uInt)n);

    for (int i = 5; i >= 0; i--) {
        out[i] = alphabet[crc % 62];
        crc /= 62;
    }
}

static int ref_parse(const uint8_t *k, size_t n)
{
    char check[6];
    size_t plen;

    if (n < 51)
        return 0;
    plen = n - 51;
    if (!ref_prefix_ok(k, plen) || k[plen] != '_')
        return 0;
    for (size_t i = plen + 1; i < n; i++)
        if (!ref_base62(k[i]))
            return 0;
    ref_check(check, k, n - 6);
    return memcmp(check, k + n - 6, 6) == 0;
}

static void check_one(const uint8_t *key, size_t size)
{
    kw_key_parts parts;
    char prefix[32], check[KW_CHECK_LEN + 1], refcheck[6];
    int ok = kw_key_parse(&parts, (const char *)key, size);

    if (ok != ref_parse(key, size))
        abort();
    if (!ok)
        return;
    if (parts.prefix != (const char *)key || parts.prefix_len < 1 ||
        parts.prefix_len > KW_PREFIX_MAX || size != parts.prefix_len + 1 + KW_BODY_LEN)
        abort();
    if (parts.body != (const char *)key + size - KW_BODY_LEN || parts.body[-1] != '_')
        abort();
    memcpy(prefix, parts.prefix, parts.prefix_len);
    prefix[parts.prefix_len] = '\0';
    if (!kw_prefix_valid(prefix))
        abort();
    if (parts.id[KW_ID_LEN] != '\0' || memcmp(parts.id, parts.body, KW_ID_LEN) != 0 ||
        !kw_key_id_valid(parts.id))
        abort();
    ref_check(refcheck, key, size - KW_CHECK_LEN);
    if (memcmp(refcheck, parts.body + KW_ID_LEN + KW_SECRET_LEN, KW_CHECK_LEN) != 0)
        abort();
    kw_key_check(check, (const char *)key, size - KW_CHECK_LEN);
    if (memcmp(check, refcheck, KW_CHECK_LEN) != 0 || check[KW_CHECK_LEN] != '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf;

    check_one(data, size);

    /* the input as data, with its correct check appended (exact-size copy) */
    if (size > KW_KEY_MAX + 8)
        return 0;
    buf = malloc(size + KW_CHECK_LEN);
    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    ref_check((char *)buf + size, data, size);
    check_one(buf, size + KW_CHECK_LEN);
    free(buf);
    return 0;
}
