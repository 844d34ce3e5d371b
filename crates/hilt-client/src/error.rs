use thiserror::Error;
use tonic::Code;

/// What can go wrong talking to hiltd.
#[derive(Debug, Error)]
pub enum ClientError {
    /// hiltd answered with an error (for a stream batch: in-band).
    #[error("{code:?}: {message}")]
    Status {
        /// The gRPC code hiltd chose for the core error.
        code: Code,
        /// hiltd's message, naming the offending field.
        message: String,
    },
    /// No connection to the daemon.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL given to [`Client::connect`](crate::Client::connect).
        url: String,
        /// What the transport said.
        #[source]
        source: tonic::transport::Error,
    },
    /// hiltd answered with a message that does not decode: a version
    /// mismatch or a bug, never the caller's input.
    #[error("malformed answer from hiltd: {0}")]
    Decode(#[from] hilt_proto::ConvertError),
    /// The stream ended (the daemon closed it, or its task is gone) before
    /// a batch could be sent.
    #[error("the stream was closed")]
    StreamClosed,
}

impl ClientError {
    /// The gRPC code, for deciding whether to retry.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}
