//! hiltd's TOML configuration. The file is read into a raw form
//! (`config/raw.rs`, every key known, so a misspelt key is an error) and
//! then converted into types that cannot hold an invalid combination: a
//! device is one rig with its physics, and either a simulator (seed,
//! variant, pace) or a serial board (port, timeouts), never a mixture.
//! Every error names the file, the line and the key.

mod raw;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hilt_drivers::DeviceSettings;
use hilt_drivers::serial::SerialSettings;
use hilt_physics::{RigKind, RigPhysics, Variant};

use crate::Error;
use crate::auth::Token;
use crate::interlock::{Budget, InterlockConfig};
use hilt_record::{Fsync, OnError, WriterOptions};
use raw::{
    BackendKind, RawConfig, RawDevice, RawFsync, RawInterlock, RawOnError, RawRecording, RawServer,
    RawToken,
};

/// What hiltd serves when started without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `[server]` table.
    pub server: ServerConfig,
    /// The `[[device]]` entries, in file order, ids unique.
    pub devices: Vec<DeviceConfig>,
    /// `[recording]`: keep every measurement; `None`: keep nothing.
    pub recording: Option<RecordingConfig>,
    /// Where the text came from, for messages.
    pub origin: String,
    /// SHA-256 of the text (16 hex digits), in every record.
    pub text_hash: String,
}

/// `[recording]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    /// One directory per device under it (relative paths were taken
    /// relative to the config file).
    pub dir: PathBuf,
    /// Durability, segment size, retention.
    pub options: WriterOptions,
    /// When writing fails.
    pub on_error: OnError,
}

impl RecordingConfig {
    /// `dir` with every default: group commit every 200 ms, 64 MiB
    /// segments, nothing deleted, refuse batches that cannot be kept.
    pub fn with_dir(dir: PathBuf) -> Self {
        RecordingConfig {
            dir,
            options: WriterOptions {
                fsync: Fsync::Interval(DEFAULT_FSYNC_INTERVAL),
                segment_bytes: 64 << 20,
                retain_bytes: None,
                retain_age: None,
            },
            on_error: OnError::Refuse,
        }
    }
}

/// The group-commit window of `fsync = "interval"`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(200);

impl TryFrom<RawRecording> for RecordingConfig {
    type Error = String;

    fn try_from(r: RawRecording) -> Result<Self, String> {
        let fsync = match (r.fsync, r.fsync_interval_ms) {
            (RawFsync::Interval, ms) => {
                let ms = ms.unwrap_or(DEFAULT_FSYNC_INTERVAL.as_millis() as u64);
                if !(1..=60_000).contains(&ms) {
                    return Err(format!("fsync_interval_ms: {ms} is not in 1..=60000"));
                }
                Fsync::Interval(Duration::from_millis(ms))
            }
            (_, Some(_)) => {
                return Err("fsync_interval_ms is for fsync = \"interval\"".into());
            }
            (RawFsync::Always, None) => Fsync::Always,
            (RawFsync::Never, None) => Fsync::Never,
        };
        let size = |key: &str, v: f64, unit: f64| {
            if v.is_finite() && v > 0.0 && v * unit <= 1e15 {
                Ok((v * unit) as u64)
            } else {
                Err(format!("{key}: {v} must be > 0 and at most a petabyte"))
            }
        };
        let segment_bytes = size("segment_mb", r.segment_mb.unwrap_or(64.0), 1048576.0)?.max(4096);
        let retain_bytes = r
            .retain_gb
            .map(|v| size("retain_gb", v, 1073741824.0))
            .transpose()?;
        let retain_age = r
            .retain_days
            .map(|d| {
                seconds(d * 86_400.0)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .ok_or(format!("retain_days: {d} must be > 0"))
            })
            .transpose()?;
        Ok(RecordingConfig {
            dir: r.dir,
            options: WriterOptions {
                fsync,
                segment_bytes,
                retain_bytes,
                retain_age,
            },
            on_error: match r.on_error {
                RawOnError::Refuse => OnError::Refuse,
                RawOnError::Continue => OnError::Continue,
            },
        })
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Loopback unless told otherwise: a rig is not for the whole network.
    pub listen: SocketAddr,
    /// Lease lifetime after last use when the client asks for none.
    pub lease_ttl: Duration,
    /// The longest lease a client may ask for.
    pub max_lease_ttl: Duration,
    /// Batches queued per device before submitters wait.
    pub queue_depth: NonZeroUsize,
    /// After SIGTERM, how long connections may stay open before they are
    /// closed (an idle peer never closes its own).
    pub shutdown_grace: Duration,
    /// Where Prometheus scrapes `/metrics` (plain HTTP: keep it on
    /// loopback or a monitoring network); `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Clients waiting in line per device before `RESOURCE_EXHAUSTED`.
    pub max_waiters: NonZeroUsize,
    /// Open connections before new ones are closed at once (logged).
    pub max_connections: NonZeroUsize,
    /// `[server.tls]`; `None`: plaintext (refused beyond loopback unless
    /// `--insecure`).
    pub tls: Option<TlsFiles>,
    /// `[[server.token]]`; empty: no authentication (the same refusal).
    pub tokens: Vec<Token>,
}

/// `[server.tls]`: where the PEM files are (relative paths were taken
/// relative to the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Given: clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl ServerConfig {
    /// Whether a client beyond the lab PC could be let in: TLS and at
    /// least one token.
    pub fn is_secured(&self) -> bool {
        self.tls.is_some() && !self.tokens.is_empty()
    }
}

