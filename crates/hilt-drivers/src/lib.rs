//! Device implementations behind the `hilt_core::Device` trait: the
//! in-process simulators (a physics model from `hilt-physics` driven like a
//! rig) and the serial path to real interface boards (`serial/`, growing
//! into the serial drivers). No gRPC in this crate: the daemon owns the
//! network.

#![warn(missing_docs)]

pub mod emulator;
mod error;
mod grid;
pub mod replay;
pub mod serial;
pub mod sim;
mod spec;

pub use error::Error;
pub use replay::ReplayDevice;
pub use sim::{SimDevice, SimSettings};
pub use spec::DeviceSettings;
