//! One training session end to end, shared by `hilt train` and `hilt demo`:
//! prepare (devices, twins, initial network, leases), train, evaluate on the
//! devices, and report into the run directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fleet::{self, Fleet};
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::array::tensor2;
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::net::{Checkpoint, Network, NetworkSpec, Overlay, Physics};
use crate::presets::Architecture;
use crate::report::{self, Metrics, TwinSummary};
use crate::rig::Rig;
use crate::tensorfile;
use crate::train::state::TENSOR_PREFIX;
use crate::train::{
    self, EpochRow, InitBudget, Method, Progress, Refit, Resume, SentinelOptions, TrainOptions,
    Trained,
};
use crate::twin::{self, CollectOptions, FitOptions, Twin};

/// Everything a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The task, recorded in the checkpoint and metrics.
    pub task: Task,
    /// Its data, loaded.
    pub dataset: Dataset,
    /// The network's shape.
    pub architecture: Architecture,
    /// The device of the last physical layer (and of all of them unless
    /// `hidden_device` is set).
    pub device: String,
    /// The device of the other physical layers.
    pub hidden_device: Option<String>,
    /// Physical layers.
    pub layers: usize,
    /// The method and its schedule.
    pub train: TrainOptions,
    /// Pre-fitted twins by device; missing ones are collected and fitted.
    pub twin_files: HashMap<String, PathBuf>,
    /// How missing twins are recorded.
    pub collect: CollectOptions,
    /// How missing twins are fitted.
    pub fit: FitOptions,
    /// The run directory.
    pub out: PathBuf,
    /// The daemon's address, recorded in the metrics.
    pub server: String,
    /// Drift sentinels on the twins (PAT, in-silico), refitting with
    /// `collect` and `fit` when asked.
    pub sentinel: Option<SentinelOptions>,
    /// Carry on the run in `out` from its checkpoint instead of starting.
    pub resume: bool,
}

/// The checkpoint's document beside the network's: what `--resume` needs.
const RUN_KEY: &str = "hilt.run";

/// What a checkpoint holds besides the network, so a run can resume: the
/// loop's progress, and what the run had spent before its first step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunState {
    progress: Progress,
    twin_samples: u64,
    init_samples: u64,
    /// The twins the run started with (a refit's are in the progress).
    twins: BTreeMap<String, TwinSummary>,
}

impl SessionConfig {
    /// The physical network of the architecture asked for (what PAT,
    /// in-silico and SPSA train), before the devices resolve its widths.
    pub fn physical_network(&self) -> NetworkSpec {
        let d = &self.dataset;
        match self.architecture {
            Architecture::Physical => NetworkSpec::all_physical(
                d.n_features(),
                d.n_classes(),
                self.hidden_device.as_deref().unwrap_or(&self.device),
                &self.device,
                self.layers,
            ),
            Architecture::Hybrid => {
                NetworkSpec::hybrid(d.n_features(), d.n_classes(), &self.device, self.layers)
            }
        }
    }

    /// The network the method trains: PhyLL's blocks on `device` (the
    /// label slots before the vowel features, in place of the images'
    /// blank first pixels), the digital baseline with as many trainable
    /// values as the physical network on `devices`, else the physical
    /// network itself.
    pub fn network(&self, devices: &HashMap<String, DeviceSpec>) -> Result<NetworkSpec> {
        let d = &self.dataset;
        Ok(match self.train.method {
            Method::Phyll => {
                let vowels = self.task == Task::Vowels;
                let overlay = Overlay {
                    prepend: vowels,
                    squash: vowels,
                };
                NetworkSpec::phyll(
                    d.n_features(),
                    d.n_classes(),
                    &self.device,
                    self.layers,
                    overlay,
                )
            }
            Method::Digital => {
                let reference = Network::init(self.physical_network(), devices.clone(), 0)?;
                let (p, q) = reference.n_trainable();
                NetworkSpec::digital(d.n_features(), d.n_classes(), p + q)
            }
            Method::Pat | Method::Insilico | Method::Spsa => self.physical_network(),
        })
    }

    fn checkpoint(
        &self,
        net: &Network,
        devices: &HashMap<String, DeviceSpec>,
        epoch: usize,
    ) -> Checkpoint {
        Checkpoint {
            task: self.task,
            method: self.train.method.as_str().into(),
            seed: self.train.seed,
            epoch,
            repeats: self.train.repeats,
            network: net.spec(),
            devices: devices.clone(),
        }
    }
}

