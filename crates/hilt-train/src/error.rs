use std::path::PathBuf;

/// Everything that can stop a `hilt` command. Each variant names what the
/// user has to fix: the file, the flag, or the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("device '{device}': {reason}")]
    Device { device: String, reason: String },
    #[error(transparent)]
    Client(#[from] hilt_client::ClientError),
    #[error("numerics: {0}")]
    Candle(#[from] candle_core::Error),
    #[cfg(feature = "embedded-daemon")]
    #[error("embedded daemon: {0}")]
    Daemon(#[from] hilt_daemon::Error),
}

impl Error {
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
