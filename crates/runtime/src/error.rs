//! One error vocabulary for every service: an [`ErrorCode`] says what kind of failure an error is,
//! and from it follow the gRPC code, the HTTP status and billingctl's exit status, all in one
//! table. A service's error type implements [`ServiceError`]; [`status`] turns any of them into
//! the `tonic::Status` a caller sees, logging an internal failure with its causes and answering
//! it without them (no database or library text reaches a caller).

use tonic::Code;

/// What kind of failure an error is, as a caller must understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is wrong: a field missing, malformed or out of range. Fix it and send again.
    InvalidArgument,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// The request is well formed, but the state does not allow it (an invoice already paid).
    FailedPrecondition,
    /// No credentials, or unknown ones.
    Unauthenticated,
    /// Credentials whose role does not allow this.
    PermissionDenied,
    /// Over a limit; try again later.
    ResourceExhausted,
    /// A dependency (the database, NATS, another service, an outside API) does not answer, or
    /// not in time: trying again later may work.
    Unavailable,
    /// Stored data is not what the service wrote (tampering): trying again will not help; tell
    /// a person.
    DataLoss,
    /// A bug or an unexpected failure: logged with its cause, answered without it.
    Internal,
}

/// `EX_USAGE` from sysexits.h: a bad argument.
pub const EXIT_USAGE: u8 = 64;
/// `EX_UNAVAILABLE`: a service is unreachable or too slow.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// `EX_NOPERM`: no token, or a too narrow role.
pub const EXIT_NOPERM: u8 = 77;
/// Not in sysexits.h: something a person must look at (billingctl's "needs attention").
pub const EXIT_ATTENTION: u8 = 3;

/// The table: each code's gRPC code, HTTP status and exit status.
///
/// | code | gRPC | HTTP | exit |
/// |---|---|---:|---:|
/// | InvalidArgument | INVALID_ARGUMENT | 400 | 64 |
/// | NotFound | NOT_FOUND | 404 | 1 |
/// | AlreadyExists | ALREADY_EXISTS | 409 | 1 |
/// | FailedPrecondition | FAILED_PRECONDITION | 409 | 1 |
/// | Unauthenticated | UNAUTHENTICATED | 401 | 77 |
/// | PermissionDenied | PERMISSION_DENIED | 403 | 77 |
/// | ResourceExhausted | RESOURCE_EXHAUSTED | 429 | 69 |
/// | Unavailable | UNAVAILABLE (and DEADLINE_EXCEEDED, CANCELLED in) | 503 | 69 |
/// | DataLoss | DATA_LOSS | 500 | 3 |
/// | Internal | INTERNAL (and every other code in) | 500 | 1 |
const TABLE: [(ErrorCode, Code, u16, u8); 10] = [
    (
        ErrorCode::InvalidArgument,
        Code::InvalidArgument,
        400,
        EXIT_USAGE,
    ),
    (ErrorCode::NotFound, Code::NotFound, 404, 1),
    (ErrorCode::AlreadyExists, Code::AlreadyExists, 409, 1),
    (
        ErrorCode::FailedPrecondition,
        Code::FailedPrecondition,
        409,
        1,
    ),
    (
        ErrorCode::Unauthenticated,
        Code::Unauthenticated,
        401,
        EXIT_NOPERM,
    ),
    (
        ErrorCode::PermissionDenied,
        Code::PermissionDenied,
        403,
        EXIT_NOPERM,
    ),
    (
        ErrorCode::ResourceExhausted,
        Code::ResourceExhausted,
        429,
        EXIT_UNAVAILABLE,
    ),
    (
        ErrorCode::Unavailable,
        Code::Unavailable,
        503,
        EXIT_UNAVAILABLE,
    ),
    (ErrorCode::DataLoss, Code::DataLoss, 500, EXIT_ATTENTION),
    (ErrorCode::Internal, Code::Internal, 500, 1),
];

impl ErrorCode {
    fn row(self) -> (ErrorCode, Code, u16, u8) {
        TABLE
            .into_iter()
            .find(|row| row.0 == self)
            .unwrap_or(TABLE[TABLE.len() - 1])
    }

    pub fn grpc(self) -> Code {
        self.row().1
    }

    pub fn http(self) -> u16 {
        self.row().2
    }

    /// billingctl's exit status when a call failed with this code.
    pub fn exit_status(self) -> u8 {
        self.row().3
    }

    /// The code of a gRPC status a client received. A deadline the client gave up on (tonic
    /// reports its own timeout as `Cancelled`) counts as [`ErrorCode::Unavailable`] (too slow);
    /// a code outside the table as internal.
    pub fn from_grpc(code: Code) -> Self {
        if matches!(code, Code::DeadlineExceeded | Code::Cancelled) {
            return ErrorCode::Unavailable;
        }
        TABLE
            .into_iter()
            .find(|row| row.1 == code)
            .map_or(ErrorCode::Internal, |row| row.0)
    }
}

