#!/usr/bin/env bash
# shellcheck disable=SC2317 # the cleanup functions run from the EXIT trap
# lifeboat quickstart: everything on one machine, in a few minutes.
#
#   deploy/quickstart.sh [WORK_DIR]
#
# It builds lifeboat, starts a throwaway PostgreSQL 15 with a small demo database (or uses
# DATABASE_URL), creates a development CA and certificates with `lifeboat pki`, writes the
# coordinator and agent configs, starts both, then checks the target, backs up, lists, shows,
# verifies, dry-runs and restores the database into a new one, and proves the restore by
# comparing the data (plain pg_dump diff and per-table row counts). Everything it starts is stopped when it ends; the work directory
# (configs, certificates, repository, catalog, logs) is kept for you to look at.
#
# Environment:
#   LIFEBOAT_WORK_DIR   work directory (default ./quickstart-work, or the first argument)
#   LIFEBOAT_PROFILE    release (default) or debug
#   DATABASE_URL        postgres://USER[:PASSWORD]@HOST:PORT/DB to back up instead of the demo
#                       database; the password may also come from PGPASSWORD. It is written to a
#                       0600 file and never printed. The user needs CREATEDB to restore.
#
# Exit status: 0 only if the restored data matches the original.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${LIFEBOAT_WORK_DIR:-${1:-./quickstart-work}}
PROFILE=${LIFEBOAT_PROFILE:-release}
PG_BIN=/usr/lib/postgresql/15/bin
ENVIRONMENT=quickstart
TARGET=shop
RESTORED=shop_restored

if [ -t 1 ]; then
    say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    say() { printf '\n==> %s\n' "$*"; }
fi
die() {
    echo "error: $*" >&2
    exit 1
}

case "$PROFILE" in
release) cargo_profile=(--release) ;;
debug) cargo_profile=() ;;
*)
    echo "error: LIFEBOAT_PROFILE must be release or debug, not $PROFILE" >&2
    exit 2
    ;;
esac

# --- prerequisites --------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'EOF'
error: cargo (the Rust toolchain) is not installed.
Install it, then run this script again:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh    # rustup, recommended
    . "$HOME/.cargo/env"
lifeboat needs Rust 1.94 or newer.
EOF
    exit 2
fi
missing=()
[ -x "$PG_BIN/pg_dump" ] || missing+=(postgresql postgresql-contrib)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); install them as root and run again"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi
export PATH="$PG_BIN:$PATH"

