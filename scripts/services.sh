#!/usr/bin/env bash
# Start (and if needed install) the local services that nlds-rs's integration
# tests and distributed mode talk to, all on loopback only:
#
#   RabbitMQ    127.0.0.1:5672   guest/guest
#   PostgreSQL  127.0.0.1:5432   user postgres, trust auth on loopback
#   moto (S3)   127.0.0.1:9000   any credentials
#   XRootD      127.0.0.1:1094   tape front end for the cold tier (scripts/xrootd.sh)
#   OIDC        127.0.0.1:9400   OpenID provider for the OAuth2 tests (scripts/oidc.sh)
#
# and installs the published Python client (nlds-client, the `nlds` command)
# into its own venv, for the legacy-API compatibility tests, schemathesis (the
# API fuzzer of scripts/fuzz-api.sh) into another, and cargo-machete (unused
# dependencies, run by .ci/run) with `cargo install --locked`.
#
# Idempotent: services that already answer are only confirmed. Meant to be run
# (not sourced), as root when something has to be installed or configured. It
# exports nothing; at the end it prints the environment lines the tests need.
# Exits non-zero naming the first service that did not come up.
#
# Overridable: NLDS_SVC_TIMEOUT (seconds per service, default 90),
# NLDS_MOTO_PORT (default 9000), NLDS_MOTO_VERSION (default below),
# NLDS_VENV (default $HOME/.cache/nlds-venv), NLDS_SVC_LOG_DIR,
# NLDS_PYCLIENT_VENV (default $HOME/.cache/nlds-pyclient),
# NLDS_CARGO_MACHETE_VERSION (default below),
# NLDS_SCHEMATHESIS_VENV (default $HOME/.cache/nlds-schemathesis),
# NLDS_SMTP_VENV (default $HOME/.cache/nlds-smtp).
set -euo pipefail

TIMEOUT="${NLDS_SVC_TIMEOUT:-90}"
AMQP_PORT=5672
PG_PORT=5432
MOTO_PORT="${NLDS_MOTO_PORT:-9000}"
MOTO_VERSION="${NLDS_MOTO_VERSION:-5.2.5}"
# Validates the server's OpenAPI document (nlds-server's openapi test runs it); in moto's venv.
OPENAPI_VALIDATOR_VERSION=0.9.0
VENV="${NLDS_VENV:-$HOME/.cache/nlds-venv}"
LOG_DIR="${NLDS_SVC_LOG_DIR:-$HOME/.cache/nlds-services}"
# The published Python client pins exact versions of its dependencies, so it
# gets a venv of its own (never the moto one).
PYCLIENT_VERSION=1.0.17
PYCLIENT_VENV="${NLDS_PYCLIENT_VENV:-$HOME/.cache/nlds-pyclient}"
CARGO_MACHETE_VERSION="${NLDS_CARGO_MACHETE_VERSION:-0.9.2}"
# The API fuzzer (scripts/fuzz-api.sh), in a venv of its own: it pins its own dependencies.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${NLDS_SCHEMATHESIS_VENV:-$HOME/.cache/nlds-schemathesis}"
# The SMTP sink of the notification tests (each test starts its own on a free port).
AIOSMTPD_VERSION=1.4.6
SMTP_VENV="${NLDS_SMTP_VENV:-$HOME/.cache/nlds-smtp}"

# Local endpoints only: a global CA bundle must not leak into anything we start.
unset AWS_CA_BUNDLE

