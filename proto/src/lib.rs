//! The lifeboat.v1 wire protocol. Generated code only; validation of what arrives happens in
//! the receiving program's domain layer (see `lifeboat_common::names`).

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

pub mod v1 {
    tonic::include_proto!("lifeboat.v1");
}

pub use v1::*;

/// Largest message either side accepts or sends. Job results carry per-table row counts, so
/// this is generous, but bounded (B31).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Milliseconds since the Unix epoch, as used in every `*_ms` field.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
