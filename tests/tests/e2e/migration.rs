//! Cross-environment restore (migration) and `restore --dry-run`, through the real binaries:
//! a backup taken by the agent of one environment on one PostgreSQL server is restored by the
//! agent of another environment into another server, through the repository they share. The
//! dry run finds what would break the restore (roles the destination lacks, extensions it does
//! not have, a backup from a newer server) and writes nothing anywhere; the restore itself
//! refuses for the same reasons before it creates anything, and otherwise restores data equal
//! to the source's.

use std::path::Path;

use lifeboat_e2e::compare::assert_same_dump;
use lifeboat_e2e::fsutil::files_under;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Agent, Sandbox, SandboxTarget, TargetConfig};
use serde_json::Value;

const FIXTURE: &str = r#"
CREATE EXTENSION pgcrypto;
CREATE ROLE reporting NOLOGIN;
CREATE TABLE items (id bigserial PRIMARY KEY, sku text UNIQUE NOT NULL, token uuid DEFAULT gen_random_uuid(),
  price numeric(10, 2), note text, blob bytea);
INSERT INTO items (sku, price, note, blob)
  SELECT 'sku-' || g, g / 7.0, 'émoji 😀 ' || md5(g::text), decode(md5(g::text), 'hex')
  FROM generate_series(1, 4000) g;
