//! The closed sets whose words appear in catalog columns, metric labels, logs, manifests and
//! the CLI's output: one table each, and the mapping to and from the wire enum.

use crate::v1 as pb;

/// A closed set of string forms (`ALL`, `as_str`, `parse`, `Display`): one table per set,
/// shared by catalog columns, metric labels, manifests, logs and the CLI.
#[macro_export]
macro_rules! string_forms {
    ($ty:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(super) use crate::string_forms;

/// Database engine of a target or a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Postgres,
    Mysql,
}
string_forms!(Engine { Postgres => "postgres", Mysql => "mysql" });

impl Engine {
    /// The engine a wire value names; `None` for unset or a value this build does not know
    /// (never a silent default).
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::Engine::try_from(value) {
            Ok(pb::Engine::Postgres) => Some(Engine::Postgres),
            Ok(pb::Engine::Mysql) => Some(Engine::Mysql),
            Ok(pb::Engine::Unspecified) | Err(_) => None,
        }
    }
}

impl From<Engine> for pb::Engine {
    fn from(e: Engine) -> Self {
        match e {
            Engine::Postgres => pb::Engine::Postgres,
            Engine::Mysql => pb::Engine::Mysql,
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Restore,
    Verify,
    /// Remove a backup from its repository (retention).
    Delete,
    /// Read a repository's manifests.
    List,
    /// Pre-flight of a target, or the plan of a restore (`restore --dry-run`). Read-only.
    Check,
    /// Write or remove a backup's pin marker in its repository.
    Pin,
    /// Write a backup's decompressed dump to a file on the agent's host.
    Export,
    /// Copy a backup to another repository of its agent (off-site copies).
    Copy,
    /// Re-encrypt the key objects of a target's encrypted backups (`keys rotate`).
    RotateKeys,
}
string_forms!(JobKind {
    Backup => "backup",
    Restore => "restore",
    Verify => "verify",
    Delete => "delete",
    List => "list",
    Check => "check",
    Pin => "pin",
    Export => "export",
    Copy => "copy",
    RotateKeys => "rotate_keys",
});

impl JobKind {
    /// Whether the job works on its target's database, so no other such job of the target
    /// may run beside it. Deletes, listings and pin markers touch only the repository;
    /// checks only read; an export reads the repository and writes a file on the agent's
    /// host.
    pub fn occupies_target(self) -> bool {
        match self {
            JobKind::Backup | JobKind::Restore | JobKind::Verify => true,
            JobKind::Delete
            | JobKind::List
            | JobKind::Check
            | JobKind::Pin
            | JobKind::Export
            | JobKind::Copy
            | JobKind::RotateKeys => false,
        }
    }

    /// The kind a wire value names; `None` for unset or unknown.
    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::JobKind::try_from(value).ok()? {
            pb::JobKind::Unspecified => return None,
            pb::JobKind::Backup => JobKind::Backup,
            pb::JobKind::Restore => JobKind::Restore,
            pb::JobKind::Verify => JobKind::Verify,
            pb::JobKind::Delete => JobKind::Delete,
            pb::JobKind::List => JobKind::List,
            pb::JobKind::Check => JobKind::Check,
            pb::JobKind::Pin => JobKind::Pin,
            pb::JobKind::Export => JobKind::Export,
            pb::JobKind::Copy => JobKind::Copy,
            pb::JobKind::RotateKeys => JobKind::RotateKeys,
        })
    }
}

impl From<JobKind> for pb::JobKind {
    fn from(k: JobKind) -> Self {
        match k {
            JobKind::Backup => pb::JobKind::Backup,
            JobKind::Restore => pb::JobKind::Restore,
            JobKind::Verify => pb::JobKind::Verify,
            JobKind::Delete => pb::JobKind::Delete,
            JobKind::List => pb::JobKind::List,
            JobKind::Check => pb::JobKind::Check,
            JobKind::Pin => pb::JobKind::Pin,
            JobKind::Export => pb::JobKind::Export,
            JobKind::Copy => pb::JobKind::Copy,
            JobKind::RotateKeys => pb::JobKind::RotateKeys,
        }
    }
}

/// The result of the last verification of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyStatus {
    /// Never verified since it was written.
    Unverified,
    Ok,
    /// Stored bytes do not match the recorded size or hashes.
    Corrupt,
    /// Data or manifest is gone from the repository.
    Missing,
}
string_forms!(VerifyStatus {
    Unverified => "unverified",
    Ok => "ok",
    Corrupt => "corrupt",
    Missing => "missing",
});

impl VerifyStatus {
    /// The status a wire value names; `None` for unset or unknown.
    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::VerifyStatus::try_from(value).ok()? {
            pb::VerifyStatus::Unspecified => return None,
            pb::VerifyStatus::Unverified => VerifyStatus::Unverified,
            pb::VerifyStatus::Ok => VerifyStatus::Ok,
            pb::VerifyStatus::Corrupt => VerifyStatus::Corrupt,
            pb::VerifyStatus::Missing => VerifyStatus::Missing,
        })
    }
}

impl From<VerifyStatus> for pb::VerifyStatus {
    fn from(s: VerifyStatus) -> Self {
        match s {
            VerifyStatus::Unverified => pb::VerifyStatus::Unverified,
            VerifyStatus::Ok => pb::VerifyStatus::Ok,
            VerifyStatus::Corrupt => pb::VerifyStatus::Corrupt,
            VerifyStatus::Missing => pb::VerifyStatus::Missing,
        }
    }
}

/// Whose objects a restore keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OwnerPolicy {
    /// Owners and privileges kept within one provider, dropped across providers.
    #[default]
    Auto,
    Keep,
    Drop,
}
string_forms!(OwnerPolicy {
    Auto => "auto",
    Keep => "keep",
    Drop => "drop",
});

impl OwnerPolicy {
    /// The policy a wire value names (unset is `Auto`); `None` for a value this build does not
    /// know.
    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::OwnerPolicy::try_from(value).ok()? {
            pb::OwnerPolicy::Auto => OwnerPolicy::Auto,
            pb::OwnerPolicy::Keep => OwnerPolicy::Keep,
            pb::OwnerPolicy::Drop => OwnerPolicy::Drop,
        })
    }
}

impl From<OwnerPolicy> for pb::OwnerPolicy {
    fn from(o: OwnerPolicy) -> Self {
        match o {
            OwnerPolicy::Auto => pb::OwnerPolicy::Auto,
            OwnerPolicy::Keep => pb::OwnerPolicy::Keep,
            OwnerPolicy::Drop => pb::OwnerPolicy::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_wire_values_round_trip() {
        for e in Engine::ALL {
            assert_eq!(Engine::parse(e.as_str()), Some(*e));
            assert_eq!(Engine::from_wire(pb::Engine::from(*e) as i32), Some(*e));
        }
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(*k));
            assert_eq!(JobKind::from_wire(pb::JobKind::from(*k) as i32), Some(*k));
        }
        for s in VerifyStatus::ALL {
            assert_eq!(VerifyStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                VerifyStatus::from_wire(pb::VerifyStatus::from(*s) as i32),
                Some(*s)
            );
        }
        for o in OwnerPolicy::ALL {
            assert_eq!(OwnerPolicy::parse(o.as_str()), Some(*o));
            assert_eq!(
                OwnerPolicy::from_wire(pb::OwnerPolicy::from(*o) as i32),
                Some(*o)
            );
        }
        assert_eq!(Engine::from_wire(0), None);
        assert_eq!(Engine::from_wire(99), None);
        assert_eq!(JobKind::from_wire(0), None);
        assert_eq!(VerifyStatus::from_wire(42), None);
    }
}
