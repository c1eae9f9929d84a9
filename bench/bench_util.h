/*
 * What the benchmark programs share: a monotonic clock in seconds, and
 * removing a scratch directory. Header-only; include after defining
 * _GNU_SOURCE (nftw).
 */
#ifndef KEYWARD_BENCH_UTIL_H
#define KEYWARD_BENCH_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static inline double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bench_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf, without a shell. 0, or -1 (a path that does not exist is 0). */
static inline int rm_rf(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    return nftw(path, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
