//! The fitted function inside a twin: an MLP on the normalised features or
//! the waveform model of a time-domain device, each with named parameters.

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::norm::Norm;
use super::shape::Shape;
use super::wiener::{WaveformParams, Wiener};
use crate::error::Result;

/// The twin's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TwinKind {
    /// An MLP on the normalised control vector: any device.
    #[default]
    Mlp,
    /// FIR → pointwise nonlinearity → the device's time bins: devices
    /// driven by a held waveform (plate, circuit); see `wiener.rs`.
    Waveform,
}

/// One dense layer of an MLP twin, `x Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[fan_out, fan_in]`.
    pub weight: Tensor,
    /// `[fan_out]`.
    pub bias: Tensor,
}

/// What a twin computes.
#[derive(Debug, Clone)]
pub enum TwinBody {
    /// `x → silu(x Wᵀ + b) → … → x Wᵀ + b` in normalised units: smooth
    /// activations give PAT smooth Jacobians (ReLU twins give
    /// piecewise-constant ones).
    Mlp(Vec<Dense>),
    /// The waveform model, its fixed structure and its parameters.
    Waveform(Box<Wiener>, WaveformParams),
}

/// A body whose parameters are views of optimiser variables, to be fitted.
#[derive(Debug)]
pub struct Trainable {
    /// The body, reading the variables' current values.
    pub body: TwinBody,
    /// The variables, for the optimiser.
    pub vars: Vec<Var>,
}

impl TwinBody {
    /// A seeded MLP of the given widths (features first, outputs last).
    pub fn mlp(sizes: &[usize], seed: u64) -> Result<Trainable> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::new();
        let mut layers = Vec::new();
        for w in sizes.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            // Kaiming-uniform bound for SiLU-like activations.
            let bound = (6.0 / fan_in as f32).sqrt();
            let wv: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| rng.random_range(-bound..bound) * 0.5)
                .collect();
            let weight = Var::from_tensor(&Tensor::from_vec(wv, (fan_out, fan_in), &Device::Cpu)?)?;
            let bias = Var::from_tensor(&Tensor::zeros(
                fan_out,
                candle_core::DType::F32,
                &Device::Cpu,
            )?)?;
            layers.push(Dense {
                weight: weight.as_tensor().clone(),
                bias: bias.as_tensor().clone(),
            });
            vars.push(weight);
            vars.push(bias);
        }
        Ok(Trainable {
            body: TwinBody::Mlp(layers),
            vars,
        })
    }

    /// A seeded waveform model of a device of `shape`.
    pub fn waveform(shape: Shape, seed: u64) -> Result<Trainable> {
        let (params, vars) = WaveformParams::init(&shape, seed)?;
        Ok(Trainable {
            body: TwinBody::Waveform(Box::new(Wiener::new(shape)?), params),
            vars,
        })
    }

    /// Which form this is.
    pub fn kind(&self) -> TwinKind {
        match self {
            TwinBody::Mlp(_) => TwinKind::Mlp,
            TwinBody::Waveform(..) => TwinKind::Waveform,
        }
    }

    /// The same body with every tensor out of the graph it was fitted in.
    pub fn detach(&self) -> Self {
        match self {
            TwinBody::Mlp(layers) => TwinBody::Mlp(
                layers
                    .iter()
                    .map(|l| Dense {
                        weight: l.weight.detach(),
                        bias: l.bias.detach(),
                    })
                    .collect(),
            ),
            TwinBody::Waveform(w, p) => TwinBody::Waveform(w.clone(), p.detach()),
        }
    }

    /// Every parameter by its name in a twin file.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        match self {
            TwinBody::Mlp(layers) => layers
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    [
                        (format!("layer{i}.weight"), l.weight.clone()),
                        (format!("layer{i}.bias"), l.bias.clone()),
                    ]
                })
                .collect(),
            TwinBody::Waveform(_, p) => p
                .named()
                .into_iter()
                .map(|(name, t)| (format!("waveform.{name}"), t.clone()))
                .collect(),
        }
    }

    /// An MLP of `n_layers` dense layers from a source of named tensors.
    pub fn mlp_from_named(
        n_layers: usize,
        mut take: impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut layers = Vec::new();
        for i in 0..n_layers {
            layers.push(Dense {
                weight: take(&format!("layer{i}.weight"))?,
                bias: take(&format!("layer{i}.bias"))?,
            });
        }
        Ok(TwinBody::Mlp(layers))
    }

    /// A waveform model of `shape` from a source of named tensors.
    pub fn waveform_from_named(
        shape: Shape,
        mut take: impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<Self> {
        let p = WaveformParams::from_named(|name| take(&format!("waveform.{name}")))?;
        Ok(TwinBody::Waveform(Box::new(Wiener::new(shape)?), p))
    }

    /// Predicted outputs in the device's units for features `f`.
    pub fn forward(&self, f: &Tensor, norm: &Norm) -> Result<Tensor> {
        match self {
            TwinBody::Mlp(layers) => norm.denormalise(&mlp_forward(layers, &norm.features(f)?)?),
            TwinBody::Waveform(w, p) => w.forward(p, f),
        }
    }

    /// Predicted outputs in normalised units, the units the fit's loss is
    /// in: from the raw features `f` (waveform) or the normalised ones `z`
    /// (MLP), whichever the body takes.
    pub fn forward_normalised(&self, f: &Tensor, z: &Tensor, norm: &Norm) -> Result<Tensor> {
        match self {
            TwinBody::Mlp(layers) => mlp_forward(layers, z),
            TwinBody::Waveform(w, p) => norm.outputs(&w.forward(p, f)?),
        }
    }
}

fn mlp_forward(layers: &[Dense], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, l) in layers.iter().enumerate() {
        h = h.matmul(&l.weight.t()?)?.broadcast_add(&l.bias)?;
        if i + 1 < layers.len() {
            h = h.silu()?;
        }
    }
    Ok(h)
}
