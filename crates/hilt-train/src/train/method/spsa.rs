//! Simultaneous perturbation (SPSA): the gradient of the parameters the
//! devices stand between is estimated from the loss measured under
//! antithetic perturbations `±c Δ` (Δ Rademacher), each pair on its own
//! share of the batch, and averaged over the pairs. No twin is used. That
//! covers every physical layer's θ and the digital layers before the last
//! physical layer (their gradient would have to cross a device too); the
//! digital layers after it get their exact gradient, through the graph,
//! from the same measurements. The step `c` shrinks by `decay` every epoch
//! (P3's schedule), down to a tenth of its first value; θ is kept inside
//! the device's range, where a
//! perturbation still changes what the device does.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gradient::Backprop;
use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::net::{Layer, Network, Physics};
use crate::train::options::{SpsaOptions, TrainOptions};
use crate::train::score::{correct, labels};
use crate::train::state::{StateIn, StateOut};

/// The step never shrinks below this share of its first value: the
/// estimate divides the measured loss difference by the step, so a step
/// that decays towards zero turns the device's noise into the update.
const STEP_FLOOR: f64 = 0.1;

/// SPSA's state.
#[derive(Debug)]
pub struct Spsa {
    grad: Backprop,
    spsa: SpsaOptions,
    /// The last physical layer: everything up to it is perturbed.
    last_physical: usize,
    steps_per_epoch: usize,
    steps: usize,
    rng: ChaCha8Rng,
}

/// The trainable parameters of layer `i` (none for a layer without).
fn trainable(layer: &Layer) -> Vec<Var> {
    match layer {
        Layer::Physical { theta, .. } => vec![theta.clone()],
        Layer::Rescale { a, b, .. } => vec![a.clone(), b.clone()],
        Layer::Linear { w, b } => vec![w.clone(), b.clone()],
        _ => vec![],
    }
}

/// `±1` with equal odds, shaped like `like`.
fn rademacher(like: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let n = like.elem_count();
    let v: Vec<f32> = (0..n)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect();
    Ok(Tensor::from_vec(v, like.shape(), &Device::Cpu)?)
}

/// The SPSA estimate from antithetic losses `(L⁺_k, L⁻_k)` with
/// perturbations `c Δ_k`: `mean_k (L⁺_k − L⁻_k) / (2c) · Δ_k` (for ±1
/// entries, `1/Δ = Δ`).
pub fn estimate(losses: &[(f64, f64)], deltas: &[Tensor], c: f64) -> Result<Tensor> {
    let Some(first) = deltas.first() else {
        return Err(Error::invalid("SPSA needs at least one perturbation"));
    };
    let mut g = first.zeros_like()?;
    for ((lp, lm), d) in losses.iter().zip(deltas) {
        g = (g + (d * ((lp - lm) / (2.0 * c)))?)?;
    }
    Ok((g / deltas.len() as f64)?)
}

impl Spsa {
    /// Optimisers at `opt`'s rates for `net`, whose training split has
    /// `n_train` examples (for the per-epoch decay of the step).
    pub fn new(net: &Network, opt: &TrainOptions, n_train: usize) -> Result<Self> {
        let last_physical = net
            .layers
            .iter()
            .rposition(|l| l.device().is_some())
            .ok_or_else(|| Error::invalid("--method spsa needs a network with a physical layer"))?;
        if !(opt.spsa.step > 0.0 && opt.spsa.step.is_finite()) || opt.spsa.pairs == 0 {
            return Err(Error::invalid(format!(
                "--spsa-step {} and --spsa-pairs {} must be positive",
                opt.spsa.step, opt.spsa.pairs
            )));
        }
        Ok(Spsa {
            grad: Backprop::new(net, opt)?,
            spsa: opt.spsa,
            last_physical,
            steps_per_epoch: n_train.div_ceil(opt.batch.max(1)).max(1),
            steps: 0,
            rng: ChaCha8Rng::seed_from_u64(opt.seed ^ 0x5b5a),
        })
    }

