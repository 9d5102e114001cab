//! Alerts: incidents opened and resolved from the same verdicts as `/health`, and notified to
//! webhooks through an outbox in the catalog, so each webhook gets one "firing" and one
//! "resolved" notification per incident (see docs/adr/0006-alert-incidents-in-the-catalog.md).
//!
//! Two tasks: the evaluator (every `alerts.evaluate_interval`, and after every finished job)
//! and the notifier (delivers due notifications, retrying with backoff). Each counts its
//! finished passes, failed ones included (`lifeboat_alert_evaluations_total`,
//! `lifeboat_alert_delivery_passes_total`).

pub mod config;
pub mod model;
pub mod rules;
pub mod webhook;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

pub use config::{AlertsConfig, WebhookConfig, WebhookFormat, WebhookUrl};
pub use model::{Event, Incident, IncidentKind, NewIncident, Notification, Severity};

use crate::{catalog::Catalog, config::Config, hub::Hub, metrics::Metrics};

/// What the alert tasks read and write: the health verdicts' inputs (catalog, config,
/// sessions), job events (an evaluation after each finished job), incidents and the outbox
/// in the catalog, and the alert metrics.
#[derive(Clone)]
pub struct Alerts {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
}

/// The wait before a notification whose delivery pass failed is tried again: 30 s doubling
/// per failed pass, at most an hour.
pub fn outbox_backoff(failed_passes: u32) -> Duration {
    Duration::from_secs(30)
        .saturating_mul(1u32 << failed_passes.min(7))
        .min(Duration::from_secs(3600))
}

/// Runs the evaluator and the notifier until `cancel`.
pub async fn run(a: Alerts, cancel: CancellationToken) {
    let client = match webhook::client() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(
                "failed to set up the webhook client: {e:#}; alerts are tracked but not sent"
            );
            None
        }
    };
    let wake = Arc::new(Notify::new());
    let notifier = tokio::spawn(notify_loop(a.clone(), client, wake.clone(), cancel.clone()));
    evaluate_loop(a, wake, cancel).await;
    let _ = notifier.await;
}

