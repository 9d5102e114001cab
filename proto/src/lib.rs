//! The lifeboat.v1 wire protocol: generated code and the message size bound. Validation of
//! what arrives happens in the receiving program's domain layer (see `lifeboat_common::names`);
//! the clock is `lifeboat_common::time`.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

pub mod v1 {
    tonic::include_proto!("lifeboat.v1");
}

pub use v1::*;

/// Largest message either side accepts or sends. Job results carry per-table row counts, so
/// this is generous, but bounded (B31).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
