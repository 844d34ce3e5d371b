//! `hilt collect`: probe a device with uniform random controls inside its
//! published ranges, as the paper's `take_dt_data` does (10 000 × 2 repeats).

use hilt_core::DeviceSpec;
use ndarray::{Array2, Axis, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::TwinData;
use crate::error::{Error, Result};
use crate::rig::Rig;

/// Bytes of x and θ per Execute request at most.
pub const REQUEST_BYTES: usize = 2 << 20;

/// How a device is probed for a twin.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Rows recorded.
    pub samples: usize,
    /// Measurements per row (kept apart: the noise floor needs them).
    pub repeats: u32,
    /// Rows per Execute; bounded by the device's `max_batch` and by
    /// [`REQUEST_BYTES`].
    pub chunk: usize,
    /// Seeds the random controls.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            samples: 10_000,
            repeats: 2,
            chunk: 1000,
            seed: 0,
            quiet: false,
        }
    }
}

/// `rows` of x and θ drawn uniformly inside `spec`'s published ranges
/// (x first, then θ, from one stream seeded by `seed`).
pub fn uniform_probes(
    spec: &DeviceSpec,
    rows: usize,
    seed: u64,
) -> Result<(Array2<f32>, Array2<f32>)> {
    // Uniform probes need a range of finite width: a loopback publishes
    // all of f32, whose width overflows.
    for (what, r) in [("input", spec.input_range), ("parameter", spec.param_range)] {
        if !(r.max - r.min).is_finite() {
            return Err(Error::invalid(format!(
                "device '{}' publishes the {what} range [{}, {}], too wide to draw uniform \
                 probes from: give it hard limits ([device.limits] in hiltd's config)",
                spec.id, r.min, r.max
            )));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (lo_x, hi_x) = (spec.input_range.min, spec.input_range.max);
    let (lo_p, hi_p) = (spec.param_range.min, spec.param_range.max);
    let x = Array2::from_shape_fn((rows, spec.n_in), |_| rng.random_range(lo_x..=hi_x));
    let theta = Array2::from_shape_fn((rows, spec.n_par), |_| rng.random_range(lo_p..=hi_p));
    Ok((x, theta))
}

/// Probe `rig` with uniform random x and θ, keeping what it applied.
pub async fn collect(rig: &mut Rig, opt: &CollectOptions) -> Result<TwinData> {
    let spec = rig.spec.clone();
    if opt.samples == 0 {
        return Err(Error::invalid("--samples must be at least 1"));
    }
    if opt.repeats == 0 || opt.repeats > spec.max_repeats {
        return Err(Error::invalid(format!(
            "--repeats {} is outside 1..={} (device '{}')",
            opt.repeats, spec.max_repeats, spec.id
        )));
    }
    let (x, theta) = uniform_probes(&spec, opt.samples, opt.seed)?;

    // A request carries x and θ per row: keep it under gRPC's customary
    // 4 MiB message limit, whatever the daemon allows (a ten-copy plate
    // readout has 2 156 floats a row).
    let row_bytes = 4 * (spec.n_in + spec.n_par).max(1);
    let chunk = opt
        .chunk
        .min(REQUEST_BYTES / row_bytes)
        .clamp(1, spec.max_batch.max(1));
    let mut measured = Vec::with_capacity(opt.samples.div_ceil(chunk));
    let pb = crate::ui::bar(opt.samples as u64, "collect", opt.quiet);
    for start in (0..opt.samples).step_by(chunk) {
        let end = (start + chunk).min(opt.samples);
        let rows = Slice::from(start..end);
        let xs = x.slice_axis(Axis(0), rows).to_owned();
        let ts = theta.slice_axis(Axis(0), rows).to_owned();
        measured.push(rig.execute(&xs, &ts, opt.repeats).await?);
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    TwinData::from_measurements(spec.clone(), &measured)
}
