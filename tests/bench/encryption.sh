#!/usr/bin/env bash
# The cost of client-side encryption (age): encrypted against plaintext backups and restores of
# the same database, in the same run.
#
#   tests/bench/encryption.sh [--rows N] [--rounds R] [--no-build] [--keep]
#
# Loads ../shared/bench/mixed.sql (or $LIFEBOAT_BENCH_SQL) with N rows (default 1,000,000) into
# a throwaway PostgreSQL 15, builds lifeboat in release mode, generates a key with
# `lifeboat keys generate`, and then, interleaved over R rounds (default 5), times
#   (a) plain  lifeboat backup run bench/plain --wait   (fs repository, zstd level 3)
#   (b) age    lifeboat backup run bench/age --wait     (the same, encrypted to the key)
#   (c) plain  lifeboat restore … --wait                (the plain backup into a new database)
#   (d) age    lifeboat restore … --wait                (the encrypted backup, decrypted)
# each with a fresh agent, so that its VmHWM (peak RSS) and CPU time belong to that run. It
# prints the medians, the ratios age/plain, and the peak RSS of each side. A benchmark prints
# figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
ROWS=1000000
ROUNDS=5
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

echo "==> loading mixed.sql with $ROWS rows into bench"
psql_local -U bench -d postgres -c "CREATE DATABASE bench"
runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" \
    -U bench -d bench -v rows="$ROWS" -f - <"$SQL"
echo "    database size $(psql_local -U bench -d bench -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"

start_coordinator
recipient=$("$BIN/lifeboat" keys generate --out "$WORK/secrets/bench.key" | grep -o 'age1[0-9a-z]*' | head -n 1)
[ -n "$recipient" ] || {
    echo "error: lifeboat keys generate printed no recipient" >&2
    exit 1
}
{
    agent_config_head
    for kind in plain age; do
        cat <<EOF
[[target]]
name = "$kind"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://bench@127.0.0.1:$PORT/bench"
password_file = "$WORK/secrets/db.pass"
compression_level = 3
compression_threads = 0
pg_bin_dir = "$PG_BIN"
allow_clean_restore = true
replaceable_databases = ["restored"]
EOF
        [ "$kind" = age ] &&
            echo "encryption = { recipients = [\"$recipient\"], identity_file = \"$WORK/secrets/bench.key\" }"
    done
} >"$WORK/agent.toml"

# One timed CLI call with a fresh agent; prints "seconds peak-KiB agent-CPU-s id".
timed() {
    start_agent
    local t0 out t hwm cpu id
    t0=$(now)
    out=$(lifeboat --output json "$@" --wait)
    t=$(elapsed "$t0" "$(now)")
    hwm=$(peak_rss_kib "$AGENT_PID")
    cpu=$(cpu_self "$AGENT_PID")
    stop_agent
    grep -q '"succeeded"' <<<"$out" || {
        echo "error: lifeboat $* failed: $out" >&2
        exit 1
    }
    id=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
    echo "$t $hwm $cpu $id"
}

declare -A t rss cpu
stored_plain=0
stored_age=0
for r in $(seq 1 "$ROUNDS"); do
    echo "==> round $r/$ROUNDS"
    for kind in plain age; do
        read -r s h c id < <(timed backup run "bench/$kind")
        t[b$kind]+=" $s"
        rss[b$kind]+=" $h"
        cpu[b$kind]+=" $c"
        size=$(lifeboat --output json backup show "$id" | sed -n 's/.*"stored_size": *\([0-9]*\).*/\1/p' | head -n 1)
        [ "$kind" = plain ] && stored_plain=$size || stored_age=$size
        read -r s2 h2 c2 _ < <(timed restore "$id" --target "bench/$kind" --database restored --clean)
        t[r$kind]+=" $s2"
        rss[r$kind]+=" $h2"
        cpu[r$kind]+=" $c2"
        printf '    %-5s backup %ss (VmHWM %s, CPU %ss)  restore %ss (VmHWM %s, CPU %ss)\n' \
            "$kind" "$s" "$(mib "$h")" "$c" "$s2" "$(mib "$h2")" "$c2"
        rm -rf "${WORK:?}/repo/bench/$kind/$id"
    done
done

echo
echo "Medians over $ROUNDS interleaved rounds ($(nproc) CPUs), stored size plain $(mib $((stored_plain / 1024))), age $(mib $((stored_age / 1024))):"
printf '%-8s %10s %10s %9s %14s %14s %12s %12s\n' "" plain age age/plain "plain RSS" "age RSS" "plain CPU" "age CPU"
for op in b r; do
    name=backup
    [ "$op" = r ] && name=restore
    mp=$(median <<<"${t[${op}plain]}")
    ma=$(median <<<"${t[${op}age]}")
    printf '%-8s %9ss %9ss %9s %14s %14s %11ss %11ss\n' "$name" "$mp" "$ma" "$(ratio "$ma" "$mp")" \
        "$(mib "$(median <<<"${rss[${op}plain]}")")" "$(mib "$(median <<<"${rss[${op}age]}")")" \
        "$(median <<<"${cpu[${op}plain]}")" "$(median <<<"${cpu[${op}age]}")"
done
