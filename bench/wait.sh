#!/usr/bin/env bash
# How soon `--wait` returns (issue 16): `nlds put` of 3 small files with `--wait`, then `nlds get`
# of them with `--wait`, RUNS times, on the embedded default (`nlds-server embedded`, its own
# SQLite and S3 endpoint) or on a running system (NLDS_URL and NLDS_TOKEN set: e.g. the
# distributed mode of bench/run.sh with KEEP=1). Not part of CI.
#
#   bench/wait.sh                          # embedded default, 20 runs, release build
#   RUNS=5 BUILD=0 bench/wait.sh           # binaries already built
#   NLDS_URL=http://127.0.0.1:8732 NLDS_TOKEN=... bench/wait.sh   # a running (distributed) system
#
# Prints, per step, the median and the worst of the client's elapsed time, and next to it the
# transaction's own duration as the server recorded it (created to last update): their
# difference is what waiting costs. Target: at most 0.3 s per step. `--poll 5s` (the client's
# default) is passed on purpose: with live status the wait must not depend on it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-20}"
PORT="${PORT:-8743}"
BUILD="${BUILD:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BIN_DIR:-$CARGO_TARGET_DIR/release}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nlds-wait.XXXXXX")"
unset AWS_CA_BUNDLE
export NO_COLOR=1

log() { printf '[wait %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PID=""
cleanup() {
    set +e
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "building release binaries into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p nlds-embedded -p nlds-cli >"$WORK/build.log" 2>&1) ||
        { tail -n 30 "$WORK/build.log" >&2; exit 1; }
fi

if [ -n "${NLDS_URL:-}" ]; then
    MODE="running system at $NLDS_URL"
else
    while read -r v; do unset "$v"; done < <(compgen -e | grep '^NLDS_' || true)
    dd="$WORK/data"
    mkdir -p "$dd"
    (cd "$dd" && exec "$BIN_DIR/nlds-server" embedded --data-dir "$dd" --listen "127.0.0.1:$PORT") \
        >"$WORK/server.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do [ -s "$dd/client.toml" ] && break; sleep 0.2; done
    [ -s "$dd/client.toml" ] || { tail -n 20 "$WORK/server.log" >&2; exit 1; }
    export NLDS_CONFIG="$dd/client.toml"
    MODE="embedded default"
fi

src="$WORK/src"
mkdir -p "$src"
for i in 1 2 3; do head -c 4096 /dev/urandom >"$src/f$i"; done
now() { date +%s.%N; }
# server_secs ID: the transaction's duration as recorded (last update minus creation).
server_secs() {
    "$BIN_DIR/nlds" -j stat -n "$1" | python3 -c '
import json, sys, datetime
t = json.load(sys.stdin)
t = t["transactions"][0] if "transactions" in t else t
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
print("%.3f" % (p(t["updated"]) - p(t["created"])).total_seconds())'
}
: >"$WORK/times.tsv"
log "$MODE: $RUNS runs of put 3 x 4 KiB --wait, get --wait"
for run in $(seq 1 "$RUNS"); do
    label="wait-$$-$run"
    t0="$(now)"
    "$BIN_DIR/nlds" -j put "$src" -l "$label" --wait --poll 5s >"$WORK/put.json"
    t1="$(now)"
    tid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["transaction_id"])' "$WORK/put.json")"
    printf 'put\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$(server_secs "$tid")" >>"$WORK/times.tsv"
    target="$WORK/get-$run"
    mkdir -p "$target"
    t0="$(now)"
    "$BIN_DIR/nlds" -j get "$src" -l "$label" -r "$target" --wait --poll 5s >"$WORK/get.json"
    t1="$(now)"
    tid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["transaction_id"])' "$WORK/get.json")"
    printf 'get\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$(server_secs "$tid")" >>"$WORK/times.tsv"
    cmp -s "$src/f1" "$target$src/f1" || { log "run $run: the get did not restore f1"; exit 1; }
done
python3 - "$WORK/times.tsv" "$MODE" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
print(f"\n`bench/wait.sh`, {sys.argv[2]}, {sys.argv[3]} runs (seconds; target: median at most 0.3)\n")
print("| step | client median | client worst | server median | wait overhead (median) | met |")
print("|---|---|---|---|---|---|")
for step in ("put", "get"):
    c = [float(r[1]) for r in rows if r[0] == step]
    s = [float(r[2]) for r in rows if r[0] == step]
    med = statistics.median(c)
    print(f"| {step} 3 x 4 KiB --wait | {med:.3f} | {max(c):.3f} | {statistics.median(s):.3f} | "
          f"{statistics.median([a - b for a, b in zip(c, s)]):.3f} | {'yes' if med <= 0.3 else 'NO'} |")
PY
