//! The config file exactly as written: every key known (a misspelt limit
//! must never be silently ignored), nothing yet checked against anything
//! else. `config.rs` turns it into types in which the invalid
//! combinations cannot be written down.

use std::net::SocketAddr;
use std::path::PathBuf;

use hilt_core::{LimitPolicy, Range};
use hilt_drivers::serial::SerialSettings;
use hilt_physics::circuit::CircuitConfig;
use hilt_physics::plate::PlateConfig;
use hilt_physics::shg::ShgConfig;
use hilt_physics::{LoopbackConfig, RigKind, RigPhysics, Variant};
use serde::Deserialize;
use toml::Spanned;

use crate::auth::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: Option<Spanned<RawServer>>,
    pub recording: Option<Spanned<RawRecording>>,
    #[serde(default, rename = "device")]
    pub devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub listen: SocketAddr,
    pub lease_ttl_s: f64,
    pub max_lease_ttl_s: f64,
    pub queue_depth: usize,
    pub shutdown_grace_s: f64,
    pub metrics_listen: Option<SocketAddr>,
    pub max_waiters: usize,
    pub max_connections: usize,
    pub tls: Option<RawTls>,
    #[serde(rename = "token")]
    pub tokens: Vec<RawToken>,
}

/// `[server.tls]`: PEM files, relative to the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// One `[[server.token]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub name: String,
    pub role: Role,
    pub sha256: String,
    pub devices: Option<Vec<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            // Loopback unless told otherwise: a rig is not for the whole
            // network.
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            lease_ttl_s: 30.0,
            max_lease_ttl_s: 3600.0,
            queue_depth: 16,
            shutdown_grace_s: 30.0,
            metrics_listen: None,
            max_waiters: 64,
            // Well under the 1 024 open files a process gets by default.
            max_connections: 256,
            tls: None,
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum BackendKind {
    #[default]
    Sim,
    Serial,
    Replay,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub id: Spanned<String>,
    pub kind: RigKind,
    #[serde(default)]
    pub backend: BackendKind,
    pub seed: Option<u64>,
    pub model: Option<Variant>,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_max_repeats")]
    pub max_repeats: u32,
    pub emulate_seconds_per_sample: Option<f64>,
    #[serde(default)]
    pub limits: RawLimits,
    pub interlock: Option<RawInterlock>,
    // One optional table per rig of `hilt_physics::RigKind`: the shape
    // of the file. `tables` hands them on as `RigPhysics`, and a test
    // checks every rig kind has its table here.
    pub shg: Option<ShgConfig>,
    pub plate: Option<PlateConfig>,
    pub circuit: Option<CircuitConfig>,
    pub loopback: Option<LoopbackConfig>,
    pub serial: Option<SerialSettings>,
    /// `backend = "replay"`: the recording directory to serve again.
    pub recording: Option<PathBuf>,
}

fn default_max_batch() -> usize {
    4096
}

fn default_max_repeats() -> u32 {
    64
}

impl RawDevice {
    /// The physics tables given, whichever rig each is for.
    pub fn tables(&mut self) -> Vec<RigPhysics> {
        [
            self.shg.take().map(RigPhysics::Shg),
            self.plate.take().map(RigPhysics::Plate),
            self.circuit.take().map(RigPhysics::Circuit),
            self.loopback.take().map(RigPhysics::Loopback),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// `[min, max]` for every input; absent = the actuator's full range.
    pub input: Option<[f32; 2]>,
    pub param: Option<[f32; 2]>,
    #[serde(default)]
    pub policy: LimitPolicy,
}

impl RawLimits {
    pub fn input_range(&self) -> Option<Range> {
        self.input.map(|[a, b]| Range::new(a, b))
    }

    pub fn param_range(&self) -> Option<Range> {
        self.param.map(|[a, b]| Range::new(a, b))
    }
}

/// `[device.interlock]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterlock {
    pub max_samples_per_s: Option<f64>,
    /// The window the sample rate is averaged over; default 1 s.
    pub rate_window_s: Option<f64>,
    pub drive_energy: Option<f64>,
    pub drive_window_s: Option<f64>,
}

/// `[recording]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecording {
    pub dir: PathBuf,
    #[serde(default)]
    pub fsync: RawFsync,
    pub fsync_interval_ms: Option<u64>,
    pub segment_mb: Option<f64>,
    pub retain_gb: Option<f64>,
    pub retain_days: Option<f64>,
    #[serde(default)]
    pub on_error: RawOnError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFsync {
    Always,
    #[default]
    Interval,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawOnError {
    #[default]
    Refuse,
    Continue,
}
