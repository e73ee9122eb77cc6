#!/usr/bin/env bash
# Archive throughput of nlds-rs (warm S3 -> cold tier), against the tools a site would use by hand.
# Not part of CI; see bench/README.md.
#
#   bench/archive.sh                                  # 10,000 x 4 KiB and 4 x 256 MiB, dir + xrootd
#   SMALL_N=1000 LARGE_N=1 LARGE_MB=64 bench/archive.sh   # quick run
#   BACKENDS=dir BUILD=0 bench/archive.sh
#   WORKLOADS=large BACKENDS=dir BUILD=0 bench/archive.sh   # one workload
#
# For each backend and workload it runs the embedded server (release build; its own s3s-fs warm
# tier), puts the files (not timed), then times one archive round from the admin request until
# every file has a cold copy (reading from S3, packing, writing, verifying, cataloguing). The
# reference, in the same script and on the same disk:
#   dir:    tar cf of the same files into the same filesystem as the tape directory;
#   xrootd: that tar, then xrdcp of it to the same XRootD server (scripts/xrootd.sh).
# and the same job from the same warm tier, as a site would do it by hand: rclone copy of the
# objects out of the embedded S3 endpoint (32 transfers), then that tar [+ xrdcp] (needs rclone).
# It prints MB/s, files/s and nlds/reference throughput for both (target: >= 0.8).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SMALL_N="${SMALL_N:-10000}"
SMALL_KB="${SMALL_KB:-4}"
LARGE_N="${LARGE_N:-4}"
LARGE_MB="${LARGE_MB:-256}"
BACKENDS="${BACKENDS:-dir xrootd}"
BUILD="${BUILD:-1}"
PORT="${PORT:-8741}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/nlds-server"
unset AWS_CA_BUNDLE
while read -r v; do unset "$v"; done < <(compgen -e | grep '^NLDS_' || true)

log() { printf '[archive-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nlds-archive-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "cargo build --release -p nlds-embedded"
    (cd "$ROOT" && cargo build --release -q -p nlds-embedded)
fi
[ -x "$BIN" ] || { echo "missing $BIN (BUILD=1 builds it)" >&2; exit 1; }

XROOTD_URL=""
if [[ " $BACKENDS " == *" xrootd "* ]]; then
    "$ROOT/scripts/xrootd.sh" start >/dev/null
    XROOTD_URL="$("$ROOT/scripts/xrootd.sh" url)"
fi

make_small() {
    local d="$1" i
    mkdir -p "$d"
    head -c $((SMALL_N * SMALL_KB * 1024)) /dev/urandom >"$WORK/blob"
    for ((i = 0; i < SMALL_N; i++)); do
        mkdir -p "$d/d$((i / 100))"
        dd if="$WORK/blob" of="$d/d$((i / 100))/f$i" bs=1024 count="$SMALL_KB" skip=$((i * SMALL_KB)) status=none
    done
    rm -f "$WORK/blob"
}
make_large() {
    local d="$1" i
    mkdir -p "$d"
    for ((i = 0; i < LARGE_N; i++)); do head -c $((LARGE_MB << 20)) /dev/urandom >"$d/big$i"; done
}

api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }

wait_tx() {
    local tid="$1" st
    while :; do
        st="$(api "http://127.0.0.1:$PORT/api/v2/transactions/$tid" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
        case "$st" in COMPLETE) return 0 ;; FAILED | COMPLETE_WITH_ERRORS) echo "put ended $st" >&2; exit 1 ;; esac
        sleep 0.5
    done
}

cold_count() {
    sqlite3 "$1/nlds.db" "SELECT COUNT(*) FROM location WHERE tier = 'cold'" 2>/dev/null ||
        python3 - "$1/nlds.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM location WHERE tier = 'cold'").fetchone()[0])
PY
}

