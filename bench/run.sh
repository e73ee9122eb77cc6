#!/usr/bin/env bash
# nlds-rs end-to-end benchmark against rclone, on one S3 endpoint (s3s-fs).
# Not part of CI. See bench/README.md for what it measures and the knobs.
#
#   bench/run.sh                                  # full run: 5 runs of each workload
#   RUNS=2 SMALL_N=1000 LARGE_N=2 LARGE_MB=64 bench/run.sh   # quick run
#   MODES="rclone embedded" BUILD=0 bench/run.sh
#   BENCH_APPEND=BENCHMARKS.md bench/run.sh       # also append the markdown
#   MODES=distributed WAIT_RUNS=20 DIST_WORKLOADS=0 bench/run.sh   # bench/wait.sh, distributed
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped
# on exit (trap EXIT); the RabbitMQ vhost and PostgreSQL database created for
# the distributed mode are removed again unless KEEP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- knobs
SMALL_N="${SMALL_N:-10000}"          # number of small files
SMALL_KB="${SMALL_KB:-4}"            # size of each small file, KiB
SMALL_PER_DIR="${SMALL_PER_DIR:-100}" # small files per leaf directory
LARGE_N="${LARGE_N:-4}"              # number of large files
LARGE_MB="${LARGE_MB:-256}"          # size of each large file, MiB
MODES="${MODES:-rclone embedded distributed}"
RUNS="${RUNS:-5}"                    # runs of each workload (median and worst are reported)
DIST_WORKERS="${DIST_WORKERS:-roles}" # roles: one process per role; all: `nlds-workers all`
BUILD="${BUILD:-1}"                  # 0: use the binaries already in $BIN_DIR
VERIFY="${VERIFY:-1}"                # compare what came back with what went in
KEEP="${KEEP:-0}"                    # 1: keep the work dir, vhost and database
WAIT_RUNS="${WAIT_RUNS:-0}"          # >0: also run bench/wait.sh that many times against the distributed system
DIST_WORKLOADS="${DIST_WORKLOADS:-1}" # 0: the distributed mode runs bench/wait.sh only (with WAIT_RUNS)
S3_PORT="${S3_PORT:-8014}"
EMB_PORT="${EMB_PORT:-8731}"
DIST_PORT="${DIST_PORT:-8732}"
AMQP_HOSTPORT="127.0.0.1:5672"
PG_HOSTPORT="127.0.0.1:5432"
RCLONE_FLAGS="${RCLONE_FLAGS:-}"     # extra flags for every rclone copy
# rclone variants, ';'-separated "name=flags"; the better (by median) of them per workload is
# the reference.
RCLONE_VARIANTS="${RCLONE_VARIANTS:-rclone=;rclone-t16=--transfers 16}"
BENCH_WORKERS_TOML="${BENCH_WORKERS_TOML:-}" # file appended to the workers config (tuning)
TIMEOUT_STEP="${TIMEOUT_STEP:-3600}" # seconds before one put/get is abandoned
S3_ACCESS_KEY="bench-access"
S3_SECRET_KEY="bench-secret-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BIN_DIR:-$CARGO_TARGET_DIR/release}"

STAMP="$(date +%Y%m%d%H%M%S)-$$"
# A fresh work directory (under BENCH_DIR if given, e.g. on a bigger disk);
# only this directory is removed at exit.
mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nlds-bench.XXXXXX")"
mkdir -p "$WORK"/{logs,time}
RESULTS="$WORK/results.tsv" # mode workload run seconds bytes files status client_rss_kb services_rss_kb load1 io_stall_pct
PROCS="$WORK/procs.tsv"     # mode process peak_rss_kb cpu_s
CONTENTION="$WORK/contention.tsv" # mode database_contention bus_retries
: >"$RESULTS"
: >"$PROCS"
: >"$CONTENTION"
BENCH_OUT="${BENCH_OUT:-${TMPDIR:-/tmp}/nlds-bench-results-$STAMP.md}"

