//! `hilt twin fit`: a twin fitted to recorded measurements, in five steps:
//! split (the held-out rows are the *last* ones recorded, so the error also
//! covers drift during the recording rather than interpolating between
//! neighbours in time), normalise, build (the body the device calls for),
//! train (Adam, MSE on normalised outputs, the shared cosine schedule) and
//! score (held-out error against the noise floor of the repeats).

use candle_core::{Device, Tensor, Var};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Slice};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::body::{Trainable, TwinBody, TwinKind};
use super::data::TwinData;
use super::encode::Encoder;
use super::model::{Twin, TwinMeta};
use super::norm::Norm;
use super::shape::{MEMORY_KEY, Shape};
use crate::array::{array2, tensor2};
use crate::error::{Error, Result};
use crate::optim::{Cosine, adam};

/// How a twin is fitted.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `None`: a waveform twin for devices driven by a held waveform, an
    /// MLP otherwise.
    pub kind: Option<TwinKind>,
    /// Hidden widths of an MLP twin.
    pub hidden: Vec<usize>,
    /// `None`: the kind's default (MLP 120 epochs at 2e-3, waveform 30
    /// epochs at 1e-2: a thousand parameters settle faster).
    pub epochs: Option<usize>,
    /// Rows per step.
    pub batch: usize,
    /// Initial learning rate; `None`: the kind's default.
    pub lr: Option<f64>,
    /// Share of the rows held out for scoring.
    pub heldout_share: f64,
    /// Seeds the body's initialisation and the shuffling.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            kind: None,
            hidden: vec![256, 256, 256],
            epochs: None,
            batch: 128,
            lr: None,
            heldout_share: 0.1,
            seed: 0,
            quiet: false,
        }
    }
}

/// The schedule's floor, as a share of the initial rate.
const LR_FLOOR: f64 = 0.01;

/// The recording's features and mean outputs, split into the rows fitted
/// on and the rows held out.
struct Rows {
    f_tr: Array2<f32>,
    f_ho: Array2<f32>,
    y_tr: Array2<f32>,
    y_ho: Array2<f32>,
}

impl Rows {
    fn n_train(&self) -> usize {
        self.f_tr.nrows()
    }
}

fn split(data: &TwinData, opt: &FitOptions) -> Result<Rows> {
    let n = data.len();
    let n_hold = ((n as f64 * opt.heldout_share).round() as usize).max(1);
    if n < 10 || n_hold >= n {
        return Err(Error::invalid(format!(
            "{n} recorded rows are too few to fit and hold out {:.0} % (collect at least 10)",
            opt.heldout_share * 100.0
        )));
    }
    if opt.epochs == Some(0) || opt.batch == 0 || opt.hidden.contains(&0) {
        return Err(Error::invalid(
            "--epochs, --batch and every hidden width must be at least 1",
        ));
    }
    let enc = Encoder::for_spec(&data.spec)?;
    let feats = enc.encode_rows(&data.x, &data.theta);
    let y = data.y_mean();
    let n_tr = n - n_hold;
    let head = |a: &Array2<f32>| a.slice_axis(Axis(0), Slice::from(..n_tr)).to_owned();
    let tail = |a: &Array2<f32>| a.slice_axis(Axis(0), Slice::from(n_tr..)).to_owned();
    Ok(Rows {
        f_tr: head(&feats),
        f_ho: tail(&feats),
        y_tr: head(&y),
        y_ho: tail(&y),
    })
}

/// The body the device calls for (or the one asked for), freshly seeded,
/// with its epochs and initial rate.
fn build(data: &TwinData, rows: &Rows, opt: &FitOptions) -> Result<(Trainable, usize, f64)> {
    let shape = Shape::for_spec(&data.spec)?;
    let kind = match (opt.kind, &shape) {
        (Some(TwinKind::Waveform), None) => {
            return Err(Error::invalid(format!(
                "--twin-kind waveform: device '{}' of kind '{}' takes no drive waveform (it publishes no '{MEMORY_KEY}')",
                data.spec.id, data.spec.kind
            )));
        }
        (Some(k), _) => k,
        (None, Some(_)) => TwinKind::Waveform,
        (None, None) => TwinKind::Mlp,
    };
    let (epochs, lr) = match kind {
        TwinKind::Mlp => (opt.epochs.unwrap_or(120), opt.lr.unwrap_or(2e-3)),
        TwinKind::Waveform => (opt.epochs.unwrap_or(30), opt.lr.unwrap_or(1e-2)),
    };
    let body = match (kind, shape) {
        (TwinKind::Waveform, Some(shape)) => TwinBody::waveform(shape, opt.seed)?,
        _ => {
            let mut sizes = vec![rows.f_tr.ncols()];
            sizes.extend_from_slice(&opt.hidden);
            sizes.push(data.spec.n_out);
            TwinBody::mlp(&sizes, opt.seed)?
        }
    };
    Ok((body, epochs, lr))
}

