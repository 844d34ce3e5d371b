//! Physical local learning (Momeni et al. 2023, "PhyLL"), as its published
//! code trains: each example is shown twice, with its true label overlaid
//! (positive) and with a random wrong one (negative); block by block, both
//! go through the device once, and the block's digital layer takes
//! `inner_steps` Adam steps on `softplus(−α (G⁺ − G⁻))`, its goodness on
//! the positive over the negative. No gradient ever crosses a device, and
//! no twin is used. The devices' θ stays where it was drawn: the published
//! method trains only the digital layers, and training θ by a local
//! objective would need the device's Jacobian (a twin) or perturbations
//! (SPSA's rig samples), which is what this method exists to avoid.

use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::net::{Layer, Network, Overlay, Physics, Readout, goodness, overlay};
use crate::optim::{Adam, adam};
use crate::train::options::{LocalOptions, TrainOptions};
use crate::train::state::{StateIn, StateOut};

/// One block: the layers from `first` up to its digital layer `linear`,
/// which is trained on the goodness read at layer `tap`.
#[derive(Debug)]
struct Block {
    first: usize,
    linear: usize,
    tap: usize,
    w: Var,
    b: Var,
    p: Tensor,
    opt: Adam,
}

/// PhyLL's state: a block list with an optimiser each, and the generator
/// of wrong labels.
#[derive(Debug)]
pub struct Phyll {
    blocks: Vec<Block>,
    overlay: Overlay,
    local: LocalOptions,
    lr: f64,
    rng: ChaCha8Rng,
}

/// `softplus(−α (G⁺ − G⁻))`, averaged: PhyLL's loss for one block.
pub fn local_loss(g_pos: &Tensor, g_neg: &Tensor, alpha: f64) -> Result<Tensor> {
    let z = ((g_pos - g_neg)? * -alpha)?;
    // softplus(z) = relu(z) + log(1 + exp(−|z|)), stable for any z.
    let sp = (z.relu()? + ((z.abs()? * -1.0)?.exp()? + 1.0)?.log()?)?;
    Ok(sp.mean_all()?)
}

/// A label other than `y`, uniformly among the other `n_classes − 1`.
fn wrong_label(y: u32, n_classes: usize, rng: &mut ChaCha8Rng) -> u32 {
    let k = rng.random_range(1..n_classes as u32);
    (y + k) % n_classes as u32
}

impl Phyll {
    /// The blocks of `net` (a network with a goodness readout), each with
    /// Adam at `opt.lr_digital`.
    pub fn new(net: &Network, opt: &TrainOptions) -> Result<Self> {
        let Readout::Goodness { overlay } = net.readout else {
            return Err(Error::invalid(
                "--method phyll trains a network with a goodness readout (its blocks and label overlay); this one reads out by argmax",
            ));
        };
        let mut blocks = Vec::new();
        let mut first = 0;
        let mut linear = None;
        for (i, layer) in net.layers.iter().enumerate() {
            match layer {
                Layer::Linear { w, b } => linear = Some((i, w.clone(), b.clone())),
                Layer::Goodness { p } => {
                    let Some((li, w, b)) = linear.take() else {
                        return Err(Error::invalid(format!(
                            "layer {i}: a goodness layer needs a linear layer before it in its block"
                        )));
                    };
                    blocks.push(Block {
                        first,
                        linear: li,
                        tap: i,
                        opt: adam(vec![w.clone(), b.clone()], opt.lr_digital)?,
                        w,
                        b,
                        p: p.as_tensor().clone(),
                    });
                    first = i + 1;
                }
                _ => {}
            }
        }
        if blocks.is_empty() {
            return Err(Error::invalid("a PhyLL network needs at least one block"));
        }
        Ok(Phyll {
            blocks,
            overlay,
            local: opt.local,
            lr: opt.lr_digital,
            rng: ChaCha8Rng::seed_from_u64(opt.seed ^ 0x9411),
        })
    }
}

