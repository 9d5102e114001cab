//! `lifeboat schedule set|list|pause|resume|delete|next`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{
        GlobalArgs, ScheduleCommand, ScheduleKindArg, ScheduleNextArgs, ScheduleRunsArgs,
        ScheduleSetArgs, ScheduleTargetArg,
    },
    client::Conn,
    output,
    schedule_views::{
        NextRunsView, ScheduleDeletedView, ScheduleRunView, ScheduleView, schedule_kind_word,
    },
};

pub async fn run(cmd: ScheduleCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ScheduleCommand::Set(args) => set(args, global, out).await,
        ScheduleCommand::List(args) => list(args.target.map(|t| t.to_string()), global, out).await,
        ScheduleCommand::Pause(args) => pause(args, true, global, out).await,
        ScheduleCommand::Resume(args) => pause(args, false, global, out).await,
        ScheduleCommand::Delete(args) => delete(args, global, out).await,
        ScheduleCommand::Next(args) => next(args, global, out).await,
        ScheduleCommand::Runs(args) => runs(args, global, out).await,
    }
}

async fn set(args: ScheduleSetArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::SetScheduleRequest {
        target: args.target.to_string(),
        cron: args.cron,
        timezone: args.timezone,
        jitter_secs: args.jitter.unwrap_or(0),
        kind: kind_pb(args.kind).into(),
        cover_secs: args.cover.unwrap_or(0),
        drill_into: args.into.map(|t| t.to_string()).unwrap_or_default(),
    });
    let schedule = conn
        .unary(
            "set schedule",
            |mut c| async move { c.set_schedule(req).await },
        )
        .await?;
    output::emit(out, global.output, &ScheduleView::from(&schedule))
}

async fn list(target: Option<String>, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListSchedulesRequest {
        target: target.unwrap_or_default(),
    });
    let resp = conn
        .unary("list schedules", |mut c| async move {
            c.list_schedules(req).await
        })
        .await?;
    let views: Vec<ScheduleView> = resp.schedules.iter().map(ScheduleView::from).collect();
    output::emit(out, global.output, &views)
}

/// The wire value of a `--kind`.
fn kind_pb(kind: ScheduleKindArg) -> pb::ScheduleKind {
    match kind {
        ScheduleKindArg::Backup => pb::ScheduleKind::Backup,
        ScheduleKindArg::Verify => pb::ScheduleKind::Verify,
        ScheduleKindArg::Drill => pb::ScheduleKind::Drill,
    }
}

async fn pause(
    args: ScheduleTargetArg,
    paused: bool,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ScheduleTargetRequest {
        target: args.target.to_string(),
        kind: kind_pb(args.kind).into(),
    });
    let schedule = if paused {
        conn.unary("pause schedule", |mut c| async move {
            c.pause_schedule(req).await
        })
        .await?
    } else {
        conn.unary("resume schedule", |mut c| async move {
            c.resume_schedule(req).await
        })
        .await?
    };
    output::emit(out, global.output, &ScheduleView::from(&schedule))
}

async fn delete(args: ScheduleTargetArg, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let target = args.target.to_string();
    let req = conn.request(pb::ScheduleTargetRequest {
        target: target.clone(),
        kind: kind_pb(args.kind).into(),
    });
    let resp = conn
        .unary("delete schedule", |mut c| async move {
            c.delete_schedule(req).await
        })
        .await?;
    output::emit(
        out,
        global.output,
        &ScheduleDeletedView {
            target,
            kind: schedule_kind_word(kind_pb(args.kind).into()),
            deleted: true,
            effective: resp.effective.as_ref().map(ScheduleView::from),
        },
    )
}

async fn next(args: ScheduleNextArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::NextRunsRequest {
        target: args.target.to_string(),
        count: args.count,
        from: args.from.unwrap_or_default(),
        kind: kind_pb(args.kind).into(),
    });
    let resp = conn
        .unary("compute next runs", |mut c| async move {
            c.next_runs(req).await
        })
        .await?;
    output::emit(out, global.output, &NextRunsView::from(&resp))
}

async fn runs(args: ScheduleRunsArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListScheduleRunsRequest {
        target: args.target.to_string(),
        limit: args.limit.limit.unwrap_or(0),
        kind: args
            .kind
            .map_or(pb::ScheduleKind::Unspecified, kind_pb)
            .into(),
        after_id: args.after.unwrap_or(0),
    });
    let resp = conn
        .unary("list schedule runs", |mut c| async move {
            c.list_schedule_runs(req).await
        })
        .await?;
    let views: Vec<ScheduleRunView> = resp.runs.iter().map(ScheduleRunView::from).collect();
    output::emit(out, global.output, &views)?;
    if let (true, Some(last)) = (resp.more, resp.runs.last()) {
        output::more_hint("runs", &last.id.to_string());
    }
    Ok(())
}
