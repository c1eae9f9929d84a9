#!/bin/sh
# The test command: installs what it needs, builds keyward with ASan+UBSan
# (clang, libFuzzer harnesses included) and runs every test: unit (cmocka),
# black-box (the real binary), fuzz. Also builds the gcc release build
# warning-free and runs its unit tests (optimised code, and the paths that
# sanitizer builds replace, such as the slabs of small secrets), and checks
# the banned-function list and the formatting.
set -eu
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/check-banned.sh
./scripts/check-format.sh

jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build/release-test -DCMAKE_BUILD_TYPE=Release -DKW_TESTS=ON >/dev/null
cmake --build build/release-test -j"$jobs"
(cd build/release-test && ctest --output-on-failure -j"$jobs" -L unit)

cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
    -DKW_SANITIZE=ON -DKW_FUZZ=ON -DKW_FUZZ_SECONDS="${KW_FUZZ_SECONDS:-20}" >/dev/null
cmake --build build/test -j"$jobs"

cd build/test
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
LSAN_OPTIONS=suppressions=$(pwd)/../../tests/lsan.supp \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs"