# Local endpoints only: the machine-wide CA bundle breaks rclone's and the AWS
# SDK's plain-http S3 clients, and no instance metadata lookups.
unset AWS_CA_BUNDLE AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true
# Plain logs (the contention counters are read from them).
export NO_COLOR=1
# No NLDS_* settings from the caller's environment (they override the files).
while read -r v; do unset "$v"; done < <(compgen -e | grep '^NLDS_' || true)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------- cleanup
PIDS=()          # long-running processes started here
CLEANUP_CMDS=()  # extra cleanup (vhost, database)
cleanup() {
    local rc=$? pid i
    set +e
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    for c in "${CLEANUP_CMDS[@]}"; do eval "$c" >/dev/null 2>&1; done
    if [ "$KEEP" = 1 ]; then
        log "kept work dir $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pids PID...: stop some of the tracked processes now.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# stop_svc: stop every process listed in SVC ("name=pid" entries).
stop_svc() {
    local e pids=()
    for e in "${SVC[@]}"; do pids+=("${e#*=}"); done
    stop_pids "${pids[@]}"
}

# ---------------------------------------------------------------- helpers
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Reset the peak-RSS counter of a process (Linux: clear_refs 5), so each
# workload gets its own peak. Harmless if not permitted.
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
cpu_s() {
    local tck
    tck="$(getconf CLK_TCK)"
    # fields after the ")" of comm: utime is $12, stime $13 counting from state.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v t="$tck" '{ printf "%.1f", ($12 + $13) / t }' || echo 0
}

# timed LOGNAME CMD...: run CMD under GNU time; sets ELAPSED (s) and
# CLIENT_RSS_KB; returns CMD's exit status. Output goes to logs/LOGNAME.log.
ELAPSED=0
CLIENT_RSS_KB=0
LOAD1=""
IO_STALL=""
# io_some_us: microseconds some task stalled on I/O since boot (/proc/pressure/io; empty if none).
io_some_us() { awk '/^some/ { sub("total=", "", $5); print $5 }' /proc/pressure/io 2>/dev/null || true; }
# settle: before each measured step, let the disk finish what earlier steps left it (dirty pages,
# the discards of removed files): `sync`, then wait (at most SETTLE_MAX s) until the kernel's
# dirty and write-back pages are below 16 MiB and no task has waited for I/O in the last 10 s
# on average more than 1%. Without it a step pays for the write-back of the one before (the
# small puts of one series took 5.6 s, then 11-14 s).
SETTLE_MAX="${SETTLE_MAX:-60}"
SETTLED_S=0
settle() {
    local t0 dirty stall
    t0="$(now)"
    sync
    for _ in $(seq 1 "$((SETTLE_MAX * 2))"); do
        dirty="$(awk '/^(Dirty|Writeback):/ { s += $2 } END { print s + 0 }' /proc/meminfo)"
        stall="$(awk '/^some/ { sub("avg10=", "", $2); print $2 }' /proc/pressure/io 2>/dev/null || echo 0)"
        if [ "$dirty" -lt 16384 ] && awk -v s="${stall:-0}" 'BEGIN { exit !(s < 1.0) }'; then break; fi
        sleep 0.5
    done
    SETTLED_S="$(since "$t0")"
}
timed() {
    local name="$1" tf="$WORK/time/$1" t0 rc=0 io0 io1
    shift
    settle
    # The machine's load when the step starts (1-minute average), and the share of the step's
    # wall time during which some task waited for I/O.
    LOAD1="$(awk '{ print $1 }' /proc/loadavg)"
    io0="$(io_some_us)"
    t0="$(now)"
    timeout "$TIMEOUT_STEP" /usr/bin/time -v -o "$tf" "$@" >"$WORK/logs/$name.log" 2>&1 || rc=$?
    ELAPSED="$(since "$t0")"
    io1="$(io_some_us)"
    IO_STALL=""
    if [ -n "$io0" ] && [ -n "$io1" ]; then
        IO_STALL="$(awk -v a="$io0" -v b="$io1" -v s="$ELAPSED" 'BEGIN { if (s > 0) printf "%.0f", (b - a) / 1e4 / s }')"
    fi
    CLIENT_RSS_KB="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf" 2>/dev/null || true)"
    CLIENT_RSS_KB="${CLIENT_RSS_KB:-0}"
    if [ "$rc" -ne 0 ]; then
        log "$name exited $rc; last lines of its log:"
        tail -n 15 "$WORK/logs/$name.log" >&2 || true
    fi
    return "$rc"
}

tree_files() { find "$1" -type f | wc -l; }
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }
# tree_manifest DIR: one line per regular file under DIR, sorted: its path relative to DIR, its
# permission bits and the MD5 of its content. Two trees are the same files when these match.
tree_manifest() {
    (cd "$1" && {
        find . -type f -printf 'M\t%P\t%m\n'
        find . -type f -print0 | xargs -0 -r md5sum | sed 's|^\([0-9a-f]*\)  \./|S\t\1\t|'
    } | awk -F'\t' '$1 == "M" { m[$2] = $3 } $1 == "S" { s[$3] = $2 }
        END { for (p in m) print p "\t" m[p] "\t" s[p] }' | LC_ALL=C sort)
}
tree_digest() { tree_manifest "$1" | md5sum | awk '{ print $1 }'; }

# check_tree DIR SRC_DIR: status of a retrieved tree against its source. nlds restores a path
# under the target as its whole original path (DIR/SRC_DIR/...), rclone into DIR itself; either
# way every file must come back at its relative path with its mode and content (VERIFY=1).
check_tree() {
    local got_n want_n got_b want_b root="$1"
    [ -d "$1" ] || { echo "MISSING"; return; }
    [ -d "$1/$2" ] && root="$1/$2"
    got_n="$(tree_files "$1")"
    want_n="$(tree_files "$2")"
    got_b="$(tree_bytes "$1")"
    want_b="$(tree_bytes "$2")"
    if [ "$got_n" != "$want_n" ] || [ "$got_b" != "$want_b" ]; then
        echo "MISMATCH($got_n/$want_n files)"
    elif [ "$VERIFY" = 1 ] && [ "$(tree_digest "$root")" != "${DIGEST[$(basename "$2")]}" ]; then
        echo "CORRUPT"
    else
        echo "ok"
    fi
}

# record MODE WORKLOAD RUN SECONDS BYTES FILES STATUS CLIENT_RSS_KB SERVICES_RSS_KB
# (the load and I/O stall of the last timed step are appended)
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$LOAD1" "$IO_STALL" >>"$RESULTS"
    log "$1 $2 run $3: $4 s, $7 (load $LOAD1, I/O stall ${IO_STALL:-?}%, settled in ${SETTLED_S} s)"
}

apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } ||
        die "apt-get install $* failed"
}

# ---------------------------------------------------------------- tools
[ -x /usr/bin/time ] || apt_install time
command -v rclone >/dev/null 2>&1 || { log "installing rclone (Debian)"; apt_install rclone; }
# The S3 endpoint: $S3S_FS if set, else an installed s3s-fs binary, else the workspace's
# example of the same crate and version (nlds-embedded/examples/s3s-fs.rs, built below).
S3S_FS="${S3S_FS:-$(command -v s3s-fs || true)}"
[ -n "$S3S_FS" ] || [ ! -x "$HOME/.cargo/bin/s3s-fs" ] || S3S_FS="$HOME/.cargo/bin/s3s-fs"
S3S_EXAMPLE=0
if [ -z "$S3S_FS" ]; then
    S3S_FS="$BIN_DIR/examples/s3s-fs"
    S3S_EXAMPLE=1
fi

want_nlds=0
case " $MODES " in *" embedded "* | *" distributed "*) want_nlds=1 ;; esac
if [ "$want_nlds" = 1 ]; then
    if [ "$BUILD" = 1 ]; then
        log "building release binaries (cargo build --release; CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        t0="$(now)"
        (cd "$ROOT" && cargo build --release -p nlds-embedded -p nlds-workers -p nlds-cli -p nlds-migration --bins) \
            >"$WORK/logs/build.log" 2>&1 || { tail -n 30 "$WORK/logs/build.log" >&2; die "release build failed"; }
        if [ "$S3S_EXAMPLE" = 1 ]; then
            (cd "$ROOT" && cargo build --release -p nlds-embedded --example s3s-fs) \
                >>"$WORK/logs/build.log" 2>&1 || { tail -n 30 "$WORK/logs/build.log" >&2; die "building the s3s-fs example failed"; }
        fi
        log "release build took $(since "$t0") s"
    fi
    for b in nlds-server nlds nlds-workers nlds-migration; do
        [ -x "$BIN_DIR/$b" ] || die "missing $BIN_DIR/$b (build with BUILD=1 or set BIN_DIR)"
    done
fi

if [ "$BUILD" = 1 ] && [ "$S3S_EXAMPLE" = 1 ] && [ "$want_nlds" = 0 ]; then
    (cd "$ROOT" && cargo build --release -p nlds-embedded --example s3s-fs) >"$WORK/logs/build.log" 2>&1 ||
        { tail -n 30 "$WORK/logs/build.log" >&2; die "building the s3s-fs example failed"; }
fi
[ -x "$S3S_FS" ] || die "no s3s-fs: install it (cargo install s3s-fs --version 0.14.1 --features binary --locked), set S3S_FS, or build with BUILD=1"

# ---------------------------------------------------------------- data
DATA="$WORK/data"
mkdir -p "$DATA"
log "generating data: $SMALL_N x $SMALL_KB KiB (small), $LARGE_N x $LARGE_MB MiB (large) under $DATA"
python3 - "$DATA/small" "$SMALL_N" "$SMALL_KB" "$SMALL_PER_DIR" <<'PY'
import os, sys
root, n, kb, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    leaf = i // per
    d = os.path.join(root, f"d{leaf // 10:03d}", f"e{leaf % 10}")
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(os.urandom(kb * 1024))
PY
mkdir -p "$DATA/large"
for i in $(seq 1 "$LARGE_N"); do
    head -c "$((LARGE_MB * 1024 * 1024))" /dev/urandom >"$DATA/large/big$i.bin"
done
declare -A DIGEST NFILES NBYTES
for set in small large; do
    NFILES[$set]="$(tree_files "$DATA/$set")"
    NBYTES[$set]="$(tree_bytes "$DATA/$set")"
    if [ "$VERIFY" = 1 ]; then DIGEST[$set]="$(tree_digest "$DATA/$set")"; fi
done
sync

# ---------------------------------------------------------------- s3s-fs
S3_ROOT="$WORK/s3"
mkdir -p "$S3_ROOT"
port_open "$S3_PORT" && die "port $S3_PORT is already in use (set S3_PORT)"
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$S3_ROOT" \
    >"$WORK/logs/s3s-fs.log" 2>&1 &
