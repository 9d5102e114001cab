//! A partial restore's tables, resolved against the backup's manifest before anything is
//! created: an unknown table or schema, or a bare table name found in several schemas, is
//! refused naming what the backup holds.

use anyhow::{Result, bail};
use lifeboat_proto::domain::PartialRestore;

use crate::manifest::TableRows;

/// Most table names quoted in a refusal; the rest are counted.
const SHOWN: usize = 20;

/// The manifest's tables the partial restore asks for (each once, in the manifest's order),
/// with the rows the backup recorded for them.
pub(crate) fn select(
    manifest: &[TableRows],
    partial: &PartialRestore,
    backup_id: &str,
) -> Result<Vec<TableRows>> {
    let mut problems = Vec::new();
    for t in &partial.tables {
        let found: Vec<&TableRows> = manifest
            .iter()
            .filter(|r| t.matches(&r.schema, &r.table))
            .collect();
        match found.len() {
            0 => problems.push(format!("table {t} is not in the backup")),
            1 => {}
            _ => problems.push(format!(
                "table {t} is in several schemas ({}); name it as SCHEMA.TABLE",
                found
                    .iter()
                    .map(|r| r.schema.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    for s in &partial.schemas {
        if !manifest.iter().any(|r| &r.schema == s) {
            problems.push(format!("schema {s} has no tables in the backup"));
        }
    }
    if !problems.is_empty() {
        let names: Vec<String> = manifest
            .iter()
            .map(|r| format!("{}.{}", r.schema, r.table))
            .collect();
        let more = names.len().saturating_sub(SHOWN);
        bail!(
            "{}; the backup holds {} table(s): {}{} (all of them: lifeboat backup contents {backup_id})",
            problems.join("; "),
            names.len(),
            names
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    Ok(manifest
        .iter()
        .filter(|r| {
            partial.schemas.contains(&r.schema)
                || partial
                    .tables
                    .iter()
                    .any(|t| t.matches(&r.schema, &r.table))
        })
        .cloned()
        .collect())
}

/// Into one side schema, two tables of the same name from different schemas would collide.
pub(crate) fn check_unique_names(selected: &[TableRows]) -> Result<()> {
    let mut seen: std::collections::BTreeMap<&str, &str> = Default::default();
    for r in selected {
        if let Some(other) = seen.insert(&r.table, &r.schema) {
            bail!(
                "tables {other}.{t} and {}.{t} would both be named {t} in the new schema; restore them in two runs, or into a new database with --database",
                r.schema,
                t = r.table
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(list: &[(&str, &str, i64)]) -> Vec<TableRows> {
        list.iter()
            .map(|(s, t, n)| TableRows {
                bytes: None,
                schema: (*s).into(),
                table: (*t).into(),
                rows: *n,
            })
            .collect()
    }

    fn partial(tables: &[&str], schemas: &[&str]) -> PartialRestore {
        PartialRestore::from_wire(
            &tables.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            &schemas.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            "",
        )
        .expect("valid")
        .expect("partial")
    }

    #[test]
    fn tables_and_schemas_resolve_against_the_manifest() {
        let m = rows(&[
            ("public", "orders", 3),
            ("sales", "orders", 5),
            ("sales", "items", 7),
            ("audit", "log", 1),
        ]);
        let got = select(&m, &partial(&["sales.orders"], &[]), "B").expect("one");
        assert_eq!(got, rows(&[("sales", "orders", 5)]));
        let got = select(&m, &partial(&["log", "sales.items"], &["sales"]), "B").expect("mix");
        assert_eq!(
            got,
            rows(&[
                ("sales", "orders", 5),
                ("sales", "items", 7),
                ("audit", "log", 1)
            ])
        );
    }

    #[test]
    fn unknown_and_ambiguous_names_are_refused_naming_the_tables() {
        let m = rows(&[("public", "orders", 3), ("sales", "orders", 5)]);
        let e = select(&m, &partial(&["public.nope"], &["ghost"]), "B1")
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("table public.nope is not in the backup")
                && e.contains("schema ghost has no tables")
                && e.contains("public.orders, sales.orders")
                && e.contains("lifeboat backup contents B1"),
            "{e}"
        );
        let e = select(&m, &partial(&["orders"], &[]), "B1")
            .expect_err("ambiguous")
            .to_string();
        assert!(e.contains("several schemas (public, sales)"), "{e}");
    }

    #[test]
    fn one_side_schema_cannot_hold_two_tables_of_one_name() {
        check_unique_names(&rows(&[("a", "t", 1), ("b", "u", 1)])).expect("distinct");
        let e = check_unique_names(&rows(&[("a", "t", 1), ("b", "t", 1)]))
            .expect_err("clash")
            .to_string();
        assert!(e.contains("a.t and b.t"), "{e}");
    }
}
