#!/bin/sh
# The benchmark suite (issue P3; in progress): builds an optimised keyward and
# prints each row beside a reference measured in the same run. Writes the
# table to bench/results/<date>.md with a description of the machine.
# So far: in-process verification against the bare HMAC floor.
# usage: bench/run.sh [SECONDS_PER_ROW] [KEYS]
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DKW_TESTS=OFF >/dev/null
cmake --build build/bench --target bench_verify -j"$(nproc)" >/dev/null

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).md"
{
    echo "# keyward benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Machine: $(nproc) cores, $(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -1)," \
         "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr)"
    echo
    # One core for the measured thread, so the numbers are per core.
    taskset -c 0 build/bench/bench_verify "${1:-2}" "${2:-10000}"
} | tee "$out"
echo "written to $out" >&2
