#!/usr/bin/env bash
# CI plumbing only: start a Docker engine on this machine and build a stand-in for
# python:3.11-slim (Docker Hub is unreachable here). The product Dockerfile is untouched:
# it gets the stand-in through --build-arg BASE_IMAGE.
#   .ci/docker-setup.sh            prints the stand-in's tag on its last line
set -euo pipefail
STANDIN=${STANDIN_IMAGE:-ci-standin/python:3.11-bookworm}

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  # No iptables or bridge in this sandbox: containers use the host network.
  nohup dockerd --iptables=false --ip-masq=false --bridge=none >/tmp/dockerd.log 2>&1 &
  echo $! >/tmp/dockerd.pid
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 /tmp/dockerd.log >&2; exit 1; }
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
