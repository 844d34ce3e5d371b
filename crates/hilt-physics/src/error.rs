use thiserror::Error;

/// A model configuration that cannot describe a physical rig.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
}

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            field,
            reason: reason.into(),
        }
    }
}
