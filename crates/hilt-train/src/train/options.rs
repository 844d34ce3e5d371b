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
    /// Physical local learning: forward passes only, each block's digital
    /// layer trained on its own goodness; no twin.
    Phyll,
    /// Zeroth-order: the physical parameters' gradient estimated from
    /// antithetic perturbations measured on the device; no twin.
    Spsa,
    /// A digital network with as many trainable parameters, no device:
    /// the baseline the physics must beat.
    Digital,
}

impl Method {
    /// Every method, in the order `hilt compare` runs them.
    pub const ALL: [Method; 5] = [
        Method::Pat,
        Method::Insilico,
        Method::Phyll,
        Method::Spsa,
        Method::Digital,
    ];

    /// The name checkpoints, metrics and run directories use.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pat => "pat",
            Method::Insilico => "insilico",
            Method::Phyll => "phyll",
            Method::Spsa => "spsa",
            Method::Digital => "digital",
        }
    }

    /// Whether the method needs a twin of every device (recorded and
    /// fitted before training when none is given).
    pub fn needs_twin(self) -> bool {
        matches!(self, Method::Pat | Method::Insilico)
    }
}

/// Physical local learning's settings (Momeni et al. 2023; the defaults
/// are its published code's for the acoustic vowel network).
#[derive(Debug, Clone, Copy)]
pub struct LocalOptions {
    /// Sharpness of `softplus(−α (G⁺ − G⁻))`.
    pub alpha: f64,
    /// Adam steps on a block's digital layer per physical pass (K_int).
    pub inner_steps: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            alpha: 4.0,
            inner_steps: 10,
        }
    }
}

/// SPSA's settings.
#[derive(Debug, Clone, Copy)]
pub struct SpsaOptions {
    /// Perturbation size at the first epoch, in parameter units.
    pub step: f64,
    /// The step shrinks by this factor every epoch.
    pub decay: f64,
    /// Antithetic pairs per update, each on its own share of the batch.
    pub pairs: usize,
}

impl Default for SpsaOptions {
    fn default() -> Self {
        SpsaOptions {
            step: 0.3,
            decay: 0.995,
            pairs: 4,
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
    /// PhyLL's settings.
    pub local: LocalOptions,
    /// SPSA's settings.
    pub spsa: SpsaOptions,
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
            local: LocalOptions::default(),
            spsa: SpsaOptions::default(),
            quiet: false,
        }
    }
}

/// The floor of the training schedule's cosine decay, as a share of the
/// initial rates.
pub(crate) const LR_FLOOR: f64 = 0.05;
