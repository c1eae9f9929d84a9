#!/bin/sh
# The HTTP rows of the benchmark suite (issue P3): keyward over loopback,
# beside nginx doing the cheapest possible key check, measured in the same
# run. Prints Markdown tables on stdout (progress on stderr):
#
#   1. GET /v1/auth with a valid key            vs nginx: a static map on Authorization
#   2. POST /v1/keys/verify {"key": ...}        vs nginx: admin bearer by map, fixed 200 body
#   3. POST /v1/keys (key creation): keyward with one event loop on core 0,
#      beside its floor on one core: the CPU nginx spends answering the same
#      POST (admin bearer by map, keyward's answer with the key blanked as a
#      fixed 201) plus the CPU plain SQLite spends writing the key and audit
#      rows at the same keys per commit (bench_create --cpu); then keyward on
#      both cores, then as it runs by default (a loop per core), with 64 and
#      with 256 connections
#   4. start-up: exec of `keyward serve` to the first 200 from /readyz
#
# Method: each server on core 0 with one event loop (keyward --threads 1,
# nginx worker_processes 1, master_process off), wrk on core 1 with fixed
# threads/connections, `--latency`. Numbers come from a wrk Lua done() hook
# (exact microseconds, and wrk's own count of non-2xx/3xx answers and socket
# errors); any such error in a row stops the script after the tables.
#
# No key ever appears in argv: wrk reads keys from the environment (Lua
# os.getenv), curl from config files (-K), nginx from its 0600 config; all of
# them in a 0700 temporary directory removed on exit. Every server started
# here is stopped by the EXIT trap.
#
# usage: bench/http.sh [SECONDS_PER_ROW] [DB_FOR_STARTUP]
#   SECONDS_PER_ROW  wrk duration per row (default 5; env KW_BENCH_SECONDS)
#   DB_FOR_STARTUP   an existing keyward SQLite database (path or sqlite:PATH;
#                    env KW_BENCH_DB) for the start-up row, e.g. one holding a
#                    million keys; its pepper is PATH.pepper unless
#                    KW_BENCH_PEPPER_FILE says otherwise. Default: the
#                    database this script creates (a few thousand keys).
#   KEYWARD_BIN      the keyward binary (default: build/bench/keyward, built
#                    here as bench/run.sh does)
#   BENCH_CREATE_BIN bench_create, for the creation floor (default: the one
#                    beside KEYWARD_BIN)
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${1:-${KW_BENCH_SECONDS:-5}}
startup_db=${2:-${KW_BENCH_DB:-}}
startup_db=${startup_db#sqlite:}
startup_pepper=${KW_BENCH_PEPPER_FILE:-}
conns=32          # wrk connections for the verification rows
create_conns=64   # for key creation: enough concurrent writers for group commit to batch
create_conns_many=256  # and with more writers: bigger groups, fewer commits per key
startup_runs=3    # start-up is measured this many times; the median is shown
rounds=${KW_BENCH_ROUNDS:-3}  # interleaved wrk rounds per server and row; the median is shown

log() { printf 'http.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools and binary ------------------------------------------------------

command -v wrk >/dev/null 2>&1 || {
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || die "nginx is not installed (scripts/install-deps.sh installs it)"
for t in curl python3 taskset; do
    command -v "$t" >/dev/null 2>&1 || die "$t is needed"
done
if [ -z "${KEYWARD_BIN:-}" ]; then
    cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DKW_TESTS=OFF >/dev/null
    cmake --build build/bench --target keyward_cli bench_create -j"$(nproc)" >/dev/null
    KEYWARD_BIN=$root/build/bench/keyward
fi
kw=$KEYWARD_BIN
[ -x "$kw" ] || die "$kw is not executable"
bench_create=${BENCH_CREATE_BIN:-$(dirname "$kw")/bench_create}
[ -x "$bench_create" ] || die "$bench_create is not executable (set BENCH_CREATE_BIN)"

# ---- temporary directory, servers, and their clean-up ---------------------

# Nothing from the caller's keyward configuration leaks into this run.
unset KEYWARD_DB KEYWARD_PEPPER KEYWARD_PEPPER_FILE KEYWARD_LISTEN
umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kwbench-http.XXXXXX")
chmod 700 "$tmp"
pids=""
cleanup() {
    set +e
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    # the start-up probe's server, if the probe itself was killed
    [ -f "$tmp/startup.pid" ] && kill -TERM "$(cat "$tmp/startup.pid")" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# stop PID: SIGTERM it, wait for it, and forget it
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    rest=""
    for p in $pids; do [ "$p" = "$1" ] || rest="$rest $p"; done
    pids=$rest
}

# Free loopback ports, distinct (all sockets are held open until all are bound).
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
# shellcheck disable=SC2046 # two words wanted
set -- $(free_ports 2)
kw_port=$1 ng_port=$2

# ---- keyward: database, keys, server -------------------------------------

export KEYWARD_DB="sqlite:$tmp/bench.db"     # pepper: $tmp/bench.db.pepper (0600)
log "keyward: init, keys"
"$kw" init --json >"$tmp/init.json"
# A JSON field of `keyward ... --json` output (flat strings only).
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$2"; }
"$kw" key create --owner bench --name "http.sh valid key" --scope 'orders:*' --json >"$tmp/key.json"
"$kw" key create --owner bench --name "http.sh admin" --scope keys:verify --scope keys:create \
    --json >"$tmp/admin.json"
KWB_KEY=$(field key "$tmp/key.json")
KWB_ADMIN=$(field key "$tmp/admin.json")
[ -n "$KWB_KEY" ] && [ -n "$KWB_ADMIN" ] ||
    die "could not read the keys from keyward key create --json"
# A wrong key: the valid one with its last character changed to another digit
# (fails keyward's check; a digit, since nginx's map ignores case).
case $KWB_KEY in *0) last=1 ;; *) last=0 ;; esac
wrong_key=${KWB_KEY%?}$last

taskset -c 0 "$kw" serve --listen "127.0.0.1:$kw_port" --threads 1 --trusted 127.0.0.1/32 \
    </dev/null >/dev/null 2>"$tmp/keyward.log" &
kw_pid=$!
pids="$pids $kw_pid"

# ---- nginx: the same checks from a static config ---------------------------

# curl config files: one header each, so no key reaches curl's argv.
printf 'header = "Authorization: Bearer %s"\n' "$KWB_KEY" >"$tmp/curl-key"
printf 'header = "Authorization: Bearer %s"\n' "$wrong_key" >"$tmp/curl-wrong"
printf 'header = "Authorization: Bearer %s"\n' "$KWB_ADMIN" >"$tmp/curl-admin"
printf '{"key":"%s"}' "$KWB_KEY" >"$tmp/body-valid"
printf '{"key":"%s"}' "$wrong_key" >"$tmp/body-wrong"
printf '{"owner":"bench","name":"check","scopes":["orders:read"]}' >"$tmp/body-create"

# status METHOD PORT PATH CURLCONFIG [BODYFILE]: prints the status; the
# answer's body is left in $tmp/answer.
status() {
    set -- "$1" "$2" "$3" "$4" "${5:-}"
    if [ -n "$5" ]; then
        curl -s -o "$tmp/answer" -w '%{http_code}' -X "$1" -K "$4" \
            -H 'Content-Type: application/json' --data-binary "@$5" "http://127.0.0.1:$2$3"
    else
        curl -s -o "$tmp/answer" -w '%{http_code}' -X "$1" -K "$4" "http://127.0.0.1:$2$3"
    fi
}
# show FILE: the start of an answer for an error message, keys blanked out
show() { head -c 300 "$1" 2>/dev/null | sed 's/kw_[A-Za-z0-9_]*/kw_.../g'; }
# expect WANT METHOD PORT PATH CURLCONFIG [BODYFILE]: fails loudly otherwise.
expect() {
    want=$1
    shift
    got=$(status "$@") || got="curl failed"
    [ "$got" = "$want" ] || die "$1 :$2$3 ($(basename "$4") ${5:+$(basename "$5")}) answered $got, not $want: $(show "$tmp/answer")"
}

# Wait until something answers HTTP on PORT (or PID dies).
wait_http() {
    i=0
    while [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 000 ]; do
        kill -0 "$2" 2>/dev/null || die "the server on port $1 died: $(cat "$3" 2>/dev/null)"
        i=$((i + 1))
        [ $i -lt 600 ] || die "nothing answers on port $1"
        sleep 0.05
    done
}
wait_http "$kw_port" "$kw_pid" "$tmp/keyward.log"

# The body keyward answers to POST /v1/keys/verify for the valid key: nginx
# answers the same bytes, so both send the same response size.
expect 200 POST "$kw_port" /v1/keys/verify "$tmp/curl-admin" "$tmp/body-valid"
grep -q '"code":"VALID"' "$tmp/answer" || die "verify did not say VALID: $(show "$tmp/answer")"
verify_answer=$(cat "$tmp/answer")
case $verify_answer in *[\'\$\\]*) die "cannot put keyward's answer in nginx's return: $verify_answer" ;; esac
# And its answer to POST /v1/keys, the key blanked out (same length), for
# nginx's side of the creation floor.
expect 201 POST "$kw_port" /v1/keys "$tmp/curl-admin" "$tmp/body-create"
grep -q '"key":"kw_' "$tmp/answer" || die "POST /v1/keys gave no key: $(show "$tmp/answer")"
create_answer=$(python3 -c '
import re, sys
s = open(sys.argv[1]).read()
print(re.sub(r"\"key\":\"([^\"]*)\"", lambda m: "\"key\":\"" + "x" * len(m.group(1)) + "\"", s), end="")
' "$tmp/answer")
rm -f "$tmp/answer" # it holds a key
case $create_answer in *kw_live_*) die "the creation answer still holds a key" ;; esac
case $create_answer in *[\'\$\\]*) die "cannot put keyward's creation answer in nginx's return" ;; esac

mkdir "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
# bench/http.sh: nginx as the floor for an HTTP key check (0600, temporary).
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    map_hash_bucket_size 128;      # room for a key of up to ~100 characters
    keepalive_requests 100000000;  # like keyward: never close a busy keep-alive connection
    # The fastest key check nginx can do: a static hash of the one valid
    # Authorization value (nginx's map compares strings case-insensitively).
    map \$http_authorization \$key_ok   { default 0; "Bearer $KWB_KEY" 1; }
    map \$http_authorization \$admin_ok { default 0; "Bearer $KWB_ADMIN" 1; }
    server {
        listen 127.0.0.1:$ng_port;
        location = /readyz { return 200; }
        location = /v1/auth {
            if (\$key_ok) { return 200; }
            return 401;
        }
        # nginx cannot look inside the body: it checks the admin bearer as
        # keyward does, reads and discards the body, and answers keyward's
        # own answer for the valid key (same size); the key in the body is
        # not checked.
        location = /v1/keys/verify {
            default_type application/json;
            if (\$admin_ok = 0) { return 401; }
            return 200 '$verify_answer';
        }
        # The HTTP half of the creation floor: the admin bearer by map, the
        # body read and discarded, keyward's creation answer (key blanked).
        location = /v1/keys {
            default_type application/json;
            if (\$admin_ok = 0) { return 401; }
            return 201 '$create_answer';
        }
    }
}
EOF
taskset -c 0 "$nginx" -p "$tmp/nginx/" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" \
    -g 'daemon off;' </dev/null >/dev/null 2>"$tmp/nginx/stderr" &
ng_pid=$!
pids="$pids $ng_pid"
wait_http "$ng_port" "$ng_pid" "$tmp/nginx/stderr"

# ---- check the answers before measuring ----------------------------------

log "checking answers"
for port in "$kw_port" "$ng_port"; do
    expect 200 GET "$port" /v1/auth "$tmp/curl-key"
    expect 401 GET "$port" /v1/auth "$tmp/curl-wrong"
    expect 200 POST "$port" /v1/keys/verify "$tmp/curl-admin" "$tmp/body-valid"
    expect 401 POST "$port" /v1/keys/verify "$tmp/curl-wrong" "$tmp/body-valid"
done
expect 200 POST "$kw_port" /v1/keys/verify "$tmp/curl-admin" "$tmp/body-wrong"
grep -q '"valid":false' "$tmp/answer" || die "keyward said a wrong key is valid: $(show "$tmp/answer")"
expect 201 POST "$ng_port" /v1/keys "$tmp/curl-admin" "$tmp/body-create"
expect 401 POST "$ng_port" /v1/keys "$tmp/curl-wrong" "$tmp/body-create"

# ---- wrk -------------------------------------------------------------------

# One Lua script for every row; KWB_MODE picks the request. Its done() hook
# prints one line with exact numbers, and wrk's own counts of answers of 400
# or more ("Non-2xx or 3xx responses") and of socket errors.
cat >"$tmp/bench.lua" <<'EOF'
local mode = os.getenv("KWB_MODE")
local function env(name) return assert(os.getenv(name), name .. " is not set") end
if mode == "auth" then
    wrk.method = "GET"
    wrk.path = "/v1/auth"
    wrk.headers["Authorization"] = "Bearer " .. env("KWB_KEY")
elseif mode == "verify" then
    wrk.method = "POST"
    wrk.path = "/v1/keys/verify"
    wrk.headers["Authorization"] = "Bearer " .. env("KWB_ADMIN")
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"key":"' .. env("KWB_KEY") .. '"}'
elseif mode == "create" then
    wrk.method = "POST"
    wrk.path = "/v1/keys"
    wrk.headers["Authorization"] = "Bearer " .. env("KWB_ADMIN")
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"owner":"bench","name":"wrk","scopes":["orders:read"]}'
else
    error("KWB_MODE must be auth, verify or create")
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("KWBENCH rps=%.1f p50_us=%d p99_us=%d non2xx=%d sockerr=%d n=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50),
        latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout,
        summary.requests))
