//! H3 (security review 2026-12): a PlanetScale-profile target cannot `CREATE DATABASE`, so a
//! `restore --clean` loads into the destination itself after emptying it. The archive must be
//! proven whole (stored size, both SHA-256 hashes, raw size, a full read through the
//! decompressor) before anything is emptied: a stored archive with one byte flipped (same
//! size, so only the hashes can tell) or truncated fails the job and every original row of the
//! destination is still there (compared with a dump taken before). The dry run and the report
//! of the real restore state what remains: a failure during the load, after emptying, leaves
//! the database empty or partly loaded, and the way out is to restore again. The good archive
//! then restores, and the destination equals the source.
//!
//! The MariaDB server stands in for PlanetScale (TLS required, as the profile demands); the
//! backup comes from a plain MariaDB target on the same server.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

const SOURCE: &str = r#"
CREATE TABLE product (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2));
CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32), r VARBINARY(64));
INSERT INTO product VALUES (1, 'emoji 😀', 9.99), (2, 'quote \' and \\', 0.01);
INSERT INTO big SELECT seq, MD5(seq), RANDOM_BYTES(16 + seq % 32) FROM seq_1_to_20000;
CREATE VIEW pv AS SELECT name FROM product;
"#;

/// What the production database held before anyone restored into it.
const ORIGINAL: &str = r#"
CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(50), total DECIMAL(10,2));
CREATE TABLE product (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2));
INSERT INTO orders SELECT seq, CONCAT('customer ', seq), seq / 7 FROM seq_1_to_5000;
INSERT INTO product VALUES (7, 'the live product', 1.00);
CREATE VIEW recent AS SELECT id FROM orders WHERE id > 4990;
"#;

#[test]
fn planetscale_clean_restore_proves_the_archive_before_emptying_the_destination() {
    let s = Sandbox::builder("planetscale_clean")
        .mariadb_tls()
        .mariadb_target(SandboxTarget::new("shop"))
        .mariadb_target(
            SandboxTarget::new("ps")
                .database("psdb")
                .provider("planetscale")
                .extra("allow_clean_restore = true"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", SOURCE);
    my.sql("psdb", ORIGINAL);
    let original = my.dump_sql("psdb");
    assert!(original.contains("the live product"), "{original}");

    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let ps = s.target("ps");
    let clean = ["--to", ps.as_str(), "--clean"];

    let data = s.backup_dir("shop", &id).join("data.sql.zst");
    let good = std::fs::read(&data).expect("read data");
    let n = good.len();
    let mut flipped = good.clone();
    flipped[n / 2] ^= 0x5a;
    let cases = [
        ("one byte flipped", flipped),
        ("one byte flipped near the end", {
            let mut b = good.clone();
            b[n - 3] ^= 0x01;
            b
        }),
        ("truncated", good[..n / 2].to_vec()),
    ];
    for (what, bytes) in &cases {
        std::fs::write(&data, bytes).expect("corrupt the stored data");
        let r = s.restore(&id, "psdb", &clean);
        assert!(
            !r.success(),
            "{what}: restore of a corrupt archive succeeded: {r}"
        );
        let job = s.job_of("ps", &r);
        assert_eq!(
            find_str(&job, "state").as_deref(),
            Some("failed"),
            "{what}: {job}"
        );
        let text = r.text_lower();
        assert!(
            text.contains("match") || text.contains("corrupt"),
            "{what}: the reason must name the mismatch: {r}"
        );
        assert_unchanged(my, &original, what);
    }

    std::fs::write(&data, &good).expect("restore the stored data");

    // The dry run says what a failure after the destination was emptied leaves behind.
    let dry = s.admin.run_json(&[
        "restore",
        &id,
        "--to",
        &ps,
        "--database",
        "psdb",
        "--clean",
        "--dry-run",
    ]);
    dry.assert_ok();
    let said = dry.text_lower();
    assert!(
        said.contains("prove") && said.contains("before"),
        "the dry run must say the archive is proven before psdb is emptied: {dry}"
    );
    assert!(
        said.contains("empty or partly loaded") && said.contains("restore again"),
        "the dry run must state the remaining risk and what to do: {dry}"
    );
    assert_unchanged(my, &original, "the dry run");

    // Put back: the restore goes through, says what a failure would have left, and the
    // destination now equals the source.
    let r = s.restore(&id, "psdb", &clean);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert!(
        r.text_lower().contains("restore again"),
        "the restore's report must state the remaining risk: {r}"
    );
    assert_eq!(
        my.dump_sql("psdb"),
        my.dump_sql("shop"),
        "restored data differs from the source"
    );
    s.shutdown();
}

/// psdb still holds exactly what it held (a whole dump compared; tables and sizes shown).
fn assert_unchanged(my: &lifeboat_e2e::mariadb::MariaDb, original: &str, what: &str) {
    let now = my.dump_sql("psdb");
    if now != original {
        let tables = my.sql(
            "",
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'psdb'",
        );
        panic!(
            "{what}: psdb changed although the archive was corrupt ({} bytes of dump before, {} now); its tables now:\n{tables}",
            original.len(),
            now.len()
        );
    }
}
