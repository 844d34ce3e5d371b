//! One training run end to end: data, twins, leases, training, and the
//! run directory. Shared by `hilt train` and `hilt demo`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hilt_client::Client;
use hilt_core::DeviceSpec;

use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::net::{Checkpoint, Network, NetworkSpec, Physics, tensor2};
use crate::report::{self, Metrics, TwinSummary};
use crate::rig::Rig;
use crate::train::{self, TrainOptions};
use crate::twin::{self, CollectOptions, FitOptions, Twin};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    /// Physical layers with element-wise rescaling only; class = brightest bin.
    Physical,
    /// Digital input layer → physical layer(s) → digital readout.
    Hybrid,
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub task: Task,
    pub dataset: Dataset,
    pub architecture: Architecture,
    /// The device of the last physical layer (and of all of them unless
    /// `hidden_device` is set).
    pub device: String,
    pub hidden_device: Option<String>,
    pub layers: usize,
    pub train: TrainOptions,
    /// Pre-fitted twins by device; missing ones are collected and fitted.
    pub twin_files: HashMap<String, PathBuf>,
    pub collect: CollectOptions,
    pub fit: FitOptions,
    pub out: PathBuf,
    pub server: String,
}

impl RunConfig {
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

pub async fn describe_all(client: &Client, ids: &[String]) -> Result<HashMap<String, DeviceSpec>> {
    let mut out = HashMap::new();
    for id in ids {
        out.insert(id.clone(), client.describe(id).await?.0);
    }
    Ok(out)
}

/// Train, evaluate on the device, and write the run directory.
pub async fn run(client: &Client, cfg: &RunConfig) -> Result<Metrics> {
    let t0 = Instant::now();
    crate::fsio::create_dir(&cfg.out)?;
    let spec = cfg.network();
    let devices = describe_all(client, &spec.devices()).await?;
    let mut net = Network::init(spec, devices.clone(), cfg.train.seed)?;
    let (twins, twin_summary) = twins_for(
        client,
        &devices,
        &cfg.twin_files,
        &cfg.out.join("twins"),
        &cfg.collect,
        &cfg.fit,
    )
    .await?;

    let ds = &cfg.dataset;
    train::initialise(
        &mut net,
        &tensor2(&ds.train.x)?,
        &twins,
        cfg.train.seed,
        cfg.train.theta_init,
    )
    .await?;
    let mut rigs = HashMap::new();
    for id in devices.keys() {
        rigs.insert(id.clone(), Rig::open(client, id).await?);
    }
    let ckpt_path = cfg.out.join("checkpoint.safetensors");
    let meta0 = Checkpoint {
        task: cfg.task,
        method: cfg.train.method.as_str().into(),
        seed: cfg.train.seed,
        epoch: 0,
        repeats: cfg.train.repeats,
        network: net.spec.clone(),
        devices: devices.clone(),
    };
    let trained = train::train(
        &mut net,
        &ds.train,
        &ds.test,
        &twins,
        &mut rigs,
        &cfg.train,
        |rows, n| {
            // Checkpoint and epochs.csv after every epoch: an interrupted run
            // keeps its progress and the record of how it got there.
            let mut m = meta0.clone();
            m.epoch = rows.len();
            n.save(&ckpt_path, &m)?;
            report::write_epochs(&cfg.out, rows)
        },
    )
    .await?;

    let t_eval = Instant::now();
    let busy_eval0: std::time::Duration = rigs.values().map(Rig::busy).sum();
    let test_accuracy =
        train::accuracy(&net, &ds.test, Physics::Rigs(&mut rigs, cfg.train.repeats)).await?;
    let train_accuracy =
        train::accuracy(&net, &ds.train, Physics::Rigs(&mut rigs, cfg.train.repeats)).await?;
    let twin_test_accuracy = train::accuracy(&net, &ds.test, Physics::Twins(&twins)).await?;
    let busy_eval = rigs.values().map(Rig::busy).sum::<std::time::Duration>() - busy_eval0;
    let train_wall = trained.wall + t_eval.elapsed();
    let busy = trained.busy + busy_eval;
    net.save(
        &ckpt_path,
        &Checkpoint {
            epoch: trained.epochs.len(),
            ..meta0
        },
    )?;

    let (n_phys, n_dig) = net.n_trainable();
    let mut device_ids: Vec<String> = net.spec.devices();
    device_ids.sort();
    let metrics = Metrics {
        method: cfg.train.method.as_str().into(),
        task: cfg.task.as_str().into(),
        device: device_ids.join("+"),
        seed: cfg.train.seed,
        test_accuracy,
        train_accuracy,
        twin_test_accuracy,
        epochs: trained.epochs.len(),
        wall_seconds: t0.elapsed().as_secs_f64(),
        train_wall_seconds: train_wall.as_secs_f64(),
        device_busy_fraction: busy.as_secs_f64() / train_wall.as_secs_f64().max(1e-9),
        device_samples: trained.samples,
        twin_heldout_rel_error: twin_summary
            .values()
            .map(|t| t.heldout_rel_error)
            .fold(0.0, f32::max),
        twins: twin_summary,
        physical_layers: net.spec.n_physical(),
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
    for rig in rigs.into_values() {
        rig.release().await?;
    }
    Ok(metrics)
}
