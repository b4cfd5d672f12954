#!/usr/bin/env bash
# The system packages the tests need, installed on a fresh Debian machine by `make test`
# (through `make system-packages`).
#
#   tests/system_packages.sh          install what is missing (root with apt-get), else
#                                     print the one command to run and fail
#   tests/system_packages.sh --check  only say what is missing (exit 1 if anything is)
#
# One line per Debian package: the package, then what shows it is installed — a command
# on PATH, or `file:PATTERN`, a file (glob) below $SYSTEM_PACKAGES_ROOT (default /, the
# tests point it elsewhere). Add new ones here.
PACKAGES=(
    "chromium chromium"              # report browser tests (headless)
    "chromium-driver chromedriver"   # selenium drives Chromium through it
    # The server's own binaries sit outside PATH on Debian (/usr/lib/postgresql/N/bin);
    # pg_ctlcluster comes with them (postgresql-common).
    "postgresql pg_ctlcluster"
    "redis-server redis-server"
    # WeasyPrint (report PDFs) lays text out with Pango, in a font it can find.
    "libpango-1.0-0 file:/usr/lib/*/libpango-1.0.so.0"
    "libpangoft2-1.0-0 file:/usr/lib/*/libpangoft2-1.0.so.0"
    "fonts-dejavu-core file:/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
)

set -euo pipefail

check_only=0
case "${1:-}" in
    "") ;;
    --check) check_only=1 ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "system_packages.sh: unknown option $1 (try --help)" >&2
        exit 2
        ;;
esac

missing=()
for entry in "${PACKAGES[@]}"; do
    read -r package shows <<<"$entry"
    case "$shows" in
        file:*) compgen -G "${SYSTEM_PACKAGES_ROOT:-}${shows#file:}" >/dev/null || missing+=("$package") ;;
        *) command -v "$shows" >/dev/null 2>&1 || missing+=("$package") ;;
    esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

install_line="apt-get install -y ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
    echo "missing system packages; run: $install_line" >&2
    exit 1
fi
if [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages; run as root: $install_line" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
