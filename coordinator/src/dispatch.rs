//! Hands queued jobs to connected agents: at most `max_concurrent_jobs` per agent and one job
//! per target at a time. Runs whenever it is woken (a job was created or finished, an agent
//! connected). Which jobs go is a pure function of the unfinished jobs and the open sessions.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use lifeboat_common::ids::BackupId;
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    hub::Hub,
    jobs::Jobs,
    model::{Finish, Job, JobKind, JobState},
    rebuild::listings::Listings,
    to_agent::{StartJob, ToAgent, Work},
};

/// What the dispatcher reads and writes: the sessions, the unfinished jobs, the listings a
/// catalog rebuild asked for.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub jobs: Jobs,
    pub listings: Arc<Listings>,
}

/// The queued jobs to start now, oldest first. `capacity` maps each connected agent to its
/// `max_concurrent_jobs`. A delete does not occupy its target (it touches one finished
/// backup, not the database), but never starts while a restore or verify of the same backup
/// (or export) is queued or running. A list (catalog rebuild), a check (read-only), a pin
/// marker and an export (it reads the repository, not the database) occupy no target either;
/// a backup's delete and pin markers run one at a time, oldest first. A verify that names no
/// backup reads a WAL archive (`pitr verify`, possibly for hours): backups and restores of its
/// target go on beside it, as WAL pushes do. Verify jobs a verify schedule queued go after
/// every other queued job: a backup or a restore never waits behind a schedule's verify run
/// that has not started yet.
fn occupies_target(j: &Job) -> bool {
    j.kind.occupies_target() && !(j.kind == JobKind::Verify && j.backup_id.is_none())
}

/// A verify job a verify schedule queued: it yields to everything else.
fn is_background(j: &Job) -> bool {
    j.kind == JobKind::Verify
        && j.backup_id.is_some()
        && j.requested_by == crate::scheduler::REQUESTED_BY
}

pub fn plan<'a>(jobs: &'a [Job], capacity: &HashMap<String, u32>) -> Vec<&'a Job> {
    let mut busy_targets: HashSet<&str> = HashSet::new();
    let mut used: HashMap<&str, u32> = HashMap::new();
    for j in jobs.iter().filter(|j| j.is_assigned()) {
        if occupies_target(j) {
            busy_targets.insert(j.target.as_str());
        }
        *used.entry(&j.agent).or_default() += 1;
    }
    let backups_in_use: HashSet<&str> = jobs
        .iter()
        .filter(|j| {
            matches!(
                j.kind,
                JobKind::Restore | JobKind::Verify | JobKind::Export | JobKind::Copy
            ) && !j.state.is_terminal()
        })
        .filter_map(|j| j.backup_id.as_ref().map(BackupId::as_str))
        .collect();
    // A backup's delete and its pin markers run one at a time, in order: a marker written
    // beside a backup being deleted, or two markers racing, would leave the wrong pin behind.
    let mut markers_busy: HashSet<&str> = jobs
        .iter()
        .filter(|j| matches!(j.kind, JobKind::Delete | JobKind::Pin) && j.is_assigned())
        .filter_map(|j| j.backup_id.as_ref().map(BackupId::as_str))
        .collect();
    // A backup's own objects go after its copies being deleted: once they are gone (and no
    // copy is left to take their place) its record goes, and a copy's delete needs it.
    let copies_going: HashSet<&str> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Delete && !j.repository.is_empty() && !j.state.is_terminal())
        .filter_map(|j| j.backup_id.as_ref().map(BackupId::as_str))
        .collect();
    let mut out = Vec::new();
    let mut queued: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.state == JobState::Queued && j.dispatched_at_ms.is_none())
        .collect();
    queued.sort_by(|a, b| {
        (is_background(a), a.created_at_ms, &a.id).cmp(&(is_background(b), b.created_at_ms, &b.id))
    });
    for j in queued {
        let Some(&cap) = capacity.get(&j.agent) else {
            continue;
        };
        let n = used.entry(&j.agent).or_default();
        if *n >= cap {
            continue;
        }
        if matches!(j.kind, JobKind::Delete | JobKind::Pin) {
            let backup = j.backup_id.as_ref().map_or("", BackupId::as_str);
            let own_delete = j.kind == JobKind::Delete && j.repository.is_empty();
            if (j.kind == JobKind::Delete && backups_in_use.contains(backup))
                || (own_delete && copies_going.contains(backup))
                || !markers_busy.insert(backup)
            {
                continue;
            }
        } else if !occupies_target(j) {
            // Listings, checks, pin markers and WAL archive verifies do not occupy their
            // target.
        } else if busy_targets.contains(j.target.as_str()) {
            continue;
        } else {
            busy_targets.insert(j.target.as_str());
        }
        *n += 1;
        out.push(j);
    }
    out
}

