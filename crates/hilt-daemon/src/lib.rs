//! hiltd: the daemon that owns the rigs and serves them over gRPC.
//!
//! One actor task per device behind a bounded queue (no interleaved
//! batches), leases with FIFO waiters and TTL refreshed by use, hard
//! limits checked before anything reaches a device, and a change feed per
//! device. The daemon knows devices and batches; it knows nothing of
//! training.

#![warn(missing_docs)]

mod actor;
pub mod auth;
mod codes;
pub mod config;
mod conn;
mod daemon;
mod deadline;
mod error;
mod halt;
pub mod interlock;
mod lease;
mod metrics;
mod recording;
mod registry;
mod server;
mod service;
mod status;
mod stream;

pub use config::Config;
pub use error::Error;
pub use server::{EmbeddedDaemon, Prepared, serve};
pub use stream::MAX_WINDOW;
