//! A physical base backup restored into an empty data directory (`restore --data-dir`): the
//! tar streams from the repository through the same hash checks as every restore (stored
//! size, stored and raw SHA-256) into an extractor that accepts only plain files and
//! directories inside the directory, every file and directory synced; then PostgreSQL's own
//! `pg_verifybackup` checks the files against the `backup_manifest` the archive carries. It is
//! not the scratch-database [`super::Restore`]: a data directory has no swap, only "all or
//! nothing".
//!
//! The guarantees: the directory must be empty (one holding `PG_VERSION` or `postmaster.pid`
//! is refused by name: a running cluster's directory is never touched); `PG_VERSION` is
//! written last, after the hashes matched, so the directory cannot be started by PostgreSQL
//! until the backup is whole; on any failure (a hash, the archive, `pg_verifybackup`,
//! cancellation) everything extracted is removed, and the directory itself if the restore
//! created it. Point-in-time recovery will later write its recovery settings into the
//! directory between the extraction and the verdict.

use std::{
    io::{self, BufReader, BufWriter, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use lifeboat_proto::domain::{DataDir, Restored};
use tokio_util::sync::CancellationToken;

use super::{Located, check_engine, human_bytes, locate, open_data, read_manifest};
use crate::{
    engine::postgres as pg,
    job::JobCtx,
    manifest::{Manifest, PhysicalInfo},
    pipeline::{self, PipelineError},
    work::RestoreWork,
};

/// The file PostgreSQL needs to accept a directory as a data directory: held back until the
/// backup is whole.
const PG_VERSION: &str = "PG_VERSION";
/// Longest `PG_VERSION` accepted ("15\n").
const PG_VERSION_MAX: u64 = 64;
/// How long `pg_verifybackup` may take (it reads every file once).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A physical backup and where it goes, checked; nothing written yet.
struct Plan {
    loc: Located,
    manifest: Manifest,
    physical: PhysicalInfo,
    dir: DataDir,
    dest: Destination,
    pg_verifybackup: PathBuf,
    /// Point-in-time recovery: the settings written once the backup is whole.
    pitr: Option<super::pitr::Pitr>,
}

/// The restore of a physical backup into `spec.data_dir`.
pub(crate) async fn run(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<Restored> {
    let plan = plan(ctx, spec, dir).await?;
    ctx.report.bail_on_errors("restore refused")?;
    let plan = plan.context("restore could not be planned")?;
    ctx.set_phase("restoring");
    let claimed = {
        let (dir, dest) = (plan.dir.path().to_owned(), plan.dest.clone());
        tokio::task::spawn_blocking(move || Claimed::claim(&dir, &dest))
            .await
            .context("claim task panicked")??
    };
    match extract_and_verify(ctx, &plan, &claimed).await {
        Ok(verified) => {
            claimed.keep();
            Ok(restored(ctx, &plan, &verified))
        }
        Err(e) => {
            let removed = tokio::task::spawn_blocking(move || claimed.remove())
                .await
                .map_err(|j| anyhow!("cleanup task panicked: {j}"))
                .and_then(|r| r);
            if let Err(c) = removed {
                return Err(e.context(format!(
                    "and removing what was extracted into {dir} failed too ({c:#}); remove its contents before using the directory"
                )));
            }
            Err(e.context(format!(
                "restore into {dir} failed; what was extracted there was removed"
            )))
        }
    }
}

/// `restore --dry-run --data-dir`: the checks and the steps, nothing written.
pub(crate) async fn dry_run(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<()> {
    if let Some(plan) = plan(ctx, spec, dir).await? {
        let r = &ctx.report;
        r.step(format!(
            "stream {} ({} stored) from {} through the size and SHA-256 checks",
            plan.loc.data_key,
            human_bytes(plan.loc.expected.stored.size),
            plan.loc.repo.describe()
        ));
        r.step(match plan.dest {
            Destination::Missing => format!("create {} (mode 0700)", plan.dir),
            Destination::Empty { .. } => {
                format!("use the empty directory {} (mode 0700)", plan.dir)
            }
        });
        r.step("extract the tar (plain files and directories only), syncing every file; PG_VERSION last");
        r.step(format!(
            "check the files with {} against the backup's backup_manifest",
            plan.pg_verifybackup.display()
        ));
        r.step(match &plan.pitr {
            Some(p) => format!(
                "write recovery.signal and the recovery settings into postgresql.auto.conf (archiving off): {}",
                p.summary
            ),
            None => "turn archiving off in postgresql.auto.conf (a copy must not archive into the source's archive)".to_owned(),
        });
    }
    ctx.report.bail_on_errors("the restore would fail")
}

/// Checks the backup (a physical one, its manifest agreeing with the catalog, its data there
/// with the recorded size), the directory and the tools; findings go to the job's report.
async fn plan(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<Option<Plan>> {
    let report = &ctx.report;
    let rec = &spec.backup;
    let target = ctx
        .config
        .targets
        .get(&spec.target)
        .with_context(|| format!("this agent has no target {:?}", spec.target))?;
    if report.check("backup", check_engine(rec, target)).is_none() {
        return Ok(None);
    }
    let Some(loc) = report.check("backup", locate(ctx, rec)) else {
        return Ok(None);
    };
    ctx.set_phase("checking");
    let manifest = match read_manifest(&loc).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            report.error(
                "backup",
                format!(
                    "backup {} has no manifest in {}; it is incomplete or was deleted",
                    rec.backup_id,
                    loc.repo.describe()
                ),
            );
            return Ok(None);
        }
        Err(e) => {
            report.error(
                "backup",
                format!("cannot use the manifest in {}: {e:#}", loc.repo.describe()),
            );
            return Ok(None);
        }
    };
    let Some(physical) = manifest.physical.clone() else {
        report.error(
            "backup",
            format!(
                "the manifest of backup {} has no physical section although the catalog records a base backup; it cannot be restored into a data directory",
                rec.backup_id
            ),
        );
        return Ok(None);
    };
    match loc.repo.head(&loc.data_key).await {
        Ok(Some(h)) if h.size == loc.expected.stored.size => report.ok(
            "backup",
            format!(
                "{}: base backup of PostgreSQL {} (system identifier {}), timeline {}, WAL {} to {} inside; {} stored in {}",
                rec.backup_id,
                manifest.server.version,
                manifest.server.system_identifier,
                physical.timeline,
                physical.start_lsn,
                physical.stop_lsn,
                human_bytes(h.size),
                loc.repo.describe()
            ),
        ),
        Ok(Some(h)) => report.error(
            "backup",
            PipelineError::Mismatch {
                what: format!(
                    "{} holds {} bytes, the catalog recorded {}",
                    loc.data_key, h.size, loc.expected.stored.size
                ),
            }
            .to_string(),
        ),
        Ok(None) => report.error(
            "backup",
            format!(
                "data file {} is missing from {}",
                loc.data_key,
                loc.repo.describe()
            ),
        ),
        Err(e) => report.error(
            "backup",
            format!(
                "cannot read {} from {}: {e}",
                loc.data_key,
                loc.repo.describe()
            ),
        ),
    }
    let dest = {
        let path = dir.path().to_owned();
        let allowed = target.restore_data_dirs.clone();
        let name = target.name.clone();
        tokio::task::spawn_blocking(move || {
            check_allowed(&allowed, &name, &path)?;
            Destination::check(&path)
        })
        .await
        .context("directory check panicked")?
    };
    let raw = loc.expected.raw.size;
    let dest = dest.and_then(|d| {
        check_space(dir.path(), raw)?;
        Ok(d)
    });
    let dest = match dest {
        Ok(d) => {
            report.ok(
                "destination",
                match d {
                    Destination::Missing => format!("{dir} does not exist; it will be created"),
                    Destination::Empty { .. } => format!("{dir} is an empty directory"),
                },
            );
            Some(d)
        }
        Err(e) => {
            report.error("destination", format!("{e:#}"));
            None
        }
    };
    let major = manifest.server.version_num / 10000;
    let pg_verifybackup = pg::tool(target, "pg_verifybackup", major);
    let tool = match pg::tool_version(&pg_verifybackup).await {
        Ok((version, tool_major)) if tool_major >= major => {
            report.ok(
                "tools",
                format!("pg_verifybackup {version} ({})", pg_verifybackup.display()),
            );
            Some(pg_verifybackup)
        }
        Ok((version, _)) => {
            report.error(
                "tools",
                format!(
                    "pg_verifybackup {version} is older than the backup's PostgreSQL {}; install the PostgreSQL {major} server tools or set pg_bin_dir",
                    manifest.server.version
                ),
            );
            None
        }
        Err(e) => {
            report.error("tools", format!("{e:#}"));
            None
        }
    };
    let pitr = match &spec.recovery {
        None => Ok(None),
        Some(r) => super::pitr::plan(ctx, &loc.repo, &manifest, &physical, r)
            .await
            .map(Some),
    };
    let pitr = match pitr {
        Ok(p) => {
            if let Some(p) = &p {
                report.ok("recovery", &p.summary);
            }
            p
        }
        Err(e) => {
            report.error("recovery", format!("{e:#}"));
            return Ok(None);
        }
    };
    let (Some(dest), Some(pg_verifybackup)) = (dest, tool) else {
        return Ok(None);
    };
    Ok(Some(Plan {
        loc,
        manifest,
        physical,
        dir: dir.clone(),
        dest,
        pg_verifybackup,
        pitr,
    }))
}

/// What `pg_verifybackup` said, and what was extracted.
struct Verified {
    files: u64,
    verifybackup: String,
}

/// Streams the archive through the hash checks into the extractor, writes `PG_VERSION`
/// once the hashes matched, then runs `pg_verifybackup`.
async fn extract_and_verify(ctx: &JobCtx, plan: &Plan, claimed: &Claimed) -> Result<Verified> {
    let loc = &plan.loc;
    let file = open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })?;
    let (reader, writer) = io::pipe().context("create a pipe")?;
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    // A base backup's tar was checked as it streamed at backup time; here its hashes are.
    let pipeline = tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(256 * 1024, writer);
        // Dropping the returned writer ends the extractor's input.
        pipeline::decompress(file, out, b"", &expected, &counters, &cancel).map(drop)
    });
    let root = claimed.dir.clone();
    let owner = claimed.owner;
    let cancel = ctx.cancel.clone();
    let extractor = tokio::task::spawn_blocking(move || {
        extract(
            BufReader::with_capacity(256 * 1024, reader),
            &root,
            owner,
            &cancel,
        )
    });
    let (piped, extracted) = tokio::join!(pipeline, extractor);
    let piped = piped.context("restore pipeline panicked")?;
    let extracted = extracted.context("extractor panicked")?;
    if ctx.cancel.is_cancelled() {
        bail!("cancelled");
    }
    let extracted = match (piped, extracted) {
        (Ok(()), Ok(x)) => x,
        // The stored bytes are not the recorded ones: that is the verdict, whatever the
        // extractor made of them.
        (Err(e @ (PipelineError::Mismatch { .. } | PipelineError::Decode(_))), _) => {
            return Err(e).with_context(|| format!("restore backup from {}", loc.data_key));
        }
        (_, Err(e)) => return Err(e.context(format!("extract {}", loc.data_key))),
        (Err(e), Ok(_)) => {
            return Err(e).with_context(|| format!("restore backup from {}", loc.data_key));
        }
    };
    {
        let root = claimed.dir.clone();
        let version = extracted.pg_version.clone();
        tokio::task::spawn_blocking(move || write_pg_version(&root, version.as_deref(), owner))
            .await
            .context("write task panicked")??;
    }
    ctx.set_phase("verifying");
    let verifybackup = run_verifybackup(&plan.pg_verifybackup, &claimed.dir, &ctx.cancel).await?;
    {
        // A restored copy never archives into the source's archive (see `archive_off`); a
        // point-in-time recovery also gets its recovery settings and recovery.signal.
        let (root, settings, signal) = match &plan.pitr {
            Some(p) => (claimed.dir.clone(), p.settings.clone(), true),
            None => (
                claimed.dir.clone(),
                crate::wal::recovery::archive_off(&format!(
                    "lifeboat restore of backup {}",
                    plan.manifest.backup_id
                )),
                false,
            ),
        };
        tokio::task::spawn_blocking(move || {
            crate::wal::recovery::write(&root, &settings, signal)?;
            let mut files = vec!["postgresql.auto.conf"];
            if signal {
                files.push("recovery.signal");
            }
            chown_like_root(&root, &files, owner)
        })
        .await
        .context("write task panicked")??;
    }
    Ok(Verified {
        files: extracted.files,
        verifybackup,
    })
}

