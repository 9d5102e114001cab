//! Database engines. PostgreSQL now; MySQL/MariaDB joins here.

// MySQL/MariaDB: not wired into the backup/restore jobs yet (see the module docs).
#[allow(dead_code)]
pub mod mysql;
pub mod postgres;
