//! A new server gets the roles first: each logical backup captures the cluster's globals
//! (`pg_dumpall --globals-only`, without password hashes by default) beside the data, and
//! `lifeboat globals restore` recreates them on a freshly initialised server, so that a restore
//! that keeps owners then gives the tables to their roles with their grants. Roles that exist
//! are skipped and never changed; a damaged globals object creates nothing; a password hash is
//! restored only from a `globals = "with-passwords"` backup and never appears in a log, a job
//! report or the CLI's output.

use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Agent, Sandbox, SandboxTarget, TargetConfig};
use serde_json::Value;

const SOURCE_ROLES: &str = "
CREATE ROLE app_owner LOGIN;
CREATE ROLE readers NOLOGIN;
CREATE ROLE reporting LOGIN;
GRANT readers TO reporting;
ALTER ROLE reporting SET statement_timeout = '5s';
CREATE ROLE pw_user LOGIN PASSWORD 'pw-user-secret-1';
CREATE ROLE root_like SUPERUSER NOLOGIN;
";

const SOURCE_TABLES: &str = "
CREATE TABLE orders (id int PRIMARY KEY, customer text);
INSERT INTO orders SELECT g, 'c' || g FROM generate_series(1, 500) g;
CREATE TABLE audit (id int);
ALTER TABLE orders OWNER TO app_owner;
ALTER TABLE audit OWNER TO app_owner;
GRANT SELECT ON orders TO readers;
GRANT SELECT, INSERT ON audit TO reporting;
ALTER DATABASE app SET work_mem = '8MB';
GRANT CONNECT ON DATABASE app TO reporting;
";

