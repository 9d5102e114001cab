//! `lifeboat audit list`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{AuditCommand, AuditListArgs, GlobalArgs},
    client::Conn,
    output,
    report_views::AuditView,
};

pub async fn run(cmd: AuditCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        AuditCommand::List(args) => list(args, global, out).await,
    }
}

async fn list(args: AuditListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let since_ms = args.since.map_or(0, |secs| {
        lifeboat_common::time::now_ms()
            .saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let req = conn.request(pb::ListAuditRequest {
        actor: args.actor.unwrap_or_default(),
        action: args.action.unwrap_or_default(),
        object: args.object.unwrap_or_default(),
        since_ms,
        limit: args.limit.limit.unwrap_or(0),
        after_id: args.after.unwrap_or(0),
    });
    let resp = conn
        .unary("list audit", |mut c| async move { c.list_audit(req).await })
        .await?;
    let entries: Vec<AuditView> = resp.entries.iter().map(AuditView::from).collect();
    output::emit(out, global.output, &entries)?;
    if let (true, Some(last)) = (resp.more, resp.entries.last()) {
        output::more_hint("entries", &last.id.to_string());
    }
    Ok(())
}
