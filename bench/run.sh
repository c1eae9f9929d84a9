#!/bin/sh
# The benchmark suite (issue P3): builds an optimised keyward and prints
# each row beside a reference measured in the same run, so that the
# machine's noise cancels in the ratio. Writes everything to
# bench/results/<date>.md with a description of the machine.
#
#   1. in-process verification (bench_verify) beside the bare HMAC floor
#   2. key creation (bench_create) beside plain SQLite inserts
#   3. scale (bench_scale): 10 thousand to 10 million keys stored: open time,
#      index bytes per key, verifications/s and latency
#   4. HTTP (bench/http.sh): keyward against nginx over loopback (wrk),
#      key creation over HTTP, server start-up with the 1-million-key store
#   5. PostgreSQL (bench/pg.py): a node on PostgreSQL beside one on SQLite,
#      and the time a revocation takes to reach a second node
#
# usage: bench/run.sh [SECONDS_PER_ROW]
#   SECONDS_PER_ROW   2 in-process, 5 for the HTTP rows, unless given
#   BENCH_SCALE_N     the store sizes of row 3 (default "10000 1000000 10000000");
#                     stores are built once and kept in build/bench/data
#                     (10 million keys: about 7.5 GB and the better part of an hour)
#   KW_BENCH_DB       the database whose start-up is timed (default: the
#                     1-million-key store of row 3, when it exists)
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DKW_TESTS=OFF >/dev/null
cmake --build build/bench --target keyward_cli bench_verify bench_create bench_scale \
    -j"$(nproc)" >/dev/null

secs=${1:-2}
data=build/bench/data
mkdir -p bench/results "$data"
out="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).md"
{
    echo "# keyward benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Machine: $(nproc) cores, $(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -1)," \
         "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr)." \
         "Command: \`bench/run.sh $*\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo
    echo "## In-process verification, one core"
    echo
    # One core for the measured thread, so the numbers are per core.
    taskset -c 0 build/bench/bench_verify "$secs" 10000
    echo
    echo "## Key creation through the library, one core"
    echo
    taskset -c 0 build/bench/bench_create "$secs"
    echo
    echo "## Scale, one core"
    echo
    # shellcheck disable=SC2086 # the list splits into sizes on purpose
    BENCH_DATA=$data taskset -c 0 build/bench/bench_scale "$secs" \
        ${BENCH_SCALE_N:-10000 1000000 10000000}
} | tee "$out"

# The HTTP rows, appended to the same file. Their tables come out at the end
# (progress goes to stderr meanwhile); a failed row fails the run.
if [ -z "${KW_BENCH_DB:-}" ] && [ -f "$data/keys-1000000/keyward.db" ]; then
    KW_BENCH_DB=$data/keys-1000000/keyward.db
    KW_BENCH_PEPPER_FILE=$data/keys-1000000/pepper
    export KW_BENCH_DB KW_BENCH_PEPPER_FILE
fi
http=$(mktemp)
trap 'rm -f "$http"' EXIT
rc=0
KEYWARD_BIN=build/bench/keyward bench/http.sh "${1:-5}" >"$http" || rc=$?
echo | tee -a "$out"
tee -a "$out" <"$http"
KEYWARD_BIN=build/bench/keyward python3 bench/pg.py "${1:-5}" >"$http" || rc=$?
echo | tee -a "$out"
tee -a "$out" <"$http"
echo "written to $out" >&2
exit $rc
