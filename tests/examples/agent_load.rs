//! Simulated agents against one real coordinator (run by `tests/bench/agents.sh`): many agent
//! sessions in this one process, each with a certificate of its own issued by the test CA,
//! speaking the real protocol over mutual TLS: `Hello` with one target and one repository,
//! then a heartbeat (with its repository's counters) at the interval the coordinator's
//! `Welcome` gives, from a phase spread evenly over the interval, as a fleet started at
//! different times sends them.
//!
//! For each step of the curve (e.g. 1,000, 5,000, 10,000 sessions) it connects agents until
//! that many are in session, lets one heartbeat interval pass, then watches a window:
//! - the coordinator's RSS (largest sample, once a second) and CPU use;
//! - `lifeboat_agent_update_seconds{kind="heartbeat"}` over the window: heartbeats recorded
//!   per second and their p50/p99 record time (bucket bounds of the histogram);
//! - the delivery delay of the latest heartbeat of every agent, from `/metrics` every 15 s as
//!   Prometheus would scrape it (the agent stamps the heartbeat, the coordinator takes its own
//!   clock when it reads it; one machine, one clock, so the difference is the delay), and how
//!   long each scrape took;
//! - `ListAgents` from an operator certificate (median and max of 5 calls);
//! - sessions lost during the window.
//!
//! A benchmark: it prints figures and asserts nothing.
//!
//! ```text
//! agent_load --url https://127.0.0.1:PORT --pki DIR --http 127.0.0.1:PORT --pid PID
//!            [--steps 1000,5000,10000] [--window SECS] [--operator NAME]
//! ```
//! DIR holds `ca.pem` and `ca.key` (the CA that issues the agents' certificates) and
//! `NAME.pem`/`NAME.key` of an operator (default `admin`).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lifeboat_common::pki::{Ca, LeafSpec};
use lifeboat_proto::v1::{self as pb, agent_gateway_client::AgentGatewayClient};
use tokio::sync::{Semaphore, mpsc};

/// TLS handshakes in flight at once: under the coordinator's per-address cap (32), as agents
/// starting together from one host would be.
const HANDSHAKES_IN_FLIGHT: usize = 24;
const ENVIRONMENT: &str = "load";
/// How often the window scrapes `/metrics`, as Prometheus would.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

struct Args {
    url: String,
    pki: PathBuf,
    http: String,
    pid: u32,
    steps: Vec<usize>,
    window: Duration,
    operator: String,
}

