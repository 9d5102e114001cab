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
            // HEAD answers carry no error document, only the status; the server's Date says
            // whether the clocks disagree.
            "" if http_status(e) == Some(403)
                && let Some(skew) = clock_skew_secs(e) =>
            {
                format!(
                    "{op} {loc}: the S3 server answered 403 Forbidden and its clock differs from this machine's by {} (clock skew); S3 refuses requests signed more than 15 minutes off: fix the clock (for example enable NTP: timedatectl set-ntp true) and run the job again",
                    humantime::format_duration(Duration::from_secs(skew.unsigned_abs()))
                )
            }
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
