//! In-silico training: the twins are the physical layers, forward and
//! backward; the devices only see the trained network when it is scored.

use candle_core::Tensor;

use super::gradient::{Backprop, FOLLOW_MOMENTUM};
use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::Result;
use crate::net::{Network, Physics};
use crate::train::options::TrainOptions;
use crate::train::state::{StateIn, StateOut};

/// In-silico training's state: the optimisers.
#[derive(Debug)]
pub struct InSilico {
    grad: Backprop,
}

impl InSilico {
    /// Optimisers for `net` at `opt`'s rates.
    pub fn new(net: &Network, opt: &TrainOptions) -> Result<Self> {
        Ok(InSilico {
            grad: Backprop::new(net, opt)?,
        })
    }
}

impl TrainingMethod for InSilico {
    async fn step(
        &mut self,
        net: &Network,
        batch: &Split,
        lr_factor: f64,
        env: &mut StepEnv<'_>,
    ) -> Result<StepOutcome> {
        self.grad.set_rates(lr_factor);
        let x = tensor2(&batch.x)?;
        let (logits, penalty) = net.forward_graph(&x, env.twins, None)?;
        let out = self.grad.step(&logits, &penalty, &batch.y)?;
        // The same standardisation as PAT's, following the twins.
        let (_, predicted) = net.forward_values(&x, Physics::Twins(env.twins)).await?;
        let ys: Vec<Tensor> = predicted.into_iter().map(|m| m.y).collect();
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
