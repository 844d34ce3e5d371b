use thiserror::Error;

/// A frame that arrived but cannot be used. Decoding continues at the next
/// delimiter: one bad frame never takes the link down.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The bytes between two delimiters are not valid COBS.
    #[error("COBS stuffing is invalid ({bytes} bytes between delimiters)")]
    Cobs {
        /// Stuffed bytes received.
        bytes: usize,
    },
    /// Too short to hold a header and a CRC.
    #[error("frame of {bytes} bytes is shorter than header and CRC")]
    Short {
        /// Unstuffed bytes received.
        bytes: usize,
    },
    /// More bytes than the largest frame without a delimiter: dropped up
    /// to the next one.
    #[error("frame longer than {max} bytes without a delimiter; skipped")]
    TooLong {
        /// The stuffed size limit.
        max: usize,
    },
    /// Corrupted on the way: nothing in it, not even `seq`, is believed.
    #[error("CRC mismatch: frame says {sent:#010x}, content gives {computed:#010x}")]
    Crc {
        /// The CRC the frame carries.
        sent: u32,
        /// The CRC of what arrived.
        computed: u32,
    },
    /// Intact, but of a protocol version this side does not speak.
    #[error("seq {seq}: protocol version {version} is not spoken here")]
    Version {
        /// The frame's sequence number.
        seq: u32,
        /// The frame's version byte.
        version: u8,
    },
    /// Intact, but of an unknown message type.
    #[error("seq {seq}: unknown message type {kind:#04x}")]
    UnknownKind {
        /// The frame's sequence number.
        seq: u32,
        /// The unknown type byte.
        kind: u8,
    },
    /// Intact, but the payload does not decode as its type (or has bytes
    /// left over).
    #[error("seq {seq}: payload of message type {kind:#04x} does not decode: {reason}")]
    Payload {
        /// The frame's sequence number.
        seq: u32,
        /// The frame's type byte.
        kind: u8,
        /// postcard's error.
        reason: String,
    },
}

impl FrameError {
    /// The sequence number, where the CRC vouches for it.
    pub fn seq(&self) -> Option<u32> {
        match self {
            FrameError::Version { seq, .. }
            | FrameError::UnknownKind { seq, .. }
            | FrameError::Payload { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// Why bytes could not be sent or received at all.
#[derive(Debug, Error)]
pub enum WireError {
    /// The byte stream failed (port closed, device unplugged).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// postcard could not serialise the message.
    #[error("message does not serialise: {0}")]
    Encode(String),
    /// The message is too large for one frame; the sender must split it.
    #[error("frame of {bytes} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// The encoded body's size.
        bytes: usize,
        /// The protocol's limit (`MAX_BODY`).
        max: usize,
    },
}
