#!/bin/sh
# Fail if any C file differs from what .clang-format makes of it.
set -eu
cd "$(dirname "$0")/.."
files=$(find lib cli server include tests bench -name '*.[ch]' 2>/dev/null | sort)
# shellcheck disable=SC2086
clang-format --dry-run -Werror $files
echo "check-format: ok"
