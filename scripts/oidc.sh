#!/usr/bin/env bash
# The OpenID Connect provider nlds-rs's tests and CI run: npm `oidc-provider`
# configured by scripts/oidc/provider.mjs (accounts, clients, claims and the
# test-only routes are described at the top of that file and in docs/AUTH.md).
# TEST INFRASTRUCTURE: loopback only, tokens in memory, /test/* mints tokens.
#
#   scripts/oidc.sh [start]   install if needed, start if not answering, print exports
#   scripts/oidc.sh url       print the issuer and exit 0 if it answers (never starts it)
#   scripts/oidc.sh env       print the test environment (exit 1 if not answering)
#   scripts/oidc.sh stop      stop what `start` started
#   scripts/oidc.sh restart
#
# Last lines of `start` / the output of `env`:
#   export NLDS_TEST_OIDC_ISSUER='http://127.0.0.1:9400'
#   export NLDS_TEST_OIDC_SECRETS_DIR='/root/.cache/nlds-oidc/secrets'
# (the secrets directory holds nlds-service.secret and nlds-server.secret, mode 0600).
#
# The npm packages (scripts/oidc/package.json + package-lock.json, installed
# with `npm ci`) live in $NLDS_OIDC_DIR/node_modules, reinstalled when the lock
# file changes. State (signing keys, client secrets, log, pid) lives in
# $NLDS_OIDC_DIR. Node.js >= 20 is required (installed with apt when missing).
#
# Idempotent: a provider that already answers is only confirmed. Overridable:
# NLDS_OIDC_PORT (9400), NLDS_OIDC_DIR ($HOME/.cache/nlds-oidc),
# NLDS_OIDC_ACCESS_TOKEN_TTL (600), NLDS_SVC_TIMEOUT (60).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/oidc"
PORT="${NLDS_OIDC_PORT:-9400}"
DIR="${NLDS_OIDC_DIR:-$HOME/.cache/nlds-oidc}"
TIMEOUT="${NLDS_SVC_TIMEOUT:-60}"
ISSUER="http://127.0.0.1:$PORT"
LOG="$DIR/provider.log"
PIDFILE="$DIR/provider.pid"

log() { printf '[oidc] %s\n' "$*" >&2; }
fail() {
    printf '[oidc] FAILED: %s\n' "$*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# answers: the discovery document is served and names our issuer.
answers() {
    curl -fsS --max-time 5 "$ISSUER/.well-known/openid-configuration" 2>/dev/null |
        grep -q "\"issuer\":\"$ISSUER\""
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }

print_env() {
    echo "export NLDS_TEST_OIDC_ISSUER='$ISSUER'"
    echo "export NLDS_TEST_OIDC_SECRETS_DIR='$DIR/secrets'"
}

node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ]
}

install_node() {
    node_ok && return
    is_root || fail "Node.js >= 20 with npm is required (and installing it needs root)"
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install nodejs npm"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
        fail "apt-get install nodejs npm failed"
    node_ok || fail "Node.js $(node --version 2>/dev/null || echo none) is too old: oidc-provider needs >= 20"
}

# install_packages: `npm ci` into $DIR when the committed lock file changed.
INSTALLED=0
install_packages() {
    mkdir -p "$DIR"
    if [ -d "$DIR/node_modules/oidc-provider" ] && cmp -s "$SRC/package-lock.json" "$DIR/package-lock.json"; then
        return
    fi
    INSTALLED=1
    log "npm ci (oidc-provider) into $DIR (log: $DIR/npm.log)"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$DIR/"
    (cd "$DIR" && npm ci --no-audit --no-fund --omit=dev) >>"$DIR/npm.log" 2>&1 ||
        fail "npm ci in $DIR failed (see $DIR/npm.log)"
}

ours() {
    [ -n "$1" ] && [ "$(ps -o comm= -p "$1" 2>/dev/null)" = node ]
}

stop_provider() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if ours "$pid"; then
        log "stopping pid $pid"
        kill "$pid" 2>/dev/null || true
        local waited=0
        while ours "$pid" && [ "$waited" -lt 50 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    rm -f "$PIDFILE"
}

start_provider() {
    stop_provider
    port_open && fail "127.0.0.1:$PORT is taken by a program that is not our provider"
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    log "starting node $SRC/provider.mjs on 127.0.0.1:$PORT (log: $LOG)"
    # setsid + nohup: keep running after this script (and CI's shell) exits.
    NLDS_OIDC_PORT="$PORT" NLDS_OIDC_HOST=127.0.0.1 NLDS_OIDC_ISSUER="$ISSUER" NLDS_OIDC_DIR="$DIR" \
        setsid nohup node "$SRC/provider.mjs" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local deadline=$((SECONDS + TIMEOUT))
    until answers; do
        if ! ours "$(cat "$PIDFILE")"; then
            tail -n 20 "$LOG" >&2 || true
            fail "the provider exited (see $LOG)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$LOG" >&2 || true
            fail "the provider did not answer on $ISSUER within ${TIMEOUT}s (see $LOG)"
        fi
        sleep 0.5
    done
    log "OK   $ISSUER (started, pid $(cat "$PIDFILE"))"
}

case "${1:-start}" in
url)
    answers || exit 1
    echo "$ISSUER"
    ;;
env)
    answers || exit 1
    print_env
    ;;
stop) stop_provider ;;
start | restart)
    install_node
    install_packages
    # A provider running on packages that were just replaced is restarted.
    if [ "${1:-start}" = restart ] || [ "$INSTALLED" -eq 1 ]; then stop_provider; fi
    if answers; then
        log "OK   $ISSUER (already running)"
    else
        start_provider
    fi
    print_env
    ;;
*) fail "usage: $0 [start|url|env|stop|restart]" ;;
esac
