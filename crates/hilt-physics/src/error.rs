use thiserror::Error;

/// A model configuration that cannot describe a physical rig.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// `field` (dotted, from the rig's table down) cannot be `reason`.
    #[error("{field}: {reason}")]
    Config {
        /// Where in the physics table, e.g. `plate.q`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The same error, located inside `table` (`q` → `plate.q`).
    pub(crate) fn within(self, table: &str) -> Self {
        match self {
            Error::Config { field, reason } => Error::Config {
                field: format!("{table}.{field}"),
                reason,
            },
        }
    }
}
