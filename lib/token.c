/*
 * Stateless keys (docs/tokens.md): the text form (prefix, block base62,
 * CRC-32 check), the bytes (claims, caveats, tag), the HMAC chain, and
 * attenuation. Nothing here reads storage; the keyring is lib/keyring.c.
 */
#define _GNU_SOURCE /* memrchr */
#include "internal.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_LEN 32 /* format 1's tag; format 2's proof (a key seed) is as long */
#define PK_LEN KWI_ED25519_PK_LEN
#define SIG_LEN crypto_sign_BYTES
#define BLOCK_KEY_LEN (PK_LEN + SIG_LEN) /* a format 2 block's next key and signature */
#define TIME_LEN 5
#define TIME_MAX ((INT64_C(1) << 40) - 1)
#define BLOCK 8
#define BLOCK_DIGITS 11
#define BYTES_MAX KWI_TOKEN_BYTES_MAX

static const char b62[] = KW_BASE62_ALPHABET;
/* Digits that hold any k-byte value, k = 0..8 (62^d >= 256^k). */
static const unsigned char digits_for[BLOCK + 1] = {0, 2, 3, 5, 6, 7, 9, 10, 11};
static const char chain_label[] = "keyward token v1";
static const char sig_label[] = "keyward token v2";         /* the first block */
static const char block_label[] = "keyward token v2 block"; /* every later one */

/* ---- block base62 -------------------------------------------------------- */

/* Digit values, 0xff for a byte that is not one: a table, since decoding
 * was a quarter of a token's verification with branches per digit. */
static unsigned char b62_values[256];
static pthread_once_t b62_once = PTHREAD_ONCE_INIT;

static void b62_init(void)
{
    memset(b62_values, 0xff, sizeof(b62_values));
    for (int i = 0; i < 62; i++)
        b62_values[(unsigned char)b62[i]] = (unsigned char)i;
}

size_t kwi_b62blk_len(size_t nbytes)
{
    return nbytes / BLOCK * BLOCK_DIGITS + digits_for[nbytes % BLOCK];
}

void kwi_b62blk_encode(char *out, const unsigned char *in, size_t n)
{
    while (n > 0) {
        size_t k = n < BLOCK ? n : BLOCK, d = digits_for[k];
        uint64_t v = 0;

        for (size_t i = 0; i < k; i++)
            v = v << 8 | in[i];
        for (size_t i = d; i-- > 0;) {
            out[i] = b62[v % 62];
            v /= 62;
        }
        out += d;
        in += k;
        n -= k;
    }
}

int kwi_b62blk_decode(unsigned char *out, size_t *n, const char *in, size_t len)
{
    size_t got = 0;

    pthread_once(&b62_once, b62_init);
    while (len > 0) {
        size_t d = len < BLOCK_DIGITS ? len : BLOCK_DIGITS, k = 0;
        uint64_t v = 0;

        while (k <= BLOCK && digits_for[k] != d)
            k++;
        if (k > BLOCK)
            return 0; /* no byte count takes this many digits */
        for (size_t i = 0; i < d; i++) {
            unsigned x = b62_values[(unsigned char)in[i]];
            if (x == 0xff)
                return 0;
            /* 62^10 < 2^64: only an 11th digit can overflow */
            if (i == BLOCK_DIGITS - 1) {
                if (__builtin_mul_overflow(v, 62, &v) || __builtin_add_overflow(v, x, &v))
                    return 0;
            } else {
                v = v * 62 + (uint64_t)x;
            }
        }
        if (k < BLOCK && v >> (8 * k) != 0)
            return 0; /* more than k bytes: not the one text of any bytes */
        for (size_t i = k; i-- > 0;) {
            out[got + i] = (unsigned char)v;
            v >>= 8;
        }
        got += k;
        in += d;
        len -= d;
    }
    *n = got;
    return 1;
}

/* ---- text form --------------------------------------------------------------- */

KW_API int kw_token_shape(const char *s, size_t len)
{
    const char *us;

    if (s == NULL || len > KW_TOKEN_MAX)
        return 0;
    us = memrchr(s, '_', len);
    return us != NULL && (size_t)(s + len - us - 1) > KW_BODY_LEN;
}

/* Split a token's text: prefix, then the bytes its body holds (out, at
 * most BYTES_MAX). 0 if the text is not a token's. */
static int text_split(const char *s, size_t len, char prefix[static KW_PREFIX_MAX + 1],
                      unsigned char *out, size_t *n)
{
    const char *us;
    char check[KW_CHECK_LEN + 1];
    size_t plen, blen;

    /* kw_token_shape's test, with the '_' kept */
    if (s == NULL || len > KW_TOKEN_MAX || (us = memrchr(s, '_', len)) == NULL ||
        (size_t)(s + len - us - 1) <= KW_BODY_LEN)
        return 0;
    plen = (size_t)(us - s);
    blen = len - plen - 1 - KW_CHECK_LEN;
    if (plen == 0 || plen > KW_PREFIX_MAX)
        return 0;
    memcpy(prefix, s, plen);
    prefix[plen] = '\0';
    if (!kw_prefix_valid(prefix))
        return 0;
    kw_key_check(check, s, len - KW_CHECK_LEN);
    if (memcmp(check, s + len - KW_CHECK_LEN, KW_CHECK_LEN) != 0)
        return 0;
    return kwi_b62blk_decode(out, n, us + 1, blen);
}

