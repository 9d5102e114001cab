//! The Control calls for schedules, pins and prune. Authorization and auditing happen in the
//! trait methods in `control.rs`; these do the work.

use std::collections::HashMap;

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::{Control, parse_target};
use crate::{
    catalog::{Pin, PinOutcome},
    error::{Error, Result},
    grpc::authz::Operator,
    model::Backup,
    retention::{
        Action as PruneAction,
        prune::{self, Applied},
    },
    schedule::{MAX_PREVIEW, Schedule, ScheduleKind, ScheduleRun, StoredSchedule},
    scheduler, wire,
};

const DEFAULT_PREVIEW: u32 = 5;

impl Control {
    /// The schedule of `kind` that applies to `target` now, if any.
    async fn effective_schedule(
        &self,
        target: &str,
        kind: ScheduleKind,
    ) -> Result<Option<Schedule>> {
        Ok(self
            .effective_schedules()
            .await?
            .into_iter()
            .find(|s| s.target == target && s.kind() == kind))
    }

    async fn effective_schedules(&self) -> Result<Vec<Schedule>> {
        let catalog = &self.parts.catalog;
        let stored = catalog.list_schedules().await?;
        let targets: Vec<_> = catalog
            .list_targets()
            .await?
            .into_iter()
            .map(|t| t.target)
            .collect();
        let states = catalog
            .schedule_states()
            .await?
            .into_iter()
            .map(|s| ((s.target.clone(), s.kind), s))
            .collect();
        Ok(scheduler::effective(
            &stored,
            &targets,
            &states,
            &self.parts.config.scheduler,
        ))
    }

    async fn last_runs(&self) -> Result<HashMap<scheduler::Key, ScheduleRun>> {
        Ok(self
            .parts
            .catalog
            .last_schedule_runs()
            .await?
            .into_iter()
            .map(|r| ((r.target.clone(), r.kind), r))
            .collect())
    }

