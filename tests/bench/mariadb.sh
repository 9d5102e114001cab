#!/usr/bin/env bash
# MariaDB backup and restore throughput against the physical limits of this machine.
#
#   tests/bench/mariadb.sh [--tables T] [--table-size N] [--rounds R] [--level L] [--jobs N]
#                          [--no-build] [--keep]
#
# Starts a throwaway MariaDB (mariadb-install-db + mariadbd on a free port), loads it with
# sysbench's oltp_read_write tables (default 8 × 625,000 rows, about 1.2 GB), builds lifeboat
# in release mode, starts a coordinator and an agent, and then, interleaved over R rounds
# (default 3), times
#   (a) raw dump      mariadb-dump (the agent's own options) > /dev/null
#   (s) shell         mariadb-dump … | zstd -L -T0 | tee FILE | sha256sum   (L: --level, or 1,
#                     auto's floor, with auto)
#   (b) agent backup  lifeboat backup run bench/sbtest --wait   (zstd, SHA-256, fs; --level sets
#                     the target's compression_level: default auto, the agent's default)
#   (c) raw restore   mariadb DB < dump.sql                     (the same dump, uncompressed)
#   (d) agent restore lifeboat restore ID --database DB --wait  (hash checks, scratch database,
#                     row counts, swap)
#   (e) with --jobs N: lifeboat restore ID --database DB --jobs N --wait  (N client connections)
# (c) and (d) swap order every round, and each starts once InnoDB has written out the dirty
# pages the previous load and DROP left, so that neither pays for the other's writes.
# with the CPU seconds of the tools, the agent and mariadbd in each. The backup's lower bound is
# max(raw dump time, CPU seconds of the whole backup ÷ cores): on 2 cores the dump tool, the
# server and compression compete for the same CPUs. It prints the medians and the ratios
#   backup / max(raw dump, CPU ÷ cores), the same for the shell pipeline, backup / shell and
#   restore / raw restore.
# A benchmark prints figures; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TABLES=8
TABLE_SIZE=625000
ROUNDS=3
LEVEL=auto
JOBS=0
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --tables)
        TABLES=$2
        shift 2
        ;;
    --table-size)
        TABLE_SIZE=$2
        shift 2
        ;;
    --rounds)
        ROUNDS=$2
        shift 2
        ;;
    --level)
        LEVEL=$2
        shift 2
        ;;
    --jobs)
        JOBS=$2
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
        echo "usage: $0 [--tables T] [--table-size N] [--rounds R] [--no-build] [--keep]" >&2
        exit 2
        ;;
    esac
done
for v in "$TABLES" "$TABLE_SIZE" "$ROUNDS"; do
    [[ $v =~ ^[0-9]+$ && $v -ge 1 ]] || {
        echo "--tables, --table-size and --rounds take positive integers" >&2
        exit 2
    }
