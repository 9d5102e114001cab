//! PostgreSQL's dump: `pg_dump --format=custom` (uncompressed: the pipeline compresses) in a
//! snapshot the agent exports and holds, so what it reads beside the dump sees the same data;
//! the password goes in a 0600 passfile, never in argv or the environment.
//!
//! Exact row counts are read from the archive as it streams by (the rows of each table's COPY
//! data, [`pg::archive`]) instead of a second scan of every table with `count(*)`; a table the
//! stream could not account for is counted with `count(*)` in the held snapshot after the dump.

use std::{io::Read, path::PathBuf, process::ExitStatus, process::Stdio};

use anyhow::{Context, Result, anyhow};
use lifeboat_common::secret::Secret;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;

use super::{Dump, DumpFacts, recorded_objects};
use crate::{
    config::{RowCounts, TargetConfig},
    engine::postgres as pg,
    job::JobCtx,
    manifest::{self, TableRows},
    pipeline::PipelineError,
    process::{describe_status, stdout_file},
    repo::PG_DATA_FILE,
};

/// A pg_dump run, from its pre-flight to its facts.
pub(crate) struct PgDump<'a> {
    target: &'a TargetConfig,
    password: Option<Secret<String>>,
    /// In the transaction that exported `snapshot`, held until the dump is judged.
    conn: PgConnection,
    facts: pg::ServerFacts,
    pg_dump: PathBuf,
    tool_version: String,
    objects: Option<manifest::DumpObjects>,
    snapshot: String,
    /// Removed when the run is dropped, whatever happened.
    passfile: Option<pg::PassFile>,
    /// The tables (with the planner's estimates); `None` until listed, abandoned when the
    /// dump fails.
    counts: Option<Result<Vec<TableRows>>>,
    /// The rows counted in the stream, for exact counts.
    streamed: Option<pg::archive::CountsHandle>,
}

impl<'a> PgDump<'a> {
    /// Connects, reads the server's facts, finds a pg_dump at least as new as the server,
    /// lists what the manifest records for restore pre-flights and exports the snapshot the
    /// dump and the row counts share.
    pub(crate) async fn preflight(target: &'a TargetConfig) -> Result<Self> {
        let password = target.password()?;
        let mut conn = pg::connect(target, password.as_ref(), &target.database).await?;
        let facts = pg::server_facts(&mut conn).await?;
        let pg_dump = pg::tool(target, "pg_dump", facts.major);
        let (tool_version, tool_major) = pg::tool_version(&pg_dump).await?;
        pg::check_tool_major("pg_dump", &tool_version, tool_major, &facts)?;
        let objects = recorded_objects(pg::objects::dump_objects(&mut conn).await);
        let snapshot = pg::export_snapshot(&mut conn).await?;
        Ok(Self {
            target,
            password,
            conn,
            facts,
            pg_dump,
            tool_version,
            objects,
            snapshot,
            passfile: None,
            counts: None,
            streamed: None,
        })
    }
}

