//! Restore drills through the real CLI, coordinator and agent: a drill restores the newest
//! backup into a new scratch database, checks it (hashes, size, row counts, the drill target's
//! `drill_checks`), measures the RTO and drops the database; `drill list`, `/metrics`,
//! `/health/backups` and the incidents say how it went.

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, eventually_default};
use serde_json::Value;

/// The sample of `series` (name and labels as rendered) in `/metrics`.
fn sample(http: &str, series: &str) -> Option<f64> {
    let (status, text) = http_get(http, "/metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `drill list --target T` entries.
fn drills(s: &Sandbox, target: &str) -> Vec<Value> {
    s.admin
        .json_list(&["drill", "list", "--target", &s.target(target)], "drills")
        .unwrap_or_else(|e| panic!("drill list: {e:#}"))
}

fn drill_databases_pg(s: &Sandbox) -> Vec<String> {
    s.pg.databases()
        .into_iter()
        .filter(|d| d.starts_with("lifeboat_"))
        .collect()
}

/// The target's entry in `/health/backups`.
fn health_of(s: &Sandbox, name: &str) -> Value {
    let (status, body) = http_get(s.coordinator.http_addr(), "/health/backups");
    assert!(
        status == 200 || status == 503,
        "/health/backups: {status} {body}"
    );
    let v: Value = serde_json::from_str(&body).expect("json");
    v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .clone()
}

fn report_text(job: &Value) -> String {
    job["report"].to_string()
}

#[test]
fn postgres_drill_passes_checks_and_drops_its_database() {
    let s =
        Sandbox::builder("drill_pg")
            .target(SandboxTarget::new("app").extra(
                "drill_checks = [\"SELECT count(*) = 5000 FROM bulk_rows\", \"SELECT true\"]",
            ))
            // A second target on the same server whose checks fail: drills restored into it run
            // its checks.
            .target(SandboxTarget::new("strict").database("app").extra(
                "drill_checks = [\"SELECT true\", \"SELECT count(*) > 1000000 FROM bulk_rows\"]",
            ))
            .operator("vic", "viewer")
            .build();
    load_bulk(&s.pg, "app", "rows", 5000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let before = s.pg.databases();

    // No backup yet: refused, naming what to do.
    let none = s
        .admin
        .run_json(&["drill", "run", &s.target("strict"), "--wait"]);
    assert_ne!(none.code, 0, "{none}");
    assert!(none.text_lower().contains("backup run"), "{none}");
    // A viewer may list drills but not run one.
    let denied = s
        .ctl_as("vic")
        .run_json(&["drill", "run", &s.target("app")]);
    assert_ne!(denied.code, 0, "{denied}");
    assert!(
        denied.text_lower().contains("needs role operator"),
        "{denied}"
    );

    let out = s
        .admin
        .run_json(&["drill", "run", &s.target("app"), "--wait"]);
    out.assert_ok();
    let job = out.json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "restore", "{job}");
    assert_eq!(job["backup_id"], id.as_str(), "{job}");
    assert_eq!(job["drill_of"], s.target("app").as_str(), "{job}");
    let detail = job["detail"].as_str().expect("detail");
    assert!(detail.starts_with("drill passed: RTO "), "{detail}");
    assert!(detail.contains("2 check(s) true"), "{detail}");
    assert!(detail.contains("5000 rows"), "{detail}");
    let report = report_text(&job);
    assert!(
        report.contains("SELECT count(*) = 5000 FROM bulk_rows: true"),
        "the checks ran: {report}"
    );
    assert!(
        report.contains("every count as the manifest recorded it"),
        "row counts compared: {report}"
    );
    let database = job["database"].as_str().expect("database").to_owned();
    assert!(database.starts_with("lifeboat_drill_"), "{database}");
    assert!(
        report.contains(&format!("scratch database {database} dropped")),
        "{report}"
    );
    // Gone from pg_database, and nothing else left behind.
    assert_eq!(
        s.pg.query_one(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'")
        )
        .trim(),
        "0"
    );
    assert_eq!(s.pg.databases(), before, "the drill left a database behind");

    // Recorded, with its RTO.
    let list = drills(&s, "app");
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0];
    assert_eq!(d["outcome"], "succeeded", "{d}");
    assert_eq!(d["backup_id"], id.as_str(), "{d}");
    assert_eq!(d["drill_target"], s.target("app").as_str(), "{d}");
    let rto_ms = d["rto_ms"].as_u64().expect("rto_ms");
    assert!(rto_ms > 0, "{d}");
    let listed_by_viewer = s
        .ctl_as("vic")
        .json_list(&["drill", "list"], "drills")
        .expect("viewer drill list");
    assert_eq!(listed_by_viewer.len(), 1);

    // Metrics and health.
    let http = s.coordinator.http_addr().to_owned();
    let labels = "{environment=\"test\",target=\"app\"}";
    let rto_s = sample(&http, &format!("lifeboat_drill_duration_seconds{labels}"))
        .expect("lifeboat_drill_duration_seconds");
    assert!(
        rto_s > 0.0 && (rto_s * 1000.0 - rto_ms as f64).abs() < 1.0,
        "{rto_s} vs {rto_ms}"
    );
    assert!(
        sample(
            &http,
            &format!("lifeboat_drill_last_success_timestamp_seconds{labels}")
        )
        .expect("last success")
            > 1.0e9
    );
    assert_eq!(
        sample(
            &http,
            "lifeboat_drills_total{environment=\"test\",outcome=\"succeeded\",target=\"app\"}"
        ),
        Some(1.0)
    );
    let (_, metrics) = http_get(&http, "/metrics");
    lifeboat_e2e::promtool::check_metrics(&metrics);
    let h = health_of(&s, "app");
    assert_eq!(h["rto_met"], true, "{h}");
    assert!(
        h["measured_rto_seconds"].as_f64().expect("measured") > 0.0,
        "{h}"
    );
    assert_eq!(h["last_drill"]["outcome"], "succeeded", "{h}");
    assert_eq!(h["rto_seconds"], 4 * 3600, "{h}");
    // The drill's restore is not a restore of the target in health.
    assert!(h["last_restore"].is_null(), "{h}");

    // Into another target: that target's checks run, and one failing fails the drill,
    // naming the check; the database is dropped all the same.
    let out = s.admin.run_json(&[
        "drill",
        "run",
        &s.target("app"),
        "--into",
        &s.target("strict"),
        "--backup",
        &id,
        "--wait",
    ]);
    assert_eq!(out.code, 1, "a failing check fails the drill: {out}");
    let job = out.json();
    let error = job["error"].as_str().expect("error");
    assert!(
        error.contains("drill check \"SELECT count(*) > 1000000 FROM bulk_rows\" failed")
            && error.contains("returned false"),
        "{error}"
    );
    assert!(report_text(&job).contains("SELECT true: true"), "{job}");
    assert_eq!(
        s.pg.databases(),
        before,
        "the failed drill left a database behind"
    );
    let list = drills(&s, "app");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["outcome"], "failed", "{list:?}");
    assert_eq!(list[0]["drill_target"], s.target("strict").as_str());
    assert!(
        list[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("1000000")
    );
    assert!(list[0]["rto_ms"].is_null(), "{list:?}");
    assert_eq!(
        sample(
            &http,
            "lifeboat_drills_total{environment=\"test\",outcome=\"failed\",target=\"app\"}"
        ),
        Some(1.0)
    );
    // The audit trail names the action.
    let audit = s.admin.run_json(&["audit", "list"]);
    assert!(audit.stdout.contains("\"drill\""), "{audit}");

    // A weekly drill schedule into the other target.
    let set = s.admin.run_json(&[
        "schedule",
        "set",
        &s.target("app"),
        "--kind",
        "drill",
        "--cron",
        "0 4 * * 0",
        "--into",
        &s.target("strict"),
    ]);
    let v = set.assert_ok().json();
    assert_eq!(v["kind"], "drill", "{v}");
    assert_eq!(v["drill_into"], s.target("strict").as_str(), "{v}");
    let bad = s.admin.run_json(&[
        "schedule",
        "set",
        &s.target("app"),
        "--cron",
        "0 4 * * 0",
        "--into",
        &s.target("strict"),
    ]);
    assert_eq!(bad.code, 1, "{bad}");
    assert!(bad.text_lower().contains("drill schedules only"), "{bad}");
    // /health/* serve a cached catalog reading: it shows up within the cache period.
    eventually_default("drill_scheduled in /health/backups", || {
        let h = health_of(&s, "app");
        anyhow::ensure!(h["drill_scheduled"] == true, "{h}");
        Ok(())
    });
    s.shutdown();
}

#[test]
fn drill_of_a_corrupted_backup_fails_and_raises_an_incident() {
    let s = Sandbox::builder("drill_corrupt")
        .target(SandboxTarget::new("app"))
        .build();
    load_bulk(&s.pg, "app", "rows", 3000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let before = s.pg.databases();
    let data = s.backup_dir("app", &id).join("data.pgdump.zst");
    let mut bytes = std::fs::read(&data).expect("read stored data");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&data, &bytes).expect("flip a byte");

    let out = s
        .admin
        .run_json(&["drill", "run", &s.target("app"), "--wait"]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    let error = job["error"].as_str().expect("error").to_lowercase();
    assert!(
        error.contains("sha-256") || error.contains("sha256") || error.contains("hash"),
        "the failure names the hash mismatch: {error}"
    );
    assert!(drill_databases_pg(&s).is_empty(), "{:?}", s.pg.databases());
    assert_eq!(s.pg.databases(), before);
    let list = drills(&s, "app");
    assert_eq!(list[0]["outcome"], "failed", "{list:?}");

    let http = s.coordinator.http_addr().to_owned();
    assert_eq!(
        sample(
            &http,
            "lifeboat_drills_total{environment=\"test\",outcome=\"failed\",target=\"app\"}"
        ),
        Some(1.0)
    );
    // The incident opens (alerts are evaluated after every finished job).
    eventually_default("the drill_failed incident", || {
        let (_, body) = http_get(&http, "/health/detailed");
        let v: Value = serde_json::from_str(&body)?;
        let found = v["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["kind"] == "drill_failed")
            .cloned();
        let i = found.ok_or_else(|| anyhow::anyhow!("no drill_failed incident yet: {body}"))?;
        anyhow::ensure!(i["subject"] == s.target("app").as_str(), "{i}");
        anyhow::ensure!(i["severity"] == "critical", "{i}");
        Ok(())
    });
    assert_eq!(
        sample(&http, "lifeboat_incidents_open{kind=\"drill_failed\"}"),
        Some(1.0)
    );
    let h = health_of(&s, "app");
    assert_eq!(h["last_drill"]["outcome"], "failed", "{h}");
    assert!(h["rto_met"].is_null(), "{h}");
    assert_ne!(h["status"], "ok", "{h}");
    s.shutdown();
}

#[test]
fn mariadb_drill_passes_and_drops_its_database() {
    let s = Sandbox::builder("drill_mariadb")
        .mariadb_target(
            SandboxTarget::new("shop")
                .extra("drill_checks = [\"SELECT count(*) = 2000 FROM items\", \"SELECT 1 = 1\"]"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE items (id INT PRIMARY KEY, v CHAR(32)); \
         INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_2000;",
    );
    s.backup_ok("shop");
    let before = my.databases();
    let out = s
        .admin
        .run_json(&["drill", "run", &s.target("shop"), "--wait"]);
    out.assert_ok();
    let job = out.json();
    let detail = job["detail"].as_str().expect("detail");
    assert!(
        detail.contains("2 check(s) true") && detail.contains("2000 rows"),
        "{detail}"
    );
    let database = job["database"].as_str().expect("database");
    assert!(!my.database_exists(database), "{database} was not dropped");
    assert_eq!(my.databases(), before);
    let list = drills(&s, "shop");
    assert_eq!(list[0]["outcome"], "succeeded", "{list:?}");
    assert!(list[0]["rto_ms"].as_u64().expect("rto") > 0);
    s.shutdown();
}
