//! A partial restore (`lifeboat restore ID --table S.T --schema S [--into-schema NAME]`): which
//! tables of a logical backup to restore and where, checked where it arrives.

use super::RecordError;

/// Longest schema or table name accepted (PostgreSQL's identifier limit; MySQL's is 64).
const MAX_NAME: usize = 64;
/// Most tables or schemas one partial restore may name.
const MAX_ITEMS: usize = 1000;

/// One table named by a partial restore: `SCHEMA.TABLE`, or `TABLE` alone (matched against the
/// backup's tables: it must be unique there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub schema: Option<String>,
    pub table: String,
}

impl TableRef {
    /// `SCHEMA.TABLE` (split at the first dot) or `TABLE`.
    pub fn parse(value: &str) -> Result<Self, RecordError> {
        let (schema, table) = match value.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, value),
        };
        if let Some(s) = schema {
            check_name("schema", s, value)?;
        }
        check_name("table", table, value)?;
        Ok(TableRef {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// Whether this names the table `schema.table`.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.table == table && self.schema.as_deref().is_none_or(|s| s == schema)
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

fn check_name(what: &str, name: &str, whole: &str) -> Result<(), RecordError> {
    if name.is_empty() {
        return Err(RecordError(format!(
            "--table {whole:?} has an empty {what} name; write SCHEMA.TABLE, e.g. public.orders"
        )));
    }
    if name.len() > MAX_NAME {
        return Err(RecordError(format!(
            "{what} name {name:?} is longer than {MAX_NAME} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(RecordError(format!(
            "{what} name {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// What a partial restore restores, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialRestore {
    /// Tables named with `--table`.
    pub tables: Vec<TableRef>,
    /// Schemas named with `--schema`: every table in them.
    pub schemas: Vec<String>,
    /// `--into-schema`: a new schema of the target's own database (MySQL: a new database).
    pub into_schema: Option<String>,
}

impl PartialRestore {
    /// The wire fields checked: `None` when no table or schema is named (a whole restore; an
    /// `into_schema` alone is refused).
    pub fn from_wire(
        tables: &[String],
        schemas: &[String],
        into_schema: &str,
    ) -> Result<Option<Self>, RecordError> {
        if tables.is_empty() && schemas.is_empty() {
            if !into_schema.is_empty() {
                return Err(RecordError(
                    "--into-schema restores only some tables: name them with --table SCHEMA.TABLE or --schema SCHEMA".into(),
                ));
            }
            return Ok(None);
        }
        if tables.len() > MAX_ITEMS || schemas.len() > MAX_ITEMS {
            return Err(RecordError(format!(
                "a partial restore names at most {MAX_ITEMS} tables and {MAX_ITEMS} schemas; restore the whole backup instead"
            )));
        }
        let mut parsed = Vec::with_capacity(tables.len());
        for t in tables {
            let t = TableRef::parse(t)?;
            if !parsed.contains(&t) {
                parsed.push(t);
            }
        }
        let mut names = Vec::with_capacity(schemas.len());
        for s in schemas {
            check_name("schema", s, s)?;
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
        let into_schema = match into_schema {
            "" => None,
            s => {
                check_side_schema(s)?;
                Some(s.to_owned())
            }
        };
        Ok(Some(PartialRestore {
            tables: parsed,
            schemas: names,
            into_schema,
        }))
    }

    /// The wire fields: tables, schemas, into_schema.
    pub fn to_wire(p: Option<&Self>) -> (Vec<String>, Vec<String>, String) {
        match p {
            None => (Vec::new(), Vec::new(), String::new()),
            Some(p) => (
                p.tables.iter().map(ToString::to_string).collect(),
                p.schemas.clone(),
                p.into_schema.clone().unwrap_or_default(),
            ),
        }
    }
}

/// A side schema (or MySQL side database) is created by the restore, so its name is kept
/// plain: a letter or `_`, then letters, digits and `_`, at most 63 bytes.
fn check_side_schema(s: &str) -> Result<(), RecordError> {
    let first_ok = s
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    if !first_ok || s.len() > 63 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(RecordError(format!(
            "--into-schema {s:?} must start with a letter or '_', hold only ASCII letters, digits and '_', and be at most 63 bytes, e.g. restored_20261203"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_parse_and_match() {
        let t = TableRef::parse("sales.orders").expect("qualified");
        assert!(t.matches("sales", "orders") && !t.matches("public", "orders"));
        assert_eq!(t.to_string(), "sales.orders");
        let bare = TableRef::parse("orders").expect("bare");
        assert!(bare.matches("sales", "orders") && bare.matches("public", "orders"));
        // A dot after the first belongs to the table's name.
        let dotted = TableRef::parse("s.a.b").expect("dotted");
        assert_eq!(
            (dotted.schema.as_deref(), dotted.table.as_str()),
            (Some("s"), "a.b")
        );
        for bad in ["", ".t", "s.", "s.\n"] {
            TableRef::parse(bad).expect_err(bad);
        }
    }

    #[test]
    fn a_partial_restore_round_trips_and_is_checked() {
        assert_eq!(PartialRestore::from_wire(&[], &[], "").expect("none"), None);
        let e = PartialRestore::from_wire(&[], &[], "side").expect_err("alone");
        assert!(e.0.contains("--table"), "{}", e.0);
        let p = PartialRestore::from_wire(
            &["public.a".into(), "public.a".into(), "b".into()],
            &["sales".into()],
            "restored_1",
        )
        .expect("valid")
        .expect("partial");
        assert_eq!(p.tables.len(), 2, "duplicates folded");
        let (t, s, i) = PartialRestore::to_wire(Some(&p));
        assert_eq!(
            PartialRestore::from_wire(&t, &s, &i).expect("again"),
            Some(p)
        );
        for bad in ["1x", "a-b", "a\"b", &"x".repeat(64)] {
            PartialRestore::from_wire(&["t".into()], &[], bad).expect_err(bad);
        }
    }
}
