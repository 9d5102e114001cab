//! Partial restores through the real CLI, coordinator and agent against a real PostgreSQL:
//! `backup contents` lists every table with the manifest's row counts; one table restored into
//! a new schema of the live database holds the backup's rows while the live table of the same
//! name (changed since) keeps its rows, checksum and OID; a whole schema restored into a new
//! database; an unknown table refused before anything is created.

use lifeboat_e2e::compare::user_tables;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};
use serde_json::Value;

/// 20 tables in three schemas, with serial keys, indexes, a foreign key and a view.
fn load_twenty_tables(s: &Sandbox, db: &str) {
    let mut sql = String::from("CREATE SCHEMA sales; CREATE SCHEMA audit;\n");
    let layout = [("public", 6), ("sales", 7), ("audit", 7)];
    let mut n = 0;
    for (schema, count) in layout {
        for i in 0..count {
            n += 1;
            let t = if schema == "sales" && i == 0 {
                "orders".to_owned()
            } else {
                format!("t{n:02}")
            };
            sql.push_str(&format!(
                "CREATE TABLE {schema}.{t} (id serial PRIMARY KEY, label text NOT NULL, amount numeric(10,2));\n\
                 CREATE INDEX {t}_label_{n} ON {schema}.{t} (label);\n\
                 INSERT INTO {schema}.{t} (label, amount) SELECT '{t} ' || g, g * 1.5 FROM generate_series(1, {rows}) g;\n",
                rows = n * 7
            ));
        }
    }
    // A table of the same name in another schema, a foreign key into sales.orders from a
    // table that is not restored with it, and a view over it.
    sql.push_str(
        "CREATE TABLE public.orders_ref (id int PRIMARY KEY, order_id int REFERENCES sales.orders (id));\n\
         INSERT INTO public.orders_ref SELECT g, g FROM generate_series(1, 5) g;\n\
         CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 5;\n",
    );
    s.pg.psql(db, &sql);
}

/// An order-independent content checksum of one table.
fn checksum(s: &Sandbox, db: &str, table: &str) -> String {
    s.pg.query_one(
        db,
        &format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t;"
        ),
    )
}

fn contents_tables(v: &Value) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for s in v["schemas"].as_array().expect("schemas") {
        for t in s["tables"].as_array().expect("tables") {
            out.push((
                s["schema"].as_str().expect("schema").to_owned(),
                t["table"].as_str().expect("table").to_owned(),
                t["rows"].as_i64().expect("rows"),
            ));
        }
    }
    out.sort();
    out
}

fn lifeboat_databases(s: &Sandbox) -> Vec<String> {
    s.pg.databases()
        .into_iter()
        .filter(|d| d.starts_with("lifeboat_"))
        .collect()
}

