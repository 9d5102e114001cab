//! The `kind = "s3"` repository section of the agent config, validated into [`S3Config`].

use std::{net::IpAddr, path::Path, time::Duration};

use lifeboat_common::{
    config::{check_no_parent, resolve},
    secret::check_private_file,
};
use serde::Deserialize;

use super::s3::{MAX_PART_SIZE, MIN_PART_SIZE, S3Config, S3Credentials, Sse};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileS3 {
    bucket: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    path_style: bool,
    #[serde(default)]
    storage_class: Option<String>,
    #[serde(default)]
    sse: Option<String>,
    #[serde(default)]
    sse_kms_key_id: Option<String>,
    #[serde(default)]
    credentials: Option<String>,
    #[serde(default)]
    access_key_id_file: Option<std::path::PathBuf>,
    #[serde(default)]
    secret_access_key_file: Option<std::path::PathBuf>,
    #[serde(default)]
    session_token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    part_size_mib: Option<u64>,
    #[serde(default)]
    parts_in_flight: Option<usize>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    request_timeout: Option<String>,
    #[serde(default)]
    stale_upload_age: Option<String>,
    #[serde(default)]
    janitor_interval: Option<String>,
}

type Invalid = (String, String);

fn bad(key: &str, msg: impl Into<String>) -> Invalid {
    (key.to_owned(), msg.into())
}

fn duration(
    key: &str,
    v: Option<&str>,
    default: Duration,
    min: Duration,
) -> Result<Duration, Invalid> {
    let Some(v) = v else { return Ok(default) };
    let d = humantime::parse_duration(v).map_err(|x| {
        bad(
            key,
            format!("{v:?} is not a duration ({x}); write e.g. \"30s\", \"10m\", \"24h\""),
        )
    })?;
    if d < min {
        return Err(bad(
            key,
            format!(
                "{v:?} is too short; use at least {}",
                humantime::format_duration(min)
            ),
        ));
    }
    Ok(d)
}

