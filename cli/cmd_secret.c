/* keyward secret put|get|list|history|rm|undelete|destroy, keyward
 * master-key init, and keyward run (secrets: docs/secrets.md). A value is
 * never read from or written to argv. */
#define _GNU_SOURCE /* execvpe */
#include "cli.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/internal.h" /* the env-file reader and secret references */

#define ENV_FILE_MAX 65535   /* the most kw_secret_read_fd reads (env files may hold secrets) */
#define VALUE_READ_MAX 65535 /* a value and its newline, checked after the newline is dropped */

extern char **environ;

enum {
    OPT_JSON = 256,
    OPT_FILE,
    OPT_CAS,
    OPT_VERSION,
    OPT_DELETED,
    OPT_PREFIX,
    OPT_ENV_FILE,
    OPT_NEW_KEY_ENV,
    OPT_MASK,
    OPT_KEEP,
    OPT_HELP = 'h',
};

static const char secret_help[] =
    "usage: keyward secret put PATH [--file F] [--cas N] [--keep N]    (the value on stdin)\n"
    "       keyward secret get PATH [--version N]\n"
    "       keyward secret list [PREFIX] [--deleted] [--json]\n"
    "       keyward secret history PATH [--json]\n"
    "       keyward secret rm PATH | undelete PATH\n"
    "       keyward secret destroy PATH --version N\n\n"
    "Secrets are sealed in the database under the master key (KEYWARD_MASTER_KEY,\n"
    "KEYWARD_MASTER_KEY_CMD, or <db>.master: 'keyward master-key init'). A value\n"
    "is read from stdin (one trailing newline dropped) or --file, never argv.\n"
    "put --cas N writes only if N is the current version (0: only a new secret);\n"
    "--keep N: the secret keeps its last N versions (1-100; 10 until set).\n"
    "rm hides a secret until undelete or the next put; destroy erases a version.\n";

static const char run_help[] =
    "usage: keyward run [--prefix PATH]... [--env-file FILE]... [--mask] -- COMMAND [ARGS...]\n\n"
    "Starts COMMAND (in this process: same pid, its exit status) with secrets in\n"
    "its environment: every variable whose value is a reference kw://PATH or\n"
    "kw://PATH#VERSION (in the environment or an env file) gets the secret's\n"
    "value, and with --prefix every secret under PATH becomes a variable named\n"
    "after the rest of its path (app/db_password under app: DB_PASSWORD). Env\n"
    "files (NAME=VALUE lines) are read in order after the environment; the\n"
    "prefixes last. A missing secret stops it: COMMAND is not started.\n"
    "--mask runs COMMAND as a child instead and replaces every secret value (of 4\n"
    "bytes or more) in its output with ***; signals are passed on.\n";

static int help(const char *text)
{
    fputs(text, stdout);
    return EXIT_DONE;
}

/* kwc_open, then the master key (environment, command, or <db>.master). */
static int open_secrets(kwc_global *g, kw_ctx **ctx)
{
    kw_secret *master = NULL;
    char why[200] = "", *file;
    int ret = kwc_open(g, ctx);
    kw_rc rc;

    if (ret != 0)
        return ret;
    if (kwc_master_key_path(g, &file) != 0) {
        kw_close(*ctx);
        *ctx = NULL;
        return kwc_fail(g, KW_ERR_NOMEM, NULL);
    }
    rc = kw_master_key_load(&master, file, why, sizeof(why));
    if (rc == KW_OK)
        rc = kw_secrets_master(*ctx, master);
    kw_secret_free(master);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, why[0] ? why : kw_errmsg(*ctx));
        kw_close(*ctx);
        *ctx = NULL;
    }
    free(file);
    return ret;
}

