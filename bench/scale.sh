#!/usr/bin/env bash
# nlds-rs catalogue at scale: a synthetic catalogue of FILES files in PostgreSQL, queried through
# the HTTP API of the distributed mode. Not part of CI. See bench/README.md.
#
#   bench/scale.sh                         # 10,000,000 files, 10,000 holdings, 100 users
#   FILES=1000000 bench/scale.sh           # quick run
#   KEEP=1 bench/scale.sh                  # keep the database (its name is printed) ...
#   DB=nlds_scale_x SKIP_LOAD=1 bench/scale.sh   # ... and measure it again, e.g. other binaries
#   QUERIES=label HOLD=600 ... bench/scale.sh     # one query, then keep the API up to profile it
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped on exit; the
# PostgreSQL database and the RabbitMQ vhost created here are dropped unless KEEP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- knobs
FILES="${FILES:-10000000}"       # files in the catalogue
HOLDINGS="${HOLDINGS:-10000}"    # holdings (FILES / HOLDINGS files each)
USERS="${USERS:-100}"            # users (HOLDINGS / USERS holdings each); 10 users per group
TX_PER_HOLDING="${TX_PER_HOLDING:-2}" # transactions (and monitor records) per holding
FILES_PER_DIR="${FILES_PER_DIR:-100}" # files per directory of a holding
REQUESTS="${REQUESTS:-1000}"     # requests per query
MEASURE_USERS="${MEASURE_USERS:-10}" # the requests are spread over this many users
BUILD="${BUILD:-1}"              # 0: use the binaries already in $BIN_DIR
KEEP="${KEEP:-0}"                # 1: keep the database and the vhost
SKIP_LOAD="${SKIP_LOAD:-0}"      # 1: DB already holds a catalogue made by this script
MIN_FREE_GB="${MIN_FREE_GB:-15}" # refuse to load if the disk would fall below this
MEASURE="${MEASURE:-1}"          # 0: load only (with KEEP=1, to measure later with SKIP_LOAD=1)
QUERIES="${QUERIES:-exact list stat label prefix}" # the queries measured, in this order
HOLD="${HOLD:-0}"                # seconds to keep the API up after measuring (to profile it)
PORT="${PORT:-8741}"
AMQP_HOSTPORT="${AMQP_HOSTPORT:-127.0.0.1:5672}"
PG_HOSTPORT="${PG_HOSTPORT:-127.0.0.1:5432}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BIN_DIR:-$CARGO_TARGET_DIR/release}"
STAMP="$(date +%Y%m%d%H%M%S)-$$"
DB="${DB:-nlds_scale_${STAMP//-/_}}"
BENCH_OUT="${BENCH_OUT:-${TMPDIR:-/tmp}/nlds-scale-results-$STAMP.md}"

while read -r v; do unset "$v"; done < <(compgen -e | grep '^NLDS_' || true)
log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }
PSQL=(psql -h "${PG_HOSTPORT%%:*}" -p "${PG_HOSTPORT##*:}" -U postgres -w -v ON_ERROR_STOP=1 -qAt)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nlds-scale.XXXXXX")"
mkdir -p "$WORK/logs"
PIDS=()
CLEANUP=()
cleanup() {
    local p c
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for c in "${CLEANUP[@]}"; do eval "$c" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

[ $((FILES % HOLDINGS)) -eq 0 ] || die "FILES ($FILES) must be a multiple of HOLDINGS ($HOLDINGS)"
[ $((HOLDINGS % USERS)) -eq 0 ] || die "HOLDINGS ($HOLDINGS) must be a multiple of USERS ($USERS)"
[ "$MEASURE_USERS" -le "$USERS" ] || die "MEASURE_USERS must be at most USERS"
for q in $QUERIES; do
    case "$q" in
    exact | list | stat | label | prefix) ;;
    *) die "QUERIES: unknown query '$q' (known: exact list stat label prefix)" ;;
    esac
done
[[ "$HOLD" =~ ^[0-9]+$ ]] || die "HOLD must be a number of seconds, not '$HOLD'"
PER_HOLDING=$((FILES / HOLDINGS))

# ---------------------------------------------------------------- binaries
if [ "$BUILD" = 1 ]; then
    log "building release binaries (BUILD=0 skips this)"
    (cd "$ROOT" && cargo build --release -p nlds-embedded -p nlds-workers -p nlds-migration) >&2
fi
for b in nlds-server nlds-workers nlds-migration; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b missing (BUILD=1 or BIN_DIR=...)"
done

