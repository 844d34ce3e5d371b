//! The devices this daemon serves, built from the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use hilt_core::{Device, DeviceSpec, DeviceState, DeviceStatus, FirmwareIdentity};
use hilt_drivers::serial::{LinkState, SerialDevice, configuration_entries};
use hilt_drivers::{ReplayDevice, SimDevice, SimSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::actor::{self, ActorHandle};
use crate::config::{BackendConfig, Config, DeviceConfig, RecordingConfig};
use crate::error::quote;
use crate::halt::Halt;
use crate::interlock::Interlock;
use crate::lease::Leases;
use crate::metrics::{DeviceMetrics, Metrics};
use crate::recording::DeviceRecording;
use crate::status::{EventKind, StatusHub};

/// One served device: what it is, who may use it, what it is doing.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    /// Sizes, limits and physics, fixed while the daemon runs.
    pub spec: Arc<DeviceSpec>,
    pub actor: ActorHandle,
    pub leases: Arc<Leases>,
    pub status: Arc<StatusHub>,
    /// Budgets the batches of this device are charged against.
    pub interlock: Arc<Interlock>,
    pub metrics: DeviceMetrics,
    /// Where its measurements are kept, if anywhere.
    pub recording: Option<Arc<DeviceRecording>>,
}

impl DeviceEntry {
    /// The spec with who measures now: a real rig's firmware and
    /// calibration id are the connected board's, known once it answered.
    pub fn live_spec(&self) -> DeviceSpec {
        let mut spec = DeviceSpec::clone(&self.spec);
        let status = self.status.snapshot();
        spec.calibration_id = status.calibration_id;
        spec.firmware = status.firmware;
        spec
    }
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
        metrics: &Metrics,
        halt: &Arc<Halt>,
        stop: &CancellationToken,
    ) -> Result<(Self, Vec<JoinHandle<()>>), Error> {
        let mut devices = BTreeMap::new();
        let mut tasks = Vec::new();
        for d in &cfg.devices {
            let limits = Limits {
                queue_depth: cfg.server.queue_depth.get(),
                max_waiters: cfg.server.max_waiters.get(),
                halt: Arc::clone(halt),
                recording: cfg.recording.clone().map(|r| (r, cfg.text_hash.clone())),
            };
            let (entry, actor_task) = build_device(d, limits, metrics, stop)
                .map_err(|e| Error::Config(format!("{}: {e}", d.location)))?;
            tasks.push(actor_task);
            tasks.push(tokio::spawn(
                Arc::clone(&entry.leases).run_expiry(stop.clone()),
            ));
            devices.insert(d.id.clone(), entry);
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
            id: quote(id),
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
            .ok_or_else(|| {
                Error::Lease(format!(
                    "'{}' is not a lease of this daemon",
                    quote(lease_id)
                ))
            })
    }
}

/// What every device gets from the daemon: bounds, and the halt.
#[derive(Debug, Clone)]
struct Limits {
    queue_depth: usize,
    max_waiters: usize,
    halt: Arc<Halt>,
    /// `[recording]` and the config's hash, if recording.
    recording: Option<(RecordingConfig, String)>,
}

fn build_device(
    d: &DeviceConfig,
    limits: Limits,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(DeviceEntry, JoinHandle<()>), String> {
    let parts = |status: Arc<StatusHub>, spec: &DeviceSpec| -> Result<Parts, String> {
        let recording = match &limits.recording {
            None => None,
            Some((cfg, hash)) => Some(Arc::new(DeviceRecording::open(
                cfg,
                spec,
                hash,
                Arc::clone(&status),
            )?)),
        };
        Ok(Parts {
            limits: limits.clone(),
            status,
            interlock: Interlock::new(d.interlock, spec.encoding.clone()),
            metrics: metrics.device(&d.id),
            recording,
        })
    };
    match &d.backend {
        BackendConfig::Sim {
            variant,
            seed,
            pace,
        } => {
            let model = d
                .physics
                .build_model(*variant, *seed)
                .map_err(|e| e.to_string())?;
            let sim = SimSettings {
                seed: *seed,
                pace: *pace,
            };
            let dev = SimDevice::new(model, d.settings.clone(), sim).map_err(|e| e.to_string())?;
            let spec = dev.spec();
            let status = StatusHub::ready(spec.calibration_id.clone(), spec.firmware.clone());
            let parts = parts(Arc::new(status), spec)?;
            Ok(start(dev, parts, stop))
        }
        BackendConfig::Replay { dir } => {
            let dev =
                ReplayDevice::open(dir, &d.id, d.kind().as_str()).map_err(|e| e.to_string())?;
            tracing::info!(device = %d.id, batches = dev.len(), recording = %dir.display(),
                "replaying a recorded session");
            let spec = dev.spec();
            let status = StatusHub::ready(spec.calibration_id.clone(), spec.firmware.clone());
            let parts = parts(Arc::new(status), spec)?;
            Ok(start(dev, parts, stop))
        }
        BackendConfig::Serial { link, host_model } => {
            // The host's model only gives the spec (sizes, ranges, the
            // actuator's grid); the physics table itself is sent as the
            // board's configuration, so host and board agree by
            // construction and a replugged board gets all of it back.
            let model = d
                .physics
                .build_model(*host_model, 0)
                .map_err(|e| e.to_string())?;
            let mut serial = link.clone();
            serial.configure = configuration_entries(&d.physics.to_json());
            // The hub exists before the driver, in the driver's first
            // state, so no state change is missed.
            let mut initial = DeviceStatus::ready(String::new(), FirmwareIdentity::default());
            initial.state = DeviceState::Connecting;
            initial.detail = format!("opening {}", serial.port.display());
            let status = Arc::new(StatusHub::new(initial));
            let hub = Arc::clone(&status);
            let observer = Arc::new(move |s: &LinkState| {
                hub.update(EventKind::StateChanged, |st| {
                    st.state = s.state;
                    st.detail.clone_from(&s.detail);
                    st.calibration_id.clone_from(&s.calibration_id);
                    st.firmware.clone_from(&s.firmware);
                });
            });
            let dev = SerialDevice::open(&model, d.settings.clone(), serial, observer)
                .map_err(|e| e.to_string())?;
            metrics.serial_link(&d.id, dev.link_counters());
            let parts = parts(status, dev.spec())?;
            Ok(start(dev, parts, stop))
        }
    }
}

/// What a device gets beside its driver.
struct Parts {
    limits: Limits,
    status: Arc<StatusHub>,
    interlock: Interlock,
    metrics: DeviceMetrics,
    recording: Option<Arc<DeviceRecording>>,
}

fn start<D: Device>(
    device: D,
    p: Parts,
    stop: &CancellationToken,
) -> (DeviceEntry, JoinHandle<()>) {
    let spec = Arc::new(device.spec().clone());
    let leases = Leases::new(spec.id.clone(), Arc::clone(&p.status), p.limits.max_waiters);
    let (actor, task) = actor::spawn(
        device,
        p.limits.queue_depth,
        Arc::clone(&p.status),
        p.metrics.clone(),
        p.limits.halt,
        p.recording.clone(),
        stop.clone(),
    );
    (
        DeviceEntry {
            spec,
            actor,
            leases,
            status: p.status,
            interlock: Arc::new(p.interlock),
            metrics: p.metrics,
            recording: p.recording,
        },
        task,
    )
}
