//! The hilt trainer: data sets, digital twins, and the training methods
//! (Physics-Aware Training, in-silico, physical local learning, SPSA and a
//! digital baseline) of networks whose layers run on hiltd's devices.
//!
//! Boundaries: this crate talks to devices only through `hilt-client`
//! (gRPC). The daemon `hilt demo` may embed is linked only with the
//! `embedded-daemon` feature, and knows nothing of training.

#![warn(missing_docs)]

pub mod array;
pub mod data;
pub mod demo;
pub mod error;
pub mod fleet;
pub mod fsio;
pub mod net;
pub mod optim;
pub mod pick;
pub mod presets;
pub mod report;
pub mod rig;
pub mod session;
pub mod tensorfile;
pub mod train;
pub mod twin;
pub mod ui;

pub use error::{Error, Result};
