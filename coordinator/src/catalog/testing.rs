//! The catalog the tests run against. SQLite in a temporary directory by default; with
//! `LIFEBOAT_TEST_CATALOG_POSTGRES` set to a PostgreSQL server's URL (a role that may create
//! databases, e.g. `postgres://lifeboat@127.0.0.1:5433`), a new database on that server for
//! each test. `tests/run.sh` runs the catalog tests both ways.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Catalog, PostgresCatalog, PostgresTls};

pub const POSTGRES_ENV: &str = "LIFEBOAT_TEST_CATALOG_POSTGRES";

/// A fresh, migrated catalog on the backend the run asked for. The directory is the SQLite
/// file's (kept alive by the caller); with PostgreSQL it stays empty.
pub async fn open() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = match std::env::var(POSTGRES_ENV) {
        Ok(server) if !server.is_empty() => open_postgres(&server).await,
        _ => Catalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .expect("open catalog"),
    };
    (dir, catalog)
}

/// [`open`], with the PostgreSQL catalog's connection settings (none for SQLite).
pub async fn open_with_settings() -> (tempfile::TempDir, Catalog, Option<PostgresCatalog>) {
    let dir = tempfile::tempdir().expect("tempdir");
    match std::env::var(POSTGRES_ENV) {
        Ok(server) if !server.is_empty() => {
            let (catalog, settings) = open_postgres_with(&server).await;
            (dir, catalog, Some(settings))
        }
        _ => {
            let catalog = Catalog::open_sqlite(&dir.path().join("catalog.db"))
                .await
                .expect("open catalog");
            (dir, catalog, None)
        }
    }
}

async fn open_postgres(server: &str) -> Catalog {
    open_postgres_with(server).await.0
}

async fn open_postgres_with(server: &str) -> (Catalog, PostgresCatalog) {
    use sqlx::{Connection, Executor};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let server = server.trim_end_matches('/');
    let name = format!(
        "lbtest_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect to {POSTGRES_ENV}: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create the test database");
    admin.close().await.expect("close");
    let settings = PostgresCatalog {
        url: format!("{server}/{name}"),
        password: None,
        tls: PostgresTls::Disable,
    };
    let catalog = Catalog::open_postgres(&settings)
        .await
        .expect("open the PostgreSQL catalog");
    (catalog, settings)
}
