//! A coordinator whose catalog is a PostgreSQL database: reached over TLS with the server's
//! certificate and name verified (the default), as a role that owns only its database, with
//! the password in a file. Backups and restores go through it as with SQLite, the catalog
//! survives a restart, and a server whose certificate the coordinator cannot verify is
//! refused at start with an error that says so and never shows the password.

use std::process::Command;
use std::time::Duration;

use lifeboat_common::pki::{Ca, LeafSpec};
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::pg::{Pg, non_loopback_ip, write_private};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data};

pub(crate) const CATALOG_PASSWORD: &str = "catalog-pw-7f3a9c";

/// A PostgreSQL server for the catalog on a non-loopback address, TLS on with a certificate
/// for that address from a private CA, a database `lifeboat` owned by the unprivileged role
/// `lbcatalog`. Returns the server, its address and the CA's PEM.
pub(crate) fn catalog_server() -> (Pg, String, String) {
    let ip = non_loopback_ip().to_string();
    let ca = Ca::generate("catalog-db-ca").expect("generate CA");
    let leaf = ca
        .issue(&LeafSpec::coordinator("catalog-db", vec![ip.clone()]))
        .expect("issue server certificate");
    let mut pg = Pg::start();
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE lbcatalog LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             PASSWORD '{CATALOG_PASSWORD}'; CREATE DATABASE lifeboat OWNER lbcatalog;"
        ),
    );
    // PostgreSQL 15 lets every role create in the public schema only of databases it owns.
    pg.psql("lifeboat", "REVOKE ALL ON SCHEMA public FROM PUBLIC;");
    pg.serve_on(
        ip.parse().expect("ip"),
        Some((&leaf.cert_pem, leaf.key_pem.expose())),
    );
    (pg, ip, ca.cert_pem.clone())
}

/// A catalog server with the password and CA files written under `secrets`; returns the server
/// and the coordinator's `[catalog]` table for it.
pub(crate) fn catalog_with_files(secrets: &std::path::Path) -> (Pg, String) {
    let (pg, ip, ca_pem) = catalog_server();
    let password_file = secrets.join("catalog.password");
    write_private(&password_file, &format!("{CATALOG_PASSWORD}\n"));
    let ca_file = secrets.join("catalog-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    let table = format!(
        "[catalog]\nurl = \"postgres://lbcatalog@{ip}:{port}/lifeboat\"\n\
         password_file = {password_file:?}\nca = {ca_file:?}\n",
        port = pg.port(),
    );
    (pg, table)
}

#[test]
fn coordinator_keeps_its_catalog_in_postgres_over_verified_tls() {
    let dir = TestDir::new("catalog-postgres");
    let (catalog_pg, catalog) = catalog_with_files(&dir.sub("secrets"));
    let mut s = Sandbox::builder("catalog-postgres")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .coordinator_catalog(&catalog)
        .build();
    load_bulk(&s.pg, "app", "orders", 2000);

    let record = s.backup_ok("app");
    let id = find_str(&record, "backup_id").expect("backup id");
    s.restore(&id, "app_restored", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_restored", s.dir.path());

    // The rows are in PostgreSQL, written over TLS by the coordinator; no SQLite file.
    let q = |sql: &str| catalog_pg.query_one("lifeboat", sql);
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM backups WHERE backup_id = '{id}'"
        )),
        "1"
    );
    assert_eq!(
        q("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND kind IN ('backup', 'restore')"),
        "2"
    );
    assert_eq!(q("SELECT max(version) FROM _sqlx_migrations"), "19");
    let plaintext = q(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'lifeboat-coordinator' AND NOT s.ssl",
    );
    let encrypted = q(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'lifeboat-coordinator' AND s.ssl",
    );
    assert_eq!(plaintext, "0", "the coordinator has plaintext sessions");
    assert_ne!(encrypted, "0", "the coordinator has no TLS session");
    assert!(
        !s.coordinator.dir().join("catalog.db").exists(),
        "a SQLite catalog was created as well"
    );

    // A restart finds the catalog as it was.
    s.coordinator.stop();
    s.coordinator.restart();
    let listed = s.backup_list("app");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        find_str(&listed[0], "backup_id").as_deref(),
        Some(id.as_str())
    );
    let logs = s.coordinator.logs();
    assert!(
        !logs.contains(CATALOG_PASSWORD),
        "the password is in the logs"
    );
    s.shutdown();
}

