#!/usr/bin/env bash
# The web page in a real browser: Debian's Chromium driven by Playwright for Python (pinned; it
# downloads no browser), with axe-core for the accessibility scans. Run by scripts/test.sh after
# the Swift tests; it builds nothing and drives the already built .build/debug/switchboard, which
# the tests start on free loopback ports with temporary databases.
#
# Installs what is missing: chromium from Debian's packages, and the pinned Python packages of
# Tests/Web/requirements.txt in a virtual environment (SWITCHBOARD_WEB_VENV, by default under
# ~/.cache). Fails, loudly, when the browser cannot be had. Screenshots of the main views, light
# and dark, are kept in the folder it prints (SWITCHBOARD_WEB_OUTPUT to choose it).
set -euo pipefail
cd "$(dirname "$0")/../.."

chromium=/usr/lib/chromium/chromium
binary=${SWITCHBOARD_BINARY:-$PWD/.build/debug/switchboard}
venv=${SWITCHBOARD_WEB_VENV:-$HOME/.cache/switchboard/web-venv}

if [ ! -x "$binary" ]; then
    echo "web: $binary is missing: build first (swift build), or set SWITCHBOARD_BINARY" >&2
    exit 1
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
install_debian() {
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >/dev/null
}
if [ ! -x "$chromium" ]; then
    echo "web: installing chromium from Debian's packages (about 120 MB, a minute or so)"
    install_debian chromium chromium-driver fonts-noto-color-emoji
fi
if [ ! -x "$chromium" ]; then
    echo "web: FAILED: no browser at $chromium after installing Debian's chromium" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ] || ! cmp -s Tests/Web/requirements.txt "$venv/requirements.txt"; then
    echo "web: installing the pinned Python packages into $venv"
    python3 -c 'import ensurepip, venv' 2>/dev/null || install_debian python3 python3-venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r Tests/Web/requirements.txt
    cp Tests/Web/requirements.txt "$venv/requirements.txt"
fi

output=${SWITCHBOARD_WEB_OUTPUT:-$(mktemp -d "${TMPDIR:-/tmp}/switchboard-web.XXXXXX")}
echo "web: $("$chromium" --version 2>/dev/null), screenshots and server logs in $output"
SWITCHBOARD_BINARY="$binary" SWITCHBOARD_CHROMIUM="$chromium" SWITCHBOARD_WEB_OUTPUT="$output" \
    "$venv/bin/python" -m pytest Tests/Web -p no:cacheprovider -q -s "$@"
echo "web: screenshots of the page in $output/screenshots"
