#!/usr/bin/env bash
# What a job costs when an operator asks the standby instead of the active coordinator
# (docs/deploy-ha.md, ADR 0038).
#
#   tests/bench/standby.sh [--rounds N] [--no-build] [--keep]
#
# Starts a throwaway PostgreSQL 15 for the catalog, two release coordinators on it at their own
# addresses (the second stands by and serves operators), a second throwaway PostgreSQL with a
# small database, and an agent connected to the active coordinator. Each round runs
# `lifeboat backup run --wait` once through the active coordinator and once through the standby
# (alternating which goes first), and reads each job's times from the catalog: queued → started
# on the agent (the standby's job reaches the active one's dispatcher as a LISTEN/NOTIFY
# notice) and the command's wall time (its `--wait` follows the job: on the standby through the
# notices of the active one). Prints every round, the medians and the standby/active ratios
# (default 10 rounds). A benchmark: it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=10
KEEP=0
BUILD=1
PG_BIN=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--rounds N] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || {
    echo "--rounds takes a positive integer" >&2
    exit 2
}
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (it starts PostgreSQL as the postgres user)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/lifeboat-bench-standby.XXXXXX)
COORD_PID=""
STANDBY_PID=""
AGENT_PID=""
PG_STARTED=0
cleanup() {
    set +e
    for p in $COORD_PID $STANDBY_PID $AGENT_PID; do kill -9 "$p" 2>/dev/null || true; done
    if [ "$PG_STARTED" -eq 1 ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    stop_catalog_pg
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
build_release
start_catalog_pg
start_coordinator
ACTIVE=$GRPC

echo "==> starting the standby"
STANDBY=127.0.0.1:$(free_port)
sed -e "s|^grpc_listen = .*|grpc_listen = \"$STANDBY\"|" "$WORK/coordinator.toml" >"$WORK/standby.toml"
"$BIN/lifeboat-coordinator" --config "$WORK/standby.toml" >"$WORK/standby.log" 2>&1 &
STANDBY_PID=$!
for _ in $(seq 1 300); do
    grep -q "standing by" "$WORK/standby.log" && break
    kill -0 "$STANDBY_PID" || { tail -n 20 "$WORK/standby.log" >&2; exit 1; }
    sleep 0.1
done

chmod 755 "$WORK"
start_bench_pg
psql_local -U postgres -d postgres -c "CREATE DATABASE app" >&2
psql_local -U postgres -d app -c "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 10000) g" >&2
{
    agent_config_head
    cat <<EOF
[[target]]
name = "app"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/app"
password_file = "$WORK/secrets/db.pass"
EOF
} >"$WORK/agent.toml"
chmod 600 "$WORK/agent.toml"
start_agent

# One backup through coordinator $1; prints "WALL_S QUEUED_TO_STARTED_MS".
one_backup() {
    local via=$1 t0 t1 out job
    t0=$(now)
    out=$(GRPC=$via lifeboat --output json backup run bench/app --wait)
    t1=$(now)
    job=$(sed -n 's/.*"job_id": *"\([^"]*\)".*/\1/p' <<<"$out" | head -1)
    [ -n "$job" ] || { echo "error: no job id in: $out" >&2; exit 1; }
    grep -q '"state": *"succeeded"' <<<"$out" || { echo "error: the backup failed: $out" >&2; exit 1; }
    catalog_psql -d catalog -At -c "SELECT started_at_ms - created_at_ms FROM jobs WHERE id = '$job'" |
        awk -v w="$(elapsed "$t0" "$t1")" '{ print w, $1 }'
}

# A first backup of each, unmeasured (caches, the repository's directories).
one_backup "$ACTIVE" >/dev/null
one_backup "$STANDBY" >/dev/null
a_wall=()
a_start=()
s_wall=()
s_start=()
for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) -eq 1 ]; then order="a s"; else order="s a"; fi
    for who in $order; do
        if [ "$who" = a ]; then r=$(one_backup "$ACTIVE"); else r=$(one_backup "$STANDBY"); fi
        read -r w st <<<"$r"
        if [ "$who" = a ]; then
            a_wall+=("$w")
            a_start+=("$st")
        else
            s_wall+=("$w")
            s_start+=("$st")
        fi
    done
    printf '  round %2d: active %s s (queued -> started %s ms), standby %s s (queued -> started %s ms)\n' \
        "$i" "${a_wall[-1]}" "${a_start[-1]}" "${s_wall[-1]}" "${s_start[-1]}"
done
echo
aw=$(printf '%s\n' "${a_wall[@]}" | median)
sw=$(printf '%s\n' "${s_wall[@]}" | median)
as=$(printf '%s\n' "${a_start[@]}" | median)
ss=$(printf '%s\n' "${s_start[@]}" | median)
echo "backup run --wait, $ROUNDS rounds (medians):"
echo "  through the active coordinator:  $aw s, queued -> started $as ms"
echo "  through the standby:             $sw s, queued -> started $ss ms"
echo "  standby/active: wall $(ratio "$sw" "$aw"), queued -> started +$(sub "$ss" "$as") ms"