/// How often the dispatcher looks at the queue without being woken.
const SWEEP: Duration = Duration::from_secs(5);

/// The dispatcher task: waits to be woken (or [`SWEEP`]), then hands out what it can.
pub async fn run(d: Dispatcher, cancel: CancellationToken) {
    let hub = &d.hub;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = hub.dispatch_requested() => {}
            // Also now and then unasked: a job another coordinator of the catalog queued is
            // announced by a notice, and a notice can be lost (bridge.rs).
            () = tokio::time::sleep(SWEEP) => {}
        }
        let pause = match d.dispatch_once().await {
            Ok(false) => continue,
            // An agent's queue was full: give it a moment.
            Ok(true) => Duration::from_millis(200),
            Err(e) => {
                tracing::warn!("failed to dispatch jobs: {e:#}; retrying in a second");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => hub.request_dispatch(),
        }
    }
}

impl Dispatcher {
    /// Hands out what it can. True if some job could not be sent and should be retried.
    async fn dispatch_once(&self) -> Result<bool> {
        let _guard = self.hub.dispatch_lock.lock().await;
        let sessions = self.hub.connected_agents();
        if sessions.is_empty() {
            return Ok(false);
        }
        let jobs = self
            .catalog
            .unfinished_jobs()
            .await
            .context("read unfinished jobs")?;
        let capacity = sessions
            .iter()
            .map(|(name, s)| (name.clone(), s.max_concurrent_jobs))
            .collect();
        let mut retry = false;
        for job in plan(&jobs, &capacity) {
            let Some(session) = sessions.get(&job.agent) else {
                continue;
            };
            let work = match self.work_of(job).await? {
                Ok(work) => work,
                Err(reason) => {
                    fail(&self.jobs, job, reason).await?;
                    continue;
                }
            };
            let now = lifeboat_common::time::now_ms();
            if !self
                .catalog
                .mark_dispatched(&job.id, now)
                .await
                .context("mark job dispatched")?
            {
                continue;
            }
            let start = ToAgent::Start(Box::new(StartJob {
                job: job.clone(),
                work,
            }));
            if session.try_send(start) {
                tracing::info!(
                    job_id = %job.id,
                    target = %job.target,
                    backup_id = job.backup(),
                    agent = %job.agent,
                    kind = %job.kind,
                    "job sent to agent"
                );
            } else {
                // The session ended or its queue is full: back in the queue, try again later.
                self.catalog
                    .undo_dispatch(&job.id)
                    .await
                    .context("requeue job")?;
                retry = true;
            }
        }
        Ok(retry)
    }

