//! X33 (revoked) and X36: certificates change while lifeboat runs. `lifeboat pki revoke`
//! writes the CA's revocation list; the coordinator, configured with `tls.crl`, picks up a new
//! list within seconds without a restart and refuses the revoked certificate on its next
//! connection, while other certificates and the agent keep working. A renewed coordinator
//! certificate copied over the old files is served to new connections without a restart, and
//! the agent's open session survives it. A session opened with a certificate revoked later is
//! ended when the new list is loaded, and the agent comes back with its renewed certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure};
use lifeboat_e2e::agent::agent_connected;
use lifeboat_e2e::poll::eventually_default;
use lifeboat_e2e::{Sandbox, SandboxTarget};

fn lifeboat(args: &[&str]) -> std::process::Output {
    Command::new(lifeboat_e2e::bin("lifeboat"))
        .args(args)
        .output()
        .expect("run lifeboat")
}

/// The serial number of the certificate the coordinator serves to a new connection.
fn served_serial(addr: &str, pki: &Path, operator: &str) -> anyhow::Result<String> {
    let script = format!(
        "openssl s_client -connect {addr} -CAfile {ca} -cert {cert} -key {key} </dev/null 2>/dev/null \
         | openssl x509 -noout -serial",
        ca = pki.join("ca.pem").display(),
        cert = pki.join(format!("{operator}.pem")).display(),
        key = pki.join(format!("{operator}.key")).display(),
    );
    let out = Command::new("bash").args(["-c", &script]).output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        text.starts_with("serial="),
        "no server certificate: {text:?}"
    );
    Ok(text)
}

fn file_serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The value of `key = "..."` in the coordinator config's [tls] table.
fn tls_path(config: &str, key: &str) -> PathBuf {
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in {config}"));
    PathBuf::from(line.split('"').nth(1).expect("quoted path"))
}

