//! Drift sentinels. A twin is fitted once, but the rig keeps moving
//! (laser power, the shaper's registration creeping across the mask): once
//! it has moved far enough, PAT's backward pass is the Jacobian of a rig
//! that no longer exists, and training stalls or unlearns while every
//! forward pass still looks like a measurement. So a few probe rows per
//! device, drawn once, are re-measured every N training batches, and the
//! twin's error on them is compared with the error it had on its held-out
//! rows when it was fitted. Past `factor` times that, the run says so (log,
//! `metrics.json`, `epochs.csv`) and, if asked, records the device afresh
//! and refits its twin in place.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use hilt_core::{DeviceSpec, Measurement};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::array::{array2, tensor2};
use crate::error::{Error, Result};
use crate::fleet;
use crate::rig::Rig;
use crate::twin::{self, CollectOptions, FitOptions, Twin};

/// When and how the sentinels look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SentinelOptions {
    /// Re-measure the probes after every this many training batches.
    pub every: usize,
    /// Probe rows per device (random x and θ inside the device's ranges,
    /// as a twin's recording draws them), drawn once per run.
    pub rows: usize,
    /// Fire when the twin's error on the probes passes this many times its
    /// held-out error.
    pub factor: f64,
    /// On firing, record the device again and refit its twin in place.
    pub refit: bool,
}

impl SentinelOptions {
    /// Checked: a sentinel that never looks, looks at nothing or fires on
    /// the twin's own error is a mistake to refuse, not to run.
    pub fn new(every: usize, rows: usize, factor: f64, refit: bool) -> Result<Self> {
        if every == 0 || rows < 2 {
            return Err(Error::invalid(format!(
                "--sentinel-every {every} and --sentinel-rows {rows}: need at least 1 batch and 2 rows"
            )));
        }
        if !(factor > 1.0 && factor.is_finite()) {
            return Err(Error::invalid(format!(
                "--drift-factor {factor}: must be a finite number above 1 (times the twin's held-out error)"
            )));
        }
        Ok(SentinelOptions {
            every,
            rows,
            factor,
            refit,
        })
    }
}

/// How a twin is recorded and fitted again when its sentinel fires.
#[derive(Debug, Clone, Copy)]
pub struct Refit<'a> {
    /// Recording (samples, repeats).
    pub collect: &'a CollectOptions,
    /// Fitting.
    pub fit: &'a FitOptions,
    /// Where the new recordings and twins are written.
    pub dir: &'a Path,
}

/// A refit after a sentinel fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refitted {
    /// The new twin's file.
    pub file: String,
    /// Its held-out relative error.
    pub heldout_rel_error: f64,
    /// Its error on the probes that fired.
    pub probe_rel_error: f64,
    /// Rig samples the recording cost.
    pub rig_samples: u64,
}

/// A sentinel that fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftEvent {
    /// 1-based epoch, and training batches since the run began.
    pub epoch: usize,
    /// Batches done when it fired.
    pub step: usize,
    /// The device whose twin went stale.
    pub device: String,
    /// The twin's relative error on the probes now.
    pub probe_rel_error: f64,
    /// Its relative error on its held-out rows when fitted.
    pub heldout_rel_error: f64,
    /// `factor` × `heldout_rel_error`.
    pub threshold: f64,
    /// The refit, with `--refit-on-drift`.
    pub refit: Option<Refitted>,
}

/// The sentinels at an epoch's end, for a run that resumes: what fired,
/// which twins were refitted into which files, which devices are stale.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelState {
    /// Every event so far.
    pub events: Vec<DriftEvent>,
    /// Refits so far (numbering the refitted twins' files).
    pub refits: usize,
    /// Devices fired and not refitted.
    pub stale: Vec<String>,
    /// Probe error over held-out error at the latest check, per device.
    pub latest: BTreeMap<String, f64>,
}

impl SentinelState {
    /// The twin file each refitted device uses now: its latest refit.
    pub fn refitted_twins(&self) -> BTreeMap<String, String> {
        self.events
            .iter()
            .filter_map(|e| Some((e.device.clone(), e.refit.as_ref()?.file.clone())))
            .collect()
    }

