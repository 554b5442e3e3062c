#!/usr/bin/env bash
# CI plumbing only: start a Docker engine on this machine and build a stand-in for
# python:3.11-slim (Docker Hub is unreachable here). The product Dockerfile is untouched:
# it gets the stand-in through --build-arg BASE_IMAGE.
#   .ci/docker-setup.sh            prints the stand-in's tag on its last line
#   .ci/docker-setup.sh --stop     stops the engine this checkout started, if it did (and only that one)
# The engine's log and pid files live in .ci/dockerd/ (gitignored), this checkout's own folder: an engine
# that was already running is used and never stopped, and a pid file another run left behind names no
# process of ours (the pid is killed only while it is still the dockerd started with this folder's pidfile).
set -euo pipefail
STANDIN=${STANDIN_IMAGE:-ci-standin/python:3.11-bookworm}
STATE=$(cd "$(dirname "$0")" && pwd)/dockerd
PIDFILE=$STATE/dockerd.pid  # written by dockerd itself (--pidfile), removed when it exits

ours() {  # the pid in $PIDFILE, if that process is the dockerd started with it
  local pid cmdline
  pid=$(cat "$PIDFILE" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == "dockerd --pidfile $PIDFILE "* ]] && echo "$pid"
}

if [ "${1:-}" = --stop ]; then
  if pid=$(ours); then
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  mkdir -p "$STATE"
  # A pid file of ours whose dockerd is gone: dockerd would refuse to start if its pid now names another process.
  ours >/dev/null || rm -f "$PIDFILE"
  # No iptables or bridge in this sandbox: containers use the host network.
  nohup dockerd --pidfile "$PIDFILE" --iptables=false --ip-masq=false --bridge=none >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 "$STATE/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$STANDIN" >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  root=$(mktemp -d)
  # Debian's python3 is 3.11 on bookworm, as in the official image.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
  # Like the official image: `python` and `pip` first on PATH (a venv: Debian refuses system-wide pip).
  chroot "$root" python3 -m venv /opt/python
  # This machine's CA bundle, at a path of its own (Debian's ca-certificates owns the standard one).
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/ci-pip-ca.crt"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/ci-pip-ca.crt' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python"]' - "$STANDIN" >/dev/null
  rm -rf "$root"
fi
echo "$STANDIN"
