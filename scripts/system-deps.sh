#!/bin/sh
# Install the Debian packages keytrail's tests need, when they are missing and we may.
set -eu
need=""
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    need="$need postgresql"
fi
if ! command -v dot >/dev/null 2>&1; then
    need="$need graphviz"
fi
# The HTTP tests call the gateway check from PHP's curl extension, as Commerce does.
if ! command -v php >/dev/null 2>&1 || ! php -m 2>/dev/null | grep -qi '^curl$'; then
    need="$need php-cli php-curl"
fi
if [ -z "$need" ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "keytrail: missing Debian packages:$need (not root, so not installing; the tests that need them will skip)" >&2
    exit 0
fi
echo "keytrail: installing$need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $need >/dev/null