S3_PID=$!
PIDS+=("$S3_PID")
for _ in $(seq 1 100); do port_open "$S3_PORT" && break; sleep 0.1; done
port_open "$S3_PORT" || die "s3s-fs did not start (see $WORK/logs/s3s-fs.log)"
S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
log "s3s-fs $("$S3S_FS" --version 2>/dev/null | awk '{print $2}') on $S3_ENDPOINT (pid $S3_PID)"

export RCLONE_CONFIG="$WORK/rclone.conf"
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_BENCH_TYPE=s3
export RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT="$S3_ENDPOINT"
export RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$S3_ACCESS_KEY"
export RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$S3_SECRET_KEY"
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_BENCH_ENV_AUTH=false

make_bucket() { rclone mkdir "bench:$1" >>"$WORK/logs/rclone-mkdir.log" 2>&1 || die "cannot create bucket $1 on s3s-fs"; }

# s3s_sample MODE WORKLOAD: s3s-fs's own peak for this workload (not summed).
s3s_sample() {
    printf '%s\t%s\t%s\t%s\n' "$1" "s3s-fs ($2)" "$(hwm_kb "$S3_PID")" "" >>"$PROCS"
    reset_hwm "$S3_PID"
}

# ---------------------------------------------------------------- rclone
# Each tree gets a bucket of its own and is copied to/from the bucket root:
# rclone first HEADs a source path that is not a bucket root, s3s-fs answers
# 500 for a key that is a directory on its disk, and rclone's low-level
# retries then stall the copy for about 90 s.
mode_rclone() {
    local set rc st run variant name flags
    local -a variants
    IFS=';' read -r -a variants <<<"$RCLONE_VARIANTS"
    for variant in "${variants[@]}"; do
        name="${variant%%=*}"
        flags="${variant#*=}"
        log "rclone variant $name: rclone copy $RCLONE_FLAGS $flags"
        for set in small large; do
            for run in $(seq 1 "$RUNS"); do
                make_bucket "rclone-$set"
                reset_hwm "$S3_PID"
                rc=0
                # shellcheck disable=SC2086
                timed "$name-put-$set-$run" rclone copy $RCLONE_FLAGS $flags "$DATA/$set" "bench:rclone-$set" || rc=$?
                if [ "$rc" -eq 0 ]; then st=ok; else st="FAIL(rc=$rc)"; fi
                record "$name" "put $set" "$run" "$ELAPSED" "${NBYTES[$set]}" "${NFILES[$set]}" "$st" "$CLIENT_RSS_KB" ""
                s3s_sample "$name" "put $set"

                rc=0
                # shellcheck disable=SC2086
                timed "$name-get-$set-$run" rclone copy $RCLONE_FLAGS $flags "bench:rclone-$set" "$WORK/rclone-get/$set" || rc=$?
                if [ "$rc" -eq 0 ]; then st="$(check_tree "$WORK/rclone-get/$set" "$DATA/$set")"; else st="FAIL(rc=$rc)"; fi
                record "$name" "get $set" "$run" "$ELAPSED" "${NBYTES[$set]}" "${NFILES[$set]}" "$st" "$CLIENT_RSS_KB" ""
                s3s_sample "$name" "get $set"
                rm -rf "$WORK/rclone-get/$set" "${S3_ROOT:?}/rclone-$set"
            done
        done
    done
}

