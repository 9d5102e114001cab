//! `lifeboat prune [--target T] [--dry-run]`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{GlobalArgs, PruneArgs},
    client::Conn,
    output,
    schedule_views::PruneView,
};

pub async fn run(args: PruneArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let msg = pb::PruneRequest {
        target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        dry_run: args.dry_run,
    };
    let what = if args.dry_run { "plan prune" } else { "prune" };
    let resp = conn
        .unary_active(what, |mut c| {
            let req = conn.request(msg.clone());
            async move { c.prune(req).await }
        })
        .await?;
    output::emit(out, global.output, &PruneView::from(&resp))
}
