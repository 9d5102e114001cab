//! Running a rebuild: one list job per connected agent and repository, the wait for their
//! manifests (on job events, with a deadline), then [`super::plan`] applied in one catalog
//! transaction. Runs in its own task, detached from the operator's call
//! (`grpc/control/rebuild.rs`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use lifeboat_common::names::TargetName;
use tokio::sync::oneshot;

use super::{
    Change, LIST_TIMEOUT, Listed, ListedBackups, ListingReport, Listings, OutcomeKind, Report,
    Scope, Trust,
};
use crate::{
    catalog::{Catalog, InsertJob},
    error::{Error, Result},
    hub::Hub,
    jobs::Jobs,
    model::{Finish, Job, JobKind, JobState, NewJob},
};

/// Forgets a rebuild's list jobs however it ends (also when the operator goes away).
struct PendingGuard<'a> {
    listings: &'a Listings,
    jobs: Vec<String>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.listings.forget(&self.jobs);
    }
}

/// One listing to run: an agent, one of its repositories, and the registered target its job
/// is filed under (None: the agent declares no target).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    agent: String,
    repository: String,
    target: Option<TargetName>,
}

/// What a rebuild reads and writes: the sessions (who can list), the catalog, the list jobs,
/// the listings it waits for, and how far ahead of this coordinator's clock a manifest may be.
#[derive(Debug, Clone)]
pub struct Rebuilder {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub jobs: Jobs,
    pub listings: Arc<Listings>,
    pub max_clock_skew: Duration,
}

