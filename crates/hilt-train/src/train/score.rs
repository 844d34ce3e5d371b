//! How well a network classifies: the labels as a tensor, the count of
//! correct predictions, and accuracy on a split.

use candle_core::{D, Device, Tensor};

use crate::array::tensor2;
use crate::data::Split;
use crate::error::Result;
use crate::net::{Network, Physics, Readout};

/// Class labels `[B]` for the cross-entropy.
pub fn labels(y: &[u32]) -> Result<Tensor> {
    Ok(Tensor::from_slice(y, y.len(), &Device::Cpu)?)
}

/// How many rows of `logits` have their largest score at the label.
pub(crate) fn correct(logits: &Tensor, y: &[u32]) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(y).filter(|(p, t)| p == t).count())
}

/// Accuracy of the network on `split`, executed by `physics` (0 on an
/// empty split). A goodness readout shows every row once per label.
pub async fn accuracy(net: &Network, split: &Split, mut physics: Physics<'_>) -> Result<f64> {
    if split.is_empty() {
        return Ok(0.0);
    }
    let x = tensor2(&split.x)?;
    let scores = match net.readout {
        Readout::Argmax => net.forward_values(&x, physics).await?.0,
        Readout::Goodness { overlay } => net.label_scores(&x, overlay, &mut physics).await?,
    };
    Ok(correct(&scores, &split.y)? as f64 / split.len() as f64)
}
