//! `hilt train`: one training run on the daemon's devices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hilt_train::data::Task;
use hilt_train::fleet::{self, Fleet};
use hilt_train::pick;
use hilt_train::presets::{self, Architecture};
use hilt_train::session::{self, SessionConfig};
use hilt_train::train::{LocalOptions, Method, SentinelOptions, SpsaOptions, TrainOptions};
use hilt_train::twin::CollectOptions;
use hilt_train::{Error, Result};

use super::shared::{DataArgs, FitArgs, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Carry on the interrupted run in DIR from its last finished epoch,
    /// with the settings it was started with (DIR/run.json); --device and
    /// --hidden-device may name its devices at new addresses (ID@URL).
    // `Run`'s own flags are listed one by one: clap leaves the group of a
    // struct with required flags empty. The data set's flags are checked
    // by hand: HILT_DATA in the environment would count as given.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "rig", "task", "method", "arch", "layers", "seed", "epochs", "batch", "theta_init",
        "lr_physical", "lr_digital", "repeats", "twins", "twin_samples", "out",
        "SentinelArgs", "MethodArgs", "FitArgs",
    ])]
    resume: Option<PathBuf>,
    /// Device of the (last) physical layer: ID on --server, or ID@URL on
    /// the hiltd at URL [default: the first --server serves that fits the
    /// network].
    #[arg(long)]
    device: Option<String>,
    /// Device of the other physical layers, ID or ID@URL [default:
    /// --device, or with --device unset, chosen with it].
    #[arg(long)]
    hidden_device: Option<String>,
    #[command(flatten)]
    run: Run,
}

/// What a run is: everything but where its devices are, kept in the run
/// directory's `run.json` so `--resume` trains on as the run began.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Choose only among devices of this rig (shg, plate, circuit) when
    /// --device is not given.
    #[arg(long, conflicts_with = "device")]
    rig: Option<String>,
    #[arg(long, value_enum, required_unless_present = "resume")]
    task: Option<Task>,
    #[arg(long, value_enum, required_unless_present = "resume")]
    method: Option<Method>,
    /// Network shape [default: physical for vowels, hybrid for images].
    #[arg(long, value_enum)]
    arch: Option<Architecture>,
    /// Number of physical layers (PhyLL: blocks) [default: 4 for vowels,
    /// 3 for physical image networks, 1 for hybrid ones; PhyLL 2, SPSA on
    /// the vowels 2].
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// [default: 300 for vowels, 20 for physical image networks, 3 for
    /// hybrid ones; PhyLL 200 for vowels, 20 for images; SPSA on the
    /// vowels 1000]
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
    /// vowels, 1 for images; 1 for PhyLL and SPSA].
    #[arg(long)]
    repeats: Option<u32>,
    /// Use a fitted twin for a device: DEVICE=FILE (repeatable); devices
    /// without one are recorded and fitted first.
    #[arg(long = "twin", value_parser = parse_twin)]
    twins: Vec<(String, PathBuf)>,
    /// Samples recorded per device when a twin must be fitted (and when a
    /// drift sentinel refits one).
    #[arg(long, default_value_t = 10_000)]
    twin_samples: usize,
    #[command(flatten)]
    sentinel: SentinelArgs,
    #[command(flatten)]
    method_args: MethodArgs,
    #[command(flatten)]
    fit: FitArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Run directory (metrics.json, epochs.csv, curve.png, checkpoint,
    /// run.json).
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
}

/// `run.json`: the run and the devices it was given or chose.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    device: String,
    hidden_device: Option<String>,
    run: Run,
}

const RUN_FILE: &str = "run.json";

impl Saved {
    fn read(dir: &Path) -> Result<Saved> {
        let path = dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::data(
                &path,
                format!("{e} (expected the run.json `hilt train` writes)"),
            )
        })
    }

    fn write(&self, dir: &Path) -> Result<()> {
        hilt_train::fsio::create_dir(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        hilt_train::fsio::write_bytes(&dir.join(RUN_FILE), &json)
    }
}

