//! The one error type of the coordinator's request handling, and the one table that decides
//! which gRPC code and HTTP status each kind of error becomes. Matches are exhaustive: a new
//! variant cannot silently become an internal error.

use crate::catalog::CatalogError;

/// An error in handling a request from an agent or an operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a bad name, id, enum value or an inconsistent field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller presented no usable identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is valid but the object is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The coordinator is shutting down or overloaded; retry.
    #[error("{0}")]
    Unavailable(String),
    /// Only the active coordinator of the catalog does this; this one stands by (ADR 0038).
    /// FAILED_PRECONDITION with [`STANDING_BY_KEY`] set, so a client tries the next
    /// coordinator it knows.
    #[error("{0}")]
    StandingBy(String),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// A bug or an environment failure; details go to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The closed set of outcomes a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    pub fn http(self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists => StatusCode::CONFLICT,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::FailedPrecondition(_) | Error::StandingBy(_) => ErrorCode::FailedPrecondition,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Catalog(e) => {
                if e.is_retryable() {
                    ErrorCode::Unavailable
                } else {
                    ErrorCode::Internal
                }
            }
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        self.code() == ErrorCode::Unavailable
    }

    /// The text a client sees. Internal details (SQL errors) stay in the coordinator's log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Catalog(_) if self.code() == ErrorCode::Internal => {
                "the coordinator's catalog failed; see the coordinator log".to_owned()
            }
            Error::Catalog(_) => "the coordinator's catalog is busy; try again".to_owned(),
            Error::Internal(_) => "internal error; see the coordinator log".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn invalid(e: impl std::fmt::Display) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<lifeboat_proto::domain::RecordError> for Error {
    fn from(e: lifeboat_proto::domain::RecordError) -> Self {
        Error::InvalidArgument(e.0)
    }
}

impl From<lifeboat_common::names::NameError> for Error {
    fn from(e: lifeboat_common::names::NameError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

pub use lifeboat_proto::STANDING_BY_KEY;

/// Marks `status` as a standby's refusal ([`STANDING_BY_KEY`]): clients try their next URL.
pub fn standing_by(mut status: tonic::Status) -> tonic::Status {
    status.metadata_mut().insert(
        STANDING_BY_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if let Error::StandingBy(text) = &e {
            return standing_by(tonic::Status::failed_precondition(text.clone()));
        }
        let code = e.code();
        if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
            // The one place such an error is handled: log it with its details.
            tracing::error!("failed to handle request: {e:#}");
        }
        tonic::Status::new(code.grpc(), e.public_message())
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let code = self.code();
        if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
            tracing::error!("failed to handle http request: {self:#}");
        }
        (
            code.http(),
            axum::Json(serde_json::json!({ "error": self.public_message() })),
        )
            .into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_grpc_and_http() {
        let cases = [
            (
                Error::InvalidArgument("x".into()),
                tonic::Code::InvalidArgument,
                400,
            ),
            (Error::NotFound("x".into()), tonic::Code::NotFound, 404),
            (
                Error::AlreadyExists("x".into()),
                tonic::Code::AlreadyExists,
                409,
            ),
            (
                Error::PermissionDenied("x".into()),
                tonic::Code::PermissionDenied,
                403,
            ),
            (
                Error::Unauthenticated("x".into()),
                tonic::Code::Unauthenticated,
                401,
            ),
            (
                Error::FailedPrecondition("x".into()),
                tonic::Code::FailedPrecondition,
                412,
            ),
            (
                Error::Unavailable("x".into()),
                tonic::Code::Unavailable,
                503,
            ),
            (Error::Internal("x".into()), tonic::Code::Internal, 500),
            (
                Error::Catalog(CatalogError::Corrupt("bad row".into())),
                tonic::Code::Internal,
                500,
            ),
        ];
        for (e, grpc, http) in cases {
            assert_eq!(e.code().grpc(), grpc, "{e:?}");
            assert_eq!(e.code().http().as_u16(), http, "{e:?}");
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), grpc);
        }
    }

    #[test]
    fn internal_details_stay_private() {
        let status = tonic::Status::from(Error::Catalog(CatalogError::Corrupt(
            "jobs.state = 'bogus'".into(),
        )));
        assert!(!status.message().contains("bogus"), "{}", status.message());
        assert!(status.message().contains("coordinator log"));
    }

    #[test]
    fn retryable_only_when_unavailable() {
        assert!(Error::Unavailable("shutting down".into()).is_retryable());
        assert!(!Error::NotFound("x".into()).is_retryable());
    }
}