log() { printf '[services] %s\n' "$*"; }
fail() {
    printf '[services] FAILED: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_port NAME PORT: wait up to $TIMEOUT s for the port, or fail naming NAME.
wait_port() {
    local name="$1" port="$2" waited=0
    until port_open "$port"; do
        if [ "$waited" -ge "$TIMEOUT" ]; then
            fail "$name did not come up on 127.0.0.1:$port within ${TIMEOUT}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

APT_UPDATED=0
apt_install() {
    is_root || fail "must run as root to install: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # policy-rc.d (exit 101) keeps the packages from starting their services
    # with default (all-interfaces) settings before we configure them.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "$@" || rc=$?
    if [ "$made_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$rc" -eq 0 ] || fail "apt-get install $* (exit $rc)"
}

mkdir -p "$LOG_DIR"

# ---------------------------------------------------------------- install
need_pkgs=()
command -v rabbitmq-server >/dev/null 2>&1 || need_pkgs+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
# Headless Chromium (and its WebDriver) for the status page's browser test (it/status_page.rs).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    apt_install "${need_pkgs[@]}"
fi
# Prometheus and promtool: the metrics tests start one on loopback (nlds-embedded tests/it/
# metrics.rs) and the chart's alert rules are checked and unit-tested with promtool
# (charts/nlds/ci/check.sh). Not started as a service (policy-rc.d above).
command -v promtool >/dev/null 2>&1 || apt_install prometheus

# ---------------------------------------------------------------- RabbitMQ
start_rabbitmq() {
    if port_open "$AMQP_PORT"; then
        # Already listening: just make sure the node finished booting.
        if ! rabbitmqctl -q await_startup --timeout "$TIMEOUT" >/dev/null 2>&1; then
            log "rabbitmq: port $AMQP_PORT answers but rabbitmqctl cannot reach the node (continuing)"
        fi
        log "rabbitmq:   OK   amqp://127.0.0.1:$AMQP_PORT (already running)"
        return
    fi
    is_root || fail "rabbitmq is not running and starting it needs root"
    mkdir -p /etc/rabbitmq
    # Loopback only. Leave existing settings alone if they already pin the
    # listener (as on the prepared machines); on a fresh install pin it.
    if ! grep -qsE '^[[:space:]]*listeners\.tcp\.' /etc/rabbitmq/rabbitmq.conf &&
        ! grep -qsE '^[[:space:]]*(export[[:space:]]+)?(RABBITMQ_)?NODE_IP_ADDRESS=' /etc/rabbitmq/rabbitmq-env.conf; then
        log "rabbitmq: pinning the AMQP listener to 127.0.0.1:$AMQP_PORT in /etc/rabbitmq"
        printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$AMQP_PORT" >>/etc/rabbitmq/rabbitmq.conf
        printf 'NODE_IP_ADDRESS=127.0.0.1\n' >>/etc/rabbitmq/rabbitmq-env.conf
    fi
    if ! grep -qsE '^[[:space:]]*(export[[:space:]]+)?(RABBITMQ_)?ERL_EPMD_ADDRESS=' /etc/rabbitmq/rabbitmq-env.conf; then
        printf 'ERL_EPMD_ADDRESS=127.0.0.1\n' >>/etc/rabbitmq/rabbitmq-env.conf
    fi
    log "rabbitmq: starting (rabbitmq-server -detached)"
    # epmd must listen on loopback only as well.
    ERL_EPMD_ADDRESS=127.0.0.1 rabbitmq-server -detached >>"$LOG_DIR/rabbitmq-start.log" 2>&1 ||
        fail "rabbitmq: rabbitmq-server -detached failed (see $LOG_DIR/rabbitmq-start.log)"
    # Right after -detached the node may not be registered with epmd yet, so
    # await_startup can fail at once: retry it until the deadline.
    local deadline=$((SECONDS + TIMEOUT))
    until rabbitmqctl -q await_startup --timeout 30 >>"$LOG_DIR/rabbitmq-start.log" 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "rabbitmq did not finish starting within ${TIMEOUT}s (see $LOG_DIR/rabbitmq-start.log)"
        fi
        sleep 2
    done
    wait_port rabbitmq "$AMQP_PORT"
    log "rabbitmq:   OK   amqp://127.0.0.1:$AMQP_PORT (started)"
}

# ---------------------------------------------------------------- PostgreSQL
pg_ok() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

start_postgres() {
    local ver cluster_conf hba state="already running"
    ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1 || true)"
    if ! port_open "$PG_PORT"; then
        is_root || fail "postgresql is not running and starting it needs root"
        if [ -z "$ver" ] || [ ! -d "/etc/postgresql/$ver/main" ]; then
            ver="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
            log "postgresql: creating cluster $ver/main"
            pg_createcluster "$ver" main >>"$LOG_DIR/postgresql-start.log" 2>&1 ||
                fail "postgresql: pg_createcluster $ver main failed"
        fi
        log "postgresql: starting cluster $ver/main"
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start >>"$LOG_DIR/postgresql-start.log" 2>&1 ||
            fail "postgresql: pg_ctlcluster $ver main start failed (see $LOG_DIR/postgresql-start.log)"
        wait_port postgresql "$PG_PORT"
        state="started"
    fi
    if ! pg_ok; then
        # Fresh Debian installs use scram-sha-256 on loopback: allow trust for
        # loopback TCP (tests connect as postgres without a password).
        is_root || fail "postgresql: psql -h 127.0.0.1 -U postgres fails and fixing pg_hba.conf needs root"
        cluster_conf="/etc/postgresql/$ver/main"
        hba="$cluster_conf/pg_hba.conf"
        [ -f "$hba" ] || fail "postgresql: cannot find $hba to enable trust auth on loopback"
        log "postgresql: enabling trust auth for 127.0.0.1 and ::1 in $hba"
        cp -n "$hba" "$hba.nlds-orig" || true
        {
            printf '# added by nlds-rs scripts/services.sh: trust on loopback for tests\n'
            printf 'host    all    all    127.0.0.1/32    trust\n'
            printf 'host    all    all    ::1/128         trust\n'
            grep -v '^# added by nlds-rs scripts/services.sh' "$hba" |
                grep -vE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+trust[[:space:]]*$' || true
        } >"$hba.new"
        chown --reference="$hba" "$hba.new"
        chmod --reference="$hba" "$hba.new"
        mv "$hba.new" "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >>"$LOG_DIR/postgresql-start.log" 2>&1 ||
            fail "postgresql: reload after editing pg_hba.conf failed"
        local waited=0
        until pg_ok; do
            [ "$waited" -ge 10 ] && fail "postgresql: still cannot connect as postgres on 127.0.0.1:$PG_PORT"
            sleep 1
            waited=$((waited + 1))
        done
    fi
    log "postgresql: OK   postgres://postgres@127.0.0.1:$PG_PORT ($state, $(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -w -d postgres -Atqc 'show server_version'))"
}

# ---------------------------------------------------------------- moto (S3)
ensure_moto_venv() {
    local have=""
    if [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/openapi-spec-validator" ]; then
        have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"), m.version("openapi-spec-validator"))' 2>/dev/null || true)"
    fi
    if [ "$have" = "$MOTO_VERSION $OPENAPI_VALIDATOR_VERSION" ]; then
        MOTO_BIN="$VENV/bin/moto_server"
        return
    fi
    log "moto: installing moto[server]==$MOTO_VERSION openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION into $VENV"
    if ! python3 -m venv "$VENV" >>"$LOG_DIR/moto-install.log" 2>&1; then
        apt_install python3-venv python3-pip
        python3 -m venv "$VENV" >>"$LOG_DIR/moto-install.log" 2>&1 || fail "moto: cannot create venv $VENV"
    fi
    if "$VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" \
        "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" >>"$LOG_DIR/moto-install.log" 2>&1; then
        MOTO_BIN="$VENV/bin/moto_server"
    elif command -v moto_server >/dev/null 2>&1; then
        log "moto: pip install failed (see $LOG_DIR/moto-install.log); falling back to $(command -v moto_server)"
        MOTO_BIN="$(command -v moto_server)"
    else
        fail "moto: pip install moto[server]==$MOTO_VERSION failed (see $LOG_DIR/moto-install.log)"
    fi
}

start_moto() {
    if port_open "$MOTO_PORT"; then
        log "moto (S3): OK   http://127.0.0.1:$MOTO_PORT (already running)"
        return
    fi
    MOTO_BIN=""
    ensure_moto_venv
    log "moto: starting $MOTO_BIN -H 127.0.0.1 -p $MOTO_PORT (log: $LOG_DIR/moto.log)"
    # setsid + nohup: keep running after this script (and CI's shell) exits.
    setsid nohup env -u AWS_CA_BUNDLE "$MOTO_BIN" -H 127.0.0.1 -p "$MOTO_PORT" \
        >>"$LOG_DIR/moto.log" 2>&1 </dev/null &
    echo $! >"$LOG_DIR/moto.pid"
    wait_port "moto (S3)" "$MOTO_PORT"
    # Port is open; make sure it really speaks S3 (ListBuckets).
    local waited=0
    until curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/"; do
        [ "$waited" -ge "$TIMEOUT" ] && fail "moto (S3) listens on $MOTO_PORT but does not answer HTTP"
        sleep 1
        waited=$((waited + 1))
    done
    log "moto (S3): OK   http://127.0.0.1:$MOTO_PORT (started, pid $(cat "$LOG_DIR/moto.pid"))"
}

# ---------------------------------------------------------------- nlds-client (Python)
pyclient_version() {
    "$PYCLIENT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("nlds-client"))' 2>/dev/null || true
}

ensure_pyclient_venv() {
    local have=""
    if [ -x "$PYCLIENT_VENV/bin/nlds" ]; then
        have="$(pyclient_version)"
    fi
    if [ "$have" = "$PYCLIENT_VERSION" ]; then
        log "nlds-client: OK   $PYCLIENT_VENV/bin/nlds (nlds-client $have, already installed)"
        return
    fi
    log "nlds-client: installing nlds-client==$PYCLIENT_VERSION into $PYCLIENT_VENV (log: $LOG_DIR/pyclient-install.log)"
    if ! python3 -m venv "$PYCLIENT_VENV" >>"$LOG_DIR/pyclient-install.log" 2>&1; then
        apt_install python3-venv python3-pip
        python3 -m venv "$PYCLIENT_VENV" >>"$LOG_DIR/pyclient-install.log" 2>&1 ||
            fail "nlds-client: cannot create venv $PYCLIENT_VENV"
    fi
    # nlds-client 1.0.17 requires Python >= 3.10: pip says so in the log.
    "$PYCLIENT_VENV/bin/pip" install -q "nlds-client==$PYCLIENT_VERSION" >>"$LOG_DIR/pyclient-install.log" 2>&1 ||
        fail "nlds-client: pip install nlds-client==$PYCLIENT_VERSION failed (see $LOG_DIR/pyclient-install.log)"
    have="$(pyclient_version)"
    [ "$have" = "$PYCLIENT_VERSION" ] ||
        fail "nlds-client: $PYCLIENT_VENV holds nlds-client '${have:-none}' after installing $PYCLIENT_VERSION"
    # The tests run the `nlds` script and decrypt /init/ with the venv's cryptography.
    "$PYCLIENT_VENV/bin/nlds" --version >>"$LOG_DIR/pyclient-install.log" 2>&1 ||
        fail "nlds-client: $PYCLIENT_VENV/bin/nlds --version fails (see $LOG_DIR/pyclient-install.log)"
    "$PYCLIENT_VENV/bin/python" -c 'import cryptography.fernet' >>"$LOG_DIR/pyclient-install.log" 2>&1 ||
        fail "nlds-client: cryptography is missing from $PYCLIENT_VENV"
    log "nlds-client: OK   $PYCLIENT_VENV/bin/nlds (nlds-client $have, installed)"
}

# ---------------------------------------------------------------- aiosmtpd (SMTP sink)
ensure_aiosmtpd() {
    local have=""
    if [ -x "$SMTP_VENV/bin/python" ]; then
        have="$("$SMTP_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aiosmtpd"))' 2>/dev/null || true)"
    fi
    if [ "$have" = "$AIOSMTPD_VERSION" ]; then
        log "aiosmtpd: OK   $SMTP_VENV/bin/python ($have, already installed)"
        return
    fi
    log "aiosmtpd: installing aiosmtpd==$AIOSMTPD_VERSION into $SMTP_VENV (log: $LOG_DIR/aiosmtpd-install.log)"
    if ! python3 -m venv "$SMTP_VENV" >>"$LOG_DIR/aiosmtpd-install.log" 2>&1; then
        apt_install python3-venv python3-pip
        python3 -m venv "$SMTP_VENV" >>"$LOG_DIR/aiosmtpd-install.log" 2>&1 ||
            fail "aiosmtpd: cannot create venv $SMTP_VENV"
    fi
    "$SMTP_VENV/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" >>"$LOG_DIR/aiosmtpd-install.log" 2>&1 ||
        fail "aiosmtpd: pip install aiosmtpd==$AIOSMTPD_VERSION failed (see $LOG_DIR/aiosmtpd-install.log)"
    "$SMTP_VENV/bin/python" -m aiosmtpd --version >>"$LOG_DIR/aiosmtpd-install.log" 2>&1 ||
        fail "aiosmtpd: $SMTP_VENV/bin/python -m aiosmtpd --version fails (see $LOG_DIR/aiosmtpd-install.log)"
    log "aiosmtpd: OK   $SMTP_VENV/bin/python (installed)"
}

# ---------------------------------------------------------------- schemathesis
ensure_schemathesis() {
    local have=""
    if [ -x "$SCHEMATHESIS_VENV/bin/st" ]; then
        have="$("$SCHEMATHESIS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)"
    fi
    if [ "$have" = "$SCHEMATHESIS_VERSION" ]; then
        log "schemathesis: OK   $SCHEMATHESIS_VENV/bin/st ($have, already installed)"
        return
    fi
    log "schemathesis: installing schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV (log: $LOG_DIR/schemathesis-install.log)"
    if ! python3 -m venv "$SCHEMATHESIS_VENV" >>"$LOG_DIR/schemathesis-install.log" 2>&1; then
        apt_install python3-venv python3-pip
        python3 -m venv "$SCHEMATHESIS_VENV" >>"$LOG_DIR/schemathesis-install.log" 2>&1 ||
            fail "schemathesis: cannot create venv $SCHEMATHESIS_VENV"
    fi
    "$SCHEMATHESIS_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >>"$LOG_DIR/schemathesis-install.log" 2>&1 ||
        fail "schemathesis: pip install schemathesis==$SCHEMATHESIS_VERSION failed (see $LOG_DIR/schemathesis-install.log)"
    "$SCHEMATHESIS_VENV/bin/st" --version >>"$LOG_DIR/schemathesis-install.log" 2>&1 ||
        fail "schemathesis: $SCHEMATHESIS_VENV/bin/st --version fails (see $LOG_DIR/schemathesis-install.log)"
    log "schemathesis: OK   $SCHEMATHESIS_VENV/bin/st ($SCHEMATHESIS_VERSION, installed)"
}

# ---------------------------------------------------------------- XRootD (tape)
# An HSM-like XRootD tape front end for the cold tier's xrootd backend, loopback
# only, as user xrootd: everything about it lives in scripts/xrootd.sh.
XROOTD_URL=""
start_xrootd() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    NLDS_SVC_TIMEOUT="$TIMEOUT" "$here/xrootd.sh" start >/dev/null ||
        fail "xrootd (tape front end): scripts/xrootd.sh start failed"
    XROOTD_URL="$("$here/xrootd.sh" url)" || fail "xrootd (tape front end) does not answer"
    log "xrootd:     OK   $XROOTD_URL"
}

