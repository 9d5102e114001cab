//! `lifeboat restore ID [--to TARGET] [--database NAME] [--clean] [--owners auto|keep|drop]
//! [--include-provider-schemas] [--data-dir DIR] [--dry-run] [--wait]`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{GlobalArgs, Owners, RestoreArgs},
    client::Conn,
    commands::jobs::print_started,
    progress,
};

pub async fn run(args: RestoreArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::RestoreRequest {
        backup_id: args.id.clone(),
        to_target: args.to.map(|t| t.to_string()).unwrap_or_default(),
        database: args.database.unwrap_or_default(),
        clean: args.clean,
        owners: match args.owners {
            Owners::Auto => pb::OwnerPolicy::Auto,
            Owners::Keep => pb::OwnerPolicy::Keep,
            Owners::Drop => pb::OwnerPolicy::Drop,
        }
        .into(),
        include_provider_schemas: args.include_provider_schemas,
        data_dir: args.data_dir.unwrap_or_default(),
    });
    // A dry run is its own call: a coordinator without it refuses it (UNIMPLEMENTED) rather
    // than running a real restore.
    let job = if args.dry_run {
        conn.unary(
            "plan restore",
            |mut c| async move { c.plan_restore(req).await },
        )
        .await?
    } else {
        conn.unary("start restore", |mut c| async move { c.restore(req).await })
            .await?
    };
    if args.wait.wait || args.dry_run {
        progress::wait_and_report(&conn, &job.job_id, out, global.output).await
    } else {
        print_started(out, global.output, &job)
    }
}
