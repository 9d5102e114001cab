//! A partial MySQL/MariaDB restore (`--table`, `--schema`): the chosen tables resolved against
//! the manifest before anything is created, and the dump stream cut down to their sections
//! ([`crate::engine::mysql::table_filter`]) on its way into the SQL client. They always go into
//! a new database: `--database NAME`, `--into-schema NAME` (a MySQL schema is a database), or
//! the default new name; the swap that follows is the whole restore's.

use lifeboat_proto::domain::PartialRestore;

use super::Prepared;
use crate::{job::JobCtx, manifest::TableRows, restore::selection::select};

/// What a partial restore restores.
pub(super) struct MyPartial {
    /// The chosen tables with the rows the manifest recorded (its own schema field).
    pub expected: Vec<TableRows>,
}

impl MyPartial {
    /// The table names the stream filter keeps.
    pub fn names(&self) -> Vec<String> {
        self.expected.iter().map(|t| t.table.clone()).collect()
    }
}

/// Resolves the chosen tables; an unknown one is an error finding naming what the backup holds.
/// The manifest records MySQL tables without a schema: `DATABASE.TABLE` names the backup's
/// database.
pub(super) fn plan(ctx: &JobCtx, p: &Prepared<'_>, want: &PartialRestore) -> Option<MyPartial> {
    let db = &p.manifest.database;
    let named: Vec<TableRows> = p
        .manifest
        .row_counts
        .iter()
        .map(|r| TableRows {
            schema: if r.schema.is_empty() {
                db.clone()
            } else {
                r.schema.clone()
            },
            ..r.clone()
        })
        .collect();
    let chosen = ctx
        .report
        .check("tables", select(&named, want, p.rec.backup_id.as_str()))?;
    let expected: Vec<TableRows> = p
        .manifest
        .row_counts
        .iter()
        .filter(|r| chosen.iter().any(|c| c.table == r.table))
        .cloned()
        .collect();
    let rows: i64 = expected.iter().map(|t| t.rows).sum();
    ctx.report.ok(
        "tables",
        format!(
            "{} table(s) chosen ({rows} rows in the backup): {}; their sections of the dump (definition, data, triggers) are restored, views, routines and events are not",
            expected.len(),
            expected
                .iter()
                .take(10)
                .map(|t| t.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Some(MyPartial { expected })
}
