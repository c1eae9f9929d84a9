/* keyward token mint|attenuate|inspect|revoke, keyward signing-key
 * rotate|retire|list|public|import (stateless keys: docs/tokens.md) */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KEY_SET_MAX (1 << 20) /* the longest key set `signing-key import` reads */

enum {
    OPT_JSON = 256,
    OPT_OWNER,
    OPT_SCOPE,
    OPT_EXPIRES,
    OPT_NOT_BEFORE,
    OPT_PREFIX,
    OPT_AUDIENCE,
    OPT_ADDRESS,
    OPT_NEW_ID,
    OPT_TOKEN_ENV,
    OPT_VERIFY,
    OPT_CLIENT,
    OPT_KIND,
    OPT_SYNC,
    OPT_HELP = 'h',
};

static const char mint_help[] =
    "usage: keyward token mint --owner O [--scope S]... [--expires D|TIME]\n"
    "                          [--not-before D|TIME] [--prefix P] [--json]\n\n"
    "Mints a stateless key (a token): its claims are inside it, signed by the\n"
    "keyring's active signing key, and it verifies with no storage read. The\n"
    "token is printed once and never stored; its id is audited.\n";

static const char attenuate_help[] =
    "usage: keyward token attenuate [--scope S]... [--expires D|TIME]\n"
    "                               [--not-before D|TIME] [--audience A]\n"
    "                               [--address CIDR] [--new-id] [--token-env VAR]\n"
    "                               [--json]\n\n"
    "Reads a token from stdin (or VAR) and prints a child that is narrower:\n"
    "only the scopes given (each granted by the parent), an earlier expiry,\n"
    "valid only for a verifier stating audience A, or only from a client\n"
    "address in CIDR. --new-id gives the child an id of its own, to revoke it\n"
    "alone. Offline: needs no database and no signing key.\n";

static const char inspect_help[] =
    "usage: keyward token inspect [--verify [--audience A] [--client-address IP]]\n"
    "                             [--token-env VAR] [--json]\n\n"
    "Reads a token from stdin (or VAR) and shows what it claims, without\n"
    "trusting it. With --verify, also verifies it against the database's\n"
    "keyring, as a verifier serving audience A for a client at IP would, and\n"
    "says why it does not verify (exit 1 unless VALID).\n";

static const char revoke_help[] = "usage: keyward token revoke ID\n\n"
                                  "Revokes a token id: that token and every token derived from "
                                  "it verify as REVOKED.\n";

static const char sk_help[] =
    "usage: keyward signing-key rotate [--kind hmac-sha256|ed25519]\n"
    "       keyward signing-key retire KID\n"
    "       keyward signing-key list [--json]\n"
    "       keyward signing-key public\n"
    "       keyward signing-key import [--sync] < KEYS.json\n\n"
    "rotate   a new signing key mints from now on; the old one still verifies.\n"
    "         --kind: HMAC-SHA-256 (the default for a first key; verifying\n"
    "         needs the secret) or Ed25519 (its public key verifies; the\n"
    "         default: the kind of the key it follows)\n"
    "retire   the key KID (8 hex digits) stops verifying: its tokens are refused\n"
    "list     the keyring (never a secret)\n"
    "public   the Ed25519 public keys that verify, as GET /v1/signing-keys\n"
    "         serves them (JSON)\n"
    "import   read such a key set from stdin and verify what its keys signed,\n"
    "         without being able to mint; --sync also retires the imported\n"
    "         keys the set no longer lists\n";

static int help(const char *text)
{
    fputs(text, stdout);
    return EXIT_DONE;
}

/* --expires or --not-before: a duration from now, or an RFC 3339 time. */
static int when_opt(const kwc_global *g, int c, const char *arg, int64_t *t)
{
    if (kwc_parse_when(arg, t) == 0)
        return 0;
    return kwc_usage(g, "%s takes a duration (30s, 15m, 24h, 90d) or an RFC 3339 time, not '%s'",
                     c == OPT_EXPIRES ? "--expires" : "--not-before", arg);
}

