//! Backups caught in the middle: a pg_dump that stalls on demand
//! ([`pg_dump::stall_until_released`]), a backup started and held mid-stream, and what must (not)
//! be left of it once it is interrupted (agent resilience, job control).
//!
//! The stall is driven by marker files in the [`PgBinDir`]: `stall` arms it (the wrapper lets
//! [`STALL_BYTES`] through, touches `stalled`, then waits); removing `stall` releases it, and
//! with no `stall` marker the wrapper is the real pg_dump.

use std::time::Duration;

use anyhow::bail;

use crate::fixtures::load_bulk;
use crate::fsutil::{files_named, files_under};
use crate::poll::eventually;
use crate::sandbox::{find_str, is_terminal};
use crate::wrappers::{PgBinDir, pg_dump};
use crate::{Sandbox, SandboxBuilder, SandboxTarget, TestDir};

/// pg_dump output let through before the stall: well inside the dump of 20 000 rows (~2 MB).
pub const STALL_BYTES: u64 = 64 * 1024;

/// A `pg_bin_dir` at `<dir>/bin` whose pg_dump stalls after [`STALL_BYTES`] while the `stall`
/// marker exists.
pub fn stalling_pg_bin(dir: &TestDir) -> PgBinDir {
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_dump", &pg_dump::stall_until_released(STALL_BYTES));
    bin
}

/// A sandbox whose target `app` dumps through a pg_dump that stalls on demand, with 20 000 rows.
pub fn stalling_sandbox(name: &str) -> (Sandbox, PgBinDir) {
    stalling_sandbox_with(name, |b| b)
}

/// [`stalling_sandbox`], with `configure` applied to the builder before target `app` is added
/// (e.g. to set the agent lease).
pub fn stalling_sandbox_with(
    name: &str,
    configure: impl FnOnce(SandboxBuilder) -> SandboxBuilder,
) -> (Sandbox, PgBinDir) {
    let dir = TestDir::new(name);
    let bin = stalling_pg_bin(&dir);
    let s = configure(Sandbox::builder(name).dir(dir))
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    load_bulk(&s.pg, "app", "rows", 20_000);
    (s, bin)
}

/// Arms the stall, starts `backup run` without waiting, and returns `(job id, backup id)` once
/// pg_dump has written part of the dump and the job is running.
pub fn start_stalled_backup(s: &Sandbox, bin: &PgBinDir, target: &str) -> (String, String) {
    let _ = std::fs::remove_file(bin.marker("stalled"));
    std::fs::write(bin.marker("stall"), b"").expect("arm the stalling pg_dump");
    let started = s.admin.json(&["backup", "run", &s.target(target)]);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    let backup_id =
        find_str(&started, "backup_id").unwrap_or_else(|| panic!("no backup_id: {started}"));
    eventually(
        "pg_dump to stall mid-stream with the job running",
        Duration::from_secs(30),
        || {
            let j = s.job(&job_id);
            let state = find_str(&j, "state").unwrap_or_default();
            if is_terminal(&state) {
                panic!("the backup ended before it could be interrupted: {j}");
            }
            if state == "running" && bin.marker("stalled").exists() {
                return Ok(());
            }
            bail!(
                "job is {state}, stalled marker: {}",
                bin.marker("stalled").exists()
            );
        },
    );
    (job_id, backup_id)
}

/// Command lines of live processes running pg_dump (or its wrapper) against `port`/`db`.
pub fn pg_dump_processes(port: u16, db: &str) -> Vec<String> {
    let suffix = format!("127.0.0.1:{port}/{db}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.contains("pg_dump")) && args.iter().any(|a| a.ends_with(&suffix)) {
            out.push(format!(
                "pid {}: {}",
                name.to_string_lossy(),
                args.join(" ")
            ));
        }
    }
    out
}

/// Asserts that backup `id` of `target` left no trace: no catalog row, no manifest anywhere in
/// the target's repository directory, no data under its final name.
pub fn assert_no_backup(s: &Sandbox, target: &str, id: &str) {
    let listed = s.backup_list(target);
    assert!(listed.is_empty(), "backup rows for {target}: {listed:?}");
    let show = s.admin.run_json(&["backup", "show", id]);
    assert_ne!(
        show.code, 0,
        "the catalog knows the interrupted backup: {show}"
    );
    let manifests = files_named(&s.target_dir(target), "manifest.json");
    assert!(manifests.is_empty(), "manifests: {manifests:?}");
    let data = s.backup_dir(target, id).join("data.pgdump.zst");
    assert!(
        !data.exists(),
        "partial data under the final name: {}",
        data.display()
    );
}

/// [`assert_no_backup`], and the interrupted backup was cleaned up: no file at all (temporary
/// or final) in the target's repository directory, and no directory for backup `id`.
pub fn assert_nothing_left(s: &Sandbox, target: &str, id: &str) {
    assert_no_backup(s, target, id);
    let left = files_under(&s.target_dir(target));
    assert!(left.is_empty(), "files left in the repository: {left:?}");
    let dir = s.backup_dir(target, id);
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