/// `given` for the device the run in `dir` trained as `saved`: the same
/// ID, perhaps at another address.
fn moved(flag: &str, given: Option<String>, saved: String, dir: &Path) -> Result<String> {
    match given {
        Some(g) if fleet::split(&g).0 != fleet::split(&saved).0 => Err(Error::invalid(format!(
            "{flag} {g}: the run in {} trained on '{saved}'; --resume can move a device to a new address (ID@URL), not swap it",
            dir.display()
        ))),
        Some(g) => Ok(g),
        None => Ok(saved),
    }
}

/// Drift sentinels (PAT, in-silico).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelArgs {
    /// Re-measure a fixed set of probe rows on every device after every N
    /// training batches and compare its twin's error on them with the
    /// twin's held-out error [default: off].
    #[arg(long, value_name = "N")]
    pub sentinel_every: Option<usize>,
    /// Probe rows per device.
    #[arg(long, default_value_t = 64, requires = "sentinel_every")]
    pub sentinel_rows: usize,
    /// A sentinel fires past this many times the twin's held-out error.
    #[arg(long, default_value_t = 3.0, requires = "sentinel_every")]
    pub drift_factor: f64,
    /// When a sentinel fires, record the device again (--twin-samples) and
    /// refit its twin in place, saved under OUT/twins/.
    #[arg(long, requires = "sentinel_every")]
    pub refit_on_drift: bool,
}

impl SentinelArgs {
    /// The sentinels asked for, checked.
    pub fn options(&self) -> Result<Option<SentinelOptions>> {
        self.sentinel_every
            .map(|n| {
                SentinelOptions::new(
                    n,
                    self.sentinel_rows,
                    self.drift_factor,
                    self.refit_on_drift,
                )
            })
            .transpose()
    }
}

/// The settings of the methods without a twin.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodArgs {
    /// PhyLL: sharpness α of softplus(−α (G⁺ − G⁻)).
    #[arg(long, default_value_t = LocalOptions::default().alpha)]
    pub phyll_alpha: f64,
    /// PhyLL: Adam steps on a block's digital layer per physical pass.
    #[arg(long, default_value_t = LocalOptions::default().inner_steps)]
    pub phyll_inner_steps: usize,
    /// SPSA: perturbation size at the first epoch, in parameter units.
    #[arg(long, default_value_t = SpsaOptions::default().step)]
    pub spsa_step: f64,
    /// SPSA: the step's decay per epoch.
    #[arg(long, default_value_t = SpsaOptions::default().decay)]
    pub spsa_decay: f64,
    /// SPSA: antithetic pairs per update.
    #[arg(long, default_value_t = SpsaOptions::default().pairs)]
    pub spsa_pairs: usize,
}

impl MethodArgs {
    /// Into `opt`, checked.
    pub fn apply(&self, opt: &mut TrainOptions) -> Result<()> {
        if !(self.phyll_alpha > 0.0 && self.phyll_alpha.is_finite()) {
            return Err(Error::invalid(format!(
                "--phyll-alpha {}: must be positive",
                self.phyll_alpha
            )));
        }
        if !(self.spsa_decay > 0.0 && self.spsa_decay <= 1.0) {
            return Err(Error::invalid(format!(
                "--spsa-decay {}: must be in (0, 1]",
                self.spsa_decay
            )));
        }
        if !(self.spsa_step > 0.0 && self.spsa_step.is_finite()) || self.spsa_pairs == 0 {
            return Err(Error::invalid(format!(
                "--spsa-step {} and --spsa-pairs {}: must be positive",
                self.spsa_step, self.spsa_pairs
            )));
        }
        opt.local = LocalOptions {
            alpha: self.phyll_alpha,
            inner_steps: self.phyll_inner_steps.max(1),
        };
        opt.spsa = SpsaOptions {
            step: self.spsa_step,
            decay: self.spsa_decay,
            pairs: self.spsa_pairs,
        };
        Ok(())
    }
}

