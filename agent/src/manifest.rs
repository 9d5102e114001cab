//! `manifest.json`: written last, self-describing, enough to rebuild the catalog from the
//! repository alone.

use serde::{Deserialize, Serialize};

/// The newest manifest format this agent reads and writes. 2 added `objects`, 3 `physical`,
/// 4 `globals`, 5 table sizes (`row_counts[].bytes`), 6 `encryption` and `sealed`,
/// 7 `compression.levels` (adaptive compression);
/// version 1 manifests (no `objects`) are read as well. A newer version is refused with
/// "upgrade", before its fields are looked at. A manifest is written with the oldest version
/// that holds it ([`Manifest::version_for`]), so older agents still read logical backups.
pub const SCHEMA_VERSION: u32 = 7;
/// The version of manifests of backups compressed at an adaptive level.
pub const ADAPTIVE_SCHEMA_VERSION: u32 = 7;
/// The version of manifests of encrypted backups.
pub const ENCRYPTED_SCHEMA_VERSION: u32 = 6;
/// The version of manifests whose row counts carry table sizes.
pub const SIZES_SCHEMA_VERSION: u32 = 5;
/// The version of manifests with a `globals` section.
pub const GLOBALS_SCHEMA_VERSION: u32 = 4;
/// The version of manifests with a `physical` section.
pub const PHYSICAL_SCHEMA_VERSION: u32 = 3;
/// The version of manifests without a `physical` section.
pub const LOGICAL_SCHEMA_VERSION: u32 = 2;
/// The oldest format this agent reads.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;
/// A manifest larger than this is not one lifeboat wrote (it is refused, not read whole).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub backup_id: String,
    pub environment: String,
    /// Short target name (the full name is `environment/target`).
    pub target: String,
    pub agent: String,
    pub repository: String,
    pub engine: String,
    pub provider: String,
    pub database: String,
    pub server: ServerInfo,
    pub tool: ToolInfo,
    /// `pg_dump-custom`
    pub format: String,
    pub compression: CompressionInfo,
    /// Age recipients when encrypted; empty: not encrypted.
    #[serde(default)]
    pub encryption_recipients: Vec<String>,
    pub data_file: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// `exact` (counted in the dump's snapshot), `estimate` or `off`.
    pub row_counts_kind: String,
    pub row_counts: Vec<TableRows>,
    pub lifeboat_version: String,
    /// What the dump holds beyond rows, for a restore's pre-flight (missing roles and
    /// extensions, reserved schemas). Absent from manifests of older lifeboat versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<DumpObjects>,
    /// A physical base backup's WAL range and cluster facts (schema version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalInfo>,
    /// The cluster's globals captured beside a logical backup, or why not (schema version
    /// 4). Absent from manifests of older lifeboat versions and of physical base backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<GlobalsInfo>,
    /// An encrypted backup's key object and the keys it was encrypted to at backup time
    /// (schema version 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
    /// An encrypted backup: [`Sealed`] (table names and row counts, the dump's objects) as
    /// age ciphertext to the backup's key, base64. `row_counts` and `objects` above are then
    /// empty; [`Manifest::unseal`] fills them in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// The plaintext facts of an encrypted backup (ADR 0025).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionInfo {
    /// `age`
    pub scheme: String,
    /// The key object's file name in the backup's directory (`key.age`).
    pub key_file: String,
    /// The recipients and their key ids the key object was encrypted to at backup time (a
    /// rotation changes the key object, not this).
    pub recipients: Vec<String>,
    pub key_ids: Vec<String>,
}

/// What an encrypted backup's manifest keeps from storage: the names in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    #[serde(default)]
    pub row_counts: Vec<TableRows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<DumpObjects>,
}

/// The globals object beside the data (`globals.sql.zst`), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalsInfo {
    /// `captured` or `not_captured`.
    pub status: String,
    /// Not captured: why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Captured: the object's file name in the backup's directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default)]
    pub raw_size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raw_sha256: String,
    #[serde(default)]
    pub stored_size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stored_sha256: String,
    #[serde(default)]
    pub roles: u32,
    #[serde(default)]
    pub memberships: u32,
    /// Password hashes are in the object.
    #[serde(default)]
    pub with_passwords: bool,
}

/// What a physical base backup is, for its restore (and, later, the WAL it needs for
/// point-in-time recovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhysicalInfo {
    /// `0/2000028`: where replay must start (the backup's checkpoint redo point).
    pub start_lsn: String,
    /// Where the backup ends: replay must reach it for the copy to be consistent.
    pub stop_lsn: String,
    pub timeline: u32,
    /// Whether the cluster has data checksums (`data_checksums`).
    pub data_checksums: bool,
    /// `fetch`: the WAL from start to stop is inside the archive, so the backup restores on
    /// its own.
    pub wal: String,
    /// PostgreSQL's own `backup_manifest` is inside the archive (`pg_verifybackup` reads it).
    pub backup_manifest: bool,
    /// The cluster's `wal_segment_size` in bytes (names the WAL files a point-in-time
    /// recovery needs).
    #[serde(default = "default_wal_segment_size")]
    pub wal_segment_size: u64,
}