/// The refusal to use a twin fitted for a different device or settings:
/// its Jacobians would belong to another physical system.
pub fn check_twin(twin: &Twin, spec: &DeviceSpec, file: &Path) -> Result<()> {
    let t = twin.spec();
    let same = t.kind == spec.kind
        && t.n_in == spec.n_in
        && t.n_par == spec.n_par
        && t.n_out == spec.n_out
        && t.encoding == spec.encoding
        && t.hyperparameters == spec.hyperparameters
        && t.input_range == spec.input_range
        && t.param_range == spec.param_range;
    if !same {
        return Err(Error::data(
            file,
            format!(
                "twin was fitted for device '{}' ({} {}→{}, {:?}) which differs from device '{}' as now described ({} {}→{}, {:?})",
                t.id,
                t.kind,
                t.n_in,
                t.n_out,
                t.hyperparameters,
                spec.id,
                spec.kind,
                spec.n_in,
                spec.n_out,
                spec.hyperparameters
            ),
        ));
    }
    Ok(())
}

/// Twins for `devices`: loaded from `files` where given, otherwise
/// collected on the device and fitted, saved under `dir`.
pub async fn twins_for(
    fleet: &Fleet,
    devices: &HashMap<String, DeviceSpec>,
    files: &HashMap<String, PathBuf>,
    dir: &Path,
    collect: &CollectOptions,
    fit: &FitOptions,
) -> Result<(HashMap<String, Arc<Twin>>, BTreeMap<String, TwinSummary>)> {
    let mut twins = HashMap::new();
    let mut summary = BTreeMap::new();
    let mut ids: Vec<&String> = devices.keys().collect();
    ids.sort();
    for id in ids {
        let spec = &devices[id];
        // A freshly fitted twin is used as fitted, not read back.
        let (file, t) = match files.get(id) {
            Some(f) => (f.clone(), Twin::load(f)?),
            None => {
                crate::fsio::create_dir(dir)?;
                let stem = fleet::file_stem(id);
                let npz = dir.join(format!("{stem}.npz"));
                let st = dir.join(format!("{stem}.safetensors"));
                let mut rig = fleet.rig(id).await?;
                tracing::info!(device = %id, samples = collect.samples, repeats = collect.repeats, "collecting twin data");
                let data = twin::collect(&mut rig, collect).await?;
                rig.release().await?;
                data.save(&npz)?;
                let t = twin::fit(&data, fit)?;
                t.save(&st)?;
                (st, t)
            }
        };
        check_twin(&t, spec, &file)?;
        // Counts from a file someone chose: saturate rather than wrap.
        let rows = t.meta.train_rows.saturating_add(t.meta.heldout_rows);
        summary.insert(
            id.clone(),
            TwinSummary {
                file: file.display().to_string(),
                heldout_rel_error: t.meta.heldout_rel_error,
                noise_floor_rel: t.meta.noise_floor_rel,
                samples: rows,
                rig_samples: (rows as u64).saturating_mul(t.meta.repeats as u64),
            },
        );
        twins.insert(id.clone(), Arc::new(t));
    }
    Ok((twins, summary))
}

/// Each device's spec as it describes itself now, under its key.
pub async fn describe_all(fleet: &Fleet, ids: &[String]) -> Result<HashMap<String, DeviceSpec>> {
    let mut out = HashMap::new();
    for id in ids {
        out.insert(id.clone(), fleet.describe(id).await?);
    }
    Ok(out)
}

/// A session ready to train: the initialised network, its twins and the
/// leases on its devices.
struct Prepared {
    t0: Instant,
    net: Network,
    devices: HashMap<String, DeviceSpec>,
    twins: HashMap<String, Arc<Twin>>,
    twin_summary: BTreeMap<String, TwinSummary>,
    rigs: HashMap<String, Rig>,
    /// Rig samples the twins' recording cost.
    twin_samples: u64,
    /// Rig samples the initialisation cost.
    init_samples: u64,
}

/// What the trained network scores, measured after training.
struct Evaluation {
    test_accuracy: f64,
    train_accuracy: f64,
    twin_test_accuracy: Option<f64>,
    /// Training plus evaluation.
    wall: Duration,
    busy: Duration,
    /// Rig samples the final scoring cost.
    samples: u64,
}

