use super::*;
use crate::{health::Status, model::Progress};

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
    assert!(text.contains(
        "lifeboat_repository_janitor_errors_total{agent=\"prod-1\",repository=\"s3\"} 1"
    ));
    // The agent restarted: its counter began again at 1, and it has had no successful
    // janitor pass yet; the last one it reported is still the newest.
    m.set_repository_stats(
        "prod-1",
        &[RepositoryStats {
            janitor_last_success_ms: None,
            ..stats(1, 0)
        }],
    );
    let text = m.render().expect("render");
    assert!(text.contains(
        "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"s3\"} 1"
    ));
    assert!(
        text.contains(
            "lifeboat_repository_janitor_last_success_timestamp_seconds{agent=\"prod-1\",repository=\"s3\"} 1700000000"
        ),
        "{text}"
    );
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

fn target_health(env: &str, name: &str, status: Status) -> crate::health::TargetHealth {
    use crate::{catalog::health::BackupFacts, model::VerifyStatus, objectives::Objective};
    crate::health::TargetHealth {
        copies: vec![crate::health::copies::CopyHealth {
            repository: "offsite".into(),
            newest: None,
            behind: false,
            last_failure: None,
        }],
        target: format!("{env}/{name}"),
        environment: env.into(),
        name: name.into(),
        agent: "prod-1".into(),
        status,
        rpo_status: status,
        reasons: vec![],
        objective: Objective {
            rpo: std::time::Duration::from_secs(3600),
            rto: std::time::Duration::from_secs(900),
        },
        first_seen_ms: 0,
        last_backup: Some(BackupFacts {
            backup_id: "b".into(),
            raw_size: 1000,
            stored_size: 300,
            started_at_ms: 1_700_000_000_000,
            finished_at_ms: 1_700_000_060_500,
            recorded_at_ms: 1_700_000_061_000,
            verify_status: VerifyStatus::Unverified,
            verified_at_ms: None,
        }),
        recovery_point_age_ms: Some(120_000),
        last_failure: None,
        failing: false,
        last_verify: None,
        last_restore: None,
        restore_failing: None,
        previous_stored_sizes: vec![],
        drill: Default::default(),
    }
}

fn agent_health(name: &str, state: AgentState) -> crate::health::AgentHealth {
    crate::health::AgentHealth {
        name: name.into(),
        environment: "prod".into(),
        version: "1".into(),
        state,
        status: Status::Ok,
        reasons: vec![],
        last_seen_ms: 1_700_000_100_000,
        clock_skew_ms: -250,
        clock_skew_status: Status::Ok,
        offline_since_ms: None,
    }
}

#[test]
fn fleet_series_follow_each_scrapes_report() {
    let m = Metrics::new().expect("metrics");
    let alerts = AlertsConfig::default();
    let report = Report {
        targets: vec![
            target_health("prod", "orders", Status::Warning),
            target_health("prod", "users", Status::Ok),
        ],
        agents: vec![
            agent_health("prod-1", AgentState::Connected),
            agent_health("prod-2", AgentState::Offline),
        ],
    };
    m.job_finished(&job(JobKind::Backup, JobState::Succeeded));
    let text = m.render_with(&report, &[], 1, &alerts).expect("render");
    for needle in [
        "# TYPE lifeboat_backups_total counter",
        "lifeboat_backups_total{environment=\"prod\",outcome=\"succeeded\",target=\"orders\"} 1",
        "lifeboat_backups_total{environment=\"prod\",outcome=\"succeeded\",target=\"users\"} 0",
        "# TYPE lifeboat_rpo_seconds gauge",
        "lifeboat_rpo_seconds{environment=\"prod\",target=\"orders\"} 3600",
        "lifeboat_rto_seconds{environment=\"prod\",target=\"users\"} 900",
        "lifeboat_target_status{environment=\"prod\",status=\"warning\",target=\"orders\"} 1",
        "lifeboat_target_status{environment=\"prod\",status=\"ok\",target=\"orders\"} 0",
        "lifeboat_target_status{environment=\"prod\",status=\"ok\",target=\"users\"} 1",
        "lifeboat_backup_last_success_timestamp_seconds{environment=\"prod\",target=\"orders\"} 1700000061",
        "lifeboat_backup_last_duration_seconds{environment=\"prod\",target=\"orders\"} 60.5",
        "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"stored\",target=\"users\"} 300",
        "lifeboat_recovery_point_age_seconds{environment=\"prod\",target=\"orders\"} 120",
        "lifeboat_copy_last_success_timestamp_seconds{environment=\"prod\",repository=\"offsite\",target=\"orders\"} 0",
        "lifeboat_agent_connected{agent=\"prod-1\",environment=\"prod\"} 1",
        "lifeboat_agent_connected{agent=\"prod-2\",environment=\"prod\"} 0",
        "lifeboat_agent_last_seen_timestamp_seconds{agent=\"prod-2\",environment=\"prod\"} 1700000100",
        "lifeboat_agent_clock_skew_seconds{agent=\"prod-1\",environment=\"prod\"} -0.25",
        "lifeboat_agents_connected 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Families without a sample are left out, and none is written twice.
    assert!(!text.contains("lifeboat_drills_total"), "{text}");
    assert!(!text.contains("lifeboat_verify_last_success"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert_eq!(text.matches(&format!("{line}\n")).count(), 1, "{line}");
    }

    // The next scrape's report no longer has "users": its gauges go; counted series stay.
    let report = Report {
        targets: vec![target_health("prod", "orders", Status::Ok)],
        agents: vec![],
    };
    let text = m.render_with(&report, &[], 0, &alerts).expect("render");
    assert!(!text.contains("target=\"users\""), "{text}");
    assert!(!text.contains("lifeboat_agent_connected"), "{text}");
    assert!(text.contains(
        "lifeboat_backups_total{environment=\"prod\",outcome=\"succeeded\",target=\"orders\"} 1"
    ));
    // Without a report, the counters alone.
    let text = m.render().expect("render");
    assert!(text.contains(
        "lifeboat_backups_total{environment=\"prod\",outcome=\"failed\",target=\"orders\"} 0"
    ));
    assert!(!text.contains("lifeboat_rpo_seconds"), "{text}");
}

/// The fleet's text is what the prometheus crate's own encoder writes for the same samples,
/// escapes included.
#[test]
fn fleet_text_matches_the_prometheus_encoder() {
    let help = "A help text with a backslash \\ and a\nnewline.";
    let labels = ["agent", "environment"];
    let samples = [
        (["a\"quoted\"", "back\\slash"], 1.5),
        (["new\nline", "prod"], -0.25),
        (["plain", "prod"], 1_700_000_061.0),
    ];
    let registry = Registry::new();
    let g = GaugeVec::new(Opts::new("lifeboat_test_gauge", help), &labels).expect("gauge");
    registry.register(Box::new(g.clone())).expect("register");
    for (values, v) in samples {
        g.with_label_values(&values).set(v);
    }
    let mut expected = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut expected)
        .expect("encode");
    let mut ours = String::new();
    let mut f = fleet::Family::gauge(&mut ours, "lifeboat_test_gauge", help);
    for (values, v) in samples {
        f.sample(&[(labels[0], values[0]), (labels[1], values[1])], v);
    }
    assert_eq!(ours, String::from_utf8(expected).expect("utf-8"));
}
