//! The digital baseline: a network without physical layers trained by
//! plain backpropagation. It is what the physics has to beat: the same
//! data, the same number of trainable parameters, no device.

use super::gradient::Backprop;
use super::step::{StepEnv, StepOutcome, TrainingMethod};
use crate::array::tensor2;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::net::Network;
use crate::train::options::TrainOptions;
use crate::train::state::{StateIn, StateOut};

/// The baseline's state: the optimisers.
#[derive(Debug)]
pub struct Digital {
    grad: Backprop,
}

impl Digital {
    /// Optimisers for `net` (which must have no physical layer).
    pub fn new(net: &Network, opt: &TrainOptions) -> Result<Self> {
        if net.n_physical() > 0 {
            return Err(Error::invalid(
                "--method digital trains a network without physical layers",
            ));
        }
        Ok(Digital {
            grad: Backprop::new(net, opt)?,
        })
    }
}

impl TrainingMethod for Digital {
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

    fn save_state(&self, out: &mut StateOut) -> Result<()> {
        self.grad.save(out)
    }

    fn restore_state(&mut self, from: &mut StateIn<'_>) -> Result<()> {
        self.grad.restore(from)
    }
}
