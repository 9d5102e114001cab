#!/usr/bin/env bash
# Restore drill RTO against a plain restore, on this machine.
#
#   tests/bench/drill.sh [--rows N] [--rounds R] [--no-build] [--keep]
#
# Loads ../shared/bench/mixed.sql (or $LIFEBOAT_BENCH_SQL) with N rows (default 1,000,000)
# into a throwaway PostgreSQL 15, builds lifeboat in release mode, takes one backup through a
# real coordinator and agent (fs repository, zstd level 3), and then, interleaved over R
# rounds (default 3), times
#   (a) raw    createdb + pg_restore --exit-on-error -d NEW FILE   (the same archive,
#              decompressed, from a local file, over the local socket: the restore tool alone)
#   (b) drill  lifeboat drill run ENV/NAME --wait   (the agent reads, checks both SHA-256s,
#              decompresses, restores, compares every table's row count, runs one drill
#              check, then drops the database)
# It prints the medians of (a), of (b)'s measured RTO (the job's start to a checked database,
# as the drill recorded it) and of (b)'s wall clock, and the ratio RTO/raw.
# A benchmark prints figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
ROWS=1000000
ROUNDS=3
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --rows)
        ROWS=$2
        shift 2
        ;;
    --rounds)
        ROUNDS=$2
        shift 2
        ;;
    --keep)
        KEEP=1
        shift
        ;;
    --no-build)
        BUILD=0
        shift
        ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--rows N] [--rounds R] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

pg_bench_setup

build_release

start_bench_pg

DB=bench_$ROWS
echo "==> loading mixed.sql with $ROWS rows into $DB"
psql_local -U bench -d postgres -c "CREATE DATABASE $DB"
runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" \
    -U bench -d "$DB" -v rows="$ROWS" -f - <"$SQL"
size=$(psql_local -U bench -d "$DB" -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
echo "    database size $size"

start_coordinator
{
    agent_config_head
    cat <<EOF
[[target]]
name = "drill"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/$DB"
password_file = "$WORK/secrets/db.pass"
compression_level = 3
drill_checks = ["SELECT count(*) > 0 FROM pg_class"]
EOF
} >"$WORK/agent.toml"
chmod 600 "$WORK/agent.toml"
start_agent

echo "==> one backup"
lifeboat --output json backup run bench/drill --wait >"$WORK/backup-job.json"
backup_id=$(sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' "$WORK/backup-job.json" | head -n 1)
lifeboat --output json backup show "$backup_id" >"$WORK/backup.json"
data_key=$(sed -n 's/.*"data_key": *"\([^"]*\)".*/\1/p' "$WORK/backup.json" | head -n 1)
[ -n "$data_key" ] || {
    cat "$WORK/backup.json" >&2
    echo "error: no data_key in the backup's record" >&2
    exit 1
}
zstd -q -d "$WORK/repo/$data_key" -o "$WORK/raw.pgdump"
chmod 644 "$WORK/raw.pgdump"
echo "    archive $(du -h "$WORK/raw.pgdump" | cut -f1) raw"

raw_runs=""
rto_runs=""
wall_runs=""
for round in $(seq 1 "$ROUNDS"); do
    target_db="raw_$round"
    t0=$(now)
    psql_local -U bench -d postgres -c "CREATE DATABASE $target_db"
    runuser -u postgres -- "$PG_BIN/pg_restore" --exit-on-error --no-owner -h "$WORK/pg/sock" \
        -p "$PORT" -U postgres -d "$target_db" "$WORK/raw.pgdump"
    raw=$(elapsed "$t0" "$(now)")
    psql_local -U bench -d postgres -c "DROP DATABASE $target_db"
    raw_runs="$raw_runs $raw"

    t0=$(now)
    lifeboat --output json drill run bench/drill --wait >"$WORK/drill-$round.json"
    wall=$(elapsed "$t0" "$(now)")
    wall_runs="$wall_runs $wall"
    rto_ms=$(lifeboat --output json drill list --target bench/drill --limit 1 |
        sed -n 's/.*"rto_ms": *\([0-9]*\).*/\1/p' | head -n 1)
    [ -n "$rto_ms" ] || {
        lifeboat drill list --target bench/drill >&2
        echo "error: the drill recorded no RTO" >&2
        exit 1
    }
    rto=$(div "$rto_ms" 1000)
    rto_runs="$rto_runs $rto"
    echo "    round $round: raw restore $raw s, drill RTO $rto s (wall $wall s)"
done

raw_m=$(echo "$raw_runs" | median)
rto_m=$(echo "$rto_runs" | median)
wall_m=$(echo "$wall_runs" | median)
echo
echo "== drill, $ROWS rows ($size), medians of $ROUNDS rounds"
echo "raw restore (createdb + pg_restore of the decompressed archive): $raw_m s"
echo "drill measured RTO (hashes, decompress, restore, row counts, check): $rto_m s"
echo "drill wall clock (CLI, dispatch, drop included):                    $wall_m s"
echo "RTO / raw restore: $(ratio "$rto_m" "$raw_m")"