# ---------------------------------------------------------------- OIDC provider
# npm oidc-provider (scripts/oidc/provider.mjs) for the OAuth2 resource-server
# tests: everything about it lives in scripts/oidc.sh.
OIDC_ISSUER=""
start_oidc() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    NLDS_SVC_TIMEOUT="$TIMEOUT" "$here/oidc.sh" start >/dev/null ||
        fail "oidc (OpenID provider): scripts/oidc.sh start failed"
    OIDC_ISSUER="$("$here/oidc.sh" url)" || fail "oidc (OpenID provider) does not answer"
    log "oidc:       OK   $OIDC_ISSUER"
}

# ---------------------------------------------------------------- cargo-machete
# Built from crates.io at a pinned version; one already installed at that version (CI runs on a
# fresh clone but the same machine) is reused.
ensure_cargo_machete() {
    local have tmp rc=0
    have="$(cargo machete --version 2>/dev/null || true)"
    if [ "$have" = "$CARGO_MACHETE_VERSION" ]; then
        log "cargo-machete: OK   $have (already installed)"
        return
    fi
    log "cargo-machete: installing $CARGO_MACHETE_VERSION (have: ${have:-none}; log: $LOG_DIR/cargo-machete-install.log)"
    # A throwaway target directory: the tool's build must not land in the project's.
    tmp="$(mktemp -d)"
    CARGO_TARGET_DIR="$tmp" cargo install --locked --force cargo-machete --version "=$CARGO_MACHETE_VERSION" \
        >>"$LOG_DIR/cargo-machete-install.log" 2>&1 || rc=$?
    rm -rf "$tmp"
    [ "$rc" -eq 0 ] || fail "cargo-machete: cargo install failed (see $LOG_DIR/cargo-machete-install.log)"
    have="$(cargo machete --version 2>/dev/null || true)"
    [ "$have" = "$CARGO_MACHETE_VERSION" ] ||
        fail "cargo-machete: '${have:-none}' after installing $CARGO_MACHETE_VERSION"
    log "cargo-machete: OK   $have (installed)"
}

ensure_cargo_machete
start_rabbitmq
start_postgres
start_moto
start_xrootd
start_oidc
ensure_pyclient_venv
ensure_aiosmtpd
ensure_schemathesis

cat <<EOF
[services] all services up. Environment for the tests:
export NLDS_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f'
export NLDS_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:$PG_PORT'
export NLDS_TEST_S3_ENDPOINT='http://127.0.0.1:$MOTO_PORT'
export NLDS_TEST_PYCLIENT='$PYCLIENT_VENV/bin/nlds'
export NLDS_TEST_SMTP_PYTHON='$SMTP_VENV/bin/python'
export NLDS_TEST_XROOTD_URL='$XROOTD_URL'
export NLDS_TEST_OIDC_ISSUER='$OIDC_ISSUER'
export NLDS_TEST_OIDC_SECRETS_DIR='${NLDS_OIDC_DIR:-$HOME/.cache/nlds-oidc}/secrets'
unset AWS_CA_BUNDLE
EOF
