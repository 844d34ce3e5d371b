use rand::Rng;
use rand_distr::StandardNormal;

/// Ornstein–Uhlenbeck process, the standard model for slow drift that
/// wanders but stays bounded (laser power, temperature). Advanced with the
/// exact discretisation, so any step length on the virtual clock gives the
/// right statistics: stationary std `sigma`, correlation time `tau`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrnsteinUhlenbeck {
    sigma: f64,
    tau: f64,
    value: f64,
}

impl OrnsteinUhlenbeck {
    /// Starts at 0 (the value at calibration time).
    pub fn new(sigma: f64, tau: f64) -> Self {
        OrnsteinUhlenbeck {
            sigma,
            tau,
            value: 0.0,
        }
    }

    /// The current offset from the calibration value, in `sigma`'s unit.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Advance by `dt` (same time unit as `tau`) and return the new value;
    /// a no-op for `sigma` 0 or `dt` <= 0.
    pub fn step<R: Rng + ?Sized>(&mut self, dt: f64, rng: &mut R) -> f64 {
        if self.sigma == 0.0 || dt <= 0.0 {
            return self.value;
        }
        let a = (-dt / self.tau).exp();
        let z: f64 = rng.sample(StandardNormal);
        self.value = self.value * a + self.sigma * (1.0 - a * a).sqrt() * z;
        self.value
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn stationary_std_and_correlation_time_match() {
        let (sigma, tau, dt) = (0.02, 10.0, 1.0);
        let mut p = OrnsteinUhlenbeck::new(sigma, tau);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..1000 {
            p.step(dt, &mut rng); // burn in
        }
        let xs: Vec<f64> = (0..200_000).map(|_| p.step(dt, &mut rng)).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let lag = tau as usize;
        let cov = xs
            .windows(lag + 1)
            .map(|w| (w[0] - mean) * (w[lag] - mean))
            .sum::<f64>()
            / (n - lag as f64);
        assert!(
            (var.sqrt() / sigma - 1.0).abs() < 0.05,
            "std {}",
            var.sqrt()
        );
        // autocorrelation at lag tau is e^-1
        assert!(
            (cov / var - (-1.0f64).exp()).abs() < 0.05,
            "rho {}",
            cov / var
        );
    }

    #[test]
    fn zero_sigma_never_moves() {
        let mut p = OrnsteinUhlenbeck::new(0.0, 5.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(p.step(100.0, &mut rng), 0.0);
    }
}
