//! `AgentGateway.Session`: admission of an agent session (certificate, `Hello`, targets,
//! reconciliation of the jobs it was running). The conversation after `Welcome` is in
//! `session.rs`.

use std::{collections::HashSet, time::Duration};

use lifeboat_common::identity::Identity;
use lifeboat_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::session::{Session, inbound_error};
use crate::{
    dispatch,
    error::Error,
    hub::Outbound,
    model::{AgentRecord, JobState},
    parts::Parts,
    to_agent::{ToAgent, Welcome},
    wire::{self, AgentMessage},
};

/// How long an agent may take to send `Hello` after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages queued for one agent before the dispatcher backs off.
const OUTBOUND_CAPACITY: usize = 256;

pub const AGENT_RESTARTED: &str =
    "agent restarted while the job was running; the job's outcome is unknown, run it again";

pub struct AgentGateway {
    parts: Parts,
    revocations: lifeboat_common::tls::Revocations,
}

impl AgentGateway {
    pub fn new(parts: Parts, revocations: lifeboat_common::tls::Revocations) -> Self {
        if parts.config.allow_any_agent {
            tracing::warn!(
                "allow_any_agent = true: every agent certificate of the CA may connect and claim \
                 targets in any environment; list the agents in [[agent]] tables to pin each to \
                 its environment"
            );
        }
        Self { parts, revocations }
    }
}

