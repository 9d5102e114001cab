//! The audit trail and the logs through the real binaries: every operator action, allowed or
//! not, is one `target: "audit"` line in the coordinator's JSON log and one entry of
//! `lifeboat audit list` (who, what, on what, how it ended); the agent's JSON log carries a
//! job's id, target and backup id on every line of the job.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};
use serde_json::Value;

/// The JSON lines of a log (other lines, e.g. a panic hook's, are skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn audit_lines<'a>(lines: &'a [Value], action: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "audit" && l["action"] == action)
        .collect()
}

/// `audit list [extra]` as `ctl`. Reading the trail is not itself an action in it.
fn audit(ctl: &lifeboat_e2e::Ctl, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "list"];
    args.extend_from_slice(extra);
    let entries = ctl.json_list(&args, "entries").expect("audit list");
    for e in &entries {
        assert!(e["at_ms"].as_i64().is_some_and(|t| t > 0), "{e}");
    }
    entries
}

#[test]
fn operator_actions_are_audited_once_and_jobs_logged_with_their_ids() {
    let s = Sandbox::builder("audit")
        .target(SandboxTarget::new("app"))
        .operator("olga", "operator")
        .operator("vera", "viewer")
        .log_format("json")
        .build();
    s.pg.psql(
        "app",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);",
    );
    let olga = s.ctl_as("olga");
    let vera = s.ctl_as("vera");

    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    olga.run_json(&["backup", "pin", &id, "--reason", "quarterly audit"])
        .assert_ok();
    // A viewer may not start a backup, nor read the audit trail.
    let denied = vera.run_json(&["backup", "run", &s.target("app")]);
    assert_ne!(denied.code, 0, "{denied}");
    let denied = vera.run_json(&["audit", "list"]);
    assert_ne!(denied.code, 0, "{denied}");
    assert!(denied.stderr.contains("needs role operator"), "{denied}");
    // A refused request (a backup that does not exist) is audited as refused.
    let refused = olga.run_json(&["restore", "20200101T000000Z-000000", "--database", "x"]);
    assert_ne!(refused.code, 0, "{refused}");

    let all = audit(&s.admin, &[]);
    let entry = |actor: &str, action: &str| -> Vec<&Value> {
        all.iter()
            .filter(|e| e["actor"] == actor && e["action"] == action)
            .collect()
    };
    let started = entry("operator/admin", "start_backup");
    assert_eq!(started.len(), 1, "{all:?}");
    assert_eq!(started[0]["outcome"], "ok");
    assert_eq!(started[0]["role"], "admin");
    assert_eq!(started[0]["object"], s.target("app").as_str());
    let pinned = entry("operator/olga", "pin_backup");
    assert_eq!(pinned.len(), 1, "{all:?}");
    assert_eq!(pinned[0]["object"], id.as_str());
    let vera_denied = entry("operator/vera", "start_backup");
    assert_eq!(vera_denied.len(), 1, "{all:?}");
    assert_eq!(vera_denied[0]["outcome"], "denied");
    assert!(
        vera_denied[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("needs role operator")),
        "{all:?}"
    );
    assert_eq!(entry("operator/vera", "list_audit")[0]["outcome"], "denied");
    let olga_refused = entry("operator/olga", "restore");
    assert_eq!(olga_refused.len(), 1, "{all:?}");
    assert_eq!(olga_refused[0]["outcome"], "refused");
    assert!(
        olga_refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not in the catalog")),
        "{all:?}"
    );
    // Newest first.
    let times: Vec<i64> = all.iter().filter_map(|e| e["at_ms"].as_i64()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Filters: by operator (a bare name means an operator), action, object, time.
    let by_olga = audit(&olga, &["--actor", "olga"]);
    assert!(!by_olga.is_empty());
    assert!(
        by_olga.iter().all(|e| e["actor"] == "operator/olga"),
        "{by_olga:?}"
    );
    let pins = audit(&s.admin, &["--action", "pin_backup"]);
    assert_eq!(pins.len(), 1, "{pins:?}");
    let on_backup = audit(&s.admin, &["--object", &id]);
    assert!(
        on_backup
            .iter()
            .all(|e| e["object"].as_str().is_some_and(|o| o.contains(&id))),
        "{on_backup:?}"
    );
    assert!(!on_backup.is_empty());
    assert_eq!(audit(&s.admin, &["--since", "1h"]).len(), all.len());
    let bad = s.admin.run(&["audit", "list", "--action", "Drop Table"]);
    assert_eq!(bad.code, 2, "{bad}");

    // One audit line per action in the coordinator's log, with who, what, on what, outcome.
    let clog = json_lines(&s.coordinator.logs());
    assert!(!clog.is_empty(), "the coordinator's log is not JSON");
    let lines = audit_lines(&clog, "start_backup");
    assert_eq!(lines.len(), 2, "one per start_backup call: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["actor"] == "operator/admin" && l["outcome"] == "ok")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["actor"] == "operator/vera" && l["outcome"] == "denied")
    );
    assert_eq!(audit_lines(&clog, "pin_backup").len(), 1);

    // The agent's log: every line of the backup job carries the job's ids.
    let alog = json_lines(&s.agent.logs());
    let job_id = find_str(&rec, "job_id").expect("job_id");
    let job_lines: Vec<&Value> = alog
        .iter()
        .filter(|l| l["span"]["job_id"] == job_id.as_str())
        .collect();
    assert!(job_lines.len() >= 2, "{alog:?}");
    for l in &job_lines {
        assert_eq!(l["span"]["target"], "app", "{l}");
        assert_eq!(l["span"]["backup_id"], id.as_str(), "{l}");
        assert_eq!(l["span"]["kind"], "backup", "{l}");
    }
    assert!(
        job_lines.iter().any(|l| l["message"] == "job succeeded"),
        "{job_lines:?}"
    );
    s.shutdown();
}