    fn last_run<'a>(
        runs: &'a HashMap<scheduler::Key, ScheduleRun>,
        s: &Schedule,
    ) -> Option<&'a ScheduleRun> {
        runs.get(&(s.target.clone(), s.kind()))
    }

    fn schedule_pb(&self, s: &Schedule, last: Option<&ScheduleRun>, now_ms: i64) -> pb::Schedule {
        let next = if s.paused {
            None
        } else {
            s.def.upcoming(&s.target, now_ms, 1).first().copied()
        };
        wire::schedule_to_pb(s, next, last)
    }

    async fn schedule_reply(&self, target: &str, kind: ScheduleKind) -> Result<pb::Schedule> {
        let s = self
            .effective_schedule(target, kind)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{kind} schedule of {target} vanished after it was written"
                ))
            })?;
        let runs = self.last_runs().await?;
        Ok(self.schedule_pb(
            &s,
            Self::last_run(&runs, &s),
            lifeboat_common::time::now_ms(),
        ))
    }

    pub(super) async fn set_schedule_impl(
        &self,
        op: &Operator,
        req: &pb::SetScheduleRequest,
    ) -> Result<pb::Schedule> {
        let name = parse_target(&req.target)?;
        let target = self.target(&name).await?;
        let def = wire::schedule_request(req)?;
        if let Some(into) = &def.drill_into {
            self.scope(op, into, &format!("drills into {into}"))?;
            let into = self.target(into).await?;
            if into.engine != target.engine {
                return Err(Error::InvalidArgument(format!(
                    "{} is a {} target and {} is {}; drill into a {} target",
                    target.name, target.engine, into.name, into.engine, target.engine
                )));
            }
        }
        let now = lifeboat_common::time::now_ms();
        let stored = StoredSchedule {
            target: target.name.to_string(),
            cron: def.spec.expr().to_owned(),
            timezone: req.timezone.clone(),
            jitter_secs: def.jitter.as_secs(),
            kind: def.kind,
            cover_secs: def.cover.as_secs(),
            drill_into: def
                .drill_into
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            updated_by: op.name.clone(),
            updated_at_ms: now,
        };
        self.parts.catalog.upsert_schedule(&stored, now).await?;
        self.schedule_reply(&stored.target, stored.kind).await
    }

    pub(super) async fn list_schedules_impl(
        &self,
        req: &pb::ListSchedulesRequest,
    ) -> Result<pb::ListSchedulesResponse> {
        let filter = if req.target.is_empty() {
            None
        } else {
            Some(parse_target(&req.target)?.to_string())
        };
        let runs = self.last_runs().await?;
        let now = lifeboat_common::time::now_ms();
        Ok(pb::ListSchedulesResponse {
            schedules: self
                .effective_schedules()
                .await?
                .iter()
                .filter(|s| filter.as_ref().is_none_or(|f| *f == s.target))
                .map(|s| self.schedule_pb(s, Self::last_run(&runs, s), now))
                .collect(),
        })
    }

    /// The target's schedule of `kind`, or NotFound saying how to set one.
    async fn require_schedule(&self, name: &TargetName, kind: ScheduleKind) -> Result<Schedule> {
        self.effective_schedule(name.as_str(), kind)
            .await?
            .ok_or_else(|| {
                let flag = match kind {
                    ScheduleKind::Backup => "",
                    ScheduleKind::Verify => " --kind verify",
                    ScheduleKind::Drill => " --kind drill",
                };
                Error::NotFound(format!(
                    "target {name} has no {kind} schedule; set one with `lifeboat schedule set \
                     {name}{flag} --cron \"30 2 * * *\" --tz Europe/Berlin`"
                ))
            })
    }

    pub(super) async fn pause_impl(
        &self,
        op: &Operator,
        req: &pb::ScheduleTargetRequest,
        paused: bool,
    ) -> Result<pb::Schedule> {
        let name = parse_target(&req.target)?;
        let kind = wire::schedule_kind(req.kind)?;
        let s = self.require_schedule(&name, kind).await?;
        self.parts
            .catalog
            .set_schedule_paused(
                &s.target,
                kind,
                paused,
                &op.name,
                lifeboat_common::time::now_ms(),
            )
            .await?;
        self.schedule_reply(&s.target, kind).await
    }

    pub(super) async fn delete_schedule_impl(
        &self,
        req: &pb::ScheduleTargetRequest,
    ) -> Result<pb::DeleteScheduleResponse> {
        let name = parse_target(&req.target)?.to_string();
        let kind = wire::schedule_kind(req.kind)?;
        if !self.parts.catalog.delete_schedule(&name, kind).await? {
            return Err(Error::NotFound(format!(
                "target {name} has no {kind} schedule of its own{}; `lifeboat schedule list` \
                 shows the schedules",
                if self.effective_schedule(&name, kind).await?.is_some() {
                    " (it follows its environment's default from the coordinator config; \
                     pause it with `lifeboat schedule pause`)"
                } else {
                    ""
                }
            )));
        }
        let effective = self
            .effective_schedule(&name, kind)
            .await?
            .map(|s| self.schedule_pb(&s, None, lifeboat_common::time::now_ms()));
        Ok(pb::DeleteScheduleResponse { effective })
    }

    pub(super) async fn next_runs_impl(
        &self,
        req: &pb::NextRunsRequest,
    ) -> Result<pb::NextRunsResponse> {
        let name = parse_target(&req.target)?;
        let count = match req.count {
            0 => DEFAULT_PREVIEW,
            n => n,
        };
        if count as usize > MAX_PREVIEW {
            return Err(Error::InvalidArgument(format!(
                "count {count} is too large; at most {MAX_PREVIEW} run times are computed"
            )));
        }
        let s = self
            .require_schedule(&name, wire::schedule_kind(req.kind)?)
            .await?;
        let now = lifeboat_common::time::now_ms();
        let from = if req.from.trim().is_empty() {
            now
        } else {
            s.def
                .spec
                .parse_from(&req.from)
                .map_err(Error::InvalidArgument)?
        };
        let runs = self.last_runs().await?;
        let run_at_ms = s.def.upcoming(&s.target, from, count as usize);
        Ok(pb::NextRunsResponse {
            schedule: Some(self.schedule_pb(&s, Self::last_run(&runs, &s), now)),
            run_at_local: run_at_ms
                .iter()
                .map(|ms| s.def.spec.local_text(*ms))
                .collect(),
            run_at_ms,
        })
    }

    /// A backup record with its pin, deletion mark and copies filled in.
    pub(super) async fn backup_pb(&self, b: &Backup) -> Result<pb::BackupRecord> {
        let pins = self.parts.catalog.pins().await?;
        let deleting = self.parts.catalog.deleting_backups().await?;
        let mut r = decorate(b, &pins, &deleting);
        r.copies = self
            .parts
            .catalog
            .copies_of(b.backup_id.as_str())
            .await?
            .iter()
            .map(wire::copy_to_pb)
            .collect();
        Ok(r)
    }

    pub(super) async fn backups_pb(&self, backups: &[Backup]) -> Result<Vec<pb::BackupRecord>> {
        let pins = self.parts.catalog.pins().await?;
        let deleting = self.parts.catalog.deleting_backups().await?;
        let copies = self.parts.catalog.copies_by_backup(None).await?;
        Ok(backups
            .iter()
            .map(|b| {
                let mut r = decorate(b, &pins, &deleting);
                r.copies = copies
                    .get(b.backup_id.as_str())
                    .into_iter()
                    .flatten()
                    .map(wire::copy_to_pb)
                    .collect();
                r
            })
            .collect())
    }

    /// Refuses new restores and verifies of a backup retention is deleting.
    pub(super) async fn check_not_deleting(&self, b: &Backup) -> Result<()> {
        if self
            .parts
            .catalog
            .deleting_backups()
            .await?
            .contains(b.backup_id.as_str())
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {} is being deleted by retention; pick another backup \
                 (`lifeboat backup list --target {}`)",
                b.backup_id, b.target
            )));
        }
        Ok(())
    }

    pub(super) async fn pin_impl(
        &self,
        op: &Operator,
        req: &pb::PinBackupRequest,
    ) -> Result<pb::BackupRecord> {
        let backup = self.backup(&req.backup_id).await?;
        let pin = Pin {
            pinned_by: op.name.clone(),
            pinned_at_ms: lifeboat_common::time::now_ms(),
            reason: wire::pin_reason(&req.reason)?,
        };
        match self
            .parts
            .catalog
            .pin_backup(backup.backup_id.as_str(), &pin)
            .await?
        {
            PinOutcome::Pinned => {
                self.queue_pin_marker(op, &backup).await;
                self.backup_pb(&backup).await
            }
            PinOutcome::NotFound => Err(Error::NotFound(format!(
                "backup {} is no longer in the catalog",
                backup.backup_id
            ))),
            PinOutcome::Deleting => Err(Error::FailedPrecondition(format!(
                "backup {} is already being deleted by retention and cannot be pinned",
                backup.backup_id
            ))),
        }
    }

    pub(super) async fn unpin_impl(
        &self,
        op: &Operator,
        backup_id: &str,
    ) -> Result<pb::BackupRecord> {
        let backup = self.backup(backup_id).await?;
        if !self
            .parts
            .catalog
            .unpin_backup(backup.backup_id.as_str())
            .await?
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {} is not pinned",
                backup.backup_id
            )));
        }
        self.queue_pin_marker(op, &backup).await;
        self.backup_pb(&backup).await
    }

    pub(super) async fn delete_backup_impl(
        &self,
        op: &Operator,
        id: &str,
        repository: &str,
    ) -> Result<pb::Job> {
        let backup = self.backup(id).await?;
        let repository = self.copy_repository(&backup, repository, false).await?;
        if !repository.is_empty() && repository == backup.repository {
            return Err(Error::InvalidArgument(format!(
                "repository {repository} holds backup {id} itself, not a copy; `lifeboat backup delete {id}` deletes the backup and every copy"
            )));
        }
        let outcome = prune::delete_one(
            &self.parts.catalog,
            &self.parts.jobs,
            &self.parts.config.retention,
            &backup,
            &repository,
            &op.name,
            lifeboat_common::time::now_ms(),
        )
        .await
        .map_err(|e| Error::Internal(format!("{e:#}")))?;
        match outcome {
            prune::DeleteOne::Queued(job) => {
                let job = self.parts.catalog.get_job(&job).await?.ok_or_else(|| {
                    Error::Internal(format!("delete job {job} vanished after it was queued"))
                })?;
                Ok(pb::Job::from(&job))
            }
            prune::DeleteOne::Refused(why) => Err(Error::FailedPrecondition(why)),
            prune::DeleteOne::Gone => Err(Error::NotFound(format!(
                "backup {id} is no longer in the catalog"
            ))),
        }
    }

    pub(super) async fn prune_impl(
        &self,
        op: &Operator,
        req: &pb::PruneRequest,
    ) -> Result<pb::PruneResponse> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            // A target that is gone may still have backups; only refuse unknown names.
            if self
                .parts
                .catalog
                .get_target(name.as_str())
                .await?
                .is_none()
            {
                return Err(Error::NotFound(format!(
                    "target {name} is not registered; run `lifeboat targets list`"
                )));
            }
            Some(name)
        };
        let now = lifeboat_common::time::now_ms();
        let plans = prune::plan_targets(
            &self.parts.catalog,
            &self.parts.config.retention,
            target.as_ref(),
            now,
        )
        .await
        .map_err(|e| Error::Internal(format!("{e:#}")))?;
        if !self.parts.hub.is_active()
            && plans
                .iter()
                .any(|p| p.decisions.iter().any(|(_, b)| b.is_physical()))
        {
            // The WAL archives' state comes with the agents' heartbeats.
            return Err(crate::grpc::needs_active(
                "a prune that covers physical targets (their WAL archives)",
            ));
        }
        let applied = if req.dry_run {
            Default::default()
        } else {
            prune::apply(&self.parts.catalog, &self.parts.jobs, &plans, &op.name, now)
                .await
                .map_err(|e| Error::Internal(format!("{e:#}")))?
        };
        let mut decisions = Vec::new();
        let mut without_policy = Vec::new();
        let mut wal = Vec::new();
        for p in crate::retention::wal::by_target(&plans) {
            let reported = self.parts.wal.get(&p.target);
            for c in crate::retention::wal::cuts(&p, reported.as_ref().map(|r| &r.status)) {
                wal.push(pb::PruneWal {
                    target: c.target.to_string(),
                    timeline: c.timeline,
                    first: c.first,
                    last: c.last.unwrap_or_default(),
                    kept_from: c.kept_from,
                    kept_backup: c.kept_backup,
                });
            }
        }
        for p in &plans {
            if p.policy.is_none() && !without_policy.contains(&p.target.to_string()) {
                without_policy.push(p.target.to_string());
            }
            for (d, b) in &p.decisions {
                let key = prune::applied_key(b.backup_id.as_str(), &p.repository);
                let (mut d, job) = (d.clone(), applied.get(&key));
                let job_id = match job {
                    Some(Applied::Queued(id) | Applied::AlreadyDeleting(id)) => Some(id.as_str()),
                    Some(Applied::PinnedMeanwhile) => {
                        d.action = PruneAction::Keep;
                        d.reasons = vec![crate::retention::Reason::Pinned];
                        None
                    }
                    Some(Applied::Gone | Applied::NotApplied) | None => None,
                };
                let copy = p.copies.contains(b.backup_id.as_str());
                decisions.push(wire::prune_decision_to_pb(&d, b, job_id, copy));
            }
        }
        Ok(pb::PruneResponse {
            decisions,
            targets_without_policy: without_policy,
            dry_run: req.dry_run,
            wal,
        })
    }
}

fn decorate(
    b: &Backup,
    pins: &HashMap<String, Pin>,
    deleting: &std::collections::HashSet<String>,
) -> pb::BackupRecord {
    let mut r = pb::BackupRecord::from(b);
    r.pin = pins.get(b.backup_id.as_str()).map(wire::pin_to_pb);
    r.deleting = deleting.contains(b.backup_id.as_str());
    r
}
