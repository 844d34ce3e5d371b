//! `hilt demo`: PAT and in-silico training side by side on the demo rigs,
//! on an embedded daemon unless `--server` (or `HILT_SERVER`) names one.

use std::path::PathBuf;

use hilt_train::Result;
use hilt_train::data::Task;
use hilt_train::demo::{self, DemoConfig};
use hilt_train::twin::CollectOptions;

use super::shared::{DataArgs, FitArgs, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
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
    fit: FitArgs,
    #[arg(long, default_value = "hilt-demo")]
    out: PathBuf,
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    let cfg = DemoConfig {
        task: a.task,
        data_dir: a.data.dir(a.task),
        out: a.out.clone(),
        seed: a.seed,
        epochs: a.epochs,
        layers: a.layers,
        max_train: a.data.max_train,
        max_test: a.data.max_test,
        image_side: a.data.image_side,
        collect: CollectOptions {
            samples: a.twin_samples,
            seed: a.seed,
            ..CollectOptions::default()
        },
        fit: a.fit.options(a.seed, g.quiet),
        server: g.given_server().map(str::to_string),
        connect: g.connect_options()?,
        quiet: g.quiet,
    };
    demo::demo(&cfg).await?;
    println!("run directories: {}/{{pat,insilico}}", a.out.display());
    Ok(())
}