#[test]
fn partial_restores_bring_back_only_what_was_asked_for() {
    let s = Sandbox::builder("partial_pg")
        .target(SandboxTarget::new("shop"))
        .build();
    load_twenty_tables(&s, "shop");
    let tables_at_backup = user_tables(&s.pg, "shop");
    assert_eq!(tables_at_backup.len(), 21, "{tables_at_backup:?}");
    let orders_at_backup = checksum(&s, "shop", "sales.orders");
    let audit_at_backup: Vec<(String, String)> = tables_at_backup
        .iter()
        .filter(|(sc, _)| sc == "audit")
        .map(|(sc, t)| (t.clone(), checksum(&s, "shop", &format!("{sc}.{t}"))))
        .collect();
    assert_eq!(audit_at_backup.len(), 7);

    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");

    // Contents: every table with the manifest's row counts, which are the real counts.
    let c = s.admin.run_json(&["backup", "contents", &id]);
    c.assert_ok();
    let listed = contents_tables(&c.json());
    assert_eq!(listed.len(), 21, "{c}");
    for (schema, table, rows) in &listed {
        let real = lifeboat_e2e::compare::count_rows(&s.pg, "shop", schema, table);
        assert_eq!(*rows, real, "{schema}.{table} in {c}");
    }
    let text = s.admin.run(&["backup", "contents", &id]);
    text.assert_ok();
    assert!(
        text.stdout.contains("3 schema(s), 21 table(s)") && text.stdout.contains("sales.orders"),
        "{text}"
    );

    // The live table changes after the backup.
    s.pg.psql(
        "shop",
        "DELETE FROM sales.orders WHERE id > 40; UPDATE sales.orders SET label = 'changed' WHERE id = 1;",
    );
    let live_before = checksum(&s, "shop", "sales.orders");
    assert_ne!(live_before, orders_at_backup);
    let oid = "SELECT 'sales.orders'::regclass::oid;";
    let live_oid = s.pg.query_one("shop", oid);
    let live_tables = user_tables(&s.pg, "shop");

    // One table into a new schema of the live database.
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "sales.orders",
        "--into-schema",
        "restored_20261203",
        "--wait",
    ]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert_eq!(
        checksum(&s, "shop", "restored_20261203.orders"),
        orders_at_backup,
        "the restored table must hold the backup's rows"
    );
    assert_eq!(
        checksum(&s, "shop", "sales.orders"),
        live_before,
        "live table changed"
    );
    assert_eq!(s.pg.query_one("shop", oid), live_oid, "live table replaced");
    let mut expected = live_tables.clone();
    expected.push(("restored_20261203".into(), "orders".into()));
    expected.sort();
    assert_eq!(
        user_tables(&s.pg, "shop"),
        expected,
        "only the one table is new"
    );
    // With its index, primary key and its own sequence, which resumes after the backup's rows.
    assert_eq!(
        s.pg.query_one(
            "shop",
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'restored_20261203' AND tablename = 'orders';"
        ),
        "2"
    );
    assert_eq!(
        s.pg.query_one(
            "shop",
            "SELECT pg_get_serial_sequence('restored_20261203.orders', 'id');"
        ),
        "restored_20261203.orders_id_seq"
    );
    assert!(lifeboat_databases(&s).is_empty(), "{:?}", s.pg.databases());

    // The same schema again: refused, and nothing there changes.
    let again = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "sales.orders",
        "--into-schema",
        "restored_20261203",
        "--wait",
    ]);
    assert!(!again.success(), "{again}");
    assert!(again.to_string().contains("already exists"), "{again}");
    s.pg.psql(
        "shop",
        "INSERT INTO restored_20261203.orders (label) VALUES ('mine');",
    );
    assert_eq!(user_tables(&s.pg, "shop"), expected);

    // A whole schema into a new database.
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--schema",
        "audit",
        "--database",
        "audit_copy",
        "--wait",
    ]);
    r.assert_ok();
    let copied = user_tables(&s.pg, "audit_copy");
    assert_eq!(
        copied,
        tables_at_backup
            .iter()
            .filter(|(sc, _)| sc == "audit")
            .cloned()
            .collect::<Vec<_>>()
    );
    for (t, sum) in &audit_at_backup {
        assert_eq!(
            &checksum(&s, "audit_copy", &format!("audit.{t}")),
            sum,
            "audit.{t}"
        );
    }

    // An unknown table: refused naming what the backup holds, nothing created.
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "sales.nope",
        "--database",
        "nope_copy",
        "--wait",
    ]);
    assert!(!r.success(), "{r}");
    let text = r.to_string();
    assert!(
        text.contains("table sales.nope is not in the backup")
            && text.contains("sales.orders")
            && text.contains(&format!("lifeboat backup contents {id}")),
        "{text}"
    );
    assert!(!s.pg.database_exists("nope_copy"));
    assert!(lifeboat_databases(&s).is_empty(), "{:?}", s.pg.databases());
    assert_eq!(user_tables(&s.pg, "shop"), expected);

    s.shutdown();
}
