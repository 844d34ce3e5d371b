//! Which devices a run uses: those named on the command line, checked
//! against the network before anything is leased, or, when none is named,
//! the first that fit among what the daemon describes. Either way a
//! choice that cannot work is refused with the devices that would.

use std::collections::HashMap;

use hilt_core::DeviceSpec;

use crate::data::Task;
use crate::error::{Error, Result};
use crate::presets::Architecture;
use crate::session::SessionConfig;
use crate::train::Method;

/// Whether `cfg` (its devices set) resolves on `devices`, and why not.
fn fits(
    cfg: &SessionConfig,
    devices: &HashMap<String, DeviceSpec>,
) -> std::result::Result<(), String> {
    let mut spec = match cfg.train.method {
        // The digital baseline has no device of its own: its physical
        // reference must fit.
        Method::Digital => cfg.physical_network(),
        _ => cfg.network(devices).map_err(|e| e.to_string())?,
    };
    spec.resolve(devices).map_err(|e| e.to_string())
}

/// The devices a layer set would use, for messages.
fn name(device: &str, hidden: Option<&str>) -> String {
    match hidden {
        Some(h) if h != device => format!("{device} (hidden layers on {h})"),
        _ => device.to_string(),
    }
}

/// Rank of a device kind for a network: the paper's rig first (the SHG
/// rig for the vowels and for the hybrid image network, whose physical
/// layer sits between digital ones; the plate for all-physical images).
fn kind_rank(task: Task, arch: Architecture, kind: &str) -> usize {
    let order: &[&str] = match (task, arch) {
        (Task::Vowels, _) | (_, Architecture::Hybrid) => &["shg", "plate", "circuit"],
        (Task::Mnist | Task::FashionMnist, Architecture::Physical) => &["plate", "circuit", "shg"],
    };
    order.iter().position(|k| *k == kind).unwrap_or(order.len())
}

/// Settle `cfg.device` and `cfg.hidden_device` on the daemon's `devices`:
/// the named ones if they fit, else the first that fit (of `kind`, if
/// given). `cfg.device` empty means none was named.
pub fn pick(cfg: &mut SessionConfig, devices: &[DeviceSpec], kind: Option<&str>) -> Result<()> {
    let map: HashMap<String, DeviceSpec> =
        devices.iter().map(|d| (d.id.clone(), d.clone())).collect();
    let single = cfg.layers <= 1
        || cfg.train.method == Method::Phyll
        || cfg.architecture == Architecture::Hybrid;
    let mut candidates: Vec<(&DeviceSpec, Option<&DeviceSpec>)> = Vec::new();
    for r in devices {
        if single {
            candidates.push((r, None));
        } else {
            candidates.extend(devices.iter().map(|h| (r, Some(h))));
        }
    }
    let (task, arch) = (cfg.task, cfg.architecture);
    candidates.retain(|(r, h)| kind.is_none_or(|k| r.kind == k && h.is_none_or(|h| h.kind == k)));
    // Same rig for every layer first, the task's own rig first, then the
    // daemon's order.
    candidates.sort_by_key(|(r, h)| {
        (
            h.is_some_and(|h| h.kind != r.kind),
            kind_rank(task, arch, &r.kind.to_string()),
        )
    });
    // Each candidate is tried on `cfg` itself (a copy would copy the data
    // set with it), which gets the devices named back afterwards.
    let named = (cfg.device.clone(), cfg.hidden_device.clone());
    let mut fitting: Vec<(String, Option<String>)> = Vec::new();
    for (r, h) in &candidates {
        cfg.device = r.id.clone();
        cfg.hidden_device = h.map(|h| h.id.clone());
        if fits(cfg, &map).is_ok() {
            fitting.push((r.id.clone(), h.map(|h| h.id.clone())));
        }
    }
    (cfg.device, cfg.hidden_device) = named;
    let listing = || {
        if fitting.is_empty() {
            let served: Vec<String> = devices
                .iter()
                .map(|d| format!("{} ({} {}→{})", d.id, d.kind, d.n_in, d.n_out))
                .collect();
            format!(
                "no device this daemon serves fits; it serves {}",
                served.join(", ")
            )
        } else {
            let names: Vec<String> = fitting
                .iter()
                .take(8)
                .map(|(r, h)| name(r, h.as_deref()))
                .collect();
            format!("devices that fit: {}", names.join("; "))
        }
    };
    let what = format!(
        "the {} network of {} ({} physical layer(s))",
        cfg.train.method.as_str(),
        cfg.task.as_str(),
        cfg.layers
    );
    if !cfg.device.is_empty() {
        if !map.contains_key(&cfg.device) {
            return Err(Error::invalid(format!(
                "--device {}: this daemon does not serve it; {}",
                cfg.device,
                listing()
            )));
        }
        return fits(cfg, &map).map_err(|why| {
            Error::invalid(format!(
                "--device {}: does not fit {what}: {why}; {}",
                name(&cfg.device, cfg.hidden_device.as_deref()),
                listing()
            ))
        });
    }
    match fitting.first() {
        Some((r, h)) => {
            cfg.device = r.clone();
            cfg.hidden_device = h.clone();
            Ok(())
        }
        None => Err(Error::invalid(format!("{what}: {}", listing()))),
    }
}
