/* keyward import seed --from PATH */
#include "cli.h"

#include <string.h>

enum { OPT_JSON = 256, OPT_FROM, OPT_DRY_RUN, OPT_HELP = 'h' };

static const char seed_help[] =
    "usage: keyward import seed --from PATH [--dry-run] [--json]\n\n"
    "Imports the seed system's api_keys table (SQLAlchemy model: key_hash is the\n"
    "hex SHA-256 of the key) from the SQLite file PATH. Imported keys verify with\n"
    "their owner (user_id), scopes (permissions), expiry and active state; on\n"
    "their first successful verification they are re-hashed with the pepper.\n"
    "All rows or none: a bad row stops the import and is named. Rows imported\n"
    "before are skipped. --dry-run checks and counts without importing.\n";

int import_seed_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *from = NULL;
    kw_import_report rep;
    kw_ctx *ctx = NULL;
    int json = 0, dry = 0, c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_FROM: from = optarg; break;
        case OPT_DRY_RUN: dry = 1; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: fputs(seed_help, stdout); return EXIT_DONE;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if (from == NULL)
        return kwc_usage(g, "--from PATH is required");
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_import_seed(ctx, from, dry, kwc_actor(), &rep);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        if (ret == EXIT_USAGE) /* a bad row is bad data, not a bad command line */
            ret = EXIT_REFUSED;
        fprintf(stderr, "%s: nothing was imported\n", g->name);
        goto out;
    }
    if (json)
        printf("{\"rows\":%zu,\"imported\":%zu,\"skipped\":%zu,\"dry_run\":%s}\n", rep.rows,
               rep.imported, rep.skipped, dry ? "true" : "false");
    else
        printf("%s %zu of %zu rows (%zu imported before, skipped)\n",
               dry ? "would import" : "imported", rep.imported, rep.rows, rep.skipped);
    ret = EXIT_DONE;
out:
    kw_close(ctx);
    return ret;
}
