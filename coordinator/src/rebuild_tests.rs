use super::*;
use crate::model::Engine;

const A: &str = "20261127T010000Z-00000a";
const B: &str = "20261127T020000Z-00000b";
const C: &str = "20261127T030000Z-00000c";

fn backup(id: &str, agent: &str, target: &str) -> Backup {
    Backup {
        encryption: None,
        backup_id: id.parse().expect("a backup id"),
        target: target.parse().expect("target"),
        agent: agent.into(),
        repository: "shared".into(),
        engine: Engine::Postgres,
        provider: "postgres".into(),
        database: "orders".into(),
        server_version: "15".into(),
        system_identifier: String::new(),
        dump_tool: "pg_dump".into(),
        dump_tool_version: "15".into(),
        format: "pg_dump-custom".into(),
        compression: "zstd".into(),
        compression_level: 3,
        raw_size: 100,
        stored_size: 10,
        raw_sha256: "a".repeat(64),
        stored_sha256: "b".repeat(64),
        started_at_ms: 1_000,
        finished_at_ms: 2_000,
        row_counts: vec![],
        data_key: format!("{target}/{id}/data.pgdump.zst"),
        manifest_key: format!("{target}/{id}/manifest.json"),
        verify_status: VerifyStatus::Unverified,
        verified_at_ms: None,
        verify_detail: String::new(),
        job_id: String::new(),
        wal_start: String::new(),
        globals: Default::default(),
    }
}

fn row(b: &Backup, status: VerifyStatus, recorded: i64) -> CatalogRow {
    CatalogRow {
        backup_id: b.backup_id.to_string(),
        target: b.target.clone(),
        agent: b.agent.clone(),
        repository: b.repository.clone(),
        raw_size: b.raw_size,
        stored_size: b.stored_size,
        raw_sha256: b.raw_sha256.clone(),
        stored_sha256: b.stored_sha256.clone(),
        finished_at_ms: b.finished_at_ms,
        verify_status: status,
        recorded_at_ms: Some(recorded),
    }
}

fn view(rows: Vec<CatalogRow>, targets: &[&str]) -> CatalogView {
    CatalogView {
        backups: rows,
        targets: targets.iter().map(|t| t.parse().expect("target")).collect(),
        active_backups: HashSet::new(),
        pinned: HashSet::new(),
        agent_environments: HashMap::new(),
    }
}

/// The plan with cross-environment listings trusted and no time limit in reach (the tests
/// below are about the other rules; [`trust`] tests are about these).
fn plan(listed: &[Listed], view: &CatalogView, listing_started_ms: i64) -> Vec<Outcome> {
    super::plan(
        listed,
        view,
        listing_started_ms,
        &Trust {
            cross_environment: true,
            now_ms: 1_000_000,
            max_ahead_ms: 30_000,
        },
    )
}

fn listed(agent: &str, backups: Vec<Backup>) -> Listed {
    Listed {
        agent: agent.into(),
        repository: "shared".into(),
        backups,
        pins: HashMap::new(),
    }
}

fn kinds(out: &[Outcome]) -> Vec<(&str, OutcomeKind)> {
    out.iter().map(|o| (o.backup_id.as_str(), o.kind)).collect()
}

