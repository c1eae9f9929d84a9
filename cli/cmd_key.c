/* keyward key create|list|show|update|rotate|revoke|verify */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    OPT_JSON = 256,
    OPT_OWNER,
    OPT_NAME,
    OPT_SCOPE,
    OPT_NO_SCOPES,
    OPT_EXPIRES,
    OPT_NOT_BEFORE,
    OPT_CREDITS,
    OPT_RATE,
    OPT_PREFIX,
    OPT_META,
    OPT_META_JSON,
    OPT_ENABLE,
    OPT_DISABLE,
    OPT_GRACE,
    OPT_LIMIT,
    OPT_CURSOR,
    OPT_ALL,
    OPT_COST,
    OPT_KEY_ENV,
    OPT_AUDIENCE,
    OPT_CLIENT,
    OPT_HELP = 'h',
};

static const char create_help[] =
    "usage: keyward key create [--owner O] [--name N] [--scope S]... [--expires D|TIME]\n"
    "                          [--not-before D|TIME] [--credits N] [--rate N/D]\n"
    "                          [--prefix P] [--meta K=V]... [--json]\n\n"
    "Creates a key and prints it once, then its record. Only a keyed hash of\n"
    "the key is stored: it cannot be shown again.\n\n"
    "  --owner O        who the key belongs to (customer, service)\n"
    "  --name N         a label\n"
    "  --scope S        a granted scope, repeatable: resource:action, prefix:*, or *\n"
    "  --expires D|T    expiry: a duration from now (30s, 15m, 24h, 90d) or RFC 3339 time\n"
    "  --not-before D|T not valid before this time\n"
    "  --credits N      usage credits; each valid verification spends its cost\n"
    "  --rate N/D       rate limit: N verifications per window D (e.g. 100/60s)\n"
    "  --prefix P       key prefix (default kw_live; 1-20 of [a-z0-9_])\n"
    "  --meta K=V       metadata, repeatable\n"
    "  --json           print one JSON object: the record plus \"key\"\n";

static const char list_help[] =
    "usage: keyward key list [--owner O] [--prefix P] [--limit N] [--cursor ID] [--all] "
    "[--json]\n\n"
    "Lists key records in id order, a page at a time (default 100, at most 1000).\n"
    "  --all     follow the cursor to the end\n"
    "  --json    {\"keys\": [...], \"next_cursor\": ID or null}\n";

static const char show_help[] = "usage: keyward key show ID [--json]\n\n"
                                "Shows one key's record (never the key).\n";

static const char update_help[] =
    "usage: keyward key update ID [--name N] [--owner O] [--scope S]... [--no-scopes]\n"
    "                          [--meta K=V]... [--meta-json OBJ] [--expires D|TIME|never]\n"
    "                          [--not-before D|TIME|none] [--enable|--disable]\n"
    "                          [--credits N|unlimited] [--rate N/D|none] [--json]\n\n"
    "Changes the named settings; the rest stay. --scope replaces the whole set;\n"
    "--meta merges into the stored metadata; --meta-json replaces it.\n";

static const char rotate_help[] =
    "usage: keyward key rotate ID [--grace D] [--json]\n\n"
    "Creates a new key with the same settings and prints it once. The old key\n"
    "keeps working for the grace period (default 24h; 0s ends it now), drawing\n"
    "on the new key's credits.\n";

static const char revoke_help[] = "usage: keyward key revoke ID [--json]\n\n"
                                  "Revokes a key at once. The record stays, for the audit.\n";

