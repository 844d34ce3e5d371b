//! hilt-wire: the protocol between hiltd's serial drivers and the rigs'
//! interface boards (and `firmware-sim`, which emulates them). Specified in
//! `docs/wire-protocol.md`; implemented once here for both sides, so host
//! and board cannot drift apart.
//!
//! COBS-delimited frames, each with a version, a sequence number, a message
//! type, a postcard payload and a CRC-32. One request, one reply with the
//! same sequence number.

#![warn(missing_docs)]

mod codec;
mod error;
mod frame;
mod message;

pub use codec::WireCodec;
pub use error::{FrameError, WireError};
pub use frame::{Frame, HEADER, MAX_BODY, TRAILER, VERSIONS};
pub use message::{
    Acquisition, Capabilities, Drive, ErrorCode, Identity, Message, Refusal, VersionRange,
};

#[cfg(test)]
mod tests;
