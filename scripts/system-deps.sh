#!/bin/sh
# The system packages keytrail's tests need, beyond Python: PostgreSQL's server, Graphviz, Chromium, PHP with curl.
#   --check    name what is missing and how to get it; install nothing
#   --auto     (what `make test` runs) as root on Debian: install, saying so; otherwise as --check
#   --install  (`make setup`, which .ci/run calls) install what is missing with apt-get (Debian, root)
set -eu
mode="${1:---check}"

# One line per need: the command that proves it is there, the Debian package, the Homebrew formula.
missing_debian=""
missing_brew=""
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        missing_debian="$missing_debian $2"
        missing_brew="$missing_brew $3"
    fi
}
# initdb is off PATH on Debian (/usr/lib/postgresql/N/bin); the tests find it there.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need initdb postgresql postgresql@15
fi
need dot graphviz graphviz
# The report's browser tests drive Debian's chromium through Playwright (never Playwright's own download).
need chromium chromium chromium
# The HTTP tests call the gateway check from PHP's curl extension, as Commerce does.
if ! command -v php >/dev/null 2>&1 || ! php -m 2>/dev/null | grep -qi '^curl$'; then
    missing_debian="$missing_debian php-cli php-curl"
    missing_brew="$missing_brew php"
fi

if [ -z "$missing_debian" ]; then
    exit 0
fi
install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    # shellcheck disable=SC2086  # a list of package names
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing_debian >/dev/null
}
check() {
    echo "keytrail: missing system packages:$missing_debian; the tests that need them will skip." >&2
    echo "  Debian/Ubuntu: sudo make setup   (or: sudo apt-get install$missing_debian)" >&2
    echo "  macOS:         brew install$missing_brew" >&2
}
case "$mode" in
--install)
    if [ "$(id -u)" != "0" ]; then
        echo "keytrail: make setup installs with apt-get and needs root: sudo make setup (missing:$missing_debian)." >&2
        exit 1
    fi
    echo "keytrail: installing$missing_debian" >&2
    install
    ;;
--auto)
    # What `make test` runs: the two README commands set a fresh Debian machine up alone, and say so.
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "keytrail: make test is installing the system packages its tests need:$missing_debian (apt-get, as root; \`make setup\` does this alone)." >&2
        install
    else
        check
    fi
    ;;
--check)
    check
    ;;
*)
    echo "usage: sh scripts/system-deps.sh --check | --auto | --install" >&2
    exit 2
    ;;
esac