fn parse_twin(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (d, f) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not DEVICE=FILE"))?;
    Ok((d.to_string(), PathBuf::from(f)))
}

impl Run {
    /// The task and method, which clap requires unless resuming (and a
    /// run.json always has).
    fn what(&self) -> Result<(Task, Method, &Path)> {
        match (self.task, self.method, &self.out) {
            (Some(t), Some(m), Some(o)) => Ok((t, m, o)),
            _ => Err(Error::invalid("--task, --method and --out are needed")),
        }
    }

    /// The architecture, depth and schedule asked for: each flag given
    /// overrides the task's default, and the result is checked here, so a
    /// bad value is refused before any data is read or device leased.
    pub fn plan(&self, quiet: bool) -> Result<(Architecture, usize, TrainOptions)> {
        let (task, method, _) = self.what()?;
        let (arch, layers, d) = presets::method_defaults(task, self.arch, method);
        let mut opt = TrainOptions {
            method,
            seed: self.seed,
            quiet,
            epochs: self.epochs.unwrap_or(d.epochs),
            batch: self.batch.unwrap_or(d.batch),
            lr_physical: self.lr_physical.unwrap_or(d.lr_physical),
            lr_digital: self.lr_digital.unwrap_or(d.lr_digital),
            theta_init: self.theta_init.unwrap_or(d.theta_init),
            repeats: self.repeats.unwrap_or(d.repeats),
            ..d
        };
        if !(opt.theta_init > 0.0 && opt.theta_init <= 1.0) {
            return Err(Error::invalid(format!(
                "--theta-init {}: must be in (0, 1]",
                opt.theta_init
            )));
        }
        self.method_args.apply(&mut opt)?;
        Ok((arch, self.layers.unwrap_or(layers), opt))
    }
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    let quiet = g.quiet;
    let (run, device, hidden_device) = match &a.resume {
        Some(dir) => {
            let d = &a.run.data;
            if d.max_train.is_some() || d.max_test.is_some() || d.image_side.is_some() {
                return Err(Error::invalid(
                    "--resume trains on with the run's own data set (run.json); --max-train, --max-test and --image-side cannot change it",
                ));
            }
            let saved = Saved::read(dir)?;
            let device = moved("--device", a.device, saved.device, dir)?;
            let hidden = match (a.hidden_device, saved.hidden_device) {
                (given, Some(s)) => Some(moved("--hidden-device", given, s, dir)?),
                (Some(g), None) => {
                    return Err(Error::invalid(format!(
                        "--hidden-device {g}: the run in {} has every layer on one device",
                        dir.display()
                    )));
                }
                (None, None) => None,
            };
            let run = Run {
                out: Some(dir.clone()),
                ..saved.run
            };
            (run, Some(device), hidden)
        }
        None if a.hidden_device.is_some() && a.device.is_none() => {
            return Err(Error::invalid("--hidden-device needs --device"));
        }
        None => (a.run, a.device, a.hidden_device),
    };
    let (task, _, out) = run.what()?;
    let out = out.to_path_buf();
    let (architecture, layers, train) = run.plan(quiet)?;
    let sentinel = run.sentinel.options()?;
    if sentinel.is_some() && !train.method.needs_twin() {
        return Err(Error::invalid(format!(
            "--sentinel-every: drift sentinels watch twins, and --method {} trains without one",
            train.method.as_str()
        )));
    }
    // What can be checked here is, before any daemon is contacted: a
    // finished run, a wrong path.
    if a.resume.is_some() {
        session::check_resumable(&out, train.epochs)?;
    }
    let dataset = run.data.load(task)?;
    let client = g.connect().await?;
    if !quiet {
        eprintln!("data: {}", dataset.split);
    }
    let mut cfg = SessionConfig {
        task,
        dataset,
        architecture,
        device: device.unwrap_or_default(),
        hidden_device,
        layers,
        train,
        twin_files: run.twins.iter().cloned().collect::<HashMap<_, _>>(),
        collect: CollectOptions {
            samples: run.twin_samples,
            seed: run.seed,
            quiet,
            ..CollectOptions::default()
        },
        fit: run.fit.options(run.seed, quiet),
        out: out.clone(),
        server: g.server().to_string(),
        sentinel,
        resume: a.resume.is_some(),
    };
    // Devices named on other daemons join the choice under their keys.
    let mut named: Vec<&str> = [Some(cfg.device.as_str()), cfg.hidden_device.as_deref()]
        .into_iter()
        .flatten()
        .filter(|k| fleet::split(k).1.is_some())
        .collect();
    // At most two: the same device for every layer is named once.
    named.dedup();
    let fleet = Fleet::connect(client.clone(), g.server(), &named, &g.connect_options()?).await?;
    let mut served = client.list_devices().await?;
    for key in &named {
        served.push(fleet.describe(key).await?);
    }
    pick::pick(&mut cfg, &served, run.rig.as_deref())?;
    if !cfg.resume {
        let saved = Saved {
            device: cfg.device.clone(),
            hidden_device: cfg.hidden_device.clone(),
            run,
        };
        saved.write(&out)?;
    }
    if !quiet {
        eprintln!(
            "devices: {}{}",
            cfg.device,
            cfg.hidden_device
                .as_ref()
                .map(|h| format!(" (hidden layers: {h})"))
                .unwrap_or_default()
        );
    }
    let run = session::run(&fleet, &cfg).await?;
    println!(
        "{}",
        hilt_train::demo::summary_table(std::slice::from_ref(&run.metrics))
    );
    println!("run directory: {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        train: super::Args,
    }

