//! `hilt twin fit`: fit a twin to a `hilt collect` recording;
//! `hilt twin predict`: what a fitted twin says for recorded inputs, so a
//! twin can be checked against the rig (or another implementation of it)
//! outside a training run.

use std::fs::File;
use std::path::PathBuf;

use hilt_train::twin::{self, Twin, TwinData};
use hilt_train::{Error, Result, array, fsio};
use ndarray_npy::NpzWriter;

use super::shared::{FitArgs, Global};

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Fit a twin to a `hilt collect` recording (a waveform twin for
    /// devices driven by a held waveform, an MLP otherwise).
    Fit(Args),
    /// Predict the outputs for the x and θ of a `hilt collect` recording;
    /// writes an `.npz` with `x`, `theta` (as read) and `y_pred` `[N, n_out]`,
    /// all float32.
    Predict(PredictArgs),
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The `.safetensors` twin from `hilt twin fit`.
    #[arg(long)]
    twin: PathBuf,
    /// An `.npz` with the inputs (the layout of `hilt collect`).
    #[arg(long)]
    data: PathBuf,
    /// Output `.npz`.
    #[arg(long)]
    out: PathBuf,
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
    match cmd {
        Cmd::Fit(a) => fit(g, a),
        Cmd::Predict(a) => predict(a),
    }
}

fn predict(a: PredictArgs) -> Result<()> {
    let t = Twin::load(&a.twin)?;
    let data = TwinData::load(&a.data)?;
    if data.spec.n_in != t.spec().n_in || data.spec.n_par != t.spec().n_par {
        return Err(Error::data(
            &a.data,
            format!(
                "x has {} and theta {} columns; the twin of '{}' takes {} and {}",
                data.spec.n_in,
                data.spec.n_par,
                t.spec().id,
                t.spec().n_in,
                t.spec().n_par
            ),
        ));
    }
    let y = array::array2(&t.forward(&array::tensor2(&data.x)?, &array::tensor2(&data.theta)?)?)?;
    fsio::write_atomic(&a.out, |tmp| {
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let mut npz = NpzWriter::new(file);
        let npz_err = |e: ndarray_npy::WriteNpzError| Error::data(tmp, e.to_string());
        npz.add_array("x", &data.x).map_err(npz_err)?;
        npz.add_array("theta", &data.theta).map_err(npz_err)?;
        npz.add_array("y_pred", &y).map_err(npz_err)?;
        npz.finish().map_err(npz_err)?;
        Ok(())
    })?;
    println!(
        "{}: twin of '{}' predicted {} rows",
        a.out.display(),
        t.spec().id,
        y.nrows()
    );
    Ok(())
}

fn fit(g: &Global, a: Args) -> Result<()> {
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
