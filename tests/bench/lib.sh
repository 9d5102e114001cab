# shellcheck shell=bash
# What the benchmarks share: arithmetic on timings, CPU and memory readings from /proc, free
# ports, the release build, a coordinator with its certificates and the agent's configuration,
# and for the PostgreSQL benchmarks their checks, work directory and clean-up
# ([pg_bench_setup]). Sourced, never run; the caller sets ROOT, WORK and BUILD (pg_bench_setup
# sets WORK) and owns the cleanup of COORD_PID.

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (a > b) ? a : b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
# User + system CPU seconds of a process so far, without (self) or with (all) the children it
# has waited for.
cpu_self() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
cpu_all() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"; }
# CPU seconds all CPUs spent busy since boot (everything but idle and iowait, /proc/stat).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat; }
# User + system CPU seconds of a command (its output discarded).
cpu_of() {
    local TIMEFORMAT='%U %S'
    { time "$@" >/dev/null 2>&1; } 2>&1 | awk '{ printf "%.2f", $1 + $2 }'
}
# Peak resident set size of a process, in KiB (since it started or since reset_peak_rss).
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Starts a new peak: the next peak_rss_kib covers only what runs from here (Linux clear_refs).
reset_peak_rss() { echo 5 >"/proc/$1/clear_refs"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# A loopback port nobody listens on.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        (: </dev/tcp/127.0.0.1/"$p") 2>/dev/null || break
    done
    echo "$p"
}

# Builds the release binaries (unless BUILD=0) and sets BIN to where they are.
build_release() {
    if [ "$BUILD" -eq 1 ]; then
        echo "==> building lifeboat (release)"
        (cd "$ROOT" && cargo build --release -p lifeboat -p lifeboat-coordinator -p lifeboat-agent)
    fi
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
    BIN=$BIN/release
}

# Certificates for a coordinator, the agent "bench-agent" and the operator "admin"; a
# coordinator on a SQLite catalog in WORK (or the [catalog] table in CATALOG_TOML; more [jobs]
# keys in COORD_JOBS_EXTRA; heartbeats every COORD_HEARTBEAT_SECS, default 1; more tables at
# the end in COORD_TABLES_EXTRA; gRPC on COORD_GRPC_LISTEN, default a free port; more [server]
# keys in COORD_SERVER_EXTRA). Sets COORD_PID and GRPC.
start_coordinator() {
    echo "==> starting the coordinator"
    "$BIN/lifeboat" pki init --dir "$WORK/pki" >/dev/null
    "$BIN/lifeboat" pki issue --dir "$WORK/pki" --kind coordinator --name coordinator --san 127.0.0.1 >/dev/null
    "$BIN/lifeboat" pki issue --dir "$WORK/pki" --kind agent --name bench-agent >/dev/null
    "$BIN/lifeboat" pki issue --dir "$WORK/pki" --kind operator --name admin >/dev/null
    local catalog_toml=${CATALOG_TOML:-}
    [ -n "$catalog_toml" ] || catalog_toml=$(printf '[catalog]\nurl = "sqlite://%s/catalog.db"' "$WORK")
    cat >"$WORK/coordinator.toml" <<EOT
[server]
grpc_listen = "${COORD_GRPC_LISTEN:-127.0.0.1:0}"
http_listen = "127.0.0.1:0"
${COORD_SERVER_EXTRA:-}
[tls]
ca = "$WORK/pki/ca.pem"
cert = "$WORK/pki/coordinator.pem"
key = "$WORK/pki/coordinator.key"
$catalog_toml
[jobs]
heartbeat_interval_secs = ${COORD_HEARTBEAT_SECS:-1}
${COORD_JOBS_EXTRA:-}
[[operator]]
name = "admin"
role = "admin"
[[agent]]
name = "bench-agent"
environment = "bench"
${COORD_TABLES_EXTRA:-}
EOT
    launch_coordinator
}

