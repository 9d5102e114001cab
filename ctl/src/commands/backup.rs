//! `lifeboat backup run|list|show|verify|export|pin|unpin`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{
        BackupCommand, BackupExportArgs, BackupListArgs, BackupPinArgs, BackupRunArgs,
        BackupVerifyArgs, GlobalArgs,
    },
    client::Conn,
    commands::jobs::print_started,
    output, progress,
    views::BackupView,
};

pub async fn run(cmd: BackupCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        BackupCommand::Run(args) => start(args, global, out).await,
        BackupCommand::List(args) => list(args, global, out).await,
        BackupCommand::Show(args) => show(&args.id, global, out).await,
        BackupCommand::Verify(args) => verify(args, global, out).await,
        BackupCommand::Export(args) => export(args, global, out).await,
        BackupCommand::Pin(args) => pin(args, global, out).await,
        BackupCommand::Unpin(args) => unpin(&args.id, global, out).await,
        BackupCommand::Delete(args) => delete(args, global, out).await,
    }
}

async fn start(args: BackupRunArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::StartBackupRequest {
        target: args.target.to_string(),
    });
    let job = conn
        .unary(
            "start backup",
            |mut c| async move { c.start_backup(req).await },
        )
        .await?;
    if args.wait.wait {
        progress::wait_and_report(&conn, &job.job_id, out, global.output).await
    } else {
        print_started(out, global.output, &job)
    }
}

async fn list(args: BackupListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListBackupsRequest {
        target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        limit: args.limit.limit.unwrap_or(0),
    });
    let resp = conn
        .unary(
            "list backups",
            |mut c| async move { c.list_backups(req).await },
        )
        .await?;
    let backups: Vec<BackupView> = resp.backups.iter().map(BackupView::from).collect();
    output::emit(out, global.output, &backups)
}

async fn show(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::GetBackupRequest {
        backup_id: id.to_owned(),
    });
    let backup = conn
        .unary(
            "show backup",
            |mut c| async move { c.get_backup(req).await },
        )
        .await?;
    output::emit(out, global.output, &BackupView::from(&backup))
}

async fn verify(args: BackupVerifyArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::VerifyBackupRequest {
        backup_id: args.id.clone(),
    });
    let job = conn
        .unary(
            "start verify",
            |mut c| async move { c.verify_backup(req).await },
        )
        .await?;
    if args.wait.wait {
        progress::wait_and_report(&conn, &job.job_id, out, global.output).await
    } else {
        print_started(out, global.output, &job)
    }
}

async fn export(args: BackupExportArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ExportBackupRequest {
        backup_id: args.id.clone(),
        path: args.to.clone(),
    });
    let job = conn
        .unary(
            "start export",
            |mut c| async move { c.export_backup(req).await },
        )
        .await?;
    if args.wait.wait {
        progress::wait_and_report(&conn, &job.job_id, out, global.output).await
    } else {
        print_started(out, global.output, &job)
    }
}

async fn pin(args: BackupPinArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::PinBackupRequest {
        backup_id: args.id,
        reason: args.reason,
    });
    let backup = conn
        .unary("pin backup", |mut c| async move { c.pin_backup(req).await })
        .await?;
    output::emit(out, global.output, &PinView(BackupView::from(&backup)))
}

/// `backup pin`/`unpin`: the backup record in JSON, one line of confirmation as text.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct PinView(BackupView);

impl output::Render for PinView {
    fn table(&self) -> String {
        let b = &self.0;
        let finished = b
            .finished_at_ms
            .map(output::rfc3339_text)
            .unwrap_or_else(|| "unknown".to_owned());
        if b.pinned {
            format!(
                "pinned {} ({}, finished {finished}): retention keeps it until `lifeboat backup unpin {}`\n",
                b.backup_id, b.target, b.backup_id
            )
        } else {
            format!(
                "unpinned {} ({}, finished {finished}): retention policies apply to it again\n",
                b.backup_id, b.target
            )
        }
    }
}

async fn unpin(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::UnpinBackupRequest {
        backup_id: id.to_owned(),
    });
    let backup = conn
        .unary(
            "unpin backup",
            |mut c| async move { c.unpin_backup(req).await },
        )
        .await?;
    output::emit(out, global.output, &BackupView::from(&backup))
}

async fn delete(args: BackupVerifyArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::DeleteBackupRequest {
        backup_id: args.id.clone(),
    });
    let job = conn
        .unary("delete backup", |mut c| async move {
            c.delete_backup(req).await
        })
        .await?;
    if args.wait.wait {
        progress::wait_and_report(&conn, &job.job_id, out, global.output).await
    } else {
        print_started(out, global.output, &job)
    }
}
