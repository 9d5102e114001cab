//! PostgreSQL's physical base backup: `pg_basebackup -D - -Ft -X fetch` over a replication
//! connection, one tar on stdout holding the data directory, the WAL from the backup's start to
//! its end and PostgreSQL's own `backup_manifest` (ADR 0015). The tar is checked as it flows
//! (the `ustar` magic of its first header, the end-of-archive blocks), the tool's `--verbose`
//! output gives the WAL range. The password goes in a 0600 passfile, never in argv.

use std::{
    io::Read,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, anyhow, bail};
use lifeboat_common::secret::Secret;
use lifeboat_proto::domain::PG_BASEBACKUP_FORMAT;
use sqlx::{Row, postgres::PgConnection};

use super::{Dump, DumpFacts};
use crate::{
    config::TargetConfig,
    engine::postgres as pg,
    job::JobCtx,
    manifest,
    pipeline::PipelineError,
    process::{describe_status, stdout_file},
    repo::PG_BASE_DATA_FILE,
};

/// Where a tar header keeps its magic, and the magic (POSIX ustar; GNU tar writes
/// `ustar  `, PostgreSQL `ustar\0`: the first five bytes are common).
pub(crate) const TAR_MAGIC_OFFSET: usize = 257;
pub(crate) const TAR_MAGIC: &[u8] = b"ustar";
/// A tar archive ends with two 512-byte blocks of zeros.
const TAR_TRAILER: usize = 1024;

/// A pg_basebackup run, from its pre-flight to its facts.
pub(crate) struct PgBaseBackup<'a> {
    target: &'a TargetConfig,
    password: Option<Secret<String>>,
    facts: pg::ServerFacts,
    cluster: ClusterFacts,
    pg_basebackup: PathBuf,
    tool_version: String,
    /// Removed when the run is dropped, whatever happened.
    passfile: Option<pg::PassFile>,
    /// What the stream looked like, shared with the reader on the pipeline's thread.
    stream: Arc<Mutex<TarCheck>>,
    /// The WAL range the tool reported, once judged good.
    wal: Option<WalRange>,
}

/// What the pre-flight reads about the cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterFacts {
    pub data_checksums: bool,
    pub timeline: u32,
    /// All databases together: the size hint of the upload.
    pub cluster_bytes: u64,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u64,
}

impl<'a> PgBaseBackup<'a> {
    /// Connects, reads the server's facts and checks what a base backup needs (the
    /// REPLICATION privilege, `wal_level`, WAL senders, no tablespaces besides the default
    /// ones), finds a pg_basebackup at least as new as the server.
    pub(crate) async fn preflight(target: &'a TargetConfig) -> Result<Self> {
        let password = target.password()?;
        let mut conn = pg::connect(target, password.as_ref(), &target.database).await?;
        let facts = pg::server_facts(&mut conn).await?;
        let cluster = check_cluster(&mut conn, &facts).await;
        let _ = sqlx::Connection::close(conn).await;
        let cluster = cluster?;
        tracing::info!(
            timeline = cluster.timeline,
            data_checksums = cluster.data_checksums,
            system_identifier = %facts.system_identifier,
            "the cluster is ready for a base backup"
        );
        if facts.system_identifier.is_empty() {
            bail!(
                "cannot read the cluster's system identifier (pg_control_system()); a physical backup records it: grant the role EXECUTE on pg_control_system()"
            );
        }
        let pg_basebackup = pg::tool(target, "pg_basebackup", facts.major);
        let (tool_version, tool_major) = pg::tool_version(&pg_basebackup).await?;
        pg::check_tool_major("pg_basebackup", &tool_version, tool_major, &facts)?;
        Ok(Self {
            target,
            password,
            facts,
            cluster,
            pg_basebackup,
            tool_version,
            passfile: None,
            stream: Arc::default(),
            wal: None,
        })
    }
}

