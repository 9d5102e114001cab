#!/usr/bin/env bash
# Many agents on one coordinator: simulated agents (tests/examples/agent_load.rs, one process,
# a certificate of its own per agent, the real protocol over mutual TLS) connect to a real
# coordinator in steps, and each step is watched for a window.
#
#   tests/bench/agents.sh [--backend sqlite|postgres] [--steps 1000,5000,10000]
#                         [--window SECS] [--floor] [--no-build] [--keep]
#
# The coordinator runs with the default heartbeat interval (10 s) and lists every simulated
# agent in an [[agent]] table, as a production configuration does; its open-file limit is
# the systemd unit's (65,536). Each agent declares one target and one repository and sends a
# heartbeat every interval, phases spread over it. With --backend postgres the catalog is a
# database on a throwaway PostgreSQL 15 (loopback, fsync off).
#
# Per step it prints: how long the ramp took and the p99 of connect-to-Welcome, the
# coordinator's RSS (end of window and largest sample) and CPU use (% of one core), heartbeats
# recorded per second, their p50/p99 record time (bounds of the lifeboat_agent_update_seconds
# buckets), the p50/p99 delivery delay of the agents' latest heartbeats (from /metrics every
# 15 s), how long a /metrics scrape took, and `ListAgents` (new connection per call) median
# and max. Window default 60 s. A benchmark: it asserts nothing.
#
# --floor runs tests/examples/transport_floor.rs in place of the coordinator: the same TLS,
# HTTP/2 settings and codec, a session that answers Hello and then only reads, and glibc's
# heaps capped as the coordinator caps them. Its RSS is what the connections alone cost (no
# catalog, no metrics: the record and scrape columns are empty).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=1000,5000,10000
WINDOW=60
KEEP=0
BUILD=1
BACKEND=sqlite
FLOOR=0
PG_BIN=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
    case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --floor) FLOOR=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--backend sqlite|postgres] [--steps 1000,5000,10000] [--window SECS] [--floor] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[[ $STEPS =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "--steps takes counts: 1000,5000,10000" >&2; exit 2; }
[[ $WINDOW =~ ^[0-9]+$ && $WINDOW -ge 15 ]] || { echo "--window takes seconds, at least 15" >&2; exit 2; }
case "$BACKEND" in sqlite | postgres) ;; *)
    echo "--backend takes sqlite or postgres" >&2
    exit 2
    ;;
esac

[ "$BACKEND" = sqlite ] || [ "$(id -u)" -eq 0 ] || {
    echo "error: --backend postgres needs root (initdb runs as the postgres user)" >&2
    exit 2
}
WORK=$(mktemp -d /tmp/lifeboat-bench-agents.XXXXXX)
COORD_PID=""
cleanup() {
    set +e
    [ -n "$COORD_PID" ] && kill "$COORD_PID" 2>/dev/null && wait "$COORD_PID" 2>/dev/null
    stop_catalog_pg
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"

build_release
if [ "$BUILD" -eq 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p lifeboat-e2e --example agent_load --example transport_floor)
fi
LOADGEN=$BIN/examples/agent_load
[ -x "$LOADGEN" ] || { echo "error: $LOADGEN is missing; run without --no-build" >&2; exit 1; }

# One TCP connection per agent, on both ends of loopback: as many open files as allowed (the
# systemd unit sets 65,536; a container may cap it lower).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
MOST=${STEPS##*,}
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((MOST + 1000)) ]; then
    echo "error: open files are limited to $(ulimit -n) here; $MOST agents need $((MOST + 1000))" >&2
    exit 1
fi
[ "$BACKEND" = postgres ] && start_catalog_pg
COORD_HEARTBEAT_SECS=10
COORD_TABLES_EXTRA=$(awk -v n="$MOST" 'BEGIN {
    for (i = 0; i < n; i++) printf "[[agent]]\nname = \"load-%05d\"\nenvironment = \"load\"\n", i }')
if [ "$FLOOR" -eq 1 ]; then
    "$BIN/lifeboat" pki init --dir "$WORK/pki" >/dev/null
    "$BIN/lifeboat" pki issue --dir "$WORK/pki" --kind coordinator --name coordinator --san 127.0.0.1 >/dev/null
    "$BIN/lifeboat" pki issue --dir "$WORK/pki" --kind operator --name admin >/dev/null
    # The coordinator caps glibc's heaps at two (ADR 0037); the floor the same way.
    MALLOC_ARENA_MAX=2 "$BIN/examples/transport_floor" --pki "$WORK/pki" --ready-file "$WORK/ready.json" \
        >>"$WORK/coordinator.log" 2>&1 &
    COORD_PID=$!
    for _ in $(seq 1 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
    GRPC=$(sed -n 's/.*"grpc" *: *"\([^"]*\)".*/\1/p' "$WORK/ready.json")
    HTTP=$(sed -n 's/.*"http" *: *"\([^"]*\)".*/\1/p' "$WORK/ready.json")
    BACKEND="none (transport floor)"
else
    start_coordinator
fi
echo "==> coordinator pid $COORD_PID, catalog $BACKEND, $(nproc) cores; steps $STEPS, window $WINDOW s"
"$LOADGEN" --url "https://$GRPC" --pki "$WORK/pki" --http "$HTTP" --pid "$COORD_PID" \
    --steps "$STEPS" --window "$WINDOW"
echo "==> coordinator log: $(grep -c . "$WORK/coordinator.log") lines, warnings/errors:"
grep -E '"level":"(WARN|ERROR)"|WARN|ERROR' "$WORK/coordinator.log" | sed 's/^/    /' | sort | uniq -c | sort -rn | head -n 10 || true
