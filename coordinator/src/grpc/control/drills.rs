//! `drill run` and `drill list`.

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::{Control, parse_target};
use crate::{
    error::{Error, Result},
    grpc::authz::Operator,
    model::{Drill, Job},
};

impl Control {
    /// Queues a drill of `req.target` into `req.into` (default: the target itself).
    pub(super) async fn start_drill(
        &self,
        op: &Operator,
        req: &pb::StartDrillRequest,
    ) -> Result<Job> {
        let of = parse_target(&req.target)?;
        self.scope(op, &of, &format!("a drill of {of}"))?;
        let into = if req.into.is_empty() {
            of.clone()
        } else {
            parse_target(&req.into)?
        };
        self.scope(op, &into, &format!("a drill into {into}"))?;
        let into = self.target(&into).await?;
        let backup_id = Some(req.backup_id.as_str()).filter(|b| !b.is_empty());
        if let Some(id) = backup_id {
            super::backup_id(id)?;
        }
        let backup = crate::drills::pick_backup(&self.parts.catalog, &of, backup_id).await?;
        let job = crate::drills::drill_job(
            &of,
            &into,
            &backup,
            &op.name,
            lifeboat_common::time::now_ms(),
        )?;
        self.create(job).await
    }

    /// Drills newest first, a page after `req.after`, and whether more follow. An operator
    /// scoped to some environments sees the drills whose drilled and restored-into targets are
    /// both theirs; a cursor outside them is answered as unknown.
    pub(super) async fn list_drills(
        &self,
        op: &Operator,
        req: &pb::ListDrillsRequest,
    ) -> Result<(Vec<pb::Drill>, bool)> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            self.scope(op, &name, &format!("the drills of {name}"))?;
            Some(name)
        };
        let after = if req.after.is_empty() {
            None
        } else {
            crate::wire::job_id(&req.after)?;
            // A drill the operator may not see is answered as one that does not exist: a
            // scoped operator learns nothing of other environments' drills.
            let unknown = || {
                Error::NotFound(format!(
                    "no drill with job id {}; page with the job id of a drill the previous \
                     page listed",
                    req.after
                ))
            };
            let d = self
                .parts
                .catalog
                .get_drill(&req.after)
                .await?
                .ok_or_else(unknown)?;
            if !(self.sees(op, &d.target) && self.sees(op, &d.drill_target)) {
                return Err(unknown());
            }
            Some(req.after.clone())
        };
        let target = target.as_ref().map(TargetName::as_str);
        let catalog = &self.parts.catalog;
        // Scoped to one target, the drills of another environment may still be restored
        // into it: the filter applies there too.
        let (drills, more) = self
            .page(
                op,
                true,
                req.limit,
                after,
                |d: &Drill| d.job_id.clone(),
                |d| self.sees(op, &d.target) && self.sees(op, &d.drill_target),
                |cursor, step| {
                    let (catalog, target) = (catalog.clone(), target.map(str::to_owned));
                    Box::pin(async move {
                        catalog
                            .list_drills_after(target.as_deref(), cursor.as_deref(), step)
                            .await
                    })
                },
            )
            .await?;
        Ok((drills.iter().map(crate::wire::drill_to_pb).collect(), more))
    }
}