#[tonic::async_trait]
impl pb::agent_gateway_server::AgentGateway for AgentGateway {
    type SessionStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>,
    >;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let identity = super::identity(&request)?;
        // The session ends if this certificate is revoked while it runs.
        let serial = request.peer_certs().and_then(|c| {
            c.first()
                .and_then(|l| lifeboat_common::tls::serial_of_der(l))
        });
        let name = match &identity {
            Identity::Agent(name) => name.clone(),
            Identity::Operator(_) => {
                tracing::warn!(%identity, "refused agent session: operator certificate");
                return Err(Error::PermissionDenied(format!(
                    "{identity} is an operator certificate; only agent certificates may open \
                     the agent session"
                ))
                .into());
            }
        };
        if self.parts.hub.streams.is_cancelled() {
            return Err(Error::Unavailable(
                "the coordinator is shutting down; reconnect in a moment".into(),
            )
            .into());
        }
        if !self.parts.hub.is_active() {
            tracing::debug!(agent = %name, "refused agent session: standing by");
            return Err(super::standing_by());
        }
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "the first message must be Hello; none arrived within {} s",
                    HELLO_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(status)) => return Err(inbound_error(status)),
            Ok(Ok(None)) => {
                return Err(Status::invalid_argument(
                    "the stream ended before Hello; send Hello first",
                ));
            }
            Ok(Ok(Some(m))) => m,
        };
        let hello = match AgentMessage::try_from(first) {
            Ok(AgentMessage::Hello(h)) => h,
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Hello",
                ));
            }
            Err(e) => {
                tracing::warn!(%identity, "refused agent session: {e}");
                return Err(e.into());
            }
        };
        if hello.agent != name {
            tracing::warn!(
                %identity,
                claimed = %hello.agent,
                "refused agent session: Hello names another agent"
            );
            return Err(Error::PermissionDenied(format!(
                "certificate is for agent {name} but Hello names agent {}; an agent may only \
                 connect under the name in its certificate",
                hello.agent
            ))
            .into());
        }

        // Listed agents serve only their environment; unlisted ones are refused unless the
        // config says allow_any_agent = true (M6). Refusals do not describe the config (L9).
        let refusal = match self.parts.config.agents.get(&name) {
            None if self.parts.config.allow_any_agent => None,
            None => Some(format!(
                "agent {name} is not admitted by this coordinator; ask an administrator to admit \
                 agent {name} for environment {}",
                hello.environment
            )),
            Some(env) if *env != hello.environment => Some(format!(
                "agent {name} is admitted for environment {env} only, but its Hello says {}; fix \
                 the agent's environment, or ask an administrator to admit it for {}",
                hello.environment, hello.environment
            )),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            tracing::warn!(%identity, "refused agent session: {why}");
            return Err(Error::PermissionDenied(why).into());
        }

        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let handle = admit(&self.parts, &hello, tx.clone()).await?;
        tracing::info!(
            agent = %name,
            environment = %hello.environment,
            version = %hello.version,
            targets = hello.targets.len(),
            running_jobs = hello.running_jobs.len(),
            "agent connected"
        );
        let session = Session::new(self.parts.clone(), name, hello.environment.clone(), handle)
            .ends_on_revocation(serial, self.revocations.clone());
        self.parts.hub.tasks.spawn(session.run(inbound));
        // The wire form is made here, where the stream leaves the coordinator.
        let out = tokio_stream::StreamExt::map(ReceiverStream::new(rx), |m: Outbound| {
            m.map(|m| pb::CoordinatorMessage::from(&m))
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// Registers the agent and its targets, reconciles the jobs it was given, sends `Welcome`
/// and opens its session for dispatch.
async fn admit(
    parts: &Parts,
    hello: &wire::Hello,
    tx: mpsc::Sender<Outbound>,
) -> Result<crate::hub::SessionHandle, Status> {
    let now = lifeboat_common::time::now_ms();
    parts
        .catalog
        .upsert_agent(&AgentRecord {
            name: hello.agent.clone(),
            environment: hello.environment.clone(),
            version: hello.version.clone(),
            last_seen_ms: now,
            clock_skew_ms: hello.clock_unix_ms.saturating_sub(now),
            max_concurrent_jobs: hello.max_concurrent_jobs,
        })
        .await
        .map_err(Error::from)?;
    let conflicts = parts
        .catalog
        .register_targets(&hello.agent, &hello.environment, &hello.targets)
        .await
        .map_err(Error::from)?;
    // A target another agent owns is refused alone: the others are registered, the agent is
    // told in Welcome, and the declaration waits for an admin's `targets release` (M6).
    let mut refused = Vec::new();
    let mut claims = Vec::new();
    for c in &conflicts {
        let Some(decl) = hello.targets.iter().find(|t| t.name == c.target.name()) else {
            continue;
        };
        tracing::warn!(
            agent = %hello.agent,
            target = %c.target,
            owner = %c.owner,
            "refused a declared target: another agent owns it; `lifeboat targets release {}` \
             hands it to this agent",
            c.target
        );
        refused.push((
            decl.name.clone(),
            format!(
                "target {} is registered to agent {}; remove it from this agent's config, or \
                 ask an administrator to run `lifeboat targets release {}` if it belongs here",
                c.target, c.owner, c.target
            ),
        ));
        claims.push((c.target.clone(), decl.clone()));
    }

    let welcome = ToAgent::Welcome(Welcome {
        clock_unix_ms: now,
        heartbeat_interval_secs: u32::try_from(parts.config.jobs.heartbeat_interval.as_secs())
            .unwrap_or(u32::MAX),
        refused_targets: refused,
    });
    // The channel is new and empty: this cannot fail or wait.
    if tx.try_send(Ok(welcome)).is_err() {
        return Err(Status::unavailable("the agent went away during Hello"));
    }

    // No job may be handed out while the agent's jobs are reconciled.
    let _guard = parts.hub.dispatch_lock.lock().await;
    parts.hub.drop_session(&hello.agent);
    let cancels = reconcile(parts, &hello.agent, &hello.running_jobs)
        .await
        .map_err(Error::from)?;
    parts
        .listings
        .set_repositories(&hello.agent, &hello.repositories);
    parts
        .metrics
        .declare_repositories(&hello.agent, &hello.repositories);
    let handle = parts
        .hub
        .register_session(&hello.agent, hello.max_concurrent_jobs, tx);
    parts.claims.set(&hello.agent, claims);
    for job_id in cancels {
        handle.try_send(ToAgent::Cancel { job_id });
    }
    parts.hub.request_dispatch();
    Ok(handle)
}

/// Brings the catalog in line with the jobs a (re)connecting agent says it knows. Returns
/// jobs the agent still runs that already ended here (it should stop them).
async fn reconcile(
    parts: &Parts,
    agent: &str,
    running: &[String],
) -> Result<Vec<String>, crate::catalog::CatalogError> {
    let known: HashSet<&str> = running.iter().map(String::as_str).collect();
    let now = lifeboat_common::time::now_ms();
    let mut seen = HashSet::new();
    for job in parts.catalog.unfinished_jobs().await? {
        if job.agent != agent || !job.is_assigned() {
            continue;
        }
        seen.insert(job.id.clone());
        match (job.state, known.contains(job.id.as_str())) {
            (JobState::Running, true) => {}
            (JobState::Running, false) => {
                tracing::warn!(
                    job_id = %job.id,
                    target = %job.target,
                    backup_id = job.backup(),
                    %agent,
                    "{AGENT_RESTARTED}"
                );
                if let Err(e) = dispatch::fail(&parts.jobs, &job, AGENT_RESTARTED.into()).await {
                    tracing::warn!(job_id = %job.id, "failed to fail a lost job: {e:#}");
                }
            }
            (_, true) => {
                // StartJob arrived but JobAccepted did not: the agent has it.
                parts.jobs.start(&job.id, now).await?;
            }
            (_, false) => {
                // StartJob never arrived: hand it out again.
                parts.catalog.undo_dispatch(&job.id).await?;
            }
        }
    }
    // Jobs the agent still runs that were cancelled or expired here meanwhile: it should stop
    // them. (A succeeded job can only be listed because its result awaits an ack.)
    let mut cancels = Vec::new();
    for id in running.iter().filter(|id| !seen.contains(*id)) {
        if let Some(job) = parts.catalog.get_job(id).await?
            && job.agent == agent
            && matches!(job.state, JobState::Failed | JobState::Cancelled)
        {
            cancels.push(job.id);
        }
    }
    Ok(cancels)
}
