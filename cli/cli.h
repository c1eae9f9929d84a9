/* The keyward command line: shared declarations. */
#ifndef KEYWARD_CLI_H
#define KEYWARD_CLI_H

#include <keyward/keyward.h>

#include <getopt.h>
#include <stdio.h>

/* Exit status (docs/cli.md). */
enum {
    EXIT_DONE = 0,
    EXIT_REFUSED = 1, /* verification not VALID, not found, conflict, audit broken */
    EXIT_USAGE = 2,   /* bad command line or bad value */
    EXIT_CONFIG = 3,  /* no database, pepper missing or wrong, schema too new */
    EXIT_STORAGE = 4, /* database or file I/O failed, read-only database */
    EXIT_INTERNAL = 5 /* out of memory, crypto library */
};

/* Options that every command accepts, anywhere before "--". */
typedef struct kwc_global {
    const char *db_url;      /* --db, KEYWARD_DB, default sqlite:./keyward.db */
    const char *pepper_file; /* --pepper-file, KEYWARD_PEPPER_FILE, default <db>.pepper;
                                NULL for PostgreSQL unless given (no default file) */
    char *pepper_default;    /* owned */
    const char *name;        /* "keyward key create": for messages */
} kwc_global;

typedef struct kwc_command {
    const char *noun;
    const char *verb; /* NULL for a noun-only command (init) */
    int (*main)(kwc_global *g, int argc, char **argv);
    const char *summary;
} kwc_command;

/* One command per noun/verb; defined in cmd_*.c. */
int init_main(kwc_global *g, int argc, char **argv);
int serve_main(kwc_global *g, int argc, char **argv);
int key_create_main(kwc_global *g, int argc, char **argv);
int key_list_main(kwc_global *g, int argc, char **argv);
int key_show_main(kwc_global *g, int argc, char **argv);
int key_update_main(kwc_global *g, int argc, char **argv);
int key_rotate_main(kwc_global *g, int argc, char **argv);
int key_revoke_main(kwc_global *g, int argc, char **argv);
int key_verify_main(kwc_global *g, int argc, char **argv);
int audit_list_main(kwc_global *g, int argc, char **argv);
int audit_verify_main(kwc_global *g, int argc, char **argv);
int import_seed_main(kwc_global *g, int argc, char **argv);
int token_mint_main(kwc_global *g, int argc, char **argv);
int token_attenuate_main(kwc_global *g, int argc, char **argv);
int token_inspect_main(kwc_global *g, int argc, char **argv);
int token_revoke_main(kwc_global *g, int argc, char **argv);
int signing_key_rotate_main(kwc_global *g, int argc, char **argv);
int signing_key_retire_main(kwc_global *g, int argc, char **argv);
int signing_key_list_main(kwc_global *g, int argc, char **argv);
int signing_key_public_main(kwc_global *g, int argc, char **argv);
int signing_key_import_main(kwc_global *g, int argc, char **argv);
int master_key_init_main(kwc_global *g, int argc, char **argv);
int master_key_rotate_main(kwc_global *g, int argc, char **argv);
int secret_put_main(kwc_global *g, int argc, char **argv);
int secret_get_main(kwc_global *g, int argc, char **argv);
int secret_list_main(kwc_global *g, int argc, char **argv);
int secret_history_main(kwc_global *g, int argc, char **argv);
int secret_rm_main(kwc_global *g, int argc, char **argv);
int secret_undelete_main(kwc_global *g, int argc, char **argv);
int secret_destroy_main(kwc_global *g, int argc, char **argv);
int run_main(kwc_global *g, int argc, char **argv);

/* Run argv (environment envp) as a child whose stdout and stderr pass
 * through with every value of masks replaced by "***" (cli/mask.c; masks
 * are sorted, longest first). Returns the child's exit status, or ends
 * keyward with the child's signal. */
int kwc_run_masked(const kwc_global *g, char **argv, char **envp, kw_secret **masks, size_t nmasks);

/* A keyward server as the source of secrets (cli/remote.c). */
typedef struct kwc_remote kwc_remote;
int kwc_remote_open(kwc_remote **out, const char *addr, const kw_secret *token);
void kwc_remote_close(kwc_remote *r);
kw_rc kwc_remote_get(kwc_remote *r, const char *path, int64_t version, kw_secret **value, char *err,
                     size_t err_len);
