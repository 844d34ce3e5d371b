//! The digital twin: a body (MLP or waveform model) from the device's
//! control features to its outputs, with the normalisation and the device
//! spec it was fitted for, all in one safetensors file (spec and metrics in
//! the header metadata, each parameter under its name).

use std::path::Path;

use candle_core::Tensor;
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::body::{TwinBody, TwinKind};
use super::encode::Encoder;
use super::norm::Norm;
use super::shape::Shape;
use crate::error::{Error, Result};
use crate::tensorfile::{self, Loaded};

const META_KEY: &str = "hilt.twin";

/// What a twin file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinMeta {
    /// The device as it described itself when recorded: a twin is only
    /// used for a device that still describes itself the same way.
    pub spec: DeviceSpec,
    /// Hidden widths of an MLP twin (empty for a waveform twin).
    pub hidden: Vec<usize>,
    /// RMS error on the held-out rows over the RMS spread of the outputs
    /// (0 = perfect, 1 = no better than predicting the mean).
    pub heldout_rel_error: f32,
    /// The same ratio for the measurement noise of the mean of the repeats:
    /// the floor a perfect twin would sit at.
    pub noise_floor_rel: f32,
    /// Rows fitted on.
    pub train_rows: usize,
    /// Rows scored on (the last ones recorded).
    pub heldout_rows: usize,
    /// Measurements per row recorded (1 for twin files made before this
    /// was kept): rows × repeats is what the twin cost the rig.
    #[serde(default = "one")]
    pub repeats: usize,
    /// Epochs fitted.
    pub epochs: usize,
    /// The body's form.
    #[serde(default)]
    pub kind: TwinKind,
}

fn one() -> usize {
    1
}

/// A fitted twin, ready to stand in for its device.
#[derive(Debug, Clone)]
pub struct Twin {
    /// What it was fitted for and how well it fits.
    pub meta: TwinMeta,
    /// How (x, θ) become the body's features.
    pub encoder: Encoder,
    body: TwinBody,
    norm: Norm,
}

impl Twin {
    /// A twin of `body` (detached from the graph it was fitted in).
    pub fn new(meta: TwinMeta, body: &TwinBody, norm: Norm) -> Result<Self> {
        Ok(Twin {
            encoder: Encoder::for_spec(&meta.spec)?,
            meta,
            body: body.detach(),
            norm,
        })
    }

    /// The device it was fitted for.
    pub fn spec(&self) -> &DeviceSpec {
        &self.meta.spec
    }

    /// Predicted outputs in the device's units for features from `encoder`.
    pub fn forward_features(&self, f: &Tensor) -> Result<Tensor> {
        self.body.forward(f, &self.norm)
    }

    /// Predicted outputs for `x [B, n_in]`, `theta [B or 1, n_par]`;
    /// differentiable in both.
    pub fn forward(&self, x: &Tensor, theta: &Tensor) -> Result<Tensor> {
        self.forward_features(&self.encoder.encode(x, theta)?)
    }

    /// Write the twin, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vec![
            ("in_mean".into(), self.norm.in_mean.clone()),
            ("in_std".into(), self.norm.in_std.clone()),
            ("out_mean".into(), self.norm.out_mean.clone()),
            ("out_std".into(), self.norm.out_std.clone()),
        ];
        tensors.extend(self.body.named());
        tensorfile::save(path, META_KEY, &self.meta, &tensors)
    }

    /// A twin written by [`Twin::save`]; every tensor its kind needs must
    /// be there, and a waveform twin's device must still describe a
    /// waveform.
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
            TwinKind::Mlp => TwinBody::mlp_from_named(meta.hidden.len() + 1, take)?,
            TwinKind::Waveform => {
                let shape = Shape::for_spec(&meta.spec)?.ok_or_else(|| {
                    Error::data(
                        path,
                        format!(
                            "a waveform twin for device '{}', which takes no waveform (it publishes no '{}')",
                            meta.spec.id,
                            super::shape::MEMORY_KEY
                        ),
                    )
                })?;
                TwinBody::waveform_from_named(shape, take)?
            }
        };
        Twin::new(meta, &body, norm)
    }
}
