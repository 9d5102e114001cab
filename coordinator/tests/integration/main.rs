//! Integration tests: a real coordinator (`run()`), real SQLite, real mutual TLS, real tonic
//! clients. One test binary, one module per area.

mod auto_prune;
mod control;
mod delete_backup;
mod drill_schedules;
mod environments;
mod grpc_limits;
mod harness;
mod hostile;
mod schedules;
mod security;
mod sessions;
mod trust;
