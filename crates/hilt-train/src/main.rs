//! `hilt`: the trainer's command line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hilt_client::Client;
use hilt_train::data::{self, Task};
use hilt_train::demo::{self, DemoConfig};
use hilt_train::net::{Network, Physics};
use hilt_train::rig::Rig;
use hilt_train::run::{self, Architecture, RunConfig};
use hilt_train::train::{self, Method};
use hilt_train::twin::{self, CollectOptions, FitOptions, TwinData};
use hilt_train::{Error, Result};

const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// See Cargo.toml: glibc's allocator returned candle's large temporaries to
/// the kernel after every step (a twin fit spent as long in page faults as
/// in arithmetic).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "hilt",
    version,
    about = "Train physical neural networks on hiltd's rigs"
)]
struct Cli {
    /// hiltd to talk to [env: HILT_SERVER; default http://127.0.0.1:50051;
    /// `hilt demo` embeds its own daemon unless this is given].
    #[arg(long, global = true)]
    server: Option<String>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the daemon's devices.
    Devices,
    /// Everything a device publishes about itself (JSON).
    Describe { device: String },
    /// Record (x, θ, y) for fitting a twin: uniform random controls inside
    /// the device's published ranges.
    Collect(CollectArgs),
    /// Digital twins.
    #[command(subcommand)]
    Twin(TwinCmd),
    /// Train a network on the daemon's devices.
    Train(Box<TrainArgs>),
    /// Measure a trained network's accuracy on the device.
    Eval(EvalArgs),
    /// PAT vs in-silico on the simulated SHG rig, side by side.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct CollectArgs {
    #[arg(long)]
    device: String,
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    #[arg(long, default_value_t = 2)]
    repeats: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output `.npz`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum TwinCmd {
    /// Fit an MLP twin to a `hilt collect` recording.
    Fit(FitArgs),
}

#[derive(Debug, Args, Clone)]
struct FitOpts {
    /// Twin form [default: waveform for plate and circuit, mlp otherwise].
    #[arg(long, value_enum)]
    twin_kind: Option<hilt_train::twin::TwinKind>,
    /// Hidden layer widths of the twin MLP.
    #[arg(long, value_delimiter = ',', default_value = "256,256,256")]
    twin_hidden: Vec<usize>,
    /// [default: 120 for an MLP, 30 for a waveform twin]
    #[arg(long)]
    twin_epochs: Option<usize>,
    /// [default: 0.002 for an MLP, 0.01 for a waveform twin]
    #[arg(long)]
    twin_lr: Option<f64>,
}

impl FitOpts {
    fn options(&self, seed: u64, quiet: bool) -> FitOptions {
        FitOptions {
            kind: self.twin_kind,
            hidden: self.twin_hidden.clone(),
            epochs: self.twin_epochs,
            lr: self.twin_lr,
            seed,
            quiet,
            ..FitOptions::default()
        }
    }
}

#[derive(Debug, Args)]
struct FitArgs {
    /// The `.npz` from `hilt collect`.
    #[arg(long)]
    data: PathBuf,
    /// Output `.safetensors` [default: next to the data].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    fit: FitOpts,
}

#[derive(Debug, Args, Clone)]
struct DataArgs {
    /// Directory of the data set [env: HILT_DATA; default per task].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use at most this many training examples (seeded subsample).
    #[arg(long)]
    max_train: Option<usize>,
    /// Use at most this many test examples (seeded subsample).
    #[arg(long)]
    max_test: Option<usize>,
    /// Mean-pool images to this side (14: the 196 inputs of the plate and
    /// circuit networks) [default: the images' own].
    #[arg(long)]
    image_side: Option<usize>,
}

impl DataArgs {
    fn load(&self, task: Task) -> Result<data::Dataset> {
        let dir = self
            .data
            .clone()
            .or_else(|| std::env::var_os("HILT_DATA").map(PathBuf::from))
            .unwrap_or_else(|| task.default_dir());
        let mut d = data::load(task, &dir)?;
        if let Some(side) = self.image_side {
            d.pool_images(side)?;
        }
        d.truncate(self.max_train, self.max_test);
        Ok(d)
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Device of the (last) physical layer.
    #[arg(long)]
    device: String,
    /// Device of the other physical layers [default: --device].
    #[arg(long)]
    hidden_device: Option<String>,
    #[arg(long, value_enum)]
    task: Task,
    #[arg(long, value_enum)]
    method: Method,
    /// Network shape [default: physical for vowels, hybrid for images].
    #[arg(long, value_enum)]
    arch: Option<Architecture>,
    /// Number of physical layers [default: 4 for vowels, 3 for physical
    /// image networks, 1 for hybrid ones].
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// [default: 300 for vowels, 20 for physical image networks, 3 for
    /// hybrid ones]
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// Draw the initial θ from this share of the parameter range, around
    /// its middle [default: 1, all of it].
    #[arg(long)]
    theta_init: Option<f64>,
    #[arg(long)]
    lr_physical: Option<f64>,
    #[arg(long)]
    lr_digital: Option<f64>,
    /// Measurements averaged per sample on the device [default: 2 for
    /// vowels, 1 for images].
    #[arg(long)]
    repeats: Option<u32>,
    /// Use a fitted twin for a device: DEVICE=FILE (repeatable); devices
    /// without one are recorded and fitted first.
    #[arg(long = "twin", value_parser = parse_twin)]
    twins: Vec<(String, PathBuf)>,
    /// Samples recorded per device when a twin must be fitted.
    #[arg(long, default_value_t = 10_000)]
    twin_samples: usize,
    #[command(flatten)]
    fit: FitOpts,
    #[command(flatten)]
    data: DataArgs,
    /// Run directory (metrics.json, epochs.csv, curve.png, checkpoint).
    #[arg(long)]
    out: PathBuf,
}

fn parse_twin(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (d, f) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not DEVICE=FILE"))?;
    Ok((d.to_string(), PathBuf::from(f)))
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// `checkpoint.safetensors` from `hilt train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Measurements averaged per sample [default: as in training].
    #[arg(long)]
    repeats: Option<u32>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    task: Task,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    epochs: Option<usize>,
    /// Physical layers [default: 4 for vowels, 1 for images].
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long, default_value_t = 10_000)]
    twin_samples: usize,
    #[command(flatten)]
    fit: FitOpts,
    #[arg(long, default_value = "hilt-demo")]
    out: PathBuf,
}

