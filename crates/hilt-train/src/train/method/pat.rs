//! Physics-aware training: the forward pass is measured on the devices, and
//! the graph replays the measurements with each twin's Jacobian at the
//! applied values (`Network::forward_pat`: the graph's layers built while
//! the next layer is measured).

use candle_core::Tensor;

use super::gradient::{Backprop, FOLLOW_MOMENTUM};
use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::Result;
use crate::net::Network;
use crate::train::options::TrainOptions;
use crate::train::state::{StateIn, StateOut};

/// PAT's state: the optimisers.
#[derive(Debug)]
pub struct Pat {
    grad: Backprop,
}

impl Pat {
    /// Optimisers for `net` at `opt`'s rates.
    pub fn new(net: &Network, opt: &TrainOptions) -> Result<Self> {
        Ok(Pat {
            grad: Backprop::new(net, opt)?,
        })
    }
}

impl TrainingMethod for Pat {
    async fn step(
        &mut self,
        net: &Network,
        batch: &Split,
        lr_factor: f64,
        env: &mut StepEnv<'_>,
    ) -> Result<StepOutcome> {
        self.grad.set_rates(lr_factor);
        let x = tensor2(&batch.x)?;
        let (logits, penalty, measured) = net
            .forward_pat(&x, env.rigs, env.repeats, env.twins)
            .await?;
        let out = self.grad.step(&logits, &penalty, &batch.y)?;
        let ys: Vec<Tensor> = measured.into_iter().map(|m| m.y).collect();
        net.follow_statistics(&x, &ys, FOLLOW_MOMENTUM)?;
        Ok(out)
    }

    fn save_state(&self, out: &mut StateOut) -> Result<()> {
        self.grad.save(out)
    }

    fn restore_state(&mut self, from: &mut StateIn<'_>) -> Result<()> {
        self.grad.restore(from)
    }
}
