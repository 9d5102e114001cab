//! The agent's one stream to the coordinator: dial out over mutual TLS, say Hello, take jobs,
//! report progress and results, heartbeat; on any break, reconnect with exponential backoff and
//! jitter while jobs keep running.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use backon::{BackoffBuilder, ExponentialBuilder};
use lifeboat_proto as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    repo::janitor::JanitorStats,
    runner::{Event, Runner},
};

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The pause before trying the next coordinator of the list after one failed.
const NEXT_COORDINATOR: Duration = Duration::from_millis(200);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);

pub async fn run_forever(
    config: Arc<Config>,
    stats: JanitorStats,
    wal: crate::wal::status::Board,
    runner: Runner,
    mut events: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    // One endpoint per coordinator URL, loaded at start: a bad URL or TLS file stops here.
    let mut endpoints = Vec::with_capacity(config.coordinators.len());
    for url in &config.coordinators {
        match lifeboat_common::tls::client_endpoint(
            url,
            &config.tls,
            config.coordinator_server_name.as_deref(),
        ) {
            Ok(e) => endpoints.push(e),
            Err(e) => {
                tracing::error!("failed to configure the coordinator connection: {e:#}");
                shutdown.cancel();
                return;
            }
        }
    }
    let backoff_builder = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times();
    let mut backoff = backoff_builder.build();
    let mut first = true;
    // The coordinator tried next: the one that worked last, or after a failure the next in
    // the list (the active coordinator of a catalog may be any of them).
    let mut current = 0;
    let mut failed_in_round = 0;
    loop {
        let url = &config.coordinators[current];
        // Every reconnect reads the certificate, key and CA bundle again, so a renewed agent
        // certificate or a rotated CA is used without a restart. Files caught mid-rotation keep
        // the previous ones for this attempt.
        if !first {
            match lifeboat_common::tls::client_endpoint(
                url,
                &config.tls,
                config.coordinator_server_name.as_deref(),
            ) {
                Ok(e) => endpoints[current] = e,
                Err(e) => tracing::error!(
                    "cannot load the TLS files again; reconnecting with the ones loaded before: {e:#}"
                ),
            }
        }
        first = false;
        let started = tokio::time::Instant::now();
        match session(
            &config,
            url,
            &stats,
            &wal,
            &endpoints[current],
            &runner,
            &mut events,
            &shutdown,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > STABLE_SESSION {
                    // A session that lasted: a new round of the list, from the next one.
                    backoff = backoff_builder.build();
                    failed_in_round = 0;
                }
                if e.downcast_ref::<StandingBy>().is_some() {
                    tracing::info!(coordinator = %url, "{e:#}; trying the next coordinator");
                } else {
                    tracing::warn!(coordinator = %url, "coordinator session ended: {e:#}");
                }
                current = (current + 1) % config.coordinators.len();
                failed_in_round += 1;
            }
        }
        // The next coordinator of the list is tried at once; the backoff grows only when
        // every one of them failed.
        let delay = if failed_in_round < config.coordinators.len() {
            NEXT_COORDINATOR
        } else {
            failed_in_round = 0;
            backoff.next().unwrap_or(Duration::from_secs(30))
        };
        tracing::info!("reconnecting in {:.1}s", delay.as_secs_f64());
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        // Keep draining job events while disconnected: results stay in the runner until acked.
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = shutdown.cancelled() => return,
                ev = events.recv() => if ev.is_none() { return },
            }
        }
    }
}

/// One connected session. Returns Ok on shutdown, Err when the stream breaks.
#[allow(clippy::too_many_arguments)]
async fn session(
    config: &Config,
    url: &str,
    stats: &JanitorStats,
    wal: &crate::wal::status::Board,
    endpoint: &tonic::transport::Endpoint,
    runner: &Runner,
    events: &mut mpsc::UnboundedReceiver<Event>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let channel = tokio::select! {
        c = endpoint.connect() => c.with_context(|| format!("connect to {url}"))?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let mut client = pb::agent_gateway_client::AgentGatewayClient::new(channel)
        .max_decoding_message_size(pb::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(pb::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(256);
    // The identity files, read once for all targets.
    let held = crate::crypt::held_keys(config);
    let hello = pb::Hello {
        agent: config.name.clone(),
        environment: config.environment.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        targets: config
            .targets
            .values()
            .map(|t| pb::TargetInfo {
                name: t.name.clone(),
                engine: lifeboat_proto::Engine::from(t.engine).into(),
                provider: t.provider.clone(),
                repository: t.repository.clone(),
                database: t.database.clone(),
                copy_to: t.copy_to.clone(),
                encryption: t
                    .encryption
                    .as_ref()
                    .map(|e| crate::crypt::target_encryption(e, &held)),
            })
            .collect(),
        repositories: config.repositories.keys().cloned().collect(),
        clock_unix_ms: lifeboat_common::time::now_ms(),
        running_jobs: runner.known_jobs(),
        max_concurrent_jobs: config.max_concurrent_jobs,
    };
    send(&tx, pb::agent_message::Msg::Hello(hello)).await?;
    let response = tokio::select! {
        r = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)) => r,
        () = shutdown.cancelled() => return Ok(()),
    };
    let mut inbound = response.map_err(status_error)?.into_inner();

    // The first message must be Welcome.
    let welcome = match inbound.message().await {
        Ok(Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(w)),
        })) => w,
        Ok(Some(_)) => bail!("coordinator did not answer Hello with Welcome"),
        Ok(None) => bail!("coordinator closed the stream"),
        Err(s) => return Err(status_error(s)),
    };
    tracing::info!(coordinator = %url, "connected to the coordinator");
    warn_on_clock_skew(welcome.clock_unix_ms, lifeboat_common::time::now_ms());
    for refused in &welcome.refused_targets {
        tracing::warn!(
            target_name = %refused.name,
            "the coordinator did not register this target: {}",
            refused.reason
        );
    }
    let heartbeat_every = match welcome.heartbeat_interval_secs {
        0 => DEFAULT_HEARTBEAT,
        n => Duration::from_secs(u64::from(n).clamp(1, 300)),
    };
    for r in runner.unacked() {
        send(&tx, pb::agent_message::Msg::Result(r)).await?;
    }
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            msg = inbound.message() => match msg {
                Ok(Some(m)) => handle(runner, m),
                Ok(None) => bail!("coordinator closed the stream"),
                Err(s) => bail!("{}", describe_status(&s)),
            },
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                let msg = match ev {
                    Event::Accepted(job_id) => pb::agent_message::Msg::Accepted(pb::JobAccepted { job_id }),
                    Event::Progress(job_id, progress) => {
                        pb::agent_message::Msg::Progress(pb::JobProgress { job_id, progress: Some(progress) })
                    }
                    Event::Finished(r) => pb::agent_message::Msg::Result(*r),
                };
                send(&tx, msg).await?;
            }
            _ = heartbeat.tick() => {
                send(&tx, pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                    clock_unix_ms: lifeboat_common::time::now_ms(),
                    running_jobs: runner.running_jobs(),
                    repositories: stats.snapshot(),
                    wal: wal.snapshot(),
                })).await?;
            }
        }
    }
}