static const char verify_help[] =
    "usage: keyward key verify [--scope S]... [--cost N] [--key-env VAR] [--audience A]\n"
    "                          [--client-address IP] [--json]\n\n"
    "Reads a key from stdin (or from the environment variable VAR) and prints the\n"
    "result code: VALID, MALFORMED, NOT_FOUND, REVOKED, DISABLED, EXPIRED,\n"
    "NOT_YET_VALID, INSUFFICIENT_SCOPE, RATE_LIMITED or USAGE_EXCEEDED.\n"
    "A VALID verification spends COST credits (default 1) and counts toward the\n"
    "rate limit. Exit status 0 only for VALID, 1 otherwise.\n"
    "  --scope S     a required scope, repeatable\n"
    "  --audience A, --client-address IP\n"
    "                what a stateless key's audience and address caveats are\n"
    "                checked against (docs/tokens.md)\n";

static int help(const char *text)
{
    fputs(text, stdout);
    return EXIT_DONE;
}

/* ---- create ------------------------------------------------------------- */

/* Settings shared by create and update; `set` collects KW_CHANGE_* bits. */
typedef struct settings {
    kw_key_params p;
    kwc_strv scopes;
    kwc_strv meta;
    const char *meta_json;
    unsigned set;
    int enabled;
    int json;
} settings;

/* Parse one settings option; returns 0, or an exit status on error. */
static int settings_opt(const kwc_global *g, settings *s, int c, const char *arg, int update)
{
    uint64_t n;

    switch (c) {
    case OPT_OWNER:
        s->p.owner = arg;
        s->set |= KW_CHANGE_OWNER;
        return 0;
    case OPT_NAME:
        s->p.name = arg;
        s->set |= KW_CHANGE_NAME;
        return 0;
    case OPT_SCOPE:
        s->set |= KW_CHANGE_SCOPES;
        return kwc_strv_push(&s->scopes, arg) ? EXIT_INTERNAL : 0;
    case OPT_NO_SCOPES: s->set |= KW_CHANGE_SCOPES; return 0;
    case OPT_META:
        s->set |= KW_CHANGE_META;
        return kwc_strv_push(&s->meta, arg) ? EXIT_INTERNAL : 0;
    case OPT_META_JSON:
        s->set |= KW_CHANGE_META;
        s->meta_json = arg;
        return 0;
    case OPT_EXPIRES:
        s->set |= KW_CHANGE_EXPIRES;
        if (update && strcmp(arg, "never") == 0)
            s->p.expires_at = 0;
        else if (kwc_parse_when(arg, &s->p.expires_at) != 0)
            return kwc_usage(g,
                             "--expires takes a duration (30s, 15m, 24h, 90d) or an "
                             "RFC 3339 time%s, not '%s'",
                             update ? " or never" : "", arg);
        return 0;
    case OPT_NOT_BEFORE:
        s->set |= KW_CHANGE_NOT_BEFORE;
        if (update && strcmp(arg, "none") == 0)
            s->p.not_before = 0;
        else if (kwc_parse_when(arg, &s->p.not_before) != 0)
            return kwc_usage(g, "--not-before takes a duration or an RFC 3339 time, not '%s'", arg);
        return 0;
    case OPT_CREDITS:
        s->set |= KW_CHANGE_CREDITS;
        if (update && strcmp(arg, "unlimited") == 0)
            s->p.credits = KW_CREDITS_UNLIMITED;
        else if (kwc_parse_u64(arg, 1ULL << 53, &n) == 0)
            s->p.credits = (int64_t)n;
        else
            return kwc_usage(g, "--credits takes a whole number from 0 to 2^53%s, not '%s'",
                             update ? " or unlimited" : "", arg);
        return 0;
    case OPT_RATE:
        s->set |= KW_CHANGE_RATE;
        if (update && strcmp(arg, "none") == 0)
            s->p.rate_limit = s->p.rate_window_ms = 0;
        else if (kwc_parse_rate(arg, &s->p.rate_limit, &s->p.rate_window_ms) != 0)
            return kwc_usage(g,
                             "--rate takes N/D: 1 to 10^9 per window of 1s to 30d "
                             "(e.g. 100/60s)%s, not '%s'",
                             update ? ", or none" : "", arg);
        return 0;
    case OPT_ENABLE:
    case OPT_DISABLE:
        s->set |= KW_CHANGE_ENABLED;
        s->enabled = c == OPT_ENABLE;
        return 0;
    case OPT_JSON: s->json = 1; return 0;
    default: return EXIT_USAGE;
    }
}

