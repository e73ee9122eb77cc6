#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis (PyPI; scripts/services.sh installs it) against the
# server's own OpenAPI document (/api/v2/openapi.json), on an embedded server with its test
# token (an admin, so the admin operations are exercised too). A bounded run: a fixed number of
# examples per operation and seed, under a time cap. It fails when any response is a 5xx or does
# not match the document (status code, content type, body schema).
#
#   scripts/fuzz-api.sh                       # after scripts/services.sh
#
# Run by .ci/run after the tests. NLDS_FUZZ_BASELINE names a schemathesis baseline file of
# accepted failures (none by default, and none in CI).
# The server is configured as a site would be (`[server.legacy_init]` set): the legacy `init/`
# answers 500 when it is not, as upstream does, which is by design and not fuzzed.
# Every path a request names is moved into a sandbox directory first
# (scripts/fuzz/nlds_fuzz_hooks.py): the server runs with this machine's privileges.
# Overridable: NLDS_FUZZ_EXAMPLES (per operation, default 10), NLDS_FUZZ_SEED (default 1),
# NLDS_FUZZ_SECONDS (time cap, default 300), NLDS_FUZZ_SERVER_BIN (a built nlds-server; default:
# build it), NLDS_SCHEMATHESIS_VENV
# (default $HOME/.cache/nlds-schemathesis), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ST_VENV="${NLDS_SCHEMATHESIS_VENV:-$HOME/.cache/nlds-schemathesis}"
EXAMPLES="${NLDS_FUZZ_EXAMPLES:-10}"
SEED="${NLDS_FUZZ_SEED:-1}"
CAP="${NLDS_FUZZ_SECONDS:-300}"
ST="$ST_VENV/bin/st"
[ -x "$ST" ] || {
    echo "[fuzz] FAILED: $ST is missing: run scripts/services.sh (it installs schemathesis)" >&2
    exit 1
}
unset AWS_CA_BUNDLE

BIN="${NLDS_FUZZ_SERVER_BIN:-}"
if [ -z "$BIN" ]; then
    echo "[fuzz] cargo build -p nlds-embedded --bin nlds-server"
    cargo build -q -p nlds-embedded --bin nlds-server
    BIN="${CARGO_TARGET_DIR:-target}/debug/nlds-server"
fi

work="$(mktemp -d -t nlds-fuzz.XXXXXX)"
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The sandbox: a few small files to put, an empty restore target.
mkdir -p "$work/sandbox/src" "$work/sandbox/target"
for i in 1 2 3 4; do
    head -c $((i * 1000)) /dev/urandom >"$work/sandbox/src/file-$i.dat"
done

cat >"$work/nlds.toml" <<'TOML'
[server.legacy_init]
oauth_client_id = "nlds-fuzz"
oauth_token_url = "http://127.0.0.1:9/token"
oauth_scopes = "openid"
TOML
: >"$work/server.out"
"$BIN" embedded --listen 127.0.0.1:0 --data-dir "$work/data" --config "$work/nlds.toml" \
    >"$work/server.out" 2>"$work/server.err" </dev/null &
server=$!
url=""
for _ in $(seq 1 600); do
    url="$(sed -n 's/.*server running at \(http[^ ]*\).*/\1/p' "$work/server.out" | head -n1 || true)"
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || {
        echo "[fuzz] FAILED: the embedded server exited:" >&2
        cat "$work/server.err" >&2
        exit 1
    }
    sleep 0.1
done
[ -n "$url" ] || {
    echo "[fuzz] FAILED: the embedded server printed no URL within 60 s" >&2
    exit 1
}
token="$(sed -n 's/^token = "\(.*\)"$/\1/p' "$work/data/tokens.toml" | head -n1)"
echo "[fuzz] server $url; schemathesis $("$ST" --version | awk '{print $NF}'), $EXAMPLES examples per operation, seed $SEED, cap ${CAP}s"

rc=0
hooks="$PWD/scripts/fuzz"
# From the work directory: schemathesis keeps its cache (.schemathesis/) in the current one.
(cd "$work" && NLDS_FUZZ_SANDBOX="$work/sandbox" PYTHONPATH="$hooks" SCHEMATHESIS_HOOKS=nlds_fuzz_hooks \
    timeout -k 10s "${CAP}s" "$ST" run "$url/api/v2/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 --request-timeout 60 \
    --phases examples,coverage,fuzzing --no-color \
    --output-truncate false${NLDS_FUZZ_BASELINE:+ --baseline "$NLDS_FUZZ_BASELINE"}) || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "[fuzz] FAILED: schemathesis did not finish within ${CAP}s" >&2
fi
# A panic answers 503 (a server error, so a failure unless the baseline knows it): say so.
panics="$(grep -c "panicked at" "$work/server.err" || true)"
if [ "$panics" -gt 0 ]; then
    echo "[fuzz] NOTE: the server panicked $panics times; the first:" >&2
    grep -m1 -A1 "panicked at" "$work/server.err" >&2
fi
[ "$rc" -eq 0 ] && echo "[fuzz] ok: no 5xx, every response matches the document"
exit "$rc"
