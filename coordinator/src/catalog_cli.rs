//! `lifeboat-coordinator catalog …`: catalog maintenance run by hand, the coordinator stopped.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{Config, catalog::Catalog, config::CatalogLocation};

/// `catalog migrate --from sqlite:///PATH`: copies that SQLite catalog into the PostgreSQL
/// catalog the config names (which must hold no rows). Returns the report to print.
pub async fn migrate(config: &Config, from: &str) -> Result<String> {
    let CatalogLocation::Postgres(pg) = &config.catalog else {
        bail!(
            "catalog.url in {} is not a PostgreSQL catalog; point it at the (empty) PostgreSQL \
             database to migrate into, then run this again",
            config.file.display()
        );
    };
    let Some(path) = from.strip_prefix("sqlite://") else {
        bail!("--from {from:?} is not a SQLite catalog URL; write sqlite:///PATH/catalog.db");
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!(
            "--from: no SQLite catalog at {}; give the file catalog.url named before \
             (e.g. sqlite:///var/lib/lifeboat/catalog.db)",
            path.display()
        );
    }
    let source = Catalog::open_sqlite(&path)
        .await
        .with_context(|| format!("open the SQLite catalog {}", path.display()))?;
    let settings = pg
        .connect_settings()
        .context("read catalog.password_file")?;
    let destination = Catalog::open_postgres(&settings)
        .await
        .with_context(|| format!("open the catalog named in {}", config.file.display()))?;
    let copied = destination
        .copy_from_sqlite(&source)
        .await
        .with_context(|| format!("copy {} into {}", path.display(), settings.url))?;
    source.close().await;
    destination.close().await;
    let total: u64 = copied.iter().map(|t| t.rows).sum();
    let mut report = format!(
        "copied {total} rows from {} into {}; every table's count checked:\n",
        path.display(),
        settings.url
    );
    for t in &copied {
        report.push_str(&format!("  {:<20} {:>10}\n", t.table, t.rows));
    }
    report.push_str(
        "start the coordinator with this config; keep the SQLite file until you have checked \
         the new catalog\n",
    );
    Ok(report)
}
