//! hiltd's TOML configuration. Unknown keys are errors (a misspelt limit
//! must never be silently ignored), and every error names the file, the
//! line and the key.

use std::net::SocketAddr;
use std::path::Path;

use hilt_core::{LimitPolicy, Range};
use hilt_physics::Variant;
use hilt_physics::circuit::CircuitConfig;
use hilt_physics::plate::PlateConfig;
use hilt_physics::shg::ShgConfig;
use serde::Deserialize;
use toml::Spanned;

use crate::Error;

/// What hiltd serves when started without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// Where the text came from, for error messages.
    #[serde(skip)]
    pub origin: String,
    #[serde(skip)]
    source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Loopback unless told otherwise: a rig is not for the whole network.
    pub listen: SocketAddr,
    /// Lease lifetime after last use when the client asks for none.
    pub lease_ttl_s: f64,
    pub max_lease_ttl_s: f64,
    /// Batches queued per device before submitters wait.
    pub queue_depth: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            lease_ttl_s: 30.0,
            max_lease_ttl_s: 3600.0,
            queue_depth: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Shg,
    Plate,
    Circuit,
    Loopback,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Shg => "shg",
            DeviceKind::Plate => "plate",
            DeviceKind::Circuit => "circuit",
            DeviceKind::Loopback => "loopback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Sim,
    /// A real rig's interface board on a serial port (`[device.serial]`).
    Serial,
}

