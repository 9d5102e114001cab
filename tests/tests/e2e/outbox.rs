//! Item 17 (review L2): a backup that completes while the coordinator is unreachable, on an
//! agent that is then killed (SIGKILL) before any coordinator could acknowledge the result,
//! still reaches the catalog: the agent keeps the result on disk and sends it after it starts
//! again. The backup is complete and restorable (restored and compared with the source).

use std::time::Duration;

use anyhow::bail;
use lifeboat_e2e::assert_same_data;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::stall::stalling_sandbox;

#[test]
fn a_completed_unacknowledged_backup_survives_an_agent_restart() {
    let (mut s, bin) = stalling_sandbox("outbox");
    std::fs::write(bin.marker("stall"), b"").expect("arm the stall");
    let started = s.admin.json(&["backup", "run", &s.target("app")]);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    eventually("pg_dump to stall", Duration::from_secs(60), || {
        if bin.marker("stalled").exists() {
            return Ok(());
        }
        bail!("not yet: {}", s.job(&job_id));
    });

    // The coordinator goes away; the backup finishes meanwhile.
    assert!(s.coordinator.stop().success());
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");
    eventually(
        "the backup to finish on the agent",
        Duration::from_secs(120),
        || {
            if s.agent.logs().contains("job succeeded") {
                return Ok(());
            }
            bail!("not yet")
        },
    );
    // Killed before any acknowledgement could arrive.
    assert!(!s.agent.kill().success());

    s.coordinator.restart();
    let admin = s.admin.clone();
    s.agent.restart(&admin);
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(
        find_str(&job, "state").as_deref(),
        Some("succeeded"),
        "{job}"
    );
    let listed = s.backup_list("app");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = find_str(&listed[0], "backup_id").expect("backup_id");
    s.restore(&id, "outbox_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "outbox_copy", s.dir.path());
    eventually(
        "the acknowledged results to be removed",
        Duration::from_secs(30),
        || {
            let left: Vec<_> = std::fs::read_dir(s.agent.state_dir().join("outbox"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if left.is_empty() {
                return Ok(());
            }
            bail!("outbox still holds {left:?}")
        },
    );
    s.shutdown();
}