    /// What the agent needs to run `job` beyond the job row, or why it cannot run.
    async fn work_of(&self, job: &Job) -> Result<Result<Work, String>> {
        let work = match job.kind {
            JobKind::Backup => Work::Backup,
            JobKind::List => match self.listings.repository_of(&job.id) {
                Some(repository) => Work::List { repository },
                None => {
                    return Ok(Err(
                        "the catalog rebuild that asked for this listing is over (it timed out or \
                     the coordinator restarted); run `lifeboat catalog rebuild` again"
                            .to_owned(),
                    ));
                }
            },
            JobKind::Check if job.backup_id.is_none() => Work::CheckTarget,
            JobKind::RotateKeys => {
                let Some(rotation) = job.rotation.clone() else {
                    return Ok(Err(format!(
                        "key rotation job {} has no recipients",
                        job.id
                    )));
                };
                // Every encrypted backup kept now, in every repository holding it.
                let items = self
                    .catalog
                    .encrypted_backups(job.target.as_str())
                    .await
                    .context("read encrypted backups")?;
                if items.is_empty() {
                    return Ok(Err(format!(
                        "{} has no encrypted backup; there is nothing to rotate",
                        job.target
                    )));
                }
                Work::RotateKeys { items, rotation }
            }
            JobKind::Verify if job.backup_id.is_none() => Work::VerifyWal,
            JobKind::Restore
            | JobKind::Verify
            | JobKind::Delete
            | JobKind::Check
            | JobKind::Pin
            | JobKind::Export
            | JobKind::Copy => {
                let Some(id) = &job.backup_id else {
                    return Ok(Err(format!("{} job {} names no backup", job.kind, job.id)));
                };
                let Some(backup) = self
                    .catalog
                    .get_backup(id.as_str())
                    .await
                    .context("read backup")?
                else {
                    return Ok(Err(format!("backup {id} is no longer in the catalog")));
                };
                let copies = self
                    .catalog
                    .copies_of(id.as_str())
                    .await
                    .context("read copies")?;
                let located = match crate::copies::locate(&backup, &copies, job) {
                    Ok(l) => l,
                    Err(why) => return Ok(Err(why)),
                };
                let fallbacks = located.fallbacks;
                let backup = Box::new(located.backup);
                match job.kind {
                    JobKind::Restore => Work::Restore {
                        backup,
                        dry_run: false,
                        fallbacks,
                    },
                    // A restore's dry run.
                    JobKind::Check => Work::Restore {
                        backup,
                        dry_run: true,
                        fallbacks,
                    },
                    JobKind::Copy => Work::Copy {
                        backup,
                        to: job.repository.clone(),
                    },
                    JobKind::Pin => {
                        // The pin as it is now: a pin and an unpin queued in a row both write
                        // the latest state.
                        let pin = self.catalog.pin_of(id.as_str()).await.context("read pin")?;
                        Work::Pin { backup, pin }
                    }
                    JobKind::Delete => Work::Delete { backup },
                    JobKind::Export => Work::Export { backup, fallbacks },
                    JobKind::Verify | JobKind::Backup | JobKind::List | JobKind::RotateKeys => {
                        Work::Verify {
                            backup,
                            decrypt: job.decrypt,
                        }
                    }
                }
            }
        };
        Ok(Ok(work))
    }
}

