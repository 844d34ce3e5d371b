//! Data-dependent initialisation, through the twins (PAT and in-silico,
//! so both start from the same network) or, for a method without twins,
//! through the devices themselves on fewer rows and draws (the rig samples
//! are counted as training). Layer by layer, on a share of the training
//! examples carried forward through the layers already placed:
//! - each physical layer keeps, of a few seeded draws of θ, the one whose
//!   output varies most across examples: a draw that clips most of a mask
//!   shut passes almost nothing on, and a deep network built on such
//!   layers starts (and stays) at chance;
//! - each rescale is placed so ±2σ of what reaches it spans the next
//!   device's input range, and the readout starts as a correlation
//!   readout (see `fit_readout`).

use candle_core::{Device, Tensor, Var};
use hilt_core::Range;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::net::{Layer, Network, Physics, batch_stats};

/// How much of the data and how many θ draws the initialisation uses.
#[derive(Debug, Clone, Copy)]
pub struct InitBudget {
    /// Training rows carried through the layers.
    pub rows: usize,
    /// Draws of θ tried per physical layer (the first is the one drawn at
    /// construction).
    pub theta_draws: usize,
}

impl InitBudget {
    /// Through the twins: computation only, so 512 rows and 16 draws.
    pub const TWINS: InitBudget = InitBudget {
        rows: 512,
        theta_draws: 16,
    };
    /// Through the devices: every row and draw is rig time, so 128 rows
    /// and 4 draws.
    pub const RIGS: InitBudget = InitBudget {
        rows: 128,
        theta_draws: 4,
    };
}

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

/// Place every layer of `net` (see the module's doc) by running it on
/// `physics`; `seed` seeds the θ draws, `theta_init` the share of each
/// parameter range they come from.
pub async fn initialise(
    net: &Network,
    (x, y): (&Tensor, &[u32]),
    mut physics: Physics<'_>,
    budget: InitBudget,
    seed: u64,
    theta_init: f64,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1417);
    // Rows spread evenly over the split: a data set stored class by class
    // (the vowel file) must not start from a few classes only.
    let n = x.dim(0)?.min(y.len());
    let rows = n.min(budget.rows);
    let picked: Vec<u32> = (0..rows).map(|k| (k * n / rows.max(1)) as u32).collect();
    let mut h = x.index_select(&Tensor::new(picked.as_slice(), x.device())?, 0)?;
    let y: Vec<u32> = picked.iter().map(|&i| y[i as usize]).collect();
    let y = y.as_slice();
    let last = net.layers.len().saturating_sub(1);
    for i in 0..net.layers.len() {
        match &net.layers[i] {
            Layer::Physical { theta, .. } => {
                let draws = Draws {
                    rng: &mut rng,
                    theta_init,
                    n: budget.theta_draws,
                };
                let best = choose_theta(net, i, theta, &h, draws, &mut physics).await?;
                theta.set(&best)?;
            }
            layer @ Layer::Rescale { .. } => {
                place_rescale(layer, &h, next_input_range(net, i))?;
                if i == last && h.dim(1)? == net.n_classes {
                    fit_readout(layer, &h, y)?;
                }
            }
            _ => {}
        }
        h = net.forward_layer(i, &h, &mut physics).await?.0;
        tracing::debug!(layer = i, spread = spread_score(&h)?, "initialised");
    }
    Ok(())
}

/// Where the θ candidates come from.
struct Draws<'r> {
    rng: &'r mut ChaCha8Rng,
    theta_init: f64,
    n: usize,
}

/// Of the current θ (narrowed to `theta_init` of the range) and
/// `draws.n − 1` seeded draws within that share, the one whose output on
/// `h` (layer `i` run on `physics`) keeps most of the examples' spread.
async fn choose_theta(
    net: &Network,
    i: usize,
    theta: &Var,
    h: &Tensor,
    draws: Draws<'_>,
    physics: &mut Physics<'_>,
) -> Result<Tensor> {
    let d = net.device_of(i)?;
    let r = d.param_range;
    // Draws within `theta_init` of the range around its middle.
    let mid = f64::from(r.min + r.width() / 2.0);
    let half = f64::from(r.width() / 2.0) * draws.theta_init;
    let (lo, hi) = ((mid - half) as f32, (mid + half) as f32);
    let first = theta
        .as_tensor()
        .detach()
        .affine(draws.theta_init, mid * (1.0 - draws.theta_init))?;
    let mut best = (f64::NEG_INFINITY, first.copy()?);
    for k in 0..draws.n.max(1) {
        let cand = if k == 0 {
            first.copy()?
        } else {
            let v: Vec<f32> = (0..d.n_par)
                .map(|_| draws.rng.random_range(lo..=hi))
                .collect();
            Tensor::from_vec(v, (1, d.n_par), &Device::Cpu)?
        };
        let score = spread_score(&net.measure(i, h, &cand, physics).await?.y)?;
        if score > best.0 {
            best = (score, cand);
        }
    }
    Ok(best.1)
}

/// Gain of the readout's initial correlation scores: a class whose bin
/// correlates fully with it starts `READOUT_GAIN` standard scores above
/// the rest.
const READOUT_GAIN: f64 = 3.0;

/// The readout (a rescale whose outputs are the logits) starts as a
/// correlation readout: each class's gain is the correlation of its own
/// standardised bin with the class's indicator over the rows `y` labels.
/// Standardised alone, every bin of an SHG spectrum follows the pulse's
/// overall brightness, so all logits move together, the softmax is flat
/// and the loss sits at ln C until training breaks the symmetry by chance
/// (about 110 of 300 epochs of the 4-layer vowel network).
fn fit_readout(layer: &Layer, h: &Tensor, y: &[u32]) -> Result<()> {
    let Layer::Rescale {
        a, mean, inv_std, ..
    } = layer
    else {
        return Err(Error::invalid("fit_readout: not a rescale layer"));
    };
    let z = h
        .broadcast_sub(mean.as_tensor())?
        .broadcast_mul(inv_std.as_tensor())?;
    let z = crate::array::array2(&z)?;
    let n = z.nrows() as f64;
    let gains: Vec<f32> = (0..z.ncols())
        .map(|c| {
            let t: Vec<f64> = y
                .iter()
                .map(|&l| f64::from(u8::from(l as usize == c)))
                .collect();
            let col = z.column(c);
            let (mz, mt) = (col.sum() as f64 / n, t.iter().sum::<f64>() / n);
            let (mut cov, mut vz, mut vt) = (0.0, 0.0, 0.0);
            for (zi, ti) in col.iter().zip(&t) {
                let (dz, dt) = (f64::from(*zi) - mz, ti - mt);
                cov += dz * dt;
                vz += dz * dz;
                vt += dt * dt;
            }
            let corr = cov / (vz * vt).sqrt().max(1e-12);
            (READOUT_GAIN * corr) as f32
        })
        .collect();
    let dims = a.as_tensor().dims().to_vec();
    a.set(&Tensor::from_vec(gains, dims, &Device::Cpu)?)?;
    Ok(())
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
    let (mean, std) = batch_stats(h)?;
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
