//! `lifeboat pitr window ENV/NAME`: how far back and how recently a physical target can be
//! restored to a point in time, its base backups, and its WAL archive per timeline.
//! `lifeboat pitr verify ENV/NAME`: a verify job reading that archive back on the agent.

use std::io::Write;

use anyhow::Result;
use lifeboat_common::names::TargetName;
use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    cli::{GlobalArgs, PitrCommand},
    client::Conn,
    output::{self, Render, key_values, rfc3339_ms},
    progress,
};

pub async fn run(cmd: PitrCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        PitrCommand::Window { target } => window(&target, global, out).await,
        PitrCommand::Verify { target, wait } => verify(&target, wait.wait, global, out).await,
    }
}

async fn verify(
    target: &TargetName,
    wait: bool,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let msg = pb::VerifyWalRequest {
        target: target.to_string(),
    };
    let job = conn
        .unary_active("start the WAL archive's verify", |mut c| {
            let req = conn.request(msg.clone());
            async move { c.verify_wal(req).await }
        })
        .await?;
    progress::follow(&conn, &job, wait, out, global.output).await
}

async fn window(target: &TargetName, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let msg = pb::PitrWindowRequest {
        target: target.to_string(),
    };
    let w = conn
        .unary_active("read the recovery window", |mut c| {
            let req = conn.request(msg.clone());
            async move { c.pitr_window(req).await }
        })
        .await?;
    output::emit(out, global.output, &WindowView::from(w))
}

#[derive(Debug, Serialize)]
struct RangeView {
    timeline: u32,
    first: String,
    last: String,
    segments: u64,
    last_archived_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct WindowView {
    target: String,
    earliest: Option<String>,
    latest: Option<String>,
    base_backups: Vec<(String, Option<String>)>,
    last_archived: Option<String>,
    last_archived_at: Option<String>,
    timelines: Vec<RangeView>,
    gaps: Vec<String>,
    pending_segments: Option<i64>,
    archiver_failures: u64,
    last_failed: Option<String>,
    last_failed_at: Option<String>,
    reported_at: Option<String>,
    error: Option<String>,
}

impl From<pb::PitrWindowResponse> for WindowView {
    fn from(r: pb::PitrWindowResponse) -> Self {
        let w = r.wal.unwrap_or_default();
        let some = |s: String| (!s.is_empty()).then_some(s);
        Self {
            target: r.target,
            earliest: rfc3339_ms(r.earliest_ms),
            latest: rfc3339_ms(r.latest_ms),
            base_backups: r
                .base_backups
                .into_iter()
                .map(|b| (b.backup_id, rfc3339_ms(b.finished_at_ms)))
                .collect(),
            last_archived: some(w.last_archived),
            last_archived_at: rfc3339_ms(w.last_archived_at_ms),
            timelines: w
                .ranges
                .into_iter()
                .map(|x| RangeView {
                    timeline: x.timeline,
                    first: x.first,
                    last: x.last,
                    segments: x.segments,
                    last_archived_at: rfc3339_ms(x.last_archived_at_ms),
                })
                .collect(),
            gaps: w.gaps,
            pending_segments: (r.reported_at_ms > 0 && w.pending_segments >= 0)
                .then_some(w.pending_segments),
            archiver_failures: w.failed_count,
            last_failed: some(w.last_failed),
            last_failed_at: rfc3339_ms(w.last_failed_at_ms),
            reported_at: rfc3339_ms(r.reported_at_ms),
            error: some(w.error),
        }
    }
}

impl Render for WindowView {
    fn table(&self) -> String {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let mut s = key_values(&[
            ("target", self.target.clone()),
            (
                "window",
                match (&self.earliest, &self.latest) {
                    (Some(a), Some(b)) => format!("{a} … {b}"),
                    _ => "none (no base backup)".to_owned(),
                },
            ),
            (
                "base backups",
                if self.base_backups.is_empty() {
                    "none".to_owned()
                } else {
                    self.base_backups
                        .iter()
                        .map(|(id, at)| format!("{id} (ended {})", or(at)))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            (
                "last archived",
                match &self.last_archived {
                    Some(n) => format!("{n} at {}", or(&self.last_archived_at)),
                    None => "nothing yet".to_owned(),
                },
            ),
            (
                "gaps",
                if self.gaps.is_empty() {
                    "none".to_owned()
                } else {
                    format!(
                        "{} (restores from base backups older than a gap stop there)",
                        self.gaps.join(", ")
                    )
                },
            ),
            (
                "waiting on server",
                self.pending_segments
                    .map_or_else(|| "-".to_owned(), |p| format!("{p} segment(s)")),
            ),
            (
                "archiver failures",
                match &self.last_failed {
                    Some(f) => format!(
                        "{} (last: {f} at {})",
                        self.archiver_failures,
                        or(&self.last_failed_at)
                    ),
                    None => self.archiver_failures.to_string(),
                },
            ),
            ("reported", or(&self.reported_at)),
        ]);
        for t in &self.timelines {
            s.push_str(&format!(
                "timeline {}: {} … {} ({} segments, last stored {})\n",
                t.timeline,
                t.first,
                t.last,
                t.segments,
                or(&t.last_archived_at)
            ));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("note: {e}\n"));
        }
        s
    }
}