end
EOF

# run_wrk NAME MODE PORT CONNECTIONS: wrk on core 1; leaves the KWBENCH line
# in $tmp/NAME.out and the full wrk output in $tmp/NAME.wrk.
run_wrk() {
    log "$1: wrk -t1 -c$4 -d${secs}s"
    KWB_MODE=$2 KWB_KEY=$KWB_KEY KWB_ADMIN=$KWB_ADMIN taskset -c 1 wrk -t1 -c"$4" -d"${secs}s" --timeout 10s --latency \
        -s "$tmp/bench.lua" "http://127.0.0.1:$3" >"$tmp/$1.wrk" 2>&1 ||
        die "wrk failed for $1: $(cat "$tmp/$1.wrk")"
    grep '^KWBENCH ' "$tmp/$1.wrk" >"$tmp/$1.out" || die "no numbers from wrk for $1: $(cat "$tmp/$1.wrk")"
}
# get NAME FIELD: a number from the KWBENCH line
get() { sed -n "s/.* $2=\\([0-9.]*\\).*/\\1/p" "$tmp/$1.out"; }
ms() { awk -v us="$(get "$1" "$2")" 'BEGIN { printf "%.2f", us / 1000 }'; }
rps() { awk -v r="$(get "$1" rps)" 'BEGIN { printf "%.0f", r }'; }
ratio() { awk -v a="$(get "$1" rps)" -v b="$(get "$2" rps)" 'BEGIN { printf "%.2f", a / b }'; }
# errors NAME: non-2xx answers and socket errors, "0" when clean
errors() {
    n=$(get "$1" non2xx) s=$(get "$1" sockerr)
    if [ "$n" = 0 ] && [ "$s" = 0 ]; then echo 0; else echo "**$n non-2xx, $s socket errors**"; fi
}