/* The one PATH argument of a command, checked. */
static int path_arg(const kwc_global *g, int argc, char **argv, const char **path)
{
    char shown[KWC_SHOWN_MAX];

    if (optind >= argc)
        return kwc_usage(g, "missing the secret's path");
    if (optind + 1 < argc) /* never shown: it is most likely the value */
        return kwc_usage(g, "unexpected argument after the path (not shown: a value is read from "
                            "stdin or --file, never the command line)");
    if (!kw_secret_path_valid(argv[optind]))
        return kwc_usage(g,
                         "%s is not a secret path (segments of A-Z a-z 0-9 _ . - separated by "
                         "'/', at most 256 characters)",
                         kwc_shown(shown, argv[optind]));
    *path = argv[optind];
    return 0;
}

static int version_opt(const kwc_global *g, const char *opt, const char *arg, int64_t min,
                       int64_t *v)
{
    uint64_t u;

    if (kwc_parse_u64(arg, INT64_MAX, &u) != 0 || (int64_t)u < min)
        return kwc_usage(g, "%s takes a version number%s", opt, min > 0 ? " (1 or more)" : "");
    *v = (int64_t)u;
    return 0;
}

int master_key_init_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, OPT_HELP}, {0}};
    kw_secret *key = NULL;
    char *file;
    int c;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP) {
            printf("usage: keyward master-key init\n\nWrites a new random master key for the "
                   "database's secrets to <db>.master (mode 0600).\nKeep it apart from the "
                   "database and its backups.\n");
            return EXIT_DONE;
        }
        return EXIT_USAGE;
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((rc = kw_init()) != KW_OK)
        return kwc_fail(g, rc, NULL);
    if (kwc_master_key_path(g, &file) != 0)
        return kwc_fail(g, KW_ERR_NOMEM, NULL);
    if (file == NULL) {
        fprintf(stderr,
                "%s: with KEYWARD_PEPPER and a PostgreSQL database there is no default master "
                "key file: set KEYWARD_PEPPER_FILE (the master key goes beside it) or keep the "
                "key in KEYWARD_MASTER_KEY / KEYWARD_MASTER_KEY_CMD\n",
                g->name);
        return EXIT_CONFIG;
    }
    rc = kw_pepper_create(&key, file); /* the same form: 32 random bytes as hex, mode 0600 */
    if (rc == KW_OK)
        printf("master key written to %s (mode 0600)\n", file);
    else
        fprintf(stderr, "%s: %s: %s\n", g->name, file,
                rc == KW_ERR_CONFLICT ? "exists already (never overwritten)" : kw_strerror(rc));
    kw_secret_free(key);
    free(file);
    return rc == KW_OK ? EXIT_DONE : kwc_exit_for(rc);
}

static const char rotate_help[] =
    "usage: keyward master-key rotate [--new-key-env VAR]\n\n"
    "Seals every secret's data key again under a new master key, in one\n"
    "transaction (no value is decrypted to disk). With the master key in\n"
    "<db>.master, a new random key is written to <db>.master.new (mode 0600)\n"
    "and, once the database is committed, renamed over <db>.master. With\n"
    "KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_CMD, give the new key (64 hex\n"
    "characters) in the variable VAR, and store it where the old one was.\n";

