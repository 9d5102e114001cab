//! The systemd units in deploy/systemd pass `systemd-analyze verify` and rate at most 2.0 on
//! `systemd-analyze security --offline=true` (tests/deploy/check-units.sh does the checking;
//! this test runs it and reads its verdict per unit).

use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

#[test]
fn units_verify_and_are_sandboxed() {
    let script = root().join("tests/deploy/check-units.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("2.0")
        .output()
        .expect("run check-units.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check-units.sh failed ({}):\n{stdout}{stderr}",
        out.status
    );
    // Both units were judged, each with an exposure at most 2.0.
    for unit in ["lifeboat-coordinator.service", "lifeboat-agent.service"] {
        let section = stdout
            .split("== ")
            .find(|s| s.starts_with(unit))
            .unwrap_or_else(|| panic!("{unit} was not checked:\n{stdout}"));
        assert!(section.contains("verify: ok"), "{section}");
        let exposure: f64 = section
            .lines()
            .find_map(|l| l.strip_prefix("exposure: "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure for {unit}:\n{section}"));
        assert!(exposure <= 2.0, "{unit}: exposure {exposure} > 2.0");
    }
}

#[test]
fn check_units_fails_above_the_limit() {
    // The script itself must be able to fail: nothing reaches an exposure of 0.1.
    let out = Command::new("bash")
        .arg(root().join("tests/deploy/check-units.sh"))
        .arg("0.1")
        .output()
        .expect("run check-units.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "passed with a 0.1 limit:\n{stdout}");
    assert!(stdout.contains("is above 0.1"), "{stdout}");
}
