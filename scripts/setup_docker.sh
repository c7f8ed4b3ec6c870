#!/usr/bin/env bash
# Make sure a Docker Engine is installed and running on this machine (Debian, root).
#
# Idempotent and quick when the engine already answers: it then only checks the socket.
# Otherwise it installs Debian's docker.io (if dockerd is missing), starts dockerd in the background with its
# log in $KEYE_DOCKERD_LOG (default /var/log/keye-dockerd.log) and waits for the socket to answer.
set -euo pipefail

LOG="${KEYE_DOCKERD_LOG:-/var/log/keye-dockerd.log}"
SOCK="${KEYE_DOCKER_SOCK:-/var/run/docker.sock}"
WAIT_S="${KEYE_DOCKERD_WAIT_S:-60}"

engine_answers() {
    # `docker version` exits 0 only when both the client and the daemon answer.
    command -v docker >/dev/null 2>&1 && docker -H "unix://$SOCK" version >/dev/null 2>&1
}

if engine_answers; then
    echo "setup_docker: engine already running ($SOCK)"
    exit 0
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "setup_docker: need root to run: $* (run this script as root, or start the engine yourself)" >&2
        exit 1
    fi
}

if ! command -v dockerd >/dev/null 2>&1; then
    echo "setup_docker: dockerd missing; installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# A pid file left by a killed engine can name a pid that now belongs to another process; dockerd then believes
# its containerd is "still running" and times out waiting for it. Drop pid files whose process is not ours.
clear_stale_pidfile() {
    local file="$1" name="$2" pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
        as_root rm -f "$file"
    fi
}

if ! pgrep -x dockerd >/dev/null 2>&1; then
    clear_stale_pidfile /var/run/docker.pid dockerd
    clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
    echo "setup_docker: starting dockerd (log: $LOG)"
    as_root mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: the engine must outlive this script and the make target that ran it.
    as_root setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi

deadline=$(( $(date +%s) + WAIT_S ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -S "$SOCK" ] && engine_answers; then
        echo "setup_docker: engine ready ($SOCK)"
        exit 0
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        break  # it exited: waiting longer will not help
    fi
    sleep 0.2
done

echo "setup_docker: dockerd did not answer on $SOCK within ${WAIT_S}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