# Starts the coordinator on WORK/coordinator.toml (its log appended to WORK/coordinator.log)
# and waits until it is ready: sets COORD_PID, GRPC and HTTP (their addresses). COORD_WRAP, if
# set, is a command the coordinator runs under (a profiler: COORD_WRAP="heaptrack -o FILE";
# COORD_PID is then the wrapper's, and the RSS figures are not the coordinator's).
launch_coordinator() {
    rm -f "$WORK/ready.json"
    # shellcheck disable=SC2086 # the wrapper is a command and its arguments
    ${COORD_WRAP:-} "$BIN/lifeboat-coordinator" --config "$WORK/coordinator.toml" --ready-file "$WORK/ready.json" \
        >>"$WORK/coordinator.log" 2>&1 &
    COORD_PID=$!
    for _ in $(seq 1 3000); do
        [ -s "$WORK/ready.json" ] && break
        kill -0 "$COORD_PID" || break
        sleep 0.1
    done
    GRPC=$(sed -n 's/.*"grpc" *: *"\([^"]*\)".*/\1/p' "$WORK/ready.json" 2>/dev/null)
    HTTP=$(sed -n 's/.*"http" *: *"\([^"]*\)".*/\1/p' "$WORK/ready.json" 2>/dev/null)
    [ -n "$GRPC" ] || {
        tail -n 50 "$WORK/coordinator.log" >&2
        echo "error: the coordinator did not become ready" >&2
        exit 1
    }
}

