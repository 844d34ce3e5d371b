//! The loopback "rig": outputs = inputs, for client tests and for
//! measuring what the daemon itself costs.

use std::collections::BTreeMap;

use hilt_core::ControlEncoding;
use serde::{Deserialize, Serialize};

use crate::{Error, PhysicalModel, RigKind, Variant};

/// Widths of a loopback device: `[device.loopback]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopbackConfig {
    /// Inputs (and outputs).
    pub n_in: usize,
    /// Parameters, accepted and ignored.
    #[serde(default)]
    pub n_par: usize,
}

/// Widest loopback: wide enough to measure the daemon with any real
/// rig's batch, small enough that a typo cannot ask for gigabytes.
const MAX_WIDTH: usize = 1 << 16;

/// Outputs = inputs, no physics: serves client tests and measures what the
/// daemon itself costs. Parameters are accepted (and validated, leased,
/// echoed) like any rig's, and ignored.
#[derive(Debug, Clone)]
pub struct LoopbackModel {
    n_in: usize,
    n_par: usize,
    clock: f64,
}

impl LoopbackModel {
    /// A loopback of `cfg`'s widths.
    pub fn new(cfg: &LoopbackConfig) -> Result<Self, Error> {
        if cfg.n_in == 0 || cfg.n_in > MAX_WIDTH {
            return Err(Error::config(
                "n_in",
                format!("{} is not in 1..={MAX_WIDTH}", cfg.n_in),
            ));
        }
        if cfg.n_par > MAX_WIDTH {
            return Err(Error::config(
                "n_par",
                format!("{} is more than {MAX_WIDTH}", cfg.n_par),
            ));
        }
        Ok(LoopbackModel {
            n_in: cfg.n_in,
            n_par: cfg.n_par,
            clock: 0.0,
        })
    }
}

impl PhysicalModel for LoopbackModel {
    fn kind(&self) -> RigKind {
        RigKind::Loopback
    }

    fn variant(&self) -> Variant {
        Variant::Nominal
    }

    fn n_in(&self) -> usize {
        self.n_in
    }

    fn n_par(&self) -> usize {
        self.n_par
    }

    fn n_out(&self) -> usize {
        self.n_in
    }

    fn input_range(&self) -> (f32, f32) {
        (f32::MIN, f32::MAX)
    }

    fn param_range(&self) -> (f32, f32) {
        (f32::MIN, f32::MAX)
    }

    fn input_step(&self) -> f32 {
        0.0
    }

    fn param_step(&self) -> f32 {
        0.0
    }

    fn units(&self) -> (&'static str, &'static str, &'static str) {
        ("", "", "")
    }

    fn channel_map(&self) -> Option<&ControlEncoding> {
        None
    }

    fn hyperparameters(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("n_in".to_string(), self.n_in.to_string()),
            ("n_par".to_string(), self.n_par.to_string()),
        ])
    }

    fn seconds_per_sample(&self) -> f64 {
        0.0
    }

    fn clock(&self) -> f64 {
        self.clock
    }

    fn quantize(&self, _x: &mut [f32], _theta: &mut [f32]) {}

    fn shot(&mut self, x: &[f32], _theta: &[f32], y: &mut [f32]) -> bool {
        y.copy_from_slice(x);
        false
    }
}
