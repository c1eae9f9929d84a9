#!/bin/sh
# Fuzz one libFuzzer harness for a bounded time over a scratch copy of its
# corpus (libFuzzer adds inputs to its corpus directory; the tree stays clean).
# usage: run.sh FUZZER CORPUS_DIR SECONDS
set -eu
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp -R "$corpus/." "$work/corpus/"
cd "$work"
"$fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus
