//! deploy/prometheus: the alert rules load (`promtool check rules`) and behave as their unit
//! tests say (`promtool test rules`), and the Grafana dashboard is valid JSON whose queries
//! use only lifeboat metrics (that they exist in the coordinator's exposition is checked by
//! coordinator/tests/monitoring/health.rs).

use std::path::PathBuf;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("deploy")
}

fn promtool(args: &[&str]) -> (bool, String) {
    lifeboat_e2e::promtool::run(args, &deploy().join("prometheus"), "")
}

#[test]
fn alert_rules_load_and_pass_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "lifeboat-rules.yml"]);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "lifeboat-rules.test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn rule_tests_catch_a_broken_rule() {
    // The unit tests must be able to fail: the same tests against rules whose RPO threshold
    // is wrong.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = std::fs::read_to_string(deploy().join("prometheus/lifeboat-rules.yml"))
        .expect("read rules");
    let broken = rules.replace(
        "lifeboat_recovery_point_age_seconds > lifeboat_rpo_seconds\n",
        "lifeboat_recovery_point_age_seconds > 2 * lifeboat_rpo_seconds\n",
    );
    assert_ne!(
        rules, broken,
        "the RPO rule's expression changed; update this test"
    );
    std::fs::write(dir.path().join("lifeboat-rules.yml"), broken).expect("write rules");
    std::fs::copy(
        deploy().join("prometheus/lifeboat-rules.test.yml"),
        dir.path().join("lifeboat-rules.test.yml"),
    )
    .expect("copy tests");
    let (ok, out) = lifeboat_e2e::promtool::run(
        &["test", "rules", "lifeboat-rules.test.yml"],
        dir.path(),
        "",
    );
    assert!(!ok, "a broken RPO rule passed its tests:\n{out}");
}

#[test]
fn dashboard_is_valid_json_with_lifeboat_queries() {
    let text = std::fs::read_to_string(deploy().join("grafana/lifeboat.json")).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    assert_eq!(v["uid"], "lifeboat-overview");
    let panels = v["panels"].as_array().expect("panels");
    let mut queries = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(expr.contains("lifeboat_"), "{expr}");
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}
