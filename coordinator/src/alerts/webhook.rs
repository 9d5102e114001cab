//! Webhook delivery: the JSON documents (generic and Slack-compatible) and one POST, retried
//! with exponential backoff and jitter. The URL is a secret: it is read at delivery time (from
//! the config or its file) and never logged; errors are scrubbed of it.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use lifeboat_common::secret::Secret;
use serde_json::{Value, json};

use super::{Event, Incident, WebhookConfig, WebhookFormat, WebhookUrl};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Attempts within one delivery (the first try and two retries); after that the notification
/// waits in the outbox for a later pass.
const ATTEMPTS: usize = 3;

/// An HTTPS (and plain HTTP) client trusting the system's root certificates.
pub fn client() -> anyhow::Result<HttpClient> {
    use anyhow::Context;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .context("load the system's root certificates for webhooks")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A failed delivery. The text never holds the URL.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    message: String,
    retryable: bool,
}

impl DeliveryError {
    fn new(message: String, retryable: bool) -> Self {
        Self { message, retryable }
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

fn rfc3339(ms: i64) -> Value {
    lifeboat_common::time::rfc3339(ms).map_or(Value::Null, Value::String)
}

/// The generic document: stable field names, versioned.
pub fn generic_payload(event: Event, i: &Incident, now_ms: i64) -> Value {
    json!({
        "version": 1,
        "source": "lifeboat",
        "status": event.as_str(),
        "incident": {
            "id": i.id,
            "kind": i.kind.as_str(),
            "severity": i.severity.as_str(),
            "subject": i.subject,
            "environment": i.environment,
            "summary": i.summary,
            "detail": i.detail,
            "opened_at": rfc3339(i.opened_at_ms),
            "resolved_at": i.resolved_at_ms.map_or(Value::Null, rfc3339),
            "resolution": i.resolve_summary,
        },
        "sent_at": rfc3339(now_ms),
    })
}

/// A Slack incoming-webhook message.
pub fn slack_payload(event: Event, i: &Incident) -> Value {
    let (icon, color, head) = match event {
        Event::Firing => match i.severity {
            super::Severity::Critical => (":red_circle:", "#d0021b", "FIRING"),
            super::Severity::Warning => (":large_orange_circle:", "#f5a623", "FIRING"),
        },
        Event::Resolved => (":large_green_circle:", "#2eb67d", "RESOLVED"),
    };
    let text = match event {
        Event::Firing => format!(
            "{icon} [{head}] {} {}: {}",
            i.severity.as_str(),
            i.kind.as_str(),
            i.summary
        ),
        Event::Resolved => format!("{icon} [{head}] {}: {}", i.kind.as_str(), i.resolve_summary),
    };
    let mut fields = vec![
        json!({"title": "Subject", "value": i.subject, "short": true}),
        json!({"title": "Environment", "value": i.environment, "short": true}),
    ];
    if event == Event::Firing && !i.detail.is_empty() {
        fields.push(json!({"title": "Detail", "value": i.detail, "short": false}));
    }
    json!({
        "text": text,
        "attachments": [{
            "color": color,
            "fields": fields,
            "footer": format!("lifeboat incident #{}", i.id),
        }],
    })
}

pub fn payload(format: WebhookFormat, event: Event, i: &Incident, now_ms: i64) -> Value {
    match format {
        WebhookFormat::Generic => generic_payload(event, i, now_ms),
        WebhookFormat::Slack => slack_payload(event, i),
    }
}

/// Reads the webhook's URL (the file at every delivery, so rotation needs no restart).
async fn url(w: &WebhookConfig) -> Result<Secret<String>, DeliveryError> {
    match &w.url {
        WebhookUrl::Inline(u) => Ok(u.clone()),
        WebhookUrl::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || lifeboat_common::secret::read_secret_file(&path))
                .await
                .map_err(|e| DeliveryError::new(format!("read the URL file: {e}"), false))?
                .map(|s| Secret::new(s.expose().trim().to_owned()))
                .map_err(|e| DeliveryError::new(format!("read the URL file: {e:#}"), false))
        }
    }
}

/// Removes the URL (and its path, which holds the token in Slack's) from a message.
fn scrub(message: &str, url: &str) -> String {
    let mut out = message.replace(url, "<webhook url>");
    if let Ok(uri) = url.parse::<axum::http::Uri>() {
        let path = uri.path();
        if path.len() > 1 {
            out = out.replace(path, "/<redacted>");
        }
    }
    out
}

async fn post_once(
    client: &HttpClient,
    url: &Secret<String>,
    body: &Bytes,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let request = hyper::Request::post(url.expose().as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("lifeboat-coordinator/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body.clone()))
        .map_err(|_| {
            DeliveryError::new("the webhook URL is not a valid request URL".into(), false)
        })?;
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => {
            return Err(DeliveryError::new(
                format!("no response within {} s", timeout.as_secs_f64()),
                true,
            ));
        }
        Ok(Err(e)) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            return Err(DeliveryError::new(scrub(&text, url.expose()), true));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retryable = status.is_server_error()
        || status == hyper::StatusCode::TOO_MANY_REQUESTS
        || status == hyper::StatusCode::REQUEST_TIMEOUT;
    Err(DeliveryError::new(
        format!("the receiver answered HTTP {status}"),
        retryable,
    ))
}

/// POSTs `payload` to the webhook, retrying transient failures with backoff.
pub async fn deliver(
    client: &HttpClient,
    w: &WebhookConfig,
    payload: &Value,
    first_backoff: Duration,
) -> Result<u32, DeliveryError> {
    let url = url(w).await?;
    let body = Bytes::from(payload.to_string());
    let mut attempts = 0u32;
    let result = (|| {
        attempts += 1;
        post_once(client, &url, &body, w.timeout)
    })
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(first_backoff)
            .with_max_delay(first_backoff * 8)
            .with_max_times(ATTEMPTS - 1)
            .with_jitter(),
    )
    .when(DeliveryError::is_retryable)
    .notify(|e, after| {
        tracing::info!(
            webhook = %w.name,
            "webhook delivery failed: {e}; retrying in {} ms",
            after.as_millis()
        );
    })
    .await;
    result.map(|()| attempts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{IncidentKind, Severity};

    fn incident() -> Incident {
        Incident {
            id: 7,
            kind: IncidentKind::RpoBreach,
            subject: "prod/orders".into(),
            environment: "prod".into(),
            severity: Severity::Critical,
            summary: "prod/orders: newest complete backup is 1day 6h old".into(),
            detail: "d".into(),
            opened_at_ms: 1_700_000_000_000,
            resolved_at_ms: None,
            resolve_summary: String::new(),
        }
    }

    #[test]
    fn generic_document() {
        let v = generic_payload(Event::Firing, &incident(), 1_700_000_060_000);
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "firing");
        assert_eq!(v["incident"]["kind"], "rpo_breach");
        assert_eq!(v["incident"]["opened_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["incident"]["resolved_at"], Value::Null);
        assert_eq!(v["sent_at"], "2023-11-14T22:14:20Z");
    }

    #[test]
    fn slack_document() {
        let mut i = incident();
        let v = slack_payload(Event::Firing, &i);
        let text = v["text"].as_str().expect("text");
        assert!(text.contains("[FIRING] critical rpo_breach"), "{text}");
        i.resolve_summary = "back within the RPO".into();
        let v = slack_payload(Event::Resolved, &i);
        assert!(v["text"].as_str().expect("text").contains("RESOLVED"));
        assert_eq!(v["attachments"][0]["color"], "#2eb67d");
    }

    #[test]
    fn scrub_removes_url_and_path() {
        let url = "https://hooks.example.com/services/T0/B0/secret-token";
        let s = scrub(&format!("error sending request for url ({url})"), url);
        assert!(!s.contains("secret-token"), "{s}");
        let s = scrub("GET /services/T0/B0/secret-token failed", url);
        assert!(!s.contains("secret-token"), "{s}");
    }
}
