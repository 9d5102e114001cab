use super::*;
use lifeboat_proto::domain::MAX_LONG_TEXT;

const ID: &str = "20261127T233000Z-7f3a9c";

fn record() -> pb::BackupRecord {
    pb::BackupRecord {
        backup_id: ID.into(),
        target: "prod/orders".into(),
        environment: "prod".into(),
        agent: "prod-1".into(),
        repository: "local".into(),
        engine: pb::Engine::Postgres.into(),
        provider: "postgres".into(),
        database: "orders".into(),
        raw_size: 10,
        stored_size: 5,
        raw_sha256: "0".repeat(64),
        stored_sha256: "f".repeat(64),
        started_at_ms: 1,
        finished_at_ms: 2,
        data_key: format!("prod/orders/{ID}/data.pgdump.zst"),
        manifest_key: format!("prod/orders/{ID}/manifest.json"),
        ..Default::default()
    }
}

fn result(r: pb::BackupRecord) -> Result<JobResult, Error> {
    pb::JobResult {
        job_id: ID.into(),
        state: pb::JobState::Succeeded.into(),
        result: Some(pb::job_result::Result::Backup(r)),
        ..Default::default()
    }
    .try_into()
}

#[test]
fn valid_backup_record() {
    let r = result(record()).expect("valid");
    let Some(JobOutput::Backup(b)) = r.payload else {
        panic!("no backup")
    };
    assert_eq!(b.target.as_str(), "prod/orders");
    assert_eq!(b.verify_status, VerifyStatus::Unverified);
}

#[test]
fn hostile_backup_records_refused() {
    type Edit = fn(&mut pb::BackupRecord);
    let cases: &[(&str, Edit)] = &[
        ("uppercase sha", |r| r.raw_sha256 = "A".repeat(64)),
        ("short sha", |r| r.stored_sha256 = "a".repeat(63)),
        ("zero size", |r| r.stored_size = 0),
        ("huge size", |r| r.raw_size = u64::MAX),
        ("dotdot key", |r| {
            r.data_key = "prod/../../etc/passwd".into()
        }),
        ("absolute key", |r| r.manifest_key = "/etc/passwd".into()),
        ("empty key", |r| r.data_key = String::new()),
        ("bad target", |r| r.target = "../orders".into()),
        ("env mismatch", |r| r.environment = "dev".into()),
        ("bad id", |r| r.backup_id = "x".repeat(5000)),
        ("unknown engine", |r| r.engine = 99),
        ("unspecified engine", |r| r.engine = 0),
        ("control chars", |r| r.server_version = "15\u{0}".into()),
        ("negative rows", |r| {
            r.row_counts = vec![pb::RowCount {
                bytes: None,
                schema: "s".into(),
                table: "t".into(),
                rows: -1,
            }]
        }),
    ];
    for (what, edit) in cases {
        let mut r = record();
        edit(&mut r);
        let e = result(r).expect_err(what);
        assert!(matches!(e, Error::InvalidArgument(_)), "{what}: {e:?}");
    }
}

