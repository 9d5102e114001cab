//! `lifeboat backup run|list|show|contents|verify|export|pin|unpin|delete|copy`.

use std::io::Write;

use anyhow::Result;
use lifeboat_proto as pb;

use crate::{
    cli::{
        BackupCheckArgs, BackupCommand, BackupCopyArgs, BackupExportArgs, BackupListArgs,
        BackupPinArgs, BackupRunArgs, BackupVerifyArgs, GlobalArgs,
    },
    client::Conn,
    output, progress,
    views::BackupView,
};

pub async fn run(cmd: BackupCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        BackupCommand::Run(args) => start(args, global, out).await,
        BackupCommand::List(args) => list(args, global, out).await,
        BackupCommand::Show(args) => show(&args.id, global, out).await,
        BackupCommand::Contents(args) => contents(&args.id, global, out).await,
        BackupCommand::Verify(args) => verify(args, global, out).await,
        BackupCommand::Export(args) => export(args, global, out).await,
        BackupCommand::Pin(args) => pin(args, global, out).await,
        BackupCommand::Unpin(args) => unpin(&args.id, global, out).await,
        BackupCommand::Delete(args) => delete(args, global, out).await,
        BackupCommand::Copy(args) => copy(args, global, out).await,
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
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}

async fn list(args: BackupListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ListBackupsRequest {
        target: args.target.map(|t| t.to_string()).unwrap_or_default(),
        limit: args.limit.limit.unwrap_or(0),
        after: args.after.clone().unwrap_or_default(),
    });
    let resp = conn
        .unary(
            "list backups",
            |mut c| async move { c.list_backups(req).await },
        )
        .await?;
    let backups: Vec<BackupView> = resp.backups.iter().map(BackupView::from).collect();
    output::emit(out, global.output, &backups)?;
    if let (true, Some(last)) = (resp.more, resp.backups.last()) {
        output::more_hint("backups", &last.backup_id);
    }
    Ok(())
}

/// The catalog's record of backup `id`.
async fn get(id: &str, global: &GlobalArgs) -> Result<pb::BackupRecord> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::GetBackupRequest {
        backup_id: id.to_owned(),
    });
    conn.unary(
        "show backup",
        |mut c| async move { c.get_backup(req).await },
    )
    .await
}

async fn show(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let backup = get(id, global).await?;
    output::emit(out, global.output, &BackupView::from(&backup))
}

/// `backup contents ID`: the catalog's copy of the manifest's tables (viewer role; the
/// archive is not read).
async fn contents(id: &str, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let backup = get(id, global).await?;
    output::emit(out, global.output, &ContentsView::from(&backup))
}

/// What `backup contents` prints.
#[derive(Debug, serde::Serialize)]
struct ContentsView {
    backup_id: String,
    target: String,
    database: String,
    schemas: Vec<SchemaView>,
}

#[derive(Debug, serde::Serialize)]
struct SchemaView {
    schema: String,
    tables: Vec<TableView>,
}

#[derive(Debug, serde::Serialize)]
struct TableView {
    table: String,
    rows: i64,
    /// Its size on the server when the backup was taken (data, indexes, TOAST), when recorded.
    bytes: Option<u64>,
}

impl From<&pb::BackupRecord> for ContentsView {
    fn from(b: &pb::BackupRecord) -> Self {
        let mut schemas: Vec<SchemaView> = Vec::new();
        for r in &b.row_counts {
            let table = TableView {
                table: r.table.clone(),
                rows: r.rows,
                bytes: r.bytes,
            };
            match schemas.iter_mut().find(|s| s.schema == r.schema) {
                Some(s) => s.tables.push(table),
                None => schemas.push(SchemaView {
                    schema: r.schema.clone(),
                    tables: vec![table],
                }),
            }
        }
        ContentsView {
            backup_id: b.backup_id.clone(),
            target: b.target.clone(),
            database: b.database.clone(),
            schemas,
        }
    }
}

impl output::Render for ContentsView {
    fn table(&self) -> String {
        let tables: usize = self.schemas.iter().map(|s| s.tables.len()).sum();
        let rows: i64 = self
            .schemas
            .iter()
            .flat_map(|s| &s.tables)
            .map(|t| t.rows)
            .sum();
        let mut s = format!(
            "backup {} of {} (database {}): {} schema(s), {tables} table(s), {rows} rows\n",
            self.backup_id,
            self.target,
            self.database,
            self.schemas.len()
        );
        let width = self
            .schemas
            .iter()
            .flat_map(|sc| {
                sc.tables
                    .iter()
                    .map(move |t| sc.schema.len() + 1 + t.table.len())
            })
            .max()
            .unwrap_or(5)
            .max(5);
        s.push_str(&format!(
            "{:<width$}  {:>12}  {:>10}\n",
            "TABLE", "ROWS", "SIZE"
        ));
        for sc in &self.schemas {
            for t in &sc.tables {
                let name = format!("{}.{}", sc.schema, t.table);
                let size = t
                    .bytes
                    .map_or_else(|| "-".to_owned(), crate::output::human_size);
                s.push_str(&format!("{name:<width$}  {:>12}  {size:>10}\n", t.rows));
            }
        }
        if tables == 0 {
            s.push_str("(the manifest records no tables)\n");
        }
        s
    }
}

async fn verify(args: BackupCheckArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let (decrypt, args) = (args.decrypt, args.backup);
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::VerifyBackupRequest {
        backup_id: args.id.clone(),
        repository: args.repository.clone().unwrap_or_default(),
        decrypt,
    });
    let job = conn
        .unary(
            "start verify",
            |mut c| async move { c.verify_backup(req).await },
        )
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}

async fn export(args: BackupExportArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::ExportBackupRequest {
        backup_id: args.id.clone(),
        path: args.to.clone(),
        from_repository: args.from_repository.clone().unwrap_or_default(),
    });
    let job = conn
        .unary(
            "start export",
            |mut c| async move { c.export_backup(req).await },
        )
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
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
        repository: args.repository.clone().unwrap_or_default(),
    });
    let job = conn
        .unary("delete backup", |mut c| async move {
            c.delete_backup(req).await
        })
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}

async fn copy(args: BackupCopyArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::CopyBackupRequest {
        backup_id: args.id.clone(),
        to_repository: args.to.clone(),
    });
    let job = conn
        .unary(
            "copy backup",
            |mut c| async move { c.copy_backup(req).await },
        )
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}
