#!/usr/bin/env bash
# Backup throughput and agent memory, against the physical limits of this machine.
#
#   tests/bench/backup.sh [--rows N] [--scale4] [--rounds R] [--s3] [--auto]
#                         [--row-counts MODE] [--no-build] [--keep]
#
# Loads ../shared/bench/mixed.sql (or $LIFEBOAT_BENCH_SQL) with N rows (default 1,000,000;
# with --scale4 also 4×N) into a throwaway PostgreSQL 15, builds lifeboat in release mode, and
# then, interleaved over R rounds (default 5), times
#   (a) raw    pg_dump -Fc -Z0 DB > /dev/null
#   (b) shell  pg_dump -Fc -Z0 DB | zstd -3 -T0 | tee FILE | sha256sum
#   (c) agent  lifeboat backup run ENV/NAME --wait   (real coordinator + agent, fs repository,
#              zstd level 3), restarting the agent before each run so that its VmHWM (peak
#              RSS, read from /proc/PID/status after the run) belongs to that run alone.
#   (d) with --s3: the same backup into an S3 repository (s3s-fs on loopback, from
#              tests/run.sh's tool cache or $LIFEBOAT_S3S_FS; default part size 16 MiB,
#              4 parts in flight), again with a fresh agent per run.
#   (e) with --auto: the same backup as (c) with compression_level = "auto" (adaptive), again
#              with a fresh agent per run; it prints auto/raw, auto/shell, the stored size
#              against level 3's and the levels the last run used (from its manifest).
# It prints the medians (for (c) also the job's own duration as the coordinator recorded it,
# without CLI start-up and dispatch), the ratios agent/raw and agent/shell (wall clock of the
# CLI), and the agent's peak RSS per scale; with --s3 also S3/fs and the S3 runs' peak RSS.
# --row-counts sets the targets' row_counts (default exact: the agent counts each table's rows in
# the dump stream; estimate or off to see what that costs).
# A benchmark prints figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
ROWS=1000000
ROUNDS=5
SCALE4=0
KEEP=0
S3=0
BUILD=1
ROW_COUNTS=exact
AUTO=0
while [ $# -gt 0 ]; do
    case "$1" in
    --auto)
        AUTO=1
        shift
        ;;
    --row-counts)
        ROW_COUNTS=$2
        shift 2
        ;;
    --rows)
        ROWS=$2
        shift 2
        ;;
    --rounds)
        ROUNDS=$2
        shift 2
        ;;
    --scale4)
        SCALE4=1
        shift
        ;;
    --keep)
        KEEP=1
        shift
        ;;
    --s3)
        S3=1
        shift
        ;;
    --no-build)
        # Use the release binaries already built (e.g. while the tree is being edited).
        BUILD=0
        shift
        ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--rows N] [--scale4] [--rounds R] [--s3] [--row-counts MODE] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

pg_bench_setup

build_release

start_bench_pg

scales=("$ROWS")
[ "$SCALE4" -eq 1 ] && scales+=($((ROWS * 4)))
for rows in "${scales[@]}"; do
    echo "==> loading mixed.sql with $rows rows into bench_$rows"
    psql_local -U bench -d postgres -c "CREATE DATABASE bench_$rows"
    t0=$(now)
    runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" \
        -U bench -d "bench_$rows" -v rows="$rows" -f - <"$SQL"
    size=$(psql_local -U bench -d "bench_$rows" -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
    echo "    loaded in $(elapsed "$t0" "$(now)") s, database size $size"
done

if [ "$S3" -eq 1 ]; then
    S3S=${LIFEBOAT_S3S_FS:-${LIFEBOAT_TOOLS_DIR:-$HOME/.cache/lifeboat-tools}/s3s-fs-0.14.1/bin/s3s-fs}
    [ -x "$S3S" ] || {
        echo "error: $S3S not found; run tests/run.sh once (it installs s3s-fs) or set LIFEBOAT_S3S_FS" >&2
        exit 2
    }
    echo "==> starting s3s-fs"
    mkdir -p "$WORK/s3/bench"
        S3_PORT=$(free_port)
    S3_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    (
        umask 077
        printf 'BENCHKEY' >"$WORK/secrets/s3.id"
        printf '%s' "$S3_SECRET" >"$WORK/secrets/s3.secret"
    )
    RUST_LOG=error "$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key BENCHKEY \
        --secret-key "$S3_SECRET" "$WORK/s3" >"$WORK/s3.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 1 100); do
        (: </dev/tcp/127.0.0.1/"$S3_PORT") 2>/dev/null && break
        sleep 0.05
    done