/// `targets check` of a physical target: what the backup's pre-flight checks, and its WAL
/// archiving ([`crate::check::archiving`]), in the report.
pub(crate) async fn check_target(
    ctx: &JobCtx,
    target: &TargetConfig,
    conn: &mut PgConnection,
    facts: &pg::ServerFacts,
) {
    let report = &ctx.report;
    if let Some(c) = report.check("physical", check_cluster(conn, facts).await) {
        report.ok(
            "physical",
            format!(
                "the role may replicate, WAL level and senders allow a base backup, no tablespaces besides pg_default and pg_global; timeline {}, data checksums {}",
                c.timeline,
                if c.data_checksums { "on" } else { "off" }
            ),
        );
        report.info(
            "physical",
            "pg_hba.conf must also allow the role a replication connection from this host (host replication ROLE ADDRESS/32 scram-sha-256); a backup reports it if not",
        );
    }
    let tool = pg::tool(target, "pg_basebackup", facts.major);
    match pg::tool_version(&tool).await {
        Ok((version, major)) => match pg::check_tool_major("pg_basebackup", &version, major, facts)
        {
            Ok(()) => report.ok(
                "dump_tool",
                format!("pg_basebackup {version} ({})", tool.display()),
            ),
            Err(e) => report.error("dump_tool", format!("{e:#}")),
        },
        Err(e) => report.error("dump_tool", format!("{e:#}")),
    }
    let verify = pg::tool(target, "pg_verifybackup", facts.major);
    match pg::tool_version(&verify).await {
        Ok((version, _)) => report.ok(
            "restore_tool",
            format!("pg_verifybackup {version} ({})", verify.display()),
        ),
        Err(e) => report.warn(
            "restore_tool",
            format!("{e:#}; restores of this target's backups into a data directory need pg_verifybackup"),
        ),
    }
    crate::check::archiving::check(ctx, target, conn).await;
}

