//! The voice coil that shakes the plate (Thiele–Small, weakly nonlinear):
//!   L di/dt = V − R i − Bl(z) ż,   M z̈ = Bl(z) i − R_m ż − k(z) z,
//! Bl(z) = Bl0(1 − b2 z²), k(z) = k0(1 + k2 z²). RK4 at a multiple of the
//! audio rate, the drive held over each audio sample.

/// Coil constants in SI units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coil {
    pub re: f64,
    pub le: f64,
    pub bl: f64,
    pub mass: f64,
    pub rm: f64,
    pub k: f64,
    /// Per m².
    pub b2: f64,
    pub k2: f64,
}

/// RK4 substeps per audio sample: the coil is integrated at 4·fs (192 kHz
/// at 48 kHz), so its electrical time constant L_e/R_e (25 µs at the
/// defaults) spans about five substeps.
pub(crate) const OVERSAMPLE: usize = 4;

impl Coil {
    #[inline]
    fn deriv(&self, s: [f64; 3], v: f64, re: f64) -> [f64; 3] {
        let [i, z, zd] = s;
        let bl = self.bl * (1.0 - self.b2 * z * z);
        let k = self.k * (1.0 + self.k2 * z * z);
        [
            (v - re * i - bl * zd) / self.le,
            zd,
            (bl * i - self.rm * zd - k * z) / self.mass,
        ]
    }

    /// Force on the plate, averaged over each audio sample, for the drive
    /// `volts` (one value per sample). `re_scale` is the winding's
    /// resistance relative to cold (coil heating).
    pub fn force(&self, volts: &[f64], dt: f64, re_scale: f64, out: &mut Vec<f64>) {
        out.clear();
        let h = dt / OVERSAMPLE as f64;
        let re = self.re * re_scale;
        let mut s = [0.0; 3];
        let add =
            |a: [f64; 3], b: [f64; 3], c: f64| [a[0] + c * b[0], a[1] + c * b[1], a[2] + c * b[2]];
        for &v in volts {
            let mut f = 0.0;
            for _ in 0..OVERSAMPLE {
                let k1 = self.deriv(s, v, re);
                let k2 = self.deriv(add(s, k1, h / 2.0), v, re);
                let k3 = self.deriv(add(s, k2, h / 2.0), v, re);
                let k4 = self.deriv(add(s, k3, h), v, re);
                for j in 0..3 {
                    s[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
                }
                f += self.bl * (1.0 - self.b2 * s[1] * s[1]) * s[0];
            }
            out.push(f / OVERSAMPLE as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coil() -> Coil {
        Coil {
            re: 4.0,
            le: 1e-4,
            bl: 3.0,
            mass: 6.6e-3,
            rm: 0.5,
            k: 1700.0,
            b2: 0.0,
            k2: 0.0,
        }
    }

    #[test]
    fn dc_drive_settles_at_ohms_law_and_hookes_law() {
        let c = coil();
        let mut f = Vec::new();
        c.force(&vec![1.0; 48_000], 1.0 / 48_000.0, 1.0, &mut f);
        // i = V/R, static: k z = Bl i, force on the plate Bl i.
        let last = *f.last().unwrap();
        assert!((last - 3.0 / 4.0).abs() < 1e-6, "force {last}");
    }

    #[test]
    fn the_hotter_winding_passes_less_current() {
        let c = coil();
        let (mut cold, mut hot) = (Vec::new(), Vec::new());
        c.force(&vec![1.0; 4800], 1.0 / 48_000.0, 1.0, &mut cold);
        c.force(&vec![1.0; 4800], 1.0 / 48_000.0, 1.1, &mut hot);
        let r = hot.last().unwrap() / cold.last().unwrap();
        assert!((r - 1.0 / 1.1).abs() < 1e-3, "ratio {r}");
    }
}
