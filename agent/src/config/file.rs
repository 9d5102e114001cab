//! The agent's configuration file as written: serde structs, unknown keys refused. What the
//! keys mean and how they are checked: `validate` in the parent module.

use std::path::PathBuf;

use serde::Deserialize;

/// `coordinator = "https://…"`, or a list of the coordinators sharing one catalog (an active
/// one and standbys), tried in turn.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Coordinators {
    One(String),
    Several(Vec<String>),
}

impl Coordinators {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Coordinators::One(u) => vec![u],
            Coordinators::Several(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) name: String,
    pub(super) environment: String,
    pub(super) coordinator: Coordinators,
    pub(super) coordinator_server_name: Option<String>,
    #[serde(default = "default_max_jobs")]
    pub(super) max_concurrent_jobs: u32,
    pub(super) state_dir: PathBuf,
    /// Where `backup verify` unpacks a base backup for `pg_verifybackup` and a parallel
    /// restore spools its archive (default `STATE_DIR/scratch`).
    pub(super) scratch_dir: Option<PathBuf>,
    /// The directories `backup export` may write files into; unset: exports refused.
    #[serde(default)]
    pub(super) export_dirs: Vec<PathBuf>,
    pub(super) tls: FileTls,
    #[serde(default, rename = "repository")]
    pub(super) repositories: Vec<FileRepository>,
    #[serde(default, rename = "target")]
    pub(super) targets: Vec<FileTarget>,
    #[serde(default)]
    pub(super) wal: crate::wal::config::FileWal,
}

pub(super) fn default_max_jobs() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) ca: PathBuf,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// `name` and `kind`; the other keys depend on the kind and are checked strictly once it is
/// known (`FileFsRepository`, [`crate::repo::s3_config::FileS3`]).
#[derive(Debug, Deserialize)]
pub(super) struct FileRepository {
    pub(super) name: String,
    pub(super) kind: String,
    #[serde(flatten)]
    pub(super) rest: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFsRepository {
    pub(super) path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTarget {
    pub(super) name: String,
    pub(super) engine: String,
    #[serde(default)]
    pub(super) provider: Option<String>,
    pub(super) repository: String,
    pub(super) url: String,
    pub(super) password_file: Option<PathBuf>,
    #[serde(default = "default_level")]
    pub(super) compression_level: LevelSetting,
    #[serde(default)]
    pub(super) compression_threads: u32,
    #[serde(default = "default_restore_jobs")]
    pub(super) restore_jobs: u32,
    #[serde(default)]
    pub(super) row_counts: Option<String>,
    pub(super) pg_bin_dir: Option<PathBuf>,
    pub(super) mysql_bin_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) maintenance_database: Option<String>,
    #[serde(default)]
    pub(super) allow_clean_restore: bool,
    #[serde(default)]
    pub(super) replaceable_databases: Option<Vec<String>>,
    #[serde(default)]
    pub(super) mode: Option<String>,
    #[serde(default)]
    pub(super) restore_data_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub(super) drill_checks: Vec<String>,
    pub(super) globals: Option<String>,
    #[serde(default)]
    pub(super) copy_to: Vec<String>,
    /// Client-side encryption of this target's backups (replaces its repository's).
    pub(super) encryption: Option<super::encryption::FileEncryption>,
}

pub(super) fn default_level() -> LevelSetting {
    LevelSetting::Word("auto".into())
}

/// `compression_level`: a zstd level, or a word (only `"auto"` is accepted).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum LevelSetting {
    Level(i64),
    Word(String),
}

pub(super) fn default_restore_jobs() -> u32 {
    1
}
