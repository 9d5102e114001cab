#!/usr/bin/env bash
# The cost of encrypting the WAL archive: the same real WAL segments pushed through the agent to
# a plaintext physical target and to an encrypted one, in the same run.
#
#   tests/bench/wal_encryption.sh [--scale N] [--rounds R] [--no-build] [--keep]
#
# Makes real WAL with `pgbench -i -s N` (default 20) on a throwaway PostgreSQL 15 and copies its
# finished segments aside; starts a coordinator and one agent with two physical targets on an
# fs repository, `plain` and `age` (encrypted to a key from `lifeboat keys generate`); then,
# interleaved over R rounds (default 5), pushes every segment with `lifeboat-agent wal-push`,
# one after the other as PostgreSQL does, to each target (its archive emptied first). Prints
# the median wall time per round and per segment, the agent's CPU seconds per round, the
# stored sizes, and the ratios age/plain. A benchmark prints figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
SCALE=20
ROUNDS=5
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --scale) SCALE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--scale N] [--rounds R] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
[[ $SCALE =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || {
    echo "--scale and --rounds take positive integers" >&2
    exit 2
}
[ "$(id -u)" -eq 0 ] || {
    echo "error: run as root (initdb runs as the postgres user)" >&2
    exit 2
}
[ -x "$PG_BIN/pgbench" ] || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q postgresql postgresql-contrib
}

WORK=$(mktemp -d /tmp/lifeboat-bench-walenc.XXXXXX)
chmod 755 "$WORK"
COORD_PID=""
AGENT_PID=""
S3_PID=""
PG_STARTED=0
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
trap pg_bench_cleanup EXIT
build_release
start_bench_pg

echo "==> pgbench -i -s $SCALE (real WAL)"
runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$WORK/pg/sock" -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_local -U postgres -d postgres -At -c "SELECT pg_switch_wal()" >/dev/null
current=$(psql_local -U postgres -d postgres -At -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
mkdir -p "$WORK/segs"
for f in "$WORK"/pg/data/pg_wal/000000010000000000*; do
    n=$(basename "$f")
    [[ $n =~ ^[0-9A-F]{24}$ && $n < $current ]] && cp "$f" "$WORK/segs/"
done
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null
PG_STARTED=0
SEGS=$(find "$WORK/segs" -type f | wc -l)
[ "$SEGS" -gt 0 ] || { echo "error: no finished WAL segment" >&2; exit 1; }

start_coordinator
recipient=$("$BIN/lifeboat" keys generate --out "$WORK/bench.key" | grep -o 'age1[0-9a-z]*' | head -1)
{
    agent_config_head
    for t in plain age; do
        cat <<EOT
[[target]]
name = "$t"
engine = "postgres"
mode = "physical"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/postgres"
password_file = "$WORK/secrets/db.pass"
EOT
        [ "$t" = age ] && echo "encryption = { recipients = [\"$recipient\"] }"
    done
    cat <<EOT
[wal]
socket = "$WORK/wal.sock"
EOT
} >"$WORK/agent.toml"
AGENT_SOCKET=$WORK/wal.sock start_agent

# Pushes every segment to target $1 (its archive emptied first); prints "seconds cpu_seconds".
push_all() {
    rm -rf "$WORK/repo/bench/$1/wal"
    local c0 c1 t0 t1
    c0=$(cpu_self "$AGENT_PID")
    t0=$(now)
    for f in "$WORK"/segs/*; do
        "$BIN/lifeboat-agent" wal-push --socket "$WORK/wal.sock" --target "$1" "$f" >/dev/null
    done
    t1=$(now)
    c1=$(cpu_self "$AGENT_PID")
    echo "$(elapsed "$t0" "$t1") $(sub "$c1" "$c0")"
}

declare -A wall cpu
for r in $(seq 1 "$ROUNDS"); do
    for t in plain age; do
        read -r w c < <(push_all "$t")
        wall[$t]="${wall[$t]:-} $w"
        cpu[$t]="${cpu[$t]:-} $c"
        echo "round $r $t: $w s, agent CPU $c s"
    done
done
stored() { du -sk --exclude=keys "$WORK/repo/bench/$1/wal" | cut -f1; }

raw_kib=$(du -sk "$WORK/segs" | cut -f1)
pw=$(echo "${wall[plain]}" | median)
aw=$(echo "${wall[age]}" | median)
pc=$(echo "${cpu[plain]}" | median)
ac=$(echo "${cpu[age]}" | median)
echo
echo "$SEGS WAL segments ($(mib "$raw_kib")) from pgbench -i -s $SCALE, pushed one at a time; medians of $ROUNDS rounds"
printf '%-8s %10s %14s %12s %14s\n' target "wall s" "ms/segment" "agent CPU s" stored
printf '%-8s %10s %14s %12s %14s\n' plain "$pw" "$(awk -v w="$pw" -v n="$SEGS" 'BEGIN { printf "%.1f", w * 1000 / n }')" "$pc" "$(mib "$(stored plain)")"
printf '%-8s %10s %14s %12s %14s\n' age "$aw" "$(awk -v w="$aw" -v n="$SEGS" 'BEGIN { printf "%.1f", w * 1000 / n }')" "$ac" "$(mib "$(stored age)")"
echo "age/plain: wall $(ratio "$aw" "$pw"), agent CPU $(ratio "$ac" "$pc")"
echo "WAL keys stored: $(find "$WORK/repo/bench/age/wal/keys" -type f | wc -l); agent peak RSS (both targets) $(mib "$(peak_rss_kib "$AGENT_PID")")"