/// One `[[device]]`.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The id clients address it by.
    pub id: String,
    /// `file:line: device 'id'`: where to look for this device's problem.
    pub location: String,
    /// Which rig, with its physics table (the defaults if none was given).
    pub physics: RigPhysics,
    /// What measures it.
    pub backend: BackendConfig,
    /// Id, hard limits and batch sizes.
    pub settings: DeviceSettings,
    /// `[device.interlock]`: budgets over sliding windows.
    pub interlock: InterlockConfig,
}

/// What measures a device.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    /// The in-process simulator.
    Sim {
        /// `true` (reality's stand-in) or `nominal`.
        variant: Variant,
        /// Fixes mismatch, noise and drift.
        seed: u64,
        /// Hold the device this long per sample, as the real rig would.
        pace: Option<Duration>,
    },
    /// A real rig's interface board on a serial port.
    Serial {
        /// Port, line speed, timeouts.
        link: SerialSettings,
        /// The variant of the physics the board runs, for the host's
        /// model of it: `true` for a real rig (its actuator has a grid),
        /// `nominal` for an emulated board running the ideal physics.
        /// Only the spec's grid and ranges follow from it; nothing is
        /// measured with it and clients are not told it.
        host_model: Variant,
    },
    /// A recorded session served again: the spec and every answer come
    /// from the recording under `dir` (relative paths were taken relative
    /// to the config file).
    Replay {
        /// The recording directory (the one hiltd's `[recording] dir` was).
        dir: PathBuf,
    },
}

