//! The one way a record is encoded: [`RecordRef`] borrows what it writes
//! (a measurement as the device answered it, or a [`Record`] read back),
//! so the f32 arrays go from the measurement into the frame in a single
//! copy. Field for field it is [`Record`]'s layout, which the reader
//! decodes (`docs/recording.md`).

use std::borrow::Cow;

use hilt_core::{Measurement, SampleFlags};
use ndarray::{ArrayBase, Data, Dimension};
use serde::{Serialize, Serializer};

use crate::record::{Context, Cube, Matrix, Record, unix_ns};

/// f32 values as one postcard byte string of little-endian values. On a
/// little-endian machine a contiguous array is written as it lies in
/// memory; anything else is converted once.
#[derive(Debug)]
pub(crate) struct Values<'a>(Cow<'a, [u8]>);

impl<'a> Values<'a> {
    fn of_slice(v: &'a [f32]) -> Self {
        #[cfg(target_endian = "little")]
        {
            Values(Cow::Borrowed(bytemuck::cast_slice(v)))
        }
        #[cfg(not(target_endian = "little"))]
        {
            Values(Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        }
    }

    fn of_array<S: Data<Elem = f32>, D: Dimension>(a: &'a ArrayBase<S, D>) -> Self {
        match a.as_slice() {
            Some(s) => Values::of_slice(s),
            None => Values(Cow::Owned(a.iter().flat_map(|x| x.to_le_bytes()).collect())),
        }
    }
}

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// Per-row flags as their bytes (bit 0 saturated, bit 1 clamped).
#[derive(Debug)]
pub(crate) enum Flags<'a> {
    Bytes(&'a [u8]),
    Rows(&'a [SampleFlags]),
}

impl Serialize for Flags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Flags::Bytes(b) => s.collect_seq(b.iter()),
            Flags::Rows(rows) => s.collect_seq(
                rows.iter()
                    .map(|f| u8::from(f.saturated) | (u8::from(f.clamped) << 1)),
            ),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct MatrixRef<'a> {
    rows: u32,
    cols: u32,
    data: Values<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CubeRef<'a> {
    shape: [u32; 3],
    data: Values<'a>,
}

fn dim(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl<'a> MatrixRef<'a> {
    fn of(a: &'a ndarray::Array2<f32>) -> Self {
        MatrixRef {
            rows: dim(a.nrows()),
            cols: dim(a.ncols()),
            data: Values::of_array(a),
        }
    }

    fn of_matrix(m: &'a Matrix) -> Self {
        MatrixRef {
            rows: m.rows,
            cols: m.cols,
            data: Values::of_slice(&m.data),
        }
    }
}

impl<'a> CubeRef<'a> {
    fn of(a: &'a ndarray::Array3<f32>) -> Self {
        let (r, b, n) = a.dim();
        CubeRef {
            shape: [dim(r), dim(b), dim(n)],
            data: Values::of_array(a),
        }
    }

    fn of_cube(c: &'a Cube) -> Self {
        CubeRef {
            shape: c.shape,
            data: Values::of_slice(&c.data),
        }
    }
}

/// A record as it is written: [`Record`]'s fields, borrowed.
#[derive(Debug, Serialize)]
pub(crate) struct RecordRef<'a> {
    device: &'a str,
    seq: u64,
    lease: &'a str,
    token: &'a str,
    peer: &'a str,
    wall_start_ns: i64,
    wall_end_ns: i64,
    t_start: &'a [f64],
    t_end: &'a [f64],
    calibration_id: &'a str,
    spec_hash: &'a str,
    config_hash: &'a str,
    version: &'a str,
    git_revision: &'a str,
    repeats: u32,
    x: MatrixRef<'a>,
    theta: MatrixRef<'a>,
    y: MatrixRef<'a>,
    y_std: Option<MatrixRef<'a>>,
    y_repeats: Option<CubeRef<'a>>,
    flags: Flags<'a>,
}

impl<'a> RecordRef<'a> {
    /// The record of `m`, measured with `repeats`, numbered `seq`.
    pub(crate) fn of(m: &'a Measurement, repeats: u32, ctx: &'a Context, seq: u64) -> Self {
        RecordRef {
            device: &m.device_id,
            seq,
            lease: &ctx.lease,
            token: &ctx.token,
            peer: &ctx.peer,
            wall_start_ns: unix_ns(m.wall_start),
            wall_end_ns: unix_ns(m.wall_end),
            t_start: &m.t_start,
            t_end: &m.t_end,
            calibration_id: &m.calibration_id,
            spec_hash: &ctx.spec_hash,
            config_hash: &ctx.config_hash,
            version: &ctx.version,
            git_revision: &ctx.git_revision,
            repeats,
            x: MatrixRef::of(&m.applied_x),
            theta: MatrixRef::of(&m.applied_theta),
            y: MatrixRef::of(&m.y),
            y_std: m.y_std.as_ref().map(MatrixRef::of),
            y_repeats: m.y_repeats.as_ref().map(CubeRef::of),
            flags: Flags::Rows(&m.flags),
        }
    }

    /// `r` as it is written, numbered `seq`.
    pub(crate) fn of_record(r: &'a Record, seq: u64) -> Self {
        RecordRef {
            device: &r.device,
            seq,
            lease: &r.lease,
            token: &r.token,
            peer: &r.peer,
            wall_start_ns: r.wall_start_ns,
            wall_end_ns: r.wall_end_ns,
            t_start: &r.t_start,
            t_end: &r.t_end,
            calibration_id: &r.calibration_id,
            spec_hash: &r.spec_hash,
            config_hash: &r.config_hash,
            version: &r.version,
            git_revision: &r.git_revision,
            repeats: r.repeats,
            x: MatrixRef::of_matrix(&r.x),
            theta: MatrixRef::of_matrix(&r.theta),
            y: MatrixRef::of_matrix(&r.y),
            y_std: r.y_std.as_ref().map(MatrixRef::of_matrix),
            y_repeats: r.y_repeats.as_ref().map(CubeRef::of_cube),
            flags: Flags::Bytes(&r.flags),
        }
    }

    /// The borrowed byte strings of the f32 arrays: written from where
    /// they lie, not copied into the frame.
    pub(crate) fn large_arrays(&self) -> Vec<&'a [u8]> {
        let matrices = [
            Some(&self.x),
            Some(&self.theta),
            Some(&self.y),
            self.y_std.as_ref(),
        ];
        matrices
            .into_iter()
            .flatten()
            .map(|m| &m.data)
            .chain(self.y_repeats.as_ref().map(|c| &c.data))
            .filter_map(|v| match v.0 {
                Cow::Borrowed(b) => Some(b),
                Cow::Owned(_) => None,
            })
            .collect()
    }
}
