#!/bin/sh
# The run command: installs what it needs, builds keyward (release) and runs
# its main job on the embedded default, SQLite: a database in ./keyward-data
# (or $KEYWARD_DATA), and a walk through the key lifecycle.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DKW_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc 2>/dev/null || echo 2)" >/dev/null

kw="$root/build/release/keyward"
data=${KEYWARD_DATA:-$root/keyward-data}
mkdir -p "$data"
chmod 700 "$data"
export KEYWARD_DB="sqlite:$data/keyward.db"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

if [ ! -e "$data/keyward.db" ]; then
    step keyward init
    "$kw" init
fi

step keyward key create --owner acme --name demo --scope 'orders:*' --credits 5 --json
key_json=$("$kw" key create --owner acme --name demo --scope 'orders:*' --credits 5 --json)
echo "$key_json"
KEY=$(printf '%s' "$key_json" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
ID=$(printf '%s' "$key_json" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
export KEY

step 'keyward key verify --scope orders:read --key-env KEY'
"$kw" key verify --scope orders:read --key-env KEY
step 'keyward key verify --scope billing:read --key-env KEY'
"$kw" key verify --scope billing:read --key-env KEY || true
step "keyward key rotate $ID --grace 1h"
rotated=$("$kw" key rotate "$ID" --grace 1h --json)
NEW=$(printf '%s' "$rotated" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
export NEW
printf 'new key %s (shown once); %s now expires in 1h\n' \
    "$(printf '%s' "$rotated" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')" "$ID"
step 'keyward key verify --key-env NEW --json'
"$kw" key verify --key-env NEW --json
step "keyward key revoke $ID"
"$kw" key revoke "$ID"
step 'keyward key verify --key-env KEY'
"$kw" key verify --key-env KEY || true
step 'keyward key list'
"$kw" key list
step 'keyward audit verify'
"$kw" audit verify
printf '\nDatabase: %s (pepper beside it, mode 0600). Try: %s --db %s key --help\n' \
    "$data/keyward.db" "$kw" "$KEYWARD_DB"