fn args() -> Result<Args> {
    let mut a = Args {
        url: String::new(),
        pki: PathBuf::new(),
        http: String::new(),
        pid: 0,
        steps: vec![1000, 5000, 10000],
        window: Duration::from_secs(60),
        operator: "admin".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = value,
            "--pki" => a.pki = value.into(),
            "--http" => a.http = value,
            "--pid" => a.pid = value.parse().context("--pid")?,
            "--steps" => {
                a.steps = value
                    .split(',')
                    .map(|s| s.trim().parse().context("--steps takes counts: 1000,5000"))
                    .collect::<Result<_>>()?;
            }
            "--window" => a.window = Duration::from_secs(value.parse().context("--window")?),
            "--operator" => a.operator = value,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.url.is_empty() || a.http.is_empty() || a.pid == 0 || a.pki.as_os_str().is_empty() {
        bail!("--url, --pki, --http and --pid are required");
    }
    if a.steps.is_empty() || a.steps.windows(2).any(|w| w[0] >= w[1]) || a.steps[0] == 0 {
        bail!("--steps must rise: 1000,5000,10000");
    }
    Ok(a)
}

/// What the sessions report to the measuring side.
#[derive(Default)]
struct Fleet {
    in_session: AtomicUsize,
    /// The heartbeat interval the coordinator's `Welcome` gave, in seconds.
    interval_secs: AtomicUsize,
    /// Sessions that ended (the coordinator closed them, or the connection broke).
    lost: AtomicUsize,
    /// Milliseconds from connecting to `Welcome` (TLS handshake and admission) per session.
    admissions: Mutex<Vec<f64>>,
    /// The first few distinct errors, with counts.
    errors: Mutex<BTreeMap<String, usize>>,
}

impl Fleet {
    fn error(&self, e: impl std::fmt::Display) {
        let mut errors = self.errors.lock().expect("errors");
        let text = e.to_string().chars().take(160).collect::<String>();
        if errors.len() < 8 || errors.contains_key(&text) {
            *errors.entry(text).or_default() += 1;
        }
    }
}

struct Identity {
    name: String,
    cert: String,
    key: String,
}

/// One simulated agent: connects, says Hello, heartbeats until the session breaks, then
/// reconnects after a second.
async fn agent(
    id: Identity,
    url: Arc<str>,
    ca: Arc<str>,
    phase: f64,
    fleet: Arc<Fleet>,
    handshakes: Arc<Semaphore>,
) {
    loop {
        match session(&id, &url, &ca, phase, &fleet, &handshakes).await {
            Ok(()) => {}
            Err(e) => fleet.error(format!("{e:#}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn session(
    id: &Identity,
    url: &str,
    ca: &str,
    phase: f64,
    fleet: &Fleet,
    handshakes: &Semaphore,
) -> Result<()> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .identity(tonic::transport::Identity::from_pem(&id.cert, &id.key));
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(30))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let permit = handshakes.acquire().await?;
    let started = Instant::now();
    let channel = endpoint.connect().await.context("connect")?;
    let mut client = AgentGatewayClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(4);
    let msg = |m| pb::AgentMessage { msg: Some(m) };
    let target = format!("t-{}", id.name);
    tx.send(msg(pb::agent_message::Msg::Hello(pb::Hello {
        agent: id.name.clone(),
        environment: ENVIRONMENT.into(),
        version: "load".into(),
        targets: vec![pb::TargetInfo {
            name: target,
            engine: pb::Engine::Postgres.into(),
            provider: "postgres".into(),
            repository: "repo".into(),
            database: "app".into(),
            copy_to: Vec::new(),
            encryption: None,
        }],
        repositories: vec!["repo".into()],
        clock_unix_ms: lifeboat_common::time::now_ms(),
        running_jobs: Vec::new(),
        max_concurrent_jobs: 1,
    })))
    .await?;
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("session")?
        .into_inner();
    let every = match inbound.message().await.context("Welcome")? {
        Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(w)),
        }) => Duration::from_secs(u64::from(w.heartbeat_interval_secs.max(1))),
        other => bail!("expected Welcome, got {other:?}"),
    };
    drop(permit);
    fleet.interval_secs.store(
        usize::try_from(every.as_secs()).unwrap_or(1),
        Ordering::SeqCst,
    );
    fleet
        .admissions
        .lock()
        .expect("admissions")
        .push(started.elapsed().as_secs_f64() * 1000.0);
    fleet.in_session.fetch_add(1, Ordering::SeqCst);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + every.mul_f64(phase), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(_)) => {}
                Ok(None) => break anyhow::anyhow!("the coordinator closed the session"),
                Err(s) => break anyhow::anyhow!("session ended: {}", s.message()),
            },
            _ = tick.tick() => {
                let hb = msg(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                    clock_unix_ms: lifeboat_common::time::now_ms(),
                    running_jobs: Vec::new(),
                    repositories: vec![pb::RepositoryStats {
                        name: "repo".into(),
                        kind: "fs".into(),
                        stale_uploads_aborted: 0,
                        janitor_errors: 0,
                        janitor_last_success_ms: 0,
                    }],
                    wal: Vec::new(),
                }));
                if tx.send(hb).await.is_err() {
                    break anyhow::anyhow!("the session's sender closed");
                }
            }
        }
    };
    fleet.in_session.fetch_sub(1, Ordering::SeqCst);
    fleet.lost.fetch_add(1, Ordering::SeqCst);
    Err(ended)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name; in
    // clock ticks, 100 a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// `/metrics`, and how long it took.
