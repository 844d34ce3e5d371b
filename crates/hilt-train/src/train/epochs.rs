//! The epoch loop every method shares: seeded shuffling, the cosine
//! schedule, one method step per batch, and after each epoch the test
//! accuracy measured on the devices and predicted by the twins.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::method::{Digital, InSilico, Pat, Phyll, Spsa, StepEnv, TrainingMethod};
use super::options::{LR_FLOOR, Method, TrainOptions};
use super::score::accuracy;
use super::sentinel::{DriftEvent, Refit, SentinelOptions, SentinelState, Sentinels};
use super::state::{StateIn, StateOut};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::net::{Network, Physics};
use crate::optim::Cosine;
use crate::rig::Rig;
use crate::twin::Twin;

/// One row of `epochs.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRow {
    /// 1-based.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's batches.
    pub train_loss: f64,
    /// On the forward passes of the epoch: measured for PAT, the twins' for
    /// in-silico.
    pub train_accuracy: f64,
    /// Measured on the device after the epoch.
    pub test_accuracy: f64,
    /// The twins' prediction of the same test accuracy (empty for methods
    /// without twins).
    pub twin_test_accuracy: Option<f64>,
    /// Rig samples spent on learning so far: the twins' recording, the
    /// initialisation and the training steps (not the evaluations).
    pub rig_samples: u64,
    /// Rig samples spent measuring test accuracy so far.
    pub rig_samples_eval: u64,
    /// The physical parameters' learning rate at the epoch's last step.
    pub lr_physical: f64,
    /// Drift sentinels that fired during the epoch (0 without sentinels).
    pub drift_events: usize,
    /// At the epoch's last sentinel check, the worst twin error on the
    /// probes over that twin's held-out error (empty without sentinels).
    pub drift_ratio: Option<f64>,
    /// Since training began.
    pub wall_seconds: f64,
}

/// What training did, for the run's metrics.
#[derive(Debug)]
pub struct Trained {
    /// One row per epoch.
    pub epochs: Vec<EpochRow>,
    /// Wall time of the loop.
    pub wall: Duration,
    /// Rig time spent measuring while training and evaluating.
    pub busy: Duration,
    /// Samples measured on the devices by the training steps.
    pub samples_train: u64,
    /// Samples measured on the devices scoring each epoch.
    pub samples_eval: u64,
    /// The drift sentinels that fired.
    pub drift_events: Vec<DriftEvent>,
}

/// Where a run stood after its last finished epoch: with the method's
/// state (`StateOut`), all the loop needs to carry on as if it had never
/// stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// One per finished epoch.
    pub rows: Vec<EpochRow>,
    /// Training batches so far (the schedule's position).
    pub step: usize,
    /// Samples the training steps measured so far.
    pub samples_train: u64,
    /// Samples the epochs' scoring measured so far.
    pub samples_eval: u64,
    /// Wall time of the loop so far.
    pub wall_seconds: f64,
    /// Rig-busy time of the loop so far.
    pub busy_seconds: f64,
    /// The drift sentinels, if the run has them.
    pub sentinels: Option<SentinelState>,
    /// The method's and the loop's counters and random streams.
    pub numbers: BTreeMap<String, String>,
}

/// A run carried on from its checkpoint.
#[derive(Debug)]
pub struct Resume {
    /// Where it stood.
    pub progress: Progress,
    /// The method's saved tensors (optimiser moments), named as in the file.
    pub tensors: HashMap<String, Tensor>,
    /// The checkpoint it came from, for errors.
    pub path: PathBuf,
}