/// How to reach a board: `[device.serial]`. Timeouts in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialConfig {
    /// e.g. `/dev/hilt-shg` (deploy/99-hilt.rules names the boards).
    pub port: std::path::PathBuf,
    pub baud: u32,
    /// Per request; an Acquire also gets its rows' measuring time.
    pub timeout_ms: u64,
    /// Silence that ends the flush of stale input after a fault.
    pub quiet_ms: u64,
    /// Attempts for idempotent requests.
    pub attempts: u32,
    pub heartbeat_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for SerialConfig {
    fn default() -> Self {
        let d = hilt_drivers::serial::SerialSettings::new("");
        SerialConfig {
            port: d.port,
            baud: d.baud,
            timeout_ms: d.link.timeout.as_millis() as u64,
            quiet_ms: d.link.quiet.as_millis() as u64,
            attempts: d.link.attempts,
            heartbeat_ms: d.heartbeat.as_millis() as u64,
            reconnect_min_ms: d.reconnect_min.as_millis() as u64,
            reconnect_max_ms: d.reconnect_max.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: Spanned<String>,
    pub kind: DeviceKind,
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub seed: u64,
    /// Simulator variant: `true` (reality's stand-in) or `nominal`.
    #[serde(default)]
    pub model: Variant,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_max_repeats")]
    pub max_repeats: u32,
    /// Hold the device this long per sample (row × repeat) of wall time.
    pub emulate_seconds_per_sample: Option<f64>,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub shg: Option<ShgConfig>,
    pub plate: Option<PlateConfig>,
    pub circuit: Option<CircuitConfig>,
    pub loopback: Option<LoopbackConfig>,
    /// Required for `backend = "serial"`.
    pub serial: Option<SerialConfig>,
}

fn default_max_batch() -> usize {
    4096
}

fn default_max_repeats() -> u32 {
    64
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// `[min, max]` for every input; absent = the actuator's full range.
    pub input: Option<[f32; 2]>,
    pub param: Option<[f32; 2]>,
    #[serde(default)]
    pub policy: LimitPolicy,
}

impl LimitsConfig {
    pub fn input_range(&self) -> Option<Range> {
        self.input.map(|[a, b]| Range::new(a, b))
    }

    pub fn param_range(&self) -> Option<Range> {
        self.param.map(|[a, b]| Range::new(a, b))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopbackConfig {
    pub n_in: usize,
    #[serde(default)]
    pub n_par: usize,
}

impl Config {
    pub fn embedded_default() -> Self {
        Config::parse(DEFAULT_CONFIG, "<embedded default config>")
            .expect("the embedded default config is valid (tested)")
    }

    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: cannot read config: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and check everything that does not need a device built.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        cfg.origin = origin.to_string();
        cfg.source = text.to_string();
        cfg.check()?;
        Ok(cfg)
    }

    /// `file:line: device 'id'` — where to look for a device's problem.
    pub fn locate(&self, dev: &DeviceConfig) -> String {
        let line = self.source[..dev.id.span().start.min(self.source.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1;
        format!("{}:{line}: device '{}'", self.origin, dev.id.get_ref())
    }

    fn check(&self) -> Result<(), Error> {
        let s = &self.server;
        if !(s.lease_ttl_s.is_finite() && s.lease_ttl_s > 0.0) {
            return Err(Error::Config(format!(
                "{}: server.lease_ttl_s must be > 0",
                self.origin
            )));
        }
        if !(s.max_lease_ttl_s.is_finite() && s.max_lease_ttl_s >= s.lease_ttl_s) {
            return Err(Error::Config(format!(
                "{}: server.max_lease_ttl_s must be finite and >= lease_ttl_s",
                self.origin
            )));
        }
        if s.queue_depth == 0 {
            return Err(Error::Config(format!(
                "{}: server.queue_depth must be >= 1",
                self.origin
            )));
        }
        if self.devices.is_empty() {
            return Err(Error::Config(format!(
                "{}: no [[device]] entries: hiltd would serve nothing",
                self.origin
            )));
        }
        for (i, d) in self.devices.iter().enumerate() {
            let at = self.locate(d);
            let id = d.id.get_ref();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(Error::Config(format!(
                    "{at}: id must be non-empty ASCII letters, digits, '_', '-' or '.'"
                )));
            }
            if self.devices[..i].iter().any(|o| o.id.get_ref() == id) {
                return Err(Error::Config(format!("{at}: duplicate device id")));
            }
            let tables = [
                (DeviceKind::Shg, d.shg.is_some()),
                (DeviceKind::Plate, d.plate.is_some()),
                (DeviceKind::Circuit, d.circuit.is_some()),
                (DeviceKind::Loopback, d.loopback.is_some()),
            ];
            if let Some((other, _)) = tables.iter().find(|(k, given)| *given && *k != d.kind) {
                return Err(Error::Config(format!(
                    "{at}: [device.{}] given for a device of kind '{}'",
                    other.as_str(),
                    d.kind.as_str()
                )));
            }
            match (d.backend, &d.serial) {
                (BackendKind::Serial, None) => {
                    return Err(Error::Config(format!(
                        "{at}: backend 'serial' needs a [device.serial] table with port"
                    )));
                }
                (BackendKind::Sim, Some(_)) => {
                    return Err(Error::Config(format!(
                        "{at}: [device.serial] given for backend 'sim' (set backend = \"serial\")"
                    )));
                }
                _ => {}
            }
            if d.backend == BackendKind::Serial {
                if d.kind == DeviceKind::Loopback {
                    return Err(Error::Config(format!(
                        "{at}: kind 'loopback' has no board: use backend 'sim'"
                    )));
                }
                if d.emulate_seconds_per_sample.is_some() {
                    return Err(Error::Config(format!(
                        "{at}: emulate_seconds_per_sample is for simulated devices; a real rig \
                         takes the time it takes"
                    )));
                }
            }
            if d.kind == DeviceKind::Loopback && d.loopback.is_none() {
                return Err(Error::Config(format!(
                    "{at}: kind 'loopback' needs a [device.loopback] table with n_in"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_serves_the_three_rigs() {
        let c = Config::embedded_default();
        let ids: Vec<&str> = c.devices.iter().map(|d| d.id.get_ref().as_str()).collect();
        assert_eq!(ids, ["shg0", "plate0", "circuit0", "loopback0"]);
        assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\n[device.limits]\npolicy = \"reject\"\nmaxx = 3\n";
        let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
        assert!(e.starts_with("lab.toml: "), "{e}");
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("maxx"), "{e}");
    }

    #[test]
    fn misspelt_physics_key_is_rejected() {
        let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\n[device.shg]\nn_chanels = 32\n";
        let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains("n_chanels") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn duplicate_ids_point_at_the_second_entry() {
        let text =
            "[[device]]\nid = \"a\"\nkind = \"shg\"\n\n[[device]]\nid = \"a\"\nkind = \"shg\"\n";
        let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
        assert_eq!(e, "lab.toml:6: device 'a': duplicate device id");
    }

    #[test]
    fn bad_policy_and_kind_mismatch_are_named() {
        let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nlimits = { policy = \"wrap\" }\n";
        let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains("wrap") && e.contains("reject"), "{e}");
        let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nloopback = { n_in = 2 }\n";
        let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "lab.toml:2: device 'a': [device.loopback] given for a device of kind 'shg'"
        );
    }

    #[test]
    fn serial_backend_needs_its_table_and_nothing_simulated() {
        let dev = "[[device]]\nid = \"a\"\nkind = \"shg\"\n";
        let e = Config::parse(&format!("{dev}backend = \"serial\"\n"), "lab.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "lab.toml:2: device 'a': backend 'serial' needs a [device.serial] table with port"
        );
        let e = Config::parse(
            &format!("{dev}[device.serial]\nport = \"/dev/x\"\n"),
            "lab.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("given for backend 'sim'"), "{e}");
        let text = format!(
            "{dev}backend = \"serial\"\nemulate_seconds_per_sample = 0.1\n[device.serial]\nport = \"/dev/x\"\n"
        );
        let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
        assert!(
            e.contains("emulate_seconds_per_sample is for simulated"),
            "{e}"
        );
        let text = format!(
            "{dev}backend = \"serial\"\n[device.serial]\nport = \"/dev/x\"\nbaud_rate = 9600\n"
        );
        let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains("baud_rate") && e.contains("line 7"), "{e}");
        let text = format!("{dev}backend = \"serial\"\n[device.serial]\nport = \"/dev/x\"\n");
        let c = Config::parse(&text, "lab.toml").unwrap();
        let s = c.devices[0].serial.as_ref().unwrap();
        assert_eq!((s.baud, s.timeout_ms, s.attempts), (115_200, 2000, 3));
    }

    #[test]
    fn every_example_in_deploy_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("deploy/ exists") {
            let p = entry.expect("readable").path();
            if p.extension().is_some_and(|e| e == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1, "no example configs in deploy/");
    }
}
