use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Closed interval `[min, max]` in physical units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Lower end, inclusive.
    pub min: f32,
    /// Upper end, inclusive.
    pub max: f32,
}

impl Range {
    /// Unchecked: the drivers refuse a configured range that is not
    /// finite with `min < max`.
    pub const fn new(min: f32, max: f32) -> Self {
        Range { min, max }
    }

    /// Whether `v` lies in `[min, max]`; false for NaN.
    pub fn contains(&self, v: f32) -> bool {
        v >= self.min && v <= self.max
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains_range(&self, other: &Range) -> bool {
        other.min >= self.min && other.max <= self.max
    }

    /// `v` moved to the nearer end if outside (as `f32::clamp`, which
    /// panics when `min > max` or either end is NaN).
    pub fn clamp(&self, v: f32) -> f32 {
        v.clamp(self.min, self.max)
    }

    /// `max − min`.
    pub fn width(&self) -> f32 {
        self.max - self.min
    }
}

/// What [`validate`](crate::validate) does with a value outside a hard
/// limit (NaN and infinities are refused under either policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitPolicy {
    /// Refuse the whole batch: the safe default for hardware.
    #[default]
    Reject,
    /// Clamp to the limit and flag the row; what optimisers that overshoot
    /// their range (PAT's soft penalty does) usually want.
    Clamp,
}

/// What measures behind a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A physics model inside the daemon (`hilt-physics`).
    Sim,
    /// A real rig's interface board on a serial port (`hilt-wire`).
    Serial,
    /// A recorded session served again, answer for answer.
    Replay,
}

/// Who measures: the interface board that answered `Identify`, or the
/// simulator standing in for one (`hilt-sim/<kind>`). Empty until known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareIdentity {
    /// Board model, or `hilt-sim/<kind>` for a simulator.
    pub model: String,
    /// The board's serial number (a simulator's is made from its seed); part of
    /// the calibration id.
    pub serial_number: String,
    /// Firmware version (a simulator's is hilt's).
    pub version: String,
}

/// How inputs and parameters become the control vector of a channelised
/// device: `m_k = clip(input_scale·x[input_index[k]] + θ[param_index[k]],
/// control_min, control_max)`, a term being absent where its index is -1.
///
/// Published so a trainer can rebuild exactly what the device drives: the
/// digital twin fits far better on the control vector than on (x, θ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlEncoding {
    /// The layout's name (`blocked`, `interleaved`, `additive` on the
    /// SHG mask; `superpose`, `interleave`, `concat` on a drive).
    pub layout: String,
    /// Per control element, the input it carries, or -1; its length is
    /// the number of elements.
    pub input_index: Vec<i32>,
    /// Per control element, the parameter it carries, or -1; as long as
    /// `input_index`.
    pub param_index: Vec<i32>,
    /// Gain on x in every element.
    pub input_scale: f32,
    /// Lower clip of every element (0 on a mask, −limit on a drive).
    pub control_min: f32,
    /// Upper clip of every element (1 on a mask, +limit on a drive).
    pub control_max: f32,
}

impl ControlEncoding {
    /// Length of the control vector.
    pub fn n_controls(&self) -> usize {
        self.input_index.len()
    }

    /// The control vector for one row; `out.len()` must be `n_controls()`.
    /// Generic so the physics can compose straight into its f64 mask.
    pub fn compose<T: From<f32>>(&self, x: &[f32], theta: &[f32], out: &mut [T]) {
        for (k, m) in out.iter_mut().enumerate() {
            let v = self.unclipped(k, x, theta);
            *m = T::from(v.clamp(self.control_min, self.control_max));
        }
    }

    /// Whether any element of this row's control vector lies beyond
    /// `[control_min, control_max]`, so the rig plays a clipped value: a
    /// drive at its hard limit, a mask element past full transmission.
    /// Such a row is flagged `clamped`, never silently clipped.
    pub fn clips(&self, x: &[f32], theta: &[f32]) -> bool {
        (0..self.n_controls()).any(|k| {
            let v = self.unclipped(k, x, theta);
            v < self.control_min || v > self.control_max
        })
    }

    fn unclipped(&self, k: usize, x: &[f32], theta: &[f32]) -> f32 {
        let mut v = 0.0;
        if let Ok(i) = usize::try_from(self.input_index[k]) {
            v += self.input_scale * x[i];
        }
        if let Ok(j) = usize::try_from(self.param_index[k]) {
            v += theta[j];
        }
        v
    }
}

/// Everything a client needs to drive a device correctly and to key a
/// digital twin to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The id clients address the device by.
    pub id: String,
    /// Which rig: `shg`, `plate`, `circuit` or `loopback`.
    pub kind: String,
    /// Simulator or real rig.
    pub backend: Backend,
    /// Simulator variant ("true"/"nominal"); empty for real rigs.
    pub model: String,
    /// Simulator seed (fixes mismatch, noise and drift); 0 for real rigs.
    pub seed: u64,
    /// Columns of `Batch::x`.
    pub n_in: usize,
    /// Hard limits on x, enforced by the daemon; inside what the actuator
    /// can apply.
    pub input_range: Range,
    /// Columns of `Batch::theta`.
    pub n_par: usize,
    /// Hard limits on θ, enforced by the daemon.
    pub param_range: Range,
    /// Columns of `Measurement::y`.
    pub n_out: usize,
    /// Unit of x, e.g. "mask transmission"; empty for a loopback.
    pub input_unit: String,
    /// Unit of θ.
    pub param_unit: String,
    /// Unit of y, e.g. "V".
    pub output_unit: String,
    /// What the daemon does with values outside the hard limits.
    pub limit_policy: LimitPolicy,
    /// Most rows one batch may have.
    pub max_batch: usize,
    /// Most repeats one batch may ask for.
    pub max_repeats: u32,
    /// Expected wall time per measured sample (row × repeat).
    pub seconds_per_sample: f64,
    /// Everything that changes the physics, as flat `key = value` text:
    /// what a twin is keyed to.
    pub hyperparameters: BTreeMap<String, String>,
    /// Says what measures: a serial rig's is `serial-<rig>-<board
    /// serial>-<config hash>`, a simulator's `sim-<kind>-<variant>-<seed>`
    /// (its physics table is in `hyperparameters`). A twin fitted under
    /// another id may be stale.
    pub calibration_id: String,
    /// Who measures; a real rig's is known once its board has answered.
    pub firmware: FirmwareIdentity,
    /// How x and θ become the control vector; `None` for a device that is
    /// not channelised (loopback).
    pub encoding: Option<ControlEncoding>,
    /// Quantisation step of applied inputs; 0 = continuous.
    pub input_step: f32,
    /// Quantisation step of applied parameters; 0 = continuous.
    pub param_step: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_covers_blocked_and_additive_channels() {
        let enc = ControlEncoding {
            layout: "test".into(),
            input_index: vec![0, -1, 1],
            param_index: vec![-1, 0, 1],
            input_scale: 2.0,
            control_min: 0.0,
            control_max: 1.0,
        };
        let mut m = [0.0f32; 3];
        enc.compose(&[0.25, 0.4], &[0.7, -0.5], &mut m);
        assert_eq!(m, [0.5, 0.7, 0.3]);
        // clipping at both ends
        enc.compose(&[0.9, 0.0], &[1.5, -0.5], &mut m);
        assert_eq!(m, [1.0, 1.0, 0.0]);
    }
}
