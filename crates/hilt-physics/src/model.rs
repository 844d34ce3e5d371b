use std::collections::BTreeMap;

use hilt_core::ControlEncoding;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Which physics a simulated rig runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Idealised, noise-free: what a twin could be derived from on paper.
    Nominal,
    /// Nominal plus mismatch, noise, drift, quantisation, saturation.
    #[default]
    True,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nominal => "nominal",
            Variant::True => "true",
        }
    }
}

/// A rig's physics as the simulator driver needs it: one shot of one
/// sample at a time (rigs measure serially), on a virtual clock.
pub trait PhysicalModel: Send + 'static {
    fn kind(&self) -> &'static str;
    fn variant(&self) -> Variant;
    fn n_in(&self) -> usize;
    fn n_par(&self) -> usize;
    fn n_out(&self) -> usize;
    /// What the actuator can physically realise; configured hard limits
    /// must lie inside these.
    fn input_range(&self) -> (f32, f32);
    fn param_range(&self) -> (f32, f32);
    /// Quantisation step of applied x / θ (0 = continuous).
    fn input_step(&self) -> f32;
    fn param_step(&self) -> f32;
    fn units(&self) -> (&'static str, &'static str, &'static str);
    /// How x and θ map onto a channelised actuator, if it is one.
    fn channel_map(&self) -> Option<&ControlEncoding>;
    /// Everything that changes the physics, as text (twin cache key).
    fn hyperparameters(&self) -> BTreeMap<String, String>;
    /// Virtual seconds one shot takes (exposure, playback, ...).
    fn seconds_per_sample(&self) -> f64;
    /// Virtual clock, seconds since the model was created.
    fn clock(&self) -> f64;
    /// Snap x and θ onto the grid the actuator realises, in place.
    fn quantize(&self, x: &mut [f32], theta: &mut [f32]);
    /// Measure one sample once; returns whether the detector saturated.
    /// Advances the virtual clock by `seconds_per_sample`.
    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool;
}

/// One shot per row, in order: the batched form used by benchmarks and
/// tests (the driver adds repeats and timestamps). `theta` has one row
/// (shared) or one per row of `x`. Inputs are quantised as the rig would.
pub fn forward<M: PhysicalModel + ?Sized>(
    model: &mut M,
    x: ArrayView2<'_, f32>,
    theta: ArrayView2<'_, f32>,
) -> (Array2<f32>, Vec<bool>) {
    let b = x.nrows();
    let mut y = Array2::zeros((b, model.n_out()));
    let mut sat = vec![false; b];
    let mut xr = vec![0.0; model.n_in()];
    let mut tr = vec![0.0; model.n_par()];
    let mut yr = vec![0.0; model.n_out()];
    for (i, saturated) in sat.iter_mut().enumerate() {
        xr.iter_mut().zip(x.row(i)).for_each(|(d, s)| *d = *s);
        let t = theta.row(if theta.nrows() == 1 { 0 } else { i });
        tr.iter_mut().zip(t).for_each(|(d, s)| *d = *s);
        model.quantize(&mut xr, &mut tr);
        *saturated = model.shot(&xr, &tr, &mut yr);
        y.row_mut(i).iter_mut().zip(&yr).for_each(|(d, s)| *d = *s);
    }
    (y, sat)
}
