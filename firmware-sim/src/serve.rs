//! The board's main loop: read frames from the pseudo-terminal, answer
//! each request once, suffer the configured faults, and unplug/replug.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use hilt_physics::Variant;
use hilt_wire::{ErrorCode, Frame, FrameError, Message, Refusal, VERSIONS, WireCodec};
use tokio_util::codec::{Decoder, Encoder};

use crate::faults::{FaultConfig, Faults};
use crate::pty::{Pty, point_link};
use hilt_drivers::emulator::Board;
use hilt_physics::RigKind;

/// What board to emulate, where, and how badly its link behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rig the board fronts.
    pub rig: RigKind,
    /// Seed of the simulated rig (as `seed` of an in-process simulator:
    /// the same seed measures the same numbers).
    pub seed: u64,
    /// The physics the board runs.
    pub variant: Variant,
    /// Keep this path pointing at the current pseudo-terminal (removed
    /// while unplugged, like a device node).
    pub link: Option<PathBuf>,
    /// The link's fault rates.
    pub faults: FaultConfig,
    /// Seed of the fault generator.
    pub fault_seed: u64,
}

fn refusal(seq: u32, version: u8, code: ErrorCode, detail: String) -> Frame {
    Frame {
        version,
        seq,
        message: Message::Error(Refusal { code, detail }),
    }
}

/// The board's answer to a frame it could not use.
fn answer_bad_frame(e: &FrameError) -> Frame {
    let code = match e {
        FrameError::Version { .. } => ErrorCode::UnsupportedVersion,
        FrameError::UnknownKind { .. } => ErrorCode::UnknownMessage,
        FrameError::Payload { .. } => ErrorCode::BadPayload,
        _ => ErrorCode::BadFrame,
    };
    // Without a CRC-checked seq the board answers with seq 0.
    refusal(e.seq().unwrap_or(0), VERSIONS.min, code, e.to_string())
}

async fn send(pty: &Pty, faults: &mut Faults, frame: &Frame) -> io::Result<()> {
    let mut out = BytesMut::new();
    WireCodec::new()
        .encode(frame, &mut out)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let fate = faults.outgoing(out.len());
    if fate.stall_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fate.stall_ms)).await;
    }
    if let Some((i, mask)) = fate.corrupt {
        out[i] ^= mask;
    }
    for _ in 0..fate.copies {
        pty.write_all(&out).await?;
    }
    Ok(())
}

/// Serves until an I/O error; `announce` is called with each new
/// pseudo-terminal's path (at start and after every replug).
pub async fn serve(opts: Options, mut announce: impl FnMut(&Path)) -> io::Result<()> {
    opts.faults.validate().map_err(io::Error::other)?;
    let mut faults = Faults::new(opts.faults.clone(), opts.fault_seed);
    let every = faults.config().unplug_every;
    loop {
        let pty = Pty::open()?;
        if let Some(link) = &opts.link {
            point_link(link, pty.path())?;
        }
        announce(pty.path());
        // Plugging in powers the board up: nothing loaded, defaults.
        let mut board = Board::new(opts.rig, opts.seed, opts.variant).map_err(io::Error::other)?;
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut answered: u64 = 0;
        'plugged: loop {
            let n = pty.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "pseudo-terminal closed",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(item) = codec
                .decode(&mut buf)
                .map_err(|e| io::Error::other(e.to_string()))?
            {
                // The cable is pulled as the request after the N-th
                // arrives: that request is lost, every earlier reply has
                // been read (the host sent this one after it).
                if every > 0 && answered == every {
                    break 'plugged;
                }
                let (corrupt, lost) = faults.incoming();
                let reply = match item {
                    _ if lost => None,
                    _ if corrupt => Some(refusal(
                        0,
                        VERSIONS.min,
                        ErrorCode::BadFrame,
                        "CRC mismatch (injected)".into(),
                    )),
                    Ok(frame) => {
                        let message = board.handle(frame.message).await;
                        Some(Frame {
                            version: frame.version,
                            seq: frame.seq,
                            message,
                        })
                    }
                    Err(e) => Some(answer_bad_frame(&e)),
                };
                if let Some(reply) = reply {
                    send(&pty, &mut faults, &reply).await?;
                }
                answered += 1;
            }
        }
        drop(pty);
        if let Some(link) = &opts.link {
            let _ = std::fs::remove_file(link);
        }
        tokio::time::sleep(Duration::from_millis(faults.config().replug_after_ms)).await;
    }
}
