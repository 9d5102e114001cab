//! The backup and job lists (newest first, filtered, paged by the last id shown) and the
//! recent backups health reads per target.

use super::*;
use crate::schedule::ScheduleKind;

#[tokio::test]
async fn backups_listed_newest_first_with_filter_and_limit() {
    let (_dir, c) = with_target().await;
    for (i, (job, id, at)) in [(J1, B1, 100), (J2, B2, 200)].into_iter().enumerate() {
        let target = if i == 0 { "prod/orders" } else { "prod/users" };
        c.insert_job(&new_job(job, JobKind::Backup, target, id))
            .await
            .expect("insert");
        c.mark_running(job, at - 1).await.expect("run");
        let mut b = backup(id, job, at);
        b.target = target.parse().expect("target");
        c.finish_backup_job(job, &success(at), &b)
            .await
            .expect("finish");
    }
    let all: Vec<_> = c
        .list_backups(None, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.backup_id)
        .collect();
    assert_eq!(all, [B2, B1]);
    assert_eq!(c.list_backups(None, 1).await.expect("list").len(), 1);
    let orders = c
        .list_backups(Some("prod/orders"), 100)
        .await
        .expect("list");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].backup_id, B1);

    let targets = c.list_targets().await.expect("targets");
    let last: Vec<_> = targets
        .iter()
        .map(|t| (t.target.name.to_string(), t.last_backup.clone()))
        .collect();
    assert_eq!(
        last,
        [
            ("prod/orders".to_string(), Some((B1.to_string(), 100))),
            ("prod/users".to_string(), Some((B2.to_string(), 200)))
        ]
    );
    assert_eq!(c.latest_backups().await.expect("latest").len(), 2);
}

#[tokio::test]
async fn list_jobs_filters() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    let mut second = new_job(J2, JobKind::Backup, "prod/users", B2);
    second.created_at_ms = 3_000;
    c.insert_job(&second).await.expect("insert");
    c.finish_job(J1, &success(5)).await.expect("finish");
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(c.list_jobs(None, false, 100).await.expect("list")),
        [J2, J1]
    );
    assert_eq!(ids(c.list_jobs(None, true, 100).await.expect("list")), [J2]);
    assert_eq!(
        ids(c
            .list_jobs(Some("prod/orders"), false, 100)
            .await
            .expect("list")),
        [J1]
    );
    assert_eq!(ids(c.list_jobs(None, false, 1).await.expect("list")), [J2]);
}

/// `backup list` and `jobs list` page by the last id shown: walking the pages gives every row
/// once, in the order of the whole list, ties on the time broken by id, and rows added while
/// paging do not shift the pages still to come.
#[tokio::test]
async fn lists_page_by_the_last_id_without_gaps_or_repeats() {
    let (_dir, c) = with_target().await;
    let mut n = 0;
    let mut add = |at: i64, target: &'static str| {
        n += 1;
        let (job, id) = (
            format!("20261127T233000Z-0{n:05x}"),
            format!("20261127T233000Z-b{n:05x}"),
        );
        (job, id, at, target)
    };
    // Three backups per finish time: the id decides among them.
    let rows: Vec<_> = (0..25)
        .map(|i| {
            add(
                1_000 + (i / 3) * 10,
                if i % 2 == 0 {
                    "prod/orders"
                } else {
                    "prod/users"
                },
            )
        })
        .collect();
    for (job, id, at, target) in &rows {
        let mut j = new_job(job, JobKind::Backup, target, id);
        j.created_at_ms = 2_000 + at / 100; // equal creation times too
        c.insert_job(&j).await.expect("insert");
        c.mark_running(job, *at - 1).await.expect("run");
        let mut b = backup(id, job, *at);
        b.target = target.parse().expect("target");
        c.finish_backup_job(job, &success(*at), &b)
            .await
            .expect("finish");
    }
    for target in [None, Some("prod/users")] {
        let whole: Vec<String> = c
            .list_backups(target, 1000)
            .await
            .expect("list")
            .iter()
            .map(|b| b.backup_id.to_string())
            .collect();
        // prod/users: its 12, and the one added while the first list was paged.
        assert_eq!(whole.len(), if target.is_none() { 25 } else { 13 });
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = c
                .list_backups_after(target, after.as_deref(), 4)
                .await
                .expect("page");
            if paged.is_empty() {
                // A newer backup arriving after the first page does not move the others.
                let (job, id, at, t) = add(9_999, "prod/users");
                c.insert_job(&new_job(&job, JobKind::Backup, t, &id))
                    .await
                    .expect("insert");
                c.mark_running(&job, at - 1).await.expect("run");
                let mut b = backup(&id, &job, at);
                b.target = t.parse().expect("target");
                c.finish_backup_job(&job, &success(at), &b)
                    .await
                    .expect("finish");
            }
            let Some(last) = page.last() else { break };
            after = Some(last.backup_id.to_string());
            paged.extend(page.iter().map(|b| b.backup_id.to_string()));
        }
        assert_eq!(paged, whole, "{target:?}");
    }
    // Jobs: all created at a handful of equal times; the id breaks the ties.
    let whole: Vec<String> = c
        .list_jobs(None, false, 1000)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(whole.len(), 27);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c
            .list_jobs_after(None, false, after.as_deref(), 5)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|j| j.id));
    }
    assert_eq!(paged, whole);
    // An id that is not in the catalog gives nothing (the RPC refuses it first).
    assert!(
        c.list_backups_after(None, Some("20261127T233000Z-ffffff"), 10)
            .await
            .expect("page")
            .is_empty()
    );
}

