//! `hilt demo`: the paper's experiment on the simulated rigs, on an
//! embedded daemon unless `--server` (or `HILT_SERVER`) names one: the
//! all-physical SHG vowel network trained with PAT and in silico, and a
//! digital network of the same size as the baseline.

use std::path::PathBuf;

use hilt_train::Result;
use hilt_train::data::Task;
use hilt_train::demo::{self, DemoConfig};
use hilt_train::presets::Architecture;
use hilt_train::train::Method;
use hilt_train::twin::CollectOptions;

use super::shared::{DataArgs, FitArgs, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "vowels")]
    pub task: Task,
    /// The methods, in order, comma-separated [default: `hilt demo`
    /// pat,insilico,digital; `hilt compare` all five].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<Method>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Network shape [default: physical for vowels, hybrid for images].
    #[arg(long, value_enum)]
    pub arch: Option<Architecture>,
    /// Physical layers [default: per task and method].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Only devices of this rig (shg, plate, circuit).
    #[arg(long)]
    pub rig: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub twin_samples: usize,
    #[command(flatten)]
    pub fit: FitArgs,
    #[arg(long, default_value = "hilt-demo")]
    pub out: PathBuf,
}

impl Args {
    /// The comparison these arguments ask for, of `default_methods`
    /// unless --methods lists others.
    pub fn config(self, g: &Global, default_methods: &[Method]) -> Result<DemoConfig> {
        Ok(DemoConfig {
            task: self.task,
            data_dir: self.data.data.clone(),
            methods: if self.methods.is_empty() {
                default_methods.to_vec()
            } else {
                self.methods
            },
            out: self.out,
            seed: self.seed,
            epochs: self.epochs,
            arch: self.arch,
            layers: self.layers,
            rig: self.rig,
            max_train: self.data.max_train,
            max_test: self.data.max_test,
            image_side: self.data.image_side,
            collect: CollectOptions {
                samples: self.twin_samples,
                seed: self.seed,
                ..CollectOptions::default()
            },
            fit: self.fit.options(self.seed, g.quiet),
            server: g.given_server().map(str::to_string),
            connect: g.connect_options()?,
            quiet: g.quiet,
        })
    }
}

/// The demo's methods: the paper's comparison and the baseline.
pub const DEMO_METHODS: [Method; 3] = [Method::Pat, Method::Insilico, Method::Digital];

pub async fn run(g: &Global, a: Args) -> Result<()> {
    run_with(g, a, &DEMO_METHODS).await
}

/// Run the comparison of `default_methods` (or those --methods lists).
pub async fn run_with(g: &Global, a: Args, default_methods: &[Method]) -> Result<()> {
    let cfg = a.config(g, default_methods)?;
    demo::demo(&cfg).await?;
    println!(
        "run directories: {}/{{{}}}; summary.md and comparison.png beside them",
        cfg.out.display(),
        cfg.methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(())
}
