//! How failures become exit statuses and messages.
//!
//! Every error travels as `anyhow::Error` up to `main`, which prints it once as `error: {e:#}`.
//! Usage and configuration problems (exit 2) are marked by wrapping them in [`Usage`]; a closed
//! stdout is recognised by its `BrokenPipe` cause; anything else is an operation failure (exit 1).
//! gRPC statuses are turned into sentences that say what to check.

use std::{fmt, process::ExitCode};

use tonic::{Code, Status};

/// Marks an error as the user's to fix (bad arguments, missing or unreadable files, bad URL).
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// Wraps `e` so that it exits with status 2.
pub fn usage(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Usage(e.into()))
}

/// A usage error from a message.
pub fn usage_msg(msg: impl fmt::Display) -> anyhow::Error {
    usage(anyhow::anyhow!("{msg}"))
}

/// What `main` does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stdout was closed by the reader (e.g. `| head`): not an error.
    BrokenPipe,
    Usage,
    Failed,
}

impl Outcome {
    pub fn of(e: &anyhow::Error) -> Self {
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            Self::BrokenPipe
        } else if e.chain().any(|c| c.is::<Usage>()) {
            Self::Usage
        } else {
            Self::Failed
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::BrokenPipe => ExitCode::SUCCESS,
            Self::Usage => ExitCode::from(2),
            Self::Failed => ExitCode::from(1),
        }
    }
}

/// Text of an error and all its causes, for matching and for messages.
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

const CHECK_TLS: &str = "is it running? are --ca/--cert/--key right?";
const CLIENT_CERT_REFUSED: &str = "the coordinator may have refused this client certificate: \
     check that --cert/--key are an operator certificate issued by the coordinator's CA and \
     still valid";

/// Looks like the server's TLS layer dropped us, which under TLS 1.3 is how a refused client
/// certificate shows up (the handshake "succeeds", the first request fails).
fn looks_like_closed_connection(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "connection closed",
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "alert",
        "certificaterequired",
        "badcertificate",
        "unknownca",
        "h2 protocol error",
        "operation was canceled",
    ]
    .iter()
    .any(|needle| t.contains(needle))
}

