//! Interlocks: budgets over sliding windows that protect a rig beyond its
//! per-value limits. A speaker coil heats with the RMS of its drive
//! (physics.md §2.2) and a paced rig has a duty cycle, so a stream of
//! batches that are each within limits can still harm it. A batch is
//! charged when it is admitted, before the rig sees it, and refused
//! whole when it would overrun a budget: never cut short on the hardware.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hilt_core::{ControlEncoding, ValidBatch};

use crate::Error;

/// `[device.interlock]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InterlockConfig {
    /// At most this many samples (rows × repeats) per window.
    pub samples: Option<Budget>,
    /// At most this much drive energy per window: each sample costs the
    /// mean square of the drive the rig plays (x and θ composed by the
    /// device's published encoding: gain, copies, clip), so a sample at
    /// full scale ±1 throughout costs 1. Plate and circuit only.
    pub drive_energy: Option<Budget>,
}

/// An amount allowed per sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// What the window may hold.
    pub amount: f64,
    /// How far back the window reaches.
    pub window: Duration,
}

#[derive(Debug)]
struct Charge {
    at: Instant,
    samples: f64,
    energy: f64,
}

/// One device's interlock and what it has admitted lately.
#[derive(Debug, Default)]
pub struct Interlock {
    config: InterlockConfig,
    /// How x and θ become what the rig plays.
    encoding: Option<ControlEncoding>,
    ledger: Mutex<VecDeque<Charge>>,
}

/// What a batch costs against the budgets: samples, and drive energy (the
/// mean square of each row's played drive, times repeats).
fn cost(batch: &ValidBatch, encoding: Option<&ControlEncoding>) -> (f64, f64) {
    let repeats = f64::from(batch.repeats());
    let mean_square = |v: &[f32]| {
        let n = v.len().max(1) as f64;
        v.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n
    };
    let mut drive = vec![0f32; encoding.map_or(0, ControlEncoding::n_controls)];
    let mut energy = 0.0;
    for i in 0..batch.rows() {
        let x = batch.x().row(i).to_vec();
        let t = batch.theta_row(i).to_vec();
        energy += match encoding {
            Some(enc) => {
                enc.compose(&x, &t, &mut drive);
                mean_square(&drive)
            }
            // Without a published encoding, x and θ as they are.
            None => mean_square(&[x, t].concat()),
        };
    }
    (batch.rows() as f64 * repeats, energy * repeats)
}

impl Interlock {
    /// An interlock with nothing admitted yet, for a device whose drive
    /// is composed by `encoding` (its published channel map).
    pub fn new(config: InterlockConfig, encoding: Option<ControlEncoding>) -> Self {
        Interlock {
            config,
            encoding,
            ledger: Mutex::new(VecDeque::new()),
        }
    }

    /// Charge `batch` against the budgets, or refuse it naming the budget
    /// and when there is room again.
    pub fn admit(&self, batch: &ValidBatch) -> Result<(), Error> {
        if self.config.samples.is_none() && self.config.drive_energy.is_none() {
            return Ok(());
        }
        let (samples, energy) = cost(batch, self.encoding.as_ref());
        self.admit_at(samples, energy, Instant::now())
    }

    fn admit_at(&self, samples: f64, energy: f64, now: Instant) -> Result<(), Error> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let longest = [self.config.samples, self.config.drive_energy]
            .into_iter()
            .flatten()
            .map(|b| b.window)
            .max()
            .unwrap_or_default();
        while ledger
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.at) >= longest)
        {
            ledger.pop_front();
        }
        if let Some(b) = self.config.samples {
            check(
                &ledger,
                b,
                now,
                samples,
                |c| c.samples,
                "sample budget",
                "samples",
            )?;
        }
        if let Some(b) = self.config.drive_energy {
            check(
                &ledger,
                b,
                now,
                energy,
                |c| c.energy,
                "drive-energy budget",
                "full-scale² samples",
            )?;
        }
        ledger.push_back(Charge {
            at: now,
            samples,
            energy,
        });
        Ok(())
    }
}