/// Health orders a target's backups by when the coordinator recorded them (its job's end, on
/// its own clock), not by the agent's clock (N26), keeps the newest eight, and reads them per
/// target by index whatever else the catalog holds.
#[tokio::test]
async fn health_reads_the_newest_recorded_backups_per_target() {
    let (_dir, c) = with_target().await;
    // Ten backups of prod/orders whose agent clock runs backwards: finished_at_ms falls while
    // the jobs end later and later.
    for i in 0..10i64 {
        let (job, id) = (
            format!("20261127T233000Z-0{i:05x}"),
            format!("20261127T233000Z-b{i:05x}"),
        );
        c.insert_job(&new_job(&job, JobKind::Backup, "prod/orders", &id))
            .await
            .expect("insert");
        c.mark_running(&job, 10_000 + i).await.expect("run");
        c.finish_backup_job(
            &job,
            &success(20_000 + i * 100),
            &backup(&id, &job, 9_000 - i),
        )
        .await
        .expect("finish");
    }
    let snap = c.health_snapshot(50_000).await.expect("snapshot");
    let orders = snap
        .targets
        .iter()
        .find(|t| t.target.name.to_string() == "prod/orders")
        .expect("orders");
    let got: Vec<(String, i64)> = orders
        .recent_backups
        .iter()
        .map(|b| (b.backup_id.clone(), b.recorded_at_ms))
        .collect();
    let want: Vec<(String, i64)> = (2..10i64)
        .rev()
        .map(|i| (format!("20261127T233000Z-b{i:05x}"), 20_000 + i * 100))
        .collect();
    assert_eq!(got, want);
    let users = snap
        .targets
        .iter()
        .find(|t| t.target.name.to_string() == "prod/users")
        .expect("users");
    assert!(users.recent_backups.is_empty());
    assert_eq!(
        orders
            .last_succeeded
            .get("backup")
            .map(|j| j.job_id.clone()),
        Some("20261127T233000Z-000009".to_owned())
    );
}

