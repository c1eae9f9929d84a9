#!/bin/sh
# Install the Debian packages that building and testing keyward need.
# Idempotent: does nothing (and needs no network) when all are present.
set -eu

PACKAGES="build-essential cmake pkg-config clang libclang-rt-dev \
libsodium-dev libsqlite3-dev libh2o-evloop-dev libssl-dev libjansson-dev libcmocka-dev zlib1g-dev \
libcurl4-openssl-dev libpq-dev postgresql \
python3 clang-format e2fsprogs nginx"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
