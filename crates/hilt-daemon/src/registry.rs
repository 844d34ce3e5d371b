//! The devices this daemon serves, built from the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use hilt_core::{Device, DeviceSpec, DeviceState};
use std::time::Duration;

use hilt_drivers::serial::{Connector, LinkState, SerialDevice, SerialPort, SerialSettings};
use hilt_drivers::{DeviceSettings, LoopbackModel, SimDevice};
use hilt_physics::PhysicalModel;
use hilt_physics::circuit::CircuitModel;
use hilt_physics::plate::PlateModel;
use hilt_physics::shg::ShgModel;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::actor::{self, ActorHandle};
use crate::config::{BackendKind, Config, DeviceConfig, DeviceKind, SerialConfig};
use crate::lease::Leases;
use crate::status::{EventKind, StatusHub};

#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub spec: Arc<DeviceSpec>,
    pub actor: ActorHandle,
    pub leases: Arc<Leases>,
    pub status: Arc<StatusHub>,
}

#[derive(Debug)]
pub struct Registry {
    devices: BTreeMap<String, DeviceEntry>,
}

impl Registry {
    /// Build every device or none: a config with one bad device refuses to
    /// start rather than serving a partial lab.
    pub fn build(
        cfg: &Config,
        stop: &CancellationToken,
    ) -> Result<(Self, Vec<JoinHandle<()>>), Error> {
        let mut devices = BTreeMap::new();
        let mut tasks = Vec::new();
        for d in &cfg.devices {
            let at = cfg.locate(d);
            let (entry, actor_task) =
                build_device(cfg, d).map_err(|e| Error::Config(format!("{at}: {e}")))?;
            tasks.push(actor_task);
            tasks.push(tokio::spawn(
                Arc::clone(&entry.leases).run_expiry(stop.clone()),
            ));
            devices.insert(d.id.get_ref().clone(), entry);
        }
        Ok((Registry { devices }, tasks))
    }