# run_pairs MODE CONNECTIONS: keyward then nginx, $rounds times over; each
# side's MODE-kw.out / MODE-ng.out is its median round by req/s (or a round
# that had errors, so that they show). A loaded VM moves single runs by 20%
# either way; the median of interleaved rounds does not.
median_of() {
    sed 's/^KWBENCH rps=\([0-9.]*\) .*/\1 &/' "$tmp/$1.all" | sort -n |
        sed -n "$(((rounds + 1) / 2))p" | cut -d' ' -f2- >"$tmp/$1.out"
    bad=$(grep -v 'non2xx=0 sockerr=0' "$tmp/$1.all" | head -1)
    [ -z "$bad" ] || echo "$bad" >"$tmp/$1.out"
}
run_pairs() {
    r=1
    : >"$tmp/$1-kw.all"
    : >"$tmp/$1-ng.all"
    while [ $r -le "$rounds" ]; do
        run_wrk "$1-kw.$r" "$1" "$kw_port" "$2"
        cat "$tmp/$1-kw.$r.out" >>"$tmp/$1-kw.all"
        run_wrk "$1-ng.$r" "$1" "$ng_port" "$2"
        cat "$tmp/$1-ng.$r.out" >>"$tmp/$1-ng.all"
        r=$((r + 1))
    done
    median_of "$1-kw"
    median_of "$1-ng"
}