# --- work directory -------------------------------------------------------------------------
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ -n "$(ls -A "$WORK")" ]; then
    [ -f "$WORK/.lifeboat-quickstart" ] ||
        die "$WORK is not empty and was not made by this script; pick another LIFEBOAT_WORK_DIR"
    rm -rf "${WORK:?}"/* "$WORK"/.lifeboat-quickstart
fi
touch "$WORK/.lifeboat-quickstart"
mkdir -p "$WORK/logs" "$WORK/secrets" "$WORK/repo" "$WORK/agent-state"
chmod 700 "$WORK/secrets"

# --- everything started here is stopped on exit ---------------------------------------------
AGENT_PID=""
COORD_PID=""
PG_DIR=""
PG_STARTED=0
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
stop_pid() { # SIGTERM, then wait for it to exit
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local status=0
        wait "$pid" 2>/dev/null || status=$?
        echo "stopped $name (exit status $status)"
    fi
}
cleanup() {
    local status=$?
    set +e
    stop_pid "$AGENT_PID" "lifeboat-agent"
    stop_pid "$COORD_PID" "lifeboat-coordinator"
    if [ "$PG_STARTED" -eq 1 ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 &&
            echo "stopped the throwaway PostgreSQL"
    fi
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ----------------------------------------------------------------------------------
say "building lifeboat ($PROFILE)"
(cd "$ROOT" && cargo build "${cargo_profile[@]}" -p lifeboat -p lifeboat-coordinator -p lifeboat-agent)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/$PROFILE
for b in lifeboat lifeboat-coordinator lifeboat-agent; do
    [ -x "$BIN/$b" ] || die "$BIN/$b was not built"
done

# --- the database ---------------------------------------------------------------------------
PGPASS_FILE=$WORK/secrets/pgpass
DB_PASSWORD_FILE=$WORK/secrets/$TARGET.pass
umask 077
if [ -n "${DATABASE_URL:-}" ]; then
    say "using the database in DATABASE_URL"
    re='^(postgres|postgresql)://([^:@/]+)(:([^@]*))?@([^:/?]+)(:([0-9]+))?/([^?]+)'
    [[ $DATABASE_URL =~ $re ]] ||
        die "DATABASE_URL must look like postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    DB_USER=${BASH_REMATCH[2]}
    DB_PASSWORD=${BASH_REMATCH[4]}
    DB_HOST=${BASH_REMATCH[5]}
    DB_PORT=${BASH_REMATCH[7]:-5432}
    DB_NAME=${BASH_REMATCH[8]}
    # Percent-decoding of the password.
    DB_PASSWORD=$(printf '%b' "${DB_PASSWORD//%/\\x}")
    [ -n "$DB_PASSWORD" ] || DB_PASSWORD=${PGPASSWORD:-}
    unset PGPASSWORD
else
    say "starting a throwaway PostgreSQL 15 with a demo database"
    id postgres >/dev/null 2>&1 || die "no postgres user; install the postgresql package"
    PG_DIR=$(mktemp -d /tmp/lifeboat-quickstart-pg.XXXXXX)
    mkdir -p "$PG_DIR/sock"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$PG_DIR"
    DB_USER=lifeboat
    DB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    DB_HOST=127.0.0.1
    DB_NAME=$TARGET
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions >"$WORK/logs/initdb.log"
    # A free port: nothing answers on it.
    for _ in $(seq 1 50); do
        DB_PORT=$((20000 + RANDOM % 20000))
        (: </dev/tcp/127.0.0.1/"$DB_PORT") 2>/dev/null || break
    done
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -o \
        "-p $DB_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1" start >/dev/null
    PG_STARTED=1
    psql_local() { as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/sock" -p "$DB_PORT" "$@"; }
    # The password goes through stdin, never the command line.
    printf "CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s';\n" "$DB_USER" "$DB_PASSWORD" |
        psql_local -U postgres -d postgres -f -
    psql_local -U "$DB_USER" -d postgres -c "CREATE DATABASE $DB_NAME"
    psql_local -U "$DB_USER" -d "$DB_NAME" -f - <<'SQL'
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE,
                        created timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00');
CREATE TABLE orders (id bigserial PRIMARY KEY, customer integer NOT NULL REFERENCES customers,
                     total numeric(12, 2) NOT NULL, note text, receipt bytea);
INSERT INTO customers (name, email)
    SELECT 'Customer ' || i || CASE WHEN i % 7 = 0 THEN ' — ünïcödé ✓' ELSE '' END,
           'c' || i || '@example.com'
    FROM generate_series(1, 1000) i;
INSERT INTO orders (customer, total, note, receipt)
    SELECT 1 + i % 1000, round((i * 7.31)::numeric % 500, 2), md5(i::text),
           decode(md5(i::text), 'hex')
    FROM generate_series(1, 20000) i;
CREATE VIEW revenue AS SELECT customer, sum(total) AS total FROM orders GROUP BY customer;
SQL
    echo "PostgreSQL on 127.0.0.1:$DB_PORT, database $DB_NAME (data in $PG_DIR, removed on exit)"
fi
printf '%s' "$DB_PASSWORD" >"$DB_PASSWORD_FILE"
chmod 600 "$DB_PASSWORD_FILE"
# For this script's own pg_dump/psql: a passfile (host:port:db:user:password, ':' and '\' escaped).
esc() { local s=${1//\\/\\\\}; printf '%s' "${s//:/\\:}"; }
printf '%s:%s:*:%s:%s\n' "$DB_HOST" "$DB_PORT" "$(esc "$DB_USER")" "$(esc "$DB_PASSWORD")" >"$PGPASS_FILE"
chmod 600 "$PGPASS_FILE"
unset DB_PASSWORD
export PGPASSFILE=$PGPASS_FILE
umask 022
pg() { "$PG_BIN/$1" -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" --no-password "${@:2}"; }
pg psql -X -q -d "$DB_NAME" -c 'SELECT 1' >/dev/null ||
    die "cannot connect to $DB_USER@$DB_HOST:$DB_PORT/$DB_NAME"
if pg psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$RESTORED'" | grep -q 1; then
    die "database $RESTORED already exists on $DB_HOST:$DB_PORT; drop it or use another server"
fi

# --- certificates ---------------------------------------------------------------------------
say "creating a development CA and certificates (lifeboat pki)"
PKI=$WORK/pki
"$BIN/lifeboat" pki init --dir "$PKI"
"$BIN/lifeboat" pki issue --dir "$PKI" --kind coordinator --name coordinator --san 127.0.0.1 --san localhost
"$BIN/lifeboat" pki issue --dir "$PKI" --kind agent --name agent-1
"$BIN/lifeboat" pki issue --dir "$PKI" --kind operator --name admin

# --- coordinator ----------------------------------------------------------------------------
say "starting lifeboat-coordinator (SQLite catalog)"
cat >"$WORK/coordinator.toml" <<EOF
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[tls]
ca = "$PKI/ca.pem"
cert = "$PKI/coordinator.pem"
key = "$PKI/coordinator.key"

[catalog]
url = "sqlite://$WORK/catalog.db"

[jobs]
agent_lease_secs = 60
heartbeat_interval_secs = 5

[[operator]]
name = "admin"
role = "admin"

# The one agent admitted, and its environment.
[[agent]]
name = "agent-1"
environment = "$ENVIRONMENT"
EOF
"$BIN/lifeboat-coordinator" --config "$WORK/coordinator.toml" --ready-file "$WORK/coordinator.ready" \
    >"$WORK/logs/coordinator.log" 2>&1 &
COORD_PID=$!
for _ in $(seq 1 300); do
    [ -s "$WORK/coordinator.ready" ] && break
    kill -0 "$COORD_PID" 2>/dev/null || {
        cat "$WORK/logs/coordinator.log" >&2
        die "the coordinator exited during start-up"
    }
    sleep 0.1
done
[ -s "$WORK/coordinator.ready" ] || die "the coordinator did not get ready in 30 s; see $WORK/logs/coordinator.log"
GRPC=$(sed -n 's/.*"grpc" *: *"\([^"]*\)".*/\1/p' "$WORK/coordinator.ready")
HTTP=$(sed -n 's/.*"http" *: *"\([^"]*\)".*/\1/p' "$WORK/coordinator.ready")
COORDINATOR=https://$GRPC
echo "coordinator: gRPC $COORDINATOR, HTTP http://$HTTP (pid $COORD_PID)"

