/* The pepper: 32 random bytes outside the database, as 64 hex chars. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PEPPER_HEX (KW_PEPPER_LEN * 2)

kw_rc kwi_key32_hex(kw_secret **out, const char *hex, size_t len)
{
    kw_secret *p;
    size_t bin_len = 0;
    kw_rc rc;

    if (len != PEPPER_HEX)
        return KW_ERR_INVALID;
    rc = kw_secret_new(&p, KW_PEPPER_LEN);
    if (rc != KW_OK)
        return rc;
    if (sodium_hex2bin(kw_secret_data(p), KW_PEPPER_LEN, hex, len, NULL, &bin_len, NULL) != 0 ||
        bin_len != KW_PEPPER_LEN) {
        kw_secret_free(p);
        return KW_ERR_INVALID;
    }
    *out = p;
    return KW_OK;
}

static kw_rc pepper_from_hex(kw_secret **out, const char *hex, size_t len)
{
    kw_rc rc = kwi_key32_hex(out, hex, len);

    return rc == KW_ERR_INVALID ? KW_ERR_PEPPER : rc;
}

KW_API kw_rc kw_pepper_load(kw_secret **out, const char *file)
{
    const char *env = getenv("KEYWARD_PEPPER");
    kw_secret *text = NULL;
    struct stat st;
    kw_rc rc;
    int fd;

    if (env != NULL && env[0] != '\0')
        return pepper_from_hex(out, env, strlen(env));
    if (file == NULL)
        return KW_ERR_PEPPER;
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return KW_ERR_PEPPER;
    /* A pepper readable by others is a leaked pepper: refuse it. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        close(fd);
        return KW_ERR_PEPPER;
    }
    rc = kw_secret_read_fd(&text, fd, PEPPER_HEX + 2);
    close(fd);
    if (rc != KW_OK)
        return rc == KW_ERR_NOMEM ? rc : KW_ERR_PEPPER;
    rc = pepper_from_hex(out, (const char *)kw_secret_cdata(text), kw_secret_len(text));
    kw_secret_free(text);
    return rc;
}

KW_API kw_rc kw_pepper_create(kw_secret **out, const char *file)
{
    kw_secret *p = NULL, *hex = NULL;
    kw_rc rc;
    int fd;

    rc = kw_secret_new(&p, KW_PEPPER_LEN);
    if (rc != KW_OK)
        return rc;
    rc = kw_secret_new(&hex, PEPPER_HEX + 2);
    if (rc != KW_OK)
        goto out;
    randombytes_buf(kw_secret_data(p), KW_PEPPER_LEN);
    sodium_bin2hex((char *)kw_secret_data(hex), PEPPER_HEX + 1, kw_secret_cdata(p), KW_PEPPER_LEN);
    kw_secret_data(hex)[PEPPER_HEX] = '\n';

    fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno == EEXIST ? KW_ERR_CONFLICT : KW_ERR_IO;
        goto out;
    }
    if (write(fd, kw_secret_cdata(hex), PEPPER_HEX + 1) != PEPPER_HEX + 1 || fsync(fd) != 0) {
        close(fd);
        unlink(file);
        rc = KW_ERR_IO;
        goto out;
    }
    if (close(fd) != 0) {
        unlink(file);
        rc = KW_ERR_IO;
        goto out;
    }
    *out = p;
    p = NULL;
    rc = KW_OK;
out:
    kw_secret_free(hex);
    kw_secret_free(p);
    return rc;
}

KW_API char *kw_pepper_default_path(const char *db_url)
{
    const char *path = db_url;
    size_t n;
    char *out;

    if (db_url == NULL)
        return NULL;
    if (strncmp(db_url, "sqlite:", 7) == 0)
        path = db_url + 7;
    n = strlen(path);
    out = malloc(n + sizeof(".pepper"));
    if (out == NULL)
        return NULL;
    memcpy(out, path, n);
    memcpy(out + n, ".pepper", sizeof(".pepper"));
    return out;
}
