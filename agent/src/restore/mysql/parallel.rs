//! A MySQL/MariaDB restore over several client connections (`--jobs N`, or the target's
//! `restore_jobs`). The dump is one SQL stream; each connection reads the whole archive,
//! through both hash checks, and loads only its own tables' sections
//! ([`TableFilter`](crate::engine::mysql::table_filter::TableFilter)), so N tables load at
//! once without spooling the decompressed dump anywhere. From a local repository each reads
//! the stored object itself; from a remote one (S3) the object is downloaded once, as stored,
//! into the scratch directory and every connection reads that file. Tables are dealt to connections by their size in
//! the manifest, largest first; the first connection takes every table the others were not
//! given, so a table the manifest does not list is loaded all the same. Once every table is
//! in, one more stream loads the views, routines and events, which may refer to any table.
//! One failing connection stops the others; the scratch database is then dropped as for any
//! failed load.

use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::{Cut, Load};
use crate::{
    manifest::TableRows,
    restore::{Located, spool},
};

/// Tables dealt to `jobs` connections, largest first, each to the least loaded so far (by the
/// table's size on the server, else its rows). Returns at most `jobs` non-empty groups.
pub(super) fn groups(tables: &[TableRows], jobs: usize) -> Vec<Vec<String>> {
    let mut sized: Vec<(u64, &str)> = tables
        .iter()
        .map(|t| {
            let weight = t
                .bytes
                .unwrap_or_else(|| u64::try_from(t.rows).unwrap_or(0));
            (weight, t.table.as_str())
        })
        .collect();
    sized.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut bins: Vec<(u64, Vec<String>)> = vec![(0, Vec::new()); jobs.max(1)];
    for (weight, name) in sized {
        let bin = bins
            .iter_mut()
            .min_by_key(|(load, names)| (*load, names.len()))
            .expect("at least one bin");
        bin.0 += weight.max(1);
        bin.1.push(name.to_owned());
    }
    bins.into_iter()
        .map(|(_, names)| names)
        .filter(|names| !names.is_empty())
        .collect()
}

/// Whether a parallel load of the backup at `loc` downloads it first: from a remote
/// repository, N+1 streams would each download it.
pub(super) fn downloads_first(loc: &Located) -> bool {
    loc.repo.kind() != "fs"
}

/// Loads every table over the plan's connections at once, then the rest of the dump.
pub(super) async fn load(l: &Load<'_>, database: &str) -> Result<()> {
    let groups = groups(&l.manifest.row_counts, l.jobs as usize);
    let ctx = l.ctx;
    // Removed on every way out of this function.
    let spool = if downloads_first(l.loc) {
        Some(spool::write_stored(ctx, l.loc).await?)
    } else {
        None
    };
    let spooled = spool.as_ref().map(|s| s.file.as_path());
    // The first connection loads its own tables and every table no other connection has.
    let others: Vec<String> = groups.iter().skip(1).flatten().cloned().collect();
    let mut cuts = vec![Cut::TablesExcept(others)];
    cuts.extend(groups.into_iter().skip(1).map(Cut::Tables));
    tracing::info!(
        connections = cuts.len(),
        "loading the dump's tables over several connections"
    );
    let stop = ctx.cancel.child_token();
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let loads = cuts.into_iter().enumerate().map(|(i, cut)| {
        // The job's progress follows the first stream; the others count privately.
        let counters = if i == 0 {
            ctx.counters.clone()
        } else {
            Arc::default()
        };
        let (stop, first_error) = (&stop, &first_error);
        async move {
            if let Err(e) = l.stream(database, cut, counters, stop, spooled).await {
                if let Ok(mut first) = first_error.lock()
                    && first.is_none()
                    && !stop.is_cancelled()
                {
                    *first =
                        Some(e.context(format!("loading connection {} of a parallel load", i + 1)));
                }
                stop.cancel();
            }
        }
    });
    futures::future::join_all(loads).await;
    if let Some(e) = first_error.lock().ok().and_then(|mut g| g.take()) {
        return Err(e);
    }
    if stop.is_cancelled() {
        anyhow::bail!("cancelled");
    }
    l.stream(database, Cut::Rest, Arc::default(), &ctx.cancel, spooled)
        .await
        .map_err(|e| e.context("load the views, routines and events after the tables"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, bytes: Option<u64>, rows: i64) -> TableRows {
        TableRows {
            schema: "db".into(),
            table: name.into(),
            rows,
            bytes,
        }
    }

    #[test]
    fn tables_are_dealt_largest_first_to_the_least_loaded_connection() {
        let tables = [
            t("a", Some(100), 1),
            t("b", Some(60), 1),
            t("c", Some(50), 1),
            t("d", Some(10), 1),
            t("e", None, 5),
        ];
        assert_eq!(
            groups(&tables, 2),
            // a (100) | b (60); c (50) joins b (110); d (10) joins a (110); e (5 rows) ties
            // and goes to the first.
            vec![
                vec!["a".to_owned(), "d".into(), "e".into()],
                vec!["b".to_owned(), "c".into()]
            ]
        );
        let all: Vec<String> = groups(&tables, 3).into_iter().flatten().collect();
        assert_eq!(all.len(), 5, "every table exactly once: {all:?}");
        // More connections than tables: one group per table, no empty ones.
        assert_eq!(groups(&tables[..2], 8).len(), 2);
        assert!(groups(&[], 4).is_empty());
    }
}