async fn evaluate_loop(a: Alerts, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut events = a.hub.subscribe();
    let mut interval = tokio::time::interval(a.config.alerts.evaluate_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
            event = events.recv() => match event {
                Ok(job) if job.state.is_terminal() => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
        let ok = match evaluate_once(&a, lifeboat_common::time::now_ms()).await {
            Ok(changed) => {
                if changed {
                    wake.notify_one();
                }
                true
            }
            Err(e) => {
                tracing::warn!("failed to evaluate alerts: {e:#}; retrying at the next pass");
                false
            }
        };
        // Counted after the wake-up: once a pass shows here, whatever it queued is on its
        // way to the notifier (tests rely on this to wait for passes instead of sleeping).
        a.metrics.alert_evaluated(ok);
    }
}

/// One evaluation: opens and resolves incidents. True if anything changed.
pub async fn evaluate_once(a: &Alerts, now_ms: i64) -> Result<bool> {
    let snapshot = a
        .catalog
        .health_snapshot(now_ms)
        .await
        .context("read the catalog")?;
    let report = a.hub.health_report(&snapshot, &a.config, now_ms);
    let cfg = &a.config.alerts;
    let conditions = rules::conditions(&report.targets, &report.agents, cfg, now_ms);
    let open = a
        .catalog
        .open_incidents()
        .await
        .context("read open incidents")?;
    let plan = rules::plan(conditions, &open);
    let mut changed = false;
    for new in plan.open {
        let webhooks: Vec<String> = cfg
            .webhooks
            .iter()
            .filter(|w| w.wants(new.kind))
            .map(|w| w.name.clone())
            .collect();
        if let Some(i) = a
            .catalog
            .open_incident(&new, &webhooks, now_ms)
            .await
            .context("open an incident")?
        {
            changed = true;
            tracing::warn!(
                incident = i.id,
                kind = i.kind.as_str(),
                severity = i.severity.as_str(),
                subject = %i.subject,
                "incident opened: {}",
                i.summary
            );
        }
    }
    for (id, summary) in plan.resolve {
        if a.catalog
            .resolve_incident(id, &summary, now_ms)
            .await
            .context("resolve an incident")?
        {
            changed = true;
            tracing::info!(incident = id, "incident resolved: {summary}");
        }
    }
    if changed {
        let open = a
            .catalog
            .open_incidents()
            .await
            .context("read open incidents")?;
        a.metrics.set_open_incidents(&open);
    } else {
        a.metrics.set_open_incidents(&open);
    }
    Ok(changed)
}

async fn notify_loop(
    a: Alerts,
    client: Option<webhook::HttpClient>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let Some(client) = client else { return };
    if a.config.alerts.webhooks.is_empty() {
        return;
    }
    loop {
        let result = deliver_due(&a, &client, &cancel).await;
        if let Err(e) = &result {
            tracing::warn!("failed to deliver alert notifications: {e:#}");
        }
        a.metrics.alert_delivery_pass(result.is_ok());
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Delivers the due notifications: webhooks in parallel, each webhook's queue in order. A
/// webhook whose delivery fails is left alone for the rest of the pass (its receiver is
/// probably down); the failed notification waits for its backoff.
pub async fn deliver_due(
    a: &Alerts,
    client: &webhook::HttpClient,
    cancel: &CancellationToken,
) -> Result<()> {
    let due = a
        .catalog
        .due_notifications(lifeboat_common::time::now_ms(), 100)
        .await
        .context("read due notifications")?;
    let mut queues: BTreeMap<String, Vec<(Notification, Incident)>> = BTreeMap::new();
    for (n, incident) in due {
        queues
            .entry(n.webhook.clone())
            .or_default()
            .push((n, incident));
    }
    let passes = queues.into_iter().filter_map(|(name, queue)| {
        // A webhook removed from the config: its queue is left alone.
        let w = a.config.alerts.webhooks.iter().find(|w| w.name == name)?;
        Some(deliver_queue(a, client, w, queue, cancel))
    });
    for result in futures::future::join_all(passes).await {
        result?;
    }
    let pending = a
        .catalog
        .pending_notifications()
        .await
        .context("count pending notifications")?;
    a.metrics
        .set_pending_notifications(&a.config.alerts, &pending);
    Ok(())
}

async fn deliver_queue(
    a: &Alerts,
    client: &webhook::HttpClient,
    w: &WebhookConfig,
    queue: Vec<(Notification, Incident)>,
    cancel: &CancellationToken,
) -> Result<()> {
    for (n, incident) in queue {
        if cancel.is_cancelled() {
            break;
        }
        let now = lifeboat_common::time::now_ms();
        if n.event == Event::Resolved && !w.send_resolved {
            a.catalog
                .notification_delivered(&n, now)
                .await
                .context("record a skipped notification")?;
            continue;
        }
        let body = webhook::payload(w.format, n.event, &incident, now);
        let outcome = tokio::select! {
            () = cancel.cancelled() => break,
            r = webhook::deliver(client, w, &body, Duration::from_millis(500)) => r,
        };
        match outcome {
            Ok(_) => {
                a.metrics.notification_sent(&w.name, true);
                tracing::info!(
                    webhook = %w.name,
                    incident = incident.id,
                    kind = incident.kind.as_str(),
                    event = n.event.as_str(),
                    "alert notification delivered"
                );
                a.catalog
                    .notification_delivered(&n, lifeboat_common::time::now_ms())
                    .await
                    .context("record a delivered notification")?;
            }
            Err(e) => {
                a.metrics.notification_sent(&w.name, false);
                let wait = outbox_backoff(n.attempts);
                tracing::warn!(
                    webhook = %w.name,
                    incident = incident.id,
                    event = n.event.as_str(),
                    "failed to deliver an alert notification: {e}; trying again in {} s",
                    wait.as_secs()
                );
                let next = lifeboat_common::time::now_ms()
                    .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                a.catalog
                    .notification_failed(&n, &e.to_string(), next)
                    .await
                    .context("record a failed notification")?;
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in IncidentKind::ALL {
            assert_eq!(IncidentKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Event::parse("firing"), Some(Event::Firing));
        assert_eq!(Severity::parse("critical"), Some(Severity::Critical));
    }

    #[test]
    fn outbox_backoff_doubles_to_an_hour() {
        assert_eq!(outbox_backoff(0), Duration::from_secs(30));
        assert_eq!(outbox_backoff(1), Duration::from_secs(60));
        assert_eq!(outbox_backoff(6), Duration::from_secs(1920));
        assert_eq!(outbox_backoff(7), Duration::from_secs(3600));
        assert_eq!(outbox_backoff(50), Duration::from_secs(3600));
    }
}
