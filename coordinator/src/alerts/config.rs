//! `[alerts]` in the coordinator config: thresholds and webhooks. Webhook URLs are secrets
//! (Slack's carry a token): they never appear in logs, errors or `Debug`, and may be read
//! from a file (mode 0600) instead of the config.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use lifeboat_common::{config::ConfigError, names::validate_simple, secret::Secret};
use serde::Deserialize;
use toml::Spanned;

use super::model::IncidentKind;
use crate::objectives::Located;

pub const DEFAULT_EVALUATE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_AGENT_OFFLINE_AFTER: Duration = Duration::from_secs(600);
pub const DEFAULT_SIZE_CHANGE_PERCENT: u32 = 50;
/// A target that has a drill schedule or had a drill, without a drill that passed for this
/// long, is an incident: a weekly drill with a day of slack.
pub const DEFAULT_DRILL_MAX_AGE: Duration = Duration::from_secs(8 * 24 * 3600);
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Fewest earlier backups the size check needs before it judges a new one.
pub const SIZE_MIN_HISTORY: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// lifeboat's own JSON document (see docs/monitoring.md).
    Generic,
    /// A Slack incoming webhook (`{"text": …, "attachments": […]}`); Mattermost and
    /// Rocket.Chat accept the same.
    Slack,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// Where a webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    Inline(Secret<String>),
    /// Read at every delivery, so a rotated URL needs no restart. Must be mode 0600.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub name: String,
    pub format: WebhookFormat,
    pub url: WebhookUrl,
    /// Incident kinds sent to this webhook; empty: all.
    pub kinds: BTreeSet<IncidentKind>,
    /// Whether "resolved" notifications are sent.
    pub send_resolved: bool,
    pub timeout: Duration,
}

