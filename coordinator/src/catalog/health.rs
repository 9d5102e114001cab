//! What health, metrics and alerts read: per target, its recent backups and the latest jobs of
//! each kind and outcome; the agents; whether the schema is current. Read-only but for
//! remembering when a target was first seen.

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::{Catalog, CatalogError, Result, parse_enum, to_u64};
use crate::{
    health::copies::CopyFacts,
    model::{AgentRecord, JobKind, JobState, TargetRecord, VerifyStatus},
};

/// How many recent backups per target are read: the newest and the seven before it (the
/// size-change check compares the newest with the median of the seven).
pub const RECENT_BACKUPS: usize = 8;

/// One complete backup, reduced to what health needs. Backups are ordered by when the
/// coordinator recorded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    pub backup_id: String,
    pub raw_size: u64,
    pub stored_size: u64,
    /// The agent's times (its clock): for the duration only.
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// When the coordinator recorded it (its job's end, on the coordinator's clock): the
    /// recovery point's age counts from here, never from the agent's clock (N26).
    pub recorded_at_ms: i64,
    pub verify_status: VerifyStatus,
    pub verified_at_ms: Option<i64>,
}

/// One finished job, reduced to what health needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub job_id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub backup_id: String,
    pub error: String,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: i64,
}

impl JobFacts {
    pub fn duration_ms(&self) -> Option<i64> {
        self.started_at_ms
            .map(|s| self.finished_at_ms.saturating_sub(s).max(0))
    }
}

/// Everything known about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub target: TargetRecord,
    pub first_seen_ms: i64,
    /// Complete backups, newest first, at most [`RECENT_BACKUPS`].
    pub recent_backups: Vec<BackupFacts>,
    /// The latest succeeded and the latest failed job of each kind.
    pub last_succeeded: BTreeMap<&'static str, JobFacts>,
    pub last_failed: BTreeMap<&'static str, JobFacts>,
    /// Its restore drills.
    pub drills: crate::health::drill::DrillFacts,
    /// Each repository its backups are copied to.
    pub copies: Vec<crate::health::copies::CopyFacts>,
}

impl TargetFacts {
    pub fn last_backup(&self) -> Option<&BackupFacts> {
        self.recent_backups.first()
    }

    /// The most recent finished (succeeded or failed) job of `kind`.
    pub fn last_finished(&self, kind: JobKind) -> Option<&JobFacts> {
        let s = self.last_succeeded.get(kind.as_str());
        let f = self.last_failed.get(kind.as_str());
        match (s, f) {
            (Some(s), Some(f)) => {
                if (f.finished_at_ms, &f.job_id) > (s.finished_at_ms, &s.job_id) {
                    Some(f)
                } else {
                    Some(s)
                }
            }
            (s, f) => s.or(f),
        }
    }
}

/// A consistent enough view for one health, metrics or alerts pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub targets: Vec<TargetFacts>,
    pub agents: Vec<AgentRecord>,
}

/// Where a catalog's schema stands against the migrations the binary carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStand {
    /// All of them applied: a coordinator standing by can serve on it as it is.
    Current,
    /// None yet: a new catalog, created by the coordinator that takes its lock.
    Empty,
    /// Some missing: an older release's catalog.
    Older,
}

/// Whether the schema the binary carries is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub expected: Vec<i64>,
    pub applied: Vec<i64>,
    /// Migrations that started but did not finish.
    pub dirty: Vec<i64>,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.dirty.is_empty() && self.expected.iter().all(|v| self.applied.contains(v))
    }

    /// Versions applied to the catalog that this binary does not carry: a newer release
    /// upgraded it.
    pub fn unknown(&self) -> Vec<i64> {
        self.applied
            .iter()
            .chain(&self.dirty)
            .filter(|v| !self.expected.contains(v))
            .copied()
            .collect()
    }

    /// Where the schema stands, or the refusal for a catalog a newer release upgraded.
    pub fn stand(&self) -> Result<SchemaStand> {
        if let Some(e) = self.newer_error() {
            return Err(e);
        }
        Ok(if self.is_current() {
            SchemaStand::Current
        } else if self.applied.is_empty() && self.dirty.is_empty() {
            SchemaStand::Empty
        } else {
            SchemaStand::Older
        })
    }

    /// The refusal for a catalog a newer release upgraded, if it is one.
    pub fn newer_error(&self) -> Option<CatalogError> {
        let unknown = self.unknown();
        (!unknown.is_empty()).then(|| {
            CatalogError::Newer(format!(
                "the catalog's schema has version(s) {unknown:?}, which this \
                 lifeboat-coordinator does not know (it knows up to {}): a newer release \
                 upgraded the catalog; upgrade this coordinator to that release",
                self.expected.iter().max().copied().unwrap_or(0)
            ))
        })
    }
}