fi

start_coordinator

# A target NAME in repository REPO for the database of ROWS rows, at compression LEVEL.
bench_target() {
    cat <<EOF
[[target]]
name = "$1"
engine = "postgres"
provider = "postgres"
repository = "$2"
url = "postgres://bench@127.0.0.1:$PORT/bench_$3"
password_file = "$WORK/secrets/db.pass"
compression_level = $4
compression_threads = 0
pg_bin_dir = "$PG_BIN"
row_counts = "$ROW_COUNTS"
EOF
}

{
    agent_config_head
    if [ "$S3" -eq 1 ]; then
        cat <<EOF
[[repository]]
name = "s3"
kind = "s3"
bucket = "bench"
endpoint = "http://127.0.0.1:$S3_PORT"
path_style = true
access_key_id_file = "$WORK/secrets/s3.id"
secret_access_key_file = "$WORK/secrets/s3.secret"
EOF
    fi
    for rows in "${scales[@]}"; do
        [ "$S3" -eq 1 ] && bench_target "s3-rows-$rows" s3 "$rows" 3
        [ "$AUTO" -eq 1 ] && bench_target "auto-rows-$rows" local "$rows" '"auto"'
        bench_target "rows-$rows" local "$rows" 3
    done
} >"$WORK/agent.toml"


declare -A raw_cpu raw_t shell_t agent_t job_t agent_rss dump_size stored_size s3_t s3_rss auto_t auto_size auto_levels
for r in $(seq 1 "$ROUNDS"); do
    for rows in "${scales[@]}"; do
        db=bench_$rows
        echo "==> round $r/$ROUNDS, $rows rows"
        # (a) the raw dump, and the CPU it keeps busy (pg_dump and the server, machine-wide)
        busy0=$(cpu_busy)
        t0=$(now)
        "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U bench --no-password -Fc -Z0 -d "$db" >/dev/null
        a=$(elapsed "$t0" "$(now)")
        raw_cpu[$rows]+=" $(sub "$(cpu_busy)" "$busy0")"
        # (b) the shell pipeline
        t0=$(now)
        "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U bench --no-password -Fc -Z0 -d "$db" |
            zstd -q -3 -T0 | tee "$WORK/shell.zst" | sha256sum >/dev/null
        b=$(elapsed "$t0" "$(now)")
        rm -f "$WORK/shell.zst"
        # (c) lifeboat, with a fresh agent
        start_agent
        t0=$(now)
        out=$(lifeboat --output json backup run "bench/rows-$rows" --wait)
        c=$(elapsed "$t0" "$(now)")
        hwm=$(peak_rss_kib "$AGENT_PID")
        fcpu=$(cpu_self "$AGENT_PID")
        stop_agent
        id=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
        # The job's own duration, as the coordinator recorded it (without CLI and dispatch).
        j=$(printf '%s\n' "$out" | sed -n 's/.*"duration_ms": *\([0-9]*\).*/\1/p' | head -n 1)
        j=$(awk -v ms="${j:-0}" 'BEGIN { printf "%.3f", ms / 1000 }')
        show=$(lifeboat --output json backup show "$id")
        # The backup's own sizes come first; its globals object has sizes of its own.
        dump_size[$rows]=$(printf '%s\n' "$show" | sed -n 's/.*"raw_size": *\([0-9]*\).*/\1/p' | head -n 1)
        stored_size[$rows]=$(printf '%s\n' "$show" | sed -n 's/.*"stored_size": *\([0-9]*\).*/\1/p' | head -n 1)
        rm -rf "${WORK:?}/repo/bench/rows-$rows/$id"
        raw_t[$rows]+=" $a"
        shell_t[$rows]+=" $b"
        agent_t[$rows]+=" $c"
        job_t[$rows]+=" $j"
        agent_rss[$rows]+=" $hwm"
        printf '    raw %ss  shell %ss  agent %ss (job %ss)  agent VmHWM %s  agent CPU %ss\n' "$a" "$b" "$c" "$j" "$(mib "$hwm")" "$fcpu"
        if [ "$AUTO" -eq 1 ]; then
            # (e) adaptive compression, with a fresh agent
            start_agent
            t0=$(now)
            out=$(lifeboat --output json backup run "bench/auto-rows-$rows" --wait)
            e=$(elapsed "$t0" "$(now)")
            hwm=$(peak_rss_kib "$AGENT_PID")
            acpu=$(cpu_self "$AGENT_PID")
            stop_agent
            grep -q '"succeeded"' <<<"$out" || {
                echo "error: the adaptive backup failed: $out" >&2
                exit 1
            }
            id=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
            m="$WORK/repo/bench/auto-rows-$rows/$id/manifest.json"
            auto_size[$rows]=$(jq -r .stored_size "$m")
            auto_levels[$rows]=$(jq -r '[(.compression.levels // [{level: .compression.level, raw_bytes: .raw_size}])[] | "\(.level):\(.raw_bytes / 1048576 | floor)MiB"] | join(" ")' "$m")
            rm -rf "${WORK:?}/repo/bench/auto-rows-$rows/$id"
            auto_t[$rows]+=" $e"
            printf '    auto %ss  agent VmHWM %s  agent CPU %ss  stored %s  levels %s\n' "$e" "$(mib "$hwm")" "$acpu" \
                "$(mib $((${auto_size[$rows]} / 1024)))" "${auto_levels[$rows]}"
        fi
        if [ "$S3" -eq 1 ]; then
            # (d) the same backup into S3, with a fresh agent
            start_agent
            s3_cpu0=$(cpu_self "$S3_PID")
            t0=$(now)
            out=$(lifeboat --output json backup run "bench/s3-rows-$rows" --wait)
            d=$(elapsed "$t0" "$(now)")
            hwm=$(peak_rss_kib "$AGENT_PID")
            acpu=$(cpu_self "$AGENT_PID")
            scpu=$(awk -v a="$(cpu_self "$S3_PID")" -v b="$s3_cpu0" 'BEGIN { printf "%.2f", a - b }')
            stop_agent
            grep -q '"succeeded"' <<<"$out" || {
                echo "error: the S3 backup failed: $out" >&2
                exit 1
            }
            id=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
            rm -rf "${WORK:?}/s3/bench/bench/s3-rows-$rows/$id"
            s3_t[$rows]+=" $d"
            s3_rss[$rows]+=" $hwm"
            # Absent when the dump fitted in a single PUT.
            complete=$(grep 'multipart upload completed' "$WORK/agent.log" | tail -n 1 |
                sed -n 's/.*complete_ms=\([0-9]*\).*/\1/p') || true
            printf '    s3 %ss  agent VmHWM %s  agent CPU %ss  s3s-fs CPU %ss  complete+HEAD %sms\n' \
                "$d" "$(mib "$hwm")" "$acpu" "$scpu" "${complete:-?}"
        fi
    done
