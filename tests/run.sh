#!/usr/bin/env bash
# lifeboat's whole check, as CI runs it (`.ci/run` execs this):
#   1. install what the tests need and is missing (PostgreSQL 15 with contrib, MariaDB server
#      and client, zstd, ...),
#   2. build the workspace (all targets), 3. rustfmt check, 4. clippy with -D warnings,
#   5. all tests: unit tests and the end-to-end tests in tests/ (real PostgreSQL, real
#      binaries; they need root: initdb runs as the postgres user, S9 mounts a tmpfs),
#   6. the coordinator's catalog tests and the end-to-end tests again, with the catalog on a
#      throwaway PostgreSQL server (step 5 runs them on SQLite).
# Exits non-zero if any step fails; the last line is the test count summary.
#
# Environment:
#   LIFEBOAT_TEST_THREADS  tests run at once (default 2: every e2e test starts its own
#                          PostgreSQL, coordinator and agent)
#   CARGO_TARGET_DIR       respected if set
#   LIFEBOAT_E2E_KEEP=1    keep every test's directory (logs, repository) for inspection
set -euo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)
threads=${LIFEBOAT_TEST_THREADS:-2}
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '\n==> %s\n' "$*"; }

# --- 1. system packages ---------------------------------------------------------------------
missing=()
[ -x "$PG_BIN/initdb" ] || missing+=(postgresql postgresql-contrib)
[ -f /usr/share/postgresql/15/extension/pgcrypto.control ] || missing+=(postgresql-contrib)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
[ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
command -v mariadb-dump >/dev/null 2>&1 && command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v diff >/dev/null 2>&1 || missing+=(diffutils)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
command -v mount >/dev/null 2>&1 || missing+=(mount)
command -v sha256sum >/dev/null 2>&1 || missing+=(coreutils)
# age decrypts encrypted backups in the by-hand procedure of docs/DISASTER_RECOVERY.md.
command -v age >/dev/null 2>&1 || missing+=(age)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
# promtool checks the metrics exposition and deploy/prometheus; systemd-analyze the units.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# libfaketime runs the agent with a skewed clock (S8).
[ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages (${missing[*]}) and not root; install them and run again" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2046 # word splitting of the de-duplicated list is intended
    apt-get install -y -q $(printf '%s\n' "${missing[@]}" | sort -u)
fi
if ! id postgres >/dev/null 2>&1; then
    log "creating the postgres user"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "warning: not root; the end-to-end tests need root (runuser, mount) and will fail" >&2
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install a Rust toolchain (rustup) and run again" >&2
    exit 1
fi

locked=()
[ -f Cargo.lock ] && locked=(--locked)

declare -A result
order=(build fmt clippy tests catalog-pg)
for s in "${order[@]}"; do result[$s]="skipped"; done
failed=0
step() { # step NAME COMMAND...
    local name=$1
    shift
    log "$name: $*"
    local t0=$SECONDS
    if "$@"; then
        result[$name]="ok ($((SECONDS - t0))s)"
    else
        result[$name]="FAILED ($((SECONDS - t0))s)"
        failed=1
        return 1
    fi
}

# --- the S3 test server -----------------------------------------------------------------------
# s3s-fs (checks SigV4; multipart, ranges, aborts) from crates.io, pinned: newer releases need a
# newer rustc. Built once into a cache directory outside the clone (~3 min), reused after.
S3S_VERSION=0.14.1
tools_dir=${LIFEBOAT_TOOLS_DIR:-$HOME/.cache/lifeboat-tools}
export LIFEBOAT_S3S_FS="$tools_dir/s3s-fs-$S3S_VERSION/bin/s3s-fs"
if [ ! -x "$LIFEBOAT_S3S_FS" ]; then
    log "installing s3s-fs $S3S_VERSION into $tools_dir (once)"
    # Its own target directory: a shared CARGO_TARGET_DIR would keep its build around for nothing.
    s3s_build=$(mktemp -d)
    if ! CARGO_TARGET_DIR="$s3s_build" cargo install "s3s-fs@$S3S_VERSION" --locked \
        --features binary --root "$tools_dir/s3s-fs-$S3S_VERSION"; then
        rm -rf "$s3s_build"
        echo "error: could not install s3s-fs (the S3 tests need it)" >&2
        exit 1
    fi
    rm -rf "$s3s_build"
fi

# --- 2-4. build, format, lints --------------------------------------------------------------
build_ok=1
step build cargo build --workspace --all-targets "${locked[@]}" || build_ok=0
step fmt cargo fmt --all -- --check || true
if [ $build_ok -eq 1 ]; then
    step clippy cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings || true
fi

# --- 5. tests -------------------------------------------------------------------------------
passed=0
tfailed=0
skipped=0
if [ $build_ok -eq 1 ]; then
    test_log=$(mktemp)
    trap 'rm -f "$test_log"' EXIT
    if cargo nextest --version >/dev/null 2>&1; then
        runner=(cargo nextest run --workspace "${locked[@]}" --no-fail-fast
            --test-threads "$threads" --failure-output final)
    else
        runner=(cargo test --workspace "${locked[@]}" --no-fail-fast -- --test-threads "$threads")
    fi
    log "tests: ${runner[*]}"
    t0=$SECONDS
    set +e
    "${runner[@]}" 2>&1 | tee "$test_log"
    status=${PIPESTATUS[0]}
    set -e
    if [ "${runner[1]}" = nextest ]; then
        summary=$(grep -E '^ *Summary \[' "$test_log" | tail -n 1 || true)
        passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
        tfailed=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
        skipped=$(grep -oE '[0-9]+ skipped' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
    else
        # Sum every "test result: ok. N passed; M failed; K ignored" line.
        read -r passed tfailed skipped < <(grep -E '^test result:' "$test_log" |
            sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/' |
            awk '{p += $1; f += $2; i += $3} END {print p + 0, f + 0, i + 0}')
    fi
    if [ "$status" -eq 0 ]; then
        result[tests]="ok ($((SECONDS - t0))s)"
    else
        result[tests]="FAILED ($((SECONDS - t0))s)"
        failed=1
        [ "$tfailed" -gt 0 ] || tfailed=1
    fi
fi

# --- 6. the catalog suite on PostgreSQL ---------------------------------------------------
# One throwaway server (trust on loopback, fsync off) for the run; each test makes its own
# database on it (coordinator/src/catalog/testing.rs, tests/src/coordinator.rs).

# pg_suite VAR SERVER FILTER: the tests FILTER selects, with VAR=SERVER; adds to the counts.
pg_suite() {
    local var=$1 server=$2 filter=$3 log status summary
    log=$(mktemp)
    env "$var=$server" "${runner[@]}" -E "$filter" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    summary=$(grep -E '^ *Summary \[' "$log" | tail -n 1 || true)
    passed=$((passed + $(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)))
    tfailed=$((tfailed + $(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)))
    rm -f "$log"
    return "$status"
}

catalog_pg() {
    local root port ok=1
    root=$(mktemp -d /tmp/lifeboat-catalog-pg-XXXXXX)
    chown postgres "$root"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$root/data" -U lifeboat -A trust >"$root/initdb.log" ||
        { cat "$root/initdb.log"; return 1; }
    for _ in 1 2 3 4 5; do
        port=$(shuf -i 20000-60000 -n 1)
        if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$root/data" -l "$root/log" -w -o \
            "-p $port -k $root -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
            ok=0
            break
        fi
    done
    if [ $ok -ne 0 ]; then
        cat "$root/log"
        return 1
    fi
    local server="postgres://lifeboat@127.0.0.1:$port" status=0
    set +e
    if [ "${runner[1]}" = nextest ]; then
        # The workspace's test binaries as built above (no -p: that would rebuild them).
        pg_suite LIFEBOAT_TEST_CATALOG_POSTGRES "$server" \
            'package(lifeboat-coordinator) & kind(lib) & test(/^catalog::/)' || status=1
        # The end-to-end suite with every coordinator on a PostgreSQL catalog, but for the
        # tests that handle the SQLite file or the config text themselves.
        pg_suite LIFEBOAT_E2E_CATALOG_POSTGRES "$server" \
            'package(lifeboat-e2e) - test(/^(b30_bad_config|m3_busy_catalog|x37_secrets|catalog_postgres::a_sqlite)/)' ||
            status=1
    else
        local pg_log
        pg_log=$(mktemp)
        LIFEBOAT_TEST_CATALOG_POSTGRES="$server" \
            cargo test -p lifeboat-coordinator --lib "${locked[@]}" catalog:: 2>&1 | tee "$pg_log"
        status=${PIPESTATUS[0]}
        read -r p f < <(grep -E '^test result:' "$pg_log" |
            sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' |
            awk '{p += $1; f += $2} END {print p + 0, f + 0}')
        passed=$((passed + p))
        tfailed=$((tfailed + f))
        rm -f "$pg_log"
    fi
    set -e
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$root/data" -m immediate stop >/dev/null || true
    rm -rf "$root"
    [ "$status" -eq 0 ] || { [ "$tfailed" -gt 0 ] || tfailed=1; return 1; }
}
if [ $build_ok -eq 1 ]; then
    step catalog-pg catalog_pg || true
fi

log "summary ($(($(date +%s) - start))s)"
for s in "${order[@]}"; do
    printf '  %-7s %s\n' "$s" "${result[$s]}"
done
if [ $failed -ne 0 ]; then
    echo "run.sh: FAILED"
else
    echo "run.sh: all steps passed"
fi
echo "summary: ${passed} passed, ${tfailed} failed, ${skipped} skipped"
exit $failed
