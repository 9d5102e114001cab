//! `lifeboat jobs list|show|cancel|watch`, and how a newly started job is printed.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    cli::{GlobalArgs, JobsCommand, JobsListArgs, OutputFormat},
    client::Conn,
    output::{self, Render, key_values, or_none},
    progress,
    views::JobView,
};

pub async fn run(cmd: JobsCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        JobsCommand::List(args) => list(args, global, out).await,
        JobsCommand::Show(args) => show(&args.id, global, out).await,
        JobsCommand::Cancel(args) => cancel(&args.id, global, out).await,
        JobsCommand::Watch(args) => {
            let conn = Conn::connect(global).await?;
            progress::wait_and_report(&conn, &args.id, out, global.output).await
        }
    }
}

async fn list(args: JobsListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListJobsRequest {
        target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        limit: args.limit.limit.unwrap_or(0),
        active_only: args.active,
        after: args.after.clone().unwrap_or_default(),
    });
    let resp = conn
        .unary("list jobs", |mut c| async move { c.list_jobs(req).await })
        .await?;
    let jobs: Vec<JobView> = resp.jobs.iter().map(JobView::from).collect();
    output::emit(out, global.output, &jobs)?;
    if let (true, Some(last)) = (resp.more, resp.jobs.last()) {
        output::more_hint("jobs", &last.job_id);
    }
    Ok(())
}

async fn show(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::GetJobRequest {
        job_id: id.to_owned(),
    });
    let job = conn
        .unary("show job", |mut c| async move { c.get_job(req).await })
        .await?;
    output::emit(out, global.output, &JobView::from(&job))
}

async fn cancel(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::CancelJobRequest {
        job_id: id.to_owned(),
    });
    let job = conn
        .unary("cancel job", |mut c| async move { c.cancel_job(req).await })
        .await?;
    output::emit(out, global.output, &Cancelled(JobView::from(&job)))
}

/// A job after a cancel request: the job itself in JSON, a sentence in text.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Cancelled(JobView);

impl Render for Cancelled {
    fn table(&self) -> String {
        let j = &self.0;
        if j.state == "cancelled" {
            format!("{} job {} cancelled\n", j.kind, j.job_id)
        } else {
            format!(
                "asked the agent to cancel {} job {} (now {}); follow it with `lifeboat jobs \
                 watch {}`\n",
                j.kind, j.job_id, j.state, j.job_id
            )
        }
    }
}

/// A job that was just started: the job in JSON, its ids and how to follow it in text.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Started(pub JobView);

impl Render for Started {
    fn table(&self) -> String {
        let j = &self.0;
        let opt = |v: &Option<String>| or_none(v.as_deref().unwrap_or_default());
        let mut pairs = vec![
            ("job", j.job_id.clone()),
            ("kind", j.kind.to_owned()),
            ("state", j.state.to_owned()),
            ("target", or_none(&j.target)),
            ("backup", opt(&j.backup_id)),
        ];
        if j.kind == "restore" {
            pairs.push((
                "database",
                j.database
                    .clone()
                    .unwrap_or_else(|| "(a new one, named by the agent)".into()),
            ));
            pairs.push(("clean", if j.clean { "yes" } else { "no" }.into()));
        }
        let mut s = key_values(&pairs);
        s.push_str(&format!(
            "\nfollow it with `lifeboat jobs watch {}`\n",
            j.job_id
        ));
        s
    }
}

pub fn print_started(out: &mut dyn Write, format: OutputFormat, job: &pb::Job) -> Result<()> {
    output::emit(out, format, &Started(JobView::from(job)))
}
