use std::time::SystemTime;

use ndarray::{Array2, Array3};

/// A request to measure: row `i` of `x` with row `i` of `theta` (or the
/// single shared row when `theta` has one row), `repeats` times each.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, n_in]`, physical units.
    pub x: Array2<f32>,
    /// `[B, n_par]` or `[1, n_par]`, physical units.
    pub theta: Array2<f32>,
    pub repeats: u32,
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
    pub applied_theta: Array2<f32>,
    pub flags: Vec<SampleFlags>,
    /// Device clock at each row's first shot start / last shot end.
    pub t_start: Vec<f64>,
    pub t_end: Vec<f64>,
    pub wall_start: SystemTime,
    pub wall_end: SystemTime,
    pub calibration_id: String,
    pub device_id: String,
}
