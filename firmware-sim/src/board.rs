//! The board's side of the protocol: one request in, one reply out. The
//! measurement runs the very `SimDevice` hiltd runs in-process, so a rig
//! behind firmware-sim and the in-process simulator with the same seed
//! measure the same numbers.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use hilt_core::{Batch, Device, DeviceSpec, LimitPolicy, Measurement, validate};
use hilt_drivers::{DeviceSettings, SimDevice};
use hilt_physics::Variant;
use hilt_physics::circuit::{CircuitConfig, CircuitModel};
use hilt_physics::plate::{PlateConfig, PlateModel};
use hilt_physics::shg::{ShgConfig, ShgModel};
use hilt_wire::{
    Acquisition, Capabilities, Drive, ErrorCode, Identity, Message, Refusal, VERSIONS,
};
use ndarray::Array2;
use serde_json::Value;

/// Which rig the board fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rig {
    Shg,
    Plate,
    Circuit,
}

impl Rig {
    pub fn as_str(self) -> &'static str {
        match self {
            Rig::Shg => "shg",
            Rig::Plate => "plate",
            Rig::Circuit => "circuit",
        }
    }

    /// The rig's default physics configuration, as JSON (what Configure
    /// edits key by key).
    fn default_config(self) -> Value {
        let v = match self {
            Rig::Shg => serde_json::to_value(ShgConfig::default()),
            Rig::Plate => serde_json::to_value(PlateConfig::default()),
            Rig::Circuit => serde_json::to_value(CircuitConfig::default()),
        };
        v.expect("physics configs serialise")
    }
}

/// Rows one LoadDrive may carry, and repeats one Acquire may ask for.
pub const MAX_ROWS: usize = 256;
pub const MAX_REPEATS: u32 = 64;

#[derive(Debug)]
enum Sim {
    Shg(SimDevice<ShgModel>),
    Plate(SimDevice<PlateModel>),
    Circuit(SimDevice<CircuitModel>),
}

impl Sim {
    fn build(rig: Rig, config: &Value, seed: u64, variant: Variant) -> Result<Sim, String> {
        let settings = DeviceSettings {
            id: format!("{}-board", rig.as_str()),
            seed,
            input_limits: None,
            param_limits: None,
            // The board clamps what it cannot play and reports it, whatever
            // the host sent: the last line of defence for the hardware.
            policy: LimitPolicy::Clamp,
            max_batch: MAX_ROWS,
            max_repeats: MAX_REPEATS,
            emulate_seconds_per_sample: None,
        };
        fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
            T::deserialize(v).map_err(|e| e.to_string())
        }
        let err = |e: hilt_physics::Error| e.to_string();
        let derr = |e: hilt_drivers::Error| e.to_string();
        Ok(match rig {
            Rig::Shg => Sim::Shg(
                SimDevice::new(
                    ShgModel::new(typed(config)?, variant, seed).map_err(err)?,
                    settings,
                )
                .map_err(derr)?,
            ),
            Rig::Plate => Sim::Plate(
                SimDevice::new(
                    PlateModel::new(typed(config)?, variant, seed).map_err(err)?,
                    settings,
                )
                .map_err(derr)?,
            ),
            Rig::Circuit => Sim::Circuit(
                SimDevice::new(
                    CircuitModel::new(typed(config)?, variant, seed).map_err(err)?,
                    settings,
                )
                .map_err(derr)?,
            ),
        })
    }

    fn spec(&self) -> &DeviceSpec {
        match self {
            Sim::Shg(d) => d.spec(),
            Sim::Plate(d) => d.spec(),
            Sim::Circuit(d) => d.spec(),
        }
    }

    async fn execute(&mut self, batch: Batch) -> Result<Measurement, hilt_core::Error> {
        let valid = validate(self.spec(), batch)?;
        match self {
            Sim::Shg(d) => d.execute(&valid).await,
            Sim::Plate(d) => d.execute(&valid).await,
            Sim::Circuit(d) => d.execute(&valid).await,
        }
    }
}

/// An emulated interface board.
#[derive(Debug)]
pub struct Board {
    rig: Rig,
    seed: u64,
    variant: Variant,
    config: Value,
    sim: Sim,
    loaded: Option<(Array2<f32>, Array2<f32>)>,
    powered: Instant,
}

fn refuse(code: ErrorCode, detail: impl Into<String>) -> Message {
    Message::Error(Refusal::new(code, detail))
}

impl Board {
    pub fn new(rig: Rig, seed: u64, variant: Variant) -> Result<Self, String> {
        let config = rig.default_config();
        let sim = Sim::build(rig, &config, seed, variant)?;
        Ok(Board {
            rig,
            seed,
            variant,
            config,
            sim,
            loaded: None,
            powered: Instant::now(),
        })
    }

    pub fn spec(&self) -> &DeviceSpec {
        self.sim.spec()
    }

    pub fn identity(&self) -> Identity {
        let s = self.spec();
        Identity {
            model: format!("hilt-{}-board (firmware-sim)", self.rig.as_str()),
            serial: format!("FWSIM-{}-{:08x}", self.rig.as_str(), self.seed),
            firmware: env!("CARGO_PKG_VERSION").to_string(),
            protocol: VERSIONS,
            capabilities: Capabilities {
                rig: self.rig.as_str().to_string(),
                n_in: s.n_in as u32,
                n_par: s.n_par as u32,
                n_out: s.n_out as u32,
                max_rows: MAX_ROWS as u32,
                max_repeats: MAX_REPEATS,
                input_range: [s.input_range.min, s.input_range.max],
                param_range: [s.param_range.min, s.param_range.max],
                seconds_per_sample: s.seconds_per_sample,
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
        let sim = Sim::build(self.rig, &config, self.seed, self.variant)
            .map_err(|e| Refusal::new(ErrorCode::OutOfRange, e))?;
        self.sim = sim;
        self.config = config;
        self.loaded = None;
        Ok(())
    }

    fn load(&mut self, d: Drive) -> Message {
        let s = self.spec();
        let rows = d.rows as usize;
        if rows == 0 || rows > MAX_ROWS {
            return refuse(
                ErrorCode::OutOfRange,
                format!("rows {rows} is not in 1..={MAX_ROWS}"),
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
        let x = Array2::from_shape_vec((rows, s.n_in), d.x).expect("length checked");
        let theta = Array2::from_shape_vec((theta_rows, s.n_par), d.theta).expect("length checked");
        self.loaded = Some((x, theta));
        Message::Loaded { rows: d.rows }
    }

    async fn acquire(&mut self, repeats: u32) -> Message {
        let Some((x, theta)) = self.loaded.clone() else {
            return refuse(ErrorCode::NotReady, "no drive loaded");
        };
        if repeats == 0 || repeats > MAX_REPEATS {
            return refuse(
                ErrorCode::OutOfRange,
                format!("repeats {repeats} is not in 1..={MAX_REPEATS}"),
            );
        }
        let batch = Batch {
            x,
            theta,
            repeats,
            return_repeats: true,
        };
        match self.sim.execute(batch).await {
            Ok(m) => Message::Result(Acquisition {
                rows: m.y.nrows() as u32,
                repeats,
                y: m.y_repeats
                    .map(|a| a.into_iter().collect())
                    .unwrap_or_default(),
                applied_x: m.applied_x.into_iter().collect(),
                applied_theta: m.applied_theta.into_iter().collect(),
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

#[cfg(test)]
mod tests;