impl Dump for PgDump<'_> {
    const DATA_FILE: &'static str = PG_DATA_FILE;
    const MAGIC: &'static [u8] = pg::PGDMP_MAGIC;

    fn size_hint(&self) -> u64 {
        self.facts.size_bytes
    }

    fn tool_name(&self) -> &str {
        "pg_dump"
    }

    fn start(&mut self, ctx: &JobCtx) -> Result<(tokio::process::Child, Box<dyn Read + Send>)> {
        self.passfile = self
            .password
            .as_ref()
            .map(|p| pg::PassFile::create(&ctx.config.state_dir, p))
            .transpose()?;
        let mut cmd = pg::child_command(&self.pg_dump, self.passfile.as_ref());
        cmd.arg("--format=custom")
            .arg("--compress=0")
            .arg("--no-password")
            .arg(format!("--snapshot={}", self.snapshot))
            .arg("--dbname")
            .arg(pg::url_for(self.target, &self.target.database).as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.pg_dump.display()))?;
        let stdout = stdout_file(child.stdout.take().context("pg_dump stdout")?)?;
        if self.target.row_counts == RowCounts::Exact {
            let (reader, handle) = pg::archive::CountingReader::new(stdout);
            self.streamed = Some(handle);
            return Ok((child, Box::new(reader)));
        }
        Ok((child, Box::new(stdout)))
    }

    /// Lists the tables (and their estimated rows) in the exported snapshot while pg_dump
    /// streams.
    async fn beside(&mut self, stop: &CancellationToken) {
        if self.target.row_counts == RowCounts::Off {
            self.counts = Some(Ok(Vec::new()));
            return;
        }
        tokio::select! {
            r = pg::table_list(&mut self.conn) => self.counts = Some(r),
            () = stop.cancelled() => {}
        }
    }

    fn rejected(&mut self, status: &ExitStatus, stderr: &str, e: &PipelineError) -> anyhow::Error {
        if status.success() {
            anyhow!(
                "{e}; pg_dump exited 0 but its output is not a custom-format archive{}",
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!("; pg_dump said: {stderr}")
                }
            )
        } else {
            anyhow!(
                "pg_dump failed ({}): {}{}",
                describe_status(status),
                non_empty(stderr),
                match e {
                    PipelineError::Empty => String::new(),
                    other => format!(" ({other})"),
                }
            )
        }
    }

    fn verdict(&mut self, status: &ExitStatus, stderr: &str) -> Result<()> {
        if !status.success() {
            anyhow::bail!(
                "pg_dump failed ({}): {}",
                describe_status(status),
                non_empty(stderr)
            );
        }
        match self.counts.take() {
            Some(Ok(c)) => {
                self.counts = Some(Ok(c));
                Ok(())
            }
            Some(Err(e)) => Err(e.context("list the tables in the dump's snapshot")),
            None => Err(anyhow!("listing the tables stopped")),
        }
    }

    async fn facts(mut self) -> Result<DumpFacts> {
        let mut tables = self.counts.take().and_then(Result::ok).unwrap_or_default();
        if self.target.row_counts == RowCounts::Exact {
            let streamed = self.streamed.as_ref().and_then(|h| h.take());
            exact_counts(&mut self.conn, &mut tables, streamed).await?;
        }
        // The snapshot transaction is no longer needed.
        let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        let _ = sqlx::Connection::close(self.conn).await;
        let f = self.facts;
        Ok(DumpFacts {
            server: manifest::ServerInfo {
                version: f.version,
                version_num: f.version_num,
                system_identifier: f.system_identifier,
                encoding: f.encoding,
                collate: f.collate,
                ctype: f.ctype,
            },
            tool: manifest::ToolInfo {
                name: "pg_dump".into(),
                version: self.tool_version,
            },
            format: "pg_dump-custom",
            row_counts_kind: match self.target.row_counts {
                RowCounts::Exact => "exact",
                RowCounts::Estimate => "estimate",
                RowCounts::Off => "off",
            },
            row_counts: tables,
            objects: self.objects,
            physical: None,
        })
    }
}

/// Puts the rows counted in the stream into `tables`; a table the stream did not account for
/// (or all of them, when the archive could not be read) is counted with `count(*)` in the
/// snapshot the dump used, which `conn` still holds.
async fn exact_counts(
    conn: &mut PgConnection,
    tables: &mut [TableRows],
    streamed: Option<Result<pg::archive::StreamCounts, pg::archive::Unreadable>>,
) -> Result<()> {
    let mut streamed = match streamed {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::info!(
                "counting rows with count(*): the dump's rows could not be counted as it streamed ({e})"
            );
            Default::default()
        }
        None => Default::default(),
    };
    for t in tables {
        t.rows = match streamed.remove(&(t.schema.clone(), t.table.clone())) {
            Some(n) => n,
            None => pg::count_rows(conn, &t.schema, &t.table)
                .await
                .context("count rows in the dump's snapshot")?,
        };
    }
    Ok(())
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() { "no error output" } else { s }
}
