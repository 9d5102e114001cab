//! The CPU quotas the agent runs under (systemd's `CPUQuota=`, a container's CPU limit), so
//! that `compression_level = "auto"` sees how much of its allowance a backup leaves, not how
//! idle the whole machine is. An agent limited to one CPU on an idle 32-core host would
//! otherwise see 97 % idle CPU, raise the level, and take the dump tool's share of the quota
//! (the dump tool is its child, in the same cgroup).
//!
//! cgroup v2 (`cpu.max`, usage from `cpu.stat`) and v1 (`cpu.cfs_quota_us`, usage from
//! `cpuacct.usage` where the cpuacct hierarchy groups processes as the cpu one does). Every
//! ancestor of the agent's cgroup with a quota counts: the tightest one is the limit. Read
//! from `/proc/self/cgroup` and `/proc/self/mountinfo`; a few lines of each, so no crate.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// One cgroup with a CPU quota, above or at the agent's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// CPUs' worth of time per period the quota allows (`50000 100000` is 0.5).
    pub cpus: f64,
    usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
enum Usage {
    /// v2 `cpu.stat`, `usage_usec` line.
    CpuStat(PathBuf),
    /// v1 `cpuacct.usage`, nanoseconds.
    CpuacctUsage(PathBuf),
}

impl Quota {
    /// The cgroup's CPU time so far (all its processes, children included).
    pub fn used(&self) -> Option<Duration> {
        match &self.usage {
            Usage::CpuStat(p) => {
                let text = std::fs::read_to_string(p).ok()?;
                let usec = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Some(Duration::from_micros(usec))
            }
            Usage::CpuacctUsage(p) => {
                let ns = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
                Some(Duration::from_nanos(ns))
            }
        }
    }

    /// A v1 quota of `cpus` whose usage is read from `usage` (a `cpuacct.usage` file).
    #[cfg(test)]
    pub fn cpuacct(cpus: f64, usage: PathBuf) -> Self {
        Self {
            cpus,
            usage: Usage::CpuacctUsage(usage),
        }
    }

    pub fn path(&self) -> &Path {
        match &self.usage {
            Usage::CpuStat(p) | Usage::CpuacctUsage(p) => p,
        }
    }
}

/// The quotas over this process, none when it runs unlimited or outside Linux.
pub fn quotas() -> Vec<Quota> {
    let (Ok(cgroup), Ok(mountinfo)) = (
        std::fs::read_to_string("/proc/self/cgroup"),
        std::fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return Vec::new();
    };
    quotas_from(&cgroup, &mountinfo)
}

/// A cgroup hierarchy's mount: what part of the hierarchy (`root`) is seen at `point`.
#[derive(Debug)]
struct Mount {
    root: String,
    point: PathBuf,
}