/// The checks a base backup needs on the server, and the facts it records.
async fn check_cluster(conn: &mut PgConnection, facts: &pg::ServerFacts) -> Result<ClusterFacts> {
    if facts.major < 13 {
        bail!(
            "PostgreSQL {} is too old for physical backups (they need PostgreSQL 13 or newer, for backup manifests); use mode = \"logical\"",
            facts.version
        );
    }
    let row = sqlx::query(
        "SELECT current_user::text AS who, r.rolreplication OR r.rolsuper AS may_replicate,
                current_setting('wal_level') AS wal_level,
                current_setting('max_wal_senders')::int AS senders,
                current_setting('data_checksums') = 'on' AS checksums,
                (SELECT timeline_id FROM pg_control_checkpoint())::int8 AS timeline,
                (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size') AS seg_size
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .context("read the role's privileges and the server's WAL settings")?;
    let who: String = row.try_get("who")?;
    if !row.try_get::<bool, _>("may_replicate")? {
        bail!(
            "role {who} lacks the REPLICATION privilege a physical base backup needs; as a superuser run ALTER ROLE {} WITH REPLICATION, and allow it a replication connection in pg_hba.conf (host replication {who} AGENT_ADDRESS/32 scram-sha-256)",
            pg::quote_ident(&who)
        );
    }
    let wal_level: String = row.try_get("wal_level")?;
    if wal_level == "minimal" {
        bail!(
            "the server runs with wal_level = minimal, which cannot take base backups; set wal_level = replica in postgresql.conf and restart PostgreSQL"
        );
    }
    if row.try_get::<i32, _>("senders")? < 1 {
        bail!(
            "the server allows no WAL senders (max_wal_senders = 0), so pg_basebackup cannot connect; set max_wal_senders = 10 in postgresql.conf and restart PostgreSQL"
        );
    }
    let tablespaces: Vec<(String, String)> = sqlx::query_as(
        "SELECT spcname::text, pg_tablespace_location(oid) FROM pg_tablespace
         WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context("list tablespaces")?;
    if !tablespaces.is_empty() {
        let named: Vec<String> = tablespaces
            .iter()
            .map(|(name, at)| format!("{name} ({at})"))
            .collect();
        bail!(
            "the cluster has tablespaces besides pg_default and pg_global: {}; physical backups of clusters with tablespaces are not supported yet: move their objects to pg_default (ALTER TABLE … SET TABLESPACE pg_default) and drop them, or use mode = \"logical\"",
            named.join(", ")
        );
    }
    let cluster_bytes = sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(pg_database_size(oid)), 0)::int8 FROM pg_database WHERE datallowconn",
    )
    .fetch_one(&mut *conn)
    .await
    .map_or(facts.size_bytes, |n| u64::try_from(n).unwrap_or(0));
    Ok(ClusterFacts {
        data_checksums: row.try_get("checksums")?,
        timeline: u32::try_from(row.try_get::<i64, _>("timeline")?).unwrap_or(0),
        cluster_bytes,
        wal_segment_size: u64::try_from(row.try_get::<i64, _>("seg_size")?).unwrap_or(0),
    })
}

impl Dump for PgBaseBackup<'_> {
    const DATA_FILE: &'static str = PG_BASE_DATA_FILE;
    /// A tar's magic is not at its start: [`TarStream`] checks it as the stream flows.
    const MAGIC: &'static [u8] = b"";

    fn size_hint(&self) -> u64 {
        self.cluster.cluster_bytes
    }

    fn tool_name(&self) -> &str {
        "pg_basebackup"
    }

    fn start(&mut self, ctx: &JobCtx) -> Result<(tokio::process::Child, Box<dyn Read + Send>)> {
        self.passfile = self
            .password
            .as_ref()
            .map(|p| pg::PassFile::create(&ctx.config.state_dir, p))
            .transpose()?;
        let mut cmd = pg::child_command(&self.pg_basebackup, self.passfile.as_ref());
        // The verdict reads the WAL range from the tool's English messages.
        cmd.env("LC_ALL", "C")
            .arg("--pgdata=-")
            .arg("--format=tar")
            // The WAL the backup needs is fetched at its end into the same tar: the backup
            // restores on its own, without a WAL archive.
            .arg("--wal-method=fetch")
            .arg("--checkpoint=fast")
            .arg(format!("--label=lifeboat job {}", ctx.job_id))
            .arg("--no-password")
            .arg("--verbose")
            .arg("--dbname")
            .arg(pg::url_for(self.target, &self.target.database).as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.pg_basebackup.display()))?;
        let stdout = stdout_file(child.stdout.take().context("pg_basebackup stdout")?)?;
        Ok((
            child,
            Box::new(TarStream::new(stdout, Arc::clone(&self.stream))),
        ))
    }

    fn rejected(&mut self, status: &ExitStatus, stderr: &str, e: &PipelineError) -> anyhow::Error {
        if status.success() {
            anyhow!(
                "{e}; pg_basebackup exited 0 but its output is not a tar archive{}",
                said(stderr)
            )
        } else {
            anyhow!(
                "pg_basebackup failed ({}): {}{}{}",
                describe_status(status),
                last_lines(stderr),
                match e {
                    PipelineError::Empty => String::new(),
                    other => format!(" ({other})"),
                },
                hba_hint(stderr)
            )
        }
    }

    fn verdict(&mut self, status: &ExitStatus, stderr: &str) -> Result<()> {
        if !status.success() {
            bail!(
                "pg_basebackup failed ({}): {}{}",
                describe_status(status),
                last_lines(stderr),
                hba_hint(stderr)
            );
        }
        let stream = self
            .stream
            .lock()
            .map_err(|_| anyhow!("the tar check panicked"))?
            .clone();
        if !stream.ends_with_trailer() {
            bail!(
                "pg_basebackup exited 0 but its tar ends without the end-of-archive blocks ({} bytes); the backup is incomplete{}",
                stream.bytes,
                said(stderr)
            );
        }
        if let Some(bad) = &stream.bad_header {
            bail!(
                "pg_basebackup's output is not a valid tar archive: {bad}; the backup was discarded"
            );
        }
        if !stream.has_manifest {
            bail!(
                "pg_basebackup's tar holds no backup_manifest ({} entries); a base backup needs PostgreSQL 13 or newer and its manifest: check that no wrapper passes --no-manifest",
                stream.entries
            );
        }
        let wal = parse_wal_range(stderr).with_context(|| {
            format!(
                "pg_basebackup exited 0 but did not report the backup's WAL start and end points and its completion{}",
                said(stderr)
            )
        })?;
        self.wal = Some(wal);
        Ok(())
    }

    async fn facts(self) -> Result<DumpFacts> {
        let wal = self.wal.context("the backup was not judged")?;
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
                name: "pg_basebackup".into(),
                version: self.tool_version,
            },
            format: PG_BASEBACKUP_FORMAT,
            // A physical backup holds pages, not rows: nothing was counted.
            row_counts_kind: "none",
            row_counts: Vec::new(),
            objects: None,
            physical: Some(manifest::PhysicalInfo {
                start_lsn: wal.start,
                stop_lsn: wal.end,
                timeline: wal.timeline,
                data_checksums: self.cluster.data_checksums,
                wal: "fetch".into(),
                backup_manifest: true,
                wal_segment_size: self.cluster.wal_segment_size,
            }),
        })
    }
}