/// The listings a rebuild runs, from the connected agents' repositories.
async fn wanted(r: &Rebuilder, scope: &Scope) -> Result<Vec<Wanted>> {
    let mut agents: Vec<String> = r.hub.connected_agents().into_keys().collect();
    agents.sort();
    if let Some(a) = &scope.agent {
        if !agents.contains(a) {
            return Err(Error::FailedPrecondition(format!(
                "agent {a} is not connected; start it (or check `lifeboat agents list`) and \
                 rebuild again"
            )));
        }
        agents.retain(|x| x == a);
    }
    if agents.is_empty() {
        return Err(Error::FailedPrecondition(
            "no agent is connected; start the agents (they list their repositories for the \
             rebuild) and run it again"
                .into(),
        ));
    }
    let targets = r.catalog.list_targets().await?;
    let mut out = Vec::new();
    for agent in agents {
        let own: Vec<_> = targets.iter().filter(|t| t.target.agent == agent).collect();
        for repository in r.listings.repositories_of(&agent) {
            if scope.repository.as_ref().is_some_and(|r| *r != repository) {
                continue;
            }
            let target = own
                .iter()
                .find(|t| t.target.repository == repository)
                .or_else(|| own.first())
                .map(|t| t.target.name.clone());
            out.push(Wanted {
                agent: agent.clone(),
                repository,
                target,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::FailedPrecondition(match &scope.repository {
            Some(r) => format!(
                "no connected agent has a repository named {r}; check the name in the agents' \
                 configs"
            ),
            None => "the connected agents declare no repositories".into(),
        }));
    }
    Ok(out)
}

/// Runs a rebuild for operator `by`.
pub async fn run(r: &Rebuilder, by: &str, scope: &Scope) -> Result<Report> {
    let Ok(_running) = r.listings.running.try_lock() else {
        return Err(Error::AlreadyExists(
            "a catalog rebuild is already running; wait for it to finish".into(),
        ));
    };
    let wanted = wanted(r, scope).await?;
    let started = lifeboat_common::time::now_ms();
    // Before the first list job exists, so that no job's end can be missed.
    let mut events = Ended::new(r);
    let mut guard = PendingGuard {
        listings: &r.listings,
        jobs: Vec::new(),
    };
    let mut waits = Vec::new();
    let mut reports = Vec::new();
    for w in &wanted {
        let mut report = ListingReport {
            agent: w.agent.clone(),
            repository: w.repository.clone(),
            job_id: None,
            backups: 0,
            error: None,
        };
        let Some(target) = &w.target else {
            report.error = Some(format!(
                "agent {} declares no target, and a list job is filed under one of its \
                 targets; list the repository through another agent that has it",
                w.agent
            ));
            reports.push(report);
            continue;
        };
        let job = NewJob::new(
            JobKind::List,
            target.clone(),
            &w.agent,
            by,
            lifeboat_common::time::now_ms(),
        );
        // Registered before the job exists, so the dispatcher finds its repository.
        let rx = r.listings.expect(&job.id, &w.repository);
        guard.jobs.push(job.id.clone());
        match r.jobs.queue(&job).await? {
            InsertJob::Inserted(created) => {
                tracing::info!(
                    job_id = %created.id,
                    repository = %w.repository,
                    "catalog rebuild: listing the repository"
                );
                report.job_id = Some(created.id.clone());
                waits.push((reports.len(), created.id, rx));
            }
            InsertJob::ActiveBackupExists(_) => {
                report.error = Some("the list job could not be queued".into());
            }
        }
        reports.push(report);
    }

    let deadline = tokio::time::Instant::now() + LIST_TIMEOUT;
    let mut listed = Vec::new();
    for (i, job_id, rx) in waits {
        match wait(r, &job_id, rx, deadline, &mut events).await? {
            Ok(found) => {
                reports[i].backups = found.len();
                let mut backups = Vec::with_capacity(found.len());
                let mut pins = HashMap::new();
                for lifeboat_proto::domain::Listed { backup: b, pin } in found {
                    if let Some(p) = pin {
                        pins.insert(b.backup_id.to_string(), p);
                    }
                    backups.push(b);
                }
                listed.push(Listed {
                    agent: reports[i].agent.clone(),
                    repository: reports[i].repository.clone(),
                    backups,
                    pins,
                });
            }
            Err(why) => reports[i].error = Some(why),
        }
    }
    drop(guard);
    if r.hub.streams.is_cancelled() {
        return Err(Error::Unavailable(
            "the coordinator is shutting down; nothing was recorded; run the rebuild again once \
             it is back"
                .into(),
        ));
    }

    let trust = Trust {
        cross_environment: scope.trust_cross_environment,
        now_ms: lifeboat_common::time::now_ms(),
        max_ahead_ms: i64::try_from(r.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
    };
    let outcomes = r
        .catalog
        .rebuild(&listed, started, &trust, by, scope.dry_run)
        .await?;
    for o in outcomes.iter().filter(|o| o.kind == OutcomeKind::Refused) {
        tracing::warn!(
            backup_id = %o.backup_id,
            target = %o.target,
            agent = %o.listed_by,
            repository = %o.repository,
            dry_run = scope.dry_run,
            "catalog rebuild refused a listed backup: {}",
            o.detail
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| o.change != Change::None || o.restore_pin.is_some())
    {
        tracing::info!(
            backup_id = %o.backup_id,
            target = %o.target,
            outcome = ?o.kind,
            verify_status = %o.verify_status,
            dry_run = scope.dry_run,
            "catalog rebuild: {}",
            o.detail
        );
    }
    Ok(Report {
        dry_run: scope.dry_run,
        listings: reports,
        outcomes,
    })
}

/// The ends of jobs, from the hub's job events, kept until the rebuild asks for them (it waits
/// for its list jobs one after the other, while they end in any order).
struct Ended<'a> {
    r: &'a Rebuilder,
    events: tokio::sync::broadcast::Receiver<Job>,
    seen: HashMap<String, Job>,
}

impl<'a> Ended<'a> {
    fn new(r: &'a Rebuilder) -> Self {
        Self {
            r,
            events: r.hub.subscribe(),
            seen: HashMap::new(),
        }
    }

    /// Job `job_id` if it has ended, from the events seen so far or, once, from the catalog
    /// (events may have been missed when the channel overflowed).
    async fn ended(&mut self, job_id: &str) -> Result<Option<Job>> {
        if let Some(job) = self.seen.remove(job_id) {
            return Ok(Some(job));
        }
        Ok(self
            .r
            .catalog
            .get_job(job_id)
            .await?
            .filter(|j| j.state.is_terminal()))
    }

    /// The next list job that ends; `None` when events were missed (check the catalog).
    async fn next(&mut self) -> Option<Job> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.events.recv().await {
                Ok(job) if job.state.is_terminal() && job.kind == JobKind::List => {
                    return Some(job);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return None,
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        }
    }
}

/// Waits for one list job's manifests. The outer error is the catalog's; the inner one says
/// why the listing gave nothing.
async fn wait(
    r: &Rebuilder,
    job_id: &str,
    mut rx: oneshot::Receiver<ListedBackups>,
    deadline: tokio::time::Instant,
    ended: &mut Ended<'_>,
) -> Result<std::result::Result<ListedBackups, String>> {
    let mut check_catalog = true;
    loop {
        if check_catalog {
            check_catalog = false;
            if let Some(job) = ended.ended(job_id).await? {
                // A result delivered just before the job ended.
                if let Ok(backups) = rx.try_recv() {
                    return Ok(Ok(backups));
                }
                return Ok(Err(if job.error.is_empty() {
                    format!("the list job ended {}", job.state)
                } else {
                    format!("the list job {}: {}", job.state, job.error)
                }));
            }
        }
        tokio::select! {
            got = &mut rx => {
                return Ok(got.map_err(|_| "the listing's result was lost".to_owned()));
            }
            () = r.hub.streams.cancelled() => {
                return Ok(Err(
                    "the coordinator is shutting down; run the rebuild again once it is back"
                        .to_owned(),
                ));
            }
            () = tokio::time::sleep_until(deadline) => {
                give_up(r, job_id).await?;
                return Ok(Err(format!(
                    "no result within {} s; the list job was cancelled",
                    LIST_TIMEOUT.as_secs()
                )));
            }
            job = ended.next() => match job {
                Some(job) if job.id == job_id => {
                    ended.seen.insert(job.id.clone(), job);
                    check_catalog = true;
                }
                Some(job) => {
                    ended.seen.insert(job.id.clone(), job);
                }
                None => check_catalog = true,
            },
        }
    }
}

/// Cancels a list job the rebuild no longer waits for.
async fn give_up(r: &Rebuilder, job_id: &str) -> Result<()> {
    let Some(job) = r.catalog.get_job(job_id).await? else {
        return Ok(());
    };
    if let Some(session) = r.hub.session(&job.agent) {
        session.try_send(crate::to_agent::ToAgent::Cancel {
            job_id: job.id.clone(),
        });
    }
    let finish = Finish {
        state: JobState::Cancelled,
        finished_at_ms: lifeboat_common::time::now_ms(),
        error: "the catalog rebuild stopped waiting for the listing".into(),
        detail: String::new(),
        database: None,
        report: Default::default(),
    };
    r.jobs.finish(&job.id, &finish).await?;
    Ok(())
}
