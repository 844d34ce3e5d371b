//! What every training method provides: one step on one batch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::data::Split;
use crate::error::Result;
use crate::net::Network;
use crate::rig::Rig;
use crate::train::state::{StateIn, StateOut};
use crate::twin::Twin;

/// What a step may use besides the network and the batch: the twins, and
/// the leased devices with the repeats each sample is measured with.
#[derive(Debug)]
pub struct StepEnv<'a> {
    /// A twin per device (methods without a twin ignore them).
    pub twins: &'a HashMap<String, Arc<Twin>>,
    /// A lease per device.
    pub rigs: &'a mut HashMap<String, Rig>,
    /// Measurements averaged per sample.
    pub repeats: u32,
}

/// What a step reports for the epoch's row.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// The batch's mean cross-entropy (without the range penalty).
    pub loss: f64,
    /// Examples of the batch classified correctly on the forward pass the
    /// step used.
    pub correct: usize,
}

/// One training method: how a batch becomes an update of the network's
/// parameters. The epoch loop owns the order of batches and the schedule;
/// a method owns its optimiser state.
pub trait TrainingMethod {
    /// One update from `batch`, at `lr_factor` times the initial learning
    /// rates (the shared cosine schedule).
    fn step(
        &mut self,
        net: &Network,
        batch: &Split,
        lr_factor: f64,
        env: &mut StepEnv<'_>,
    ) -> impl Future<Output = Result<StepOutcome>>;

    /// What the method carries from step to step (optimiser moments,
    /// random streams, counters), for a run that stops and resumes.
    fn save_state(&self, out: &mut StateOut) -> Result<()>;

    /// Back to where `save_state` was, on a method built afresh for the
    /// same network.
    fn restore_state(&mut self, from: &mut StateIn<'_>) -> Result<()>;
}