/// Failure to establish the connection (TCP, TLS or HTTP/2) to `url`.
pub fn connect_error(url: &str, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let text = chain_text(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid peer certificate")
        || lower.contains("notvalidforname")
        || lower.contains("unknownissuer")
    {
        anyhow::anyhow!(
            "the coordinator at {url} presented a certificate this client does not accept: \
             {text} (is --ca the CA that signed it? if the URL's host is not in its \
             certificate, pass --server-name)"
        )
    } else if looks_like_closed_connection(&text) {
        anyhow::anyhow!(
            "cannot reach the coordinator at {url}: {text} ({CLIENT_CERT_REFUSED}; {CHECK_TLS})"
        )
    } else {
        anyhow::anyhow!("cannot reach the coordinator at {url}: {text} ({CHECK_TLS})")
    }
}

/// A failed request: `what` is a short action such as "start backup".
pub fn rpc_error(url: &str, what: &str, status: &Status) -> anyhow::Error {
    let msg = status_text(status);
    let late = || {
        anyhow::anyhow!(
            "{what}: the coordinator at {url} did not answer in time: {msg} (raise --timeout if \
             it is busy)"
        )
    };
    match status.code() {
        Code::PermissionDenied => anyhow::anyhow!(
            "{what}: the coordinator refused this operator certificate's request: {msg} \
             (ask an admin for a role that allows it)"
        ),
        Code::Unauthenticated => anyhow::anyhow!(
            "{what}: the coordinator does not know this certificate's identity: {msg} \
             (is it an operator certificate listed in the coordinator's [[operator]] table?)"
        ),
        // tonic's server answers an expired grpc-timeout with CANCELLED "Timeout expired".
        Code::DeadlineExceeded => late(),
        Code::Cancelled if msg.to_ascii_lowercase().contains("timeout expired") => late(),
        Code::Unavailable | Code::Cancelled | Code::Unknown
            if looks_like_closed_connection(&msg) =>
        {
            anyhow::anyhow!(
                "{what}: the coordinator at {url} closed the connection: {msg} \
                 ({CLIENT_CERT_REFUSED})"
            )
        }
        Code::Unavailable => {
            anyhow::anyhow!("{what}: cannot reach the coordinator at {url}: {msg} ({CHECK_TLS})")
        }
        Code::Cancelled => {
            anyhow::anyhow!("{what}: the request was cancelled: {msg} ({CLIENT_CERT_REFUSED})")
        }
        Code::NotFound
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Aborted
        | Code::ResourceExhausted => anyhow::anyhow!("{what}: {msg}"),
        Code::Ok | Code::Unknown | Code::Internal | Code::Unimplemented | Code::DataLoss => {
            anyhow::anyhow!(
                "{what}: the coordinator failed ({}): {msg}",
                code_word(status.code())
            )
        }
    }
}

/// The status message with its transport cause, if any.
fn status_text(status: &Status) -> String {
    use std::error::Error as _;
    let mut text = if status.message().is_empty() {
        code_word(status.code()).to_owned()
    } else {
        status.message().to_owned()
    };
    if let Some(source) = status.source() {
        let cause = chain_text(source);
        if cause.contains(&text) {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn code_word(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by this coordinator",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        let e = usage_msg("bad flag").context("parse options");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        assert_eq!(format!("{e:#}"), "parse options: bad flag");
        let e = anyhow::anyhow!("job failed");
        assert_eq!(Outcome::of(&e), Outcome::Failed);
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("write output");
        assert_eq!(Outcome::of(&e), Outcome::BrokenPipe);
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(Outcome::of(&e), Outcome::Failed);
    }

    #[test]
    fn statuses_become_hints() {
        let url = "https://c:7443";
        let e = rpc_error(
            url,
            "start backup",
            &Status::permission_denied("role viewer"),
        );
        let s = format!("{e:#}");
        assert!(
            s.starts_with("start backup: the coordinator refused this operator certificate's request: role viewer"),
            "{s}"
        );
        let s = rpc_error(
            url,
            "list agents",
            &Status::unavailable("tcp connect error"),
        )
        .to_string();
        assert!(
            s.contains("cannot reach the coordinator at https://c:7443"),
            "{s}"
        );
        assert!(s.contains("--ca/--cert/--key"), "{s}");
        let s = rpc_error(url, "who am i", &Status::cancelled("connection closed")).to_string();
        assert!(s.contains("refused this client certificate"), "{s}");
        let s = rpc_error(
            url,
            "who am i",
            &Status::unavailable("h2 protocol error: connection closed"),
        )
        .to_string();
        assert!(s.contains("refused this client certificate"), "{s}");
        let s = rpc_error(url, "show backup", &Status::not_found("backup x not found")).to_string();
        assert_eq!(s, "show backup: backup x not found");
        let s = rpc_error(url, "x", &Status::cancelled("Timeout expired")).to_string();
        assert!(
            s.contains("did not answer in time") && s.contains("--timeout"),
            "{s}"
        );
        let s = rpc_error(url, "x", &Status::deadline_exceeded("deadline")).to_string();
        assert!(s.contains("did not answer in time"), "{s}");
        let s = rpc_error(url, "x", &Status::internal("")).to_string();
        assert_eq!(
            s,
            "x: the coordinator failed (internal error): internal error"
        );
    }

    #[test]
    fn connect_errors_name_the_url() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let s = connect_error("https://h:1", &io).to_string();
        assert!(
            s.starts_with("cannot reach the coordinator at https://h:1: connection refused"),
            "{s}"
        );
        let io = std::io::Error::other("invalid peer certificate: NotValidForName");
        let s = connect_error("https://h:1", &io).to_string();
        assert!(s.contains("--server-name"), "{s}");
    }
}
