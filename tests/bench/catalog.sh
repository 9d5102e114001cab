#!/usr/bin/env bash
# List and health latency of the coordinator on a large catalog, SQLite or PostgreSQL.
#
#   tests/bench/catalog.sh [--backend sqlite|postgres] [--backups N] [--jobs N] [--targets T]
#                          [--calls C] [--no-build] [--keep]
#
# With --backend postgres the catalog is a database on a throwaway PostgreSQL 15 server
# (initdb in the work directory, loopback, default settings but fsync=off for the fill).
# Starts a coordinator on a catalog it created, stops it, fills the catalog with SQL (T
# targets, default 50; N backups, default 1,000,000, spread over the targets, each with its
# backup job; more finished jobs up to the jobs total, default 5,000,000), starts it again (the
# time its migrations take on that catalog is printed) and times C calls (default 100) of each
#   backup list --target bench/t7 --limit 100     backup list --limit 100
#   backup list --target bench/t7 --limit 100 --after <the 50,000th newest of the target>
#   jobs list --limit 100                         GET /health/backups
# as a user runs them: each CLI call is a new process with its own mTLS connection. The same
# calls against the same coordinator on a catalog 1,000 times smaller are the baseline: the
# difference is what the catalog's size costs. Prints p50, p99 and max per call and the ratios
# of the p99s. A benchmark: it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BACKUPS=1000000
JOBS=5000000
TARGETS=50
CALLS=100
KEEP=0
BUILD=1
BACKEND=sqlite
PG_BIN=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
    case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --backups) BACKUPS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --calls) CALLS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--backend sqlite|postgres] [--backups N] [--jobs N] [--targets T] [--calls C] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
for v in "$BACKUPS" "$JOBS" "$TARGETS" "$CALLS"; do
    [[ $v =~ ^[0-9]+$ && $v -ge 1 ]] || {
        echo "--backups, --jobs, --targets and --calls take positive integers" >&2
        exit 2
    }
done
case "$BACKEND" in sqlite | postgres) ;; *)
    echo "--backend takes sqlite or postgres" >&2
    exit 2
    ;;
esac
[ "$JOBS" -ge "$BACKUPS" ] || {
    echo "--jobs must be at least --backups (every backup has its job)" >&2
    exit 2
}
missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d /tmp/lifeboat-bench-catalog.XXXXXX)
COORD_PID=""
cleanup() {
    [ -n "$COORD_PID" ] && kill "$COORD_PID" 2>/dev/null && wait "$COORD_PID" 2>/dev/null
    stop_catalog_pg
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
build_release
# The rows date from 2020: without this the coordinator's hourly pruning (90 days by default)
# would remove most jobs while the calls are timed.
COORD_JOBS_EXTRA="keep_finished_days = 36500"
[ "$BACKEND" = postgres ] && start_catalog_pg
sql() { # runs SQL from stdin (or $1) in the catalog
    if [ "$BACKEND" = postgres ]; then
        catalog_psql -d catalog ${1:+-c "$1"}
    else
        sqlite3 "$WORK/catalog.db" ${1:+"$1"}
    fi
}
start_coordinator
stop_coordinator() {
    kill "$COORD_PID"
    wait "$COORD_PID" 2>/dev/null || true
    COORD_PID=""
}
restart_coordinator() {
    local t0
    t0=$(now)
    launch_coordinator
    READY_T=$(elapsed "$t0" "$(now)")
}

# Fills the catalog with $1 backups (each with its succeeded backup job) and $2 jobs in all
# (the rest finished verifies), over TARGETS targets, one second apart, newest last.
fill_sqlite() {
    local backups=$1 jobs=$2
    sql >/dev/null <<EOF
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA foreign_keys = OFF;
BEGIN;
DELETE FROM backups;
DELETE FROM jobs;
DELETE FROM targets;
INSERT OR REPLACE INTO agents (name, environment, version, last_seen_ms)
    VALUES ('bench-agent', 'bench', 'bench', 0);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $TARGETS)
INSERT INTO targets (full_name, environment, name, agent, engine, provider, repository, database_name)
    SELECT 'bench/t' || i, 'bench', 't' || i, 'bench-agent', 'postgres', 'postgres', 'local', 'app' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $jobs)
INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
                  started_at_ms, finished_at_ms)
    SELECT strftime('%Y%m%dT%H%M%SZ', 1600000000 + i, 'unixepoch') || '-' || printf('%06x', i % 16777216),
           CASE WHEN i <= $backups THEN 'backup' ELSE 'verify' END,
           'succeeded',
           'bench/t' || (1 + i % $TARGETS), 'bench-agent',
           strftime('%Y%m%dT%H%M%SZ', 1600000000 + (i - 1) % $backups + 1, 'unixepoch') || '-b' || printf('%05x', ((i - 1) % $backups + 1) % 1048576),
           'admin', (1600000000 + i) * 1000, (1600000000 + i) * 1000 + 10, (1600000000 + i) * 1000 + 900
    FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $backups)
INSERT INTO backups (backup_id, target, environment, agent, repository, engine, provider,
                     database_name, server_version, system_identifier, dump_tool,
                     dump_tool_version, format, compression, compression_level, raw_size,
                     stored_size, raw_sha256, stored_sha256, started_at_ms, finished_at_ms,
                     row_counts, data_key, manifest_key, verify_status, job_id, recorded_at_ms)
    SELECT strftime('%Y%m%dT%H%M%SZ', 1600000000 + i, 'unixepoch') || '-b' || printf('%05x', i % 1048576),
           'bench/t' || (1 + i % $TARGETS), 'bench', 'bench-agent', 'local', 'postgres', 'postgres',
           'app', '15.8', '7300000000000000000', 'pg_dump', '15.8', 'pg_dump-custom', 'zstd', 3,
           1000000 + i, 200000 + i, printf('%064x', i), printf('%064x', i + 1),
           (1600000000 + i) * 1000, (1600000000 + i) * 1000 + 900,
           '[{"schema":"public","table":"orders","rows":' || i || '}]',
           'bench/t' || (1 + i % $TARGETS) || '/x/data.pgdump.zst', 'bench/t' || (1 + i % $TARGETS) || '/x/manifest.json',
           'ok',
           strftime('%Y%m%dT%H%M%SZ', 1600000000 + i, 'unixepoch') || '-' || printf('%06x', i % 16777216),
           (1600000000 + i) * 1000 + 900
    FROM n;
COMMIT;
ANALYZE;
EOF
}

