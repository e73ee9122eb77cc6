#!/usr/bin/env bash
# Peak memory of the embedded process during a putlist and a getlist of a long list of empty
# files (issue 14, items 2 and 3: 150 MiB whatever the number of files). Not part of CI.
#
#   bench/lists.sh                     # 200,000 files in 100 directories, release build
#   N=1000000 bench/lists.sh           # the issue's 1,000,000 paths
#   HEAPTRACK=1 bench/lists.sh         # the server under heaptrack (it hooks glibc's malloc,
#                                      # the binaries' allocator)
#   PROFILE=debug bench/lists.sh       # the debug build (what the tests run; no release build)
#   SERVER_ARGS="--set memory.file_threads=512" bench/lists.sh   # settings of the server
#
# Prints, per step, the elapsed time, the process's peak RSS (VmHWM) and the CLI's (its maximum
# resident set as /usr/bin/time reports it; issue 14: the CLI streams its FILELIST), and writes a timeline
# of its RssAnon / RssFile (MiB) and threads every 0.5 s to $WORK/rss.tsv (kept with KEEP=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-200000}"
DIRS="${DIRS:-100}"
PORT="${PORT:-8741}"
BUILD="${BUILD:-1}"
KEEP="${KEEP:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${PROFILE:-release}"
BIN_DIR="${BIN_DIR:-$CARGO_TARGET_DIR/$PROFILE}"
WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nlds-lists.XXXXXX")"
while read -r v; do unset "$v"; done < <(compgen -e | grep '^NLDS_' || true)
unset AWS_CA_BUNDLE

log() { printf '[lists %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PID=""
SAMPLER=""
cleanup() {
    set +e
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

features=()
[ "$PROFILE" = release ] && features=(--release)
if [ "$BUILD" = 1 ]; then
    log "building ($PROFILE${features[*]:+: ${features[*]}}) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build -p nlds-embedded -p nlds-cli "${features[@]}" >"$WORK/build.log" 2>&1) ||
        { tail -n 30 "$WORK/build.log" >&2; exit 1; }
fi

log "making $N empty files in $DIRS directories under $WORK/src"
mkdir -p "$WORK/src"
python3 - "$WORK/src" "$N" "$DIRS" "$WORK/list" <<'EOF'
import os, sys
root, n, dirs, listfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(listfile, "w") as out:
    for d in range(dirs):
        os.makedirs(f"{root}/d{d:03}", exist_ok=True)
    for i in range(n):
        p = f"{root}/d{i % dirs:03}/f{i:07}"
        open(p, "w").close()
        out.write(p + "\n")
EOF

dd="$WORK/data"
read -r -a server_args <<<"${SERVER_ARGS:-}"
mkdir -p "$dd"
runner=()
# GLIBC_TUNABLES set: the server does not exec itself to set it (docs/MEMORY.md), which would
# leave heaptrack recording only the first few milliseconds.
[ "${HEAPTRACK:-0}" = 1 ] && runner=(env GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576}" heaptrack -o "$WORK/heaptrack")
(cd "$dd" && exec "${runner[@]}" "$BIN_DIR/nlds-server" embedded --data-dir "$dd" --listen "127.0.0.1:$PORT" "${server_args[@]}") \
    >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do [ -s "$dd/client.toml" ] && break; sleep 0.2; done
[ -s "$dd/client.toml" ] || { tail -n 20 "$WORK/server.log" >&2; exit 1; }
# Under heaptrack the server is its child.
SPID="$(pgrep -f -n "nlds-server embedded --data-dir $dd" || echo "$PID")"
export NLDS_CONFIG="$dd/client.toml"

rss() { awk -v k="$1" '$1 == k":" { print int($2 / 1024) }' "/proc/$SPID/status"; }
(while kill -0 "$SPID" 2>/dev/null; do
    printf '%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$(rss RssAnon)" "$(rss RssFile)" \
        "$(awk '$1 == "Threads:" { print $2 }' "/proc/$SPID/status")"
    sleep 0.5
done) >"$WORK/rss.tsv" 2>/dev/null &
SAMPLER=$!

# The CLI's own peak, when /usr/bin/time is there (it is not the shell's `time`).
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f %M -o "$WORK/cli.kib")
step() { # NAME CMD...
    local name="$1" t0 cli="-"
    shift
    echo 5 >"/proc/$SPID/clear_refs" 2>/dev/null || true
    rm -f "$WORK/cli.kib"
    t0="$(date +%s.%N)"
    "${timer[@]}" "$@" >"$WORK/$name.log" 2>&1 || { log "$name failed:"; tail -n 20 "$WORK/$name.log" >&2; exit 1; }
    [ -s "$WORK/cli.kib" ] && cli="$(($(tail -n 1 "$WORK/cli.kib") / 1024))"
    printf '%-8s %7.1f s   peak RSS %4d MiB (now anon %d, file %d MiB)   CLI peak %s MiB\n' "$name" \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$(rss VmHWM)" "$(rss RssAnon)" "$(rss RssFile)" "$cli"
}
log "idle: anon $(rss RssAnon) MiB, file $(rss RssFile) MiB"
step putlist "$BIN_DIR/nlds" putlist "$WORK/list" -l lists --wait --poll 500ms
mkdir -p "$WORK/restored"
step getlist "$BIN_DIR/nlds" getlist "$WORK/list" -l lists -r "$WORK/restored" --wait --poll 500ms
got="$(find "$WORK/restored" -type f | wc -l)"
[ "$got" = "$N" ] || { log "restored $got of $N files"; exit 1; }
log "restored all $N files"
if [ "${HEAPTRACK:-0}" = 1 ]; then
    kill -TERM "$SPID"; wait "$PID" 2>/dev/null || true; PID=""
    heaptrack_print "$WORK"/heaptrack*.zst 2>/dev/null | sed -n '/PEAK MEMORY CONSUMERS/,+80p'
fi