/// Minimise the MSE of the normalised outputs on the training rows.
fn train(
    t: &Trainable,
    rows: &Rows,
    norm: &Norm,
    epochs: usize,
    base_lr: f64,
    opt: &FitOptions,
) -> Result<()> {
    let ft = tensor2(&rows.f_tr)?;
    let yt = norm.outputs(&tensor2(&rows.y_tr)?)?;
    let zt = norm.features(&ft)?;
    let vars: Vec<Var> = t.vars.clone();
    let mut adam = adam(vars, base_lr)?;
    let n_tr = rows.n_train();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opt.seed);
    let mut order: Vec<u32> = (0..n_tr as u32).collect();
    let steps_per_epoch = n_tr.div_ceil(opt.batch);
    let schedule = Cosine::new(LR_FLOOR, epochs * steps_per_epoch);
    let pb = crate::ui::bar(epochs as u64, "twin fit", opt.quiet);
    let mut step = 0usize;
    for _epoch in 0..epochs {
        order.shuffle(&mut rng);
        let mut epoch_loss = 0.0;
        for chunk in order.chunks(opt.batch) {
            adam.set_learning_rate(base_lr * schedule.factor(step));
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let pred = t.body.forward_normalised(
                &ft.index_select(&idx, 0)?,
                &zt.index_select(&idx, 0)?,
                norm,
            )?;
            let loss = (pred - yt.index_select(&idx, 0)?)?.sqr()?.mean_all()?;
            adam.backward_step(&loss)?;
            epoch_loss += f64::from(loss.to_scalar::<f32>()?);
            step += 1;
        }
        pb.set_prefix(format!("mse {:.4}", epoch_loss / steps_per_epoch as f64));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

/// A twin's relative error: the RMS of `pred − y` over the RMS spread of
/// `y` about the per-output `mean`, and that summed squared spread (the
/// noise floor's denominator). The one measure of how well a twin fits,
/// at fitting (held out) and during training (drift sentinels).
pub fn relative_error(
    pred: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    mean: ArrayView1<'_, f32>,
) -> Result<(f64, f64)> {
    if pred.dim() != y.dim() || mean.len() != y.ncols() {
        return Err(Error::invalid(format!(
            "a twin predicted {:?} for outputs {:?} (mean over {})",
            pred.dim(),
            y.dim(),
            mean.len()
        )));
    }
    let (mut err, mut spread) = (0.0f64, 0.0f64);
    for ((i, j), &v) in y.indexed_iter() {
        err += f64::from(pred[(i, j)] - v).powi(2);
        spread += f64::from(v - mean[j]).powi(2);
    }
    Ok(((err / spread.max(1e-30)).sqrt(), spread))
}

/// Held-out relative error, and the noise floor in the same units.
fn score(twin: &Twin, rows: &Rows, data: &TwinData, out_mean: &Array1<f32>) -> Result<(f32, f32)> {
    let pred = array2(&twin.forward_features(&tensor2(&rows.f_ho)?)?)?;
    let (rel, spread) = relative_error(pred.view(), rows.y_ho.view(), out_mean.view())?;
    Ok((rel as f32, noise_floor(data, rows.n_train(), spread)))
}

/// Fit a twin to `data`.
pub fn fit(data: &TwinData, opt: &FitOptions) -> Result<Twin> {
    let rows = split(data, opt)?;
    let (norm, out_mean) = Norm::fit(&rows.f_tr, &rows.y_tr)?;
    let (trainable, epochs, lr) = build(data, &rows, opt)?;
    train(&trainable, &rows, &norm, epochs, lr, opt)?;
    let kind = trainable.body.kind();
    let meta = TwinMeta {
        spec: data.spec.clone(),
        hidden: if kind == TwinKind::Mlp {
            opt.hidden.clone()
        } else {
            Vec::new()
        },
        heldout_rel_error: 0.0,
        noise_floor_rel: 0.0,
        train_rows: rows.n_train(),
        heldout_rows: rows.f_ho.nrows(),
        repeats: data.y.dim().0,
        epochs,
        kind,
    };
    let mut twin = Twin::new(meta, &trainable.body, norm)?;
    let (rel, floor) = score(&twin, &rows, data, &out_mean)?;
    twin.meta.heldout_rel_error = rel;
    twin.meta.noise_floor_rel = floor;
    Ok(twin)
}

/// Relative RMS noise of the repeat mean on the held-out rows (0 when only
/// one repeat was recorded: then it is unknown).
fn noise_floor(data: &TwinData, from: usize, spread: f64) -> f32 {
    let r = data.y.shape()[0];
    if r < 2 {
        return 0.0;
    }
    let held = data.y.slice_axis(Axis(1), Slice::from(from..));
    let m = held.mean_axis(Axis(0)).unwrap_or_default();
    let mut var_sum = 0.0f64;
    for rep in held.axis_iter(Axis(0)) {
        var_sum += (&rep - &m).mapv(|d| f64::from(d).powi(2)).sum();
    }
    // Unbiased per-element variance, then the variance of the mean of r.
    let var_of_mean = var_sum / (r - 1) as f64 / r as f64;
    (var_of_mean / spread.max(1e-30)).sqrt() as f32
}
