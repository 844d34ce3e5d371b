//! `hilt demo`: the headline experiment. The same network, twin and seed
//! trained with PAT and in-silico on the simulated SHG rig, each deployed
//! on the device, side by side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use hilt_client::Client;

use crate::data::{self, Task};
use crate::error::{Error, Result};
use crate::report::Metrics;
use crate::run::{self, Architecture, RunConfig};
use crate::train::{Method, TrainOptions};
use crate::twin::{CollectOptions, FitOptions};

/// The rigs of the embedded daemon.
pub const DEMO_CONFIG: &str = include_str!("../demo.toml");
pub const HIDDEN_DEVICE: &str = "shg-hidden";
pub const READOUT_DEVICE: &str = "shg-readout";

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub task: Task,
    pub data_dir: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// `None`: the task's default.
    pub epochs: Option<usize>,
    /// Physical layers; `None`: the task's default.
    pub layers: Option<usize>,
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
    pub collect: CollectOptions,
    pub fit: FitOptions,
    /// Use this daemon instead of an embedded one.
    pub server: Option<String>,
    pub quiet: bool,
}

/// The network and schedule each task gets by default, for the
/// architecture asked for (`None`: the task's own).
pub fn task_defaults(
    task: Task,
    arch: Option<Architecture>,
) -> (Architecture, usize, TrainOptions) {
    match (task, arch) {
        // Four SHG layers (the paper's cascade had 4–5), each sample
        // measured twice and averaged.
        (Task::Vowels, _) => (
            arch.unwrap_or(Architecture::Physical),
            4,
            TrainOptions {
                epochs: 300,
                batch: 32,
                repeats: 2,
                ..TrainOptions::default()
            },
        ),
        // The paper's plate and circuit MNIST networks: three physical
        // layers with element-wise rescaling (plate: 88.7 % test after
        // 20 epochs of PAT).
        (Task::Mnist | Task::FashionMnist, Some(Architecture::Physical)) => (
            Architecture::Physical,
            3,
            TrainOptions {
                epochs: 20,
                batch: 64,
                lr_physical: 0.01,
                lr_digital: 0.005,
                ..TrainOptions::default()
            },
        ),
        (Task::Mnist | Task::FashionMnist, _) => (
            Architecture::Hybrid,
            1,
            TrainOptions {
                epochs: 3,
                batch: 64,
                lr_physical: 0.01,
                lr_digital: 0.005,
                ..TrainOptions::default()
            },
        ),
    }
}

pub async fn demo(cfg: &DemoConfig) -> Result<Vec<Metrics>> {
    let mut dataset = data::load(cfg.task, &cfg.data_dir)?;
    dataset.truncate(cfg.max_train, cfg.max_test);
    let embedded = match &cfg.server {
        Some(_) => None,
        None => {
            let config = hilt_daemon::Config::parse(DEMO_CONFIG, "demo.toml")?;
            let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
            Some(hilt_daemon::EmbeddedDaemon::start(config, addr).await?)
        }
    };
    let server = match (&cfg.server, &embedded) {
        (Some(s), _) => s.clone(),
        (None, Some(d)) => d.url(),
        (None, None) => return Err(Error::invalid("no daemon")),
    };
    let result = run_both(cfg, dataset, &server).await;
    if let Some(d) = embedded {
        d.shutdown().await?;
    }
    result
}

async fn run_both(cfg: &DemoConfig, dataset: data::Dataset, server: &str) -> Result<Vec<Metrics>> {
    let client = Client::connect(server).await?;
    let (architecture, default_layers, mut train) = task_defaults(cfg.task, None);
    let layers = cfg.layers.unwrap_or(default_layers);
    train.seed = cfg.seed;
    train.quiet = cfg.quiet;
    if let Some(e) = cfg.epochs {
        train.epochs = e;
    }
    if !cfg.quiet {
        eprintln!("data: {}", dataset.split);
    }
    let mut base = RunConfig {
        task: cfg.task,
        dataset,
        architecture,
        device: match cfg.task {
            Task::Vowels => READOUT_DEVICE,
            _ => HIDDEN_DEVICE,
        }
        .into(),
        hidden_device: Some(HIDDEN_DEVICE.into()),
        layers,
        train,
        twin_files: HashMap::new(),
        collect: CollectOptions {
            quiet: cfg.quiet,
            ..cfg.collect.clone()
        },
        fit: FitOptions {
            quiet: cfg.quiet,
            ..cfg.fit.clone()
        },
        out: cfg.out.clone(),
        server: server.into(),
    };
    // One set of twins for both methods: the comparison is of methods only.
    let devices = run::describe_all(&client, &base.network().devices()).await?;
    let (_, summary) = run::twins_for(
        &client,
        &devices,
        &HashMap::new(),
        &cfg.out.join("twins"),
        &base.collect,
        &base.fit,
    )
    .await?;
    base.twin_files = summary
        .iter()
        .map(|(id, t)| (id.clone(), PathBuf::from(&t.file)))
        .collect();
    let mut all = Vec::new();
    for method in [Method::Pat, Method::Insilico] {
        let mut rc = base.clone();
        rc.train.method = method;
        rc.out = cfg.out.join(method.as_str());
        all.push(run::run(&client, &rc).await?);
    }
    let table = summary_table(&all);
    crate::fsio::write_bytes(&cfg.out.join("summary.md"), table.as_bytes())?;
    println!("{table}");
    Ok(all)
}

pub fn summary_table(runs: &[Metrics]) -> String {
    let mut s = String::new();
    if let Some(m) = runs.first() {
        s += &format!(
            "{} on {} ({} physical layer(s); twin held-out error {:.1} %)\n{}\n\n",
            m.task,
            m.device,
            m.physical_layers,
            100.0 * m.twin_heldout_rel_error,
            m.split
        );
    }
    s += "| method | test acc (device) | train acc (device) | test acc (twin) | epochs | wall s | rig busy |\n";
    s += "|---|---|---|---|---|---|---|\n";
    for m in runs {
        s += &format!(
            "| {} | {:.1} % | {:.1} % | {:.1} % | {} | {:.1} | {:.2} |\n",
            m.method,
            100.0 * m.test_accuracy,
            100.0 * m.train_accuracy,
            100.0 * m.twin_test_accuracy,
            m.epochs,
            m.wall_seconds,
            m.device_busy_fraction
        );
    }
    s
}