    /// The outputs of the layers up to the last physical one for every
    /// group `g` of rows `xs[g]` under parameter values `values[g]` (one
    /// tensor per perturbed variable, in `vars` order): a digital layer
    /// group by group with its variables set, a physical one in one
    /// device pass with a θ row per row.
    async fn forward_groups(
        &self,
        net: &Network,
        xs: &[Tensor],
        vars: &[(usize, Var)],
        values: &[Vec<Tensor>],
        physics: &mut Physics<'_>,
    ) -> Result<Vec<Tensor>> {
        let mut hs = xs.to_vec();
        for i in 0..=self.last_physical {
            let own: Vec<usize> = (0..vars.len()).filter(|&k| vars[k].0 == i).collect();
            match &net.layers[i] {
                Layer::Physical { skip, .. } => {
                    let k = own[0];
                    let mut thetas = Vec::with_capacity(hs.len());
                    for (g, h) in hs.iter().enumerate() {
                        thetas.push(values[g][k].broadcast_as((h.dim(0)?, values[g][k].dim(1)?))?);
                    }
                    let x = Tensor::cat(&hs, 0)?;
                    let m = net
                        .measure(i, &x, &Tensor::cat(&thetas, 0)?, physics)
                        .await?;
                    let mut at = 0;
                    for h in &mut hs {
                        let n = h.dim(0)?;
                        let y = m.y.narrow(0, at, n)?;
                        *h = if *skip {
                            Tensor::cat(&[&y, &*h], 1)?
                        } else {
                            y
                        };
                        at += n;
                    }
                }
                layer => {
                    let saved: Vec<Tensor> = own
                        .iter()
                        .map(|&k| vars[k].1.as_tensor().copy())
                        .collect::<std::result::Result<_, _>>()?;
                    for (g, h) in hs.iter_mut().enumerate() {
                        for &k in &own {
                            vars[k].1.set(&values[g][k])?;
                        }
                        *h = Network::digital(layer, h, false)?;
                    }
                    for (&k, v) in own.iter().zip(&saved) {
                        vars[k].1.set(v)?;
                    }
                }
            }
        }
        Ok(hs)
    }
}