/// Clock differences beyond this are worth an operator's attention: S3 refuses signatures
/// more than 15 minutes off, and TLS certificates have validity windows.
const CLOCK_SKEW_WARNING_MS: i64 = 60_000;

/// Logs a warning when this machine's clock differs from the coordinator's (N26, S8).
fn warn_on_clock_skew(coordinator_ms: i64, local_ms: i64) -> bool {
    let skew = local_ms - coordinator_ms;
    if coordinator_ms > 0 && skew.abs() > CLOCK_SKEW_WARNING_MS {
        tracing::warn!(
            skew_seconds = skew / 1000,
            "this machine's clock is {}s {} the coordinator's (clock skew); object storage rejects requests signed more than 15 minutes off and certificates may look expired or not yet valid: enable NTP (timedatectl set-ntp true)",
            skew.abs() / 1000,
            if skew > 0 { "ahead of" } else { "behind" }
        );
        return true;
    }
    false
}

fn handle(runner: &Runner, m: pb::CoordinatorMessage) {
    match m.msg {
        Some(pb::coordinator_message::Msg::StartJob(spec)) => runner.start(spec),
        Some(pb::coordinator_message::Msg::CancelJob(c)) => runner.cancel(&c.job_id),
        Some(pb::coordinator_message::Msg::ResultAck(a)) => runner.ack(&a.job_id),
        Some(pb::coordinator_message::Msg::Welcome(_)) => {}
        None => tracing::warn!("ignored an empty or unknown message from the coordinator"),
    }
}

async fn send(tx: &mpsc::Sender<pb::AgentMessage>, msg: pb::agent_message::Msg) -> Result<()> {
    tx.send(pb::AgentMessage { msg: Some(msg) })
        .await
        .map_err(|_| anyhow::anyhow!("stream to the coordinator is closed"))
}

/// A coordinator standing by refused the session: another coordinator of its catalog is
/// active (its refusal carries this mark).
#[derive(Debug)]
struct StandingBy(String);

impl std::fmt::Display for StandingBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StandingBy {}

/// The error for a status that opened or ended the session.
fn status_error(s: tonic::Status) -> anyhow::Error {
    if s.metadata().contains_key(lifeboat_proto::STANDING_BY_KEY) {
        anyhow::Error::new(StandingBy(s.message().to_owned()))
    } else {
        anyhow::anyhow!("{}", describe_status(&s))
    }
}

fn describe_status(s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::PermissionDenied => format!(
            "the coordinator refused this agent: {} (is the agent name in the config the one in its certificate?)",
            s.message()
        ),
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => format!(
            "coordinator unreachable or connection closed: {} (if this repeats, the coordinator may be refusing this agent's certificate; check its log)",
            s.message()
        ),
        _ => format!("{:?}: {}", s.code(), s.message()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_standbys_refusal_is_told_from_other_failures() {
        let mut refused = tonic::Status::unavailable("this coordinator is standing by");
        refused.metadata_mut().insert(
            lifeboat_proto::STANDING_BY_KEY,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let e = super::status_error(refused);
        assert!(e.downcast_ref::<super::StandingBy>().is_some(), "{e:#}");
        assert_eq!(e.to_string(), "this coordinator is standing by");
        let e = super::status_error(tonic::Status::unavailable("connection reset"));
        assert!(e.downcast_ref::<super::StandingBy>().is_none(), "{e:#}");
        assert!(e.to_string().contains("unreachable"), "{e:#}");
    }

    #[test]
    fn clock_skew_over_a_minute_is_reported() {
        let now = 1_800_000_000_000;
        assert!(!super::warn_on_clock_skew(now, now + 59_000));
        assert!(super::warn_on_clock_skew(now, now + 20 * 60_000));
        assert!(super::warn_on_clock_skew(now, now - 61_000));
        assert!(
            !super::warn_on_clock_skew(0, now),
            "no clock from the coordinator"
        );
    }
}