/// Bucket names as S3 accepts them (3–63 characters of lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl FileS3 {
    /// Validates against the config file at `file` (relative paths resolve from there).
    /// Errors are `(key, message)`.
    pub fn validate(self, file: &Path) -> Result<S3Config, Invalid> {
        if !valid_bucket(&self.bucket) {
            return Err(bad(
                "bucket",
                format!(
                    "{:?} is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)",
                    self.bucket
                ),
            ));
        }
        let prefix = match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => {
                if super::check_key(p).is_err() {
                    return Err(bad(
                        "prefix",
                        format!(
                            "{p:?} is not a plain path (segments of names, no '.', '..' or empty parts)"
                        ),
                    ));
                }
                format!("{p}/")
            }
        };
        let region = self.region.unwrap_or_else(|| "us-east-1".into());
        if region.is_empty()
            || !region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(bad("region", format!("{region:?} is not a region name")));
        }
        let endpoint = match self.endpoint {
            None => None,
            Some(e) => {
                let u = url::Url::parse(&e).map_err(|x| {
                    bad(
                        "endpoint",
                        format!("not a URL ({x}); write e.g. \"https://s3.example.com\""),
                    )
                })?;
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(bad(
                        "endpoint",
                        "must not contain credentials; use the credential settings of the repository",
                    ));
                }
                match u.scheme() {
                    "https" => {}
                    "http" if u.host_str().is_some_and(is_loopback) => {}
                    "http" => {
                        return Err(bad(
                            "endpoint",
                            "plain http would send backups and signed requests across the network unencrypted; use https:// (plain http is accepted for loopback addresses only)",
                        ));
                    }
                    other => {
                        return Err(bad(
                            "endpoint",
                            format!("unsupported scheme {other:?}; use https://"),
                        ));
                    }
                }
                if u.path() != "/" || u.query().is_some() {
                    return Err(bad(
                        "endpoint",
                        "must be the server's base URL without a path; put the bucket in bucket and any path in prefix",
                    ));
                }
                Some(e.trim_end_matches('/').to_owned())
            }
        };
        let storage_class = match self.storage_class.as_deref() {
            None => None,
            Some(
                c @ ("STANDARD"
                | "STANDARD_IA"
                | "ONEZONE_IA"
                | "INTELLIGENT_TIERING"
                | "GLACIER_IR"
                | "REDUCED_REDUNDANCY"),
            ) => Some(c.to_owned()),
            Some(c @ ("GLACIER" | "DEEP_ARCHIVE")) => {
                return Err(bad(
                    "storage_class",
                    format!(
                        "{c} objects cannot be read without a restore request that takes hours, so backups could not be verified or restored on demand; use GLACIER_IR or STANDARD_IA, and a bucket lifecycle rule for long-term archives"
                    ),
                ));
            }
            Some(other) => {
                return Err(bad(
                    "storage_class",
                    format!(
                        "unknown storage class {other:?}; use STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR or REDUCED_REDUNDANCY"
                    ),
                ));
            }
        };
        let sse = match (self.sse.as_deref(), self.sse_kms_key_id) {
            (None, None) => None,
            (Some("AES256"), None) => Some(Sse::Aes256),
            (Some("aws:kms"), key_id) => Some(Sse::Kms { key_id }),
            (Some("AES256") | None, Some(_)) => {
                return Err(bad("sse_kms_key_id", "applies only with sse = \"aws:kms\""));
            }
            (Some(other), _) => {
                return Err(bad(
                    "sse",
                    format!("unknown value {other:?}; use \"AES256\" or \"aws:kms\""),
                ));
            }
        };
        let file_keys = [
            ("access_key_id_file", &self.access_key_id_file),
            ("secret_access_key_file", &self.secret_access_key_file),
            ("session_token_file", &self.session_token_file),
        ];
        let any_file = file_keys.iter().any(|(_, v)| v.is_some());
        let source = self
            .credentials
            .as_deref()
            .unwrap_or(if any_file { "files" } else { "" });
        let credentials = match source {
            "files" => {
                let mut paths = Vec::new();
                for (k, v) in file_keys {
                    let p = match v {
                        Some(p) => {
                            check_no_parent(file, k, p).map_err(|x| bad(k, x.message))?;
                            let p = resolve(file, p);
                            if k == "access_key_id_file" {
                                if !p.is_file() {
                                    return Err(bad(
                                        k,
                                        format!("{} does not exist or is not a file", p.display()),
                                    ));
                                }
                            } else {
                                check_private_file(&p).map_err(|x| bad(k, format!("{x:#}")))?;
                            }
                            Some(p)
                        }
                        None => None,
                    };
                    paths.push(p);
                }
                let mut it = paths.into_iter();
                let (Some(id), Some(secret), token) = (
                    it.next().flatten(),
                    it.next().flatten(),
                    it.next().flatten(),
                ) else {
                    return Err(bad(
                        "secret_access_key_file",
                        "credentials from files need both access_key_id_file and secret_access_key_file (chmod 600)",
                    ));
                };
                S3Credentials::Files {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: token,
                }
            }
            "env" | "chain" if any_file => {
                return Err(bad(
                    "credentials",
                    format!(
                        "credentials = {source:?} does not use the *_file settings; remove them or use \"files\""
                    ),
                ));
            }
            "env" => S3Credentials::Env,
            "chain" => S3Credentials::Chain,
            "" => {
                return Err(bad(
                    "credentials",
                    "say where the credentials come from: access_key_id_file + secret_access_key_file (chmod 600), credentials = \"env\" (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or credentials = \"chain\" (profile, web identity, instance metadata)",
                ));
            }
            other => {
                return Err(bad(
                    "credentials",
                    format!("unknown value {other:?}; use \"files\", \"env\" or \"chain\""),
                ));
            }
        };
        let ca_file = match self.ca_file {
            Some(p) => {
                check_no_parent(file, "ca_file", &p).map_err(|x| bad("ca_file", x.message))?;
                let p = resolve(file, &p);
                if !p.is_file() {
                    return Err(bad(
                        "ca_file",
                        format!("{} does not exist or is not a file", p.display()),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let part_size = self.part_size_mib.unwrap_or(16) * MIB;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(bad(
                "part_size_mib",
                format!(
                    "{} is out of range; use {} to {}",
                    part_size / MIB,
                    MIN_PART_SIZE / MIB,
                    MAX_PART_SIZE / MIB
                ),
            ));
        }
        let parts_in_flight = self.parts_in_flight.unwrap_or(4);
        if !(1..=64).contains(&parts_in_flight) {
            return Err(bad(
                "parts_in_flight",
                format!("{parts_in_flight} is out of range; use 1 to 64"),
            ));
        }
        let max_attempts = self.max_attempts.unwrap_or(8);
        if !(1..=20).contains(&max_attempts) {
            return Err(bad(
                "max_attempts",
                format!("{max_attempts} is out of range; use 1 to 20"),
            ));
        }
        Ok(S3Config {
            bucket: self.bucket,
            prefix,
            region,
            endpoint,
            path_style: self.path_style,
            storage_class,
            sse,
            credentials,
            ca_file,
            part_size,
            parts_in_flight,
            max_attempts,
            request_timeout: duration(
                "request_timeout",
                self.request_timeout.as_deref(),
                Duration::from_secs(300),
                Duration::from_secs(1),
            )?,
            stale_upload_age: duration(
                "stale_upload_age",
                self.stale_upload_age.as_deref(),
                Duration::from_secs(24 * 3600),
                Duration::from_secs(1),
            )?,
            janitor_interval: duration(
                "janitor_interval",
                self.janitor_interval.as_deref(),
                Duration::from_secs(3600),
                Duration::from_secs(1),
            )?,
        })
    }
}
