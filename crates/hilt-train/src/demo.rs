//! `hilt demo` and `hilt compare`: several methods trained on the same
//! task, split, seed and devices, side by side. PAT and in-silico share
//! one set of twins, so the comparison is of methods only. The demo's
//! default is the paper's experiment: the all-physical SHG vowel network
//! with PAT and in-silico, and the digital baseline. The daemon is
//! embedded (feature `embedded-daemon`) unless a server is given.

use std::collections::HashMap;
use std::path::PathBuf;

use hilt_client::Client;

use crate::data::{self, Task};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::pick;
use crate::presets::{Architecture, method_defaults, task_defaults};
use crate::report::{self, Metrics, SampleCurve};
use crate::session::{self, Run, SessionConfig};
use crate::train::{EpochRow, Method, TrainOptions};
use crate::twin::{CollectOptions, FitOptions};

/// What `hilt demo` / `hilt compare` was asked for.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The task every method trains on.
    pub task: Task,
    /// Where its data lives (`None`: the task's default).
    pub data_dir: Option<PathBuf>,
    /// The methods, in the order they run.
    pub methods: Vec<Method>,
    /// The directory: `twins/`, one run directory per method,
    /// `summary.md` and `comparison.png`.
    pub out: PathBuf,
    /// Seeds the twins' recording and fit and every training.
    pub seed: u64,
    /// `None`: the task's default.
    pub epochs: Option<usize>,
    /// Network shape; `None`: the task's default.
    pub arch: Option<Architecture>,
    /// Physical layers; `None`: the method's default for the task.
    pub layers: Option<usize>,
    /// Only devices of this kind (`shg`, `plate`, `circuit`).
    pub rig: Option<String>,
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

/// Every run and the summary (also written to `summary.md`, with the plot
/// of test accuracy against rig samples in `comparison.png`).
pub async fn demo(cfg: &DemoConfig) -> Result<Vec<Run>> {
    let mut dataset = data::load_from(cfg.task, cfg.data_dir.as_deref())?;
    if let Some(side) = cfg.image_side {
        dataset.pool_images(side)?;
    }
    dataset.truncate(cfg.max_train, cfg.max_test);
    match &cfg.server {
        Some(server) => compare(cfg, dataset, server).await,
        None => embedded::run(cfg, dataset).await,
    }
}

/// The daemon `hilt demo` starts in-process when no server is given.
#[cfg(feature = "embedded-daemon")]
mod embedded {
    use std::net::SocketAddr;

    use super::{DemoConfig, compare};
    use crate::data::Dataset;
    use crate::error::Result;
    use crate::session::Run;

