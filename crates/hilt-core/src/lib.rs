//! The vocabulary every other hilt crate shares: what a device is
//! ([`DeviceSpec`], [`Device`]), what it is asked to do ([`Batch`]) and what
//! it answers ([`Measurement`]), and the hard limits that stand between a
//! client's numbers and the hardware ([`validate`]).
//!
//! Nothing here does I/O; the daemon, the drivers and the client all build
//! on these types so that a batch means the same thing on every side.

#![warn(missing_docs)]

mod batch;
mod device;
mod error;
mod limits;
mod spec;
mod status;
pub mod token;

pub use batch::{Batch, Measurement, SampleFlags, reduce_repeats};
pub use device::Device;
pub use error::Error;
pub use limits::{ValidBatch, validate};
pub use spec::{Backend, ControlEncoding, DeviceSpec, FirmwareIdentity, LimitPolicy, Range};
pub use status::{DeviceEvent, DeviceState, DeviceStatus, EventKind, ServerInfo};