/// The job kinds health looks at.
const KINDS: [JobKind; 3] = [JobKind::Backup, JobKind::Restore, JobKind::Verify];

impl Catalog {
    /// A trivial query: the catalog answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Which migrations are applied, against the ones this binary carries.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let expected: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        let exists = match self.backend {
            super::Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                 AND name = '_sqlx_migrations'"
            }
            super::Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' \
                 AND schemaname = ANY (current_schemas(false))"
            }
        };
        let tables: i64 = sqlx::query_scalar(exists).fetch_one(&self.pool).await?;
        if tables == 0 {
            return Ok(SchemaStatus {
                expected,
                applied: Vec::new(),
                dirty: Vec::new(),
            });
        }
        let rows = sqlx::query(
            "SELECT version, CASE WHEN success THEN 1 ELSE 0 END AS success \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut applied = Vec::new();
        let mut dirty = Vec::new();
        for row in &rows {
            let version: i64 = row.try_get("version")?;
            let success = super::flag(row, "success")?;
            if success {
                applied.push(version);
            } else {
                dirty.push(version);
            }
        }
        Ok(SchemaStatus {
            expected,
            applied,
            dirty,
        })
    }

    /// Reads everything health, metrics and alerts need. Targets seen for the first time are
    /// remembered with `now_ms`.
    pub async fn health_snapshot(&self, now_ms: i64) -> Result<Snapshot> {
        let targets = self.list_targets().await?;
        let first_seen = self.first_seen(&targets, now_ms).await?;

        let mut backups: BTreeMap<String, Vec<BackupFacts>> = BTreeMap::new();
        // Per target, an index lookup (target, recorded_at_ms, backup_id): the cost does not
        // grow with the number of backups. PostgreSQL says it with LATERAL (which SQLite
        // lacks); its planner runs the IN form once per backup.
        let rows = sqlx::query(match self.backend {
            super::Backend::Sqlite => {
                "SELECT b.target, b.backup_id, b.raw_size, b.stored_size, b.started_at_ms, \
                 b.finished_at_ms, b.recorded_at_ms, b.verify_status, b.verified_at_ms \
                 FROM targets t JOIN backups b ON b.backup_id IN \
                 (SELECT r.backup_id FROM backups r WHERE r.target = t.full_name \
                  ORDER BY r.recorded_at_ms DESC, r.backup_id DESC LIMIT $1) \
                 ORDER BY b.target, b.recorded_at_ms DESC, b.backup_id DESC"
            }
            super::Backend::Postgres => {
                "SELECT b.target, b.backup_id, b.raw_size, b.stored_size, b.started_at_ms, \
                 b.finished_at_ms, b.recorded_at_ms, b.verify_status, b.verified_at_ms \
                 FROM targets t CROSS JOIN LATERAL \
                 (SELECT r.* FROM backups r WHERE r.target = t.full_name \
                  ORDER BY r.recorded_at_ms DESC, r.backup_id DESC LIMIT $1) b \
                 ORDER BY b.target, b.recorded_at_ms DESC, b.backup_id DESC"
            }
        })
        .bind(i64::try_from(RECENT_BACKUPS).unwrap_or(8))
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let verify: String = row.try_get("verify_status")?;
            backups
                .entry(row.try_get("target")?)
                .or_default()
                .push(BackupFacts {
                    backup_id: row.try_get("backup_id")?,
                    raw_size: to_u64("backups.raw_size", row.try_get("raw_size")?)?,
                    stored_size: to_u64("backups.stored_size", row.try_get("stored_size")?)?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    finished_at_ms: row.try_get("finished_at_ms")?,
                    recorded_at_ms: row.try_get("recorded_at_ms")?,
                    verify_status: parse_enum(
                        "backups.verify_status",
                        &verify,
                        VerifyStatus::parse,
                    )?,
                    verified_at_ms: row.try_get("verified_at_ms")?,
                });
        }

        type Latest = BTreeMap<String, BTreeMap<&'static str, JobFacts>>;
        let mut succeeded: Latest = BTreeMap::new();
        let mut failed: Latest = BTreeMap::new();
        // Per target, kind and outcome, an index lookup (target, kind, state, finished_at_ms).
        let rows = sqlx::query(match self.backend {
            super::Backend::Sqlite => {
                "SELECT j.id, j.kind, j.state, j.target, j.backup_id, j.error, j.started_at_ms, \
                 j.finished_at_ms FROM targets t \
                 CROSS JOIN (SELECT 'backup' AS kind UNION ALL SELECT 'restore' \
                             UNION ALL SELECT 'verify') k \
                 CROSS JOIN (SELECT 'succeeded' AS state UNION ALL SELECT 'failed') s \
                 JOIN jobs j ON j.id = (SELECT l.id FROM jobs l WHERE l.target = t.full_name \
                     AND l.kind = k.kind AND l.state = s.state AND l.finished_at_ms IS NOT NULL \
                     AND NOT (l.kind = 'verify' AND l.backup_id = '') AND l.drill_of = '' \
                     ORDER BY l.finished_at_ms DESC, l.id DESC LIMIT 1)"
            }
            super::Backend::Postgres => {
                "SELECT j.id, j.kind, j.state, j.target, j.backup_id, j.error, j.started_at_ms, \
                 j.finished_at_ms FROM targets t \
                 CROSS JOIN (VALUES ('backup'), ('restore'), ('verify')) AS k (kind) \
                 CROSS JOIN (VALUES ('succeeded'), ('failed')) AS s (state) \
                 CROSS JOIN LATERAL (SELECT l.* FROM jobs l WHERE l.target = t.full_name \
                     AND l.kind = k.kind AND l.state = s.state AND l.finished_at_ms IS NOT NULL \
                     AND NOT (l.kind = 'verify' AND l.backup_id = '') AND l.drill_of = '' \
                     ORDER BY l.finished_at_ms DESC, l.id DESC LIMIT 1) j"
            }
        })
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let state: String = row.try_get("state")?;
            let kind = parse_enum("jobs.kind", &kind, JobKind::parse)?;
            let state = parse_enum("jobs.state", &state, JobState::parse)?;
            let Some(kind_str) = KINDS.iter().find(|k| **k == kind).map(|k| k.as_str()) else {
                continue;
            };
            let facts = JobFacts {
                job_id: row.try_get("id")?,
                kind,
                state,
                backup_id: row.try_get("backup_id")?,
                error: row.try_get("error")?,
                started_at_ms: row.try_get("started_at_ms")?,
                finished_at_ms: row.try_get("finished_at_ms")?,
            };
            let map = if state == JobState::Succeeded {
                &mut succeeded
            } else {
                &mut failed
            };
            map.entry(row.try_get("target")?)
                .or_default()
                .insert(kind_str, facts);
        }

        let mut drills = self.drill_facts().await?;
        let drill_scheduled: HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT target FROM schedules WHERE kind = 'drill'")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut copies = self.copy_facts().await?;
        let targets = targets
            .into_iter()
            .map(|t| {
                let name = t.target.name.to_string();
                let (last, last_success) = drills.remove(&name).unwrap_or_default();
                let mut repos = copies.remove(&name).unwrap_or_default();
                for r in &t.target.copy_to {
                    repos.entry(r.clone()).or_insert_with(|| CopyFacts {
                        repository: r.clone(),
                        ..CopyFacts::default()
                    });
                }
                TargetFacts {
                    copies: repos.into_values().collect(),
                    drills: crate::health::drill::DrillFacts {
                        last,
                        last_success,
                        scheduled: drill_scheduled.contains(&name),
                    },
                    first_seen_ms: first_seen.get(&name).copied().unwrap_or(now_ms),
                    recent_backups: backups.remove(&name).unwrap_or_default(),
                    last_succeeded: succeeded.remove(&name).unwrap_or_default(),
                    last_failed: failed.remove(&name).unwrap_or_default(),
                    target: t.target,
                }
            })
            .collect();
        Ok(Snapshot {
            targets,
            agents: self.list_agents().await?,
        })
    }

    /// Per target and repository other than the target's own: the newest backup held there
    /// (a stored copy, or a backup that lives on as its copy) and the newest failed copy job.
    async fn copy_facts(&self) -> Result<BTreeMap<String, BTreeMap<String, CopyFacts>>> {
        let mut out: BTreeMap<String, BTreeMap<String, CopyFacts>> = BTreeMap::new();
        // The stored copies, and the backups that live on in another repository than their
        // target's (an index range each side of the target's repository); the newest per
        // repository is picked below, so a backup in both counts once. PostgreSQL needs the
        // two ranges spelled out per target (LATERAL), or it reads every backup.
        macro_rules! stored_copies {
            () => {
                "SELECT b.target, c.repository, b.backup_id, b.recorded_at_ms \
                 FROM backup_copies c JOIN backups b ON b.backup_id = c.backup_id \
                 JOIN targets t ON t.full_name = b.target AND t.repository <> c.repository \
                 WHERE c.state = 'stored' \
                 UNION ALL \
                 SELECT b.target, b.repository, b.backup_id, b.recorded_at_ms "
            };
        }
        let rows = sqlx::query(match self.backend {
            super::Backend::Sqlite => concat!(
                stored_copies!(),
                "FROM targets t JOIN backups b ON b.target = t.full_name \
                 AND (b.repository < t.repository OR b.repository > t.repository)"
            ),
            super::Backend::Postgres => concat!(
                stored_copies!(),
                "FROM targets t CROSS JOIN LATERAL ( \
                   SELECT r.target, r.repository, r.backup_id, r.recorded_at_ms FROM backups r \
                   WHERE r.target = t.full_name AND r.repository < t.repository \
                   UNION ALL \
                   SELECT r.target, r.repository, r.backup_id, r.recorded_at_ms FROM backups r \
                   WHERE r.target = t.full_name AND r.repository > t.repository) b"
            ),
        })
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let repository: String = row.try_get("repository")?;
            let id: String = row.try_get("backup_id")?;
            let at: i64 = row.try_get("recorded_at_ms")?;
            let f = out
                .entry(row.try_get("target")?)
                .or_default()
                .entry(repository.clone())
                .or_insert_with(|| CopyFacts {
                    repository,
                    ..CopyFacts::default()
                });
            if f.newest
                .as_ref()
                .is_none_or(|(n_id, n_at)| (at, &id) > (*n_at, n_id))
            {
                f.newest = Some((id, at));
            }
        }
        let rows = sqlx::query(
            "SELECT id, target, repository, backup_id, error, started_at_ms, finished_at_ms \
             FROM (SELECT j.*, ROW_NUMBER() OVER (PARTITION BY j.target, j.repository \
             ORDER BY j.finished_at_ms DESC, j.id DESC) AS rn FROM jobs j \
             WHERE j.kind = 'copy' AND j.state = 'failed' AND j.finished_at_ms IS NOT NULL) AS ranked \
             WHERE rn = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let repository: String = row.try_get("repository")?;
            let f = out
                .entry(row.try_get("target")?)
                .or_default()
                .entry(repository.clone())
                .or_insert_with(|| CopyFacts {
                    repository,
                    ..CopyFacts::default()
                });
            f.last_failure = Some(JobFacts {
                job_id: row.try_get("id")?,
                kind: JobKind::Copy,
                state: JobState::Failed,
                backup_id: row.try_get("backup_id")?,
                error: row.try_get("error")?,
                started_at_ms: row.try_get("started_at_ms")?,
                finished_at_ms: row.try_get("finished_at_ms")?,
            });
        }
        Ok(out)
    }

    /// When each target was first seen; records `now_ms` for new ones (a write only when
    /// there is a new target).
    async fn first_seen(
        &self,
        targets: &[crate::model::TargetSummary],
        now_ms: i64,
    ) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT target, first_seen_ms FROM target_first_seen")
            .fetch_all(&self.pool)
            .await?;
        let mut seen = BTreeMap::new();
        for row in &rows {
            seen.insert(row.try_get("target")?, row.try_get("first_seen_ms")?);
        }
        let new: HashSet<String> = targets
            .iter()
            .map(|t| t.target.name.to_string())
            .filter(|n| !seen.contains_key(n))
            .collect();
        for name in new {
            sqlx::query(
                "INSERT INTO target_first_seen (target, first_seen_ms) VALUES ($1, $2) \
                 ON CONFLICT (target) DO NOTHING",
            )
            .bind(&name)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
            let at: i64 =
                sqlx::query_scalar("SELECT first_seen_ms FROM target_first_seen WHERE target = $1")
                    .bind(&name)
                    .fetch_one(&self.pool)
                    .await?;
            seen.insert(name, at);
        }
        Ok(seen)
    }
}
