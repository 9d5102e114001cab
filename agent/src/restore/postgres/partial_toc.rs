//! The table of contents of a partial restore: from `pg_restore --list --verbose` (which
//! prints each entry's dependencies), the entries that make the chosen tables whole — their
//! definitions and data, indexes, constraints, defaults, triggers, comments, privileges and the
//! sequences they own — and what those need to exist first (their schemas, types, functions,
//! sequences). Foreign keys to tables that are not restored, and views over them, are left
//! out.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::manifest::TableRows;

/// One entry of the listing.
#[derive(Debug)]
struct Entry<'a> {
    line: &'a str,
    desc: &'a str,
    /// The rest after the description: `SCHEMA TAG OWNER` (the schema `-` when none).
    rest: &'a str,
    deps: Vec<u32>,
}

/// Descriptions pg_dump writes, longest first so `TABLE DATA` is not read as `TABLE`.
const DESCS: &[&str] = &[
    "MATERIALIZED VIEW DATA",
    "SEQUENCE OWNED BY",
    "TABLE ATTACH",
    "MATERIALIZED VIEW",
    "CHECK CONSTRAINT",
    "FOREIGN TABLE",
    "FK CONSTRAINT",
    "SECURITY LABEL",
    "SEQUENCE SET",
    "INDEX ATTACH",
    "ROW SECURITY",
    "DEFAULT ACL",
    "SHELL TYPE",
    "TABLE DATA",
    "LARGE OBJECT",
];

/// Entries that belong to a table and come with it when every object they depend on comes.
const BELONGS_TO_TABLES: &[&str] = &[
    "TABLE DATA",
    "SEQUENCE",
    "SEQUENCE SET",
    "DEFAULT",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "INDEX",
    "INDEX ATTACH",
    "TRIGGER",
    "COMMENT",
    "ACL",
    "POLICY",
    "ROW SECURITY",
    "RULE",
    "STATISTICS",
    "SECURITY LABEL",
];

/// Objects a restored table may need to exist first; brought along with their own needs.
const PREREQUISITES: &[&str] = &[
    "SCHEMA",
    "TYPE",
    "SHELL TYPE",
    "DOMAIN",
    "COLLATION",
    "EXTENSION",
    "FUNCTION",
    "SEQUENCE",
];

/// Entries kept whatever is chosen (settings pg_restore applies first).
const HEADER: &[&str] = &["ENCODING", "STDSTRINGS", "SEARCHPATH"];

fn parse(listing: &str) -> Result<(Vec<u32>, BTreeMap<u32, Entry<'_>>)> {
    let mut order = Vec::new();
    let mut entries: BTreeMap<u32, Entry<'_>> = BTreeMap::new();
    let mut last: Option<u32> = None;
    for line in listing.lines() {
        if let Some(deps) = line.strip_prefix(";\tdepends on:") {
            let Some(id) = last else {
                bail!("the archive's table of contents has a dependency line before any entry");
            };
            let parsed: Vec<u32> = deps
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("unreadable dependency line {line:?}"))?;
            if let Some(e) = entries.get_mut(&id) {
                e.deps = parsed;
            }
            continue;
        }
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        // `ID; TABLEOID OID DESC SCHEMA TAG OWNER`
        let Some((id, after)) = line.split_once("; ") else {
            bail!("unreadable entry in the archive's table of contents: {line:?}");
        };
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("unreadable entry id in {line:?}"))?;
        let mut words = after.splitn(3, ' ');
        let (_, _, tail) = (words.next(), words.next(), words.next().unwrap_or(""));
        let desc = DESCS
            .iter()
            .find(|d| tail.starts_with(&format!("{d} ")))
            .copied()
            .unwrap_or_else(|| tail.split(' ').next().unwrap_or(""));
        let rest = tail.get(desc.len() + 1..).unwrap_or("");
        order.push(id);
        entries.insert(
            id,
            Entry {
                line,
                desc,
                rest,
                deps: Vec::new(),
            },
        );
        last = Some(id);
    }
    Ok((order, entries))
}

/// Whether `e` is the entry `desc` of table `schema.table` (its rest is `SCHEMA TABLE OWNER`;
/// owners hold no spaces, table names may).
fn names_table(e: &Entry<'_>, desc: &str, schema: &str, table: &str) -> bool {
    e.desc == desc
        && e.rest
            .strip_prefix(&format!("{schema} {table} "))
            .is_some_and(|owner| !owner.contains(' '))
}

