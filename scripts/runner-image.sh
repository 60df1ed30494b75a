#!/usr/bin/env bash
# Build the Flotilla runner image, flotilla/runner:<crate version> (+ :latest), without a
# registry. This machine cannot pull any image, so there is no FROM to build on.
# Instead:
#   debootstrap a minimal Debian root filesystem with python3 + ca-certificates,
#   add the static `uv` binary from its PyPI wheel, add the non-root user runner
#   (10001:10001), slim it down, and `docker import` it with the runtime config.
#
# usage: scripts/runner-image.sh [build|verify]
#   build (default)  build unless the image exists, then verify it
#   verify           only run the checks against the existing image
#
# Environment:
#   FORCE=1              rebuild even if the image exists (reuses the download cache)
#   REFRESH=1            also download the Debian packages and uv again (implies FORCE)
#   VERIFY=0             skip the checks after a build
#   UV_VERSION=x.y.z     pin uv (default: newest cached wheel, otherwise newest on PyPI)
#   SUITE=bookworm       Debian suite of the image
#   DEBOOTSTRAP_MIRROR   Debian mirror URL (default: the one apt uses here, read from
#                        /etc/apt/sources.list{,.d/*} at run time)
#   RUNNER_IMAGE_NAME    image repository (default flotilla/runner)
#   RUNNER_IMAGE_DOCKER_HOST  daemon to build on (default unix:///var/run/docker.sock)
#
# Downloads are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/runner-image/, so a
# rebuild works without the network.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() { echo "runner-image: error: $*" >&2; exit 1; }
info() { echo "runner-image: $*"; }

cmd=${1:-build}
case "$cmd" in
    build|verify) ;;
    -h|--help|help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown command '$cmd' (build|verify)" ;;
esac

# Talk to the daemon's own socket, not to $DOCKER_HOST. A developer often has
# DOCKER_HOST pointing at the socket proxy, and the proxy refuses, on purpose, the two
# things this script needs: `docker import` (POST /images/create?fromSrc) and
# attaching to a container's output.
export DOCKER_HOST="${RUNNER_IMAGE_DOCKER_HOST:-unix://${DOCKER_SOCKET:-/var/run/docker.sock}}"

version=$(awk -F'"' '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^version[[:space:]]*=/{print $2; exit}' "$repo/Cargo.toml")
[ -n "$version" ] || die "no [package] version in $repo/Cargo.toml"
name=${RUNNER_IMAGE_NAME:-flotilla/runner}
image="$name:$version"
suite=${SUITE:-bookworm}
[ "${REFRESH:-0}" = 1 ] && FORCE=1

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"

# Fast path: it runs before the root check and before any tool is installed, so
# `make runner-image` costs one docker call when the image exists.
if [ "$cmd" = build ] && [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    info "$image already present (FORCE=1 rebuilds)"
    exit 0
fi
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "cannot reach the Docker daemon at $DOCKER_HOST (is it running? is this user allowed to use it?)"

# debootstrap must create device nodes, chroot and chown files to other uids, so this
# needs root. CI runs as root. A developer is re-run through sudo, keeping the knobs.
if [ "$cmd" = build ] && [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
        info "root is needed (debootstrap, chroot); re-running through sudo"
        keep=()
        for v in FORCE REFRESH VERIFY UV_VERSION SUITE DEBOOTSTRAP_MIRROR RUNNER_IMAGE_NAME RUNNER_IMAGE_DOCKER_HOST DOCKER_SOCKET http_proxy https_proxy no_proxy; do
            [ -n "${!v:-}" ] && keep+=("$v=${!v}")
        done
        exec sudo -- env "${keep[@]}" bash "${BASH_SOURCE[0]}" "$@"
    fi
    die "building the runner image needs root (debootstrap, chroot) and sudo is not available. Run it as root: sudo make runner-image"
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/runner-image"
mkdir -p "$cache/debootstrap" "$cache/uv" "$cache/wheelhouse"

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
case "$arch" in
    amd64) wheel_platform=manylinux_2_17_x86_64 ;;
    arm64) wheel_platform=manylinux_2_17_aarch64 ;;
    *) die "unsupported architecture $arch (amd64 and arm64 have uv wheels)" ;;
esac

