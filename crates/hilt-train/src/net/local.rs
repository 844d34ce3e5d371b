//! Physical local learning's readout (Momeni et al., 2023, "PhyLL"), as
//! its published code does it: the label overlaid on the input, each
//! block's goodness `cos_sim(|h|, p)` against a fixed random unit vector,
//! and inference by showing the input once per label and taking the label
//! the blocks score best.

use candle_core::{D, Tensor};

use super::forward::Physics;
use super::layer::Layer;
use super::network::Network;
use super::spec::Overlay;
use crate::error::{Error, Result};

/// `x [B, n]` with `labels` (one per row) written into `n_classes` label
/// slots: all zero but the label's, which holds the row's largest
/// magnitude (after the logistic, when `overlay.squash`).
pub fn overlay(x: &Tensor, labels: &[u32], n_classes: usize, overlay: Overlay) -> Result<Tensor> {
    let (rows, n) = x.dims2()?;
    if labels.len() != rows {
        return Err(Error::invalid(format!(
            "overlay: {} labels for {rows} rows",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= n_classes) {
        return Err(Error::invalid(format!(
            "overlay: label {bad} of {n_classes} classes"
        )));
    }
    if !overlay.prepend && n < n_classes {
        return Err(Error::invalid(format!(
            "overlay: {n} features have no room for {n_classes} label slots"
        )));
    }
    let f = if overlay.squash {
        candle_nn::ops::sigmoid(x)?
    } else {
        x.clone()
    };
    let peak = f.abs()?.max_keepdim(1)?; // [B, 1]
    let mut onehot = vec![0f32; rows * n_classes];
    for (r, &l) in labels.iter().enumerate() {
        onehot[r * n_classes + l as usize] = 1.0;
    }
    let slots = Tensor::from_vec(onehot, (rows, n_classes), x.device())?.broadcast_mul(&peak)?;
    Ok(if overlay.prepend {
        Tensor::cat(&[&slots, &f], 1)?
    } else {
        Tensor::cat(&[&slots, &f.narrow(1, n_classes, n - n_classes)?], 1)?
    })
}

/// Goodness of each row of `h [B, n]`: `cos_sim(|h|, p)` with `p [1, n]`
/// (a unit vector, but its norm is divided out all the same).
pub fn goodness(h: &Tensor, p: &Tensor) -> Result<Tensor> {
    let a = h.abs()?;
    let dot = a.broadcast_mul(p)?.sum(1)?;
    let na = a.sqr()?.sum(1)?.sqrt()?;
    let np = p.sqr()?.sum_all()?.sqrt()?;
    let denom = (na.broadcast_mul(&np)? + 1e-8)?;
    Ok(dot.div(&denom)?)
}

impl Network {
    /// Every layer in turn on `h` (already overlaid), values only; the
    /// goodness `[B]` of each `Goodness` layer, in order.
    pub async fn forward_goodness(
        &self,
        h: &Tensor,
        physics: &mut Physics<'_>,
    ) -> Result<Vec<Tensor>> {
        let mut h = h.clone();
        let mut taps = Vec::new();
        for i in 0..self.layers.len() {
            if let Layer::Goodness { p } = &self.layers[i] {
                taps.push(goodness(&h, p.as_tensor())?);
            }
            h = self.forward_layer(i, &h, physics).await?.0;
        }
        Ok(taps)
    }

    /// `[B, n_classes]`: for each label, the summed goodness of the blocks
    /// with that label overlaid on `x`. Every label goes through the
    /// devices in one pass of `B × n_classes` rows.
    pub async fn label_scores(
        &self,
        x: &Tensor,
        overlay_kind: Overlay,
        physics: &mut Physics<'_>,
    ) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let c = self.n_classes;
        let mut shown = Vec::with_capacity(c);
        for label in 0..c as u32 {
            shown.push(overlay(x, &vec![label; rows], c, overlay_kind)?);
        }
        let all = Tensor::cat(&shown, 0)?;
        let taps = self.forward_goodness(&all, physics).await?;
        let Some(first) = taps.first() else {
            return Err(Error::invalid("a goodness readout needs a goodness layer"));
        };
        let mut total = first.zeros_like()?;
        for t in &taps {
            total = (total + t)?;
        }
        // [c·B] label-major → [B, c]
        Ok(total.reshape((c, rows))?.t()?.contiguous()?)
    }
}

/// The label of each row's best score.
pub fn best_label(scores: &Tensor) -> Result<Vec<u32>> {
    Ok(scores.argmax(D::Minus1)?.to_vec1::<u32>()?)
}
