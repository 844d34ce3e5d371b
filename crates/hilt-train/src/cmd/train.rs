//! `hilt train`: one training run on the daemon's devices.

use std::collections::HashMap;
use std::path::PathBuf;

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
    /// Device of the (last) physical layer: ID on --server, or ID@URL on
    /// the hiltd at URL [default: the first --server serves that fits the
    /// network].
    #[arg(long)]
    device: Option<String>,
    /// Device of the other physical layers, ID or ID@URL [default:
    /// --device, or with --device unset, chosen with it].
    #[arg(long, requires = "device")]
    hidden_device: Option<String>,
    /// Choose only among devices of this rig (shg, plate, circuit) when
    /// --device is not given.
    #[arg(long, conflicts_with = "device")]
    rig: Option<String>,
    #[arg(long, value_enum)]
    task: Task,
    #[arg(long, value_enum)]
    method: Method,
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
    /// Run directory (metrics.json, epochs.csv, curve.png, checkpoint).
    #[arg(long)]
    out: PathBuf,
}

/// Drift sentinels (PAT, in-silico).
#[derive(Debug, Clone, clap::Args)]
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
#[derive(Debug, Clone, clap::Args)]
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

impl Args {
    /// The architecture, depth and schedule asked for: each flag given
    /// overrides the task's default, and the result is checked here, so a
    /// bad value is refused before any data is read or device leased.
    pub fn plan(&self, quiet: bool) -> Result<(Architecture, usize, TrainOptions)> {
        let (arch, layers, d) = presets::method_defaults(self.task, self.arch, self.method);
        let mut opt = TrainOptions {
            method: self.method,
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
    let (architecture, layers, train) = a.plan(quiet)?;
    let sentinel = a.sentinel.options()?;
    if sentinel.is_some() && !train.method.needs_twin() {
        return Err(Error::invalid(format!(
            "--sentinel-every: drift sentinels watch twins, and --method {} trains without one",
            train.method.as_str()
        )));
    }
    // Data first: a wrong path should not wait for a daemon.
    let dataset = a.data.load(a.task)?;
    let client = g.connect().await?;
    if !quiet {
        eprintln!("data: {}", dataset.split);
    }
    let mut cfg = SessionConfig {
        task: a.task,
        dataset,
        architecture,
        device: a.device.unwrap_or_default(),
        hidden_device: a.hidden_device,
        layers,
        train,
        twin_files: a.twins.into_iter().collect::<HashMap<_, _>>(),
        collect: CollectOptions {
            samples: a.twin_samples,
            seed: a.seed,
            quiet,
            ..CollectOptions::default()
        },
        fit: a.fit.options(a.seed, quiet),
        out: a.out.clone(),
        server: g.server().to_string(),
        sentinel,
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
    pick::pick(&mut cfg, &served, a.rig.as_deref())?;
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
    println!("run directory: {}", a.out.display());
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
            .plan(true)
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
