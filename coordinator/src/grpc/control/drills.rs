//! `drill run` and `drill list`.

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::{Control, limit, parse_target};
use crate::{error::Result, grpc::authz::Operator, model::Job};

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

    pub(super) async fn list_drills(
        &self,
        op: &Operator,
        req: &pb::ListDrillsRequest,
    ) -> Result<Vec<pb::Drill>> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            self.scope(op, &name, &format!("the drills of {name}"))?;
            Some(name)
        };
        let mut drills = self
            .parts
            .catalog
            .list_drills(
                target.as_ref().map(TargetName::as_str),
                if self.unscoped(op) {
                    limit(req.limit)
                } else {
                    super::MAX_LIMIT
                },
            )
            .await?;
        drills.retain(|d| self.sees(op, &d.target) && self.sees(op, &d.drill_target));
        drills.truncate(limit(req.limit) as usize);
        Ok(drills.iter().map(crate::wire::drill_to_pb).collect())
    }
}
