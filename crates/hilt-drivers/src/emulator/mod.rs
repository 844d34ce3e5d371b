//! An emulated interface board: the board's side of the protocol, one
//! request in, one reply out. It measures with the very `SimDevice` hiltd
//! runs in-process, so a rig behind it and the in-process simulator with
//! the same seed measure the same numbers. firmware-sim puts it on a
//! pseudo-terminal with fault injection; the serial driver's unit tests
//! put it on the far end of an in-memory pipe.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use hilt_core::{Batch, Device, DeviceSpec, LimitPolicy};
use hilt_physics::{RigKind, RigModel, Variant};
use hilt_wire::{
    Acquisition, Capabilities, Drive, ErrorCode, Frame, Identity, Message, Refusal, VERSIONS,
    WireCodec,
};
use ndarray::Array2;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::sim::SimSettings;
use crate::{DeviceSettings, SimDevice};

/// Rows one LoadDrive may carry (the boards' drive memory).
pub const MAX_ROWS: usize = 256;
/// Repeats one Acquire may ask for.
pub const MAX_REPEATS: u32 = 64;

/// Ways a board can be wrong that no byte-level fault produces, for
/// testing that a host notices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Misbehaviour {
    /// Report applied inputs shifted by this much (a reply to some other
    /// drive, as far as the host can tell).
    pub applied_offset: f32,
    /// Claim to be this rig instead of the one it measures.
    pub claimed_rig: Option<RigKind>,
    /// Answer a shared θ row with one row per drive row.
    pub theta_per_row: bool,
    /// Claim this pace (seconds per sample) instead of the simulator's.
    pub claimed_seconds_per_sample: Option<f64>,
}

/// How much one request may ask of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardLimits {
    /// Rows one LoadDrive may carry (the drive memory).
    pub max_rows: usize,
    /// Repeats one Acquire may ask for.
    pub max_repeats: u32,
}

impl Default for BoardLimits {
    fn default() -> Self {
        BoardLimits {
            max_rows: MAX_ROWS,
            max_repeats: MAX_REPEATS,
        }
    }
}

/// The simulated rig behind a board of `kind`, configured by `config`
/// (its physics table as JSON).
fn build_sim(
    kind: RigKind,
    config: &Value,
    seed: u64,
    variant: Variant,
    limits: BoardLimits,
) -> Result<SimDevice<RigModel>, String> {
    let settings = DeviceSettings {
        id: format!("{kind}-board"),
        input_limits: None,
        param_limits: None,
        // The board clamps what it cannot play and reports it, whatever
        // the host sent: the last line of defence for the hardware.
        policy: LimitPolicy::Clamp,
        max_batch: limits.max_rows,
        max_repeats: limits.max_repeats,
    };
    let model = kind
        .physics_from(config)
        .map_err(|e| e.to_string())?
        .build_model(variant, seed)
        .map_err(|e| e.to_string())?;
    SimDevice::new(model, settings, SimSettings { seed, pace: None }).map_err(|e| e.to_string())
}

/// An emulated interface board.
#[derive(Debug)]
pub struct Board {
    rig: RigKind,
    seed: u64,
    variant: Variant,
    config: Value,
    limits: BoardLimits,
    misbehaviour: Misbehaviour,
    sim: SimDevice<RigModel>,
    loaded: Option<(Array2<f32>, Array2<f32>)>,
    powered: Instant,
}

fn refuse(code: ErrorCode, detail: impl Into<String>) -> Message {
    Message::Error(Refusal::new(code, detail))
}

impl Board {
    /// A board fronting `rig`, powered up with the rig's default physics
    /// (a host configures the rest).
    pub fn new(rig: RigKind, seed: u64, variant: Variant) -> Result<Self, String> {
        Board::with(
            rig,
            seed,
            variant,
            BoardLimits::default(),
            Misbehaviour::default(),
        )
    }

