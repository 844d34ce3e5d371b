use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use crate::*;

fn identity() -> Identity {
    Identity {
        model: "hilt-shg-board".into(),
        serial: "SN-0042".into(),
        firmware: "1.4.2".into(),
        protocol: VERSIONS,
        capabilities: Capabilities {
            rig: "shg".into(),
            n_in: 32,
            n_par: 32,
            n_out: 7,
            max_rows: 256,
            max_repeats: 16,
            input_range: [0.0, 1.0],
            param_range: [0.0, 1.0],
            seconds_per_sample: 0.002,
        },
    }
}

fn examples() -> Vec<Message> {
    vec![
        Message::Identify(VERSIONS),
        Message::Identity(identity()),
        Message::Configure(vec![
            ("n_bins".into(), "7".into()),
            ("layout".into(), "additive".into()),
        ]),
        Message::Configured {
            config_hash: 0xdead_beef_0000_0001,
        },
        Message::LoadDrive(Drive {
            rows: 2,
            x: vec![0.0, 0.5, 1.0, -0.0],
            theta: vec![0.25, 0.75],
        }),
        Message::Loaded { rows: 2 },
        Message::Acquire { repeats: 3 },
        Message::Result(Acquisition {
            rows: 1,
            repeats: 2,
            y: vec![1.0, 2.0, 3.0, 4.0],
            applied_x: vec![0.5],
            applied_theta: vec![0.25],
            saturated: vec![true],
            started_s: vec![12.5],
            finished_s: vec![12.504],
        }),
        Message::Heartbeat { nonce: 7 },
        Message::Alive {
            nonce: 7,
            uptime_ms: 1_000_000,
        },
        Message::Safe,
        Message::Safed,
        Message::Error(Refusal {
            code: ErrorCode::OutOfRange,
            detail: "repeats 99 > 16".into(),
        }),
    ]
}

fn wire(frames: &[Frame]) -> BytesMut {
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f, &mut buf).unwrap();
    }
    buf
}

/// Everything the decoder yields from `bytes`, fed in pieces of `sizes`
/// (cycled).
fn decode_all(bytes: &[u8], sizes: &[usize]) -> Vec<Result<Frame, FrameError>> {
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < bytes.len() {
        let n = sizes[k % sizes.len()].max(1).min(bytes.len() - pos);
        k += 1;
        buf.extend_from_slice(&bytes[pos..pos + n]);
        pos += n;
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
    }
    out
}

#[test]
fn every_message_type_round_trips() {
    let frames: Vec<Frame> = examples()
        .into_iter()
        .enumerate()
        .map(|(i, m)| Frame::new(i as u32 * 1_000_003, m))
        .collect();
    let got = decode_all(&wire(&frames), &[usize::MAX]);
    let got: Vec<Frame> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, frames);
}

#[test]
fn message_type_bytes_and_error_codes_are_the_documented_ones() {
    let kinds: Vec<u8> = examples().iter().map(Message::kind).collect();
    assert_eq!(
        kinds,
        [
            0x01, 0x81, 0x02, 0x82, 0x03, 0x83, 0x04, 0x84, 0x05, 0x85, 0x06, 0x86, 0x7f
        ]
    );
    assert_eq!(u16::from(ErrorCode::BadFrame), 1);
    assert_eq!(u16::from(ErrorCode::Hardware), 8);
    assert_eq!(ErrorCode::try_from(7u16), Ok(ErrorCode::Busy));
    assert!(ErrorCode::try_from(9u16).is_err());
    // The code travels as its number, not as serde's variant index.
    let e = Frame::new(
        1,
        Message::Error(Refusal {
            code: ErrorCode::Busy,
            detail: String::new(),
        }),
    )
    .body()
    .unwrap();
    assert_eq!(e[HEADER], 7);
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let body = Frame::new(0x0403_0201, Message::Acquire { repeats: 5 })
        .body()
        .unwrap();
    assert_eq!(&body[..HEADER], &[1, 0x04, 0x01, 0x02, 0x03, 0x04]);
    assert_eq!(body[HEADER], 5, "postcard varint");
    let crc = crc32fast::hash(&body[..body.len() - TRAILER]);
    assert_eq!(&body[body.len() - TRAILER..], &crc.to_le_bytes());
}