int master_key_rotate_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"new-key-env", required_argument, NULL, OPT_NEW_KEY_ENV},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *new_env = NULL, *env = getenv("KEYWARD_MASTER_KEY"),
               *cmd = getenv("KEYWARD_MASTER_KEY_CMD");
    int from_file = (env == NULL || env[0] == '\0') && (cmd == NULL || cmd[0] == '\0');
    kw_secret *fresh = NULL;
    kw_ctx *ctx = NULL;
    char *file = NULL, *next = NULL;
    size_t count = 0;
    int c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(rotate_help);
        if (c != OPT_NEW_KEY_ENV)
            return EXIT_USAGE;
        new_env = optarg;
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if (!from_file && new_env == NULL)
        return kwc_usage(g, "the master key comes from KEYWARD_MASTER_KEY or _CMD: give the new "
                            "one with --new-key-env VAR (64 hex characters)");
    if ((ret = open_secrets(g, &ctx)) != 0)
        return ret;
    if (new_env != NULL) {
        const char *hex = getenv(new_env);
        rc = hex != NULL ? kwi_master_key_hex(&fresh, hex, strlen(hex)) : KW_ERR_MASTER_KEY;
        if (rc != KW_OK) {
            kw_close(ctx);
            return kwc_fail(g, rc, "the new key (--new-key-env) is not 64 hex characters");
        }
    } else {
        if (kwc_master_key_path(g, &file) != 0) {
            kw_close(ctx);
            return kwc_fail(g, KW_ERR_NOMEM, NULL);
        }
        if (file == NULL) {
            kw_close(ctx);
            return kwc_fail(g, KW_ERR_MASTER_KEY,
                            "no master key file to rotate (PostgreSQL with KEYWARD_PEPPER): "
                            "give the new key with --new-key-env");
        }
        next = malloc(strlen(file) + sizeof(".new"));
        if (next == NULL) {
            kw_close(ctx);
            free(file);
            return kwc_fail(g, KW_ERR_NOMEM, NULL);
        }
        memcpy(next, file, strlen(file));
        memcpy(next + strlen(file), ".new", sizeof(".new"));
        rc = kw_pepper_create(&fresh, next); /* 32 random bytes as hex, 0600, never over a file */
        if (rc != KW_OK) {
            fprintf(stderr, "%s: %s: %s\n", g->name, next,
                    rc == KW_ERR_CONFLICT ? "exists: a rotation did not finish? (see "
                                            "docs/secrets.md)"
                                          : kw_strerror(rc));
            kw_close(ctx);
            free(file);
            free(next);
            return kwc_exit_for(rc);
        }
    }
    rc = kw_secrets_rotate_master(ctx, fresh, kwc_actor(), &count);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        if (next != NULL)
            unlink(next); /* nothing changed: the old key is still the key */
    } else if (next != NULL && rename(next, file) != 0) {
        fprintf(stderr,
                "%s: the secrets are sealed under the new key, in %s, which could not be renamed "
                "to %s: rename it by hand\n",
                g->name, next, file);
        ret = EXIT_STORAGE;
    } else {
        printf("master key rotated: %zu data keys sealed again%s%s\n", count,
               next != NULL ? "; the new key is in " : "; store the new key where the old was",
               next != NULL ? file : "");
        ret = EXIT_DONE;
    }
    kw_secret_free(fresh);
    kw_close(ctx);
    free(file);
    free(next);
    return ret;
}

int secret_put_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, OPT_FILE},
        {"cas", required_argument, NULL, OPT_CAS},
        {"keep", required_argument, NULL, OPT_KEEP},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *path, *file = NULL;
    kw_secret *value = NULL;
    kw_ctx *ctx = NULL;
    int64_t cas = -1, version, keep = 0;
    int c, ret, fd;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(secret_help);
        if (c == OPT_FILE)
            file = optarg;
        else if (c == OPT_CAS) {
            if ((ret = version_opt(g, "--cas", optarg, 0, &cas)) != 0)
                return ret;
        } else if (c == OPT_KEEP) {
            if ((ret = version_opt(g, "--keep", optarg, 1, &keep)) != 0)
                return ret;
            if (keep > KW_SECRET_KEEP_MAX)
                return kwc_usage(g, "--keep takes 1 to %d", KW_SECRET_KEEP_MAX);
        } else
            return EXIT_USAGE;
    }
    if ((ret = path_arg(g, argc, argv, &path)) != 0)
        return ret;
    fd = file != NULL ? open(file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0)
        return kwc_fail(g, KW_ERR_IO, "--file cannot be opened");
    rc = kw_secret_read_fd(&value, fd, VALUE_READ_MAX);
    if (rc == KW_OK && kw_secret_len(value) > KW_SECRET_VALUE_MAX) {
        kw_secret_free(value);
        rc = KW_ERR_TOO_LARGE;
    }
    if (file != NULL)
        close(fd);
    if (rc == KW_OK && kw_secret_len(value) == 0) {
        kw_secret_free(value);
        return kwc_usage(g, "no value on %s", file ? "--file" : "stdin");
    }
    if (rc != KW_OK)
        return kwc_fail(g, rc, rc == KW_ERR_TOO_LARGE ? "a value is at most 64000 bytes" : NULL);
    if ((ret = open_secrets(g, &ctx)) != 0) {
        kw_secret_free(value);
        return ret;
    }
    rc = kw_secrets_put(ctx, path, value, cas, kwc_actor(), &version);
    kw_secret_free(value);
    if (rc == KW_OK && keep > 0) /* after the write: the secret exists now */
        rc = kw_secrets_keep(ctx, path, keep, kwc_actor());
    if (rc == KW_OK)
        printf("%s: version %lld\n", path, (long long)version);
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    kw_close(ctx);
    return ret;
}