impl Config {
    /// The embedded default: the simulated rigs.
    pub fn embedded_default() -> Result<Self, Error> {
        Config::parse(DEFAULT_CONFIG, "<embedded default config>")
    }

    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: cannot read config: {e}", path.display())))?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        // Certificates and the recording sit beside the config that names
        // them, wherever hiltd was started from.
        if let Some(dir) = path.parent() {
            if let Some(tls) = config.server.tls.as_mut() {
                for p in [&mut tls.cert, &mut tls.key]
                    .into_iter()
                    .chain(tls.client_ca.as_mut())
                {
                    *p = dir.join(&*p);
                }
            }
            if let Some(r) = config.recording.as_mut() {
                r.dir = dir.join(&r.dir);
            }
            for d in &mut config.devices {
                if let BackendConfig::Replay { dir: replayed } = &mut d.backend {
                    *replayed = dir.join(&*replayed);
                }
            }
        }
        Ok(config)
    }

    /// Parse and check everything that does not need a device built.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        let line = |offset: usize| {
            text[..offset.min(text.len())]
                .bytes()
                .filter(|&b| b == b'\n')
                .count()
                + 1
        };
        let server = match raw.server {
            None => ServerConfig::try_from(RawServer::default())
                .map_err(|e| Error::Config(format!("{origin}: server.{e}")))?,
            Some(s) => {
                let at = line(s.span().start);
                ServerConfig::try_from(s.into_inner())
                    .map_err(|e| Error::Config(format!("{origin}:{at}: server.{e}")))?
            }
        };
        if raw.devices.is_empty() {
            return Err(Error::Config(format!(
                "{origin}: no [[device]] entries: hiltd would serve nothing"
            )));
        }
        let mut devices: Vec<DeviceConfig> = Vec::with_capacity(raw.devices.len());
        for d in raw.devices {
            let location = format!(
                "{origin}:{}: device '{}'",
                line(d.id.span().start),
                d.id.get_ref()
            );
            if devices.iter().any(|o| &o.id == d.id.get_ref()) {
                return Err(Error::Config(format!("{location}: duplicate device id")));
            }
            let mut device = DeviceConfig::try_from(d)
                .map_err(|reason| Error::Config(format!("{location}: {reason}")))?;
            device.location = location;
            devices.push(device);
        }
        for t in &server.tokens {
            for d in t.devices.iter().flatten() {
                if !devices.iter().any(|o| &o.id == d) {
                    return Err(Error::Config(format!(
                        "{origin}: server.token '{}': devices names '{d}', which is not a \
                         [[device]] of this config",
                        t.name
                    )));
                }
            }
        }
        let recording = match raw.recording {
            None => None,
            Some(r) => {
                let at = line(r.span().start);
                Some(
                    RecordingConfig::try_from(r.into_inner())
                        .map_err(|e| Error::Config(format!("{origin}:{at}: recording.{e}")))?,
                )
            }
        };
        let text_hash = hilt_record::short_hash(text);
        Ok(Config {
            server,
            devices,
            recording,
            origin: origin.to_string(),
            text_hash,
        })
    }
}

/// Seconds from the file as a duration, or why they cannot be one.
fn seconds(v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        // 1e300 reads better than its three hundred digits.
        let shown = if v.abs() < 1e9 {
            format!("{v}")
        } else {
            format!("{v:e}")
        };
        format!("{shown} is not a duration in seconds")
    })
}

impl TryFrom<RawServer> for ServerConfig {
    type Error = String;

    fn try_from(s: RawServer) -> Result<Self, String> {
        let lease_ttl = seconds(s.lease_ttl_s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or("lease_ttl_s must be > 0")?;
        let max_lease_ttl = seconds(s.max_lease_ttl_s)
            .ok()
            .filter(|d| *d >= lease_ttl)
            .ok_or("max_lease_ttl_s must be finite and >= lease_ttl_s")?;
        let queue_depth = NonZeroUsize::new(s.queue_depth).ok_or("queue_depth must be >= 1")?;
        let shutdown_grace = seconds(s.shutdown_grace_s)
            .ok()
            .filter(|d| *d <= Duration::from_secs(3600))
            .ok_or("shutdown_grace_s must be between 0 and 3600")?;
        let max_waiters = NonZeroUsize::new(s.max_waiters).ok_or("max_waiters must be >= 1")?;
        let max_connections =
            NonZeroUsize::new(s.max_connections).ok_or("max_connections must be >= 1")?;
        let mut tokens: Vec<Token> = Vec::with_capacity(s.tokens.len());
        for raw in s.tokens {
            let t = Token::try_from(raw)?;
            if tokens.iter().any(|o| o.name == t.name) {
                return Err(format!("token: two tokens are named '{}'", t.name));
            }
            if tokens.iter().any(|o| o.sha256 == t.sha256) {
                return Err(format!(
                    "token '{}': the same sha256 as another token (make a new one: \
                     hilt token new)",
                    t.name
                ));
            }
            tokens.push(t);
        }
        Ok(ServerConfig {
            listen: s.listen,
            lease_ttl,
            max_lease_ttl,
            queue_depth,
            shutdown_grace,
            metrics_listen: s.metrics_listen,
            max_waiters,
            max_connections,
            tls: s.tls.map(|t| TlsFiles {
                cert: t.cert,
                key: t.key,
                client_ca: t.client_ca,
            }),
            tokens,
        })
    }
}

impl TryFrom<RawToken> for Token {
    type Error = String;

