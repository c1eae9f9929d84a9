/* Shared pieces of the command line: errors, options, values, output. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_INPUT_MAX 4096 /* read at most this much of a key or token */

const kw_actor *kwc_actor(void)
{
    static char client[64];
    static kw_actor actor = {"cli", client};

    if (client[0] == '\0')
        snprintf(client, sizeof(client), "local uid=%u", (unsigned)getuid());
    return &actor;
}

int kwc_exit_for(kw_rc rc)
{
    switch (rc) {
    case KW_OK: return EXIT_DONE;
    case KW_ERR_NOT_FOUND:
    case KW_ERR_CONFLICT:
    case KW_ERR_TAMPERED: return EXIT_REFUSED;
    case KW_ERR_INVALID:
    case KW_ERR_TOO_LARGE: return EXIT_USAGE;
    case KW_ERR_NO_DATABASE:
    case KW_ERR_PEPPER:
    case KW_ERR_PEPPER_MISMATCH:
    case KW_ERR_MASTER_KEY:
    case KW_ERR_SCHEMA: return EXIT_CONFIG;
    case KW_ERR_STORAGE:
    case KW_ERR_READONLY:
    case KW_ERR_IO: return EXIT_STORAGE;
    default: return EXIT_INTERNAL;
    }
}

int kwc_fail(const kwc_global *g, kw_rc rc, const char *detail)
{
    if (detail != NULL && detail[0] != '\0')
        fprintf(stderr, "%s: %s: %s\n", g->name, kw_strerror(rc), detail);
    else
        fprintf(stderr, "%s: %s\n", g->name, kw_strerror(rc));
    return kwc_exit_for(rc);
}

int kwc_usage(const kwc_global *g, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", g->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", g->name);
    return EXIT_USAGE;
}

const char *kwc_shown(char *buf, const char *arg)
{
    size_t len = strlen(arg);
    kw_key_parts parts;

    if (len > 24 || kw_token_shape(arg, len) || kw_key_parse(&parts, arg, len))
        return "(an argument not shown: it may be a secret)";
    snprintf(buf, KWC_SHOWN_MAX, "'%s'", arg);
    return buf;
}

int kwc_master_key_path(const kwc_global *g, char **out)
{
    const char *p = g->pepper_file;
    size_t n;

    *out = NULL;
    if (!kwc_is_postgres(g->db_url))
        return (*out = kw_master_key_default_path(g->db_url)) != NULL ? 0 : -1;
    if (p == NULL)
        return 0;
    n = strlen(p);
    if (n >= 7 && strcmp(p + n - 7, ".pepper") == 0)
        n -= 7;
    if ((*out = malloc(n + sizeof(".master"))) == NULL)
        return -1;
    memcpy(*out, p, n);
    memcpy(*out + n, ".master", sizeof(".master"));
    return 0;
}

int kwc_is_postgres(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

int kwc_url_has_password(const char *url)
{
    const char *a = strstr(url, "://"), *end, *at;

    if (a == NULL)
        return 0;
    a += 3;
    end = a + strcspn(a, "/?");
    at = memchr(a, '@', (size_t)(end - a));
    if (at != NULL && memchr(a, ':', (size_t)(at - a)) != NULL)
        return 1;
    return strstr(url, "password=") != NULL;
}

const char *kwc_db_shown(char *buf, size_t n, const char *url)
{
    const char *a, *end, *at, *host;

    if (!kwc_is_postgres(url)) {
        snprintf(buf, n, "%s", url);
        return buf;
    }
    a = strstr(url, "://") + 3;
    end = a + strcspn(a, "?");
    at = memchr(a, '@', strcspn(a, "/?"));
    host = at != NULL ? at + 1 : a;
    snprintf(buf, n, "%.*s%.*s", (int)(a - url), url, (int)(end - host), host);
    return buf;
}

int kwc_unexpected(const kwc_global *g, const char *arg, const char *hint)
{
    char buf[KWC_SHOWN_MAX];

    return kwc_usage(g, "unexpected argument %s%s%s", kwc_shown(buf, arg), hint ? "; " : "",
                     hint ? hint : "");
}

int kwc_getopt(const kwc_global *g, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    int c;

    opterr = 0;
    c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c == '?') {
        if (optopt != 0)
            kwc_usage(g, "unknown option '-%c'", optopt);
        else
            kwc_usage(g, "unknown option '%s'", argv[optind - 1]);
    } else if (c == ':') {
        kwc_usage(g, "option '%s' needs a value", argv[optind - 1]);
        c = '?';
    }
    return c;
}

