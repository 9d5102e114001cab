//! S9: the fs repository's disk fills during a backup → FAILED naming the cause, the temporary
//! file removed, nothing under a final name, no manifest; the earlier backup still verifies and
//! restores.

use lifeboat_e2e::compare::{assert_same_dump, dump_sql};
use lifeboat_e2e::fixtures::{load_awkward, load_noise};
use lifeboat_e2e::fsutil::files_under;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, Tmpfs};

#[test]
fn disk_full_fails_cleanly_and_keeps_the_earlier_backup() {
    // The mount point lives outside the sandbox's test dir, and both are declared before the
    // sandbox: dropped in reverse order, the agent stops first, then the tmpfs is unmounted,
    // then its mount point removed.
    let mount_dir = TestDir::new("s9-mnt");
    let tmpfs = Tmpfs::mount(&mount_dir.path().join("repo"), "4m");
    let repo = tmpfs.path().to_owned();
    let s = Sandbox::builder("s9")
        .repo_path(&repo)
        .target(SandboxTarget::new("app"))
        .build();

    load_awkward(&s.pg, "app");
    let before = dump_sql(&s.pg, "app");
    let first = s.backup_ok("app");
    let first_id = find_str(&first, "backup_id").expect("backup_id");
    let files_before = files_under(&repo);
    assert_eq!(
        files_before.len(),
        3,
        "data, globals, manifest: {files_before:?}"
    );

    // 8 MiB of incompressible rows: more than the whole 4 MiB repository.
    load_noise(&s.pg, "app", "fill", 8 * 1024);
    let out = s.backup_run("app");
    let (_job, error) = s.assert_backup_failed("app", &out);
    let e = error.to_lowercase();
    assert!(
        e.contains("no space left") || e.contains("disk full") || e.contains("enospc"),
        "the reason must name the full disk: {error}"
    );
    assert_eq!(
        files_under(&repo),
        files_before,
        "only the earlier backup's files may remain (no temp file, no partial data)"
    );
    assert!(
        tmpfs.available_bytes() > 3 * 1024 * 1024,
        "space was given back: {} bytes free",
        tmpfs.available_bytes()
    );

    // The earlier backup is untouched.
    let v = s.admin.run_json(&["backup", "verify", &first_id, "--wait"]);
    v.assert_ok();
    assert_eq!(
        find_str(&s.backup_show(&first_id), "verify_status").as_deref(),
        Some("ok")
    );
    s.restore(&first_id, "s9_copy", &[]).assert_ok();
    assert_same_dump(
        &before,
        &dump_sql(&s.pg, "s9_copy"),
        "s9 restore",
        s.dir.path(),
    );

    s.shutdown();
}
