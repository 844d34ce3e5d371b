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

mod device;
#[cfg(test)]
mod fake_board;
mod link;
mod measure;
mod port;
mod settings;
mod task;

pub use device::{LinkState, SerialDevice, StateObserver};
pub use link::{Link, LinkError, LinkOptions, LinkStats};
pub use port::{Connector, SerialPort};
pub use settings::SerialSettings;