int secret_get_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"version", required_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *path;
    kw_secret *value = NULL;
    kw_ctx *ctx = NULL;
    int64_t version = 0;
    int c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(secret_help);
        if (c != OPT_VERSION)
            return EXIT_USAGE;
        if ((ret = version_opt(g, "--version", optarg, 1, &version)) != 0)
            return ret;
    }
    if ((ret = path_arg(g, argc, argv, &path)) != 0 || (ret = open_secrets(g, &ctx)) != 0)
        return ret;
    rc = kw_secrets_get(ctx, path, version, kwc_actor(), &value, NULL);
    if (rc == KW_OK) {
        fwrite(kw_secret_cdata(value), 1, kw_secret_len(value), stdout);
        if (isatty(STDOUT_FILENO))
            fputc('\n', stdout);
        fflush(stdout);
    }
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    kw_secret_free(value);
    kw_close(ctx);
    return ret;
}

int secret_list_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"deleted", no_argument, NULL, OPT_DELETED},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_secret_info *v = NULL;
    kw_ctx *ctx = NULL;
    const char *prefix = "";
    size_t n = 0;
    int c, ret, json = 0, deleted = 0;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(secret_help);
        if (c == OPT_JSON)
            json = 1;
        else if (c == OPT_DELETED)
            deleted = 1;
        else
            return EXIT_USAGE;
    }
    if (optind < argc)
        prefix = argv[optind++];
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((ret = kwc_open(g, &ctx)) != 0) /* no value is read: no master key needed */
        return ret;
    if ((rc = kw_secrets_list(ctx, prefix, deleted, &v, &n)) != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        kw_close(ctx);
        return ret;
    }
    if (json)
        printf("[");
    else if (n > 0)
        printf("%-40s  %7s  %-20s  %s\n", "PATH", "VERSION", "UPDATED", "DELETED");
    for (size_t i = 0; i < n; i++) {
        char up[32], del[32];
        kwc_time_cell(up, v[i].updated_at);
        kwc_time_cell(del, v[i].deleted_at);
        if (json) {
            printf("%s{\"path\":", i ? "," : "");
            kwc_print_json_string(v[i].path);
            printf(",\"version\":%lld,\"keep\":%lld,\"updated_at\":\"%s\",\"deleted\":%s}",
                   (long long)v[i].version, (long long)v[i].keep, up,
                   v[i].deleted_at ? "true" : "false");
        } else {
            printf("%-40s  %7lld  %-20s  %s\n", v[i].path, (long long)v[i].version, up, del);
        }
    }
    if (json)
        printf("]\n");
    free(v);
    kw_close(ctx);
    return EXIT_DONE;
}

int secret_history_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_secret_version_info *v = NULL;
    kw_ctx *ctx = NULL;
    const char *path;
    size_t n = 0;
    int c, ret, json = 0;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(secret_help);
        if (c != OPT_JSON)
            return EXIT_USAGE;
        json = 1;
    }
    if ((ret = path_arg(g, argc, argv, &path)) != 0 || (ret = kwc_open(g, &ctx)) != 0)
        return ret;
    if ((rc = kw_secrets_history(ctx, path, &v, &n)) != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        kw_close(ctx);
        return ret;
    }
    printf(json ? "[" : "%7s  %-20s  %s\n", "VERSION", "CREATED", "DESTROYED");
    for (size_t i = 0; i < n; i++) {
        char made[32], gone[32];
        kwc_time_cell(made, v[i].created_at);
        kwc_time_cell(gone, v[i].destroyed_at);
        if (json)
            printf("%s{\"version\":%lld,\"created_at\":\"%s\",\"destroyed\":%s}", i ? "," : "",
                   (long long)v[i].version, made, v[i].destroyed_at ? "true" : "false");
        else
            printf("%7lld  %-20s  %s\n", (long long)v[i].version, made, gone);
    }
    if (json)
        printf("]\n");
    free(v);
    kw_close(ctx);
    return EXIT_DONE;
}

