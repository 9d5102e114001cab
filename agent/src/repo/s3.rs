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
//!   makes the object visible.
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
    sync::Arc,
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
}

/// Multipart uploads this agent started and has not completed or aborted yet, one small file
/// each in the agent's state directory. After a crash the janitor aborts them from here, also
/// on servers that cannot list multipart uploads.
#[derive(Debug)]
struct Journal {
    dir: PathBuf,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JournalEntry {
    key: String,
    upload_id: String,
    started_ms: i64,
}

impl Journal {
    fn path(&self, upload_id: &str) -> PathBuf {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(upload_id.as_bytes());
        self.dir.join(format!("{}.json", &hex::encode(h)[..32]))
    }

    fn record(&self, key: &str, upload_id: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.dir)?;
        let entry = JournalEntry {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            started_ms: super::now_ms(),
        };
        let mut f = std::fs::File::create(self.path(upload_id))?;
        f.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
        f.sync_all()
    }

    fn forget(&self, upload_id: &str) {
        let _ = std::fs::remove_file(self.path(upload_id));
    }

    fn entries(&self) -> Vec<JournalEntry> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }
}

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

    /// Translates an SDK error into one that names the operation, the object and what to do.
    fn error<E, R>(&self, op: &str, full: &str, e: &SdkError<E, R>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: HttpStatus + fmt::Debug,
    {
        let loc = self.loc(full);
        let code = e.code().unwrap_or_default();
        let endpoint = self
            .cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", self.cfg.region));
        let what = match code {
            "RequestTimeTooSkewed" => format!(
                "{op} {loc}: the S3 server rejected the request because this machine's clock differs from the server's by more than 15 minutes (clock skew); fix the clock (for example enable NTP: timedatectl set-ntp true) and run the job again"
            ),
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired" => format!(
                "{op} {loc}: the S3 server rejected repository {:?}'s credentials ({code}); check the access key id and secret access key files (or the credential source) of this repository, and that the clock is right",
                self.name
            ),
            "AccessDenied" => format!(
                "{op} {loc}: access denied; the credentials of repository {:?} need s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket, s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on this bucket and prefix",
                self.name
            ),
            "NoSuchBucket" => format!(
                "{op} {loc}: bucket {:?} does not exist at {endpoint}; create it or fix `bucket`/`region`/`endpoint` of repository {:?}",
                self.cfg.bucket, self.name
            ),
            // HEAD answers carry no error document, only the status.
            "" if http_status(e) == Some(403) => format!(
                "{op} {loc}: the S3 server answered 403 Forbidden: repository {:?}'s credentials were rejected or lack permission; check the access key id and secret access key files (or the credential source), the bucket policy, and that this machine's clock is right",
                self.name
            ),
            _ => match e {
                SdkError::TimeoutError(_) => format!(
                    "{op} {loc}: timed out talking to {endpoint} (after {} attempts at most); check the network path to the endpoint",
                    self.cfg.max_attempts
                ),
                SdkError::DispatchFailure(_) => format!(
                    "{op} {loc}: cannot reach {endpoint}: {}; check `endpoint`, DNS and the network",
                    DisplayErrorContext(e)
                ),
                _ => format!("{op} {loc}: {}", DisplayErrorContext(e)),
            },
        };
        StorageError::Other(anyhow!(what))
    }

    /// Aborts a multipart upload, retried with backoff; an upload that is already gone counts
    /// as aborted (the call is idempotent).
    async fn abort(&self, full: &str, upload_id: &str) -> StorageResult<()> {
        let call = || async {
            match self
                .client
                .abort_multipart_upload()
                .bucket(&self.cfg.bucket)
                .key(full)
                .upload_id(upload_id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if http_status(&e) == Some(404) || e.code() == Some("NoSuchUpload") => {
                    Ok(())
                }
                Err(e) => Err(self.error("abort multipart upload of", full, &e)),
            }
        };
        call.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(5)
                .with_jitter(),
        )
        .await
    }

    async fn put_single(
        &self,
        full: &str,
        data: Bytes,
        cancel: &CancellationToken,
    ) -> StorageResult<Head> {
        let md5 = Md5::digest(&data);
        let size = data.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(full)
            .if_none_match("*")
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .content_md5(base64::engine::general_purpose::STANDARD.encode(md5))
            .body(ByteStream::from(data));
        if let Some(sc) = &self.cfg.storage_class {
            req = req.storage_class(StorageClass::from(sc.as_str()));
        }
        req = match &self.cfg.sse {
            None => req,
            Some(Sse::Aes256) => req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        let sent = tokio::select! {
            r = req.send() => r,
            () = cancel.cancelled() => return Err(StorageError::Cancelled),
        };
        match sent {
            Ok(_) => {}
            Err(e) if http_status(&e) == Some(412) => return Err(self.exists(full)),
            Err(e) => return Err(self.error("PUT", full, &e)),
        }
        let expect = Expected {
            size,
            etag: Some(hex::encode(md5)),
        };
        self.check_stored(full, &expect).await
    }

    fn exists(&self, full: &str) -> StorageError {
        StorageError::AlreadyExists(format!(
            "{} already exists; lifeboat never overwrites a stored object (is another agent writing to the same bucket and prefix?)",
            self.loc(full)
        ))
    }

    /// The post-upload check (S6): the object must be there with the size sent, and the ETag
    /// the server computed must match where its form allows a comparison. A mismatching
    /// object is deleted: it is not what lifeboat wrote.
    async fn check_stored(&self, full: &str, expect: &Expected) -> StorageResult<Head> {
        let head = self.head_full(full).await?;
        let problem = match &head {
            None => Some("the object is missing right after a successful upload".to_owned()),
            Some(h) if h.size != expect.size => Some(format!(
                "the server holds {} bytes but {} were sent",
                h.size, expect.size
            )),
            Some(h) => match (&expect.etag, h.etag.as_deref().map(clean_etag)) {
                (Some(want), Some(got))
                    if self.etags_are_md5() && etag_comparable(got, want) && got != want =>
                {
                    Some(format!(
                        "the server's ETag {got} does not match the uploaded data ({want})"
                    ))
                }
                _ => None,
            },
        };
        if let Some(p) = problem {
            if head.is_some() {
                let _ = self
                    .client
                    .delete_object()
                    .bucket(&self.cfg.bucket)
                    .key(full)
                    .send()
                    .await;
            }
            return Err(StorageError::Verification(format!(
                "upload of {} failed its post-upload check: {p}; the storage did not keep what was sent (the object was removed; check the storage service)",
                self.loc(full)
            )));
        }
        Ok(head.unwrap_or_default())
    }

    async fn put_multipart(
        &self,
        full: &str,
        first: Bytes,
        mut body: Body,
        base: u64,
        cancel: &CancellationToken,
    ) -> StorageResult<Head> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(full)
            .content_type("application/zstd");
        if let Some(sc) = &self.cfg.storage_class {
            req = req.storage_class(StorageClass::from(sc.as_str()));
        }
        req = match &self.cfg.sse {
            None => req,
            Some(Sse::Aes256) => req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        let created = tokio::select! {
            r = req.send() => r.map_err(|e| self.error("start multipart upload of", full, &e))?,
            () = cancel.cancelled() => return Err(StorageError::Cancelled),
        };
        let upload_id = created
            .upload_id()
            .context("the server started a multipart upload without an upload id")?
            .to_owned();
        if let Some(j) = &self.journal
            && let Err(e) = j.record(full, &upload_id)
        {
            tracing::warn!(
                object = %self.loc(full),
                "could not journal the multipart upload ({e}); after a crash only a server that lists multipart uploads lets the janitor find it"
            );
        }
        let result = self
            .upload_parts(full, &upload_id, first, &mut body, base, cancel)
            .await;
        let settled = match &result {
            Ok(_) => true,
            Err(_) => match self.abort(full, &upload_id).await {
                Ok(()) => true,
                Err(abort) => {
                    tracing::warn!(
                        object = %self.loc(full),
                        error = %abort,
                        "could not abort the multipart upload; the janitor will retry"
                    );
                    false
                }
            },
        };
        if settled && let Some(j) = &self.journal {
            j.forget(&upload_id);
        }
        result
    }

    async fn upload_parts(
        &self,
        full: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut Body,
        base: u64,
        cancel: &CancellationToken,
    ) -> StorageResult<Head> {
        let mut inflight: JoinSet<StorageResult<PartDone>> = JoinSet::new();
        let mut done: Vec<(CompletedPart, [u8; 16])> = Vec::new();
        // Buffers of parts already uploaded, filled again: a long upload allocates at most
        // `parts_in_flight + 1` part buffers instead of one per part.
        let mut pool: Vec<BytesMut> = Vec::new();
        let mut total = 0u64;
        let mut part_number: u32 = 1;
        let mut data = first;
        let mut last = false;
        loop {
            // At most `parts_in_flight` parts are uploading; the next one fills meanwhile.
            while inflight.len() >= self.cfg.parts_in_flight {
                let d = self.join_part(&mut inflight, cancel).await?;
                pool.extend(d.buf);
                done.push((d.part, d.md5));
            }
            total += data.len() as u64;
            let this = self.clone();
            let full_key = full.to_owned();
            let id = upload_id.to_owned();
            inflight
                .spawn(async move { this.upload_part(&full_key, &id, part_number, data).await });
            if last {
                break;
            }
            if part_number == MAX_PARTS {
                // Refuse rather than lose the tail: nothing may remain.
                let rest = read_part(body, 1, cancel, None).await?;
                if !rest.0.is_empty() {
                    return Err(StorageError::Other(anyhow!(
                        "{} needs more than {MAX_PARTS} parts; raise part_size_mib of repository {:?}",
                        self.loc(full),
                        self.name
                    )));
                }
                break;
            }
            part_number += 1;
            let (next, ended) =
                read_part(body, part_size_for(base, part_number), cancel, pool.pop()).await?;
            if next.is_empty() {
                break;
            }
            data = next;
            last = ended;
        }
        while !inflight.is_empty() {
            let d = self.join_part(&mut inflight, cancel).await?;
            done.push((d.part, d.md5));
        }
        drop(pool);
        done.sort_by_key(|(p, _)| p.part_number());
        let mut md5s = Md5::new();
        for (_, d) in &done {
            md5s.update(d);
        }
        let multipart_etag = format!("{}-{}", hex::encode(md5s.finalize()), done.len());
        let parts: Vec<CompletedPart> = done.into_iter().map(|(p, _)| p).collect();
        let part_count = parts.len();
        let completing = std::time::Instant::now();
        let complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(full)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send();
        let completed = tokio::select! {
            r = complete => r,
            () = cancel.cancelled() => return Err(StorageError::Cancelled),
        };
        match completed {
            Ok(_) => {}
            Err(e) if http_status(&e) == Some(412) => return Err(self.exists(full)),
            Err(e) => return Err(self.error("complete multipart upload of", full, &e)),
        }
        let head = self
            .check_stored(
                full,
                &Expected {
                    size: total,
                    etag: Some(multipart_etag),
                },
            )
            .await?;
        tracing::info!(
            object = %self.loc(full),
            parts = part_count,
            bytes = total,
            complete_ms = completing.elapsed().as_millis(),
            "multipart upload completed and checked"
        );
        Ok(head)
    }

    async fn join_part(
        &self,
        inflight: &mut JoinSet<StorageResult<PartDone>>,
        cancel: &CancellationToken,
    ) -> StorageResult<PartDone> {
        let joined = tokio::select! {
            j = inflight.join_next() => j,
            () = cancel.cancelled() => {
                inflight.abort_all();
                return Err(StorageError::Cancelled);
            }
        };
        match joined {
            Some(Ok(Ok(p))) => Ok(p),
            Some(Ok(Err(e))) => {
                inflight.abort_all();
                Err(e)
            }
            Some(Err(e)) => {
                inflight.abort_all();
                Err(StorageError::Other(anyhow!("part upload task failed: {e}")))
            }
            None => Err(StorageError::Other(anyhow!("no part upload in flight"))),
        }
    }

    async fn upload_part(
        &self,
        full: &str,
        upload_id: &str,
        part_number: u32,
        data: Bytes,
    ) -> StorageResult<PartDone> {
        let hashed = data.clone();
        let md5: [u8; 16] = tokio::task::spawn_blocking(move || Md5::digest(&hashed).into())
            .await
            .map_err(|e| anyhow!("hash task failed: {e}"))?;
        let len = data.len();
        let resp = self
            .client
            .upload_part()
            .bucket(&self.cfg.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(i32::try_from(part_number).unwrap_or(i32::MAX))
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .content_md5(base64::engine::general_purpose::STANDARD.encode(md5))
            .body(ByteStream::from(data.clone()))
            // The part's integrity is its Content-MD5 (checked by the server) and the ETag
            // comparison below; a SHA-256 of every part for the signature would be a second
            // pass over the data for the same guarantee.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.error(&format!("upload part {part_number} of"), full, &e))?;
        let etag = resp.e_tag().map(str::to_owned).ok_or_else(|| {
            StorageError::Other(anyhow!(
                "the server accepted part {part_number} of {} without an ETag",
                self.loc(full)
            ))
        })?;
        drop(resp);
        let want = hex::encode(md5);
        let got = clean_etag(&etag);
        if self.etags_are_md5() && etag_comparable(got, &want) && got != want {
            return Err(StorageError::Verification(format!(
                "part {part_number} of {}: the server's ETag {got} is not the MD5 of the {len} bytes sent ({want}); the storage did not keep what was sent",
                self.loc(full)
            )));
        }
        Ok(PartDone {
            part: CompletedPart::builder()
                .part_number(i32::try_from(part_number).unwrap_or(i32::MAX))
                .e_tag(etag)
                .build(),
            md5,
            // The request is done with the bytes: take the buffer back if nothing else holds it.
            buf: data.try_into_mut().ok(),
        })
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

    /// Whether an object key (full, with the repository prefix) lies in a backup directory
    /// this agent is writing now.
    fn is_busy(&self, full: &str, busy: &BTreeSet<String>) -> bool {
        self.relative(full)
            .and_then(super::dir_of)
            .is_some_and(|d| busy.contains(d))
    }

    /// Aborts multipart uploads under `full_prefix` started before `cutoff_ms`, except those
    /// of backups in `busy`.
    async fn abort_stale_uploads(
        &self,
        full_prefix: &str,
        cutoff_ms: i64,
        busy: &BTreeSet<String>,
    ) -> StorageResult<u64> {
        let mut aborted = 0;
        let mut done = BTreeSet::new();
        if let Some(j) = &self.journal {
            for e in j.entries() {
                if e.key.starts_with(full_prefix)
                    && e.started_ms < cutoff_ms
                    && !self.is_busy(&e.key, busy)
                {
                    self.abort(&e.key, &e.upload_id).await?;
                    j.forget(&e.upload_id);
                    tracing::info!(object = %self.loc(&e.key), upload_id = %e.upload_id, "aborted a multipart upload an earlier run left open");
                    done.insert(e.upload_id);
                    aborted += 1;
                }
            }
        }
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.cfg.bucket)
                .prefix(full_prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if e.code() == Some("NotImplemented") || http_status(&e) == Some(501) => {
                    tracing::debug!(
                        repository = %self.name,
                        "the server cannot list multipart uploads; the janitor relies on its journal"
                    );
                    break;
                }
                Err(e) => return Err(self.error("list multipart uploads under", full_prefix, &e)),
            };
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let started = u.initiated().and_then(|t| t.to_millis().ok());
                if started.is_some_and(|s| s < cutoff_ms)
                    && !done.contains(id)
                    && !self.is_busy(key, busy)
                {
                    self.abort(key, id).await?;
                    tracing::info!(object = %self.loc(key), upload_id = id, "aborted a stale multipart upload");
                    aborted += 1;
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(aborted)
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
            if file.starts_with("data.")
                && !with_manifest.contains(dir)
                && !busy.contains(dir)
                && o.modified_ms > 0
                && o.modified_ms < cutoff_ms
            {
                self.delete(&o.key).await?;
                tracing::info!(object = %o.key, "removed data of a backup that never completed");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A part the server accepted.
struct PartDone {
    part: CompletedPart,
    md5: [u8; 16],
    /// Its buffer, for the next part, if the request let go of it.
    buf: Option<BytesMut>,
}

#[derive(Debug, Default, Clone)]
struct Head {
    size: u64,
    etag: Option<String>,
    modified_ms: i64,
}

struct Expected {
    size: u64,
    /// Hex MD5 (single PUT) or `hex-N` (multipart).
    etag: Option<String>,
}

struct GetStart {
    body: ByteStream,
    etag: Option<String>,
    len: u64,
}

impl S3Repository {
    async fn get_from(
        &self,
        full: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> StorageResult<Option<GetStart>> {
        let mut req = self.client.get_object().bucket(&self.cfg.bucket).key(full);
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
        }
        if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(o) => Ok(Some(GetStart {
                etag: o.e_tag().map(str::to_owned),
                len: u64::try_from(o.content_length().unwrap_or(0)).unwrap_or(0),
                body: o.body,
            })),
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) if http_status(&e) == Some(412) => Err(StorageError::Other(anyhow!(
                "{} changed while it was being read; run the job again",
                self.loc(full)
            ))),
            Err(e) => Err(self.error("GET", full, &e)),
        }
    }
}

/// A download that resumes after a dropped connection with a ranged GET pinned to the ETag.
struct ResumingRead {
    repo: S3Repository,
    full: String,
    etag: Option<String>,
    pos: u64,
    end: u64,
    body: Option<ByteStream>,
    resumes: usize,
}

impl ResumingRead {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let body = self.body.as_mut()?;
            match body.next().await {
                Some(Ok(b)) => {
                    self.pos += b.len() as u64;
                    return Some(Ok(b));
                }
                None if self.pos >= self.end => {
                    self.body = None;
                    return None;
                }
                // The body ended early without an error: as good as a dropped connection.
                next => {
                    let e = match next {
                        Some(Err(e)) => e.to_string(),
                        _ => format!("the response ended at byte {}", self.pos),
                    };
                    self.body = None;
                    if self.pos >= self.end {
                        return None;
                    }
                    if self.resumes >= READ_RESUMES {
                        return Some(Err(std::io::Error::other(format!(
                            "read {} at byte {}: {e} (gave up after {} resumed reads)",
                            self.repo.loc(&self.full),
                            self.pos,
                            self.resumes
                        ))));
                    }
                    self.resumes += 1;
                    tracing::warn!(
                        object = %self.repo.loc(&self.full),
                        offset = self.pos,
                        error = %e,
                        "download interrupted; resuming with a ranged GET"
                    );
                    tokio::time::sleep(Duration::from_millis(200 << self.resumes.min(5))).await;
                    match self
                        .repo
                        .get_from(&self.full, self.pos, self.etag.as_deref())
                        .await
                    {
                        Ok(Some(g)) => self.body = Some(g.body),
                        Ok(None) => {
                            return Some(Err(std::io::Error::other(format!(
                                "{} disappeared while it was being read",
                                self.repo.loc(&self.full)
                            ))));
                        }
                        Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                    }
                }
            }
        }
    }
}

/// Reads up to `size` bytes of `body` into one buffer. Returns the bytes and whether the body
/// ended (finished) within them.
async fn read_part(
    body: &mut Body,
    size: u64,
    cancel: &CancellationToken,
    reuse: Option<BytesMut>,
) -> StorageResult<(Bytes, bool)> {
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let mut buf = reuse.unwrap_or_default();
    buf.clear();
    buf.reserve(cap);
    loop {
        let chunk = tokio::select! {
            c = body.next() => c?,
            () = cancel.cancelled() => return Err(StorageError::Cancelled),
        };
        let Some(mut chunk) = chunk else {
            return Ok((buf.freeze(), true));
        };
        let room = cap - buf.len();
        if chunk.len() > room {
            let rest = chunk.split_off(room);
            buf.extend_from_slice(&chunk);
            body.push_back(rest);
            return Ok((buf.freeze(), false));
        }
        buf.extend_from_slice(&chunk);
        if buf.len() == cap {
            // Full: the body may end right here; look ahead so a body that is an exact
            // multiple of the part size does not produce an empty last part.
            let next = tokio::select! {
                c = body.next() => c?,
                () = cancel.cancelled() => return Err(StorageError::Cancelled),
            };
            let ended = match next {
                None => true,
                Some(n) => {
                    body.push_back(n);
                    false
                }
            };
            return Ok((buf.freeze(), ended));
        }
    }
}

/// The first part size: the configured one, raised so that 1.5× the expected size fits in
/// 9,000 parts (rounded up to whole MiB).
pub fn initial_part_size(configured: u64, size_hint: Option<u64>) -> u64 {
    let needed = size_hint
        .map(|h| (h.saturating_mul(3) / 2).div_ceil(9_000).div_ceil(MIB) * MIB)
        .unwrap_or(0);
    configured
        .max(needed)
        .clamp(MIN_PART_SIZE.min(configured), MAX_PART_SIZE)
}

/// Size of part `n` (1-based): `base` up to part 5,000, then doubling every 400 parts, capped
/// at S3's 5 GiB. From the smallest base this still reaches S3's 5 TiB object limit within
/// 10,000 parts.
pub fn part_size_for(base: u64, n: u32) -> u64 {
    let doublings = n.saturating_sub(GROWTH_START + 1) / GROWTH_STEP + u32::from(n > GROWTH_START);
    base.saturating_mul(1u64 << doublings.min(20))
        .min(MAX_PART_SIZE)
}

fn clean_etag(e: &str) -> &str {
    e.trim().trim_start_matches("W/").trim_matches('"')
}

/// `Some(true)` for `hex-N` (multipart), `Some(false)` for plain MD5 hex, `None` otherwise.
fn etag_shape(s: &str) -> Option<bool> {
    let (h, n) = s.split_once('-').map_or((s, None), |(h, n)| (h, Some(n)));
    let hex_ok = h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let n_ok = n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (hex_ok && n_ok).then_some(n.is_some())
}

/// Whether the server's ETag has the form of `want` (plain MD5 hex, or `hex-N`) so the two
/// can be compared. Encrypted objects (SSE-KMS, SSE-C) and some servers use other forms.
fn etag_comparable(got: &str, want: &str) -> bool {
    etag_shape(got).is_some() && etag_shape(got) == etag_shape(want)
}

fn http_status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    e.raw_response().map(HttpStatus::status_code)
}

trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Static credentials from files, re-read when the SDK refreshes them (every five minutes)
/// so a rotated key takes effect without a restart. Never printed.
#[derive(Debug)]
struct FileCredentials {
    access_key_id: PathBuf,
    secret_access_key: PathBuf,
    session_token: Option<PathBuf>,
}

impl FileCredentials {
    fn load(&self) -> Result<Credentials, CredentialsError> {
        let read_plain = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    CredentialsError::provider_error(anyhow!(
                        "read the access key id from {}: {e}",
                        p.display()
                    ))
                })
        };
        let read_secret = |p: &PathBuf| {
            lifeboat_common::secret::read_secret_file(p)
                .map(|s| s.expose().trim().to_owned())
                .map_err(|e| CredentialsError::provider_error(anyhow!("{e:#}")))
        };
        let id = read_plain(&self.access_key_id)?;
        let secret = read_secret(&self.secret_access_key)?;
        let token = self.session_token.as_ref().map(read_secret).transpose()?;
        Ok(Credentials::new(
            id,
            secret,
            token,
            Some(SystemTime::now() + Duration::from_secs(300)),
            "lifeboat-files",
        ))
    }
}

impl ProvideCredentials for FileCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.load())
    }
}

/// The standard AWS credential chain, built on first use (it needs the runtime).
struct ChainCredentials {
    region: Region,
    http: aws_sdk_s3::config::SharedHttpClient,
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
}

