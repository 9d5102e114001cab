//! The end-to-end tests, one module per subject, in one test binary (one link of the harness
//! and the agent library instead of one per file). Each test still runs in its own process
//! under `cargo nextest`. Requirement codes in module and test names are listed in
//! docs/testing.md.

mod agent_resilience;
mod alerts_webhook;
mod audit_and_logs;
mod b29_corrupt_archive;
mod b30_bad_config;
mod catalog_rebuild;
mod child_env;
mod crash_swap;
mod d14_dump_fails;
mod d15_format_check;
mod d16_preflight;
mod d17_server_restart;
mod d18_restore_existing;
mod d19_restore_interrupted;
mod d20_oracle;
mod db_tls_default;
mod deploy_prometheus;
mod deploy_units;
mod error_text;
mod harness;
mod job_control;
mod m3_busy_catalog;
mod migration;
mod mysql_failures;
mod mysql_hostile;
mod mysql_interrupted;
mod mysql_roundtrip;
mod n21_agent_killed;
mod outbox;
mod owner_restore;
mod planetscale_clean;
mod provider_restore;
mod prune_e2e;
mod runbooks;
mod s3_lost_response;
mod s3_repository;
mod s9_disk_full;
mod smoke;
mod targets_check;
mod x33_client_certs;
mod x36_rotation_revocation;
mod x37_secrets;
mod zstd_bomb;
