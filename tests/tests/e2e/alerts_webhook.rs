//! Alerts and monitoring with the real binaries: a backup that cannot log in fails, the
//! coordinator opens an incident and POSTs it to a webhook receiver started here (which
//! answers 503 once, so the retry is exercised); `/health/backups` and `/metrics` (checked by
//! `promtool`) tell the same story; a later good backup resolves the incident; and the webhook
//! URL, a secret, never appears in the coordinator's debug logs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use lifeboat_e2e::http::http_get;
use lifeboat_e2e::{Sandbox, SandboxTarget, eventually_default};
use serde_json::Value;

const TOKEN: &str = "T0SECRET/B0SECRET/xoxb-never-log-me";

/// Every request: (path, status answered, body).
type Seen = Arc<Mutex<Vec<(String, u16, Value)>>>;

/// A minimal HTTP/1.1 receiver on loopback: answers 503 to the first `fail_first` requests,
/// then 200, and records each.
fn receiver(fail_first: usize) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut failures_left = fail_first;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some((path, body)) = read_request(&stream) else {
                continue;
            };
            let status = if failures_left > 0 {
                failures_left -= 1;
                503
            } else {
                200
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            record.lock().expect("lock").push((path, status, body));
        }
    });
    (addr, seen)
}

fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// `GET path` on the coordinator's HTTP address: (status, body).
fn events(seen: &Seen, status: u16) -> Vec<Value> {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|(p, s, _)| p.ends_with("xoxb-never-log-me") && *s == status)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The integer sample `series` (name and labels as rendered) in the coordinator's `/metrics`.
fn sample(http: &str, series: &str) -> anyhow::Result<u64> {
    let (status, text) = http_get(http, "/metrics");
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no sample {series} in\n{text}"))
}

/// Waits until the counter `series` has grown by `n` since the call.
fn await_passes(http: &str, series: &str, n: u64) {
    let start = sample(http, series).expect("read the pass counter");
    eventually_default(&format!("{n} more of {series}"), || {
        let now = sample(http, series)?;
        anyhow::ensure!(
            now >= start + n,
            "{series} is {now}, waiting for {}",
            start + n
        );
        Ok(())
    });
}

#[test]
fn failed_backup_is_alerted_once_and_resolved() {
    let (addr, seen) = receiver(1);
    let mut s = Sandbox::builder("alerts")
        .target(SandboxTarget::new("good"))
        .target(
            SandboxTarget::new("badpass")
                .database("good")
                .wrong_password(),
        )
        .env("RUST_LOG", "debug")
        .build();

    // Alerts to the receiver; the URL lives in a 0600 file.
    let url_file = s.dir.path().join("hook.url");
    lifeboat_common::secret::write_private_file(
        &url_file,
        format!("http://{addr}/services/{TOKEN}\n").as_bytes(),
    )
    .expect("write url file");
    let mut config = std::fs::read_to_string(s.coordinator.config_path()).expect("read config");
    config.push_str(&format!(
        "\n[alerts]\nevaluate_interval = \"1s\"\n\
         [[alerts.webhook]]\nname = \"ops\"\nurl_file = {:?}\n",
        url_file.display().to_string()
    ));
    std::fs::write(s.coordinator.config_path(), config).expect("write config");
    let stopped = s.coordinator.stop();
    assert!(stopped.success(), "coordinator stop: {stopped}");
    s.coordinator.restart();

    s.backup_ok("good");
    let out = s.backup_run("badpass");
    let (job, error) = s.assert_backup_failed("badpass", &out);
    let job_id = job["job_id"].as_str().expect("job id").to_owned();

    let fired = eventually_default("the backup_failed notification", || {
        events(&seen, 200)
            .into_iter()
            .find(|v| v["incident"]["kind"] == "backup_failed")
            .ok_or_else(|| anyhow::anyhow!("not yet: {:?}", seen.lock().expect("lock")))
    });
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["incident"]["subject"], s.target("badpass"));
    let summary = fired["incident"]["summary"].as_str().expect("summary");
    assert!(summary.contains(&job_id), "{summary}");
    assert!(
        fired["incident"]["detail"]
            .as_str()
            .expect("detail")
            .contains(error.lines().next().unwrap_or("")),
        "the detail is the job's error: {fired}"
    );
    assert_eq!(events(&seen, 503).len(), 1, "the first attempt was refused");

    // What health and metrics say meanwhile.
    let http = s.coordinator.http_addr().to_owned();
    let (status, body) = http_get(&http, "/health/backups");
    assert_eq!(status, 200, "nothing is critical yet: {body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let bad = v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == "badpass")
        .expect("badpass")
        .clone();
    assert_eq!(bad["status"], "warning", "{bad}");
    assert_eq!(bad["last_failure"]["job_id"], job_id.as_str(), "{bad}");
    let (status, metrics) = http_get(&http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("outcome=\"failed\",target=\"badpass\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("lifeboat_incidents_open{kind=\"backup_failed\"} 1"));
    lifeboat_e2e::promtool::check_metrics(&metrics);

    // The password is fixed (the agent reads it at every job): the next backup succeeds and
    // resolves the incident, once.
    let secrets = s.dir.path().join("secrets");
    let good = std::fs::read(secrets.join("good.pass")).expect("read good password");
    std::fs::write(secrets.join("badpass.pass"), good).expect("fix password");
    s.backup_ok("badpass");
    let resolved = eventually_default("the resolved notification", || {
        events(&seen, 200)
            .into_iter()
            .find(|v| v["incident"]["kind"] == "backup_failed" && v["status"] == "resolved")
            .ok_or_else(|| anyhow::anyhow!("not yet"))
    });
    assert_eq!(resolved["incident"]["id"], fired["incident"]["id"]);
    // No second "firing" follows. Passes are counted when they end, so of two more passes at
    // least one began after the previous step: two more evaluations would have opened the
    // incident again (and woken the notifier), then two more delivery passes would have sent
    // it, or sent the old one again. (The notifier's idle pass comes every 5 s.)
    await_passes(&http, "lifeboat_alert_evaluations_total{outcome=\"ok\"}", 2);
    await_passes(
        &http,
        "lifeboat_alert_delivery_passes_total{outcome=\"ok\"}",
        2,
    );
    let firing = events(&seen, 200)
        .into_iter()
        .filter(|v| v["incident"]["kind"] == "backup_failed" && v["status"] == "firing")
        .count();
    assert_eq!(firing, 1, "one notification per incident");

    let logs = s.coordinator.logs();
    assert!(logs.contains("incident opened"), "{logs}");
    assert!(
        !logs.contains("xoxb-never-log-me") && !logs.contains("T0SECRET"),
        "the webhook URL is in the coordinator's log"
    );
    s.shutdown();
}
