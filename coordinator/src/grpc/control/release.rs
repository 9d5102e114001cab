//! `ReleaseTarget` (admin): hands a target from the agent that owns it to a connected agent
//! that declared it and was refused (M6: a squatted name no longer locks the real agent out).

use lifeboat_proto::v1 as pb;

use super::{Control, parse_target};
use crate::{
    error::{Error, Result},
    grpc::authz::Operator,
    wire,
};

impl Control {
    pub(super) async fn release_impl(
        &self,
        op: &Operator,
        req: &pb::ReleaseTargetRequest,
    ) -> Result<pb::Target> {
        if !self.parts.hub.is_active() {
            return Err(crate::grpc::needs_active("releasing a target"));
        }
        let name = parse_target(&req.target)?;
        self.scope(op, &name, &format!("releasing {name}"))?;
        let target = self.target(&name).await?;
        let waiting: Vec<_> = self
            .parts
            .claims
            .waiting(&name)
            .into_iter()
            .filter(|c| self.parts.hub.is_connected(&c.agent))
            .collect();
        let to = match (req.to_agent.as_str(), waiting.as_slice()) {
            ("", []) => {
                return Err(Error::FailedPrecondition(format!(
                    "no connected agent waits for {name} (it is registered to agent {}); start \
                     the agent that should own it, so it declares {name}, then release again",
                    target.agent
                )));
            }
            ("", [one]) => one.agent.clone(),
            ("", many) => {
                let names: Vec<_> = many.iter().map(|c| c.agent.as_str()).collect();
                return Err(Error::FailedPrecondition(format!(
                    "agents {} all wait for {name}; say which one with --to AGENT",
                    names.join(", ")
                )));
            }
            (agent, _) => {
                if !waiting.iter().any(|c| c.agent == agent) {
                    return Err(Error::FailedPrecondition(format!(
                        "agent {agent} is not connected with a declaration of {name}; start it \
                         with {name} in its config, then release again"
                    )));
                }
                agent.to_owned()
            }
        };
        if to == target.agent {
            return Err(Error::FailedPrecondition(format!(
                "target {name} is already registered to agent {to}"
            )));
        }
        let active: Vec<_> = self
            .parts
            .catalog
            .unfinished_jobs()
            .await?
            .into_iter()
            .filter(|j| j.target == name)
            .map(|j| j.id)
            .collect();
        if !active.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "target {name} has unfinished jobs ({}); cancel them with `lifeboat jobs cancel \
                 JOB` or wait, then release again",
                active.join(", ")
            )));
        }
        let Some(claim) = self.parts.claims.take(&name, &to) else {
            return Err(Error::FailedPrecondition(format!(
                "agent {to} stopped waiting for {name} meanwhile; release again"
            )));
        };
        // No job may be handed out for the target while it changes hands.
        let moved = {
            let _guard = self.parts.hub.dispatch_lock.lock().await;
            self.parts
                .catalog
                .move_target(name.as_str(), &target.agent, &to, &claim.decl)
                .await?
        };
        if !moved {
            return Err(Error::FailedPrecondition(format!(
                "target {name} changed hands meanwhile; run `lifeboat targets list` and release \
                 again"
            )));
        }
        tracing::warn!(
            target = %name,
            from = %target.agent,
            to = %to,
            operator = %op.name,
            "target released to another agent"
        );
        self.parts.hub.request_dispatch();
        let summary = self
            .parts
            .catalog
            .list_targets()
            .await?
            .into_iter()
            .find(|t| t.target.name == name)
            .ok_or_else(|| Error::NotFound(format!("target {name} vanished after its release")))?;
        Ok(wire::target_to_pb(
            &summary,
            self.parts.hub.is_connected(&to),
        ))
    }
}
