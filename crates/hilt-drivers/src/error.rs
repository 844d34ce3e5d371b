use thiserror::Error;

/// A device that cannot be built from its settings.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Config { field: String, reason: String },
    #[error(transparent)]
    Physics(#[from] hilt_physics::Error),
}
