//! The synchronous measurement loop of a simulated rig.

use hilt_core::{Measurement, SampleFlags, ValidBatch, reduce_repeats};
use hilt_physics::PhysicalModel;

use ndarray::{Array3, Axis};

use crate::grid::{Grid, keep_inside};

/// Apply (in the batch's own arrays, which become the applied values),
/// then sweep the whole batch once per repeat (ABAB…, so slow drift
/// averages over repeats instead of biasing one row), rows in order.
/// Wall-clock fields and ids are filled in by the caller.
/// `stop` set (the caller left) ends the sweep at the next repeat; what
/// it returns then is incomplete and goes to nobody.
pub(crate) fn sweep_batch<M: PhysicalModel + ?Sized>(
    model: &mut M,
    grid: Grid,
    batch: ValidBatch,
    stop: &std::sync::atomic::AtomicBool,
) -> Measurement {
    let b = batch.rows();
    let r = batch.repeats() as usize;
    let n_out = model.n_out();
    let (batch, clamped) = batch.into_parts();
    let return_repeats = batch.return_repeats;
    let (mut applied_x, mut applied_theta) = (batch.x, batch.theta);
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
    let mut flags: Vec<SampleFlags> = clamped
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
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
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
    let (mean, std, all) = if r == 1 && !return_repeats {
        // A lone repeat is the mean: moved, not copied (a 256 × 64 sweep
        // spent a sixth of its time copying it).
        (all.index_axis_move(Axis(0), 0), None, None)
    } else {
        let (mean, std) = reduce_repeats(&all);
        (mean, std, return_repeats.then_some(all))
    };
    let now = std::time::SystemTime::now();
    Measurement {
        y: mean,
        y_repeats: all,
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