impl fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainCredentials")
    }
}

impl ProvideCredentials for ChainCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .configure(
                            aws_config::provider_config::ProviderConfig::default()
                                .with_http_client(self.http.clone())
                                .with_region(Some(self.region.clone())),
                        )
                        .region(self.region.clone())
                        .build()
                        .await
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_reach_the_object_limit_within_10000_parts() {
        for base in [MIN_PART_SIZE, 16 * MIB] {
            let total: u64 = (1..=MAX_PARTS).map(|n| part_size_for(base, n)).sum();
            assert!(
                total >= 5 * 1024 * 1024 * MIB,
                "base {base}: {total} bytes in 10,000 parts"
            );
            assert_eq!(part_size_for(base, 1), base);
            assert_eq!(part_size_for(base, GROWTH_START), base);
            assert_eq!(part_size_for(base, GROWTH_START + 1), 2 * base);
            assert_eq!(part_size_for(base, GROWTH_START + GROWTH_STEP), 2 * base);
            assert_eq!(
                part_size_for(base, GROWTH_START + GROWTH_STEP + 1),
                4 * base
            );
            assert!(part_size_for(base, MAX_PARTS) <= MAX_PART_SIZE);
        }
    }

    #[test]
    fn initial_part_size_grows_with_the_expected_size() {
        assert_eq!(initial_part_size(16 * MIB, None), 16 * MIB);
        assert_eq!(initial_part_size(16 * MIB, Some(10 * 1024 * MIB)), 16 * MIB);
        // 1 TiB expected: 1.5 TiB over 9,000 parts.
        let p = initial_part_size(16 * MIB, Some(1024 * 1024 * MIB));
        assert!(p >= (1536 * 1024 * MIB) / 9_000, "{p}");
        assert_eq!(p % MIB, 0);
        assert!(p * 9_000 >= 1536 * 1024 * MIB);
        assert_eq!(
            initial_part_size(16 * MIB, Some(u64::MAX)),
            MAX_PART_SIZE,
            "capped at S3's part limit"
        );
    }

    /// A repository for message tests; no request is ever sent.
    fn offline_repo() -> S3Repository {
        S3Repository::new(
            "offsite",
            &S3Config {
                bucket: "backups".into(),
                prefix: "lifeboat/".into(),
                region: "eu-central-1".into(),
                endpoint: Some("https://s3.example.com".into()),
                path_style: true,
                storage_class: None,
                sse: None,
                credentials: S3Credentials::Env,
                ca_file: None,
                part_size: 16 * MIB,
                parts_in_flight: 4,
                max_attempts: 3,
                request_timeout: Duration::from_secs(30),
                stale_upload_age: Duration::from_secs(3600),
                janitor_interval: Duration::from_secs(3600),
            },
        )
        .expect("repository")
    }

    fn service_error(
        status: u16,
        code: &str,
    ) -> SdkError<
        aws_sdk_s3::operation::put_object::PutObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    > {
        use aws_sdk_s3::error::ErrorMetadata;
        let err = aws_sdk_s3::operation::put_object::PutObjectError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("from the server")
                .build(),
        );
        let raw = aws_sdk_s3::config::http::HttpResponse::new(
            status.try_into().expect("status"),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[tokio::test]
    async fn server_errors_become_guidance() {
        let repo = offline_repo();
        let msg = |status, code| {
            repo.error("PUT", "lifeboat/k", &service_error(status, code))
                .to_string()
        };
        // S8: the SDK corrects small skews itself; when the server still refuses, say so.
        let skew = msg(403, "RequestTimeTooSkewed");
        assert!(
            skew.contains("clock skew") && skew.contains("NTP"),
            "{skew}"
        );
        assert!(skew.contains("s3://backups/lifeboat/k"), "{skew}");
        let creds = msg(403, "SignatureDoesNotMatch");
        assert!(creds.contains("credentials"), "{creds}");
        let denied = msg(403, "AccessDenied");
        assert!(denied.contains("s3:PutObject"), "{denied}");
        let bucket = msg(404, "NoSuchBucket");
        assert!(
            bucket.contains("does not exist") && bucket.contains("https://s3.example.com"),
            "{bucket}"
        );
        let head = msg(403, "");
        assert!(
            head.contains("403 Forbidden") && head.contains("credentials"),
            "{head}"
        );
        let other = msg(500, "InternalError");
        assert!(other.contains("InternalError"), "{other}");
    }

    #[test]
    fn etags_are_compared_only_when_their_forms_match() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let multi = "9e107d9d372bb6826bd81d3542a419d6-3";
        assert!(etag_comparable(md5, md5));
        assert!(etag_comparable(multi, multi));
        assert!(!etag_comparable(multi, md5));
        assert!(!etag_comparable(md5, multi));
        // SSE-KMS and other servers: opaque ETags are not compared.
        assert!(!etag_comparable("abc123", md5));
        assert_eq!(clean_etag("\"9e107d9d372bb6826bd81d3542a419d6\""), md5);
    }
}