nsteps=6
step_no=0
step_t0=0
step() {
    step_no=$((step_no + 1))
    step_t0=$(date +%s)
    echo "[$step_no/$nsteps] $*"
}
step_done() { echo "      ${1:-done} ($(( $(date +%s) - step_t0 ))s)"; }

# ---------------------------------------------------------------------------- helpers

apt_install() {
    # Try first without `apt-get update`, which is slow and usually not needed.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || die "apt-get install $* failed"
}

pip_cmd() {
    if python3 -m pip --version >/dev/null 2>&1; then echo "python3 -m pip"
    elif command -v pip3 >/dev/null 2>&1; then echo pip3
    else return 1
    fi
}

# The Debian mirror debootstrap should use, read from apt's own configuration. No
# mirror host is written into the project, and a site with a local mirror uses it.
# The first `deb` source of "$suite" wins (one-line *.list and deb822 *.sources). If
# there is none (for example a host on a newer release), the first source of any base
# suite is used: a Debian mirror serves every release.
detect_mirror() {
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 1
    awk -v want="$suite" '
        function consider(uri, suites,    n, s, i) {
            n = split(suites, s, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                if (s[i] == want && exact == "") exact = uri
                if (s[i] != "" && s[i] !~ /-/ && any == "" && uri !~ /security/) any = uri
            }
        }
        function flush(    u) {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no" && uris != "") {
                split(uris, u, /[ \t]+/); consider(u[1], suites)
            }
            types = ""; uris = ""; suites = ""; enabled = ""
        }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        /^[ \t]*#/ { next }
        !deb822 && $1 == "deb" {
            i = 2
            if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            consider($i, $(i + 1)); next
        }
        deb822 && /^[ \t]*$/ { flush(); next }
        deb822 && /^[A-Za-z-]+:/ {
            key = tolower($1); sub(/^[^:]+:[ \t]*/, "")
            if (key == "types:") types = $0
            else if (key == "uris:") uris = $0
            else if (key == "suites:") suites = $0
            else if (key == "enabled:") enabled = $0
        }
        END { flush(); if (exact != "") print exact; else if (any != "") print any }
    ' "${files[@]}"
}