/// The schema an entry lives in (`-`: none).
fn schema_of<'a>(e: &Entry<'a>) -> &'a str {
    e.rest.split(' ').next().unwrap_or("-")
}

/// The listing to hand `pg_restore --use-list` for the `selected` tables (and every object of
/// the whole `schemas` whose dependencies all come too); how many entries it keeps.
pub(super) fn partial_listing(
    listing: &str,
    selected: &[TableRows],
    schemas: &[String],
) -> Result<(String, usize)> {
    let (order, entries) = parse(listing)?;
    let mut kept: BTreeSet<u32> = BTreeSet::new();
    for t in selected {
        let found = entries
            .iter()
            .find(|(_, e)| names_table(e, "TABLE", &t.schema, &t.table));
        match found {
            Some((id, _)) => {
                kept.insert(*id);
            }
            None => bail!(
                "table {}.{} is in the backup's manifest but not in its archive's table of contents; the backup is inconsistent — restore another backup",
                t.schema,
                t.table
            ),
        }
    }
    let is_object = |id: &u32| {
        entries
            .get(id)
            .is_some_and(|e| !matches!(e.desc, "SCHEMA" | "EXTENSION"))
    };
    let mut owned_sequences: BTreeSet<u32> = BTreeSet::new();
    loop {
        let before = kept.len();
        // What the kept entries need first.
        let needed: Vec<u32> = kept
            .iter()
            .flat_map(|id| entries[id].deps.iter().copied())
            .filter(|d| !kept.contains(d))
            .filter(|d| {
                entries
                    .get(d)
                    .is_some_and(|e| PREREQUISITES.contains(&e.desc))
            })
            .collect();
        kept.extend(needed);
        // What belongs to them, when everything it depends on comes.
        for id in &order {
            let e = &entries[id];
            if kept.contains(id) {
                continue;
            }
            let in_schema = schemas.iter().any(|s| s == schema_of(e))
                && !matches!(e.desc, "TABLE" | "FOREIGN TABLE");
            let belongs = BELONGS_TO_TABLES.contains(&e.desc)
                && e.deps.iter().any(|d| kept.contains(d))
                && e.deps
                    .iter()
                    .filter(|d| is_object(d))
                    .all(|d| kept.contains(d));
            let schema_member = in_schema
                && e.deps
                    .iter()
                    .filter(|d| is_object(d))
                    .all(|d| kept.contains(d));
            if belongs || schema_member {
                if e.desc == "SEQUENCE" {
                    owned_sequences.insert(*id);
                }
                kept.insert(*id);
            }
        }
        if kept.len() == before {
            break;
        }
    }
    // `ALTER SEQUENCE … OWNED BY` names the owning table: only for sequences that came with
    // their table, not for one another table owns.
    let mut out = String::with_capacity(listing.len() / 4);
    let mut count = 0;
    for id in &order {
        let e = &entries[id];
        let keep = if HEADER.contains(&e.desc) {
            true
        } else if e.desc == "SEQUENCE OWNED BY" {
            e.deps.iter().any(|d| owned_sequences.contains(d))
        } else {
            kept.contains(id)
        };
        if keep {
            out.push_str(e.line);
            out.push('\n');
            count += 1;
        }
    }
    Ok((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --list --verbose` of a real PostgreSQL 15 archive.
    const LISTING: &str = "\
;
; Archive created at 2026-12-04 14:05:05 UTC
;
3389; 0 0 ENCODING - ENCODING 
3390; 0 0 STDSTRINGS - STDSTRINGS 
3391; 0 0 SEARCHPATH - SEARCHPATH 
3392; 1262 16384 DATABASE - src postgres
6; 2615 16385 SCHEMA - sales postgres
846; 1247 16387 TYPE sales status postgres
;\tdepends on: 6
219; 1259 16414 TABLE public orders postgres
222; 1259 16426 SEQUENCE public shared postgres
223; 1259 16427 TABLE public uses postgres
;\tdepends on: 222
220; 1259 16419 TABLE public we.ird `x postgres
218; 1259 16403 TABLE sales items postgres
;\tdepends on: 6
217; 1259 16402 SEQUENCE sales items_id_seq postgres
;\tdepends on: 218 6
216; 1259 16392 TABLE sales orders postgres
;\tdepends on: 846 6 846
3393; 0 0 COMMENT sales TABLE orders postgres
;\tdepends on: 216
215; 1259 16391 SEQUENCE sales orders_id_seq postgres
;\tdepends on: 6 216
3394; 0 0 SEQUENCE OWNED BY sales orders_id_seq postgres
;\tdepends on: 215
221; 1259 16422 VIEW sales v postgres
;\tdepends on: 216 216 216 846 6
3223; 2604 16395 DEFAULT sales orders id postgres
;\tdepends on: 216 215 216
3383; 0 16414 TABLE DATA public orders postgres
;\tdepends on: 219
3386; 0 16427 TABLE DATA public uses postgres
;\tdepends on: 223
3384; 0 16419 TABLE DATA public we.ird `x postgres
;\tdepends on: 220
3382; 0 16403 TABLE DATA sales items postgres
;\tdepends on: 218
3380; 0 16392 TABLE DATA sales orders postgres
;\tdepends on: 216
3395; 0 0 SEQUENCE SET public shared postgres
;\tdepends on: 222
3396; 0 0 SEQUENCE SET sales items_id_seq postgres
;\tdepends on: 217
3397; 0 0 SEQUENCE SET sales orders_id_seq postgres
;\tdepends on: 215
3233; 2606 16418 CONSTRAINT public orders orders_pkey postgres
;\tdepends on: 219
3231; 2606 16408 CONSTRAINT sales items items_pkey postgres
;\tdepends on: 218
3229; 2606 16400 CONSTRAINT sales orders orders_pkey postgres
;\tdepends on: 216
3227; 1259 16401 INDEX sales orders_note postgres
;\tdepends on: 216
3235; 2620 16431 TRIGGER sales orders t postgres
;\tdepends on: 216
3234; 2606 16409 FK CONSTRAINT sales items items_order_id_fkey postgres
;\tdepends on: 216 218 3229
";

    fn t(schema: &str, table: &str) -> TableRows {
        TableRows {
            bytes: None,
            schema: schema.into(),
            table: table.into(),
            rows: 0,
        }
    }

    fn ids(listing: &str) -> Vec<u32> {
        listing
            .lines()
            .map(|l| {
                l.split(';')
                    .next()
                    .and_then(|id| id.parse().ok())
                    .expect("an entry id")
            })
            .collect()
    }

    #[test]
    fn one_table_comes_with_what_it_owns_and_needs() {
        let (out, n) = partial_listing(LISTING, &[t("sales", "orders")], &[]).expect("listing");
        let got = ids(&out);
        assert_eq!(n, got.len());
        // header, schema and enum type it needs, table, comment, owned sequence and its
        // ownership, default, data, sequence value, primary key, index, trigger.
        assert_eq!(
            got,
            vec![
                3389, 3390, 3391, 6, 846, 216, 3393, 215, 3394, 3223, 3380, 3397, 3229, 3227, 3235
            ],
            "{out}"
        );
        // The view over it and the foreign key from a table not restored are left out, and
        // so is the table of the same name in another schema.
        for absent in [221, 3234, 219, 3383, 3233, 3392] {
            assert!(!got.contains(&absent), "{absent} in {out}");
        }
    }

    #[test]
    fn a_foreign_key_comes_when_both_tables_do_and_a_shared_sequence_is_brought_along() {
        let (out, _) = partial_listing(LISTING, &[t("sales", "orders"), t("sales", "items")], &[])
            .expect("both");
        let got = ids(&out);
        for id in [3234, 217, 3396, 218, 3382, 3231] {
            assert!(got.contains(&id), "{id} missing from {out}");
        }
        let (out, _) = partial_listing(LISTING, &[t("public", "uses")], &[]).expect("uses");
        let got = ids(&out);
        // The sequence its default draws from is created (with its value), but not given an
        // owner it does not have.
        assert!(got.contains(&222) && got.contains(&3395) && got.contains(&3386));
        assert!(!got.contains(&3394));
    }

    #[test]
    fn odd_names_and_whole_schemas() {
        let (out, _) = partial_listing(LISTING, &[t("public", "we.ird `x")], &[]).expect("odd");
        assert_eq!(ids(&out), vec![3389, 3390, 3391, 220, 3384]);
        // A whole schema brings its view too, once everything it reads comes.
        let (out, _) = partial_listing(
            LISTING,
            &[t("sales", "orders"), t("sales", "items")],
            &["sales".into()],
        )
        .expect("schema");
        assert!(ids(&out).contains(&221), "{out}");
        let e = partial_listing(LISTING, &[t("sales", "ghost")], &[]).expect_err("absent");
        assert!(e.to_string().contains("sales.ghost"), "{e}");
    }
}