async fn scrape(http: &str) -> (String, f64) {
    let http = http.to_owned();
    let started = Instant::now();
    let (_, body) =
        tokio::task::spawn_blocking(move || lifeboat_e2e::http::http_get(&http, "/metrics"))
            .await
            .expect("scrape");
    (body, started.elapsed().as_secs_f64() * 1000.0)
}

/// The cumulative buckets (upper bound, count) of the heartbeat update histogram.
fn heartbeat_buckets(metrics: &str) -> Vec<(f64, f64)> {
    let prefix = "lifeboat_agent_update_seconds_bucket{kind=\"heartbeat\",le=\"";
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of the observations between two
/// scrapes, and how many there were.
fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let bound = delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::NAN, |(le, _)| *le);
    (bound, total)
}

/// Per agent of the load environment: the delivery delay of its latest heartbeat in ms (the
/// negated clock skew the coordinator recorded).
fn delays_ms(metrics: &str) -> Vec<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("lifeboat_agent_clock_skew_seconds{"))
        .filter(|l| l.contains(&format!("environment=\"{ENVIRONMENT}\"")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|skew| -skew * 1000.0)
        .collect()
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

fn bound_ms(le: f64) -> String {
    if le.is_infinite() {
        "> 5000".into()
    } else {
        format!("<= {}", le * 1000.0)
    }
}

async fn list_agents_ms(a: &Args) -> Result<(f64, f64)> {
    let files = lifeboat_common::tls::TlsFiles {
        ca: a.pki.join("ca.pem"),
        cert: a.pki.join(format!("{}.pem", a.operator)),
        key: a.pki.join(format!("{}.key", a.operator)),
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        // A new connection per call, as each `lifeboat agents list` makes.
        let channel = lifeboat_common::tls::client_endpoint(&a.url, &files, None)?
            .connect()
            .await?;
        let mut c = pb::control_client::ControlClient::new(channel)
            .max_decoding_message_size(lifeboat_proto::MAX_MESSAGE_BYTES);
        c.list_agents(pb::ListAgentsRequest::default()).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    Ok((percentile(&mut times, 0.5), max))
}

fn issue_all(ca: &Ca, n: usize) -> Result<Vec<Identity>> {
    (0..n)
        .map(|i| {
            let name = format!("load-{i:05}");
            let issued = ca.issue(&LeafSpec::agent(&name))?;
            Ok(Identity {
                name,
                cert: issued.cert_pem,
                key: issued.key_pem.expose().clone(),
            })
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let ca_pem = std::fs::read_to_string(a.pki.join("ca.pem")).context("read ca.pem")?;
    let ca_key = lifeboat_common::secret::read_secret_file(&a.pki.join("ca.key"))?;
    let ca = Ca::from_pem(ca_pem.clone(), ca_key)?;
    let most = *a.steps.last().unwrap_or(&0);
    let started = Instant::now();
    let mut identities = tokio::task::spawn_blocking(move || issue_all(&ca, most))
        .await??
        .into_iter();
    println!(
        "issued {most} agent certificates in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let fleet = Arc::new(Fleet::default());
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let url: Arc<str> = a.url.clone().into();
    let ca: Arc<str> = ca_pem.into();
    let rss_idle = lifeboat_e2e::process::status_kib(a.pid, "VmRSS:");
    println!(
        "coordinator RSS with no agents: {:.1} MiB",
        rss_idle as f64 / 1024.0
    );
    println!(
        "{:>7} {:>8} {:>11} {:>9} {:>9} {:>7} {:>9} {:>11} {:>11} {:>11} {:>11} {:>9} {:>12}",
        "agents",
        "ramp s",
        "admit p99",
        "RSS MiB",
        "peak MiB",
        "CPU %",
        "hb/s",
        "rec p50 ms",
        "rec p99 ms",
        "delay p50",
        "delay p99",
        "scrape ms",
        "list ms (max)"
    );
    let mut spawned = 0usize;
    let mut results = Vec::new();
    for &step in &a.steps {
        // Ramp up to `step` sessions.
        let ramp = Instant::now();
        fleet.admissions.lock().expect("admissions").clear();
        while spawned < step {
            let Some(id) = identities.next() else { break };
            // Phases spread evenly over the interval across the whole fleet.
            let phase = (spawned as f64 * 0.618_033_988_75).fract();
            tokio::spawn(agent(
                id,
                url.clone(),
                ca.clone(),
                phase,
                fleet.clone(),
                handshakes.clone(),
            ));
            spawned += 1;
        }
        while fleet.in_session.load(Ordering::SeqCst) < step {
            if ramp.elapsed() > Duration::from_secs(1200) {
                bail!(
                    "only {} of {step} agents in session after 20 minutes; errors: {:?}",
                    fleet.in_session.load(Ordering::SeqCst),
                    fleet.errors.lock().expect("errors")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ramp_s = ramp.elapsed().as_secs_f64();
        let admit_p99 = percentile(&mut fleet.admissions.lock().expect("admissions"), 0.99);
        // Every agent heartbeats at least once before the window opens.
        let interval = fleet.interval_secs.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_secs(interval + 1)).await;

        let lost_before = fleet.lost.load(Ordering::SeqCst);
        let (m0, _) = scrape(&a.http).await;
        let cpu0 = cpu_secs(a.pid);
        let t0 = Instant::now();
        let mut rss_max = 0u64;
        let mut delays = Vec::new();
        let mut scrapes = Vec::new();
        let mut next_scrape = t0 + SCRAPE_EVERY;
        while t0.elapsed() < a.window {
            rss_max = rss_max.max(lifeboat_e2e::process::status_kib(a.pid, "VmRSS:"));
            if Instant::now() >= next_scrape {
                let (m, ms) = scrape(&a.http).await;
                scrapes.push(ms);
                delays.extend(delays_ms(&m));
                next_scrape += SCRAPE_EVERY;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (m1, ms) = scrape(&a.http).await;
        let window_s = t0.elapsed().as_secs_f64();
        let cpu = (cpu_secs(a.pid) - cpu0) / window_s * 100.0;
        scrapes.push(ms);
        delays.extend(delays_ms(&m1));
        let (b0, b1) = (heartbeat_buckets(&m0), heartbeat_buckets(&m1));
        let (p50, n) = quantile_bound(&b0, &b1, 0.5);
        let (p99, _) = quantile_bound(&b0, &b1, 0.99);
        let (list_p50, list_max) = list_agents_ms(&a).await.unwrap_or((f64::NAN, f64::NAN));
        let lost = fleet.lost.load(Ordering::SeqCst) - lost_before;
        let row = format!(
            "{:>7} {:>8.1} {:>11.0} {:>9.1} {:>9.1} {:>7.1} {:>9.0} {:>11} {:>11} {:>11.0} {:>11.0} {:>9.0} {:>12}",
            step,
            ramp_s,
            admit_p99,
            lifeboat_e2e::process::status_kib(a.pid, "VmRSS:") as f64 / 1024.0,
            rss_max as f64 / 1024.0,
            cpu,
            n / window_s,
            bound_ms(p50),
            bound_ms(p99),
            percentile(&mut delays, 0.5),
            percentile(&mut delays, 0.99),
            percentile(&mut scrapes, 0.5),
            format!("{list_p50:.0} ({list_max:.0})"),
        );
        println!("{row}");
        results.push((row, lost));
    }
    let hwm = lifeboat_e2e::process::status_kib(a.pid, "VmHWM:");
    println!(
        "coordinator peak RSS (VmHWM) over the run: {:.1} MiB",
        hwm as f64 / 1024.0
    );
    for (step, (_, lost)) in a.steps.iter().zip(&results) {
        println!("sessions lost during the {step}-agent window: {lost}");
    }
    let errors = fleet.errors.lock().expect("errors");
    if errors.is_empty() {
        println!("no session errors");
    } else {
        println!("session errors (first kinds, with counts):");
        for (e, n) in errors.iter() {
            println!("  {n} × {e}");
        }
    }
    Ok(())
}