impl TrainingMethod for Phyll {
    async fn step(
        &mut self,
        net: &Network,
        batch: &Split,
        lr_factor: f64,
        env: &mut StepEnv<'_>,
    ) -> Result<StepOutcome> {
        let rows = batch.len();
        let c = net.n_classes;
        let x = tensor2(&batch.x)?;
        let wrong: Vec<u32> = batch
            .y
            .iter()
            .map(|&y| wrong_label(y, c, &mut self.rng))
            .collect();
        // Positive rows, then negative: one pass through each device.
        let mut h = Tensor::cat(
            &[
                &overlay(&x, &batch.y, c, self.overlay)?,
                &overlay(&x, &wrong, c, self.overlay)?,
            ],
            0,
        )?;
        let mut physics = Physics::Rigs(env.rigs, env.repeats);
        let (mut loss_sum, mut margin) = (
            0.0,
            Tensor::zeros(rows, candle_core::DType::F32, x.device())?,
        );
        for block in &mut self.blocks {
            block.opt.set_learning_rate(self.lr * lr_factor);
            for i in block.first..block.linear {
                h = net.forward_layer(i, &h, &mut physics).await?.0;
            }
            let z = h.detach();
            let mut last = 0.0;
            for _ in 0..self.local.inner_steps.max(1) {
                let out = z
                    .matmul(&block.w.as_tensor().t()?)?
                    .broadcast_add(block.b.as_tensor())?;
                let g = goodness(&out, &block.p)?;
                let loss = local_loss(
                    &g.narrow(0, 0, rows)?,
                    &g.narrow(0, rows, rows)?,
                    self.local.alpha,
                )?;
                block.opt.backward_step(&loss)?;
                last = f64::from(loss.to_scalar::<f32>()?);
            }
            loss_sum += last;
            // On with the trained layer, values only, through the tap.
            for i in block.linear..=block.tap {
                h = net.forward_layer(i, &h, &mut physics).await?.0;
            }
            let g = goodness(&h, &block.p)?;
            margin = (margin + (g.narrow(0, 0, rows)? - g.narrow(0, rows, rows)?)?)?;
        }
        // An example counts as right when its true label out-scores the
        // wrong one it was shown with (the step's own passes, no extra
        // rig time; the epoch's test accuracy scores every label).
        let correct = margin
            .to_vec1::<f32>()?
            .iter()
            .filter(|m| **m > 0.0)
            .count();
        Ok(StepOutcome {
            loss: loss_sum / self.blocks.len() as f64,
            correct,
        })
    }

    fn save_state(&self, out: &mut StateOut) -> Result<()> {
        for (k, block) in self.blocks.iter().enumerate() {
            block.opt.save(&format!("adam.block{k}"), out)?;
        }
        out.rng("phyll.rng", &self.rng);
        Ok(())
    }

    fn restore_state(&mut self, from: &mut StateIn<'_>) -> Result<()> {
        for (k, block) in self.blocks.iter_mut().enumerate() {
            block.opt.restore(&format!("adam.block{k}"), from)?;
        }
        from.rng("phyll.rng", &mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_local_loss_and_its_gradient_match_the_hand_computed_values() {
        // G⁺ − G⁻ = 0.5 and −0.25, α = 4: z = −2 and 1.
        let gp = Var::new(&[0.75f32, 0.25], &Device::Cpu).unwrap();
        let gn = Tensor::new(&[0.25f32, 0.5], &Device::Cpu).unwrap();
        let loss = local_loss(gp.as_tensor(), &gn, 4.0).unwrap();
        let sp = |z: f64| (1.0 + z.exp()).ln();
        let want = (sp(-2.0) + sp(1.0)) / 2.0;
        let got = f64::from(loss.to_scalar::<f32>().unwrap());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // d/dG⁺ of softplus(−α d)/2 = −α σ(−α d)/2.
        let grads = loss.backward().unwrap();
        let g = grads.get(gp.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let want = [-4.0 * sig(-2.0) / 2.0, -4.0 * sig(1.0) / 2.0];
        for (g, w) in g.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn a_wrong_label_is_never_the_true_one_and_covers_the_others() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            let l = wrong_label(3, 7, &mut rng);
            assert_ne!(l, 3);
            seen[l as usize] += 1;
        }
        assert_eq!(seen[3], 0);
        // Uniform over the other six: each ~1167 of 7000.
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, n)| i == 3 || (1000..1340).contains(n)),
            "{seen:?}"
        );
    }
}