/// The restore's result, and its lines in the report.
fn restored(ctx: &JobCtx, plan: &Plan, v: &Verified) -> Restored {
    let m = &plan.manifest;
    ctx.report.ok(
        "restored",
        format!(
            "{}: PostgreSQL {} cluster (system identifier {}), {} files, timeline {}, consistent at WAL {}; pg_verifybackup: {}",
            plan.dir,
            m.server.version,
            m.server.system_identifier,
            v.files,
            plan.physical.timeline,
            plan.physical.stop_lsn,
            v.verifybackup
        ),
    );
    ctx.report.info(
        "next",
        format!(
            "start it as the directory's owner with pg_ctl -D {} start (PostgreSQL {} binaries); its postgresql.conf and postgresql.auto.conf are the source server's: check port and paths first",
            plan.dir, plan.manifest.server.version
        ),
    );
    if let Some(p) = &plan.pitr {
        ctx.report.info(
            "recovery",
            format!(
                "when it starts it replays the archived WAL: {}; the agent must be running for restore_command, and the server's log says where recovery stopped",
                p.summary
            ),
        );
    }
    Restored {
        database: String::new(),
        data_dir: Some(plan.dir.clone()),
        row_counts: Vec::new(),
        raw_bytes: plan.loc.expected.raw.size,
    }
}

