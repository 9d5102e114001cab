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
    // With each table's size on the server when the backup was taken.
    let sized = &c.json()["schemas"];
    let orders_bytes = sized
        .as_array()
        .expect("schemas")
        .iter()
        .flat_map(|sc| {
            sc["tables"]
                .as_array()
                .expect("tables")
                .iter()
                .map(move |t| (sc, t))
        })
        .find(|(sc, t)| sc["schema"] == "sales" && t["table"] == "orders")
        .map(|(_, t)| t["bytes"].as_u64().expect("a size"))
        .expect("sales.orders");
    let real: u64 =
        s.pg.query_one("shop", "SELECT pg_total_relation_size('sales.orders')")
            .parse()
            .expect("a number");
    assert_eq!(orders_bytes, real, "{c}");
    let text = s.admin.run(&["backup", "contents", &id]);
    text.assert_ok();
    assert!(
        text.stdout.contains("3 schema(s), 21 table(s)")
            && text.stdout.contains("sales.orders")
            && text.stdout.contains("SIZE"),
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

    // A restored count that differs from the manifest's fails the restore and removes the
    // new schema and the scratch database (the manifest is edited behind lifeboat's back; its
    // sizes and hashes, which the catalog checks, are not touched).
    let manifest_path = s.backup_dir("shop", &id).join("manifest.json");
    let original = std::fs::read_to_string(&manifest_path).expect("manifest");
    let mut m: Value = serde_json::from_str(&original).expect("manifest json");
    for r in m["row_counts"].as_array_mut().expect("row_counts") {
        if r["schema"] == "sales" && r["table"] == "orders" {
            r["rows"] = Value::from(r["rows"].as_i64().expect("rows") + 1);
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
    let bad = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "sales.orders",
        "--into-schema",
        "restored_bad",
        "--wait",
    ]);
    assert!(!bad.success(), "{bad}");
    assert!(
        bad.to_string()
            .contains("sales.orders: restored 49, backup had 50"),
        "{bad}"
    );
    assert_eq!(
        s.pg.query_one(
            "shop",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'restored_bad';"
        ),
        "0"
    );
    assert!(lifeboat_databases(&s).is_empty(), "{:?}", s.pg.databases());
    std::fs::write(&manifest_path, &original).expect("restore the manifest");

    // A side schema whose name has capitals keeps them (PostgreSQL folds unquoted names).
    let mixed = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "sales.orders",
        "--into-schema",
        "Restored_Mixed",
        "--wait",
    ]);
    mixed.assert_ok();
    assert_eq!(
        checksum(&s, "shop", "\"Restored_Mixed\".orders"),
        orders_at_backup,
        "{mixed}"
    );
    assert!(lifeboat_databases(&s).is_empty(), "{:?}", s.pg.databases());
    s.pg.psql("shop", "DROP SCHEMA \"Restored_Mixed\" CASCADE;");

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

const MARIADB_FIXTURE: &str = r"
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE parent2 (id INT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB;
CREATE TABLE `we``ird` (id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent (id)) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100)) ENGINE=InnoDB;
INSERT INTO parent SELECT seq, CONCAT('name ', seq) FROM seq_1_to_300;
INSERT INTO parent VALUES (1000, '-- Table structure for table `child`');
INSERT INTO parent2 SELECT seq, 'p2' FROM seq_1_to_50;
INSERT INTO `we``ird` SELECT seq FROM seq_1_to_7;
INSERT INTO child (pid) SELECT seq FROM seq_1_to_100;
CREATE VIEW v AS SELECT p.name, c.id FROM parent p JOIN child c ON c.pid = p.id;
CREATE TRIGGER trg AFTER INSERT ON parent FOR EACH ROW INSERT INTO audit (what) VALUES (NEW.name);
CREATE PROCEDURE p1() SELECT COUNT(*) FROM parent;
";

