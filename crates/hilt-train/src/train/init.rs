//! Data-dependent initialisation, done through the twins so both methods
//! start from the same network. Layer by layer, on up to 512 training
//! examples carried forward through the layers already placed:
//! - each physical layer keeps, of `THETA_DRAWS` seeded draws of θ, the one
//!   whose output varies most across examples: a draw that clips most of a
//!   mask shut passes almost nothing on, and a deep network built on such
//!   layers starts (and stays) at chance;
//! - each rescale is placed so ±2σ of what reaches it spans the next
//!   device's input range, and the readout starts with standardised scores.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use hilt_core::{DeviceSpec, Range};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::net::{Layer, Network, Physics};
use crate::twin::Twin;

/// Draws of θ tried per physical layer at initialisation.
const THETA_DRAWS: usize = 16;
/// Floor of a rescale's normalising spread, as a share of its layer's RMS
/// spread (0.3 beat 0 and ∞ on the 4-layer SHG vowel network).
const SPREAD_FLOOR: f64 = 0.3;

/// How much of the batch's variation a layer's output keeps: the mean
/// per-value spread across examples over the mean magnitude.
fn spread_score(h: &Tensor) -> Result<f64> {
    let mean = h.mean_keepdim(0)?;
    let sd = h
        .broadcast_sub(&mean)?
        .sqr()?
        .mean_keepdim(0)?
        .sqrt()?
        .mean_all()?;
    let mag = h.abs()?.mean_all()?;
    Ok(f64::from(sd.to_scalar::<f32>()?) / (f64::from(mag.to_scalar::<f32>()?) + 1e-12))
}

/// Place every layer of `net` (see the module's doc); `seed` seeds the θ
/// draws, `theta_init` the share of each parameter range they come from.
pub async fn initialise(
    net: &Network,
    x: &Tensor,
    twins: &HashMap<String, Arc<Twin>>,
    seed: u64,
    theta_init: f64,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1417);
    let rows = x.dim(0)?.min(512);
    let mut h = x.narrow(0, 0, rows)?;
    for i in 0..net.layers.len() {
        match &net.layers[i] {
            Layer::Physical { device, theta } => {
                let twin = twins
                    .get(device)
                    .ok_or_else(|| Error::invalid(format!("no twin for device '{device}'")))?;
                let d = net.device_of(i)?;
                let best = choose_theta(d, theta, &h, twin, &mut rng, theta_init)?;
                theta.set(&best)?;
            }
            layer @ Layer::Rescale { .. } => {
                place_rescale(layer, &h, next_input_range(net, i))?;
            }
            _ => {}
        }
        h = net
            .forward_layer(i, &h, &mut Physics::Twins(twins))
            .await?
            .0;
    }
    Ok(())
}

/// Of the current θ (narrowed to `theta_init` of the range) and
/// `THETA_DRAWS − 1` seeded draws within that share, the one whose twin
/// output on `h` keeps most of the examples' spread.
fn choose_theta(
    d: &DeviceSpec,
    theta: &Var,
    h: &Tensor,
    twin: &Twin,
    rng: &mut ChaCha8Rng,
    theta_init: f64,
) -> Result<Tensor> {
    let r = d.param_range;
    let xin = h.clamp(d.input_range.min, d.input_range.max)?;
    // Draws within `theta_init` of the range around its middle.
    let mid = f64::from(r.min + r.width() / 2.0);
    let half = f64::from(r.width() / 2.0) * theta_init;
    let (lo, hi) = ((mid - half) as f32, (mid + half) as f32);
    let first = theta
        .as_tensor()
        .detach()
        .affine(theta_init, mid * (1.0 - theta_init))?;
    let mut best = (f64::NEG_INFINITY, first.copy()?);
    for k in 0..THETA_DRAWS {
        let cand = if k == 0 {
            first.copy()?
        } else {
            let v: Vec<f32> = (0..d.n_par).map(|_| rng.random_range(lo..=hi)).collect();
            Tensor::from_vec(v, (1, d.n_par), &Device::Cpu)?
        };
        let score = spread_score(&twin.forward(&xin, &cand)?)?;
        if score > best.0 {
            best = (score, cand);
        }
    }
    Ok(best.1)
}

/// The input range of the first physical layer after layer `i`.
fn next_input_range(net: &Network, i: usize) -> Option<Range> {
    net.layers[i + 1..].iter().find_map(|l| {
        l.device()
            .and_then(|d| net.devices.get(d))
            .map(|d| d.input_range)
    })
}

/// Standardise what reaches the rescale (`h`) and map ±2σ onto `next`, the
/// next device's input range (unit scores when no device follows).
fn place_rescale(layer: &Layer, h: &Tensor, next: Option<Range>) -> Result<()> {
    let Layer::Rescale {
        a,
        b,
        mean: m,
        inv_std,
    } = layer
    else {
        return Err(Error::invalid("place_rescale: not a rescale layer"));
    };
    // Per-value spread with a floor at a share of the layer's mean
    // spread: pure per-value standardising blows a dark bin's read
    // noise up to the full input range of the next device, one
    // scale for the whole layer starves the dim values instead.
    let mean = h.mean_keepdim(0)?;
    let var_f = h.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
    let var_g = var_f.mean_all()?;
    let std = (var_f.broadcast_add(&(var_g * (SPREAD_FLOOR * SPREAD_FLOOR))?)? + 1e-12)?.sqrt()?;
    let (scale, centre) = match next {
        Some(r) => (
            f64::from(r.width()) / 4.0,
            f64::from(r.min + r.width() / 2.0),
        ),
        None => (1.0, 0.0),
    };
    m.set(&mean)?;
    inv_std.set(&std.recip()?)?;
    a.set(&a.as_tensor().ones_like()?.affine(scale, 0.0)?)?;
    b.set(&b.as_tensor().ones_like()?.affine(0.0, centre)?)?;
    Ok(())
}