/// Starts the coordinator with `catalog` as its `[catalog]` table and expects it to give up;
/// returns its stderr.
fn refused_start(dir: &TestDir, name: &str, catalog: &str) -> String {
    let pki = lifeboat_e2e::pki::Pki::init(&dir.path().join(format!("pki-{name}")));
    let builder =
        lifeboat_e2e::coordinator::Coordinator::builder(&dir.sub(&format!("coord-{name}")), &pki)
            .catalog_toml(catalog);
    let config = dir.path().join(format!("{name}.toml"));
    std::fs::write(&config, builder.config_toml()).expect("write config");
    let mut child = Command::new(lifeboat_e2e::bin("lifeboat-coordinator"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let status =
        lifeboat_e2e::poll::eventually("the coordinator gives up", Duration::from_secs(60), || {
            child
                .try_wait()?
                .ok_or_else(|| anyhow::anyhow!("still running"))
        });
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success(), "{name}: started anyway: {stderr}");
    assert!(
        !stderr.contains(CATALOG_PASSWORD) && !stderr.contains("wrong-pw-1234"),
        "{name}: a password is shown: {stderr}"
    );
    stderr
}

#[test]
fn a_catalog_server_that_fails_verification_or_login_is_refused_at_start() {
    let (catalog_pg, ip, ca_pem) = catalog_server();
    let dir = TestDir::new("catalog-postgres-refused");
    let port = catalog_pg.port();
    let password_file = dir.path().join("catalog.password");
    write_private(&password_file, CATALOG_PASSWORD);
    let ca_file = dir.path().join("catalog-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    // A CA that did not sign the server's certificate.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(
        &other_ca,
        Ca::generate("someone-else").expect("CA").cert_pem,
    )
    .expect("write CA");
    let e = refused_start(
        &dir,
        "other-ca",
        &format!(
            "[catalog]\nurl = \"postgres://lbcatalog@{ip}:{port}/lifeboat\"\n\
             password_file = {password_file:?}\nca = {other_ca:?}\n"
        ),
    );
    assert!(
        e.contains("certificate") && e.contains("catalog.ca"),
        "the error must name the certificate and the setting to fix: {e}"
    );

    let wrong = dir.path().join("wrong.password");
    write_private(&wrong, "wrong-pw-1234");
    let e = refused_start(
        &dir,
        "wrong-password",
        &format!(
            "[catalog]\nurl = \"postgres://lbcatalog@{ip}:{port}/lifeboat\"\n\
             password_file = {wrong:?}\nca = {ca_file:?}\n"
        ),
    );
    assert!(
        e.contains("password") && e.contains("catalog.password_file"),
        "the error must say the password was refused and where it comes from: {e}"
    );

    // Neither attempt wrote anything to the server.
    assert_eq!(
        catalog_pg.query_one(
            "lifeboat",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}

/// The config at `path` with its `[catalog]` table (the harness's SQLite one) replaced.
fn with_catalog_table(path: &std::path::Path, table: &str) -> String {
    let text = std::fs::read_to_string(path).expect("read coordinator.toml");
    let start = text.find("[catalog]\n").expect("a [catalog] table");
    let end = start + text[start..].find("\n\n").expect("end of [catalog]");
    format!("{}{}{}", &text[..start], table.trim_end(), &text[end..])
}

#[test]
fn a_sqlite_catalog_is_migrated_into_postgres_and_the_coordinator_carries_on() {
    let mut s = Sandbox::builder("catalog-migrate")
        .target(SandboxTarget::new("app"))
        .build();
    load_bulk(&s.pg, "app", "orders", 1500);
    let first = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    s.pg.psql("app", "DELETE FROM bulk_orders WHERE id % 3 = 0;");
    let second = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    s.restore(&second, "app_second", &[]).assert_ok();
    let before: Vec<String> = s
        .backup_list("app")
        .iter()
        .filter_map(|b| find_str(b, "backup_id"))
        .collect();
    assert_eq!(before.len(), 2, "{before:?}");
    s.coordinator.stop();

    let (catalog_pg, table) = catalog_with_files(&s.dir.sub("catalog-secrets"));
    let pg_config = s.dir.path().join("coordinator-pg.toml");
    std::fs::write(
        &pg_config,
        with_catalog_table(s.coordinator.config_path(), &table),
    )
    .expect("write config");
    let from = format!("sqlite://{}", s.coordinator.catalog_path().display());
    let migrate = || {
        Command::new(lifeboat_e2e::bin("lifeboat-coordinator"))
            .arg("--config")
            .arg(&pg_config)
            .args(["catalog", "migrate", "--from", &from])
            .output()
            .expect("run catalog migrate")
    };
    let out = migrate();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = |sql: &str| catalog_pg.query_one("lifeboat", sql);
    assert_eq!(q("SELECT count(*) FROM backups"), "2", "{stdout}");
    let jobs = q("SELECT count(*) FROM jobs");
    let audit = q("SELECT count(*) FROM audit_log");
    let reported: std::collections::BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [table, rows] => Some((table, rows)),
            _ => None,
        })
        .collect();
    for (table, rows) in [
        ("backups", "2"),
        ("jobs", jobs.as_str()),
        ("audit_log", &audit),
    ] {
        assert_eq!(
            reported.get(table),
            Some(&rows),
            "the report must give {table}'s count: {stdout}"
        );
    }
    assert_ne!(audit, "0");

    // A second run finds rows and writes nothing.
    let again = migrate();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "migrated twice: {stderr}");
    assert!(stderr.contains("already holds rows"), "{stderr}");
    assert_eq!(q("SELECT count(*) FROM jobs"), jobs);

    // The coordinator on the migrated catalog: the same backups, a restore of the older one
    // from it, and new audit entries numbered after the copied ones.
    let max_audit: i64 = q("SELECT max(id) FROM audit_log").parse().expect("id");
    std::fs::copy(&pg_config, s.coordinator.config_path()).expect("switch config");
    s.coordinator.restart();
    let after: Vec<String> = s
        .backup_list("app")
        .iter()
        .filter_map(|b| find_str(b, "backup_id"))
        .collect();
    assert_eq!(after, before);
    s.restore(&first, "app_first", &[]).assert_ok();
    s.restore(&second, "app_second_again", &[]).assert_ok();
    assert_same_data(&s.pg, "app_second", "app_second_again", s.dir.path());
    assert_eq!(
        s.pg.query_one("app_first", "SELECT count(*) FROM bulk_orders"),
        "1500",
        "the older backup holds every row"
    );
    let newest: i64 = q("SELECT max(id) FROM audit_log").parse().expect("id");
    assert!(
        newest > max_audit,
        "audit ids restarted: {newest} <= {max_audit}"
    );
    s.shutdown();
}
