//! `PitrWindow`: a physical target's recoverable window, its base backups and its WAL archive
//! (see [`crate::pitr`]); `VerifyWal`: a verify job of that archive on the target's agent.

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::Control;
use crate::{
    error::{Error, Result},
    grpc::authz::Operator,
    model::{Job, JobKind},
};

impl Control {
    /// Queues a verify job naming no backup: the target's agent reads its whole WAL archive
    /// back and checks the chain from each base backup.
    pub(super) async fn verify_wal(&self, op: &Operator, target: &TargetName) -> Result<Job> {
        self.physical_backups(target).await?;
        let target = self.target(target).await?;
        let job = self.new_job(op, JobKind::Verify, &target);
        self.create(job).await
    }

    /// The target's physical base backups; an error if it has none and its agent reports no
    /// WAL archive (not a physical target, or nothing taken yet).
    async fn physical_backups(&self, target: &TargetName) -> Result<Vec<crate::model::Backup>> {
        // The target must exist, so a typo is an error, not an empty window.
        self.target(target).await?;
        let backups: Vec<_> = self
            .parts
            .catalog
            .list_backups(Some(target.as_str()), u32::MAX)
            .await?
            .into_iter()
            .filter(|b| b.is_physical())
            .collect();
        if backups.is_empty() && !self.parts.hub.is_active() {
            return Err(crate::grpc::needs_active(
                "a target without physical base backups (its WAL archive's report)",
            ));
        }
        if backups.is_empty() && self.parts.wal.get(target).is_none() {
            return Err(Error::FailedPrecondition(format!(
                "{target} has no physical base backup and its agent reports no WAL archive; set mode = \"physical\" on the target and take a base backup (lifeboat backup run {target} --wait)"
            )));
        }
        Ok(backups)
    }

    pub(super) async fn pitr_window(&self, target: &TargetName) -> Result<pb::PitrWindowResponse> {
        if !self.parts.hub.is_active() {
            // The WAL archive's end comes with the agent's heartbeats.
            return Err(crate::grpc::needs_active("the point-in-time window"));
        }
        let backups = self.physical_backups(target).await?;
        let reported = self.parts.wal.get(target);
        let window = crate::pitr::window(&backups, reported.as_ref().map(|r| &r.status));
        Ok(pb::PitrWindowResponse {
            target: target.to_string(),
            earliest_ms: window.map_or(0, |w| w.0),
            latest_ms: window.map_or(0, |w| w.1),
            base_backups: self.backups_pb(&backups).await?,
            wal: reported.as_ref().map(|r| pb::WalStatus::from(&r.status)),
            reported_at_ms: reported.map_or(0, |r| r.received_ms),
        })
    }
}
