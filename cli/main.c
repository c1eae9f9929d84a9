/*
 * keyward — the command line: `keyward [--db URL] <noun> <verb> [options]`.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static const kwc_command commands[] = {
    {"init", NULL, init_main, "create the database, the pepper and the first admin key"},
    {"serve", NULL, serve_main, "serve the HTTP API"},
    {"key", "create", key_create_main, "create a key (printed once)"},
    {"key", "list", key_list_main, "list keys"},
    {"key", "show", key_show_main, "show one key's record"},
    {"key", "update", key_update_main, "change a key's settings"},
    {"key", "rotate", key_rotate_main, "replace a key; the old one expires after a grace period"},
    {"key", "revoke", key_revoke_main, "revoke a key at once"},
    {"key", "verify", key_verify_main, "verify a key read from stdin"},
    {"audit", "list", audit_list_main, "list audit records"},
    {"audit", "verify", audit_verify_main, "check the audit chain for tampering"},
    {"import", "seed", import_seed_main, "import the seed system's api_keys table"},
    {"token", "mint", token_mint_main, "mint a stateless key (printed once)"},
    {"token", "attenuate", token_attenuate_main, "derive a narrower token, offline"},
    {"token", "inspect", token_inspect_main, "show what a token claims (and --verify it)"},
    {"token", "revoke", token_revoke_main, "revoke a token id and all tokens derived from it"},
    {"signing-key", "rotate", signing_key_rotate_main, "start a new token signing key"},
    {"signing-key", "retire", signing_key_retire_main, "stop a signing key verifying"},
    {"signing-key", "list", signing_key_list_main, "list the token signing keys"},
    {"signing-key", "public", signing_key_public_main, "print the Ed25519 public keys (JSON)"},
    {"signing-key", "import", signing_key_import_main, "verify with another keyring's public keys"},
    {"master-key", "init", master_key_init_main, "make the secrets' master key file (<db>.master)"},
    {"master-key", "rotate", master_key_rotate_main,
     "seal every secret again under a new master key"},
    {"secret", "put", secret_put_main, "write a secret's next version (value on stdin)"},
    {"secret", "get", secret_get_main, "print a secret's value"},
    {"secret", "list", secret_list_main, "list secrets under a prefix (never a value)"},
    {"secret", "history", secret_history_main, "list a secret's versions"},
    {"secret", "rm", secret_rm_main, "delete a secret (undelete brings it back)"},
    {"secret", "undelete", secret_undelete_main, "bring a deleted secret back"},
    {"secret", "destroy", secret_destroy_main, "erase one version of a secret for good"},
    {"run", NULL, run_main, "run a command with secrets in its environment"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f, const char *noun)
{
    fprintf(f, "usage: keyward [--db URL] [--pepper-file FILE] <command> [options]\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char name[32];
        if (noun != NULL && strcmp(noun, commands[i].noun) != 0)
            continue;
        snprintf(name, sizeof(name), "%s%s%s", commands[i].noun, commands[i].verb ? " " : "",
                 commands[i].verb ? commands[i].verb : "");
        fprintf(f, "  %-14s %s\n", name, commands[i].summary);
    }
    fprintf(f, "\nglobal options (anywhere before --):\n"
               "  --db URL             database: sqlite:PATH (env KEYWARD_DB;"
               " default sqlite:./keyward.db)\n"
               "  --pepper-file FILE   pepper file (env KEYWARD_PEPPER_FILE;"
               " default <db path>.pepper);\n"
               "                       KEYWARD_PEPPER (64 hex chars) takes precedence\n"
               "\n'keyward <command> --help' describes a command. Exit status: 0 done,\n"
               "1 refused or invalid, 2 usage error, 3 configuration, 4 storage, 5 internal.\n");
}

/* Take --db and --pepper-file (and their = forms) out of argv. */
static int take_globals(kwc_global *g, int *argc, char **argv)
{
    int out = 1;

    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        const char *val = NULL;

        if (strcmp(a, "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(a, "--db") == 0 || strncmp(a, "--db=", 5) == 0)
            dst = &g->db_url;
        else if (strcmp(a, "--pepper-file") == 0 || strncmp(a, "--pepper-file=", 14) == 0)
            dst = &g->pepper_file;
        if (dst == NULL) {
            argv[out++] = argv[i];
            continue;
        }
        val = strchr(a, '=');
        if (val != NULL) {
            val++;
        } else if (i + 1 < *argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "keyward: option '%s' needs a value\n", a);
            return -1;
        }
        if (val[0] == '\0') {
            fprintf(stderr, "keyward: option '%s' needs a value\n", a);
            return -1;
        }
        /* argv is visible to every user of the machine (ps, /proc). */
        if (dst == &g->db_url && kwc_url_has_password(val)) {
            fprintf(stderr, "keyward: --db must not carry a password (every user can read a "
                            "command line): use KEYWARD_DB, PGPASSWORD or a ~/.pgpass file\n");
            return -1;
        }
        *dst = val;
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

/* Keys and the pepper live in this process's memory: never dump it. */
static void no_core_dumps(void)
{
    struct rlimit rl = {0, 0};

    setrlimit(RLIMIT_CORE, &rl);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* sqlite:PATH (or a bare path) and PostgreSQL URLs; say so up front,
 * before anything is created beside a URL taken for a path. */
static int db_url_supported(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return url[7] != '\0';
    if (kwc_is_postgres(url))
        return 1;
    return url[0] != '\0' && strstr(url, "://") == NULL;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

int main(int argc, char **argv)
{
    kwc_global g = {0};
    char name[64], shown[KWC_SHOWN_MAX];
    int ret;

    no_core_dumps();
    g.db_url = env_or("KEYWARD_DB", KW_DEFAULT_DB_URL);
    g.pepper_file = env_or("KEYWARD_PEPPER_FILE", NULL);
    if (take_globals(&g, &argc, argv) != 0)
        return EXIT_USAGE;
    if (!db_url_supported(g.db_url)) {
        /* Name only the scheme: a URL may carry a password. */
        const char *sep = strstr(g.db_url, "://");
        int n = sep ? (int)(sep - g.db_url) : (int)strlen(g.db_url);
        fprintf(stderr,
                "keyward: unsupported database URL '%.*s%s': use sqlite:PATH or "
                "postgres://...\n",
                n > 32 ? 32 : n, g.db_url, sep ? "://…" : "");
        return EXIT_USAGE;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? EXIT_USAGE : EXIT_DONE;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("keyward %s\n", kw_version());
        return EXIT_DONE;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const kwc_command *c = &commands[i];
        int shift;
        if (strcmp(argv[1], c->noun) != 0)
            continue;
        if (c->verb != NULL && (argc < 3 || strcmp(argv[2], c->verb) != 0))
            continue;
        shift = c->verb ? 2 : 1;
        snprintf(name, sizeof(name), "keyward %s%s%s", c->noun, c->verb ? " " : "",
                 c->verb ? c->verb : "");
        g.name = name;
        /* A PostgreSQL database has no file to put a pepper beside. */
        if (g.pepper_file == NULL && !kwc_is_postgres(g.db_url))
            g.pepper_file = g.pepper_default = kw_pepper_default_path(g.db_url);
        if (g.pepper_file == NULL && !kwc_is_postgres(g.db_url)) {
            fprintf(stderr, "keyward: out of memory\n");
            return EXIT_INTERNAL;
        }
        /* Every command may hold a secret (locked memory), database or not. */
        if (kw_init() != KW_OK) {
            fprintf(stderr, "keyward: the crypto library cannot be initialised\n");
            free(g.pepper_default);
            return EXIT_INTERNAL;
        }
        /* The command's last word becomes its argv[0]. */
        argv[shift] = name;
        ret = c->main(&g, argc - shift, argv + shift);
        free(g.pepper_default);
        return ret;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].noun) == 0) {
            int want_help =
                argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
            if (!want_help && argc < 3)
                fprintf(stderr, "keyward: '%s' needs a verb\n", argv[1]);
            else if (!want_help)
                fprintf(stderr, "keyward: '%s' has no verb %s\n", argv[1],
                        kwc_shown(shown, argv[2]));
            usage(want_help ? stdout : stderr, argv[1]);
            return want_help ? EXIT_DONE : EXIT_USAGE;
        }
    fprintf(stderr, "keyward: unknown command %s\nTry 'keyward --help'.\n",
            kwc_shown(shown, argv[1]));
    return EXIT_USAGE;
}