CREATE VIEW expensive AS SELECT sku, price FROM items WHERE price > 100;
CREATE FUNCTION digest_of(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT encode(digest(t, 'sha256'), 'hex') $$;
GRANT SELECT ON items, expensive TO reporting;
"#;

/// A plain dump without owners and privileges: what must be equal whoever owns the copy.
fn data_dump(pg: &Pg, db: &str) -> String {
    lifeboat_e2e::compare::dump_sql_with(pg, db, &["--no-owner", "--no-privileges"])
}

fn findings(job: &Value, check: &str) -> Vec<(String, String)> {
    job["report"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == check)
        .map(|f| {
            (
                f["severity"].as_str().unwrap_or_default().to_owned(),
                f["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has(job: &Value, check: &str, severity: &str, text: &str) -> bool {
    findings(job, check)
        .iter()
        .any(|(s, m)| s == severity && m.contains(text))
}

fn plan(job: &Value) -> Vec<String> {
    job["report"]["plan"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Every file of the repository with its size: what a dry run must leave as it was.
fn repo_state(repo: &Path) -> Vec<(String, u64)> {
    files_under(repo)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p.display().to_string(), len)
        })
        .collect()
}

#[test]
fn a_backup_of_one_environment_restores_into_another_server() {
    let s = Sandbox::builder("migration")
        .target(SandboxTarget::new("orders"))
        .build();
    s.pg.psql("orders", FIXTURE);
    let source = data_dump(&s.pg, "orders");

    // Staging: its own server and agent, and the same repository.
    let pg2 = Pg::start();
    pg2.create_db("orders");
    let pw = s.dir.sub("secrets").join("staging.pass");
    pg2.write_password_file(&pw);
    let mut staging = Agent::builder(
        &s.dir.sub("agent-2"),
        &s.pki,
        &s.coordinator.url(),
        "agent-2",
        "staging",
    )
    .fs_repository("local", &s.repo)
    .target(TargetConfig::new("orders", &pg2.url("orders"), &pw))
    .start(&s.admin);

    let rec = s.backup_ok("orders");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let repo_before = repo_state(&s.repo);
    let dbs_before = pg2.databases();
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", id.as_str(), "--to", "staging/orders"];
        args.extend_from_slice(extra);
        s.admin.run_json(&args)
    };

    // Same provider: owners are kept, and the role that holds grants is missing on staging.
    let out = restore(&["--database", "orders_copy", "--dry-run"]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    assert_eq!(
        (job["kind"].as_str(), job["state"].as_str()),
        (Some("check"), Some("failed"))
    );
    assert!(has(&job, "owners", "error", "reporting"), "{job}");
    assert!(has(&job, "backup", "ok", &id), "{job}");
    assert!(has(&job, "extensions", "ok", "pgcrypto"), "{job}");
    assert!(has(&job, "destination", "ok", "orders_copy"), "{job}");
    let steps = plan(&job);
    assert!(
        steps
            .iter()
            .any(|p| p.contains("create the scratch database"))
            && steps
                .iter()
                .any(|p| p.contains("rename") && p.contains("orders_copy")),
        "{job}"
    );
    assert!(out.stderr.contains("the restore would fail"), "{out}");
    assert_eq!(pg2.databases(), dbs_before, "a dry run created a database");
    assert_eq!(
        repo_state(&s.repo),
        repo_before,
        "a dry run changed the repository"
    );

    // The restore refuses for the same reason, before it creates anything.
    let out = restore(&["--database", "orders_copy", "--wait"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.to_string().contains("reporting"), "{out}");
    assert_eq!(
        pg2.databases(),
        dbs_before,
        "a refused restore created a database"
    );

    // Without owners: the dry run passes, and the restore brings the same data across.
    let out = restore(&["--database", "orders_copy", "--dry-run", "--owners", "drop"]);
    assert_eq!(out.code, 0, "{out}");
    let job = out.json();
    assert!(has(&job, "owners", "info", "not restored"), "{job}");
    assert_eq!(pg2.databases(), dbs_before);
    let out = restore(&["--database", "orders_copy", "--wait", "--owners", "drop"]);
    out.assert_ok();
    let job = out.json();
    assert!(has(&job, "restored", "ok", "orders_copy"), "{job}");
    assert_same_dump(
        &source,
        &data_dump(&pg2, "orders_copy"),
        "prod backup restored into staging",
        s.dir.path(),
    );
    let dbs = pg2.databases();
    assert!(
        !dbs.iter().any(|d| d.starts_with("lifeboat_")),
        "leftover scratch databases: {dbs:?}"
    );

    // With the role created on staging, owners and grants are kept.
    pg2.psql("postgres", "CREATE ROLE reporting NOLOGIN;");
    let out = restore(&["--database", "orders_owned", "--dry-run"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(has(&out.json(), "owners", "ok", "restored"), "{out}");
    restore(&["--database", "orders_owned", "--wait"]).assert_ok();
    assert_eq!(
        pg2.query_one(
            "orders_owned",
            "SELECT has_table_privilege('reporting', 'public.items', 'SELECT');"
        )
        .trim(),
        "t",
        "the grant to reporting was not restored"
    );
    assert_same_dump(
        &source,
        &data_dump(&pg2, "orders_owned"),
        "restore with owners kept",
        s.dir.path(),
    );

    let st = staging.stop();
    assert!(st.success(), "staging agent stop: {st}");
    s.shutdown();
}

#[test]
fn dry_run_reports_missing_extensions_and_a_newer_server() {
    let s = Sandbox::builder("dry-run-ext")
        .target(SandboxTarget::new("app"))
        .build();
    s.pg.psql(
        "app",
        "CREATE EXTENSION pgcrypto; CREATE TABLE t (id int PRIMARY KEY, d text);
         INSERT INTO t SELECT g, encode(digest(g::text, 'sha1'), 'hex') FROM generate_series(1, 100) g;",
    );
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");

    // The manifest as a newer server with one more extension would have written it.
    let path = s.backup_dir("app", &id).join("manifest.json");
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read manifest")).expect("json");
    assert!(
        m["objects"]["extensions"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["name"] == "pgcrypto")),
        "the manifest lists the extensions: {m}"
    );
    m["objects"]["extensions"]
        .as_array_mut()
        .expect("extensions")
        .push(serde_json::json!({"name": "lifeboat_no_such_ext", "version": "1.0", "schema": "public"}));
    m["server"]["version"] = "99.1".into();
    m["server"]["version_num"] = 990_001.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("encode")).expect("write manifest");

    let before = s.pg.databases();
    let out = s
        .admin
        .run_json(&["restore", &id, "--database", "app_copy", "--dry-run"]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    assert!(
        has(&job, "extensions", "error", "lifeboat_no_such_ext"),
        "{job}"
    );
    assert!(has(&job, "version", "error", "99.1"), "{job}");
    assert!(!has(&job, "extensions", "error", "pgcrypto"), "{job}");
    assert_eq!(s.pg.databases(), before);

    let out = s.restore(&id, "app_copy", &[]);
    assert_eq!(out.code, 1, "{out}");
    let text = out.to_string();
    assert!(
        text.contains("lifeboat_no_such_ext") && text.contains("99.1"),
        "the refusal must name both problems: {out}"
    );
    assert_eq!(
        s.pg.databases(),
        before,
        "a refused restore created a database"
    );
    s.shutdown();
}
