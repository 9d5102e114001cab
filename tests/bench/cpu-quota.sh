#!/usr/bin/env bash
# Runs a command under a CPU quota, in a cgroup of its own (as systemd's CPUQuota= or a
# container's CPU limit would), and execs it so that its PID stays the caller's child's:
#
#   tests/bench/cpu-quota.sh CPUS COMMAND [ARGS...]
#   AGENT_WRAP="tests/bench/cpu-quota.sh 1" tests/bench/backup.sh --auto
#
# CPUS is a number of CPUs' worth of time per 100 ms period (0.5, 1, 1.5). The command's
# children (pg_dump, mysqldump) share the quota. Needs root and a writable cgroup file
# system: cgroup v2 with the cpu controller, or v1 with cpu and cpuacct. The cgroup
# (lifeboat-bench-cpuCPUS) stays for the next run.
set -euo pipefail
[ $# -ge 2 ] || {
    echo "usage: $0 CPUS COMMAND [ARGS...]" >&2
    exit 2
}
cpus=$1
shift
quota=$(awk -v c="$cpus" 'BEGIN { q = int(c * 100000); if (q < 1000) exit 1; print q }') || {
    echo "error: CPUS must be a number of CPUs of at least 0.01, not '$cpus'" >&2
    exit 2
}
name="lifeboat-bench-cpu$cpus"
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    mkdir -p "/sys/fs/cgroup/$name"
    echo "$quota 100000" >"/sys/fs/cgroup/$name/cpu.max"
    echo $$ >"/sys/fs/cgroup/$name/cgroup.procs"
elif [ -d /sys/fs/cgroup/cpu ] && [ -d /sys/fs/cgroup/cpuacct ]; then
    for h in cpu cpuacct; do
        mkdir -p "/sys/fs/cgroup/$h/$name"
    done
    echo 100000 >"/sys/fs/cgroup/cpu/$name/cpu.cfs_period_us"
    echo "$quota" >"/sys/fs/cgroup/cpu/$name/cpu.cfs_quota_us"
    # One directory when cpu and cpuacct are mounted together: the second write is the same.
    for h in cpu cpuacct; do
        echo $$ >"/sys/fs/cgroup/$h/$name/cgroup.procs"
    done
else
    echo "error: no writable cgroup with a cpu controller under /sys/fs/cgroup" >&2
    exit 1
fi
exec "$@"
