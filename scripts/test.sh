#!/usr/bin/env bash
# Run the whole nlds-rs test suite against the local services started by
# scripts/services.sh (RabbitMQ, PostgreSQL, moto S3 on 127.0.0.1).
#
#   scripts/services.sh && scripts/test.sh            # everything
#   scripts/test.sh -p nlds-core                      # one crate
#   scripts/test.sh -E 'test(put_roundtrip)'          # nextest filter
#
# Uses cargo-nextest when installed (cargo nextest run --workspace
# --no-fail-fast), else cargo test --workspace --all-targets. Extra arguments
# are passed through. Pre-set NLDS_TEST_* variables win over the defaults.
# A test whose service (or tool, or root) is missing fails. Set
# NLDS_TEST_ALLOW_SKIP=1 (never honoured with CI set) to skip those tests
# instead: the summary at the end names every test skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export NLDS_TEST_AMQP_URL="${NLDS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export NLDS_TEST_DATABASE_URL="${NLDS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
export NLDS_TEST_S3_ENDPOINT="${NLDS_TEST_S3_ENDPOINT:-http://127.0.0.1:9000}"
# The published Python client (nlds-client), installed by scripts/services.sh.
PYCLIENT_VENV="${NLDS_PYCLIENT_VENV:-$HOME/.cache/nlds-pyclient}"
if [ -n "${NLDS_TEST_PYCLIENT:-}" ] || [ -x "$PYCLIENT_VENV/bin/nlds" ]; then
    export NLDS_TEST_PYCLIENT="${NLDS_TEST_PYCLIENT:-$PYCLIENT_VENV/bin/nlds}"
fi
# The SMTP sink of the notification tests (aiosmtpd), installed by scripts/services.sh.
SMTP_VENV="${NLDS_SMTP_VENV:-$HOME/.cache/nlds-smtp}"
if [ -n "${NLDS_TEST_SMTP_PYTHON:-}" ] || [ -x "$SMTP_VENV/bin/python" ]; then
    export NLDS_TEST_SMTP_PYTHON="${NLDS_TEST_SMTP_PYTHON:-$SMTP_VENV/bin/python}"
fi
# The XRootD tape front end started by scripts/services.sh (scripts/xrootd.sh), if it answers.
if [ -z "${NLDS_TEST_XROOTD_URL:-}" ]; then
    NLDS_TEST_XROOTD_URL="$(scripts/xrootd.sh url 2>/dev/null)" && export NLDS_TEST_XROOTD_URL || unset NLDS_TEST_XROOTD_URL
fi
# The OpenID provider started by scripts/services.sh (scripts/oidc.sh), if it answers.
if [ -z "${NLDS_TEST_OIDC_ISSUER:-}" ]; then
    if oidc_env="$(scripts/oidc.sh env 2>/dev/null)"; then
        eval "$oidc_env"
    fi
fi
# The machine-wide CA bundle breaks S3 clients talking to plain-http local
# endpoints; never send credentials lookups to an instance metadata service.
unset AWS_CA_BUNDLE
export AWS_EC2_METADATA_DISABLED=true

echo "[test] NLDS_TEST_AMQP_URL=$NLDS_TEST_AMQP_URL"
echo "[test] NLDS_TEST_DATABASE_URL=$NLDS_TEST_DATABASE_URL"
echo "[test] NLDS_TEST_S3_ENDPOINT=$NLDS_TEST_S3_ENDPOINT"
echo "[test] NLDS_TEST_PYCLIENT=${NLDS_TEST_PYCLIENT:-(not installed: run scripts/services.sh)}"
echo "[test] NLDS_TEST_XROOTD_URL=${NLDS_TEST_XROOTD_URL:-(not running: run scripts/services.sh)}"
echo "[test] NLDS_TEST_OIDC_ISSUER=${NLDS_TEST_OIDC_ISSUER:-(not running: run scripts/services.sh)}"

# Let `-p/--package` narrow the run: drop `--workspace` when
# the caller picks packages.
scope=(--workspace)
for a in "$@"; do
    case "$a" in
    -p | --package | --package=* | -p*) scope=() ;;
    esac
done

# Integration tests start the real binaries (nlds-workers, nlds-server, nlds) as child
# processes; test runners only build the binaries of the package under test.
echo "[test] cargo build --workspace --bins"
cargo build --workspace --bins

# Each test skipped (with NLDS_TEST_ALLOW_SKIP=1) appends "name<TAB>what is missing" here
# (nlds-hooks/src/skip.rs).
NLDS_TEST_SKIP_LOG="$(mktemp -t nlds-test-skips.XXXXXX)"
export NLDS_TEST_SKIP_LOG
trap 'rm -f "$NLDS_TEST_SKIP_LOG"' EXIT
echo "[test] NLDS_TEST_ALLOW_SKIP=${NLDS_TEST_ALLOW_SKIP:-(unset: a missing service fails its tests)}"

rc=0
if cargo nextest --version >/dev/null 2>&1; then
    echo "[test] cargo nextest run ${scope[*]} --no-fail-fast $*"
    # nextest's report also goes to a file, for the slowest tests at the end (the ones
    # .config/nextest.toml starts first).
    NEXTEST_OUT="$(mktemp -t nlds-test-out.XXXXXX)"
    trap 'rm -f "$NLDS_TEST_SKIP_LOG" "$NEXTEST_OUT"' EXIT
    set +e
    cargo nextest run "${scope[@]}" --no-fail-fast "$@" 2>&1 | tee "$NEXTEST_OUT"
    rc=${PIPESTATUS[0]}
    set -e
    echo "[test] the slowest tests:"
    grep -E '^ +(PASS|FAIL) \[ *[0-9.]+s\]' "$NEXTEST_OUT" | sed -E 's/^ +//' \
        | sort -t'[' -k2 -rn | head -n 8 | sed 's/^/[test]   /' || true
else
    echo "[test] cargo-nextest not found; cargo test ${scope[*]} --all-targets --no-fail-fast $*"
    cargo test "${scope[@]}" --all-targets --no-fail-fast "$@" || rc=$?
fi

skipped="$(sort -u "$NLDS_TEST_SKIP_LOG" | grep -c . || true)"
if [ "$skipped" -gt 0 ]; then
    echo "[test] SKIPPED: $skipped tests did not run (NLDS_TEST_ALLOW_SKIP=1), each passed without testing:"
    sort -u "$NLDS_TEST_SKIP_LOG" | while IFS=$'\t' read -r name why; do
        echo "[test]   SKIPPED $name: $why"
    done
else
    echo "[test] skipped: 0"
fi
exit "$rc"