#[test]
fn empty_catalog_gets_every_backup_of_a_registered_target() {
    let a = backup(A, "p1", "prod/orders");
    let mut b = backup(B, "p1", "prod/orders");
    b.finished_at_ms = 3_000;
    let gone = backup(C, "p1", "prod/gone");
    let out = plan(
        &[listed("p1", vec![a, b, gone])],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert_eq!(
        kinds(&out),
        [
            (C, OutcomeKind::Skipped),
            (A, OutcomeKind::Added),
            (B, OutcomeKind::Added)
        ]
    );
    assert!(matches!(&out[1].change, Change::Insert(b) if b.backup_id == A));
    assert!(
        out[0].detail.contains("not registered"),
        "{}",
        out[0].detail
    );
}

#[test]
fn known_backups_keep_their_verify_result_and_damage_is_recorded() {
    let a = backup(A, "p1", "prod/orders");
    let b = backup(B, "p1", "prod/orders");
    let mut b_listed = b.clone();
    b_listed.verify_status = VerifyStatus::Missing;
    b_listed.verify_detail = "data is gone".into();
    let c = backup(C, "p1", "prod/orders");
    let rows = vec![
        row(&a, VerifyStatus::Ok, 1),
        row(&b, VerifyStatus::Ok, 1),
        row(&c, VerifyStatus::Missing, 1),
    ];
    let out = plan(
        &[listed("p1", vec![a, b_listed, c])],
        &view(rows, &["prod/orders"]),
        10_000,
    );
    let by_id: HashMap<&str, &Outcome> = out.iter().map(|o| (o.backup_id.as_str(), o)).collect();
    assert_eq!(by_id[A].kind, OutcomeKind::Unchanged);
    assert_eq!(by_id[A].verify_status, VerifyStatus::Ok);
    assert_eq!(by_id[A].change, Change::None);
    assert_eq!(by_id[B].kind, OutcomeKind::Updated);
    assert!(by_id[B].damaged);
    assert_eq!(
        by_id[B].change,
        Change::SetStatus {
            status: VerifyStatus::Missing,
            detail: "data is gone".into()
        }
    );
    // Found again: back to unverified, never straight to ok.
    assert_eq!(by_id[C].kind, OutcomeKind::Updated);
    assert_eq!(by_id[C].verify_status, VerifyStatus::Unverified);
}

#[test]
fn other_hashes_are_a_conflict_and_nothing_is_written() {
    let a = backup(A, "p1", "prod/orders");
    let mut other = a.clone();
    other.stored_sha256 = "c".repeat(64);
    other.stored_size = 11;
    let out = plan(
        &[listed("p1", vec![other])],
        &view(vec![row(&a, VerifyStatus::Ok, 1)], &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Conflict)]);
    assert_eq!(out[0].change, Change::None);
    assert_eq!(out[0].verify_status, VerifyStatus::Ok);
    assert!(
        out[0].detail.contains("stored SHA-256"),
        "{}",
        out[0].detail
    );
    assert!(
        out[0].detail.contains("stored size 11"),
        "{}",
        out[0].detail
    );
}

#[test]
fn rows_not_listed_are_missing_only_within_the_listed_repositories() {
    let a = backup(A, "p1", "prod/orders");
    let b = backup(B, "p1", "prod/orders");
    let mut elsewhere = backup(C, "p2", "prod/users");
    elsewhere.repository = "local".into();
    let mut fresh = backup("20261127T040000Z-00000d", "p1", "prod/orders");
    fresh.backup_id = "20261127T040000Z-00000d".parse().expect("id");
    let rows = vec![
        row(&a, VerifyStatus::Ok, 1),
        row(&b, VerifyStatus::Unverified, 1),
        row(&elsewhere, VerifyStatus::Ok, 1),
        // Recorded after the listing started: may simply be newer than the listing.
        row(&fresh, VerifyStatus::Unverified, 20_000),
    ];
    let out = plan(
        &[listed("p1", vec![a])],
        &view(rows, &["prod/orders", "prod/users"]),
        10_000,
    );
    assert_eq!(
        kinds(&out),
        [(A, OutcomeKind::Unchanged), (B, OutcomeKind::Missing)]
    );
    assert_eq!(
        out[1].change,
        Change::SetStatus {
            status: VerifyStatus::Missing,
            detail: out[1].detail.clone()
        }
    );
}

#[test]
fn shared_bucket_backups_belong_to_the_agent_and_target_in_their_manifest() {
    // dev-1 lists a bucket prod-1 writes to: the backup stays prod-1's.
    let a = backup(A, "prod-1", "prod/orders");
    let out = plan(
        &[listed("dev-1", vec![a.clone()])],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Added)]);
    let Change::Insert(b) = &out[0].change else {
        panic!("not inserted: {out:?}")
    };
    assert_eq!(
        (b.agent.as_str(), b.target.as_str()),
        ("prod-1", "prod/orders")
    );
    // Both list it: one outcome. A different backup under the same id is a conflict.
    let out = plan(
        &[
            listed("dev-1", vec![a.clone()]),
            listed("prod-1", vec![a.clone()]),
        ],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Added)]);
    let mut other = a.clone();
    other.raw_sha256 = "d".repeat(64);
    let out = plan(
        &[listed("dev-1", vec![a]), listed("prod-1", vec![other])],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Conflict)]);
    assert_eq!(out[0].change, Change::None);
}

