//! `lifeboat targets list`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{GlobalArgs, TargetsCommand},
    client::Conn,
    output,
    views::TargetView,
};

pub async fn run(cmd: TargetsCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        TargetsCommand::List => list(global, out).await,
    }
}

async fn list(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListTargetsRequest {});
    let resp = conn
        .unary(
            "list targets",
            |mut c| async move { c.list_targets(req).await },
        )
        .await?;
    let targets: Vec<TargetView> = resp.targets.into_iter().map(TargetView::from).collect();
    output::emit(out, global.output, &targets)
}