/* ---- bytes ---------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *p;
    size_t n, off;
    const char *why; /* the first rule broken */
} reader;

static int fail(reader *r, const char *why)
{
    if (r->why == NULL)
        r->why = why;
    return 0;
}

static int get(reader *r, void *dst, size_t len)
{
    if (r->n - r->off < len)
        return fail(r, "cut short");
    memcpy(dst, r->p + r->off, len);
    r->off += len;
    return 1;
}

static int get_u8(reader *r, unsigned *v)
{
    unsigned char b;

    if (!get(r, &b, 1))
        return 0;
    *v = b;
    return 1;
}

static int get_time(reader *r, int64_t *t)
{
    unsigned char b[TIME_LEN];

    if (!get(r, b, TIME_LEN))
        return 0;
    *t = 0;
    for (int i = 0; i < TIME_LEN; i++)
        *t = *t << 8 | b[i];
    return 1;
}

/* A str of 1..max bytes of UTF-8 text, as a new C string. */
static int get_str(reader *r, char **out, size_t max, const char *what)
{
    unsigned len;
    char *s;

    if (!get_u8(r, &len))
        return 0;
    if (len == 0 || len > max)
        return fail(r, what);
    if ((s = malloc(len + 1)) == NULL)
        return fail(r, "out of memory");
    if (!get(r, s, len)) {
        free(s);
        return 0;
    }
    s[len] = '\0';
    if (strlen(s) != len || !kwi_text_ok(s, max)) {
        free(s);
        return fail(r, what);
    }
    *out = s;
    return 1;
}

static void strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* n scopes (str each): valid grants, no duplicates. */
static int get_scopes(reader *r, size_t n, char ***out)
{
    char **v = calloc(n ? n : 1, sizeof(*v)), why[KWI_ERRMSG_MAX];

    if (v == NULL)
        return fail(r, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!get_str(r, &v[i], KW_SCOPE_MAX_LEN, "a scope is not valid")) {
            strv_free(v, n);
            return 0;
        }
    if (kwi_scopes_check((const char *const *)v, n, why, sizeof(why)) != 0) {
        strv_free(v, n);
        return fail(r, "a scope is not valid, or is listed twice");
    }
    *out = v;
    return 1;
}

static int id_ok(const unsigned char *p)
{
    char id[KW_ID_LEN + 1];

    memcpy(id, p, KW_ID_LEN);
    id[KW_ID_LEN] = '\0';
    return kw_key_id_valid(id);
}

/* Does an address caveat's value keep the rules: family 4 or 6, its
 * address, a prefix length that fits, host bits zero? */
static int address_ok(const unsigned char *v, size_t len)
{
    size_t alen = v[0] == 4 ? 4 : 16;
    unsigned bits = v[len - 1];

    if ((v[0] != 4 && v[0] != 6) || len != alen + 2 || bits > alen * 8)
        return 0;
    for (size_t i = 0; i < alen; i++) { /* host bits are zero */
        unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - i * 8 : 0;
        unsigned char mask = (unsigned char)(keep == 8 ? 0 : 0xffu >> keep);
        if (v[1 + i] & mask)
            return 0;
    }
    return 1;
}

/* An address caveat's value as "ADDR/BITS"; 0 if it breaks the rules. */
static int address_text(const unsigned char *v, size_t len, char **out)
{
    char buf[INET6_ADDRSTRLEN + 8];

    if (!address_ok(v, len) ||
        inet_ntop(v[0] == 4 ? AF_INET : AF_INET6, v + 1, buf, INET6_ADDRSTRLEN) == NULL)
        return 0;
    snprintf(buf + strlen(buf), 8, "/%u", v[len - 1]);
    return (*out = strdup(buf)) != NULL;
}

static int get_caveat(reader *r, kw_token_caveat *c)
{
    unsigned type, len;
    unsigned char v[255];
    reader sub;

    if (!get_u8(r, &type) || !get_u8(r, &len) || !get(r, v, len))
        return 0;
    c->type = (kw_caveat_type)type;
    switch (type) {
    case KW_CAVEAT_SCOPES: {
        size_t n = 0;
        sub = (reader){v, len, 0, NULL};
        while (sub.off < sub.n) { /* count the strs */
            if (sub.n - sub.off < 1u + v[sub.off] || v[sub.off] == 0)
                return fail(r, "a scopes caveat is not valid");
            sub.off += 1u + v[sub.off];
            n++;
        }
        if (n == 0 || n > KW_SCOPES_MAX)
            return fail(r, "a scopes caveat is not valid");
        sub.off = 0;
        if (!get_scopes(&sub, n, &c->scopes))
            return fail(r, sub.why);
        c->nscopes = n;
        return 1;
    }
    case KW_CAVEAT_EXPIRES:
    case KW_CAVEAT_NOT_BEFORE:
        sub = (reader){v, len, 0, NULL};
        if (len != TIME_LEN || !get_time(&sub, &c->time) || c->time == 0)
            return fail(r, "a time caveat is not valid");
        return 1;
    case KW_CAVEAT_AUDIENCE:
        if (len == 0 || len > KW_AUDIENCE_MAX || (c->text = malloc(len + 1)) == NULL)
            return fail(r, "an audience caveat is not valid");
        memcpy(c->text, v, len);
        c->text[len] = '\0';
        if (strlen(c->text) != len || !kwi_text_ok(c->text, KW_AUDIENCE_MAX))
            return fail(r, "an audience caveat is not valid");
        return 1;
    case KW_CAVEAT_ADDRESS:
        if (len < 2 || !address_text(v, len, &c->text))
            return fail(r, "an address caveat is not valid");
        return 1;
    case KW_CAVEAT_ID:
        if (len != KW_ID_LEN || !id_ok(v) || (c->text = malloc(KW_ID_LEN + 1)) == NULL)
            return fail(r, "an id caveat is not valid");
        memcpy(c->text, v, KW_ID_LEN);
        c->text[KW_ID_LEN] = '\0';
        return 1;
    default: return fail(r, "a caveat of an unknown type");
    }
}