/// What the loop needs besides the network and the method: the data, the
/// twins and devices, and the rig samples learning had cost before it
/// (twins' recording, initialisation) for the cumulative column.
#[derive(Debug)]
pub struct Setting<'a> {
    /// The training split.
    pub train: &'a Split,
    /// The test split, scored after every epoch.
    pub test: &'a Split,
    /// A twin per device (empty for methods without); a drift sentinel
    /// with refit replaces a device's twin here.
    pub twins: &'a mut HashMap<String, Arc<Twin>>,
    /// A lease per device.
    pub rigs: &'a mut HashMap<String, Rig>,
    /// Rig samples spent before the first step.
    pub spent_before: u64,
    /// Drift sentinels, and how a twin is refitted when one fires.
    pub sentinel: Option<(SentinelOptions, Refit<'a>)>,
    /// Carry on from here rather than from the first epoch.
    pub resume: Option<Resume>,
}

fn total_samples(rigs: &HashMap<String, Rig>) -> u64 {
    rigs.values().map(Rig::samples).sum()
}

/// Train `net` with `opt.method`, calling `on_epoch` after every epoch
/// with where the run stands and the method's state (to checkpoint).
pub async fn train(
    net: &Network,
    s: Setting<'_>,
    opt: &TrainOptions,
    on_epoch: impl FnMut(&Progress, &StateOut, &Network) -> Result<()>,
) -> Result<Trained> {
    if opt.epochs == 0 || opt.batch == 0 {
        return Err(Error::invalid("--epochs and --batch must be at least 1"));
    }
    match opt.method {
        Method::Pat => run_epochs(&mut Pat::new(net, opt)?, net, s, opt, on_epoch).await,
        Method::Insilico => run_epochs(&mut InSilico::new(net, opt)?, net, s, opt, on_epoch).await,
        Method::Phyll => run_epochs(&mut Phyll::new(net, opt)?, net, s, opt, on_epoch).await,
        Method::Spsa => {
            let m = &mut Spsa::new(net, opt, s.train.len())?;
            run_epochs(m, net, s, opt, on_epoch).await
        }
        Method::Digital => run_epochs(&mut Digital::new(net, opt)?, net, s, opt, on_epoch).await,
    }
}

/// The refusal to resume a run whose checkpoint at `path` has all its
/// `epochs` already.
pub fn finished(path: &std::path::Path, epochs: usize) -> Error {
    Error::invalid(format!(
        "{}: the run finished all {epochs} epochs; there is nothing to resume",
        path.display()
    ))
}

/// The order of the training rows after `epochs` epochs' shuffles from
/// `seed`, and the stream the next epoch's shuffle draws from. Each epoch
/// shuffles the previous order in place and nothing else draws from the
/// stream, so a resumed run replays the shuffles and needs nothing saved.
fn shuffled(n: usize, seed: u64, epochs: usize) -> (Vec<usize>, rand_chacha::ChaCha8Rng) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..epochs {
        order.shuffle(&mut rng);
    }
    (order, rng)
}

