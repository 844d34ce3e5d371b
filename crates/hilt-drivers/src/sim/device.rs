use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hilt_core::{
    Backend, Device, DeviceSpec, Error as CoreError, FirmwareIdentity, Measurement, ValidBatch,
};
use hilt_physics::PhysicalModel;
use tokio::time::Instant;

use super::sweep::sweep_batch;
use crate::Error;
use crate::grid::Grid;
use crate::spec::{DeviceSettings, build_spec};

/// What only a simulator has: the seed its model was built with (its
/// mismatch, noise and drift), and the wall-clock pace it may emulate so
/// streaming and busy-fraction work sees a rig's timing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimSettings {
    /// The seed the model was built with; named in the spec and the
    /// calibration id.
    pub seed: u64,
    /// Hold the device this long per sample (row × repeat).
    pub pace: Option<Duration>,
}

/// The longest an emulated pace may hold the device for one batch.
const MAX_HOLD: Duration = Duration::from_secs(86_400);

/// Shots in `rows` × `repeats`, as the multiplier of a pace (saturating:
/// a count past u32 holds the device as long as the longest hold).
fn sample_count(rows: usize, repeats: u32) -> u32 {
    u32::try_from(rows as u64 * u64::from(repeats)).unwrap_or(u32::MAX)
}

/// A sweep expected to take less than this runs on the caller's task:
/// handing it to the blocking pool costs two thread wake-ups, more than
/// the whole sweep of the loopback device or of a one-row batch, and
/// blocking a runtime thread this briefly delays no one's I/O.
const INLINE_BELOW: Duration = Duration::from_micros(50);

/// A physics model driven like a rig. A sweep longer than
/// [`INLINE_BELOW`] (as the previous sweep's time per shot predicts) runs
/// on the blocking pool, so one busy simulator never stalls the daemon's
/// I/O; a shorter one runs in place.
#[derive(Debug)]
pub struct SimDevice<M> {
    spec: DeviceSpec,
    /// Shared with the blocking pool, so a batch given up part-way (its
    /// caller gone) leaves the model here for the next one; poisoned only
    /// if a batch panicked (on the pool or in place), after which the
    /// device reports itself faulted.
    model: Arc<Mutex<M>>,
    pace: Option<Duration>,
    /// The sweep of a batch whose caller left: told to stop at its next
    /// repeat, and waited for before the next batch, so abandoned sweeps
    /// never pile up and batches still run in order.
    abandoned: Option<tokio::task::JoinHandle<Result<Swept, CoreError>>>,
    /// The last sweep's time per shot (rows × repeats), the sweep alone;
    /// unknown until the first batch, which goes to the pool.
    per_shot: Option<Duration>,
}

/// A sweep's measurement and how long the sweep alone took.
type Swept = (Measurement, Duration);

/// Tells an abandoned sweep to stop, when the future measuring is dropped.
struct StopOnDrop(Option<Arc<AtomicBool>>);

impl StopOnDrop {
    /// The batch was answered: nothing to stop.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl<M: PhysicalModel> SimDevice<M> {
    /// A simulator of `model` under `s`'s limits; `sim.seed` must be the
    /// seed `model` was built with.
    pub fn new(model: M, s: DeviceSettings, sim: SimSettings) -> Result<Self, Error> {
        if let Some(pace) = sim.pace {
            // A full batch must be held for a time a timer can express
            // (and a lab would wait for): a day at most.
            let samples = sample_count(s.max_batch, s.max_repeats);
            if pace.checked_mul(samples).is_none_or(|t| t > MAX_HOLD) {
                return Err(Error::Config {
                    field: "emulate_seconds_per_sample".into(),
                    reason: format!(
                        "{} s × a full batch ({} rows × {} repeats) holds the device longer \
                         than a day",
                        pace.as_secs_f64(),
                        s.max_batch,
                        s.max_repeats
                    ),
                });
            }
        }
        let mut spec = build_spec(&model, &s, Backend::Sim)?;
        let (kind, variant) = (model.kind(), model.variant().as_str());
        spec.model = variant.to_string();
        spec.seed = sim.seed;
        spec.calibration_id = format!("sim-{kind}-{variant}-{:016x}", sim.seed);
        spec.firmware = FirmwareIdentity {
            model: format!("hilt-sim/{kind}"),
            serial_number: format!("sim-{:016x}", sim.seed),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Some(pace) = sim.pace {
            spec.seconds_per_sample = pace.as_secs_f64();
        }
        Ok(SimDevice {
            spec,
            model: Arc::new(Mutex::new(model)),
            pace: sim.pace,
            abandoned: None,
            per_shot: None,
        })
    }
}

impl<M: PhysicalModel> Device for SimDevice<M> {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    fn cancel_safe(&self) -> bool {
        true
    }