/// (severity, message) of the report's `globals` findings.
pub(super) fn globals_findings(job: &Value) -> Vec<(String, String)> {
    job["report"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == "globals")
        .map(|f| {
            (
                f["severity"].as_str().unwrap_or_default().to_owned(),
                f["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub(super) fn said(job: &Value, severity: &str, text: &str) -> bool {
    globals_findings(job)
        .iter()
        .any(|(s, m)| s == severity && m == text)
}

/// Roles of a server (the bootstrap and harness roles aside), with their settings.
fn roles(pg: &Pg) -> String {
    pg.query_one(
        "postgres",
        "SELECT string_agg(rolname || ':' || rolsuper || ':' || rolcanlogin || ':' || coalesce(array_to_string(rolconfig, ','), ''), ' ' ORDER BY rolname) \
         FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' AND rolname NOT IN ('postgres', 'lifeboat')",
    )
}

fn memberships(pg: &Pg) -> String {
    pg.query_one(
        "postgres",
        "SELECT coalesce(string_agg(m.rolname || ' in ' || r.rolname, ', ' ORDER BY m.rolname, r.rolname), '') FROM pg_auth_members a \
         JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
         WHERE r.rolname NOT LIKE 'pg\\_%'",
    )
}

#[test]
fn globals_are_captured_and_recreated_on_a_fresh_server() {
    let s = Sandbox::builder("globals")
        .target(SandboxTarget::new("app"))
        .target(
            SandboxTarget::new("app_pw")
                .database("app")
                .no_create()
                .extra("globals = \"with-passwords\""),
        )
        .build();
    s.pg.psql("postgres", SOURCE_ROLES);
    s.pg.psql("app", SOURCE_TABLES);
    let hash = s.pg.query_one(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'pw_user'",
    );
    assert!(hash.starts_with("SCRAM-SHA-256$"), "{hash}");

    // A freshly initialised second server, on an agent of another environment sharing the
    // repository.
    let pg2 = Pg::start();
    let pw = s.dir.sub("secrets").join("fresh.pass");
    pg2.write_password_file(&pw);
    let staging = Agent::builder(
        &s.dir.sub("agent-2"),
        &s.pki,
        &s.coordinator.url(),
        "agent-2",
        "staging",
    )
    .fs_repository("local", &s.repo)
    .target(TargetConfig::new("fresh", &pg2.url("postgres"), &pw))
    .start(&s.admin);
    let fresh_roles = roles(&pg2);
    assert!(!fresh_roles.contains("app_owner"), "{fresh_roles}");

    // Captured with the backup, as its own object, hashed like the data.
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let shown = s.backup_show(&id);
    assert_eq!(shown["globals"]["status"], "captured", "{shown}");
    assert!(shown["globals"]["roles"].as_u64() >= Some(6), "{shown}");
    assert!(
        shown["globals"]["memberships"].as_u64() >= Some(1),
        "{shown}"
    );
    assert_eq!(shown["globals"]["with_passwords"], false, "{shown}");
    let object = s.backup_dir("app", &id).join("globals.sql.zst");
    let stored = std::fs::read(&object).expect("the globals object");
    assert_eq!(
        shown["globals"]["stored_sha256"].as_str(),
        Some(sha256_hex(&stored).as_str())
    );
    let text = s.admin.run(&["backup", "show", &id]);
    assert!(
        text.stdout.contains("globals") && text.stdout.contains("without passwords"),
        "{text}"
    );
    let raw = zstd_decode(&stored);
    assert!(raw.contains("CREATE ROLE reporting;"), "{raw}");
    assert!(
        !raw.contains("SCRAM-SHA-256"),
        "a password hash was captured by default"
    );
    assert!(
        raw.contains("ALTER DATABASE app OWNER") || raw.contains("ALTER DATABASE \"app\" OWNER"),
        "{raw}"
    );

    // The dry run names what it would do and changes nothing.
    let out = s.admin.run_json(&[
        "globals",
        "restore",
        &id,
        "--target",
        "staging/fresh",
        "--dry-run",
    ]);
    assert!(out.success(), "{out}");
    let job = out.json();
    assert!(
        said(&job, "ok", "role app_owner: would be created"),
        "{job}"
    );
    assert!(
        said(&job, "info", "role postgres: skipped (exists)"),
        "{job}"
    );
    assert_eq!(roles(&pg2), fresh_roles, "a dry run created roles");

    // The globals restore: created, skipped and refused, each by name.
    let out = s.admin.run_json(&[
        "globals",
        "restore",
        &id,
        "--target",
        "staging/fresh",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    let job = out.json();
    for role in ["app_owner", "readers", "reporting", "pw_user"] {
        assert!(
            said(&job, "ok", &format!("role {role}: created")),
            "{role}: {job}"
        );
    }
    assert!(
        said(&job, "info", "role lifeboat: skipped (exists)"),
        "{job}"
    );
    assert!(
        globals_findings(&job)
            .iter()
            .any(|(s, m)| s == "warning" && m.starts_with("role root_like: refused (SUPERUSER")),
        "{job}"
    );
    assert!(
        said(&job, "ok", "membership reporting in readers: created"),
        "{job}"
    );
    let after = roles(&pg2);
    assert_eq!(
        after,
        "app_owner:false:true: pw_user:false:true: readers:false:false: reporting:false:true:statement_timeout=5s",
        "pg_roles after the globals restore"
    );
    assert_eq!(memberships(&pg2), "reporting in readers");
    assert_eq!(
        pg2.query_one(
            "postgres",
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'pw_user'"
        ),
        "t",
        "a password hash was restored from a backup without passwords"
    );

    // The database with owners kept: the tables belong to app_owner, with their grants.
    let out = s.admin.run_json(&[
        "restore",
        &id,
        "--to",
        "staging/fresh",
        "--database",
        "app",
        "--owners",
        "keep",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    let owners = pg2.query_one(
        "app",
        "SELECT string_agg(relname || '=' || relowner::regrole::text, ' ' ORDER BY relname) \
         FROM pg_class WHERE relname IN ('orders', 'audit')",
    );
    assert_eq!(owners, "audit=app_owner orders=app_owner");
    let grants = pg2.query_one(
        "app",
        "SELECT string_agg(grantee || ':' || table_name || ':' || privilege_type, ' ' ORDER BY grantee, table_name, privilege_type) \
         FROM information_schema.role_table_grants WHERE grantee IN ('readers', 'reporting')",
    );
    assert_eq!(
        grants,
        "readers:orders:SELECT reporting:audit:INSERT reporting:audit:SELECT"
    );
    assert_eq!(pg2.query_one("app", "SELECT count(*) FROM orders"), "500");
    assert_eq!(
        pg2.query_one(
            "app",
            "SET ROLE reporting; SELECT has_table_privilege('orders', 'SELECT')"
        ),
        "t",
        "reporting reads orders through readers"
    );

    // Again: everything exists, nothing changes.
    let out = s.admin.run_json(&[
        "globals",
        "restore",
        &id,
        "--target",
        "staging/fresh",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    let job = out.json();
    assert!(
        !globals_findings(&job)
            .iter()
            .any(|(_, m)| m.ends_with(": created")),
        "{job}"
    );
    for role in ["app_owner", "readers", "reporting", "pw_user"] {
        assert!(
            said(&job, "info", &format!("role {role}: skipped (exists)")),
            "{job}"
        );
    }
    assert!(
        said(
            &job,
            "info",
            "membership reporting in readers: skipped (exists)"
        ),
        "{job}"
    );
    assert_eq!(roles(&pg2), after);
    assert_eq!(memberships(&pg2), "reporting in readers");

    // A damaged globals object fails the restore on its hash and creates nothing.
    pg2.psql("postgres", "DROP ROLE pw_user;");
    let rec = s.backup_ok("app");
    let damaged = find_str(&rec, "backup_id").expect("backup_id");
    let object = s.backup_dir("app", &damaged).join("globals.sql.zst");
    let mut bytes = std::fs::read(&object).expect("object");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&object, &bytes).expect("damage");
    let out = s.admin.run_json(&[
        "globals",
        "restore",
        &damaged,
        "--target",
        "staging/fresh",
        "--wait",
    ]);
    assert!(!out.success(), "{out}");
    let text = out.to_string().to_lowercase();
    assert!(
        text.contains("globals.sql.zst") && text.contains("sha-256"),
        "{out}"
    );
    assert!(
        !roles(&pg2).contains("pw_user"),
        "a damaged object created a role"
    );
    // A verify reads the globals back too: it reports the damage; the data stays good.
    let out = s.admin.run_json(&["backup", "verify", &damaged, "--wait"]);
    out.assert_ok();
    assert!(
        out.to_string()
            .contains("`restore --with-globals` and `globals restore`"),
        "the report warns: {out}"
    );
    let shown = s.backup_show(&damaged);
    assert_eq!(shown["verify_status"], "ok", "{shown}");
    assert!(
        shown["verify_detail"]
            .as_str()
            .unwrap_or("")
            .contains("the globals object is damaged: "),
        "{shown}"
    );

    // With passwords: the hash comes back only from a with-passwords backup.
    let rec = s.backup_ok("app_pw");
    let with_pw = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(s.backup_show(&with_pw)["globals"]["with_passwords"], true);
    let out = s.admin.run_json(&[
        "globals",
        "restore",
        &with_pw,
        "--target",
        "staging/fresh",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    assert!(said(&out.json(), "ok", "role pw_user: created"), "{out}");
    assert_eq!(
        pg2.query_one(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'pw_user'"
        ),
        hash
    );

    // restore --with-globals: roles first (all exist: skipped), then the database, then its
    // own settings and grants on the database it restored into.
    let out = s.admin.run_json(&[
        "restore",
        &id,
        "--to",
        "staging/fresh",
        "--database",
        "app_again",
        "--with-globals",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    let job = out.json();
    assert!(
        said(&job, "info", "role app_owner: skipped (exists)"),
        "{job}"
    );
    assert_eq!(
        pg2.query_one(
            "postgres",
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = 'app_again' AND s.setrole = 0"
        ),
        "work_mem=8MB"
    );
    assert_eq!(
        pg2.query_one(
            "postgres",
            "SELECT coalesce(datacl::text LIKE '%reporting=c/%', false) FROM pg_database WHERE datname = 'app_again'"
        ),
        "t"
    );
    assert_eq!(
        pg2.query_one(
            "app_again",
            "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'orders'"
        ),
        "app_owner"
    );

    // The hash is a secret: in no log, no job report, no CLI output.
    let mut seen = vec![
        ("agent log".to_owned(), s.agent.logs()),
        ("staging agent log".to_owned(), staging.logs()),
        ("coordinator log".to_owned(), s.coordinator.logs()),
        ("cli output".to_owned(), out.to_string()),
    ];
    let jobs = s.admin.run_json(&["jobs", "list"]);
    seen.push(("jobs list".into(), jobs.to_string()));
    for j in jobs.json().as_array().into_iter().flatten() {
        let id = j["job_id"].as_str().unwrap_or_default();
        seen.push((
            format!("job {id}"),
            s.admin.run_json(&["jobs", "show", id]).to_string(),
        ));
    }
    let secret = hash.split('$').nth(2).unwrap_or(&hash).to_owned();
    for (what, text) in &seen {
        assert!(
            !text.contains(&secret),
            "the password hash appears in the {what}"
        );
        assert!(
            !text.contains("pw-user-secret-1"),
            "the password appears in the {what}"
        );
    }
    s.shutdown();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub(super) fn zstd_decode(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("zstd")
        .args(["-dc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to zstd");
    let out = child.wait_with_output().expect("zstd");
    assert!(out.status.success(), "zstd -d failed");
    String::from_utf8(out.stdout).expect("utf-8")
}