async fn run_epochs<M: TrainingMethod>(
    method: &mut M,
    net: &Network,
    s: Setting<'_>,
    opt: &TrainOptions,
    mut on_epoch: impl FnMut(&Progress, &StateOut, &Network) -> Result<()>,
) -> Result<Trained> {
    let Setting {
        train,
        test,
        twins,
        rigs,
        spent_before,
        sentinel,
        resume,
    } = s;
    let mut sentinels = match sentinel {
        Some(_) if twins.is_empty() => {
            return Err(Error::invalid(format!(
                "drift sentinels watch twins, and --method {} trains without one",
                opt.method.as_str()
            )));
        }
        Some((o, refit)) => Some(Sentinels::new(o, refit, twins, opt.seed)?),
        None => None,
    };
    let start = Instant::now();
    let busy0: Duration = rigs.values().map(Rig::busy).sum();
    let (mut samples_train, mut samples_eval) = (0u64, 0u64);
    let (mut order, mut rng) = shuffled(train.len(), opt.seed, 0);
    let steps_per_epoch = train.len().div_ceil(opt.batch);
    let schedule = Cosine::new(LR_FLOOR, opt.epochs * steps_per_epoch);
    let mut rows = Vec::new();
    let mut step = 0usize;
    let (mut wall_before, mut busy_before) = (0.0, 0.0);
    if let Some(r) = resume {
        let done = r.progress.rows.len();
        if done >= opt.epochs {
            return Err(finished(&r.path, opt.epochs));
        }
        let mut from = StateIn::new(&r.path, r.tensors, &r.progress.numbers);
        method.restore_state(&mut from)?;
        let p = r.progress;
        if let (Some(s), Some(state)) = (sentinels.as_mut(), p.sentinels) {
            s.restore(state);
        }
        (order, rng) = shuffled(train.len(), opt.seed, done);
        (rows, step, samples_train, samples_eval) =
            (p.rows, p.step, p.samples_train, p.samples_eval);
        (wall_before, busy_before) = (p.wall_seconds, p.busy_seconds);
    }
    let first = rows.len() + 1;
    let pb = crate::ui::bar(opt.epochs as u64, opt.method.as_str(), opt.quiet);
    pb.inc(rows.len() as u64);
    for epoch in first..=opt.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        let mut lr_p = opt.lr_physical;
        let before = total_samples(rigs);
        for chunk in order.chunks(opt.batch) {
            let factor = schedule.factor(step);
            lr_p = opt.lr_physical * factor;
            let batch = train.select(chunk);
            let mut env = StepEnv {
                twins,
                rigs: &mut *rigs,
                repeats: opt.repeats,
            };
            let out = method.step(net, &batch, factor, &mut env).await?;
            loss_sum += out.loss * chunk.len() as f64;
            hits += out.correct;
            step += 1;
            if let Some(s) = sentinels.as_mut().filter(|s| s.due(step)) {
                s.check(epoch, step, rigs, twins, opt.repeats).await?;
            }
        }
        let scored = total_samples(rigs);
        samples_train += scored - before;
        let test_accuracy = accuracy(net, test, Physics::Rigs(rigs, opt.repeats)).await?;
        samples_eval += total_samples(rigs) - scored;
        let twin_test_accuracy = if opt.method.needs_twin() {
            Some(accuracy(net, test, Physics::Twins(twins)).await?)
        } else {
            None
        };
        let (drift_events, drift_ratio) = sentinels
            .as_mut()
            .map_or((0, None), Sentinels::epoch_summary);
        let row = EpochRow {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: hits as f64 / train.len() as f64,
            test_accuracy,
            twin_test_accuracy,
            rig_samples: spent_before + samples_train,
            rig_samples_eval: samples_eval,
            lr_physical: lr_p,
            drift_events,
            drift_ratio,
            wall_seconds: wall_before + start.elapsed().as_secs_f64(),
        };
        pb.set_prefix(format!(
            "loss {:.3} train {:.1} % test {:.1} %{}",
            row.train_loss,
            100.0 * row.train_accuracy,
            100.0 * row.test_accuracy,
            row.twin_test_accuracy
                .map(|t| format!(" (twin {:.1} %)", 100.0 * t))
                .unwrap_or_default()
        ));
        pb.inc(1);
        rows.push(row);
        let busy = rigs.values().map(Rig::busy).sum::<Duration>() - busy0;
        let mut state = StateOut::default();
        method.save_state(&mut state)?;
        let progress = Progress {
            rows: rows.clone(),
            step,
            samples_train,
            samples_eval,
            wall_seconds: wall_before + start.elapsed().as_secs_f64(),
            busy_seconds: busy_before + busy.as_secs_f64(),
            sentinels: sentinels.as_ref().map(Sentinels::state),
            numbers: state.numbers().clone(),
        };
        on_epoch(&progress, &state, net)?;
    }
    pb.finish_and_clear();
    Ok(Trained {
        epochs: rows,
        wall: Duration::try_from_secs_f64(wall_before).unwrap_or_default() + start.elapsed(),
        busy: Duration::try_from_secs_f64(busy_before).unwrap_or_default()
            + rigs.values().map(Rig::busy).sum::<Duration>()
            - busy0,
        samples_train,
        samples_eval,
        drift_events: sentinels.map(Sentinels::into_events).unwrap_or_default(),
    })
}
