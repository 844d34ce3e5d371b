//! The trainer's one error type: every failure names the file, the flag or
//! the device the user has to fix.

use std::path::PathBuf;

/// Everything that can stop a `hilt` command. Each variant names what the
/// user has to fix: the file, the flag, or the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file exists but is not what it should be.
    #[error("{path}: {reason}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A flag or option is out of bounds; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A device cannot serve the network or the twin as asked.
    #[error("device '{device}': {reason}")]
    Device {
        /// The device's id.
        device: String,
        /// What it lacks or refuses.
        reason: String,
    },
    /// The daemon refused or could not be reached.
    #[error(transparent)]
    Client(#[from] hilt_client::ClientError),
    /// A daemon of the run refused, or was lost (a run across daemons
    /// names which).
    #[error("server {server}: {source}")]
    Server {
        /// The daemon's URL.
        server: String,
        /// What its client said.
        #[source]
        source: hilt_client::ClientError,
    },
    /// A tensor operation failed (a shape mismatch: a bug, or a foreign file).
    #[error("numerics: {0}")]
    Candle(#[from] candle_core::Error),
    /// The embedded daemon of `hilt demo` failed to start or stop.
    #[cfg(feature = "embedded-daemon")]
    #[error("embedded daemon: {0}")]
    Daemon(#[from] hilt_daemon::Error),
}

impl Error {
    /// A malformed file, named.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An I/O failure on a path, named.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A refused option; `reason` should name the flag.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }
}

/// The result of everything in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
