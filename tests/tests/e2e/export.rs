//! `lifeboat backup export ID --to PATH` through the real CLI, coordinator and agent: the
//! refusals (no `export_dirs`, a relative path, a path outside them by name, by `..` or by a
//! symbolic link, a missing directory, an existing file, an unknown backup, a viewer's or an
//! operator's certificate), a sound export (mode 0600, the manifest copy, both hashes, the
//! restore commands printed, audited) restored with plain `pg_restore` and compared with the
//! source, and a damaged stored object that fails naming the hash and leaves no file behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeboat_e2e::compare::{assert_row_counts_match, assert_same_data};
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::fsutil::sha256_file;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{CtlOutput, Sandbox, SandboxTarget};

use super::by_hand_restore::{pg_env, run_bash};

/// Adds `export_dirs = [dir]` to the agent's config and restarts it.
fn enable_exports(s: &mut Sandbox, dir: &Path) {
    let stopped = s.agent.stop();
    assert!(stopped.success(), "agent did not stop cleanly: {stopped}");
    let path = s.agent.config_path().to_owned();
    let text = std::fs::read_to_string(&path).expect("read agent.toml");
    std::fs::write(
        &path,
        format!("export_dirs = [{:?}]\n{text}", dir.display().to_string()),
    )
    .expect("write agent.toml");
    s.agent.restart(&s.admin);
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn export(s: &Sandbox, id: &str, to: &str) -> CtlOutput {
    s.admin.run(&["backup", "export", id, "--to", to, "--wait"])
}

/// A refused export: exit 1 and `needle` in what the CLI printed.
fn assert_refused(out: &CtlOutput, needle: &str) {
    assert_eq!(out.code, 1, "the export must fail: {out}");
    assert!(
        out.text_lower().contains(&needle.to_lowercase()),
        "expected {needle:?} in the refusal: {out}"
    );
}

#[test]
fn export_refuses_bad_requests_and_writes_a_checked_dump() {
    let mut s = Sandbox::builder("export")
        .target(SandboxTarget::new("orders"))
        .operator("vera", "viewer")
        .operator("olga", "operator")
        .build();
    load_awkward(&s.pg, "orders");
    load_bulk(&s.pg, "orders", "lines", 5_000);
    let rec = s.backup_ok("orders");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let raw_sha = find_str(&rec, "raw_sha256").expect("raw_sha256");
    let exports = s.dir.sub("exports");
    let outside = s.dir.sub("outside");
    let file = exports.join("orders.pgdump");
    let f = file.display().to_string();

    // No export_dirs on the agent: refused, naming the setting to add.
    assert_refused(&export(&s, &id, &f), "export_dirs = [");
    assert!(names(&exports).is_empty(), "{:?}", names(&exports));

    enable_exports(&mut s, &exports);

    // A relative path is a usage error of the CLI itself.
    let out = export(&s, &id, "orders.pgdump");
    out.assert_code(2);
    assert!(out.text_lower().contains("absolute"), "{out}");
    // An unknown backup.
    assert_refused(
        &export(&s, "20200101T000000Z-abcdef", &f),
        "not in the catalog",
    );
    // Outside export_dirs: another directory, `..` out of it, a symbolic link out of it.
    std::os::unix::fs::symlink(&outside, exports.join("link")).expect("symlink");
    for p in [
        outside.join("x.pgdump"),
        exports.join("../outside/x.pgdump"),
        exports.join("link/x.pgdump"),
    ] {
        assert_refused(
            &export(&s, &id, &p.display().to_string()),
            "not under the directories this agent exports to",
        );
    }
    assert!(names(&outside).is_empty(), "{:?}", names(&outside));
    // A directory that does not exist.
    assert_refused(
        &export(
            &s,
            &id,
            &exports.join("missing/x.pgdump").display().to_string(),
        ),
        "does not exist",
    );
    // An existing file is never overwritten.
    let taken = exports.join("taken.pgdump");
    std::fs::write(&taken, "keep me").expect("write");
    assert_refused(
        &export(&s, &id, &taken.display().to_string()),
        "already exists",
    );
    assert_eq!(std::fs::read_to_string(&taken).expect("read"), "keep me");
    // A viewer and an operator may not export: it is an admin's action.
    for who in ["vera", "olga"] {
        let out = s
            .ctl_as(who)
            .run(&["backup", "export", &id, "--to", &f, "--wait"]);
        assert_refused(&out, "needs role admin");
    }
    assert_eq!(names(&exports), ["link", "taken.pgdump"]);

    // A sound export: the dump, its manifest copy, both 0600, the hash, the hint.
    let out = export(&s, &id, &f);
    out.assert_ok();
    for needle in [
        f.as_str(),
        raw_sha.as_str(),
        "pg_restore --exit-on-error",
        "sha256sum -c",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} not printed: {out}");
    }
    let manifest_copy = exports.join("orders.pgdump.manifest.json");
    for p in [&file, &manifest_copy] {
        let mode = std::fs::metadata(p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
    assert_eq!(sha256_file(&file), raw_sha, "the file is not the raw dump");
    assert_eq!(
        std::fs::read(&manifest_copy).expect("read the copy"),
        std::fs::read(s.backup_dir("orders", &id).join("manifest.json")).expect("read"),
        "the manifest copy differs from the repository's"
    );
    let jobs = s
        .admin
        .json_list(&["jobs", "list", "--target", &s.target("orders")], "jobs")
        .expect("jobs list");
    let job_id = jobs
        .iter()
        .find(|j| find_str(j, "kind").as_deref() == Some("export"))
        .and_then(|j| find_str(j, "job_id"))
        .expect("an export job");
    let job = s.job(&job_id);
    assert_eq!(job["export"]["path"], f.as_str(), "{job}");
    assert_eq!(job["export"]["raw_sha256"], raw_sha.as_str(), "{job}");
    assert_eq!(job["export"]["raw_bytes"], rec["raw_size"], "{job}");

    // Restored with plain pg_restore (as the document says), the data is the source's.
    s.pg.create_db("orders_exported");
    let work = s.dir.sub("compare");
    let restore = format!(
        "pg_restore --exit-on-error --no-owner --no-privileges --dbname=orders_exported '{f}'"
    );
    let r = run_bash(&restore, &pg_env(&s.pg), &work);
    assert!(
        r.status.success(),
        "pg_restore of the export failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_same_data(&s.pg, "orders", "orders_exported", &work);
    assert_row_counts_match(&s.pg, "orders_exported", &rec);

    // Exports are audited.
    let audit = s.admin.run(&["audit", "list", "--since", "1h"]);
    audit.assert_ok();
    assert!(audit.stdout.contains("export_backup"), "{audit}");

    // A damaged stored object: the export names the hash and leaves nothing.
    let data = s.backup_dir("orders", &id).join("data.pgdump.zst");
    let mut bytes = std::fs::read(&data).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&data, bytes).expect("write");
    let damaged = exports.join("damaged.pgdump");
    let out = export(&s, &id, &damaged.display().to_string());
    assert_refused(&out, "sha-256");
    assert!(out.text_lower().contains("does not match"), "{out}");
    assert_eq!(
        names(&exports),
        [
            "link",
            "orders.pgdump",
            "orders.pgdump.manifest.json",
            "taken.pgdump"
        ],
        "the failed export left files behind"
    );
    s.shutdown();
}
