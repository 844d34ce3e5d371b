//! The one error of decoding a wire message, shared by every conversion.

use thiserror::Error;

/// A message that is not a valid encoding of the type it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ConvertError {
    /// The message field that is wrong (`batch.x`, `status.state`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConvertError {
    /// The error of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConvertError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
