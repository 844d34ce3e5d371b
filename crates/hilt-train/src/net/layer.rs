//! A network's layers, each carrying its own parameters: what a layer is
//! and what it learns cannot disagree, and a layer without parameters
//! needs no filler.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use hilt_core::DeviceSpec;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::spec::LayerSpec;
use crate::error::{Error, Result};

/// One layer with its parameters.
#[derive(Debug, Clone)]
pub enum Layer {
    /// One pass through `device` with its own trainable `theta [1, n_par]`.
    Physical {
        /// The device's id on the daemon.
        device: String,
        /// The device's parameters, trained.
        theta: Var,
        /// Output `[P(h); h]` (see [`LayerSpec::Physical`]).
        skip: bool,
    },
    /// `a ⊙ (x − mean) ⊙ inv_std + b`. `mean` and `inv_std` are fixed
    /// at initialisation from the data reaching the layer, so `a` and `b`
    /// are of order one whatever the units: Adam's steps are absolute, and
    /// a gain of 100 on raw SH counts would barely move.
    Rescale {
        /// Trained gain `[1, dim]`.
        a: Var,
        /// Trained offset `[1, dim]`.
        b: Var,
        /// Fixed centre `[1, dim]`.
        mean: Var,
        /// Fixed inverse spread `[1, dim]`.
        inv_std: Var,
    },
    /// Dense `x Wᵀ + b`.
    Linear {
        /// `[n_out, n_in]`.
        w: Var,
        /// `[1, n_out]`.
        b: Var,
    },
    /// Logistic squashing into (0, 1).
    Sigmoid,
    /// The values unchanged; PhyLL's goodness is read off here.
    Goodness {
        /// The fixed random unit vector `[1, dim]` the goodness compares
        /// the values' magnitudes with.
        p: Var,
    },
    /// `|h| / max|h|` per row.
    Normalize,
    /// The values repeated `copies` times end to end.
    Tile {
        /// Number of copies (resolved, at least 1).
        copies: usize,
    },
}

fn var(v: Vec<f32>, shape: (usize, usize)) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        v,
        shape,
        &Device::Cpu,
    )?)?)
}

impl Layer {
    /// Fresh parameters for a resolved `spec`: θ uniform in the device's
    /// published range (as the paper's code does), rescales at identity,
    /// linear layers Xavier. Draws from `rng` in layer order, so a seed
    /// gives the same network whatever else changes.
    pub(crate) fn init(
        spec: &LayerSpec,
        devices: &HashMap<String, DeviceSpec>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        Ok(match spec {
            LayerSpec::Physical { device, skip } => {
                // `resolve` has checked every physical layer's device.
                let d = devices
                    .get(device)
                    .ok_or_else(|| Error::invalid(format!("layer device '{device}' unknown")))?;
                let r = d.param_range;
                // A device's answer: an unbounded range has nothing to draw
                // from (and `random_range` would panic on it).
                if d.n_par > 0 && !(r.min.is_finite() && r.max.is_finite() && r.min <= r.max) {
                    return Err(Error::Device {
                        device: device.clone(),
                        reason: format!(
                            "publishes no finite parameter range ({}..{}); a physical layer \
                             draws its initial θ from it: configure limits for it in hiltd",
                            r.min, r.max
                        ),
                    });
                }
                let th = (0..d.n_par)
                    .map(|_| rng.random_range(r.min..=r.max))
                    .collect();
                Layer::Physical {
                    device: device.clone(),
                    theta: var(th, (1, d.n_par))?,
                    skip: *skip,
                }
            }
            LayerSpec::Rescale { dim } => Layer::Rescale {
                a: var(vec![1.0; *dim], (1, *dim))?,
                b: var(vec![0.0; *dim], (1, *dim))?,
                mean: var(vec![0.0; *dim], (1, *dim))?,
                inv_std: var(vec![1.0; *dim], (1, *dim))?,
            },
            LayerSpec::Linear { n_in, n_out } => {
                let bound = (6.0 / (n_in + n_out) as f32).sqrt();
                let w = (0..n_in * n_out)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                Layer::Linear {
                    w: var(w, (*n_out, *n_in))?,
                    b: var(vec![0.0; *n_out], (1, *n_out))?,
                }
            }
            LayerSpec::Sigmoid => Layer::Sigmoid,
            LayerSpec::Goodness { dim } => {
                // N(0, 1) per value, then unit length.
                let mut p: Vec<f32> = (0..*dim)
                    .map(|_| rng.sample(rand_distr::StandardNormal))
                    .collect();
                let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                p.iter_mut().for_each(|v| *v /= norm);
                Layer::Goodness {
                    p: var(p, (1, *dim))?,
                }
            }
            LayerSpec::Normalize => Layer::Normalize,
            LayerSpec::Tile { copies } => Layer::Tile { copies: *copies },
        })
    }

    /// The layer's structure without its values, as checkpoints record it.
    pub fn spec(&self) -> LayerSpec {
        match self {
            Layer::Physical { device, skip, .. } => LayerSpec::Physical {
                device: device.clone(),
                skip: *skip,
            },
            Layer::Rescale { a, .. } => LayerSpec::Rescale {
                dim: a.as_tensor().dims().last().copied().unwrap_or(0),
            },
            Layer::Linear { w, .. } => {
                let (n_out, n_in) = w.as_tensor().dims2().unwrap_or((0, 0));
                LayerSpec::Linear { n_in, n_out }
            }
            Layer::Sigmoid => LayerSpec::Sigmoid,
            Layer::Goodness { p } => LayerSpec::Goodness {
                dim: p.as_tensor().dims().last().copied().unwrap_or(0),
            },
            Layer::Normalize => LayerSpec::Normalize,
            Layer::Tile { copies } => LayerSpec::Tile { copies: *copies },
        }
    }

    /// The device of a physical layer.
    pub fn device(&self) -> Option<&str> {
        match self {
            Layer::Physical { device, .. } => Some(device),
            _ => None,
        }
    }

    /// Parameters by their checkpoint names (`layer{i}.…`), fixed ones
    /// included: a checkpoint must restore the rescales' statistics too.
    pub fn named_vars(&self, i: usize) -> Vec<(String, Var)> {
        match self {
            Layer::Physical { theta, .. } => vec![(format!("layer{i}.theta"), theta.clone())],
            Layer::Rescale {
                a,
                b,
                mean,
                inv_std,
            } => vec![
                (format!("layer{i}.a"), a.clone()),
                (format!("layer{i}.b"), b.clone()),
                (format!("layer{i}.mean"), mean.clone()),
                (format!("layer{i}.inv_std"), inv_std.clone()),
            ],
            Layer::Linear { w, b } => vec![
                (format!("layer{i}.weight"), w.clone()),
                (format!("layer{i}.bias"), b.clone()),
            ],
            Layer::Goodness { p } => vec![(format!("layer{i}.p"), p.clone())],
            Layer::Sigmoid | Layer::Normalize | Layer::Tile { .. } => vec![],
        }
    }
}