/// The WAL a base backup needs, as pg_basebackup reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalRange {
    pub start: String,
    pub end: String,
    pub timeline: u32,
}

/// Reads `write-ahead log start point: 0/2000028 on timeline 1`, `write-ahead log end point:
/// 0/2000100` and `base backup completed` from pg_basebackup's `--verbose` output (LC_ALL=C).
pub(crate) fn parse_wal_range(stderr: &str) -> Option<WalRange> {
    let mut start = None;
    let mut end = None;
    let mut completed = false;
    for line in stderr.lines() {
        let line = line.trim();
        let msg = line.strip_prefix("pg_basebackup: ").unwrap_or(line);
        if let Some(rest) = msg.strip_prefix("write-ahead log start point: ") {
            let (lsn, tli) = rest.split_once(" on timeline ")?;
            start = Some((parse_lsn(lsn)?, tli.trim().parse::<u32>().ok()?));
        } else if let Some(rest) = msg.strip_prefix("write-ahead log end point: ") {
            end = Some(parse_lsn(rest)?);
        } else if msg == "base backup completed" {
            completed = true;
        }
    }
    let (start, timeline) = start?;
    let end = end?;
    completed.then_some(WalRange {
        start,
        end,
        timeline,
    })
}

/// `0/2000028`: two hexadecimal halves.
fn parse_lsn(s: &str) -> Option<String> {
    let s = s.trim();
    let (hi, lo) = s.split_once('/')?;
    let ok = |h: &str| !h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_hexdigit());
    (ok(hi) && ok(lo)).then(|| s.to_owned())
}

/// What to do when the server refused the replication connection itself.
fn hba_hint(stderr: &str) -> &'static str {
    if stderr.contains("pg_hba.conf") && stderr.contains("replication") {
        "; allow the role a replication connection in the server's pg_hba.conf (host replication ROLE AGENT_ADDRESS/32 scram-sha-256) and reload PostgreSQL"
    } else {
        ""
    }
}

fn said(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; pg_basebackup said: {}", last_lines(stderr))
    }
}

/// The tool's last few lines, for an error message.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    if lines.is_empty() {
        return "no error output".into();
    }
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