# ---------------------------------------------------------------- services
"${PSQL[@]}" -d postgres -c 'select 1' >/dev/null 2>&1 || die "PostgreSQL at $PG_HOSTPORT does not answer (scripts/services.sh)"
VHOST="nlds-scale-$STAMP"
rabbitmqctl -q add_vhost "$VHOST" >/dev/null && rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null ||
    die "cannot create the RabbitMQ vhost $VHOST (run as root, RabbitMQ at $AMQP_HOSTPORT)"
[ "$KEEP" = 1 ] || CLEANUP+=("rabbitmqctl -q delete_vhost '$VHOST'")
AMQP_URL="amqp://guest:guest@$AMQP_HOSTPORT/$VHOST"
DB_URL="postgres://postgres@$PG_HOSTPORT/$DB"

# ---------------------------------------------------------------- load
if [ "$SKIP_LOAD" = 1 ]; then
    "${PSQL[@]}" -d "$DB" -c 'select 1' >/dev/null || die "SKIP_LOAD=1 but database $DB does not answer"
    log "using the catalogue already in $DB"
    FILES="$("${PSQL[@]}" -d "$DB" -c 'select count(*) from file')"
    HOLDINGS="$("${PSQL[@]}" -d "$DB" -c 'select count(*) from holding')"
    USERS="$("${PSQL[@]}" -d "$DB" -c 'select count(distinct "user") from holding')"
    PER_HOLDING=$((FILES / HOLDINGS))
    "$BIN_DIR/nlds-migration" up -u "$DB_URL" >"$WORK/logs/migration.log" 2>&1 ||
        { tail -n 20 "$WORK/logs/migration.log" >&2; die "migration failed"; }
else
    # About 800 bytes per file with its location, checksum and indexes.
    need_gb=$((FILES * 800 / 1000000000 + MIN_FREE_GB))
    free_gb=$(df -BG --output=avail "$(dirname "$("${PSQL[@]}" -d postgres -c 'show data_directory')")" 2>/dev/null | tail -1 | tr -dc 0-9)
    free_gb="${free_gb:-$(df -BG --output=avail / | tail -1 | tr -dc 0-9)}"
    [ "$free_gb" -ge "$need_gb" ] || die "only $free_gb GB free, the load needs about $need_gb GB (with $MIN_FREE_GB GB to spare): lower FILES"
    "${PSQL[@]}" -d postgres -c "create database $DB" >/dev/null
    [ "$KEEP" = 1 ] || CLEANUP+=("${PSQL[*]} -d postgres -c 'drop database if exists $DB with (force)'")
    "$BIN_DIR/nlds-migration" up -u "$DB_URL" >"$WORK/logs/migration.log" 2>&1 ||
        { tail -n 20 "$WORK/logs/migration.log" >&2; die "migration failed"; }
    log "loading $FILES files, $HOLDINGS holdings, $USERS users into $DB"
    t0=$(date +%s)
    # Holding h belongs to user u<h mod USERS>, in group g<user / 10>; its files are split
    # evenly over its transactions, FILES_PER_DIR to a directory. Every file has one warm copy and
    # a blake3 checksum; every transaction a monitor record with one COMPLETE sub-record.
    "${PSQL[@]}" -d "$DB" \
        -v files="$FILES" -v holdings="$HOLDINGS" -v users="$USERS" -v tx="$TX_PER_HOLDING" \
        -v per="$PER_HOLDING" -v perdir="$FILES_PER_DIR" <<'SQL'
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
CREATE TEMP VIEW gen_holding AS
  SELECT h, format('u%s', lpad((((h - 1) % :users) + 1)::text, 4, '0')) AS u,
         format('g%s', lpad(((((h - 1) % :users)) / 10 + 1)::text, 3, '0')) AS g,
         format('run-%s', lpad(h::text, 6, '0')) AS label,
         timestamptz '2026-01-01 00:00:00+00' + h * interval '1 minute' AS created
    FROM generate_series(1, :holdings) AS h;
INSERT INTO holding (id, label, "user", "group", created)
  SELECT h, label, u, g, created FROM gen_holding;
INSERT INTO tag (holding_id, key, value)
  SELECT h, 'project', format('p%s', h % 50) FROM gen_holding;
INSERT INTO "transaction" (id, transaction_id, holding_id, ingest_time)
  SELECT (h - 1) * :tx + t + 1, gen_random_uuid()::text, h, created + t * interval '1 second'
    FROM gen_holding, generate_series(0, :tx - 1) AS t;
