#!/usr/bin/env bash
# A local XRootD server that behaves like an HSM / CERN CTA tape front end, for
# the cold tier's `xrootd` backend (nlds-storage/src/cold/xrootd/) and its
# tests. Debian's xrootd-server + xrootd-client 5.5 (installed if missing).
#
#   scripts/xrootd.sh [start]   install if needed, start if not answering, print the URL
#   scripts/xrootd.sh url       print the URL and exit 0 if the server answers (never starts it)
#   scripts/xrootd.sh stop      stop what `start` started
#   scripts/xrootd.sh restart
#
# The export is root://127.0.0.1:$PORT//tape. Last line of `start`:
#   export NLDS_TEST_XROOTD_URL='root://127.0.0.1:1094//tape'
#
# How it behaves (all state under $NLDS_XROOTD_DIR, default /var/tmp/nlds-xrootd):
#   disk/    the disk cache (oss.localroot): a file here is *online*.
#   tape/    the "tape" (the mass-storage system behind oss.msscmd).
#   A file that is only on tape is *offline*: `xrdfs stat` reports the Offline
#   flag (and Other): the export is `stage nodread check`, so XrdOss asks
#   `oss.msscmd ... statx` when the disk copy is missing and flags the answer
#   offline (5.5 ignores oss.msscmd unless a path has check, dread or rcreate).
#   Staging brings it back:
#     - `xrdfs HOST prepare -s PATH` -> the generic prepare plugin
#       (ofs.preplib libXrdOfsPrepGPI) runs `hsm-prep ... stage PATH`, which
#       recalls tape -> disk in the background (`hsm-recall`, in a session of
#       its own: xrootd kills the program's process group when it returns)
#       after $NLDS_XROOTD_STAGE_DELAY s (tape latency; copied aside, then
#       renamed, so a file is never online half-copied);
#     - opening an offline file (export option `stage`) -> `oss.stagecmd`
#       (`hsm-stage`) does the same recall synchronously while the client waits.
#   `xrdfs HOST prepare -e PATH` (evict) -> `hsm-prep ... evict PATH`: copies
#   the disk copy to tape (migration happens here, lazily) and drops the disk
#   copy, so the file goes offline. Evict is asynchronous: poll stat.
#   `xrdfs rm` removes both copies (XrdOss calls `msscmd rm`), `xrdfs mv`
#   renames both (`msscmd mv`). `xrootd.chksum adler32` answers
#   `xrdfs HOST query checksum PATH` for online files (offline: "no such file").
#   `xrdfs ls` lists the disk cache only (nodread: listing through the msscmd's
#   `dlist` returns garbage names in 5.5).
#   Logs: $DIR/log/nlds/xrootd.log (server), $DIR/log/hsm.log (tape emulator).
#
# Loopback only: xrootd 5.5 has no directive to bind one address (it always
# listens on the wildcard address). So it runs inside its own network namespace
# (`unshare -n`, only `lo` up), where "all interfaces" means loopback, and a
# pair of socat relays joins the two loopbacks through a unix socket (unix
# sockets are not network-namespaced): host 127.0.0.1:$PORT -> unix socket ->
# namespace 127.0.0.1:$PORT. Clients need no privileges and no wrapper. (The
# alternative, running every xrdcp/xrdfs under `nsenter --net=/proc/PID/ns/net`,
# needs root in every client; XrootdConfig.command_prefix still allows it.)
# xrootd refuses to run as root: it and the relays run as the Debian package's
# system user `xrootd` (or $NLDS_XROOTD_USER).
#
# Idempotent: a server that already answers is only confirmed. Needs root to
# install or start. Overridable: NLDS_XROOTD_PORT (1094), NLDS_XROOTD_DIR,
# NLDS_XROOTD_USER (xrootd), NLDS_XROOTD_STAGE_DELAY (seconds, 3; re-read at
# every recall, edit $DIR/etc/hsm.conf to change it live), NLDS_SVC_TIMEOUT (60).
set -euo pipefail