/// What the directory is before the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// Created by the restore (its parent exists).
    Missing,
    /// An existing empty directory, and its owner (the restored files get it when the agent
    /// runs as root).
    Empty { uid: u32, gid: u32 },
}

impl Destination {
    /// Refuses anything but an empty directory, or a missing one whose parent exists; names
    /// what makes a directory a data directory.
    fn check(dir: &Path) -> Result<Self> {
        if let Some(cluster) = enclosing_cluster(dir) {
            bail!(
                "{} is inside {}, the data directory of a PostgreSQL cluster, which a restore never touches; restore into a directory outside it",
                dir.display(),
                cluster.display()
            );
        }
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = dir.parent().unwrap_or(Path::new("/"));
                return match std::fs::metadata(parent) {
                    Ok(p) if p.is_dir() => Ok(Destination::Missing),
                    Ok(_) => bail!("{} is not a directory", parent.display()),
                    Err(e) => bail!(
                        "{} does not exist and neither does its parent {} ({e}); create the parent first",
                        dir.display(),
                        parent.display()
                    ),
                };
            }
            Err(e) => bail!("cannot inspect {}: {e}", dir.display()),
        };
        if meta.file_type().is_symlink() {
            bail!(
                "{} is a symbolic link; name the directory it points to",
                dir.display()
            );
        }
        if !meta.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("list {}", dir.display()))?;
        names.sort();
        if names.iter().any(|n| n == "postmaster.pid") {
            bail!(
                "{} holds postmaster.pid: it is the data directory of a running (or crashed) PostgreSQL server, which a restore never touches; restore into a new empty directory",
                dir.display()
            );
        }
        if names.iter().any(|n| n == PG_VERSION) {
            bail!(
                "{} holds PG_VERSION: it is a PostgreSQL data directory, which a restore never overwrites; restore into a new empty directory (or remove the old cluster yourself first)",
                dir.display()
            );
        }
        if names == ["lost+found"] {
            bail!(
                "{} holds only lost+found: it is the root of a file system, which PostgreSQL does not accept as a data directory; create a subdirectory (install -d -o postgres -m 0700 {}/pgdata) and restore into it",
                dir.display(),
                dir.display()
            );
        }
        if names.iter().any(|n| n == "backup_label") {
            bail!(
                "{} holds backup_label but no PG_VERSION: an interrupted restore was left there; remove its contents and restore again",
                dir.display()
            );
        }
        if !names.is_empty() {
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            bail!(
                "{} is not empty ({} entries: {}{}); restore into an empty directory",
                dir.display(),
                names.len(),
                shown.join(", "),
                if names.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        Ok(Destination::Empty {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// Whether the target's `restore_data_dirs` hold `dir`, symbolic links in what exists of its
/// path resolved (a link under an allowed directory cannot lead elsewhere).
fn check_allowed(allowed: &[PathBuf], target: &str, dir: &Path) -> Result<()> {
    if allowed.is_empty() {
        bail!(
            "target {target} allows no restores into data directories; list the directories they may be made under in its [[target]] in the agent's config, e.g. restore_data_dirs = [\"/srv/pg\"]"
        );
    }
    let real = resolve_existing(dir)?;
    let inside = allowed.iter().any(|a| {
        let a = std::fs::canonicalize(a).unwrap_or_else(|_| a.clone());
        real.starts_with(&a)
    });
    if !inside {
        let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
        bail!(
            "{} ({}) is not under the directories target {target} allows restores into ({}); restore under one of them or add it to restore_data_dirs in the agent's config",
            dir.display(),
            real.display(),
            list.join(", ")
        );
    }
    Ok(())
}

/// `dir` with its longest existing prefix canonicalized (symbolic links resolved).
fn resolve_existing(dir: &Path) -> Result<PathBuf> {
    let mut rest = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::canonicalize(at) {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (at.parent(), at.file_name()) else {
                    return Err(e).with_context(|| format!("resolve {}", dir.display()));
                };
                rest.push(name.to_owned());
                at = parent;
            }
            Err(e) => return Err(e).with_context(|| format!("resolve {}", dir.display())),
        }
    }
}

/// The nearest directory above `dir` (lexically) that is a PostgreSQL data directory
/// (`PG_VERSION` and `global/pg_control`).
fn enclosing_cluster(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .find(|a| a.join(PG_VERSION).is_file() && a.join("global/pg_control").is_file())
        .map(Path::to_owned)
}

/// Whether the file system that will hold `dir` has room for `bytes` (what the archive
/// unpacks to) for the agent's user; `Ok(())` when it cannot tell.
fn check_space(dir: &Path, bytes: u64) -> Result<()> {
    let on = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(Path::new("/"))
    };
    let Ok(st) = rustix::fs::statvfs(on) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < bytes {
        bail!(
            "the file system of {} has {} free, the backup unpacks to {}; free space or restore elsewhere",
            on.display(),
            human_bytes(free),
            human_bytes(bytes)
        );
    }
    Ok(())
}

/// The directory taken for the restore: emptied again (and removed if the restore created it)
/// unless [`Claimed::keep`] is called.
struct Claimed {
    dir: PathBuf,
    created: bool,
    /// Who the extracted files are given to (an agent running as root restoring into a
    /// directory someone else owns).
    owner: Option<(u32, u32)>,
    kept: std::sync::atomic::AtomicBool,
}

impl Claimed {
    fn claim(dir: &Path, dest: &Destination) -> Result<Self> {
        // Checked again: the directory may have changed since the plan.
        let now = Destination::check(dir)?;
        if &now != dest {
            bail!(
                "{} changed while the restore was being planned; run it again",
                dir.display()
            );
        }
        let euid = rustix::process::geteuid().as_raw();
        let (created, owner) = match now {
            Destination::Missing => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                (true, None)
            }
            Destination::Empty { uid, gid } => {
                // PostgreSQL starts only on a directory of mode 0700 or 0750.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("set mode 0700 on {}", dir.display()))?;
                (false, (euid == 0 && uid != 0).then_some((uid, gid)))
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            created,
            owner,
            kept: false.into(),
        })
    }

    fn keep(&self) {
        self.kept.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Removes everything inside the directory (never following a link), and the directory
    /// itself if the restore created it.
    fn remove(self) -> Result<()> {
        self.keep();
        empty_dir(&self.dir)?;
        if self.created {
            std::fs::remove_dir(&self.dir)
                .with_context(|| format!("remove {}", self.dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Claimed {
    /// The last resort when the restore's future is dropped half-way (the job's task ended):
    /// nothing that looks like a data directory is left.
    fn drop(&mut self) {
        if !self.kept.load(std::sync::atomic::Ordering::SeqCst) {
            if let Err(e) = empty_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), "failed to remove an unfinished restore: {e:#}");
            }
            if self.created {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

fn empty_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("inspect {}", path.display()))?;
        if kind.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}

/// What the extractor wrote.
#[derive(Debug)]
pub(crate) struct Extracted {
    pub files: u64,
    /// `PG_VERSION`'s content, held back until the backup is known whole.
    pub pg_version: Option<Vec<u8>>,
}

/// Extracts a base backup's tar into `root` (empty): directories (mode 0700) and regular
/// files (mode 0600, synced) only, each path relative and inside `root`; anything else (a
/// link, a device, an absolute path, `..`, a duplicate file) is refused. `PG_VERSION` is kept
/// in memory. The input is read to its end.
pub(crate) fn extract<R: Read>(
    input: R,
    root: &Path,
    owner: Option<(u32, u32)>,
    cancel: &CancellationToken,
) -> Result<Extracted> {
    let mut archive = tar::Archive::new(input);
    let mut files = 0u64;
    let mut pg_version = None;
    let mut dirs = vec![root.to_owned()];
    for entry in archive.entries().context("read the archive")? {
        if cancel.is_cancelled() {
            bail!("cancelled");
        }
        let mut entry = entry.context("read the archive")?;
        let raw = entry.path().context("read an entry's name")?.into_owned();
        let Some(rel) = safe_relative(&raw)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        let path = root.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                ensure_dir(root, &rel, owner, &mut dirs)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel == Path::new(PG_VERSION) {
                    let mut v = Vec::new();
                    (&mut entry)
                        .take(PG_VERSION_MAX + 1)
                        .read_to_end(&mut v)
                        .context("read PG_VERSION")?;
                    if v.len() as u64 > PG_VERSION_MAX || pg_version.is_some() {
                        bail!("the archive's PG_VERSION is not PostgreSQL's");
                    }
                    pg_version = Some(v);
                    continue;
                }
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    ensure_dir(root, parent, owner, &mut dirs)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .with_context(|| {
                        format!(
                            "create {} (the archive names {} twice, or the directory changed)",
                            path.display(),
                            rel.display()
                        )
                    })?;
                io::copy(&mut entry, &mut f)
                    .with_context(|| format!("write {}", path.display()))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                        .with_context(|| format!("give {} to uid {uid}", path.display()))?;
                }
                f.sync_all()
                    .with_context(|| format!("sync {}", path.display()))?;
                files += 1;
            }
            tar::EntryType::XGlobalHeader => {}
            other => bail!(
                "the archive holds {} {} -> {:?}; a base backup without tablespaces holds only files and directories, so it is refused",
                kind_name(other),
                raw.display(),
                entry.link_name().ok().flatten().map(|l| l.into_owned())
            ),
        }
    }
    // The end-of-archive blocks and any padding after them.
    let mut rest = archive.into_inner();
    let mut tail = [0u8; 8192];
    loop {
        let n = match rest.read(&mut tail) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read the end of the archive"),
        };
        if tail[..n].iter().any(|b| *b != 0) {
            bail!("the archive has data after its end");
        }
    }
    for d in dirs.iter().rev() {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("sync {}", d.display()))?;
    }
    Ok(Extracted { files, pg_version })
}

