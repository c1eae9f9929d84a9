/*
 * libFuzzer harness for the JSON writer's strings (lib/jsonw.c): any bytes
 * must come out as one JSON string that jansson reads back; input that is
 * UTF-8 must read back as itself and be written exactly as jansson writes
 * it; input that is not must be refused by kwi_utf8_valid.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kwi_jw w;
    json_t *back, *ref;
    char *s, *out, *ref_out;
    int valid;

    if (size > 4096)
        return 0;
    s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0'; /* stops at the first NUL, as a C string does */
    kwi_jw_init(&w, 1);
    kwi_jw_str(&w, s);
    out = kwi_jw_finish(&w);
    if (out == NULL)
        abort();
    back = json_loads(out, JSON_DECODE_ANY, NULL);
    if (!json_is_string(back))
        abort();
    valid = kwi_utf8_valid(s);
    ref = json_string(s); /* jansson's own UTF-8 check */
    if (valid != (ref != NULL))
        abort();
    if (valid) {
        if (strcmp(json_string_value(back), s) != 0)
            abort();
        ref_out = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
        if (ref_out == NULL || strcmp(ref_out, out) != 0)
            abort();
        free(ref_out);
    }
    json_decref(ref);
    json_decref(back);
    free(out);
    free(s);
    return 0;
}