# Interleaved, both servers running; creation last (it grows the database).
# The load average says whether anything else was busy on these 2 cores;
# first let it settle after whatever ran just before (bench/run.sh's own
# programs), for up to two minutes.
settle=0
while [ $settle -lt 120 ] && awk '{ exit !($1 >= 1.0) }' /proc/loadavg; do
    [ $settle = 0 ] && log "waiting for the load average to fall below 1 (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 5
    settle=$((settle + 5))
done
load_before=$(cut -d' ' -f1 /proc/loadavg)
run_pairs auth $conns
run_pairs verify $conns
# commits NAME PORT before|after: the server's count of group commits and
# of keys they created, kept for keys_per_commit NAME.
commits() {
    curl -s "http://127.0.0.1:$2/metrics" >"$tmp/metrics" || die "GET /metrics failed"
    sed -n 's/^keyward_key_commits_total //p; s/^keyward_keys_created_total //p' "$tmp/metrics" |
        tr '\n' ' ' >"$tmp/$1.$3"
}
# (each of NAME.before and NAME.after holds: commits, keys, CPU ticks)
keys_per_commit() {
    # shellcheck disable=SC2046 # six numbers wanted
    set -- $(cat "$tmp/$1.before" "$tmp/$1.after")
    awk -v c="$(($4 - $1))" -v k="$(($5 - $2))" 'BEGIN { printf "%.1f", c ? k / c : 0 }'
}
# floor_rps / floor_cpu / floor_ratio NAME: the median floor of
# create_rounds NAME, as keys/s, as "nginx + SQLite = sum" µs per key, and
# keyward's keys/s over it
floor_rps() { awk '{ printf "%.0f", $1 }' "$tmp/$1.floor"; }
floor_cpu() { awk '{ printf "%.1f + %.1f = %.1f", $2, $3, $2 + $3 }' "$tmp/$1.floor"; }
floor_ratio() { awk -v k="$(get "$1" rps)" '{ printf "%.2f", k / $1 }' "$tmp/$1.floor"; }
floor_sq() { awk '{ printf "%.1f", $3 }' "$tmp/$1.floor"; }
floor_lib() { awk '{ printf "%.1f", $4 }' "$tmp/$1.floor"; }
# cpu_ticks: keyward's CPU time so far (every thread, user and kernel), in ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$kw_pid/stat"; }
# cpu_per_key NAME: keyward's CPU microseconds per key created in that row
cpu_per_key() {
    # shellcheck disable=SC2046 # six numbers wanted
    set -- $(cat "$tmp/$1.before" "$tmp/$1.after")
    awk -v t="$(($6 - $3))" -v k="$(($5 - $2))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", k ? t * 1e6 / hz / k : 0 }'
}
create_row() { # NAME PORT CONNECTIONS
    commits "$1" "$2" before
    cpu_ticks >>"$tmp/$1.before"
    run_wrk "$1" create "$2" "$3"
    commits "$1" "$2" after
    cpu_ticks >>"$tmp/$1.after"
}
# floor_round NAME KEYS_PER_COMMIT: the floor of one key's creation on one
# core, in two parts measured now: the CPU nginx (on core 0) spends per
# POST /v1/keys in a wrk round like keyward's, and the CPU plain SQLite (on
# core 0) spends per key writing key and audit rows at that many keys per
# transaction (bench_create --cpu, a fresh database). NAME.floor gets
# "nginx_us sqlite_us library_us", the last keyward's library doing the
# same on its own (not part of the floor: it shows what the server adds).
ng_ticks() { awk '{ print $14 + $15 }' "/proc/$ng_pid/stat"; }
floor_round() {
    t0=$(ng_ticks)
    run_wrk "$1-ng" create "$ng_port" $create_conns
    t1=$(ng_ticks)
    kpc=$(awk -v k="$2" 'BEGIN { k = int(k + 0.5); print (k < 1 ? 1 : k) }')
    # shellcheck disable=SC2046 # four numbers wanted
    set -- "$1" $(taskset -c 0 "$bench_create" --cpu "$kpc" 2) || die "bench_create --cpu $kpc failed"
    [ $# = 5 ] || die "bench_create --cpu $kpc printed no numbers"
    awk -v t=$((t1 - t0)) -v n="$(get "$1-ng" n)" -v hz="$(getconf CLK_TCK)" -v sq="$2" -v lib="$4" \
        'BEGIN { printf "%.1f %.1f %.1f\n", t * 1e6 / hz / n, sq, lib }' >"$tmp/$1.floor"
}
# create_rounds NAME PORT CONNECTIONS: create_row $rounds times, each
# followed by a floor_round; NAME is the median round by keys/s (the
# database grows by each round: the later ones run on a larger id index),
# NAME.floor the median floor.
create_rounds() {
    r=1
    : >"$tmp/$1.rps"
    : >"$tmp/$1.floors"
    while [ $r -le "$rounds" ]; do
        create_row "$1.$r" "$2" "$3"
        echo "$(get "$1.$r" rps) $r" >>"$tmp/$1.rps"
        floor_round "$1.$r" "$(keys_per_commit "$1.$r")"
        awk '{ printf "%.1f %s %s %s\n", 1e6 / ($1 + $2), $1, $2, $3 }' "$tmp/$1.$r.floor" >>"$tmp/$1.floors"
        [ "$(errors "$1.$r-ng")" = 0 ] || die "nginx's creation answers: $(errors "$1.$r-ng")"
        r=$((r + 1))
    done
    # the median floor by keys/s: "keys/s nginx_us sqlite_us library_us"
    sort -n "$tmp/$1.floors" | sed -n "$(((rounds + 1) / 2))p" >"$tmp/$1.floor"
    m=$(sort -n "$tmp/$1.rps" | sed -n "$(((rounds + 1) / 2))p" | cut -d' ' -f2)
    r=1
    while [ $r -le "$rounds" ]; do # a round with errors is the one shown, so they fail the run
        [ "$(errors "$1.$r")" = 0 ] || m=$r
        r=$((r + 1))
    done
    for f in out before after; do cp "$tmp/$1.$m.$f" "$tmp/$1.$f"; done
    create_all=$(sort -k2 -n "$tmp/$1.rps" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }')
}
# Creation syncs the disk on every commit: first let the disk finish what
# earlier programs left it (bench/run.sh's stores), so keyward's syncs do
# not pay for their writes.
sync
create_rounds create-kw "$kw_port" $create_conns
# Creation has no reference server to be fair to: let keyward's threads (the
# event loop, the committer, the index writer) also use core 1, where wrk
# runs, and measure again.
taskset -a -p -c 0,1 "$kw_pid" >/dev/null || die "taskset -a -p $kw_pid failed"
create_row create2-kw "$kw_port" $create_conns
# And as `keyward serve` runs by default: an event loop per core.
stop "$kw_pid"
kw_port=$(free_ports 1)
"$kw" serve --listen "127.0.0.1:$kw_port" --trusted 127.0.0.1/32 \
    </dev/null >/dev/null 2>"$tmp/keyward2.log" &
kw_pid=$!
pids="$pids $kw_pid"
wait_http "$kw_port" "$kw_pid" "$tmp/keyward2.log"
i=0
while [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$kw_port/readyz")" != 200 ]; do
    i=$((i + 1))
    [ $i -lt 600 ] || die "keyward serve (default threads) never became ready"
    sleep 0.05
done
create_row create3-kw "$kw_port" $create_conns
create_row create4-kw "$kw_port" $create_conns_many
load_after=$(cut -d' ' -f1 /proc/loadavg)
# Flag the run when something else kept a core busy before it began (during
# the rows, wrk and the server themselves keep the load near 2).
noisy=$(awk -v a="$load_before" -v b="$load_after" \
    'BEGIN { if (a >= 1.5) print ": **noisy, rerun on a quiet machine**" }')
stop "$ng_pid"
stop "$kw_pid"

# ---- start-up time -----------------------------------------------------------

# exec of `keyward serve` to its first 200 from /readyz, polled over
# keep-alive-free connections every 1 ms. The server has both cores here (a
# large store loads on two threads; at start-up nothing else runs). Also
# reports the server's own "N keys indexed in T s" line.
cat >"$tmp/startup.py" <<'EOF'
import http.client, os, re, signal, subprocess, sys, time
kw, db, pepper, port, pidfile, errfile = sys.argv[1:7]
env = dict(os.environ, KEYWARD_DB="sqlite:" + db)
if pepper:
    env["KEYWARD_PEPPER_FILE"] = pepper
os.sched_setaffinity(0, set(range(os.cpu_count())))  # the child gets every core
with open(errfile, "w") as err:
    t0 = time.monotonic()
    p = subprocess.Popen([kw, "serve", "--listen", "127.0.0.1:" + port],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    try:
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=3600)
                c.request("GET", "/readyz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    break
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                pass
            if p.poll() is not None:
                sys.exit("keyward serve exited %d before /readyz answered" % p.returncode)
            time.sleep(0.001)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        code = p.wait(30)
        os.unlink(pidfile)
log = open(errfile).read()
if code != 0:
    sys.exit("keyward serve exited %d: %s" % (code, log))
m = re.search(r"(\d+) keys indexed in ([0-9.]+) s", log)
print("%.1f %s %s" % (elapsed * 1000, m.group(1) if m else "?", m.group(2) if m else "?"))
EOF
if [ -n "$startup_db" ]; then
    [ -f "$startup_db" ] || die "$startup_db: no such database"
    db=$startup_db db_label="given database"
else
    db=$tmp/bench.db db_label="this run's database"
fi
: >"$tmp/startup.txt"
i=0
while [ $i -lt $startup_runs ]; do
    port=$(free_ports 1)
    log "start-up $((i + 1))/$startup_runs: $db"
    python3 "$tmp/startup.py" "$kw" "$db" "$startup_pepper" "$port" "$tmp/startup.pid" \
        "$tmp/startup.log" >>"$tmp/startup.txt" || die "start-up failed: $(cat "$tmp/startup.log")"
    i=$((i + 1))
done
# median by start-up time; the key count and index time of that run
# shellcheck disable=SC2046 # three words wanted
set -- $(sort -n "$tmp/startup.txt" | sed -n "$(((startup_runs + 1) / 2))p")
st_ms=$1 st_keys=$2 st_index=$3
st_all=$(cut -d' ' -f1 "$tmp/startup.txt" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')

# ---- the tables ------------------------------------------------------------

cat <<EOF
## HTTP, one core

Loopback, HTTP/1.1 keep-alive. Each server on core 0 with one event loop
(keyward \`serve --threads 1\`; nginx $("$nginx" -v 2>&1 | sed 's|.*/||'), \`worker_processes 1\`),
wrk $(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p') on core 1: \`-t1 -c$conns -d${secs}s --latency\`, the two servers in
$rounds interleaved rounds each, the median round shown. Latency is per request under that closed-loop load.
1-minute load average $load_before before the rows, $load_after after$noisy (other work
on the machine lowers every row; the keyward/nginx ratio, measured side by side, less).

| request | server | req/s | p50 ms | p99 ms | keyward / nginx | errors |
|---|---|---:|---:|---:|---:|---:|
| \`GET /v1/auth\`, valid key (Bearer) | keyward | $(rps auth-kw) | $(ms auth-kw p50_us) | $(ms auth-kw p99_us) | $(ratio auth-kw auth-ng) | $(errors auth-kw) |
| same | nginx: static \`map\` of the one valid \`Authorization\` | $(rps auth-ng) | $(ms auth-ng p50_us) | $(ms auth-ng p99_us) | 1.00 | $(errors auth-ng) |
| \`POST /v1/keys/verify\` \`{"key"}\`, valid key | keyward (verifies the admin key, then the body's) | $(rps verify-kw) | $(ms verify-kw p50_us) | $(ms verify-kw p99_us) | $(ratio verify-kw verify-ng) | $(errors verify-kw) |
| same | nginx: admin bearer by \`map\`, body read and discarded, keyward's answer as a fixed 200 | $(rps verify-ng) | $(ms verify-ng p50_us) | $(ms verify-ng p99_us) | 1.00 | $(errors verify-ng) |

nginx is the floor, not an equal: its \`map\` compares one fixed string
(case-insensitively) and cannot read a JSON body, so for \`/v1/keys/verify\`
it checks only the admin bearer and never looks at the key in the body.

| key creation over HTTP (on one growing database) | keys/s | p50 ms | p99 ms | keys per commit | keyward's CPU per key, µs | errors |
|---|---:|---:|---:|---:|---:|---:|
| \`POST /v1/keys\` (SQLite; \`-c$create_conns\` so commits can be grouped), keyward \`--threads 1\` on core 0: the median of $rounds rounds ($create_all keys/s) | $(rps create-kw) | $(ms create-kw p50_us) | $(ms create-kw p99_us) | $(keys_per_commit create-kw) | $(cpu_per_key create-kw) | $(errors create-kw) |
| floor of the row above, on one core: nginx answering the same \`POST\` (admin bearer by \`map\`, keyward's answer with the key blanked as a fixed 201) plus plain SQLite writing the key and audit rows at the same keys per commit, their CPU per key added; the median of $rounds rounds | $(floor_rps create-kw) | — | — | $(keys_per_commit create-kw) | $(floor_cpu create-kw) | 0 |
| same, keyward on both cores (wrk on core 1) | $(rps create2-kw) | $(ms create2-kw p50_us) | $(ms create2-kw p99_us) | $(keys_per_commit create2-kw) | $(cpu_per_key create2-kw) | $(errors create2-kw) |
| same, keyward as it runs by default (an event loop per core), both cores | $(rps create3-kw) | $(ms create3-kw p50_us) | $(ms create3-kw p99_us) | $(keys_per_commit create3-kw) | $(cpu_per_key create3-kw) | $(errors create3-kw) |
| same, \`-c$create_conns_many\` | $(rps create4-kw) | $(ms create4-kw p50_us) | $(ms create4-kw p99_us) | $(keys_per_commit create4-kw) | $(cpu_per_key create4-kw) | $(errors create4-kw) |

keyward's CPU per key counts every thread of the server, user and kernel
(its TCP included), from \`/proc\`: one core can create at most a million
over that many keys a second, and wrk's own work shares the two cores.
On one core keyward creates **$(floor_ratio create-kw)×** as many keys a
second as its floor. The floor leaves out what only keyward does: the key
itself (CSPRNG, locked memory), its HMAC, the audit record's JSON and MAC,
the in-memory index, reading the request's JSON and writing the answer's;
and plain SQLite's database is fresh, keyward's has grown by each round.
keyward's library alone (\`kw_key_create_many\`, a fresh database, the same
keys per commit) spent $(floor_lib create-kw) µs of CPU per key in the floor's
median round, where plain SQLite spent $(floor_sq create-kw).

| start-up: exec of \`keyward serve\` to the first 200 from \`/readyz\` | keys | ms (median of $startup_runs) | all runs, ms | index built in, s |
|---|---:|---:|---|---:|
| $db_label, both cores, polled every 1 ms | $st_keys | $st_ms | $st_all | $st_index |
EOF

# Any error answer or socket error fails the run (after the tables are out).
for row in auth-kw auth-ng verify-kw verify-ng create-kw create2-kw create3-kw create4-kw; do
    [ "$(errors $row)" = 0 ] || die "$row: $(errors $row) (wrk output: see above)"
done
