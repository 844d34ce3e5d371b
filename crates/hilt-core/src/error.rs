use thiserror::Error;

/// Everything that can go wrong between a batch arriving and a measurement
/// leaving. Each variant corresponds to one gRPC code (the daemon maps them
/// in one place); the messages always name the offending field and index so
/// a physicist can find the bad number without a debugger.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// Malformed request: shapes, NaN/Inf, zero repeats.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field, with its index where there is one
        /// (`batch.x[0, 3]`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value outside the device's hard limits under policy `reject`.
    #[error("{field}[{row}, {col}] = {value} is outside the hard limit [{min}, {max}]")]
    OutOfRange {
        /// `batch.x` or `batch.theta`.
        field: &'static str,
        /// Row of the value in that array.
        row: usize,
        /// Column of the value.
        col: usize,
        /// The value as sent.
        value: f32,
        /// The hard limit's lower end.
        min: f32,
        /// The hard limit's upper end.
        max: f32,
    },
    /// The request is well formed but larger than the device accepts.
    #[error("{field}: {reason}")]
    TooLarge {
        /// `batch.x` (too many rows) or `batch.repeats`.
        field: String,
        /// The size asked for and the device's maximum.
        reason: String,
    },
    /// The device cannot measure right now (disconnected, faulted); the
    /// same call may succeed later.
    #[error("device unavailable: {0}")]
    Unavailable(String),
    /// The batch was cut short by something outside the caller's control
    /// (device reset, shutdown); retry at a higher level.
    #[error("aborted: {0}")]
    Aborted(String),
    /// The request cannot be served in the device's present state (a
    /// replay whose request diverged from the recorded session).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bug or an impossible device answer; never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
