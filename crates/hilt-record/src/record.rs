//! One measurement as it is kept: who asked, when, on what, and what was
//! applied and measured. Arrays are kept as shape + row-major f32, the
//! layout `hilt collect` and numpy use.

use std::time::{SystemTime, UNIX_EPOCH};

use hilt_core::Measurement;
use ndarray::{Array2, Array3};
use serde::Deserialize;

/// Reading an f32 array back from its little-endian bytes (how
/// [`RecordRef`] writes it: a length, then 4 bytes a value).
mod f32_le {
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let bytes: &[u8] = <&[u8]>::deserialize(d)?;
        if !bytes.len().is_multiple_of(4) {
            return Err(D::Error::custom(format!(
                "{} bytes are not a whole number of f32",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// A row-major `rows × cols` f32 matrix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Matrix {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// `rows × cols` values, row-major.
    #[serde(deserialize_with = "f32_le::deserialize")]
    pub data: Vec<f32>,
}

/// A row-major `n0 × n1 × n2` f32 array (repeats × rows × outputs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cube {
    /// `[repeats, rows, n_out]`.
    pub shape: [u32; 3],
    /// The values, row-major.
    #[serde(deserialize_with = "f32_le::deserialize")]
    pub data: Vec<f32>,
}

impl Matrix {
    /// As an ndarray, if the shape matches the data.
    pub fn to_array(&self) -> Option<Array2<f32>> {
        Array2::from_shape_vec((self.rows as usize, self.cols as usize), self.data.clone()).ok()
    }
}

/// One recorded batch, as a reader gets it back. It is written through
/// [`RecordRef`], which borrows the measurement instead of copying it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    /// The device that measured.
    pub device: String,
    /// Per device, 1, 2, 3, … in the order the device measured, across
    /// segments and restarts.
    pub seq: u64,
    /// [`lease_tag`] of the lease the batch was measured under: the lease
    /// id itself is the holder's secret and is never written.
    pub lease: String,
    /// The token's name (`anonymous` without tokens).
    pub token: String,
    /// The client's address.
    pub peer: String,
    /// Wall clock when the device began and ended the batch, ns since the
    /// Unix epoch.
    pub wall_start_ns: i64,
    /// See `wall_start_ns`.
    pub wall_end_ns: i64,
    /// Device clock per row: start of its first shot, end of its last (s).
    pub t_start: Vec<f64>,
    /// See `t_start`.
    pub t_end: Vec<f64>,
    /// The device's calibration id when it measured.
    pub calibration_id: String,
    /// SHA-256 (hex, 16 digits) of the device's spec as served.
    pub spec_hash: String,
    /// SHA-256 (hex, 16 digits) of the daemon's config text.
    pub config_hash: String,
    /// hiltd's version and git revision.
    pub version: String,
    /// See `version`.
    pub git_revision: String,
    /// Repeats measured per row.
    pub repeats: u32,
    /// The x applied (after clamping and the actuator grid), `[B, n_in]`.
    pub x: Matrix,
    /// The θ applied, `[1 or B, n_par]`.
    pub theta: Matrix,
    /// Mean over repeats, `[B, n_out]`.
    pub y: Matrix,
    /// Std over repeats, when repeats > 1.
    pub y_std: Option<Matrix>,
    /// Every repeat, when the client asked for them.
    pub y_repeats: Option<Cube>,
    /// Per row: bit 0 saturated, bit 1 clamped.
    pub flags: Vec<u8>,
}

/// What a record's context says beyond the measurement itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// See [`Record::lease`].
    pub lease: String,
    /// See [`Record::token`].
    pub token: String,
    /// See [`Record::peer`].
    pub peer: String,
    /// See [`Record::spec_hash`].
    pub spec_hash: String,
    /// See [`Record::config_hash`].
    pub config_hash: String,
    /// See [`Record::version`].
    pub version: String,
    /// See [`Record::git_revision`].
    pub git_revision: String,
}

/// `t` as ns since the Unix epoch (negative before it), as records keep
/// wall times.
pub fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

impl Record {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.x.rows as usize
    }

    /// The measurement as the device answered it; `None` if the arrays'
    /// shapes disagree with their data (a record no hiltd writes).
    pub fn measurement(&self) -> Option<Measurement> {
        let time = |ns: i64| match u64::try_from(ns) {
            Ok(ns) => UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            Err(_) => UNIX_EPOCH - std::time::Duration::from_nanos(ns.unsigned_abs()),
        };
        let y_repeats = match &self.y_repeats {
            None => None,
            Some(c) => Some(
                Array3::from_shape_vec(
                    (
                        c.shape[0] as usize,
                        c.shape[1] as usize,
                        c.shape[2] as usize,
                    ),
                    c.data.clone(),
                )
                .ok()?,
            ),
        };
        let y_std = match &self.y_std {
            None => None,
            Some(m) => Some(m.to_array()?),
        };
        Some(Measurement {
            y: self.y.to_array()?,
            y_repeats,
            y_std,
            applied_x: self.x.to_array()?,
            applied_theta: self.theta.to_array()?,
            flags: self
                .flags
                .iter()
                .map(|f| hilt_core::SampleFlags {
                    saturated: f & 1 != 0,
                    clamped: f & 2 != 0,
                })
                .collect(),
            t_start: self.t_start.clone(),
            t_end: self.t_end.clone(),
            wall_start: time(self.wall_start_ns),
            wall_end: time(self.wall_end_ns),
            calibration_id: self.calibration_id.clone(),
            device_id: self.device.clone(),
        })
    }
}

/// The non-secret name of a lease in the recording: the first 16 hex
/// digits of the SHA-256 of its id. A reader who holds the lease id can
/// compute it; the recording does not give the id away.
pub fn lease_tag(lease_id: &str) -> String {
    if lease_id.is_empty() {
        return String::new();
    }
    short_hash(lease_id)
}

/// The first 16 hex digits of SHA-256(`text`): how a record names a
/// lease, a device spec and a config.
pub fn short_hash(text: &str) -> String {
    hilt_core::token::sha256(text)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
