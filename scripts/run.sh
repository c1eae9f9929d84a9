#!/bin/sh
# The run command: installs what it needs, builds keyward (release) and runs
# its main job on the embedded default, SQLite: a database in ./keyward-data
# (or $KEYWARD_DATA), a short walk through the key lifecycle on the command
# line, then the HTTP server (KEYWARD_LISTEN, default 127.0.0.1:8700) with
# an admin key for this session and the curl commands to try. Ctrl-C stops it.
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
listen=${KEYWARD_LISTEN:-127.0.0.1:8700}
admin=$("$kw" key create --owner admin --name "run.sh session" --scope '*' --expires 24h --json |
    sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
cat <<EOT

Database: $data/keyward.db (pepper beside it, mode 0600).
Starting the server on http://$listen with an admin key for this session
(scope *, expires in 24h; shown once):

  export ADMIN=$admin

Create a key and verify it:

  curl -s -X POST http://$listen/v1/keys -H "Authorization: Bearer \$ADMIN" \\
       -d '{"owner":"acme","scopes":["orders:*"],"credits":100}'
  curl -s -X POST http://$listen/v1/keys/verify -H "Authorization: Bearer \$ADMIN" \\
       -d '{"key":"<the key from above>","scopes":["orders:read"]}'
  curl -si http://$listen/v1/auth -H "X-API-Key: <the key>" -H "X-Required-Scopes: orders:read"

EOT
exec "$kw" serve --listen "$listen"
