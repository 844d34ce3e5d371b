//! The training loop shared by both methods; they differ in one line: PAT
//! builds its graph on the measured forward pass, in-silico on the twins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{D, Device, Tensor, Var, backprop::GradStore};
use candle_nn::Optimizer;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::Split;
use crate::error::{Error, Result};
use crate::net::{LayerSpec, Network, Params, Physics, tensor2};
use crate::rig::Rig;
use crate::twin::Twin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Physics-aware training: forward on the device, backward through the twin.
    Pat,
    /// Train on the twins alone, then deploy on the device.
    Insilico,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pat => "pat",
            Method::Insilico => "insilico",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub method: Method,
    pub epochs: usize,
    pub batch: usize,
    /// Adam learning rate of the physical parameters θ.
    pub lr_physical: f64,
    /// Adam learning rate of the digital layers.
    pub lr_digital: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip: f64,
    /// Weight of the range penalty on θ and on the devices' inputs.
    pub lag_amp: f64,
    /// Measurements averaged per sample on the device (training and
    /// evaluation alike).
    pub repeats: u32,
    pub seed: u64,
    /// Initial θ is drawn from this share of each device's parameter range,
    /// around its middle (1 = all of it). A drive that x and θ together
    /// push into the limit clamps, and a clamped element has no gradient.
    pub theta_init: f64,
    pub quiet: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            method: Method::Pat,
            epochs: 100,
            batch: 32,
            lr_physical: 0.02,
            lr_digital: 0.02,
            clip: 1.0,
            lag_amp: 5.0,
            repeats: 1,
            seed: 0,
            theta_init: 1.0,
            quiet: false,
        }
    }
}

/// One row of `epochs.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    /// On the forward passes of the epoch: measured for PAT, the twins' for
    /// in-silico.
    pub train_accuracy: f64,
    /// Measured on the device after the epoch.
    pub test_accuracy: f64,
    /// The twins' prediction of the same test accuracy.
    pub twin_test_accuracy: f64,
    pub lr_physical: f64,
    pub wall_seconds: f64,
}

#[derive(Debug)]
pub struct Trained {
    pub epochs: Vec<EpochRow>,
    pub wall: Duration,
    /// Rig time spent measuring while training and evaluating.
    pub busy: Duration,
    pub samples: u64,
}

pub fn labels(y: &[u32]) -> Result<Tensor> {
    Ok(Tensor::from_slice(y, y.len(), &Device::Cpu)?)
}

fn correct(logits: &Tensor, y: &[u32]) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(y).filter(|(p, t)| p == t).count())
}

/// Accuracy of the network on `split`, executed by `physics`.
pub async fn accuracy(net: &Network, split: &Split, physics: Physics<'_>) -> Result<f64> {
    if split.is_empty() {
        return Ok(0.0);
    }
    let (logits, _) = net.forward_values(&tensor2(&split.x)?, physics).await?;
    Ok(correct(&logits, &split.y)? as f64 / split.len() as f64)
}

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

/// Data-dependent initialisation, done through the twins so both methods
/// start from the same network:
/// - each physical layer keeps, of `THETA_DRAWS` seeded draws of θ, the one
///   whose output varies most across examples: a draw that clips most of a
///   mask shut passes almost nothing on, and a deep network built on such
///   layers starts (and stays) at chance;
/// - each rescale is placed so ±2σ of what reaches it spans the next
///   device's input range, and the readout starts with standardised scores.
pub async fn initialise(
    net: &mut Network,
    x: &Tensor,
    twins: &HashMap<String, Arc<Twin>>,
    seed: u64,
    theta_init: f64,
) -> Result<()> {
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x1417);
    let rows = x.dim(0)?.min(512);
    let mut h = x.narrow(0, 0, rows)?;
    for i in 0..net.params.len() {
        if let (Params::Physical { theta }, LayerSpec::Physical { device }) =
            (&net.params[i], &net.spec.layers[i])
        {
            let d = net.device_of(i)?;
            let twin = twins
                .get(device)
                .ok_or_else(|| Error::invalid(format!("no twin for device '{device}'")))?;
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
            theta.set(&best.1)?;
        }
        if let Params::Rescale {
            a,
            b,
            mean: m,
            inv_std,
        } = &net.params[i]
        {
            // Per-value spread with a floor at a share of the layer's mean
            // spread: pure per-value standardising blows a dark bin's read
            // noise up to the full input range of the next device, one
            // scale for the whole layer starves the dim values instead.
            let mean = h.mean_keepdim(0)?;
            let var_f = h.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let var_g = var_f.mean_all()?;
            let std = (var_f.broadcast_add(&(var_g * (SPREAD_FLOOR * SPREAD_FLOOR))?)? + 1e-12)?
                .sqrt()?;
            let next = net.spec.layers[i + 1..].iter().find_map(|l| match l {
                LayerSpec::Physical { device } => net.devices.get(device).map(|d| d.input_range),
                _ => None,
            });
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
        }
        // Advance through layer i alone.
        let single = Network {
            spec: crate::net::NetworkSpec {
                n_in: 0,
                n_classes: 0,
                layers: vec![net.spec.layers[i].clone()],
            },
            params: vec![net.params[i].clone()],
            devices: net.devices.clone(),
        };
        h = single.forward_values(&h, Physics::Twins(twins)).await?.0;
    }
    Ok(())
}