done
[ "$(id -u)" -eq 0 ] || {
    echo "error: run as root (the private mariadbd runs as the invoking user, sysbench logs in as root over its socket)" >&2
    exit 2
}
case "$LEVEL" in
auto) LEVEL_TOML='"auto"' ;;
*) LEVEL_TOML=$LEVEL ;;
esac
missing=()
[ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
command -v mariadb-dump >/dev/null 2>&1 || missing+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

WORK=$(mktemp -d /tmp/lifeboat-bench-my.XXXXXX)
chmod 755 "$WORK"
COORD_PID=""
AGENT_PID=""
MY_PID=""
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    set +e
    [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID"
    [ -n "$COORD_PID" ] && kill -TERM "$COORD_PID" 2>/dev/null && wait "$COORD_PID"
    if [ -n "$MY_PID" ]; then
        mariadb-admin --no-defaults --socket="$WORK/my/sock" -uroot shutdown >/dev/null 2>&1
        wait "$MY_PID"
    fi
    if [ "$KEEP" -eq 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
CORES=$(nproc)

build_release

echo "==> starting MariaDB"
mkdir -p "$WORK/my/tmp"
mariadb-install-db --no-defaults --user=root --datadir="$WORK/my/data" --tmpdir="$WORK/my/tmp" \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null
PORT=$(free_port)
/usr/sbin/mariadbd --no-defaults --user=root --datadir="$WORK/my/data" --tmpdir="$WORK/my/tmp" \
    --socket="$WORK/my/sock" --port="$PORT" --bind-address=127.0.0.1 \
    --pid-file="$WORK/my/pid" --log-error="$WORK/my/err.log" --skip-name-resolve \
    --innodb-buffer-pool-size=2G --innodb-log-file-size=512M \
    --innodb-flush-log-at-trx-commit=2 --max-allowed-packet=1G &
MY_PID=$!
for _ in $(seq 1 300); do
    mariadb-admin --no-defaults --socket="$WORK/my/sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.1
done
myroot() { mariadb --no-defaults --socket="$WORK/my/sock" -uroot "$@"; }
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf "CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO 'bench'@'127.0.0.1';\nCREATE DATABASE sbtest;\n" \
    "$PASSWORD" | myroot
mkdir -p "$WORK/secrets"
chmod 700 "$WORK/secrets"
(
    umask 077
    printf '%s' "$PASSWORD" >"$WORK/secrets/db.pass"
    printf '[client]\nhost=127.0.0.1\nport=%s\nuser=bench\npassword=%s\n' "$PORT" "$PASSWORD" >"$WORK/secrets/my.cnf"
)

echo "==> loading sysbench oltp_read_write: $TABLES tables × $TABLE_SIZE rows"
t0=$(now)
sysbench oltp_read_write --db-driver=mysql --mysql-socket="$WORK/my/sock" --mysql-user=root \
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" --threads="$CORES" prepare >"$WORK/sysbench.log"
size=$(myroot -N -e "SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_schema = 'sbtest'")
echo "    loaded in $(elapsed "$t0" "$(now)") s, $size MiB of data and indexes"

start_coordinator
echo "==> starting the agent"
{
    agent_config_head
    cat <<EOF
[[target]]
name = "sbtest"
engine = "mysql"
provider = "mariadb"
repository = "local"
url = "mysql://bench@127.0.0.1:$PORT/sbtest"
password_file = "$WORK/secrets/db.pass"
compression_level = $LEVEL_TOML
compression_threads = 0
EOF
} >"$WORK/agent.toml"
"$BIN/lifeboat-agent" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 300); do
    agent_connected && break
    sleep 0.1
done

# The agent's dump options (engine/mysql.rs dump_args, MariaDB tool on a MariaDB server).
DUMP_ARGS=(--single-transaction --skip-lock-tables --skip-add-locks --quick --routines --events
    --triggers --hex-blob --no-tablespaces --default-character-set=utf8mb4 --comments --dump-date
    --skip-add-drop-database --max-allowed-packet=1G)
echo "==> the plain dump for the raw restores"
mariadb-dump --defaults-extra-file="$WORK/secrets/my.cnf" "${DUMP_ARGS[@]}" -- sbtest >"$WORK/dump.sql"
echo "    $(du -m "$WORK/dump.sql" | cut -f1) MiB"

# Waits until InnoDB has written out its dirty pages (the last load's, the last DROP's), so that
# a timed restore does not pay for the previous one's writes.
settle() {
    local dirty=0
    myroot -e "SET GLOBAL innodb_max_dirty_pages_pct = 0"
    for _ in $(seq 1 600); do
        dirty=$(myroot -N -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
        [ "$dirty" -lt 64 ] && break
        sleep 0.5
    done
    myroot -e "SET GLOBAL innodb_max_dirty_pages_pct = 90"
    sync
}
# (c) the raw restore of the plain dump; sets c.
raw_restore() {
    myroot -e "DROP DATABASE IF EXISTS raw_copy; CREATE DATABASE raw_copy"
    settle
    local t0
    t0=$(now)
    mariadb --defaults-extra-file="$WORK/secrets/my.cnf" --max-allowed-packet=1G raw_copy <"$WORK/dump.sql"
    c=$(elapsed "$t0" "$(now)")
    myroot -e "DROP DATABASE raw_copy"
}
# (d) the agent's restore of backup $1 (with $2: --jobs $2, timed into e); sets d.
agent_restore() {
    settle
    local t0 out
    t0=$(now)
    out=$(lifeboat --output json restore "$1" --database agent_copy ${2:+--jobs "$2"} --wait)
    if [ -n "${2:-}" ]; then e=$(elapsed "$t0" "$(now)"); else d=$(elapsed "$t0" "$(now)"); fi
    grep -q '"succeeded"' <<<"$out" || {
        echo "error: the restore failed: $out" >&2
        exit 1
    }
    myroot -e "DROP DATABASE agent_copy"
}

SHELL_LEVEL=$LEVEL
[ "$LEVEL" = auto ] && SHELL_LEVEL=1
declare -a raw_t agent_t bound_t shell_t sbound_t rraw_t ragent_t rjobs_t rss_b rss_r
for r in $(seq 1 "$ROUNDS"); do
    echo "==> round $r/$ROUNDS"
    # (a) the raw dump, with its own CPU and the server's.
    s0=$(cpu_self "$MY_PID")
    t0=$(now)
    dcpu=$(
        mariadb-dump --defaults-extra-file="$WORK/secrets/my.cnf" "${DUMP_ARGS[@]}" -- sbtest >/dev/null
        awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$BASHPID/stat"
    )
    a=$(elapsed "$t0" "$(now)")
    scpu=$(sub "$(cpu_self "$MY_PID")" "$s0")
    # (s) the shell pipeline, with its CPU (the pipeline's children) and the server's.
    s0=$(cpu_self "$MY_PID")
    t0=$(now)
    shcpu=$(
        bash -c 'mariadb-dump --defaults-extra-file="$1" "${@:4}" -- sbtest |
            zstd -q "-$2" -T0 | tee "$3" | sha256sum >/dev/null' _ \
            "$WORK/secrets/my.cnf" "$SHELL_LEVEL" "$WORK/shell.zst" "${DUMP_ARGS[@]}"
        awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$BASHPID/stat"
    )
    sh=$(elapsed "$t0" "$(now)")
    shscpu=$(sub "$(cpu_self "$MY_PID")" "$s0")
    rm -f "$WORK/shell.zst"
    sbound=$(max "$a" "$(div "$(add "$shcpu" "$shscpu")" "$CORES")")
    # (b) the agent's backup: the agent with its child (the dump tool), and the server.
    a0=$(cpu_all "$AGENT_PID")
    s0=$(cpu_self "$MY_PID")
    reset_peak_rss "$AGENT_PID"
    t0=$(now)
    out=$(lifeboat --output json backup run bench/sbtest --wait)
    b=$(elapsed "$t0" "$(now)")
    acpu=$(sub "$(cpu_all "$AGENT_PID")" "$a0")
    bscpu=$(sub "$(cpu_self "$MY_PID")" "$s0")
    grep -q '"succeeded"' <<<"$out" || {
        echo "error: the backup failed: $out" >&2
        exit 1
    }
    id=$(printf '%s\n' "$out" | sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
    hwm_b=$(peak_rss_kib "$AGENT_PID")
    levels=$(jq -r '[(.compression.levels // [{level: .compression.level, raw_bytes: .raw_size}])[] | "\(.level):\(.raw_bytes / 1048576 | floor)MiB"] | join(" ")' \
        "$WORK/repo/bench/sbtest/$id/manifest.json")
    bound=$(max "$a" "$(div "$(add "$acpu" "$bscpu")" "$CORES")")
    # (c) and (d), in alternating order, each on a settled server.
    reset_peak_rss "$AGENT_PID"
    if [ $((r % 2)) -eq 1 ]; then
        raw_restore
        agent_restore "$id"
    else
        agent_restore "$id"
        raw_restore
    fi
    if [ "$JOBS" -gt 0 ]; then
        agent_restore "$id" "$JOBS"
        rjobs_t+=("$e")
    fi
    hwm_r=$(peak_rss_kib "$AGENT_PID")
    rm -rf "${WORK:?}/repo/bench/sbtest/$id"
    raw_t+=("$a")
    agent_t+=("$b")
    bound_t+=("$bound")
    shell_t+=("$sh")
    sbound_t+=("$sbound")
    rraw_t+=("$c")
    ragent_t+=("$d")
    rss_b+=("$hwm_b")
    rss_r+=("$hwm_r")
    printf '    dump %ss (tool CPU %ss, server CPU %ss)  shell %ss (CPU %ss + server %ss, bound %ss)  backup %ss (agent+tool CPU %ss, server CPU %ss, bound %ss, levels %s, peak RSS %s)  restore raw %ss agent %ss%s\n' \
        "$a" "$dcpu" "$scpu" "$sh" "$shcpu" "$shscpu" "$sbound" "$b" "$acpu" "$bscpu" "$bound" "$levels" "$(mib "$hwm_b")" "$c" "$d" "${e:+  agent -j$JOBS ${e}s}"
done

ma=$(median <<<"${raw_t[*]}")
mb=$(median <<<"${agent_t[*]}")
mbound=$(median <<<"${bound_t[*]}")
mc=$(median <<<"${rraw_t[*]}")
md=$(median <<<"${ragent_t[*]}")
# Each ratio per round (against the same round's baseline), then the median.
ratios=""
sratios=""
shratios=""
rratios=""
for i in "${!agent_t[@]}"; do
    ratios+=" $(awk -v a="${agent_t[$i]}" -v b="${bound_t[$i]}" 'BEGIN { printf "%.3f", a / b }')"
    sratios+=" $(awk -v a="${shell_t[$i]}" -v b="${sbound_t[$i]}" 'BEGIN { printf "%.3f", a / b }')"
    shratios+=" $(awk -v a="${agent_t[$i]}" -v b="${shell_t[$i]}" 'BEGIN { printf "%.3f", a / b }')"
    rratios+=" $(awk -v a="${ragent_t[$i]}" -v b="${rraw_t[$i]}" 'BEGIN { printf "%.3f", a / b }')"
done
mratio=$(median <<<"$ratios")
mrratio=$(median <<<"$rratios")
echo
echo "Medians over $ROUNDS interleaved rounds ($CORES CPUs), sysbench $TABLES × $TABLE_SIZE rows, $(du -m "$WORK/dump.sql" | cut -f1) MiB dump:"
printf '  raw dump          %8ss\n' "$ma"
printf '  shell (zstd -%s)   %8ss   bound %ss   shell/bound %sx (per-round median)\n' \
    "$SHELL_LEVEL" "$(median <<<"${shell_t[*]}")" "$(median <<<"${sbound_t[*]}")" "$(median <<<"$sratios")"
printf '  agent backup      %8ss   bound max(dump, CPU ÷ cores) %ss   backup/bound %sx, backup/shell %sx (per-round medians)\n' \
    "$mb" "$mbound" "$mratio" "$(median <<<"$shratios")"
printf '  raw restore       %8ss\n' "$mc"
printf '  agent restore     %8ss   restore/raw %sx (per-round median; ratio of the medians %s)\n' \
    "$md" "$mrratio" "$(ratio "$md" "$mc")"
if [ "$JOBS" -gt 0 ]; then
    me=$(median <<<"${rjobs_t[*]}")
    printf '  agent restore -j%s %6ss   restore/raw %s, against one connection %s\n' \
        "$JOBS" "$me" "$(ratio "$me" "$mc")" "$(ratio "$me" "$md")"
fi
printf '  agent peak RSS    %s (during a backup), %s (during the restores)\n' \
    "$(mib "$(median <<<"${rss_b[*]}")")" "$(mib "$(median <<<"${rss_r[*]}")")"