# archive BACKEND WORKLOAD SRC FILES BYTES -> prints seconds
archive_run() {
    local backend="$1" src="$2" files="$3" data="$WORK/data-$backend-$RANDOM" cfg="$WORK/cfg.toml"
    {
        echo "[workers.archive]"
        echo "interval_secs = 0"
        echo "aggregate_bytes = 1073741824"
        echo "[workers.cold]"
        echo "backend = \"$backend\""
        if [ "$backend" = xrootd ]; then
            echo "[workers.cold.xrootd]"
            echo "url = \"$XROOTD_URL/bench-$RANDOM$RANDOM\""
        else
            echo "[workers.cold.dir]"
            echo "root = \"$data/cold\""
        fi
    } >"$cfg"
    "$BIN" embedded --data-dir "$data" --listen "127.0.0.1:$PORT" --config "$cfg" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do [ -f "$data/client.toml" ] && curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
    TOKEN="$(sed -n 's/^token = "\(.*\)"/\1/p' "$data/client.toml")"
    local tid
    tid="$(api -X POST "http://127.0.0.1:$PORT/api/v2/put" -d "{\"paths\": [\"$src\"], \"label\": \"bench\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["transaction_id"])')"
    wait_tx "$tid"
    sync
    local t0 t1
    t0="$(now)"
    api -X POST "http://127.0.0.1:$PORT/api/v2/admin/archive" -d '{}' >/dev/null
    while [ "$(cold_count "$data")" -lt "$files" ]; do sleep 0.05; done
    t1="$(now)"
    s3_reference "$backend" "$data" >"$WORK/s3ref.time"
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    rm -rf "$data"
    echo "$t1 - $t0" | bc -l
}

# The same job done by hand from the same warm tier: rclone copy of the holding's objects out of
# the embedded S3 endpoint (32 transfers), tar of them into the tape filesystem, [xrdcp], sync.
s3_reference() {
    local backend="$1" data="$2" endpoint t0 t1 out="$WORK/s3ref-$RANDOM" tarball="$data/ref.tar"
    endpoint="$(sed -n 's/.*S3 endpoint: *\(http[^ ]*\).*/\1/p' "$WORK/server.log" | head -1)"
    export RCLONE_CONFIG_WARM_TYPE=s3 RCLONE_CONFIG_WARM_PROVIDER=Other RCLONE_CONFIG_WARM_REGION=us-east-1
    export RCLONE_CONFIG_WARM_ENDPOINT="$endpoint" RCLONE_CONFIG_WARM_ACCESS_KEY_ID=nlds-embedded
    RCLONE_CONFIG_WARM_SECRET_ACCESS_KEY="$(cat "$data/s3.secret")"
    export RCLONE_CONFIG_WARM_SECRET_ACCESS_KEY
    sync
    t0="$(now)"
    rclone copy --transfers 32 --checkers 32 warm:nlds "$out"
    tar cf "$tarball" -C "$out" .
    if [ "$backend" = xrootd ]; then
        xrdcp -s -f "$tarball" "$XROOTD_URL/s3ref-$RANDOM$RANDOM.tar"
    fi
    sync
    t1="$(now)"
    rm -rf "$out" "$tarball"
    echo "$t1 - $t0" | bc -l
}

reference_run() {
    local backend="$1" src="$2" t0 t1 tarball="$WORK/ref-$RANDOM.tar"
    sync
    t0="$(now)"
    tar cf "$tarball" -C "$src" .
    if [ "$backend" = xrootd ]; then
        xrdcp -s -f "$tarball" "$XROOTD_URL/ref-$RANDOM$RANDOM.tar"
    fi
    sync
    t1="$(now)"
    rm -f "$tarball"
    echo "$t1 - $t0" | bc -l
}

printf '| backend | workload | files | MiB | nlds-rs s | MB/s | files/s | reference | ref s | nlds/ref | same from S3: rclone + ref s | nlds/(rclone + ref) |\n'
printf '|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n'
for workload in ${WORKLOADS:-small large}; do
    src="$WORK/src-$workload"
    if [ "$workload" = small ]; then
        make_small "$src"
        files="$SMALL_N"
    else
        make_large "$src"
        files="$LARGE_N"
    fi
    bytes="$(du -sb "$src" | cut -f1)"
    for backend in $BACKENDS; do
        log "$backend / $workload: archive round"
        s="$(archive_run "$backend" "$src" "$files")"
        log "$backend / $workload: reference"
        r="$(reference_run "$backend" "$src")"
        ref="tar"
        [ "$backend" = xrootd ] && ref="tar + xrdcp"
        s3r="$(cat "$WORK/s3ref.time")"
        printf '| %s | %s | %d | %.0f | %.2f | %.1f | %.0f | %s | %.2f | %.2f | %.2f | %.2f |\n' \
            "$backend" "$workload" "$files" "$(echo "$bytes / 1048576" | bc -l)" "$s" \
            "$(echo "$bytes / 1000000 / $s" | bc -l)" "$(echo "$files / $s" | bc -l)" \
            "$ref" "$r" "$(echo "$r / $s" | bc -l)" "$s3r" "$(echo "$s3r / $s" | bc -l)"
    done
    rm -rf "$src"
done