PORT="${NLDS_XROOTD_PORT:-1094}"
DIR="${NLDS_XROOTD_DIR:-/var/tmp/nlds-xrootd}"
XUSER="${NLDS_XROOTD_USER:-xrootd}"
STAGE_DELAY="${NLDS_XROOTD_STAGE_DELAY:-3}"
TIMEOUT="${NLDS_SVC_TIMEOUT:-60}"
HOSTPORT="127.0.0.1:$PORT"
URL="root://$HOSTPORT//tape"

log() { printf '[xrootd] %s\n' "$*" >&2; }
fail() {
    printf '[xrootd] FAILED: %s\n' "$*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# answers: the server is up and serves the export.
answers() {
    command -v xrdfs >/dev/null 2>&1 &&
        XRD_CONNECTIONWINDOW=3 XRD_CONNECTIONRETRY=1 XRD_REQUESTTIMEOUT=5 \
            timeout 10 xrdfs "$HOSTPORT" stat /tape >/dev/null 2>&1
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }

install_pkgs() {
    local need=()
    command -v xrootd >/dev/null 2>&1 || need+=(xrootd-server)
    command -v xrdcp >/dev/null 2>&1 || need+=(xrootd-client)
    command -v socat >/dev/null 2>&1 || need+=(socat)
    command -v unshare >/dev/null 2>&1 || need+=(util-linux)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    [ "${#need[@]}" -eq 0 ] && return
    is_root || fail "must run as root to install: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install ${need[*]}"
    apt-get update -qq
    # policy-rc.d keeps the package from starting its own (all-interfaces) service.
    local made_policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${need[@]}" || rc=$?
    [ "$made_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || fail "apt-get install ${need[*]} (exit $rc)"
}

ensure_user() {
    if ! id -u "$XUSER" >/dev/null 2>&1; then
        log "creating system user $XUSER"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$XUSER"
    fi
}

# The tape emulator: one script, four roles picked by the name it is run as.
write_hsm() {
    cat >"$DIR/bin/nlds-hsm" <<'HSM'
#!/bin/bash
# nlds-rs tape emulator behind XRootD (written by scripts/xrootd.sh).
#   hsm-mss CMD PATH [PATH2]   oss.msscmd: the tape's namespace (statx, exists, rm, mv, ...)
#   hsm-stage RFN PFN          oss.stagecmd: recall on open (synchronous)
#   hsm-prep [opts] -- REQID ACTION PATH...   ofs.preplib GPI: stage (async) / evict
#   hsm-recall LFN             a background recall started by hsm-prep
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=/dev/null
. "$ROOT/etc/hsm.conf"
DISK="$ROOT/disk"
TAPE="$ROOT/tape"
SPOOL="$ROOT/spool"
LOGF="$ROOT/log/hsm.log"
log() { printf '%s %s[%s] %s\n' "$(date -u +%FT%TZ)" "${0##*/}" "$$" "$*" >>"$LOGF"; }

# recall SRC DST: copy tape -> disk after the tape delay; never half-visible.
recall() {
    local src="$1" dst="$2" tmp
    [ -f "$dst" ] && return 0
    [ -f "$src" ] || { log "recall: not on tape: $src"; return 2; }
    sleep "${STAGE_DELAY:-0}"
    [ -f "$dst" ] && return 0
    tmp="$(mktemp "$SPOOL/recall.XXXXXX")" || return 5
    if cp "$src" "$tmp" && mkdir -p "$(dirname "$dst")" && mv -f "$tmp" "$dst"; then
        log "recalled $src -> $dst"
        return 0
    fi
    rm -f "$tmp"
    log "recall failed: $src"
    return 5
}

# evict LFN: migrate the disk copy to tape (if any), then drop it.
evict() {
    local lfn="$1" tmp
    [ -f "$DISK$lfn" ] || { log "evict: not on disk: $lfn"; return 0; }
    tmp="$(mktemp "$SPOOL/migrate.XXXXXX")" || return 5
    if cp "$DISK$lfn" "$tmp" && mkdir -p "$(dirname "$TAPE$lfn")" && mv -f "$tmp" "$TAPE$lfn"; then
        rm -f "$DISK$lfn"
        log "evicted $lfn"
        return 0
    fi
    rm -f "$tmp"
    log "evict failed: $lfn"
    return 5
}

case "${0##*/}" in
hsm-mss)
    # Protocol: first output line is 0 or -errno; statx then prints
    # "<type> <rwxrwxrwx> <nlink> <uid> <gid> <atime> <ctime> <mtime> <size> <blksize> <blocks>".
    cmd="${1:-}" p="${2:-}"
    t="$TAPE$p"
    case "$cmd" in
    statx)
        if [ -e "$t" ]; then
            echo 0
            ty=f
            [ -d "$t" ] && ty=d
            stat -c "$ty %A %h %u %g %X %Z %Y %s %o %b" "$t" | sed 's/^\(.\) ./\1 /'
        else echo -2; fi
        ;;
    exists) if [ -e "$t" ]; then echo 0; else echo -2; fi ;;
    rm)
        if [ -f "$t" ]; then rm -f "$t" && echo 0 || echo -5; else echo -2; fi
        log "rm $p"
        ;;
    mv)
        if [ -f "$t" ]; then
            mkdir -p "$(dirname "$TAPE${3:-}")" && mv -f "$t" "$TAPE${3:-}" && echo 0 || echo -5
        else echo -2; fi
        log "mv $p ${3:-}"
        ;;
    dlist)
        if [ -d "$t" ]; then echo 0; ls -1A "$t"; else echo -2; fi
        ;;
    mkdir) mkdir -p "$t" && echo 0 || echo -5 ;;
    rmdir) rmdir "$t" 2>/dev/null; echo 0 ;;
    create | chmod | truncate) echo 0 ;;
    *)
        log "unsupported msscmd: $*"
        echo -38
        ;;
    esac
    ;;
