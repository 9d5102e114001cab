//! S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Ceph RGW, GCS
//! interoperability) through aws-sdk-s3 on rustls/ring.
//!
//! - **Upload**: streaming multipart. Parts of `part_size` (grown from the expected size so
//!   an object never needs more than 10,000 parts, and doubled every 400 parts past part 5,000
//!   if the estimate was wrong), at most `parts_in_flight` at once: memory stays near
//!   `part_size × (parts_in_flight + 1)` whatever the dump size. Each part carries its MD5
//!   (`Content-MD5`, checked by the server) and the ETag the server returns is compared with
//!   it; part payloads are not signed (that would hash every byte a second time). Objects
//!   smaller than one part go up in one `PutObject`.
//! - **Create-only** (S12): a HEAD before starting and `If-None-Match: *` on the request that
//!   makes the object visible. A server that answers that condition with 501 Not Implemented
//!   gets the request again without it (and no more conditions): the HEAD is then the only
//!   guard, which a writer racing for the same key could slip past.
//! - **Post-upload check** (S6): a HEAD after completion compares the size, and the multipart
//!   ETag (MD5 of the part MD5s) where the server gives one in that form.
//! - **Failures**: the SDK's standard retry (exponential backoff with jitter, on 5xx,
//!   SlowDown, timeouts and connection resets), bounded by `max_attempts` (S7). On any failure
//!   or cancel the multipart upload is aborted, retried, and a missing upload counts as
//!   aborted (S1). Errors are translated: clock skew (S8), rejected credentials, missing bucket.
//! - **Reads**: a streaming GET; a connection dropped mid-body is resumed with a ranged GET
//!   from the last byte received, pinned to the object's ETag so a changed object is never
//!   spliced.

use std::{
    collections::BTreeSet,
    fmt,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future},
};
use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
        retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass},
};
use backon::{ExponentialBuilder, Retryable as _};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Body, ObjectInfo, ReadStream, Storage, StorageError, StorageResult, check_key};

const MIB: u64 = 1024 * 1024;
/// S3's limits: parts per upload, bytes per part.
pub const MAX_PARTS: u32 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// Smallest part size S3 accepts (for every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Parts past this number double in size every [`GROWTH_STEP`] parts.
const GROWTH_START: u32 = 5_000;
const GROWTH_STEP: u32 = 400;
/// How often a dropped download is resumed before the read fails.
const READ_RESUMES: usize = 5;

