use std::time::{Duration, SystemTime};

use hilt_core::{
    Backend, Device, DeviceSpec, Error as CoreError, FirmwareIdentity, LimitPolicy, Measurement,
    Range, ValidBatch,
};
use hilt_physics::PhysicalModel;
use tokio::time::Instant;

use super::run::{Grid, run};
use crate::Error;

/// Everything about a simulated device that is not physics: identity,
/// hard limits and pacing. Filled from the daemon's config.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub id: String,
    pub seed: u64,
    /// Hard limits; `None` = the actuator's physical range.
    pub input_limits: Option<Range>,
    pub param_limits: Option<Range>,
    pub policy: LimitPolicy,
    pub max_batch: usize,
    pub max_repeats: u32,
    /// Wall-clock time per sample, so a simulator can be as slow as the
    /// real rig (streaming and busy-fraction work needs that).
    pub emulate_seconds_per_sample: Option<f64>,
}

/// A physics model driven like a rig. The model runs on the blocking pool
/// (it is CPU work), so one busy simulator never stalls the daemon's I/O.
#[derive(Debug)]
pub struct SimDevice<M> {
    spec: DeviceSpec,
    /// Moved to the blocking pool for each batch and back; `None` only if a
    /// batch panicked, after which the device reports itself faulted.
    model: Option<M>,
    pace: Option<Duration>,
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

impl<M: PhysicalModel> SimDevice<M> {
    pub fn new(model: M, s: SimSettings) -> Result<Self, Error> {
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
        if s.max_batch == 0 {
            return Err(Error::Config {
                field: "max_batch".into(),
                reason: "must be >= 1".into(),
            });
        }
        if s.max_repeats == 0 {
            return Err(Error::Config {
                field: "max_repeats".into(),
                reason: "must be >= 1".into(),
            });
        }
        let pace = match s.emulate_seconds_per_sample {
            None => None,
            Some(v) if v.is_finite() && v >= 0.0 => Some(Duration::from_secs_f64(v)),
            Some(v) => {
                return Err(Error::Config {
                    field: "emulate_seconds_per_sample".into(),
                    reason: format!("{v} must be finite and >= 0"),
                });
            }
        };
        let (input_unit, param_unit, output_unit) = model.units();
        let variant = model.variant().as_str();
        let kind = model.kind();
        let spec = DeviceSpec {
            id: s.id,
            kind: kind.to_string(),
            backend: Backend::Sim,
            model: variant.to_string(),
            seed: s.seed,
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
            seconds_per_sample: s
                .emulate_seconds_per_sample
                .unwrap_or(model.seconds_per_sample()),
            hyperparameters: model.hyperparameters(),
            calibration_id: format!("sim-{kind}-{variant}-{:016x}", s.seed),
            firmware: FirmwareIdentity {
                model: format!("hilt-sim/{kind}"),
                serial_number: format!("sim-{:016x}", s.seed),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            encoding: model.channel_map().cloned(),
            input_step: model.input_step(),
            param_step: model.param_step(),
        };
        Ok(SimDevice {
            spec,
            model: Some(model),
            pace,
        })
    }
}

impl<M: PhysicalModel> Device for SimDevice<M> {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    async fn execute(&mut self, batch: &ValidBatch) -> Result<Measurement, CoreError> {
        let mut model = self.model.take().ok_or_else(|| {
            CoreError::Unavailable(format!(
                "{}: simulator faulted by an earlier internal error; restart hiltd",
                self.spec.id
            ))
        })?;
        let started = Instant::now();
        let wall_start = SystemTime::now();
        let owned = batch.clone();
        let grid = Grid::of(&self.spec);
        let (model, mut m) = tokio::task::spawn_blocking(move || {
            let m = run(&mut model, grid, &owned);
            (model, m)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("simulator task failed: {e}")))?;
        self.model = Some(model);
        if let Some(pace) = self.pace {
            let samples = batch.rows() as u32 * batch.repeats();
            tokio::time::sleep_until(started + pace * samples).await;
        }
        m.wall_start = wall_start;
        m.wall_end = SystemTime::now();
        m.calibration_id.clone_from(&self.spec.calibration_id);
        m.device_id.clone_from(&self.spec.id);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use hilt_core::{Batch, validate};
    use hilt_physics::Variant;
    use hilt_physics::shg::{ShgConfig, ShgModel};
    use ndarray::{Array2, array};

    use super::*;
    use crate::LoopbackModel;

