/* keyward audit list|verify */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_JSON = 256, OPT_ACTION, OPT_TARGET, OPT_LIMIT, OPT_CURSOR, OPT_ALL, OPT_HELP = 'h' };

static const char list_help[] =
    "usage: keyward audit list [--action A] [--target ID] [--limit N] [--cursor SEQ] [--all]\n"
    "                          [--json]\n\n"
    "Lists audit records, oldest first (default 100 a page, at most 1000).\n"
    "Actions: key.create key.update key.enable key.disable key.rotate key.revoke\n"
    "key.import key.rehash.\n";

static const char verify_help[] =
    "usage: keyward audit verify [--json]\n\n"
    "Recomputes the HMAC chain over every audit record and checks the head.\n"
    "Exit 0 if intact; 1, naming the first bad record, if any record was edited,\n"
    "deleted, inserted or reordered, or the tail was cut off.\n";

int audit_list_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"action", required_argument, NULL, OPT_ACTION},
        {"target", required_argument, NULL, OPT_TARGET},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"cursor", required_argument, NULL, OPT_CURSOR},
        {"all", no_argument, NULL, OPT_ALL},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_audit_filter f = {0};
    int json = 0, all = 0, c, first = 1, ret;
    int64_t next = 0;
    kw_ctx *ctx = NULL;
    uint64_t n;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_ACTION: f.action = optarg; break;
        case OPT_TARGET: f.target = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_ALL: all = 1; break;
        case OPT_HELP: fputs(list_help, stdout); return EXIT_DONE;
        case OPT_LIMIT:
            if (kwc_parse_u64(optarg, 1000, &n) != 0 || n == 0)
                return kwc_usage(g, "--limit takes 1 to 1000, not '%s'", optarg);
            f.limit = (size_t)n;
            break;
        case OPT_CURSOR:
            if (kwc_parse_u64(optarg, INT64_MAX, &n) != 0)
                return kwc_usage(g, "--cursor takes a record number, not '%s'", optarg);
            f.after = (int64_t)n;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    if (json)
        printf("{\"records\":[");
    else
        printf("%-6s  %-20s  %-12s  %-12s  %-14s  %-6s  %s\n", "SEQ", "AT", "ACTION", "TARGET",
               "ACTOR", "RESULT", "CLIENT");
    do {
        kw_audit_record *recs;
        size_t count;
        kw_rc rc = kw_audit_list(ctx, &f, &recs, &count, &next);

        if (rc != KW_OK) {
            if (json)
                printf("]}\n");
            ret = kwc_fail(g, rc, kw_errmsg(ctx));
            goto out;
        }
        for (size_t i = 0; i < count; i++) {
            if (json) {
                char *j = kw_audit_record_json(&recs[i]);
                printf("%s%s", first ? "" : ",", j ? j : "null");
                free(j);
            } else {
                char at[32];
                kw_time_format(at, recs[i].at);
                printf("%-6lld  %-20s  %-12s  %-12s  %-14s  %-6s  %s\n", (long long)recs[i].seq, at,
                       recs[i].action, recs[i].target, recs[i].actor, recs[i].result,
                       recs[i].client);
            }
            first = 0;
        }
        kw_audit_records_free(recs, count);
        f.after = next;
    } while (all && next != 0);
    if (json) {
        if (next)
            printf("],\"next_cursor\":%lld}\n", (long long)next);
        else
            printf("],\"next_cursor\":null}\n");
    } else if (next) {
        fprintf(stderr, "keyward: more records: --cursor %lld (or --all)\n", (long long)next);
    }
    ret = EXIT_DONE;
out:
    kw_close(ctx);
    return ret;
}

int audit_verify_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_audit_report rep;
    char head[65];
    kw_ctx *ctx = NULL;
    int json = 0, c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_JSON)
            json = 1;
        else if (c == OPT_HELP)
            return fputs(verify_help, stdout), EXIT_DONE;
        else
            return EXIT_USAGE;
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_audit_verify(ctx, &rep);
    if (rc != KW_OK && rc != KW_ERR_TAMPERED) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        goto out;
    }
    sodium_bin2hex(head, sizeof(head), rep.head_mac, sizeof(rep.head_mac));
    if (json && rc == KW_OK)
        printf("{\"intact\":true,\"records\":%lld,\"head_mac\":\"%s\"}\n", (long long)rep.checked,
               head);
    else if (json)
        printf("{\"intact\":false,\"records\":%lld,\"bad_seq\":%lld,\"reason\":\"%s\"}\n",
               (long long)rep.checked, (long long)rep.bad_seq, rep.reason);
    else if (rc == KW_OK)
        printf("audit chain intact: %lld records, head %s\n", (long long)rep.checked, head);
    else
        printf("audit chain BROKEN at record %lld: %s (%lld records before it are intact)\n",
               (long long)rep.bad_seq, rep.reason, (long long)rep.checked);
    ret = rc == KW_OK ? EXIT_DONE : EXIT_REFUSED;
out:
    kw_close(ctx);
    return ret;
}
