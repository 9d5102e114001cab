//! The `Control` service: what operators (through `lifeboat`) may ask. Every call is
//! authorized from the client certificate before any work; every change is audited
//! (`target: "audit"`: who, what, on what, outcome).

use lifeboat_common::{ids::validate_id, names::TargetName};
use lifeboat_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::authz::Action;
use crate::{
    error::{Error, Result},
    parts::Parts,
    wire,
};

mod audit;
mod checks;
mod drills;
mod frame;
mod jobs;
mod keys;
mod lists;
mod pitr;
mod rebuild;
mod release;
mod schedules;
mod scope;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub struct Control {
    parts: Parts,
}

/// Cuts `items` to the page after `after` (by `name_of`, in byte order; empty: from the
/// first) of at most `limit` items (capped at [`MAX_LIMIT`]; 0: all the rest). Returns whether
/// more follow.
fn by_name_page<T>(
    items: &mut Vec<T>,
    name_of: impl Fn(&T) -> &str,
    after: &str,
    limit: u32,
) -> bool {
    items.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    if !after.is_empty() {
        items.retain(|i| name_of(i) > after);
    }
    let want = if limit == 0 {
        usize::MAX
    } else {
        limit.min(MAX_LIMIT) as usize
    };
    let more = items.len() > want;
    items.truncate(want);
    more
}

