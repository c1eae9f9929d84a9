/*
 * libFuzzer harness for the public key set's reader (kw_public_keys_parse,
 * lib/pubkeys.c): any bytes are refused with a message or read into keys;
 * what it reads has no kid twice, and writing those keys back in the
 * set's form and reading that again gives the same keys.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The keys written back as a set: kid and x only. */
static char *write_set(const kw_public_key *k, size_t n)
{
    size_t cap = 16 + n * 120;
    char *s = malloc(cap), x[48];
    size_t len;

    if (s == NULL)
        return NULL;
    len = (size_t)snprintf(s, cap, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        sodium_bin2base64(x, sizeof(x), k[i].key, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        len += (size_t)snprintf(
            s + len, cap - len,
            "%s{\"kid\":\"%08x\",\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", i ? "," : "",
            (unsigned)k[i].kid, x);
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kw_public_key *keys = NULL, *again = NULL;
    size_t n = 0, m = 0;
    char err[200] = "", *back;
    kw_rc rc;

    if (kw_init() != KW_OK)
        return 0;
    rc = kw_public_keys_parse((const char *)data, size, &keys, &n, err, sizeof(err));
    if (rc != KW_OK) {
        if (err[0] == '\0' && rc != KW_ERR_NOMEM)
            abort(); /* refused without saying why */
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (keys[i].kid == keys[j].kid)
                abort();
    if ((back = write_set(keys, n)) != NULL) {
        if (kw_public_keys_parse(back, strlen(back), &again, &m, err, sizeof(err)) != KW_OK ||
            m != n || (n > 0 && memcmp(again, keys, n * sizeof(*keys)) != 0))
            abort();
        free(again);
        free(back);
    }
    free(keys);
    return 0;
}
