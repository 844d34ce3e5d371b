//! A leased device on a daemon, seen from the trainer: execute batches and
//! account for how long the rig itself spent measuring.

use std::time::Duration;

use hilt_client::{Client, Lease};
use hilt_core::{Batch, DeviceSpec, Measurement};
use ndarray::{Array2, Axis, Slice};

use crate::error::{Error, Result};

/// A leased device with its rig-time accounting.
#[derive(Debug)]
pub struct Rig {
    /// The device as it described itself when leased (its id the run's
    /// key for it, `ID@URL` for a device on another daemon).
    pub spec: DeviceSpec,
    /// The daemon's URL, named in its errors (set by a fleet: a run may
    /// span several daemons).
    pub server: Option<String>,
    lease: Lease,
    busy: Duration,
    samples: u64,
}

impl Rig {
    /// Describe and lease `device` (waiting, FIFO, if someone else holds it).
    pub async fn open(client: &Client, device: &str) -> Result<Self> {
        let (spec, _) = client.describe(device).await?;
        let lease = client.acquire(device, Duration::from_secs(30)).await?;
        Ok(Rig {
            spec,
            server: None,
            lease,
            busy: Duration::ZERO,
            samples: 0,
        })
    }

    /// One measurement of `x` rows with per-row or shared `theta`, split
    /// into chunks of the device's `max_batch`.
    pub async fn execute(
        &mut self,
        x: &Array2<f32>,
        theta: &Array2<f32>,
        repeats: u32,
    ) -> Result<Measurement> {
        let max = self.spec.max_batch.max(1);
        if x.nrows() <= max {
            return self.execute_one(x.clone(), theta.clone(), repeats).await;
        }
        let mut parts = Vec::new();
        for start in (0..x.nrows()).step_by(max) {
            let end = (start + max).min(x.nrows());
            let xs = x.slice_axis(Axis(0), Slice::from(start..end)).to_owned();
            let ts = if theta.nrows() == 1 {
                theta.clone()
            } else {
                theta
                    .slice_axis(Axis(0), Slice::from(start..end))
                    .to_owned()
            };
            parts.push(self.execute_one(xs, ts, repeats).await?);
        }
        Ok(concat(parts))
    }

    async fn execute_one(
        &mut self,
        x: Array2<f32>,
        theta: Array2<f32>,
        repeats: u32,
    ) -> Result<Measurement> {
        let rows = x.nrows() as u64;
        let batch = Batch {
            x,
            theta,
            repeats,
            return_repeats: repeats > 1,
        };
        // A daemon lost mid-run is named (a run may span several).
        let m = self
            .lease
            .execute(&batch)
            .await
            .map_err(|e| match &self.server {
                Some(server) => Error::Server {
                    server: server.clone(),
                    source: e,
                },
                None => Error::Client(e),
            })?;
        self.account(&m, rows * u64::from(repeats));
        Ok(m)
    }

    /// Count `m`'s rig time and `samples` towards this rig.
    pub fn account(&mut self, m: &Measurement, samples: u64) {
        self.busy += m.wall_end.duration_since(m.wall_start).unwrap_or_default();
        self.samples += samples;
    }

    /// Hand the device back now rather than when the lease expires.
    pub async fn release(self) -> Result<()> {
        self.lease.release().await?;
        Ok(())
    }

    /// The lease, for streaming batches past `execute`.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Wall time the device spent measuring, summed over every batch.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    /// Samples measured (rows × repeats), summed over every batch.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Refuse a device whose widths do not fit `n_in → n_out`, naming it.
    pub fn check_inputs(&self, n_in: usize, n_out: usize) -> Result<()> {
        if self.spec.n_in != n_in || self.spec.n_out != n_out {
            return Err(Error::Device {
                device: self.spec.id.clone(),
                reason: format!(
                    "has {} inputs and {} outputs; the network needs {n_in} → {n_out}",
                    self.spec.n_in, self.spec.n_out
                ),
            });
        }
        Ok(())
    }
}

/// Row-wise concatenation of chunked measurements (means, applied values
/// and flags; per-repeat data along its row axis).
fn concat(parts: Vec<Measurement>) -> Measurement {
    let cat2 = |f: &dyn Fn(&Measurement) -> &Array2<f32>| {
        let views: Vec<_> = parts.iter().map(|m| f(m).view()).collect();
        ndarray::concatenate(ndarray::Axis(0), &views).unwrap_or_default()
    };
    let y = cat2(&|m| &m.y);
    let applied_x = cat2(&|m| &m.applied_x);
    let applied_theta = if parts.iter().all(|m| m.applied_theta.nrows() == 1) {
        parts[0].applied_theta.clone()
    } else {
        cat2(&|m| &m.applied_theta)
    };
    let y_repeats = if parts.iter().all(|m| m.y_repeats.is_some()) {
        let views: Vec<_> = parts
            .iter()
            .filter_map(|m| m.y_repeats.as_ref().map(|r| r.view()))
            .collect();
        ndarray::concatenate(ndarray::Axis(1), &views).ok()
    } else {
        None
    };
    let first = &parts[0];
    let last = &parts[parts.len() - 1];
    Measurement {
        y,
        y_repeats,
        y_std: None,
        applied_x,
        applied_theta,
        flags: parts.iter().flat_map(|m| m.flags.iter().copied()).collect(),
        t_start: parts
            .iter()
            .flat_map(|m| m.t_start.iter().copied())
            .collect(),
        t_end: parts.iter().flat_map(|m| m.t_end.iter().copied()).collect(),
        wall_start: first.wall_start,
        wall_end: last.wall_end,
        calibration_id: last.calibration_id.clone(),
        device_id: last.device_id.clone(),
    }
}