#[test]
fn a_backup_whose_job_still_runs_is_left_to_the_job() {
    let a = backup(A, "p1", "prod/orders");
    let mut v = view(vec![], &["prod/orders"]);
    v.active_backups.insert(A.into());
    let out = plan(&[listed("p1", vec![a])], &v, 10_000);
    assert_eq!(kinds(&out), [(A, OutcomeKind::Skipped)]);
}

#[test]
fn pin_markers_restore_pins_the_catalog_lacks() {
    let pin = |reason: &str| Pin {
        pinned_by: "alice".into(),
        pinned_at_ms: 5,
        reason: reason.into(),
    };
    let mut l = listed(
        "a1",
        vec![
            backup(A, "a1", "prod/orders"),
            backup(B, "a1", "prod/orders"),
            backup(C, "a1", "prod/orders"),
        ],
    );
    l.pins.insert(A.into(), pin("audit"));
    l.pins.insert(B.into(), pin("kept"));
    l.pins.insert(C.into(), pin("left by an unpin"));
    // B is pinned already; C is in the catalog, unpinned: its stale marker does not pin it.
    let mut v = view(
        vec![
            row(&backup(B, "a1", "prod/orders"), VerifyStatus::Ok, 1),
            row(&backup(C, "a1", "prod/orders"), VerifyStatus::Ok, 1),
        ],
        &["prod/orders"],
    );
    v.pinned.insert(B.into());
    let out = plan(&[l], &v, 100);
    let restored: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|o| {
            o.restore_pin
                .as_ref()
                .map(|p| (o.backup_id.as_str(), p.reason.as_str()))
        })
        .collect();
    assert_eq!(restored, vec![(A, "audit")]);
}

mod trust {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn strict() -> Trust {
        Trust {
            cross_environment: false,
            now_ms: NOW,
            max_ahead_ms: 30_000,
        }
    }

    fn agents(v: &mut CatalogView) {
        for (a, e) in [("prod-1", "prod"), ("prod-2", "prod"), ("dev-1", "dev")] {
            v.agent_environments.insert(a.into(), e.into());
        }
    }

    #[test]
    fn another_environments_manifests_are_refused_with_their_pins() {
        let mut v = view(vec![], &["prod/orders"]);
        agents(&mut v);
        let mut l = listed("dev-1", vec![backup(A, "prod-1", "prod/orders")]);
        l.pins.insert(
            A.into(),
            Pin {
                pinned_by: "mallory".into(),
                pinned_at_ms: 1,
                reason: "forever".into(),
            },
        );
        let out = super::super::plan(std::slice::from_ref(&l), &v, 0, &strict());
        assert_eq!(kinds(&out), [(A, OutcomeKind::Refused)]);
        assert_eq!(out[0].change, Change::None);
        assert_eq!(out[0].restore_pin, None);
        assert!(
            out[0].detail.contains("--trust-cross-environment"),
            "{}",
            out[0].detail
        );
        // Trusted on purpose: recorded, pin and all.
        let trusting = Trust {
            cross_environment: true,
            ..strict()
        };
        let out = super::super::plan(&[l], &v, 0, &trusting);
        assert_eq!(kinds(&out), [(A, OutcomeKind::Added)]);
        assert!(out[0].restore_pin.is_some());
    }

    #[test]
    fn a_manifest_naming_an_agent_of_another_environment_is_refused() {
        let mut v = view(vec![], &["prod/orders"]);
        agents(&mut v);
        let out = super::super::plan(
            &[listed("prod-1", vec![backup(A, "dev-1", "prod/orders")])],
            &v,
            0,
            &strict(),
        );
        assert_eq!(kinds(&out), [(A, OutcomeKind::Refused)]);
        assert!(out[0].detail.contains("agent dev-1"), "{}", out[0].detail);
    }

