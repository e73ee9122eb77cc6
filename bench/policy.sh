#!/usr/bin/env bash
# A policy pass over a synthetic catalogue of 10 million files in PostgreSQL. Not part of CI; see
# bench/README.md and BENCHMARKS.md ("Policy pass").
#
#   bench/policy.sh                      # 10,000,000 files (about 15 minutes of loading on 2 vCPU)
#   bench/policy.sh --files 1000000      # a quick run
#   BUILD=0 KEEP=1 bench/policy.sh       # no rebuild; keep the database for EXPLAIN ANALYZE
#   BUILD=0 LOAD=0 bench/policy.sh       # time passes over the database a KEEP=1 run left
#   RUNS=0 bench/policy.sh               # load only (the database is kept)
#
# It creates a fresh database (PGHOST/PGPORT/PGUSER, default 127.0.0.1:5432 postgres), applies the
# migrations (`nlds-migration up`), loads the rows with COPY from the generator's CSV streams
# (`policy_bench gen TABLE`: N / 1000 holdings, one transaction each, a warm copy of every file, a
# cold copy in a stored aggregation for 40%, tags, varied sizes, ages, last accesses, groups and
# tenancies), ANALYZEs, then times RUNS (default 3) full dry-run passes with three rules (a `none`
# rule for one group, archive after 30 days, evict after 90 days idle) under /usr/bin/time -v.
# It prints the median and worst run, evaluations per second, peak RSS, the ratio to RobinHood's
# ~4,000 entries/s scan rate, and EXPLAIN ANALYZE of one scan page.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILES=10000000
while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES="$2"; shift 2 ;;
        --files=*) FILES="${1#--files=}"; shift ;;
        *) echo "usage: $0 [--files N]" >&2; exit 2 ;;
    esac
done
RUNS="${RUNS:-3}"
BUILD="${BUILD:-1}"
KEEP="${KEEP:-0}"
LOAD="${LOAD:-1}"
[ "$LOAD" = 1 ] || KEEP=1
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
DB="${DB:-nlds_policy_bench}"
# URL_PARAMS: connection parameters of the passes, e.g. URL_PARAMS='options=-c%20jit%3Doff'.
URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB${URL_PARAMS:+?$URL_PARAMS}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BIN_DIR:-$CARGO_TARGET_DIR/release}"
GEN="$BIN_DIR/examples/policy_bench"
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

