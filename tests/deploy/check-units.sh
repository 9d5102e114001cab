#!/usr/bin/env bash
# Checks the systemd units in deploy/systemd/:
#   1. `systemd-analyze verify` accepts them (in a scratch root holding stand-in binaries, so
#      the check does not depend on lifeboat being installed here),
#   2. `systemd-analyze security --offline=true` rates each at most MAX_EXPOSURE (default 2.0,
#      on systemd's 0-10 scale),
#   3. they carry the settings the deployment guide promises (dedicated user, state directory,
#      credentials for keys and secrets).
#
#   tests/deploy/check-units.sh [MAX_EXPOSURE]
#
# Exit status: 0 if every unit passes, 1 if any fails, 2 if systemd-analyze is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UNITS_DIR=$ROOT/deploy/systemd
MAX=${1:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "error: systemd-analyze not found; install systemd (apt-get install systemd)" >&2
    exit 2
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=0
fail() {
    echo "FAIL: $*"
    failed=1
}

shopt -s nullglob
units=("$UNITS_DIR"/*.service)
[ ${#units[@]} -gt 0 ] || {
    echo "FAIL: no units in $UNITS_DIR"
    exit 1
}

# A scratch root with stand-ins for the binaries the units start.
mkdir -p "$scratch/root/etc/systemd/system" "$scratch/root/usr/local/bin" "$scratch/root/usr/lib/systemd"
# The distribution's units (sysinit.target, network-online.target, ...) ours depend on.
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$dir" ]; then
        cp -a "$dir" "$scratch/root/usr/lib/systemd/system"
        break
    fi
done
for unit in "${units[@]}"; do
    cp "$unit" "$scratch/root/etc/systemd/system/"
    exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit" | head -n 1)
    [ -n "$exe" ] || fail "$(basename "$unit"): no ExecStart="
    case "$exe" in
    /usr/local/bin/*) ;;
    *) fail "$(basename "$unit"): ExecStart= must start a binary in /usr/local/bin (got $exe)" ;;
    esac
    printf '#!/bin/sh\nexit 0\n' >"$scratch/root$exe"
    chmod 755 "$scratch/root$exe"
    # ExecReload= programs from the distribution (kill), as stand-ins in the scratch root.
    for other in $(sed -n 's/^ExecReload=\([^ ]*\).*/\1/p' "$unit"); do
        mkdir -p "$scratch/root$(dirname "$other")"
        printf '#!/bin/sh\nexit 0\n' >"$scratch/root$other"
        chmod 755 "$scratch/root$other"
    done
done

for unit in "${units[@]}"; do
    name=$(basename "$unit")
    echo "== $name"

    if ! out=$(systemd-analyze verify --man=no --root="$scratch/root" \
        "$scratch/root/etc/systemd/system/$name" 2>&1); then
        fail "$name: systemd-analyze verify: $out"
    elif [ -n "$out" ]; then
        # verify prints problems without always failing; any output is a problem.
        fail "$name: systemd-analyze verify: $out"
    else
        echo "verify: ok"
    fi

    report=$(systemd-analyze security --offline=true "$unit" 2>&1) || true
    exposure=$(sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p' <<<"$report")
    if [ -z "$exposure" ]; then
        fail "$name: no exposure level in the output of systemd-analyze security:"
        echo "$report"
        continue
    fi
    if awk -v e="$exposure" -v m="$MAX" 'BEGIN { exit !(e <= m) }'; then
        echo "exposure: $exposure (max $MAX)"
    else
        fail "$name: exposure $exposure is above $MAX; what raises it:"
        grep '✗' <<<"$report" || true
    fi

    for setting in '^User=' '^StateDirectory=' '^LoadCredential=[^:]*\.key:' '^NoNewPrivileges=yes' \
        '^ProtectSystem=strict' '^CapabilityBoundingSet=$' '^PrivateUsers=yes' \
        '^SystemCallFilter=@system-service' '^UMask=0077'; do
        grep -qE "$setting" "$unit" || fail "$name: missing $setting"
    done
    if grep -qE '^User=root' "$unit"; then
        fail "$name: runs as root"
    fi
done

if [ $failed -ne 0 ]; then
    echo "check-units: FAILED"
    exit 1
fi
echo "check-units: ${#units[@]} units ok"