/* rm, undelete, destroy: one path, one change. */
static int change_main(kwc_global *g, int argc, char **argv, int which)
{
    static const struct option opts[] = {
        {"version", required_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    static const char *const done[] = {"deleted (undelete brings it back)", "brought back",
                                       "destroyed"};
    const char *path;
    kw_ctx *ctx = NULL;
    int64_t version = 0;
    int c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(secret_help);
        if (c != OPT_VERSION || which != 2)
            return c == OPT_VERSION ? kwc_usage(g, "--version is for destroy") : EXIT_USAGE;
        if ((ret = version_opt(g, "--version", optarg, 1, &version)) != 0)
            return ret;
    }
    if ((ret = path_arg(g, argc, argv, &path)) != 0)
        return ret;
    if (which == 2 && version == 0)
        return kwc_usage(g, "destroy takes --version N: versions are destroyed one by one");
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = which == 0   ? kw_secrets_delete(ctx, path, kwc_actor())
         : which == 1 ? kw_secrets_undelete(ctx, path, kwc_actor())
                      : kw_secrets_destroy(ctx, path, version, kwc_actor());
    if (rc == KW_OK && which == 2)
        printf("%s: version %lld %s\n", path, (long long)version, done[which]);
    else if (rc == KW_OK)
        printf("%s: %s\n", path, done[which]);
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    kw_close(ctx);
    return ret;
}

int secret_rm_main(kwc_global *g, int argc, char **argv)
{
    return change_main(g, argc, argv, 0);
}

int secret_undelete_main(kwc_global *g, int argc, char **argv)
{
    return change_main(g, argc, argv, 1);
}

int secret_destroy_main(kwc_global *g, int argc, char **argv)
{
    return change_main(g, argc, argv, 2);
}

/* ---- keyward run ------------------------------------------------------------- */

/* The child's environment, built up: "NAME=VALUE" strings (wiped at the
 * end unless exec takes them). */
typedef struct env_list {
    char **v;
    size_t n, cap;
} env_list;

static void env_list_free(env_list *e)
{
    for (size_t i = 0; i < e->n; i++) {
        sodium_memzero(e->v[i], strlen(e->v[i]));
        free(e->v[i]);
    }
    free(e->v);
}

/* Set name to value (replacing it if set). */
static int env_set(env_list *e, const char *name, size_t nlen, const char *value, size_t vlen)
{
    char *s = malloc(nlen + 1 + vlen + 1), **grown;

    if (s == NULL)
        return -1;
    memcpy(s, name, nlen);
    s[nlen] = '=';
    memcpy(s + nlen + 1, value, vlen);
    s[nlen + 1 + vlen] = '\0';
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=') {
            sodium_memzero(e->v[i], strlen(e->v[i]));
            free(e->v[i]);
            e->v[i] = s;
            return 0;
        }
    if (e->n + 1 >= e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        if ((grown = realloc(e->v, cap * sizeof(*grown))) == NULL) {
            free(s);
            return -1;
        }
        e->v = grown;
        e->cap = cap;
    }
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
    return 0;
}

/* Where `run` reads secrets: the database, or a server. */
#define MASKS_MAX 256
#define MASK_MIN 4 /* shorter values are not masked: they would garble the output */

typedef struct source {
    kw_ctx *ctx;
    kwc_remote *remote;
    char err[256];
    int mask;                    /* --mask: keep each value for the filter */
    kw_secret *masks[MASKS_MAX]; /* copies, in locked memory */
    size_t nmasks;
} source;

static void src_err(source *s, kw_rc rc)
{
    snprintf(s->err, sizeof(s->err), "%s",
             kw_errmsg(s->ctx)[0] ? kw_errmsg(s->ctx) : kw_strerror(rc));
}