done

# B1, the machine's limit: max(raw wall, (raw dump CPU + compression CPU + hashing CPU) / cores),
# with the compression and hashing CPU measured on one dump file of each scale.
declare -A limit3 limit1 cpu_z3 cpu_z1 cpu_sha
for rows in "${scales[@]}"; do
    f="$WORK/limit.pgdump"
    "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U bench --no-password -Fc -Z0 -d "bench_$rows" >"$f"
    cpu_z3[$rows]=$(cpu_of zstd -q -3 -T0 -c "$f")
    cpu_z1[$rows]=$(cpu_of zstd -q -1 -T0 -c "$f")
    zstd -q -3 -T0 -c "$f" >"$f.zst"
    # SHA-256 of the raw and of the stored stream, by the fastest tool at hand (OpenSSL uses
    # the CPU's SHA instructions, as the agent does; coreutils may not).
    sha=(sha256sum)
    command -v openssl >/dev/null 2>&1 && sha=(openssl dgst -sha256)
    cpu_sha[$rows]=$(add "$(cpu_of "${sha[@]}" "$f")" "$(cpu_of "${sha[@]}" "$f.zst")")
    rm -f "$f" "$f.zst"
    ma=$(median <<<"${raw_t[$rows]}")
    rc=$(median <<<"${raw_cpu[$rows]}")
    limit3[$rows]=$(max "$ma" "$(div "$(add "$(add "$rc" "${cpu_z3[$rows]}")" "${cpu_sha[$rows]}")" "$(nproc)")")
    limit1[$rows]=$(max "$ma" "$(div "$(add "$(add "$rc" "${cpu_z1[$rows]}")" "${cpu_sha[$rows]}")" "$(nproc)")")
