use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use hilt_wire::{Drive, VERSIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// What the fake board does with one request.
#[derive(Debug, Clone)]
enum Act {
    /// Answer properly.
    Answer,
    /// Answer, with one byte of the frame flipped.
    Corrupt,
    /// Answer twice.
    Twice,
    /// Answer after the host's timeout.
    Late,
    /// Say nothing.
    Silent,
    /// Answer BadFrame under seq 0, as for a request that arrived damaged.
    BadFrame,
}

fn reply_to(m: &Message) -> Message {
    match m {
        Message::Heartbeat { nonce } => Message::Alive {
            nonce: *nonce,
            uptime_ms: 1,
        },
        Message::LoadDrive(d) => Message::Loaded { rows: d.rows },
        Message::Acquire { .. } => Message::Result(hilt_wire::Acquisition {
            rows: 1,
            repeats: 1,
            y: vec![1.0],
            applied_x: vec![],
            applied_theta: vec![],
            saturated: vec![false],
            started_s: vec![0.0],
            finished_s: vec![0.0],
        }),
        _ => Message::Identify(VERSIONS),
    }
}

fn encode(f: &Frame) -> Vec<u8> {
    let mut b = BytesMut::new();
    WireCodec::new().encode(f, &mut b).unwrap();
    b.to_vec()
}

/// A scripted board on the other end of a duplex pipe; returns the
/// requests it saw.
fn board(mut io: DuplexStream, script: Vec<Act>) -> Arc<Mutex<Vec<Frame>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::new();
        let mut script = script.into_iter();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(Ok(req)) = codec.decode(&mut buf).unwrap() {
                log.lock().unwrap().push(req.clone());
                let answer = Frame::new(req.seq, reply_to(&req.message));
                let bytes = encode(&answer);
                match script.next().unwrap_or(Act::Answer) {
                    Act::Answer => io.write_all(&bytes).await.unwrap(),
                    Act::Corrupt => {
                        let mut b = bytes.clone();
                        b[3] ^= 0x40;
                        io.write_all(&b).await.unwrap();
                    }
                    Act::Twice => {
                        io.write_all(&bytes).await.unwrap();
                        io.write_all(&bytes).await.unwrap();
                    }
                    Act::Late => {
                        let b = bytes.clone();
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        io.write_all(&b).await.unwrap();
                    }
                    Act::Silent => {}
                    Act::BadFrame => {
                        let f =
                            Frame::new(0, Message::Error(Refusal::new(ErrorCode::BadFrame, "crc")));
                        io.write_all(&encode(&f)).await.unwrap();
                    }
                }
            }
        }
    });
    seen
}

fn link(script: Vec<Act>) -> (Link<DuplexStream>, Arc<Mutex<Vec<Frame>>>) {
    let (host, dev) = tokio::io::duplex(1 << 16);
    (Link::new(host, LinkOptions::default()), board(dev, script))
}

fn beat(n: u32) -> Message {
    Message::Heartbeat { nonce: n }
}

#[tokio::test(start_paused = true)]
async fn replies_are_matched_by_seq_and_type() {
    let (mut l, seen) = link(vec![]);
    assert_eq!(
        l.call(&beat(7)).await.unwrap(),
        Message::Alive {
            nonce: 7,
            uptime_ms: 1
        }
    );
    assert_eq!(
        l.call(&beat(8)).await.unwrap(),
        Message::Alive {
            nonce: 8,
            uptime_ms: 1
        }
    );
    let seqs: Vec<u32> = seen.lock().unwrap().iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(l.stats().requests, 2);
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_is_never_matched_to_a_later_request() {
    // Heartbeat 1 is answered after the timeout, while heartbeat 2 waits:
    // the late answer (nonce 1, seq 1) must be dropped, not returned as
    // heartbeat 2's. Likewise a late Result while a heartbeat waits.
    let (host, dev) = tokio::io::duplex(1 << 16);
    let one_try = LinkOptions {
        attempts: 1,
        ..LinkOptions::default()
    };
    let _seen = board(dev, vec![Act::Late, Act::Answer, Act::Late, Act::Answer]);
    let mut l = Link::new(host, one_try);
    let e = l.call(&beat(1)).await.unwrap_err();
    assert!(matches!(e, LinkError::Timeout { seq: 1, .. }), "{e}");
    assert_eq!(
        l.call(&beat(2)).await.unwrap(),
        Message::Alive {
            nonce: 2,
            uptime_ms: 1
        }
    );
    assert_eq!(l.stats().stale_replies, 1);
    assert!(l.call(&Message::Acquire { repeats: 1 }).await.is_err());
    assert_eq!(
        l.call(&beat(4)).await.unwrap(),
        Message::Alive {
            nonce: 4,
            uptime_ms: 1
        }
    );
    assert_eq!(l.stats().stale_replies, 2);
}

#[tokio::test(start_paused = true)]
async fn corrupt_replies_to_idempotent_requests_are_retried() {
    let (mut l, seen) = link(vec![Act::Corrupt, Act::BadFrame, Act::Answer]);
    let d = Message::LoadDrive(Drive {
        rows: 3,
        x: vec![0.5; 3],
        theta: vec![],
    });
    assert_eq!(l.call(&d).await.unwrap(), Message::Loaded { rows: 3 });
    assert_eq!(seen.lock().unwrap().len(), 3, "sent three times");
    let s = l.stats();
    assert_eq!((s.retries, s.corrupt_frames), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn an_acquire_is_measured_once_and_its_loss_reported_retryable() {
    let (mut l, seen) = link(vec![Act::Corrupt]);
    let e = l.call(&Message::Acquire { repeats: 1 }).await.unwrap_err();
    assert!(matches!(e, LinkError::Corrupt { .. }), "{e}");
    assert!(e.retryable() && !e.link_lost());
    assert_eq!(seen.lock().unwrap().len(), 1, "never resent by the link");
    // The link is usable afterwards.
    assert!(l.call(&beat(1)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn duplicates_and_silence() {
    let (mut l, _) = link(vec![
        Act::Twice,
        Act::Answer,
        Act::Silent,
        Act::Silent,
        Act::Silent,
    ]);
    l.call(&beat(1)).await.unwrap();
    // The duplicate of reply 1 is dropped when reply 2 is awaited.
    assert_eq!(
        l.call(&beat(2)).await.unwrap(),
        Message::Alive {
            nonce: 2,
            uptime_ms: 1
        }
    );
    assert_eq!(l.stats().stale_replies, 1);
    // Three silent attempts: a timeout, after the configured attempts.
    let e = l.call(&beat(3)).await.unwrap_err();
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
    assert_eq!(l.stats().timeouts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_closed_port_is_a_lost_link() {
    let (host, dev) = tokio::io::duplex(1024);
    drop(dev);
    let mut l = Link::new(host, LinkOptions::default());
    let e = l.call(&beat(1)).await.unwrap_err();
    assert!(e.link_lost(), "{e}");
}
