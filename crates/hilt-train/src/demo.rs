//! `hilt demo`: the headline experiment. The same network, twin and seed
//! trained with PAT and in-silico on the simulated SHG rig, each deployed
//! on the device, side by side. The daemon is embedded (feature
//! `embedded-daemon`) unless a server is given.

use std::collections::HashMap;
use std::path::PathBuf;

use hilt_client::Client;

use crate::data::{self, Task};
use crate::error::Result;
use crate::presets::task_defaults;
use crate::report::Metrics;
use crate::session::{self, SessionConfig};
use crate::train::Method;
use crate::twin::{CollectOptions, FitOptions};

/// The rigs of the embedded daemon (also a ready-made `hiltd --config`).
pub const DEMO_CONFIG: &str = include_str!("../demo.toml");
/// The demo's wide SHG readout, feeding the next layer of a deep network.
pub const HIDDEN_DEVICE: &str = "shg-hidden";
/// The demo's SHG class readout (7 bins: the vowels).
pub const READOUT_DEVICE: &str = "shg-readout";

/// What `hilt demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The task both methods train on.
    pub task: Task,
    /// Where its data lives.
    pub data_dir: PathBuf,
    /// The demo directory: `twins/`, `pat/`, `insilico/`, `summary.md`.
    pub out: PathBuf,
    /// Seeds the twins' recording and fit and both trainings.
    pub seed: u64,
    /// `None`: the task's default.
    pub epochs: Option<usize>,
    /// Physical layers; `None`: the task's default.
    pub layers: Option<usize>,
    /// At most this many training examples.
    pub max_train: Option<usize>,
    /// At most this many test examples.
    pub max_test: Option<usize>,
    /// Mean-pool images to this side before training.
    pub image_side: Option<usize>,
    /// How the twins are recorded.
    pub collect: CollectOptions,
    /// How the twins are fitted.
    pub fit: FitOptions,
    /// Use this daemon instead of an embedded one.
    pub server: Option<String>,
    /// TLS material and token for `server`.
    pub connect: hilt_client::ConnectOptions,
    /// No progress bars.
    pub quiet: bool,
}

/// Both runs and their summary table (also written to `summary.md`).
pub async fn demo(cfg: &DemoConfig) -> Result<Vec<Metrics>> {
    let mut dataset = data::load(cfg.task, &cfg.data_dir)?;
    if let Some(side) = cfg.image_side {
        dataset.pool_images(side)?;
    }
    dataset.truncate(cfg.max_train, cfg.max_test);
    match &cfg.server {
        Some(server) => run_both(cfg, dataset, server).await,
        None => embedded::run(cfg, dataset).await,
    }
}

/// The daemon `hilt demo` starts in-process when no server is given.
#[cfg(feature = "embedded-daemon")]
mod embedded {
    use std::net::SocketAddr;

    use super::{DEMO_CONFIG, DemoConfig, run_both};
    use crate::data::Dataset;
    use crate::error::Result;
    use crate::report::Metrics;

    pub(super) async fn run(cfg: &DemoConfig, dataset: Dataset) -> Result<Vec<Metrics>> {
        let config = hilt_daemon::Config::parse(DEMO_CONFIG, "demo.toml")?;
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let d = hilt_daemon::EmbeddedDaemon::start(config, addr).await?;
        let result = run_both(cfg, dataset, &d.url()).await;
        d.shutdown().await?;
        result
    }
}

/// Without the daemon linked in, the demo needs a daemon to talk to.
#[cfg(not(feature = "embedded-daemon"))]
mod embedded {
    use super::DemoConfig;
    use crate::data::Dataset;
    use crate::error::{Error, Result};
    use crate::report::Metrics;

    pub(super) async fn run(_: &DemoConfig, _: Dataset) -> Result<Vec<Metrics>> {
        Err(Error::invalid(
            "hilt demo without --server needs the embedded daemon: build hilt-train with \
             its `embedded-daemon` feature, or give --server (or HILT_SERVER) of a running hiltd",
        ))
    }
}

async fn run_both(cfg: &DemoConfig, dataset: data::Dataset, server: &str) -> Result<Vec<Metrics>> {
    let client = Client::connect_with(server, &cfg.connect).await?;
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
    let mut base = SessionConfig {
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
    let devices = session::describe_all(&client, &base.network().devices()).await?;
    let (_, summary) = session::twins_for(
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
        all.push(session::run(&client, &rc).await?);
    }
    let table = summary_table(&all);
    crate::fsio::write_bytes(&cfg.out.join("summary.md"), table.as_bytes())?;
    println!("{table}");
    Ok(all)
}

/// The runs side by side as a Markdown table, headed by the task, the
/// devices and the twins' error.
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
