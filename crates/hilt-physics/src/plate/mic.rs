//! The microphone chain: the pressure reaches it after the acoustic delay
//! and passes its band (RBJ-cookbook Butterworth biquads, bilinear
//! transform), then the ADC adds room and converter noise.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// A second-order IIR section, direct form I.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    pub fn highpass(fc: f64, fs: f64) -> Self {
        let w = 2.0 * PI * fc / fs;
        let (s, c) = w.sin_cos();
        let alpha = s / (2.0 * FRAC_1_SQRT_2);
        let a0 = 1.0 + alpha;
        Biquad {
            b: [(1.0 + c) / 2.0 / a0, -(1.0 + c) / a0, (1.0 + c) / 2.0 / a0],
            a: [-2.0 * c / a0, (1.0 - alpha) / a0],
        }
    }

    pub fn lowpass(fc: f64, fs: f64) -> Self {
        let w = 2.0 * PI * fc / fs;
        let (s, c) = w.sin_cos();
        let alpha = s / (2.0 * FRAC_1_SQRT_2);
        let a0 = 1.0 + alpha;
        Biquad {
            b: [(1.0 - c) / 2.0 / a0, (1.0 - c) / a0, (1.0 - c) / 2.0 / a0],
            a: [-2.0 * c / a0, (1.0 - alpha) / a0],
        }
    }

    /// Filters `x` in place from rest.
    pub fn run(&self, x: &mut [f64]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for v in x.iter_mut() {
            let y =
                self.b[0] * *v + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            x2 = x1;
            x1 = *v;
            y2 = y1;
            y1 = y;
            *v = y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain(f: &Biquad, freq: f64, fs: f64) -> f64 {
        let n = (fs * 0.5) as usize;
        let mut x: Vec<f64> = (0..n)
            .map(|i| (2.0 * PI * freq * i as f64 / fs).sin())
            .collect();
        f.run(&mut x);
        let tail = &x[n / 2..];
        (2.0 * tail.iter().map(|v| v * v).sum::<f64>() / tail.len() as f64).sqrt()
    }

    #[test]
    fn butterworth_sections_are_3db_down_at_the_corner() {
        let fs = 48_000.0;
        let hp = Biquad::highpass(100.0, fs);
        let lp = Biquad::lowpass(20_000.0, fs);
        assert!((gain(&hp, 100.0, fs) - FRAC_1_SQRT_2).abs() < 0.01);
        assert!((gain(&hp, 5000.0, fs) - 1.0).abs() < 0.01);
        assert!((gain(&lp, 20_000.0, fs) - FRAC_1_SQRT_2).abs() < 0.01);
        assert!((gain(&lp, 1000.0, fs) - 1.0).abs() < 0.01);
    }
}
