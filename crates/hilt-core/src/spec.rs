use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Closed interval `[min, max]` in physical units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

impl Range {
    pub const fn new(min: f32, max: f32) -> Self {
        Range { min, max }
    }

    pub fn contains(&self, v: f32) -> bool {
        v >= self.min && v <= self.max
    }

    pub fn contains_range(&self, other: &Range) -> bool {
        other.min >= self.min && other.max <= self.max
    }

    pub fn clamp(&self, v: f32) -> f32 {
        v.clamp(self.min, self.max)
    }

    pub fn width(&self) -> f32 {
        self.max - self.min
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sim,
    Serial,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareIdentity {
    pub model: String,
    pub serial_number: String,
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
    pub layout: String,
    pub input_index: Vec<i32>,
    pub param_index: Vec<i32>,
    pub input_scale: f32,
    pub control_min: f32,
    pub control_max: f32,
}

impl ControlEncoding {
    pub fn n_controls(&self) -> usize {
        self.input_index.len()
    }

    /// The control vector for one row; `out.len()` must be `n_controls()`.
    /// Generic so the physics can compose straight into its f64 mask.
    pub fn compose<T: From<f32>>(&self, x: &[f32], theta: &[f32], out: &mut [T]) {
        for (k, m) in out.iter_mut().enumerate() {
            let mut v = 0.0;
            if let Ok(i) = usize::try_from(self.input_index[k]) {
                v += self.input_scale * x[i];
            }
            if let Ok(j) = usize::try_from(self.param_index[k]) {
                v += theta[j];
            }
            *m = T::from(v.clamp(self.control_min, self.control_max));
        }
    }
}

/// Everything a client needs to drive a device correctly and to key a
/// digital twin to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub id: String,
    pub kind: String,
    pub backend: Backend,
    /// Simulator variant ("true"/"nominal"); empty for real rigs.
    pub model: String,
    pub seed: u64,
    pub n_in: usize,
    /// Hard limits, enforced by the daemon.
    pub input_range: Range,
    pub n_par: usize,
    pub param_range: Range,
    pub n_out: usize,
    pub input_unit: String,
    pub param_unit: String,
    pub output_unit: String,
    pub limit_policy: LimitPolicy,
    pub max_batch: usize,
    pub max_repeats: u32,
    /// Expected wall time per measured sample (row × repeat).
    pub seconds_per_sample: f64,
    pub hyperparameters: BTreeMap<String, String>,
    pub calibration_id: String,
    pub firmware: FirmwareIdentity,
    pub encoding: Option<ControlEncoding>,
    /// Quantisation step of applied inputs/parameters; 0 = continuous.
    pub input_step: f32,
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