static kw_rc src_get(source *s, const char *path, int64_t version, kw_secret **value)
{
    kw_rc rc;

    if (s->remote != NULL)
        return kwc_remote_get(s->remote, path, version, value, s->err, sizeof(s->err));
    if ((rc = kw_secrets_get(s->ctx, path, version, kwc_actor(), value, NULL)) != KW_OK)
        src_err(s, rc);
    return rc;
}

static kw_rc src_list(source *s, const char *prefix, kw_secret_info **out, size_t *n)
{
    kw_rc rc;

    if (s->remote != NULL)
        return kwc_remote_list(s->remote, prefix, out, n, s->err, sizeof(s->err));
    if ((rc = kw_secrets_list(s->ctx, prefix, 0, out, n)) != KW_OK)
        src_err(s, rc);
    return rc;
}

/* Read a secret into the variable `name`; an exit code after a message. */
static int env_secret(const kwc_global *g, source *src, env_list *e, const char *name, size_t nlen,
                      const char *path, int64_t version)
{
    kw_secret *value = NULL;
    kw_rc rc = src_get(src, path, version, &value);
    int ret = 0;

    if (rc != KW_OK) {
        fprintf(stderr, "%s: %.*s: %s; the command was not started\n", g->name, (int)nlen, name,
                src->err);
        return kwc_exit_for(rc);
    }
    if (src->mask && kw_secret_len(value) >= MASK_MIN) {
        if (src->nmasks == MASKS_MAX) {
            fprintf(stderr, "%s: --mask: more than %d secrets; the command was not started\n",
                    g->name, MASKS_MAX);
            kw_secret_free(value);
            return EXIT_USAGE;
        }
        if (kw_secret_from(&src->masks[src->nmasks], kw_secret_cdata(value),
                           kw_secret_len(value)) != KW_OK) {
            kw_secret_free(value);
            return kwc_fail(g, KW_ERR_NOMEM, NULL);
        }
        src->nmasks++;
    }
    if (memchr(kw_secret_cdata(value), '\0', kw_secret_len(value)) != NULL) {
        fprintf(stderr,
                "%s: %.*s: the secret at %s holds a NUL byte: it cannot be an environment "
                "variable; the command was not started\n",
                g->name, (int)nlen, name, path);
        ret = EXIT_REFUSED;
    } else if (env_set(e, name, nlen, (const char *)kw_secret_cdata(value), kw_secret_len(value)) !=
               0) {
        ret = kwc_fail(g, KW_ERR_NOMEM, NULL);
    }
    kw_secret_free(value);
    return ret;
}

/* An env file's variables, into e. */
static int env_file(const kwc_global *g, env_list *e, const char *file)
{
    kwi_env_var *vars = NULL;
    kw_secret *text = NULL;
    char err[200];
    size_t n = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC), ret = 0;
    kw_rc rc;

    if (fd < 0) {
        fprintf(stderr, "%s: %s: cannot be opened; the command was not started\n", g->name, file);
        return EXIT_STORAGE;
    }
    rc = kw_secret_read_fd(&text, fd, ENV_FILE_MAX);
    close(fd);
    if (rc != KW_OK)
        return kwc_fail(g, rc, file);
    if (kwi_env_parse((const char *)kw_secret_cdata(text), kw_secret_len(text), &vars, &n, err,
                      sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s: %s; the command was not started\n", g->name, file, err);
        ret = EXIT_USAGE;
    }
    for (size_t i = 0; ret == 0 && i < n; i++)
        if (env_set(e, vars[i].name, strlen(vars[i].name), vars[i].value, strlen(vars[i].value)) !=
            0)
            ret = kwc_fail(g, KW_ERR_NOMEM, NULL);
    kwi_env_free(vars, n);
    kw_secret_free(text);
    return ret;
}

/* The variable name of a secret under a prefix: the rest of its path,
 * upper-cased, with '/', '.' and '-' as '_'. */
