#!/usr/bin/env bash
# Physical base backup and data-directory restore, against pgBackRest.
#
#   tests/bench/pitr.sh [--scale N] [--rounds R] [--no-build] [--keep] [--baseline-agent PATH]
#
# Starts a throwaway PostgreSQL 15 (archive_mode = on) loaded by pgbench -i -s N (default 107:
# about 1.6 GB of cluster; a small N such as 5 makes a quick check), a coordinator and an agent
# with a physical target and an fs repository, and a pgBackRest stanza with its repository on the
# same disk (Debian's pgbackrest package: compress-type=zst, compress-level=3, process-max=2,
# start-fast=y, archive-copy=y). Over R rounds (default 3), the order of the two tools swapped
# every round, it times
#   (a) raw      pg_basebackup -D - -Ft -X fetch --checkpoint=fast > /dev/null (the floor of a
#                backup streamed through one replication connection)
#   (b) backup   lifeboat backup run bench/main --wait  (zstd level 3, archive_command through
#                lifeboat-agent wal-push)  against  pgbackrest --type=full backup (archive_command
#                pgbackrest archive-push)
#   (c) restore  lifeboat restore ID --target bench/main --data-dir DIR --wait (hashes and
#                pg_verifybackup)  against  pgbackrest restore --set=LABEL --type=immediate
#                --target-action=promote into a new empty directory
# Every timed run ends durable: the time includes an fsync of every file and directory the run
# wrote (each tool syncs its own; what is left to sync is printed). The inputs of each run are
# dropped from the page cache first (the source's data directory before a backup, the backup's
# files before a restore), so both tools read them from disk. After each round both restored
# directories are started once (not timed) and their pgbench_accounts rows counted against the
# source. The agent is restarted before each run so that its peak RSS (VmHWM) belongs to that run.
# With --baseline-agent PATH (another build of lifeboat-agent, e.g. of an earlier commit), each
# round also restores the same backup with that agent, right after lifeboat's own restore, and
# the medians include this/baseline. Prints each round, the medians, the ratios
# lifeboat/pgBackRest and lifeboat/raw, the stored sizes and the agent's peak RSS. A benchmark:
# it asserts nothing. Run as root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
SCALE=107
ROUNDS=3
KEEP=0
BUILD=1
BASELINE=""
while [ $# -gt 0 ]; do
    case "$1" in
    --baseline-agent) BASELINE=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--scale N] [--rounds R] [--no-build] [--keep] [--baseline-agent PATH]" >&2
        exit 2
        ;;
    esac
