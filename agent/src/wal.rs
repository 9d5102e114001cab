//! Continuous WAL archiving for physical PostgreSQL targets. PostgreSQL's `archive_command`
//! runs `lifeboat-agent wal-push`, which hands each file to the running agent over a local
//! Unix socket; the agent hashes, compresses and stores it in the target's repository and
//! answers once it is durable. `restore_command` runs `wal-fetch` the other way.

pub mod chain;
pub mod client;
pub mod config;
pub mod expire;
pub mod keys;
pub mod name;
pub mod protocol;
pub mod recovery;
pub mod server;
pub mod status;
pub mod store;
pub mod verify;
