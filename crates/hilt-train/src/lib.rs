//! The hilt trainer: data sets, digital twins, Physics-Aware Training and
//! in-silico training of networks whose layers run on hiltd's devices.
//!
//! Boundaries: this crate talks to devices only through `hilt-client`
//! (gRPC); the daemon it may embed for `hilt demo` knows nothing of
//! training.

pub mod data;
pub mod demo;
pub mod error;
pub mod fsio;
pub mod net;
pub mod report;
pub mod rig;
pub mod run;
pub mod tensorfile;
pub mod train;
pub mod twin;
pub mod ui;

pub use error::{Error, Result};
