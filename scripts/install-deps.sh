#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to for real: HAProxy (the Docker
# socket proxy), PostgreSQL (the second store backend), debootstrap (the runner image),
# wrk (benchmarks), the CA bundle runs trust, a headless Chromium (the dashboard's
# browser tests). A no-op when present.
set -euo pipefail

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v wrk >/dev/null || need+=(wrk)
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need+=(postgresql)
fi
command -v curl >/dev/null || need+=(curl)
command -v chromium-headless-shell >/dev/null || need+=(chromium-headless-shell)
command -v git >/dev/null || need+=(git)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The host CA bundle runs trust by default (tests/examples.rs installs from the index).
dpkg -s ca-certificates >/dev/null 2>&1 || need+=(ca-certificates)

if [ ${#need[@]} -eq 0 ]; then
    echo "deps: haproxy, postgresql, debootstrap, wrk, chromium-headless-shell present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; install them as root: apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