#[test]
fn versions_are_negotiated_to_the_highest_common_one() {
    let host = VersionRange { min: 1, max: 3 };
    assert_eq!(host.negotiate(VersionRange { min: 2, max: 5 }), Some(3));
    assert_eq!(host.negotiate(VersionRange { min: 4, max: 5 }), None);
    // A frame of a version this side does not speak is reported with its
    // (CRC-checked) sequence number, so the reply can name the request.
    let mut body = Frame::new(9, Message::Heartbeat { nonce: 1 })
        .body()
        .unwrap();
    body[0] = 2;
    let n = body.len() - TRAILER;
    let crc = crc32fast::hash(&body[..n]);
    body[n..].copy_from_slice(&crc.to_le_bytes());
    let err = Frame::parse(&body).unwrap_err();
    assert_eq!(err, FrameError::Version { seq: 9, version: 2 });
    assert_eq!(err.seq(), Some(9));
}

#[test]
fn unknown_types_and_bad_payloads_name_the_sequence_number() {
    let mut body = Frame::new(5, Message::Heartbeat { nonce: 1 })
        .body()
        .unwrap();
    body[1] = 0x42;
    let n = body.len() - TRAILER;
    let crc = crc32fast::hash(&body[..n]);
    body[n..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Frame::parse(&body),
        Err(FrameError::UnknownKind { seq: 5, kind: 0x42 })
    );
    // Trailing bytes after a complete payload are an error, not ignored.
    let mut body = Frame::new(6, Message::Heartbeat { nonce: 1 })
        .body()
        .unwrap();
    body.truncate(body.len() - TRAILER);
    body.push(0);
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        Frame::parse(&body),
        Err(FrameError::Payload {
            seq: 6,
            kind: 0x05,
            ..
        })
    ));
}

#[test]
fn every_single_byte_corruption_is_detected() {
    // Exhaustive: each byte of a frame on the wire (delimiter included)
    // replaced by each of its 255 other values. No corruption may decode
    // to a frame that was not sent; the frame after it decodes unless the
    // corruption ate the delimiter between them.
    let frames = [
        Frame::new(
            77,
            Message::LoadDrive(Drive {
                rows: 1,
                x: vec![0.1, 0.0, 0.9],
                theta: vec![0.5; 3],
            }),
        ),
        Frame::new(78, Message::Identity(identity())),
    ];
    let next = Frame::new(79, Message::Heartbeat { nonce: 3 });
    for frame in &frames {
        let good = wire(std::slice::from_ref(frame));
        let tail = wire(std::slice::from_ref(&next));
        let mut cases = 0;
        for pos in 0..good.len() {
            for v in 0..=255u8 {
                if v == good[pos] {
                    continue;
                }
                let mut bytes = good.to_vec();
                bytes[pos] = v;
                bytes.extend_from_slice(&tail);
                let items = decode_all(&bytes, &[usize::MAX]);
                assert!(
                    items.iter().any(Result::is_err),
                    "byte {pos} → {v:#04x} went unnoticed"
                );
                for f in items.iter().flatten() {
                    assert_eq!(f, &next, "byte {pos} → {v:#04x} decoded as {f:?}");
                }
                if pos + 1 < good.len() {
                    assert_eq!(
                        items.last(),
                        Some(&Ok(next.clone())),
                        "resync after byte {pos}"
                    );
                }
                cases += 1;
            }
        }
        assert_eq!(cases, good.len() * 255);
    }
}

#[test]
fn an_endless_frame_is_reported_once_and_the_link_recovers() {
    let mut bytes = vec![0x55u8; crate::MAX_BODY + crate::MAX_BODY / 200 + 64];
    bytes.push(0);
    let good = Frame::new(1, Message::Heartbeat { nonce: 9 });
    bytes.extend_from_slice(&wire(std::slice::from_ref(&good)));
    let items = decode_all(&bytes, &[4096]);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(items[0], Err(FrameError::TooLong { .. })));
    assert_eq!(items[1], Ok(good));
}

#[test]
fn an_oversized_message_is_refused_before_it_is_sent() {
    let huge = Frame::new(
        1,
        Message::LoadDrive(Drive {
            rows: 1,
            x: vec![0.5; crate::MAX_BODY / 4],
            theta: vec![],
        }),
    );
    let mut buf = BytesMut::new();
    assert!(matches!(
        WireCodec::new().encode(&huge, &mut buf),
        Err(WireError::TooLarge { .. })
    ));
    assert!(buf.is_empty(), "nothing half-written");
}

#[test]
fn a_64_channel_shg_batch_of_32_is_over_90_percent_payload() {
    // 64 shaper channels: 32 inputs and 32 parameters per row.
    let rows = 32usize;
    let drive = Message::LoadDrive(Drive {
        rows: rows as u32,
        x: (0..rows * 32).map(|i| (i % 97) as f32 / 97.0).collect(),
        theta: (0..rows * 32).map(|i| (i % 89) as f32 / 89.0).collect(),
    });
    let on_wire = wire(&[Frame::new(1, drive)]).len();
    let payload = rows * 64 * 4;
    let eff = payload as f64 / on_wire as f64;
    println!("LoadDrive 32 x 64 ch: {payload} payload bytes, {on_wire} on the wire, {eff:.4}");
    assert!(eff >= 0.9, "{eff}");
}

