//! `lifeboat drill run|list`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    cli::{DrillCommand, DrillListArgs, DrillRunArgs, GlobalArgs},
    client::Conn,
    output::{self, Row},
    progress,
};

pub async fn run(cmd: DrillCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        DrillCommand::Run(args) => start(args, global, out).await,
        DrillCommand::List(args) => list(args, global, out).await,
    }
}

async fn start(args: DrillRunArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::StartDrillRequest {
        target: args.target.to_string(),
        into: args.into.map(|t| t.to_string()).unwrap_or_default(),
        backup_id: args.backup.unwrap_or_default(),
    });
    let job = conn
        .unary(
            "start drill",
            |mut c| async move { c.start_drill(req).await },
        )
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}

async fn list(args: DrillListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListDrillsRequest {
        target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        limit: args.limit.limit.unwrap_or(0),
        after: args.after.unwrap_or_default(),
    });
    let resp = conn
        .unary(
            "list drills",
            |mut c| async move { c.list_drills(req).await },
        )
        .await?;
    let drills: Vec<DrillView> = resp.drills.iter().map(DrillView::from).collect();
    output::emit(out, global.output, &drills)?;
    if let (true, Some(last)) = (resp.more, resp.drills.last()) {
        output::more_hint("drills", &last.job_id);
    }
    Ok(())
}

/// One recorded drill.
#[derive(Debug, Serialize)]
pub struct DrillView {
    pub job_id: String,
    pub target: String,
    pub backup_id: String,
    pub drill_target: String,
    pub database: String,
    pub outcome: String,
    /// Measured RTO in milliseconds; only for a drill that passed.
    pub rto_ms: Option<u64>,
    pub requested_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

impl From<&pb::Drill> for DrillView {
    fn from(d: &pb::Drill) -> Self {
        let time = |ms: i64| lifeboat_common::time::rfc3339(ms).unwrap_or_else(|| ms.to_string());
        Self {
            job_id: d.job_id.clone(),
            target: d.target.clone(),
            backup_id: d.backup_id.clone(),
            drill_target: d.drill_target.clone(),
            database: d.database.clone(),
            outcome: d.outcome.clone(),
            rto_ms: (d.outcome == "succeeded").then_some(d.rto_ms),
            requested_by: d.requested_by.clone(),
            created_at: time(d.created_at_ms),
            finished_at: (d.finished_at_ms > 0).then(|| time(d.finished_at_ms)),
            error: Some(d.error.clone()).filter(|e| !e.is_empty()),
        }
    }
}

impl Row for DrillView {
    const HEADER: &'static [&'static str] = &[
        "JOB", "TARGET", "BACKUP", "INTO", "OUTCOME", "RTO", "FINISHED", "ERROR",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.job_id.clone(),
            self.target.clone(),
            self.backup_id.clone(),
            self.drill_target.clone(),
            self.outcome.clone(),
            self.rto_ms
                .map(|ms| format!("{:.3}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            self.finished_at.clone().unwrap_or_else(|| "-".into()),
            self.error.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}
