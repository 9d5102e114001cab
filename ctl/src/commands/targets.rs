//! `lifeboat targets list`, `lifeboat targets check TARGET` and
//! `lifeboat targets release TARGET`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{GlobalArgs, TargetArg, TargetReleaseArgs, TargetsCommand, TargetsListArgs},
    client::Conn,
    output, progress,
    views::TargetView,
};

pub async fn run(cmd: TargetsCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        TargetsCommand::List(args) => list(args, global, out).await,
        TargetsCommand::Check(args) => check(args, global, out).await,
        TargetsCommand::Release(args) => release(args, global, out).await,
    }
}

/// Hands a target to the agent waiting for it; prints the target as now registered.
async fn release(args: TargetReleaseArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let msg = pb::ReleaseTargetRequest {
        target: args.target.to_string(),
        to_agent: args.to_agent.unwrap_or_default(),
    };
    let target = conn
        .unary_active("release target", |mut c| {
            let req = conn.request(msg.clone());
            async move { c.release_target(req).await }
        })
        .await?;
    output::emit(out, global.output, &vec![TargetView::from(target)])
}

/// Runs a check job and waits for its findings.
async fn check(args: TargetArg, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::CheckTargetRequest {
        target: args.target.to_string(),
    });
    let job = conn
        .unary(
            "check target",
            |mut c| async move { c.check_target(req).await },
        )
        .await?;
    progress::wait_and_report(&conn, &job.job_id, out, global.output).await
}

async fn list(args: TargetsListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let conn = &conn;
    let (targets, next) = super::by_name(
        args.limit,
        args.after.map(|t| t.to_string()),
        |t: &pb::Target| t.name.clone(),
        |after, limit| async move {
            let req = conn.request(pb::ListTargetsRequest { limit, after });
            let resp = conn
                .unary(
                    "list targets",
                    |mut c| async move { c.list_targets(req).await },
                )
                .await?;
            Ok((resp.targets, resp.more))
        },
    )
    .await?;
    let targets: Vec<TargetView> = targets.into_iter().map(TargetView::from).collect();
    output::emit(out, global.output, &targets)?;
    if let Some(last) = next {
        output::more_hint("targets", &last);
    }
    Ok(())
}
