/* keyward serve: the HTTP API (server/). */
#include "cli.h"

#include "../server/server.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    OPT_LISTEN = 256,
    OPT_THREADS,
    OPT_TRUSTED,
    OPT_INDEX_MAX,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_DB_GRACE,
    OPT_HELP = 'h'
};

static const char serve_help[] =
    "usage: keyward serve [--listen ADDR:PORT] [--threads N] [--trusted CIDR]...\n"
    "                     [--tls-cert PEM --tls-key PEM] [--index-max N]\n"
    "                     [--db-grace SECONDS]\n\n"
    "Serves the HTTP API (docs/http-api.md) until SIGTERM or SIGINT, then stops\n"
    "accepting, lets requests in flight finish and exits.\n"
    "  --listen ADDR:PORT  default 127.0.0.1:8700 (env KEYWARD_LISTEN); port 0 picks one\n"
    "  --threads N         event loops, default the number of cores\n"
    "  --trusted CIDR      who may call GET /v1/auth (repeatable);\n"
    "                      default 127.0.0.0/8 and ::1\n"
    "  --tls-cert PEM      serve HTTPS (TLS 1.2+, HTTP/2 by ALPN) with this chain\n"
    "  --tls-key PEM       and this private key (mode 0600)\n"
    "  --index-max N       most keys held in memory (default 10000000); a larger\n"
    "                      store is refused at start (docs/internals/index.md)\n"
    "  --db-grace SECONDS  how long to go on verifying from memory when the\n"
    "                      database cannot be reached (then 503 until it can);\n"
    "                      default 60 on PostgreSQL, 0 (no bound) on SQLite\n";

int serve_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"trusted", required_argument, NULL, OPT_TRUSTED},
        {"index-max", required_argument, NULL, OPT_INDEX_MAX},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"db-grace", required_argument, NULL, OPT_DB_GRACE},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kws_config cfg;
    kw_secret *pepper = NULL, *seed_signing = NULL, *seed_master = NULL, *master_key = NULL;
    char *file = NULL; /* the secrets' master key file */
    kw_ctx *probe = NULL;
    uint64_t n;
    int c, ret;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = getenv("KEYWARD_LISTEN") && getenv("KEYWARD_LISTEN")[0] ? getenv("KEYWARD_LISTEN")
                                                                         : "127.0.0.1:8700";
    cfg.threads = cores > 0 ? (int)cores : 1;
    cfg.index_max = 10000000;
    cfg.sync_ms = 100;
    /* Several nodes: one cut off from the database misses revocations made
     * elsewhere; after this long it stops answering (SPEC, scale-out). */
    cfg.db_grace_ms = kwc_is_postgres(g->db_url) ? 60000 : 0;
    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_LISTEN: cfg.listen = optarg; break;
        case OPT_THREADS:
            if (kwc_parse_u64(optarg, 64, &n) != 0 || n == 0)
                return kwc_usage(g, "--threads takes 1 to 64, not '%s'", optarg);
            cfg.threads = (int)n;
            break;
        case OPT_TRUSTED:
            if (cfg.ntrusted == KWS_TRUSTED_MAX ||
                kws_cidr_parse(optarg, &cfg.trusted[cfg.ntrusted]) != 0)
                return kwc_usage(g, "--trusted takes an address or CIDR (at most %d), not '%s'",
                                 KWS_TRUSTED_MAX, optarg);
            cfg.ntrusted++;
            break;
        case OPT_INDEX_MAX:
            if (kwc_parse_u64(optarg, 1000000000, &n) != 0 || n == 0)
                return kwc_usage(g, "--index-max takes 1 to 10^9, not '%s'", optarg);
            cfg.index_max = (size_t)n;
            break;
        case OPT_DB_GRACE:
            if (kwc_parse_u64(optarg, 86400, &n) != 0)
                return kwc_usage(g, "--db-grace takes 0 to 86400 seconds, not '%s'", optarg);
            cfg.db_grace_ms = (int64_t)n * 1000;
            break;
        case OPT_TLS_CERT: cfg.tls_cert = optarg; break;
        case OPT_TLS_KEY: cfg.tls_key = optarg; break;
        case OPT_HELP: fputs(serve_help, stdout); return EXIT_DONE;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((cfg.tls_cert == NULL) != (cfg.tls_key == NULL))
        return kwc_usage(g, "--tls-cert and --tls-key go together");
    if (cfg.ntrusted == 0) {
        if (kws_cidr_parse("127.0.0.0/8", &cfg.trusted[0]) != 0 ||
            kws_cidr_parse("::1", &cfg.trusted[1]) != 0)
            return EXIT_INTERNAL;
        cfg.ntrusted = 2;
    }
    /* Open once here, for the usual configuration errors and messages. */
    if ((ret = kwc_open(g, &probe)) != 0)
        return ret;
    kw_close(probe);
    if (kw_pepper_load(&pepper, g->pepper_file) != KW_OK)
        return kwc_fail(g, KW_ERR_PEPPER, NULL);
    cfg.db_url = g->db_url;
    cfg.pepper = pepper;
    if (kwc_seed_env(&seed_signing, &seed_master) != KW_OK) {
        kw_secret_free(pepper);
        return kwc_fail(g, KW_ERR_NOMEM, NULL);
    }
    cfg.seed_signing = seed_signing;
    cfg.seed_master = seed_master;
    {
        /* the secrets' master key: optional (without it /v1/secrets answers
         * 503), but one that is given and wrong stops the start */
        char why[200] = "";
        const char *env = getenv("KEYWARD_MASTER_KEY"), *cmd = getenv("KEYWARD_MASTER_KEY_CMD");
        int given;
        kw_rc mrc;

        if (kwc_master_key_path(g, &file) != 0) {
            kw_secret_free(seed_signing);
            kw_secret_free(seed_master);
            kw_secret_free(pepper);
            return kwc_fail(g, KW_ERR_NOMEM, NULL);
        }
        given = (env && env[0]) || (cmd && cmd[0]) || (file && access(file, F_OK) == 0);
        mrc = given ? kw_master_key_load(&master_key, file, why, sizeof(why)) : KW_OK;
        if (mrc != KW_OK) {
            free(file);
            kw_secret_free(seed_signing);
            kw_secret_free(seed_master);
            kw_secret_free(pepper);
            return kwc_fail(g, mrc, why);
        }
        if (!given)
            fprintf(stderr, "%s: no master key: /v1/secrets answers 503 (see docs/secrets.md)\n",
                    g->name);
        cfg.master_key = master_key;
        cfg.master_key_file = file;
    }
    ret = kws_run(&cfg);
    kw_secret_free(master_key);
    free(file);
    kw_secret_free(seed_signing);
    kw_secret_free(seed_master);
    kw_secret_free(pepper);
    return ret;
}
