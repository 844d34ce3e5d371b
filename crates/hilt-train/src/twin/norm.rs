//! The normalisation a twin is fitted in: features and outputs standardised
//! by their spread on the training rows, so one learning rate suits every
//! device's units.

use candle_core::{Device, Tensor};
use ndarray::{Array1, Array2, Axis};

use crate::error::Result;

/// Stats used to normalise inputs and outputs, `[1, d]` each.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Mean of each feature.
    pub in_mean: Tensor,
    /// Spread of each feature (at least 10⁻³).
    pub in_std: Tensor,
    /// Mean of each output.
    pub out_mean: Tensor,
    /// Spread of each output, floored at 10⁻³ of the largest one so a
    /// silent output does not blow up the loss.
    pub out_std: Tensor,
}

fn row(v: Array1<f32>) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v.to_vec(), (1, n), &Device::Cpu)?)
}

impl Norm {
    /// The stats of features `f` and outputs `y` (training rows only), and
    /// the outputs' mean as an array for scoring.
    pub fn fit(f: &Array2<f32>, y: &Array2<f32>) -> Result<(Self, Array1<f32>)> {
        let in_mean = f.mean_axis(Axis(0)).unwrap_or_default();
        let in_std = f.std_axis(Axis(0), 0.0).mapv(|v| v.max(1e-3));
        let out_mean = y.mean_axis(Axis(0)).unwrap_or_default();
        let out_spread = y.std_axis(Axis(0), 0.0);
        let floor = out_spread.iter().cloned().fold(0.0f32, f32::max) * 1e-3 + 1e-12;
        let out_std = out_spread.mapv(|v| v.max(floor));
        let norm = Norm {
            in_mean: row(in_mean)?,
            in_std: row(in_std)?,
            out_mean: row(out_mean.clone())?,
            out_std: row(out_std)?,
        };
        Ok((norm, out_mean))
    }

    /// Features in normalised units.
    pub fn features(&self, f: &Tensor) -> Result<Tensor> {
        Ok(f.broadcast_sub(&self.in_mean)?
            .broadcast_div(&self.in_std)?)
    }

    /// Outputs in normalised units.
    pub fn outputs(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.broadcast_sub(&self.out_mean)?
            .broadcast_div(&self.out_std)?)
    }

    /// Normalised outputs back in the device's units.
    pub fn denormalise(&self, z: &Tensor) -> Result<Tensor> {
        Ok(z.broadcast_mul(&self.out_std)?
            .broadcast_add(&self.out_mean)?)
    }
}
