//! The serial path to a real interface board (`docs/wire-protocol.md`).
//!
//! - `link.rs`: the request/reply discipline over any byte stream: one
//!   request outstanding, replies matched by sequence number, per-request
//!   timeouts, stale input flushed after a fault, idempotent requests
//!   retried.
//! - `task.rs`: the task owning the port: connect, identify, configure,
//!   verify, heartbeats, reconnect with backoff.
//! - `measure.rs`: one batch as LoadDrive/Acquire rounds, checked and
//!   assembled into a `Measurement`.
//! - `device.rs`: `SerialDevice`, the `Device` the daemon serves.
//! - `state.rs`: `LinkState`, what the driver tells the daemon of itself.

mod device;
mod link;
mod measure;
mod port;
mod settings;
mod state;
mod task;

pub use device::SerialDevice;
pub use link::{Link, LinkCounters, LinkError, LinkOptions, LinkStats};
pub use port::{Connector, SerialPort};
pub use settings::{SerialSettings, configuration_entries};
pub use state::{LinkState, StateObserver};

/// A host's settings for the unit tests' boards: clamping, no pacing.
#[cfg(test)]
pub(crate) fn test_settings(max_rows: usize, max_repeats: u32) -> crate::DeviceSettings {
    crate::DeviceSettings {
        id: "fake".into(),
        input_limits: None,
        param_limits: None,
        policy: hilt_core::LimitPolicy::Clamp,
        max_batch: max_rows,
        max_repeats,
    }
}
