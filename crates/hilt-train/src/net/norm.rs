//! The rescales' standardisation: each rescale divides what reaches it by
//! a per-value spread (floored at a share of the layer's mean spread) and
//! subtracts a per-value mean. Placed once at initialisation, and then
//! followed during training: a θ step that brightens or dims a physical
//! layer's whole output would otherwise push the next device's inputs
//! against the ends of their range, where the clamp passes nothing on
//! and the network falls back to chance.

use candle_core::Tensor;

use super::layer::Layer;
use super::network::Network;
use crate::error::{Error, Result};

/// Floor of a rescale's normalising spread, as a share of its layer's RMS
/// spread: pure per-value standardising blows a dark bin's read noise up
/// to the full input range of the next device, one scale for the whole
/// layer starves the dim values instead (0.3 beat 0 and ∞ on the 4-layer
/// SHG vowel network).
const SPREAD_FLOOR: f64 = 0.3;

/// Mean and floored spread of `h` (rows are examples), per value.
pub fn batch_stats(h: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = h.mean_keepdim(0)?;
    let var_f = h.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
    let var_g = var_f.mean_all()?;
    let std = (var_f.broadcast_add(&(var_g * (SPREAD_FLOOR * SPREAD_FLOOR))?)? + 1e-12)?.sqrt()?;
    Ok((mean, std))
}

impl Network {
    /// Move the mean and spread of every rescale that feeds a device
    /// `momentum` of the way towards those of this batch: `x` through the
    /// network, each physical layer's output taken from `outputs` (in
    /// order: what the rigs measured for PAT, what the twins predicted in
    /// silico).
    pub fn follow_statistics(&self, x: &Tensor, outputs: &[Tensor], momentum: f64) -> Result<()> {
        let mut h = x.clone();
        let mut k = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Physical { skip, .. } => {
                    let y = outputs
                        .get(k)
                        .ok_or_else(|| Error::invalid("fewer outputs than physical layers"))?;
                    k += 1;
                    h = if *skip {
                        Tensor::cat(&[y, &h], 1)?
                    } else {
                        y.clone()
                    };
                    continue;
                }
                // Only a rescale that feeds a device: the readout's
                // standardisation is part of the class scores, and
                // following it would take each class's batch mean out of
                // its score.
                Layer::Rescale { mean, inv_std, .. } if h.dim(0)? > 1 && self.feeds_device(i) => {
                    let (bm, bs) = batch_stats(&h)?;
                    let old_std = inv_std.as_tensor().recip()?;
                    let m = ((mean.as_tensor() * (1.0 - momentum))? + (bm * momentum)?)?;
                    let s = ((old_std * (1.0 - momentum))? + (bs * momentum)?)?;
                    mean.set(&m)?;
                    inv_std.set(&s.recip()?)?;
                }
                _ => {}
            }
            h = Self::digital(layer, &h, false)?;
        }
        Ok(())
    }

    /// Whether a physical layer follows layer `i`.
    fn feeds_device(&self, i: usize) -> bool {
        self.layers[i + 1..]
            .iter()
            .any(|l| matches!(l, Layer::Physical { .. }))
    }
}