    /// The device `from` is now reached as `to` (a daemon that moved).
    pub fn rename_device(&mut self, from: &str, to: &str) {
        for d in &mut self.stale {
            if d == from {
                *d = to.to_string();
            }
        }
        if let Some(r) = self.latest.remove(from) {
            self.latest.insert(to.to_string(), r);
        }
        for e in &mut self.events {
            if e.device == from {
                e.device = to.to_string();
            }
        }
    }
}

struct Probe {
    device: String,
    x: Array2<f32>,
    theta: Array2<f32>,
    /// Fired and not refitted: the next firings are recorded, not logged.
    stale: bool,
}

/// Every device's sentinel in one run.
pub(crate) struct Sentinels<'a> {
    opts: SentinelOptions,
    refit: Refit<'a>,
    probes: Vec<Probe>,
    events: Vec<DriftEvent>,
    /// Probe error over held-out error at the latest check, per device.
    latest: BTreeMap<String, f64>,
    events_reported: usize,
    refits: usize,
}

impl std::fmt::Debug for Sentinels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("opts", &self.opts)
            .field("devices", &self.latest.keys().collect::<Vec<_>>())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// Uniform probes inside `spec`'s ranges, seeded per device (and apart
/// from the twin's own recording, which `seed` alone seeds). By the
/// device's ID alone, not its daemon's address: a run resumed with the
/// daemon elsewhere draws the same probes.
fn draw(spec: &DeviceSpec, rows: usize, seed: u64) -> Result<(Array2<f32>, Array2<f32>)> {
    let id = fleet::split(&spec.id).0;
    let tag = id.bytes().fold(seed ^ 0x05e4_71e1, |h, b| {
        h.wrapping_mul(0x100_0000_01b3).wrapping_add(u64::from(b))
    });
    twin::uniform_probes(spec, rows, tag)
}

/// `twin`'s relative error on `m` (at its applied values), about the
/// measured outputs' own means: the measure of its held-out error.
fn probe_error(twin: &Twin, m: &Measurement) -> Result<f64> {
    let f = array2(&twin.forward(&tensor2(&m.applied_x)?, &tensor2(&m.applied_theta)?)?)?;
    let mean =
        m.y.mean_axis(ndarray::Axis(0))
            .ok_or_else(|| Error::invalid("a sentinel measured no rows"))?;
    Ok(twin::relative_error(f.view(), m.y.view(), mean.view())?.0)
}

impl<'a> Sentinels<'a> {
    /// Probes for every device that has a twin.
    pub(crate) fn new(
        opts: SentinelOptions,
        refit: Refit<'a>,
        twins: &HashMap<String, Arc<Twin>>,
        seed: u64,
    ) -> Result<Self> {
        let mut ids: Vec<&String> = twins.keys().collect();
        ids.sort();
        let mut probes = Vec::new();
        for id in ids {
            let (x, theta) = draw(twins[id].spec(), opts.rows, seed)?;
            probes.push(Probe {
                device: id.clone(),
                x,
                theta,
                stale: false,
            });
        }
        Ok(Sentinels {
            opts,
            refit,
            probes,
            events: Vec::new(),
            latest: BTreeMap::new(),
            events_reported: 0,
            refits: 0,
        })
    }

    /// Whether the probes are due after `step` batches.
    pub(crate) fn due(&self, step: usize) -> bool {
        step > 0 && step.is_multiple_of(self.opts.every)
    }

