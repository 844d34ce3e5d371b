//! The framing as a `tokio_util` codec, for any byte stream (a serial port,
//! a pseudo-terminal, a socket in tests).

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::MAX_BODY;
use crate::{Frame, FrameError, WireError};

/// Stuffed bytes a body of `MAX_BODY` can take, without the delimiter.
const MAX_STUFFED: usize = cobs::max_encoding_length(MAX_BODY);

/// Items are `Ok(frame)` or `Err(what was wrong with one frame)`: a bad
/// frame is data, so the stream goes on (tokio-util ends a stream at a
/// decoder error).
#[derive(Debug, Default)]
pub struct WireCodec {
    /// Inside an over-long run of bytes: drop everything up to the next
    /// delimiter.
    skipping: bool,
    /// Bytes already scanned for a delimiter.
    scanned: usize,
}

impl WireCodec {
    /// A codec at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Decoder for WireCodec {
    type Item = Result<Frame, FrameError>;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, WireError> {
        loop {
            let Some(off) = src[self.scanned..].iter().position(|&b| b == 0) else {
                self.scanned = src.len();
                if self.scanned > MAX_STUFFED {
                    src.clear();
                    self.scanned = 0;
                    if !self.skipping {
                        self.skipping = true;
                        return Ok(Some(Err(FrameError::TooLong { max: MAX_STUFFED })));
                    }
                }
                return Ok(None);
            };
            let end = self.scanned + off;
            let stuffed = src.split_to(end);
            src.advance(1);
            self.scanned = 0;
            if std::mem::take(&mut self.skipping) || stuffed.is_empty() {
                // The tail of an over-long run, or an empty frame: senders
                // may emit a lone delimiter to resynchronise the receiver.
                continue;
            }
            if stuffed.len() > MAX_STUFFED {
                return Ok(Some(Err(FrameError::TooLong { max: MAX_STUFFED })));
            }
            let mut body = vec![0u8; stuffed.len()];
            let n = match cobs::decode(&stuffed, &mut body) {
                Ok(r) if r.parsed_size() == stuffed.len() => r.frame_size(),
                _ => {
                    return Ok(Some(Err(FrameError::Cobs {
                        bytes: stuffed.len(),
                    })));
                }
            };
            return Ok(Some(Frame::parse(&body[..n])));
        }
    }
}

impl Encoder<&Frame> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        let body = frame.body()?;
        let start = dst.len();
        dst.resize(start + cobs::max_encoding_length(body.len()), 0);
        let n = cobs::encode(&body, &mut dst[start..]);
        dst.truncate(start + n);
        dst.put_u8(0);
        Ok(())
    }
}

impl Encoder<Frame> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        self.encode(&frame, dst)
    }
}
