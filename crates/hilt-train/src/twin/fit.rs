//! `hilt twin fit`: an MLP fitted to recorded measurements (Adam, MSE on
//! normalised outputs, cosine-decayed learning rate). The held-out rows are
//! the *last* ones recorded, so the error also covers drift during the
//! recording rather than interpolating between neighbours in time.

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer;
use ndarray::{Axis, Slice};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::model::{Body, Norm, TrainableMlp, Twin, TwinKind, TwinMeta, mlp_forward};
use super::wiener::{Params as WienerParams, Shape, Wiener};
use super::{Encoder, TwinData};
use crate::error::{Error, Result};
use crate::net::tensor2;

#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `None`: a waveform twin for time-domain rigs, an MLP otherwise.
    pub kind: Option<TwinKind>,
    pub hidden: Vec<usize>,
    /// `None`: the kind's default (MLP 120 epochs at 2e-3, waveform 30
    /// epochs at 1e-2: a thousand parameters settle faster).
    pub epochs: Option<usize>,
    pub batch: usize,
    pub lr: Option<f64>,
    pub heldout_share: f64,
    pub seed: u64,
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

fn row(v: ndarray::Array1<f32>) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v.to_vec(), (1, n), &Device::Cpu)?)
}

pub fn fit(data: &TwinData, opt: &FitOptions) -> Result<Twin> {
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
    let (f_tr, f_ho) = (
        feats.slice_axis(Axis(0), Slice::from(..n_tr)).to_owned(),
        feats.slice_axis(Axis(0), Slice::from(n_tr..)).to_owned(),
    );
    let (y_tr, y_ho) = (
        y.slice_axis(Axis(0), Slice::from(..n_tr)).to_owned(),
        y.slice_axis(Axis(0), Slice::from(n_tr..)).to_owned(),
    );

    let in_mean = f_tr.mean_axis(Axis(0)).unwrap_or_default();
    let in_std = f_tr.std_axis(Axis(0), 0.0).mapv(|v| v.max(1e-3));
    let out_mean = y_tr.mean_axis(Axis(0)).unwrap_or_default();
    let out_spread = y_tr.std_axis(Axis(0), 0.0);
    let floor = out_spread.iter().cloned().fold(0.0f32, f32::max) * 1e-3 + 1e-12;
    let out_std = out_spread.mapv(|v| v.max(floor));
    let norm = Norm {
        in_mean: row(in_mean)?,
        in_std: row(in_std)?,
        out_mean: row(out_mean.clone())?,
        out_std: row(out_std)?,
    };

    let ft = tensor2(&f_tr)?;
    let yt = tensor2(&y_tr)?
        .broadcast_sub(&norm.out_mean)?
        .broadcast_div(&norm.out_std)?;
    let zt = ft
        .broadcast_sub(&norm.in_mean)?
        .broadcast_div(&norm.in_std)?;

    let shape = Shape::for_spec(&data.spec)?;
    let kind = match (opt.kind, &shape) {
        (Some(TwinKind::Waveform), None) => {
            return Err(Error::invalid(format!(
                "--twin-kind waveform: device '{}' of kind '{}' takes no drive waveform",
                data.spec.id, data.spec.kind
            )));
        }
        (Some(k), _) => k,
        (None, Some(_)) => TwinKind::Waveform,
        (None, None) => TwinKind::Mlp,
    };
    let (epochs, base_lr) = match kind {
        TwinKind::Mlp => (opt.epochs.unwrap_or(120), opt.lr.unwrap_or(2e-3)),
        TwinKind::Waveform => (opt.epochs.unwrap_or(30), opt.lr.unwrap_or(1e-2)),
    };
    // The model being fitted: its variables, and its prediction for a batch
    // of rows in normalised output units.
    let (vars, wiener) = match (kind, shape) {
        (TwinKind::Waveform, Some(shape)) => {
            let vars = WienerParams::init(&shape, opt.seed)?;
            (vars, Some(Wiener::new(shape)?))
        }
        _ => {
            let mut sizes = vec![feats.ncols()];
            sizes.extend_from_slice(&opt.hidden);
            sizes.push(data.spec.n_out);
            (TrainableMlp::new(&sizes, opt.seed)?.vars, None)
        }
    };
    let wiener_params = |vars: &[Var]| {
        WienerParams::from_tensors(vars.iter().map(|v| v.as_tensor().clone()).collect())
    };
    let mlp_layers = |vars: &[Var]| -> Vec<(Tensor, Tensor)> {
        vars.chunks(2)
            .map(|p| (p[0].as_tensor().clone(), p[1].as_tensor().clone()))
            .collect()
    };
    let predict = |vars: &[Var], raw: &Tensor, z: &Tensor| -> Result<Tensor> {
        match &wiener {
            Some(w) => Ok(w
                .forward(&wiener_params(vars)?, raw)?
                .broadcast_sub(&norm.out_mean)?
                .broadcast_div(&norm.out_std)?),
            None => mlp_forward(&mlp_layers(vars), z),
        }
    };
    let mut adam = candle_nn::AdamW::new(
        vars.clone(),
        candle_nn::ParamsAdamW {
            lr: base_lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opt.seed);
    let mut order: Vec<u32> = (0..n_tr as u32).collect();
    let steps_per_epoch = n_tr.div_ceil(opt.batch);
    let total = (epochs * steps_per_epoch) as f64;
    let pb = crate::ui::bar(epochs as u64, "twin fit", opt.quiet);
    let mut step = 0usize;
    for _epoch in 0..epochs {
        order.shuffle(&mut rng);
        let mut epoch_loss = 0.0;
        for chunk in order.chunks(opt.batch) {
            // Cosine decay to 1 % of the initial rate.
            let lr = base_lr
                * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos()));
            adam.set_learning_rate(lr);
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let pred = predict(
                &vars,
                &ft.index_select(&idx, 0)?,
                &zt.index_select(&idx, 0)?,
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

    let body = match wiener {
        Some(w) => Body::Waveform(Box::new(w), wiener_params(&vars)?),
        None => Body::Mlp(mlp_layers(&vars)),
    };
    let meta = TwinMeta {
        spec: data.spec.clone(),
        hidden: if kind == TwinKind::Mlp {
            opt.hidden.clone()
        } else {
            Vec::new()
        },
        heldout_rel_error: 0.0,
        noise_floor_rel: 0.0,
        train_rows: n_tr,
        heldout_rows: n_hold,
        epochs,
        kind,
    };
    let mut twin = Twin::new(meta, body, norm)?;
    let pred: Vec<Vec<f32>> = twin.forward_features(&tensor2(&f_ho)?)?.to_vec2()?;
    let (mut err, mut spread) = (0.0f64, 0.0f64);
    for (i, p) in pred.iter().enumerate() {
        for (j, &v) in p.iter().enumerate() {
            err += f64::from(v - y_ho[(i, j)]).powi(2);
            spread += f64::from(y_ho[(i, j)] - out_mean[j]).powi(2);
        }
    }
    twin.meta.heldout_rel_error = (err / spread.max(1e-30)).sqrt() as f32;
    twin.meta.noise_floor_rel = noise_floor(data, n_tr, &out_mean, spread);
    Ok(twin)
}

/// Relative RMS noise of the repeat mean on the held-out rows (0 when only
/// one repeat was recorded: then it is unknown).
fn noise_floor(data: &TwinData, from: usize, _mean: &ndarray::Array1<f32>, spread: f64) -> f32 {
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
