#!/usr/bin/env bash
# Coordinator failover time on a PostgreSQL catalog (docs/deploy-ha.md).
#
#   tests/bench/failover.sh [--trials N] [--scheduled | --serving] [--no-build] [--keep]
#
# Starts a throwaway PostgreSQL 15 for the catalog and two coordinators on it: one active, one
# standing by. Each trial kills the active one with SIGKILL and times how long until the
# standby serves (its --ready-file appears: the lock taken, the catalog opened, both ports
# listening), then starts the killed one again as the new standby. Prints every trial and the
# median (default 10 trials). The standby waits 5 s after taking the lock on purpose (ADR 0036),
# so about 5 s of each figure is that grace. By default both listen on one gRPC address (as
# behind a VIP), so the standby is closed (`standby_serves_operators = false`) until it takes
# over; with --serving each has its own address and the standby serves operators meanwhile
# (ADR 0038): the catalog is already open and both ports listen when the lock comes.
#
# With --scheduled, an agent with five PostgreSQL targets (a second throwaway server) follows
# the coordinators (both listen on one gRPC address, as behind a DNS name), each target is
# backed up every 5 minutes, one minute after the other, and each trial kills the active
# coordinator 3 s before a minute begins: it also times when that minute's run was decided (`schedule runs`) after the kill and
# after its slot, and when its backup started on the agent; at the end it counts the runs per
# slot and the backups (each slot once). About a minute per trial. A benchmark: it asserts
# nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TRIALS=10
SCHEDULED=0
SERVING=0
KEEP=0
BUILD=1
PG_BIN=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
    case "$1" in
    --trials) TRIALS=$2; shift 2 ;;
    --scheduled) SCHEDULED=1; shift ;;
    --serving) SERVING=1; shift ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--trials N] [--scheduled | --serving] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[ $((SCHEDULED + SERVING)) -le 1 ] || {
    echo "--scheduled and --serving do not go together" >&2
    exit 2
}
[[ $TRIALS =~ ^[0-9]+$ && $TRIALS -ge 1 ]] || {
    echo "--trials takes a positive integer" >&2
    exit 2
}