# --- agent ----------------------------------------------------------------------------------
say "starting lifeboat-agent (fs repository)"
cat >"$WORK/agent.toml" <<EOF
name = "agent-1"
environment = "$ENVIRONMENT"
coordinator = "$COORDINATOR"
max_concurrent_jobs = 2
state_dir = "$WORK/agent-state"

[tls]
ca = "$PKI/ca.pem"
cert = "$PKI/agent-1.pem"
key = "$PKI/agent-1.key"

[[repository]]
name = "local"
kind = "fs"
path = "$WORK/repo"

[[target]]
name = "$TARGET"
engine = "postgres"
provider = "postgres"
repository = "local"
url = "postgres://$DB_USER@$DB_HOST:$DB_PORT/$DB_NAME"
password_file = "$DB_PASSWORD_FILE"
compression_level = "auto"
pg_bin_dir = "$PG_BIN"
EOF
"$BIN/lifeboat-agent" --config "$WORK/agent.toml" >"$WORK/logs/agent.log" 2>&1 &
AGENT_PID=$!

lifeboat() {
    "$BIN/lifeboat" --coordinator "$COORDINATOR" --ca "$PKI/ca.pem" \
        --cert "$PKI/admin.pem" --key "$PKI/admin.key" "$@"
}
connected=0
for _ in $(seq 1 300); do
    kill -0 "$AGENT_PID" 2>/dev/null || {
        cat "$WORK/logs/agent.log" >&2
        die "the agent exited during start-up"
    }
    if lifeboat --output json targets list 2>/dev/null | grep -q "\"$ENVIRONMENT/$TARGET\"" &&
        lifeboat --output json agents list 2>/dev/null | grep -q '"connected": *true'; then
        connected=1
        break
    fi
    sleep 0.1
done
[ $connected -eq 1 ] || die "the agent did not connect in 30 s; see $WORK/logs/agent.log"