/* Resolve --meta/--meta-json into s->p.meta (malloc'd into *owned). */
static int settings_meta(const kwc_global *g, settings *s, const char *base, char **owned)
{
    const char *err = NULL;

    *owned = NULL;
    if (!(s->set & KW_CHANGE_META))
        return 0;
    if (s->meta_json != NULL && s->meta.n > 0)
        return kwc_usage(g, "--meta and --meta-json cannot be combined");
    if (s->meta_json != NULL) {
        s->p.meta = s->meta_json;
        return 0;
    }
    *owned = kwc_meta_merge(base, &s->meta, &err);
    if (*owned == NULL)
        return kwc_usage(g, "%s", err);
    s->p.meta = *owned;
    return 0;
}

int key_create_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"owner", required_argument, NULL, OPT_OWNER},
        {"name", required_argument, NULL, OPT_NAME},
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {"credits", required_argument, NULL, OPT_CREDITS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"meta", required_argument, NULL, OPT_META},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    settings s = {0};
    kw_key_record rec = {0};
    kw_secret *key = NULL;
    kw_ctx *ctx = NULL;
    char *meta = NULL;
    int ret = EXIT_USAGE, c;
    kw_rc rc;

    kw_key_params_init(&s.p);
    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == '?')
            goto out;
        if (c == OPT_HELP) {
            ret = help(create_help);
            goto out;
        }
        if (c == OPT_PREFIX) {
            s.p.prefix = optarg;
            continue;
        }
        if ((ret = settings_opt(g, &s, c, optarg, 0)) != 0)
            goto out;
    }
    ret = EXIT_USAGE;
    if (optind < argc) {
        kwc_unexpected(g, argv[optind], "a key is never passed on the command line");
        goto out;
    }
    if ((ret = settings_meta(g, &s, NULL, &meta)) != 0)
        goto out;
    s.p.scopes = s.scopes.v;
    s.p.nscopes = s.scopes.n;
    if ((ret = kwc_open(g, &ctx)) != 0)
        goto out;
    rc = kw_key_create(ctx, &s.p, kwc_actor(), &key, &rec);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        goto out;
    }
    ret = kwc_print_new_key(key, &rec, s.json) == 0 ? EXIT_DONE : EXIT_STORAGE;
out:
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(ctx);
    free(meta);
    kwc_strv_free(&s.scopes);
    kwc_strv_free(&s.meta);
    return ret;
}

/* ---- list / show -------------------------------------------------------- */

static void print_table_header(void)
{
    printf("%-12s  %-10s  %-16s  %-16s  %-8s  %-20s  %s\n", "ID", "PREFIX", "OWNER", "NAME",
           "STATUS", "EXPIRES", "SCOPES");
}

static void print_table_row(const kw_key_record *r)
{
    char exp[32];
    const char *status = kw_key_status(r, kw_now());

    kwc_time_cell(exp, r->expires_at);
    printf("%-12s  %-10.10s  %-16.16s  %-16.16s  %-8s  %-20s  ", r->id,
           r->prefix[0] ? r->prefix : "-", r->owner[0] ? r->owner : "-", r->name[0] ? r->name : "-",
           status, exp);
    for (size_t i = 0; i < r->nscopes; i++)
        printf("%s%s", i ? "," : "", r->scopes[i]);
    printf("%s\n", r->nscopes ? "" : "-");
}

