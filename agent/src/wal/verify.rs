//! `lifeboat pitr verify ENV/NAME`: a physical target's WAL archive read back whole. Every
//! archived file is decompressed and hashed against the SHA-256 in its key; every timeline
//! history file must parse; and from the start of each base backup in the repository the
//! chain of segments, followed across timeline switches as recovery follows them, must be
//! unbroken to the newest archived segment. The verdict: `corrupt` if any file fails its hash,
//! `missing` if a chain has a gap, `ok` otherwise; the report names each finding.
//!
//! Segments removed by WAL retention while the verify runs (the agent's own expiry pass) are
//! not findings: the file is looked for again before it is called damaged or lost.

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use lifeboat_proto::domain::{Lsn, Verified, VerifyStatus};

use super::{
    chain::Archive,
    keys::{self, Reader},
    name::WalName,
    store::{self, Archived},
};
use crate::{
    config::BackupMode,
    job::JobCtx,
    manifest::{MAX_MANIFEST_BYTES, Manifest},
    repo::{MANIFEST_FILE, ObjectInfo, Repository},
    restore::human_bytes,
};

/// Files read back at once (each is one object; on S3 the round trips overlap).
const PARALLEL: usize = 4;
/// How many damaged files a verdict names.
const MAX_NAMED: usize = 10;

/// A base backup found in the repository, as far as the chain cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Base {
    pub backup_id: String,
    pub timeline: u32,
    pub start: Lsn,
    pub stop: Lsn,
    pub seg_size: u64,
}

/// The base backups whose manifests are in `listing` (a listing of `ENV/TARGET`), and the
/// manifests that could not be read as one (named, with why).
pub(crate) async fn base_backups(
    repo: &Repository,
    listing: &[ObjectInfo],
) -> Result<(Vec<Base>, Vec<String>)> {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for o in listing {
        if !o.key.ends_with(&format!("/{MANIFEST_FILE}")) {
            continue;
        }
        let Some(bytes) = repo
            .get_bytes(&o.key, MAX_MANIFEST_BYTES)
            .await
            .with_context(|| format!("read {}", o.key))?
        else {
            continue;
        };
        let m = match Manifest::from_json(&bytes) {
            Ok(m) => m,
            Err(e) => {
                unreadable.push(format!("{}: {e:#}", o.key));
                continue;
            }
        };
        let Some(p) = m.physical else { continue };
        match (p.start_lsn.parse::<Lsn>(), p.stop_lsn.parse::<Lsn>()) {
            (Ok(start), Ok(stop)) => out.push(Base {
                backup_id: m.backup_id,
                timeline: p.timeline,
                start,
                stop,
                seg_size: p.wal_segment_size,
            }),
            (Err(e), _) | (_, Err(e)) => unreadable.push(format!("{}: {}", o.key, e.0)),
        }
    }
    out.sort_by_key(|b| b.start);
    Ok((out, unreadable))
}

/// One archived file read back.
enum ReadBack {
    /// Its content hashes to the SHA-256 in its key; this many bytes.
    Ok(u64),
    /// Gone between the listing and the read (WAL retention removed it).
    Gone,
    /// Damaged: why.
    Damaged(String),
    /// Encrypted to a WAL key this agent holds no identity for: not read.
    Locked(String),
}

async fn read_back(reader: &Reader, a: &Archived) -> Result<ReadBack> {
    let repo = &reader.repo;
    match store::read_back(reader, a).await {
        Ok(Ok(n)) => Ok(ReadBack::Ok(n)),
        Ok(Err(why)) => Ok(ReadBack::Damaged(why)),
        Err(e) => match keys::unavailable(&e) {
            Some(u) if u.no_identity => Ok(ReadBack::Locked(u.id.clone())),
            // Its key object is missing or damaged: nobody can read the file.
            Some(_) => Ok(ReadBack::Damaged(format!("{}: {e:#}", a.key))),
            None => match repo.get_bytes(&a.key, 1).await {
                Ok(None) => Ok(ReadBack::Gone),
                _ => Err(e),
            },
        },
    }
}

