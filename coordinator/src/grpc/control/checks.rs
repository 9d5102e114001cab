//! `CheckTarget` (a read-only check job on the target's agent) and the pin markers that
//! follow `PinBackup` / `UnpinBackup` into the repository.

use super::{Control, parse_target};
use crate::{
    error::Result,
    grpc::authz::Operator,
    model::{Backup, Job, JobKind},
};

impl Control {
    pub(super) async fn check_target_impl(&self, op: &Operator, target: &str) -> Result<Job> {
        let target = self.target(&parse_target(target)?).await?;
        let job = self.new_job(op, JobKind::Check, &target);
        self.create(job).await
    }

    /// Queues the job that writes (or removes) the backup's pin marker beside its manifest,
    /// so a catalog rebuild finds the pin again. The catalog's pin is what retention obeys; a
    /// marker that cannot be queued now is logged, not an error of the pin itself.
    pub(super) async fn queue_pin_marker(&self, op: &Operator, backup: &Backup) {
        let queued = async {
            let target = self.target(&backup.target).await?;
            let mut job = self.new_job(op, JobKind::Pin, &target);
            job.backup_id = Some(backup.backup_id.clone());
            self.create(job).await
        };
        if let Err(e) = queued.await {
            tracing::warn!(
                backup_id = %backup.backup_id,
                target = %backup.target,
                "failed to queue the pin marker job: {e}; the pin holds in the catalog, and the \
                 coordinator queues the marker again within minutes once the agent is connected"
            );
        }
    }
}
