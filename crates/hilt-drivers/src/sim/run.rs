//! The synchronous measurement loop of a simulated rig.

use hilt_core::{DeviceSpec, Measurement, Range, SampleFlags, ValidBatch};

/// The part of a spec the measurement loop needs: limits and grid steps.
/// Copied per batch instead of the whole spec (strings, maps).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    input: Range,
    input_step: f32,
    param: Range,
    param_step: f32,
}

impl Grid {
    pub(crate) fn of(spec: &DeviceSpec) -> Self {
        Grid {
            input: spec.input_range,
            input_step: spec.input_step,
            param: spec.param_range,
            param_step: spec.param_step,
        }
    }

    /// What a host does before sending values to a board: onto the
    /// actuator grid, then inside the hard limits. The grid is the models'
    /// own (`round(v·L)/L`, `L` levels per unit), so the board's
    /// quantisation of a snapped value is the identity and what it plays is
    /// exactly what the in-process simulator would have played.
    pub(crate) fn snap(&self, x: &mut [f32], theta: &mut [f32]) {
        fn on_grid(values: &mut [f32], step: f32) {
            if step > 0.0 {
                let levels = (1.0 / step).round();
                values
                    .iter_mut()
                    .for_each(|v| *v = (*v * levels).round() / levels);
            }
        }
        on_grid(x, self.input_step);
        keep_inside(x, self.input, self.input_step);
        on_grid(theta, self.param_step);
        keep_inside(theta, self.param, self.param_step);
    }

    /// How far a board's applied input may sit from a snapped value sent
    /// to it: its own rounding (half a step) and float noise, never a
    /// different drive's value.
    pub(crate) fn input_tolerance(&self) -> f32 {
        0.5 * self.input_step + 1e-6 * self.input.width()
    }

    pub(crate) fn param_tolerance(&self) -> f32 {
        0.5 * self.param_step + 1e-6 * self.param.width()
    }
}
use hilt_physics::PhysicalModel;
use ndarray::{Array2, Array3, Axis};

/// Apply, then sweep the whole batch once per repeat (ABAB…, so slow drift
/// averages over repeats instead of biasing one row), rows in order.
/// Wall-clock fields and ids are filled in by the caller.
pub(crate) fn run<M: PhysicalModel + ?Sized>(
    model: &mut M,
    grid: Grid,
    batch: &ValidBatch,
) -> Measurement {
    let b = batch.rows();
    let r = batch.repeats() as usize;
    let n_out = model.n_out();

    let mut applied_x = batch.x().clone();
    let mut applied_theta = batch.theta().clone();
    for mut row in applied_x.rows_mut() {
        let row = row.as_slice_mut().expect("owned rows are contiguous");
        model.quantize(row, &mut []);
        keep_inside(row, grid.input, grid.input_step);
    }
    for mut row in applied_theta.rows_mut() {
        let row = row.as_slice_mut().expect("owned rows are contiguous");
        model.quantize(&mut [], row);
        keep_inside(row, grid.param, grid.param_step);
    }

    let mut all = Array3::<f32>::zeros((r, b, n_out));
    let mut flags: Vec<SampleFlags> = batch
        .clamped()
        .iter()
        .map(|&c| SampleFlags {
            saturated: false,
            clamped: c,
        })
        .collect();
    let mut t_start = vec![0.0; b];
    let mut t_end = vec![0.0; b];
    let mut saturated = vec![false; b];
    let mut clocks = vec![(0.0, 0.0); b];
    let (x, theta) = (
        applied_x.as_standard_layout(),
        applied_theta.as_standard_layout(),
    );
    let (x, theta) = (
        x.as_slice().expect("standard layout"),
        theta.as_slice().expect("standard layout"),
    );
    for rep in 0..r {
        let mut y = all.index_axis_mut(Axis(0), rep);
        model.sweep(
            x,
            theta,
            y.as_slice_mut().expect("a fresh array is contiguous"),
            &mut saturated,
            &mut clocks,
        );
        for (i, (&sat, &(start, end))) in saturated.iter().zip(&clocks).enumerate() {
            flags[i].saturated |= sat;
            if rep == 0 {
                t_start[i] = start;
            }
            if rep + 1 == r {
                t_end[i] = end;
            }
        }
    }
    let (mean, std) = reduce(&all);
    let now = std::time::SystemTime::now();
    Measurement {
        y: mean,
        y_repeats: batch.return_repeats().then_some(all),
        y_std: std,
        applied_x,
        applied_theta,
        flags,
        t_start,
        t_end,
        wall_start: now,
        wall_end: now,
        calibration_id: String::new(),
        device_id: String::new(),
    }
}

/// Mean over repeats, and their spread when there are several: one
/// reduction for every backend, so a board's repeats and the simulator's
/// give bit-identical summaries.
pub(crate) fn reduce(all: &Array3<f32>) -> (Array2<f32>, Option<Array2<f32>>) {
    let (r, b, n_out) = all.dim();
    let mean = all
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array2::zeros((b, n_out)));
    (mean, (r > 1).then(|| all.std_axis(Axis(0), 0.0)))
}

/// Rounding to the actuator grid moves a value by up to half a step, which
/// can carry a clamped value just past its hard limit; step back onto the
/// nearest grid point inside. (`SimDevice::new` guarantees one exists.)
fn keep_inside(values: &mut [f32], limit: Range, step: f32) {
    for v in values {
        if *v > limit.max {
            *v -= step;
        } else if *v < limit.min {
            *v += step;
        }
    }
}