fn clip_grads(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        return Err(Error::invalid(
            "gradient is not finite; lower the learning rates",
        ));
    }
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * s)?);
            }
        }
    }
    Ok(norm)
}

pub async fn train(
    net: &mut Network,
    train: &Split,
    test: &Split,
    twins: &HashMap<String, Arc<Twin>>,
    rigs: &mut HashMap<String, Rig>,
    opt: &TrainOptions,
    mut on_epoch: impl FnMut(&[EpochRow], &Network) -> Result<()>,
) -> Result<Trained> {
    if opt.epochs == 0 || opt.batch == 0 {
        return Err(Error::invalid("--epochs and --batch must be at least 1"));
    }
    let phys = net.physical_vars();
    let digi = net.digital_vars();
    let adam = |vars: Vec<Var>, lr: f64| {
        candle_nn::AdamW::new(
            vars,
            candle_nn::ParamsAdamW {
                lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
    };
    let mut opt_p = adam(phys.clone(), opt.lr_physical)?;
    let mut opt_d = adam(digi.clone(), opt.lr_digital)?;
    let all: Vec<Var> = phys.iter().chain(&digi).cloned().collect();

    let start = Instant::now();
    let busy0: Duration = rigs.values().map(Rig::busy).sum();
    let samples0: u64 = rigs.values().map(Rig::samples).sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opt.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let steps_per_epoch = train.len().div_ceil(opt.batch);
    let total = (opt.epochs * steps_per_epoch) as f64;
    let pb = crate::ui::bar(opt.epochs as u64, opt.method.as_str(), opt.quiet);
    let mut rows = Vec::new();
    let mut step = 0usize;
    for epoch in 1..=opt.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        let mut lr_p = opt.lr_physical;
        for chunk in order.chunks(opt.batch) {
            let decay =
                0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos());
            lr_p = opt.lr_physical * decay;
            opt_p.set_learning_rate(lr_p);
            opt_d.set_learning_rate(opt.lr_digital * decay);
            let batch = train.select(chunk);
            let x = tensor2(&batch.x)?;
            let (logits, penalty) = match opt.method {
                Method::Pat => {
                    let (_, measured) = net
                        .forward_values(&x, Physics::Rigs(rigs, opt.repeats))
                        .await?;
                    net.forward_graph(&x, twins, Some(&measured))?
                }
                Method::Insilico => net.forward_graph(&x, twins, None)?,
            };
            let ce = candle_nn::loss::cross_entropy(&logits, &labels(&batch.y)?)?;
            let loss = (&ce + (penalty * opt.lag_amp)?)?;
            let mut grads = loss.backward()?;
            clip_grads(&mut grads, &all, opt.clip)?;
            opt_p.step(&grads)?;
            opt_d.step(&grads)?;
            loss_sum += f64::from(ce.to_scalar::<f32>()?) * chunk.len() as f64;
            hits += correct(&logits, &batch.y)?;
            step += 1;
        }
        let test_accuracy = accuracy(net, test, Physics::Rigs(rigs, opt.repeats)).await?;
        let twin_test_accuracy = accuracy(net, test, Physics::Twins(twins)).await?;
        let row = EpochRow {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: hits as f64 / train.len() as f64,
            test_accuracy,
            twin_test_accuracy,
            lr_physical: lr_p,
            wall_seconds: start.elapsed().as_secs_f64(),
        };
        pb.set_prefix(format!(
            "loss {:.3} train {:.1} % test {:.1} % (twin {:.1} %)",
            row.train_loss,
            100.0 * row.train_accuracy,
            100.0 * row.test_accuracy,
            100.0 * row.twin_test_accuracy
        ));
        pb.inc(1);
        rows.push(row);
        on_epoch(&rows, net)?;
    }
    pb.finish_and_clear();
    Ok(Trained {
        epochs: rows,
        wall: start.elapsed(),
        busy: rigs.values().map(Rig::busy).sum::<Duration>() - busy0,
        samples: rigs.values().map(Rig::samples).sum::<u64>() - samples0,
    })
}
