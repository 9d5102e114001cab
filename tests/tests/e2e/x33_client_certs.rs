//! X33/X35: client certificates the coordinator must refuse — expired, from another CA, an
//! operator not in its config, an agent certificate on the Control API. Each call fails (exit
//! 1); the refusal is logged with the identity the certificate presented; a good certificate
//! keeps working.

use anyhow::bail;
use lifeboat_e2e::poll::eventually_default;
use lifeboat_e2e::{Coordinator, Ctl, Pki, TestDir};

#[test]
fn bad_client_certificates_are_refused_and_logged() {
    let dir = TestDir::new("x33");
    let pki = Pki::init(&dir.path().join("pki"));
    let mut coordinator = Coordinator::builder(&dir.sub("coordinator"), &pki)
        .operator("admin", "admin")
        .operator("expired-op", "admin")
        .operator("foreign-op", "admin")
        .start();
    let admin = Ctl::new(&coordinator.url(), pki.ca(), pki.operator("admin"));
    let who = admin.json(&["whoami"]);
    assert_eq!(who["name"], "admin", "{who}");

    let cases = [
        (
            "expired",
            pki.expired_operator("expired-op", "expired-op"),
            "expired-op",
        ),
        (
            "foreign CA",
            pki.foreign_operator("foreign-op", "foreign-op"),
            "foreign-op",
        ),
        ("not configured", pki.operator("stranger"), "stranger"),
        (
            "agent on the Control API",
            pki.agent("sneaky-agent"),
            "sneaky-agent",
        ),
    ];
    for (what, cert, identity) in &cases {
        let out = admin.with_cert(cert.clone()).run_json(&["whoami"]);
        assert_eq!(out.code, 1, "{what}: the call must be refused: {out}");
        assert!(
            !out.stdout.contains("\"role\""),
            "{what}: refused but answered: {out}"
        );
        eventually_default(&format!("the refusal of {identity} in the log"), || {
            let logs = coordinator.logs();
            if logs.contains(identity) {
                Ok(())
            } else {
                bail!("{identity} not in the coordinator's log yet")
            }
        });
    }

    // The good certificate still works after all that.
    assert_eq!(admin.json(&["whoami"])["role"], "admin");
    assert!(
        coordinator.stop().success(),
        "coordinator exits 0 on SIGTERM"
    );
}
