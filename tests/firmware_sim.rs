//! firmware-sim as a real process on a real pseudo-terminal: the bytes a
//! serial driver would exchange with a lab board.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hilt_wire::{Drive, ErrorCode, Frame, FrameError, Message, Refusal, VERSIONS, WireCodec};
use tokio_util::codec::{Decoder, Encoder};

const PATIENCE: Duration = Duration::from_secs(20);

struct Board {
    child: Child,
    lines: Receiver<String>,
}

impl Board {
    fn start(args: &[&str]) -> Board {
        let mut child = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Board { child, lines }
    }

    /// The next `PTY <path>` announcement.
    fn pty(&self) -> PathBuf {
        let line = self.lines.recv_timeout(PATIENCE).unwrap();
        PathBuf::from(
            line.strip_prefix("PTY ")
                .unwrap_or_else(|| panic!("{line:?}")),
        )
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's end: frames out, decoded items in (with a timeout, so a
/// silent board fails the test instead of hanging it).
struct Port {
    file: std::fs::File,
    items: Receiver<Result<Frame, FrameError>>,
}

impl Port {
    fn open(path: &Path) -> Port {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut reader = file.try_clone().unwrap();
        let (tx, items) = channel();
        std::thread::spawn(move || {
            let mut codec = WireCodec::new();
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            // Ends when the board unplugs (EIO) or the test is over.
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(item)) = codec.decode(&mut buf) {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
        });
        Port { file, items }
    }

    fn send(&mut self, seq: u32, m: Message) {
        let mut out = BytesMut::new();
        WireCodec::new()
            .encode(Frame::new(seq, m), &mut out)
            .unwrap();
        self.file.write_all(&out).unwrap();
    }

    fn next(&self) -> Result<Result<Frame, FrameError>, RecvTimeoutError> {
        self.items.recv_timeout(PATIENCE)
    }

    fn ask(&mut self, seq: u32, m: Message) -> Message {
        self.send(seq, m);
        let f = self.next().unwrap().unwrap();
        assert_eq!(f.seq, seq);
        f.message
    }
}

fn shg_drive() -> Drive {
    Drive {
        rows: 2,
        x: (0..24).map(|i| (i % 4) as f32 / 3.0).collect(),
        theta: vec![0.5; 40],
    }
}

#[test]
fn a_board_on_a_pty_identifies_loads_and_measures() {
    let b = Board::start(&["--rig", "shg", "--seed", "7"]);
    let mut port = Port::open(&b.pty());
    let Message::Identity(id) = port.ask(1, Message::Identify(VERSIONS)) else {
        panic!("identity expected");
    };
    assert_eq!(id.capabilities.rig, "shg");
    assert_eq!(
        port.ask(2, Message::LoadDrive(shg_drive())),
        Message::Loaded { rows: 2 }
    );
    let Message::Result(r) = port.ask(3, Message::Acquire { repeats: 2 }) else {
        panic!("result expected");
    };
    assert_eq!((r.rows, r.repeats, r.y.len()), (2, 2, 2 * 2 * 7));
    assert!(r.y.iter().all(|v| v.is_finite()));
    // A second board with the same seed measures the same numbers.
    let b2 = Board::start(&["--rig", "shg", "--seed", "7"]);
    let mut port2 = Port::open(&b2.pty());
    port2.ask(1, Message::LoadDrive(shg_drive()));
    let Message::Result(r2) = port2.ask(2, Message::Acquire { repeats: 2 }) else {
        panic!("result expected");
    };
    assert_eq!(r.y, r2.y);
}

#[test]
fn line_noise_is_answered_with_bad_frame_and_the_link_goes_on() {
    let b = Board::start(&["--rig", "circuit"]);
    let mut port = Port::open(&b.pty());
    port.file.write_all(&[0x13, 0x37, 0x42, 0x00]).unwrap();
    let f = port.next().unwrap().unwrap();
    assert_eq!(f.seq, 0, "no trustworthy seq in noise");
    assert!(matches!(
        f.message,
        Message::Error(Refusal {
            code: ErrorCode::BadFrame,
            ..
        })
    ));
    assert!(matches!(
        port.ask(9, Message::Heartbeat { nonce: 5 }),
        Message::Alive { nonce: 5, .. }
    ));
}

#[test]
fn injected_faults_corrupt_drop_and_duplicate_replies() {
    // Every reply corrupted: the host sees only decode errors.
    let b = Board::start(&["--rig", "shg", "--corrupt-rate", "1"]);
    let mut port = Port::open(&b.pty());
    // Incoming corruption answers BadFrame, whose reply is corrupted too.
    for seq in 1..=20 {
        port.send(seq, Message::Heartbeat { nonce: seq });
    }
    // Corrupted delimiters merge neighbours, so count loosely; but not one
    // reply may decode as a good frame.
    let mut errors = 0;
    let mut item = port.next();
    while let Ok(got) = item {
        assert!(got.is_err(), "{got:?}");
        errors += 1;
        item = port.items.recv_timeout(Duration::from_secs(2));
    }
    assert!(errors >= 10, "{errors} corrupted replies to 20 requests");

    // Every reply duplicated: two identical frames per request.
    let b = Board::start(&["--rig", "shg", "--dup-rate", "1"]);
    let mut port = Port::open(&b.pty());
    port.send(4, Message::Heartbeat { nonce: 4 });
    let a = port.next().unwrap().unwrap();
    let c = port.next().unwrap().unwrap();
    assert_eq!(a, c);

    // Every frame lost: silence.
    let b = Board::start(&["--rig", "shg", "--drop-rate", "1"]);
    let mut port = Port::open(&b.pty());
    port.send(4, Message::Heartbeat { nonce: 4 });
    assert!(port.items.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn unplugging_moves_the_board_to_a_new_pty_behind_the_same_link() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("hilt-shg");
    let b = Board::start(&[
        "--rig",
        "shg",
        "--link",
        link.to_str().unwrap(),
        "--unplug-every",
        "2",
        "--replug-after-ms",
        "100",
    ]);
    let first = b.pty();
    assert_eq!(std::fs::read_link(&link).unwrap(), first);
    let mut port = Port::open(&link);
    assert!(matches!(
        port.ask(1, Message::Heartbeat { nonce: 1 }),
        Message::Alive { .. }
    ));
    assert!(matches!(
        port.ask(2, Message::Heartbeat { nonce: 2 }),
        Message::Alive { .. }
    ));
    // The third request meets a pulled cable: lost, and the port dies.
    port.send(3, Message::Heartbeat { nonce: 3 });
    assert!(matches!(port.next(), Err(RecvTimeoutError::Disconnected)));
    let second = b.pty();
    assert_ne!(first, second);
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_link(&link).ok().as_deref() != Some(second.as_path()) {
        assert!(Instant::now() < deadline, "link never moved");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A fresh board: powered up with nothing loaded.
    let mut port = Port::open(&link);
    assert!(matches!(
        port.ask(3, Message::Acquire { repeats: 1 }),
        Message::Error(Refusal {
            code: ErrorCode::NotReady,
            ..
        })
    ));
}

#[test]
fn a_bad_flag_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .args(["--rig", "plate", "--drop-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--drop-rate 2 is not a probability"), "{err}");
}