# A throwaway PostgreSQL 15 for a catalog: trust on loopback, fsync off, in a directory of its
# own (WORK holds keys and stays private). Creates the database "catalog"; sets CATALOG_PG_ROOT,
# CATALOG_PG_PORT and CATALOG_TOML (a [catalog] table for start_coordinator). The caller's
# cleanup runs stop_catalog_pg.
start_catalog_pg() {
    echo "==> starting PostgreSQL for the catalog"
    CATALOG_PG_ROOT=$(mktemp -d /tmp/lifeboat-bench-catalog-pg.XXXXXX)
    chown postgres "$CATALOG_PG_ROOT"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$CATALOG_PG_ROOT/data" -U lifeboat -A trust >/dev/null
    local started=0
    for _ in 1 2 3 4 5; do
        CATALOG_PG_PORT=$(free_port)
        if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CATALOG_PG_ROOT/data" -l "$CATALOG_PG_ROOT/log" \
            -w -o "-p $CATALOG_PG_PORT -k $CATALOG_PG_ROOT -c listen_addresses=127.0.0.1 -c fsync=off" \
            start >/dev/null; then
            started=1
            break
        fi
    done
    [ "$started" -eq 1 ] || { cat "$CATALOG_PG_ROOT/log"; exit 1; }
    catalog_psql -d postgres -c "CREATE DATABASE catalog"
    CATALOG_TOML=$(printf '[catalog]\nurl = "postgres://lifeboat@127.0.0.1:%s/catalog"\ntls = "disable"' \
        "$CATALOG_PG_PORT")
}
stop_catalog_pg() {
    [ -n "${CATALOG_PG_ROOT:-}" ] || return 0
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CATALOG_PG_ROOT/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$CATALOG_PG_ROOT"
    CATALOG_PG_ROOT=""
}
catalog_psql() {
    psql -h "$CATALOG_PG_ROOT" -p "$CATALOG_PG_PORT" -U lifeboat -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# The operator CLI as "admin" against the coordinator started above.
lifeboat() {
    "$BIN/lifeboat" --coordinator "https://$GRPC" --ca "$WORK/pki/ca.pem" \
        --cert "$WORK/pki/admin.pem" --key "$WORK/pki/admin.key" --timeout 3600 "$@"
}
# The start of the benchmark agent's configuration (identity, coordinator, TLS and the fs
# repository "local"); the caller appends its repositories and targets.
agent_config_head() {
    cat <<EOF
name = "bench-agent"
environment = "bench"
coordinator = "https://$GRPC"
max_concurrent_jobs = 1
state_dir = "$WORK/agent-state"
[tls]
ca = "$WORK/pki/ca.pem"
cert = "$WORK/pki/bench-agent.pem"
key = "$WORK/pki/bench-agent.key"
[[repository]]
name = "local"
kind = "fs"
path = "$WORK/repo"
EOF
}
agent_connected() { lifeboat --output json agents list 2>/dev/null | grep -q '"connected": *true'; }

# Starts the agent on WORK/agent.toml (its log: WORK/agent.log) and waits until it is connected
# and, with AGENT_SOCKET set, until that socket exists (the WAL socket). Sets AGENT_PID.
# AGENT_WRAP, if set, is a command the agent runs under; it must exec the agent so that
# AGENT_PID stays the agent's (AGENT_WRAP="tests/bench/cpu-quota.sh 1": one CPU's quota).
start_agent() {
    # shellcheck disable=SC2086 # the wrapper is a command and its arguments
    ${AGENT_WRAP:-} "${AGENT_BIN:-$BIN/lifeboat-agent}" --config "$WORK/agent.toml" >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    for _ in $(seq 1 300); do
        if { [ -z "${AGENT_SOCKET:-}" ] || [ -S "$AGENT_SOCKET" ]; } && agent_connected; then
            return 0
        fi
        kill -0 "$AGENT_PID" || break
        sleep 0.05
    done
    tail -n 50 "$WORK/agent.log" >&2
    echo "error: the agent did not connect" >&2
    exit 1
}

# Stops the agent and waits until the coordinator sees it gone.
stop_agent() {
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID" || true
    AGENT_PID=""
    for _ in $(seq 1 300); do
        agent_connected || return 0
        sleep 0.05
    done
}

# A throwaway PostgreSQL 15 in WORK/pg (fsync off: benchmarks, not durability) with the
# superuser "bench", whose password is in WORK/secrets/db.pass and, for the client tools, in
# WORK/secrets/pgpass (PGPASSFILE). Sets PORT and PG_STARTED; psql_local runs psql on it as
# postgres over the socket.
psql_local() { runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg/sock" -p "$PORT" "$@"; }
start_bench_pg() {
    echo "==> starting PostgreSQL"
    mkdir -p "$WORK/pg/sock"
    chown -R postgres:postgres "$WORK/pg"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
    PORT=$(free_port)
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -o \
        "-p $PORT -k $WORK/pg/sock -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_wal_size=4GB -c fsync=off" \
        start >/dev/null
    # shellcheck disable=SC2034 # read by the caller's cleanup trap
    PG_STARTED=1
    PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf "CREATE ROLE bench LOGIN SUPERUSER PASSWORD '%s';\n" "$PASSWORD" | psql_local -U postgres -d postgres -f -
    mkdir -p "$WORK/secrets"
    chmod 700 "$WORK/secrets"
    (
        umask 077
        printf '%s' "$PASSWORD" >"$WORK/secrets/db.pass"
        printf '127.0.0.1:%s:*:bench:%s\n' "$PORT" "$PASSWORD" >"$WORK/secrets/pgpass"
    )
    export PGPASSFILE=$WORK/secrets/pgpass
}

# The PostgreSQL benchmarks' start (backup.sh, drill.sh): checks --rows/--rounds (ROWS,
# ROUNDS), the data set (SQL) and root, installs PostgreSQL and zstd where missing, makes the
# work directory (WORK) and stops at exit what was started (AGENT_PID, COORD_PID, S3_PID,
# PG_STARTED), keeping WORK with --keep (KEEP=1).
pg_bench_setup() {
    [[ $ROWS =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || {
        echo "--rows and --rounds take positive integers" >&2
        exit 2
    }
    SQL=${LIFEBOAT_BENCH_SQL:-$ROOT/../shared/bench/mixed.sql}
    [ -f "$SQL" ] || {
        echo "error: $SQL not found; set LIFEBOAT_BENCH_SQL" >&2
        exit 2
    }
    [ "$(id -u)" -eq 0 ] || {
        echo "error: run as root (initdb runs as the postgres user)" >&2
        exit 2
    }
    local missing=()
    [ -x "$PG_BIN/initdb" ] || missing+=(postgresql postgresql-contrib)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q "${missing[@]}"
    fi
    WORK=$(mktemp -d /tmp/lifeboat-bench.XXXXXX)
    chmod 755 "$WORK"
    COORD_PID=""
    AGENT_PID=""
    S3_PID=""
    PG_STARTED=0
    trap pg_bench_cleanup EXIT
}

# shellcheck disable=SC2317 # runs from the EXIT trap
pg_bench_cleanup() {
    set +e
    [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID"
    [ -n "$COORD_PID" ] && kill -TERM "$COORD_PID" 2>/dev/null && wait "$COORD_PID"
    [ -n "$S3_PID" ] && kill -TERM "$S3_PID" 2>/dev/null && wait "$S3_PID"
    [ "$PG_STARTED" -eq 1 ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null
    if [ "$KEEP" -eq 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