    pub fn get(&self, id: &str) -> Result<&DeviceEntry, Error> {
        if id.is_empty() {
            return Err(Error::InvalidArgument {
                field: "device_id",
                reason: "required".into(),
            });
        }
        self.devices.get(id).ok_or_else(|| Error::UnknownDevice {
            id: id.to_string(),
            known: self.devices.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &DeviceEntry> {
        self.devices.values()
    }

    /// The device whose lease this is (or recently was).
    pub fn lease_owner(&self, lease_id: &str) -> Result<&DeviceEntry, Error> {
        if lease_id.is_empty() {
            return Err(Error::InvalidArgument {
                field: "lease_id",
                reason: "required".into(),
            });
        }
        self.devices
            .values()
            .find(|d| d.leases.knows(lease_id))
            .ok_or_else(|| Error::Lease(format!("'{lease_id}' is not a lease of this daemon")))
    }
}

fn build_device(cfg: &Config, d: &DeviceConfig) -> Result<(DeviceEntry, JoinHandle<()>), String> {
    let settings = DeviceSettings {
        id: d.id.get_ref().clone(),
        seed: d.seed,
        input_limits: d.limits.input_range(),
        param_limits: d.limits.param_range(),
        policy: d.limits.policy,
        max_batch: d.max_batch,
        max_repeats: d.max_repeats,
        emulate_seconds_per_sample: d.emulate_seconds_per_sample,
    };
    let depth = cfg.server.queue_depth;
    let how = Backend {
        settings,
        depth,
        serial: match d.backend {
            BackendKind::Sim => None,
            BackendKind::Serial => d.serial.clone(),
        },
    };
    match d.kind {
        DeviceKind::Shg => {
            let physics = d.shg.clone().unwrap_or_default();
            let model =
                ShgModel::new(physics.clone(), d.model, d.seed).map_err(|e| format!("shg.{e}"))?;
            how.start(model, &physics)
        }
        DeviceKind::Plate => {
            let physics = d.plate.clone().unwrap_or_default();
            let model = PlateModel::new(physics.clone(), d.model, d.seed)
                .map_err(|e| format!("plate.{e}"))?;
            how.start(model, &physics)
        }
        DeviceKind::Circuit => {
            let physics = d.circuit.clone().unwrap_or_default();
            let model = CircuitModel::new(physics.clone(), d.model, d.seed)
                .map_err(|e| format!("circuit.{e}"))?;
            how.start(model, &physics)
        }
        DeviceKind::Loopback => {
            let lb = d
                .loopback
                .as_ref()
                .ok_or("kind 'loopback' needs [device.loopback]")?;
            if lb.n_in == 0 || lb.n_in > 1 << 16 || lb.n_par > 1 << 16 {
                return Err("loopback: n_in must be 1..=65536 and n_par at most 65536".into());
            }
            how.start(LoopbackModel::new(lb.n_in, lb.n_par), &())
        }
    }
}

/// Which backend measures a device's physics.
struct Backend {
    settings: DeviceSettings,
    depth: usize,
    serial: Option<SerialConfig>,
}

impl Backend {
    /// In process, `model` measures. On a board, `model` only gives the
    /// spec, and `physics` (the device's physics table, every key) is sent
    /// as the board's configuration, so host and board agree by
    /// construction and a replugged board gets all of it back.
    fn start<M: PhysicalModel, P: serde::Serialize>(
        self,
        model: M,
        physics: &P,
    ) -> Result<(DeviceEntry, JoinHandle<()>), String> {
        let Some(sc) = self.serial else {
            let dev = SimDevice::new(model, self.settings).map_err(|e| e.to_string())?;
            let status = Arc::new(StatusHub::new(dev.spec().calibration_id.clone()));
            return Ok(start(dev, self.depth, status));
        };
        let mut serial = SerialSettings::new(sc.port.clone());
        serial.baud = sc.baud;
        serial.link.timeout = Duration::from_millis(sc.timeout_ms);
        serial.link.quiet = Duration::from_millis(sc.quiet_ms);
        serial.link.attempts = sc.attempts;
        serial.heartbeat = Duration::from_millis(sc.heartbeat_ms);
        serial.reconnect_min = Duration::from_millis(sc.reconnect_min_ms);
        serial.reconnect_max = Duration::from_millis(sc.reconnect_max_ms);
        serial.configure = board_configuration(physics)?;
        let port = SerialPort {
            path: sc.port,
            baud: sc.baud,
        };
        // The hub exists before the driver, in the driver's first state,
        // so no state change is missed.
        let status = Arc::new(StatusHub::new(String::new()));
        status.update(EventKind::StateChanged, |st| {
            st.state = DeviceState::Connecting;
            st.detail = format!("opening {}", port.describe());
        });
        let hub = Arc::clone(&status);
        let observer = Arc::new(move |s: &LinkState| {
            hub.update(EventKind::StateChanged, |st| {
                st.state = s.state;
                st.detail.clone_from(&s.detail);
                st.calibration_id.clone_from(&s.calibration_id);
            });
        });
        let dev = SerialDevice::new(&model, self.settings, serial, port, observer)
            .map_err(|e| e.to_string())?;
        Ok(start(dev, self.depth, status))
    }
}

/// A physics table as Configure entries: dotted keys; strings as they are,
/// everything else as JSON text (what `docs/wire-protocol.md` specifies).
fn board_configuration<P: serde::Serialize>(physics: &P) -> Result<Vec<(String, String)>, String> {
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let value = serde_json::to_value(physics).map_err(|e| format!("physics table: {e}"))?;
    let mut out = Vec::new();
    if !value.is_null() {
        flatten("", &value, &mut out);
    }
    Ok(out)
}

fn start<D: Device>(
    device: D,
    depth: usize,
    status: Arc<StatusHub>,
) -> (DeviceEntry, JoinHandle<()>) {
    let spec = Arc::new(device.spec().clone());
    let leases = Leases::new(spec.id.clone(), Arc::clone(&status));
    let (actor, task) = actor::spawn(device, depth, Arc::clone(&status));
    (
        DeviceEntry {
            spec,
            actor,
            leases,
            status,
        },
        task,
    )
}
