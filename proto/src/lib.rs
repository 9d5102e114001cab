//! The lifeboat.v1 wire protocol: generated code, the message size bound, and beside them the
//! [`domain`] values that cross it (checked once on the way in). Names and ids are
//! `lifeboat_common`'s; the clock is `lifeboat_common::time`.

#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("lifeboat.v1");
}

pub use v1::*;

pub mod codec;
pub mod domain;

/// Largest message either side accepts or sends. Job results carry per-table row counts, so
/// this is generous, but bounded (B31).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The metadata key a coordinator standing by (another coordinator of its catalog is active)
/// sets on what it refuses for that reason: an agent's session (UNAVAILABLE), or an operator's
/// call that only the active one can answer (FAILED_PRECONDITION). Clients try their next
/// coordinator URL.
pub const STANDING_BY_KEY: &str = "lifeboat-standing-by";
