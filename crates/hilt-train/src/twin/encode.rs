//! The twin's input features. For a channelised device the twin sees the
//! control vector the device drives (its published `ControlEncoding`),
//! rebuilt differentiably so PAT's vector-Jacobian product reaches x and θ;
//! fitting on the mask instead of on (x, θ) cut the twin's held-out error
//! from 16 % to 6.5 % in our SHG study. Devices without an encoding get
//! `[x | θ]`.

use candle_core::{Device, Tensor};
use hilt_core::DeviceSpec;
use ndarray::Array2;

use crate::error::Result;

/// How (x, θ) become a twin's features.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// The device's control vector, from its published encoding.
    Controls {
        /// One-hot `[n_in, n_controls]`: which input drives which channel.
        p_in: Tensor,
        /// One-hot `[n_par, n_controls]`.
        p_par: Tensor,
        /// `input_scale` of the encoding.
        scale: f64,
        /// Lowest control value (the drive clips).
        min: f64,
        /// Highest control value.
        max: f64,
        /// The encoding itself, for the row-by-row version.
        encoding: hilt_core::ControlEncoding,
    },
    /// `[x | θ]`, for devices without an encoding.
    Concat,
}

impl Encoder {
    /// The encoder `spec` calls for.
    pub fn for_spec(spec: &DeviceSpec) -> Result<Self> {
        let Some(enc) = spec.encoding.clone() else {
            return Ok(Encoder::Concat);
        };
        let n_c = enc.n_controls();
        let mut p_in = vec![0f32; spec.n_in * n_c];
        let mut p_par = vec![0f32; spec.n_par * n_c];
        for k in 0..n_c {
            if let Ok(i) = usize::try_from(enc.input_index[k]) {
                p_in[i * n_c + k] = 1.0;
            }
            if let Ok(j) = usize::try_from(enc.param_index[k]) {
                p_par[j * n_c + k] = 1.0;
            }
        }
        Ok(Encoder::Controls {
            p_in: Tensor::from_vec(p_in, (spec.n_in, n_c), &Device::Cpu)?,
            p_par: Tensor::from_vec(p_par, (spec.n_par, n_c), &Device::Cpu)?,
            scale: f64::from(enc.input_scale),
            min: f64::from(enc.control_min),
            max: f64::from(enc.control_max),
            encoding: enc,
        })
    }

    /// Features for `x [B, n_in]` and `theta [B or 1, n_par]`.
    pub fn encode(&self, x: &Tensor, theta: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Encoder::Controls {
                p_in,
                p_par,
                scale,
                min,
                max,
                ..
            } => {
                let xi = (x.matmul(p_in)? * *scale)?;
                let th = theta.matmul(p_par)?;
                xi.broadcast_add(&th)?.clamp(*min, *max)?
            }
            Encoder::Concat => {
                let th = theta.broadcast_as((x.dim(0)?, theta.dim(1)?))?;
                Tensor::cat(&[x, &th], 1)?
            }
        })
    }

    /// The same features, computed row by row without a graph (for fitting
    /// on recorded data).
    pub fn encode_rows(&self, x: &Array2<f32>, theta: &Array2<f32>) -> Array2<f32> {
        let n = x.nrows();
        let row_t = |i: usize| if theta.nrows() == 1 { 0 } else { i };
        match self {
            Encoder::Controls { encoding, .. } => {
                let n_c = encoding.n_controls();
                let mut out = Array2::zeros((n, n_c));
                let mut buf = vec![0f32; n_c];
                for i in 0..n {
                    let xs = x.row(i).to_vec();
                    let ts = theta.row(row_t(i)).to_vec();
                    encoding.compose(&xs, &ts, &mut buf);
                    out.row_mut(i).assign(&ndarray::ArrayView1::from(&buf[..]));
                }
                out
            }
            Encoder::Concat => {
                let d = x.ncols() + theta.ncols();
                Array2::from_shape_fn((n, d), |(i, j)| {
                    if j < x.ncols() {
                        x[(i, j)]
                    } else {
                        theta[(row_t(i), j - x.ncols())]
                    }
                })
            }
        }
    }

    /// Width of the features for `spec`.
    pub fn n_features(&self, spec: &DeviceSpec) -> usize {
        match self {
            Encoder::Controls { encoding, .. } => encoding.n_controls(),
            Encoder::Concat => spec.n_in + spec.n_par,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilt_core::{ControlEncoding, Range};

    fn spec(enc: Option<ControlEncoding>) -> DeviceSpec {
        DeviceSpec {
            id: "d".into(),
            kind: "shg".into(),
            backend: hilt_core::Backend::Sim,
            model: "true".into(),
            seed: 0,
            n_in: 2,
            input_range: Range::new(0.0, 1.0),
            n_par: 2,
            param_range: Range::new(-1.0, 1.0),
            n_out: 1,
            input_unit: String::new(),
            param_unit: String::new(),
            output_unit: String::new(),
            limit_policy: Default::default(),
            max_batch: 10,
            max_repeats: 2,
            seconds_per_sample: 0.0,
            hyperparameters: Default::default(),
            calibration_id: String::new(),
            firmware: Default::default(),
            encoding: enc,
            input_step: 0.0,
            param_step: 0.0,
        }
    }

    /// The graph version, the row version and the core formula agree.
    #[test]
    fn graph_and_rows_match_the_published_formula() {
        let enc = ControlEncoding {
            layout: "t".into(),
            input_index: vec![0, 1, 1, -1],
            param_index: vec![-1, 0, 1, 1],
            input_scale: 2.0,
            control_min: 0.0,
            control_max: 1.0,
        };
        let s = spec(Some(enc.clone()));
        let e = Encoder::for_spec(&s).unwrap();
        let x = Array2::from_shape_vec((2, 2), vec![0.1, 0.2, 0.4, 0.3]).unwrap();
        let th = Array2::from_shape_vec((1, 2), vec![0.5, -0.6]).unwrap();
        let rows = e.encode_rows(&x, &th);
        let xt = Tensor::from_slice(x.as_slice().unwrap(), (2, 2), &Device::Cpu).unwrap();
        let tt = Tensor::from_slice(th.as_slice().unwrap(), (1, 2), &Device::Cpu).unwrap();
        let g = e.encode(&xt, &tt).unwrap().to_vec2::<f32>().unwrap();
        for i in 0..2 {
            let mut want = [0f32; 4];
            enc.compose(
                x.row(i).as_slice().unwrap(),
                th.row(0).as_slice().unwrap(),
                &mut want,
            );
            for k in 0..4 {
                assert!((g[i][k] - want[k]).abs() < 1e-6 && (rows[(i, k)] - want[k]).abs() < 1e-6);
            }
        }
        let c = Encoder::for_spec(&spec(None)).unwrap();
        assert_eq!(
            c.encode_rows(&x, &th).row(1).to_vec(),
            vec![0.4, 0.3, 0.5, -0.6]
        );
    }
}
