//! One training session end to end, shared by `hilt train` and `hilt demo`:
//! prepare (devices, twins, initial network, leases), train, evaluate on the
//! devices, and report into the run directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilt_client::Client;
use hilt_core::DeviceSpec;

use crate::array::tensor2;
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::net::{Checkpoint, Network, NetworkSpec, Physics};
use crate::presets::Architecture;
use crate::report::{self, Metrics, TwinSummary};
use crate::rig::Rig;
use crate::train::{self, TrainOptions, Trained};
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
}

impl SessionConfig {
    /// The network's structure, before the devices resolve its widths.
    pub fn network(&self) -> NetworkSpec {
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
    client: &Client,
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
                let npz = dir.join(format!("{id}.npz"));
                let st = dir.join(format!("{id}.safetensors"));
                let mut rig = Rig::open(client, id).await?;
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
        summary.insert(
            id.clone(),
            TwinSummary {
                file: file.display().to_string(),
                heldout_rel_error: t.meta.heldout_rel_error,
                noise_floor_rel: t.meta.noise_floor_rel,
                samples: t.meta.train_rows + t.meta.heldout_rows,
            },
        );
        twins.insert(id.clone(), Arc::new(t));
    }
    Ok((twins, summary))
}

/// Each device's spec as it describes itself now.
pub async fn describe_all(client: &Client, ids: &[String]) -> Result<HashMap<String, DeviceSpec>> {
    let mut out = HashMap::new();
    for id in ids {
        out.insert(id.clone(), client.describe(id).await?.0);
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
}

/// What the trained network scores, measured after training.
struct Evaluation {
    test_accuracy: f64,
    train_accuracy: f64,
    twin_test_accuracy: f64,
    /// Training plus evaluation.
    wall: Duration,
    busy: Duration,
}

/// Devices described, twins loaded or fitted, the network initialised
/// through them, and the devices leased.
async fn prepare(client: &Client, cfg: &SessionConfig) -> Result<Prepared> {
    let t0 = Instant::now();
    crate::fsio::create_dir(&cfg.out)?;
    let spec = cfg.network();
    let devices = describe_all(client, &spec.devices()).await?;
    let net = Network::init(spec, devices.clone(), cfg.train.seed)?;
    let (twins, twin_summary) = twins_for(
        client,
        &devices,
        &cfg.twin_files,
        &cfg.out.join("twins"),
        &cfg.collect,
        &cfg.fit,
    )
    .await?;
    train::initialise(
        &net,
        &tensor2(&cfg.dataset.train.x)?,
        &twins,
        cfg.train.seed,
        cfg.train.theta_init,
    )
    .await?;
    let mut rigs = HashMap::new();
    for id in devices.keys() {
        rigs.insert(id.clone(), Rig::open(client, id).await?);
    }
    Ok(Prepared {
        t0,
        net,
        devices,
        twins,
        twin_summary,
        rigs,
    })
}

fn checkpoint_path(cfg: &SessionConfig) -> PathBuf {
    cfg.out.join("checkpoint.safetensors")
}

/// The training loop, with the checkpoint and epochs.csv rewritten after
/// every epoch: an interrupted run keeps its progress and the record of how
/// it got there.
async fn train_network(p: &mut Prepared, cfg: &SessionConfig) -> Result<Trained> {
    let ckpt_path = checkpoint_path(cfg);
    let meta0 = cfg.checkpoint(&p.net, &p.devices, 0);
    let ds = &cfg.dataset;
    train::train(
        &p.net,
        &ds.train,
        &ds.test,
        &p.twins,
        &mut p.rigs,
        &cfg.train,
        |rows, n| {
            let mut m = meta0.clone();
            m.epoch = rows.len();
            n.save(&ckpt_path, &m)?;
            report::write_epochs(&cfg.out, rows)
        },
    )
    .await
}

/// Test and train accuracy measured on the devices, and the twins'
/// prediction of the test accuracy.
async fn evaluate(p: &mut Prepared, cfg: &SessionConfig, trained: &Trained) -> Result<Evaluation> {
    let (ds, repeats) = (&cfg.dataset, cfg.train.repeats);
    let t_eval = Instant::now();
    let busy_eval0: Duration = p.rigs.values().map(Rig::busy).sum();
    let test_accuracy =
        train::accuracy(&p.net, &ds.test, Physics::Rigs(&mut p.rigs, repeats)).await?;
    let train_accuracy =
        train::accuracy(&p.net, &ds.train, Physics::Rigs(&mut p.rigs, repeats)).await?;
    let twin_test_accuracy = train::accuracy(&p.net, &ds.test, Physics::Twins(&p.twins)).await?;
    let busy_eval = p.rigs.values().map(Rig::busy).sum::<Duration>() - busy_eval0;
    Ok(Evaluation {
        test_accuracy,
        train_accuracy,
        twin_test_accuracy,
        wall: trained.wall + t_eval.elapsed(),
        busy: trained.busy + busy_eval,
    })
}

/// The final checkpoint, `curve.png` and `metrics.json`.
fn report(
    p: &Prepared,
    cfg: &SessionConfig,
    trained: &Trained,
    ev: &Evaluation,
) -> Result<Metrics> {
    let (net, ds) = (&p.net, &cfg.dataset);
    net.save(
        &checkpoint_path(cfg),
        &cfg.checkpoint(net, &p.devices, trained.epochs.len()),
    )?;
    let (n_phys, n_dig) = net.n_trainable();
    let metrics = Metrics {
        method: cfg.train.method.as_str().into(),
        task: cfg.task.as_str().into(),
        device: net.device_ids().join("+"),
        seed: cfg.train.seed,
        test_accuracy: ev.test_accuracy,
        train_accuracy: ev.train_accuracy,
        twin_test_accuracy: ev.twin_test_accuracy,
        epochs: trained.epochs.len(),
        wall_seconds: p.t0.elapsed().as_secs_f64(),
        train_wall_seconds: ev.wall.as_secs_f64(),
        device_busy_fraction: ev.busy.as_secs_f64() / ev.wall.as_secs_f64().max(1e-9),
        device_samples: trained.samples,
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

/// Prepare, train, evaluate on the devices, and write the run directory.
pub async fn run(client: &Client, cfg: &SessionConfig) -> Result<Metrics> {
    let mut p = prepare(client, cfg).await?;
    let trained = train_network(&mut p, cfg).await?;
    let ev = evaluate(&mut p, cfg, &trained).await?;
    let metrics = report(&p, cfg, &trained, &ev)?;
    for rig in p.rigs.into_values() {
        rig.release().await?;
    }
    Ok(metrics)
}
