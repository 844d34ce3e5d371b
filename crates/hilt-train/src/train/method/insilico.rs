//! In-silico training: the twins are the physical layers, forward and
//! backward; the devices only see the trained network when it is scored.

use super::gradient::Backprop;
use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::Result;
use crate::net::Network;
use crate::train::options::TrainOptions;

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
        self.grad.step(&logits, &penalty, &batch.y)
    }
}