# ---------------------------------------------------------------- nlds common
# nlds_workloads MODE PIDS_NAME...: put and get both trees with the nlds CLI
# (configured by the caller's environment); samples each service's peak RSS
# per workload. SVC is an array of "name=pid".
nlds_workloads() {
    local mode="$1" set op rc st label target sum entry pid run sel=()
    for set in small large; do
      for run in $(seq 1 "$RUNS"); do
        label="bench-$mode-$set-$STAMP-$run"
        for op in put get; do
            for entry in "${SVC[@]}"; do reset_hwm "${entry#*=}"; done
            reset_hwm "$S3_PID"
            rc=0
            if [ "$op" = put ]; then
                # shellcheck disable=SC2086
                timed "$mode-put-$set-$run" "$BIN_DIR/nlds" put "$DATA/$set" -l "$label" -t "bench:$set" "${WAIT_ARGS[@]}" ${BENCH_PUT_FLAGS:-} || rc=$?
                if [ "$rc" -eq 0 ]; then st=ok; else st="FAIL(rc=$rc)"; fi
            else
                target="$WORK/$mode-get/$set"
                mkdir -p "$target"
                mapfile -t sel < <(get_selector "$DATA/$set")
                # shellcheck disable=SC2086
                timed "$mode-get-$set-$run" "$BIN_DIR/nlds" get "${sel[@]}" -l "$label" -r "$target" "${WAIT_ARGS[@]}" ${BENCH_GET_FLAGS:-} || rc=$?
                if [ "$rc" -eq 0 ]; then st="$(check_tree "$target" "$DATA/$set")"; else st="FAIL(rc=$rc)"; fi
                rm -rf "$target"
            fi
            sum=0
            for entry in "${SVC[@]}"; do
                pid="${entry#*=}"
                kill -0 "$pid" 2>/dev/null || st="$st; ${entry%%=*} died"
                sum=$((sum + $(hwm_kb "$pid")))
                printf '%s\t%s\t%s\t%s\n' "$mode" "${entry%%=*} ($op $set)" "$(hwm_kb "$pid")" "" >>"$PROCS"
            done
            record "$mode" "$op $set" "$run" "$ELAPSED" "${NBYTES[$set]}" "${NFILES[$set]}" "$st" "$CLIENT_RSS_KB" "$sum"
            s3s_sample "$mode" "$op $set"
        done
        # Each run starts from an empty bucket, as each of rclone's does (its bucket is removed
        # after every run): a bucket that grows by 10,000 objects a run slows the endpoint's
        # writes. The objects are removed on s3s-fs's disk, under the bucket's own directory; the
        # holdings stay catalogued (nothing reads them again).
        if [ -n "${NLDS_BUCKET:-}" ] && [ -d "$S3_ROOT/$NLDS_BUCKET" ]; then
            find "$S3_ROOT/$NLDS_BUCKET" -mindepth 1 -delete
        fi
      done
    done
    for entry in "${SVC[@]}"; do
        printf '%s\t%s\t%s\t%s\n' "$mode" "${entry%%=*} (total CPU)" "" "$(cpu_s "${entry#*=}")" >>"$PROCS"
    done
}

# How the nlds client waits, and how a whole tree is selected for get: with
# `-x` an anchored regular expression of the tree's paths (the default when the
# client has --regex), else the directory path itself. --poll keeps the
# --wait polling from adding up to its default 5 s to every measurement.
WAIT_ARGS=(--wait)
GET_MODE="${BENCH_GET_MODE:-}"
nlds_client_caps() {
    local put_help get_help
    put_help="$("$BIN_DIR/nlds" put --help 2>&1 || true)"
    get_help="$("$BIN_DIR/nlds" get --help 2>&1 || true)"
    if grep -q -- '--poll' <<<"$put_help"; then WAIT_ARGS+=(--poll "${BENCH_POLL:-200ms}"); fi
    if [ -z "$GET_MODE" ]; then
        if grep -q -- '--regex' <<<"$get_help"; then GET_MODE=regex; else GET_MODE=path; fi
    fi
}
# get_selector DIR: the words selecting every file under DIR.
get_selector() {
    if [ "$GET_MODE" = regex ]; then
        printf '%s\n' "-x" "^$(printf '%s' "$1" | sed 's/[\\.^$|?*+()[{}]/\\&/g; s/]/\\]/g')/"
    else
        printf '%s\n' "$1"
    fi
}

# wait_ready URL PID LOG: wait up to 120 s for URL to answer 2xx while PID lives.
wait_ready() {
    local url="$1" pid="$2" logf="$3"
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { log "process $pid exited; log tail:"; tail -n 30 "$logf" >&2; return 1; }
        sleep 0.2
    done
    log "$url not ready after 120 s; log tail:"
    tail -n 30 "$logf" >&2
    return 1
}

record_failed_mode() {
    local set op
    LOAD1="" IO_STALL=""
    for set in small large; do for op in put get; do
        record "$1" "$op $set" 1 "" "${NBYTES[$set]}" "${NFILES[$set]}" "$2" "" ""
    done; done
}

# contention MODE LOG...: the lock-contention and bus-retry counters the nlds processes log when
# they stop (summed over the processes), as "database_contention bus_retries".
contention() {
    local mode="$1"
    shift
    local c r
    c="$(cat "$@" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/.*database_contention=\([0-9]*\).*/\1/p' | awk '{ s += $1; n++ } END { if (n) print s; else print "?" }')"
    r="$(cat "$@" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/.*bus_retries=\([0-9]*\).*/\1/p' | awk '{ s += $1; n++ } END { if (n) print s; else print "?" }')"
    printf '%s\t%s\t%s\n' "$mode" "$c" "$r" >>"$CONTENTION"
    log "$mode: database lock contention $c, bus retries $r"
}

object_store_toml() { # BUCKET
    cat <<EOF
[workers.object_store]
endpoint = "$S3_ENDPOINT"
region = "us-east-1"
access_key = "$S3_ACCESS_KEY"
secret_key_file = "$WORK/s3-secret"
bucket = "$1"
EOF
}

# ---------------------------------------------------------------- embedded
mode_embedded() {
    local dd="$WORK/emb-data" args pid
    mkdir -p "$dd"
    args=(embedded --data-dir "$dd" --listen "127.0.0.1:$EMB_PORT")
    EMB_S3="its own in-process s3s-fs"
    local help
    help="$("$BIN_DIR/nlds-server" embedded --help 2>&1 || true)"
    # --config applies [workers.index]/[workers.transfer]; with --external-s3
    # its [workers.object_store] replaces the embedded S3 endpoint.
    if grep -q -- '--config' <<<"$help"; then
        {
            if grep -q -- '--external-s3' <<<"$help"; then object_store_toml nlds-emb; fi
            [ -z "$BENCH_WORKERS_TOML" ] || cat "$BENCH_WORKERS_TOML"
        } >"$WORK/embedded.toml"
        args+=(--config "$WORK/embedded.toml")
    fi
    if grep -q -- '--external-s3' <<<"$help"; then
        make_bucket nlds-emb
        args+=(--external-s3)
        EMB_S3="the external s3s-fs at $S3_ENDPOINT"
    fi
    log "embedded: nlds-server ${args[*]} (object store: $EMB_S3)"
    (cd "$dd" && exec "$BIN_DIR/nlds-server" "${args[@]}") >"$WORK/logs/embedded-server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_ready "http://127.0.0.1:$EMB_PORT/readyz" "$pid" "$WORK/logs/embedded-server.log"; then
        record_failed_mode embedded "FAIL(startup)"
        stop_pids "$pid"
        return 1
    fi
    for _ in $(seq 1 50); do [ -s "$dd/client.toml" ] && break; sleep 0.2; done
    [ -s "$dd/client.toml" ] || { log "embedded: $dd/client.toml not written"; record_failed_mode embedded "FAIL(no client.toml)"; stop_pids "$pid"; return 1; }
    SVC=("nlds-server embedded=$pid")
    NLDS_BUCKET="$([ "$EMB_S3" = "its own in-process s3s-fs" ] || echo nlds-emb)" \
        NLDS_CONFIG="$dd/client.toml" nlds_workloads embedded
    stop_pids "$pid"
    contention embedded "$WORK/logs/embedded-server.log"
    rm -rf "${S3_ROOT:?}/nlds-emb" "$dd"
}

# ---------------------------------------------------------------- distributed
mode_distributed() {
    local vhost="nlds-bench-$STAMP" amqp_url db db_url token pid role roles
    if ! port_open "${AMQP_HOSTPORT##*:}" || ! port_open "${PG_HOSTPORT##*:}"; then
        log "distributed: starting RabbitMQ/PostgreSQL with scripts/services.sh"
        "$ROOT/scripts/services.sh" >"$WORK/logs/services.log" 2>&1 ||
            { tail -n 5 "$WORK/logs/services.log" >&2; record_failed_mode distributed "FAIL(services)"; return 1; }
    fi
    # A vhost of our own: no leftovers from, or interference with, other users.
    if rabbitmqctl -q add_vhost "$vhost" >/dev/null 2>&1 &&
        rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null 2>&1; then
        [ "$KEEP" = 1 ] || CLEANUP_CMDS+=("rabbitmqctl -q delete_vhost '$vhost'")
        amqp_url="amqp://guest:guest@$AMQP_HOSTPORT/$vhost"
    else
        log "distributed: cannot create a RabbitMQ vhost (not root?); using the default vhost"
        amqp_url="amqp://guest:guest@$AMQP_HOSTPORT/%2f"
    fi
    db="nlds_bench_${STAMP//-/_}"
    psql -h "${PG_HOSTPORT%%:*}" -p "${PG_HOSTPORT##*:}" -U postgres -w -d postgres -qc "create database $db" >/dev/null ||
        { record_failed_mode distributed "FAIL(createdb)"; return 1; }
    [ "$KEEP" = 1 ] || CLEANUP_CMDS+=("psql -h ${PG_HOSTPORT%%:*} -p ${PG_HOSTPORT##*:} -U postgres -w -d postgres -qc 'drop database if exists $db with (force)'")
    db_url="postgres://postgres@$PG_HOSTPORT/$db"
    if ! "$BIN_DIR/nlds-migration" up -u "$db_url" >"$WORK/logs/migration.log" 2>&1; then
        tail -n 20 "$WORK/logs/migration.log" >&2
        record_failed_mode distributed "FAIL(migration)"
        return 1
    fi
    make_bucket nlds-dist
    token="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    cat >"$WORK/tokens.toml" <<EOF
[[token]]
token = "$token"
user = "bench"
groups = ["bench"]
EOF
    cat >"$WORK/server.toml" <<EOF
[bus]
kind = "rabbitmq"
amqp_url = "$amqp_url"
prefetch = 8

[server]
listen = "127.0.0.1:$DIST_PORT"
public_url = "http://127.0.0.1:$DIST_PORT"
tokens_file = "$WORK/tokens.toml"
rpc_timeout_secs = 30
EOF
    {
        cat <<EOF
[bus]
kind = "rabbitmq"
amqp_url = "$amqp_url"
prefetch = 8

[workers]
database_url = "$db_url"
log_dir = "$WORK/dist-logs"
# The bench token's user is not an account on this host: the processes' own permissions count,
# as in the embedded default (with "user", every put failed "not an account on this host").
posix_checks = "service"

EOF
        object_store_toml nlds-dist
        [ -z "$BENCH_WORKERS_TOML" ] || cat "$BENCH_WORKERS_TOML"
    } >"$WORK/workers.toml"
    mkdir -p "$WORK/dist-logs"

    SVC=()
    if [ "$DIST_WORKERS" = all ]; then
        roles=(all)
    else
        roles=(router indexer transfer-put transfer-get catalogue catalogue-rpc monitor monitor-rpc logger)
    fi
    for role in "${roles[@]}"; do
        "$BIN_DIR/nlds-workers" "$role" --config "$WORK/workers.toml" >"$WORK/logs/worker-$role.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        SVC+=("nlds-workers $role=$pid")
    done
    "$BIN_DIR/nlds-server" serve --config "$WORK/server.toml" >"$WORK/logs/dist-server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    SVC=("nlds-server serve=$pid" "${SVC[@]}")
    log "distributed: server + ${#roles[@]} worker process(es), vhost $vhost, database $db"
    if ! wait_ready "http://127.0.0.1:$DIST_PORT/readyz" "$pid" "$WORK/logs/dist-server.log"; then
        record_failed_mode distributed "FAIL(startup)"
        stop_svc
        return 1
    fi
    sleep 1 # let the workers declare their queues
    local entry name
    for entry in "${SVC[@]}"; do
        name="${entry%%=*}"
        if ! kill -0 "${entry#*=}" 2>/dev/null; then
            log "distributed: $name exited at startup; log tail:"
            tail -n 20 "$WORK/logs/worker-${name#nlds-workers }.log" >&2 2>/dev/null || true
            record_failed_mode distributed "FAIL($name died)"
            stop_svc
            return 1
        fi
    done
    if [ "$WAIT_RUNS" -gt 0 ]; then
        # How soon `--wait` returns in distributed mode (issue 16): the same script as on the
        # embedded default, against this system.
        NLDS_URL="http://127.0.0.1:$DIST_PORT" NLDS_TOKEN="$token" RUNS="$WAIT_RUNS" BUILD=0 \
            BIN_DIR="$BIN_DIR" "$ROOT/bench/wait.sh" || log "distributed: bench/wait.sh failed"
    fi
    [ "$DIST_WORKLOADS" = 0 ] ||
        NLDS_BUCKET=nlds-dist NLDS_URL="http://127.0.0.1:$DIST_PORT" NLDS_TOKEN="$token" nlds_workloads distributed
    stop_svc
    contention distributed "$WORK"/logs/worker-*.log
    rm -rf "${S3_ROOT:?}/nlds-dist"
}

# ---------------------------------------------------------------- run
[ "$want_nlds" = 1 ] && nlds_client_caps
printf '%s' "$S3_SECRET_KEY" >"$WORK/s3-secret"
chmod 600 "$WORK/s3-secret"
EMB_S3="-"
for m in $MODES; do
    log "=== mode $m ==="
    case "$m" in
    rclone) mode_rclone ;;
    embedded) mode_embedded || log "embedded mode failed (see above)" ;;
    distributed) mode_distributed || log "distributed mode failed (see above)" ;;
    *) die "unknown mode $m (rclone, embedded, distributed)" ;;
    esac
