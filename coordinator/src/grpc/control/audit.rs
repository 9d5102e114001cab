//! `ListAudit`: the stored audit trail, newest first.

use lifeboat_proto::v1 as pb;

use super::{Control, limit};
use crate::{
    audit::AuditFilter,
    error::{Error, Result},
    wire,
};

impl Control {
    pub(super) async fn list_audit_impl(
        &self,
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
        let entries = self.hub.catalog.list_audit(&filter).await?;
        Ok(pb::ListAuditResponse {
            entries: entries.iter().map(wire::audit_to_pb).collect(),
        })
    }
}
