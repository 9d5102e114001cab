#!/usr/bin/env bash
# Coordinator failover time on a PostgreSQL catalog (docs/deploy-ha.md).
#
#   tests/bench/failover.sh [--trials N] [--no-build] [--keep]
#
# Starts a throwaway PostgreSQL 15 for the catalog and two coordinators on it: one active, one
# standing by. Each trial kills the active one with SIGKILL and times how long until the
# standby serves (its --ready-file appears: the lock taken, the catalog opened, both ports
# listening), then starts the killed one again as the new standby. Prints every trial and the
# median (default 10 trials). The standby waits 5 s after taking the lock on purpose (ADR 0036),
# so about 5 s of each figure is that grace. A benchmark: it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TRIALS=10
KEEP=0
BUILD=1
PG_BIN=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
    case "$1" in
    --trials) TRIALS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--trials N] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[[ $TRIALS =~ ^[0-9]+$ && $TRIALS -ge 1 ]] || {
    echo "--trials takes a positive integer" >&2
    exit 2
}

WORK=$(mktemp -d /tmp/lifeboat-bench-failover.XXXXXX)
COORD_PID=""
OTHER_PID=""
cleanup() {
    for p in $COORD_PID $OTHER_PID; do kill -9 "$p" 2>/dev/null || true; done
    stop_catalog_pg
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
build_release
start_catalog_pg
start_coordinator

# Starts coordinator NAME (a, b) on the shared config, its ready file WORK/NAME.ready, and
# waits until it stands by. Sets OTHER_PID.
start_standby() {
    local name=$1
    rm -f "$WORK/$name.ready"
    "$BIN/lifeboat-coordinator" --config "$WORK/coordinator.toml" --ready-file "$WORK/$name.ready" \
        >"$WORK/$name.log" 2>&1 &
    OTHER_PID=$!
    for _ in $(seq 1 600); do
        grep -q "standing by" "$WORK/$name.log" && return 0
        kill -0 "$OTHER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$WORK/$name.log" >&2
    echo "error: coordinator $name did not stand by" >&2
    exit 1
}

times=()
standby=b
for i in $(seq 1 "$TRIALS"); do
    start_standby "$standby"
    t0=$(now)
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
    printf '  trial %2d: the standby served %s s after the kill\n' "$i" "$t"
    COORD_PID=$OTHER_PID
    OTHER_PID=""
    standby=$([ "$standby" = a ] && echo b || echo a)
done
echo
echo "failover (SIGKILL of the active coordinator -> the standby serving), $TRIALS trials:"
echo "  median $(printf '%s\n' "${times[@]}" | median) s  (min $(printf '%s\n' "${times[@]}" | sort -g | head -1), max $(printf '%s\n' "${times[@]}" | sort -g | tail -1)); of which 5 s is the standby's deliberate grace"