/// PostgreSQL's default `wal_segment_size`.
fn default_wal_segment_size() -> u64 {
    16 * 1024 * 1024
}

impl Manifest {
    /// Moves the names (table names, row counts, the dump's objects) into the sealed section,
    /// encrypted to the backup's key.
    pub fn seal(&mut self, to: &age::x25519::Recipient) -> anyhow::Result<()> {
        let sealed = Sealed {
            row_counts: std::mem::take(&mut self.row_counts),
            objects: self.objects.take(),
        };
        let json = serde_json::to_vec(&sealed)?;
        self.sealed = Some(crate::crypt::seal(&json, to)?);
        Ok(())
    }

    /// Opens the sealed section with the backup's key, filling `row_counts` and `objects`.
    pub fn unseal(&mut self, key: &crate::crypt::BackupKey) -> anyhow::Result<()> {
        let Some(sealed) = &self.sealed else {
            return Ok(());
        };
        let json = crate::crypt::unseal(sealed, key, MAX_MANIFEST_BYTES)?;
        let s: Sealed = serde_json::from_slice(&json)
            .map_err(|e| anyhow::anyhow!("the manifest's sealed section is not valid: {e}"))?;
        self.row_counts = s.row_counts;
        self.objects = s.objects;
        Ok(())
    }

    /// The schema version a manifest is written with: the oldest that holds its sections.
    pub fn version_for(physical: bool, globals: bool, sizes: bool) -> u32 {
        if sizes {
            SIZES_SCHEMA_VERSION
        } else if globals {
            GLOBALS_SCHEMA_VERSION
        } else if physical {
            PHYSICAL_SCHEMA_VERSION
        } else {
            LOGICAL_SCHEMA_VERSION
        }
    }
}

/// The schemas, extensions and roles a dump refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpObjects {
    /// PostgreSQL: the dumped schemas. MySQL: the database.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// PostgreSQL extensions, with the schema each is installed in.
    #[serde(default)]
    pub extensions: Vec<ExtensionInfo>,
    /// PostgreSQL: roles that own objects or are granted privileges on them. MySQL: the
    /// definers (`user@host`) of views, routines, triggers and events.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionInfo {
    pub name: String,
    pub version: String,
    pub schema: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: i64,
    pub system_identifier: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionInfo {
    pub algorithm: String,
    /// The level (adaptive: the one that compressed the most bytes).
    pub level: i32,
    /// Adaptive compression (schema version 7): the raw bytes each level compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<LevelUse>>,
}

