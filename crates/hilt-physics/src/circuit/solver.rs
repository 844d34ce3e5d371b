//! The RLC + BJT circuit as a stiff ODE (a DAE when the junction is
//! ideal), integrated with the trapezoidal rule and a Newton solve per
//! step, as SPICE does: A-stable for the nanosecond junction time constant
//! at a 0.1 µs step, second-order accurate for the 50 kHz ring. Here: the
//! parts, the equations and the plain 3×3 Newton step, the reference for
//! `Integrator`, which solves the same step faster.

/// Component values in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    /// Series inductance, H.
    pub l: f64,
    /// Capacitance on the capacitor node, F (parasitics included).
    pub c: f64,
    /// Series resistance, including the inductor's ESR.
    pub r: f64,
    /// Base resistance; 0 = ideal junction on the capacitor node.
    pub rb: f64,
    /// Junction capacitance (needs rb > 0).
    pub cje: f64,
    /// Junction saturation current, A.
    pub i_s: f64,
    /// Forward current gain.
    pub beta: f64,
    /// n·V_T at the calibration temperature.
    pub n_vt: f64,
    /// Nominal supply voltage (the model passes the drooped one).
    pub vcc: f64,
    /// Collector resistor, Ω.
    pub rc: f64,
    /// Collector–emitter saturation voltage.
    pub vce_sat: f64,
}

/// `[i_L, v_C, v_B]`.
pub type State = [f64; 3];

/// Newton stops when its correction (V; mA for the current) is below this.
pub(super) const TOL: f64 = 1e-9;
pub(super) const MAX_ITERATIONS: usize = 50;

#[inline]
fn correction_size(d: &[f64; 3]) -> f64 {
    (d[0] * 1e3).abs().max(d[1].abs()).max(d[2].abs())
}

/// Junction currents above this many n·V_T are continued linearly, so a
/// Newton overshoot cannot overflow `exp` (SPICE's junction limiting).
pub(super) const EXP_LIMIT: f64 = 40.0;

impl Components {
    /// Base current and its slope at junction voltage `v` (shifted by
    /// `dv`: the temperature's V_BE shift).
    #[inline]
    pub fn base(&self, v: f64, dv: f64) -> (f64, f64) {
        let a = (v - dv) / self.n_vt;
        let k = self.i_s / self.beta;
        if a < EXP_LIMIT {
            let e = a.exp();
            (k * (e - 1.0), k * e / self.n_vt)
        } else {
            let e = EXP_LIMIT.exp();
            (k * (e * (1.0 + a - EXP_LIMIT) - 1.0), k * e / self.n_vt)
        }
    }

    /// The collector's drop below the supply `vcc`: R_c·β·i_B, clipped
    /// where the transistor saturates.
    pub fn collector_drop(&self, ib: f64, vcc: f64) -> f64 {
        (self.rc * self.beta * ib).clamp(0.0, (vcc - self.vce_sat).max(0.0))
    }

    /// Derivatives of the differential states at `s`, and the junction's
    /// base current and slope there (one `exp` serves both the rates and
    /// the Newton Jacobian).
    #[inline]
    fn rates(&self, s: &State, u: f64, dv: f64) -> ([f64; 3], f64, f64) {
        let [i, vc, vb] = *s;
        let di = (u - self.r * i - vc) / self.l;
        if self.rb == 0.0 {
            let (ib, gb) = self.base(vc, dv);
            ([di, (i - ib) / self.c, 0.0], ib, gb)
        } else {
            let ig = (vc - vb) / self.rb;
            let (ib, gb) = self.base(vb, dv);
            let dvb = if self.cje > 0.0 {
                (ig - ib) / self.cje
            } else {
                0.0
            };
            ([di, (i - ig) / self.c, dvb], ib, gb)
        }
    }