    fn settings() -> SimSettings {
        SimSettings {
            id: "dev".into(),
            seed: 3,
            input_limits: None,
            param_limits: None,
            policy: LimitPolicy::Reject,
            max_batch: 64,
            max_repeats: 8,
            emulate_seconds_per_sample: None,
        }
    }

    #[tokio::test]
    async fn repeats_sweep_the_batch_and_report_mean_std_and_time() {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let mut dev = SimDevice::new(model, settings()).unwrap();
        let x = Array2::from_elem((4, 12), 0.5f32);
        let batch = Batch {
            x,
            theta: Array2::from_elem((1, 40), 0.5),
            repeats: 3,
            return_repeats: true,
        };
        let m = dev
            .execute(&validate(dev.spec(), batch).unwrap())
            .await
            .unwrap();
        let all = m.y_repeats.as_ref().unwrap();
        assert_eq!(all.dim(), (3, 4, 7));
        let mean = all.mean_axis(ndarray::Axis(0)).unwrap();
        assert_eq!(m.y, mean);
        assert!(
            m.y_std.as_ref().unwrap().iter().all(|s| *s > 0.0),
            "true rig is noisy"
        );
        // ABAB: row 0's last shot is after row 3's first; 0.005 s per shot
        assert!((m.t_start[1] - m.t_start[0] - 0.005).abs() < 1e-12);
        assert!((m.t_end[0] - m.t_start[0] - (2.0 * 4.0 + 1.0) * 0.005).abs() < 1e-12);
        assert_eq!(m.calibration_id, "sim-shg-true-0000000000000003");
    }

    #[tokio::test]
    async fn applied_values_are_the_quantised_ones() {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let mut dev = SimDevice::new(model, settings()).unwrap();
        let batch = Batch::shared(Array2::from_elem((1, 12), 0.5f32), &[0.3; 40]);
        let m = dev
            .execute(&validate(dev.spec(), batch).unwrap())
            .await
            .unwrap();
        assert_eq!(m.applied_x[[0, 0]], 32.0 / 63.0);
        assert_eq!(m.applied_theta[[0, 0]], 19.0 / 63.0);
        assert!((dev.spec().input_step - 1.0 / 63.0).abs() < 1e-7);
    }

    #[tokio::test]
    async fn quantising_a_clamped_value_never_crosses_the_hard_limit() {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let s = SimSettings {
            param_limits: Some(Range::new(0.0, 0.9)),
            policy: LimitPolicy::Clamp,
            ..settings()
        };
        let mut dev = SimDevice::new(model, s).unwrap();
        // 0.9 rounds to 57/63 = 0.905 on the 6-bit grid: above the limit.
        let batch = Batch::shared(Array2::from_elem((1, 12), 0.5f32), &[0.95; 40]);
        let m = dev
            .execute(&validate(dev.spec(), batch).unwrap())
            .await
            .unwrap();
        assert!(
            m.applied_theta.iter().all(|&v| v == 56.0 / 63.0),
            "{}",
            m.applied_theta
        );
        assert!(m.flags[0].clamped);

        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let s = SimSettings {
            param_limits: Some(Range::new(0.501, 0.505)),
            ..settings()
        };
        let err = SimDevice::new(model, s).unwrap_err().to_string();
        assert!(
            err.contains("holds no value the actuator can apply"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn loopback_echoes_and_limits_must_fit_the_actuator() {
        let mut dev = SimDevice::new(LoopbackModel::new(2, 1), settings()).unwrap();
        let batch = Batch::shared(array![[1.0, 2.0], [3.0, 4.0]], &[9.0]);
        let m = dev
            .execute(&validate(dev.spec(), batch).unwrap())
            .await
            .unwrap();
        assert_eq!(m.y, array![[1.0, 2.0], [3.0, 4.0]]);

        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let err = SimDevice::new(
            model,
            SimSettings {
                input_limits: Some(Range::new(0.0, 2.0)),
                ..settings()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("limits.input: [0, 2] reaches outside"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn emulated_pace_holds_the_device_for_samples_times_seconds() {
        let s = SimSettings {
            emulate_seconds_per_sample: Some(0.002),
            ..settings()
        };
        let mut dev = SimDevice::new(LoopbackModel::new(1, 0), s).unwrap();
        let batch = Batch {
            x: Array2::zeros((32, 1)),
            theta: Array2::zeros((1, 0)),
            repeats: 2,
            return_repeats: false,
        };
        let v = validate(dev.spec(), batch).unwrap();
        let t0 = Instant::now();
        dev.execute(&v).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(128));
    }
}