    /// A board with other request limits, or one that misbehaves.
    pub fn with(
        rig: RigKind,
        seed: u64,
        variant: Variant,
        limits: BoardLimits,
        misbehaviour: Misbehaviour,
    ) -> Result<Self, String> {
        let config = rig
            .default_physics()
            .ok_or_else(|| format!("a '{rig}' rig has no board"))?
            .to_json();
        let sim = build_sim(rig, &config, seed, variant, limits)?;
        Ok(Board {
            rig,
            seed,
            variant,
            config,
            limits,
            misbehaviour,
            sim,
            loaded: None,
            powered: Instant::now(),
        })
    }

    /// What the board measures, as its simulator publishes it.
    pub fn spec(&self) -> &DeviceSpec {
        self.sim.spec()
    }

    /// What the board answers to Identify.
    pub fn identity(&self) -> Identity {
        let s = self.spec();
        let rig = self.misbehaviour.claimed_rig.unwrap_or(self.rig);
        Identity {
            model: format!("hilt-{}-board (firmware-sim)", self.rig.as_str()),
            serial: format!("FWSIM-{}-{:08x}", self.rig.as_str(), self.seed),
            firmware: env!("CARGO_PKG_VERSION").to_string(),
            protocol: VERSIONS,
            capabilities: Capabilities {
                rig: rig.as_str().to_string(),
                n_in: s.n_in as u32,
                n_par: s.n_par as u32,
                n_out: s.n_out as u32,
                max_rows: u32::try_from(self.limits.max_rows).unwrap_or(u32::MAX),
                max_repeats: self.limits.max_repeats,
                input_range: [s.input_range.min, s.input_range.max],
                param_range: [s.param_range.min, s.param_range.max],
                seconds_per_sample: self
                    .misbehaviour
                    .claimed_seconds_per_sample
                    .unwrap_or(s.seconds_per_sample),
            },
        }
    }