hsm-stage)
    log "stagecmd $*"
    recall "$TAPE$1" "$2"
    ;;
hsm-recall)
    recall "$TAPE$1" "$DISK$1"
    ;;
hsm-prep)
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done
    [ $# -gt 0 ] && shift
    reqid="${1:-}" action="${2:-}"
    shift 2 || exit 0
    log "prepare $action $reqid $*"
    case "$action" in
    stage | prep)
        for p in "$@"; do
            # Its own session: xrootd kills the prepare program's process group
            # when the program exits.
            setsid -f "$ROOT/bin/hsm-recall" "${p%%\?*}" </dev/null >/dev/null 2>&1
        done
        ;;
    evict)
        for p in "$@"; do evict "${p%%\?*}"; done
        ;;
    esac
    exit 0
    ;;
*)
    echo "run as hsm-mss, hsm-stage, hsm-prep or hsm-recall" >&2
    exit 2
    ;;
esac
HSM
    chmod 0755 "$DIR/bin/nlds-hsm"
    local r
    for r in hsm-mss hsm-stage hsm-prep hsm-recall; do ln -sfn nlds-hsm "$DIR/bin/$r"; done
    printf 'STAGE_DELAY=%s\n' "$STAGE_DELAY" >"$DIR/etc/hsm.conf"
}

write_config() {
    cat >"$DIR/etc/xrootd.cfg" <<EOF
# XRootD as a tape (HSM / CTA-like) front end for nlds-rs tests (scripts/xrootd.sh).
all.adminpath $DIR/run
all.pidpath $DIR/run
xrd.port $PORT
# Files live on the disk cache; those not there are looked up on "tape".
# nodread: directory listings come from the disk cache (listing through the
# msscmd's dlist returns garbage names in 5.5); check: without it (or dread)
# 5.5 ignores oss.msscmd, and offline files would not exist.
oss.localroot $DIR/disk
all.export /tape stage nodread check
oss.msscmd $DIR/bin/hsm-mss
oss.stagecmd $DIR/bin/hsm-stage
# prepare -s (stage) and -e (evict) go to a program through the generic prepare plugin.
ofs.preplib libXrdOfsPrepGPI.so -admit stage,evict -run $DIR/bin/hsm-prep
xrootd.chksum adler32
EOF
}

pidof_file() { [ -f "$1" ] && cat "$1" 2>/dev/null || true; }

# ours PID: PID still runs a program this script starts (a recycled pid is left alone).
ours() {
    case "$(ps -o comm= -p "$1" 2>/dev/null)" in
    xrootd | socat) return 0 ;;
    *) return 1 ;;
    esac
}

