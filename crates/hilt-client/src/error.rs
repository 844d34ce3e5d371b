use thiserror::Error;
use tonic::Code;

#[derive(Debug, Error)]
pub enum ClientError {
    /// hiltd answered with an error (for a stream batch: in-band).
    #[error("{code:?}: {message}")]
    Status { code: Code, message: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("malformed answer from hiltd: {0}")]
    Decode(#[from] hilt_proto::ConvertError),
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