done

echo
echo "Medians over $ROUNDS interleaved rounds ($(nproc) CPUs):"
printf '%-10s %10s %10s %10s %10s %10s %10s %11s %11s %14s %14s\n' \
    rows dump stored raw shell agent "agent job" agent/raw agent/shell "agent RSS med" "agent RSS max"
for rows in "${scales[@]}"; do
    ma=$(median <<<"${raw_t[$rows]}")
    mb=$(median <<<"${shell_t[$rows]}")
    mc=$(median <<<"${agent_t[$rows]}")
    mj=$(median <<<"${job_t[$rows]}")
    mr=$(median <<<"${agent_rss[$rows]}")
    xr=$(tr ' ' '\n' <<<"${agent_rss[$rows]}" | sort -g | tail -n 1)
    printf '%-10s %10s %10s %9ss %9ss %9ss %9ss %11s %11s %14s %14s\n' "$rows" \
        "$(mib $((${dump_size[$rows]:-0} / 1024)))" "$(mib $((${stored_size[$rows]:-0} / 1024)))" \
        "$ma" "$mb" "$mc" "$mj" "$(ratio "$mc" "$ma")" "$(ratio "$mc" "$mb")" "$(mib "$mr")" "$(mib "$xr")"
done

echo
echo "B1, the machine's limit = max(raw wall, (raw dump CPU + zstd CPU + SHA-256 CPU) / $(nproc) cores):"
printf '%-10s %10s %9s %9s %9s %11s %11s %12s %10s\n' \
    rows "raw CPU" "zstd-3" "zstd-1" "sha256" "limit L3" "limit L1" "agent/limit" "auto/L1"
for rows in "${scales[@]}"; do
    mc=$(median <<<"${agent_t[$rows]}")
    auto_ratio=-
    [ "$AUTO" -eq 1 ] && auto_ratio=$(ratio "$(median <<<"${auto_t[$rows]}")" "${limit1[$rows]}")
    printf '%-10s %9ss %8ss %8ss %8ss %10ss %10ss %12s %10s\n' "$rows" \
        "$(median <<<"${raw_cpu[$rows]}")" "${cpu_z3[$rows]}" "${cpu_z1[$rows]}" "${cpu_sha[$rows]}" \
        "${limit3[$rows]}" "${limit1[$rows]}" "$(ratio "$mc" "${limit3[$rows]}")" "$auto_ratio"
done

if [ "$AUTO" -eq 1 ]; then
    echo
    echo "compression_level = \"auto\" against level 3 (c) and the baselines, same runs:"
    printf '%-10s %10s %10s %10s %10s %12s %12s %12s  %s\n' \
        rows raw level3 auto auto/raw auto/shell "stored L3" "stored auto" "levels (last run)"
    for rows in "${scales[@]}"; do
        ma=$(median <<<"${raw_t[$rows]}")
        mb=$(median <<<"${shell_t[$rows]}")
        mc=$(median <<<"${agent_t[$rows]}")
        me=$(median <<<"${auto_t[$rows]}")
        printf '%-10s %9ss %9ss %9ss %10s %10s %12s %12s  %s\n' "$rows" "$ma" "$mc" "$me" \
            "$(ratio "$me" "$ma")" "$(ratio "$me" "$mb")" \
            "$(mib $((${stored_size[$rows]:-0} / 1024)))" "$(mib $((${auto_size[$rows]:-0} / 1024)))" \
            "${auto_levels[$rows]}"
    done
fi

if [ "$S3" -eq 1 ]; then
    echo
    echo "S3 repository (s3s-fs on loopback) against the fs repository, same runs:"
    printf '%-10s %10s %10s %8s %14s %14s\n' rows fs s3 s3/fs "s3 RSS med" "s3 RSS max"
    for rows in "${scales[@]}"; do
        mc=$(median <<<"${agent_t[$rows]}")
        md=$(median <<<"${s3_t[$rows]}")
        mr=$(median <<<"${s3_rss[$rows]}")
        xr=$(tr ' ' '\n' <<<"${s3_rss[$rows]}" | sort -g | tail -n 1)
        printf '%-10s %9ss %9ss %8s %14s %14s\n' "$rows" "$mc" "$md" "$(ratio "$md" "$mc")" "$(mib "$mr")" "$(mib "$xr")"
    done
fi