static int no_args(const kwc_global *g, int argc, char **argv)
{
    if (optind < argc)
        return kwc_unexpected(g, argv[optind],
                              "a token is never passed on the command line (stdin or "
                              "--token-env)");
    return 0;
}

/* Print a new token once: the text alone, or {"token":..., "id":...}. */
static int print_token(const kw_secret *tok, const char *id, int json)
{
    const char *s = (const char *)kw_secret_cdata(tok);
    size_t n = kw_secret_len(tok);

    if (json)
        fputs("{\"token\":\"", stdout);
    if (fwrite(s, 1, n, stdout) != n)
        return EXIT_STORAGE;
    if (json)
        printf("\",\"id\":\"%s\"}\n", id); /* base62 both: nothing to escape */
    else
        fputc('\n', stdout);
    if (fflush(stdout) != 0)
        return EXIT_STORAGE;
    if (!json)
        fprintf(stderr, "keyward: token %s; shown once and never stored: keep it safe now.\n", id);
    return EXIT_DONE;
}

int token_mint_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"owner", required_argument, NULL, OPT_OWNER},
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_token_params p = {0};
    kwc_strv scopes = {0};
    kw_secret *tok = NULL;
    kw_ctx *ctx = NULL;
    char id[KW_ID_LEN + 1];
    int json = 0, c, ret = EXIT_USAGE;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_OWNER: p.owner = optarg; break;
        case OPT_SCOPE:
            if (!kw_scope_grant_valid(optarg)) {
                kwc_usage(g, "'%s' is not a scope (resource:action, or ending in :*, or *)",
                          optarg);
                goto out;
            }
            if (kwc_strv_push(&scopes, optarg) != 0)
                goto out;
            break;
        case OPT_EXPIRES:
        case OPT_NOT_BEFORE:
            if (when_opt(g, c, optarg, c == OPT_EXPIRES ? &p.expires_at : &p.not_before) != 0)
                goto out;
            break;
        case OPT_PREFIX: p.prefix = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: ret = help(mint_help); goto out;
        default: goto out;
        }
    }
    if ((ret = no_args(g, argc, argv)) != 0)
        goto out;
    ret = EXIT_USAGE;
    if (p.owner == NULL) {
        kwc_usage(g, "--owner is required: a token names its owner");
        goto out;
    }
    if (p.expires_at != 0 && p.expires_at <= kw_now()) {
        kwc_usage(g, "--expires is in the past");
        goto out;
    }
    p.scopes = scopes.v;
    p.nscopes = scopes.n;
    if ((ret = kwc_open(g, &ctx)) != 0)
        goto out;
    rc = kw_token_mint(ctx, &p, kwc_actor(), &tok, id);
    ret = rc == KW_OK ? print_token(tok, id, json) : kwc_fail(g, rc, kw_errmsg(ctx));
out:
    kw_secret_free(tok);
    kw_close(ctx);
    kwc_strv_free(&scopes);
    return ret;
}

int token_attenuate_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"address", required_argument, NULL, OPT_ADDRESS},
        {"new-id", no_argument, NULL, OPT_NEW_ID},
        {"token-env", required_argument, NULL, OPT_TOKEN_ENV},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_token_restriction r = {0};
    kwc_strv scopes = {0};
    kw_secret *parent = NULL, *child = NULL;
    const char *env_name = NULL;
    char id[KW_ID_LEN + 1], err[256] = "";
    int json = 0, c, ret = EXIT_USAGE;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_SCOPE:
            if (kwc_strv_push(&scopes, optarg) != 0)
                goto out;
            break;
        case OPT_EXPIRES:
        case OPT_NOT_BEFORE:
            if (when_opt(g, c, optarg, c == OPT_EXPIRES ? &r.expires_at : &r.not_before) != 0)
                goto out;
            break;
        case OPT_AUDIENCE: r.audience = optarg; break;
        case OPT_ADDRESS: r.address = optarg; break;
        case OPT_NEW_ID: r.new_id = 1; break;
        case OPT_TOKEN_ENV: env_name = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: ret = help(attenuate_help); goto out;
        default: goto out;
        }
    }
    if ((ret = no_args(g, argc, argv)) != 0)
        goto out;
    r.scopes = scopes.v;
    r.nscopes = scopes.n;
    if ((ret = kwc_read_secret(g, env_name, "token", &parent)) != 0)
        goto out;
    rc = kw_token_attenuate(&child, (const char *)kw_secret_cdata(parent), kw_secret_len(parent),
                            &r, id, err, sizeof(err));
    if (rc == KW_ERR_INVALID)
        ret = kwc_usage(g, "%s", err);
    else if (rc != KW_OK)
        ret = kwc_fail(g, rc, err);
    else
        ret = print_token(child, id, json);