/// The archived files under `prefix` in `listing`, with their checked names, and the objects
/// there that are neither one nor a WAL key.
fn archived(prefix: &str, listing: &[ObjectInfo]) -> (Vec<(WalName, Archived)>, Vec<String>) {
    let mut files = Vec::new();
    let mut foreign = Vec::new();
    let under = format!("{prefix}/");
    let keys_dir = format!("{prefix}/{}/", keys::KEYS_DIR);
    for o in listing {
        if !o.key.starts_with(&under) || o.key.starts_with(&keys_dir) {
            continue;
        }
        match store::parse_key(prefix, o) {
            Some(file) => files.push(file),
            None => foreign.push(o.key.clone()),
        }
    }
    (files, foreign)
}

/// The verify of target `target`'s WAL archive.
pub async fn run(ctx: &JobCtx, target: &str) -> Result<Verified> {
    let t = ctx
        .config
        .targets
        .get(target)
        .with_context(|| format!("this agent has no target {target:?}"))?;
    if t.mode != BackupMode::Physical {
        bail!(
            "target {target} is not a physical target (mode = \"physical\"); it has no WAL archive to verify"
        );
    }
    let report = &ctx.report;
    let repo = crate::repo::open(&ctx.config, &t.repository)?;
    let env = &ctx.config.environment;
    let dir = format!("{env}/{target}");
    let prefix = store::prefix(env, target);
    ctx.set_phase("listing");
    let listing = repo
        .list(&dir)
        .await
        .with_context(|| format!("list {dir} in {}", repo.describe()))?;
    let (bases, unreadable) = base_backups(&repo, &listing).await?;
    for u in &unreadable {
        report.warn(
            "chain",
            format!("{u}; that backup's chain is not checked (lifeboat backup verify judges it)"),
        );
    }
    let (files, foreign) = archived(&prefix, &listing);
    if files.is_empty() {
        return Ok(Verified {
            status: VerifyStatus::Missing,
            detail: format!(
                "{prefix} in {} holds no WAL; check archive_command (lifeboat targets check {env}/{target})",
                repo.describe()
            ),
            stored_bytes: 0,
            raw_bytes: 0,
        });
    }
    for key in foreign.iter().take(MAX_NAMED) {
        report.warn(
            "archive",
            format!("{key} is not a file lifeboat archived (its name is not NAME-SHA256.zst or NAME-SHA256.zst.age); it was not read"),
        );
    }

    // Every file read back against its hash.
    ctx.set_phase("verifying");
    let (mut damaged, mut gone) = (Vec::new(), Vec::new());
    let mut locked: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut raw, mut stored) = (0u64, 0u64);
    let reader = Reader::new(repo.clone(), prefix.clone(), ctx.config.clone());
    let mut reads = stream::iter(files.iter().cloned().map(|(name, a)| {
        let reader = reader.clone();
        async move {
            let result = read_back(&reader, &a).await;
            (name, a, result)
        }
    }))
    .buffer_unordered(PARALLEL);
    while let Some((name, a, result)) = reads.next().await {
        if ctx.cancel.is_cancelled() {
            bail!("cancelled");
        }
        match result.with_context(|| format!("read {}", a.key))? {
            ReadBack::Ok(n) => {
                raw += n;
                stored += a.stored_size;
                ctx.counters
                    .raw
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                ctx.counters
                    .stored
                    .fetch_add(a.stored_size, std::sync::atomic::Ordering::Relaxed);
            }
            ReadBack::Gone => gone.push(name),
            ReadBack::Damaged(why) => damaged.push((name, why)),
            ReadBack::Locked(id) => *locked.entry(id).or_default() += 1,
        }
    }
    drop(reads);
    damaged.sort();
    for (_, why) in damaged.iter().take(MAX_NAMED) {
        report.error("archive", why.clone());
    }
    if damaged.len() > MAX_NAMED {
        report.error(
            "archive",
            format!("and {} more damaged files", damaged.len() - MAX_NAMED),
        );
    }
    let not_read: usize = locked.values().sum();
    if not_read > 0 {
        report.warn(
            "archive",
            format!(
                "{not_read} encrypted files were not read back: this agent holds no identity for their WAL key{} {} (a backup-only agent); they count as present in the chain. Run lifeboat pitr verify on an agent configured with identity_file to read them",
                if locked.len() == 1 { "" } else { "s" },
                locked.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let read = files.len() - gone.len() - not_read;
    if damaged.is_empty() {
        report.ok(
            "archive",
            format!(
                "{read} files ({} stored, {} as PostgreSQL wrote them) read back from {}, each matching its SHA-256",
                human_bytes(stored),
                human_bytes(raw),
                repo.describe()
            ),
        );
    }
    if !gone.is_empty() {
        report.info(
            "archive",
            format!(
                "{} files were removed by WAL retention while this verify ran",
                gone.len()
            ),
        );
    }

    // The chain from each base backup, over the files that are there and sound.
    ctx.set_phase("checking the chain");
    let unsound: std::collections::HashSet<&WalName> =
        gone.iter().chain(damaged.iter().map(|(n, _)| n)).collect();
    let sound: Vec<ObjectInfo> = files
        .iter()
        .filter(|(n, _)| !unsound.contains(n))
        .map(|(_, a)| ObjectInfo {
            key: a.key.clone(),
            size: a.stored_size,
            modified_ms: 0,
        })
        .collect();
    let seg_size = bases.first().map_or(16 * 1024 * 1024, |b| b.seg_size);
    let archive = Archive::from_listing(&prefix, &sound, seg_size);
    let mut broken = false;
    let switches = match archive.latest_timeline() {
        Some(latest) if latest > 1 => match store::read_history(&reader, latest).await {
            Ok(s) => s,
            Err(e) => {
                report.error("timelines", format!("{e:#}"));
                broken = true;
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    if bases.is_empty() {
        report.warn(
            "chain",
            format!(
                "no base backup of {env}/{target} is in {}: the archive cannot be replayed from anywhere; take one (lifeboat backup run {env}/{target} --wait)",
                repo.describe()
            ),
        );
    }
    for b in &bases {
        let reach = archive.reach(b.timeline, b.start, &switches);
        let to = match &reach.last {
            Some((seg, at)) => format!(
                "segment {seg}, archived at {}",
                lifeboat_common::time::rfc3339_seconds(*at).unwrap_or_else(|| at.to_string())
            ),
            None => "its own start".to_owned(),
        };
        let reaches_stop = reach
            .last
            .as_ref()
            .is_some_and(|(seg, _)| archive.segno_of_name(seg) >= archive.segno(b.stop));
        match &reach.missing {
            Some(seg) => {
                broken = true;
                report.error(
                    "chain",
                    format!(
                        "from base backup {} (timeline {}, WAL {} to {}): segment {seg} is missing or damaged; recovery from it stops at {to}",
                        b.backup_id, b.timeline, b.start, b.stop
                    ),
                );
            }
            None if !reaches_stop => report.warn(
                "chain",
                format!(
                    "base backup {} (WAL {} to {}): the archive does not hold its WAL up to its end; it restores on its own (its WAL is inside it) but not to a later point until archiving reaches {}",
                    b.backup_id,
                    b.start,
                    b.stop,
                    archive.name(b.timeline, archive.segno(b.stop))
                ),
            ),
            None => report.ok(
                "chain",
                format!(
                    "from base backup {} (timeline {}, WAL {} to {}): unbroken to {to}",
                    b.backup_id, b.timeline, b.start, b.stop
                ),
            ),
        }
    }
    let (ranges, gaps) = archive.summary(MAX_NAMED);
    for g in &gaps {
        report.warn("gaps", format!("segment {g} is not in the archive"));
    }
    let detail = match (damaged.first(), broken) {
        (Some((name, _)), _) => format!(
            "{} of {} archived files are damaged (first: {name}); see the job's report",
            damaged.len(),
            files.len()
        ),
        (None, true) => "the WAL chain from a base backup is broken; see the job's report".into(),
        (None, false) => format!(
            "{read} files read back and matching their SHA-256; {} timeline(s), chain unbroken from every base backup",
            ranges.len()
        ),
    };
    Ok(Verified {
        status: if !damaged.is_empty() {
            VerifyStatus::Corrupt
        } else if broken {
            VerifyStatus::Missing
        } else {
            VerifyStatus::Ok
        },
        detail,
        stored_bytes: stored,
        raw_bytes: raw,
    })
}

/// `backup verify` of base backup `m`: the archived WAL it spans (from its start to its stop
/// on its timeline) read back, each segment against its hash. The backup restores on its own
/// (that WAL is inside it too); what this checks is that recovery past its end can start from
/// the archive. Findings go to the job's report; the backup's own verdict does not change.
pub(crate) async fn backup_range(ctx: &JobCtx, repo: &Repository, m: &Manifest) -> Result<()> {
    let Some(p) = &m.physical else { return Ok(()) };
    let report = &ctx.report;
    let lsn = |s: &str| {
        s.parse::<Lsn>()
            .map_err(|e| anyhow::anyhow!("backup manifest: {}", e.0))
    };
    let (start, stop) = (lsn(&p.start_lsn)?, lsn(&p.stop_lsn)?);
    let prefix = store::prefix(&m.environment, &m.target);
    let listing = repo
        .list(&prefix)
        .await
        .with_context(|| format!("list {prefix} in {}", repo.describe()))?;
    let (files, _) = archived(&prefix, &listing);
    if files.is_empty() {
        report.info(
            "wal",
            format!(
                "no WAL of {}/{} is archived in {}: this backup restores to its own end only",
                m.environment,
                m.target,
                repo.describe()
            ),
        );
        return Ok(());
    }
    let archive = Archive::from_listing(&prefix, &listing, p.wal_segment_size);
    let reader = Reader::new(repo.clone(), prefix.clone(), ctx.config.clone());
    let (mut missing, mut damaged, mut sound, mut locked) =
        (Vec::new(), Vec::new(), 0usize, 0usize);
    for segno in archive.segno(start)..=archive.segno(stop) {
        let name = archive.name(p.timeline, segno);
        let Some((_, a)) = files.iter().find(|(n, _)| n.as_str() == name) else {
            missing.push(name);
            continue;
        };
        match read_back(&reader, a).await? {
            ReadBack::Ok(_) => sound += 1,
            ReadBack::Gone => missing.push(name),
            ReadBack::Damaged(why) => damaged.push(why),
            ReadBack::Locked(_) => locked += 1,
        }
    }
    if locked > 0 {
        report.info(
            "wal",
            format!(
                "{locked} archived WAL segment(s) of this backup's range are encrypted to WAL keys this agent holds no identity for: present, not read back"
            ),
        );
    }
    for why in &damaged {
        report.warn("wal", why.clone());
    }
    if !missing.is_empty() {
        report.warn(
            "wal",
            format!(
                "the archive lacks {} of the WAL this backup spans ({start} to {stop}); it restores to its own end, but point-in-time recovery from it needs them (lifeboat pitr verify {}/{} checks the whole archive)",
                missing.join(", "),
                m.environment,
                m.target
            ),
        );
    }
    if missing.is_empty() && damaged.is_empty() {
        report.ok(
            "wal",
            format!(
                "the {sound} archived WAL segment(s) from {start} to {stop} are there and match their SHA-256"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::fs::FsRepository;

    /// A manifest that does not parse is named, not an error of the whole verify.
    #[tokio::test]
    async fn an_unreadable_manifest_is_a_finding() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("prod/main/20261203T020000Z-1a2b3c");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(MANIFEST_FILE), b"{ not json").expect("write");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let listing = repo.list("prod/main").await.expect("list");
        let (bases, unreadable) = base_backups(&repo, &listing).await.expect("read");
        assert!(bases.is_empty());
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert!(
            unreadable[0].starts_with("prod/main/20261203T020000Z-1a2b3c/manifest.json: "),
            "{unreadable:?}"
        );
    }
}
