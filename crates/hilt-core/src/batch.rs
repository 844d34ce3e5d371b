use std::time::SystemTime;

use ndarray::{Array2, Array3, Axis};

/// A request to measure: row `i` of `x` with row `i` of `theta` (or the
/// single shared row when `theta` has one row), `repeats` times each.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, n_in]`, physical units.
    pub x: Array2<f32>,
    /// `[B, n_par]` or `[1, n_par]`, physical units.
    pub theta: Array2<f32>,
    /// Measurements per row, at least 1 and at most the device's
    /// `max_repeats` (checked by `validate`); the device sweeps the whole
    /// batch once per repeat.
    pub repeats: u32,
    /// Also return every repeat (`Measurement::y_repeats`), not only mean
    /// and std.
    pub return_repeats: bool,
}

impl Batch {
    /// One shared parameter row, one repeat: the shape of a PAT step.
    pub fn shared(x: Array2<f32>, theta_row: &[f32]) -> Self {
        let theta = Array2::from_shape_vec((1, theta_row.len()), theta_row.to_vec())
            .expect("a single row always has a valid shape");
        Batch {
            x,
            theta,
            repeats: 1,
            return_repeats: false,
        }
    }

    /// B, the number of rows of `x`.
    pub fn rows(&self) -> usize {
        self.x.nrows()
    }
}

/// Per-row conditions a physicist must know about before trusting a number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleFlags {
    /// A detector/ADC hit full scale in some repeat of this row.
    pub saturated: bool,
    /// A value of this row was clamped to the hard limits.
    pub clamped: bool,
}

/// What a device answers for one batch, rows in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Mean over repeats, `[B, n_out]`.
    pub y: Array2<f32>,
    /// `[repeats, B, n_out]` when the batch asked for it.
    pub y_repeats: Option<Array3<f32>>,
    /// Std over repeats (population, ddof 0) when `repeats > 1`.
    pub y_std: Option<Array2<f32>>,
    /// The values actually applied (after clamping and quantisation): the
    /// point at which PAT must evaluate the twin's Jacobian.
    pub applied_x: Array2<f32>,
    /// The θ actually applied, shaped like the request's `theta` (one
    /// shared row or one per row).
    pub applied_theta: Array2<f32>,
    /// One per row.
    pub flags: Vec<SampleFlags>,
    /// Device clock (a simulator's virtual clock, a board's own), seconds,
    /// at the start of each row's first shot.
    pub t_start: Vec<f64>,
    /// Device clock at the end of each row's last shot.
    pub t_end: Vec<f64>,
    /// Wall-clock time the device started the batch.
    pub wall_start: SystemTime,
    /// Wall-clock time the device finished it.
    pub wall_end: SystemTime,
    /// The device's calibration when it measured: a twin fitted under
    /// another id may be stale.
    pub calibration_id: String,
    /// The device that measured.
    pub device_id: String,
}

impl Measurement {
    /// Flag `clamped` on every row whose applied values compose to a
    /// control vector beyond the device's clip (`encoding`): the daemon's
    /// limits let it through, but the rig plays it clipped. One rule for
    /// every backend.
    pub fn flag_clipped_controls(&mut self, encoding: &crate::ControlEncoding) {
        let shared = self.applied_theta.nrows() == 1;
        for (i, flag) in self.flags.iter_mut().enumerate() {
            let x = self.applied_x.row(i).to_vec();
            let theta = self.applied_theta.row(if shared { 0 } else { i }).to_vec();
            flag.clamped |= encoding.clips(&x, &theta);
        }
    }
}

/// Mean over repeats, and their spread when there are several: one
/// reduction for every backend, so a board's repeats and the simulator's
/// give bit-identical summaries.
pub fn reduce_repeats(all: &Array3<f32>) -> (Array2<f32>, Option<Array2<f32>>) {
    let (r, b, n_out) = all.dim();
    // One repeat is its own mean (one copy, not a sum and a division).
    let mean = if r == 1 {
        all.index_axis(Axis(0), 0).to_owned()
    } else {
        all.mean_axis(Axis(0))
            .unwrap_or_else(|| Array2::zeros((b, n_out)))
    };
    (mean, (r > 1).then(|| all.std_axis(Axis(0), 0.0)))
}
