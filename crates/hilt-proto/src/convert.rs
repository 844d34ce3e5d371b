//! `hilt_core` ⇄ `hilt.v1` messages. Decoding validates the wire format
//! only (bytes, ranks, enums); what a device accepts is `hilt_core::validate`.

use std::sync::Arc;
use std::time::SystemTime;

use hilt_core::{
    Backend, Batch, ControlEncoding, DeviceSpec, FirmwareIdentity, LimitPolicy, Measurement, Range,
    SampleFlags,
};

use crate::error::ConvertError;
use crate::tensor::{
    array2_from_tensor, array3_from_tensor, tensor_from_array2, tensor_from_array3, tensor_lent,
};
use crate::v1;

fn required<'a, T>(field: &str, v: &'a Option<T>) -> Result<&'a T, ConvertError> {
    v.as_ref()
        .ok_or_else(|| ConvertError::new(field, "missing"))
}

impl From<&Batch> for v1::Batch {
    fn from(b: &Batch) -> Self {
        v1::Batch {
            x: Some(tensor_from_array2(&b.x)),
            theta: Some(tensor_from_array2(&b.theta)),
            repeats: b.repeats,
            return_repeats: b.return_repeats,
        }
    }
}

impl TryFrom<&v1::Batch> for Batch {
    type Error = ConvertError;

    fn try_from(b: &v1::Batch) -> Result<Self, ConvertError> {
        Ok(Batch {
            x: array2_from_tensor("batch.x", required("batch.x", &b.x)?)?,
            theta: array2_from_tensor("batch.theta", required("batch.theta", &b.theta)?)?,
            repeats: b.repeats,
            return_repeats: b.return_repeats,
        })
    }
}

impl From<&Measurement> for v1::Measurement {
    fn from(m: &Measurement) -> Self {
        answer(
            m,
            tensor_from_array2(&m.y),
            tensor_from_array2(&m.applied_x),
        )
    }
}

/// A measurement the daemon shares (with its recording) as its answer:
/// y and the applied x, its two large arrays, reach the encoder without
/// a copy of their own.
impl From<&Arc<Measurement>> for v1::Measurement {
    fn from(m: &Arc<Measurement>) -> Self {
        answer(
            m,
            tensor_lent(m, |m| &m.y),
            tensor_lent(m, |m| &m.applied_x),
        )
    }
}

fn answer(m: &Measurement, y: v1::Tensor, applied_x: v1::Tensor) -> v1::Measurement {
    v1::Measurement {
        y: Some(y),
        y_repeats: m.y_repeats.as_ref().map(tensor_from_array3),
        y_std: m.y_std.as_ref().map(tensor_from_array2),
        applied_x: Some(applied_x),
        applied_theta: Some(tensor_from_array2(&m.applied_theta)),
        flags: m
            .flags
            .iter()
            .map(|f| v1::SampleFlags {
                saturated: f.saturated,
                clamped: f.clamped,
            })
            .collect(),
        t_start: m.t_start.clone(),
        t_end: m.t_end.clone(),
        wall_start: Some(m.wall_start.into()),
        wall_end: Some(m.wall_end.into()),
        calibration_id: m.calibration_id.clone(),
        device_id: m.device_id.clone(),
    }
}

pub(crate) fn wall(
    field: &str,
    t: &Option<prost_types::Timestamp>,
) -> Result<SystemTime, ConvertError> {
    SystemTime::try_from(*required(field, t)?).map_err(|e| ConvertError::new(field, e.to_string()))
}

impl TryFrom<&v1::Measurement> for Measurement {
    type Error = ConvertError;

    fn try_from(m: &v1::Measurement) -> Result<Self, ConvertError> {
        let y = array2_from_tensor("y", required("y", &m.y)?)?;
        let rows = y.nrows();
        if m.flags.len() != rows || m.t_start.len() != rows || m.t_end.len() != rows {
            return Err(ConvertError::new(
                "flags",
                format!(
                    "{} rows of y but {} flags, {} t_start, {} t_end",
                    rows,
                    m.flags.len(),
                    m.t_start.len(),
                    m.t_end.len()
                ),
            ));
        }
        Ok(Measurement {
            y,
            y_repeats: m
                .y_repeats
                .as_ref()
                .map(|t| array3_from_tensor("y_repeats", t))
                .transpose()?,
            y_std: m
                .y_std
                .as_ref()
                .map(|t| array2_from_tensor("y_std", t))
                .transpose()?,
            applied_x: array2_from_tensor("applied_x", required("applied_x", &m.applied_x)?)?,
            applied_theta: array2_from_tensor(
                "applied_theta",
                required("applied_theta", &m.applied_theta)?,
            )?,
            flags: m
                .flags
                .iter()
                .map(|f| SampleFlags {
                    saturated: f.saturated,
                    clamped: f.clamped,
                })
                .collect(),
            t_start: m.t_start.clone(),
            t_end: m.t_end.clone(),
            wall_start: wall("wall_start", &m.wall_start)?,
            wall_end: wall("wall_end", &m.wall_end)?,
            calibration_id: m.calibration_id.clone(),
            device_id: m.device_id.clone(),
        })
    }
}

