//! `RebuildCatalog`: record the backups the repositories hold (see [`crate::rebuild`]).

use lifeboat_proto::v1 as pb;

use super::Control;
use crate::{error::Result, grpc::authz::Operator, wire};

impl Control {
    pub(super) async fn rebuild_impl(
        &self,
        op: &Operator,
        req: &pb::RebuildCatalogRequest,
    ) -> Result<pb::RebuildCatalogResponse> {
        if !self.parts.hub.is_active() {
            return Err(crate::grpc::needs_active("a catalog rebuild"));
        }
        let scope = wire::rebuild_request(req)?;
        let report = crate::rebuild::run(&self.parts.rebuilder(), &op.name, &scope).await?;
        let resp = wire::rebuild_to_pb(&report);
        tracing::info!(
            operator = %op.name,
            action = if scope.dry_run { "rebuild_catalog_dry_run" } else { "rebuild_catalog" },
            trust_cross_environment = scope.trust_cross_environment,
            added = resp.added,
            updated = resp.updated,
            unchanged = resp.unchanged,
            conflicts = resp.conflicts,
            missing = resp.missing,
            skipped = resp.skipped,
            refused = resp.refused,
            damaged = resp.damaged,
            failed_listings = resp.listings.iter().filter(|l| !l.error.is_empty()).count(),
            "catalog rebuild"
        );
        Ok(resp)
    }
}