/// An error a service answers a caller with.
pub trait ServiceError: std::error::Error {
    fn error_code(&self) -> ErrorCode;

    /// What the caller is told: the error's own text, except for an internal failure (see
    /// [`status`]). Override it where the text would carry a dependency's words.
    fn public_message(&self) -> String {
        self.to_string()
    }
}

/// The status a caller gets for `err`. An internal failure or data loss is logged here with its
/// chain of causes, at error level; the caller gets no text of it for an internal failure.
pub fn status<E: ServiceError + ?Sized>(err: &E) -> tonic::Status {
    let code = err.error_code();
    match code {
        ErrorCode::Internal => {
            tracing::error!(error = %causes(err), "internal error");
            tonic::Status::internal("internal error (the service logged its cause)")
        }
        ErrorCode::DataLoss => {
            tracing::error!(error = %causes(err), "stored data is not what was written");
            tonic::Status::data_loss(err.public_message())
        }
        ErrorCode::Unavailable => {
            tracing::warn!(error = %causes(err), "a dependency is unavailable");
            tonic::Status::unavailable(err.public_message())
        }
        _ => tonic::Status::new(code.grpc(), err.public_message()),
    }
}

/// [`status`] by value, for `map_err(error::to_status)`.
pub fn to_status<E: ServiceError>(err: E) -> tonic::Status {
    status(&err)
}

/// `err: cause: cause…`, for logs only.
fn causes(err: &(impl std::error::Error + ?Sized)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The database: a connection it cannot get or that broke is [`ErrorCode::Unavailable`]
/// (retry later); anything else is internal. Callers never see PostgreSQL's text.
impl ServiceError for sqlx::Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        }
    }

    fn public_message(&self) -> String {
        "the database does not answer now, retry later".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Failure {
        code: ErrorCode,
        text: String,
        #[source]
        cause: Option<std::io::Error>,
    }

    impl ServiceError for Failure {
        fn error_code(&self) -> ErrorCode {
            self.code
        }
    }

    fn failure(code: ErrorCode, text: &str) -> Failure {
        Failure {
            code,
            text: text.into(),
            cause: Some(std::io::Error::other(
                "password authentication failed for db",
            )),
        }
    }

    #[test]
    fn every_code_maps_to_grpc_and_back() {
        for (code, grpc, http, _) in TABLE {
            assert_eq!(code.grpc(), grpc);
            assert_eq!(ErrorCode::from_grpc(grpc), code, "{code:?}");
            assert!((400..600).contains(&http), "{code:?}");
        }
        assert_eq!(
            ErrorCode::from_grpc(Code::DeadlineExceeded),
            ErrorCode::Unavailable
        );
        assert_eq!(ErrorCode::from_grpc(Code::Unknown), ErrorCode::Internal);
    }

    #[test]
    fn exit_statuses_follow_sysexits() {
        assert_eq!(ErrorCode::InvalidArgument.exit_status(), 64);
        assert_eq!(ErrorCode::Unavailable.exit_status(), 69);
        assert_eq!(ErrorCode::ResourceExhausted.exit_status(), 69);
        assert_eq!(ErrorCode::PermissionDenied.exit_status(), 77);
        assert_eq!(ErrorCode::Unauthenticated.exit_status(), 77);
        assert_eq!(ErrorCode::NotFound.exit_status(), 1);
        assert_eq!(ErrorCode::DataLoss.exit_status(), 3, "a person must look");
    }

    #[test]
    fn an_internal_failure_is_answered_without_its_text() {
        let answered = status(&failure(ErrorCode::Internal, "insert into invoices failed"));
        assert_eq!(answered.code(), Code::Internal);
        assert!(!answered.message().contains("invoices"), "{answered:?}");
        assert!(!answered.message().contains("password"), "{answered:?}");

        let answered = status(&failure(ErrorCode::FailedPrecondition, "invoice is paid"));
        assert_eq!(answered.code(), Code::FailedPrecondition);
        assert_eq!(answered.message(), "invoice is paid");
        assert!(!answered.message().contains("password"));
    }

    #[test]
    fn the_database_is_unavailable_or_internal_and_never_quoted() {
        let answered = status(&sqlx::Error::PoolTimedOut);
        assert_eq!(answered.code(), Code::Unavailable);
        assert_eq!(
            answered.message(),
            "the database does not answer now, retry later"
        );
        let answered = status(&sqlx::Error::RowNotFound);
        assert_eq!(answered.code(), Code::Internal);
        assert!(!answered.message().contains("no rows"), "{answered:?}");
    }
}