#[tokio::test]
async fn the_audit_trail_pages_by_the_last_id_in_time_order() {
    let (_dir, c) = open().await;
    // Times out of insertion order, with ties: the list is by time, then id.
    let mut ids = Vec::new();
    for (i, at) in [300, 100, 300, 200, 300, 50, 100].into_iter().enumerate() {
        let id = c
            .insert_audit(&crate::audit::AuditEntry {
                at_ms: at,
                actor: "operator/alice".into(),
                role: "admin".into(),
                action: if i % 2 == 0 {
                    "start_backup"
                } else {
                    "restore"
                }
                .into(),
                object: format!("prod/t{i}"),
                outcome: crate::audit::AuditOutcome::Ok,
                reason: String::new(),
            })
            .await
            .expect("audit");
        ids.push((at, id));
    }
    let mut expected = ids.clone();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();

    let mut walked = Vec::new();
    let mut filter = crate::audit::AuditFilter {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = c.list_audit(&filter).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        filter.after_id = page.last().map(|r| r.id);
        walked.extend(page.into_iter().map(|r| r.id));
        // A record arriving mid-walk lands at the top and does not disturb the pages.
        if walked.len() == 2 {
            c.insert_audit(&crate::audit::AuditEntry {
                at_ms: 999,
                actor: "operator/bob".into(),
                role: "admin".into(),
                action: "prune".into(),
                object: String::new(),
                outcome: crate::audit::AuditOutcome::Ok,
                reason: String::new(),
            })
            .await
            .expect("audit");
        }
    }
    assert_eq!(walked, expected, "every record once, in time order");

    // Filters hold across pages; an unknown cursor gives nothing.
    let restores = c
        .list_audit(&crate::audit::AuditFilter {
            action: Some("restore".into()),
            after_id: Some(expected[0]),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("filtered");
    assert!(restores.iter().all(|r| r.entry.action == "restore"));
    assert_eq!(restores.len(), 3, "{restores:?}");
    let none = c
        .list_audit(&crate::audit::AuditFilter {
            after_id: Some(123_456),
            ..Default::default()
        })
        .await
        .expect("unknown cursor");
    assert!(none.is_empty());
}

/// `drill list` pages by the last job id shown (ties on the creation time broken by the id),
/// `schedule runs` by the last run id; both with their filters.
#[tokio::test]
async fn drills_and_schedule_runs_page_by_the_last_id() {
    let (_dir, c) = with_target().await;
    // Eleven drills of prod/orders and prod/users, in pairs with one creation time.
    for n in 0..11i64 {
        let of = if n % 3 == 0 {
            "prod/users"
        } else {
            "prod/orders"
        };
        let mut j = new_job(
            &format!("20261127T233000Z-d{n:05x}"),
            JobKind::Restore,
            "prod/orders",
            B1,
        );
        j.created_at_ms = 5_000 + n / 2;
        j.restore = Some(crate::model::RestoreParams {
            database: format!("drill_{n}"),
            drill_of: Some(of.parse().expect("target")),
            ..Default::default()
        });
        c.insert_job(&j).await.expect("insert a drill job");
    }
    for target in [None, Some("prod/orders")] {
        let whole: Vec<String> = c
            .list_drills(target, 1000)
            .await
            .expect("list")
            .into_iter()
            .map(|d| d.job_id)
            .collect();
        assert_eq!(whole.len(), if target.is_none() { 11 } else { 7 });
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = c
                .list_drills_after(target, after.as_deref(), 3)
                .await
                .expect("page");
            after = page.last().map(|d| d.job_id.clone());
            paged.extend(page.into_iter().map(|d| d.job_id));
            if after.is_none() {
                break;
            }
        }
        assert_eq!(paged, whole, "{target:?}");
    }
    let first = c.list_drills(None, 1).await.expect("list");
    assert_eq!(
        c.get_drill(&first[0].job_id)
            .await
            .expect("get")
            .map(|d| d.database),
        Some("drill_10".to_string())
    );
    assert!(c.get_drill(J1).await.expect("get").is_none());
    assert!(
        c.list_drills_after(None, Some(J1), 10)
            .await
            .expect("page after an unknown drill")
            .is_empty()
    );

    // Schedule runs: backup and verify runs of one target, and one of another.
    for n in 0..9i64 {
        let (target, kind) = match n % 3 {
            0 => ("prod/orders", ScheduleKind::Verify),
            1 => ("prod/users", ScheduleKind::Backup),
            _ => ("prod/orders", ScheduleKind::Backup),
        };
        sqlx::query(
            "INSERT INTO schedule_runs (target, kind, scheduled_at_ms, decided_at_ms, outcome, \
             job_id, reason) VALUES ($1, $2, $3, $3, 'skipped', NULL, 'test')",
        )
        .bind(target)
        .bind(kind.as_str())
        .bind(10_000 + n)
        .execute(&c.pool)
        .await
        .expect("insert a run");
    }
    for kind in [None, Some(ScheduleKind::Backup)] {
        let whole: Vec<(i64, i64)> = c
            .schedule_runs_after("prod/orders", kind, None, 1000)
            .await
            .expect("runs")
            .into_iter()
            .map(|(id, r)| (id, r.scheduled_at_ms))
            .collect();
        assert_eq!(whole.len(), if kind.is_none() { 6 } else { 3 });
        assert!(whole.windows(2).all(|w| w[0].0 > w[1].0), "{whole:?}");
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .schedule_runs_after("prod/orders", kind, after, 2)
                .await
                .expect("page");
            after = page.last().map(|(id, _)| *id);
            paged.extend(page.into_iter().map(|(id, r)| (id, r.scheduled_at_ms)));
            if after.is_none() {
                break;
            }
        }
        assert_eq!(paged, whole, "{kind:?}");
    }
}
