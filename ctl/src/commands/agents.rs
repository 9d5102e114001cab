//! `lifeboat agents list`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{AgentsCommand, AgentsListArgs, GlobalArgs},
    client::Conn,
    output,
    views::AgentView,
};

pub async fn run(cmd: AgentsCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        AgentsCommand::List(args) => list(args, global, out).await,
    }
}

async fn list(args: AgentsListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let conn = &conn;
    let (agents, next) = super::by_name(
        args.limit,
        args.after,
        |a: &pb::Agent| a.name.clone(),
        |after, limit| async move {
            let req = conn.request(pb::ListAgentsRequest { limit, after });
            let resp = conn
                .unary(
                    "list agents",
                    |mut c| async move { c.list_agents(req).await },
                )
                .await?;
            Ok((resp.agents, resp.more))
        },
    )
    .await?;
    let agents: Vec<AgentView> = agents.into_iter().map(AgentView::from).collect();
    output::emit(out, global.output, &agents)?;
    if let Some(last) = next {
        output::more_hint("agents", &last);
    }
    Ok(())
}
