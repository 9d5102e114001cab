//! Proving a restore by comparing data: plain `pg_dump` of source and copy with identical
//! options, diffed; per-table row counts against the manifest.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::pg::Pg;

/// A plain-SQL `pg_dump` of `db` (schema, data and large objects), normalised only where two
/// dumps of identical databases differ anyway: the random `\restrict` key of newer pg_dump
/// versions.
pub fn dump_sql(pg: &Pg, db: &str) -> String {
    dump_sql_with(pg, db, &[])
}

/// [`dump_sql`] with more pg_dump options (e.g. `--no-owner`, `--schema=public`).
pub fn dump_sql_with(pg: &Pg, db: &str, extra: &[&str]) -> String {
    let mut args = vec!["-d", db, "-Fp", "--no-password"];
    args.extend_from_slice(extra);
    let out = pg.client("pg_dump", &args, b"");
    assert!(
        out.status.success(),
        "pg_dump {db} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("pg_dump output is UTF-8");
    text.lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Asserts that the plain dumps of `a` and `b` are identical; on a difference the unified
/// diff (first 200 lines) is in the panic message. `work` receives the two dump files.
pub fn assert_same_data(pg: &Pg, a: &str, b: &str, work: &Path) {
    let da = dump_sql(pg, a);
    let db = dump_sql(pg, b);
    assert_same_dump(&da, &db, &format!("{a} vs {b}"), work);
}

/// Asserts two dumps (from [`dump_sql`]) are identical, showing a unified diff otherwise.
pub fn assert_same_dump(expected: &str, actual: &str, what: &str, work: &Path) {
    assert!(
        expected.len() > 200,
        "the expected dump is suspiciously small ({} bytes): {expected}",
        expected.len()
    );
    if expected == actual {
        return;
    }
    let stem = what.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let fa = work.join(format!("{stem}.expected.sql"));
    let fb = work.join(format!("{stem}.actual.sql"));
    std::fs::write(&fa, expected).expect("write dump");
    std::fs::write(&fb, actual).expect("write dump");
    let diff = Command::new("diff")
        .arg("-u")
        .arg(&fa)
        .arg(&fb)
        .output()
        .expect("run diff");
    let diff = String::from_utf8_lossy(&diff.stdout);
    let shown: Vec<&str> = diff.lines().take(200).collect();
    panic!(
        "dumps differ ({what}); files {} and {}:\n{}",
        fa.display(),
        fb.display(),
        shown.join("\n")
    );
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `(schema, table, rows)` from a backup record's `row_counts`.
pub fn manifest_row_counts(record: &Value) -> Vec<(String, String, i64)> {
    let counts = record
        .get("row_counts")
        .and_then(|v| v.as_array())
        .unwrap_or_else(|| panic!("no row_counts array in {record}"));
    counts
        .iter()
        .map(|c| {
            let s = |k: &str| {
                c.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_else(|| panic!("row count without {k}: {c}"))
                    .to_owned()
            };
            let rows = c
                .get("rows")
                .and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or_else(|| panic!("row count without rows: {c}"));
            (s("schema"), s("table"), rows)
        })
        .collect()
}

/// The ordinary tables (and leaf partitions) of `db` outside the system schemas, not
/// belonging to an extension: the tables whose rows a dump holds.
pub fn user_tables(pg: &Pg, db: &str) -> Vec<(String, String)> {
    pg.psql(
        db,
        "SELECT n.nspname || E'\\t' || c.relname FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                         AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1;",
    )
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(s, t)| (s.to_owned(), t.to_owned()))
    .collect()
}

/// `count(*)` of `schema.table` in `db`.
pub fn count_rows(pg: &Pg, db: &str, schema: &str, table: &str) -> i64 {
    pg.query_one(
        db,
        &format!(
            "SELECT count(*) FROM ONLY {}.{};",
            quote_ident(schema),
            quote_ident(table)
        ),
    )
    .parse()
    .expect("count(*) is a number")
}

/// Asserts the manifest's row counts describe `db`: every ordinary table of `db` is listed,
/// and each listed table holds exactly that many rows.
pub fn assert_row_counts_match(pg: &Pg, db: &str, record: &Value) {
    let counts = manifest_row_counts(record);
    assert!(!counts.is_empty(), "manifest lists no row counts: {record}");
    for (schema, table) in user_tables(pg, db) {
        assert!(
            counts.iter().any(|(s, t, _)| *s == schema && *t == table),
            "table {schema}.{table} of {db} is missing from the manifest's row_counts: {counts:?}"
        );
    }
    for (schema, table, rows) in &counts {
        let actual = count_rows(pg, db, schema, table);
        assert_eq!(
            actual, *rows,
            "{db}: {schema}.{table} has {actual} rows, the manifest says {rows}"
        );
    }
}