/// Fails an unfinished job with `reason` and announces it.
pub async fn fail(jobs: &Jobs, job: &Job, reason: String) -> Result<()> {
    let finish = Finish {
        state: JobState::Failed,
        finished_at_ms: lifeboat_common::time::now_ms(),
        error: reason,
        detail: String::new(),
        database: None,
        report: Default::default(),
    };
    jobs.finish(&job.id, &finish).await.context("fail job")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Progress;

    fn job(id: &str, target: &str, agent: &str, state: JobState, dispatched: bool) -> Job {
        Job {
            decrypt: false,
            rotation: None,
            repository: String::new(),
            id: id.into(),
            kind: JobKind::Backup,
            state,
            target: target.parse().expect("target"),
            agent: agent.into(),
            backup_id: None,
            requested_by: "alice".into(),
            created_at_ms: id.len() as i64,
            dispatched_at_ms: dispatched.then_some(1),
            started_at_ms: None,
            finished_at_ms: None,
            error: String::new(),
            progress: Progress::default(),
            detail: String::new(),
            restore: None,
            export: None,
            report: Default::default(),
        }
    }

    fn cap(entries: &[(&str, u32)]) -> HashMap<String, u32> {
        entries.iter().map(|(a, n)| ((*a).to_owned(), *n)).collect()
    }

    fn ids(jobs: Vec<&Job>) -> Vec<&str> {
        jobs.into_iter().map(|j| j.id.as_str()).collect()
    }

    #[test]
    fn respects_agent_capacity_and_one_job_per_target() {
        let q = JobState::Queued;
        let jobs = vec![
            job("a", "prod/orders", "p1", q, false),
            job("bb", "prod/orders", "p1", q, false),
            job("ccc", "prod/users", "p1", q, false),
            job("dddd", "prod/billing", "p1", q, false),
            job("eeeee", "dev/x", "d1", q, false),
        ];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 2)]))), ["a", "ccc"]);
        assert_eq!(
            ids(plan(&jobs, &cap(&[("p1", 10), ("d1", 1)]))),
            ["a", "ccc", "dddd", "eeeee"]
        );
        assert!(
            plan(&jobs, &cap(&[])).is_empty(),
            "offline agents get nothing"
        );
    }

    #[test]
    fn assigned_jobs_occupy_slots_and_targets() {
        let jobs = vec![
            job("r", "prod/orders", "p1", JobState::Running, true),
            job("s", "prod/users", "p1", JobState::Queued, true),
            job("t1", "prod/orders", "p1", JobState::Queued, false),
            job("t22", "prod/billing", "p1", JobState::Queued, false),
        ];
        assert!(plan(&jobs, &cap(&[("p1", 2)])).is_empty());
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 3)]))), ["t22"]);
    }

    /// A backup id for `B1`, `B2`…
    fn backup_id(short: &str) -> lifeboat_common::ids::BackupId {
        format!("20261127T233000Z-0000{}", short.to_ascii_lowercase())
            .parse()
            .expect("a backup id")
    }

    #[test]
    fn scheduled_verifies_yield_to_a_later_backup_of_their_target() {
        let mut queued = Vec::new();
        for (i, id) in ["v1", "v2", "v3"].iter().enumerate() {
            let mut v = job(id, "prod/orders", "p1", JobState::Queued, false);
            v.kind = JobKind::Verify;
            v.backup_id = Some(backup_id(&format!("B{i}")));
            v.requested_by = crate::scheduler::REQUESTED_BY.into();
            v.created_at_ms = 10 + i as i64;
            queued.push(v);
        }
        let mut backup = job("b", "prod/orders", "p1", JobState::Queued, false);
        backup.created_at_ms = 100;
        queued.push(backup);
        // The backup, queued last, goes first; the verifies wait for the target.
        assert_eq!(ids(plan(&queued, &cap(&[("p1", 10)]))), ["b"]);
        // An operator's own verify keeps its place in the queue.
        queued[0].requested_by = "alice".into();
        assert_eq!(ids(plan(&queued, &cap(&[("p1", 10)]))), ["v1"]);
    }

    #[test]
    fn deletes_wait_for_restores_and_verifies_of_their_backup() {
        let mut restore = job("r", "prod/orders", "p1", JobState::Running, true);
        restore.kind = JobKind::Restore;
        restore.backup_id = Some(backup_id("B1"));
        let mut verify = job("v", "prod/users", "p1", JobState::Queued, false);
        verify.kind = JobKind::Verify;
        verify.backup_id = Some(backup_id("B2"));
        let mut d1 = job("d1", "prod/orders", "p1", JobState::Queued, false);
        d1.kind = JobKind::Delete;
        d1.backup_id = Some(backup_id("B1"));
        let mut d2 = job("d22", "prod/users", "p1", JobState::Queued, false);
        d2.kind = JobKind::Delete;
        d2.backup_id = Some(backup_id("B2"));
        let mut d3 = job("d333", "prod/orders", "p1", JobState::Queued, false);
        d3.kind = JobKind::Delete;
        d3.backup_id = Some(backup_id("B3"));
        let jobs = vec![restore.clone(), verify, d1, d2, d3];
        // B1 is being restored and B2 waits to be verified: only B3's delete goes, and a
        // delete does not wait for the target's restore.
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["v", "d333"]);
        // Without the restore and verify, every delete goes.
        let mut done = restore;
        done.state = JobState::Succeeded;
        let jobs: Vec<Job> = jobs
            .into_iter()
            .skip(2)
            .chain(std::iter::once(done))
            .collect();
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["d1", "d22", "d333"]);
    }

    #[test]
    fn a_backups_own_delete_waits_for_its_copies_deletes_and_copies() {
        let delete = |id: &str, repository: &str| {
            let mut d = job(id, "prod/orders", "p1", JobState::Queued, false);
            d.kind = JobKind::Delete;
            d.backup_id = Some(backup_id("B1"));
            d.repository = repository.into();
            d
        };
        // The own delete was queued first; the copy's goes first.
        let own = delete("d1", "");
        let copy = delete("d22", "offsite");
        let jobs = vec![own.clone(), copy.clone()];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["d22"]);
        let mut done = copy;
        done.state = JobState::Failed;
        assert_eq!(ids(plan(&[own.clone(), done], &cap(&[("p1", 10)]))), ["d1"]);
        // A copy being made reads the backup: its delete waits.
        let mut copying = job("c", "prod/orders", "p1", JobState::Running, true);
        copying.kind = JobKind::Copy;
        copying.backup_id = Some(backup_id("B1"));
        assert!(plan(&[own, copying], &cap(&[("p1", 10)])).is_empty());
    }

    #[test]
    fn a_backups_delete_and_pin_markers_go_one_at_a_time() {
        let with = |id: &str, kind: JobKind, backup: &str, state: JobState, sent: bool| {
            let mut j = job(id, "prod/orders", "p1", state, sent);
            j.kind = kind;
            j.backup_id = Some(backup_id(backup));
            j
        };
        let pin = with("p", JobKind::Pin, "B1", JobState::Queued, false);
        let unpin = with("pp", JobKind::Pin, "B1", JobState::Queued, false);
        let other = with("ppp", JobKind::Pin, "B2", JobState::Queued, false);
        let delete = with("dddd", JobKind::Delete, "B1", JobState::Queued, false);
        let verify = with("v", JobKind::Verify, "B2", JobState::Running, true);
        let jobs = vec![pin.clone(), unpin.clone(), other, delete.clone(), verify];
        // The oldest marker of B1 goes; B2's marker does not wait for B2's verify.
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["p", "ppp"]);
        // While B1's first marker runs, its second marker and its delete wait.
        let mut running = pin;
        running.state = JobState::Running;
        let jobs = vec![running, unpin, delete.clone()];
        assert!(plan(&jobs, &cap(&[("p1", 10)])).is_empty());
        // And a marker waits for a running delete.
        let mut deleting = delete;
        deleting.state = JobState::Running;
        let late = with("ppppp", JobKind::Pin, "B1", JobState::Queued, false);
        assert!(plan(&[deleting, late], &cap(&[("p1", 10)])).is_empty());
    }

    #[test]
    fn checks_run_beside_a_backup_of_their_target() {
        let running = job("r", "prod/orders", "p1", JobState::Running, true);
        let mut check = job("c1", "prod/orders", "p1", JobState::Queued, false);
        check.kind = JobKind::Check;
        let jobs = vec![running, check];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["c1"]);
    }

    #[test]
    fn lists_do_not_occupy_their_target() {
        let running = job("r", "prod/orders", "p1", JobState::Running, true);
        let mut list = job("l1", "prod/orders", "p1", JobState::Queued, false);
        list.kind = JobKind::List;
        let backup = job("b22", "prod/orders", "p1", JobState::Queued, false);
        let jobs = vec![running.clone(), list.clone(), backup.clone()];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["l1"]);
        let mut listing = list;
        listing.state = JobState::Running;
        listing.dispatched_at_ms = Some(1);
        let jobs = vec![listing, backup];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 10)]))), ["b22"]);
    }

    #[test]
    fn oldest_first() {
        let mut old = job("x", "prod/a", "p1", JobState::Queued, false);
        old.created_at_ms = 1;
        let mut new = job("y", "prod/b", "p1", JobState::Queued, false);
        new.created_at_ms = 5;
        let jobs = vec![new, old];
        assert_eq!(ids(plan(&jobs, &cap(&[("p1", 1)]))), ["x"]);
    }
}
