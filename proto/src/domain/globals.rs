//! A backup's globals: the cluster-wide definitions a logical dump of one database leaves out
//! (roles, memberships, role settings, tablespaces), captured beside the data as their own
//! object, and how a restore treats them.

use super::{bounded_text, record::RecordError};
use crate::v1 as pb;

/// The globals object of a backup: where it is, its sizes and hashes (checked like the data's
/// on restore), and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalsObject {
    /// Object key in the repository, beside the data.
    pub key: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub roles: u32,
    pub memberships: u32,
    /// Password hashes are in the object (`globals = "with-passwords"`).
    pub with_passwords: bool,
}

/// What a backup records about the globals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Globals {
    /// Nothing recorded: a backup taken before lifeboat captured globals, or a physical base
    /// backup (which holds them).
    #[default]
    Absent,
    /// Not captured, and why (the setting is off, the backup user may not read the roles).
    NotCaptured(String),
    Captured(GlobalsObject),
}

/// `BackupGlobals.status` of a captured object.
pub const CAPTURED: &str = "captured";
/// `BackupGlobals.status` when the globals were not captured.
pub const NOT_CAPTURED: &str = "not_captured";

impl Globals {
    /// One line for people: `12 roles, 3 memberships`, `not captured (…)`.
    pub fn summary(&self) -> String {
        match self {
            Globals::Absent => "not captured (backup taken before lifeboat captured globals, or a physical base backup, which holds them)".into(),
            Globals::NotCaptured(why) => format!("not captured ({why})"),
            Globals::Captured(o) => format!(
                "{} role{}, {} membership{}{}",
                o.roles,
                if o.roles == 1 { "" } else { "s" },
                o.memberships,
                if o.memberships == 1 { "" } else { "s" },
                if o.with_passwords {
                    ", with password hashes"
                } else {
                    ", without passwords"
                }
            ),
        }
    }

    /// Checks a record's globals as they arrive over the wire. `dir_key` is the backup's
    /// directory: the object must be in it.
    pub fn from_wire(g: Option<pb::BackupGlobals>, dir_key: &str) -> Result<Self, RecordError> {
        let Some(g) = g else {
            return Ok(Globals::Absent);
        };
        match g.status.as_str() {
            "" => Ok(Globals::Absent),
            NOT_CAPTURED => Ok(Globals::NotCaptured(bounded_text(g.reason))),
            CAPTURED => {
                let key = super::record::object_key("globals key", g.key)?;
                if super::record::dir_of(&key) != Some(dir_key) {
                    return Err(RecordError(format!(
                        "globals key {key:?} is not in the backup's directory {dir_key:?}"
                    )));
                }
                if g.raw_size == 0 || g.stored_size == 0 {
                    return Err(RecordError(
                        "globals object has a zero size; an empty globals object is not recorded as captured".into(),
                    ));
                }
                Ok(Globals::Captured(GlobalsObject {
                    key,
                    raw_size: super::non_negative("globals raw_size", g.raw_size)?,
                    raw_sha256: super::record::sha256("globals raw_sha256", g.raw_sha256)?,
                    stored_size: super::non_negative("globals stored_size", g.stored_size)?,
                    stored_sha256: super::record::sha256("globals stored_sha256", g.stored_sha256)?,
                    roles: g.roles,
                    memberships: g.memberships,
                    with_passwords: g.with_passwords,
                }))
            }
            other => Err(RecordError(format!(
                "globals status {other:?} is neither {CAPTURED:?} nor {NOT_CAPTURED:?}"
            ))),
        }
    }