work=
cleanup() {
    [ -n "$work" ] && [ -d "$work" ] || return 0
    # debootstrap mounts /proc and /sys in the target. If it is interrupted they stay
    # mounted. Unmount them before deleting, and never cross into another filesystem.
    local m
    for m in $(awk -v r="$work/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$work"
}

# Prints the first output line of "$@". It also writes to $vdir/first_ms how long
# after the start that line appeared: the container-start-to-first-line time a
# pipeline's user feels. (Callers capture the output with $(…), a subshell, so a
# variable would be lost.)
first_line() {
    local start out rc
    start=$(date +%s%N)
    out=$("$@" 2>"$vdir/stderr" | {
        IFS= read -r line || true
        echo "$(( ($(date +%s%N) - start) / 1000000 )) $line"
        cat >/dev/null
    }; exit "${PIPESTATUS[0]}") && rc=0 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "runner-image: command failed (exit $rc): $*" >&2
        cat "$vdir/stderr" >&2
        return 1
    fi
    echo "${out%% *}" >"$vdir/first_ms"
    echo "${out#* }"
}

# ----------------------------------------------------------------------------- verify

# uid 10001 owns what uv wrote to the test cache. A non-root caller cannot delete
# that, so the deletion runs as 10001 in the image.
verify_cleanup() {
    [ -n "${vdir:-}" ] && [ -d "$vdir" ] || return 0
    if [ "$(id -u)" -ne 0 ] && [ -d "$vdir/cache" ]; then
        docker run --rm --network none --user 10001:10001 -v "$vdir/cache:/c" "$1" \
            sh -c 'rm -rf /c/* /c/.[!.]*' >/dev/null 2>&1 || true
    fi
    rm -rf "$vdir"
}

verify() {
    local img=$1 out pyver wh
    info "verifying $img"
    docker image inspect "$img" >/dev/null 2>&1 || die "$img does not exist (run: make runner-image)"
    local hardened=(--rm --user 10001:10001 --read-only --tmpfs /tmp --cap-drop ALL
                    --security-opt no-new-privileges)

    out=$(docker run "${hardened[@]}" "$img" uv --version) || die "uv --version failed in $img"
    info "  ok  uv --version      -> $out"
    out=$(docker run "${hardened[@]}" "$img" python3 --version) || die "python3 --version failed in $img"
    info "  ok  python3 --version -> $out"
    pyver=$(docker run "${hardened[@]}" "$img" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

    vdir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-runner-verify.XXXXXX")
    verify_image=$img   # global: the EXIT trap runs after this function's locals are gone
    trap 'verify_cleanup "$verify_image"; cleanup' EXIT
    # As Flotilla runs a pipeline: its folder read-only as the working directory,
    # the shared host cache at /cache writable by uid 10001, no network. With no
    # network, nothing can come from outside.
    mkdir -p "$vdir/pipeline" "$vdir/cache"
    # Non-root (`verify` run by a developer in the docker group) cannot chown, so the
    # directory is opened to everyone instead.
    chown 10001:10001 "$vdir/cache" 2>/dev/null || chmod 0777 "$vdir/cache"
    cat >"$vdir/pipeline/main.py" <<'EOF'
import sys
try:
    import six
    extra = " six=" + six.__version__
except ImportError:
    extra = ""
print("flotilla-runner-ok python=%d.%d%s prefix=%s" % (sys.version_info[:2] + (extra, sys.prefix)))
EOF
    : >"$vdir/pipeline/requirements.txt"
    chmod 755 "$vdir/pipeline"
    chmod 644 "$vdir/pipeline/"*
    local run=(docker run "${hardened[@]}" --network none
               -v "$vdir/pipeline:/pipeline:ro" -w /pipeline -v "$vdir/cache:/cache")
    local uvrun=(uv run --python "$pyver" --with-requirements requirements.txt main.py)

    out=$(first_line "${run[@]}" "$img" "${uvrun[@]}") || die "uv run with an empty requirements.txt failed"
    case "$out" in flotilla-runner-ok*) ;; *) die "unexpected output: $out" ;; esac
    info "  ok  empty requirements.txt, read-only /pipeline -> $out ($(cat "$vdir/first_ms") ms)"
    [ ! -e "$vdir/pipeline/.venv" ] || die "uv created .venv in the pipeline folder"

    # A real dependency, from a local wheelhouse (the host's pip fetches it once,
    # then it is cached).
    wh="$cache/wheelhouse"
    if ! ls "$wh"/six-*.whl >/dev/null 2>&1; then
        local pip
        if pip=$(pip_cmd) && $pip download -q --no-deps --only-binary=:all: -d "$wh" six >/dev/null 2>&1; then :; else
            info "  --  skipped the requirement check: could not download six with pip"
            wh=
        fi
    fi
    if [ -n "$wh" ]; then
        echo six >"$vdir/pipeline/requirements.txt"
        local offline=(-v "$wh:/wheels:ro" -e UV_FIND_LINKS=/wheels -e UV_OFFLINE=1)
        out=$(first_line "${run[@]}" "${offline[@]}" "$img" "${uvrun[@]}") || die "uv run with requirement six failed"
        case "$out" in *six=*) ;; *) die "six was not importable: $out" ;; esac
        local cold
        cold=$(cat "$vdir/first_ms")
        out=$(first_line "${run[@]}" "${offline[@]}" "$img" "${uvrun[@]}") || die "second uv run failed"
        info "  ok  requirements.txt=six (offline wheelhouse) -> $out"
        info "      start-to-first-line: first run ${cold} ms (empty cache), second run $(cat "$vdir/first_ms") ms (cache reused)"
        [ -n "$(ls -A "$vdir/cache/uv" 2>/dev/null)" ] || die "uv left nothing in the /cache/uv mount"
        [ ! -e "$vdir/pipeline/.venv" ] || die "uv created .venv in the pipeline folder"
    fi
    info "  ok  command: cd /pipeline && ${uvrun[*]}"
    info "      (env from the image: UV_CACHE_DIR=/cache/uv UV_PYTHON_INSTALL_DIR=/cache/python UV_PYTHON_PREFERENCE=system UV_LINK_MODE=copy)"
    info "size: $(docker image inspect "$img" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1000/1000}')"
}

if [ "$cmd" = verify ]; then
    verify "$image"
    exit 0
fi

# ------------------------------------------------------------------------------ build

# Two builds at once (two make invocations) would trample on each other. The second
# waits, then finds the image built.
exec 9>"$cache/.lock"
if ! flock -n 9; then
    info "another build is running; waiting for it"
    flock 9
    if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
        info "$image already present"
        exit 0
    fi
