#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the report tests render pages in it, headless (tests/report/).
#
# Idempotent and quick when it is there. scripts/test.sh starts this in the background (the install takes minutes
# on a fresh machine); it writes its state to .cache/chromium.status (installing PID, ready or failed) and its log to
# .cache/setup_chromium.log there, and the tests wait for "ready".
set -Eeuo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
STATUS=.cache/chromium.status

if command -v chromium >/dev/null 2>&1; then
    echo ready > "$STATUS"
    echo "setup_chromium: chromium already installed ($(command -v chromium))"
    exit 0
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "setup_chromium: need root to run: $* (run this script as root, or install chromium yourself)" >&2
        return 1
    fi
}

echo "installing $$" > "$STATUS"  # with its pid: a status left by a killed install is seen as stale
trap 'echo failed > "$STATUS"' ERR
start=$(date +%s)
echo "setup_chromium: chromium missing; installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
# another apt (the Docker engine's install) may hold the lock: wait for it rather than fail
as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
echo ready > "$STATUS"
echo "setup_chromium: chromium ready in $(( $(date +%s) - start )) s"