/// What a tar stream looked like: its size, its last bytes, and its entries' headers as they
/// passed (each found from the previous one's size), enough to know PostgreSQL's
/// `backup_manifest` is in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TarCheck {
    pub bytes: u64,
    /// The last [`TAR_TRAILER`] bytes seen.
    tail: Vec<u8>,
    /// Where the next header starts.
    next_header: u64,
    /// The header being gathered.
    header: Vec<u8>,
    /// A zero block where a header was due: the end of the archive.
    ended: bool,
    /// Entries seen.
    pub entries: u64,
    /// Whether a regular file `backup_manifest` was among them.
    pub has_manifest: bool,
    /// A header that did not parse.
    pub bad_header: Option<String>,
}

impl TarCheck {
    /// Follows the headers through `got`, the bytes after the first `self.bytes`.
    fn observe(&mut self, mut got: &[u8]) {
        let mut pos = self.bytes;
        while !got.is_empty() && !self.ended && self.bad_header.is_none() {
            if pos < self.next_header {
                let skip = usize::try_from(self.next_header - pos)
                    .unwrap_or(usize::MAX)
                    .min(got.len());
                got = &got[skip..];
                pos += skip as u64;
                continue;
            }
            let take = (512 - self.header.len()).min(got.len());
            self.header.extend_from_slice(&got[..take]);
            got = &got[take..];
            pos += take as u64;
            if self.header.len() < 512 {
                continue;
            }
            let header = std::mem::take(&mut self.header);
            if header.iter().all(|b| *b == 0) {
                self.ended = true;
                continue;
            }
            match parse_header(&header) {
                Some((name, kind, size)) => {
                    self.entries += 1;
                    if name == b"backup_manifest" && matches!(kind, b'0' | 0) {
                        self.has_manifest = true;
                    }
                    self.next_header = pos + size.div_ceil(512) * 512;
                }
                None => {
                    self.bad_header =
                        Some(format!("a tar header at byte {} does not parse", pos - 512));
                }
            }
        }
    }

    /// Two zero blocks at the end, on a 512-byte boundary.
    pub fn ends_with_trailer(&self) -> bool {
        self.bytes >= TAR_TRAILER as u64 * 2
            && self.bytes.is_multiple_of(512)
            && self.tail.len() == TAR_TRAILER
            && self.tail.iter().all(|b| *b == 0)
    }
}

/// A ustar header's name (without a prefix: PostgreSQL's names are short), type and size
/// (octal, or base-256 for large files); `None` if its checksum or size is wrong.
fn parse_header(h: &[u8]) -> Option<(&[u8], u8, u64)> {
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
        &f[..end]
    };
    let octal = |f: &[u8]| -> Option<u64> {
        let s = std::str::from_utf8(f)
            .ok()?
            .trim_matches(|c| c == ' ' || c == '\0');
        if s.is_empty() {
            return Some(0);
        }
        u64::from_str_radix(s, 8).ok()
    };
    // The checksum: the header's bytes summed with its own field read as spaces.
    let stored = octal(field(148..156))?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    if sum != stored {
        return None;
    }
    let raw_size = &h[124..136];
    let size = if raw_size[0] & 0x80 != 0 {
        raw_size[1..].iter().try_fold(0u64, |acc, b| {
            acc.checked_mul(256)?.checked_add(u64::from(*b))
        })?
    } else {
        octal(field(124..136))?
    };
    Some((field(0..100), h[156], size))
}

/// The tool's stdout, checked as it flows: the first header must carry the ustar magic at its
/// offset (refused before anything else is read, as a prefix magic is), and the last bytes are
/// kept for the verdict.
pub(crate) struct TarStream<R> {
    inner: R,
    check: Arc<Mutex<TarCheck>>,
    /// The first header, until its magic has been seen.
    head: Vec<u8>,
}