say "lifeboat agents list"
lifeboat agents list
say "lifeboat targets check $ENVIRONMENT/$TARGET"
lifeboat targets check "$ENVIRONMENT/$TARGET"
say "lifeboat targets list"
lifeboat targets list

# --- backup, verify, restore ----------------------------------------------------------------
say "lifeboat backup run $ENVIRONMENT/$TARGET --wait"
lifeboat backup run "$ENVIRONMENT/$TARGET" --wait
BACKUP_ID=$(lifeboat --output json backup list --target "$ENVIRONMENT/$TARGET" |
    sed -n 's/.*"backup_id": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$BACKUP_ID" ] || die "backup list shows no backup"

say "lifeboat backup list"
lifeboat backup list
say "lifeboat backup show $BACKUP_ID"
lifeboat backup show "$BACKUP_ID"
say "lifeboat backup verify $BACKUP_ID --wait"
lifeboat backup verify "$BACKUP_ID" --wait
say "lifeboat restore $BACKUP_ID --database $RESTORED --dry-run"
lifeboat restore "$BACKUP_ID" --database "$RESTORED" --dry-run
say "lifeboat restore $BACKUP_ID --database $RESTORED --wait"
lifeboat restore "$BACKUP_ID" --database "$RESTORED" --wait

# --- prove it: compare the data -------------------------------------------------------------
say "comparing $DB_NAME with $RESTORED"
dump() {
    pg pg_dump -d "$1" -Fp | grep -vE '^\\(un)?restrict '
}
dump "$DB_NAME" >"$WORK/original.sql"
dump "$RESTORED" >"$WORK/restored.sql"
match=1
if diff -u "$WORK/original.sql" "$WORK/restored.sql" >"$WORK/data.diff"; then
    echo "plain pg_dump of both databases: identical ($(wc -c <"$WORK/original.sql") bytes)"
else
    match=0
    echo "plain pg_dump differs; first lines of $WORK/data.diff:"
    head -n 40 "$WORK/data.diff"
fi
tables_sql="SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
printf '%-40s %12s %12s %12s\n' TABLE ORIGINAL RESTORED MANIFEST
manifest_json=$(lifeboat --output json backup show "$BACKUP_ID")
while read -r table; do
    [ -n "$table" ] || continue
    a=$(pg psql -X -At -d "$DB_NAME" -c "SELECT count(*) FROM $table")
    b=$(pg psql -X -At -d "$RESTORED" -c "SELECT count(*) FROM $table")
    # The manifest's count for this table (row_counts entries: schema, table, rows).
    m=$(printf '%s\n' "$manifest_json" | awk -v want="$table" '
        /"schema":/ { gsub(/[",]/, "", $2); s = $2 }
        /"table":/  { sub(/^[^:]*: *"/, ""); sub(/",? *$/, ""); t = $0 }
        /"rows":/   { gsub(/,/, "", $2); if (s "." t == want) print $2 }')
    printf '%-40s %12s %12s %12s\n' "$table" "$a" "$b" "${m:--}"
    if [ "$a" != "$b" ] || { [ -n "$m" ] && [ "$m" != "$a" ]; }; then
        match=0
    fi
done < <(pg psql -X -At -d "$DB_NAME" -c "$tables_sql")

# --- where things are -----------------------------------------------------------------------
say "where things are"
cat <<EOF
work directory        $WORK
coordinator config    $WORK/coordinator.toml
agent config          $WORK/agent.toml
certificates          $PKI (ca.pem, coordinator/agent-1/admin .pem + .key)
repository            $WORK/repo/$ENVIRONMENT/$TARGET/$BACKUP_ID/
catalog (SQLite)      $WORK/catalog.db
logs                  $WORK/logs/coordinator.log, $WORK/logs/agent.log
database password     $DB_PASSWORD_FILE (mode 0600)
restored database     $RESTORED on $DB_HOST:$DB_PORT
EOF
if [ -n "$PG_DIR" ]; then
    echo "(the throwaway PostgreSQL and both databases are removed now)"
fi
echo
if [ $match -eq 1 ]; then
    echo "quickstart: backup $BACKUP_ID restored into $RESTORED and the data matches"
    exit 0
fi
echo "quickstart: the restored data does NOT match the original" >&2
exit 1
