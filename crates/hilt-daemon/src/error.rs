use thiserror::Error;
use tonic::{Code, Status};

/// Every failure the daemon reports, mapped to a gRPC status in exactly one
/// place (`From<Error> for Status`): a client can act on the code alone
/// (retry `UNAVAILABLE`, fix its input on `INVALID_ARGUMENT` or
/// `OUT_OF_RANGE`, wait on `FAILED_PRECONDITION` for a lease).
#[derive(Debug, Error)]
pub enum Error {
    /// The batch itself: its shapes, values or limits, or the device's
    /// answer to it.
    #[error(transparent)]
    Batch(#[from] hilt_core::Error),
    /// A wire message that does not decode.
    #[error("invalid request: {0}")]
    Decode(#[from] hilt_proto::ConvertError),
    /// A request field the daemon cannot use.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, as the proto names it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A device id this daemon does not serve.
    #[error("device_id: unknown device '{id}' (this daemon serves: {known})")]
    UnknownDevice {
        /// The id asked for.
        id: String,
        /// The ids served, comma-separated, so the caller can correct it.
        known: String,
    },
    /// Missing, expired, released or foreign lease.
    #[error("lease_id: {0}")]
    Lease(String),
    /// The lease was not free within the seconds the client would wait.
    #[error("timed out after {0:.1} s waiting for the lease")]
    LeaseWait(f64),
    /// No token, or one this daemon does not know.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The token's role or device list does not cover the call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// An admin halted the daemon: no new batches until resumed.
    #[error("{0}")]
    Halted(String),
    /// The caller's deadline came before the answer.
    #[error("the call's deadline ({0:.3} s) passed before the device answered")]
    Deadline(f64),
    /// A device's interlock (rate or drive-energy budget) would be
    /// exceeded: the batch is refused before the rig sees it.
    #[error("interlock: {0}")]
    Interlock(String),
    /// A bounded resource (lease waiters, connections) is full.
    #[error("{0}")]
    Exhausted(String),
    /// Shutdown began: no new work is taken.
    #[error("hiltd is shutting down")]
    ShuttingDown,
    /// Startup problems: config file, devices that cannot be built, bind.
    #[error("{0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reading or writing a file or socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `text` as an error message may quote it: whole if short, else its
/// start and its length. A message echoing a megabyte id would not fit a
/// gRPC header, and the client would get the header's error, not ours.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

impl Error {
    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        use hilt_core::Error as B;
        match self {
            Error::Batch(B::InvalidArgument { .. }) => Code::InvalidArgument,
            Error::Batch(B::OutOfRange { .. }) => Code::OutOfRange,
            Error::Batch(B::TooLarge { .. }) => Code::ResourceExhausted,
            Error::Batch(B::Unavailable(_)) => Code::Unavailable,
            Error::Batch(B::Aborted(_)) => Code::Aborted,
            Error::Batch(B::FailedPrecondition(_)) => Code::FailedPrecondition,
            Error::Batch(B::Internal(_)) => Code::Internal,
            Error::Decode(_) | Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::UnknownDevice { .. } => Code::NotFound,
            Error::Lease(_) | Error::Interlock(_) => Code::FailedPrecondition,
            Error::Exhausted(_) => Code::ResourceExhausted,
            Error::LeaseWait(_) | Error::Deadline(_) => Code::DeadlineExceeded,
            Error::ShuttingDown | Error::Halted(_) => Code::Unavailable,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Config(_) | Error::Transport(_) | Error::Io(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// A failed batch inside a `Stream`: the same code and message a unary
/// call would have ended with.
impl From<Error> for hilt_proto::v1::BatchError {
    fn from(e: Error) -> Self {
        let s = Status::from(e);
        hilt_proto::v1::BatchError {
            code: s.code() as i32,
            message: s.message().to_string(),
        }
    }
}