    fn try_from(t: RawToken) -> Result<Self, String> {
        if !hilt_core::token::is_valid_name(&t.name) {
            return Err(format!(
                "token: name '{}' must be {}",
                crate::error::quote(&t.name),
                hilt_core::token::NAME_RULE
            ));
        }
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(t.sha256.trim(), &mut sha256).map_err(|_| {
            format!(
                "token '{}': sha256 must be 64 hex digits, the SHA-256 of the token \
                 (hilt token new prints it)",
                t.name
            )
        })?;
        Ok(Token {
            name: t.name,
            role: t.role,
            sha256,
            devices: t.devices.map(|d| d.into_iter().collect()),
        })
    }
}

/// A device id: what clients type and logs show.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err("id must be non-empty ASCII letters, digits, '_', '-' or '.'".into())
    }
}

impl TryFrom<RawDevice> for DeviceConfig {
    /// The reason; the caller adds where.
    type Error = String;

    fn try_from(mut d: RawDevice) -> Result<Self, String> {
        let id = d.id.get_ref().clone();
        check_id(&id)?;
        let kind = d.kind;
        let mut tables = d.tables();
        if let Some(other) = tables.iter().find(|t| t.kind() != kind) {
            return Err(format!(
                "[device.{}] given for a device of kind '{kind}'",
                other.kind()
            ));
        }
        if d.backend == BackendKind::Replay {
            return replay(d, kind, !tables.is_empty()).map(|backend| DeviceConfig {
                id: id.clone(),
                location: String::new(),
                physics: kind.default_physics().unwrap_or(RigPhysics::Loopback(
                    hilt_physics::LoopbackConfig { n_in: 1, n_par: 0 },
                )),
                backend,
                settings: DeviceSettings {
                    id,
                    input_limits: None,
                    param_limits: None,
                    policy: hilt_core::LimitPolicy::Reject,
                    max_batch: 0,
                    max_repeats: 0,
                },
                interlock: InterlockConfig::default(),
            });
        }
        if d.recording.is_some() {
            return Err("recording = \"DIR\" is for backend \"replay\"".into());
        }
        let physics = match tables.pop() {
            Some(table) => table,
            None => kind
                .default_physics()
                .ok_or_else(|| format!("kind '{kind}' needs a [device.{kind}] table with n_in"))?,
        };
        let backend = match (d.backend, d.serial.take()) {
            (BackendKind::Sim, Some(_)) => {
                return Err(
                    "[device.serial] given for backend 'sim' (set backend = \"serial\")".into(),
                );
            }
            (BackendKind::Sim, None) => BackendConfig::Sim {
                variant: d.model.unwrap_or_default(),
                seed: d.seed.unwrap_or(0),
                pace: d
                    .emulate_seconds_per_sample
                    .map(|v| seconds(v).map_err(|e| format!("emulate_seconds_per_sample: {e}")))
                    .transpose()?,
            },
            (BackendKind::Serial, None) => {
                return Err("backend 'serial' needs a [device.serial] table with port".into());
            }
            (BackendKind::Replay, _) => unreachable_backend()?,
            (BackendKind::Serial, Some(serial)) => {
                if !kind.has_board() {
                    return Err(format!("kind '{kind}' has no board: use backend 'sim'"));
                }
                if d.emulate_seconds_per_sample.is_some() {
                    return Err(
                        "emulate_seconds_per_sample is for simulated devices; a real rig \
                                takes the time it takes"
                            .into(),
                    );
                }
                if d.seed.is_some() {
                    return Err("seed is for simulated devices; a board's noise is its own".into());
                }
                BackendConfig::Serial {
                    link: serial,
                    host_model: d.model.unwrap_or_default(),
                }
            }
        };
        let interlock = d
            .interlock
            .take()
            .map(|i| interlock(i, kind))
            .transpose()?
            .unwrap_or_default();
        let settings = DeviceSettings {
            id: id.clone(),
            input_limits: d.limits.input_range(),
            param_limits: d.limits.param_range(),
            policy: d.limits.policy,
            max_batch: d.max_batch,
            max_repeats: d.max_repeats,
        };
        Ok(DeviceConfig {
            id,
            location: String::new(),
            physics,
            backend,
            settings,
            interlock,
        })
    }
}