INSERT INTO transaction_record (id, transaction_id, "user", "group", api_action, job_label,
                                label, holding_id, created, updated)
  SELECT t.id, t.transaction_id, h.u, h.g, 'put', 'job-' || t.id, h.label, h.h,
         t.ingest_time, t.ingest_time + interval '1 minute'
    FROM "transaction" t JOIN gen_holding h ON h.h = t.holding_id;
INSERT INTO sub_record (transaction_record_id, sub_id, state, files, bytes, last_updated)
  SELECT id, gen_random_uuid()::text, 100, :per / :tx, (:per / :tx) * 4096,
         updated FROM transaction_record;
INSERT INTO file (id, holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns,
                  access_count)
  SELECT f, h, (h - 1) * :tx + (i * :tx / :per) + 1,
         format('/gws/%s/run-%s/d%s/f%s.nc', u, lpad(h::text, 6, '0'),
                lpad((i / :perdir)::text, 4, '0'), lpad(i::text, 6, '0')),
         'file', 4096 + f % 1000, 1000, 1000, 33188, 1767225600000000000 + f, 0
    FROM (SELECT f, (f - 1) / :per + 1 AS h, (f - 1) % :per AS i
            FROM generate_series(1, :files) AS f) s
    JOIN LATERAL (SELECT format('u%s', lpad((((s.h - 1) % :users) + 1)::text, 4, '0')) AS u) x
      ON true;
INSERT INTO location (file_id, tier, bucket, key, created)
  SELECT id, 'warm', 'nlds.' || holding_id, md5(id::text), timestamptz '2026-01-02 00:00:00+00'
    FROM file;
INSERT INTO checksum (file_id, algorithm, value)
  SELECT id, 'blake3', md5(id::text) || md5((id + 1)::text) FROM file;
SQL
    for t in holding tag transaction transaction_record sub_record file location checksum; do
        "${PSQL[@]}" -d "$DB" -c "select setval(pg_get_serial_sequence('\"$t\"', 'id'), (select coalesce(max(id), 0) + 1 from \"$t\"), false)" >/dev/null
    done
    log "VACUUM ANALYZE"
    "${PSQL[@]}" -d "$DB" -c 'VACUUM ANALYZE' >/dev/null
    log "loaded in $(($(date +%s) - t0)) s; database size $("${PSQL[@]}" -d "$DB" -c "select pg_size_pretty(pg_database_size('$DB'))")"
fi

if [ "$MEASURE" != 1 ]; then
    log "loaded only (MEASURE=0)"
    [ "$KEEP" != 1 ] || log "kept database $DB and vhost $VHOST"
    exit 0
fi

# ---------------------------------------------------------------- the API
TOKENS="$WORK/tokens.toml"
: >"$TOKENS"
for i in $(seq 1 "$MEASURE_USERS"); do
    u=$(printf 'u%04d' "$i")
    g=$(printf 'g%03d' $(((i - 1) / 10 + 1)))
    printf '[[token]]\ntoken = "scale-%s-%s"\nuser = "%s"\ngroups = ["%s"]\n\n' "$u" "$STAMP" "$u" "$g" >>"$TOKENS"
done
cat >"$WORK/server.toml" <<EOF
[bus]
kind = "rabbitmq"
amqp_url = "$AMQP_URL"

[server]
listen = "127.0.0.1:$PORT"
public_url = "http://127.0.0.1:$PORT"
tokens_file = "$TOKENS"
rpc_timeout_secs = 30
EOF
cat >"$WORK/workers.toml" <<EOF
[bus]
kind = "rabbitmq"
amqp_url = "$AMQP_URL"

[workers]
database_url = "$DB_URL"
log_dir = "$WORK/worker-logs"
EOF
mkdir -p "$WORK/worker-logs"
declare -A ROLE_PID
for role in catalogue-rpc monitor-rpc; do
    "$BIN_DIR/nlds-workers" "$role" --config "$WORK/workers.toml" >"$WORK/logs/$role.log" 2>&1 &
    PIDS+=($!)
    ROLE_PID[$role]=$!
done
# The server logs each response's latency (microseconds, at debug): the server-side figures.
RUST_LOG="info,tower_http::trace::on_response=debug" \
    "$BIN_DIR/nlds-server" serve --config "$WORK/server.toml" >"$WORK/logs/server.log" 2>&1 &
PIDS+=($!)
ROLE_PID[server]=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
    sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" || { tail -n 20 "$WORK"/logs/*.log >&2; die "the server did not start"; }