impl TrainingMethod for Spsa {
    async fn step(
        &mut self,
        net: &Network,
        batch: &Split,
        lr_factor: f64,
        env: &mut StepEnv<'_>,
    ) -> Result<StepOutcome> {
        self.grad.set_rates(lr_factor);
        let epoch = self.steps / self.steps_per_epoch;
        self.steps += 1;
        let c = self.spsa.step * self.spsa.decay.powi(epoch as i32).max(STEP_FLOOR);
        let vars: Vec<(usize, Var)> = net.layers[..=self.last_physical]
            .iter()
            .enumerate()
            .flat_map(|(i, l)| trainable(l).into_iter().map(move |v| (i, v)))
            .collect();
        // Pairs, each on its own share of the batch.
        let rows = batch.len();
        let pairs = self.spsa.pairs.min(rows).max(1);
        let x = tensor2(&batch.x)?;
        let (mut xs, mut ys, mut values, mut deltas) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..pairs {
            let (from, to) = (k * rows / pairs, (k + 1) * rows / pairs);
            let d: Vec<Tensor> = vars
                .iter()
                .map(|(_, v)| rademacher(v.as_tensor(), &mut self.rng))
                .collect::<Result<_>>()?;
            for sign in [1.0, -1.0] {
                xs.push(x.narrow(0, from, to - from)?);
                ys.push(batch.y[from..to].to_vec());
                values.push(
                    vars.iter()
                        .zip(&d)
                        .map(|((_, v), d)| Ok((v.as_tensor() + (d * (sign * c))?)?))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            deltas.push(d);
        }
        let mut physics = Physics::Rigs(&mut *env.rigs, env.repeats);
        let hs = self
            .forward_groups(net, &xs, &vars, &values, &mut physics)
            .await?;
        // The digital tail, with its graph, on every group at once.
        let mut h = Tensor::cat(&hs, 0)?.detach();
        for layer in &net.layers[self.last_physical + 1..] {
            h = Network::digital(layer, &h, true)?;
        }
        let all_y: Vec<u32> = ys.concat();
        let ce = candle_nn::loss::cross_entropy(&h, &labels(&all_y)?)?;
        // Each group's loss, for the estimate.
        let mut group_loss = Vec::with_capacity(ys.len());
        let mut at = 0;
        for y in &ys {
            let l =
                candle_nn::loss::cross_entropy(&h.narrow(0, at, y.len())?.detach(), &labels(y)?)?;
            group_loss.push(f64::from(l.to_scalar::<f32>()?));
            at += y.len();
        }
        let losses: Vec<(f64, f64)> = group_loss.chunks(2).map(|p| (p[0], p[1])).collect();
        // The surrogate: the tail's loss, plus Σ v·ĝ, whose gradient in v
        // is the estimate ĝ itself.
        let mut surrogate = ce.clone();
        for (k, (_, v)) in vars.iter().enumerate() {
            let dk: Vec<Tensor> = deltas.iter().map(|d| d[k].clone()).collect();
            let g = estimate(&losses, &dk, c)?;
            surrogate = (surrogate + (v.as_tensor() * g)?.sum_all()?)?;
        }
        self.grad.apply(&surrogate)?;
        // θ back inside the device's range.
        for (i, layer) in net.layers.iter().enumerate() {
            if let Layer::Physical { theta, .. } = layer {
                let r = net.device_of(i)?.param_range;
                theta.set(&theta.as_tensor().clamp(r.min, r.max)?)?;
            }
        }
        Ok(StepOutcome {
            loss: f64::from(ce.to_scalar::<f32>()?),
            correct: correct(&h, &all_y)? / 2,
        })
    }

    fn save_state(&self, out: &mut StateOut) -> Result<()> {
        self.grad.save(out)?;
        out.number("spsa.steps", self.steps as u128);
        out.rng("spsa.rng", &self.rng);
        Ok(())
    }

    fn restore_state(&mut self, from: &mut StateIn<'_>) -> Result<()> {
        self.grad.restore(from)?;
        self.steps = from.count("spsa.steps")?;
        from.rng("spsa.rng", &mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On `L(v) = ½ Σ a_i v_i²` (gradient `a ⊙ v`), with exact losses,
    /// the estimate averaged over many pairs converges to the gradient.
    #[test]
    fn the_estimate_on_a_quadratic_converges_to_the_gradient() {
        let a = [1.0f64, 3.0, -2.0, 0.5, 4.0, -1.0];
        let v = [0.3f64, -0.2, 0.5, 1.0, -0.7, 0.1];
        let loss = |w: &[f64]| 0.5 * a.iter().zip(w).map(|(a, w)| a * w * w).sum::<f64>();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let c = 1e-3;
        let like = Tensor::zeros(a.len(), candle_core::DType::F32, &Device::Cpu).unwrap();
        let (mut losses, mut deltas) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let d = rademacher(&like, &mut rng).unwrap();
            let dv: Vec<f32> = d.to_vec1().unwrap();
            let plus: Vec<f64> = v
                .iter()
                .zip(&dv)
                .map(|(v, d)| v + c * f64::from(*d))
                .collect();
            let minus: Vec<f64> = v
                .iter()
                .zip(&dv)
                .map(|(v, d)| v - c * f64::from(*d))
                .collect();
            losses.push((loss(&plus), loss(&minus)));
            deltas.push(d);
        }
        let g: Vec<f32> = estimate(&losses, &deltas, c).unwrap().to_vec1().unwrap();
        let truth: Vec<f64> = a.iter().zip(&v).map(|(a, v)| a * v).collect();
        // Each entry's error is the other entries' gradient times a ±1
        // average over n draws: std |g_{-i}| / √n ≈ 3.2 / 63 = 0.05.
        // The tolerance is three of those.
        for (g, t) in g.iter().zip(&truth) {
            assert!((f64::from(*g) - t).abs() < 0.15, "{g} vs {t} ({g:?})");
        }
        // …and a single pair is unbiased but far off: the averaging is
        // what makes it work.
        let one: Vec<f32> = estimate(&losses[..1], &deltas[..1], c)
            .unwrap()
            .to_vec1()
            .unwrap();
        let err1: f64 = one
            .iter()
            .zip(&truth)
            .map(|(g, t)| (f64::from(*g) - t).powi(2))
            .sum();
        let errn: f64 = g
            .iter()
            .zip(&truth)
            .map(|(g, t)| (f64::from(*g) - t).powi(2))
            .sum();
        assert!(errn < err1 / 10.0, "{errn} vs {err1}");
    }
}
