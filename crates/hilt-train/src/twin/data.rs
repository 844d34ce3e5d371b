//! Recorded `(x, θ, y)` for fitting a twin, stored as `.npz` so numpy reads
//! it directly: `np.load(f)["y"]`, `json.loads(bytes(np.load(f)["spec_json"]))`.

use std::fs::File;
use std::path::Path;

use hilt_core::{DeviceSpec, Measurement};
use ndarray::{Array1, Array2, Array3, Axis, Slice};
use ndarray_npy::{NpzReader, NpzWriter};

use crate::error::{Error, Result};
use crate::fsio;

/// A recording for fitting a twin.
#[derive(Debug, Clone)]
pub struct TwinData {
    /// The device this was measured on, as it described itself.
    pub spec: DeviceSpec,
    /// Applied inputs `[N, n_in]` (after the device's clamp/quantisation).
    pub x: Array2<f32>,
    /// Applied parameters `[N, n_par]`.
    pub theta: Array2<f32>,
    /// Every repeat `[R, N, n_out]`.
    pub y: Array3<f32>,
    /// Rows the device flagged as saturated.
    pub saturated: Array1<u8>,
}

impl TwinData {
    /// `ms` (in order) as one data set: the applied x and θ (a shared θ row
    /// repeated per sample), every repeat when each measurement kept the
    /// same number of them, else the means as one repeat.
    pub fn from_measurements(spec: DeviceSpec, ms: &[Measurement]) -> Result<Self> {
        let n: usize = ms.iter().map(|m| m.applied_x.nrows()).sum();
        let reps = ms
            .first()
            .and_then(|m| m.y_repeats.as_ref())
            .map(|a| a.dim().0);
        let every = reps.is_some()
            && ms
                .iter()
                .all(|m| m.y_repeats.as_ref().map(|a| a.dim().0) == reps);
        let r = if every { reps.unwrap_or(1) } else { 1 };
        let mut out = TwinData {
            x: Array2::zeros((n, spec.n_in)),
            theta: Array2::zeros((n, spec.n_par)),
            y: Array3::zeros((r, n, spec.n_out)),
            saturated: Array1::zeros(n),
            spec,
        };
        let mut start = 0;
        for (k, m) in ms.iter().enumerate() {
            let b = m.applied_x.nrows();
            let bad = |what: &str| {
                Error::invalid(format!(
                    "measurement {k} of device '{}': {what} does not fit its spec",
                    out.spec.id
                ))
            };
            let t_rows = m.applied_theta.nrows();
            if m.applied_x.ncols() != out.spec.n_in {
                return Err(bad("x"));
            }
            if m.applied_theta.ncols() != out.spec.n_par || !(t_rows == 1 || t_rows == b) {
                return Err(bad("θ"));
            }
            if m.y.dim() != (b, out.spec.n_out) || m.flags.len() != b {
                return Err(bad("y"));
            }
            let rows = Slice::from(start..start + b);
            out.x.slice_axis_mut(Axis(0), rows).assign(&m.applied_x);
            for i in 0..b {
                let t = if t_rows == 1 { 0 } else { i };
                out.theta.row_mut(start + i).assign(&m.applied_theta.row(t));
                out.saturated[start + i] = u8::from(m.flags[i].saturated);
            }
            match (&m.y_repeats, every) {
                (Some(all), true) => {
                    if all.dim() != (r, b, out.spec.n_out) {
                        return Err(bad("y_repeats"));
                    }
                    out.y.slice_axis_mut(Axis(1), rows).assign(all);
                }
                _ => out
                    .y
                    .slice_axis_mut(Axis(1), rows)
                    .assign(&m.y.view().insert_axis(Axis(0))),
            }
            start += b;
        }
        Ok(out)
    }

    /// Rows recorded.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mean over repeats `[N, n_out]`: what a twin is fitted to.
    pub fn y_mean(&self) -> Array2<f32> {
        self.y
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array2::zeros((0, 0)))
    }

    /// Write the `.npz`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let spec_json =
            serde_json::to_vec(&self.spec).map_err(|e| Error::invalid(e.to_string()))?;
        fsio::write_atomic(path, |tmp| {
            let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
            let mut npz = NpzWriter::new_compressed(file);
            let npz_err = |e: ndarray_npy::WriteNpzError| Error::data(tmp, e.to_string());
            npz.add_array("x", &self.x).map_err(npz_err)?;
            npz.add_array("theta", &self.theta).map_err(npz_err)?;
            npz.add_array("y", &self.y).map_err(npz_err)?;
            npz.add_array("saturated", &self.saturated)
                .map_err(npz_err)?;
            npz.add_array("spec_json", &Array1::from(spec_json))
                .map_err(npz_err)?;
            npz.finish().map_err(npz_err)?;
            Ok(())
        })
    }

    /// Read an `.npz` from `hilt collect`, checking every shape against the
    /// spec it carries.
    pub fn load(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |what: &str, e: ndarray_npy::ReadNpzError| {
            Error::data(
                path,
                format!("{what}: {e} (expected an .npz written by `hilt collect`)"),
            )
        };
        let mut npz = NpzReader::new(file).map_err(|e| bad("not an npz archive", e))?;
        let x: Array2<f32> = npz.by_name("x").map_err(|e| bad("x", e))?;
        let theta: Array2<f32> = npz.by_name("theta").map_err(|e| bad("theta", e))?;
        let y: Array3<f32> = npz.by_name("y").map_err(|e| bad("y", e))?;
        let saturated: Array1<u8> = npz.by_name("saturated").map_err(|e| bad("saturated", e))?;
        let spec_json: Array1<u8> = npz.by_name("spec_json").map_err(|e| bad("spec_json", e))?;
        let spec: DeviceSpec = serde_json::from_slice(spec_json.as_slice().unwrap_or_default())
            .map_err(|e| Error::data(path, format!("spec_json: {e}")))?;
        let n = x.nrows();
        if theta.nrows() != n || y.shape()[1] != n || saturated.len() != n {
            return Err(Error::data(
                path,
                format!(
                    "row counts disagree: x {n}, theta {}, y {:?}, saturated {}",
                    theta.nrows(),
                    y.shape(),
                    saturated.len()
                ),
            ));
        }
        if x.ncols() != spec.n_in || theta.ncols() != spec.n_par || y.shape()[2] != spec.n_out {
            return Err(Error::data(
                path,
                format!(
                    "shapes x {:?}, theta {:?}, y {:?} do not match device '{}' (n_in {}, n_par {}, n_out {})",
                    x.shape(),
                    theta.shape(),
                    y.shape(),
                    spec.id,
                    spec.n_in,
                    spec.n_par,
                    spec.n_out
                ),
            ));
        }
        Ok(TwinData {
            spec,
            x,
            theta,
            y,
            saturated,
        })
    }
}