/// `backend = "replay"`: only the id, the kind and where the recording is.
/// The spec, the limits and every answer are the recording's: anything
/// else would be ignored, so it is refused.
fn replay(d: RawDevice, kind: RigKind, has_physics: bool) -> Result<BackendConfig, String> {
    let extra = [
        (d.seed.is_some(), "seed"),
        (d.model.is_some(), "model"),
        (
            d.emulate_seconds_per_sample.is_some(),
            "emulate_seconds_per_sample",
        ),
        (d.serial.is_some(), "[device.serial]"),
        (d.interlock.is_some(), "[device.interlock]"),
        (
            d.limits.input.is_some() || d.limits.param.is_some(),
            "[device.limits]",
        ),
        (has_physics, &format!("[device.{kind}]")),
    ];
    if let Some((_, key)) = extra.iter().find(|(given, _)| *given) {
        return Err(format!(
            "{key} given for backend \"replay\": a replayed device serves the recorded spec \
             and answers, so only id, kind and recording apply"
        ));
    }
    let dir = d
        .recording
        .ok_or("backend \"replay\" needs recording = \"DIR\" (a [recording] dir of hiltd)")?;
    Ok(BackendConfig::Replay { dir })
}

/// The replay backend returns before the match that needs this arm.
fn unreachable_backend() -> Result<BackendConfig, String> {
    Err("backend \"replay\" is handled before the other backends".into())
}

/// `[device.interlock]` checked against the rig it protects.
fn interlock(i: RawInterlock, kind: RigKind) -> Result<InterlockConfig, String> {
    let positive = |key: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(format!("interlock.{key}: {v} must be finite and > 0"))
        }
    };
    let window = |key: &str, v: f64| {
        positive(key, v)?;
        seconds(v)
            .ok()
            .filter(|d| *d <= Duration::from_secs(86_400))
            .ok_or(format!(
                "interlock.{key}: {v} must be at most 86400 s (a day)"
            ))
    };
    let samples = match (i.max_samples_per_s, i.rate_window_s) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err("interlock.rate_window_s given without max_samples_per_s".into());
        }
        (Some(rate), w) => {
            let rate = positive("max_samples_per_s", rate)?;
            let window = window("rate_window_s", w.unwrap_or(1.0))?;
            Some(Budget {
                amount: rate * window.as_secs_f64(),
                window,
            })
        }
    };
    let drive_energy = match (i.drive_energy, i.drive_window_s) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "interlock: drive_energy and drive_window_s go together (a budget per window)"
                    .into(),
            );
        }
        (Some(_), Some(_)) if !kind.heats_with_drive() => {
            return Err(format!(
                "interlock.drive_energy: a {kind} rig is not heated by its drive; the \
                 drive-energy budget is for the plate and the circuit"
            ));
        }
        (Some(e), Some(w)) => Some(Budget {
            amount: positive("drive_energy", e)?,
            window: window("drive_window_s", w)?,
        }),
    };
    Ok(InterlockConfig {
        samples,
        drive_energy,
    })
}

impl DeviceConfig {
    /// The rig this device is.
    pub fn kind(&self) -> RigKind {
        self.physics.kind()
    }
}

#[cfg(test)]
mod tests;
