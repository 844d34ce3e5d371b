//! The gradient step of the methods that backpropagate through a twin
//! (PAT, in-silico): cross-entropy plus the range penalty, backward,
//! global-norm clip, Adam on the physical and the digital parameters with
//! their own rates.

use candle_core::{Tensor, Var, backprop::GradStore};

use super::step::StepOutcome;
use crate::error::{Error, Result};
use crate::net::Network;
use crate::optim::{Adam, adam};
use crate::train::options::TrainOptions;
use crate::train::score::{correct, labels};
use crate::train::state::{StateIn, StateOut};

/// How far each training batch moves the standardisation of every
/// rescale that feeds a device towards the batch's own statistics
/// (`Network::follow_statistics`). With the statistics fixed at
/// initialisation, the first θ steps shifted whole layers out of the next
/// device's range and the 4-layer vowel network fell back to chance for up
/// to 220 of 300 epochs; followed, it climbs from the start (measured over
/// 8 seeds, README). The readout's own standardisation stays put:
/// following it too cost 5-epoch MNIST on the plate 12 points.
pub const FOLLOW_MOMENTUM: f64 = 0.1;

/// Optimiser state and settings of a backpropagating method.
#[derive(Debug)]
pub struct Backprop {
    opt_p: Adam,
    opt_d: Adam,
    all: Vec<Var>,
    lr_physical: f64,
    lr_digital: f64,
    clip: f64,
    lag_amp: f64,
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

impl Backprop {
    /// Adam for `net`'s physical and digital parameters at `opt`'s rates.
    pub fn new(net: &Network, opt: &TrainOptions) -> Result<Self> {
        let phys = net.physical_vars();
        let digi = net.digital_vars();
        let opt_p = adam(phys.clone(), opt.lr_physical)?;
        let opt_d = adam(digi.clone(), opt.lr_digital)?;
        Ok(Backprop {
            opt_p,
            opt_d,
            all: phys.iter().chain(&digi).cloned().collect(),
            lr_physical: opt.lr_physical,
            lr_digital: opt.lr_digital,
            clip: opt.clip,
            lag_amp: opt.lag_amp,
        })
    }

    /// Both rates at `factor` times their initial values.
    pub fn set_rates(&mut self, factor: f64) {
        self.opt_p.set_learning_rate(self.lr_physical * factor);
        self.opt_d.set_learning_rate(self.lr_digital * factor);
    }

    /// Backpropagate the loss of `logits` (and the weighted `penalty`)
    /// against labels `y` and update every parameter.
    pub fn step(&mut self, logits: &Tensor, penalty: &Tensor, y: &[u32]) -> Result<StepOutcome> {
        let ce = candle_nn::loss::cross_entropy(logits, &labels(y)?)?;
        self.apply(&(&ce + (penalty * self.lag_amp)?)?)?;
        Ok(StepOutcome {
            loss: f64::from(ce.to_scalar::<f32>()?),
            correct: correct(logits, y)?,
        })
    }

    /// One update of every parameter down the gradient of `loss`
    /// (clipped to the global norm).
    pub fn apply(&mut self, loss: &Tensor) -> Result<()> {
        let mut grads = loss.backward()?;
        clip_grads(&mut grads, &self.all, self.clip)?;
        self.opt_p.step(&grads)?;
        self.opt_d.step(&grads)?;
        Ok(())
    }

    /// Both optimisers' moments.
    pub fn save(&self, out: &mut StateOut) -> Result<()> {
        self.opt_p.save("adam.physical", out)?;
        self.opt_d.save("adam.digital", out)
    }

    /// Both optimisers' moments, as `save` wrote them.
    pub fn restore(&mut self, from: &mut StateIn<'_>) -> Result<()> {
        self.opt_p.restore("adam.physical", from)?;
        self.opt_d.restore("adam.digital", from)
    }
}
