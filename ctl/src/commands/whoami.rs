//! `lifeboat whoami`: the coordinator's view of the caller.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{cli::GlobalArgs, client::Conn, output, views::WhoAmIView};

pub async fn run(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::WhoAmIRequest {});
    let me = conn
        .unary("ask who I am", |mut c| async move { c.who_am_i(req).await })
        .await?;
    output::emit(out, global.output, &WhoAmIView::from(me))
}
