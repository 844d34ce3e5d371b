use std::path::PathBuf;

/// What can go wrong with a recording.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed (a full disk, a removed directory).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A record that does not encode (it cannot: a bug) or a file that is
    /// not a recording segment.
    #[error("{0}")]
    Format(String),
    /// The writer thread is gone (hiltd is stopping).
    #[error("the recorder has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