    /// A hash of the whole configuration: equal hashes, equal boards. Only
    /// compared within one host session (e.g. to see a board reset across
    /// a replug), so the hasher need not be stable across Rust releases.
    pub fn config_hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (self.rig.as_str(), self.seed, self.variant.as_str()).hash(&mut h);
        self.config.to_string().hash(&mut h);
        h.finish()
    }

    /// The reply to one request.
    pub async fn handle(&mut self, request: Message) -> Message {
        match request {
            Message::Identify(host) => match host.negotiate(VERSIONS) {
                Some(_) => Message::Identity(self.identity()),
                None => refuse(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "host speaks {}..={}, board {}..={}",
                        host.min, host.max, VERSIONS.min, VERSIONS.max
                    ),
                ),
            },
            Message::Configure(entries) => match self.configure(&entries) {
                Ok(()) => Message::Configured {
                    config_hash: self.config_hash(),
                },
                Err(r) => Message::Error(r),
            },
            Message::LoadDrive(d) => self.load(d),
            Message::Acquire { repeats } => self.acquire(repeats).await,
            Message::Heartbeat { nonce } => Message::Alive {
                nonce,
                uptime_ms: self.powered.elapsed().as_millis() as u64,
            },
            // The emulated actuators rest between Acquires already; what
            // is left to make safe is the drive that would play next.
            Message::Safe => {
                self.loaded = None;
                Message::Safed
            }
            other => refuse(
                ErrorCode::UnknownMessage,
                format!("type {:#04x} is not a request", other.kind()),
            ),
        }
    }

    /// All entries or none: the new configuration is built and checked
    /// whole before it replaces the old one (and the loaded drive, whose
    /// shape may no longer fit).
    fn configure(&mut self, entries: &[(String, String)]) -> Result<(), Refusal> {
        let mut config = self.config.clone();
        for (key, text) in entries {
            let slot = key
                .split('.')
                .try_fold(&mut config, |v, part| v.get_mut(part))
                .ok_or_else(|| {
                    Refusal::new(
                        ErrorCode::BadPayload,
                        format!("unknown configuration key '{key}'"),
                    )
                })?;
            let value = match slot {
                Value::String(_) => Value::String(text.clone()),
                Value::Array(_) if !text.trim_start().starts_with('[') => {
                    serde_json::from_str(&format!("[{text}]")).map_err(|e| {
                        Refusal::new(ErrorCode::BadPayload, format!("{key} = '{text}': {e}"))
                    })?
                }
                _ => serde_json::from_str(text).map_err(|e| {
                    Refusal::new(ErrorCode::BadPayload, format!("{key} = '{text}': {e}"))
                })?,
            };
            *slot = value;
        }
        let sim = build_sim(self.rig, &config, self.seed, self.variant, self.limits)
            .map_err(|e| Refusal::new(ErrorCode::OutOfRange, e))?;
        self.sim = sim;
        self.config = config;
        self.loaded = None;
        Ok(())
    }

    fn load(&mut self, d: Drive) -> Message {
        let s = self.spec();
        let rows = d.rows as usize;
        let max_rows = self.limits.max_rows;
        if rows == 0 || rows > max_rows {
            return refuse(
                ErrorCode::OutOfRange,
                format!("rows {rows} is not in 1..={max_rows}"),
            );
        }
        let theta_rows = if d.theta.len() == s.n_par { 1 } else { rows };
        if d.x.len() != rows * s.n_in || d.theta.len() != theta_rows * s.n_par {
            return refuse(
                ErrorCode::BadPayload,
                format!(
                    "{rows} rows need x of {} and theta of {} or {} values; got {} and {}",
                    rows * s.n_in,
                    s.n_par,
                    rows * s.n_par,
                    d.x.len(),
                    d.theta.len()
                ),
            );
        }
        let shapes = (
            Array2::from_shape_vec((rows, s.n_in), d.x),
            Array2::from_shape_vec((theta_rows, s.n_par), d.theta),
        );
        let (Ok(x), Ok(theta)) = shapes else {
            return refuse(ErrorCode::BadPayload, "drive does not fit its row count");
        };
        self.loaded = Some((x, theta));
        Message::Loaded { rows: d.rows }
    }

    async fn acquire(&mut self, repeats: u32) -> Message {
        let Some((x, theta)) = self.loaded.clone() else {
            return refuse(ErrorCode::NotReady, "no drive loaded");
        };
        let max_repeats = self.limits.max_repeats;
        if repeats == 0 || repeats > max_repeats {
            return refuse(
                ErrorCode::OutOfRange,
                format!("repeats {repeats} is not in 1..={max_repeats}"),
            );
        }
        let batch = Batch {
            x,
            theta,
            repeats,
            return_repeats: true,
        };
        let offset = self.misbehaviour.applied_offset;
        let theta_copies = if self.misbehaviour.theta_per_row {
            self.loaded.as_ref().map_or(1, |(x, _)| x.nrows())
        } else {
            1
        };
        let measured = match hilt_core::validate(self.sim.spec(), batch) {
            Ok(valid) => self.sim.execute(valid).await,
            Err(e) => Err(e),
        };
        match measured {
            Ok(m) => Message::Result(Acquisition {
                rows: m.y.nrows() as u32,
                repeats,
                y: m.y_repeats
                    .map(|a| a.into_iter().collect())
                    .unwrap_or_default(),
                applied_x: m.applied_x.into_iter().map(|v| v + offset).collect(),
                applied_theta: (0..theta_copies)
                    .flat_map(|_| m.applied_theta.iter().copied())
                    .collect(),
                saturated: m.flags.iter().map(|f| f.saturated).collect(),
                started_s: m.t_start,
                finished_s: m.t_end,
            }),
            Err(
                e @ (hilt_core::Error::InvalidArgument { .. }
                | hilt_core::Error::OutOfRange { .. }
                | hilt_core::Error::TooLarge { .. }),
            ) => refuse(ErrorCode::BadPayload, e.to_string()),
            Err(e) => refuse(ErrorCode::Hardware, e.to_string()),
        }
    }
}

/// Answer requests on `io` until the host hangs up: a board on the far
/// end of a pipe, with no faults on the way (firmware-sim's loop adds
/// them).
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut board: Board, io: S) {
    let mut io = Framed::new(io, WireCodec::new());
    while let Some(Ok(item)) = io.next().await {
        // A frame that failed its check is the host's to retry.
        let Ok(frame) = item else { continue };
        let reply = board.handle(frame.message).await;
        if io.send(Frame::new(frame.seq, reply)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
