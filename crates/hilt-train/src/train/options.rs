//! How a network is trained: the method and its schedule.

use serde::{Deserialize, Serialize};

/// The training methods `hilt train --method` offers. Each is a
/// `TrainingMethod` of its own in `method/`; a new one is a variant here
/// and a line in `epochs::train`, and touches no other method's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Physics-aware training: forward on the device, backward through the twin.
    Pat,
    /// Train on the twins alone, then deploy on the device.
    Insilico,
}

impl Method {
    /// The name checkpoints, metrics and run directories use.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pat => "pat",
            Method::Insilico => "insilico",
        }
    }
}

/// Everything a training run needs besides the network, data and devices.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// How each step computes its update.
    pub method: Method,
    /// Passes over the training split.
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// Adam learning rate of the physical parameters θ.
    pub lr_physical: f64,
    /// Adam learning rate of the digital layers.
    pub lr_digital: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip: f64,
    /// Weight of the range penalty on θ and on the devices' inputs.
    pub lag_amp: f64,
    /// Measurements averaged per sample on the device (training and
    /// evaluation alike).
    pub repeats: u32,
    /// Seeds the shuffling and the initial θ draws.
    pub seed: u64,
    /// Initial θ is drawn from this share of each device's parameter range,
    /// around its middle (1 = all of it). A drive that x and θ together
    /// push into the limit clamps, and a clamped element has no gradient.
    pub theta_init: f64,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            method: Method::Pat,
            epochs: 100,
            batch: 32,
            lr_physical: 0.02,
            lr_digital: 0.02,
            clip: 1.0,
            lag_amp: 5.0,
            repeats: 1,
            seed: 0,
            theta_init: 1.0,
            quiet: false,
        }
    }
}

/// The floor of the training schedule's cosine decay, as a share of the
/// initial rates.
pub(crate) const LR_FLOOR: f64 = 0.05;
