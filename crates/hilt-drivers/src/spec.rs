//! What a device publishes about itself, built once from its physics
//! model and its settings, whichever backend measures: a simulator and
//! the board in front of the real rig publish the same spec.

use hilt_core::{Backend, DeviceSpec, FirmwareIdentity, LimitPolicy, Range};
use hilt_physics::PhysicalModel;

use crate::Error;

/// Everything about a device that is not physics and holds for every
/// backend: its id, its hard limits and how much one batch may ask.
/// Filled from the daemon's config.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// The id clients address it by.
    pub id: String,
    /// Hard limit on every input; `None` = the actuator's physical range.
    pub input_limits: Option<Range>,
    /// Hard limit on every parameter; `None` = the actuator's range.
    pub param_limits: Option<Range>,
    /// What happens to a value outside a hard limit.
    pub policy: LimitPolicy,
    /// Rows one batch may have.
    pub max_batch: usize,
    /// Repeats one batch may ask for.
    pub max_repeats: u32,
}

fn limits(
    field: &str,
    configured: Option<Range>,
    physical: (f32, f32),
    step: f32,
) -> Result<Range, Error> {
    let physical = Range::new(physical.0, physical.1);
    let r = configured.unwrap_or(physical);
    if !(r.min.is_finite() && r.max.is_finite() && r.min < r.max) {
        return Err(Error::Config {
            field: field.to_string(),
            reason: format!(
                "[{}, {}] is not a finite interval with min < max",
                r.min, r.max
            ),
        });
    }
    if !physical.contains_range(&r) {
        return Err(Error::Config {
            field: field.to_string(),
            reason: format!(
                "[{}, {}] reaches outside what the actuator can apply, [{}, {}]",
                r.min, r.max, physical.min, physical.max
            ),
        });
    }
    if step > 0.0 && (r.min / step).ceil() * step > r.max {
        return Err(Error::Config {
            field: field.to_string(),
            reason: format!(
                "[{}, {}] holds no value the actuator can apply (its step is {step})",
                r.min, r.max
            ),
        });
    }
    Ok(r)
}

/// The spec of a device measuring `model`'s physics. Identity fields
/// (seed, variant, calibration id, firmware) are the backend's to fill
/// in: a simulator knows them at once, a board tells them when it answers.
pub(crate) fn build_spec<M: PhysicalModel>(
    model: &M,
    s: &DeviceSettings,
    backend: Backend,
) -> Result<DeviceSpec, Error> {
    let input_range = limits(
        "limits.input",
        s.input_limits,
        model.input_range(),
        model.input_step(),
    )?;
    let param_range = limits(
        "limits.param",
        s.param_limits,
        model.param_range(),
        model.param_step(),
    )?;
    // The API carries both as 32-bit counts: a larger one would be
    // published as something else.
    if s.max_batch == 0 || u32::try_from(s.max_batch).is_err() {
        return Err(Error::Config {
            field: "max_batch".into(),
            reason: format!("{} is not in 1..={}", s.max_batch, u32::MAX),
        });
    }
    if s.max_repeats == 0 {
        return Err(Error::Config {
            field: "max_repeats".into(),
            reason: "must be >= 1".into(),
        });
    }
    let (input_unit, param_unit, output_unit) = model.units();
    Ok(DeviceSpec {
        id: s.id.clone(),
        kind: model.kind().as_str().to_string(),
        backend,
        model: String::new(),
        seed: 0,
        n_in: model.n_in(),
        input_range,
        n_par: model.n_par(),
        param_range,
        n_out: model.n_out(),
        input_unit: input_unit.to_string(),
        param_unit: param_unit.to_string(),
        output_unit: output_unit.to_string(),
        limit_policy: s.policy,
        max_batch: s.max_batch,
        max_repeats: s.max_repeats,
        seconds_per_sample: model.seconds_per_sample(),
        hyperparameters: model.hyperparameters(),
        calibration_id: String::new(),
        firmware: FirmwareIdentity::default(),
        encoding: model.channel_map().cloned(),
        input_step: model.input_step(),
        param_step: model.param_step(),
    })
}