/// Whether `need` more fits budget `b` given what the ledger holds.
fn check(
    ledger: &VecDeque<Charge>,
    b: Budget,
    now: Instant,
    need: f64,
    of: impl Fn(&Charge) -> f64,
    what: &str,
    unit: &str,
) -> Result<(), Error> {
    let window = b.window.as_secs_f64();
    if need > b.amount {
        return Err(Error::Interlock(format!(
            "this batch alone needs {need:.4} {unit}, more than the whole {what} of {} per \
             {window} s: split it into smaller batches",
            b.amount
        )));
    }
    let inside = |c: &&Charge| now.saturating_duration_since(c.at) < b.window;
    let used: f64 = ledger.iter().filter(inside).map(&of).sum();
    if used + need <= b.amount {
        return Ok(());
    }
    // Room comes back as the oldest charges leave the window.
    let mut left = used;
    let mut refill = b.window;
    for c in ledger.iter().filter(inside) {
        left -= of(c);
        if left + need <= b.amount {
            refill = (c.at + b.window).saturating_duration_since(now);
            break;
        }
    }
    Err(Error::Interlock(format!(
        "{what} of {} {unit} per {window} s: {used:.4} used, this batch needs {need:.4}; \
         room again in {:.3} s",
        b.amount,
        refill.as_secs_f64()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(amount: f64, window_ms: u64) -> Interlock {
        Interlock::new(
            InterlockConfig {
                samples: Some(Budget {
                    amount,
                    window: Duration::from_millis(window_ms),
                }),
                drive_energy: None,
            },
            None,
        )
    }

    #[test]
    fn a_budget_refuses_past_its_amount_and_refills_as_charges_age() {
        let lock = rate(100.0, 1000);
        let t0 = Instant::now();
        lock.admit_at(60.0, 0.0, t0).unwrap();
        lock.admit_at(30.0, 0.0, t0 + Duration::from_millis(400))
            .unwrap();
        let err = lock
            .admit_at(20.0, 0.0, t0 + Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        // The first charge leaves the window at t0 + 1 s: 0.5 s from now.
        assert!(err.contains("sample budget of 100"), "{err}");
        assert!(err.contains("90.0000 used"), "{err}");
        assert!(err.contains("room again in 0.500 s"), "{err}");
        // Then it fits.
        lock.admit_at(20.0, 0.0, t0 + Duration::from_millis(1000))
            .unwrap();
    }

    #[test]
    fn a_batch_larger_than_the_whole_budget_says_to_split_it() {
        let lock = rate(10.0, 1000);
        let err = lock.admit_at(11.0, 0.0, Instant::now()).unwrap_err();
        assert!(err.to_string().contains("split it"), "{err}");
        assert!(matches!(err, Error::Interlock(_)));
    }

    #[test]
    fn drive_energy_is_the_mean_square_of_the_played_drive_times_repeats() {
        use hilt_core::{Batch, Device};
        let model =
            hilt_physics::LoopbackModel::new(&hilt_physics::LoopbackConfig { n_in: 2, n_par: 2 })
                .unwrap();
        let settings = hilt_drivers::DeviceSettings {
            id: "d".into(),
            input_limits: None,
            param_limits: None,
            policy: hilt_core::LimitPolicy::Reject,
            max_batch: 4,
            max_repeats: 4,
        };
        let dev = hilt_drivers::SimDevice::new(model, settings, Default::default()).unwrap();
        let mut b = Batch::shared(ndarray::array![[0.5, 0.5], [1.0, -1.0]], &[0.5, 0.0]);
        b.repeats = 2;
        let v = hilt_core::validate(dev.spec(), b).unwrap();
        // Superposed, clipped at ±1 (a plate's drive): row 0 plays
        // [1.0, 0.5], row 1 plays [1 (clipped from 1.5), -1].
        let superpose = ControlEncoding {
            layout: "superpose".into(),
            input_index: vec![0, 1],
            param_index: vec![0, 1],
            input_scale: 1.0,
            control_min: -1.0,
            control_max: 1.0,
        };
        let (samples, energy) = cost(&v, Some(&superpose));
        assert_eq!(samples, 4.0);
        let want = 2.0 * ((1.0 + 0.25) / 2.0 + (1.0 + 1.0) / 2.0);
        assert!((energy - want).abs() < 1e-12, "{energy} vs {want}");
        // No encoding: the values as they are.
        let (_, raw) = cost(&v, None);
        let want = 2.0 * ((0.25 + 0.25 + 0.25) / 4.0 + (1.0 + 1.0 + 0.25) / 4.0);
        assert!((raw - want).abs() < 1e-12, "{raw} vs {want}");
    }
}
