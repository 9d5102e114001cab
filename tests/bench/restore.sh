#!/usr/bin/env bash
# Restore speed: the agent's restore (streamed, and in parallel with --jobs) against
# pg_restore from a local uncompressed archive, in the same run.
#
#   tests/bench/restore.sh [--rows N] [--rounds R] [--jobs J] [--no-build] [--keep]
#
# Loads ../shared/bench/mixed.sql (or $LIFEBOAT_BENCH_SQL) with N rows (default 1,000,000)
# into a throwaway PostgreSQL 15, builds lifeboat in release mode, takes one backup through
# the agent (fs repository) and writes the same database with `pg_dump -Fc -Z0` to a local
# file; then, interleaved over R rounds (default 3), times each restore into a new database:
#   (a) raw      pg_restore -d NEW FILE                     (one job: the baseline)
#   (b) agent    lifeboat restore ID --jobs 1 --wait        (streamed from the repository)
#   (c) raw -j   pg_restore -j J -d NEW FILE                (J jobs, default 2)
#   (d) agent -j lifeboat restore ID --jobs J --wait        (spooled to scratch_dir, pg_restore -j J)
# and prints the medians and the ratios R1 = agent/raw and agent -j / agent. Each restored
# database is dropped before the next. A benchmark prints figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
ROWS=1000000
ROUNDS=3
JOBS=2
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--rows N] [--rounds R] [--jobs J] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[[ $JOBS =~ ^[0-9]+$ && $JOBS -ge 2 && $JOBS -le 64 ]] || {
    echo "--jobs takes 2 to 64" >&2
    exit 2
}
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

pg_bench_setup
build_release
start_bench_pg

echo "==> loading mixed.sql with $ROWS rows into bench"
psql_local -U bench -d postgres -c "CREATE DATABASE bench"
runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" \
    -U bench -d bench -v rows="$ROWS" -f - <"$SQL"
echo "    database size $(psql_local -U bench -d bench -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"

start_coordinator
cat >"$WORK/agent.toml" <<EOF
$(agent_config_head)
[[target]]
name = "bench"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/bench"
password_file = "$WORK/secrets/db.pass"
pg_bin_dir = "$PG_BIN"
EOF
start_agent
out=$(lifeboat --output json backup run bench/bench --wait)
ID=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$ID" ] || { echo "error: the backup failed: $out" >&2; exit 1; }
"$PG_BIN/pg_dump" -Fc -Z0 -h 127.0.0.1 -p "$PORT" -U bench -f "$WORK/bench.pgdump" bench
echo "    backup $ID; local archive $(mib $(($(stat -c %s "$WORK/bench.pgdump") / 1024)))"

drop() { psql_local -U bench -d postgres -c "DROP DATABASE IF EXISTS $1" >/dev/null; }
# Times one restore into database $1 by the command after it; prints seconds.
timed() {
    local db=$1 t0
    shift
    drop "$db"
    t0=$(now)
    "$@" >"$WORK/last.out" 2>&1 || {
        cat "$WORK/last.out" >&2
        echo "error: $* failed" >&2
        exit 1
    }
    elapsed "$t0" "$(now)"
    drop "$db"
}
raw() {
    psql_local -U bench -d postgres -c "CREATE DATABASE $1" >/dev/null
    "$PG_BIN/pg_restore" --exit-on-error -h 127.0.0.1 -p "$PORT" -U bench -d "$1" "${@:2}" "$WORK/bench.pgdump"
}
agent() {
    lifeboat --output json restore "$ID" --database "$1" --jobs "$2" --wait
}

declare -A t
for r in $(seq 1 "$ROUNDS"); do
    echo "==> round $r/$ROUNDS"
    t[raw]+=" $(timed r_raw raw r_raw)"
    t[agent]+=" $(timed r_agent agent r_agent 1)"
    t[rawj]+=" $(timed r_rawj raw r_rawj -j "$JOBS")"
    t[agentj]+=" $(timed r_agentj agent r_agentj "$JOBS")"
    echo "    raw ${t[raw]##* }s, agent ${t[agent]##* }s, raw -j$JOBS ${t[rawj]##* }s, agent --jobs $JOBS ${t[agentj]##* }s"
done
m_raw=$(median <<<"${t[raw]}")
m_agent=$(median <<<"${t[agent]}")
m_rawj=$(median <<<"${t[rawj]}")
m_agentj=$(median <<<"${t[agentj]}")
echo
echo "Medians over $ROUNDS interleaved rounds ($(nproc) CPUs), $ROWS rows:"
printf '%-22s %9ss\n' "pg_restore (file)" "$m_raw" "agent --jobs 1" "$m_agent" \
    "pg_restore -j $JOBS (file)" "$m_rawj" "agent --jobs $JOBS" "$m_agentj"
echo "R1 agent/raw $(ratio "$m_agent" "$m_raw"); agent --jobs $JOBS / --jobs 1 $(ratio "$m_agentj" "$m_agent"); raw -j $JOBS / raw $(ratio "$m_rawj" "$m_raw"); agent --jobs $JOBS / raw -j $JOBS $(ratio "$m_agentj" "$m_rawj")"
