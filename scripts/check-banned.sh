#!/bin/sh
# Fail if a banned C function is called anywhere in the tree's C sources.
# Banned: unbounded string functions, atoi-style parsers, non-CSPRNG randomness.
set -eu
cd "$(dirname "$0")/.."
pattern='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|atoll|rand|srand|random|drand48|gets)[[:space:]]*\('
if grep -rnE "$pattern" --include='*.c' --include='*.h' lib cli server include tests bench 2>/dev/null; then
    echo "check-banned: banned function used (see above)" >&2
    exit 1
fi
echo "check-banned: ok"
