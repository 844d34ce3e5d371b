//! Frames from an interface board. Random bytes almost never pass the
//! CRC, so the payload decoder would go untested: this target builds each
//! frame from (version, kind, seq, payload) with a valid CRC (and, when
//! asked, a broken one), so the decoder of every message type is reached;
//! the raw bytes also go through the COBS codec as a stream.
#![no_main]

use bytes::BytesMut;
use hilt_wire::{Frame, WireCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    version: u8,
    kind: u8,
    seq: u32,
    payload: Vec<u8>,
    break_crc: bool,
    stream: Vec<u8>,
}

fuzz_target!(|i: Input| {
    let mut body = vec![i.version, i.kind];
    body.extend_from_slice(&i.seq.to_le_bytes());
    body.extend_from_slice(&i.payload);
    let mut crc = crc32fast::hash(&body);
    if i.break_crc {
        crc ^= 1;
    }
    body.extend_from_slice(&crc.to_le_bytes());
    if let Ok(frame) = Frame::parse(&body) {
        // What decodes encodes again.
        let _ = frame.body();
    }
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::from(&i.stream[..]);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
});
