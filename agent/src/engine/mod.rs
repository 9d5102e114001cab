//! Database engines. PostgreSQL now; MySQL/MariaDB joins here.

pub mod postgres;