    /// Measure every device's probes and compare; refit where asked.
    pub(crate) async fn check(
        &mut self,
        epoch: usize,
        step: usize,
        rigs: &mut HashMap<String, Rig>,
        twins: &mut HashMap<String, Arc<Twin>>,
        repeats: u32,
    ) -> Result<()> {
        for k in 0..self.probes.len() {
            let id = self.probes[k].device.clone();
            let (Some(rig), Some(twin)) = (rigs.get_mut(&id), twins.get(&id).cloned()) else {
                continue;
            };
            let p = &self.probes[k];
            let m = rig.execute(&p.x, &p.theta, repeats).await?;
            let err = probe_error(&twin, &m)?;
            let heldout = f64::from(twin.meta.heldout_rel_error).max(1e-6);
            let threshold = self.opts.factor * heldout;
            self.latest.insert(id.clone(), err / heldout);
            if err <= threshold {
                self.probes[k].stale = false;
                continue;
            }
            let refit = if self.opts.refit {
                let r = self.refit_twin(&id, rig, &m).await?;
                twins.insert(id.clone(), Arc::clone(&r.0));
                self.latest.insert(
                    id.clone(),
                    r.1.probe_rel_error / r.1.heldout_rel_error.max(1e-6),
                );
                Some(r.1)
            } else {
                None
            };
            if !self.probes[k].stale || refit.is_some() {
                tracing::warn!(device = %id, epoch, step,
                    probe_rel_error = err, heldout_rel_error = heldout,
                    refit = refit.as_ref().map(|r| r.file.as_str()),
                    "drift: the twin's error on the sentinel probes is past {:.1} × its held-out error",
                    self.opts.factor);
                if refit.is_none() {
                    eprintln!(
                        "warning: device '{id}' has drifted from its twin (probe error {:.1} %, \
                         {:.1} × its held-out {:.1} %, epoch {epoch}); --refit-on-drift would refit it",
                        100.0 * err,
                        err / heldout,
                        100.0 * heldout
                    );
                }
            }
            self.probes[k].stale = refit.is_none();
            self.events.push(DriftEvent {
                epoch,
                step,
                device: id,
                probe_rel_error: err,
                heldout_rel_error: heldout,
                threshold,
                refit,
            });
        }
        Ok(())
    }

    /// Record `id` afresh on its leased `rig` and fit a new twin.
    async fn refit_twin(
        &mut self,
        id: &str,
        rig: &mut Rig,
        probes: &Measurement,
    ) -> Result<(Arc<Twin>, Refitted)> {
        self.refits += 1;
        let before = rig.samples();
        let data = twin::collect(rig, self.refit.collect).await?;
        let spent = rig.samples() - before;
        let t = twin::fit(&data, self.refit.fit)?;
        crate::fsio::create_dir(self.refit.dir)?;
        let stem = format!("{}.refit{}", fleet::file_stem(id), self.refits);
        let file = self.refit.dir.join(format!("{stem}.safetensors"));
        data.save(&self.refit.dir.join(format!("{stem}.npz")))?;
        t.save(&file)?;
        let probe_rel_error = probe_error(&t, probes)?;
        let r = Refitted {
            file: file.display().to_string(),
            heldout_rel_error: f64::from(t.meta.heldout_rel_error),
            probe_rel_error,
            rig_samples: spent,
        };
        Ok((Arc::new(t), r))
    }

    /// Events since the last call, and the worst probe error over held-out
    /// error at the latest check: `epochs.csv`'s columns.
    pub(crate) fn epoch_summary(&mut self) -> (usize, Option<f64>) {
        let n = self.events.len() - self.events_reported;
        self.events_reported = self.events.len();
        (n, self.latest.values().copied().reduce(f64::max))
    }

    /// Where the sentinels stand (at an epoch's end, after its summary).
    pub(crate) fn state(&self) -> SentinelState {
        SentinelState {
            events: self.events.clone(),
            refits: self.refits,
            stale: self
                .probes
                .iter()
                .filter(|p| p.stale)
                .map(|p| p.device.clone())
                .collect(),
            latest: self.latest.clone(),
        }
    }

    /// Back to `state` (the probes are drawn again from the run's seed).
    pub(crate) fn restore(&mut self, state: SentinelState) {
        for p in &mut self.probes {
            p.stale = state.stale.contains(&p.device);
        }
        self.events_reported = state.events.len();
        self.events = state.events;
        self.refits = state.refits;
        self.latest = state.latest;
    }

    /// Every event of the run.
    pub(crate) fn into_events(self) -> Vec<DriftEvent> {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_could_never_fire_or_always_fire_are_refused() {
        assert!(SentinelOptions::new(0, 32, 3.0, false).is_err());
        assert!(SentinelOptions::new(10, 1, 3.0, false).is_err());
        assert!(SentinelOptions::new(10, 32, 1.0, false).is_err());
        assert!(SentinelOptions::new(10, 32, f64::NAN, false).is_err());
        let ok = SentinelOptions::new(10, 32, 3.0, true).unwrap();
        assert_eq!((ok.every, ok.rows, ok.refit), (10, 32, true));
    }
}