    fn fault(&self) -> Option<String> {
        self.model.is_poisoned().then(|| {
            "simulator faulted by an internal error in an earlier batch; restart hiltd".to_string()
        })
    }

    async fn execute(&mut self, batch: ValidBatch) -> Result<Measurement, CoreError> {
        let faulted = format!(
            "{}: simulator faulted by an earlier internal error; restart hiltd",
            self.spec.id
        );
        if let Some(previous) = self.abandoned.take() {
            let _ = previous.await;
        }
        let started = Instant::now();
        let wall_start = SystemTime::now();
        let grid = Grid::of(&self.spec);
        let shots = sample_count(batch.rows(), batch.repeats());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_on_drop = StopOnDrop(Some(Arc::clone(&stop)));
        let short = self
            .per_shot
            .is_some_and(|p| p.saturating_mul(shots) < INLINE_BELOW);
        let (mut m, took) = if short {
            // A panic here poisons the model as one on the pool would.
            let model = &self.model;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut model = model.lock().map_err(|_| CoreError::Unavailable(faulted))?;
                let t = std::time::Instant::now();
                Ok((sweep_batch(&mut *model, grid, batch, &stop), t.elapsed()))
            }))
            .map_err(|_| CoreError::Internal("simulator task failed: panicked".into()))??
        } else {
            let model = Arc::clone(&self.model);
            let sweep = self.abandoned.insert(tokio::task::spawn_blocking(move || {
                let mut model = model.lock().map_err(|_| CoreError::Unavailable(faulted))?;
                let t = std::time::Instant::now();
                Ok((sweep_batch(&mut *model, grid, batch, &stop), t.elapsed()))
            }));
            let joined = sweep.await;
            // Finished: nothing left to wait for (had this future been
            // dropped above, the handle would have stayed for the next
            // batch).
            self.abandoned = None;
            joined.map_err(|e| CoreError::Internal(format!("simulator task failed: {e}")))??
        };
        self.per_shot = Some(took / shots.max(1));
        if let Some(pace) = self.pace {
            // Bounded by `new`: a full batch is held at most a day.
            let hold = pace.checked_mul(shots).unwrap_or(MAX_HOLD).min(MAX_HOLD);
            tokio::time::sleep_until(started + hold).await;
        }
        m.wall_start = wall_start;
        m.wall_end = SystemTime::now();
        m.calibration_id.clone_from(&self.spec.calibration_id);
        m.device_id.clone_from(&self.spec.id);
        if let Some(enc) = &self.spec.encoding {
            m.flag_clipped_controls(enc);
        }
        stop_on_drop.disarm();
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
    use hilt_physics::{LoopbackConfig, LoopbackModel};

    fn settings() -> DeviceSettings {
        DeviceSettings {
            id: "dev".into(),
            input_limits: None,
            param_limits: None,
            policy: LimitPolicy::Reject,
            max_batch: 64,
            max_repeats: 8,
        }
    }

    /// Seed 3, no pacing: what the models below are built with.
    const SIM: SimSettings = SimSettings {
        seed: 3,
        pace: None,
    };

    /// A noisy SHG rig; two of them measure the same numbers.
    fn true_shg() -> SimDevice<ShgModel> {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        SimDevice::new(model, settings(), SIM).unwrap()
    }

    fn loopback(n_in: usize, n_par: usize) -> LoopbackModel {
        LoopbackModel::new(&LoopbackConfig { n_in, n_par }).unwrap()
    }

    #[tokio::test]
    // The guard is held across the await on purpose: it is what keeps the
    // sweep from finishing before the caller gives up.
    #[allow(clippy::await_holding_lock)]
    async fn an_abandoned_batch_stops_and_the_next_one_waits_for_it() {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let mut dev = SimDevice::new(model, settings(), SIM).unwrap();
        let spec = dev.spec().clone();
        let batch = |rows| {
            let b = Batch {
                x: Array2::from_elem((rows, 12), 0.5f32),
                theta: Array2::from_elem((1, 40), 0.5),
                repeats: 8,
                return_repeats: false,
            };
            validate(&spec, b).unwrap()
        };
        let big = batch(64);
        // The model is held here, so the sweep cannot finish before the
        // caller gives up, however the threads are scheduled.
        let model = Arc::clone(&dev.model);
        let held = model.lock().unwrap();
        // The caller gives up at once: the future is dropped mid-sweep.
        let gone = tokio::time::timeout(Duration::ZERO, dev.execute(big)).await;
        assert!(gone.is_err(), "a sweep blocked on the model cannot finish");
        assert!(
            dev.abandoned.is_some(),
            "the sweep is kept to be waited for"
        );
        drop(held);
        let small = batch(1);
        let m = dev.execute(small).await.unwrap();
        assert!(dev.abandoned.is_none());
        assert_eq!(m.y.nrows(), 1);
        assert!(dev.fault().is_none());
    }

    #[tokio::test]
    async fn short_sweeps_run_in_place_and_measure_what_the_pool_measures() {
        // Two devices of one seed (noise and drift included): one always
        // on the pool, one always in place.
        let (mut pool, mut here) = (true_shg(), true_shg());
        let spec = pool.spec().clone();
        let mut last = None;
        for rows in [1, 5, 2] {
            let b = Batch {
                x: Array2::from_shape_fn((rows, 12), |(i, j)| (i * 12 + j) as f32 / 60.0),
                theta: Array2::from_elem((1, 40), 0.25),
                repeats: 2,
                return_repeats: true,
            };
            let v = validate(&spec, b).unwrap();
            pool.per_shot = None;
            here.per_shot = Some(Duration::ZERO);
            let (a, b) = (
                pool.execute(v.clone()).await.unwrap(),
                here.execute(v).await.unwrap(),
            );
            assert_eq!(a.y_repeats, b.y_repeats);
            assert_eq!((a.t_start, a.t_end), (b.t_start, b.t_end));
            last = here.per_shot;
        }
        // What it learnt decides the next batch: a nanosecond-scale shot.
        assert!(last.is_some_and(|p| p < INLINE_BELOW));
    }

    #[tokio::test]
    async fn a_column_major_batch_measures_as_its_row_major_copy() {
        let (mut rows, mut cols) = (true_shg(), true_shg());
        let x = Array2::from_shape_fn((3, 12), |(i, j)| (i * 12 + j) as f32 / 40.0);
        let theta = Array2::from_shape_fn((3, 40), |(i, j)| (i + j) as f32 / 50.0);
        let batch = |x: Array2<f32>, theta: Array2<f32>| Batch {
            x,
            theta,
            repeats: 2,
            return_repeats: true,
        };
        let (fx, ft) = (crate::column_major(&x), crate::column_major(&theta));
        assert!(!fx.is_standard_layout() && !ft.is_standard_layout());
        let spec = rows.spec().clone();
        let a = rows
            .execute(validate(&spec, batch(x, theta)).unwrap())
            .await
            .unwrap();
        let b = cols
            .execute(validate(&spec, batch(fx, ft)).unwrap())
            .await
            .unwrap();
        assert_eq!(a.y_repeats, b.y_repeats);
        assert_eq!(
            (a.applied_x, a.applied_theta),
            (b.applied_x, b.applied_theta)
        );
    }

    #[test]
    fn a_stopped_sweep_measures_no_further_repeat() {
        use std::sync::atomic::AtomicBool;
        let mut model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let spec = SimDevice::new(
            ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap(),
            settings(),
            SIM,
        )
        .unwrap()
        .spec()
        .clone();
        let b = Batch::shared(Array2::from_elem((2, 12), 0.5f32), &[0.5; 40]);
        let v = validate(&spec, b).unwrap();
        let clock = model.clock();
        super::super::sweep::sweep_batch(&mut model, Grid::of(&spec), v, &AtomicBool::new(true));
        assert_eq!(model.clock(), clock, "a shot was measured after the stop");
    }

    #[tokio::test]
    async fn a_drive_clipped_at_its_limit_flags_the_row_clamped() {
        use hilt_physics::plate::{PlateConfig, PlateModel};
        use hilt_physics::waveform::DriveConfig;
        let cfg = PlateConfig {
            drive: DriveConfig {
                n_in: 8,
                limit: 0.5,
                ..DriveConfig::default()
            },
            n_bins: 4,
            ..PlateConfig::default()
        };
        let model = PlateModel::new(cfg, Variant::Nominal, 3).unwrap();
        let mut dev = SimDevice::new(model, settings(), SIM).unwrap();
        let n_par = dev.spec().n_par;
        // Superposed: x + θ per element; 0.1 + 0.4 is at the limit, 0.4 +
        // 0.4 past it. Both are inside the per-value limits.
        let x = ndarray::array![[0.1f32; 8], [0.4; 8]];
        let batch = Batch::shared(x, &vec![0.4; n_par]);
        let m = dev
            .execute(validate(dev.spec(), batch).unwrap())
            .await
            .unwrap();
        let clamped: Vec<bool> = m.flags.iter().map(|f| f.clamped).collect();
        assert_eq!(clamped, [false, true]);
    }

    #[tokio::test]
    async fn repeats_sweep_the_batch_and_report_mean_std_and_time() {
        let model = ShgModel::new(ShgConfig::default(), Variant::True, 3).unwrap();
        let mut dev = SimDevice::new(model, settings(), SIM).unwrap();
        let x = Array2::from_elem((4, 12), 0.5f32);
        let batch = Batch {
            x,
            theta: Array2::from_elem((1, 40), 0.5),
            repeats: 3,
            return_repeats: true,
        };
        let m = dev
            .execute(validate(dev.spec(), batch).unwrap())
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
        let mut dev = SimDevice::new(model, settings(), SIM).unwrap();
        let batch = Batch::shared(Array2::from_elem((1, 12), 0.5f32), &[0.3; 40]);
        let m = dev
            .execute(validate(dev.spec(), batch).unwrap())
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
        let mut dev = SimDevice::new(model, s, SIM).unwrap();
        // 0.9 rounds to 57/63 = 0.905 on the 6-bit grid: above the limit.
        let batch = Batch::shared(Array2::from_elem((1, 12), 0.5f32), &[0.95; 40]);
        let m = dev
            .execute(validate(dev.spec(), batch).unwrap())
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
        let err = SimDevice::new(model, s, SIM).unwrap_err().to_string();
        assert!(
            err.contains("holds no value the actuator can apply"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn loopback_echoes_and_limits_must_fit_the_actuator() {
        let mut dev = SimDevice::new(loopback(2, 1), settings(), SIM).unwrap();
        let batch = Batch::shared(array![[1.0, 2.0], [3.0, 4.0]], &[9.0]);
        let m = dev
            .execute(validate(dev.spec(), batch).unwrap())
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
            SIM,
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
        let sim = SimSettings {
            pace: Some(Duration::from_millis(2)),
            ..SIM
        };
        let mut dev = SimDevice::new(loopback(1, 0), settings(), sim).unwrap();
        let batch = Batch {
            x: Array2::zeros((32, 1)),
            theta: Array2::zeros((1, 0)),
            repeats: 2,
            return_repeats: false,
        };
        let v = validate(dev.spec(), batch).unwrap();
        let t0 = Instant::now();
        dev.execute(v).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(128));
    }

    #[test]
    fn a_pace_that_would_hold_a_full_batch_for_days_is_refused() {
        let sim = SimSettings {
            pace: Some(Duration::from_secs(10)),
            ..SIM
        };
        // 64 rows × 8 repeats × 10 s = 85 min: fine; 1e6 s a sample is not.
        SimDevice::new(loopback(1, 0), settings(), sim).unwrap();
        let sim = SimSettings {
            pace: Some(Duration::from_secs(1_000_000)),
            ..SIM
        };
        let err = SimDevice::new(loopback(1, 0), settings(), sim)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("emulate_seconds_per_sample:") && err.contains("longer than a day"),
            "{err}"
        );
    }

    /// A loopback whose shot panics on a negative input: an internal
    /// error of the simulator, as a bug in a model would be.
    #[derive(Debug)]
    struct Fragile(LoopbackModel);

    impl PhysicalModel for Fragile {
        fn kind(&self) -> hilt_physics::RigKind {
            self.0.kind()
        }
        fn variant(&self) -> Variant {
            self.0.variant()
        }
        fn n_in(&self) -> usize {
            self.0.n_in()
        }
        fn n_par(&self) -> usize {
            self.0.n_par()
        }
        fn n_out(&self) -> usize {
            self.0.n_out()
        }
        fn input_range(&self) -> (f32, f32) {
            self.0.input_range()
        }
        fn param_range(&self) -> (f32, f32) {
            self.0.param_range()
        }
        fn input_step(&self) -> f32 {
            0.0
        }
        fn param_step(&self) -> f32 {
            0.0
        }
        fn units(&self) -> (&'static str, &'static str, &'static str) {
            self.0.units()
        }
        fn channel_map(&self) -> Option<&hilt_core::ControlEncoding> {
            None
        }
        fn hyperparameters(&self) -> std::collections::BTreeMap<String, String> {
            self.0.hyperparameters()
        }
        fn seconds_per_sample(&self) -> f64 {
            0.0
        }
        fn clock(&self) -> f64 {
            self.0.clock()
        }
        fn quantize(&self, _x: &mut [f32], _theta: &mut [f32]) {}
        fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
            assert!(x[0] >= 0.0, "negative input reached the model");
            self.0.shot(x, theta, y)
        }
    }

    #[tokio::test]
    async fn a_simulator_that_panicked_is_faulted_for_good_and_says_why() {
        let mut dev = SimDevice::new(Fragile(loopback(1, 0)), settings(), SIM).unwrap();
        let batch = |v: f32| Batch::shared(array![[v]], &[]);
        dev.execute(validate(dev.spec(), batch(1.0)).unwrap())
            .await
            .unwrap();
        assert_eq!(dev.fault(), None);
        let err = dev
            .execute(validate(dev.spec(), batch(-1.0)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Internal(_)), "{err}");
        assert!(dev.fault().is_some_and(|why| why.contains("restart hiltd")));
        // Every later batch is refused, however good.
        let err = dev
            .execute(validate(dev.spec(), batch(1.0)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Unavailable(_)), "{err}");
    }
}