out:
    kw_secret_free(parent);
    kw_secret_free(child);
    kwc_strv_free(&scopes);
    return ret;
}

static void print_claims(const kw_token_info *t)
{
    char a[32], b[32], e[32];

    kwc_time_cell(a, t->issued_at);
    kwc_time_cell(b, t->eff_not_before);
    kwc_time_cell(e, t->eff_expires_at);
    printf("id            %s\n", t->leaf_id);
    if (strcmp(t->leaf_id, t->id) != 0)
        printf("root id       %s\n", t->id);
    printf("prefix        %s\n", t->prefix);
    printf("format        %u (%s)\n", t->version,
           t->version == KW_TOKEN_VERSION_ED25519 ? "Ed25519" : "HMAC-SHA-256");
    printf("signing key   %08x\n", (unsigned)t->kid);
    printf("owner         %s\n", t->owner);
    printf("scopes        ");
    for (size_t i = 0; i < t->neff_scopes; i++)
        printf("%s%s", i ? " " : "", t->eff_scopes[i]);
    printf("%s\n", t->neff_scopes ? "" : "(none)");
    printf("issued        %s\n", a);
    printf("not before    %s\n", b);
    printf("expires       %s\n", e);
    for (size_t i = 0; i < t->ncaveats; i++) {
        const kw_token_caveat *c = &t->caveats[i];
        if (c->type == KW_CAVEAT_AUDIENCE)
            printf("audience      %s\n", c->text);
        else if (c->type == KW_CAVEAT_ADDRESS)
            printf("address       %s\n", c->text);
    }
    printf("caveats       %zu\n", t->ncaveats);
}

static void print_claims_json(const kw_token_info *t, const kw_verify_result *v)
{
    char a[32], b[32], e[32];

    kw_time_format(a, t->issued_at);
    kw_time_format(b, t->eff_not_before);
    kw_time_format(e, t->eff_expires_at);
    printf("{\"id\":\"%s\",\"root_id\":\"%s\",\"prefix\":\"%s\",\"version\":%u,\"kid\":\"%08x\","
           "\"owner\":",
           t->leaf_id, t->id, t->prefix, t->version, (unsigned)t->kid);
    kwc_print_json_string(t->owner);
    printf(",\"scopes\":[");
    for (size_t i = 0; i < t->neff_scopes; i++) {
        printf("%s", i ? "," : "");
        kwc_print_json_string(t->eff_scopes[i]);
    }
    printf("],\"issued_at\":\"%s\",\"not_before\":", a);
    if (t->eff_not_before)
        printf("\"%s\"", b);
    else
        printf("null");
    printf(",\"expires_at\":");
    if (t->eff_expires_at)
        printf("\"%s\"", e);
    else
        printf("null");
    printf(",\"audiences\":[");
    for (size_t i = 0, k = 0; i < t->ncaveats; i++)
        if (t->caveats[i].type == KW_CAVEAT_AUDIENCE) {
            printf("%s", k++ ? "," : "");
            kwc_print_json_string(t->caveats[i].text);
        }
    printf("],\"addresses\":[");
    for (size_t i = 0, k = 0; i < t->ncaveats; i++)
        if (t->caveats[i].type == KW_CAVEAT_ADDRESS)
            printf("%s\"%s\"", k++ ? "," : "", t->caveats[i].text);
    printf("],\"caveats\":%zu", t->ncaveats);
    if (v != NULL)
        printf(",\"verdict\":\"%s\"", kw_verdict_name(v->code));
    printf("}\n");
}

