//! Device implementations behind the `hilt_core::Device` trait. Today the
//! in-process simulators (a physics model from `hilt-physics` driven like a
//! rig); the serial drivers for real interface boards join them here. No
//! gRPC in this crate: the daemon owns the network.

mod error;
pub mod sim;

pub use error::Error;
pub use sim::{LoopbackModel, SimDevice, SimSettings};
