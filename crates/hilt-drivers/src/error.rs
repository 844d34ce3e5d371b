use thiserror::Error;

/// A device that cannot be built from its settings.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// A setting that no device can have.
    #[error("{field}: {reason}")]
    Config {
        /// The setting, as the daemon's config names it.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A physics table the model refuses.
    #[error(transparent)]
    Physics(#[from] hilt_physics::Error),
}
