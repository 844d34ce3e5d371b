//! Physics models of the hilt rigs: pure, synchronous, deterministic per
//! seed, and free of I/O so that the in-process simulator, the firmware
//! emulator and the tests all run the very same equations.
//!
//! Each rig has a `nominal` variant (the idealised textbook model a client
//! may use as its twin) and a `true` variant (nominal plus component
//! mismatch, noise, drift on a virtual clock, quantisation and saturation)
//! that plays the role of reality. The equations and their sources are in
//! each rig's module docs; `docs/` holds what the board protocol needs.

#![warn(missing_docs)]

pub mod bins;
mod check;
pub mod circuit;
mod error;
mod hyper;
mod kind;
pub mod loopback;
mod model;
mod ou;
pub mod plate;
pub mod rig;
pub mod shg;
pub mod waveform;

pub use error::Error;
pub use kind::RigKind;
pub use loopback::{LoopbackConfig, LoopbackModel};
pub use model::{PhysicalModel, Variant, forward};
pub use ou::OrnsteinUhlenbeck;
pub use rig::{RigModel, RigPhysics};
