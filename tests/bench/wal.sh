#!/usr/bin/env bash
# WAL archiving under load: does archiving through the agent keep up with a busy server?
#
#   tests/bench/wal.sh [--seconds S] [--clients C] [--scale N] [--no-build] [--keep]
#
# Starts a throwaway PostgreSQL 15 with archive_mode = on, a coordinator and an agent with a
# physical target (fs repository), and runs pgbench -c C (default 8) for S seconds (default 60)
# twice in the same invocation:
#   (a) baseline  archive_command = 'cp %p ARCHIVE/%f'   (no compression, no hashing, no fsync)
#   (b) agent     archive_command = 'lifeboat-agent wal-push --target main %p'
# sampling pg_stat_archiver every second: how many finished segments wait to be archived
# (the lag), its 95th percentile and maximum, the segments archived, pgbench's TPS, and the
# agent's peak RSS. Prints the figures and the ratios agent/baseline; asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
SECONDS_RUN=60
CLIENTS=8
SCALE=20
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--seconds S] [--clients C] [--scale N] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[ "$(id -u)" -eq 0 ] || {
    echo "error: run as root (PostgreSQL runs as the postgres user)" >&2
    exit 2
}
[ -x "$PG_BIN/pgbench" ] || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q postgresql postgresql-contrib
}

WORK=$(mktemp -d /tmp/lifeboat-bench-wal.XXXXXX)
chmod 755 "$WORK"
COORD_PID=""
AGENT_PID=""
PG_STARTED=0
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    set +e
    [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID"
    [ -n "$COORD_PID" ] && kill -TERM "$COORD_PID" 2>/dev/null && wait "$COORD_PID"
    [ "$PG_STARTED" -eq 1 ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
build_release
start_coordinator

# The server's user runs the WAL client: a copy it can execute.
mkdir -p "$WORK/bin" "$WORK/cp-archive" "$WORK/pg/sock"
cp "$BIN/lifeboat-agent" "$WORK/bin/"
chmod 755 "$WORK/bin" "$WORK/bin/lifeboat-agent"
chown postgres:postgres "$WORK/cp-archive"
chown -R postgres:postgres "$WORK/pg"

echo "==> starting PostgreSQL (archive_mode = on)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
echo "host replication all 127.0.0.1/32 scram-sha-256" >>"$WORK/pg/data/pg_hba.conf"
PORT=$(free_port)
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -o \
    "-p $PORT -k $WORK/pg/sock -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB -c archive_mode=on" \
    start >/dev/null
PG_STARTED=1
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
psql_local() { runuser -u postgres -- "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" -U postgres "$@"; }
printf "CREATE ROLE bench LOGIN SUPERUSER REPLICATION PASSWORD '%s';\n" "$PASSWORD" | psql_local -d postgres -f -
mkdir -p "$WORK/secrets"
chmod 700 "$WORK/secrets"
(umask 077 && printf '%s' "$PASSWORD" >"$WORK/secrets/db.pass")

echo "==> starting the agent (physical target, WAL socket)"
{
    agent_config_head
    cat <<EOT
[[target]]
name = "main"
engine = "postgres"
mode = "physical"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/postgres"
password_file = "$WORK/secrets/db.pass"
[wal]
socket = "$WORK/wal.sock"
socket_group = "postgres"
client = "$WORK/bin/lifeboat-agent"
EOT
} >"$WORK/agent.toml"
"$BIN/lifeboat-agent" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do [ -S "$WORK/wal.sock" ] && break; sleep 0.1; done
[ -S "$WORK/wal.sock" ] || { cat "$WORK/agent.log" >&2; echo "error: no WAL socket" >&2; exit 1; }

echo "==> pgbench -i -s $SCALE"
runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$WORK/pg/sock" -p "$PORT" -U postgres postgres >/dev/null 2>&1

# Segment number of a WAL file name (16 MiB segments).
segno() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }

# One run with archive_command $1; prints "p95 max archived tps".
run() {
    psql_local -d postgres -c "ALTER SYSTEM SET archive_command = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    # Start from a clean slate: everything so far archived.
    psql_local -d postgres -c "SELECT pg_switch_wal()" >/dev/null
    sleep 3
    local before
    before=$(psql_local -d postgres -c "SELECT archived_count FROM pg_stat_archiver")
    runuser -u postgres -- "$PG_BIN/pgbench" -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" \
        -h "$WORK/pg/sock" -p "$PORT" -U postgres postgres >"$WORK/pgbench.out" 2>&1 &
    local bench=$! lags=()
    while kill -0 "$bench" 2>/dev/null; do
        local row cur last
        row=$(psql_local -d postgres -c "SELECT pg_walfile_name(pg_current_wal_lsn()) || ' ' || coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        cur=${row%% *}
        last=${row#* }
        if [ ${#last} -ge 24 ]; then
            local lag=$(($(segno "$cur") - $(segno "${last:0:24}") - 1))
            [ $lag -lt 0 ] && lag=0
            lags+=("$lag")
        fi
        sleep 1
    done
    wait "$bench" || true
    local after tps p95 mx
    after=$(psql_local -d postgres -c "SELECT archived_count FROM pg_stat_archiver")
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out" | head -1)
    p95=$(printf '%s\n' "${lags[@]}" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.95); if (i < 1) i = 1; print v[i] }')
    mx=$(printf '%s\n' "${lags[@]}" | sort -n | tail -1)
    echo "$p95 $mx $((after - before)) $tps"
}

echo "==> (a) baseline: cp"
read -r b_p95 b_max b_arch b_tps < <(run "cp %p $WORK/cp-archive/%f")
echo "==> (b) agent: wal-push"
read -r a_p95 a_max a_arch a_tps < <(run "$WORK/bin/lifeboat-agent wal-push --socket $WORK/wal.sock --target main %p")
rss=$(peak_rss_kib "$AGENT_PID")
stored=$(du -sk "$WORK/repo" | cut -f1)

echo
echo "pgbench -c $CLIENTS (TPC-B), $SECONDS_RUN s, scale $SCALE, 16 MiB segments, fs repository"
printf '%-10s %12s %12s %10s %10s\n' run "lag p95" "lag max" archived tps
printf '%-10s %12s %12s %10s %10s\n' cp "$b_p95" "$b_max" "$b_arch" "$b_tps"
printf '%-10s %12s %12s %10s %10s\n' agent "$a_p95" "$a_max" "$a_arch" "$a_tps"
echo "lag = finished segments not archived yet, sampled every second"
echo "agent/cp: tps $(ratio "$a_tps" "$b_tps"), archived $(ratio "$a_arch" "$b_arch")"
echo "agent peak RSS $(mib "$rss"); repository $(mib "$stored") for $a_arch segments ($(mib $((a_arch * 16384))) raw)"
