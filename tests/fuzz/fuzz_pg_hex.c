/*
 * libFuzzer harness for the PostgreSQL back end's bytea decoder
 * (kwi_pg_unhex, lib/store/postgres.c): any bytes, at any capacity, are
 * either refused (-1, and the form was not "\x" and hex pairs, or too long)
 * or decoded to exactly (size - 2) / 2 bytes that encode back to the input
 * (hex digits in either case); nothing is written past the capacity.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg.h"

static int hexdigit(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    size_t cap = size * 7919 % 50; /* the length picks the capacity: some fit, some not */
    unsigned char *buf = malloc(cap + 1);
    int form = size >= 2 && data[0] == '\\' && data[1] == 'x' && (size - 2) % 2 == 0;
    long n;

    if (buf == NULL)
        return 0;
    for (size_t i = 2; form && i < size; i++)
        form = hexdigit(data[i]);
    buf[cap] = 0xA5; /* a canary past the capacity */
    n = kwi_pg_unhex((const char *)data, size, buf, cap);
    if (buf[cap] != 0xA5)
        abort();
    if (n < 0) {
        if (form && (size - 2) / 2 <= cap)
            abort(); /* a valid form that fits was refused */
    } else {
        if (!form || (size_t)n != (size - 2) / 2 || (size_t)n > cap)
            abort();
        for (long i = 0; i < n; i++) {
            int hi = data[2 + 2 * i] | 0x20, lo = data[3 + 2 * i] | 0x20; /* lower case */
            if (hi != digits[buf[i] >> 4] || lo != digits[buf[i] & 15])
                abort();
        }
    }
    free(buf);
    return 0;
}
