//! MySQL's and MariaDB's dump: `mariadb-dump`/`mysqldump` with a 0600 option file, its output
//! checked (header, completion trailer, per-table rows) while it streams; the tool's exit
//! status and the stream's verdict decide together (D14, D15).

use std::{io::Read, process::ExitStatus};

use anyhow::{Context, Result, anyhow};
use lifeboat_common::secret::Secret;

use super::{Dump, DumpFacts, recorded_objects};
use crate::{
    config::{RowCounts, TargetConfig},
    engine::mysql::{
        self as my, ClientTool, ConnParams, DefaultsFile, DumpPlan, RowCountKind,
        stream::{CheckedDumpReader, DumpSummary, InspectHandle, format_error},
    },
    job::JobCtx,
    manifest::{self, TableRows},
    pipeline::PipelineError,
    process::stdout_file,
    provider,
};

/// Runs the statement a provider wants at the start of each session the agent opens.
pub(crate) async fn init_session(
    conn: &mut sqlx::mysql::MySqlConnection,
    profile: provider::Provider,
) -> Result<()> {
    if let Some(sql) = provider::session_init_sql(profile) {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("run {sql:?} for provider {profile}"))?;
    }
    Ok(())
}

/// A mariadb-dump/mysqldump run, from its pre-flight to its facts.
pub(crate) struct MyDump<'a> {
    target: &'a TargetConfig,
    params: &'a ConnParams,
    password: Option<Secret<String>>,
    facts: my::ServerFacts,
    tool: ClientTool,
    provider_args: Vec<String>,
    estimates: Option<Vec<TableRows>>,
    /// Each table's size on the server before the dump, for the manifest.
    sizes: std::collections::HashMap<String, u64>,
    objects: Option<manifest::DumpObjects>,
    /// Removed when the run is dropped, whatever happened.
    defaults: Option<DefaultsFile>,
    /// The stream check's verdict, once the stream ended.
    inspect: Option<InspectHandle>,
    summary: Option<DumpSummary>,
}

impl<'a> MyDump<'a> {
    /// Connects, reads the server's facts, finds a dump tool that can dump this server, warns
    /// about tables outside the dump's snapshot, checks the provider's limits and lists what
    /// the manifest records for restore pre-flights.
    pub(crate) async fn preflight(target: &'a TargetConfig) -> Result<Self> {
        let params = target
            .mysql
            .as_ref()
            .context("target has no MySQL connection parameters")?;
        for note in provider::check_url(target.profile, &target.url)? {
            tracing::info!("{note}");
        }
        let password = target.password()?;
        let mut conn = my::connect(params, password.as_ref(), Some(&target.database)).await?;
        init_session(&mut conn, target.profile).await?;
        let facts = my::server_facts(&mut conn, Some(&target.database)).await?;
        let tool_path = my::find_dump_tool(target.mysql_bin_dir.as_deref(), facts.flavor)?;
        let tool = ClientTool::probe(&tool_path).await?;
        for w in my::check_client(&tool, &facts)? {
            tracing::warn!("{w}");
        }
        let non_tx = my::non_transactional_tables(&mut conn, &target.database).await?;
        if !non_tx.is_empty() {
            let list: Vec<String> = non_tx.iter().map(|(t, e)| format!("{t} ({e})")).collect();
            tracing::warn!(
                "tables without transactions are dumped as they are when read, not in the dump's snapshot: {}",
                list.join(", ")
            );
        }
        // Sizes are for `backup contents`: a server that will not tell does not fail the backup.
        let sizes = my::table_sizes(&mut conn, &target.database)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("table sizes not recorded: {e:#}");
                Default::default()
            });
        let estimates = match target.row_counts {
            RowCounts::Estimate => Some(my::row_counts(&mut conn, &target.database, false).await?),
            RowCounts::Exact | RowCounts::Off => None,
        };
        if target.profile == provider::Provider::Planetscale
            || facts.flavor == my::ServerFlavor::Vitess
        {
            let est = match &estimates {
                Some(e) => e.clone(),
                None => my::row_counts(&mut conn, &target.database, false).await?,
            };
            let largest = est.iter().max_by_key(|r| r.rows);
            provider::check_row_limit(
                target.profile,
                &tool,
                &facts,
                largest.map(|r| (r.table.as_str(), r.rows)),
            )
            .map_err(anyhow::Error::msg)?;
        }
        let objects =
            recorded_objects(my::objects::dump_objects(&mut conn, &target.database).await);
        let _ = sqlx::Connection::close(conn).await;
        let provider_args = provider::dump_args(target.profile, &tool, &facts);
        Ok(Self {
            target,
            params,
            password,
            facts,
            tool,
            provider_args,
            estimates,
            sizes,
            objects,
            defaults: None,
            inspect: None,
            summary: None,
        })
    }
}

