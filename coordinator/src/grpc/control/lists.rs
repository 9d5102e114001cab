//! `ListBackups` and `ListJobs`: newest first, paged by the last id shown (ADR 0034). An
//! operator scoped to some environments sees only theirs; a cursor outside them is refused.

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::{Control, MAX_LIMIT, limit, parse_target};
use crate::{
    error::{Error, Result},
    grpc::authz::Operator,
    model::{Backup, Job},
};

/// A page read from the catalog (`page`'s source).
pub(super) type Fetch<T> = std::pin::Pin<
    Box<dyn Future<Output = std::result::Result<Vec<T>, crate::catalog::CatalogError>> + Send>,
>;

impl Control {
    /// Whether an agent has a session: the active coordinator's own view; on a standby (which
    /// holds none), a heartbeat recorded in `agents` within a session's idle limit.
    pub(super) fn connected(
        &self,
        agents: &[crate::model::AgentRecord],
    ) -> impl Fn(&str) -> bool + use<> {
        let live: std::collections::HashSet<String> = if self.parts.hub.is_active() {
            self.parts.hub.connected_agents().into_keys().collect()
        } else {
            let limit = crate::grpc::session::idle_limit(&self.parts.config.jobs);
            let since = lifeboat_common::time::now_ms()
                .saturating_sub(i64::try_from(limit.as_millis()).unwrap_or(i64::MAX));
            agents
                .iter()
                .filter(|a| a.last_seen_ms >= since)
                .map(|a| a.name.clone())
                .collect()
        };
        move |agent: &str| live.contains(agent)
    }

    /// One page of a list, newest first, after `after` (a page's last id, `id_of` an item's):
    /// at most `limit` items `op` may see (`visible`), and whether more follow. An unscoped
    /// read (or one of a single target, already checked) asks the catalog for one more than
    /// the page; an operator scoped to some environments listing everything gets the list
    /// filtered here, read in pages of [`MAX_LIMIT`] until it has one more than the page or the
    /// list ends.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn page<T>(
        &self,
        op: &Operator,
        all_targets: bool,
        limit_asked: u32,
        after: Option<String>,
        id_of: impl Fn(&T) -> String,
        visible: impl Fn(&T) -> bool,
        mut fetch: impl FnMut(Option<String>, u32) -> Fetch<T>,
    ) -> Result<(Vec<T>, bool)> {
        let want = limit(limit_asked) as usize;
        let step = if all_targets && !self.unscoped(op) {
            MAX_LIMIT
        } else {
            want as u32 + 1
        };
        let (mut items, mut cursor) = (Vec::new(), after);
        loop {
            let page = fetch(cursor.take(), step).await.map_err(Error::from)?;
            let full = page.len() == step as usize;
            cursor = page.last().map(&id_of);
            items.extend(page.into_iter().filter(|t| visible(t)));
            if items.len() > want || !full {
                break;
            }
        }
        let more = items.len() > want;
        items.truncate(want);
        Ok((items, more))
    }

    pub(super) async fn list_backups_impl(
        &self,
        op: &Operator,
        req: pb::ListBackupsRequest,
    ) -> Result<pb::ListBackupsResponse> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            self.scope(op, &name, &format!("the backups of {name}"))?;
            Some(name)
        };
        let after = if req.after.is_empty() {
            None
        } else {
            let b = self.backup(&req.after).await?;
            self.scope(op, &b.target, &format!("the backups after {}", req.after))?;
            Some(req.after.clone())
        };
        let target = target.as_ref().map(TargetName::as_str);
        let catalog = &self.parts.catalog;
        let (backups, more) = self
            .page(
                op,
                target.is_none(),
                req.limit,
                after,
                |b: &Backup| b.backup_id.to_string(),
                |b| self.sees(op, &b.target),
                |cursor, step| {
                    let (catalog, target) = (catalog.clone(), target.map(str::to_owned));
                    Box::pin(async move {
                        catalog
                            .list_backups_after(target.as_deref(), cursor.as_deref(), step)
                            .await
                    })
                },
            )
            .await?;
        Ok(pb::ListBackupsResponse {
            backups: self.backups_pb(&backups).await?,
            more,
        })
    }

    pub(super) async fn list_jobs_impl(
        &self,
        op: &Operator,
        req: pb::ListJobsRequest,
    ) -> Result<pb::ListJobsResponse> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            self.scope(op, &name, &format!("the jobs of {name}"))?;
            Some(name)
        };
        let after = if req.after.is_empty() {
            None
        } else {
            let j = self.job(&req.after).await?;
            self.scope(op, &j.target, &format!("the jobs after {}", req.after))?;
            Some(req.after.clone())
        };
        let target = target.as_ref().map(TargetName::as_str);
        let catalog = &self.parts.catalog;
        let (jobs, more) = self
            .page(
                op,
                target.is_none(),
                req.limit,
                after,
                |j: &Job| j.id.clone(),
                |j| self.sees(op, &j.target),
                |cursor, step| {
                    let (catalog, target) = (catalog.clone(), target.map(str::to_owned));
                    let active = req.active_only;
                    Box::pin(async move {
                        catalog
                            .list_jobs_after(target.as_deref(), active, cursor.as_deref(), step)
                            .await
                    })
                },
            )
            .await?;
        Ok(pb::ListJobsResponse {
            // Reports can be long; `jobs show` and `jobs watch` carry them.
            jobs: jobs
                .iter()
                .map(|j| pb::Job {
                    report: None,
                    ..pb::Job::from(j)
                })
                .collect(),
            more,
        })
    }
}