fi

build_t0=$(date +%s)
trap cleanup EXIT
# Make sure an interrupt goes through the EXIT trap, so no half-built root filesystem
# (with /proc mounted in it) is left behind.
trap 'exit 130' INT
trap 'exit 143' TERM

step "host tools (debootstrap, unzip, pip)"
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
pip_cmd >/dev/null || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    info "apt-get install ${missing[*]}"
    apt_install "${missing[@]}"
fi
step_done

# The packages are cached as a debootstrap tarball (--make-tarball). A rebuild unpacks
# from it with no network. The key covers everything that changes the package set.
packages="python3,ca-certificates"
key=$(printf '%s|%s|%s|%s' "$suite" "$arch" minbase "$packages" | sha256sum | cut -c1-12)
debs="$cache/debootstrap/$suite-$arch-minbase-$key.tgz"
step "Debian packages for $suite (minbase + $packages)"
if [ -s "$debs" ] && [ "${REFRESH:-0}" != 1 ]; then
    step_done "cached: $debs"
else
    mirror=${DEBOOTSTRAP_MIRROR:-$(detect_mirror || true)}
    [ -n "$mirror" ] || die "found no Debian source in /etc/apt/sources.list{,.d/*}; set DEBOOTSTRAP_MIRROR to a Debian mirror URL"
    # debootstrap downloads with wget, which does not read apt's proxy setting.
    if [ -z "${http_proxy:-}" ]; then
        eval "$(apt-config shell http_proxy Acquire::http::Proxy 2>/dev/null || true)"
        [ -n "${http_proxy:-}" ] && export http_proxy
    fi
    info "mirror (from apt's configuration): $mirror"
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/flotilla-runner.XXXXXX")
    if ! debootstrap --variant=minbase --arch="$arch" --include="$packages" \
            --make-tarball="$work/debs.tgz" "$suite" "$work/target" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap --make-tarball failed (log above)"
    fi
    mv "$work/debs.tgz" "$debs.tmp" && mv "$debs.tmp" "$debs"
    cleanup; work=
    step_done "downloaded $(du -h "$debs" | cut -f1)"
fi

step "uv from PyPI (${UV_VERSION:-newest})"
wheel=
if [ "${REFRESH:-0}" != 1 ]; then
    if [ -n "${UV_VERSION:-}" ]; then
        wheel=$(ls "$cache/uv/uv-$UV_VERSION-"*"${wheel_platform#manylinux_2_17_}"*.whl 2>/dev/null | head -n1 || true)
    else
        wheel=$(ls "$cache/uv"/uv-*"${wheel_platform#manylinux_2_17_}"*.whl 2>/dev/null | sort -V | tail -n1 || true)
    fi
fi
if [ -n "$wheel" ]; then
    step_done "cached: $wheel"
else
    pip=$(pip_cmd) || die "pip is not available"
    # The wheel only carries a static binary. --platform picks the Linux one whatever
    # pip itself runs on, and --no-deps because it has no Python dependencies.
    dl=$(mktemp -d "$cache/uv/.dl.XXXXXX")
    $pip download -q --no-deps --only-binary=:all: --platform "$wheel_platform" \
        -d "$dl" "uv${UV_VERSION:+==$UV_VERSION}" || { rm -rf "$dl"; die "pip download uv failed"; }
    wheel="$cache/uv/$(basename "$(ls "$dl"/uv-*.whl)")"
    mv "$dl"/uv-*.whl "$wheel"
    rm -rf "$dl"
    step_done "downloaded $(basename "$wheel")"
fi

step "debootstrap $suite (minbase) root filesystem"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/flotilla-runner.XXXXXX")
rootfs="$work/rootfs"
# Nothing is downloaded here. The mirror only goes into the image's
# /etc/apt/sources.list, so that apt works in an image built FROM this one.
mirror=${DEBOOTSTRAP_MIRROR:-$(detect_mirror || true)}
if ! debootstrap --variant=minbase --arch="$arch" --include="$packages" \
        --unpack-tarball="$debs" "$suite" "$rootfs" "${mirror:-http://unused.invalid/debian}" \
        >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above). REFRESH=1 downloads the packages again"
fi
step_done

