//! The devices this daemon serves, built from the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use hilt_core::{Device, DeviceSpec};
use hilt_drivers::{LoopbackModel, SimDevice, DeviceSettings};
use hilt_physics::PhysicalModel;
use hilt_physics::circuit::CircuitModel;
use hilt_physics::plate::PlateModel;
use hilt_physics::shg::ShgModel;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::actor::{self, ActorHandle};
use crate::config::{BackendKind, Config, DeviceConfig, DeviceKind};
use crate::lease::Leases;
use crate::status::StatusHub;

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
    let BackendKind::Sim = d.backend;
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
    fn sim<M: PhysicalModel>(
        model: M,
        settings: DeviceSettings,
        depth: usize,
    ) -> Result<(DeviceEntry, JoinHandle<()>), String> {
        Ok(start(
            SimDevice::new(model, settings).map_err(|e| e.to_string())?,
            depth,
        ))
    }
    match d.kind {
        DeviceKind::Shg => {
            let model = ShgModel::new(d.shg.clone().unwrap_or_default(), d.model, d.seed)
                .map_err(|e| format!("shg.{e}"))?;
            sim(model, settings, depth)
        }
        DeviceKind::Plate => {
            let model = PlateModel::new(d.plate.clone().unwrap_or_default(), d.model, d.seed)
                .map_err(|e| format!("plate.{e}"))?;
            sim(model, settings, depth)
        }
        DeviceKind::Circuit => {
            let model = CircuitModel::new(d.circuit.clone().unwrap_or_default(), d.model, d.seed)
                .map_err(|e| format!("circuit.{e}"))?;
            sim(model, settings, depth)
        }
        DeviceKind::Loopback => {
            let lb = d
                .loopback
                .as_ref()
                .ok_or("kind 'loopback' needs [device.loopback]")?;
            if lb.n_in == 0 || lb.n_in > 1 << 16 || lb.n_par > 1 << 16 {
                return Err("loopback: n_in must be 1..=65536 and n_par at most 65536".into());
            }
            sim(LoopbackModel::new(lb.n_in, lb.n_par), settings, depth)
        }
    }
}

fn start<D: Device>(device: D, depth: usize) -> (DeviceEntry, JoinHandle<()>) {
    let spec = Arc::new(device.spec().clone());
    let status = Arc::new(StatusHub::new(spec.calibration_id.clone()));
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
