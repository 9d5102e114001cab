//! Database connections to another machine verify the server by default (16): with no
//! `sslmode` / `ssl-mode` in the target URL, a host that is not this machine gets
//! `verify-full` / `VERIFY_IDENTITY` against the system CA bundle, so nobody in the path can
//! downgrade the connection to plaintext or impersonate the server. Each case runs the real
//! agent against a real server listening on one of this machine's non-loopback addresses.

use lifeboat_common::pki::{Ca, LeafSpec};
use lifeboat_e2e::compare::assert_same_data;
use lifeboat_e2e::pg::non_loopback_ip;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

/// Server certificate for `ip`, from a CA that is in no system bundle; returns
/// (CA PEM, certificate PEM, key PEM).
fn private_ca_cert(ip: &str) -> (String, String, String) {
    let ca = Ca::generate("db-tls-test").expect("generate CA");
    let leaf = ca
        .issue(&LeafSpec::coordinator("dbserver", vec![ip.to_owned()]))
        .expect("issue server certificate");
    (
        ca.cert_pem.clone(),
        leaf.cert_pem.clone(),
        leaf.key_pem.expose().to_owned(),
    )
}

#[test]
fn postgres_remote_hosts_are_verified_unless_the_url_says_otherwise() {
    let ip = non_loopback_ip().to_string();
    let dir = TestDir::new("db-tls-pg");
    let ca_path = dir.path().join("db-ca.pem");
    let (ca_pem, cert, key) = private_ca_cert(&ip);
    std::fs::write(&ca_path, &ca_pem).expect("write CA");
    let own_ca = format!("sslrootcert={}", ca_path.display());
    let mut s = Sandbox::builder("db-tls-pg")
        .dir(dir)
        // No sslmode: the default for a remote host.
        .target(SandboxTarget::new("remote").database("app").host(&ip))
        .target(
            SandboxTarget::new("ownca")
                .database("app")
                .host(&ip)
                .query(&own_ca),
        )
        .target(
            SandboxTarget::new("prefer")
                .database("app")
                .host(&ip)
                .query("sslmode=prefer"),
        )
        .build();
    s.pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    );
    s.pg.serve_on(ip.parse().expect("ip"), Some((&cert, &key)));

    // TLS on, certificate from a CA the system does not trust: the default refuses it and
    // says how to name the CA or opt out. (Before: sslmode=prefer connected unverified.)
    let out = s.backup_run("remote");
    let (_, error) = s.assert_backup_failed("remote", &out);
    assert!(
        error.contains("certificate") && error.contains("sslrootcert="),
        "the refusal must name the certificate and the fix: {error}"
    );

    // Naming the CA verifies (verify-full cannot fall back to plaintext) and works; the data
    // survives the trip.
    let record = s.backup_ok("ownca");
    let id = find_str(&record, "backup_id").expect("backup id");
    let out = s.restore(&id, "app_restored", &[]);
    out.assert_ok();
    assert_same_data(&s.pg, "app", "app_restored", s.dir.path());

    // The server stops offering TLS: the default refuses to go plaintext, with the opt-out
    // named; a URL that asks for prefer gets what it asked for.
    s.pg.psql(
        "postgres",
        "ALTER SYSTEM SET ssl = off; SELECT pg_reload_conf();",
    );
    lifeboat_e2e::poll::eventually("ssl off", std::time::Duration::from_secs(30), || {
        match s.pg.query_one("postgres", "SHOW ssl").as_str() {
            "off" => Ok(()),
            v => anyhow::bail!("ssl is {v}"),
        }
    });
    let out = s.backup_run("remote");
    let (_, error) = s.assert_backup_failed("remote", &out);
    assert!(
        error.contains("offers no TLS") && error.contains("sslmode=prefer"),
        "the refusal must say the server has no TLS and how to allow it: {error}"
    );
    let out = s.backup_run("ownca");
    s.assert_backup_failed("ownca", &out);
    s.backup_ok("prefer");
    s.shutdown();
}

#[test]
fn mariadb_remote_hosts_are_verified_unless_the_url_says_otherwise() {
    let ip = non_loopback_ip();
    let mut s = Sandbox::builder("db-tls-mariadb")
        .mariadb_target(
            SandboxTarget::new("remote")
                .database("shop")
                .host(&ip.to_string()),
        )
        .mariadb_target(
            SandboxTarget::new("preferred")
                .database("shop")
                .host(&ip.to_string())
                .query("ssl-mode=preferred"),
        )
        .build();
    let my = s.mariadb.as_mut().expect("mariadb");
    my.serve_on(ip);
    my.sql(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(40));
         INSERT INTO t VALUES (1, 'one'), (2, 'two');",
    );
    // The server offers no TLS: the default refuses plaintext to another host and names the
    // opt-out. (Before: PREFERRED went plaintext silently.)
    let out = s.backup_run("remote");
    let (_, error) = s.assert_backup_failed("remote", &out);
    assert!(
        error.contains("TLS") && error.contains("ssl-mode=preferred"),
        "the refusal must say TLS is missing and how to allow plaintext: {error}"
    );
    // Asking for preferred explicitly is honoured, and the backup holds the rows.
    let record = s.backup_ok("preferred");
    let id = find_str(&record, "backup_id").expect("backup id");
    s.restore(&id, "shop_copy", &[]).assert_ok();
    let my = s.mariadb.as_ref().expect("mariadb");
    assert_eq!(
        my.dump_sql("shop_copy"),
        my.dump_sql("shop"),
        "restored data differs"
    );
    s.shutdown();
}