impl Mount {
    /// The directory of the cgroup at `path` in this hierarchy, when this mount shows it.
    fn dir(&self, path: &str) -> Option<PathBuf> {
        let rel = if self.root == "/" {
            path
        } else {
            let rest = path.strip_prefix(self.root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        Some(self.point.join(rel.trim_start_matches('/')))
    }

    /// `dir` and its parents up to the mount point, innermost first.
    fn ancestors<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a Path> {
        dir.ancestors().take_while(|d| d.starts_with(&self.point))
    }
}

fn quotas_from(cgroup: &str, mountinfo: &str) -> Vec<Quota> {
    let (mut v2, mut cpu, mut cpuacct, mut comounted) = (None, None, None, false);
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let mount = || Mount {
            root: root.to_string(),
            point: PathBuf::from(point),
        };
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(mount()),
            "cgroup" => {
                let opts: Vec<&str> = post.get(2).map_or(Vec::new(), |o| o.split(',').collect());
                let (has_cpu, has_acct) = (opts.contains(&"cpu"), opts.contains(&"cpuacct"));
                if has_cpu && cpu.is_none() {
                    comounted = has_acct;
                    cpu = Some(mount());
                }
                if has_acct && cpuacct.is_none() {
                    cpuacct = Some(mount());
                }
            }
            _ => {}
        }
    }
    let (mut v2_path, mut cpu_path, mut cpuacct_path) = (None, None, None);
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if controllers.is_empty() {
            v2_path = Some(path);
        }
        for c in controllers.split(',') {
            match c {
                "cpu" => cpu_path = Some(path),
                "cpuacct" => cpuacct_path = Some(path),
                _ => {}
            }
        }
    }

    let mut found = Vec::new();
    if let (Some(m), Some(path)) = (&v2, v2_path)
        && let Some(dir) = m.dir(path)
    {
        for d in m.ancestors(&dir) {
            let Some(cpus) = read(&d.join("cpu.max")).and_then(|s| v2_cpus(&s)) else {
                continue;
            };
            found.push(Quota {
                cpus,
                usage: Usage::CpuStat(d.join("cpu.stat")),
            });
        }
    }
    if let (Some(m), Some(path)) = (&cpu, cpu_path) {
        // Usage comes from cpuacct: the same directory when both are mounted together, the
        // same path in its own hierarchy when the agent sits at the same path in both.
        let acct = match (&cpuacct, cpuacct_path) {
            _ if comounted => Some(m),
            (Some(a), Some(p)) if p == path => Some(a),
            _ => None,
        };
        if let (Some(dir), Some(acct)) = (m.dir(path), acct) {
            for d in m.ancestors(&dir) {
                let quota = read(&d.join("cpu.cfs_quota_us")).and_then(|s| s.parse::<i64>().ok());
                let period = read(&d.join("cpu.cfs_period_us")).and_then(|s| s.parse::<i64>().ok());
                let (Some(quota), Some(period)) = (quota, period) else {
                    continue;
                };
                if quota <= 0 || period <= 0 {
                    continue;
                }
                let Ok(rel) = d.strip_prefix(&m.point) else {
                    continue;
                };
                found.push(Quota {
                    cpus: quota as f64 / period as f64,
                    usage: Usage::CpuacctUsage(acct.point.join(rel).join("cpuacct.usage")),
                });
            }
        }
    }
    found
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// `cpu.max`: `max 100000` (no limit) or `QUOTA PERIOD` in microseconds.
fn v2_cpus(s: &str) -> Option<f64> {
    let mut f = s.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// The share of `quota` left unused over `elapsed`, given its usage at both ends.
pub fn spare(quota: &Quota, before: Duration, after: Duration, elapsed: Duration) -> Option<f64> {
    let allowed = quota.cpus * elapsed.as_secs_f64();
    let used = after.checked_sub(before)?.as_secs_f64();
    (allowed > 0.0).then(|| (1.0 - used / allowed).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    }

    #[test]
    fn v2_quotas_of_the_agent_and_its_parents_are_found_with_their_usage() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("unified");
        let svc = root.join("system.slice/lifeboat-agent.service");
        write(&root.join("cpu.max"), "max 100000\n");
        write(&root.join("system.slice/cpu.max"), "300000 100000\n");
        write(&svc.join("cpu.max"), "150000 100000\n");
        write(&svc.join("cpu.stat"), "usage_usec 2500000\nuser_usec 1\n");
        let mountinfo = format!(
            "25 30 0:22 / /proc rw - proc proc rw\n\
             31 23 0:28 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            root.display()
        );
        let q = quotas_from("0::/system.slice/lifeboat-agent.service\n", &mountinfo);
        let cpus: Vec<f64> = q.iter().map(|q| q.cpus).collect();
        assert_eq!(
            cpus,
            vec![1.5, 3.0],
            "innermost first, unlimited root skipped"
        );
        assert_eq!(q[0].used(), Some(Duration::from_millis(2500)));
        assert_eq!(q[1].used(), None, "a parent without cpu.stat has no usage");

        assert!(quotas_from("0::/elsewhere\n", &mountinfo).is_empty());
        assert!(quotas_from("0::/system.slice/lifeboat-agent.service\n", "").is_empty());
    }

    #[test]
    fn v1_quota_takes_its_usage_from_cpuacct() {
        let t = tempfile::tempdir().expect("tempdir");
        let (cpu, acct) = (t.path().join("cpu"), t.path().join("cpuacct"));
        write(&cpu.join("cpu.cfs_quota_us"), "-1\n");
        write(&cpu.join("cpu.cfs_period_us"), "100000\n");
        write(&cpu.join("lb/cpu.cfs_quota_us"), "50000\n");
        write(&cpu.join("lb/cpu.cfs_period_us"), "100000\n");
        write(&acct.join("lb/cpuacct.usage"), "1500000000\n");
        let mountinfo = format!(
            "32 31 0:29 / {} rw,relatime - cgroup cgroup rw,cpu\n\
             33 31 0:30 / {} rw,relatime - cgroup cgroup rw,cpuacct\n",
            cpu.display(),
            acct.display()
        );
        let q = quotas_from("2:cpuacct:/lb\n1:cpu:/lb\n0::/\n", &mountinfo);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].cpus, 0.5);
        assert_eq!(q[0].used(), Some(Duration::from_millis(1500)));
        assert!(
            quotas_from("2:cpuacct:/other\n1:cpu:/lb\n", &mountinfo).is_empty(),
            "cpuacct grouping the agent elsewhere says nothing of the cpu cgroup's usage"
        );

        // Mounted together (`cpu,cpuacct`), and a container seeing only its own part.
        let both = t.path().join("both");
        write(&both.join("cpu.cfs_quota_us"), "200000\n");
        write(&both.join("cpu.cfs_period_us"), "100000\n");
        write(&both.join("cpuacct.usage"), "7\n");
        let mountinfo = format!(
            "40 31 0:35 /docker/abc {} ro - cgroup cgroup rw,cpu,cpuacct\n",
            both.display()
        );
        let q = quotas_from("3:cpu,cpuacct:/docker/abc\n", &mountinfo);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].cpus, 2.0);
        assert_eq!(q[0].used(), Some(Duration::from_nanos(7)));
        assert!(quotas_from("3:cpu,cpuacct:/docker/abcdef\n", &mountinfo).is_empty());
    }

    #[test]
    fn spare_is_what_the_quota_left_over_the_window() {
        let q = Quota {
            cpus: 2.0,
            usage: Usage::CpuacctUsage(PathBuf::new()),
        };
        let s = |a, b, e| {
            spare(
                &q,
                Duration::from_millis(a),
                Duration::from_millis(b),
                Duration::from_millis(e),
            )
        };
        assert_eq!(s(0, 250, 250), Some(0.5), "one of two CPUs for the window");
        assert_eq!(
            s(0, 600, 250),
            Some(0.0),
            "bursts above the quota count as none"
        );
        assert_eq!(s(100, 50, 250), None, "a counter that went back");
        assert_eq!(s(0, 0, 0), None);
        assert_eq!(v2_cpus("max 100000"), None);
        assert_eq!(v2_cpus("50000 100000"), Some(0.5));
    }
}
