/*
 * libFuzzer harness for `keyward run`'s readers (lib/envfile.c): an env
 * file (NAME=VALUE lines) and a secret reference (kw://path[#version]).
 * Any bytes are read or refused with a message; what is read has valid
 * names and values with no NUL, and written back as NAME='VALUE' lines
 * (when the values hold no quote or newline) reads back the same; a
 * reference that is taken has a valid path and a version >= 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void check_ref(const char *s)
{
    char path[KW_SECRET_PATH_MAX + 1];
    int64_t version = -1;
    int r = kwi_secret_ref(s, path, &version);

    if (r == 1 && (!kw_secret_path_valid(path) || version < 0))
        abort();
    if (r == 0 && strncmp(s, "kw://", 5) == 0)
        abort(); /* kw:// is a reference or an error, never a literal */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kwi_env_var *v = NULL, *again = NULL;
    size_t n = 0, m = 0, cap, len = 0;
    char err[200] = "", *text, *back;
    int simple = 1;

    if (size > 65536)
        return 0;
    if ((text = malloc(size + 1)) == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    check_ref(text);
    if (kwi_env_parse(text, size, &v, &n, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || v != NULL)
            abort(); /* refused without saying why, or with a half list */
        free(text);
        return 0;
    }
    cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (!kwi_env_name_valid(v[i].name, strlen(v[i].name)))
            abort();
        check_ref(v[i].value);
        if (strpbrk(v[i].value, "'\n\r") != NULL)
            simple = 0;
        cap += strlen(v[i].name) + strlen(v[i].value) + 4;
    }
    if (simple && (back = malloc(cap)) != NULL) {
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(back + len, cap - len, "%s='%s'\n", v[i].name, v[i].value);
        if (kwi_env_parse(back, len, &again, &m, err, sizeof(err)) != 0 || m != n)
            abort();
        for (size_t i = 0; i < n; i++)
            if (strcmp(again[i].name, v[i].name) != 0 || strcmp(again[i].value, v[i].value) != 0)
                abort();
        kwi_env_free(again, m);
        free(back);
    }
    kwi_env_free(v, n);
    free(text);
    return 0;
}
