#!/bin/sh
# A throwaway PostgreSQL for the tests (issue P6), on loopback only.
#
#   tests/pg/pgtest.sh start DIR   initdb in DIR (made here, as an unprivileged
#                                  user: PostgreSQL refuses to run as root),
#                                  start the server on a free port of 127.0.0.1
#                                  with its socket in DIR, make the database
#                                  keyward_test; prints its URL on stdout and
#                                  leaves it in DIR/url
#   tests/pg/pgtest.sh stop DIR    stop that server (fast shutdown) and remove DIR
#   tests/pg/pgtest.sh pause DIR   stop that server, keeping DIR (an outage)
#   tests/pg/pgtest.sh resume DIR  start it again, on the same port
#
# Nothing outside DIR is touched; no password (trust, loopback and the
# socket in DIR only). The Debian package postgresql provides the binaries
# (scripts/install-deps.sh installs it).
set -eu

die() { echo "pgtest: $*" >&2; exit 1; }

[ $# = 2 ] || die "usage: pgtest.sh start|stop|pause|resume DIR"
cmd=$1 dir=$2

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"

# The user the server runs as: ours, unless we are root.
run() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$pguser" -- "$@"
    else
        "$@"
    fi
}
pguser=$(id -un)
if [ "$(id -u)" = 0 ]; then
    if id postgres >/dev/null 2>&1; then pguser=postgres; else pguser=nobody; fi
fi

# pg_start PORT: the server of DIR on 127.0.0.1:PORT
pg_start() {
    run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$1 -c unix_socket_directories=$dir \
-c fsync=on -c max_connections=100 -c shared_buffers=32MB" start >/dev/null ||
        die "the server did not start: $(tail -5 "$dir/server.log")"
}

case $cmd in
start)
    [ ! -e "$dir" ] || die "$dir exists"
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" != 0 ] || chown "$pguser" "$dir"
    run "$bindir/initdb" -D "$dir/data" -U keyward --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || die "initdb failed: $(tail -5 "$dir/initdb.log")"
    # A free port: bound and released here, then taken by the server (a
    # race with another program is possible, and reported by pg_ctl).
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$port" >"$dir/port"
    chmod 644 "$dir/port"
    pg_start "$port"
    run "$bindir/psql" -h 127.0.0.1 -p "$port" -U keyward -d postgres -q -X \
        -c "CREATE DATABASE keyward_test" >/dev/null ||
        die "CREATE DATABASE failed"
    url="postgresql://keyward@127.0.0.1:$port/keyward_test"
    echo "$url" >"$dir/url"
    chmod 644 "$dir/url"
    echo "$url"
    ;;
pause)
    run "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
        die "the server did not stop"
    ;;
resume)
    [ -f "$dir/port" ] || die "no server in $dir"
    pg_start "$(cat "$dir/port")"
    ;;
stop)
    [ -d "$dir/data" ] || exit 0
    run "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    die "usage: pgtest.sh start|stop|pause|resume DIR"
    ;;
esac