    /// The trapezoidal residual at `x` (rates `f`, junction current and
    /// slope `ib`, `gb`) after `prev` (rates `f0`), and its Jacobian.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn newton_system(
        &self,
        prev: &State,
        f0: &[f64; 3],
        x: &State,
        f: &[f64; 3],
        ib: f64,
        gb: f64,
        hh: f64,
    ) -> ([[f64; 3]; 3], [f64; 3]) {
        let mut g = [
            x[0] - prev[0] - hh * (f0[0] + f[0]),
            x[1] - prev[1] - hh * (f0[1] + f[1]),
            0.0,
        ];
        let mut j = [[0.0; 3]; 3];
        j[0] = [1.0 + hh * self.r / self.l, hh / self.l, 0.0];
        if self.rb == 0.0 {
            j[1] = [-hh / self.c, 1.0 + hh * gb / self.c, 0.0];
            j[2] = [0.0, -1.0, 1.0];
            g[2] = x[2] - x[1];
        } else {
            let gr = 1.0 / self.rb;
            j[1] = [-hh / self.c, 1.0 + hh * gr / self.c, -hh * gr / self.c];
            if self.cje > 0.0 {
                g[2] = x[2] - prev[2] - hh * (f0[2] + f[2]);
                j[2] = [0.0, -hh * gr / self.cje, 1.0 + hh * (gr + gb) / self.cje];
            } else {
                g[2] = (x[1] - x[2]) * gr - ib;
                j[2] = [0.0, gr, -gr - gb];
            }
        }
        (j, g)
    }

    /// One trapezoidal step of length `h` under input `u`, the plain way:
    /// Euler predictor, Newton until a correction is below `TOL`, rates
    /// evaluated afresh at the new state (`f0` holds them at `s` on entry
    /// and on return). The reference `Integrator` is tested and
    /// benchmarked against.
    pub fn step_exact(&self, s: &mut State, f0: &mut [f64; 3], u: f64, dv: f64, h: f64) {
        let prev = *s;
        let mut x = [
            prev[0] + h * f0[0],
            prev[1] + h * f0[1],
            prev[2] + h * f0[2],
        ];
        if self.rb == 0.0 {
            x[2] = x[1];
        }
        let hh = h / 2.0;
        for _ in 0..MAX_ITERATIONS {
            let (f, ib, gb) = self.rates(&x, u, dv);
            let (j, g) = self.newton_system(&prev, f0, &x, &f, ib, gb, hh);
            let d = solve_tridiagonal(j, g);
            for k in 0..3 {
                x[k] -= d[k];
            }
            if correction_size(&d) < TOL {
                break;
            }
        }
        *s = x;
        *f0 = self.rates(&x, u, dv).0;
    }

    /// Rates at `s` under input `u`: what `step_exact` needs on entry
    /// whenever the input changes.
    pub fn rates_at(&self, s: &State, u: f64, dv: f64) -> [f64; 3] {
        self.rates(s, u, dv).0
    }
}

/// The Newton matrices here are tridiagonal (i couples to v_C, v_C to
/// v_B) and diagonally dominant, so the Thomas algorithm needs no
/// pivoting: a quarter of the work of general elimination.
#[inline]
pub(super) fn solve_tridiagonal(a: [[f64; 3]; 3], b: [f64; 3]) -> [f64; 3] {
    let c0 = a[0][1] / a[0][0];
    let d0 = b[0] / a[0][0];
    let m1 = a[1][1] - a[1][0] * c0;
    let c1 = a[1][2] / m1;
    let d1 = (b[1] - a[1][0] * d0) / m1;
    let m2 = a[2][2] - a[2][1] * c1;
    let x2 = (b[2] - a[2][1] * d1) / m2;
    let x1 = d1 - c1 * x2;
    [d0 - c0 * x1, x1, x2]
}

/// Gaussian elimination with partial pivoting: the reference the
/// tridiagonal solver is tested against.
#[cfg(test)]
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let p = (col..3)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap_or(col);
        a.swap(col, p);
        b.swap(col, p);
        for row in col + 1..3 {
            let m = a[row][col] / a[col][col];
            let pivot = a[col];
            for (dst, src) in a[row].iter_mut().zip(pivot).skip(col) {
                *dst -= m * src;
            }
            b[row] -= m * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn solve3_solves() {
        let a = [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let x = [1.0, -2.0, 0.5];
        let b = [
            a[0][0] * x[0] + a[0][1] * x[1] + a[0][2] * x[2],
            a[1][0] * x[0] + a[1][1] * x[1] + a[1][2] * x[2],
            a[2][0] * x[0] + a[2][1] * x[1] + a[2][2] * x[2],
        ];
        let got = solve3(a, b);
        for k in 0..3 {
            assert!((got[k] - x[k]).abs() < 1e-12);
        }
    }

    #[test]
    fn tridiagonal_solver_agrees_with_elimination() {
        let a = [[1.2, 0.3, 0.0], [-0.4, 2.0, 0.7], [0.0, 0.5, -1.9]];
        let b = [0.3, -1.0, 2.0];
        let (t, g) = (solve_tridiagonal(a, b), solve3(a, b));
        for k in 0..3 {
            assert!((t[k] - g[k]).abs() < 1e-14, "{t:?} vs {g:?}");
        }
    }

    /// `CircuitConfig`'s default parts with an ideal junction (R_b = 0).
    pub(in crate::circuit) fn nominal_parts() -> Components {
        Components {
            l: 1e-3,
            c: 10e-9,
            r: 100.0,
            rb: 0.0,
            cje: 0.0,
            i_s: 1e-14,
            beta: 100.0,
            n_vt: 0.02585,
            vcc: 5.0,
            rc: 1000.0,
            vce_sat: 0.2,
        }
    }
}