fn limit(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

fn parse_target(value: &str) -> Result<TargetName> {
    TargetName::parse(value).map_err(Error::from)
}

fn backup_id(value: &str) -> Result<()> {
    validate_id("backup id", value).map_err(Error::from)
}

impl Control {
    pub fn new(parts: Parts) -> Self {
        Self { parts }
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for Control {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let op = self.authorize(&request, Action::WhoAmI, "")?;
        let environments = self
            .parts
            .config
            .environments_of(&op.name)
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        Ok(Response::new(pb::WhoAmIResponse {
            name: op.name,
            role: op.role.as_str().to_owned(),
            environments,
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let op = self.authorize(&request, Action::ListAgents, "")?;
        let req = request.get_ref();
        if !req.after.is_empty() {
            lifeboat_common::names::validate_simple("agent name", &req.after)
                .map_err(|e| Error::InvalidArgument(format!("after: {e}")))?;
        }
        let mut agents = self
            .parts
            .catalog
            .list_agents()
            .await
            .map_err(Error::from)?;
        agents
            .retain(|a| super::authz::in_environment(&self.parts.config, &op.name, &a.environment));
        let more = by_name_page(&mut agents, |a| &a.name, &req.after, req.limit);
        let jobs = self
            .parts
            .catalog
            .unfinished_jobs()
            .await
            .map_err(Error::from)?;
        let running = Self::running_per_agent(&jobs);
        let connected = self.connected(&agents);
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents
                .iter()
                .map(|a| {
                    wire::agent_to_pb(
                        a,
                        connected(&a.name),
                        running.get(a.name.as_str()).copied().unwrap_or(0),
                    )
                })
                .collect(),
            more,
        }))
    }

    async fn list_targets(
        &self,
        request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        let op = self.authorize(&request, Action::ListTargets, "")?;
        let req = request.get_ref();
        if !req.after.is_empty() {
            parse_target(&req.after)?;
        }
        let mut targets = self
            .parts
            .catalog
            .list_targets()
            .await
            .map_err(Error::from)?;
        targets.retain(|t| self.sees(&op, &t.target.name));
        let more = by_name_page(
            &mut targets,
            |t| t.target.name.as_str(),
            &req.after,
            req.limit,
        );
        let agents = if self.parts.hub.is_active() {
            Vec::new()
        } else {
            self.parts
                .catalog
                .list_agents()
                .await
                .map_err(Error::from)?
        };
        let connected = self.connected(&agents);
        Ok(Response::new(pb::ListTargetsResponse {
            targets: targets
                .iter()
                .map(|t| wire::target_to_pb(t, connected(&t.target.agent)))
                .collect(),
            more,
        }))
    }

    async fn start_backup(
        &self,
        request: Request<pb::StartBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let target = &request.get_ref().target;
        let job = self
            .audited(&request, Action::StartBackup, target, |op| async move {
                self.start_backup(&op, target).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let op = self.authorize(&request, Action::ListBackups, "")?;
        Ok(Response::new(
            self.list_backups_impl(&op, request.into_inner()).await?,
        ))
    }

    async fn get_backup(
        &self,
        request: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        let op = self.authorize(&request, Action::GetBackup, &request.get_ref().backup_id)?;
        let backup = self.backup(&request.get_ref().backup_id).await?;
        self.scope(
            &op,
            &backup.target,
            &format!("backup {} of {}", backup.backup_id, backup.target),
        )?;
        Ok(Response::new(self.backup_pb(&backup).await?))
    }

    async fn pitr_window(
        &self,
        request: Request<pb::PitrWindowRequest>,
    ) -> Result<Response<pb::PitrWindowResponse>, Status> {
        let req = request.get_ref();
        let op = self.authorize(&request, Action::PitrWindow, &req.target)?;
        let target = parse_target(&req.target)?;
        self.scope(&op, &target, &format!("the recovery window of {target}"))?;
        Ok(Response::new(self.pitr_window(&target).await?))
    }

    async fn verify_wal(
        &self,
        request: Request<pb::VerifyWalRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let target = &request.get_ref().target;
        let job = self
            .audited(&request, Action::VerifyWal, target, |op| async move {
                let target = parse_target(target)?;
                self.scope(
                    &op,
                    &target,
                    &format!("verifying the WAL archive of {target}"),
                )?;
                self.verify_wal(&op, &target).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn verify_backup(
        &self,
        request: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = &request.get_ref().backup_id;
        let repository = &request.get_ref().repository;
        let decrypt = request.get_ref().decrypt;
        let object = if repository.is_empty() {
            id.clone()
        } else {
            format!("{id} in {repository}")
        };
        let job = self
            .audited(&request, Action::VerifyBackup, &object, |op| async move {
                self.verify_backup(&op, id, repository, decrypt).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn export_backup(
        &self,
        request: Request<pb::ExportBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let object = format!("{} -> {}", req.backup_id, req.path);
        let job = self
            .audited(&request, Action::ExportBackup, &object, |op| async move {
                self.export_backup(&op, req).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn copy_backup(
        &self,
        request: Request<pb::CopyBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let object = format!("{} -> {}", req.backup_id, req.to_repository);
        let job = self
            .audited(&request, Action::CopyBackup, &object, |op| async move {
                self.copy_backup(&op, req).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let op = self.authorize(&request, Action::ListKeys, "")?;
        Ok(Response::new(self.list_keys(&op, request.get_ref()).await?))
    }

    async fn rotate_keys(
        &self,
        request: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let object = format!(
            "{} +[{}] -[{}]",
            req.target,
            req.add.join(" "),
            req.remove.join(" ")
        );
        let action = Action::RotateKeys {
            dry_run: req.dry_run,
        };
        let job = self
            .audited(&request, action, &object, |op| async move {
                self.rotate_keys(&op, req).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn start_drill(
        &self,
        request: Request<pb::StartDrillRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let object = if req.into.is_empty() {
            req.target.clone()
        } else {
            format!("{} -> {}", req.target, req.into)
        };
        let job = self
            .audited(&request, Action::Drill, &object, |op| async move {
                self.start_drill(&op, req).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_drills(
        &self,
        request: Request<pb::ListDrillsRequest>,
    ) -> Result<Response<pb::ListDrillsResponse>, Status> {
        let op = self.authorize(&request, Action::ListDrills, "")?;
        let (drills, more) = self.list_drills(&op, request.get_ref()).await?;
        Ok(Response::new(pb::ListDrillsResponse { drills, more }))
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let r = request.get_ref();
        // A globals restore is audited as one; creating SUPERUSER roles needs an admin, and
        // so does --clean.
        let action = if r.globals_only || ((r.with_globals || r.allow_superuser) && !r.clean) {
            Action::RestoreGlobals {
                superuser: r.allow_superuser,
            }
        } else {
            Action::Restore { clean: r.clean }
        };
        let object = restore_object(request.get_ref());
        let req = request.get_ref();
        let job = self
            .audited(&request, action, &object, |op| async move {
                self.restore(&op, req, false).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn plan_restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let object = restore_object(request.get_ref());
        let req = request.get_ref();
        let job = self
            .audited(&request, Action::RestoreDryRun, &object, |op| async move {
                self.restore(&op, req, true).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let op = self.authorize(&request, Action::ListJobs, "")?;
        Ok(Response::new(
            self.list_jobs_impl(&op, request.into_inner()).await?,
        ))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let op = self.authorize(&request, Action::GetJob, &request.get_ref().job_id)?;
        let job = self.job(&request.get_ref().job_id).await?;
        self.scope(
            &op,
            &job.target,
            &format!("job {} on {}", job.id, job.target),
        )?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = &request.get_ref().job_id;
        let job = self
            .audited(&request, Action::CancelJob, id, |op| async move {
                self.cancel(&op, id).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn set_schedule(
        &self,
        request: Request<pb::SetScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let req = request.get_ref();
        let target = &req.target;
        let answer = self
            .audited(&request, Action::SetSchedule, target, |op| async move {
                self.scope_named(&op, target, &format!("the schedule of {target}"))?;
                self.set_schedule_impl(&op, req).await
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let op = self.authorize(&request, Action::ListSchedules, "")?;
        let target = &request.get_ref().target;
        self.scope_named(&op, target, &format!("the schedule of {target}"))?;
        let mut list = self.list_schedules_impl(request.get_ref()).await?;
        list.schedules
            .retain(|s| s.target.parse().is_ok_and(|t| self.sees(&op, &t)));
        Ok(Response::new(list))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let req = request.get_ref();
        let target = &req.target;
        let answer = self
            .audited(&request, Action::PauseSchedule, target, |op| async move {
                self.scope_named(&op, target, &format!("the schedule of {target}"))?;
                self.pause_impl(&op, req, true).await
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let req = request.get_ref();
        let target = &req.target;
        let answer = self
            .audited(&request, Action::ResumeSchedule, target, |op| async move {
                self.scope_named(&op, target, &format!("the schedule of {target}"))?;
                self.pause_impl(&op, req, false).await
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let req = request.get_ref();
        let target = &req.target;
        let answer = self
            .audited(&request, Action::DeleteSchedule, target, |op| async move {
                self.scope_named(&op, target, &format!("the schedule of {target}"))?;
                self.delete_schedule_impl(req).await
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn next_runs(
        &self,
        request: Request<pb::NextRunsRequest>,
    ) -> Result<Response<pb::NextRunsResponse>, Status> {
        let op = self.authorize(&request, Action::NextRuns, &request.get_ref().target)?;
        let target = &request.get_ref().target;
        self.scope_named(&op, target, &format!("the schedule of {target}"))?;
        Ok(Response::new(self.next_runs_impl(request.get_ref()).await?))
    }

    async fn list_schedule_runs(
        &self,
        request: Request<pb::ListScheduleRunsRequest>,
    ) -> Result<Response<pb::ListScheduleRunsResponse>, Status> {
        let op = self.authorize(
            &request,
            Action::ListScheduleRuns,
            &request.get_ref().target,
        )?;
        let req = request.get_ref();
        let target = parse_target(&req.target)?;
        self.scope(&op, &target, &format!("the schedule runs of {target}"))?;
        if req.after_id < 0 {
            return Err(Error::InvalidArgument(format!(
                "after_id {} is not a run id; use the id of the previous page's last run",
                req.after_id
            ))
            .into());
        }
        let want = limit(req.limit);
        let mut runs = self
            .parts
            .catalog
            .schedule_runs_after(
                target.as_str(),
                wire::schedule_kind_filter(req.kind)?,
                Some(req.after_id).filter(|&id| id > 0),
                want + 1,
            )
            .await
            .map_err(Error::from)?;
        let more = runs.len() > want as usize;
        runs.truncate(want as usize);
        Ok(Response::new(pb::ListScheduleRunsResponse {
            runs: runs
                .iter()
                .map(|(id, r)| pb::ScheduleRun {
                    id: *id,
                    ..wire::schedule_run_to_pb(r)
                })
                .collect(),
            more,
        }))
    }

    async fn pin_backup(
        &self,
        request: Request<pb::PinBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        let req = request.get_ref();
        let id = &req.backup_id;
        let record = self
            .audited(&request, Action::PinBackup, id, |op| async move {
                self.scope_backup(&op, id, "pinning backup").await?;
                self.pin_impl(&op, req).await
            })
            .await?;
        Ok(Response::new(record))
    }

    async fn unpin_backup(
        &self,
        request: Request<pb::UnpinBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        let id = &request.get_ref().backup_id;
        let record = self
            .audited(&request, Action::UnpinBackup, id, |op| async move {
                self.scope_backup(&op, id, "unpinning backup").await?;
                self.unpin_impl(&op, id).await
            })
            .await?;
        Ok(Response::new(record))
    }

    async fn delete_backup(
        &self,
        request: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = &request.get_ref().backup_id;
        let repository = &request.get_ref().repository;
        let object = if repository.is_empty() {
            id.clone()
        } else {
            format!("{id} in {repository}")
        };
        let job = self
            .audited(&request, Action::DeleteBackup, &object, |op| async move {
                self.scope_backup(&op, id, "deleting backup").await?;
                self.delete_backup_impl(&op, id, repository).await
            })
            .await?;
        Ok(Response::new(job))
    }

    async fn prune(
        &self,
        request: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        let action = Action::Prune {
            dry_run: request.get_ref().dry_run,
        };
        let object = request.get_ref().target.clone();
        let op = self.authorize(&request, action, &object)?;
        let scoped = if object.is_empty() {
            self.scope_all(&op, "a prune of every target (name a target)")
        } else {
            self.scope_named(&op, &object, &format!("a prune of {object}"))
        };
        let result = match scoped {
            Ok(()) => self.prune_impl(&op, request.get_ref()).await,
            Err(e) => Err(e),
        };
        if !request.get_ref().dry_run {
            self.audit(&op, action, &object, &result).await;
        }
        Ok(Response::new(result?))
    }

    async fn rebuild_catalog(
        &self,
        request: Request<pb::RebuildCatalogRequest>,
    ) -> Result<Response<pb::RebuildCatalogResponse>, Status> {
        let req = request.get_ref();
        let action = Action::RebuildCatalog {
            dry_run: req.dry_run,
        };
        let object = match (req.agent.as_str(), req.repository.as_str()) {
            ("", "") => "all repositories".to_owned(),
            (a, "") => format!("agent {a}"),
            ("", r) => format!("repository {r}"),
            (a, r) => format!("agent {a} repository {r}"),
        };
        // The rebuild runs in a task of its own: an operator whose connection drops while the
        // repositories are listed does not abandon it; it records what it finds and is audited.
        let op = self.authorize(&request, action, &object)?;
        let this = Control {
            parts: self.parts.clone(),
        };
        let req = req.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.parts.hub.tasks.spawn(async move {
            let result = match this.scope_all(&op, "a catalog rebuild") {
                Ok(()) => this.rebuild_impl(&op, &req).await,
                Err(e) => Err(e),
            };
            this.audit(&op, action, &object, &result).await;
            let _ = tx.send(result);
        });
        let answer = rx
            .await
            .map_err(|_| Status::unavailable("the catalog rebuild was stopped; run it again"))?;
        Ok(Response::new(answer?))
    }

    async fn check_target(
        &self,
        request: Request<pb::CheckTargetRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let target = &request.get_ref().target;
        let job = self
            .audited(&request, Action::CheckTarget, target, |op| async move {
                self.scope_named(&op, target, &format!("a check of {target}"))?;
                self.check_target_impl(&op, target).await
            })
            .await?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let op = self.authorize(&request, Action::ListAudit, "")?;
        Ok(Response::new(
            self.list_audit_impl(&op, request.get_ref()).await?,
        ))
    }

    async fn release_target(
        &self,
        request: Request<pb::ReleaseTargetRequest>,
    ) -> Result<Response<pb::Target>, Status> {
        let req = request.get_ref();
        let target = &req.target;
        let answer = self
            .audited(&request, Action::ReleaseTarget, target, |op| async move {
                self.release_impl(&op, req).await
            })
            .await?;
        Ok(Response::new(answer))
    }

    type WatchJobStream = ReceiverStream<Result<pb::Job, Status>>;

    async fn watch_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let op = self.authorize(&request, Action::WatchJob, &request.get_ref().job_id)?;
        if self.parts.hub.streams.is_cancelled() {
            return Err(Error::Unavailable("the coordinator is shutting down".into()).into());
        }
        // Subscribe before reading, so no change between the two is missed.
        let events = self.parts.hub.subscribe();
        let job = self.job(&request.get_ref().job_id).await?;
        self.scope(
            &op,
            &job.target,
            &format!("job {} on {}", job.id, job.target),
        )?;
        let Some(slot) = self.parts.watches.try_open(&op.name) else {
            return Err(Status::resource_exhausted(format!(
                "operator {} already watches {} jobs at once; end some `--wait`/`jobs watch` \
                 commands, or poll with `lifeboat jobs show`",
                op.name,
                crate::hub::WatchSlots::PER_CALLER
            )));
        };
        let (tx, rx) = mpsc::channel(16);
        let parts = self.parts.clone();
        self.parts.hub.tasks.spawn(async move {
            let _slot = slot;
            jobs::watch(parts, job, events, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What the audit trail names for a restore: the backup, the destination and, for a partial
/// restore, how many tables and schemas and the new schema.
fn restore_object(req: &pb::RestoreRequest) -> String {
    let mut object = format!("{} -> {}", req.backup_id, req.to_target);
    if !req.tables.is_empty() || !req.schemas.is_empty() {
        object.push_str(&format!(
            " (partial: {} table(s), {} schema(s){})",
            req.tables.len(),
            req.schemas.len(),
            if req.into_schema.is_empty() {
                String::new()
            } else {
                format!(", into schema {}", req.into_schema)
            }
        ));
    }
    if req.with_globals {
        object.push_str(" (with globals)");
    }
    object
}