impl From<&FirmwareIdentity> for v1::FirmwareIdentity {
    fn from(f: &FirmwareIdentity) -> Self {
        v1::FirmwareIdentity {
            model: f.model.clone(),
            serial_number: f.serial_number.clone(),
            version: f.version.clone(),
        }
    }
}

fn range(r: Range) -> Option<v1::Range> {
    Some(v1::Range {
        min: r.min,
        max: r.max,
    })
}

fn range_from(field: &str, r: &Option<v1::Range>) -> Result<Range, ConvertError> {
    let r = required(field, r)?;
    Ok(Range::new(r.min, r.max))
}

fn usize_from(v: u32) -> usize {
    v as usize
}

fn u32_from(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl From<&DeviceSpec> for v1::DeviceSpec {
    fn from(s: &DeviceSpec) -> Self {
        v1::DeviceSpec {
            id: s.id.clone(),
            kind: s.kind.clone(),
            backend: match s.backend {
                Backend::Sim => v1::Backend::Sim,
                Backend::Serial => v1::Backend::Serial,
                Backend::Replay => v1::Backend::Replay,
            } as i32,
            model: s.model.clone(),
            seed: s.seed,
            n_in: u32_from(s.n_in),
            input_range: range(s.input_range),
            n_par: u32_from(s.n_par),
            param_range: range(s.param_range),
            n_out: u32_from(s.n_out),
            input_unit: s.input_unit.clone(),
            param_unit: s.param_unit.clone(),
            output_unit: s.output_unit.clone(),
            limit_policy: match s.limit_policy {
                LimitPolicy::Reject => v1::LimitPolicy::Reject,
                LimitPolicy::Clamp => v1::LimitPolicy::Clamp,
            } as i32,
            max_batch: u32_from(s.max_batch),
            max_repeats: s.max_repeats,
            seconds_per_sample: s.seconds_per_sample,
            hyperparameters: s.hyperparameters.clone().into_iter().collect(),
            calibration_id: s.calibration_id.clone(),
            firmware: Some((&s.firmware).into()),
            encoding: s.encoding.as_ref().map(|e| v1::ControlEncoding {
                layout: e.layout.clone(),
                input_index: e.input_index.clone(),
                param_index: e.param_index.clone(),
                input_scale: e.input_scale,
                control_min: e.control_min,
                control_max: e.control_max,
            }),
            input_step: s.input_step,
            param_step: s.param_step,
        }
    }
}

impl TryFrom<&v1::DeviceSpec> for DeviceSpec {
    type Error = ConvertError;

    fn try_from(s: &v1::DeviceSpec) -> Result<Self, ConvertError> {
        let backend = match v1::Backend::try_from(s.backend) {
            Ok(v1::Backend::Sim) => Backend::Sim,
            Ok(v1::Backend::Serial) => Backend::Serial,
            Ok(v1::Backend::Replay) => Backend::Replay,
            _ => {
                return Err(ConvertError::new(
                    "backend",
                    format!("unknown value {}", s.backend),
                ));
            }
        };
        let limit_policy = match v1::LimitPolicy::try_from(s.limit_policy) {
            Ok(v1::LimitPolicy::Reject) => LimitPolicy::Reject,
            Ok(v1::LimitPolicy::Clamp) => LimitPolicy::Clamp,
            _ => {
                return Err(ConvertError::new(
                    "limit_policy",
                    format!("unknown value {}", s.limit_policy),
                ));
            }
        };
        let fw = s.firmware.clone().unwrap_or_default();
        let encoding = match &s.encoding {
            None => None,
            Some(e) => {
                if e.input_index.len() != e.param_index.len() {
                    return Err(ConvertError::new(
                        "encoding",
                        "input_index and param_index differ in length",
                    ));
                }
                Some(ControlEncoding {
                    layout: e.layout.clone(),
                    input_index: e.input_index.clone(),
                    param_index: e.param_index.clone(),
                    input_scale: e.input_scale,
                    control_min: e.control_min,
                    control_max: e.control_max,
                })
            }
        };
        Ok(DeviceSpec {
            id: s.id.clone(),
            kind: s.kind.clone(),
            backend,
            model: s.model.clone(),
            seed: s.seed,
            n_in: usize_from(s.n_in),
            input_range: range_from("input_range", &s.input_range)?,
            n_par: usize_from(s.n_par),
            param_range: range_from("param_range", &s.param_range)?,
            n_out: usize_from(s.n_out),
            input_unit: s.input_unit.clone(),
            param_unit: s.param_unit.clone(),
            output_unit: s.output_unit.clone(),
            limit_policy,
            max_batch: usize_from(s.max_batch),
            max_repeats: s.max_repeats,
            seconds_per_sample: s.seconds_per_sample,
            hyperparameters: s.hyperparameters.clone().into_iter().collect(),
            calibration_id: s.calibration_id.clone(),
            firmware: FirmwareIdentity::from(&fw),
            encoding,
            input_step: s.input_step,
            param_step: s.param_step,
        })
    }
}
