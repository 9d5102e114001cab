//! Cancelling a job where the agent's session is: on the active coordinator. An operator's
//! cancel through a coordinator standing by is recorded in the job's row
//! (`cancel_requested_by`, ADR 0038); the active one carries it out when a notice of it arrives
//! (bridge.rs) and at every lease check (lease.rs), so a lost notice delays it by seconds.

use crate::{
    catalog::{Catalog, CatalogError},
    hub::Hub,
    jobs::Jobs,
    model::{Finish, Job, JobState},
    to_agent::ToAgent,
};

/// What cancelling a job did.
#[derive(Debug)]
pub enum Cancelled {
    /// The agent runs it and was asked to stop: it reports the job cancelled.
    AgentAsked,
    /// It ended cancelled now (the job as it ended), or `None`: it had ended meanwhile.
    Ended(Option<Box<Job>>),
}

/// Cancels `job` (not ended) for `by` here, where the agents' sessions are.
pub async fn cancel_here(
    hub: &Hub,
    jobs: &Jobs,
    job: &Job,
    by: &str,
) -> Result<Cancelled, CatalogError> {
    let session = hub.session(&job.agent);
    let ask_agent = |session: &crate::hub::SessionHandle| {
        session.try_send(ToAgent::Cancel {
            job_id: job.id.clone(),
        })
    };
    if job.state == JobState::Running
        && let Some(session) = &session
        && ask_agent(session)
    {
        return Ok(Cancelled::AgentAsked);
    }
    if job.is_assigned()
        && let Some(session) = &session
    {
        // Handed out but not accepted: stop it on the agent too.
        ask_agent(session);
    }
    let finish = Finish {
        state: JobState::Cancelled,
        finished_at_ms: lifeboat_common::time::now_ms(),
        error: format!("cancelled by {by}"),
        detail: String::new(),
        database: None,
        report: Default::default(),
    };
    Ok(Cancelled::Ended(
        jobs.finish(&job.id, &finish).await?.map(Box::new),
    ))
}

/// Carries out the cancels asked through a standby, on the active coordinator. A running job
/// is asked of its agent again each time until the agent reports it.
pub async fn apply_requests(hub: &Hub, catalog: &Catalog, jobs: &Jobs) -> Result<(), CatalogError> {
    if !hub.is_active() {
        return Ok(());
    }
    for (id, by) in catalog.cancel_requests().await? {
        let Some(job) = catalog.get_job(&id).await? else {
            continue;
        };
        if job.state.is_terminal() {
            continue;
        }
        if let Cancelled::Ended(Some(_)) = cancel_here(hub, jobs, &job, &by).await? {
            tracing::info!(job_id = %id, requested_by = %by, "cancelled a job as asked through a standby");
        }
    }
    Ok(())
}
