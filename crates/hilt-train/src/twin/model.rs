//! The digital twin: an MLP from the device's control features to its
//! outputs, with the normalisation and the device spec it was fitted for,
//! all in one safetensors file (spec and metrics in the header metadata).

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::encode::Encoder;
use super::wiener::{Params as WienerParams, Shape, Wiener};
use crate::error::{Error, Result};
use crate::tensorfile::{self, Loaded};

const META_KEY: &str = "hilt.twin";

/// What a twin file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinMeta {
    pub spec: DeviceSpec,
    pub hidden: Vec<usize>,
    /// RMS error on the held-out rows over the RMS spread of the outputs
    /// (0 = perfect, 1 = no better than predicting the mean).
    pub heldout_rel_error: f32,
    /// The same ratio for the measurement noise of the mean of the repeats:
    /// the floor a perfect twin would sit at.
    pub noise_floor_rel: f32,
    pub train_rows: usize,
    pub heldout_rows: usize,
    pub epochs: usize,
    /// Absent in files from before waveform twins: those are MLPs.
    #[serde(default)]
    pub kind: TwinKind,
}

/// The twin's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TwinKind {
    /// An MLP on the normalised control vector: any device.
    #[default]
    Mlp,
    /// FIR → pointwise nonlinearity → the device's time bins (plate,
    /// circuit): see `wiener.rs`.
    Waveform,
}

/// The fitted function.
#[derive(Debug, Clone)]
pub enum Body {
    Mlp(Vec<(Tensor, Tensor)>),
    Waveform(Box<Wiener>, WienerParams),
}

#[derive(Debug, Clone)]
pub struct Twin {
    pub meta: TwinMeta,
    pub encoder: Encoder,
    body: Body,
    in_mean: Tensor,
    in_std: Tensor,
    out_mean: Tensor,
    out_std: Tensor,
}

/// Stats used to normalise inputs and outputs, `[1, d]` each.
#[derive(Debug, Clone)]
pub struct Norm {
    pub in_mean: Tensor,
    pub in_std: Tensor,
    pub out_mean: Tensor,
    pub out_std: Tensor,
}

/// A freshly initialised MLP whose weights are optimiser variables.
#[derive(Debug)]
pub struct TrainableMlp {
    pub vars: Vec<Var>,
}

impl TrainableMlp {
    pub fn new(sizes: &[usize], seed: u64) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::new();
        for w in sizes.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            // Kaiming-uniform bound for SiLU-like activations.
            let bound = (6.0 / fan_in as f32).sqrt();
            let wv: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| rng.random_range(-bound..bound) * 0.5)
                .collect();
            vars.push(Var::from_tensor(&Tensor::from_vec(
                wv,
                (fan_out, fan_in),
                &Device::Cpu,
            )?)?);
            vars.push(Var::from_tensor(&Tensor::zeros(
                fan_out,
                candle_core::DType::F32,
                &Device::Cpu,
            )?)?);
        }
        Ok(TrainableMlp { vars })
    }
}

/// `x → silu(x Wᵀ + b) → … → x Wᵀ + b`: smooth activations give PAT smooth
/// Jacobians (ReLU twins give piecewise-constant ones).
pub fn mlp_forward(layers: &[(Tensor, Tensor)], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(&w.t()?)?.broadcast_add(b)?;
        if i + 1 < layers.len() {
            h = h.silu()?;
        }
    }
    Ok(h)
}

impl Twin {
    pub fn new(meta: TwinMeta, body: Body, norm: Norm) -> Result<Self> {
        let encoder = Encoder::for_spec(&meta.spec)?;
        let body = match body {
            Body::Mlp(layers) => Body::Mlp(
                layers
                    .into_iter()
                    .map(|(w, b)| (w.detach(), b.detach()))
                    .collect(),
            ),
            Body::Waveform(w, p) => {
                let t = p.tensors().map(Tensor::detach).to_vec();
                Body::Waveform(w, WienerParams::from_tensors(t)?)
            }
        };
        Ok(Twin {
            meta,
            encoder,
            body,
            in_mean: norm.in_mean,
            in_std: norm.in_std,
            out_mean: norm.out_mean,
            out_std: norm.out_std,
        })
    }

    pub fn spec(&self) -> &DeviceSpec {
        &self.meta.spec
    }

    /// Predicted outputs in the device's units for features from `encoder`.
    pub fn forward_features(&self, f: &Tensor) -> Result<Tensor> {
        match &self.body {
            Body::Mlp(layers) => forward_normalised(layers, f, &self.norm()),
            Body::Waveform(w, p) => w.forward(p, f),
        }
    }

    /// Predicted outputs for `x [B, n_in]`, `theta [B or 1, n_par]`;
    /// differentiable in both.
    pub fn forward(&self, x: &Tensor, theta: &Tensor) -> Result<Tensor> {
        self.forward_features(&self.encoder.encode(x, theta)?)
    }

    fn norm(&self) -> Norm {
        Norm {
            in_mean: self.in_mean.clone(),
            in_std: self.in_std.clone(),
            out_mean: self.out_mean.clone(),
            out_std: self.out_std.clone(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vec![
            ("in_mean".into(), self.in_mean.clone()),
            ("in_std".into(), self.in_std.clone()),
            ("out_mean".into(), self.out_mean.clone()),
            ("out_std".into(), self.out_std.clone()),
        ];
        match &self.body {
            Body::Mlp(layers) => {
                for (i, (w, b)) in layers.iter().enumerate() {
                    tensors.push((format!("layer{i}.weight"), w.clone()));
                    tensors.push((format!("layer{i}.bias"), b.clone()));
                }
            }
            Body::Waveform(_, p) => {
                for (name, t) in WienerParams::NAMES.iter().zip(p.tensors()) {
                    tensors.push((format!("waveform.{name}"), t.clone()));
                }
            }
        }
        tensorfile::save(path, META_KEY, &self.meta, &tensors)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut file: Loaded<TwinMeta> =
            Loaded::read(path, META_KEY, "a twin written by `hilt twin fit`")?;
        let meta = file.meta.clone();
        let mut take = |k: &str| file.take(k);
        let norm = Norm {
            in_mean: take("in_mean")?,
            in_std: take("in_std")?,
            out_mean: take("out_mean")?,
            out_std: take("out_std")?,
        };
        let body = match meta.kind {
            TwinKind::Mlp => {
                let mut layers = Vec::new();
                for i in 0..=meta.hidden.len() {
                    layers.push((
                        take(&format!("layer{i}.weight"))?,
                        take(&format!("layer{i}.bias"))?,
                    ));
                }
                Body::Mlp(layers)
            }
            TwinKind::Waveform => {
                let shape = Shape::for_spec(&meta.spec)?.ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: a waveform twin for a '{}' device, which takes no waveform",
                        path.display(),
                        meta.spec.kind
                    ))
                })?;
                let mut t = Vec::new();
                for name in WienerParams::NAMES {
                    t.push(take(&format!("waveform.{name}"))?);
                }
                Body::Waveform(
                    Box::new(Wiener::new(shape)?),
                    WienerParams::from_tensors(t)?,
                )
            }
        };
        Twin::new(meta, body, norm)
    }
}

pub fn forward_normalised(layers: &[(Tensor, Tensor)], f: &Tensor, n: &Norm) -> Result<Tensor> {
    let z = f.broadcast_sub(&n.in_mean)?.broadcast_div(&n.in_std)?;
    let h = mlp_forward(layers, &z)?;
    Ok(h.broadcast_mul(&n.out_std)?.broadcast_add(&n.out_mean)?)
}