#[test]
fn hostile_messages_refused() {
    use pb::agent_message::Msg;
    let cases = [
        pb::AgentMessage { msg: None },
        pb::AgentMessage {
            msg: Some(Msg::Accepted(pb::JobAccepted {
                job_id: String::new(),
            })),
        },
        pb::AgentMessage {
            msg: Some(Msg::Accepted(pb::JobAccepted {
                job_id: "9".repeat(100_000),
            })),
        },
        pb::AgentMessage {
            msg: Some(Msg::Result(pb::JobResult {
                job_id: ID.into(),
                state: 42,
                ..Default::default()
            })),
        },
        pb::AgentMessage {
            msg: Some(Msg::Result(pb::JobResult {
                job_id: ID.into(),
                state: pb::JobState::Running.into(),
                ..Default::default()
            })),
        },
        pb::AgentMessage {
            msg: Some(Msg::Hello(pb::Hello {
                agent: "a".into(),
                environment: "prod".into(),
                targets: vec![pb::TargetInfo {
                    encryption: None,
                    copy_to: Vec::new(),
                    name: "../etc".into(),
                    engine: 1,
                    provider: "postgres".into(),
                    repository: "local".into(),
                    database: "x".into(),
                }],
                ..Default::default()
            })),
        },
        pb::AgentMessage {
            msg: Some(Msg::Hello(pb::Hello {
                agent: "a".into(),
                environment: "Prod".into(),
                ..Default::default()
            })),
        },
        // A key id that is not its recipient's.
        pb::AgentMessage {
            msg: Some(Msg::Hello(pb::Hello {
                agent: "a".into(),
                environment: "prod".into(),
                targets: vec![pb::TargetInfo {
                    encryption: Some(pb::TargetEncryption {
                        recipients: vec![RECIPIENT.into()],
                        key_ids: vec!["0123456789abcdef".into()],
                        can_decrypt: true,
                    }),
                    copy_to: Vec::new(),
                    name: "orders".into(),
                    engine: 1,
                    provider: "postgres".into(),
                    repository: "local".into(),
                    database: "x".into(),
                }],
                ..Default::default()
            })),
        },
    ];
    for m in cases {
        let e = AgentMessage::try_from(m.clone()).expect_err("accepted");
        assert!(matches!(e, Error::InvalidArgument(_)), "{m:?}: {e:?}");
    }
}

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