stop_server() {
    local f pid left=()
    for f in "$DIR/run/relay-host.pid" "$DIR/run/relay-ns.pid" "$DIR/run/server.pid"; do
        pid="$(pidof_file "$f")"
        if [ -n "$pid" ] && ours "$pid"; then
            log "stopping pid $pid ($(basename "$f" .pid))"
            kill "$pid" 2>/dev/null || true
            left+=("$pid")
        fi
        rm -f "$f"
    done
    rm -f "$DIR/run/xrootd.sock"
    local waited=0
    for pid in "${left[@]}"; do
        while ours "$pid" && [ "$waited" -lt 50 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
    done
}

start_server() {
    is_root || fail "the server is not answering on $HOSTPORT and starting it needs root"
    ensure_user
    if port_open; then
        # Something else holds the port (or a half-started server of ours).
        stop_server
        port_open && fail "127.0.0.1:$PORT is taken by another program"
    else
        stop_server
    fi
    mkdir -p "$DIR"/{bin,etc,run,log,disk/tape,tape/tape,spool}
    write_hsm
    write_config
    chown -R "$XUSER:" "$DIR"
    chmod 0755 "$DIR"

    local as=(setpriv "--reuid=$XUSER" "--regid=$(id -g "$XUSER")" --init-groups --)
    log "starting xrootd in a private network namespace as $XUSER (log: $DIR/log/nlds/xrootd.log)"
    # unshare execs bash, which execs xrootd: the recorded pid is xrootd's and
    # /proc/PID/ns/net is the namespace. The in-namespace relay is started first.
    setsid nohup unshare -n -- bash -c '
        set -e
        ip link set lo up
        "${@:4}" socat "UNIX-LISTEN:$1/run/xrootd.sock,fork,backlog=128,mode=0600" "TCP:127.0.0.1:$2" \
            >>"$1/log/relay-ns.log" 2>&1 </dev/null &
        echo $! >"$1/run/relay-ns.pid"
        exec "${@:4}" xrootd -c "$1/etc/xrootd.cfg" -l "$1/log/xrootd.log" -n "$3"
    ' nlds-xrootd "$DIR" "$PORT" nlds "${as[@]}" >>"$DIR/log/server.out" 2>&1 </dev/null &
    echo $! >"$DIR/run/server.pid"

    local waited=0
    until [ -S "$DIR/run/xrootd.sock" ]; do
        [ "$waited" -ge 20 ] && fail "in-namespace relay did not come up (see $DIR/log/server.out)"
        sleep 0.5
        waited=$((waited + 1))
    done
    setsid nohup "${as[@]}" socat "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr,fork,backlog=128" \
        "UNIX-CONNECT:$DIR/run/xrootd.sock" >>"$DIR/log/relay-host.log" 2>&1 </dev/null &
    echo $! >"$DIR/run/relay-host.pid"

    local deadline=$((SECONDS + TIMEOUT))
    until answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$DIR/log/xrootd.log" "$DIR/log/server.out" >&2 2>/dev/null || true
            fail "xrootd did not answer on $HOSTPORT within ${TIMEOUT}s (see $DIR/log/)"
        fi
        sleep 1
    done
    log "OK   $URL (started; tape delay ${STAGE_DELAY}s; state in $DIR)"
}

case "${1:-start}" in
url)
    answers || exit 1
    echo "$URL"
    ;;
stop) stop_server ;;
start | restart)
    install_pkgs
    if [ "${1:-start}" = restart ]; then
        is_root || fail "restart needs root"
        stop_server
    fi
    if answers; then
        # Refresh the tape emulator (and its delay): it is read at every call.
        if is_root && [ -d "$DIR/bin" ]; then
            write_hsm
            chown -R "$XUSER:" "$DIR/bin" "$DIR/etc"
        fi
        log "OK   $URL (already running; tape delay ${STAGE_DELAY}s)"
    else
        start_server
    fi
    echo "export NLDS_TEST_XROOTD_URL='$URL'"
    ;;
*) fail "usage: $0 [start|url|stop|restart]" ;;
esac
