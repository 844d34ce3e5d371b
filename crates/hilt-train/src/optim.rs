//! The optimiser and learning-rate schedule shared by twin fitting and
//! network training: both use Adam without weight decay and a cosine decay
//! to a floor, and keeping them in one place keeps a change to one from
//! silently diverging from the other.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::train::state::{StateIn, StateOut};

/// Adam without weight decay (the parameters are physical settings and
/// rescale gains, which no prior pulls towards zero). Ours rather than
/// candle_nn's `AdamW` because a run that resumes must carry on with the
/// moments it stopped with, and `AdamW` keeps them private; the
/// arithmetic is `AdamW`'s, operation for operation (less its product by
/// the decay factor, exactly 1 here), so a seeded run trains to the same
/// bits (tested below).
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Moments>,
    lr: f64,
    step_t: usize,
}

#[derive(Debug)]
struct Moments {
    var: Var,
    m: Var,
    v: Var,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Adam at rate `lr` over `vars`.
pub fn adam(vars: Vec<Var>, lr: f64) -> Result<Adam> {
    let vars = vars
        .into_iter()
        .filter(|var| var.dtype().is_float())
        .map(|var| {
            let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
            let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
            Ok(Moments { var, m, v })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Adam {
        vars,
        lr,
        step_t: 0,
    })
}

impl Adam {
    /// The rate of the next steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One step down `grads` (variables without a gradient stay put).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let t = i32::try_from(self.step_t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - BETA1.powi(t));
        let scale_v = 1f64 / (1f64 - BETA2.powi(t));
        for Moments { var, m, v } in &self.vars {
            let Some(g) = grads.get(var) else { continue };
            let next_m = ((m.as_tensor() * BETA1)? + (g * (1.0 - BETA1))?)?;
            let next_v = ((v.as_tensor() * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            // AdamW first scales θ by 1 − lr·decay; with no decay that
            // is a product by exactly 1, which changes no value.
            let adjusted = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            let next = (var.as_tensor() - (adjusted * self.lr)?)?;
            m.set(&next_m)?;
            v.set(&next_v)?;
            var.set(&next)?;
        }
        Ok(())
    }

    /// Backpropagate `loss` and step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// The moments and the step count under `name`.
    pub fn save(&self, name: &str, out: &mut StateOut) -> Result<()> {
        out.number(&format!("{name}.steps"), self.step_t as u128);
        for (i, mv) in self.vars.iter().enumerate() {
            out.tensor(format!("{name}.{i}.m"), mv.m.as_tensor())?;
            out.tensor(format!("{name}.{i}.v"), mv.v.as_tensor())?;
        }
        Ok(())
    }

    /// The moments and step count `save` wrote under `name`, each moment
    /// checked against the shape of its variable.
    pub fn restore(&mut self, name: &str, from: &mut StateIn<'_>) -> Result<()> {
        self.step_t = from.count(&format!("{name}.steps"))?;
        for (i, mv) in self.vars.iter().enumerate() {
            mv.m.set(&from.tensor(&format!("{name}.{i}.m"), mv.var.as_tensor())?)?;
            mv.v.set(&from.tensor(&format!("{name}.{i}.v"), mv.var.as_tensor())?)?;
        }
        Ok(())
    }
}

/// Cosine decay from 1 to `floor` over `total` steps: a late, small rate
/// lets Adam settle where a constant one keeps jittering around the optimum,
/// and the floor keeps the last epochs learning at all.
#[derive(Debug, Clone, Copy)]
pub struct Cosine {
    floor: f64,
    total: f64,
}

impl Cosine {
    /// A schedule over `steps` optimiser steps that ends at `floor` times
    /// the initial rate.
    pub fn new(floor: f64, steps: usize) -> Self {
        Cosine {
            floor,
            total: steps as f64,
        }
    }

    /// The factor on the initial rate at `step` (0-based).
    pub fn factor(&self, step: usize) -> f64 {
        self.floor
            + (1.0 - self.floor)
                * 0.5
                * (1.0 + (std::f64::consts::PI * step as f64 / self.total).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::train::state::{StateIn, StateOut};
    use candle_core::{Device, Tensor, Var};
    use candle_nn::Optimizer;
    use std::collections::HashMap;

    fn loss(w: &Var, x: &Tensor) -> Tensor {
        // A loss whose gradient changes from step to step.
        (w.as_tensor().matmul(x).unwrap().tanh().unwrap() - 0.3)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    }

    fn problem() -> (Var, Tensor) {
        let dev = Device::Cpu;
        let w = Var::from_tensor(
            &Tensor::arange(0f32, 12.0, &dev)
                .unwrap()
                .reshape((3, 4))
                .unwrap()
                .affine(0.07, -0.4)
                .unwrap(),
        )
        .unwrap();
        let x = Tensor::arange(0f32, 8.0, &dev)
            .unwrap()
            .reshape((4, 2))
            .unwrap()
            .affine(-0.05, 0.2)
            .unwrap();
        (w, x)
    }

    fn bits(v: &Var) -> Vec<u32> {
        v.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect()
    }

    /// Ours steps to the same bits as candle_nn's AdamW with no decay, so
    /// replacing it changed no seeded result.
    #[test]
    fn adam_matches_candles_adamw_to_the_bit() {
        let (w1, x) = problem();
        let (w2, _) = problem();
        let mut ours = adam(vec![w1.clone()], 0.01).unwrap();
        let mut theirs = candle_nn::AdamW::new(
            vec![w2.clone()],
            candle_nn::ParamsAdamW {
                lr: 0.01,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for k in 0..25 {
            let lr = 0.01 * (1.0 - k as f64 / 30.0);
            ours.set_learning_rate(lr);
            theirs.set_learning_rate(lr);
            ours.backward_step(&loss(&w1, &x)).unwrap();
            theirs.backward_step(&loss(&w2, &x)).unwrap();
            assert_eq!(bits(&w1), bits(&w2), "step {k}");
        }
    }

    /// Saved after 10 steps and restored into a fresh optimiser over the
    /// saved parameters, Adam takes the next 10 as if never stopped.
    #[test]
    fn a_restored_adam_continues_as_if_never_stopped() {
        let (w, x) = problem();
        let mut a = adam(vec![w.clone()], 0.02).unwrap();
        for _ in 0..10 {
            a.backward_step(&loss(&w, &x)).unwrap();
        }
        let mut out = StateOut::default();
        a.save("adam", &mut out).unwrap();
        let w2 = Var::from_tensor(&w.as_tensor().copy().unwrap()).unwrap();
        let w3 = Var::from_tensor(&w.as_tensor().copy().unwrap()).unwrap();
        let mut b = adam(vec![w2.clone()], 0.02).unwrap();
        let mut fresh = adam(vec![w3.clone()], 0.02).unwrap();
        let numbers = out.numbers().clone();
        let tensors: HashMap<_, _> = out.tensors().iter().cloned().collect();
        let mut from = StateIn::new(std::path::Path::new("ck"), tensors, &numbers);
        b.restore("adam", &mut from).unwrap();
        for _ in 0..10 {
            a.backward_step(&loss(&w, &x)).unwrap();
            b.backward_step(&loss(&w2, &x)).unwrap();
            fresh.backward_step(&loss(&w3, &x)).unwrap();
        }
        assert_eq!(bits(&w), bits(&w2));
        // Without its moments it would not have: a fresh Adam's first
        // steps are full size.
        assert_ne!(bits(&w3), bits(&w));
    }

    /// The factors are those of the two schedules this one replaced, to
    /// the bit.
    #[test]
    fn the_factors_match_the_formulas_they_replaced() {
        for (floor, steps) in [(0.05, 317), (0.01, 1000)] {
            let c = Cosine::new(floor, steps);
            let total = steps as f64;
            for step in [0, 1, 7, steps / 2, steps - 1] {
                let old = if floor == 0.05 {
                    0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
                } else {
                    0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
                };
                assert_eq!(c.factor(step).to_bits(), old.to_bits());
            }
        }
    }
}