# The same rows with PostgreSQL's functions.
fill_postgres() {
    local backups=$1 jobs=$2
    sql >/dev/null <<EOF
SET session_replication_role = replica;
BEGIN;
TRUNCATE backups, jobs, targets CASCADE;
INSERT INTO agents (name, environment, version, last_seen_ms)
    VALUES ('bench-agent', 'bench', 'bench', 0) ON CONFLICT (name) DO NOTHING;
INSERT INTO targets (full_name, environment, name, agent, engine, provider, repository, database_name)
    SELECT 'bench/t' || i, 'bench', 't' || i, 'bench-agent', 'postgres', 'postgres', 'local', 'app'
    FROM generate_series(1, $TARGETS) i;
INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
                  started_at_ms, finished_at_ms)
    SELECT to_char(to_timestamp(1600000000 + i) AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') || '-' || lpad(to_hex(i % 16777216), 6, '0'),
           CASE WHEN i <= $backups THEN 'backup' ELSE 'verify' END,
           'succeeded',
           'bench/t' || (1 + i % $TARGETS), 'bench-agent',
           to_char(to_timestamp(1600000000 + (i - 1) % $backups + 1) AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') || '-b' || lpad(to_hex(((i - 1) % $backups + 1) % 1048576), 5, '0'),
           'admin', (1600000000::bigint + i) * 1000, (1600000000::bigint + i) * 1000 + 10, (1600000000::bigint + i) * 1000 + 900
    FROM generate_series(1, $jobs) i;
INSERT INTO backups (backup_id, target, environment, agent, repository, engine, provider,
                     database_name, server_version, system_identifier, dump_tool,
                     dump_tool_version, format, compression, compression_level, raw_size,
                     stored_size, raw_sha256, stored_sha256, started_at_ms, finished_at_ms,
                     row_counts, data_key, manifest_key, verify_status, job_id, recorded_at_ms)
    SELECT to_char(to_timestamp(1600000000 + i) AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') || '-b' || lpad(to_hex(i % 1048576), 5, '0'),
           'bench/t' || (1 + i % $TARGETS), 'bench', 'bench-agent', 'local', 'postgres', 'postgres',
           'app', '15.8', '7300000000000000000', 'pg_dump', '15.8', 'pg_dump-custom', 'zstd', 3,
           1000000 + i, 200000 + i, lpad(to_hex(i), 64, '0'), lpad(to_hex(i + 1), 64, '0'),
           (1600000000::bigint + i) * 1000, (1600000000::bigint + i) * 1000 + 900,
           '[{"schema":"public","table":"orders","rows":' || i || '}]',
           'bench/t' || (1 + i % $TARGETS) || '/x/data.pgdump.zst', 'bench/t' || (1 + i % $TARGETS) || '/x/manifest.json',
           'ok',
           to_char(to_timestamp(1600000000 + i) AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') || '-' || lpad(to_hex(i % 16777216), 6, '0'),
           (1600000000::bigint + i) * 1000 + 900
    FROM generate_series(1, $backups) i;
COMMIT;
VACUUM ANALYZE;
EOF
}
fill() { "fill_$BACKEND" "$@"; }
size_on_disk() {
    if [ "$BACKEND" = postgres ]; then
        sql "SELECT pg_size_pretty(pg_database_size('catalog'))"
    else
        du -h "$WORK/catalog.db" | cut -f1
    fi
}

# Times CALLS runs of the command (seconds each, one per line, into the named file).
time_calls() {
    local out=$1 t0
    shift
    : >"$out"
    for _ in $(seq 1 "$CALLS"); do
        t0=$(now)
        "$@" >/dev/null 2>&1 || {
            echo "error: $* failed:" >&2
            "$@" >&2 || true
            exit 1
        }
        echo "$(elapsed "$t0" "$(now)")" >>"$out"
    done
}
pct() { sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; printf "%.1f", v[i] * 1000 }'; }
# /health/backups answers 503 while a target is critical (these have no recent backups): any
# answer with a JSON body counts.
health() {
    local code
    code=$(curl -s -o "$WORK/health.json" -w '%{http_code}' "http://$HTTP/health/backups") || return 1
    [ "$code" = 200 ] || [ "$code" = 503 ]
}

# One phase: the catalog filled, the coordinator restarted, every call timed. P99_<phase>_<k>.
measure() {
    local phase=$1 backups=$2 jobs=$3 t0 after
    stop_coordinator
    echo "==> $phase: filling the catalog ($backups backups, $jobs jobs, $TARGETS targets)"
    t0=$(now)
    fill "$backups" "$jobs"
    echo "    filled in $(elapsed "$t0" "$(now)") s; $(size_on_disk) on disk"
    restart_coordinator
    echo "    coordinator ready in $READY_T s"
    # A cursor deep into bench/t7's list.
    after=$(sql "SELECT backup_id FROM backups WHERE target = 'bench/t7' ORDER BY finished_at_ms DESC, backup_id DESC LIMIT 1 OFFSET $((backups / TARGETS / 2))")
    local k
    for k in target all after jobs health; do
        case $k in
        target) time_calls "$WORK/$phase.$k" lifeboat --output json backup list --target bench/t7 --limit 100 ;;
        all) time_calls "$WORK/$phase.$k" lifeboat --output json backup list --limit 100 ;;
        after) time_calls "$WORK/$phase.$k" lifeboat --output json backup list --target bench/t7 --limit 100 --after "$after" ;;
        jobs) time_calls "$WORK/$phase.$k" lifeboat --output json jobs list --limit 100 ;;
        health) time_calls "$WORK/$phase.$k" health ;;
        esac
        printf '    %-7s p50 %7s ms  p99 %7s ms  max %7s ms\n' "$k" "$(pct "$WORK/$phase.$k" 50)" \
            "$(pct "$WORK/$phase.$k" 99)" "$(pct "$WORK/$phase.$k" 100)"
    done
}

small_b=$(((BACKUPS + 999) / 1000))
small_j=$(((JOBS + 999) / 1000))
[ "$small_b" -ge "$TARGETS" ] || small_b=$TARGETS
[ "$small_j" -ge "$small_b" ] || small_j=$small_b
measure baseline "$small_b" "$small_j"
measure large "$BACKUPS" "$JOBS"

echo
echo "$BACKEND catalog: p99 of $CALLS calls each, large catalog ($BACKUPS backups, $JOBS jobs) against the baseline ($small_b, $small_j); goal: <= 50 ms"
for k in target all after jobs health; do
    printf '  %-7s %7s ms  baseline %7s ms  ratio %s  (difference %s ms)\n' "$k" "$(pct "$WORK/large.$k" 99)" \
        "$(pct "$WORK/baseline.$k" 99)" "$(ratio "$(pct "$WORK/large.$k" 99)" "$(pct "$WORK/baseline.$k" 99)")" \
        "$(sub "$(pct "$WORK/large.$k" 99)" "$(pct "$WORK/baseline.$k" 99)")"
done
echo "coordinator peak RSS: $(mib "$(peak_rss_kib "$COORD_PID")")"