log() { printf '[policy-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

cleanup() {
    if [ "$KEEP" != 1 ]; then
        psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "cargo build --release -p nlds-migration -p nlds-workers --example policy_bench"
    (cd "$ROOT" && cargo build --release -q -p nlds-migration && \
        cargo build --release -q -p nlds-workers --example policy_bench)
fi
[ -x "$GEN" ] || { echo "missing $GEN (BUILD=1 builds it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }

if [ "$LOAD" = 1 ]; then
log "fresh database $DB"
psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql -d postgres -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="$URL" "$BIN_DIR/nlds-migration" up >/dev/null

# Column lists in the generator's order.
declare -A COLS=(
    [holding]='id, label, "user", "group", created'
    [tag]='id, holding_id, key, value'
    [transaction]='id, transaction_id, holding_id, ingest_time'
    [file]='id, holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns, last_access, access_count'
    [location]='id, file_id, tier, bucket, key, created, tenancy'
    [aggregation]='id, name, transaction_id, holding_id, backend, state, size, members, adler32, crc32c, blake3, created, lease_until, stored'
    [aggregation_member]='id, aggregation_id, file_id, position, data_offset'
)
LOAD_START="$(now)"
for t in holding tag transaction file location aggregation aggregation_member; do
    log "COPY $t"
    "$GEN" gen "$t" --files "$FILES" --now "$NOW" |
        psql -d "$DB" -qc "COPY \"$t\" (${COLS[$t]}) FROM STDIN (FORMAT csv)"
done
# The identity sequences continue after the loaded ids.
for t in holding tag transaction file location aggregation aggregation_member; do
    psql -d "$DB" -qtAc "SELECT setval(pg_get_serial_sequence('\"$t\"', 'id'), (SELECT COALESCE(MAX(id), 1) FROM \"$t\"))" >/dev/null
done
log "ANALYZE"
psql -d "$DB" -qc "VACUUM ANALYZE" >/dev/null
LOAD_SECS="$(echo "$(now) - $LOAD_START" | bc)"
log "loaded $FILES files in ${LOAD_SECS}s"
else
    LOAD_SECS="(earlier run)"
    FILES="$(psql -d "$DB" -qtAc "SELECT COUNT(*) FROM file")"
fi
SIZE="$(psql -d "$DB" -qtAc "SELECT pg_size_pretty(pg_database_size('$DB'))")"
if [ "$RUNS" = 0 ]; then
    KEEP=1
    log "loaded only (RUNS=0): database $DB ($SIZE) kept; time passes with BUILD=0 LOAD=0"
    exit 0
fi

log "$RUNS dry-run passes"
OUT="$(mktemp)"; TIMES="$(mktemp)"
/usr/bin/time -v -o "$TIMES" "$GEN" pass --database-url "$URL" --runs "$RUNS" | tee "$OUT" >&2
PEAK_KB="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMES")"
CPU_U="$(awk -F': ' '/User time/ {print $2}' "$TIMES")"
CPU_S="$(awk -F': ' '/System time/ {print $2}' "$TIMES")"

mapfile -t SECS < <(grep '^run=' "$OUT" | sed 's/.*seconds=\([0-9.]*\).*/\1/' | sort -n)
EVAL="$(grep '^run=' "$OUT" | head -1 | sed 's/.*evaluated=\([0-9]*\).*/\1/')"
MEDIAN="${SECS[$(( ${#SECS[@]} / 2 ))]}"
WORST="${SECS[$(( ${#SECS[@]} - 1 ))]}"
RATE="$(echo "$EVAL / $MEDIAN" | bc)"
RH=4000
RATIO="$(echo "scale=1; $RATE / $RH" | bc)"

log "EXPLAIN ANALYZE of one scan page (the first 10,000 files)"
EXPLAIN="$(psql -d "$DB" -qtA <<'SQL'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)
WITH bounds AS (SELECT MAX(id) AS hi FROM (SELECT id FROM file
         WHERE id > 0 AND kind = 'file' AND deleted_at IS NULL ORDER BY id LIMIT 10000) s)
SELECT f.id, f.holding_id, f.path, f.size, t.ingest_time AS ingested, f.last_access,
       h.label, h."user", h."group", w.tenancy AS tenancy,
       (w.file_id IS NOT NULL) AS has_warm, (c.file_id IS NOT NULL) AS has_cold,
       (c.file_id IS NOT NULL AND a.state IS NOT NULL AND a.state = 'stored') AS cold_verified,
       (am.file_id IS NOT NULL) AS in_aggregation,
       EXISTS (SELECT 1 FROM pin p WHERE p.file_id = f.id AND p.until > now()) AS pinned,
       (r.id IS NOT NULL OR EXISTS (SELECT 1 FROM stage_file sf
            WHERE sf.file_id = f.id AND sf.state IN ('SUBMITTED', 'STARTED'))) AS awaited
FROM file f
JOIN "transaction" t ON t.id = f.transaction_id
JOIN holding h ON h.id = f.holding_id
LEFT JOIN (SELECT file_id, tenancy FROM location WHERE tier = 'warm' AND file_id > 0 AND file_id <= (SELECT hi FROM bounds)) w ON w.file_id = f.id
LEFT JOIN (SELECT file_id FROM location WHERE tier = 'cold' AND file_id > 0 AND file_id <= (SELECT hi FROM bounds)) c ON c.file_id = f.id
LEFT JOIN (SELECT file_id, aggregation_id FROM aggregation_member WHERE 1 = 1 AND file_id > 0 AND file_id <= (SELECT hi FROM bounds)) am ON am.file_id = f.id
LEFT JOIN aggregation a ON a.id = am.aggregation_id
LEFT JOIN recall r ON r.aggregation_id = am.aggregation_id
WHERE f.id > 0 AND f.id <= (SELECT hi FROM bounds) AND f.kind = 'file' AND f.deleted_at IS NULL
ORDER BY f.id
SQL
)" || EXPLAIN="(EXPLAIN failed: the scan's query may have changed; see nlds-workers/src/policy/scan.rs)"
echo "$EXPLAIN" | tail -3 >&2

REV="$(cd "$ROOT" && git rev-parse --short HEAD)"
cat <<EOF

## Policy pass, $(date -u +%Y-%m-%d) ($REV)

Machine: $(nproc) vCPU, $(free -g | awk '/Mem:/ {print $2}') GiB; PostgreSQL $(psql -d postgres -qtAc 'SHOW server_version'); catalogue: $FILES files in $(( (FILES + 999) / 1000 )) holdings ($SIZE), loaded with COPY in ${LOAD_SECS%.*} s; $RUNS dry-run passes, three rules.

| files | median s | worst s | evaluations/s | RobinHood ~$RH/s | ratio | peak RSS MiB | CPU s (user+sys, all runs) |
|---:|---:|---:|---:|---:|---:|---:|---:|
| $FILES | $MEDIAN | $WORST | $RATE | $RH | ${RATIO}x | $(( PEAK_KB / 1024 )) | $(printf "%.1f" "$(echo "$CPU_U + $CPU_S" | bc)") |

Rule tallies of the last run:
\`\`\`
$(grep '^rule=' "$OUT")
\`\`\`
EXPLAIN ANALYZE of one page (10,000 files), last lines:
\`\`\`
$(echo "$EXPLAIN" | tail -3)
\`\`\`
EOF
rm -f "$OUT" "$TIMES"
