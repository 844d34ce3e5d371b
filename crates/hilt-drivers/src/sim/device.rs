use std::time::{Duration, SystemTime};

use hilt_core::{
    Backend, Device, DeviceSpec, Error as CoreError, FirmwareIdentity, Measurement, ValidBatch,
};
use hilt_physics::PhysicalModel;
use tokio::time::Instant;

use super::run::{Grid, run};
use crate::Error;
use crate::spec::{DeviceSettings, build_spec};

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

impl<M: PhysicalModel> SimDevice<M> {
    pub fn new(model: M, s: DeviceSettings) -> Result<Self, Error> {
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
        let mut spec = build_spec(&model, &s, Backend::Sim)?;
        let (kind, variant) = (model.kind(), model.variant().as_str());
        spec.calibration_id = format!("sim-{kind}-{variant}-{:016x}", s.seed);
        spec.firmware = FirmwareIdentity {
            model: format!("hilt-sim/{kind}"),
            serial_number: format!("sim-{:016x}", s.seed),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Some(v) = s.emulate_seconds_per_sample {
            spec.seconds_per_sample = v;
        }
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
    use hilt_core::{Batch, LimitPolicy, Range, validate};
    use hilt_physics::Variant;
    use hilt_physics::shg::{ShgConfig, ShgModel};
    use ndarray::{Array2, array};

    use super::*;
    use crate::LoopbackModel;

    fn settings() -> DeviceSettings {
        DeviceSettings {
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
        let s = DeviceSettings {
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
        let s = DeviceSettings {
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
            DeviceSettings {
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
        let s = DeviceSettings {
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