fn rig_samples(rigs: &HashMap<String, Rig>) -> u64 {
    rigs.values().map(Rig::samples).sum()
}

/// Devices described, twins loaded or fitted (methods that use them),
/// the network initialised, and the devices leased.
async fn prepare(fleet: &Fleet, cfg: &SessionConfig) -> Result<Prepared> {
    let t0 = Instant::now();
    crate::fsio::create_dir(&cfg.out)?;
    let method = cfg.train.method;
    // The physical network's devices: PhyLL's and the baseline's network
    // are drawn from them.
    let reference = match method {
        Method::Phyll => vec![cfg.device.clone()],
        _ => cfg.physical_network().devices(),
    };
    let described = describe_all(fleet, &reference).await?;
    let spec = cfg.network(&described)?;
    let devices: HashMap<String, DeviceSpec> = spec
        .devices()
        .into_iter()
        .filter_map(|id| described.get(&id).map(|d| (id, d.clone())))
        .collect();
    let net = Network::init(spec, devices.clone(), cfg.train.seed)?;
    let (twins, twin_summary) = if method.needs_twin() {
        twins_for(
            fleet,
            &devices,
            &cfg.twin_files,
            &cfg.out.join("twins"),
            &cfg.collect,
            &cfg.fit,
        )
        .await?
    } else {
        (HashMap::new(), BTreeMap::new())
    };
    let twin_samples = twin_summary.values().map(|t| t.rig_samples).sum();
    let ids: Vec<String> = devices.keys().cloned().collect();
    let mut rigs = fleet.rigs(&ids).await?;
    let x = tensor2(&cfg.dataset.train.x)?;
    let xy = (&x, cfg.dataset.train.y.as_slice());
    let (seed, theta_init) = (cfg.train.seed, cfg.train.theta_init);
    let before = rig_samples(&rigs);
    match method {
        Method::Pat | Method::Insilico => {
            let physics = Physics::Twins(&twins);
            train::initialise(&net, xy, physics, InitBudget::TWINS, seed, theta_init).await?;
        }
        Method::Spsa => {
            let physics = Physics::Rigs(&mut rigs, cfg.train.repeats);
            train::initialise(&net, xy, physics, InitBudget::RIGS, seed, theta_init).await?;
        }
        // Nothing to place: PhyLL's blocks normalise themselves, the
        // baseline has no rescale.
        Method::Phyll | Method::Digital => {}
    }
    let init_samples = rig_samples(&rigs) - before;
    Ok(Prepared {
        t0,
        net,
        devices,
        twins,
        twin_summary,
        rigs,
        twin_samples,
        init_samples,
    })
}

fn run_state(file: &crate::tensorfile::Loaded<Checkpoint>, path: &Path) -> Result<RunState> {
    file.doc(RUN_KEY)?.ok_or_else(|| {
        Error::data(
            path,
            "holds no training state to resume from (a checkpoint `hilt train` wrote before --resume existed)",
        )
    })
}

/// Whether the run in `dir` can carry on towards `epochs`: its
/// checkpoint is there, holds the state to resume from, and has epochs
/// left. Read before any daemon is contacted.
pub fn check_resumable(dir: &Path, epochs: usize) -> Result<()> {
    let path = dir.join(CHECKPOINT);
    let state = run_state(&Network::open(&path)?, &path)?;
    if state.progress.rows.len() >= epochs {
        return Err(train::finished(&path, epochs));
    }
    Ok(())
}

