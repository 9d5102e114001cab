//! `lifeboat targets check` through the real binaries against real PostgreSQL and MariaDB:
//! what would break a backup (a wrong password, a dump tool older than the server, tables
//! the backup user cannot read, missing MySQL privileges) is found and named, nothing is
//! written to any database, and `targets list` shows the latest verdict.

use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};
use serde_json::Value;

/// The findings of a check job's JSON, as `(check, severity, message)`.
fn findings(job: &Value) -> Vec<(String, String, String)> {
    job["report"]["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
                    (s("check"), s("severity"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn severity_of(job: &Value, check: &str) -> Vec<String> {
    findings(job)
        .into_iter()
        .filter(|(c, _, _)| c == check)
        .map(|(_, s, _)| s)
        .collect()
}

fn message_of(job: &Value, check: &str) -> String {
    findings(job)
        .into_iter()
        .filter(|(c, _, _)| c == check)
        .map(|(_, _, m)| m)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn target_row(s: &Sandbox, name: &str) -> Value {
    s.admin
        .json_list(&["targets", "list"], "targets")
        .expect("targets list")
        .into_iter()
        .find(|t| t["name"] == s.target(name))
        .unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn postgres_targets_check_names_what_would_break_a_backup() {
    let dir = TestDir::new("targets-check-pg");
    let old = PgBinDir::new(&dir.path().join("bin-old"));
    old.wrap_raw("pg_dump", &pg_dump::reports_version("13.0"));
    let s = Sandbox::builder("targets-check-pg")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .target(
            SandboxTarget::new("badpass")
                .database("app")
                .wrong_password(),
        )
        .target(
            SandboxTarget::new("oldtool")
                .database("app")
                .pg_bin_dir(old.path()),
        )
        .target(
            SandboxTarget::new("limited")
                .database("app")
                .user("limited", "limited-pw-1"),
        )
        .operator("vera", "viewer")
        .build();
    s.pg.psql(
        "app",
        "CREATE TABLE open_t (id int PRIMARY KEY); INSERT INTO open_t VALUES (1), (2);
         CREATE TABLE secret_t (id int); CREATE SEQUENCE secret_seq;
         CREATE ROLE limited LOGIN PASSWORD 'limited-pw-1';
         GRANT SELECT ON open_t TO limited;",
    );
    let before = s.pg.databases();
    let server_version = s.pg.query_one("app", "SHOW server_version;");
    let server_version = server_version.split_whitespace().next().expect("version");

    assert_eq!(target_row(&s, "app")["last_check_result"], Value::Null);

    // A healthy target: every check passes, in text and in JSON.
    let text = s.admin.run(&["targets", "check", &s.target("app")]);
    text.assert_ok();
    assert!(text.stdout.contains("check of test/app passed"), "{text}");
    let job = s.admin.json(&["targets", "check", &s.target("app")]);
    assert_eq!(job["kind"], "check", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    for check in [
        "connection",
        "server",
        "dump_tool",
        "restore_tool",
        "privileges",
        "dump",
        "repository",
    ] {
        assert_eq!(severity_of(&job, check), ["ok"], "{check}: {job}");
    }
    assert!(message_of(&job, "server").contains(server_version), "{job}");
    assert!(message_of(&job, "size").contains("database size"), "{job}");
    let row = target_row(&s, "app");
    assert_eq!(row["last_check_result"], "ok", "{row}");
    assert_eq!(row["last_check_job_id"], job["job_id"], "{row}");

    // A wrong password: the connection is the error.
    let out = s
        .admin
        .run_json(&["targets", "check", &s.target("badpass")]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(severity_of(&job, "connection"), ["error"], "{job}");
    assert!(
        message_of(&job, "connection").contains("password authentication failed"),
        "{job}"
    );

    // pg_dump older than the server: both versions named.
    let out = s
        .admin
        .run_json(&["targets", "check", &s.target("oldtool")]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    let m = message_of(&job, "dump_tool");
    assert!(
        m.contains("13.0") && m.contains(server_version),
        "both versions must be named: {job}"
    );

    // A backup user that cannot read everything: the objects are named, and the text output
    // shows every finding.
    let out = s.admin.run(&["targets", "check", &s.target("limited")]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains("error") && out.stdout.contains("public.secret_t"),
        "{out}"
    );
    assert!(out.stderr.contains("check failed"), "{out}");
    let job = s
        .admin
        .run_json(&["targets", "check", &s.target("limited")])
        .json();
    let m = message_of(&job, "privileges");
    assert!(
        m.contains("table public.secret_t") && m.contains("sequence public.secret_seq"),
        "{job}"
    );
    assert!(!m.contains("open_t"), "a readable table was named: {job}");
    // Restores need CREATEDB, which this user lacks: a warning, not an error.
    assert!(m.contains("CREATEDB"), "{job}");
    let row = target_row(&s, "limited");
    assert_eq!(row["last_check_result"], "error", "{row}");
    assert!(
        row["last_check_summary"]
            .as_str()
            .is_some_and(|t| t.contains("secret_t")),
        "{row}"
    );

    // Nothing was created by any check, and no probe is left in the repository.
    assert_eq!(s.pg.databases(), before);
    let left: Vec<_> = lifeboat_e2e::fsutil::files_under(&s.repo)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("lifeboat-check"))
        .collect();
    assert!(left.is_empty(), "probes left: {left:?}");
    // Viewers may not run checks (they connect to the database).
    let out = s
        .ctl_as("vera")
        .run(&["targets", "check", &s.target("app")]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("needs role operator"), "{out}");
    s.shutdown();
}

#[test]
fn mariadb_targets_check_names_missing_privileges() {
    let s = Sandbox::builder("targets-check-my")
        .mariadb_target(SandboxTarget::new("shop"))
        .mariadb_target(
            SandboxTarget::new("narrow")
                .database("shop")
                .user("narrow", "narrow-pw-1"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB;
         CREATE TABLE legacy (id INT) ENGINE=MyISAM;
         INSERT INTO items VALUES (1, 'a');
         CREATE USER 'narrow'@'%' IDENTIFIED BY 'narrow-pw-1';
         GRANT SELECT ON shop.* TO 'narrow'@'%';",
    );
    let job = s.admin.json(&["targets", "check", &s.target("shop")]);
    for check in [
        "connection",
        "server",
        "dump_tool",
        "restore_tool",
        "privileges",
        "dump",
        "repository",
    ] {
        assert_eq!(severity_of(&job, check), ["ok"], "{check}: {job}");
    }
    assert!(message_of(&job, "server").contains("MariaDB"), "{job}");
    // A MyISAM table is not in the dump's snapshot.
    assert_eq!(severity_of(&job, "consistency"), ["warning"], "{job}");
    assert!(message_of(&job, "consistency").contains("legacy"), "{job}");

    let out = s.admin.run_json(&["targets", "check", &s.target("narrow")]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    let m = message_of(&job, "privileges");
    assert!(
        m.contains("SHOW VIEW") && m.contains("TRIGGER") && m.contains("EVENT"),
        "the missing privileges must be named: {job}"
    );
    assert!(!m.contains("lacks SELECT"), "{job}");
    s.shutdown();
}