done

# ---------------------------------------------------------------- report
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || GIT_REV="$GIT_REV+dirty"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
CMD="RUNS=$RUNS SMALL_N=$SMALL_N SMALL_KB=$SMALL_KB LARGE_N=$LARGE_N LARGE_MB=$LARGE_MB MODES='$MODES' DIST_WORKERS=$DIST_WORKERS bench/run.sh"
python3 - "$RESULTS" "$PROCS" "$CONTENTION" >"$BENCH_OUT" <<PY
import sys, collections, statistics
res = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
procs = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
cont = [l.rstrip("\n").split("\t") for l in open(sys.argv[3]) if l.strip()]
mib = lambda kb: f"{int(kb) / 1024:.0f}" if kb not in ("", "0") else "-"
workloads = ["put small", "get small", "put large", "get large"]
# Targets of issue 14: (median, worst) of nlds seconds over the better rclone's median.
targets = {"put small": (1.0, 1.3), "get small": (0.5, None), "put large": (1.0, None), "get large": (1.0, None)}
runs = collections.defaultdict(list)   # (tool, workload) -> [(seconds, load1)]
failed = collections.defaultdict(list)
for mode, wl, run, sec, nbytes, nfiles, st, crss, srss, load1, io in res:
    if sec and st == "ok":
        runs[(mode, wl)].append((float(sec), load1))
    else:
        failed[(mode, wl)].append(st)