sleep 1
for p in "${PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { tail -n 20 "$WORK"/logs/*.log >&2; die "a process exited at startup"; }
done

# ---------------------------------------------------------------- measure
# One curl process per measured user keeps one connection alive for its share of the requests
# and reports each request's time (`time_total`, from sending the request to the last byte).
# The generated paths hold only [-./0-9a-z]; a regex adds `^`.
urlencode() { local v="${1//%/%25}"; v="${v//^/%5E}"; v="${v// /%20}"; printf '%s' "$v"; }
BASE="http://127.0.0.1:$PORT/api/v2"
HOLDINGS_PER_USER=$((HOLDINGS / USERS))
DIRS_PER_HOLDING=$(((PER_HOLDING + FILES_PER_DIR - 1) / FILES_PER_DIR))
# url_for QUERY USER(1-based) N: the N-th request of QUERY for USER, spread over the user's
# holdings, directories and files.
url_for() {
    local q="$1" ui="$2" n="$3" u hk h label
    u=$(printf 'u%04d' "$ui")
    hk=$(((n * 7919) % HOLDINGS_PER_USER))
    h=$((hk * USERS + ui))
    label=$(printf 'run-%06d' "$h")
    case "$q" in
    exact)
        local i=$(((n * 104729) % PER_HOLDING))
        echo "$BASE/files?path=$(urlencode "$(printf '/gws/%s/%s/d%04d/f%06d.nc' "$u" "$label" $((i / FILES_PER_DIR)) "$i")")"
        ;;
    list) echo "$BASE/holdings" ;;
    stat) echo "$BASE/transactions?limit=10&descending=true" ;;
    label) echo "$BASE/files?label=$label&limit=1000" ;;
    prefix)
        local d=$((n % DIRS_PER_HOLDING))
        echo "$BASE/files?regex=true&path=$(urlencode "$(printf '^/gws/%s/%s/d%04d/' "$u" "$label" "$d")")"
        ;;
    esac
}
# CPU time (user and system, clock ticks) of each process that serves a request: the catalogue,
# the monitor and the server, every PostgreSQL process and RabbitMQ's. One "name ticks" line each;
# a process that exits in between is left out.
TICK_HZ=$(getconf CLK_TCK)
cpu_ticks() {
    local name pid
    for name in catalogue-rpc monitor-rpc server; do
        pid=${ROLE_PID[$name]}
        awk -v n="$name" '{ print n, $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || true
    done
    for pid in $(pgrep -u postgres postgres || true); do
        awk '{ print "postgres", $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || true
    done
    for pid in $(pgrep beam.smp || true); do
        awk '{ print "rabbitmq", $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || true
    done
}
# BEFORE AFTER REQUESTS -> "catalogue monitor server postgres rabbitmq": CPU ms per request.
cpu_per_request() {
    awk -v hz="$TICK_HZ" -v n="$3" '
        FNR == NR { t[$1] -= $2; next } { t[$1] += $2 }
        END {
            f = 1000 / hz / n
            printf "%.2f %.2f %.2f %.2f %.2f\n", t["catalogue-rpc"] * f, t["monitor-rpc"] * f,
                t["server"] * f, t["postgres"] * f, t["rabbitmq"] * f
        }' "$1" "$2"
}
# QUERY -> one line "count p50_ms p99_ms max_ms errors server_p50_ms server_p99_ms cpu..." (errors:
# not 200; the first three as curl saw them, from sending the request to its last byte; the
# server's from its log, from the request read to the response written; then the CPU ms per
# request of the catalogue, the monitor, the server, PostgreSQL and RabbitMQ, from /proc, which a busy
# neighbour on a shared VM disturbs far less than the latencies).
measure() {
    local q="$1" per=$((REQUESTS / MEASURE_USERS)) ui n cfg out="$WORK/times-$q"
    local logged
    logged=$(wc -l <"$WORK/logs/server.log")
    : >"$out"
    cpu_ticks >"$WORK/cpu-before"
    for ui in $(seq 1 "$MEASURE_USERS"); do
        cfg="$WORK/curl-$q-$ui"
        {
            printf 'header = "Authorization: Bearer scale-%s-%s"\n' "$(printf 'u%04d' "$ui")" "$STAMP"
            printf 'write-out = "%%{http_code} %%{time_total}\\n"\n'
            for n in $(seq 1 "$per"); do
                printf 'url = "%s"\noutput = "/dev/null"\n' "$(url_for "$q" "$ui" "$n")"
            done
        } >"$cfg"
        curl -sS -K "$cfg" >>"$out"
    done
    cpu_ticks >"$WORK/cpu-after"
    local errors server
    errors=$(awk '$1 != 200 { e++ } END { print e + 0 }' "$out")
    sleep 0.2 # the last response's log line
    server=$(tail -n +"$((logged + 1))" "$WORK/logs/server.log" |
        sed -nE 's/.*finished processing request.*latency=([0-9]+) .*/\1/p' | sort -n |
        awk '{ t[NR] = $1 / 1000 } END {
            if (NR == 0) { print "- -"; exit }
            printf "%.2f %.2f\n", t[int((NR - 1) * 0.50) + 1], t[int((NR - 1) * 0.99) + 1]
        }')
    local cpu
    cpu=$(cpu_per_request "$WORK/cpu-before" "$WORK/cpu-after" "$(wc -l <"$out")")
    awk '{ print $2 * 1000 }' "$out" | sort -n |
        awk -v errors="$errors" -v server="$server" -v cpu="$cpu" '
        { t[NR] = $1 }
        END {
            p50 = t[int((NR - 1) * 0.50) + 1]; p99 = t[int((NR - 1) * 0.99) + 1]
            printf "%d %.2f %.2f %.2f %d %s %s\n", NR, p50, p99, t[NR], errors, server, cpu
        }'
}

