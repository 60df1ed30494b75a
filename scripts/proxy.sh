#!/usr/bin/env bash
# Run the development/CI Docker socket proxy: Debian's HAProxy with
# manifests/socket-proxy/haproxy.cfg, the local stand-in for
# tecnativa/docker-socket-proxy (which cannot be pulled here).
#
# usage: scripts/proxy.sh start|stop|restart|status|env [--listen ADDR] [--socket PATH]
#
#   start    start in the background if not running, then wait until GET /_ping says OK
#   stop     stop it (no error if it was not running)
#   status   exit 0 if running and answering, 3 if not
#   env      print `export DOCKER_HOST=tcp://ADDR` (for eval)
#
# Environment:
#   PROXY_LISTEN        listen address host:port    default 127.0.0.1:2375 (--listen)
#   DOCKER_SOCKET       daemon socket               default /var/run/docker.sock (--socket)
#   PROXY_IDLE_TIMEOUT  idle cut of requests/streams, HAProxy syntax   default 10m
#   PROXY_EVENTS_TIMEOUT  idle cut of /events                          default 24d
#   PROXY_CONTAINERS PROXY_POST PROXY_EVENTS PROXY_IMAGES PROXY_PING PROXY_VERSION
#                       0/1 per section (defaults: all 1). HAProxy reads them as
#                       CONTAINERS, POST, … like the upstream proxy. They are set here
#                       explicitly so a stray VERSION=… in the caller's environment
#                       cannot change the rules.
#
# One proxy per port. Its pid file and log are in
# ${XDG_RUNTIME_DIR:-/tmp}/flotilla-proxy-<port>/, so tests can run their own proxy on
# another port next to a developer's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cfg="$(dirname "$here")/manifests/socket-proxy/haproxy.cfg"

die() { echo "proxy: error: $*" >&2; exit 1; }
say() { echo "proxy: $*"; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
listen=${PROXY_LISTEN:-127.0.0.1:2375}
socket=${DOCKER_SOCKET:-/var/run/docker.sock}
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) [ $# -ge 2 ] || usage; listen=$2; shift 2 ;;
        --listen=*) listen=${1#--listen=}; shift ;;
        --socket) [ $# -ge 2 ] || usage; socket=$2; shift 2 ;;
        --socket=*) socket=${1#--socket=}; shift ;;
        -h|--help) usage ;;
        *) die "unknown argument: $1" ;;
    esac
done

case "$listen" in
    *:[0-9]*) ;;
    *) die "--listen must be host:port, got '$listen'" ;;
esac
port=${listen##*:}
host=${listen%:*}
# Where curl checks health. A wildcard bind is reached via loopback.
case "$host" in
    ''|'*'|0.0.0.0|'::'|'[::]') probe_host=127.0.0.1 ;;
    *) probe_host=$host ;;
esac
probe_url="http://$probe_host:$port/_ping"

rundir="${XDG_RUNTIME_DIR:-/tmp}/flotilla-proxy-$port"
pidfile="$rundir/haproxy.pid"
logfile="$rundir/haproxy.log"

ensure_haproxy() {
    command -v haproxy >/dev/null 2>&1 && return 0
    say "haproxy is not installed; installing Debian's package"
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=sudo
        else
            die "haproxy is missing and this user cannot install it (not root, no password-less sudo). Run as root: apt-get install haproxy"
        fi
    fi
    # Try first without `apt-get update`. Package lists that are already there are
    # usually enough, and this saves a round trip to the mirror.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null; } \
        || die "apt-get install haproxy failed"
    # Debian's package may start its own service with /etc/haproxy/haproxy.cfg. That
    # config binds no port, and this script never uses it.
}

# The pid file alone is not trusted: after a reboot or a crash, its pid may belong to
# something else.
running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(head -n1 "$pidfile" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = haproxy ] || return 1
    echo "$pid"
}

ping_ok() {
    [ "$(curl -fsS --max-time 2 "$probe_url" 2>/dev/null)" = OK ]
}

haproxy_env() {
    # The section flags under the names the upstream proxy uses, read by env() in
    # the cfg.
    env PROXY_LISTEN="$listen" DOCKER_SOCKET="$socket" \
        PROXY_IDLE_TIMEOUT="${PROXY_IDLE_TIMEOUT:-10m}" \
        PROXY_EVENTS_TIMEOUT="${PROXY_EVENTS_TIMEOUT:-24d}" \
        PROXY_LOG_LEVEL="${PROXY_LOG_LEVEL:-info}" \
        CONTAINERS="${PROXY_CONTAINERS:-1}" POST="${PROXY_POST:-1}" \
        EVENTS="${PROXY_EVENTS:-1}" IMAGES="${PROXY_IMAGES:-1}" \
        PING="${PROXY_PING:-1}" VERSION="${PROXY_VERSION:-1}" \
        "$@"
}

wait_ready() {
    local i
    # About 10 s. HAProxy starts in milliseconds, so a longer wait means something
    # is wrong (the daemon is down, or the port belongs to another program).
    for i in $(seq 1 100); do
        if ping_ok; then return 0; fi
        if [ "$i" -gt 10 ] && ! running_pid >/dev/null; then break; fi
        sleep 0.1
    done
    echo "proxy: $probe_url did not answer OK. Last lines of $logfile:" >&2
    tail -n 20 "$logfile" >&2 2>/dev/null || true
    return 1
}

start() {
    ensure_haproxy
    local pid
    if pid=$(running_pid); then
        wait_ready || die "haproxy (pid $pid) is running but $probe_url does not answer"
        say "already running on $listen (pid $pid)"
        return 0
    fi
    rm -f "$pidfile"
    [ -S "$socket" ] || die "$socket is not a socket (is the Docker daemon running? set DOCKER_SOCKET or --socket)"
    if [ ! -r "$socket" ] || [ ! -w "$socket" ]; then
        die "no read/write access to $socket (run as root or as a member of the docker group)"
    fi
    mkdir -p "$rundir"
    chmod 700 "$rundir"
    haproxy_env haproxy -c -q -f "$cfg" || die "haproxy rejected $cfg"
    # -W -db: master-worker in the foreground. The master writes the pid file, so
    # the pid is right even when setsid forks. setsid takes the proxy out of the
    # caller's process group, so a Ctrl-C in make or the end of a CI step does not
    # kill it; `stop` does. Access log lines go to the log file.
    : >>"$logfile"
    haproxy_env setsid haproxy -W -db -p "$pidfile" -f "$cfg" >>"$logfile" 2>&1 </dev/null &
    if ! wait_ready; then
        stop >/dev/null 2>&1 || true
        die "haproxy did not come up on $listen"
    fi
    say "listening on $listen -> $socket (pid $(running_pid), log $logfile)"
    say "use: export DOCKER_HOST=tcp://$probe_host:$port"
}

stop() {
    local pid i
    if ! pid=$(running_pid); then
        rm -f "$pidfile"
        say "not running on $listen"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    say "stopped (was pid $pid on $listen)"
}

status() {
    local pid
    if pid=$(running_pid) && ping_ok; then
        say "running on $listen (pid $pid), $probe_url OK, log $logfile"
        return 0
    elif [ -n "${pid:-}" ]; then
        say "haproxy pid $pid is running but $probe_url does not answer OK"
        return 3
    fi
    say "not running on $listen"
    return 3
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    env) echo "export DOCKER_HOST=tcp://$probe_host:$port" ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (start|stop|restart|status|env)" ;;
esac