/// How much of the raw stream one zstd level compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelUse {
    pub level: i32,
    pub raw_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    /// The table's size on the server (schema version 5), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("manifest.json is not valid: {e}"))?;
        if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&v.schema_version) {
            anyhow::bail!(
                "manifest.json has schema version {}, this agent reads {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}; upgrade lifeboat-agent",
                v.schema_version
            );
        }
        let m: Self = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("manifest.json is not valid: {e}"))?;
        if let Some(p) = &m.physical {
            let size = p.wal_segment_size;
            // Every WAL file name and position is computed from it: PostgreSQL allows powers
            // of two from 1 MiB to 1 GiB.
            if !size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&size) {
                anyhow::bail!(
                    "manifest.json is not valid: wal_segment_size {size} is not a power of two from 1 MiB to 1 GiB"
                );
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            backup_id: "20261127T233000Z-7f3a9c".into(),
            environment: "prod".into(),
            target: "orders".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: "postgres".into(),
            provider: "postgres".into(),
            database: "orders".into(),
            server: ServerInfo {
                version: "15.19".into(),
                version_num: 150019,
                system_identifier: "7300000000000000000".into(),
                encoding: "UTF8".into(),
                collate: "C.UTF-8".into(),
                ctype: "C.UTF-8".into(),
            },
            tool: ToolInfo {
                name: "pg_dump".into(),
                version: "15.19".into(),
            },
            format: "pg_dump-custom".into(),
            compression: CompressionInfo {
                algorithm: "zstd".into(),
                level: 3,
                levels: None,
            },
            encryption_recipients: vec![],
            data_file: "data.pgdump.zst".into(),
            raw_size: 10,
            raw_sha256: "a".repeat(64),
            stored_size: 5,
            stored_sha256: "b".repeat(64),
            started_at: "2026-11-27T23:30:00Z".into(),
            finished_at: "2026-11-27T23:30:05Z".into(),
            started_at_ms: 1,
            finished_at_ms: 2,
            row_counts_kind: "exact".into(),
            row_counts: vec![TableRows {
                bytes: None,
                schema: "public".into(),
                table: "t".into(),
                rows: 3,
            }],
            lifeboat_version: "0.1.0".into(),
            objects: None,
            physical: None,
            globals: None,
            encryption: None,
            sealed: None,
        }
    }

    #[test]
    fn round_trip() {
        let mut m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).expect("parse"), m);
        // Older manifests have no objects section, and none is written when unknown.
        assert!(!String::from_utf8_lossy(&m.to_json()).contains("objects"));
        m.objects = Some(DumpObjects {
            schemas: vec!["public".into()],
            extensions: vec![ExtensionInfo {
                name: "pgcrypto".into(),
                version: "1.3".into(),
                schema: "public".into(),
            }],
            roles: vec!["app".into()],
        });
        assert_eq!(Manifest::from_json(&m.to_json()).expect("parse"), m);
    }

    #[test]
    fn table_sizes_make_version_5_and_older_row_counts_still_read() {
        assert_eq!(Manifest::version_for(false, true, true), 5);
        assert_eq!(Manifest::version_for(false, true, false), 4);
        let mut m = sample();
        m.schema_version = Manifest::version_for(false, false, true);
        m.row_counts[0].bytes = Some(8192);
        let json = String::from_utf8(m.to_json()).expect("utf-8");
        assert!(json.contains("\"bytes\": 8192"), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).expect("parse"), m);
        // Without sizes the field is left out, as older agents wrote (and read) it.
        let plain = String::from_utf8(sample().to_json()).expect("utf-8");
        assert!(!plain.contains("\"bytes\""), "{plain}");
    }

    #[test]
    fn adaptive_levels_round_trip_and_plain_manifests_do_not_carry_them() {
        let mut m = sample();
        m.schema_version = ADAPTIVE_SCHEMA_VERSION;
        m.compression.levels = Some(vec![
            LevelUse {
                level: 1,
                raw_bytes: 10,
            },
            LevelUse {
                level: 4,
                raw_bytes: 20,
            },
        ]);
        let json = m.to_json();
        assert!(
            String::from_utf8_lossy(&json).contains("\"raw_bytes\": 20"),
            "{}",
            String::from_utf8_lossy(&json)
        );
        assert_eq!(Manifest::from_json(&json).expect("read"), m);
        let plain = String::from_utf8(sample().to_json()).expect("utf-8");
        assert!(!plain.contains("levels"), "{plain}");
    }

    #[test]
    fn refuses_unknown_schema_and_garbage() {
        let mut m = sample();
        m.schema_version = 99;
        let e = Manifest::from_json(&m.to_json()).expect_err("accepted");
        assert!(e.to_string().contains("upgrade"), "{e}");
        // A newer version is refused for its version, not for fields this agent does not know.
        let newer = br#"{"schema_version": 8, "something_new": true}"#;
        let e = Manifest::from_json(newer).expect_err("accepted");
        assert!(e.to_string().contains("upgrade"), "{e}");
        // Version 1 (no objects) is still read.
        let mut old = sample();
        old.schema_version = 1;
        assert_eq!(Manifest::from_json(&old.to_json()).expect("version 1"), old);
        assert!(Manifest::from_json(b"{not json").is_err());
    }

    #[test]
    fn physical_manifests_are_version_3_and_logical_ones_stay_2() {
        assert_eq!(
            Manifest::version_for(false, false, false),
            2,
            "older agents read logical backups"
        );
        assert_eq!(Manifest::version_for(true, false, false), 3);
        let mut m = sample();
        m.schema_version = Manifest::version_for(true, false, false);
        m.format = "pg_basebackup-tar".into();
        m.row_counts_kind = "none".into();
        m.row_counts.clear();
        m.physical = Some(PhysicalInfo {
            start_lsn: "0/2000028".into(),
            stop_lsn: "0/2000100".into(),
            timeline: 1,
            data_checksums: true,
            wal: "fetch".into(),
            backup_manifest: true,
            wal_segment_size: 16 * 1024 * 1024,
        });
        let json = String::from_utf8(m.to_json()).expect("utf-8");
        assert!(json.contains("\"start_lsn\": \"0/2000028\""), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).expect("parse"), m);
        assert!(!String::from_utf8_lossy(&sample().to_json()).contains("physical"));
    }

    #[test]
    fn globals_are_version_4_and_older_manifests_have_none() {
        assert_eq!(Manifest::version_for(false, true, false), 4);
        let mut m = sample();
        m.schema_version = 4;
        m.globals = Some(GlobalsInfo {
            status: "captured".into(),
            reason: String::new(),
            file: "globals.sql.zst".into(),
            raw_size: 100,
            raw_sha256: "c".repeat(64),
            stored_size: 60,
            stored_sha256: "d".repeat(64),
            roles: 3,
            memberships: 1,
            with_passwords: false,
        });
        assert_eq!(Manifest::from_json(&m.to_json()).expect("parse"), m);
        m.globals = Some(GlobalsInfo {
            status: "not_captured".into(),
            reason: "permission denied".into(),
            file: String::new(),
            raw_size: 0,
            raw_sha256: String::new(),
            stored_size: 0,
            stored_sha256: String::new(),
            roles: 0,
            memberships: 0,
            with_passwords: false,
        });
        assert_eq!(Manifest::from_json(&m.to_json()).expect("parse"), m);
        // A version 2 manifest, written before globals were captured, still reads.
        let old = sample();
        assert!(!String::from_utf8_lossy(&old.to_json()).contains("globals"));
        assert_eq!(
            Manifest::from_json(&old.to_json()).expect("v2").globals,
            None
        );
    }
}