int kwc_open(kwc_global *g, kw_ctx **out)
{
    char err[256] = "";
    kw_open_opts opts = {.create = 0, .err = err, .err_len = sizeof(err)};
    kw_secret *pepper = NULL;
    struct stat st;
    kw_rc rc;

    rc = kw_init();
    if (rc != KW_OK)
        return kwc_fail(g, rc, NULL);
    if (!kwc_is_postgres(g->db_url) &&
        access(g->db_url + (strncmp(g->db_url, "sqlite:", 7) == 0 ? 7 : 0), F_OK) != 0) {
        fprintf(stderr, "%s: no keyward database at %s (run 'keyward init' or pass --db)\n",
                g->name, g->db_url);
        return EXIT_CONFIG;
    }
    rc = kw_pepper_load(&pepper, g->pepper_file);
    if (rc != KW_OK && g->pepper_file == NULL) {
        const char *env = getenv("KEYWARD_PEPPER");
        fprintf(stderr, "%s: %s: %s\n", g->name, kw_strerror(rc),
                env != NULL && env[0] != '\0'
                    ? "KEYWARD_PEPPER must be 64 hex characters"
                    : "a PostgreSQL database has no default pepper file: set "
                      "KEYWARD_PEPPER_FILE (or KEYWARD_PEPPER), the same pepper on every node");
        return kwc_exit_for(rc);
    }
    if (rc == KW_ERR_PEPPER && getenv("KEYWARD_PEPPER") == NULL && stat(g->pepper_file, &st) == 0 &&
        (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "%s: pepper refused: %s is readable by other users; it must be mode 0600 "
                "(chmod 600 it if no one else can have read it, else re-key)\n",
                g->name, g->pepper_file);
        return kwc_exit_for(rc);
    }
    if (rc != KW_OK) {
        fprintf(stderr, "%s: %s: set KEYWARD_PEPPER or keep the pepper in %s (mode 0600)\n",
                g->name, kw_strerror(rc), g->pepper_file);
        return kwc_exit_for(rc);
    }
    rc = kw_open(out, g->db_url, pepper, &opts);
    kw_secret_free(pepper);
    if (rc != KW_OK)
        return kwc_fail(g, rc, err);
    {
        kw_secret *signing = NULL, *master = NULL;
        rc = kwc_seed_env(&signing, &master);
        if (rc == KW_OK && (signing != NULL || master != NULL))
            rc = kw_seed_secrets(*out, signing, master);
        kw_secret_free(signing);
        kw_secret_free(master);
        if (rc != KW_OK) {
            kw_close(*out);
            *out = NULL;
            return kwc_fail(g, rc, NULL);
        }
    }
    return EXIT_DONE;
}

/* One secret from an environment variable; *out stays NULL if unset or empty. */
static kw_rc secret_env(const char *name, kw_secret **out)
{
    const char *v = getenv(name);

    *out = NULL;
    if (v == NULL || v[0] == '\0')
        return KW_OK;
    return kw_secret_from(out, v, strlen(v));
}

kw_rc kwc_seed_env(kw_secret **signing, kw_secret **master)
{
    kw_rc rc = secret_env("KEYWARD_SEED_SIGNING_SECRET", signing);

    if (rc == KW_OK)
        rc = secret_env("KEYWARD_SEED_MASTER_KEY", master);
    if (rc != KW_OK) {
        kw_secret_free(*signing);
        *signing = NULL;
    }
    return rc;
}