impl<R: Read> TarStream<R> {
    pub fn new(inner: R, check: Arc<Mutex<TarCheck>>) -> Self {
        Self {
            inner,
            check,
            head: Vec::with_capacity(512),
        }
    }
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        let need = TAR_MAGIC_OFFSET + TAR_MAGIC.len();
        if self.head.len() < need {
            let take = (need - self.head.len()).min(got.len());
            self.head.extend_from_slice(&got[..take]);
            let short_at_end = n == 0 && !self.head.is_empty();
            if (self.head.len() == need || short_at_end)
                && self.head.get(TAR_MAGIC_OFFSET..need) != Some(TAR_MAGIC)
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the stream is not a tar archive (no ustar magic at offset 257 of its first header)",
                ));
            }
        }
        let mut check = self
            .check
            .lock()
            .map_err(|_| std::io::Error::other("tar check poisoned"))?;
        check.observe(got);
        check.bytes += n as u64;
        if n >= TAR_TRAILER {
            check.tail.clear();
            check.tail.extend_from_slice(&got[n - TAR_TRAILER..]);
        } else if n > 0 {
            check.tail.extend_from_slice(got);
            let excess = check.tail.len().saturating_sub(TAR_TRAILER);
            check.tail.drain(..excess);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERBOSE: &str =
        "pg_basebackup: initiating base backup, waiting for checkpoint to complete
pg_basebackup: checkpoint completed
pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1
pg_basebackup: write-ahead log end point: 0/2000100
pg_basebackup: syncing data to disk ...
pg_basebackup: base backup completed
";

    #[test]
    fn the_wal_range_is_read_from_the_verbose_output() {
        assert_eq!(
            parse_wal_range(VERBOSE),
            Some(WalRange {
                start: "0/2000028".into(),
                end: "0/2000100".into(),
                timeline: 1,
            })
        );
        // No completion line, no end point, a garbled LSN: no verdict.
        assert_eq!(
            parse_wal_range(&VERBOSE.replace("base backup completed", "")),
            None
        );
        assert_eq!(
            parse_wal_range(&VERBOSE.replace("end point: 0/2000100", "")),
            None
        );
        assert_eq!(parse_wal_range(&VERBOSE.replace("0/2000028", "0/zz")), None);
    }

    fn read_all(data: &[u8], chunk: usize) -> (std::io::Result<Vec<u8>>, TarCheck) {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let check = Arc::new(Mutex::new(TarCheck::default()));
        let mut s = TarStream::new(Chunks(data, chunk), Arc::clone(&check));
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out).map(|_| out);
        let c = check.lock().expect("lock").clone();
        (r, c)
    }

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn a_tar_stream_is_checked_as_it_flows() {
        let big = vec![7u8; 5000];
        let good = tar(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/112", &big),
            ("empty", b""),
            ("backup_manifest", b"{}"),
        ]);
        for chunk in [1, 7, 300, 513, 1 << 20] {
            let (r, c) = read_all(&good, chunk);
            assert_eq!(r.expect("a tar"), good, "chunk {chunk}");
            assert!(c.ends_with_trailer(), "chunk {chunk}");
            assert_eq!(c.entries, 4, "chunk {chunk}");
            assert!(c.has_manifest, "chunk {chunk}");
            assert!(c.bad_header.is_none(), "chunk {chunk}");
        }
        // No manifest.
        let (r, c) = read_all(&tar(&[("PG_VERSION", b"15\n"), ("x", &big)]), 4096);
        r.expect("a tar");
        assert!(!c.has_manifest && c.entries == 2);
        // A damaged second header (its size field).
        let mut bad = good.clone();
        bad[1024 + 124] = b'9';
        let (_, c) = read_all(&bad, 4096);
        assert!(c.bad_header.is_some(), "{c:?}");
        // Cut before its end-of-archive blocks: read, but judged incomplete.
        let (r, c) = read_all(&good[..good.len() - 1024], 4096);
        r.expect("readable");
        assert!(!c.ends_with_trailer());
        // Not a tar at all.
        let (r, _) = read_all(&[b'x'; 2000], 100);
        let e = r.expect_err("not a tar").to_string();
        assert!(e.contains("ustar"), "{e}");
        // Shorter than a header.
        let (r, _) = read_all(b"PGDMP", 100);
        assert!(r.is_err());
    }
}
