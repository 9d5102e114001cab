//! `ListAudit`: the stored audit trail, newest first. An operator scoped to some
//! environments sees its own actions and those naming a target in its environments.

use lifeboat_proto::v1 as pb;

use super::{Control, limit};
use crate::{
    audit::AuditFilter,
    error::{Error, Result},
    grpc::authz::Operator,
    wire,
};

impl Control {
    pub(super) async fn list_audit_impl(
        &self,
        op: &Operator,
        req: &pb::ListAuditRequest,
    ) -> Result<pb::ListAuditResponse> {
        let text = |what: &str, v: &str| -> Result<Option<String>> {
            if v.is_empty() {
                return Ok(None);
            }
            if v.len() > 256 || v.chars().any(char::is_control) {
                return Err(Error::InvalidArgument(format!(
                    "{what} filter must be one line of at most 256 bytes"
                )));
            }
            Ok(Some(v.to_owned()))
        };
        // Actors are stored as certificate identities; a bare name means an operator.
        let actor = text("actor", &req.actor)?.map(|a| {
            if a.contains('/') {
                a
            } else {
                format!("operator/{a}")
            }
        });
        let filter = AuditFilter {
            actor,
            action: text("action", &req.action)?,
            since_ms: (req.since_ms > 0).then_some(req.since_ms),
            object: text("object", &req.object)?,
            limit: limit(req.limit),
        };
        let mut entries = self.parts.catalog.list_audit(&filter).await?;
        if !self.unscoped(op) {
            // Objects name targets (`ENV/NAME`, `BACKUP -> ENV/NAME`) or bare ids.
            let me = format!("operator/{}", op.name);
            entries.retain(|e| {
                e.entry.actor == me
                    || e.entry.object.rsplit(' ').next().is_some_and(|t| {
                        t.parse::<lifeboat_common::names::TargetName>()
                            .is_ok_and(|t| self.sees(op, &t))
                    })
            });
        }
        Ok(pb::ListAuditResponse {
            entries: entries.iter().map(wire::audit_to_pb).collect(),
        })
    }
}