    fn plan(
        extra: &[&str],
    ) -> hilt_train::Result<(super::Architecture, usize, super::TrainOptions)> {
        let mut args = vec!["t", "--task", "vowels", "--method", "pat", "--out", "o"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args)
            .map_err(|e| hilt_train::Error::invalid(e.to_string()))?
            .train
            .run
            .plan(true)
    }

    fn parse(args: &[&str]) -> Result<super::Args, String> {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map(|c| c.train)
            .map_err(|e| e.to_string())
    }

    /// `--resume` takes the run as run.json has it: only the devices'
    /// addresses may be given with it, and a fresh run needs its task,
    /// method and directory.
    #[test]
    fn resume_refuses_flags_that_would_change_the_run() {
        assert!(parse(&["--resume", "d"]).is_ok());
        assert!(parse(&["--resume", "d", "--device", "x@http://h:1"]).is_ok());
        for extra in [
            ["--epochs", "5"],
            ["--method", "pat"],
            ["--out", "o"],
            ["--twin-epochs", "3"],
            ["--sentinel-every", "4"],
            ["--spsa-pairs", "2"],
        ] {
            let mut args = vec!["--resume", "d"];
            args.extend_from_slice(&extra);
            let e = parse(&args).unwrap_err();
            assert!(e.contains("cannot be used with"), "{extra:?}: {e}");
        }
        let e = parse(&["--task", "vowels", "--out", "o"]).unwrap_err();
        assert!(e.contains("--method"), "{e}");
    }

    #[test]
    fn flags_override_the_task_defaults_and_theta_init_is_checked() {
        let Ok((_, layers, opt)) = plan(&["--epochs", "7", "--layers", "2"]) else {
            panic!("plan refused valid flags");
        };
        assert_eq!((layers, opt.epochs, opt.batch, opt.repeats), (2, 7, 32, 2));
        for bad in ["0", "1.5", "NaN"] {
            let e = plan(&["--theta-init", bad])
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains("--theta-init") && e.contains("(0, 1]"), "{e}");
        }
    }
}