fn server(cli: &Cli) -> String {
    cli.server
        .clone()
        .or_else(|| std::env::var("HILT_SERVER").ok())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string())
}

async fn main_inner(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match &cli.cmd {
        Cmd::Devices => {
            let client = Client::connect(server(&cli)).await?;
            println!(
                "{:<16} {:<8} {:<8} {:>5} {:>5} {:>5}  ranges",
                "id", "kind", "model", "in", "par", "out"
            );
            for d in client.list_devices().await? {
                println!(
                    "{:<16} {:<8} {:<8} {:>5} {:>5} {:>5}  x∈[{}, {}] θ∈[{}, {}]",
                    d.id,
                    d.kind,
                    d.model,
                    d.n_in,
                    d.n_par,
                    d.n_out,
                    d.input_range.min,
                    d.input_range.max,
                    d.param_range.min,
                    d.param_range.max
                );
            }
        }
        Cmd::Describe { device } => {
            let client = Client::connect(server(&cli)).await?;
            let (spec, status) = client.describe(device).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&spec).map_err(|e| Error::invalid(e.to_string()))?
            );
            println!("state: {status:?}");
        }
        Cmd::Collect(a) => {
            let client = Client::connect(server(&cli)).await?;
            let mut rig = Rig::open(&client, &a.device).await?;
            let opt = CollectOptions {
                samples: a.samples,
                repeats: a.repeats,
                seed: a.seed,
                quiet,
                ..CollectOptions::default()
            };
            let data = twin::collect(&mut rig, &opt).await?;
            let busy = rig.busy();
            rig.release().await?;
            data.save(&a.out)?;
            println!(
                "{}: {} samples × {} repeats from '{}' ({:.1} s of rig time)",
                a.out.display(),
                data.len(),
                a.repeats,
                a.device,
                busy.as_secs_f64()
            );
        }
        Cmd::Twin(TwinCmd::Fit(a)) => {
            let data = TwinData::load(&a.data)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| a.data.with_extension("safetensors"));
            let t = twin::fit(&data, &a.fit.options(a.seed, quiet))?;
            t.save(&out)?;
            println!(
                "{}: twin of '{}', held-out relative error {:.2} % (noise floor {:.2} %) on {} rows",
                out.display(),
                data.spec.id,
                100.0 * t.meta.heldout_rel_error,
                100.0 * t.meta.noise_floor_rel,
                t.meta.heldout_rows
            );
        }
        Cmd::Train(a) => {
            // Data first: a wrong path should not wait for a daemon.
            let dataset = a.data.load(a.task)?;
            let client = Client::connect(server(&cli)).await?;
            let (arch, layers, mut topt) = demo::task_defaults(a.task, a.arch);
            topt.method = a.method;
            topt.seed = a.seed;
            topt.quiet = quiet;
            topt.epochs = a.epochs.unwrap_or(topt.epochs);
            topt.batch = a.batch.unwrap_or(topt.batch);
            topt.lr_physical = a.lr_physical.unwrap_or(topt.lr_physical);
            topt.theta_init = a.theta_init.unwrap_or(topt.theta_init);
            if !(topt.theta_init > 0.0 && topt.theta_init <= 1.0) {
                return Err(hilt_train::error::Error::invalid(format!(
                    "--theta-init {}: must be in (0, 1]",
                    topt.theta_init
                )));
            }
            topt.lr_digital = a.lr_digital.unwrap_or(topt.lr_digital);
            topt.repeats = a.repeats.unwrap_or(topt.repeats);
            if !quiet {
                eprintln!("data: {}", dataset.split);
            }
            let cfg = RunConfig {
                task: a.task,
                dataset,
                architecture: arch,
                device: a.device.clone(),
                hidden_device: a.hidden_device.clone(),
                layers: a.layers.unwrap_or(layers),
                train: topt,
                twin_files: a.twins.iter().cloned().collect::<HashMap<_, _>>(),
                collect: CollectOptions {
                    samples: a.twin_samples,
                    seed: a.seed,
                    quiet,
                    ..CollectOptions::default()
                },
                fit: a.fit.options(a.seed, quiet),
                out: a.out.clone(),
                server: server(&cli),
            };
            let m = run::run(&client, &cfg).await?;
            println!("{}", demo::summary_table(std::slice::from_ref(&m)));
            println!("run directory: {}", a.out.display());
        }
        Cmd::Eval(a) => {
            let client = Client::connect(server(&cli)).await?;
            let (net, meta) = Network::load(&a.checkpoint)?;
            let dataset = a.data.load(meta.task)?;
            for id in net.spec.devices() {
                let (spec, _) = client.describe(&id).await?;
                if Some(&spec) != net.devices.get(&id) {
                    tracing::warn!(device = %id, "device description changed since training (calibration or settings)");
                }
            }
            let mut rigs = HashMap::new();
            for id in net.spec.devices() {
                rigs.insert(id.clone(), Rig::open(&client, &id).await?);
            }
            let r = a.repeats.unwrap_or(meta.repeats);
            let test = train::accuracy(&net, &dataset.test, Physics::Rigs(&mut rigs, r)).await?;
            let tr = train::accuracy(&net, &dataset.train, Physics::Rigs(&mut rigs, r)).await?;
            for rig in rigs.into_values() {
                rig.release().await?;
            }
            println!(
                "{} ({} after {} epochs of {}, {r} repeat(s)): test accuracy {:.2} %, train accuracy {:.2} % ({})",
                a.checkpoint.display(),
                meta.task.as_str(),
                meta.epoch,
                meta.method,
                100.0 * test,
                100.0 * tr,
                dataset.split
            );
        }
        Cmd::Demo(a) => {
            let cfg = DemoConfig {
                task: a.task,
                data_dir: a
                    .data
                    .data
                    .clone()
                    .or_else(|| std::env::var_os("HILT_DATA").map(PathBuf::from))
                    .unwrap_or_else(|| a.task.default_dir()),
                out: a.out.clone(),
                seed: a.seed,
                epochs: a.epochs,
                layers: a.layers,
                max_train: a.data.max_train,
                max_test: a.data.max_test,
                collect: CollectOptions {
                    samples: a.twin_samples,
                    seed: a.seed,
                    ..CollectOptions::default()
                },
                fit: a.fit.options(a.seed, quiet),
                server: cli.server.clone(),
                quiet,
            };
            demo::demo(&cfg).await?;
            println!("run directories: {}/{{pat,insilico}}", a.out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hilt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_inner(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hilt: error: {e}");
            ExitCode::FAILURE
        }
    }
}