int token_inspect_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"verify", no_argument, NULL, OPT_VERIFY},
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"client-address", required_argument, NULL, OPT_CLIENT},
        {"token-env", required_argument, NULL, OPT_TOKEN_ENV},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_verify_result res = {0};
    kw_verify_request req = {.cost = 1};
    kw_token_info *t = NULL;
    kw_secret *tok = NULL;
    kw_ctx *ctx = NULL;
    const char *env_name = NULL;
    char err[256] = "";
    int json = 0, verify = 0, c, ret = EXIT_USAGE;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_VERIFY: verify = 1; break;
        case OPT_AUDIENCE: req.audience = optarg; break;
        case OPT_CLIENT: req.client_addr = optarg; break;
        case OPT_TOKEN_ENV: env_name = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: ret = help(inspect_help); goto out;
        default: goto out;
        }
    }
    if ((ret = no_args(g, argc, argv)) != 0)
        goto out;
    if ((ret = kwc_read_secret(g, env_name, "token", &tok)) != 0)
        goto out;
    rc = kw_token_parse(&t, (const char *)kw_secret_cdata(tok), kw_secret_len(tok), err,
                        sizeof(err));
    if (rc != KW_OK) {
        if (json)
            printf("{\"verdict\":\"MALFORMED\",\"reason\":\"%s\"}\n", err); /* our own text */
        else
            printf("MALFORMED: %s\n", err);
        ret = rc == KW_ERR_INVALID ? EXIT_REFUSED : kwc_fail(g, rc, err);
        goto out;
    }
    if (verify) {
        if ((ret = kwc_open(g, &ctx)) != 0)
            goto out;
        rc = kw_verify(ctx, (const char *)kw_secret_cdata(tok), kw_secret_len(tok), &req, &res);
        if (rc != KW_OK) {
            ret = kwc_fail(g, rc, kw_errmsg(ctx));
            goto out;
        }
    }
    if (json) {
        print_claims_json(t, verify ? &res : NULL);
    } else {
        print_claims(t);
        if (verify)
            printf("verdict       %s\n", kw_verdict_name(res.code));
    }
    ret = !verify || res.code == KW_VALID ? EXIT_DONE : EXIT_REFUSED;
out:
    kw_verify_result_clear(&res);
    kw_token_info_free(t);
    kw_secret_free(tok);
    kw_close(ctx);
    return ret;
}

int token_revoke_main(kwc_global *g, int argc, char **argv)
{
    char shown[KWC_SHOWN_MAX];
    static const struct option opts[] = {
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_ctx *ctx = NULL;
    int c, ret = EXIT_USAGE;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(revoke_help);
        return EXIT_USAGE;
    }
    if (optind + 1 != argc)
        return kwc_usage(g, "token revoke takes one token id");
    if (!kw_key_id_valid(argv[optind]))
        return kwc_usage(g, "%s is not a token id (12 base62 characters)",
                         kwc_shown(shown, argv[optind]));
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_token_revoke(ctx, argv[optind], kwc_actor());
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    if (rc == KW_OK)
        printf("revoked %s\n", argv[optind]);
    kw_close(ctx);
    return ret;
}

/* ---- signing keys ------------------------------------------------------------- */

static int sk_options(kwc_global *g, int argc, char **argv, int *json)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    int c;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_JSON && json != NULL)
            *json = 1;
        else if (c == OPT_HELP)
            return help(sk_help) == EXIT_DONE ? -1 : EXIT_USAGE;
        else
            return EXIT_USAGE;
    }
    return 0;
}

int signing_key_rotate_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"kind", required_argument, NULL, OPT_KIND},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    const char *kind = NULL;
    kw_ctx *ctx = NULL;
    uint32_t kid;
    int c, ret;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(sk_help);
        if (c != OPT_KIND)
            return EXIT_USAGE;
        kind = optarg;
        if (strcmp(kind, KW_SIGNING_HMAC) != 0 && strcmp(kind, KW_SIGNING_ED25519) != 0)
            return kwc_usage(g, "--kind is hmac-sha256 or ed25519, not '%s'", kind);
    }
    if (optind < argc)
        return kwc_usage(g, "signing-key rotate takes no argument");
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_signing_key_rotate(ctx, kind, kwc_actor(), &kid);
    if (rc == KW_OK)
        printf("signing key %08x is active\n", (unsigned)kid);
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    kw_close(ctx);
    return ret;
}

