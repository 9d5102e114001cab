//! `lifeboat agents list`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{AgentsCommand, GlobalArgs},
    client::Conn,
    output,
    views::AgentView,
};

pub async fn run(cmd: AgentsCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        AgentsCommand::List => list(global, out).await,
    }
}

async fn list(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListAgentsRequest {});
    let resp = conn
        .unary(
            "list agents",
            |mut c| async move { c.list_agents(req).await },
        )
        .await?;
    let agents: Vec<AgentView> = resp.agents.into_iter().map(AgentView::from).collect();
    output::emit(out, global.output, &agents)
}
