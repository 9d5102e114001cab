//! What every Control call goes through: authorization from the certificate (refusals
//! audited), the audit of what changed, and the lookups that turn request fields into catalog
//! records with a message for people when they are not there.

use lifeboat_common::names::TargetName;
use tonic::{Request, Status};

use super::{Control, backup_id};
use crate::{
    error::{Error, Result},
    grpc::authz::{Action, Operator, authorize},
    model::{Backup, Job, TargetRecord},
    wire,
};

impl Control {
    /// Checks the caller may perform `action`; refusals are audited (logged and stored in the
    /// catalog) with the certificate identity.
    pub(super) fn authorize<T>(
        &self,
        request: &Request<T>,
        action: Action,
        object: &str,
    ) -> Result<Operator> {
        let identity = crate::grpc::identity(request)?;
        authorize(&self.parts.config, &identity, action).inspect_err(|e| {
            // The same form as the allowed actions' actors (`operator/alice`).
            let who = identity.uri().trim_start_matches("lifeboat://").to_owned();
            let reason = Error::PermissionDenied(e.public_message());
            crate::audit::record_denied(
                &self.parts.denied,
                &self.parts.metrics,
                &who,
                action.name(),
                object,
                &reason,
            );
        })
    }

    /// The frame of every changing Control call: authorize `action` on `object` (a refusal is
    /// audited as denied), run `act` as the operator, audit how it ended, and hand the outcome
    /// back as the call's answer.
    pub(super) async fn audited<R, T, F, Fut>(
        &self,
        request: &Request<R>,
        action: Action,
        object: &str,
        act: F,
    ) -> Result<T, Status>
    where
        F: FnOnce(Operator) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let op = self.authorize(request, action, object)?;
        let result = act(op.clone()).await;
        self.audit(&op, action, object, &result).await;
        Ok(result?)
    }

    /// Logs an operator action and how it ended (once, target `audit`), and stores it in the
    /// catalog for `lifeboat audit list`.
    pub(super) async fn audit<T>(
        &self,
        op: &Operator,
        action: Action,
        object: &str,
        result: &Result<T>,
    ) {
        crate::audit::record_result(
            &self.parts.catalog,
            &op.name,
            op.role,
            action.name(),
            object,
            result,
        )
        .await;
    }

    pub(super) async fn target(&self, name: &TargetName) -> Result<TargetRecord> {
        self.parts
            .catalog
            .get_target(name.as_str())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "target {name} is not registered; run `lifeboat targets list` to see the \
                     targets agents have declared"
                ))
            })
    }

    pub(super) async fn backup(&self, id: &str) -> Result<Backup> {
        backup_id(id)?;
        self.parts.catalog.get_backup(id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "backup {id} is not in the catalog; run `lifeboat backup list` to see backups"
            ))
        })
    }

    pub(super) async fn job(&self, id: &str) -> Result<Job> {
        wire::job_id(id)?;
        self.parts.catalog.get_job(id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "job {id} does not exist; run `lifeboat jobs list` to see jobs"
            ))
        })
    }
}