#[test]
fn a_hello_with_matching_key_ids_is_taken() {
    use pb::agent_message::Msg;
    let m = pb::AgentMessage {
        msg: Some(Msg::Hello(pb::Hello {
            agent: "a".into(),
            environment: "prod".into(),
            targets: vec![pb::TargetInfo {
                encryption: Some(pb::TargetEncryption {
                    recipients: vec![RECIPIENT.into()],
                    key_ids: vec![lifeboat_common::keys::key_id(RECIPIENT)],
                    can_decrypt: false,
                }),
                copy_to: Vec::new(),
                name: "orders".into(),
                engine: 1,
                provider: "postgres".into(),
                repository: "local".into(),
                database: "x".into(),
            }],
            ..Default::default()
        })),
    };
    let AgentMessage::Hello(h) = AgentMessage::try_from(m).expect("taken") else {
        panic!("not a hello")
    };
    let e = h.targets[0].encryption.as_ref().expect("encryption");
    assert!(!e.can_decrypt);
    // An agent whose recipients file is unreadable right now still connects.
    let m = pb::AgentMessage {
        msg: Some(Msg::Hello(pb::Hello {
            agent: "a".into(),
            environment: "prod".into(),
            targets: vec![pb::TargetInfo {
                encryption: Some(pb::TargetEncryption::default()),
                name: "orders".into(),
                engine: 1,
                provider: "postgres".into(),
                repository: "local".into(),
                database: "x".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    let AgentMessage::Hello(h) = AgentMessage::try_from(m).expect("taken") else {
        panic!("not a hello")
    };
    assert!(
        h.targets[0]
            .encryption
            .as_ref()
            .is_some_and(|e| e.recipients.is_empty())
    );
}

#[test]
fn listed_records_keep_what_the_agent_found() {
    let listed = |status: pb::VerifyStatus, detail: &str| {
        let mut r = record();
        r.verify_status = status.into();
        r.verify_detail = detail.into();
        let result: JobResult = pb::JobResult {
            job_id: ID.into(),
            state: pb::JobState::Succeeded.into(),
            result: Some(pb::job_result::Result::List(pb::ListResult {
                backups: vec![r],
            })),
            ..Default::default()
        }
        .try_into()
        .expect("valid");
        match result.payload {
            Some(JobOutput::List(mut b)) => b.remove(0).backup,
            other => panic!("not a listing: {other:?}"),
        }
    };
    let b = listed(pb::VerifyStatus::Missing, "data is gone");
    assert_eq!(b.verify_status, VerifyStatus::Missing);
    assert_eq!(b.verify_detail, "data is gone");
    assert_eq!(
        listed(pb::VerifyStatus::Corrupt, "short").verify_status,
        VerifyStatus::Corrupt
    );
    // A listing does not read the data: it never makes a backup ok.
    let b = listed(pb::VerifyStatus::Ok, "claimed");
    assert_eq!(b.verify_status, VerifyStatus::Unverified);
    assert!(b.verify_detail.is_empty());
}

#[test]
fn rebuild_requests_are_validated() {
    let scope = rebuild_request(&pb::RebuildCatalogRequest {
        agent: "prod-1".into(),
        repository: String::new(),
        dry_run: true,
        trust_cross_environment: false,
    })
    .expect("valid");
    assert_eq!(scope.agent.as_deref(), Some("prod-1"));
    assert_eq!(scope.repository, None);
    assert!(scope.dry_run);
    for (agent, repository) in [("../x", ""), ("", "a/b"), ("Prod", "")] {
        let e = rebuild_request(&pb::RebuildCatalogRequest {
            agent: agent.into(),
            repository: repository.into(),
            dry_run: false,
            trust_cross_environment: false,
        })
        .expect_err("accepted");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
}

#[test]
fn hello_concurrency_is_bounded() {
    let h: Hello = pb::Hello {
        agent: "a".into(),
        environment: "prod".into(),
        max_concurrent_jobs: 0,
        ..Default::default()
    }
    .try_into()
    .expect("valid");
    assert_eq!(h.max_concurrent_jobs, 1);
    let h: Hello = pb::Hello {
        agent: "a".into(),
        environment: "prod".into(),
        max_concurrent_jobs: 1_000_000,
        ..Default::default()
    }
    .try_into()
    .expect("valid");
    assert_eq!(h.max_concurrent_jobs, MAX_CONCURRENT_JOBS);
}

#[test]
fn long_errors_are_cut() {
    let cut = bounded_text("é".repeat(10_000));
    assert!(cut.len() <= MAX_LONG_TEXT + '…'.len_utf8());
}

#[test]
fn heartbeat_repository_stats_are_validated() {
    let hb = |repos: Vec<pb::RepositoryStats>| {
        AgentMessage::try_from(pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                clock_unix_ms: 5,
                running_jobs: vec![],
                repositories: repos,
                wal: vec![],
            })),
        })
    };
    let stats = |name: &str, kind: &str, last: i64| pb::RepositoryStats {
        name: name.into(),
        kind: kind.into(),
        stale_uploads_aborted: 3,
        janitor_errors: 1,
        janitor_last_success_ms: last,
    };
    match hb(vec![stats("s3", "s3", 0), stats("local", "fs", 7)]).expect("valid") {
        AgentMessage::Heartbeat {
            clock_unix_ms,
            repositories,
            wal,
        } => {
            assert_eq!(clock_unix_ms, 5);
            assert!(wal.is_empty());
            assert_eq!(repositories[0].janitor_last_success_ms, None);
            assert_eq!(repositories[1].janitor_last_success_ms, Some(7));
            assert_eq!(repositories[0].stale_uploads_aborted, 3);
        }
        other => panic!("not a heartbeat: {other:?}"),
    }
    for bad in [
        vec![stats("../x", "fs", 0)],
        vec![stats("a", "ftp", 0)],
        vec![stats("a", "fs", -1)],
        vec![stats("a", "fs", 0), stats("a", "s3", 0)],
        vec![pb::RepositoryStats {
            stale_uploads_aborted: u64::MAX,
            ..stats("a", "fs", 0)
        }],
    ] {
        let e = hb(bad).expect_err("accepted");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
}

#[test]
fn reports_are_bounded_but_never_refuse_a_result() {
    let finding = |severity: i32| pb::Finding {
        check: "privileges\n".into(),
        severity,
        message: "x".repeat(10_000),
    };
    let mut findings: Vec<pb::Finding> =
        (0..300).map(|_| finding(pb::Severity::Ok.into())).collect();
    findings[0] = finding(42);
    let r: JobResult = pb::JobResult {
        job_id: ID.into(),
        state: pb::JobState::Succeeded.into(),
        report: Some(pb::JobReport {
            findings,
            plan: vec!["step".into(); 500],
        }),
        ..Default::default()
    }
    .try_into()
    .expect("a big report does not refuse the result");
    assert_eq!(r.report.findings.len(), MAX_REPORT_ITEMS + 1);
    assert_eq!(
        r.report.findings[0].severity,
        Severity::Warning,
        "unknown severity"
    );
    assert_eq!(r.report.findings[0].check, "privileges");
    assert!(r.report.findings[0].message.len() <= 4100);
    assert!(
        r.report.findings[MAX_REPORT_ITEMS]
            .message
            .contains("100 more")
    );
    assert_eq!(r.report.plan.len(), MAX_REPORT_ITEMS);
}

#[test]
fn a_bad_pin_marker_is_left_out_of_a_listing() {
    let mut rec = record();
    rec.pin = Some(pb::BackupPin {
        pinned_by: "alice".into(),
        pinned_at_ms: 1,
        reason: "   ".into(),
    });
    let r: JobResult = pb::JobResult {
        job_id: ID.into(),
        state: pb::JobState::Succeeded.into(),
        result: Some(pb::job_result::Result::List(pb::ListResult {
            backups: vec![rec],
        })),
        ..Default::default()
    }
    .try_into()
    .expect("the listing is kept");
    match r.payload {
        Some(JobOutput::List(b)) => assert!(b[0].pin.is_none(), "{b:?}"),
        other => panic!("not a listing: {other:?}"),
    }
}

#[test]
fn a_restore_goes_where_its_backup_kind_goes() {
    let logical = Backup::try_from(record()).expect("logical");
    let mut wire = record();
    wire.format = lifeboat_proto::domain::PG_BASEBACKUP_FORMAT.into();
    wire.data_key = format!("prod/orders/{ID}/data.tar.zst");
    let physical = Backup::try_from(wire).expect("physical");
    let req = |data_dir: &str, database: &str, clean: bool| pb::RestoreRequest {
        backup_id: ID.into(),
        data_dir: data_dir.into(),
        database: database.into(),
        clean,
        ..Default::default()
    };
    assert_eq!(
        restore_data_dir(&logical, &req("", "", false)).expect("db"),
        ""
    );
    assert_eq!(
        restore_data_dir(&physical, &req("/srv/pg/new/", "", false)).expect("dir"),
        "/srv/pg/new"
    );
    for (b, r, needle) in [
        (&physical, req("", "", false), "--data-dir /path"),
        (
            &logical,
            req("/srv/pg/new", "", false),
            "leave out --data-dir",
        ),
        (&physical, req("srv/pg", "", false), "absolute"),
        (&physical, req("/srv/../etc", "", false), ".."),
        (
            &physical,
            req("/srv/pg/new", "orders", false),
            "--database and --clean",
        ),
        (
            &physical,
            req("/srv/pg/new", "", true),
            "--database and --clean",
        ),
    ] {
        let e = restore_data_dir(b, &r).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn restore_jobs_are_for_logical_postgres_restores_and_bounded() {
    let logical = Backup::try_from(record()).expect("logical");
    let mut wire = record();
    wire.format = lifeboat_proto::domain::PG_BASEBACKUP_FORMAT.into();
    wire.data_key = format!("prod/orders/{ID}/data.tar.zst");
    let physical = Backup::try_from(wire).expect("physical");
    let req = |jobs: u32| pb::RestoreRequest {
        backup_id: ID.into(),
        jobs,
        ..Default::default()
    };
    assert_eq!(restore_jobs(&logical, &req(0)).expect("default"), 0);
    assert_eq!(restore_jobs(&logical, &req(4)).expect("four"), 4);
    assert_eq!(restore_jobs(&physical, &req(0)).expect("default"), 0);
    for (b, n, needle) in [
        (&logical, 65, "more than 64"),
        (&physical, 2, "physical base backup"),
    ] {
        let e = restore_jobs(b, &req(n)).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn a_start_port_needs_a_data_directory_and_a_real_port() {
    let req = |data_dir: &str, port: u32| pb::RestoreRequest {
        backup_id: ID.into(),
        data_dir: data_dir.into(),
        start_port: port,
        ..Default::default()
    };
    assert_eq!(restore_start_port(&req("", 0)).expect("none"), None);
    assert_eq!(
        restore_start_port(&req("/srv/pg/new", 5499)).expect("port"),
        Some(5499)
    );
    for (r, needle) in [
        (req("", 5499), "needs --data-dir"),
        (req("/srv/pg/new", 80), "from 1024 to 65535"),
        (req("/srv/pg/new", 70_000), "from 1024 to 65535"),
    ] {
        let e = restore_start_port(&r).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn a_restore_result_names_a_database_or_a_data_directory() {
    let restored = |database: &str, data_dir: &str| {
        JobResult::try_from(pb::JobResult {
            job_id: ID.into(),
            state: pb::JobState::Succeeded.into(),
            result: Some(pb::job_result::Result::Restore(pb::RestoreResult {
                database: database.into(),
                data_dir: data_dir.into(),
                ..Default::default()
            })),
            ..Default::default()
        })
    };
    let r = restored("", "/srv/pg/new").expect("a data dir");
    let Some(JobOutput::Restore(r)) = r.payload else {
        panic!("no restore")
    };
    assert_eq!(
        r.data_dir.as_ref().map(DataDir::as_str),
        Some("/srv/pg/new")
    );
    restored("", "relative").expect_err("a relative data dir");
}

#[test]
fn a_drill_result_names_a_database_or_a_data_directory_never_both() {
    let drilled = |database: &str, data_dir: &str| {
        JobResult::try_from(pb::JobResult {
            job_id: ID.into(),
            state: pb::JobState::Succeeded.into(),
            result: Some(pb::job_result::Result::Drill(pb::DrillResult {
                restore: Some(pb::RestoreResult {
                    database: database.into(),
                    data_dir: data_dir.into(),
                    ..Default::default()
                }),
                rto_ms: 1200,
                dropped: true,
                ..Default::default()
            })),
            ..Default::default()
        })
    };
    let r = drilled("lifeboat_drill_x", "").expect("a database");
    let Some(JobOutput::Drill(d)) = r.payload else {
        panic!("no drill")
    };
    assert_eq!(d.restored.database, "lifeboat_drill_x");
    assert_eq!(d.restored.data_dir, None);
    let r = drilled("", "/srv/pg/lifeboat_drill_x").expect("a data dir");
    let Some(JobOutput::Drill(d)) = r.payload else {
        panic!("no drill")
    };
    assert_eq!(
        d.restored.data_dir.as_ref().map(DataDir::as_str),
        Some("/srv/pg/lifeboat_drill_x")
    );
    for (database, dir, needle) in [
        ("lifeboat_drill_x", "/srv/pg/lifeboat_drill_x", "both"),
        ("", "", "neither"),
        ("", "relative", ""),
    ] {
        let e = drilled(database, dir).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn a_partial_restore_only_creates_and_only_from_a_logical_backup() {
    let logical = Backup::try_from(record()).expect("logical");
    let mut wire = record();
    wire.format = lifeboat_proto::domain::PG_BASEBACKUP_FORMAT.into();
    wire.data_key = format!("prod/orders/{ID}/data.tar.zst");
    let physical = Backup::try_from(wire).expect("physical");
    let req = |tables: &[&str], into: &str, database: &str, clean: bool| pb::RestoreRequest {
        backup_id: ID.into(),
        tables: tables.iter().map(|t| (*t).to_owned()).collect(),
        into_schema: into.into(),
        database: database.into(),
        clean,
        ..Default::default()
    };
    assert_eq!(
        restore_partial(&logical, &req(&[], "", "", false)).expect("whole"),
        None
    );
    let p = restore_partial(&logical, &req(&["sales.orders"], "restored_1", "", false))
        .expect("partial")
        .expect("some");
    assert_eq!(p.into_schema.as_deref(), Some("restored_1"));
    assert_eq!(p.tables[0].to_string(), "sales.orders");
    for (b, r, needle) in [
        (
            &physical,
            req(&["t"], "", "", false),
            "physical base backup",
        ),
        (&logical, req(&["t"], "", "copy", true), "leave out --clean"),
        (
            &logical,
            req(&["t"], "side", "copy", false),
            "leave out --database",
        ),
        (&logical, req(&[], "side", "", false), "--table"),
        (&logical, req(&["s."], "", "", false), "empty table name"),
        (
            &logical,
            req(&["t"], "Bad-Name", "", false),
            "--into-schema",
        ),
    ] {
        let e = restore_partial(b, &r).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
