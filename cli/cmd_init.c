/* keyward init: database, pepper file, first admin key. */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char init_help[] =
    "usage: keyward [--db URL] init [--json]\n\n"
    "Creates the database, a pepper file (mode 0600; unless KEYWARD_PEPPER is set)\n"
    "and the first admin key, with scope *, which is printed once.\n"
    "An existing pepper file is used, never overwritten. An existing keyward\n"
    "database is left alone (exit 1). On PostgreSQL the pepper file is\n"
    "KEYWARD_PEPPER_FILE (or --pepper-file): there is no default.\n";

enum { OPT_JSON = 256, OPT_HELP = 'h' };

static const char *db_path(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
}

/* PostgreSQL: refuse a database that holds keyward's schema already,
 * before any pepper file is made. Opened with a random pepper: an empty
 * database says NO_DATABASE whatever the pepper, an initialised one that
 * the pepper is not its own. */
static int check_fresh_postgres(kwc_global *g)
{
    char err[256] = "", shown[256];
    kw_open_opts oo = {.create = 0, .err = err, .err_len = sizeof(err)};
    kw_secret *probe = NULL;
    kw_ctx *ctx = NULL;
    kw_rc rc = kw_secret_new(&probe, KW_PEPPER_LEN);

    if (rc != KW_OK)
        return kwc_fail(g, rc, NULL);
    randombytes_buf(kw_secret_data(probe), KW_PEPPER_LEN);
    rc = kw_open(&ctx, g->db_url, probe, &oo);
    kw_close(ctx);
    kw_secret_free(probe);
    if (rc == KW_ERR_NO_DATABASE)
        return 0;
    if (rc == KW_OK || rc == KW_ERR_PEPPER_MISMATCH) {
        fprintf(stderr,
                "%s: %s is initialised already; keyward init never changes an existing "
                "database\n",
                g->name, kwc_db_shown(shown, sizeof(shown), g->db_url));
        return EXIT_REFUSED;
    }
    return kwc_fail(g, rc, err);
}

/* Refuse to touch a database that exists: ours (already initialised) or not. */
static int check_fresh(kwc_global *g)
{
    struct stat st;

    if (kwc_is_postgres(g->db_url))
        return check_fresh_postgres(g);
    if (stat(db_path(g->db_url), &st) != 0)
        return 0;
    if (st.st_size == 0)
        return 0;
    fprintf(stderr,
            "%s: %s already exists; keyward init never changes an existing "
            "database (use --db for a new one)\n",
            g->name, db_path(g->db_url));
    return EXIT_REFUSED;
}

/* The pepper: KEYWARD_PEPPER, an existing file, or a new 0600 file. */
static int get_pepper(kwc_global *g, kw_secret **out, int *created)
{
    kw_rc rc;

    *created = 0;
    if (getenv("KEYWARD_PEPPER") != NULL && getenv("KEYWARD_PEPPER")[0] != '\0') {
        rc = kw_pepper_load(out, NULL);
        if (rc != KW_OK)
            return kwc_fail(g, rc, "KEYWARD_PEPPER must be 64 hex characters");
        return 0;
    }
    if (g->pepper_file == NULL) {
        fprintf(stderr,
                "%s: a PostgreSQL database has no default pepper file: set KEYWARD_PEPPER_FILE "
                "(a new 0600 file is made there) or KEYWARD_PEPPER\n",
                g->name);
        return EXIT_CONFIG;
    }
    if (access(g->pepper_file, F_OK) == 0) {
        rc = kw_pepper_load(out, g->pepper_file);
        if (rc != KW_OK) {
            fprintf(stderr, "%s: %s: %s exists but is not a 0600 file of 64 hex characters\n",
                    g->name, kw_strerror(rc), g->pepper_file);
            return kwc_exit_for(rc);
        }
        return 0;
    }
    rc = kw_pepper_create(out, g->pepper_file);
    if (rc != KW_OK) {
        fprintf(stderr, "%s: cannot create the pepper file %s: %s\n", g->name, g->pepper_file,
                kw_strerror(rc));
        return kwc_exit_for(rc);
    }
    *created = 1;
    return 0;
}

int init_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    static const char *const admin_scopes[] = {"*"};
    char err[256] = "";
    kw_open_opts oo = {.create = 1, .err = err, .err_len = sizeof(err)};
    kw_key_params p;
    kw_key_record rec = {0};
    kw_secret *pepper = NULL, *key = NULL;
    kw_ctx *ctx = NULL;
    int json = 0, c, ret, created = 0;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_JSON)
            json = 1;
        else if (c == OPT_HELP)
            return fputs(init_help, stdout), EXIT_DONE;
        else
            return EXIT_USAGE;
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if (kw_init() != KW_OK)
        return kwc_fail(g, KW_ERR_CRYPTO, NULL);
    if ((ret = check_fresh(g)) != 0)
        return ret;
    if ((ret = get_pepper(g, &pepper, &created)) != 0)
        return ret;
    rc = kw_open(&ctx, g->db_url, pepper, &oo);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, err);
        goto out;
    }
    kw_key_params_init(&p);
    p.owner = "admin";
    p.name = "first admin key";
    p.scopes = admin_scopes;
    p.nscopes = 1;
    rc = kw_key_create(ctx, &p, kwc_actor(), &key, &rec);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        goto out;
    }
    if (!json) {
        char shown[256];
        printf("initialised %s\n", kwc_db_shown(shown, sizeof(shown), g->db_url));
        if (created)
            printf("pepper      %s (mode 0600; back it up apart from the database)\n",
                   g->pepper_file);
        else
            printf("pepper      %s\n",
                   getenv("KEYWARD_PEPPER") ? "from KEYWARD_PEPPER" : g->pepper_file);
        printf("first admin key (scope *):\n\n");
    }
    ret = kwc_print_new_key(key, &rec, json) == 0 ? EXIT_DONE : EXIT_STORAGE;
out:
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_secret_free(pepper);
    kw_close(ctx);
    return ret;
}