/// `./base/1` → `base/1`; `.` → `None`; an absolute path, `..` or anything odd is refused.
fn safe_relative(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                "the archive names {}, outside the data directory; it is refused",
                raw.display()
            ),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates `rel` and its parents under `root` (mode 0700), refusing to pass through anything
/// that is not a real directory.
fn ensure_dir(
    root: &Path,
    rel: &Path,
    owner: Option<(u32, u32)>,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut at = root.to_owned();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => bail!(
                "{} is in the way of a directory of the archive",
                at.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("inspect {}", at.display())),
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&at)
            .with_context(|| format!("create {}", at.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", at.display()))?;
        }
        made.push(at.clone());
    }
    Ok(())
}

fn kind_name(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Symlink => "the symbolic link",
        tar::EntryType::Link => "the hard link",
        tar::EntryType::Char => "the character device",
        tar::EntryType::Block => "the block device",
        tar::EntryType::Fifo => "the FIFO",
        _ => "the special entry",
    }
}

/// Writes the held-back `PG_VERSION` (synced, then its directory): from here PostgreSQL
/// accepts the directory.
fn write_pg_version(root: &Path, version: Option<&[u8]>, owner: Option<(u32, u32)>) -> Result<()> {
    let version = version.context("the archive has no PG_VERSION; it is not a base backup")?;
    let path = root.join(PG_VERSION);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(version)
        .with_context(|| format!("write {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .with_context(|| format!("give {} to uid {uid}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", root.display()))
}

/// Gives the files `names` under `root` to the directory's owner, as the extraction did.
fn chown_like_root(root: &Path, names: &[&str], owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        for n in names {
            let p = root.join(n);
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", p.display()))?;
        }
    }
    Ok(())
}

/// Runs `pg_verifybackup` on the directory (the `backup_manifest` in it, the WAL in its
/// `pg_wal` parsed): its last line on success, its output in the error otherwise.
async fn run_verifybackup(tool: &Path, dir: &Path, cancel: &CancellationToken) -> Result<String> {
    let mut cmd = crate::process::tool_command(tool);
    cmd.env("LC_ALL", "C")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", tool.display()))?;
    let out = tokio::select! {
        out = tokio::time::timeout(VERIFY_TIMEOUT, child.wait_with_output()) => out
            .map_err(|_| anyhow!("pg_verifybackup did not finish within {}h", VERIFY_TIMEOUT.as_secs() / 3600))?
            .context("wait for pg_verifybackup")?,
        () = cancel.cancelled() => bail!("cancelled"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.trim().lines().collect();
    let shown = lines[lines.len().saturating_sub(8)..].join(" / ");
    if !out.status.success() {
        bail!(
            "pg_verifybackup found the restored files do not match the backup's backup_manifest ({}): {}",
            crate::process::describe_status(&out.status),
            if shown.is_empty() {
                "no output"
            } else {
                &shown
            }
        );
    }
    Ok(lines.last().map_or("ok", |l| l.trim()).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("finish")
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        // Names are written raw so hostile ones can be made.
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn special(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str) {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o600);
        h.set_entry_type(kind);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).expect("link name");
        }
        h.set_cksum();
        b.append(&h, io::empty()).expect("append");
    }

    fn run(data: &[u8]) -> (Result<Extracted>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = extract(data, dir.path(), None, &CancellationToken::new());
        (r, dir)
    }

    #[test]
    fn files_and_directories_are_extracted_with_pg_version_held_back() {
        let data = tar_of(|b| {
            file(b, "PG_VERSION", b"15\n");
            special(b, "base/", tar::EntryType::Directory, "");
            file(b, "base/1/112", b"page");
            file(b, "./pg_wal/000000010000000000000002", b"wal");
            file(b, "backup_manifest", b"{}");
        });
        let (r, dir) = run(&data);
        let x = r.expect("extracted");
        assert_eq!(x.files, 3);
        assert_eq!(x.pg_version.as_deref(), Some(&b"15\n"[..]));
        assert!(!dir.path().join("PG_VERSION").exists(), "held back");
        assert_eq!(
            std::fs::read(dir.path().join("base/1/112")).expect("read"),
            b"page"
        );
        let mode = std::fs::metadata(dir.path().join("base/1"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(dir.path().join("backup_manifest"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        write_pg_version(dir.path(), x.pg_version.as_deref(), None).expect("write");
        assert_eq!(
            std::fs::read(dir.path().join("PG_VERSION")).expect("read"),
            b"15\n"
        );
    }

    #[test]
    fn hostile_entries_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("..", tar_of(|b| file(b, "../escaped", b"x"))),
            ("outside", tar_of(|b| file(b, "base/../../escaped", b"x"))),
            ("outside", tar_of(|b| file(b, "/etc/escaped", b"x"))),
            (
                "symbolic link",
                tar_of(|b| special(b, "pg_wal", tar::EntryType::Symlink, "/tmp")),
            ),
            (
                "hard link",
                tar_of(|b| special(b, "x", tar::EntryType::Link, "/etc/passwd")),
            ),
            (
                "device",
                tar_of(|b| special(b, "dev", tar::EntryType::Block, "")),
            ),
            (
                "FIFO",
                tar_of(|b| special(b, "fifo", tar::EntryType::Fifo, "")),
            ),
            (
                "twice",
                tar_of(|b| {
                    file(b, "a", b"1");
                    file(b, "a", b"2");
                }),
            ),
        ];
        for (needle, data) in cases {
            let (r, dir) = run(&data);
            let e = format!("{:#}", r.expect_err(needle));
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(
                !dir.path()
                    .parent()
                    .expect("parent")
                    .join("escaped")
                    .exists(),
                "{needle}: escaped"
            );
        }
        // Trailing garbage after the end of the archive.
        let mut data = tar_of(|b| file(b, "a", b"1"));
        data.extend_from_slice(b"more");
        let (r, _) = run(&data);
        assert!(format!("{:#}", r.expect_err("garbage")).contains("after its end"));
    }

    #[test]
    fn only_an_empty_directory_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("new");
        assert_eq!(
            Destination::check(&d).expect("missing"),
            Destination::Missing
        );
        let e = format!(
            "{:#}",
            Destination::check(&dir.path().join("no/such")).expect_err("no parent")
        );
        assert!(e.contains("create the parent"), "{e}");
        std::fs::create_dir(&d).expect("mkdir");
        assert!(matches!(
            Destination::check(&d).expect("empty"),
            Destination::Empty { .. }
        ));
        std::fs::write(d.join("notes.txt"), "x").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("not empty"));
        assert!(e.contains("not empty") && e.contains("notes.txt"), "{e}");
        std::fs::remove_file(d.join("notes.txt")).expect("rm");
        std::fs::create_dir(d.join("lost+found")).expect("mkdir");
        let e = format!("{:#}", Destination::check(&d).expect_err("a mount point"));
        assert!(
            e.contains("lost+found") && e.contains("subdirectory"),
            "{e}"
        );
        std::fs::write(d.join("backup_label"), "x").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("interrupted"));
        assert!(e.contains("interrupted restore"), "{e}");
        std::fs::write(d.join("PG_VERSION"), "15").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("a data dir"));
        assert!(e.contains("holds PG_VERSION"), "{e}");
        // Anything inside a cluster's directory, existing or not.
        std::fs::create_dir_all(d.join("global")).expect("mkdir");
        std::fs::write(d.join("global/pg_control"), "x").expect("write");
        for inside in [d.join("sub"), d.join("base/new")] {
            let e = format!("{:#}", Destination::check(&inside).expect_err("inside"));
            assert!(
                e.contains("is inside") && e.contains("never touches"),
                "{e}"
            );
        }
        std::fs::write(d.join("postmaster.pid"), "1").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("running"));
        assert!(e.contains("postmaster.pid") && e.contains("running"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        let e = format!("{:#}", Destination::check(&link).expect_err("a link"));
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn only_the_allowed_directories_are_restored_into() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = dir.path().join("pg");
        std::fs::create_dir(&allowed).expect("mkdir");
        let other = dir.path().join("etc");
        std::fs::create_dir(&other).expect("mkdir");
        let ok = [allowed.clone()];
        check_allowed(&ok, "t", &allowed.join("new")).expect("under it");
        check_allowed(&ok, "t", &allowed.join("a/b")).expect("deeper, not yet made");
        let e = format!("{:#}", check_allowed(&[], "t", &allowed).expect_err("none"));
        assert!(
            e.contains("allows no restores") && e.contains("restore_data_dirs"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            check_allowed(&ok, "t", &other.join("new")).expect_err("elsewhere")
        );
        assert!(e.contains("is not under"), "{e}");
        // A link under the allowed directory does not lead out of it.
        std::os::unix::fs::symlink(&other, allowed.join("link")).expect("symlink");
        let e = format!(
            "{:#}",
            check_allowed(&ok, "t", &allowed.join("link/new")).expect_err("through a link")
        );
        assert!(e.contains("is not under"), "{e}");
    }

    #[test]
    fn a_restore_that_cannot_fit_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_space(&dir.path().join("new"), 1024).expect("a KiB fits");
        let e = format!(
            "{:#}",
            check_space(dir.path(), u64::MAX / 2).expect_err("does not fit")
        );
        assert!(e.contains("free") && e.contains("unpacks to"), "{e}");
    }

    #[test]
    fn a_failed_restore_empties_the_directory_it_claimed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Created by the restore: removed entirely.
        let d = dir.path().join("new");
        let c = Claimed::claim(&d, &Destination::Missing).expect("claim");
        std::fs::create_dir_all(d.join("base/1")).expect("mkdir");
        std::fs::write(d.join("base/1/112"), "x").expect("write");
        c.remove().expect("remove");
        assert!(!d.exists(), "created, so removed");
        // The operator's empty directory: kept, emptied, even when the restore is dropped.
        std::fs::create_dir(&d).expect("mkdir");
        let dest = Destination::check(&d).expect("empty");
        let c = Claimed::claim(&d, &dest).expect("claim");
        std::fs::write(d.join("global"), "x").expect("write");
        drop(c);
        assert!(d.is_dir(), "the operator's directory stays");
        assert_eq!(std::fs::read_dir(&d).expect("list").count(), 0, "emptied");
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
