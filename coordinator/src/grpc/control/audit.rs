//! `ListAudit`: the stored audit trail, newest first, paged by the last id shown. An operator
//! scoped to some environments sees its own actions and those naming a target in its
//! environments.

use lifeboat_proto::v1 as pb;

use super::Control;
use crate::{
    audit::{AuditFilter, AuditRecord},
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
        if req.after_id < 0 {
            return Err(Error::InvalidArgument(format!(
                "after_id {} is not an audit record id",
                req.after_id
            )));
        }
        if req.after_id > 0 && !self.parts.catalog.audit_record_exists(req.after_id).await? {
            return Err(Error::NotFound(format!(
                "audit record {} is not in the catalog (removed after jobs.audit_keep_days, or \
                 never there); list again from the newest",
                req.after_id
            )));
        }
        let filter = AuditFilter {
            actor,
            action: text("action", &req.action)?,
            since_ms: (req.since_ms > 0).then_some(req.since_ms),
            object: text("object", &req.object)?,
            after_id: None,
            limit: 0,
        };
        let me = format!("operator/{}", op.name);
        let catalog = &self.parts.catalog;
        // Every list is "all targets" here: a scoped operator's entries are filtered below.
        let (entries, more) = self
            .page(
                op,
                true,
                req.limit,
                (req.after_id > 0).then(|| req.after_id.to_string()),
                |e: &AuditRecord| e.id.to_string(),
                // Its own actions, and those whose object names (`ENV/NAME`,
                // `BACKUP -> ENV/NAME`) a target it sees.
                |e| {
                    self.unscoped(op)
                        || e.entry.actor == me
                        || e.entry.object.rsplit(' ').next().is_some_and(|t| {
                            t.parse::<lifeboat_common::names::TargetName>()
                                .is_ok_and(|t| self.sees(op, &t))
                        })
                },
                |cursor, step| {
                    let catalog = catalog.clone();
                    let filter = AuditFilter {
                        after_id: cursor.and_then(|c| c.parse().ok()),
                        limit: step,
                        ..filter.clone()
                    };
                    Box::pin(async move { catalog.list_audit(&filter).await })
                },
            )
            .await?;
        Ok(pb::ListAuditResponse {
            entries: entries.iter().map(wire::audit_to_pb).collect(),
            more,
        })
    }
}
