/* Trusted networks for /v1/auth: CIDR parsing and matching (v4 as mapped v6). */
#include "server.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int kws_cidr_parse(const char *s, kws_cidr *out)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    struct in_addr a4;
    long bits = -1;
    int v4;

    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (slash != NULL) {
        char *end;
        if (slash[1] < '0' || slash[1] > '9')
            return -1;
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0')
            return -1;
    }
    v4 = inet_pton(AF_INET, addr, &a4) == 1;
    if (v4) {
        memcpy(out->addr, v4mapped, 12);
        memcpy(out->addr + 12, &a4, 4);
        if (bits > 32)
            return -1;
        out->bits = bits < 0 ? 128 : 96 + (int)bits;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, out->addr) != 1 || bits > 128)
        return -1;
    out->bits = bits < 0 ? 128 : (int)bits;
    return 0;
}

static int prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ b[whole]) & (0xff << (8 - rest))) == 0;
}

int kws_cidr_match(const kws_cidr *nets, int n, const struct sockaddr *sa)
{
    unsigned char a[16];

    if (sa->sa_family == AF_INET) {
        memcpy(a, v4mapped, 12);
        memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (prefix_equal(a, nets[i].addr, nets[i].bits))
            return 1;
    return 0;
}