    #[test]
    fn future_manifests_are_refused_even_when_trusted() {
        let mut v = view(vec![], &["prod/orders"]);
        agents(&mut v);
        let mut ahead = backup(A, "prod-1", "prod/orders");
        ahead.finished_at_ms = NOW + 30_001;
        let mut skewed = backup(B, "prod-1", "prod/orders");
        skewed.started_at_ms = NOW;
        skewed.finished_at_ms = NOW + 30_000;
        let trusting = Trust {
            cross_environment: true,
            ..strict()
        };
        let out = super::super::plan(&[listed("prod-1", vec![ahead, skewed])], &v, 0, &trusting);
        assert_eq!(
            kinds(&out),
            [(B, OutcomeKind::Added), (A, OutcomeKind::Refused)]
        );
        assert!(out[1].detail.contains("in the future"), "{}", out[1].detail);
    }

    #[test]
    fn a_refused_manifest_leaves_its_catalog_row_alone() {
        let a = backup(A, "prod-1", "prod/orders");
        let mut v = view(vec![row(&a, VerifyStatus::Ok, 1)], &["prod/orders"]);
        agents(&mut v);
        let mut forged = a.clone();
        forged.finished_at_ms = NOW * 10;
        let out = super::super::plan(&[listed("prod-1", vec![forged])], &v, 100, &strict());
        // Neither changed nor called missing.
        assert_eq!(kinds(&out), [(A, OutcomeKind::Refused)]);
        assert_eq!(out[0].change, Change::None);
        assert_eq!(out[0].verify_status, VerifyStatus::Ok);
    }
}

fn listed_in(agent: &str, repository: &str, backups: Vec<Backup>) -> Listed {
    Listed {
        repository: repository.into(),
        ..listed(agent, backups)
    }
}

#[test]
fn a_backup_in_two_repositories_of_its_agent_is_one_backup_and_a_copy() {
    let a = backup(A, "p1", "prod/orders");
    // A lost catalog: the first listing holds it, the other a copy of it.
    let out = plan(
        &[
            listed_in("p1", "local", vec![a.clone()]),
            listed_in("p1", "offsite", vec![a.clone()]),
        ],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Added)]);
    assert_eq!(out[0].repository, "local");
    let copies: Vec<&str> = out[0]
        .copies
        .iter()
        .map(|c| c.repository.as_str())
        .collect();
    assert_eq!(copies, ["offsite"]);

    // The catalog holds it in local, and local was listed without it: local lost it; the copy
    // is recorded.
    let mut known = a.clone();
    known.repository = "local".into();
    let rows = vec![row(&known, VerifyStatus::Ok, 1_000)];
    let out = plan(
        &[
            listed_in("p1", "local", vec![]),
            listed_in("p1", "offsite", vec![a.clone()]),
        ],
        &view(rows.clone(), &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Updated)]);
    assert_eq!(out[0].verify_status, VerifyStatus::Missing);
    assert_eq!(out[0].repository, "local");
    assert_eq!(out[0].copies.len(), 1);
    // Local not listed: nothing known about it; the copy is still recorded.
    let out = plan(
        &[listed_in("p1", "offsite", vec![a.clone()])],
        &view(rows.clone(), &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Unchanged)]);
    assert_eq!(out[0].verify_status, VerifyStatus::Ok);
    assert_eq!(out[0].copies[0].repository, "offsite");
    // Both listed: judged by its own repository's listing; a damaged copy is recorded so.
    let mut damaged_copy = a.clone();
    damaged_copy.verify_status = VerifyStatus::Missing;
    let out = plan(
        &[
            listed_in("p1", "offsite", vec![damaged_copy]),
            listed_in("p1", "local", vec![a.clone()]),
        ],
        &view(rows, &["prod/orders"]),
        10_000,
    );
    assert_eq!(kinds(&out), [(A, OutcomeKind::Unchanged)]);
    assert_eq!(out[0].verify_status, VerifyStatus::Ok);
    assert_eq!(out[0].copies[0].verify_status, VerifyStatus::Missing);
    // Another agent's listing of the same content is not a copy.
    let out = plan(
        &[
            listed_in("p1", "local", vec![a.clone()]),
            listed_in("p2", "theirs", vec![a]),
        ],
        &view(vec![], &["prod/orders"]),
        10_000,
    );
    assert!(out[0].copies.is_empty(), "{:?}", out[0].copies);
}