impl WebhookConfig {
    pub fn wants(&self, kind: IncidentKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// How often conditions are evaluated (also after every finished job).
    pub evaluate_interval: Duration,
    /// An agent without a session this long is an incident.
    pub agent_offline_after: Duration,
    /// A backup whose stored size differs from the median of the previous seven by more than
    /// this percentage (either way) is an incident.
    pub size_change_percent: u32,
    /// A target with a drill schedule or an earlier drill, without a drill that passed for
    /// this long, is an incident.
    pub drill_max_age: Duration,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            evaluate_interval: DEFAULT_EVALUATE_INTERVAL,
            agent_offline_after: DEFAULT_AGENT_OFFLINE_AFTER,
            size_change_percent: DEFAULT_SIZE_CHANGE_PERCENT,
            drill_max_age: DEFAULT_DRILL_MAX_AGE,
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAlerts {
    evaluate_interval: Option<Spanned<String>>,
    agent_offline_after: Option<Spanned<String>>,
    size_change_percent: Option<Spanned<i64>>,
    drill_max_age: Option<Spanned<String>>,
    #[serde(default)]
    webhook: Vec<FileWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    name: Spanned<String>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    kinds: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    send_resolved: Option<bool>,
    timeout: Option<Spanned<String>>,
}

// Deliberately not derived: `url` is a secret.
impl std::fmt::Debug for FileWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWebhook")
            .field("name", self.name.get_ref())
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL without ever echoing it.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url
        .trim()
        .parse()
        .map_err(|_| "is not a valid URL".to_owned())?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err("names no host".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_private_host(host) => Ok(()),
        Some("http") => Err(
            "must use https://; plain http:// is accepted only to loopback or a private address \
             (127.0.0.0/8, ::1, 10/8, 172.16/12, 192.168/16, fc00::/7) given as an IP address"
                .into(),
        ),
        _ => Err("must start with https://".into()),
    }
}

/// Whether a URL host is a loopback or private IP address (or `localhost`), where a plain
/// http:// receiver cannot be reached through the internet.
fn is_private_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

impl FileAlerts {
    pub(crate) fn validate(self, at: &Located<'_>) -> Result<AlertsConfig, ConfigError> {
        let mut out = AlertsConfig::default();
        if let Some(d) =
            at.opt_duration("alerts.evaluate_interval", self.evaluate_interval.as_ref())?
        {
            out.evaluate_interval = d;
        }
        if let Some(d) = at.opt_duration(
            "alerts.agent_offline_after",
            self.agent_offline_after.as_ref(),
        )? {
            out.agent_offline_after = d;
        }
        if let Some(d) = at.opt_duration("alerts.drill_max_age", self.drill_max_age.as_ref())? {
            out.drill_max_age = d;
        }
        if let Some(p) = &self.size_change_percent {
            let v = *p.get_ref();
            if !(1..=10_000).contains(&v) {
                return Err(at.err(
                    "alerts.size_change_percent",
                    p,
                    format!("{v} is out of range; use 1 to 10000 (percent)"),
                ));
            }
            out.size_change_percent = u32::try_from(v).unwrap_or(DEFAULT_SIZE_CHANGE_PERCENT);
        }
        let mut names = HashSet::new();
        for (i, w) in self.webhook.into_iter().enumerate() {
            let key = |k: &str| format!("alerts.webhook[{i}].{k}");
            validate_simple("webhook name", w.name.get_ref())
                .map_err(|e| at.err(&key("name"), &w.name, e.to_string()))?;
            if !names.insert(w.name.get_ref().clone()) {
                return Err(at.err(
                    &key("name"),
                    &w.name,
                    format!(
                        "webhook {:?} is defined twice; names must be unique",
                        w.name.get_ref()
                    ),
                ));
            }
            let format = match w.format.as_ref().map(|f| f.get_ref().as_str()) {
                None | Some("generic") => WebhookFormat::Generic,
                Some("slack") => WebhookFormat::Slack,
                Some(other) => {
                    let span = w.format.as_ref().unwrap_or(&w.name);
                    return Err(at.err(
                        &key("format"),
                        span,
                        format!("unknown format {other:?}; use \"generic\" or \"slack\""),
                    ));
                }
            };
            let url = match (&w.url, &w.url_file) {
                (Some(u), None) => {
                    check_url(u.get_ref()).map_err(|why| {
                        at.err(
                            &key("url"),
                            u,
                            format!("{why} (the URL is not shown: it may hold a secret)"),
                        )
                    })?;
                    WebhookUrl::Inline(Secret::new(u.get_ref().trim().to_owned()))
                }
                (None, Some(p)) => WebhookUrl::File(at.path(&key("url_file"), p)?),
                (Some(u), Some(_)) => {
                    return Err(at.err(&key("url"), u, "set url or url_file, not both".into()));
                }
                (None, None) => {
                    return Err(at.err(
                        &key("name"),
                        &w.name,
                        "needs url_file = \"/path/to/file\" (mode 0600, holding the URL) or url"
                            .into(),
                    ));
                }
            };
            let mut kinds = BTreeSet::new();
            if let Some(list) = &w.kinds {
                for k in list.get_ref() {
                    let kind = IncidentKind::parse(k).ok_or_else(|| {
                        at.err(
                            &key("kinds"),
                            list,
                            format!(
                                "unknown incident kind {k:?}; use any of {}",
                                IncidentKind::ALL
                                    .iter()
                                    .map(|k| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                    kinds.insert(kind);
                }
            }
            out.webhooks.push(WebhookConfig {
                name: w.name.get_ref().clone(),
                format,
                url,
                kinds,
                send_resolved: w.send_resolved.unwrap_or(true),
                timeout: at
                    .opt_duration(&key("timeout"), w.timeout.as_ref())?
                    .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
            });
        }
        Ok(out)
    }
}

impl AlertsConfig {
    /// Checks that URL files exist, are private and hold a usable URL (not shown).
    pub fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        for (i, w) in self.webhooks.iter().enumerate() {
            let WebhookUrl::File(path) = &w.url else {
                continue;
            };
            let key = format!("alerts.webhook[{i}].url_file");
            let url = lifeboat_common::secret::read_secret_file(path)
                .map_err(|e| ConfigError::new(file, &key, format!("{e:#}")))?;
            check_url(url.expose()).map_err(|why| {
                ConfigError::new(
                    file,
                    &key,
                    format!(
                        "{} {why}; it must hold one https:// URL (not shown: it may hold a secret)",
                        path.display()
                    ),
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, String> {
        #[derive(Deserialize)]
        struct W {
            #[serde(default)]
            alerts: FileAlerts,
        }
        let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
        let at = Located {
            file: Path::new("/etc/lifeboat/c.toml"),
            text,
        };
        w.alerts.validate(&at).map_err(|e| e.to_string())
    }

    #[test]
    fn webhooks_parse() {
        let c = parse(
            "[alerts]\nagent_offline_after = \"15m\"\nsize_change_percent = 30\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl_file = \"ops.url\"\n\
             [[alerts.webhook]]\nname = \"chat\"\nformat = \"slack\"\n\
             url = \"https://hooks.example/T0/B0/secret-token\"\nkinds = [\"rpo_breach\"]\n",
        )
        .expect("valid");
        assert_eq!(c.agent_offline_after, Duration::from_secs(900));
        assert_eq!(c.size_change_percent, 30);
        assert_eq!(
            c.webhooks[0].url,
            WebhookUrl::File("/etc/lifeboat/ops.url".into())
        );
        assert!(c.webhooks[0].wants(IncidentKind::AgentOffline));
        assert_eq!(c.webhooks[1].format, WebhookFormat::Slack);
        assert!(!c.webhooks[1].wants(IncidentKind::BackupFailed));
        assert!(
            !format!("{c:?}").contains("secret-token"),
            "the URL leaks through Debug"
        );
    }

    #[test]
    fn plain_http_only_to_private_addresses() {
        for ok in [
            "https://hooks.slack.com/services/x",
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.5:8080/",
            "http://[::1]:9000/",
            "http://[fd00::5]/",
            "http://localhost:9000/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/secret",
            "http://8.8.8.8/hook",
            "http://[2001:db8::1]/",
            "ftp://10.0.0.1/",
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(e.contains("https://"), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn bad_webhooks_refused_without_echoing_the_url() {
        let e = parse("[[alerts.webhook]]\nname = \"x\"\nurl = \"ftp://h/secret-token\"\n")
            .expect_err("accepted");
        assert!(e.contains("alerts.webhook[0].url (line 3)"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
        let e = parse("[[alerts.webhook]]\nname = \"x\"\n").expect_err("accepted");
        assert!(e.contains("url_file"), "{e}");
        let e =
            parse("[[alerts.webhook]]\nname = \"x\"\nurl = \"https://h/\"\nkinds = [\"fire\"]\n")
                .expect_err("accepted");
        assert!(
            e.contains("unknown incident kind") && e.contains("rpo_breach"),
            "{e}"
        );
        let e = parse(
            "[[alerts.webhook]]\nname = \"x\"\nurl = \"https://h/\"\n\
             [[alerts.webhook]]\nname = \"x\"\nurl = \"https://h/\"\n",
        )
        .expect_err("accepted");
        assert!(e.contains("defined twice"), "{e}");
        let e = parse("[alerts]\nevaluate_interval = \"often\"\n").expect_err("accepted");
        assert!(e.contains("alerts.evaluate_interval (line 2)"), "{e}");
    }

    #[test]
    fn url_file_must_be_private_and_valid() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("hook.url");
        std::fs::write(&f, "https://hooks.example/secret-token\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = AlertsConfig {
            webhooks: vec![WebhookConfig {
                name: "ops".into(),
                format: WebhookFormat::Generic,
                url: WebhookUrl::File(f.clone()),
                kinds: BTreeSet::new(),
                send_resolved: true,
                timeout: DEFAULT_WEBHOOK_TIMEOUT,
            }],
            ..AlertsConfig::default()
        };
        let e = c
            .check_files(Path::new("c.toml"))
            .expect_err("readable file accepted");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        c.check_files(Path::new("c.toml")).expect("valid");
        std::fs::write(&f, "not a url secret-token").expect("write");
        let e = c
            .check_files(Path::new("c.toml"))
            .expect_err("garbage accepted");
        assert!(!e.to_string().contains("secret-token"), "{e}");
    }
}