#[tokio::test]
async fn frames_survive_an_async_byte_stream_in_odd_pieces() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let frames: Vec<Frame> = examples()
        .into_iter()
        .enumerate()
        .map(|(i, m)| Frame::new(i as u32, m))
        .collect();
    let bytes = wire(&frames);
    let (mut tx, rx) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        for piece in bytes.chunks(7) {
            tx.write_all(piece).await.unwrap();
        }
    });
    let got: Vec<Frame> = tokio_util::codec::FramedRead::new(rx, WireCodec::new())
        .map(|item| item.unwrap().unwrap())
        .collect()
        .await;
    writer.await.unwrap();
    assert_eq!(got, frames);
}

fn arb_f32() -> impl Strategy<Value = f32> {
    // Bit patterns, NaNs aside (NaN != NaN would fail equality, not the codec).
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("not NaN", |v| !v.is_nan())
}

fn arb_message() -> impl Strategy<Value = Message> {
    let s = "[ -~]{0,24}";
    prop_oneof![
        (any::<u8>(), any::<u8>())
            .prop_map(|(min, max)| Message::Identify(VersionRange { min, max })),
        proptest::collection::vec((s, s), 0..6).prop_map(Message::Configure),
        any::<u64>().prop_map(|config_hash| Message::Configured { config_hash }),
        (
            any::<u32>(),
            proptest::collection::vec(arb_f32(), 0..300),
            proptest::collection::vec(arb_f32(), 0..300)
        )
            .prop_map(|(rows, x, theta)| Message::LoadDrive(Drive { rows, x, theta })),
        any::<u32>().prop_map(|rows| Message::Loaded { rows }),
        any::<u32>().prop_map(|repeats| Message::Acquire { repeats }),
        (
            proptest::collection::vec(arb_f32(), 0..200),
            proptest::collection::vec(any::<bool>(), 0..20),
            any::<f64>().prop_filter("not NaN", |v| !v.is_nan())
        )
            .prop_map(|(y, saturated, t)| Message::Result(Acquisition {
                rows: saturated.len() as u32,
                repeats: 1,
                applied_x: y.iter().rev().copied().collect(),
                y,
                applied_theta: vec![],
                saturated,
                started_s: vec![t],
                finished_s: vec![t],
            })),
        any::<u32>().prop_map(|nonce| Message::Heartbeat { nonce }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(nonce, uptime_ms)| Message::Alive { nonce, uptime_ms }),
        Just(Message::Safe),
        Just(Message::Safed),
        (1u16..=8, s).prop_map(|(c, detail)| Message::Error(Refusal {
            code: ErrorCode::try_from(c).unwrap(),
            detail
        })),
    ]
}

proptest! {
    #[test]
    fn any_frames_round_trip_whatever_the_read_sizes(
        msgs in proptest::collection::vec((any::<u32>(), arb_message()), 1..6),
        sizes in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let frames: Vec<Frame> = msgs.into_iter().map(|(seq, m)| Frame::new(seq, m)).collect();
        let bytes = wire(&frames);
        // Split reads (pieces of the given sizes) and coalesced (all at once).
        for pieces in [&sizes[..], &[usize::MAX][..]] {
            let got: Vec<Frame> = decode_all(&bytes, pieces).into_iter().map(Result::unwrap).collect();
            prop_assert_eq!(&got, &frames);
        }
    }

    #[test]
    fn a_corrupted_byte_never_yields_a_wrong_frame(
        (seq, msg) in (any::<u32>(), arb_message()),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let frame = Frame::new(seq, msg);
        let mut bytes = wire(std::slice::from_ref(&frame)).to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let items = decode_all(&bytes, &[usize::MAX]);
        prop_assert!(items.iter().all(Result::is_err) , "{:?}", items);
    }

    #[test]
    fn garbage_never_panics_and_a_good_frame_after_it_still_arrives(
        junk in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..64, 1..4),
    ) {
        let good = Frame::new(3, Message::Loaded { rows: 4 });
        let mut bytes = junk;
        bytes.push(0);
        bytes.extend_from_slice(&wire(std::slice::from_ref(&good)));
        let items = decode_all(&bytes, &sizes);
        prop_assert_eq!(items.last(), Some(&Ok(good)));
    }
}
