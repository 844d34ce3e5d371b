//! Arbitrary bytes into the frame decoder, in two read patterns: it must
//! never panic, never loop, never hand out a frame that does not re-encode
//! to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use hilt_wire::WireCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |&b| usize::from(b) + 1);
    let mut whole = Vec::new();
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::from(data);
    while let Some(item) = codec.decode(&mut buf).expect("no I/O here") {
        whole.push(item);
    }
    // The same bytes in pieces give the same items.
    let mut pieces = Vec::new();
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::new();
    for chunk in data.chunks(split) {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(&mut buf).expect("no I/O here") {
            pieces.push(item);
        }
    }
    assert_eq!(whole, pieces);
    for frame in whole.into_iter().flatten() {
        let mut again = BytesMut::new();
        WireCodec::new().encode(&frame, &mut again).expect("a decoded frame re-encodes");
        let round = WireCodec::new().decode(&mut again).expect("no I/O here");
        assert_eq!(round, Some(Ok(frame)));
    }
});
