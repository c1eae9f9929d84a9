/*
 * libFuzzer harness for reading a server's answer to GET /v1/secrets/{path}
 * (kwi_secret_value_of, lib/secrets.c; `keyward run` against a server):
 * any bytes, read as JSON, give a value of 1 to KW_SECRET_VALUE_MAX bytes
 * or KW_ERR_INVALID; a value read, written back as value_base64 and read
 * again, is the same bytes.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j, *again;
    kw_secret *v = NULL, *w = NULL;
    char *b64;
    size_t blen;
    kw_rc rc;

    if (kw_init() != KW_OK || size > 200000)
        return 0;
    if ((j = json_loadb((const char *)data, size, 0, NULL)) == NULL)
        return 0;
    rc = kwi_secret_value_of(j, &v);
    json_decref(j);
    if (rc != KW_OK) {
        if (rc != KW_ERR_INVALID && rc != KW_ERR_NOMEM)
            abort();
        return 0;
    }
    if (kw_secret_len(v) == 0 || kw_secret_len(v) > KW_SECRET_VALUE_MAX)
        abort();
    blen = sodium_base64_ENCODED_LEN(kw_secret_len(v), sodium_base64_VARIANT_ORIGINAL);
    if ((b64 = malloc(blen)) != NULL) {
        sodium_bin2base64(b64, blen, kw_secret_cdata(v), kw_secret_len(v),
                          sodium_base64_VARIANT_ORIGINAL);
        again = json_pack("{s:s}", "value_base64", b64);
        if (again == NULL || kwi_secret_value_of(again, &w) != KW_OK ||
            kw_secret_len(w) != kw_secret_len(v) ||
            memcmp(kw_secret_cdata(w), kw_secret_cdata(v), kw_secret_len(v)) != 0)
            abort();
        json_decref(again);
        kw_secret_free(w);
        free(b64);
    }
    kw_secret_free(v);
    return 0;
}
