//! Physics models of the hilt rigs: pure, synchronous, deterministic per
//! seed, and free of I/O so that the in-process simulator, the firmware
//! emulator and the tests all run the very same equations.
//!
//! Each rig has a `nominal` variant (the idealised textbook model a client
//! may use as its twin) and a `true` variant (nominal plus component
//! mismatch, noise, drift on a virtual clock, quantisation and saturation)
//! that plays the role of reality. See `physics.md` §2 in the shared docs.

mod check;
pub mod circuit;
mod error;
mod hyper;
mod model;
mod ou;
pub mod plate;
pub mod shg;
pub mod waveform;

pub use error::Error;
pub use model::{PhysicalModel, Variant, forward};
pub use ou::OrnsteinUhlenbeck;
