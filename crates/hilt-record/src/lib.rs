//! The recording: every measurement a device made, kept. One directory per
//! device holds its segment files; a segment is a header and then records,
//! each framed by a magic, its length and its CRC-32C (`frame.rs`), so a
//! torn tail is found and cut at restart and a corrupt record in the
//! middle is skipped by readers while the ones after it stay readable.
//! `docs/recording.md` is the format's specification.
//!
//! hiltd writes (`writer.rs`, one thread per device: a record is in the
//! kernel before its answer leaves); `hilt recording` and the replay
//! backend read (`reader.rs`). Nothing here knows gRPC or training.

#![warn(missing_docs)]

mod encode;
mod error;
mod frame;
mod reader;
mod record;
mod segment;
mod window;
mod writer;

pub use error::Error;
pub use frame::{FORMAT_VERSION, SEGMENT_MAGIC};
pub use reader::{Corrupt, SegmentScan, scan_device, scan_segment, segments};
pub use record::{Context, Cube, Matrix, Record, lease_tag, short_hash, unix_ns};
pub use writer::{FailureObserver, Fsync, Kept, OnError, Recorder, WriterOptions, write_spec};

#[cfg(test)]
mod tests;