tools = list(dict.fromkeys(r[0] for r in res))
rclones = [t for t in tools if t.startswith("rclone")]
nlds = [t for t in tools if not t.startswith("rclone")]
med = lambda xs: statistics.median(x for x, _ in xs)
worst = lambda xs: max(x for x, _ in xs)
loads = lambda xs: f"{min(float(l) for _, l in xs):.2f}-{max(float(l) for _, l in xs):.2f}" if xs and all(l for _, l in xs) else "-"
best = {}
for wl in workloads:
    cands = [(med(runs[(t, wl)]), t) for t in rclones if runs[(t, wl)]]
    if cands:
        best[wl] = min(cands)
print("### nlds-rs vs rclone, $(date -u +%Y-%m-%d\ %H:%M) UTC ($GIT_REV)")
print()
print("Command: \`$CMD\`. Machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); "
      "S3: s3s-fs 0.14.1 on loopback; $(rclone version 2>/dev/null | head -n1); "
      "small = $SMALL_N x $SMALL_KB KiB, large = $LARGE_N x $LARGE_MB MiB; $RUNS runs of each workload; "
      "distributed = RabbitMQ + PostgreSQL, workers: $DIST_WORKERS; embedded object store: $EMB_S3. "
      "Load average (1, 5, 15 min) at the end: $LOAD_END; the load column gives the 1-minute load at the start of each run.")