int key_list_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"owner", required_argument, NULL, OPT_OWNER},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"cursor", required_argument, NULL, OPT_CURSOR},
        {"all", no_argument, NULL, OPT_ALL},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_key_filter f = {0};
    char next[KW_ID_LEN + 1] = "", cursor[KW_ID_LEN + 1] = "";
    int json = 0, all = 0, c, first = 1, first_page = 1, ret = EXIT_USAGE;
    kw_ctx *ctx = NULL;
    uint64_t n;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_OWNER: f.owner = optarg; break;
        case OPT_PREFIX: f.prefix = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_ALL: all = 1; break;
        case OPT_HELP: return help(list_help);
        case OPT_LIMIT:
            if (kwc_parse_u64(optarg, KW_LIST_MAX, &n) != 0 || n == 0)
                return kwc_usage(g, "--limit takes 1 to %d, not '%s'", KW_LIST_MAX, optarg);
            f.limit = (size_t)n;
            break;
        case OPT_CURSOR:
            if (!kw_key_id_valid(optarg))
                return kwc_usage(g, "--cursor takes a key id, not '%s'", optarg);
            snprintf(cursor, sizeof(cursor), "%s", optarg);
            break;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], NULL);
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    do {
        kw_key_record *recs;
        size_t count;
        kw_rc rc;

        f.after = cursor[0] ? cursor : NULL;
        rc = kw_key_list(ctx, &f, &recs, &count, next);
        if (rc != KW_OK) {
            if (json && !first_page)
                printf("]}\n");
            ret = kwc_fail(g, rc, kw_errmsg(ctx));
            goto out;
        }
        if (first_page && json)
            printf("{\"keys\":[");
        else if (first_page)
            print_table_header();
        first_page = 0;
        for (size_t i = 0; i < count; i++) {
            if (json) {
                char *j = kw_key_record_json(&recs[i]);
                printf("%s%s", first ? "" : ",", j ? j : "null");
                free(j);
            } else {
                print_table_row(&recs[i]);
            }
            first = 0;
        }
        kw_key_records_free(recs, count);
        snprintf(cursor, sizeof(cursor), "%s", next);
    } while (all && next[0] != '\0');
    if (json) {
        if (next[0])
            printf("],\"next_cursor\":\"%s\"}\n", next);
        else
            printf("],\"next_cursor\":null}\n");
    } else if (next[0]) {
        fprintf(stderr, "keyward: more keys: --cursor %s (or --all)\n", next);
    }
    ret = EXIT_DONE;
out:
    kw_close(ctx);
    return ret;
}

/* Parse "ID [--json]" for show and revoke. Returns -1 to continue, else an exit status. */
static int id_and_json(const kwc_global *g, int argc, char **argv, const char *helptext,
                       const char **id, int *json)
{
    char shown[KWC_SHOWN_MAX];
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    int c;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_JSON)
            *json = 1;
        else if (c == OPT_HELP)
            return help(helptext);
        else
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return kwc_usage(g, "missing key id");
    if (optind + 1 < argc)
        return kwc_unexpected(g, argv[optind + 1], NULL);
    *id = argv[optind];
    if (!kw_key_id_valid(*id))
        return kwc_usage(g, "%s is not a key id (12 base62 chars)", kwc_shown(shown, *id));
    return -1;
}

static void print_rec(const kw_key_record *r, int json)
{
    if (json)
        kwc_print_record_json(r);
    else
        kwc_print_record(r);
}

int key_show_main(kwc_global *g, int argc, char **argv)
{
    kw_key_record rec = {0};
    const char *id = NULL;
    kw_ctx *ctx = NULL;
    int json = 0, ret;
    kw_rc rc;

    if ((ret = id_and_json(g, argc, argv, show_help, &id, &json)) >= 0)
        return ret;
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_key_get(ctx, id, &rec);
    if (rc == KW_OK)
        print_rec(&rec, json);
    else
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
    kw_key_record_clear(&rec);
    kw_close(ctx);
    return ret;
}