int signing_key_retire_main(kwc_global *g, int argc, char **argv)
{
    char shown[KWC_SHOWN_MAX];
    kw_ctx *ctx = NULL;
    uint64_t kid;
    int ret = sk_options(g, argc, argv, NULL);
    kw_rc rc;
    char *end;

    if (ret != 0)
        return ret < 0 ? EXIT_DONE : ret;
    if (optind + 1 != argc)
        return kwc_usage(g, "signing-key retire takes one signing key id (8 hex digits)");
    kid = strtoull(argv[optind], &end, 16);
    if (strlen(argv[optind]) != 8 || *end != '\0')
        return kwc_usage(g, "%s is not a signing key id (8 hex digits)",
                         kwc_shown(shown, argv[optind]));
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_signing_key_retire(ctx, (uint32_t)kid, kwc_actor());
    if (rc == KW_OK)
        printf("signing key %08x is retired: its tokens no longer verify\n", (unsigned)kid);
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    kw_close(ctx);
    return ret;
}

int signing_key_list_main(kwc_global *g, int argc, char **argv)
{
    kw_signing_key_info *keys = NULL;
    kw_ctx *ctx = NULL;
    size_t n = 0;
    int json = 0, ret = sk_options(g, argc, argv, &json);
    kw_rc rc;

    if (ret != 0)
        return ret < 0 ? EXIT_DONE : ret;
    if (optind < argc)
        return kwc_usage(g, "signing-key list takes no argument");
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_signing_key_list(ctx, &keys, &n);
    if (rc != KW_OK) {
        ret = kwc_fail(g, rc, kw_errmsg(ctx));
        kw_close(ctx);
        return ret;
    }
    if (json)
        printf("[");
    else
        printf("%-8s  %-11s  %-7s  %-6s  %-20s  %s\n", "KID", "KIND", "STATE", "HOLDS", "CREATED",
               "RETIRED");
    for (size_t i = 0; i < n; i++) {
        char made[32], gone[32], b64[48], x[52] = "null";
        kwc_time_cell(made, keys[i].created_at); /* never 0 */
        kwc_time_cell(gone, keys[i].retired_at); /* "-" for 0: only printed when set in JSON */
        if (keys[i].has_public_key) {
            sodium_bin2base64(b64, sizeof(b64), keys[i].public_key, sizeof(keys[i].public_key),
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            snprintf(x, sizeof(x), "\"%s\"", b64);
        }
        if (json)
            printf("%s{\"kid\":\"%08x\",\"kind\":\"%s\",\"state\":\"%s\",\"public_only\":%s,"
                   "\"public_key\":%s,\"created_at\":\"%s\",\"retired_at\":%s%s%s}",
                   i ? "," : "", (unsigned)keys[i].kid, keys[i].kind, keys[i].state,
                   keys[i].public_only ? "true" : "false", x, made, keys[i].retired_at ? "\"" : "",
                   keys[i].retired_at ? gone : "null", keys[i].retired_at ? "\"" : "");
        else
            printf("%08x  %-11s  %-7s  %-6s  %-20s  %s\n", (unsigned)keys[i].kid, keys[i].kind,
                   keys[i].state, keys[i].public_only ? "public" : "secret", made, gone);
    }
    if (json)
        printf("]\n");
    free(keys);
    kw_close(ctx);
    return EXIT_DONE;
}

int signing_key_public_main(kwc_global *g, int argc, char **argv)
{
    kw_ctx *ctx = NULL;
    char *doc = NULL;
    int ret = sk_options(g, argc, argv, NULL);
    kw_rc rc;

    if (ret != 0)
        return ret < 0 ? EXIT_DONE : ret;
    if (optind < argc)
        return kwc_usage(g, "signing-key public takes no argument");
    if ((ret = kwc_open(g, &ctx)) != 0)
        return ret;
    rc = kw_signing_keys_public_json(ctx, &doc);
    if (rc == KW_OK)
        printf("%s\n", doc);
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    free(doc);
    kw_close(ctx);
    return ret;
}

/* All of stdin, up to max bytes, into *out; else an exit code (after a
 * message). */
static int read_stdin(const kwc_global *g, size_t max, char **out, size_t *len)
{
    char *buf = malloc(max + 1);
    size_t n = 0, got;

    if (buf == NULL)
        return kwc_fail(g, KW_ERR_NOMEM, "reading stdin");
    while (n <= max && (got = fread(buf + n, 1, max + 1 - n, stdin)) > 0)
        n += got;
    if (n > max || ferror(stdin)) {
        free(buf);
        return kwc_fail(g, n > max ? KW_ERR_TOO_LARGE : KW_ERR_IO,
                        n > max ? "the key set on stdin is longer than 1 MiB"
                                : "cannot read the key set from stdin");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int listed_in(const kw_public_key *set, size_t n, uint32_t kid)
{
    for (size_t i = 0; i < n; i++)
        if (set[i].kid == kid)
            return 1;
    return 0;
}

/* Is kid retired in this keyring (a key set never brings it back)? */
static int retired_here(const kw_signing_key_info *have, size_t n, uint32_t kid)
{
    for (size_t i = 0; i < n; i++)
        if (have[i].kid == kid)
            return strcmp(have[i].state, "retired") == 0;
    return 0;
}

int signing_key_import_main(kwc_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sync", no_argument, NULL, OPT_SYNC},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };
    kw_public_key *set = NULL;
    kw_signing_key_info *have = NULL;
    kw_ctx *ctx = NULL;
    char *doc = NULL, err[256];
    size_t len = 0, n = 0, nhave = 0;
    int c, sync = 0, ret = EXIT_DONE, added;
    kw_rc rc;

    while ((c = kwc_getopt(g, argc, argv, ":h", opts)) != -1) {
        if (c == OPT_HELP)
            return help(sk_help);
        if (c != OPT_SYNC)
            return EXIT_USAGE;
        sync = 1;
    }
    if (optind < argc)
        return kwc_unexpected(g, argv[optind], "signing-key import reads the key set from stdin");
    if ((ret = read_stdin(g, KEY_SET_MAX, &doc, &len)) != 0)
        return ret;
    rc = kw_public_keys_parse(doc, len, &set, &n, err, sizeof(err));
    free(doc);
    if (rc != KW_OK)
        return kwc_fail(g, rc, err);
    if (sync && n == 0) {
        /* a retirement is final: an empty answer from a broken source must
         * not end every key at once */
        free(set);
        return kwc_usage(g, "the key set lists no key: --sync would retire every imported key "
                            "for good; retire them one by one (signing-key retire KID)");
    }
    if ((ret = kwc_open(g, &ctx)) != 0) {
        free(set);
        return ret;
    }
    rc = kw_signing_key_list(ctx, &have, &nhave);
    for (size_t i = 0; i < n && rc == KW_OK; i++) {
        if (retired_here(have, nhave, set[i].kid)) {
            printf("%08x is retired here: not brought back\n", (unsigned)set[i].kid);
            continue;
        }
        if ((rc = kw_signing_key_add_public(ctx, &set[i], kwc_actor(), &added)) == KW_OK)
            printf("%08x %s\n", (unsigned)set[i].kid, added ? "added" : "already here");
    }
    for (size_t i = 0; rc == KW_OK && sync && i < nhave; i++) {
        if (!have[i].public_only || strcmp(have[i].state, "retired") == 0 ||
            listed_in(set, n, have[i].kid))
            continue;
        if ((rc = kw_signing_key_retire(ctx, have[i].kid, kwc_actor())) == KW_OK)
            printf("%08x retired: the set no longer lists it\n", (unsigned)have[i].kid);
    }
    ret = rc == KW_OK ? EXIT_DONE : kwc_fail(g, rc, kw_errmsg(ctx));
    free(have);
    free(set);
    kw_close(ctx);
    return ret;
}