done
[[ $SCALE =~ ^[0-9]+$ && $SCALE -ge 1 && $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || {
    echo "--scale and --rounds take positive integers" >&2
    exit 2
}
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || {
    echo "--baseline-agent: $BASELINE is not an executable" >&2
    exit 2
}
[ "$(id -u)" -eq 0 ] || {
    echo "error: run as root (PostgreSQL and pgBackRest run as the postgres user)" >&2
    exit 2
}
missing=()
[ -x "$PG_BIN/pgbench" ] || missing+=(postgresql postgresql-contrib)
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

WORK=$(mktemp -d /tmp/lifeboat-bench-pitr.XXXXXX)
chmod 755 "$WORK"
COORD_PID=""
AGENT_PID=""
PG_STARTED=0
CHECK_DIR=""
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    set +e
    [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID"
    [ -n "$COORD_PID" ] && kill -TERM "$COORD_PID" 2>/dev/null && wait "$COORD_PID"
    [ -n "$CHECK_DIR" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CHECK_DIR" -m immediate -w stop >/dev/null 2>&1
    [ "$PG_STARTED" -eq 1 ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null
    if [ "$KEEP" -eq 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
build_release
start_coordinator

# The server's user runs the WAL client: a copy it can execute.
mkdir -p "$WORK/bin" "$WORK/pg/sock" "$WORK/check/sock" "$WORK/restore" \
    "$WORK/pgbr/repo" "$WORK/pgbr/log" "$WORK/pgbr/lock" "$WORK/pgbr/spool"
cp "$BIN/lifeboat-agent" "$WORK/bin/"
chmod 755 "$WORK/bin" "$WORK/bin/lifeboat-agent" "$WORK/restore"
chown -R postgres:postgres "$WORK/pg" "$WORK/check" "$WORK/pgbr"

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
(
    umask 077
    printf '%s' "$PASSWORD" >"$WORK/secrets/db.pass"
    printf '127.0.0.1:%s:*:bench:%s\n' "$PORT" "$PASSWORD" >"$WORK/secrets/pgpass"
)
export PGPASSFILE=$WORK/secrets/pgpass

# Until the rounds, WAL is archived nowhere: neither archive starts with the load's WAL.
psql_local -d postgres -c "ALTER SYSTEM SET archive_command = 'true'" -c "SELECT pg_reload_conf()" >/dev/null

echo "==> pgbench -i -s $SCALE"
t0=$(now)
runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$WORK/pg/sock" -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_local -d postgres -c CHECKPOINT
ROWS=$(psql_local -d postgres -c "SELECT count(*) FROM pgbench_accounts")
DB_BYTES=$(psql_local -d postgres -c "SELECT sum(pg_database_size(oid)) FROM pg_database")
echo "    loaded in $(elapsed "$t0" "$(now)") s: $ROWS accounts, databases $(mib $((DB_BYTES / 1024)))"

# pgBackRest: its repository on the same disk, the settings asked of it in every run.
PGBR_CONF=$WORK/pgbackrest.conf
cat >"$PGBR_CONF" <<EOT
[global]
repo1-path=$WORK/pgbr/repo
repo1-retention-full=9999
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-copy=y
log-path=$WORK/pgbr/log
lock-path=$WORK/pgbr/lock
spool-path=$WORK/pgbr/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$WORK/pg/data
pg1-port=$PORT
pg1-socket-path=$WORK/pg/sock
pg1-user=postgres
EOT
chmod 644 "$PGBR_CONF"
pgbackrest_() { runuser -u postgres -- pgbackrest --config="$PGBR_CONF" --stanza=bench "$@"; }
echo "==> pgBackRest $(pgbackrest version | awk '{ print $2 }'): stanza-create"
pgbackrest_ stanza-create >/dev/null

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
pg_bin_dir = "$PG_BIN"
restore_data_dirs = ["$WORK/restore"]
[wal]
socket = "$WORK/wal.sock"
socket_group = "postgres"
client = "$WORK/bin/lifeboat-agent"
EOT
} >"$WORK/agent.toml"


AGENT_SOCKET="$WORK/wal.sock"

# Which archive_command the server uses: each tool archives the WAL of its own runs.
LB_ARCHIVE="$WORK/bin/lifeboat-agent wal-push --socket $WORK/wal.sock --target main %p"
PGBR_ARCHIVE="pgbackrest --config=$PGBR_CONF --stanza=bench archive-push %p"
set_archive() {
    psql_local -d postgres -c "ALTER SYSTEM SET archive_command = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
}
# Waits (up to 60 s) until the server has archived every finished segment.
wait_archived() {
    local ready
    for _ in $(seq 1 600); do
        ready=$(psql_local -d postgres -c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
        [ "$ready" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "    warning: $ready WAL files still wait to be archived" >&2
}

# Drops a tree's files from the page cache (posix_fadvise DONTNEED, file by file: nothing else
# on the machine loses its cache), so the next run reads them from disk.
# (A file that vanished meanwhile, such as an archive status file, is skipped.)
drop_cache() { find "$1" -type f -exec sh -c 'for f; do dd if="$f" iflag=nocache count=0 status=none 2>/dev/null; done; true' sh {} +; }
# fsync of every file and directory of a tree (cheap for what is already synced).
fsync_tree() { find "$1" -print0 | xargs -0 sync --; }
# CPU seconds of the server's exited backends so far (the walsender of a finished
# pg_basebackup, pgBackRest's connections): the postmaster's waited-for children.
server_cpu() { cpu_all "$(head -n 1 "$WORK/pg/data/postmaster.pid")"; }
# CPU seconds of the children this shell has waited for ($BASHPID: run in $(...)).
children_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$BASHPID/stat"; }
json_field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -n 1; }

# Starts a restored directory (not timed), counts pgbench_accounts, stops it: CHECKED.
check_restored() {
    local dir=$1 port n
    port=$(free_port)
    CHECK_DIR=$dir
    if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" -l "$WORK/check/postgres.log" -w -t 600 -o \
        "-p $port -k $WORK/check/sock -c listen_addresses= -c archive_mode=off" start >/dev/null 2>&1; then
        CHECK_DIR=""
        CHECKED="did not start (see $WORK/check/postgres.log)"
        return 0
    fi
    n=$(runuser -u postgres -- "$PG_BIN/psql" -X -q -At -h "$WORK/check/sock" -p "$port" -U postgres -d postgres \
        -c "SELECT count(*) FROM pgbench_accounts" 2>&1) || true
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    CHECK_DIR=""
    if [ "$n" = "$ROWS" ]; then CHECKED="started, $n rows (as the source)"; else CHECKED="started, rows: $n, source $ROWS: DIFFERENT"; fi
}

# The runs set globals (not subshells: the agent they start must stay the main shell's to
# clean up).
# (a) the raw pg_basebackup: RAW_T seconds, RAW_CPU, RAW_SRV (its walsender's CPU).
run_raw() {
    drop_cache "$WORK/pg/data"
    local s0 t0
    s0=$(server_cpu)
    t0=$(now)
    RAW_CPU=$(
        "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U bench --no-password -D - -Ft -X fetch \
            --checkpoint=fast >/dev/null 2>>"$WORK/raw.log" || exit 1
        children_cpu
    )
    RAW_T=$(elapsed "$t0" "$(now)")
    RAW_SRV=$(sub "$(server_cpu)" "$s0")
}

# (b) lifeboat's backup: LBB_T, LBB_JOB (the job's duration), LBB_CPU (agent and
# pg_basebackup), LBB_SRV, LBB_RSS (KiB), LB_ID.
lb_backup() {
    drop_cache "$WORK/pg/data"
    set_archive "$LB_ARCHIVE"
    start_agent
    local s0 t0 out j
    s0=$(server_cpu)
    t0=$(now)
    out=$(lifeboat --output json backup run bench/main --wait) || {
        echo "error: lifeboat backup failed: $out" >&2
        exit 1
    }
    LB_ID=$(json_field backup_id <<<"$out")
    fsync_tree "$WORK/repo/bench/main/$LB_ID"
    LBB_T=$(elapsed "$t0" "$(now)")
    LBB_RSS=$(peak_rss_kib "$AGENT_PID")
    LBB_CPU=$(cpu_all "$AGENT_PID")
    j=$(json_field duration_ms <<<"$out")
    LBB_JOB=$(div "${j:-0}" 1000)
    wait_archived
    stop_agent
    LBB_SRV=$(sub "$(server_cpu)" "$s0")
}

# (b) pgBackRest's full backup: PBB_T, PBB_CPU (all its processes), PBB_SRV, PB_LABEL.
pgbr_backup() {
    drop_cache "$WORK/pg/data"
    set_archive "$PGBR_ARCHIVE"
    local s0 t0
    s0=$(server_cpu)
    t0=$(now)
    PBB_CPU=$(
        pgbackrest_ --type=full backup >>"$WORK/pgbr-run.log" 2>&1 || exit 1
        children_cpu
    ) || {
        tail -n 20 "$WORK/pgbr-run.log" >&2
        echo "error: pgbackrest backup failed" >&2
        exit 1
    }
    # The newest full backup's label (YYYYMMDD-HHMMSSF: globs sort by time).
    local f
    for f in "$WORK"/pgbr/repo/backup/bench/[0-9]*-[0-9]*F; do PB_LABEL=${f##*/}; done
    fsync_tree "$WORK/pgbr/repo/backup/bench/$PB_LABEL"
    PBB_T=$(elapsed "$t0" "$(now)")
    wait_archived
    PBB_SRV=$(sub "$(server_cpu)" "$s0")
}

# (c) lifeboat's restore into a new directory: LBR_T, LBR_SYNC (the final fsync's share),
# LBR_CPU (agent and pg_verifybackup), LBR_RSS. Into $1 (default: restore/lifeboat).
lb_restore() {
    local dir=${1:-$WORK/restore/lifeboat} t0 t1 out
    install -d -o postgres -g postgres -m 0700 "$dir"
    drop_cache "$WORK/repo/bench/main/$LB_ID"
    start_agent
    t0=$(now)
    out=$(lifeboat --output json restore "$LB_ID" --target bench/main --data-dir "$dir" --wait) || {
        echo "error: lifeboat restore failed: $out" >&2
        exit 1
    }
    t1=$(now)
    fsync_tree "$dir"
    LBR_T=$(elapsed "$t0" "$(now)")
    LBR_SYNC=$(elapsed "$t1" "$(now)")
    LBR_RSS=$(peak_rss_kib "$AGENT_PID")
    LBR_CPU=$(cpu_all "$AGENT_PID")
    stop_agent
}

# (c) pgBackRest's restore into a new directory: PBR_T, PBR_SYNC, PBR_CPU.
pgbr_restore() {
    local dir=$WORK/restore/pgbackrest t0 t1
    install -d -o postgres -g postgres -m 0700 "$dir"
    drop_cache "$WORK/pgbr/repo/backup/bench/$PB_LABEL"
    t0=$(now)
    PBR_CPU=$(
        pgbackrest_ --pg1-path="$dir" --set="$PB_LABEL" --type=immediate --target-action=promote restore >>"$WORK/pgbr-run.log" 2>&1 || exit 1
        children_cpu
    ) || {
        tail -n 20 "$WORK/pgbr-run.log" >&2
        echo "error: pgbackrest restore failed" >&2
        exit 1
    }
    t1=$(now)
    fsync_tree "$dir"
    PBR_T=$(elapsed "$t0" "$(now)")
    PBR_SYNC=$(elapsed "$t1" "$(now)")
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
blr_t="" bratio_base="" raw_t="" lbb_t="" lbj_t="" pbb_t="" lbr_t="" pbr_t="" bratio="" rratio="" lbb_rss="" lbr_rss=""
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then first=lifeboat; else first=pgBackRest; fi
    echo "==> round $r/$ROUNDS ($first first)"
    run_raw
    if [ "$first" = lifeboat ]; then
        lb_backup
        pgbr_backup
        lb_restore
        pgbr_restore
    else
        pgbr_backup
        lb_backup
        pgbr_restore
        lb_restore
    fi
    if [ -n "$BASELINE" ]; then
        # The same backup restored by the baseline agent, after this build's restore.
        this=("$LBR_T" "$LBR_SYNC" "$LBR_CPU" "$LBR_RSS")
        AGENT_BIN=$BASELINE lb_restore "$WORK/restore/baseline"
        BLR_T=$LBR_T BLR_SYNC=$LBR_SYNC BLR_CPU=$LBR_CPU BLR_RSS=$LBR_RSS
        LBR_T=${this[0]} LBR_SYNC=${this[1]} LBR_CPU=${this[2]} LBR_RSS=${this[3]}
        rm -rf "${WORK:?}/restore/baseline"
    fi
    printf '    raw pg_basebackup %7ss  CPU %ss (walsender %ss)\n' "$RAW_T" "$RAW_CPU" "$RAW_SRV"
    printf '    backup   lifeboat %7ss  (job %ss)  CPU %ss (walsender %ss)  agent VmHWM %s\n' \
        "$LBB_T" "$LBB_JOB" "$LBB_CPU" "$LBB_SRV" "$(mib "$LBB_RSS")"
    printf '    backup   pgBackRest %5ss  CPU %ss (server %ss)   lifeboat/pgBackRest %s  lifeboat/raw %s\n' \
        "$PBB_T" "$PBB_CPU" "$PBB_SRV" "$(ratio "$LBB_T" "$PBB_T")" "$(ratio "$LBB_T" "$RAW_T")"
    printf '    restore  lifeboat %7ss  (final fsync %ss)  CPU %ss  agent VmHWM %s\n' \
        "$LBR_T" "$LBR_SYNC" "$LBR_CPU" "$(mib "$LBR_RSS")"
    printf '    restore  pgBackRest %5ss  (final fsync %ss)  CPU %ss   lifeboat/pgBackRest %s\n' \
        "$PBR_T" "$PBR_SYNC" "$PBR_CPU" "$(ratio "$LBR_T" "$PBR_T")"
    if [ -n "$BASELINE" ]; then
        printf '    restore  baseline %7ss  (final fsync %ss)  CPU %ss  agent VmHWM %s  this/baseline %s\n' \
            "$BLR_T" "$BLR_SYNC" "$BLR_CPU" "$(mib "$BLR_RSS")" "$(ratio "$LBR_T" "$BLR_T")"
        blr_t+=" $BLR_T" bratio_base+=" $(div "$LBR_T" "$BLR_T")"
    fi
    check_restored "$WORK/restore/lifeboat"
    echo "    lifeboat's directory:   $CHECKED"
    check_restored "$WORK/restore/pgbackrest"
    echo "    pgBackRest's directory: $CHECKED"
    raw_t+=" $RAW_T" lbb_t+=" $LBB_T" lbj_t+=" $LBB_JOB" pbb_t+=" $PBB_T" lbr_t+=" $LBR_T" pbr_t+=" $PBR_T"
    bratio+=" $(div "$LBB_T" "$PBB_T")" rratio+=" $(div "$LBR_T" "$PBR_T")"
    lbb_rss+=" $LBB_RSS" lbr_rss+=" $LBR_RSS"
    rm -rf "${WORK:?}/restore/lifeboat" "${WORK:?}/restore/pgbackrest"
done

m_raw=$(median <<<"$raw_t")
m_lbb=$(median <<<"$lbb_t")
m_pbb=$(median <<<"$pbb_t")
m_lbr=$(median <<<"$lbr_t")
m_pbr=$(median <<<"$pbr_t")
lb_show=$(lifeboat --output json backup show "$LB_ID")
tar_bytes=$(json_field raw_size <<<"$lb_show")
lb_stored=$(du -sk "$WORK/repo/bench/main/$LB_ID" | cut -f1)
pb_stored=$(du -sk "$WORK/pgbr/repo/backup/bench/$PB_LABEL" | cut -f1)
lb_wal=$(du -sk "$WORK/repo/bench/main/wal" 2>/dev/null | cut -f1)
pb_wal=$(du -sk "$WORK/pgbr/repo/archive/bench" | cut -f1)
max_of() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1; }

echo
echo "pgbench scale $SCALE ($ROWS accounts), databases $(mib $((DB_BYTES / 1024))), tar of the cluster $(mib $((${tar_bytes:-0} / 1024)))"
echo "Medians over $ROUNDS rounds, order swapped every round ($(nproc) CPUs; load average $LOAD0 before the rounds, $(cut -d' ' -f1-3 /proc/loadavg) after):"
printf '%-10s %12s %12s %12s %20s %20s %14s\n' "" lifeboat pgBackRest "raw pg_bb" "lifeboat/pgBackRest" "(per-round median)" lifeboat/raw
printf '%-10s %11ss %11ss %11ss %20s %20s %14s\n' backup "$m_lbb" "$m_pbb" "$m_raw" "$(ratio "$m_lbb" "$m_pbb")" \
    "$(median <<<"$bratio")x" "$(ratio "$m_lbb" "$m_raw")"
printf '%-10s %11ss %11ss %12s %20s %20s\n' restore "$m_lbr" "$m_pbr" "" "$(ratio "$m_lbr" "$m_pbr")" "$(median <<<"$rratio")x"
if [ -n "$BASELINE" ]; then
    m_blr=$(median <<<"$blr_t")
    echo "restore with the baseline agent ($BASELINE): median ${m_blr}s; this/baseline $(ratio "$m_lbr" "$m_blr") (per-round median $(median <<<"$bratio_base")x)"
fi
echo "lifeboat backup job (coordinator's record, without CLI start-up): median $(median <<<"$lbj_t") s"
echo "goals: backup lifeboat/pgBackRest <= 0.50x, restore <= 0.70x"
echo "stored per backup: lifeboat $(mib "$lb_stored"), pgBackRest $(mib "$pb_stored")"
echo "WAL archives after all rounds: lifeboat $(mib "${lb_wal:-0}"), pgBackRest $(mib "$pb_wal")"
echo "agent peak RSS: backup median $(mib "$(median <<<"$lbb_rss")") max $(mib "$(max_of <<<"$lbb_rss")"); restore median $(mib "$(median <<<"$lbr_rss")") max $(mib "$(max_of <<<"$lbr_rss")")"
