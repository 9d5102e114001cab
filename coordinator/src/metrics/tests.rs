use super::*;
use crate::model::Progress;

fn job(kind: JobKind, state: JobState) -> Job {
    Job {
        decrypt: false,
        rotation: None,
        repository: String::new(),
        id: "20261127T233000Z-000001".into(),
        kind,
        state,
        target: "prod/orders".parse().expect("target"),
        agent: "prod-1".into(),
        backup_id: None,
        requested_by: "alice".into(),
        created_at_ms: 0,
        dispatched_at_ms: Some(0),
        started_at_ms: Some(1_000),
        finished_at_ms: Some(61_000),
        error: String::new(),
        progress: Progress::default(),
        detail: String::new(),
        restore: None,
        export: None,
        report: Default::default(),
    }
}

#[test]
fn job_counters_and_histogram() {
    let m = Metrics::new().expect("metrics");
    m.set_agents_connected(2);
    m.set_running(&[(JobKind::Backup, 3)]);
    m.job_finished(&job(JobKind::Backup, JobState::Succeeded));
    m.job_finished(&job(JobKind::Backup, JobState::Failed));
    m.job_finished(&job(JobKind::Restore, JobState::Running));
    let text = m.render().expect("render");
    for needle in [
        "lifeboat_agents_connected 2",
        "lifeboat_jobs_running{kind=\"backup\"} 3",
        "lifeboat_jobs_running{kind=\"verify\"} 0",
        "lifeboat_jobs_total{kind=\"backup\",outcome=\"succeeded\"} 1",
        "lifeboat_jobs_total{kind=\"restore\",outcome=\"failed\"} 0",
        "lifeboat_backups_total{environment=\"prod\",outcome=\"failed\",target=\"orders\"} 1",
        "lifeboat_job_duration_seconds_count{kind=\"backup\"} 2",
        "lifeboat_job_duration_seconds_bucket{kind=\"backup\",le=\"60\"} 2",
        "lifeboat_incidents_open{kind=\"rpo_breach\"} 0",
        "lifeboat_alert_evaluations_total{outcome=\"error\"} 0",
        "lifeboat_alert_delivery_passes_total{outcome=\"ok\"} 0",
        "lifeboat_build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn repository_counters_follow_agent_reports_and_restarts() {
    let m = Metrics::new().expect("metrics");
    let stats = |aborted, errors| RepositoryStats {
        name: "s3".into(),
        kind: "s3".into(),
        stale_uploads_aborted: aborted,
        janitor_errors: errors,
        janitor_last_success_ms: Some(1_700_000_000_000),
    };
    m.declare_repositories("prod-1", &["s3".to_owned()]);
    m.set_repository_stats("prod-1", &[stats(2, 0)]);
    m.set_repository_stats("prod-1", &[stats(5, 1)]);
    let text = m.render().expect("render");
    assert!(
        text.contains(
            "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"s3\"} 5"
        ),
        "{text}"
    );
    assert!(text.contains(
        "lifeboat_repository_janitor_last_success_timestamp_seconds{agent=\"prod-1\",repository=\"s3\"} 1700000000"
    ));
    // The agent restarted: its counter began again at 1.
    m.set_repository_stats("prod-1", &[stats(1, 0)]);
    let text = m.render().expect("render");
    assert!(text.contains(
        "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"s3\"} 1"
    ));
    assert_eq!(m.repository_stats().len(), 1);
}

#[test]
fn undeclared_repositories_are_dropped_and_counted() {
    let m = Metrics::new().expect("metrics");
    let stats = |name: &str| RepositoryStats {
        name: name.into(),
        kind: "fs".into(),
        stale_uploads_aborted: 1,
        janitor_errors: 0,
        janitor_last_success_ms: None,
    };
    // Before any Hello nothing is declared.
    m.set_repository_stats("prod-1", &[stats("local")]);
    m.declare_repositories("prod-1", &["local".to_owned()]);
    m.set_repository_stats(
        "prod-1",
        &[stats("local"), stats("made-up"), stats("other")],
    );
    let text = m.render().expect("render");
    assert!(
        text.contains("lifeboat_agent_reports_dropped_total{reason=\"undeclared_repository\"} 3"),
        "{text}"
    );
    assert!(!text.contains("made-up"), "{text}");
    assert_eq!(m.repository_stats().len(), 1);
    // A new Hello without the repository forgets it; a disconnected agent's series go.
    m.declare_repositories("prod-1", &[]);
    assert!(m.repository_stats().is_empty());
    m.declare_repositories("prod-1", &["local".to_owned()]);
    m.set_repository_stats("prod-1", &[stats("local")]);
    m.evict_repositories(&HashSet::new());
    assert!(m.repository_stats().is_empty());
    let text = m.render().expect("render");
    assert!(!text.contains("repository=\"local\""), "{text}");
}

#[test]
fn agent_update_times_are_a_histogram_per_kind() {
    let m = Metrics::new().expect("metrics");
    let before = m.render().expect("render");
    // Every kind is there from the start, empty.
    for kind in AGENT_UPDATES {
        let line = format!("lifeboat_agent_update_seconds_count{{kind=\"{kind}\"}} 0");
        assert!(before.contains(&line), "{line} missing:\n{before}");
    }
    m.agent_update_recorded("heartbeat", std::time::Duration::from_millis(3));
    m.agent_update_recorded("heartbeat", std::time::Duration::from_millis(700));
    let text = m.render().expect("render");
    for needle in [
        "lifeboat_agent_update_seconds_count{kind=\"heartbeat\"} 2",
        "lifeboat_agent_update_seconds_bucket{kind=\"heartbeat\",le=\"0.0025\"} 0",
        "lifeboat_agent_update_seconds_bucket{kind=\"heartbeat\",le=\"0.005\"} 1",
        "lifeboat_agent_update_seconds_bucket{kind=\"heartbeat\",le=\"1\"} 2",
        "lifeboat_agent_update_seconds_count{kind=\"progress\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
}