int kwc_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

int kwc_parse_when(const char *s, int64_t *t)
{
    int64_t d;

    if (kw_duration_parse(s, &d) == 0) {
        *t = kw_now() + d;
        return 0;
    }
    return kw_time_parse(s, t);
}

int kwc_parse_rate(const char *s, uint32_t *limit, uint32_t *window_ms)
{
    const char *slash = strchr(s, '/');
    char num[16];
    uint64_t n;
    int64_t d;

    if (slash == NULL || (size_t)(slash - s) >= sizeof(num))
        return -1;
    memcpy(num, s, (size_t)(slash - s));
    num[slash - s] = '\0';
    if (kwc_parse_u64(num, 1000000000, &n) != 0 || n == 0)
        return -1;
    if (kw_duration_parse(slash + 1, &d) != 0 || d < 1 || d > 30 * 86400)
        return -1;
    *limit = (uint32_t)n;
    *window_ms = (uint32_t)(d * 1000);
    return 0;
}

int kwc_strv_push(kwc_strv *l, const char *s)
{
    const char **v = realloc(l->v, (l->n + 2) * sizeof(*v));

    if (v == NULL)
        return -1;
    v[l->n++] = s;
    v[l->n] = NULL;
    l->v = v;
    return 0;
}

void kwc_strv_free(kwc_strv *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

char *kwc_meta_merge(const char *base, const kwc_strv *pairs, const char **err)
{
    json_t *o = base ? json_loads(base, 0, NULL) : json_object();
    char *out;

    if (!json_is_object(o)) {
        json_decref(o);
        *err = "stored meta is not an object";
        return NULL;
    }
    for (size_t i = 0; i < pairs->n; i++) {
        const char *eq = strchr(pairs->v[i], '=');
        char key[129];
        size_t kl;

        if (eq == NULL || eq == pairs->v[i] || (kl = (size_t)(eq - pairs->v[i])) >= sizeof(key)) {
            json_decref(o);
            *err = "--meta takes KEY=VALUE (KEY of 1 to 128 bytes)";
            return NULL;
        }
        memcpy(key, pairs->v[i], kl);
        key[kl] = '\0';
        if (json_object_set_new(o, key, json_string(eq + 1)) != 0) {
            json_decref(o);
            *err = "--meta KEY and VALUE must be UTF-8 text";
            return NULL;
        }
    }
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (out == NULL)
        *err = "out of memory";
    return out;
}

void kwc_time_cell(char out[static 32], int64_t t)
{
    if (t == 0)
        snprintf(out, 32, "-");
    else
        kw_time_format(out, t);
}

static void print_scopes(FILE *f, const kw_key_record *r)
{
    if (r->nscopes == 0)
        fputs("-", f);
    for (size_t i = 0; i < r->nscopes; i++)
        fprintf(f, "%s%s", i ? " " : "", r->scopes[i]);
}

void kwc_print_record(const kw_key_record *r)
{
    char created[32], nbf[32], exp[32], used[32], revoked[32];
    const char *status = kw_key_status(r, kw_now());

    kwc_time_cell(created, r->created_at);
    kwc_time_cell(nbf, r->not_before);
    kwc_time_cell(exp, r->expires_at);
    kwc_time_cell(used, r->last_used_at);
    kwc_time_cell(revoked, r->revoked_at);
    printf("id            %s\n", r->id);
    printf("prefix        %s\n", r->prefix[0] ? r->prefix : "(imported)");
    printf("owner         %s\n", r->owner[0] ? r->owner : "-");
    printf("name          %s\n", r->name[0] ? r->name : "-");
    printf("status        %s\n", status);
    printf("scopes        ");
    print_scopes(stdout, r);
    printf("\nmeta          %s\n", r->meta);
    printf("created       %s\n", created);
    printf("not before    %s\n", nbf);
    printf("expires       %s\n", exp);
    printf("last used     %s\n", used);
    printf("revoked       %s\n", revoked);
    if (r->credits == KW_CREDITS_UNLIMITED)
        printf("credits       %s\n", r->rotated_to[0] ? "(drawn from the new key)" : "unlimited");
    else
        printf("credits       %lld\n", (long long)r->credits);
    if (r->rate_limit)
        printf("rate limit    %u per %u s\n", r->rate_limit, r->rate_window_ms / 1000);
    else
        printf("rate limit    none\n");
    if (r->rotated_from[0])
        printf("rotated from  %s\n", r->rotated_from);
    if (r->rotated_to[0])
        printf("rotated to    %s\n", r->rotated_to);
    if (r->external_id)
        printf("imported as   %s%s\n", r->external_id, r->legacy ? " (legacy hash)" : "");
}

void kwc_print_record_json(const kw_key_record *r)
{
    char *j = kw_key_record_json(r);

    if (j != NULL)
        printf("%s\n", j);
    free(j);
}

/* Write the key straight from locked memory to fd 1, bypassing stdio's
 * buffers (which would keep a copy on the heap). */
static int write_key(const kw_secret *key)
{
    const unsigned char *p = kw_secret_cdata(key);
    size_t left = kw_secret_len(key);

    fflush(stdout);
    while (left > 0) {
        ssize_t n = write(STDOUT_FILENO, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        left -= (size_t)n;
    }
    return 0;
}

int kwc_print_new_key(const kw_secret *key, const kw_key_record *r, int json)
{
    char *j = kw_key_record_json(r);
    int rc = -1;

    if (j == NULL)
        return -1;
    if (json) {
        /* The record's object with "key" first. Keys are [A-Za-z0-9_]:
         * nothing to escape. */
        fputs("{\"key\":\"", stdout);
        if (write_key(key) == 0) {
            printf("\",%s\n", j + 1);
            rc = 0;
        }
    } else if (write_key(key) == 0) {
        fputs("\n\n", stdout);
        kwc_print_record(r);
        rc = 0;
        fprintf(stderr, "%s\n",
                "keyward: the key above is shown once and never stored; "
                "keep it safe now.");
    }
    free(j);
    if (fflush(stdout) != 0)
        rc = -1;
    return rc;
}

int kwc_read_secret(const kwc_global *g, const char *env_name, const char *what, kw_secret **out)
{
    struct termios old, quiet;
    int tty = 0;
    kw_rc rc;

    if (env_name != NULL) {
        const char *v = getenv(env_name);
        if (v == NULL)
            return kwc_usage(g, "environment variable %s is not set", env_name);
        rc = kw_secret_from(out, v, strnlen(v, SECRET_INPUT_MAX + 1));
        if (rc == KW_ERR_INVALID) /* empty */
            return kwc_usage(g, "environment variable %s is empty", env_name);
        return rc == KW_OK ? 0 : kwc_fail(g, rc, NULL);
    }
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tty = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        fprintf(stderr, "%c%s: ", toupper((unsigned char)what[0]), what + 1);
    }
    rc = kw_secret_read_fd(out, STDIN_FILENO, SECRET_INPUT_MAX);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (rc == KW_ERR_TOO_LARGE)
        return kw_secret_new(out, KW_VERIFY_INPUT_MAX + 1) == KW_OK ? 0 : EXIT_INTERNAL;
    if (rc != KW_OK)
        return kwc_fail(g, rc, "reading from stdin");
    if (kw_secret_len(*out) == 0) {
        kw_secret_free(*out);
        *out = NULL;
        return kwc_usage(g, "no %s on stdin", what);
    }
    return 0;
}

void kwc_print_json_string(const char *s)
{
    json_t *j = json_string(s);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

    fputs(out ? out : "null", stdout);
    free(out);
    json_decref(j);
}