kw_rc kwc_remote_list(kwc_remote *r, const char *prefix, kw_secret_info **out, size_t *n, char *err,
                      size_t err_len);

/* The actor of every change made from the command line. */
const kw_actor *kwc_actor(void);

/* Exit status for a library result. */
int kwc_exit_for(kw_rc rc);

/* Print "keyward key create: <what>: <detail>" to stderr; returns the exit status. */
int kwc_fail(const kwc_global *g, kw_rc rc, const char *detail);

/* Usage error: message, then the pointer to --help. Returns EXIT_USAGE. */
int kwc_usage(const kwc_global *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Usage error for a stray argument: named only when it is short and not
 * shaped like a key or token (a stray argument may be a secret pasted in
 * the wrong place, and no error ever shows one). hint: NULL or why. */
int kwc_unexpected(const kwc_global *g, const char *arg, const char *hint);
/* An argument as an error may show it: 'arg' in quotes when it is short
 * and not shaped like a key or token, else words that say it is not shown.
 * buf holds at least KWC_SHOWN_MAX bytes. */
#define KWC_SHOWN_MAX 64
const char *kwc_shown(char *buf, const char *arg);

/* The secrets' master key file: <db>.master beside a SQLite database; for
 * PostgreSQL, beside the pepper file (its .pepper ending made .master, else
 * .master added), and none (*out NULL) when the pepper comes from
 * KEYWARD_PEPPER. 0, or -1 out of memory. */
int kwc_master_key_path(const kwc_global *g, char **out);

/* A PostgreSQL URL (postgres:// or postgresql://). */
int kwc_is_postgres(const char *url);
/* Whether a PostgreSQL URL carries a password (user:password@, or a
 * password= parameter). */
int kwc_url_has_password(const char *url);
/* The database URL as messages may show it: a PostgreSQL URL without its
 * user, password and parameters (scheme://host:port/db); buf holds n bytes. */
const char *kwc_db_shown(char *buf, size_t n, const char *url);

/* getopt_long with our own messages; returns the option, -1 at the end, or
 * '?' after printing the error. */
int kwc_getopt(const kwc_global *g, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* Read a key or token (`what`, for the prompt and messages) from the
 * environment variable env_name if not NULL, else from stdin, with no echo
 * on a terminal. Input longer than KW_VERIFY_INPUT_MAX comes back as
 * KW_VERIFY_INPUT_MAX + 1 zero bytes (never VALID, never printed). Returns
 * 0 or an exit status (the error printed). */
int kwc_read_secret(const kwc_global *g, const char *env_name, const char *what, kw_secret **out);

/* The seed system's secrets from KEYWARD_SEED_SIGNING_SECRET and
 * KEYWARD_SEED_MASTER_KEY (NULL when unset or empty; caller frees). */
kw_rc kwc_seed_env(kw_secret **signing, kw_secret **master);

/* Load the pepper and open the database (with the seed secrets, if set).
 * Prints the error itself. */
int kwc_open(kwc_global *g, kw_ctx **out);

/* Value parsers: 0 on success, -1 (nothing printed) if malformed. */
int kwc_parse_u64(const char *s, uint64_t max, uint64_t *out);
int kwc_parse_when(const char *s, int64_t *t); /* duration from now, or a time */
int kwc_parse_rate(const char *s, uint32_t *limit, uint32_t *window_ms);

/* Growable list of strings from repeated flags (--scope, --meta). */
typedef struct kwc_strv {
    const char **v;
    size_t n;
} kwc_strv;
int kwc_strv_push(kwc_strv *l, const char *s);
void kwc_strv_free(kwc_strv *l);

/* Build the meta JSON object from K=V pairs merged over base (may be NULL).
 * Returns a malloc'd string or NULL with *err set. */
char *kwc_meta_merge(const char *base, const kwc_strv *pairs, const char **err);

/* Output. */
void kwc_print_record(const kw_key_record *r);
void kwc_print_record_json(const kw_key_record *r);
/* Print a new key (once) and its record; -1 if stdout failed. */
int kwc_print_new_key(const kw_secret *key, const kw_key_record *r, int json);
void kwc_time_cell(char out[static 32], int64_t t);
/* A JSON string on stdout (null if s is not UTF-8). */
void kwc_print_json_string(const char *s);

#endif