    pub(super) async fn run(cfg: &DemoConfig, dataset: Dataset) -> Result<Vec<Run>> {
        // hiltd's own default: the rigs `hiltd` alone serves.
        let config = hilt_daemon::Config::embedded_default()?;
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let d = hilt_daemon::EmbeddedDaemon::start(config, addr).await?;
        let result = compare(cfg, dataset, &d.url()).await;
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
    use crate::session::Run;

    pub(super) async fn run(_: &DemoConfig, _: Dataset) -> Result<Vec<Run>> {
        Err(Error::invalid(
            "hilt demo without --server needs the embedded daemon: build hilt-train with \
             its `embedded-daemon` feature, or give --server (or HILT_SERVER) of a running hiltd",
        ))
    }
}

async fn compare(cfg: &DemoConfig, dataset: data::Dataset, server: &str) -> Result<Vec<Run>> {
    let client = Client::connect_with(server, &cfg.connect).await?;
    let fleet = Fleet::single(client.clone(), server);
    let (architecture, default_layers, train) = task_defaults(cfg.task, cfg.arch);
    if !cfg.quiet {
        eprintln!("data: {}", dataset.split);
    }
    let base = SessionConfig {
        task: cfg.task,
        dataset,
        architecture,
        device: String::new(),
        hidden_device: None,
        layers: cfg.layers.unwrap_or(default_layers),
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
        sentinel: None,
        resume: false,
    };
    let served = client.list_devices().await?;
    // Each method on the devices that fit it (PhyLL needs room for the
    // label slots), chosen the same way `hilt train` chooses.
    let mut runs_cfg = Vec::new();
    for &method in &cfg.methods {
        let mut rc = base.clone();
        // Each method with its own schedule and depth (SPSA's vowel
        // network is shallower, PhyLL has its own rates), unless the
        // flags fix them for all.
        let (_, layers, train) = method_defaults(cfg.task, cfg.arch, method);
        rc.layers = cfg.layers.unwrap_or(layers);
        rc.train = TrainOptions {
            method,
            seed: cfg.seed,
            quiet: cfg.quiet,
            epochs: cfg.epochs.unwrap_or(train.epochs),
            ..train
        };
        rc.out = cfg.out.join(method.as_str());
        pick::pick(&mut rc, &served, cfg.rig.as_deref())?;
        runs_cfg.push(rc);
    }
    // One set of twins for every method that uses them.
    let twinned: Vec<&SessionConfig> = runs_cfg
        .iter()
        .filter(|c| c.train.method.needs_twin())
        .collect();
    if let Some(first) = twinned.first() {
        let devices = session::describe_all(&fleet, &first.physical_network().devices()).await?;
        let (_, summary) = session::twins_for(
            &fleet,
            &devices,
            &HashMap::new(),
            &cfg.out.join("twins"),
            &base.collect,
            &base.fit,
        )
        .await?;
        let files: HashMap<String, PathBuf> = summary
            .iter()
            .map(|(id, t)| (id.clone(), PathBuf::from(&t.file)))
            .collect();
        for rc in runs_cfg.iter_mut().filter(|c| c.train.method.needs_twin()) {
            rc.twin_files = files.clone();
        }
    }
    let mut runs = Vec::new();
    for rc in &runs_cfg {
        if !cfg.quiet {
            eprintln!("{}: {}", rc.train.method.as_str(), rc.out.display());
        }
        runs.push(session::run(&fleet, rc).await?);
    }
    let curves: Vec<SampleCurve> = runs
        .iter()
        .map(|r| SampleCurve {
            label: r.metrics.method.clone(),
            points: r
                .epochs
                .iter()
                .map(|e| (e.rig_samples, e.test_accuracy))
                .collect(),
        })
        .collect();
    let title = format!(
        "{} on {}",
        cfg.task.as_str(),
        runs.first().map_or("", |r| r.metrics.device.as_str())
    );
    report::plot_against_samples(&cfg.out.join("comparison.png"), &title, &curves)?;
    let table = summary(&runs);
    crate::fsio::write_bytes(&cfg.out.join("summary.md"), table.as_bytes())?;
    println!("{table}");
    Ok(runs)
}

/// The first epoch at which `run`'s test accuracy reached `target`: the
/// rig samples (twin recording included) it had spent by then lie in it.
pub fn first_reaching(run: &Run, target: f64) -> Option<&EpochRow> {
    run.epochs.iter().find(|e| e.test_accuracy >= target)
}

/// The runs side by side as Markdown: the results table, then what each
/// method spent to first reach 90 % of PAT's final test accuracy.
pub fn summary(runs: &[Run]) -> String {
    let metrics: Vec<Metrics> = runs.iter().map(|r| r.metrics.clone()).collect();
    let mut s = summary_table(&metrics);
    let pat = runs
        .iter()
        .find(|r| r.metrics.method == Method::Pat.as_str());
    if let Some(pat) = pat {
        let target = 0.9 * pat.metrics.test_accuracy;
        s += &format!(
            "\nRig samples spent learning (twin recording included) when the test accuracy first reached 90 % of PAT's final {:.1} % ({:.1} %):\n\n",
            100.0 * pat.metrics.test_accuracy,
            100.0 * target
        );
        s += "| method | rig samples | at epoch |\n|---|---|---|\n";
        for r in runs {
            s += &match first_reaching(r, target) {
                Some(e) => format!(
                    "| {} | {} | {} |\n",
                    r.metrics.method, e.rig_samples, e.epoch
                ),
                None => format!("| {} | not reached | |\n", r.metrics.method),
            };
        }
    }
    s
}

/// The runs side by side as a Markdown table, headed by the task and the
/// split.
pub fn summary_table(runs: &[Metrics]) -> String {
    let mut s = String::new();
    if let Some(m) = runs.first() {
        s += &format!("{} on {}\n{}\n\n", m.task, m.device, m.split);
    }
    s += "| method | devices | test acc (device) | train acc (device) | test acc (twin) | rig samples (train) | twin samples | rig samples (eval) | epochs | wall s |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|\n";
    for m in runs {
        let twin = m
            .twin_test_accuracy
            .map_or("–".to_string(), |t| format!("{:.1} %", 100.0 * t));
        s += &format!(
            "| {} | {} | {:.1} % | {:.1} % | {} | {} | {} | {} | {} | {:.1} |\n",
            m.method,
            m.device,
            100.0 * m.test_accuracy,
            100.0 * m.train_accuracy,
            twin,
            m.device_samples_train,
            m.twin_samples,
            m.device_samples_eval,
            m.epochs,
            m.wall_seconds,
        );
    }
    s
}
