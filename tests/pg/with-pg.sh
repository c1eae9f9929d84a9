#!/bin/sh
# tests/pg/with-pg.sh DIR COMMAND [ARG...]: run COMMAND with KW_TEST_PG_URL set
# to the URL of the PostgreSQL that `tests/pg/pgtest.sh start DIR` started.
set -eu
[ $# -ge 2 ] || { echo "usage: with-pg.sh DIR COMMAND [ARG...]" >&2; exit 2; }
[ -f "$1/url" ] || { echo "with-pg.sh: no PostgreSQL in $1 (tests/pg/pgtest.sh start $1)" >&2; exit 1; }
KW_TEST_PG_URL=$(cat "$1/url")
export KW_TEST_PG_URL
shift
exec "$@"
