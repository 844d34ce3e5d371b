use std::collections::BTreeMap;

use hilt_core::ControlEncoding;

use crate::kind::RigKind;
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
    /// The name configs and specs use (`nominal`, `true`).
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nominal => "nominal",
            Variant::True => "true",
        }
    }
}

/// A rig's physics as the simulator driver needs it: one shot of one
/// sample at a time (rigs measure serially), on a virtual clock.
pub trait PhysicalModel: Send + std::fmt::Debug + 'static {
    /// Which rig this models.
    fn kind(&self) -> RigKind;
    /// Ideal or reality's stand-in.
    fn variant(&self) -> Variant;
    /// Inputs per sample (x's width).
    fn n_in(&self) -> usize;
    /// Trainable parameters per sample (θ's width).
    fn n_par(&self) -> usize;
    /// Outputs per sample.
    fn n_out(&self) -> usize;
    /// What the actuator can physically realise; configured hard limits
    /// must lie inside these.
    fn input_range(&self) -> (f32, f32);
    /// The same for θ.
    fn param_range(&self) -> (f32, f32);
    /// Quantisation step of applied x / θ (0 = continuous).
    fn input_step(&self) -> f32;
    /// The step of applied θ (0 = continuous).
    fn param_step(&self) -> f32;
    /// Units of x, θ and y, for the spec.
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

    /// Measure the rows of `x` (row-major, `n_in` wide) once each, in
    /// order, with `theta` one shared row or one per row: exactly what
    /// `shot` gives row after row (the default does that), the virtual
    /// clock before and after each shot in `clocks`. A model may compute
    /// the shots side by side; its numbers must not depend on it.
    fn sweep(
        &mut self,
        x: &[f32],
        theta: &[f32],
        y: &mut [f32],
        saturated: &mut [bool],
        clocks: &mut [(f64, f64)],
    ) {
        let (n_in, n_out) = (self.n_in(), self.n_out());
        for (i, (x, y)) in x.chunks(n_in).zip(y.chunks_mut(n_out)).enumerate() {
            let t = theta_row(theta, self.n_par(), i);
            let start = self.clock();
            saturated[i] = self.shot(x, t, y);
            clocks[i] = (start, self.clock());
        }
    }
}

/// A model chosen at run time (`RigPhysics::build_model`) is driven
/// exactly like the concrete one: every call, `sweep` included (the
/// circuit computes its shots side by side), goes to the model itself.
impl PhysicalModel for Box<dyn PhysicalModel> {
    fn kind(&self) -> RigKind {
        (**self).kind()
    }
    fn variant(&self) -> Variant {
        (**self).variant()
    }
    fn n_in(&self) -> usize {
        (**self).n_in()
    }
    fn n_par(&self) -> usize {
        (**self).n_par()
    }
    fn n_out(&self) -> usize {
        (**self).n_out()
    }
    fn input_range(&self) -> (f32, f32) {
        (**self).input_range()
    }
    fn param_range(&self) -> (f32, f32) {
        (**self).param_range()
    }
    fn input_step(&self) -> f32 {
        (**self).input_step()
    }
    fn param_step(&self) -> f32 {
        (**self).param_step()
    }
    fn units(&self) -> (&'static str, &'static str, &'static str) {
        (**self).units()
    }
    fn channel_map(&self) -> Option<&ControlEncoding> {
        (**self).channel_map()
    }
    fn hyperparameters(&self) -> BTreeMap<String, String> {
        (**self).hyperparameters()
    }
    fn seconds_per_sample(&self) -> f64 {
        (**self).seconds_per_sample()
    }
    fn clock(&self) -> f64 {
        (**self).clock()
    }
    fn quantize(&self, x: &mut [f32], theta: &mut [f32]) {
        (**self).quantize(x, theta)
    }
    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
        (**self).shot(x, theta, y)
    }
    fn sweep(
        &mut self,
        x: &[f32],
        theta: &[f32],
        y: &mut [f32],
        saturated: &mut [bool],
        clocks: &mut [(f64, f64)],
    ) {
        (**self).sweep(x, theta, y, saturated, clocks)
    }
}

/// Row `i`'s parameters in a sweep: `theta` is one shared row or one per row.
pub(crate) fn theta_row(theta: &[f32], n_par: usize, i: usize) -> &[f32] {
    if theta.len() == n_par {
        theta
    } else {
        &theta[i * n_par..(i + 1) * n_par]
    }
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
    let mut xq = x.as_standard_layout().into_owned();
    let mut tq = theta.as_standard_layout().into_owned();
    for mut row in xq.rows_mut() {
        model.quantize(
            row.as_slice_mut().expect("owned rows are contiguous"),
            &mut [],
        );
    }
    for mut row in tq.rows_mut() {
        model.quantize(
            &mut [],
            row.as_slice_mut().expect("owned rows are contiguous"),
        );
    }
    let mut y = Array2::zeros((b, model.n_out()));
    let mut sat = vec![false; b];
    let mut clocks = vec![(0.0, 0.0); b];
    model.sweep(
        xq.as_slice().expect("standard layout"),
        tq.as_slice().expect("standard layout"),
        y.as_slice_mut().expect("standard layout"),
        &mut sat,
        &mut clocks,
    );
    (y, sat)
}