print()
print("| workload | rclone (better of: " + ", ".join(rclones) + ") median s | tool | median s | worst s | median / rclone | worst / rclone | target | met | load at start |")
print("|---|---:|---|---:|---:|---:|---:|---|---|---|")
for wl in workloads:
    if wl not in best:
        continue
    ref, reft = best[wl]
    for t in rclones:
        xs = runs[(t, wl)]
        if xs:
            print(f"| {wl} | {ref:.2f} ({reft}) | {t} | {med(xs):.2f} | {worst(xs):.2f} | {med(xs) / ref:.2f} | {worst(xs) / ref:.2f} | | | {loads(xs)} |")
    for t in nlds:
        xs = runs[(t, wl)]
        tm, tw = targets[wl]
        if not xs or failed[(t, wl)]:
            print(f"| {wl} | {ref:.2f} ({reft}) | {t} | - | - | - | - | | FAILED: {'; '.join(failed[(t, wl)])} | {loads(xs)} |")
            continue
        m, w = med(xs) / ref, worst(xs) / ref
        goal = f"median <= {tm}" + (f", worst <= {tw}" if tw else "")
        ok = m <= tm and (tw is None or w <= tw)
        print(f"| {wl} | {ref:.2f} ({reft}) | **{t}** | {med(xs):.2f} | {worst(xs):.2f} | **{m:.2f}** | {w:.2f} | {goal} | {'yes' if ok else 'NO'} | {loads(xs)} |")
print()
print("Every run (seconds; load: 1-minute load average at the start; I/O stall: share of the run's wall time in which some task waited for I/O, from /proc/pressure/io):")
print()
print("| tool | workload | run | seconds | MB/s | files/s | load | I/O stall % | peak RSS client MiB | peak RSS services MiB | status |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for mode, wl, run, sec, nbytes, nfiles, st, crss, srss, load1, io in res:
    if sec:
        s = float(sec)
        mbs = f"{int(nbytes) / 1e6 / s:.1f}" if s > 0 else "-"
        fps = (f"{int(nfiles) / s:.0f}" if int(nfiles) / s >= 10 else f"{int(nfiles) / s:.1f}") if s > 0 else "-"
    else:
        sec = mbs = fps = "-"
    print(f"| {mode} | {wl} | {run} | {sec} | {mbs} | {fps} | {load1 or '-'} | {io or '-'} | {mib(crss)} | {mib(srss)} | {st} |")
print()
print("Peak RSS per process (MiB, VmHWM, highest over every run; limits of issue 14: 150 MiB for the embedded process, 100 MiB for each distributed one) and CPU seconds over the whole mode:")
print()
peak = collections.OrderedDict()
cpu = {}
for mode, name, kb, c in procs:
    base = name.rsplit(" (", 1)[0]
    key = (mode, base)
    if name.endswith("(total CPU)"):
        cpu[key] = c
        peak.setdefault(key, 0)
    else:
        peak[key] = max(peak.get(key, 0), int(kb or 0))
print("| mode | process | peak RSS MiB | limit MiB | within | CPU s |")
print("|---|---|---:|---:|---|---:|")
for (mode, base), kb in peak.items():
    limit = 150 if mode == "embedded" and base.startswith("nlds") else 100 if mode == "distributed" and base.startswith("nlds") else None
    within = "-" if limit is None else ("yes" if kb / 1024 <= limit else "NO")
    print(f"| {mode} | {base} | {mib(kb)} | {limit or '-'} | {within} | {cpu.get((mode, base), '-')} |")
if cont:
    print()
    print("Lock contention (operations that met a database lock) and bus retries (deliveries redelivered after a transient fault, each after at least 2 s), as the nlds processes logged them when they stopped, summed over all runs:")
    print()
    print("| mode | database lock contention | bus retries |")
    print("|---|---:|---:|")
    for mode, c, r in cont:
        print(f"| {mode} | {c} | {r} |")
PY

echo
cat "$BENCH_OUT"
echo
log "markdown written to $BENCH_OUT"
if [ -n "${BENCH_APPEND:-}" ]; then
    { echo; cat "$BENCH_OUT"; } >>"$BENCH_APPEND"
    log "appended to $BENCH_APPEND"
fi
if awk -F'\t' '$7 != "ok" { bad = 1 } END { exit !bad }' "$RESULTS"; then
    log "some steps did not finish ok (see the status column)"
    exit 2
fi