WORK=$(mktemp -d /tmp/lifeboat-bench-failover.XXXXXX)
COORD_PID=""
OTHER_PID=""
AGENT_PID=""
PG_STARTED=0
cleanup() {
    set +e
    for p in $COORD_PID $OTHER_PID $AGENT_PID; do kill -9 "$p" 2>/dev/null || true; done
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
COORD_GRPC_LISTEN=127.0.0.1:$(free_port)
if [ "$SERVING" -eq 0 ]; then
    # One gRPC address for both: the standby opens it when it takes over (closed until then).
    COORD_SERVER_EXTRA="standby_serves_operators = false"
fi
start_coordinator
cp "$WORK/coordinator.toml" "$WORK/a.toml"
if [ "$SERVING" -eq 1 ]; then
    # Each its own address; the standby serves operators there while it stands by.
    sed -e "s|^grpc_listen = .*|grpc_listen = \"127.0.0.1:$(free_port)\"|" "$WORK/a.toml" >"$WORK/b.toml"
else
    cp "$WORK/a.toml" "$WORK/b.toml"
fi
if [ "$SCHEDULED" -eq 1 ]; then
    # The postgres user reaches its data directory in WORK (as in the other benchmarks).
    chmod 755 "$WORK"
    start_bench_pg
    # Five targets, each backed up every 5 minutes, one minute apart (schedules may not run more
    # often): some target's run falls due at the start of every minute.
    {
        agent_config_head
        for k in 0 1 2 3 4; do
            psql_local -U postgres -d postgres -c "CREATE DATABASE app$k" >&2
            psql_local -U postgres -d "app$k" -c "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g" >&2
            cat <<EOF
[[target]]
name = "app$k"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/app$k"
password_file = "$WORK/secrets/db.pass"
EOF
        done
    } >"$WORK/agent.toml"
    chmod 600 "$WORK/agent.toml"
    start_agent
    for k in 0 1 2 3 4; do
        lifeboat schedule set "bench/app$k" --cron "$k-59/5 * * * *" --jitter 0s >/dev/null
    done
fi

# Starts coordinator NAME (a, b) on WORK/NAME.toml, its ready file WORK/NAME.ready, and
# waits until it stands by. Sets OTHER_PID.
start_standby() {
    local name=$1
    rm -f "$WORK/$name.ready"
    "$BIN/lifeboat-coordinator" --config "$WORK/$name.toml" --ready-file "$WORK/$name.ready" \
        >"$WORK/$name.log" 2>&1 &
    OTHER_PID=$!
    for _ in $(seq 1 600); do
        grep -qs "standing by" "$WORK/$name.log" && return 0
        kill -0 "$OTHER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$WORK/$name.log" >&2
    echo "error: coordinator $name did not stand by" >&2
    exit 1
}

# The newest run of target $1 as "SCHEDULED_MS DECIDED_MS JOB_ID" (empty: none yet).
newest_run() {
    lifeboat --output json schedule runs "$1" --limit 1 2>/dev/null |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
print(r[0]["scheduled_at_ms"], r[0]["decided_at_ms"], r[0].get("job_id") or "-") if r else None' 2>/dev/null || true
}
ms_now() { date +%s%3N; }

times=()
fired=()
late=()
started=()
standby=b
for i in $(seq 1 "$TRIALS"); do
    start_standby "$standby"
    if [ "$SCHEDULED" -eq 1 ]; then
        # 3 s before the next minute begins.
        now_ms=$(ms_now)
        slot=$(((now_ms / 60000 + 1) * 60000))
        [ $((slot - now_ms)) -lt 8000 ] && slot=$((slot + 60000))
        sleep "$(awk -v ms=$((slot - 3000 - $(ms_now))) 'BEGIN { printf "%.3f", ms / 1000 }')"
    fi
    t0=$(now)
    kill_ms=$(ms_now)
    kill -9 "$COORD_PID"
    wait "$COORD_PID" 2>/dev/null || true
    until [ -s "$WORK/$standby.ready" ]; do
        kill -0 "$OTHER_PID" 2>/dev/null || {
            tail -n 20 "$WORK/$standby.log" >&2
            echo "error: the standby exited" >&2
            exit 1
        }
        sleep 0.02
    done
    t=$(elapsed "$t0" "$(now)")
    times+=("$t")
    COORD_PID=$OTHER_PID
    OTHER_PID=""
    standby=$([ "$standby" = a ] && echo b || echo a)
    if [ "$SCHEDULED" -eq 0 ]; then
        printf '  trial %2d: the standby was active (agents, schedules) %s s after the kill\n' "$i" "$t"
        continue
    fi
    run=""
    target=bench/app$(((slot / 60000) % 5))
    for _ in $(seq 1 600); do
        run=$(newest_run "$target")
        [ -n "$run" ] && [ "${run%% *}" -ge "$slot" ] && break
        sleep 0.1
    done
    read -r sched decided job <<<"$run"
    [ "$sched" = "$slot" ] || { echo "error: no run for slot $slot (newest: $run)" >&2; exit 1; }
    start_ms=""
    [ "$job" != - ] || { echo "error: the run of slot $slot started no job: $run" >&2; exit 1; }
    for _ in $(seq 1 600); do
        start_ms=$({ lifeboat --output json jobs show "$job" 2>/dev/null || true; } |
            sed -n 's/.*"started_at_ms": *\([0-9]*\).*/\1/p' | head -1)
        [ -n "$start_ms" ] && break
        sleep 0.1
    done
    f=$(awk -v a="$kill_ms" -v b="$decided" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    l=$(awk -v a="$slot" -v b="$decided" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    st=$(awk -v a="$slot" -v b="${start_ms:-0}" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    fired+=("$f")
    late+=("$l")
    started+=("$st")
    printf '  trial %2d: standby serving %s s after the kill; the run due 3 s after the kill decided %s s after it (%s s after its slot), its backup started %s s after its slot\n' \
        "$i" "$t" "$f" "$l" "$st"
done
echo
stats() { printf '%s\n' "$@" | median | tr -d '\n'; printf ' s  (min %s, max %s)' "$(printf '%s\n' "$@" | sort -g | head -1)" "$(printf '%s\n' "$@" | sort -g | tail -1)"; }
echo "failover (SIGKILL of the active coordinator -> the standby active$([ "$SERVING" -eq 1 ] && echo ', serving operators before')), $TRIALS trials:"
echo "  median $(stats "${times[@]}"); of which 5 s is the standby's deliberate grace"
if [ "$SCHEDULED" -eq 1 ]; then
    echo "the scheduled run due 3 s after the kill:"
    echo "  decided after the kill: median $(stats "${fired[@]}")"
    echo "  decided after its slot: median $(stats "${late[@]}")"
    echo "  its backup started after its slot: median $(stats "${started[@]}")"
    # Every slot once: one run per scheduled time, one backup per started run.
    sleep 10
    total_runs=0 distinct=0 backups=0 started_runs=0
    for k in 0 1 2 3 4; do
        runs=$(lifeboat --output json schedule runs "bench/app$k" --limit 1000)
        total_runs=$((total_runs + $(grep -c '"scheduled_at_ms"' <<<"$runs" || true)))
        distinct=$((distinct + $({ grep -o '"scheduled_at_ms": *[0-9]*' <<<"$runs" || true; } | sort -u | wc -l)))
        started_runs=$((started_runs + $(grep -c '"outcome": *"started"' <<<"$runs" || true)))
        backups=$((backups + $(lifeboat --output json backup list --target "bench/app$k" --limit 1000 | { grep -c '"backup_id"' || true; })))
    done
    echo "  runs recorded: $total_runs, distinct slots: $distinct; runs that started a backup: $started_runs, backups: $backups"
fi