impl Dump for MyDump<'_> {
    const DATA_FILE: &'static str = my::DATA_FILE;
    const MAGIC: &'static [u8] = my::MAGIC;

    fn size_hint(&self) -> u64 {
        self.facts.size_bytes
    }

    fn tool_name(&self) -> &str {
        &self.tool.name
    }

    fn start(&mut self, ctx: &JobCtx) -> Result<(tokio::process::Child, Box<dyn Read + Send>)> {
        let state_dir = &ctx.config.state_dir;
        let defaults = DefaultsFile::create(
            state_dir,
            self.params,
            self.password.as_ref(),
            self.tool.flavor,
        )?;
        let plan = DumpPlan {
            tool: &self.tool,
            server: &self.facts,
            database: &self.target.database,
            provider_args: &self.provider_args,
        };
        let mut child = my::dump_command(&plan, &defaults, state_dir)
            .spawn()
            .with_context(|| format!("start {}", self.tool.path.display()))?;
        self.defaults = Some(defaults);
        let (source, inspect) = CheckedDumpReader::new(stdout_file(
            child.stdout.take().context("dump tool stdout")?,
        )?);
        self.inspect = Some(inspect);
        Ok((child, Box::new(source)))
    }

    fn rejected(&mut self, status: &ExitStatus, stderr: &str, e: &PipelineError) -> anyhow::Error {
        // The stream check's own verdict (no header, no trailer) when the reader failed.
        let inspected = self
            .inspect
            .as_ref()
            .and_then(InspectHandle::take)
            .or_else(|| match e {
                PipelineError::Source(io) => format_error(io).cloned().map(Err),
                _ => None,
            });
        match my::dump_verdict(&self.tool.name, status, stderr, inspected) {
            Err(verdict) => verdict,
            Ok(_) => anyhow!("{e}; {} exited 0", self.tool.name),
        }
    }

    fn verdict(&mut self, status: &ExitStatus, stderr: &str) -> Result<()> {
        let inspected = self.inspect.as_ref().and_then(InspectHandle::take);
        self.summary = Some(my::dump_verdict(
            &self.tool.name,
            status,
            stderr,
            inspected,
        )?);
        if !stderr.is_empty() {
            tracing::info!("{} said: {stderr}", self.tool.name);
        }
        Ok(())
    }

    async fn facts(self) -> Result<DumpFacts> {
        let summary = self.summary.context("the dump was not judged")?;
        let (row_counts_kind, row_counts) = match (self.target.row_counts, self.estimates) {
            (RowCounts::Exact, _) => {
                let mut rows = summary.table_rows();
                for r in &mut rows {
                    r.bytes = self.sizes.get(&r.table).copied();
                }
                (RowCountKind::Exact, rows)
            }
            (RowCounts::Estimate, Some(e)) => (RowCountKind::Estimate, e),
            (RowCounts::Estimate, None) | (RowCounts::Off, _) => (RowCountKind::Off, Vec::new()),
        };
        Ok(DumpFacts {
            server: self.facts.server_info(),
            tool: manifest::ToolInfo {
                name: self.tool.name.clone(),
                version: self.tool.version.to_string(),
            },
            format: my::FORMAT,
            row_counts_kind: row_counts_kind.as_str(),
            row_counts,
            objects: self.objects,
            physical: None,
        })
    }
}
