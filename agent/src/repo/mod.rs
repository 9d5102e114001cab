//! Repositories: where backups live. Dispatched by an enum so each backend stays a plain
//! struct; S3 joins `fs` here.

pub mod fs;

use std::path::Path;

use crate::config::RepositoryConfig;

pub use fs::{BackupWriter, FsRepository, TempFile};

/// Name of the data file of a PostgreSQL custom-format backup.
pub const PG_DATA_FILE: &str = "data.pgdump.zst";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone)]
pub enum Repository {
    Fs(FsRepository),
}

impl Repository {
    pub fn from_config(cfg: &RepositoryConfig) -> Self {
        match cfg {
            RepositoryConfig::Fs { path } => Repository::Fs(FsRepository::new(path.clone())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Repository::Fs(r) => format!("fs:{}", r.root().display()),
        }
    }

    pub fn fs(&self) -> &FsRepository {
        match self {
            Repository::Fs(r) => r,
        }
    }

    pub fn root(&self) -> &Path {
        self.fs().root()
    }
}

/// `env/target/backup-id`
pub fn backup_dir_key(environment: &str, target: &str, backup_id: &str) -> String {
    format!("{environment}/{target}/{backup_id}")
}