step "uv, user runner (10001:10001), slimming"
mkdir -p "$work/uv"
unzip -q -o "$wheel" 'uv-*.data/scripts/*' -d "$work/uv"
install -m 0755 "$work"/uv/uv-*.data/scripts/uv "$rootfs/usr/local/bin/uv"
install -m 0755 "$work"/uv/uv-*.data/scripts/uvx "$rootfs/usr/local/bin/uvx"
uv_version=$("$rootfs/usr/local/bin/uv" --version | awk '{print $2}')
py_version=$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')

chroot "$rootfs" groupadd --gid 10001 runner
chroot "$rootfs" useradd --uid 10001 --gid 10001 --create-home --home-dir /home/runner --shell /bin/sh runner
# The cache mount point belongs to the runner. When a Docker *named volume* is mounted
# there, Docker copies this ownership into the new volume, so uv can write to it.
# A bind mount keeps the host directory's owner, which must then be 10001.
install -d -o 10001 -g 10001 -m 0755 "$rootfs/cache" "$rootfs/cache/uv" "$rootfs/cache/python"

# Slim down like Debian's -slim images. Keep the copyright files: they are the
# licences of what the image ships.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian \
       "$rootfs"/usr/share/bash-completion "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Later `apt-get install`s (in an image built FROM this one) stay slim too.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/flotilla-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# debootstrap copies the build host's name and resolver into the target. Docker
# provides both at run time, and the host's must not ship in the image.
rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"
cat >"$rootfs/etc/flotilla-runner-release" <<EOF
FLOTILLA_RUNNER_VERSION=$version
DEBIAN_SUITE=$suite
PYTHON_VERSION=$py_version
UV_VERSION=$uv_version
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
step_done "uv $uv_version, python $py_version, rootfs $(du -sh --one-file-system "$rootfs" | cut -f1)"

step "docker import $image"
old_id=$(docker image inspect "$image" --format '{{.Id}}' 2>/dev/null || true)
# Why each setting:
#  UV_CACHE_DIR / UV_PYTHON_INSTALL_DIR  the shared host cache Flotilla mounts at /cache
#  UV_PYTHON_PREFERENCE=system  use the image's python3 when it satisfies --python,
#      even if the shared /cache/python holds a managed build of the same version
#      that another image's pipeline downloaded. A request the image cannot satisfy
#      (--python 3.12 here) still makes uv download a build into /cache/python,
#      which needs network. Offline, such a run fails ("No interpreter found").
#  UV_LINK_MODE=copy  the cache and the ephemeral environments are on different mounts,
#      where hard links fail (uv would warn and fall back on every run)
#  PYTHONUNBUFFERED=1  print() reaches `docker logs` at once, not when a 4 KiB buffer
#      fills or the run ends
#  LANG=C.UTF-8  UTF-8 for Python's I/O without the locales package (built into glibc)
#  USER 10001:10001  non-root by default, even if a caller forgets --user
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
    --message "flotilla runner $version: debootstrap $suite minbase + python3 $py_version + uv $uv_version" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV UV_CACHE_DIR=/cache/uv' \
    --change 'ENV UV_PYTHON_INSTALL_DIR=/cache/python' \
    --change 'ENV UV_PYTHON_PREFERENCE=system' \
    --change 'ENV UV_LINK_MODE=copy' \
    --change "LABEL org.opencontainers.image.title=flotilla-runner org.opencontainers.image.version=$version dev.flotilla.uv-version=$uv_version dev.flotilla.python-version=$py_version dev.flotilla.debian-suite=$suite" \
    --change 'WORKDIR /' \
    --change 'USER 10001:10001' \
    --change 'CMD ["uv", "--version"]' \
    - "$image" >/dev/null || die "docker import failed"
docker tag "$image" "$name:latest"
# A FORCE rebuild would otherwise leave the previous image behind, untagged (160 MB
# each time). It stays if a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect "$image" --format '{{.Id}}')" ] \
        && [ -z "$(docker image inspect "$old_id" --format '{{join .RepoTags ""}}' 2>/dev/null)" ]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi
cleanup; work=
step_done "$image and $name:latest, $(docker image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1000/1000}')"

info "built in $(( $(date +%s) - build_t0 ))s"
if [ "${VERIFY:-1}" != 0 ]; then
    verify "$image"
fi
