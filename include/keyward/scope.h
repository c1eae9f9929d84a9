/*
 * keyward — scopes (least privilege).
 *
 * A scope is "resource:action": segments of [a-z0-9_.-]+ joined by ':'.
 * A granted scope may also be "*" (everything) or end in ":*" (every deeper
 * scope: "orders:*" covers "orders:read" and "orders:read:eu", not "orders").
 * Required scopes never contain '*'. Secrets scopes are "secrets:read:"
 * or "secrets:write:" and a secret path (secrets.h: '/' and upper case
 * allowed there); a grant may end the path in a slash and a star:
 * "secrets:read:app/" + "*" covers every path under "app/".
 */
#ifndef KEYWARD_SCOPE_H
#define KEYWARD_SCOPE_H

#include <keyward/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_SCOPE_MAX_LEN 128
/** A required secrets scope may be longer: "secrets:write:" and a path of
 * up to 256 characters (a grant of a path that long is a prefix grant). */
#define KW_SECRETS_SCOPE_MAX_LEN 270
#define KW_SCOPES_MAX 64

/** May `s` be granted to a key? (wildcards allowed) @return 1 or 0. */
KW_API int kw_scope_grant_valid(const char *s);

/** May `s` be required by a verifier? (no wildcards) @return 1 or 0. */
KW_API int kw_scope_required_valid(const char *s);

/** Does granted scope `g` cover required scope `r`? @return 1 or 0. */
KW_API int kw_scope_covers(const char *g, const char *r);

/**
 * Is every required scope covered by some granted scope?
 * @return 1 if all are covered (also when nreq is 0), 0 otherwise.
 */
KW_API int kw_scopes_cover(const char *const *granted, size_t ngranted, const char *const *required,
                           size_t nreq);

#ifdef __cplusplus
}
#endif

#endif
