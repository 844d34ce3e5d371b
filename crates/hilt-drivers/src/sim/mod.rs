//! Simulated rigs: a physics model behind the same `Device` trait as a
//! real board, with the rig's serial timing and (optionally) its wall-clock
//! pace, so the daemon and trainers cannot tell the difference.

mod device;
mod sweep;

pub use device::{SimDevice, SimSettings};
