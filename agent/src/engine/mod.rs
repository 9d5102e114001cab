//! Database engines: PostgreSQL (`pg_dump`/`pg_restore` custom format) and MySQL/MariaDB
//! (`mysqldump`/`mariadb-dump` SQL streams). What differs per engine lives here; the backup
//! and restore orchestration is shared.

pub mod mysql;
pub mod postgres;