# Each query answers what the catalogue holds, or the figures mean nothing.
check() { # QUERY FIELD EXPECTED
    local got
    got=$(curl -fsS -H "Authorization: Bearer scale-u0001-$STAMP" "$(url_for "$1" 1 1)" |
        python3 -c "import json, sys; print(len(json.load(sys.stdin)['$2']))")
    [ "$got" = "$3" ] || die "$1: $got $2, expected $3"
}
check exact files 1
check list holdings "$HOLDINGS_PER_USER"
check stat transactions "$((HOLDINGS_PER_USER * TX_PER_HOLDING < 10 ? HOLDINGS_PER_USER * TX_PER_HOLDING : 10))"
check label files "$((PER_HOLDING < 1000 ? PER_HOLDING : 1000))"
check prefix files "$((PER_HOLDING < FILES_PER_DIR ? PER_HOLDING : FILES_PER_DIR))"
log "measuring $REQUESTS requests per query over $MEASURE_USERS users"
# One warm-up pass per query: the first requests pay for cold caches and connections.
REQUESTS_SAVED="$REQUESTS"
REQUESTS="$MEASURE_USERS"
for q in $QUERIES; do measure "$q" >/dev/null; done
REQUESTS="$REQUESTS_SAVED"
{
    echo "### Catalogue at scale: $FILES files, $HOLDINGS holdings, $USERS users ($STAMP)"
    echo
    echo "PostgreSQL $("${PSQL[@]}" -d postgres -c 'show server_version'), distributed API (nlds-server serve + nlds-workers catalogue-rpc, monitor-rpc); milliseconds per request over one kept-alive connection: as curl saw them (sending the request to its last byte) and as the server logged them (reading the request to writing the response); then the CPU time each process spent per request, from /proc (PostgreSQL: all its processes)."
    echo
    echo "| query | requests | p50 ms | p99 ms | max ms | errors | server p50 ms | server p99 ms | target p99 | CPU ms: catalogue | monitor | server | PostgreSQL | RabbitMQ |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    for q in $QUERIES; do
        read -r cnt p50 p99 max errs sp50 sp99 ccat cmon csrv cpg cmq < <(measure "$q")
        case "$q" in
        exact) name="find by exact path"; target="5" ;;
        list) name="list a user's holdings ($HOLDINGS_PER_USER)"; target="5" ;;
        stat) name="stat: a user's last 10 transactions"; target="" ;;
        label) name="find the first 1,000 files of a label"; target="20" ;;
        prefix) name="find a directory prefix ($FILES_PER_DIR files)"; target="" ;;
        esac
        echo "| $name | $cnt | $p50 | $p99 | $max | $errs | $sp50 | $sp99 | $target | $ccat | $cmon | $csrv | $cpg | $cmq |"
    done
} | tee "$BENCH_OUT"
log "results in $BENCH_OUT"
if [ "$HOLD" -gt 0 ]; then
    log "the API stays up at $BASE for $HOLD s (token scale-u0001-$STAMP)"
    sleep "$HOLD"
fi
if [ "$KEEP" = 1 ]; then log "kept database $DB and vhost $VHOST"; fi
