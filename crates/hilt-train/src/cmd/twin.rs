//! `hilt twin fit`: fit a twin to a `hilt collect` recording.

use std::path::PathBuf;

use hilt_train::Result;
use hilt_train::twin::{self, TwinData};

use super::shared::{FitArgs, Global};

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Fit a twin to a `hilt collect` recording (a waveform twin for
    /// devices driven by a held waveform, an MLP otherwise).
    Fit(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.npz` from `hilt collect`.
    #[arg(long)]
    data: PathBuf,
    /// Output `.safetensors` [default: next to the data].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    fit: FitArgs,
}

pub async fn run(g: &Global, cmd: Cmd) -> Result<()> {
    let Cmd::Fit(a) = cmd;
    let data = TwinData::load(&a.data)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.data.with_extension("safetensors"));
    let t = twin::fit(&data, &a.fit.options(a.seed, g.quiet))?;
    t.save(&out)?;
    println!(
        "{}: twin of '{}', held-out relative error {:.2} % (noise floor {:.2} %) on {} rows",
        out.display(),
        data.spec.id,
        100.0 * t.meta.heldout_rel_error,
        100.0 * t.meta.noise_floor_rel,
        t.meta.heldout_rows
    );
    Ok(())
}