/// A run carried on from the checkpoint in `cfg.out`: the network and the
/// state saved with it after its last finished epoch, the twins it was
/// using then (refits included), its devices leased again. A device named
/// at a new address (`ID@URL`, the same ID) takes the old one's layers.
async fn prepare_resumed(fleet: &Fleet, cfg: &SessionConfig) -> Result<(Prepared, Resume)> {
    let t0 = Instant::now();
    let path = checkpoint_path(cfg);
    let mut file = Network::open(&path)?;
    let mut state = run_state(&file, &path)?;
    let m = &file.meta;
    if m.task != cfg.task || m.method != cfg.train.method.as_str() || m.seed != cfg.train.seed {
        return Err(Error::data(
            &path,
            format!(
                "was trained with --task {} --method {} --seed {}, not as run.json asks (--task {} --method {} --seed {})",
                m.task.as_str(),
                m.method,
                m.seed,
                cfg.task.as_str(),
                cfg.train.method.as_str(),
                cfg.train.seed
            ),
        ));
    }
    let named: Vec<&String> = [Some(&cfg.device), cfg.hidden_device.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let saved: Vec<String> = file.meta.devices.keys().cloned().collect();
    for old in &saved {
        let moved = named
            .iter()
            .find(|k| fleet::split(k).0 == fleet::split(old).0 && **k != old);
        if let Some(new) = moved {
            file.meta.rename_device(old, new);
            if let Some(t) = state.twins.remove(old) {
                state.twins.insert(new.to_string(), t);
            }
            if let Some(s) = state.progress.sentinels.as_mut() {
                s.rename_device(old, new);
            }
        }
    }
    let net = Network::from_file(&mut file)?;
    let devices = file.meta.devices.clone();
    let ids: Vec<String> = devices.keys().cloned().collect();
    let twins = if cfg.train.method.needs_twin() {
        let mut files: HashMap<String, PathBuf> = state
            .twins
            .iter()
            .map(|(id, t)| (id.clone(), PathBuf::from(&t.file)))
            .collect();
        if let Some(s) = &state.progress.sentinels {
            for (id, f) in s.refitted_twins() {
                files.insert(id, PathBuf::from(f));
            }
        }
        let missing = ids.iter().find(|id| !files.contains_key(*id));
        if let Some(id) = missing {
            return Err(Error::data(
                &path,
                format!("names no twin for device '{id}'"),
            ));
        }
        // Each twin is checked against its device as it is now.
        let described = describe_all(fleet, &ids).await?;
        let dir = cfg.out.join("twins");
        twins_for(fleet, &described, &files, &dir, &cfg.collect, &cfg.fit)
            .await?
            .0
    } else {
        fleet.describe_again(&devices).await?;
        HashMap::new()
    };
    let rigs = fleet.rigs(&ids).await?;
    let resume = Resume {
        tensors: file.take_prefixed(TENSOR_PREFIX),
        progress: state.progress,
        path,
    };
    let p = Prepared {
        t0,
        net,
        devices,
        twins,
        twin_summary: state.twins,
        rigs,
        twin_samples: state.twin_samples,
        init_samples: state.init_samples,
    };
    Ok((p, resume))
}

/// The run directory's checkpoint.
const CHECKPOINT: &str = "checkpoint.safetensors";

fn checkpoint_path(cfg: &SessionConfig) -> PathBuf {
    cfg.out.join(CHECKPOINT)
}

/// The training loop, with the checkpoint (the network and the state to
/// resume from, in one file) and epochs.csv rewritten after every epoch:
/// an interrupted run keeps its progress and the record of how it got
/// there, and `--resume` carries it on.
async fn train_network(
    p: &mut Prepared,
    cfg: &SessionConfig,
    resume: Option<Resume>,
) -> Result<Trained> {
    let ckpt_path = checkpoint_path(cfg);
    let meta0 = cfg.checkpoint(&p.net, &p.devices, 0);
    let ds = &cfg.dataset;
    let twin_dir = cfg.out.join("twins");
    let setting = train::Setting {
        train: &ds.train,
        test: &ds.test,
        twins: &mut p.twins,
        rigs: &mut p.rigs,
        spent_before: p.twin_samples + p.init_samples,
        sentinel: cfg.sentinel.map(|o| {
            let refit = Refit {
                collect: &cfg.collect,
                fit: &cfg.fit,
                dir: &twin_dir,
            };
            (o, refit)
        }),
        resume,
    };
    let (twin_samples, init_samples) = (p.twin_samples, p.init_samples);
    let twins = p.twin_summary.clone();
    train::train(&p.net, setting, &cfg.train, |progress, state, n| {
        let mut m = meta0.clone();
        m.epoch = progress.rows.len();
        let run = RunState {
            progress: progress.clone(),
            twin_samples,
            init_samples,
            twins: twins.clone(),
        };
        let docs = [(RUN_KEY, tensorfile::json(&run)?)];
        n.save_with(&ckpt_path, &m, &docs, state.tensors())?;
        report::write_epochs(&cfg.out, &progress.rows)
    })
    .await
}

/// Test and train accuracy measured on the devices, and the twins'
/// prediction of the test accuracy.
async fn evaluate(p: &mut Prepared, cfg: &SessionConfig, trained: &Trained) -> Result<Evaluation> {
    let (ds, repeats) = (&cfg.dataset, cfg.train.repeats);
    let t_eval = Instant::now();
    let busy_eval0: Duration = p.rigs.values().map(Rig::busy).sum();
    let samples0 = rig_samples(&p.rigs);
    let test_accuracy =
        train::accuracy(&p.net, &ds.test, Physics::Rigs(&mut p.rigs, repeats)).await?;
    let train_accuracy =
        train::accuracy(&p.net, &ds.train, Physics::Rigs(&mut p.rigs, repeats)).await?;
    let twin_test_accuracy = if cfg.train.method.needs_twin() {
        Some(train::accuracy(&p.net, &ds.test, Physics::Twins(&p.twins)).await?)
    } else {
        None
    };
    let busy_eval = p.rigs.values().map(Rig::busy).sum::<Duration>() - busy_eval0;
    Ok(Evaluation {
        test_accuracy,
        train_accuracy,
        twin_test_accuracy,
        wall: trained.wall + t_eval.elapsed(),
        busy: trained.busy + busy_eval,
        samples: rig_samples(&p.rigs) - samples0,
    })
}

/// `curve.png` and `metrics.json` (the last epoch's checkpoint is the
/// final one: scoring changes no parameter).
fn report(
    fleet: &Fleet,
    p: &Prepared,
    cfg: &SessionConfig,
    trained: &Trained,
    ev: &Evaluation,
) -> Result<Metrics> {
    let (net, ds) = (&p.net, &cfg.dataset);
    let (n_phys, n_dig) = net.n_trainable();
    let metrics = Metrics {
        method: cfg.train.method.as_str().into(),
        task: cfg.task.as_str().into(),
        device: if net.n_physical() == 0 {
            "none (digital)".into()
        } else {
            net.device_ids().join("+")
        },
        seed: cfg.train.seed,
        test_accuracy: ev.test_accuracy,
        train_accuracy: ev.train_accuracy,
        twin_test_accuracy: ev.twin_test_accuracy,
        epochs: trained.epochs.len(),
        wall_seconds: p.t0.elapsed().as_secs_f64(),
        train_wall_seconds: ev.wall.as_secs_f64(),
        device_busy_fraction: ev.busy.as_secs_f64() / ev.wall.as_secs_f64().max(1e-9),
        device_samples_train: p.init_samples + trained.samples_train,
        device_samples_eval: trained.samples_eval + ev.samples,
        twin_samples: p.twin_samples,
        twin_heldout_rel_error: p
            .twin_summary
            .values()
            .map(|t| t.heldout_rel_error)
            .fold(0.0, f32::max),
        twins: p.twin_summary.clone(),
        physical_layers: net.n_physical(),
        trainable_physical: n_phys,
        trainable_digital: n_dig,
        split: ds.split.clone(),
        n_train: ds.train.len(),
        n_test: ds.test.len(),
        server: cfg.server.clone(),
        servers: fleet.servers(),
        sentinel: cfg.sentinel,
        drift_events: trained.drift_events.clone(),
        hilt_version: env!("CARGO_PKG_VERSION").into(),
    };
    report::plot_curve(
        &cfg.out.join("curve.png"),
        &format!("{} {} on {}", metrics.method, metrics.task, metrics.device),
        &trained.epochs,
    )?;
    report::write_metrics(&cfg.out, &metrics)?;
    Ok(metrics)
}

/// A finished run: what `metrics.json` and `epochs.csv` hold.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run's metrics.
    pub metrics: Metrics,
    /// One row per epoch.
    pub epochs: Vec<EpochRow>,
}

/// Prepare, train, evaluate on the devices, and write the run directory.
pub async fn run(fleet: &Fleet, cfg: &SessionConfig) -> Result<Run> {
    let (mut p, resume) = if cfg.resume {
        let (p, r) = prepare_resumed(fleet, cfg).await?;
        (p, Some(r))
    } else {
        (prepare(fleet, cfg).await?, None)
    };
    let trained = train_network(&mut p, cfg, resume).await?;
    let ev = evaluate(&mut p, cfg, &trained).await?;
    let metrics = report(fleet, &p, cfg, &trained, &ev)?;
    for rig in p.rigs.into_values() {
        rig.release().await?;
    }
    Ok(Run {
        metrics,
        epochs: trained.epochs,
    })
}
