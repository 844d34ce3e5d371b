use thiserror::Error;

/// A frame that arrived but cannot be used. Decoding continues at the next
/// delimiter: one bad frame never takes the link down.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("COBS stuffing is invalid ({bytes} bytes between delimiters)")]
    Cobs { bytes: usize },
    #[error("frame of {bytes} bytes is shorter than header and CRC")]
    Short { bytes: usize },
    #[error("frame longer than {max} bytes without a delimiter; skipped")]
    TooLong { max: usize },
    #[error("CRC mismatch: frame says {sent:#010x}, content gives {computed:#010x}")]
    Crc { sent: u32, computed: u32 },
    #[error("seq {seq}: protocol version {version} is not spoken here")]
    Version { seq: u32, version: u8 },
    #[error("seq {seq}: unknown message type {kind:#04x}")]
    UnknownKind { seq: u32, kind: u8 },
    #[error("seq {seq}: payload of message type {kind:#04x} does not decode: {reason}")]
    Payload { seq: u32, kind: u8, reason: String },
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
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("message does not serialise: {0}")]
    Encode(String),
    #[error("frame of {bytes} bytes exceeds the {max} byte limit", max = crate::MAX_BODY)]
    TooLarge { bytes: usize },
}
