//! Errors of the S3 API turned into ones that say what to do.

use super::*;

impl S3Repository {
    /// Translates an SDK error into one that names the operation, the object and what to do.
    pub(super) fn error<E, R>(&self, op: &str, full: &str, e: &SdkError<E, R>) -> StorageError
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
        // One sentence: the problem, the request (operation and object) in parentheses, then
        // what to do. The SDK's own error chain is logged, never put in the message.
        let req = format!("{op} {loc}");
        let what = match code {
            "RequestTimeTooSkewed" => format!(
                "the S3 server refused {req} because this machine's clock differs from its clock by more than 15 minutes (clock skew); fix the clock (enable NTP: timedatectl set-ntp true) and run the job again"
            ),
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired" => format!(
                "the S3 server rejected the credentials of repository {:?} ({code}, {req}); check its access key id and secret access key files (or credential source) and this machine's clock",
                self.name
            ),
            "AccessDenied" => format!(
                "access denied ({req}); repository {:?}'s credentials need s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket, s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on this bucket and prefix",
                self.name
            ),
            "NoSuchBucket" => format!(
                "bucket {:?} does not exist at {endpoint} ({req}); create it or fix bucket, region or endpoint of repository {:?}",
                self.cfg.bucket, self.name
            ),
            // HEAD answers carry no error document, only the status; the server's Date says
            // whether the clocks disagree.
            "" if http_status(e) == Some(403)
                && let Some(skew) = clock_skew_secs(e) =>
            {
                format!(
                    "the S3 server answered 403 Forbidden ({req}) and its clock differs from this machine's by {} (clock skew); fix the clock (enable NTP: timedatectl set-ntp true) and run the job again",
                    humantime::format_duration(Duration::from_secs(skew.unsigned_abs()))
                )
            }
            "" if http_status(e) == Some(403) => format!(
                "the S3 server refused repository {:?}'s credentials or their rights (403 Forbidden, {req}); check its access key id and secret access key files (or credential source), the bucket policy and this machine's clock",
                self.name
            ),
            _ => match e {
                SdkError::TimeoutError(_) => format!(
                    "timed out talking to {endpoint} ({req}, {} attempts at most); check the network path to the endpoint",
                    self.cfg.max_attempts
                ),
                SdkError::DispatchFailure(_) => format!(
                    "cannot reach {endpoint} ({req}); check `endpoint`, DNS and the network: {}",
                    root_cause(e)
                ),
                _ => match (http_status(e), e.message()) {
                    (Some(status), Some(msg)) => {
                        format!("{req} failed: {status} {code}: {}", short(msg))
                    }
                    (Some(status), None) => format!("{req} failed: {status} {code}"),
                    _ => format!("{req} failed: {}", root_cause(e)),
                },
            },
        };
        tracing::debug!(object = %loc, "S3 error detail: {}", DisplayErrorContext(e));
        StorageError::Other(anyhow!(what))
    }
}

/// The innermost error of a chain (what actually went wrong: "connection refused"), short.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut next = e.source();
    while let Some(n) = next {
        msg = n.to_string();
        next = n.source();
    }
    short(&msg)
}

/// At most 160 characters of `s`, on one line.
fn short(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= 160 {
        one_line
    } else {
        let cut: String = one_line.chars().take(159).collect();
        format!("{cut}…")
    }
}

pub(super) fn http_status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    e.raw_response().map(HttpStatus::status_code)
}

pub(super) trait HttpStatus {
    fn status_code(&self) -> u16;
    /// The response's `Date` header.
    fn date(&self) -> Option<&str> {
        None
    }
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    fn date(&self) -> Option<&str> {
        self.headers().get("date")
    }
}

/// How far the server's clock (its `Date` header) is from this machine's, in seconds, when it
/// is more than five minutes; `None` otherwise or without a readable `Date`.
pub(super) fn clock_skew_secs<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<i64> {
    let date = e.raw_response()?.date()?;
    let server = parse_http_date(date)?;
    let skew = server - time::OffsetDateTime::now_utc().unix_timestamp();
    (skew.abs() > 300).then_some(skew)
}

/// `Tue, 01 Dec 2026 19:45:00 GMT` (RFC 9110's IMF-fixdate) as Unix seconds.
pub(super) fn parse_http_date(text: &str) -> Option<i64> {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), FORMAT)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}