KW_API void kw_token_info_free(kw_token_info *t)
{
    if (t == NULL)
        return;
    free(t->owner);
    strv_free(t->scopes, t->nscopes);
    for (size_t i = 0; i < t->ncaveats; i++) {
        strv_free(t->caveats[i].scopes, t->caveats[i].nscopes);
        free(t->caveats[i].text);
    }
    free(t->caveats);
    /* eff_scopes point into scopes and caveats */
    free(t->eff_scopes);
    free(t);
}

/* Is scope s covered by every list so far (claims, then scopes caveats)? */
static int covered_by_all(const kw_token_info *t, const char *s)
{
    if (!kw_scopes_cover((const char *const *)t->scopes, t->nscopes, &s, 1))
        return 0;
    for (size_t i = 0; i < t->ncaveats; i++)
        if (t->caveats[i].type == KW_CAVEAT_SCOPES &&
            !kw_scopes_cover((const char *const *)t->caveats[i].scopes, t->caveats[i].nscopes, &s,
                             1))
            return 0;
    return 1;
}

static int listed(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

/* What the claims and caveats add up to. The scopes they grant together
 * are the listed scopes covered by every list: for these patterns (a
 * scope, "x:*", "*") that is the intersection exactly. */
static int effective(kw_token_info *t)
{
    size_t cap = t->nscopes;

    memcpy(t->leaf_id, t->id, sizeof(t->leaf_id));
    t->eff_not_before = t->not_before;
    t->eff_expires_at = t->expires_at;
    for (size_t i = 0; i < t->ncaveats; i++) {
        const kw_token_caveat *c = &t->caveats[i];
        if (c->type == KW_CAVEAT_ID)
            memcpy(t->leaf_id, c->text, sizeof(t->leaf_id));
        else if (c->type == KW_CAVEAT_NOT_BEFORE && c->time > t->eff_not_before)
            t->eff_not_before = c->time;
        else if (c->type == KW_CAVEAT_EXPIRES &&
                 (t->eff_expires_at == 0 || c->time < t->eff_expires_at))
            t->eff_expires_at = c->time;
        else if (c->type == KW_CAVEAT_SCOPES)
            cap += c->nscopes;
    }
    if ((t->eff_scopes = calloc(cap ? cap : 1, sizeof(char *))) == NULL)
        return 0;
    for (size_t i = 0; i < t->nscopes; i++)
        if (covered_by_all(t, t->scopes[i]) && !listed(t->eff_scopes, t->neff_scopes, t->scopes[i]))
            t->eff_scopes[t->neff_scopes++] = t->scopes[i];
    for (size_t i = 0; i < t->ncaveats; i++)
        for (size_t j = 0; j < t->caveats[i].nscopes; j++) {
            char *s = t->caveats[i].scopes[j];
            if (covered_by_all(t, s) && !listed(t->eff_scopes, t->neff_scopes, s))
                t->eff_scopes[t->neff_scopes++] = s;
        }
    return 1;
}

/* Format 2: a block's next key and signature follow; note where. */
static int get_block_key(reader *r, kwi_token_layout *lay)
{
    if (r->n - r->off < BLOCK_KEY_LEN)
        return fail(r, "cut short");
    lay->key_at[lay->nkeys++] = r->off;
    r->off += BLOCK_KEY_LEN;
    return 1;
}

/* The caveats after the claims: format 1, one after another; format 2,
 * in blocks (a count, that many caveats, the block's key and signature). */
static int get_caveats(reader *r, kw_token_info *t, kwi_token_layout *lay)
{
    unsigned count;

    if (t->version == KW_TOKEN_VERSION_ED25519 && !get_block_key(r, lay))
        return 0;
    while (r->off < r->n) {
        if (t->version == KW_TOKEN_VERSION) {
            if (t->ncaveats == KW_TOKEN_CAVEATS_MAX)
                return fail(r, "too many caveats");
            if (!get_caveat(r, &t->caveats[t->ncaveats++]))
                return 0;
            continue;
        }
        if (!get_u8(r, &count))
            return 0;
        if (count == 0)
            return fail(r, "a block holds no caveat");
        if (count > KW_TOKEN_CAVEATS_MAX - t->ncaveats)
            return fail(r, "too many caveats");
        while (count-- > 0)
            if (!get_caveat(r, &t->caveats[t->ncaveats++]))
                return 0;
        if (!get_block_key(r, lay))
            return 0;
    }
    return 1;
}

/* Parse the bytes (not the text) of a token; lay receives where its parts
 * start. NULL if they break a rule (*why says which). */
static kw_token_info *bytes_parse(const unsigned char *p, size_t n, kwi_token_layout *lay,
                                  const char **why)
{
    kw_token_info *t = calloc(1, sizeof(*t));
    reader r = {p, n, 0, NULL};
    unsigned nscopes;
    unsigned char kid[4], id[KW_ID_LEN];

    if (t == NULL) {
        *why = "out of memory";
        return NULL;
    }
    lay->nkeys = 0;
    if (n < TAG_LEN) {
        fail(&r, "cut short");
        goto bad;
    }
    r.n = n - TAG_LEN; /* the claims and caveats end where the tag (or proof) starts */
    if (!get_u8(&r, &t->version))
        goto bad;
    if (t->version != KW_TOKEN_VERSION && t->version != KW_TOKEN_VERSION_ED25519 &&
        !fail(&r, "unknown version"))
        goto bad;
    if (!get(&r, kid, 4) || !get(&r, id, KW_ID_LEN))
        goto bad;
    if (!id_ok(id) && !fail(&r, "the id is not valid"))
        goto bad;
    t->kid = (uint32_t)kid[0] << 24 | (uint32_t)kid[1] << 16 | (uint32_t)kid[2] << 8 | kid[3];
    memcpy(t->id, id, KW_ID_LEN);
    if (!get_time(&r, &t->issued_at) || !get_time(&r, &t->not_before) ||
        !get_time(&r, &t->expires_at))
        goto bad;
    if (t->issued_at == 0 && !fail(&r, "issued_at is 0"))
        goto bad;
    if (t->not_before && t->expires_at && t->not_before >= t->expires_at &&
        !fail(&r, "not_before is not before the expiry"))
        goto bad;
    if (!get_str(&r, &t->owner, KW_OWNER_MAX, "the owner is not valid") || !get_u8(&r, &nscopes))
        goto bad;
    if (nscopes > KW_SCOPES_MAX && !fail(&r, "too many scopes"))
        goto bad;
    if (!get_scopes(&r, nscopes, &t->scopes))
        goto bad;
    t->nscopes = nscopes;
    lay->claims_len = r.off;
    if ((t->caveats = calloc(KW_TOKEN_CAVEATS_MAX, sizeof(*t->caveats))) == NULL) {
        fail(&r, "out of memory");
        goto bad;
    }
    if (!get_caveats(&r, t, lay))
        goto bad;
    if (!effective(t)) {
        fail(&r, "out of memory");
        goto bad;
    }
    lay->tag_at = r.off;
    return t;
bad:
    *why = r.why ? r.why : "not valid";
    kw_token_info_free(t);
    return NULL;
}

static void seterr(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

KW_API kw_rc kw_token_parse(kw_token_info **out, const char *token, size_t len, char *err,
                            size_t err_len)
{
    unsigned char bytes[BYTES_MAX];
    char prefix[KW_PREFIX_MAX + 1];
    const char *why = NULL;
    kwi_token_layout lay;
    kw_token_info *t;
    size_t n;

    if (token == NULL || !text_split(token, len, prefix, bytes, &n)) {
        seterr(err, err_len, "%s",
               "not a token: a prefix, '_', then base62 with a correct check (docs/tokens.md)");
        return KW_ERR_INVALID;
    }
    t = bytes_parse(bytes, n, &lay, &why);
    sodium_memzero(bytes, sizeof(bytes));
    if (t == NULL) {
        seterr(err, err_len, "malformed token: %s", why);
        return strcmp(why, "out of memory") == 0 ? KW_ERR_NOMEM : KW_ERR_INVALID;
    }
    memcpy(t->prefix, prefix, sizeof(prefix));
    *out = t;
    return KW_OK;
}

/* ---- the tag ------------------------------------------------------------------- */

/* The HMAC chain over prefix, claims and caveats, under a signing key's
 * HMAC pad states (kwi_hmac_key_new): the pads make the first HMAC two
 * compressions cheaper, and a verifier keeps them per signing key. */
static void chain(unsigned char tag[static TAG_LEN], const kw_secret *pads, const char *prefix,
                  const unsigned char *claims, size_t claims_len, const unsigned char *caveats,
                  size_t caveats_len)
{
    static const unsigned char zero = 0;
    kwi_hmac_stream st;

    kwi_hmac_begin(&st, pads);
    kwi_hmac_update(&st, chain_label, sizeof(chain_label) - 1);
    kwi_hmac_update(&st, &zero, 1);
    kwi_hmac_update(&st, prefix, strlen(prefix));
    kwi_hmac_update(&st, &zero, 1);
    kwi_hmac_update(&st, claims, claims_len);
    kwi_hmac_end(&st, tag);
    while (caveats_len > 0) {
        size_t clen = 2u + caveats[1];
        kwi_hmac_key32(tag, tag, caveats, clen);
        caveats += clen;
        caveats_len -= clen;
    }
}

/* The pad states of a raw 32-byte signing key. */
static kw_rc pads_of_key(kw_secret **pads, const unsigned char key[static 32])
{
    kw_secret *k;
    kw_rc rc = kw_secret_from(&k, key, TAG_LEN);

    if (rc != KW_OK)
        return rc;
    rc = kwi_hmac_key_new(pads, k);
    kw_secret_free(k);
    return rc;
}

int kwi_token_read(kwi_token *t, const char *text, size_t len)
{
    char prefix[KW_PREFIX_MAX + 1];
    const char *why;

    t->info = NULL;
    t->n = 0;
    if (!text_split(text, len, prefix, t->bytes, &t->n)) {
        t->n = sizeof(t->bytes); /* partly written: wipe it all */
        return 0;
    }
    if ((t->info = bytes_parse(t->bytes, t->n, &t->lay, &why)) == NULL)
        return 0;
    memcpy(t->info->prefix, prefix, sizeof(prefix));
    return 1;
}

int kwi_token_tag_matches(const kwi_token *t, const kw_secret *pads)
{
    const kwi_token_layout *l = &t->lay;
    unsigned char tag[TAG_LEN];
    int ok;

    if (t->info->version != KW_TOKEN_VERSION)
        return 0;
    chain(tag, pads, t->info->prefix, t->bytes, l->claims_len, t->bytes + l->claims_len,
          l->tag_at - l->claims_len);
    ok = sodium_memcmp(tag, t->bytes + l->tag_at, TAG_LEN) == 0;
    sodium_memzero(tag, sizeof(tag));
    return ok;
}

/* ---- format 2: a signature per block ------------------------------------------ */

/* What the first block's signature covers: the label, the prefix, the
 * claims and the block's key (bytes[0..len)). */
static size_t first_msg(unsigned char *m, const char *prefix, const unsigned char *bytes,
                        size_t len)
{
    size_t plen = strlen(prefix), n = 0;

    memcpy(m, sig_label, sizeof(sig_label)); /* with its NUL */
    n += sizeof(sig_label);
    memcpy(m + n, prefix, plen);
    n += plen;
    m[n++] = 0;
    memcpy(m + n, bytes, len);
    return n + len;
}

/* What a later block's signature covers: the label, the signature before
 * it (which binds it to everything before), and the block up to and with
 * its key. */
static size_t block_msg(unsigned char *m, const unsigned char prev_sig[static SIG_LEN],
                        const unsigned char *block, size_t len)
{
    size_t n = 0;

    memcpy(m, block_label, sizeof(block_label));
    n += sizeof(block_label);
    memcpy(m + n, prev_sig, SIG_LEN);
    n += SIG_LEN;
    memcpy(m + n, block, len);
    return n + len;
}

#define MSG_MAX (sizeof(block_label) + KW_PREFIX_MAX + 1 + SIG_LEN + BYTES_MAX)

/* Sign m under the Ed25519 key of a 32-byte seed. */
static void ed_sign(unsigned char sig[static SIG_LEN], const unsigned char *m, size_t len,
                    const unsigned char seed[static 32])
{
    unsigned char pk[PK_LEN], sk[crypto_sign_SECRETKEYBYTES];

    crypto_sign_seed_keypair(pk, sk, seed);
    crypto_sign_detached(sig, NULL, m, len, sk);
    sodium_memzero(sk, sizeof(sk));
}

/* A block's one-time key: its seed (given, for the test vectors, or from
 * the CSPRNG) and its public key. */
static void new_block_key(unsigned char seed[static TAG_LEN], unsigned char pk[static PK_LEN],
                          const unsigned char *given)
{
    unsigned char sk[crypto_sign_SECRETKEYBYTES];

    if (given != NULL)
        memcpy(seed, given, TAG_LEN);
    else
        randombytes_buf(seed, TAG_LEN);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(sk, sizeof(sk));
}

/* Does a proof (a key seed) open public key pk? */
static int proof_opens(const unsigned char proof[static TAG_LEN],
                       const unsigned char pk[static PK_LEN])
{
    unsigned char got[PK_LEN], sk[crypto_sign_SECRETKEYBYTES];

    crypto_sign_seed_keypair(got, sk, proof);
    sodium_memzero(sk, sizeof(sk));
    return sodium_memcmp(got, pk, PK_LEN) == 0;
}

int kwi_token_sigs_ok(const kwi_token *t, const unsigned char root[static PK_LEN])
{
    unsigned char msg[MSG_MAX]; /* public bytes only: the proof is never in it */
    const kwi_token_layout *l = &t->lay;
    const unsigned char *b = t->bytes;
    size_t len;

    if (t->info->version != KW_TOKEN_VERSION_ED25519 || l->nkeys == 0)
        return 0;
    /* the proof first: a token without it is refused for a third of a
     * signature check */
    if (!proof_opens(b + l->tag_at, b + l->key_at[l->nkeys - 1]))
        return 0;
    len = first_msg(msg, t->info->prefix, b, l->key_at[0] + PK_LEN);
    if (crypto_sign_verify_detached(b + l->key_at[0] + PK_LEN, msg, len, root) != 0)
        return 0;
    for (size_t i = 1; i < l->nkeys; i++) {
        size_t start = l->key_at[i - 1] + BLOCK_KEY_LEN;
        len =
            block_msg(msg, b + l->key_at[i - 1] + PK_LEN, b + start, l->key_at[i] + PK_LEN - start);
        if (crypto_sign_verify_detached(b + l->key_at[i] + PK_LEN, msg, len,
                                        b + l->key_at[i - 1]) != 0)
            return 0;
    }
    return 1;
}

void kwi_token_done(kwi_token *t)
{
    kw_token_info_free(t->info);
    t->info = NULL;
    sodium_memzero(t->bytes, t->n < sizeof(t->bytes) ? t->n : sizeof(t->bytes));
}

int kwi_token_tag_ok(const char *token, size_t len, const unsigned char key[static 32],
                     kw_token_info **info)
{
    kw_secret *pads = NULL;
    kwi_token t;
    int ok = 0;

    *info = NULL;
    if (!kwi_token_read(&t, token, len)) {
        kwi_token_done(&t);
        return 0;
    }
    if (t.info->version == KW_TOKEN_VERSION_ED25519)
        ok = kwi_token_sigs_ok(&t, key);
    else if (pads_of_key(&pads, key) == KW_OK)
        ok = kwi_token_tag_matches(&t, pads);
    kw_secret_free(pads);
    *info = t.info;
    t.info = NULL;
    kwi_token_done(&t);
    return ok;
}

/* ---- minting and attenuating --------------------------------------------------- */

typedef struct writer {
    unsigned char p[BYTES_MAX];
    size_t n;
    int over;
} writer;

static void put(writer *w, const void *src, size_t len)
{
    if (w->over || len > sizeof(w->p) - w->n) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put_u8(writer *w, unsigned v)
{
    unsigned char b = (unsigned char)v;

    put(w, &b, 1);
}

static void put_time(writer *w, int64_t t)
{
    unsigned char b[TIME_LEN];

    for (int i = TIME_LEN - 1; i >= 0; i--) {
        b[i] = (unsigned char)t;
        t >>= 8;
    }
    put(w, b, TIME_LEN);
}

static void put_str(writer *w, const char *s)
{
    size_t len = strlen(s);

    put_u8(w, (unsigned)len);
    put(w, s, len);
}

/* The text of bytes w under prefix, as a secret. */
static kw_rc text_of(kw_secret **out, const char *prefix, const writer *w)
{
    size_t plen = strlen(prefix), blen = kwi_b62blk_len(w->n);
    size_t len = plen + 1 + blen + KW_CHECK_LEN;
    char check[KW_CHECK_LEN + 1];
    kw_secret *s;
    char *p;
    kw_rc rc;

    if (w->over || len > KW_TOKEN_MAX)
        return KW_ERR_INVALID;
    if ((rc = kw_secret_new(&s, len)) != KW_OK)
        return rc;
    p = (char *)kw_secret_data(s);
    memcpy(p, prefix, plen);
    p[plen] = '_';
    kwi_b62blk_encode(p + plen + 1, w->p, w->n);
    kw_key_check(check, p, len - KW_CHECK_LEN);
    memcpy(p + len - KW_CHECK_LEN, check, KW_CHECK_LEN);
    *out = s;
    return KW_OK;
}

/* Write a new token's claims into w (format `version`); 0 if p breaks a
 * rule (err says which). */
static int claims_write(writer *w, unsigned version, uint32_t kid, const kw_token_params *p,
                        const char *id, int64_t issued_at, char *err, size_t err_len)
{
    const char *prefix = p->prefix ? p->prefix : KW_DEFAULT_PREFIX;
    unsigned char kidb[4] = {kid >> 24, kid >> 16, kid >> 8, kid};
    char why[KWI_ERRMSG_MAX];

    if (!kw_prefix_valid(prefix)) {
        seterr(err, err_len, "%s", "invalid prefix");
        return 0;
    }
    if (p->owner == NULL || p->owner[0] == '\0' || !kwi_text_ok(p->owner, KW_OWNER_MAX)) {
        seterr(err, err_len, "%s", "a token needs an owner: UTF-8 text of at most 128 bytes");
        return 0;
    }
    if (kwi_scopes_check(p->scopes, p->nscopes, why, sizeof(why)) != 0) {
        seterr(err, err_len, "%s", why);
        return 0;
    }
    if (p->not_before < 0 || p->expires_at < 0 || p->not_before > TIME_MAX ||
        p->expires_at > TIME_MAX || issued_at <= 0 || issued_at > TIME_MAX) {
        seterr(err, err_len, "%s", "a time is out of range");
        return 0;
    }
    if (p->not_before && p->expires_at && p->not_before >= p->expires_at) {
        seterr(err, err_len, "%s", "not_before must be earlier than the expiry");
        return 0;
    }
    put_u8(w, version);
    put(w, kidb, 4);
    put(w, id, KW_ID_LEN);
    put_time(w, issued_at);
    put_time(w, p->not_before);
    put_time(w, p->expires_at);
    put_str(w, p->owner);
    put_u8(w, (unsigned)p->nscopes);
    for (size_t i = 0; i < p->nscopes; i++)
        put_str(w, p->scopes[i]);
    return 1;
}

/* The text of w, once its tag or proof is written; wipes w. */
static kw_rc finish(kw_secret **out, const char *prefix, writer *w, char *err, size_t err_len)
{
    kw_rc rc = text_of(out, prefix, w);

    if (rc == KW_ERR_INVALID)
        seterr(err, err_len, "%s", "the token would be too long");
    sodium_memzero(w, sizeof(*w));
    return rc;
}

kw_rc kwi_token_sign(kw_secret **out, const unsigned char key[static 32], uint32_t kid,
                     const kw_token_params *p, const char id[static KW_ID_LEN + 1],
                     int64_t issued_at, char *err, size_t err_len)
{
    const char *prefix = p->prefix ? p->prefix : KW_DEFAULT_PREFIX;
    unsigned char tag[TAG_LEN];
    writer w = {.n = 0};
    kw_secret *pads = NULL;
    kw_rc rc;

    if (!claims_write(&w, KW_TOKEN_VERSION, kid, p, id, issued_at, err, err_len))
        return KW_ERR_INVALID;
    if ((rc = pads_of_key(&pads, key)) != KW_OK)
        return rc;
    chain(tag, pads, prefix, w.p, w.n, NULL, 0);
    kw_secret_free(pads);
    put(&w, tag, TAG_LEN);
    sodium_memzero(tag, sizeof(tag));
    return finish(out, prefix, &w, err, err_len);
}

kw_rc kwi_token_sign_ed25519(kw_secret **out, const unsigned char seed[static 32],
                             const unsigned char *eph, uint32_t kid, const kw_token_params *p,
                             const char id[static KW_ID_LEN + 1], int64_t issued_at, char *err,
                             size_t err_len)
{
    const char *prefix = p->prefix ? p->prefix : KW_DEFAULT_PREFIX;
    unsigned char e[TAG_LEN], pk[PK_LEN], sig[SIG_LEN];
    unsigned char msg[MSG_MAX];
    writer w = {.n = 0};

    if (!claims_write(&w, KW_TOKEN_VERSION_ED25519, kid, p, id, issued_at, err, err_len))
        return KW_ERR_INVALID;
    /* the first block's key: its seed is the proof */
    new_block_key(e, pk, eph);
    put(&w, pk, PK_LEN);
    if (!w.over) {
        ed_sign(sig, msg, first_msg(msg, prefix, w.p, w.n), seed);
        put(&w, sig, SIG_LEN);
    }
    put(&w, e, TAG_LEN);
    sodium_memzero(e, sizeof(e));
    return finish(out, prefix, &w, err, err_len);
}

/* Encode one caveat into w (type, length, value). */
static int caveat_bytes(writer *w, kw_caveat_type type, const void *v, size_t len)
{
    if (len > 255)
        return 0;
    put_u8(w, type);
    put_u8(w, (unsigned)len);
    put(w, v, len);
    return !w->over;
}

static int address_bytes(unsigned char v[18], size_t *len, const char *cidr)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(cidr, '/');
    size_t alen;
    long bits;
    char *end;

    if (slash == NULL || (size_t)(slash - cidr) > INET6_ADDRSTRLEN || slash[1] == '\0')
        return 0;
    memcpy(addr, cidr, (size_t)(slash - cidr));
    addr[slash - cidr] = '\0';
    bits = strtol(slash + 1, &end, 10);
    if (*end != '\0' || bits < 0 || slash[1] == '-' || slash[1] == '+')
        return 0;
    if (inet_pton(AF_INET, addr, v + 1) == 1) {
        v[0] = 4;
        alen = 4;
    } else if (inet_pton(AF_INET6, addr, v + 1) == 1) {
        v[0] = 6;
        alen = 16;
    } else {
        return 0;
    }
    if ((size_t)bits > alen * 8)
        return 0;
    v[1 + alen] = (unsigned char)bits;
    *len = alen + 2;
    return address_ok(v, *len); /* the parser's own rule: host bits zero */
}

/* Refuse a restriction that does not narrow token t. */
static int restriction_ok(const kw_token_info *t, const kw_token_restriction *r, char *err,
                          size_t err_len)
{
    char why[KWI_ERRMSG_MAX];

    if (kwi_scopes_check(r->scopes, r->nscopes, why, sizeof(why)) != 0) {
        seterr(err, err_len, "%s", why);
        return 0;
    }
    for (size_t i = 0; i < r->nscopes; i++)
        if (!kw_scopes_cover((const char *const *)t->eff_scopes, t->neff_scopes, &r->scopes[i],
                             1)) {
            seterr(err, err_len, "the parent does not grant \"%s\": a child can only narrow",
                   r->scopes[i]);
            return 0;
        }
    if (r->expires_at < 0 || r->expires_at > TIME_MAX || r->not_before < 0 ||
        r->not_before > TIME_MAX) {
        seterr(err, err_len, "%s", "a time is out of range");
        return 0;
    }
    if (r->expires_at && t->eff_expires_at && r->expires_at >= t->eff_expires_at) {
        seterr(err, err_len, "%s", "the expiry must be earlier than the parent's");
        return 0;
    }
    if (r->audience != NULL &&
        (r->audience[0] == '\0' || !kwi_text_ok(r->audience, KW_AUDIENCE_MAX))) {
        seterr(err, err_len, "%s", "the audience must be 1 to 64 bytes of UTF-8 text");
        return 0;
    }
    return 1;
}

/* The caveats restriction r adds, into cv; *added receives how many. 0
 * if it adds none or breaks a rule (err says why). */
static int caveats_of(writer *cv, size_t *added, const kw_token_restriction *r,
                      char new_id[static KW_ID_LEN + 1], char *err, size_t err_len)
{
    unsigned char addr[18];
    size_t alen = 0;

    if (r->address != NULL && !address_bytes(addr, &alen, r->address)) {
        seterr(
            err, err_len, "%s",
            "the address must be a CIDR range with its host bits zero (10.0.0.0/8, 2001:db8::/32)");
        return 0;
    }
    if (r->nscopes > 0) {
        writer v = {.n = 0};
        for (size_t i = 0; i < r->nscopes; i++)
            put_str(&v, r->scopes[i]);
        if (v.over || !caveat_bytes(cv, KW_CAVEAT_SCOPES, v.p, v.n)) {
            seterr(err, err_len, "%s", "too many scopes for one caveat");
            return 0;
        }
    }
    if (r->expires_at) {
        writer v = {.n = 0};
        put_time(&v, r->expires_at);
        caveat_bytes(cv, KW_CAVEAT_EXPIRES, v.p, v.n);
    }
    if (r->not_before) {
        writer v = {.n = 0};
        put_time(&v, r->not_before);
        caveat_bytes(cv, KW_CAVEAT_NOT_BEFORE, v.p, v.n);
    }
    if (r->audience != NULL)
        caveat_bytes(cv, KW_CAVEAT_AUDIENCE, r->audience, strlen(r->audience));
    if (alen > 0)
        caveat_bytes(cv, KW_CAVEAT_ADDRESS, addr, alen);
    if (r->new_id) {
        kw_base62_random(new_id, KW_ID_LEN);
        new_id[KW_ID_LEN] = '\0';
        caveat_bytes(cv, KW_CAVEAT_ID, new_id, KW_ID_LEN);
    }
    if (cv->n == 0) {
        seterr(err, err_len, "%s",
               "nothing to restrict: give a scope, an expiry, an audience, an "
               "address or a new id");
        return 0;
    }
    *added = 0;
    for (size_t off = 0; off < cv->n; off += 2u + cv->p[off + 1])
        ++*added;
    return 1;
}

/* Format 1: the caveats, each chained into the tag. */
static void extend_chain(writer *w, const writer *cv,
                         const unsigned char parent_tag[static TAG_LEN])
{
    unsigned char tag[TAG_LEN];

    memcpy(tag, parent_tag, TAG_LEN);
    for (size_t off = 0; off < cv->n; off += 2u + cv->p[off + 1])
        kwi_hmac_key32(tag, tag, cv->p + off, 2u + cv->p[off + 1]);
    put(w, cv->p, cv->n);
    put(w, tag, TAG_LEN);
    sodium_memzero(tag, sizeof(tag));
}

/* Format 2: one block of the caveats, signed with the key the parent's
 * proof opens, then the new block key's seed as the proof. 0 if the proof
 * does not open the parent's last key. */
static int extend_blocks(writer *w, const writer *cv, size_t added, const unsigned char *parent,
                         const kwi_token_layout *lay, const unsigned char *eph)
{
    const unsigned char *last_key = parent + lay->key_at[lay->nkeys - 1];
    unsigned char e[TAG_LEN], pk[PK_LEN], sig[SIG_LEN];
    unsigned char msg[MSG_MAX];
    size_t start = w->n;

    if (!proof_opens(parent + lay->tag_at, last_key))
        return 0; /* a child of a broken token would be just as broken */
    new_block_key(e, pk, eph);
    put_u8(w, (unsigned)added);
    put(w, cv->p, cv->n);
    put(w, pk, PK_LEN);
    if (!w->over) {
        ed_sign(sig, msg, block_msg(msg, last_key + PK_LEN, w->p + start, w->n - start),
                parent + lay->tag_at);
        put(w, sig, SIG_LEN);
    }
    put(w, e, TAG_LEN);
    sodium_memzero(e, sizeof(e));
    return 1;
}

kw_rc kwi_token_attenuate_seeded(kw_secret **child_out, const char *token, size_t len,
                                 const kw_token_restriction *r, const unsigned char *eph,
                                 char *child_id_out, char *err, size_t err_len)
{
    unsigned char bytes[BYTES_MAX];
    char prefix[KW_PREFIX_MAX + 1], new_id[KW_ID_LEN + 1];
    const char *why = NULL;
    kwi_token_layout lay;
    size_t n, added = 0;
    kw_token_info *t;
    writer w = {.n = 0}, cv = {.n = 0};
    kw_rc rc = KW_ERR_INVALID;

    if (token == NULL || !text_split(token, len, prefix, bytes, &n)) {
        seterr(err, err_len, "%s", "not a token");
        return KW_ERR_INVALID;
    }
    if ((t = bytes_parse(bytes, n, &lay, &why)) == NULL) {
        seterr(err, err_len, "malformed token: %s", why);
        goto out;
    }
    if (!restriction_ok(t, r, err, err_len) || !caveats_of(&cv, &added, r, new_id, err, err_len))
        goto out;
    if (t->ncaveats + added > KW_TOKEN_CAVEATS_MAX) {
        seterr(err, err_len, "%s", "a token holds at most 16 caveats");
        goto out;
    }
    put(&w, bytes, lay.tag_at); /* claims and the caveats so far */
    if (t->version == KW_TOKEN_VERSION) {
        extend_chain(&w, &cv, bytes + lay.tag_at);
    } else if (!extend_blocks(&w, &cv, added, bytes, &lay, eph)) {
        seterr(err, err_len, "%s", "the token's proof does not open its last key: not a token");
        goto out;
    }
    rc = finish(child_out, prefix, &w, err, err_len);
    if (rc == KW_OK && child_id_out != NULL)
        memcpy(child_id_out, r->new_id ? new_id : t->leaf_id, KW_ID_LEN + 1);
out:
    kw_token_info_free(t);
    sodium_memzero(bytes, sizeof(bytes));
    sodium_memzero(&w, sizeof(w));
    return rc;
}

KW_API kw_rc kw_token_attenuate(kw_secret **child_out, const char *token, size_t len,
                                const kw_token_restriction *r, char *child_id_out, char *err,
                                size_t err_len)
{
    return kwi_token_attenuate_seeded(child_out, token, len, r, NULL, child_id_out, err, err_len);
}
