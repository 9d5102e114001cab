//! A physical base backup through the coordinator, the agent and the CLI: `backup run --wait`
//! on a `mode = "physical"` target, `backup verify`, the refusal of a restore without
//! `--data-dir`, `restore --target ENV/NAME ID --data-dir DIR --wait` into an empty directory,
//! then a PostgreSQL server started on that directory holds the backup's rows.

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

const CONTENT: &str = "SELECT count(*), md5(string_agg(format('%s|%s|%s|%s', id, a, b, n), ',' ORDER BY id)) FROM bulk_orders;";

#[test]
fn physical_backup_restores_into_a_data_directory_through_the_cli() {
    let mut s = Sandbox::builder("physical")
        .target(
            SandboxTarget::new("app")
                .extra("mode = \"physical\"")
                .extra("restore_data_dirs = [\"/tmp\"]"),
        )
        .build();
    s.pg.allow_replication();
    load_bulk(&s.pg, "app", "orders", 3000);
    let before = s.pg.psql("app", CONTENT);
    let target = s.target("app");

    let check = s.admin.run(&["targets", "check", &target]);
    check.assert_ok();
    assert!(
        check.stdout.contains("pg_basebackup 15") && check.stdout.contains("may replicate"),
        "{check}"
    );

    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(
        find_str(&rec, "format").as_deref(),
        Some("pg_basebackup-tar"),
        "{rec}"
    );
    assert_eq!(
        find_str(&rec, "dump_tool").as_deref(),
        Some("pg_basebackup"),
        "{rec}"
    );
    let shown = s.admin.run(&["backup", "show", &id]);
    shown.assert_ok();
    assert!(
        shown
            .stdout
            .contains("row counts: none (a physical base backup"),
        "{shown}"
    );
    assert!(
        s.backup_dir("app", &id).join("data.tar.zst").is_file(),
        "the data object"
    );

    // Verify unpacks the backup into the agent's scratch directory and runs pg_verifybackup on
    // it; nothing is left there afterwards.
    let verified = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    verified.assert_ok();
    assert!(
        verified
            .stdout
            .contains("pg_verifybackup: backup successfully verified"),
        "{verified}"
    );
    assert!(
        verified.stdout.contains("restores to its own end only"),
        "no WAL is archived for this target: {verified}"
    );
    let scratch = s.agent.state_dir().join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0),
        0,
        "{} is left empty",
        scratch.display()
    );

    // Rows written after the backup are not in the restored cluster.
    s.pg.psql("app", "DELETE FROM bulk_orders WHERE id <= 10;");

    // A physical backup restored like a logical one is refused, naming the flag.
    let out = s.admin.run_json(&["restore", &id, "--wait"]);
    assert!(!out.success(), "{out}");
    assert!(out.text_lower().contains("--data-dir"), "{out}");
    let out = s
        .admin
        .run_json(&["restore", &id, "--data-dir", "relative/dir", "--wait"]);
    assert!(!out.success(), "{out}");
    assert!(out.text_lower().contains("absolute"), "{out}");

    let root = Pg::empty_root();
    let data = root.path().join("data");
    let data_arg = data.display().to_string();
    // The dry run, with the newest physical backup of the target picked by the CLI: checks,
    // writes nothing.
    let plan = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        "--data-dir",
        &data_arg,
        "--dry-run",
    ]);
    plan.assert_ok();
    assert!(plan.stdout.contains("pg_verifybackup"), "{plan}");
    assert!(plan.stdout.contains(&id), "the newest backup: {plan}");
    assert_eq!(
        std::fs::read_dir(&data).expect("list").count(),
        0,
        "a dry run wrote into {data_arg}"
    );
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        &id,
        "--data-dir",
        &data_arg,
        "--wait",
    ]);
    out.assert_ok();
    let job = s.job_of("app", &out);
    assert_eq!(
        find_str(&job, "state").as_deref(),
        Some("succeeded"),
        "{job}"
    );
    assert_eq!(
        find_str(&job, "detail").as_deref(),
        Some(data_arg.as_str()),
        "{job}"
    );
    assert_eq!(
        find_str(&job, "data_dir").as_deref(),
        Some(data_arg.as_str()),
        "{job}"
    );
    assert!(data.join("PG_VERSION").is_file(), "{out}");

    let copy = Pg::start_existing(root, s.pg.password());
    assert_eq!(
        copy.psql("app", CONTENT),
        before,
        "the restored rows differ"
    );
    assert_eq!(
        copy.query_one("app", "SELECT count(*) FROM bulk_orders WHERE id <= 10"),
        "10"
    );

    // The same directory again: refused, and what is there is untouched.
    let again = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        "--data-dir",
        &data_arg,
        "--wait",
    ]);
    assert!(!again.success(), "{again}");
    assert!(again.text_lower().contains("postmaster.pid"), "{again}");
    assert_eq!(copy.psql("app", CONTENT), before);

    // The catalog is lost: a rebuild from the repository finds the physical backup again, and
    // it restores from the rebuilt catalog.
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.restart_with_fresh_catalog();
    s.agent.wait_connected(&s.admin);
    let rebuilt = s.admin.run_json(&["catalog", "rebuild"]);
    rebuilt.assert_ok();
    let rec = s.backup_show(&id);
    assert_eq!(
        find_str(&rec, "format").as_deref(),
        Some("pg_basebackup-tar"),
        "{rec}"
    );
    let root2 = Pg::empty_root();
    let data2 = root2.path().join("data").display().to_string();
    s.admin
        .run_json(&[
            "restore",
            "--target",
            &target,
            "--data-dir",
            &data2,
            "--wait",
        ])
        .assert_ok();
    let copy2 = Pg::start_existing(root2, s.pg.password());
    assert_eq!(
        copy2.psql("app", CONTENT),
        before,
        "restored after a rebuild"
    );
}

/// The same backup and restore through an S3 repository (multipart upload of the tar, ranged
/// reads back).
#[test]
fn physical_backup_restores_through_s3() {
    let s = Sandbox::builder("physical-s3")
        .target(
            SandboxTarget::new("app")
                .extra("mode = \"physical\"")
                .extra("restore_data_dirs = [\"/tmp\"]"),
        )
        .s3(&[])
        .build();
    s.pg.allow_replication();
    load_bulk(&s.pg, "app", "orders", 3000);
    let before = s.pg.psql("app", CONTENT);
    let target = s.target("app");
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let s3 = s.s3.as_ref().expect("s3");
    assert!(
        s3.object_path(&format!("{target}/{id}/data.tar.zst"))
            .is_file(),
        "the data object in the bucket"
    );
    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    s.admin
        .run_json(&[
            "restore",
            "--target",
            &target,
            &id,
            "--data-dir",
            &data,
            "--wait",
        ])
        .assert_ok();
    let copy = Pg::start_existing(root, s.pg.password());
    assert_eq!(
        copy.psql("app", CONTENT),
        before,
        "the restored rows differ"
    );
}
