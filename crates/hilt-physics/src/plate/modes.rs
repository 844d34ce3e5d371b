//! Damped modal oscillators, discretised exactly for a force held
//! constant over each audio sample (step-invariant): the plate adds no
//! integration error of its own, so its impulse response rings at exactly
//! the configured frequencies and decays at exactly the configured Q.

use std::f64::consts::PI;

/// One mode: q̈ + (ω/Q) q̇ + ω² q = g·F.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mode {
    pub freq_hz: f64,
    pub q: f64,
    /// Drive coupling Φ_m(r_d)/M_m (force → modal acceleration).
    pub drive: f64,
    /// Microphone coupling c_m (modal acceleration → pressure).
    pub mic: f64,
}

/// The per-sample update of one mode: state ← Φ·state + Γ·F.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Step {
    phi: [[f64; 2]; 2],
    gamma: [f64; 2],
    omega2: f64,
    damping: f64,
    drive: f64,
    mic: f64,
}

impl Step {
    /// `scale` multiplies the frequency (temperature drift).
    pub fn new(m: &Mode, dt: f64, scale: f64) -> Self {
        let w = 2.0 * PI * m.freq_hz * scale;
        let zeta = 1.0 / (2.0 * m.q);
        let sigma = zeta * w;
        let wd = w * (1.0 - zeta * zeta).sqrt();
        let e = (-sigma * dt).exp();
        let (s, c) = (wd * dt).sin_cos();
        let phi = [
            [e * (c + sigma / wd * s), e * s / wd],
            [-e * w * w / wd * s, e * (c - sigma / wd * s)],
        ];
        // Response to a unit force step from rest after dt.
        let gamma = [(1.0 - e * (c + sigma / wd * s)) / (w * w), e * s / wd];
        Step {
            phi,
            gamma: [gamma[0] * m.drive, gamma[1] * m.drive],
            omega2: w * w,
            damping: 2.0 * sigma,
            drive: m.drive,
            mic: m.mic,
        }
    }

    /// Advance `[q, q̇]` by one sample under force `f`; returns the
    /// microphone's share of the modal acceleration at the sample start.
    #[inline]
    pub fn advance(&self, state: &mut [f64; 2], f: f64) -> f64 {
        let [q, v] = *state;
        let acc = self.drive * f - self.damping * v - self.omega2 * q;
        state[0] = self.phi[0][0] * q + self.phi[0][1] * v + self.gamma[0] * f;
        state[1] = self.phi[1][0] * q + self.phi[1][1] * v + self.gamma[1] * f;
        self.mic * acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ring_matches_the_analytic_damped_cosine() {
        let m = Mode {
            freq_hz: 1000.0,
            q: 20.0,
            drive: 1.0,
            mic: 1.0,
        };
        let dt = 1.0 / 48_000.0;
        let st = Step::new(&m, dt, 1.0);
        let mut s = [1.0, 0.0];
        let w = 2.0 * PI * 1000.0;
        let zeta: f64 = 1.0 / 40.0;
        let wd = w * (1.0 - zeta * zeta).sqrt();
        for n in 1..=2000 {
            st.advance(&mut s, 0.0);
            let t = n as f64 * dt;
            let exact = (-zeta * w * t).exp() * ((wd * t).cos() + zeta * w / wd * (wd * t).sin());
            assert!(
                (s[0] - exact).abs() < 1e-12,
                "sample {n}: {} vs {exact}",
                s[0]
            );
        }
    }

    #[test]
    fn constant_force_settles_at_the_static_deflection() {
        let m = Mode {
            freq_hz: 500.0,
            q: 5.0,
            drive: 3.0,
            mic: 1.0,
        };
        let st = Step::new(&m, 1e-4, 1.0);
        let mut s = [0.0, 0.0];
        for _ in 0..20_000 {
            st.advance(&mut s, 2.0);
        }
        let w = 2.0 * PI * 500.0;
        assert!((s[0] - 6.0 / (w * w)).abs() < 1e-12 * 6.0 / (w * w) + 1e-18);
    }
}
