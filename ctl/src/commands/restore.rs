//! `lifeboat restore [ID] [--to|--target TARGET] [--database NAME] [--clean] [--owners auto|keep|drop]
//! [--include-provider-schemas] [--data-dir DIR] [--dry-run] [--wait]`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto::{
    self as pb,
    domain::{PG_BASEBACKUP_FORMAT, Recovery, RecoveryTarget},
};

use crate::{
    cli::{GlobalArgs, Owners, RestoreArgs},
    client::Conn,
    error::usage_msg,
    progress,
};

/// The newest backup of `target` that a restore of the asked kind can use: a physical base
/// backup for `--data-dir`, else a logical dump; none being deleted; for a recovery to a
/// moment, one that ended before it.
async fn newest(
    conn: &Conn,
    target: &str,
    physical: bool,
    before_ms: Option<i64>,
) -> Result<String> {
    let req = conn.request(pb::ListBackupsRequest {
        target: target.to_owned(),
        limit: 0,
        after: String::new(),
    });
    let resp = conn
        .unary(
            "list backups",
            |mut c| async move { c.list_backups(req).await },
        )
        .await?;
    // Newest first.
    resp.backups
        .iter()
        .find(|b| {
            !b.deleting
                && (b.format == PG_BASEBACKUP_FORMAT) == physical
                && before_ms.is_none_or(|t| b.finished_at_ms <= t)
        })
        .map(|b| b.backup_id.clone())
        .ok_or_else(|| {
            if let Some(t) = before_ms {
                return anyhow::anyhow!(
                    "{target} has no physical backup that ended before {}; the window starts at its oldest base backup (lifeboat backup list --target {target})",
                    lifeboat_common::time::rfc3339_seconds(t).unwrap_or_default()
                );
            }
            anyhow::anyhow!(
                "{target} has no {} backup in the catalog; take one with `lifeboat backup run {target} --wait`{}",
                if physical { "physical" } else { "logical" },
                if physical {
                    " (the target needs mode = \"physical\" in the agent's config)"
                } else {
                    ""
                }
            )
        })
}

/// `lifeboat globals restore ID [--target ENV/NAME] [--allow-superuser] [--dry-run] [--wait]`:
/// a restore of the backup's globals only.
pub async fn globals(
    args: crate::cli::GlobalsRestoreArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::RestoreRequest {
        backup_id: args.id,
        to_target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        owners: pb::OwnerPolicy::Auto.into(),
        globals_only: true,
        allow_superuser: args.allow_superuser,
        ..Default::default()
    });
    let job = if args.dry_run {
        conn.unary("plan globals restore", |mut c| async move {
            c.plan_restore(req).await
        })
        .await?
    } else {
        conn.unary("start globals restore", |mut c| async move {
            c.restore(req).await
        })
        .await?
    };
    progress::follow(
        &conn,
        &job,
        args.wait.wait || args.dry_run,
        out,
        global.output,
    )
    .await
}

pub async fn run(args: RestoreArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let recovery = args.recovery.recovery(args.recovery_action);
    let before_ms = match recovery.as_ref().map(|r| &r.target) {
        Some(RecoveryTarget::Time(us)) => Some(us / 1000),
        _ => None,
    };
    let backup_id = match (&args.id, &args.to) {
        (Some(id), _) => id.clone(),
        (None, Some(target)) => {
            newest(&conn, target.as_ref(), args.data_dir.is_some(), before_ms).await?
        }
        (None, None) => return Err(usage_msg("name a backup id, or a target with --target")),
    };
    let req = conn.request(pb::RestoreRequest {
        backup_id,
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
        recovery_target: Recovery::to_wire(recovery.as_ref()).0,
        recovery_action: Recovery::to_wire(recovery.as_ref()).1,
        start_port: args.start_port.map_or(0, u32::from),
        tables: args.tables,
        schemas: args.schemas,
        into_schema: args.into_schema.unwrap_or_default(),
        with_globals: args.with_globals,
        globals_only: false,
        allow_superuser: args.allow_superuser,
        jobs: args.jobs.unwrap_or(0),
        from_repository: args.from_repository.unwrap_or_default(),
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
    progress::follow(
        &conn,
        &job,
        args.wait.wait || args.dry_run,
        out,
        global.output,
    )
    .await
}