#[test]
fn revoked_certificates_are_refused_and_renewed_ones_served_without_restart() {
    let mut s = Sandbox::builder("x36")
        .target(SandboxTarget::new("app"))
        .operator("ops2", "viewer")
        .operator("victim", "viewer")
        .build();
    let pki = s.pki.dir().to_owned();
    let pki_arg = pki.to_str().expect("utf-8");

    // A revocation list exists before the coordinator is configured with it (an unrelated
    // certificate on it).
    s.pki.operator("retired");
    let out = lifeboat(&["pki", "revoke", "--dir", pki_arg, "--name", "retired"]);
    assert!(out.status.success(), "{out:?}");
    let crl = pki.join("crl.pem");
    assert!(crl.is_file());
    let config_path = s.coordinator.config_path().to_owned();
    let config = std::fs::read_to_string(&config_path).expect("config");
    let key_line = config
        .lines()
        .find(|l| l.trim_start().starts_with("key ="))
        .expect("tls key line")
        .to_owned();
    let config = config.replacen(
        &key_line,
        &format!("{key_line}\ncrl = {:?}", crl.display().to_string()),
        1,
    );
    std::fs::write(&config_path, config.as_bytes()).expect("write config");
    s.coordinator.stop();
    s.coordinator.restart();
    eventually_default("agent reconnected", || agent_connected(&s.admin, "agent-1"));

    let victim = s.ctl_as("victim");
    let ops2 = s.ctl_as("ops2");
    victim.run(&["whoami"]).assert_ok();
    ops2.run(&["whoami"]).assert_ok();
    // The retired certificate was refused from the start.
    s.ctl_as("retired").run(&["whoami"]).assert_code(1);

    // Revoke a certificate in use: its next connection is refused within seconds, without a
    // restart; the others keep working.
    let out = lifeboat(&["pki", "revoke", "--dir", pki_arg, "--name", "victim"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("tls.crl"), "{said}");
    eventually_default("the revoked certificate refused", || {
        let out = victim.run(&["whoami"]);
        if out.success() {
            bail!("still accepted");
        }
        Ok(())
    });
    ops2.run(&["whoami"]).assert_ok();
    agent_connected(&s.admin, "agent-1").expect("agent still connected");
    let logs = s.coordinator.logs();
    assert!(
        logs.contains("operator/victim") && logs.to_lowercase().contains("revoked"),
        "the refusal must be logged with the identity: {logs}"
    );
    // Revoking again changes nothing and says so.
    let out = lifeboat(&["pki", "revoke", "--dir", pki_arg, "--name", "victim"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already revoked"));
    // An unknown name is a clear error.
    let out = lifeboat(&["pki", "revoke", "--dir", pki_arg, "--name", "nobody"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody.pem"),
        "{out:?}"
    );

    // Renew the coordinator's certificate in place (X36).
    let config = std::fs::read_to_string(&config_path).expect("config");
    let (cert, key) = (tls_path(&config, "cert"), tls_path(&config, "key"));
    let addr = s.coordinator.grpc_addr().to_owned();
    let before = served_serial(&addr, &pki, "ops2").expect("served serial");
    assert_eq!(before, file_serial(&cert));
    let connects = |logs: &str| logs.matches("agent connected").count();
    let sessions_before = connects(&s.coordinator.logs());
    let renewed = s.pki.coordinator("coordinator-renewed");
    let new_serial = file_serial(&renewed.cert);
    assert_ne!(new_serial, before);
    for (from, to) in [(&renewed.key, &key), (&renewed.cert, &cert)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).expect("copy");
        std::fs::rename(&tmp, to).expect("rename");
    }
    eventually_default("the renewed certificate served", || {
        let now = served_serial(&addr, &pki, "ops2")?;
        ensure!(now == new_serial, "still {now}");
        Ok(())
    });
    ops2.run(&["whoami"]).assert_ok();
    agent_connected(&s.admin, "agent-1").expect("agent connected");
    assert_eq!(
        connects(&s.coordinator.logs()),
        sessions_before,
        "the agent's session was interrupted by the renewal"
    );

    // Renew the agent's certificate in place and revoke the old one: the agent's next
    // connection reads the files again and gets in with the new certificate.
    let agent_config = std::fs::read_to_string(s.agent.config_path()).expect("agent config");
    let (agent_cert, agent_key) = (
        tls_path(&agent_config, "cert"),
        tls_path(&agent_config, "key"),
    );
    let old = pki.join("agent-1-old.pem");
    std::fs::copy(&agent_cert, &old).expect("keep the old certificate");
    let renewed_dir = pki.join("renewed");
    let out = lifeboat(&[
        "pki",
        "issue",
        "--dir",
        pki_arg,
        "--kind",
        "agent",
        "--name",
        "agent-1",
        "--out-dir",
        renewed_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    for (from, to) in [
        (renewed_dir.join("agent-1.key"), &agent_key),
        (renewed_dir.join("agent-1.pem"), &agent_cert),
    ] {
        let tmp = to.with_extension("new");
        std::fs::copy(&from, &tmp).expect("copy");
        std::fs::rename(&tmp, to).expect("rename");
    }
    let out = lifeboat(&[
        "pki",
        "revoke",
        "--dir",
        pki_arg,
        "--name",
        "agent-1",
        "--cert",
        old.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    // The session opened with the old certificate is ended once the new CRL is loaded (no
    // restart); the agent reconnects with the files it now has.
    let sessions_before = connects(&s.coordinator.logs());
    eventually_default("the revoked session ended and the agent back", || {
        let logs = s.coordinator.logs();
        ensure!(
            logs.contains("ending agent session: its certificate has been revoked"),
            "session not ended yet"
        );
        ensure!(
            connects(&logs) > sessions_before,
            "agent not reconnected yet"
        );
        agent_connected(&s.admin, "agent-1")
    });
    s.backup_ok("app");
    s.shutdown();
}