int key_revoke_main(kwc_global *g, int argc, char **argv)
{
    kw_key_record rec = {0};
    const char *id = NULL;
    kw_ctx *ctx = NULL;
    int json = 0, ret;
    kw_rc rc;

    if ((ret = id_and_json(g, argc, argv, revoke_help, &id, &json)) >= 0)
        return ret;
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_key_revoke(ctx, id, kwc_actor(), &rec);
    if (rc == KW_OK) {
        if (json)
            kwc_print_record_json(&rec);
        else
            printf("revoked %s\n", rec.id);
    } else {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
    }
    kw_key_record_clear(&rec);
    kw_close(ctx);
    return ret;
}

/* ---- update / rotate ---------------------------------------------------- */

int key_update_main(kwc_global *g, int argc, char **argv)
{
    char shown[KWC_SHOWN_MAX];
    static const struct option opts[] = {
        {"owner", required_argument, NULL, OPT_OWNER},
        {"name", required_argument, NULL, OPT_NAME},
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"no-scopes", no_argument, NULL, OPT_NO_SCOPES},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {"credits", required_argument, NULL, OPT_CREDITS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"meta", required_argument, NULL, OPT_META},
        {"meta-json", required_argument, NULL, OPT_META_JSON},
        {"enable", no_argument, NULL, OPT_ENABLE},
        {"disable", no_argument, NULL, OPT_DISABLE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    settings s = {0};
    kw_key_change change;
    kw_key_record cur = {0}, rec = {0};
    kw_ctx *ctx = NULL;
    char *meta = NULL;
    const char *id;
    int ret = EXIT_USAGE, c, enable_seen = 0, disable_seen = 0;
    kw_rc rc;

    kw_key_params_init(&s.p);
    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == '?')
            goto out;
        if (c == OPT_HELP) {
            ret = help(update_help);
            goto out;
        }
        enable_seen |= c == OPT_ENABLE;
        disable_seen |= c == OPT_DISABLE;
        if ((ret = settings_opt(g, &s, c, optarg, 1)) != 0)
            goto out;
    }
    ret = EXIT_USAGE;
    if (optind >= argc) {
        kwc_usage(g, "missing key id");
        goto out;
    }
    id = argv[optind];
    if (optind + 1 < argc) {
        kwc_unexpected(g, argv[optind + 1], NULL);
        goto out;
    }
    if (!kw_key_id_valid(id)) {
        kwc_usage(g, "%s is not a key id (12 base62 chars)", kwc_shown(shown, id));
        goto out;
    }
    if (enable_seen && disable_seen) {
        kwc_usage(g, "--enable and --disable cannot be combined");
        goto out;
    }
    if (s.set == 0) {
        kwc_usage(g, "nothing to change: name at least one setting");
        goto out;
    }
    if ((ret = kwc_open(g, &ctx)) != 0)
        goto out;
    if (s.meta.n > 0) { /* --meta merges into what is stored */
        rc = kw_key_get(ctx, id, &cur);
        if (rc != KW_OK) {
            ret = kwc_fail(g, rc, kw_errmsg(ctx));
            goto out;
        }
    }
    if ((ret = settings_meta(g, &s, cur.meta, &meta)) != 0)
        goto out;
    s.p.scopes = s.scopes.v;
    s.p.nscopes = s.scopes.n;
    change.fields = s.set;
    change.p = s.p;
    change.enabled = s.enabled;
    rc = kw_key_update(ctx, id, &change, kwc_actor(), &rec);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        goto out;
    }
    print_rec(&rec, s.json);
    ret = EXIT_DONE;
out:
    kw_key_record_clear(&cur);
    kw_key_record_clear(&rec);
    kw_close(ctx);
    free(meta);
    kwc_strv_free(&s.scopes);
    kwc_strv_free(&s.meta);
    return ret;
}