    /// The wire form; `None` when absent.
    pub fn to_wire(&self) -> Option<pb::BackupGlobals> {
        match self {
            Globals::Absent => None,
            Globals::NotCaptured(why) => Some(pb::BackupGlobals {
                status: NOT_CAPTURED.into(),
                reason: why.clone(),
                ..Default::default()
            }),
            Globals::Captured(o) => Some(pb::BackupGlobals {
                status: CAPTURED.into(),
                reason: String::new(),
                key: o.key.clone(),
                raw_size: o.raw_size,
                raw_sha256: o.raw_sha256.clone(),
                stored_size: o.stored_size,
                stored_sha256: o.stored_sha256.clone(),
                roles: o.roles,
                memberships: o.memberships,
                with_passwords: o.with_passwords,
            }),
        }
    }
}

/// What a restore does with the backup's globals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GlobalsRestore {
    /// Leave them (the default).
    #[default]
    None,
    /// Recreate them before the database is restored (`restore --with-globals`).
    With,
    /// Recreate only them (`lifeboat globals restore`); no database is restored.
    Only,
}

impl GlobalsRestore {
    /// From a request's two flags; both set is refused.
    pub fn from_flags(with_globals: bool, globals_only: bool) -> Result<Self, RecordError> {
        match (with_globals, globals_only) {
            (false, false) => Ok(Self::None),
            (true, false) => Ok(Self::With),
            (false, true) => Ok(Self::Only),
            (true, true) => Err(RecordError(
                "with_globals and globals_only exclude each other: globals_only restores only the globals".into(),
            )),
        }
    }

    /// The two wire flags (`with_globals`, `globals_only`).
    pub fn flags(self) -> (bool, bool) {
        (self == Self::With, self == Self::Only)
    }

    /// The word the catalog stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::With => "with",
            Self::Only => "only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" => Some(Self::None),
            "with" => Some(Self::With),
            "only" => Some(Self::Only),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> pb::BackupGlobals {
        pb::BackupGlobals {
            status: CAPTURED.into(),
            key: "prod/orders/20261127T233000Z-7f3a9c/globals.sql.zst".into(),
            raw_size: 10,
            raw_sha256: "a".repeat(64),
            stored_size: 5,
            stored_sha256: "b".repeat(64),
            roles: 3,
            memberships: 1,
            ..Default::default()
        }
    }

    #[test]
    fn globals_round_trip_and_bad_fields_are_named() {
        let dir = "prod/orders/20261127T233000Z-7f3a9c";
        let g = Globals::from_wire(Some(captured()), dir).expect("valid");
        assert_eq!(Globals::from_wire(g.to_wire(), dir).expect("again"), g);
        assert_eq!(g.summary(), "3 roles, 1 membership, without passwords");
        assert_eq!(
            Globals::from_wire(None, dir).expect("absent"),
            Globals::Absent
        );
        type Spoil = fn(&mut pb::BackupGlobals);
        let cases: Vec<(Spoil, &str)> = vec![
            (|g| g.status = "maybe".into(), "status"),
            (
                |g| g.key = "prod/other/x/globals.sql.zst".into(),
                "directory",
            ),
            (|g| g.key = "../x".into(), "globals key"),
            (|g| g.raw_sha256 = "x".into(), "raw_sha256"),
            (|g| g.stored_size = 0, "zero size"),
        ];
        for (spoil, says) in cases {
            let mut w = captured();
            spoil(&mut w);
            let e = Globals::from_wire(Some(w), dir).expect_err(says).0;
            assert!(e.contains(says), "{e:?} should name {says:?}");
        }
    }

    #[test]
    fn restore_flags_exclude_each_other() {
        assert_eq!(
            GlobalsRestore::from_flags(true, false),
            Ok(GlobalsRestore::With)
        );
        assert_eq!(
            GlobalsRestore::from_flags(false, true),
            Ok(GlobalsRestore::Only)
        );
        assert!(GlobalsRestore::from_flags(true, true).is_err());
        for g in [
            GlobalsRestore::None,
            GlobalsRestore::With,
            GlobalsRestore::Only,
        ] {
            assert_eq!(GlobalsRestore::parse(g.as_str()), Some(g));
            let (w, o) = g.flags();
            assert_eq!(GlobalsRestore::from_flags(w, o), Ok(g));
        }
    }
}
