//! Domain values that cross the wire, beside the generated code: each is checked once where it
//! arrives (`TryFrom<pb::…>`, an error that names the field) and converts back infallibly
//! (`From<&…> for pb::…`). The coordinator, the agent and the CLI use these instead of the
//! prost structs past their gRPC edges.

mod encryption;
mod export;
mod globals;
mod partial;
mod physical;
mod record;
mod recovery;
mod report;
mod results;
pub mod wal;
mod words;

pub use encryption::{Encryption, KEY_ID_LEN, MAX_RECIPIENTS, check_recipients, is_key_id};
pub use export::{EXPORT_MANIFEST_SUFFIX, ExportPath, Exported};
pub use globals::{CAPTURED, Globals, GlobalsObject, GlobalsRestore, NOT_CAPTURED};
pub use partial::{PartialRestore, TableRef};
pub use physical::{DataDir, PG_BASEBACKUP_FORMAT};
pub use record::{
    BackupRecord, Pin, RecordError, RowCount, non_negative, row_counts, sha256, short_text,
};
pub use recovery::{Lsn, Recovery, RecoveryAction, RecoveryTarget};
pub use report::{Finding, Report, Severity};
pub use results::{Copied, Deleted, Drilled, JobOutput, Listed, Restored, RotatedKey, Verified};
pub use wal::{WalRange, WalStatus, is_segment_name};
pub use words::{Engine, JobKind, OwnerPolicy, VerifyStatus};

/// Longest free-text field accepted (versions, providers, tool names).
pub const MAX_SHORT_TEXT: usize = 256;
/// Longest object key.
pub const MAX_KEY: usize = 1024;
/// Longest error or detail text kept; longer text is cut, not refused.
pub const MAX_LONG_TEXT: usize = 4096;
/// A database may have far more tables than any other list has entries; the message size
/// limit bounds it anyway.
pub const MAX_ROW_COUNTS: usize = 500_000;

/// Cuts long text (error messages, details) to a bounded size on a char boundary.
pub fn bounded_text(mut value: String) -> String {
    if value.len() > MAX_LONG_TEXT {
        let mut cut = MAX_LONG_TEXT;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    value
}