static int name_under(char out[static KWI_ENV_NAME_MAX + 1], const char *path, size_t plen)
{
    const char *rest = path + plen + (path[plen] == '/');
    size_t n = strlen(rest);

    if (n == 0 || n > KWI_ENV_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = rest[i];
        out[i] = c >= 'a' && c <= 'z'                 ? (char)(c - 'a' + 'A')
                 : (c == '/' || c == '.' || c == '-') ? '_'
                                                      : c;
    }
    out[n] = '\0';
    return kwi_env_name_valid(out, n);
}

/* Every secret under prefix, into e. */
/* The value of name in e, or NULL. */
static const char *env_get(const env_list *e, const char *name)
{
    size_t nlen = strlen(name);

    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=')
            return e->v[i] + nlen + 1;
    return NULL;
}

/* made: NAME=path of every variable a prefix made so far (two secrets
 * making one name is an error, not a silent choice). */
static int env_prefix(const kwc_global *g, source *src, env_list *e, env_list *made,
                      const char *prefix)
{
    const char *other;
    kw_secret_info *v = NULL;
    size_t n = 0, plen = strlen(prefix), found = 0;
    char name[KWI_ENV_NAME_MAX + 1];
    int ret = 0;
    kw_rc rc;

    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    if ((rc = src_list(src, prefix, &v, &n)) != KW_OK) {
        fprintf(stderr, "%s: --prefix %s: %s; the command was not started\n", g->name, prefix,
                src->err);
        return kwc_exit_for(rc);
    }
    for (size_t i = 0; ret == 0 && i < n; i++) {
        if (plen > 0 && v[i].path[plen] != '/')
            continue; /* "app" takes neither "apple/x" nor the secret "app" itself */
        if (!name_under(name, v[i].path, plen)) {
            fprintf(stderr,
                    "%s: the secret at %s makes no variable name under %.*s; the command was "
                    "not started\n",
                    g->name, v[i].path, (int)plen, prefix);
            ret = EXIT_USAGE;
            break;
        }
        if ((other = env_get(made, name)) != NULL) {
            fprintf(stderr,
                    "%s: the secrets at %s and %s both make %s; the command was not started\n",
                    g->name, other, v[i].path, name);
            ret = EXIT_USAGE;
            break;
        }
        if (env_set(made, name, strlen(name), v[i].path, strlen(v[i].path)) != 0)
            ret = kwc_fail(g, KW_ERR_NOMEM, NULL);
        else
            ret = env_secret(g, src, e, name, strlen(name), v[i].path, 0);
        found++;
    }
    free(v);
    if (ret == 0 && found == 0) {
        fprintf(stderr, "%s: no secret under %s; the command was not started\n", g->name, prefix);
        ret = EXIT_REFUSED;
    }
    return ret;
}

/* Is this one of keyward's own secrets (the master key, the pepper, the
 * seed's secrets)? The child gets the secrets it is granted, never those. */
static int keyward_own(const char *name, size_t len)
{
    static const char *const own[] = {
        "KEYWARD_MASTER_KEY", "KEYWARD_MASTER_KEY_CMD",      "KEYWARD_PEPPER",
        "KEYWARD_TOKEN",      "KEYWARD_SEED_SIGNING_SECRET", "KEYWARD_SEED_MASTER_KEY"};

    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strlen(own[i]) == len && memcmp(own[i], name, len) == 0)
            return 1;
    return 0;
}

/* A server as the source: KEYWARD_ADDR, and an application key in
 * KEYWARD_TOKEN (an environment variable, never argv). */
static int open_remote(const kwc_global *g, const char *addr, kwc_remote **out)
{
    kw_secret *token = NULL;
    int ret = kwc_read_secret(g, "KEYWARD_TOKEN", "key", &token);

    if (ret != 0)
        return ret;
    if (kwc_remote_open(out, addr, token) != 0)
        ret = kwc_fail(g, KW_ERR_NOMEM, "the HTTP client");
    kw_secret_free(token);
    return ret;
}

