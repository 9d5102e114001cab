//! Writing objects: one PUT or a streaming multipart upload, with the post-upload check.

use super::*;

impl S3Repository {
    /// Aborts a multipart upload, retried with backoff; an upload that is already gone counts
    /// as aborted (the call is idempotent).
    pub(super) async fn abort(&self, full: &str, upload_id: &str) -> StorageResult<()> {
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

    pub(super) async fn put_single(
        &self,
        full: &str,
        data: Bytes,
        cancel: &CancellationToken,
    ) -> StorageResult<Head> {
        let md5 = Md5::digest(&data);
        let size = data.len() as u64;
        let (class, sse, kms_key) = self.placement();
        let expect = Expected {
            size,
            etag: Some(hex::encode(md5)),
        };
        let sent = self
            .send_create_only("PUT", full, cancel, |conditional| {
                self.client
                    .put_object()
                    .bucket(&self.cfg.bucket)
                    .key(full)
                    .set_if_none_match(conditional.then(|| "*".to_owned()))
                    .set_storage_class(class.clone())
                    .set_server_side_encryption(sse.clone())
                    .set_ssekms_key_id(kms_key.clone())
                    .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                    .content_md5(base64::engine::general_purpose::STANDARD.encode(md5))
                    .body(ByteStream::from(data.clone()))
                    .send()
            })
            .await;
        match sent {
            Ok(_) => {}
            // A 412 may answer the SDK's retry of a PUT that succeeded but whose response was
            // lost (M10): the object is then ours, byte for byte.
            Err(e @ StorageError::AlreadyExists(_)) => {
                return self.ours(full, &expect).await?.ok_or(e);
            }
            Err(e) => return Err(e),
        }
        self.check_stored(full, &expect).await
    }

    /// One PUT that replaces whatever is under `full` (S3 makes a single PUT visible whole or
    /// not at all), checked afterwards like every write.
    pub(super) async fn put_replacing(&self, full: &str, data: Bytes) -> StorageResult<Head> {
        let md5 = Md5::digest(&data);
        let size = data.len() as u64;
        let (class, sse, kms_key) = self.placement();
        self.client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(full)
            .set_storage_class(class)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .content_md5(base64::engine::general_purpose::STANDARD.encode(md5))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "replace {}: {}",
                    self.loc(full),
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )
            })?;
        self.check_stored(
            full,
            &Expected {
                size,
                etag: Some(hex::encode(md5)),
            },
        )
        .await
    }

    /// After a create-only write failed in a way that may hide its success (a 412 or an error
    /// on the SDK's retry of a request whose response was lost): the object under `full` if it
    /// is the one that was sent (same size, and an ETag that is the MD5 of what was sent).
    /// `None` when it is missing, differs, or cannot be compared (SSE-KMS ETags).
    pub(super) async fn ours(&self, full: &str, expect: &Expected) -> StorageResult<Option<Head>> {
        let Some(head) = self.head_full(full).await? else {
            return Ok(None);
        };
        let same = head.size == expect.size
            && self.etags_are_md5()
            && !head.kms
            && match (&expect.etag, head.etag.as_deref().map(clean_etag)) {
                (Some(want), Some(got)) => etag_comparable(got, want) && got == want,
                _ => false,
            };
        if same {
            tracing::info!(
                object = %self.loc(full),
                "a write whose answer was lost had succeeded: the stored object is the one sent"
            );
        }
        Ok(same.then_some(head))
    }

    /// The storage class, server-side encryption and KMS key id of new objects, as the
    /// request builders' setters take them.
    fn placement(
        &self,
    ) -> (
        Option<StorageClass>,
        Option<ServerSideEncryption>,
        Option<String>,
    ) {
        let class = self.cfg.storage_class.as_deref().map(StorageClass::from);
        let (sse, kms_key) = match &self.cfg.sse {
            None => (None, None),
            Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        };
        (class, sse, kms_key)
    }

    /// Sends the request that makes an object visible, built by `send(conditional)`: with
    /// `If-None-Match: *` while the server takes it, so an existing key answers 412 (already
    /// exists). A 501 to the condition sends the request again without it; only when that
    /// succeeds does the repository stop sending the condition.
    async fn send_create_only<T, E, R, F, Fut>(
        &self,
        op: &str,
        full: &str,
        cancel: &CancellationToken,
        mut send: F,
    ) -> StorageResult<T>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: errors::HttpStatus + fmt::Debug,
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    {
        let sends_condition = self.conditional_writes.load(Ordering::Relaxed);
        let mut conditional = sends_condition;
        loop {
            let sent = tokio::select! {
                r = send(conditional) => r,
                () = cancel.cancelled() => return Err(StorageError::Cancelled),
            };
            match sent {
                Ok(out) => {
                    if sends_condition && !conditional {
                        self.stop_conditional_writes(full);
                    }
                    return Ok(out);
                }
                Err(e) if http_status(&e) == Some(412) => return Err(self.exists(full)),
                Err(e) if conditional && refuses_condition(&e) => conditional = false,
                Err(e) => return Err(self.error(op, full, &e)),
            }
        }
    }

    /// Stops sending `If-None-Match` to a server that refused it (and took the same request
    /// without it), saying so once.
    fn stop_conditional_writes(&self, full: &str) {
        if self.conditional_writes.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                repository = %self.name,
                object = %self.loc(full),
                "the S3 server does not support conditional writes (If-None-Match answered 501 Not Implemented); writes stay create-only through a HEAD before each upload, which two agents writing the same key at once could both pass: give every agent its own prefix"
            );
        }
    }

    pub(super) fn exists(&self, full: &str) -> StorageError {
        StorageError::AlreadyExists(format!(
            "{} already exists; lifeboat never overwrites a stored object (is another agent writing to the same bucket and prefix?)",
            self.loc(full)
        ))
    }

    /// The post-upload check (S6): the object must be there with the size sent, and the ETag
    /// the server computed must match where its form allows a comparison. A mismatching
    /// object is deleted: it is not what lifeboat wrote.
    pub(super) async fn check_stored(&self, full: &str, expect: &Expected) -> StorageResult<Head> {
        let head = self.head_full(full).await?;
        let problem = match &head {
            None => Some("the object is missing right after a successful upload".to_owned()),
            Some(h) if h.size != expect.size => Some(format!(
                "the server holds {} bytes but {} were sent",
                h.size, expect.size
            )),
            Some(h) => match (&expect.etag, h.etag.as_deref().map(clean_etag)) {
                (Some(want), Some(got))
                    if self.etags_are_md5()
                        && !h.kms
                        && etag_comparable(got, want)
                        && got != want =>
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

    pub(super) async fn put_multipart(
        &self,
        full: &str,
        first: Bytes,
        mut body: Body,
        base: u64,
        cancel: &CancellationToken,
    ) -> StorageResult<Head> {
        let (class, sse, kms_key) = self.placement();
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(full)
            .set_storage_class(class)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .content_type("application/zstd");
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

    pub(super) async fn upload_parts(
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
        let expect = Expected {
            size: total,
            etag: Some(multipart_etag),
        };
        let completed = self
            .send_create_only(
                "complete multipart upload of",
                full,
                cancel,
                |conditional| {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.cfg.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .set_if_none_match(conditional.then(|| "*".to_owned()))
                        .multipart_upload(
                            CompletedMultipartUpload::builder()
                                .set_parts(Some(parts.clone()))
                                .build(),
                        )
                        .send()
                },
            )
            .await;
        match completed {
            Ok(_) => {}
            Err(StorageError::Cancelled) => return Err(StorageError::Cancelled),
            // The completion may have succeeded with its answer lost: the SDK's retry then
            // meets a 412 or an upload that no longer exists. The object is ours if it is
            // exactly what the parts make.
            Err(e) => {
                if self.ours(full, &expect).await.ok().flatten().is_none() {
                    return Err(e);
                }
            }
        }
        let head = self.check_stored(full, &expect).await?;
        tracing::info!(
            object = %self.loc(full),
            parts = part_count,
            bytes = total,
            complete_ms = completing.elapsed().as_millis(),
            "multipart upload completed and checked"
        );
        Ok(head)
    }

    pub(super) async fn join_part(
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

    pub(super) async fn upload_part(
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
        // A bucket may encrypt with KMS by default, whatever this repository asks for.
        let kms = is_kms(resp.server_side_encryption());
        drop(resp);
        let want = hex::encode(md5);
        let got = clean_etag(&etag);
        if self.etags_are_md5() && !kms && etag_comparable(got, &want) && got != want {
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
}

/// A part the server accepted.
pub(super) struct PartDone {
    pub(super) part: CompletedPart,
    pub(super) md5: [u8; 16],
    /// Its buffer, for the next part, if the request let go of it.
    pub(super) buf: Option<BytesMut>,
}

/// Reads up to `size` bytes of `body` into one buffer. Returns the bytes and whether the body
/// ended (finished) within them.
pub(super) async fn read_part(
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

pub(super) fn clean_etag(e: &str) -> &str {
    e.trim().trim_start_matches("W/").trim_matches('"')
}

/// `Some(true)` for `hex-N` (multipart), `Some(false)` for plain MD5 hex, `None` otherwise.
pub(super) fn etag_shape(s: &str) -> Option<bool> {
    let (h, n) = s.split_once('-').map_or((s, None), |(h, n)| (h, Some(n)));
    let hex_ok = h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let n_ok = n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (hex_ok && n_ok).then_some(n.is_some())
}

/// Whether the server's ETag has the form of `want` (plain MD5 hex, or `hex-N`) so the two
/// can be compared. Encrypted objects (SSE-KMS, SSE-C) and some servers use other forms.
pub(super) fn etag_comparable(got: &str, want: &str) -> bool {
    etag_shape(got).is_some() && etag_shape(got) == etag_shape(want)
}

/// `aws:kms` or `aws:kms:dsse`: ETags of such objects are not MD5s of their data.
pub(super) fn is_kms(sse: Option<&ServerSideEncryption>) -> bool {
    sse.is_some_and(|s| s.as_str().starts_with("aws:kms"))
}

/// Whether the server refused a request for its `If-None-Match` condition.
fn refuses_condition<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: errors::HttpStatus,
{
    http_status(e) == Some(501) || e.code() == Some("NotImplemented")
}
