//! The vocabulary every other hilt crate shares: what a device is
//! ([`DeviceSpec`], [`Device`]), what it is asked to do ([`Batch`]) and what
//! it answers ([`Measurement`]), and the hard limits that stand between a
//! client's numbers and the hardware ([`validate`]).
//!
//! Nothing here does I/O; the daemon, the drivers and the client all build
//! on these types so that a batch means the same thing on every side.

mod batch;
mod device;
mod error;
mod limits;
mod spec;

pub use batch::{Batch, Measurement, SampleFlags};
pub use device::{Device, DeviceState};
pub use error::Error;
pub use limits::{ValidBatch, validate};
pub use spec::{Backend, ControlEncoding, DeviceSpec, FirmwareIdentity, LimitPolicy, Range};