int key_rotate_main(kwc_global *g, int argc, char **argv)
{
    char shown[KWC_SHOWN_MAX];
    static const struct option opts[] = {
        {"grace", required_argument, NULL, OPT_GRACE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    int64_t grace = 86400;
    kw_key_record rec = {0};
    kw_secret *key = NULL;
    kw_ctx *ctx = NULL;
    int json = 0, c, ret;
    const char *id;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_JSON)
            json = 1;
        else if (c == OPT_HELP)
            return help(rotate_help);
        else if (c == OPT_GRACE && kw_duration_parse(optarg, &grace) != 0)
            return kwc_usage(g, "--grace takes a duration (0s, 15m, 24h, 7d), not '%s'", optarg);
        else if (c != OPT_GRACE)
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return kwc_usage(g, "missing key id");
    if (optind + 1 < argc)
        return kwc_unexpected(g, argv[optind + 1], NULL);
    id = argv[optind];
    if (!kw_key_id_valid(id))
        return kwc_usage(g, "%s is not a key id (12 base62 chars)", kwc_shown(shown, id));
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_key_rotate(ctx, id, grace, kwc_actor(), &key, &rec);
    if (rc == KW_OK)
        ret = kwc_print_new_key(key, &rec, json) == 0 ? EXIT_DONE : EXIT_STORAGE;
    else
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
    kw_key_record_clear(&rec);
    kw_secret_free(key);
    kw_close(ctx);
    return ret;
}

/* ---- verify ------------------------------------------------------------- */

static void print_verdict_json(const kw_verify_result *r)
{
    char *txt = kw_verify_result_json(r);

    if (txt != NULL)
        printf("%s\n", txt);
    free(txt);
}

int key_verify_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"cost", required_argument, NULL, OPT_COST},
        {"key-env", required_argument, NULL, OPT_KEY_ENV},
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"client-address", required_argument, NULL, OPT_CLIENT},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kwc_strv scopes = {0};
    kw_verify_request req = {.cost = 1};
    kw_verify_result res = {0};
    const char *env_name = NULL;
    kw_secret *key = NULL;
    kw_ctx *ctx = NULL;
    int json = 0, c, ret = EXIT_USAGE;
    uint64_t n;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_SCOPE:
            if (!kw_scope_required_valid(optarg)) {
                kwc_usage(g,
                          "'%s' is not a scope that can be required "
                          "(resource:action, no wildcards)",
                          optarg);
                goto out;
            }
            if (kwc_strv_push(&scopes, optarg) != 0)
                goto out;
            break;
        case OPT_COST:
            if (kwc_parse_u64(optarg, 1000000, &n) != 0 || n == 0) {
                kwc_usage(g, "--cost takes 1 to 1000000, not '%s'", optarg);
                goto out;
            }
            req.cost = (uint32_t)n;
            break;
        case OPT_KEY_ENV: env_name = optarg; break;
        case OPT_AUDIENCE: req.audience = optarg; break;
        case OPT_CLIENT: req.client_addr = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: ret = help(verify_help); goto out;
        default: goto out;
        }
    }
    if (optind < argc) {
        kwc_usage(g, "unexpected argument: the key is read from stdin or --key-env, "
                     "never from the command line");
        goto out;
    }
    if ((ret = kwc_open(g, &ctx)) != 0)
        goto out;
    if ((ret = kwc_read_secret(g, env_name, "key", &key)) != 0)
        goto out;
    req.scopes = scopes.v;
    req.nscopes = scopes.n;
    rc = kw_verify(ctx, (const char *)kw_secret_cdata(key), kw_secret_len(key), &req, &res);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        goto out;
    }
    if (json)
        print_verdict_json(&res);
    else
        printf("%s\n", kw_verdict_name(res.code));
    ret = res.code == KW_VALID ? EXIT_DONE : EXIT_REFUSED;
out:
    kw_verify_result_clear(&res);
    kw_secret_free(key);
    kw_close(ctx);
    kwc_strv_free(&scopes);
    return ret;
}
