//! Environment scopes (M12): an operator with `[[operator]] environments` acts, and sees,
//! only in those environments. A restore needs the backup's environment (reading) and the
//! destination's (writing). Lists are filtered; a call naming something outside the scope is
//! refused with PERMISSION_DENIED.

use lifeboat_common::names::TargetName;

use super::Control;
use crate::{
    error::Result,
    grpc::authz::{self, Operator},
};

impl Control {
    /// Whether `op` may see what belongs to `target`.
    pub(super) fn sees(&self, op: &Operator, target: &TargetName) -> bool {
        authz::in_environment(&self.parts.config, &op.name, target.env())
    }

    /// Whether `op` sees everything (no environment scope).
    pub(super) fn unscoped(&self, op: &Operator) -> bool {
        authz::is_unscoped(&self.parts.config, &op.name)
    }

    /// Refuses `what` on `target` outside `op`'s environments.
    pub(super) fn scope(&self, op: &Operator, target: &TargetName, what: &str) -> Result<()> {
        authz::check_environment(&self.parts.config, op, target.env(), what)
    }

    /// [`Self::scope`] for a target named in a request. A malformed name passes: the call
    /// itself refuses it with a better message.
    pub(super) fn scope_named(&self, op: &Operator, target: &str, what: &str) -> Result<()> {
        match TargetName::parse(target) {
            Ok(name) => authz::check_environment(&self.parts.config, op, name.env(), what),
            Err(_) => Ok(()),
        }
    }

    /// [`Self::scope`] for the target of backup `id`. An unknown or malformed id passes: the
    /// call itself reports it.
    pub(super) async fn scope_backup(&self, op: &Operator, id: &str, what: &str) -> Result<()> {
        if self.unscoped(op) {
            return Ok(());
        }
        match self.backup(id).await {
            Ok(b) => self.scope(op, &b.target, &format!("{what} of {}", b.target)),
            Err(_) => Ok(()),
        }
    }

    /// Refuses `what`, which spans every environment, to a scoped operator.
    pub(super) fn scope_all(&self, op: &Operator, what: &str) -> Result<()> {
        authz::check_unscoped(&self.parts.config, op, what)
    }
}