/* Does any variable look like a secret reference (good or not)? */
static int has_refs(const env_list *e)
{
    for (size_t i = 0; i < e->n; i++) {
        const char *eq = strchr(e->v[i], '=');
        if (eq != NULL && strncmp(eq + 1, "kw://", 5) == 0)
            return 1;
    }
    return 0;
}

int run_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"env-file", required_argument, NULL, OPT_ENV_FILE},
        {"mask", no_argument, NULL, OPT_MASK},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *prefixes[32], *files[32];
    size_t nprefixes = 0, nfiles = 0;
    env_list e = {0}, made = {0};
    source src = {0};
    const char *addr = getenv("KEYWARD_ADDR");
    char path[KW_SECRET_PATH_MAX + 1];
    int c, ret = 0;

    while ((c = kwc_getopt(g, argc, argv, "+:h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(run_help);
        if ((c == OPT_PREFIX && nprefixes == 32) || (c == OPT_ENV_FILE && nfiles == 32))
            return kwc_usage(g, "at most 32 --prefix and 32 --env-file");
        if (c == OPT_PREFIX)
            prefixes[nprefixes++] = optarg;
        else if (c == OPT_ENV_FILE)
            files[nfiles++] = optarg;
        else if (c == OPT_MASK)
            src.mask = 1;
        else
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return kwc_usage(g, "no command to run: keyward run [options] -- COMMAND [ARGS...]");
    for (char **p = environ; ret == 0 && *p != NULL; p++) {
        const char *eq = strchr(*p, '=');
        if (eq != NULL && !keyward_own(*p, (size_t)(eq - *p)) &&
            env_set(&e, *p, (size_t)(eq - *p), eq + 1, strlen(eq + 1)) != 0)
            ret = kwc_fail(g, KW_ERR_NOMEM, NULL);
    }
    for (size_t i = 0; ret == 0 && i < nfiles; i++)
        ret = env_file(g, &e, files[i]);
    if (ret == 0 && (nprefixes > 0 || has_refs(&e)) && /* else nothing to open */
        (ret = addr != NULL && addr[0] ? open_remote(g, addr, &src.remote)
                                       : open_secrets(g, &src.ctx)) != 0)
        fprintf(stderr, "%s: the command was not started\n", g->name);
    /* references, in the environment and the env files */
    for (size_t i = 0; ret == 0 && i < e.n; i++) {
        const char *eq = strchr(e.v[i], '=');
        int64_t version;
        int ref = kwi_secret_ref(eq + 1, path, &version);
        if (ref < 0) {
            fprintf(stderr,
                    "%s: %.*s: not a secret reference (kw://PATH or kw://PATH#VERSION); the "
                    "command was not started\n",
                    g->name, (int)(eq - e.v[i]), e.v[i]);
            ret = EXIT_USAGE;
        } else if (ref > 0) {
            char name[KWI_ENV_NAME_MAX + 1];
            size_t nlen = (size_t)(eq - e.v[i]);
            if (nlen > KWI_ENV_NAME_MAX) {
                fprintf(stderr, "%s: a variable's name is too long\n", g->name);
                ret = EXIT_USAGE;
                break;
            }
            memcpy(name, e.v[i], nlen);
            ret = env_secret(g, &src, &e, name, nlen, path, version);
        }
    }
    for (size_t i = 0; ret == 0 && i < nprefixes; i++)
        ret = env_prefix(g, &src, &e, &made, prefixes[i]);
    kw_close(src.ctx);
    kwc_remote_close(src.remote);
    if (ret == 0 && src.mask) {
        char *none[] = {NULL};
        ret = kwc_run_masked(g, argv + optind, e.v != NULL ? e.v : none, src.masks, src.nmasks);
    } else if (ret == 0) {
        char *none[] = {NULL};
        fflush(NULL);
        execvpe(argv[optind], argv + optind, e.v != NULL ? e.v : none);
        fprintf(stderr, "%s: %s: cannot be started\n", g->name, argv[optind]);
        ret = 127;
    }
    for (size_t i = 0; i < src.nmasks; i++)
        kw_secret_free(src.masks[i]);
    env_list_free(&e);
    env_list_free(&made);
    return ret;
}
