//! One frame: the bytes between two 0x00 delimiters. Layout before COBS
//! stuffing (`docs/wire-protocol.md`):
//!
//! ```text
//! version:u8 | kind:u8 | seq:u32 LE | payload (postcard) | crc32:u32 LE
//! ```
//!
//! The CRC (IEEE 802.3, as zlib) covers everything before it, so a frame
//! either arrives exactly as sent or is reported, never misread.

use crate::{FrameError, Message, VersionRange, WireError};

/// Bytes before the payload.
pub const HEADER: usize = 6;
/// Bytes after it.
pub const TRAILER: usize = 4;
/// The longest frame body (header + payload + CRC) either side accepts:
/// 1 MiB, about 5 s of a 2 Mbaud link. Drivers split larger batches.
pub const MAX_BODY: usize = 1 << 20;
/// The protocol versions this crate speaks.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

/// A message with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Protocol version: `new` sets the newest, `parse` accepts only
    /// [`VERSIONS`].
    pub version: u8,
    /// Chosen by the host per request, echoed by the board's reply.
    pub seq: u32,
    /// The payload, with its type byte.
    pub message: Message,
}

impl Frame {
    /// A frame of the newest version this crate speaks.
    pub fn new(seq: u32, message: Message) -> Self {
        Frame {
            version: VERSIONS.max,
            seq,
            message,
        }
    }

    /// The frame body (before COBS stuffing): header, payload, CRC.
    pub fn body(&self) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::with_capacity(64);
        body.push(self.version);
        body.push(self.message.kind());
        body.extend_from_slice(&self.seq.to_le_bytes());
        self.message
            .write_payload(&mut body)
            .map_err(|e| WireError::Encode(e.to_string()))?;
        if body.len() + TRAILER > MAX_BODY {
            return Err(WireError::TooLarge {
                bytes: body.len() + TRAILER,
                max: MAX_BODY,
            });
        }
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        Ok(body)
    }

    /// Parses an unstuffed body. Checks in the order that makes each
    /// report trustworthy: length, CRC, then (with a known-good sequence
    /// number to answer with) version, type and payload.
    pub fn parse(body: &[u8]) -> Result<Frame, FrameError> {
        if body.len() < HEADER + TRAILER {
            return Err(FrameError::Short { bytes: body.len() });
        }
        let (data, crc) = body.split_at(body.len() - TRAILER);
        let sent = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32fast::hash(data);
        if sent != computed {
            return Err(FrameError::Crc { sent, computed });
        }
        let (version, kind) = (data[0], data[1]);
        let seq = u32::from_le_bytes([data[2], data[3], data[4], data[5]]);
        if version < VERSIONS.min || version > VERSIONS.max {
            return Err(FrameError::Version { seq, version });
        }
        match Message::read_payload(kind, &data[HEADER..]) {
            None => Err(FrameError::UnknownKind { seq, kind }),
            Some(Err(e)) => Err(FrameError::Payload {
                seq,
                kind,
                reason: e.to_string(),
            }),
            Some(Ok(message)) => Ok(Frame {
                version,
                seq,
                message,
            }),
        }
    }
}