fn my_checksum(my: &lifeboat_e2e::mariadb::MariaDb, db: &str, table: &str, cols: &str) -> String {
    my.query_one(
        db,
        &format!(
            "SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(CONCAT_WS(',', {cols}) ORDER BY id SEPARATOR '|'))) FROM {table};"
        ),
    )
}

fn my_tables(my: &lifeboat_e2e::mariadb::MariaDb, db: &str) -> Vec<String> {
    my.sql(
        "",
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY 1;"
        ),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn mariadb_tables_restore_into_a_side_database() {
    let s = Sandbox::builder("partial_my")
        .mariadb_target(SandboxTarget::new("shop"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", MARIADB_FIXTURE);
    let parent_at_backup = my_checksum(my, "shop", "parent", "id, name");
    let weird_at_backup = my_checksum(my, "shop", "`we``ird`", "id");
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");

    let c = s.admin.run_json(&["backup", "contents", &id]);
    c.assert_ok();
    assert!(
        c.json()["schemas"][0]["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .all(|t| t["bytes"].as_u64().is_some_and(|b| b > 0)),
        "every MariaDB table has its size: {c}"
    );
    let listed: Vec<String> = contents_tables(&c.json())
        .into_iter()
        .map(|(_, t, _)| t)
        .collect();
    assert_eq!(
        listed,
        ["audit", "child", "parent", "parent2", "we`ird"],
        "{c}"
    );

    // The live table changes after the backup (its trigger writes to audit).
    my.sql(
        "shop",
        "DELETE FROM child WHERE pid > 10; DELETE FROM parent WHERE id > 200; INSERT INTO parent VALUES (5000, 'new');",
    );
    let parent_live = my_checksum(my, "shop", "parent", "id, name");
    let audit_live = my_checksum(my, "shop", "audit", "id, what");
    let databases_before = my.databases();

    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "shop.parent",
        "--into-schema",
        "parent_back",
        "--wait",
    ]);
    r.assert_ok();
    assert_eq!(
        my_tables(my, "parent_back"),
        ["parent"],
        "only the one table"
    );
    assert_eq!(
        my_checksum(my, "parent_back", "parent", "id, name"),
        parent_at_backup
    );
    // Its trigger came along; the view and the procedure did not.
    assert_eq!(
        my.query_one(
            "",
            "SELECT GROUP_CONCAT(TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'parent_back';"
        ),
        "trg"
    );
    assert_eq!(
        my.query_one(
            "",
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'parent_back';"
        ),
        "0"
    );
    // The live database is as it was.
    assert_eq!(my_checksum(my, "shop", "parent", "id, name"), parent_live);
    assert_eq!(my_checksum(my, "shop", "audit", "id, what"), audit_live);
    let mut expected = databases_before.clone();
    expected.push("parent_back".into());
    expected.sort();
    assert_eq!(my.databases(), expected, "no scratch database is left");

    // A name with a backtick, into a new database named with --database.
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "we`ird",
        "--database",
        "weird_copy",
        "--wait",
    ]);
    r.assert_ok();
    assert_eq!(my_tables(my, "weird_copy"), ["we`ird"]);
    assert_eq!(
        my_checksum(my, "weird_copy", "`we``ird`", "id"),
        weird_at_backup
    );

    // The side database exists now: refused. An unknown table: refused naming the tables.
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "parent",
        "--into-schema",
        "parent_back",
        "--wait",
    ]);
    assert!(
        !r.success() && r.to_string().contains("already exists"),
        "{r}"
    );
    let r = s.admin.run_json(&[
        "restore",
        &id,
        "--table",
        "paren",
        "--database",
        "nothing_here",
        "--wait",
    ]);
    assert!(!r.success(), "{r}");
    assert!(
        r.to_string().contains("table paren is not in the backup")
            && r.to_string().contains("shop.parent2"),
        "{r}"
    );
    assert!(!my.database_exists("nothing_here"));
    assert!(
        !my.databases().iter().any(|d| d.starts_with("lifeboat_")),
        "{:?}",
        my.databases()
    );

    s.shutdown();
}