/// Where the repository's credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum S3Credentials {
    /// Files (the secret ones mode 0600), re-read every few minutes so rotation needs no
    /// restart.
    Files {
        access_key_id: PathBuf,
        secret_access_key: PathBuf,
        session_token: Option<PathBuf>,
    },
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` of the agent.
    Env,
    /// The standard AWS chain: environment, profile, web identity, ECS, instance metadata.
    Chain,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Files { .. } => f.write_str("Files"),
            S3Credentials::Env => f.write_str("Env"),
            S3Credentials::Chain => f.write_str("Chain"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

/// A validated `kind = "s3"` repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Empty, or ending with `/`.
    pub prefix: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub storage_class: Option<String>,
    pub sse: Option<Sse>,
    pub credentials: S3Credentials,
    /// PEM file with extra CA certificates to trust for the endpoint.
    pub ca_file: Option<PathBuf>,
    pub part_size: u64,
    pub parts_in_flight: usize,
    pub max_attempts: u32,
    pub request_timeout: Duration,
    pub stale_upload_age: Duration,
    pub janitor_interval: Duration,
}

#[derive(Clone)]
pub struct S3Repository {
    name: String,
    client: Client,
    cfg: Arc<S3Config>,
    journal: Option<Arc<Journal>>,
    /// Whether the server takes `If-None-Match: *` on writes. Cleared the first time it
    /// answers one with 501 Not Implemented (older MinIO, Ceph RGW and other servers); from
    /// then on only the HEAD before each upload keeps writes create-only.
    conditional_writes: Arc<AtomicBool>,
}

mod credentials;
mod errors;
mod janitor;
mod journal;
mod read;
#[cfg(test)]
mod tests;
mod upload;

use credentials::{ChainCredentials, FileCredentials};
use errors::http_status;
use journal::Journal;
use read::ResumingRead;
use upload::{initial_part_size, is_kms, read_part};

impl fmt::Debug for S3Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Repository")
            .field("name", &self.name)
            .field("bucket", &self.cfg.bucket)
            .field("prefix", &self.cfg.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Repository {
    /// Builds the client; no network I/O happens until the first request.
    pub fn new(name: &str, cfg: &S3Config) -> anyhow::Result<Self> {
        use aws_smithy_http_client::tls;
        let mut trust = tls::TrustStore::default();
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
            trust = trust.with_pem_certificate(pem);
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(
                tls::TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .context("set up TLS for the S3 endpoint")?,
            )
            .build_https();
        let region = Region::new(cfg.region.clone());
        let credentials = match &cfg.credentials {
            S3Credentials::Files {
                access_key_id,
                secret_access_key,
                session_token,
            } => SharedCredentialsProvider::new(FileCredentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: session_token.clone(),
            }),
            S3Credentials::Env => SharedCredentialsProvider::new(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            ),
            S3Credentials::Chain => SharedCredentialsProvider::new(ChainCredentials {
                region: region.clone(),
                http: http.clone(),
                chain: tokio::sync::OnceCell::new(),
            }),
        };
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .http_client(http)
            .force_path_style(cfg.path_style)
            // Older S3-compatible servers refuse the SDK's default aws-chunked CRC uploads;
            // every part carries Content-MD5 instead.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(cfg.request_timeout)
                    .build(),
            );
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(Self {
            name: name.to_owned(),
            client: Client::from_conf(b.build()),
            cfg: Arc::new(cfg.clone()),
            journal: None,
            conditional_writes: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Keeps a journal of open multipart uploads in `dir` (see the janitor).
    pub fn with_journal(mut self, dir: PathBuf) -> Self {
        self.journal = Some(Arc::new(Journal { dir }));
        self
    }

    fn full(&self, key: &str) -> anyhow::Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.cfg.prefix))
    }

    /// Whether the server's ETags are MD5s of the data (so they prove what it stored). With
    /// SSE-KMS they are not, though they have the same form; Content-MD5 still makes the
    /// server check every part on receipt.
    fn etags_are_md5(&self) -> bool {
        !matches!(self.cfg.sse, Some(Sse::Kms { .. }))
    }

    fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        full.strip_prefix(self.cfg.prefix.as_str())
    }

    fn loc(&self, full: &str) -> String {
        format!("s3://{}/{full}", self.cfg.bucket)
    }

    async fn head_full(&self, full: &str) -> StorageResult<Option<Head>> {
        match self
            .client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(full)
            .send()
            .await
        {
            Ok(h) => Ok(Some(Head {
                size: u64::try_from(h.content_length().unwrap_or(0)).unwrap_or(0),
                kms: is_kms(h.server_side_encryption()),
                etag: h.e_tag().map(str::to_owned),
                modified_ms: h
                    .last_modified()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(0),
            })),
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("HEAD", full, &e)),
        }
    }

    async fn list_full(&self, full_prefix: &str) -> StorageResult<Vec<aws_sdk_s3::types::Object>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.cfg.bucket)
            .prefix(full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", full_prefix, &e))?;
            out.extend(page.contents().iter().cloned());
        }
        Ok(out)
    }
}

#[async_trait]
impl Storage for S3Repository {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.cfg.bucket, self.cfg.prefix)
    }

    async fn put(
        &self,
        key: &str,
        mut body: Body,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        let full = self.full(key)?;
        if self.head_full(&full).await?.is_some() {
            return Err(self.exists(&full));
        }
        let base = initial_part_size(self.cfg.part_size, size_hint);
        let (first, ended) = read_part(&mut body, base, cancel, None).await?;
        let head = if ended {
            self.put_single(&full, first, cancel).await?
        } else {
            self.put_multipart(&full, first, body, base, cancel).await?
        };
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: head.size,
            modified_ms: head.modified_ms,
        })
    }

    async fn replace_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        _cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        let full = self.full(key)?;
        let head = self.put_replacing(&full, bytes).await?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: head.size,
            modified_ms: head.modified_ms,
        })
    }

    async fn get(&self, key: &str, offset: u64) -> StorageResult<Option<ReadStream>> {
        let full = self.full(key)?;
        let Some(first) = self.get_from(&full, offset, None).await? else {
            return Ok(None);
        };
        let reader = ResumingRead {
            repo: self.clone(),
            full,
            etag: first.etag,
            pos: offset,
            end: offset + first.len,
            body: Some(first.body),
            resumes: 0,
            resumed_at: offset,
        };
        Ok(Some(
            futures::stream::unfold(reader, |mut r| async move {
                r.next_chunk().await.map(|item| (item, r))
            })
            .boxed(),
        ))
    }

    async fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        let full = self.full(key)?;
        Ok(self.head_full(&full).await?.map(|h| ObjectInfo {
            key: key.to_owned(),
            size: h.size,
            modified_ms: h.modified_ms,
        }))
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectInfo>> {
        let full = if prefix.is_empty() {
            self.cfg.prefix.clone()
        } else {
            format!("{}/", self.full(prefix)?)
        };
        let mut out: Vec<ObjectInfo> = self
            .list_full(&full)
            .await?
            .into_iter()
            .filter_map(|o| {
                let key = self.relative(o.key()?)?.to_owned();
                Some(ObjectInfo {
                    key,
                    size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                    modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let full = self.full(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if http_status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.error("DELETE", &full, &e)),
        }
    }

    async fn janitor(
        &self,
        prefix: &str,
        older_than: Duration,
        busy: &BTreeSet<String>,
    ) -> StorageResult<u64> {
        let full = format!("{}/", self.full(prefix)?);
        let cutoff_ms = SystemTime::now()
            .checked_sub(older_than)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut removed = self.abort_stale_uploads(&full, cutoff_ms, busy).await?;
        // Data objects whose backup never got a manifest (the agent died between the two).
        let objects = self.list(prefix).await?;
        let with_manifest: std::collections::BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| o.key.strip_suffix(&format!("/{}", super::MANIFEST_FILE)))
            .collect();
        for o in &objects {
            let Some((dir, file)) = o.key.rsplit_once('/') else {
                continue;
            };
            if super::is_backup_object(file)
                && !with_manifest.contains(dir)
                && !busy.contains(dir)
                && o.modified_ms > 0
                && o.modified_ms < cutoff_ms
            {
                self.delete(&o.key).await?;
                tracing::info!(object = %o.key, "removed an object of a backup that never completed");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[derive(Debug, Default, Clone)]
struct Head {
    size: u64,
    etag: Option<String>,
    modified_ms: i64,
    /// The object is encrypted with KMS (its ETag is then not an MD5 of the data).
    kms: bool,
}

struct Expected {
    size: u64,
    /// Hex MD5 (single PUT) or `hex-N` (multipart).
    etag: Option<String>,
}
