//! The trapezoidal step of the circuit, solved as one scalar equation.
//!
//! The circuit is linear except for the junction's exponential, which
//! sits on one node (v_B, or v_C for an ideal junction). So the step
//! `J₀·x₁ = P·x₀ + q·u + w − σ₀·φ(x₀) e_j − σ₁·φ(x₁) e_j` (φ the
//! junction's forward current above its reverse −I_S/β, j its node) is
//!
//! ```text
//! x₁ = x_L − σ₁·φ(v)·z,   x_L = M·x₀ + n·u + c − σ₀·φ(x₀)·z,   z = J₀⁻¹ e_j
//! ```
//!
//! with M, n, c, z fixed by the parts and the step, and v = x₁[j] the
//! root of `v − x_L[j] + σ₁ z_j φ(v) = 0`. Newton on that scalar costs an
//! exponential and one division per iteration, where Newton on the 3×3
//! system (`Components::step_exact`) costs some twenty divisions; and
//! while the junction is off (φ below `I_OFF`) the step is the affine map
//! alone. Same equations, same tolerance: the trajectories agree to
//! within 1e-7 V (tested against `step_exact`).

use super::solver::{Components, EXP_LIMIT, MAX_ITERATIONS, State, TOL, solve_tridiagonal};

/// Forward junction current, A, below which the junction counts as off
/// and φ is taken as zero. That moves the base node by about I·R_b
/// (1e-10 V at 1 kΩ) and the capacitor by I·t/C over the ring's ~20 µs
/// memory (2e-10 V at 10 nF): far inside the tested 1e-7 V and the ADC's
/// 0.3 mV step.
const I_OFF: f64 = 1e-13;

/// How many circuits `Integrator::advance_together` steps side by side:
/// enough independent chains to keep a core's pipelines busy.
pub const LANES: usize = 4;

/// Where an integration stands: the state and the junction's forward
/// current and slope there, which the next step starts from. Start from
/// `Point::default()` (at rest, junction off) and step it with one
/// `Integrator` only: the current it carries is that integrator's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    /// `[i_L, v_C, v_B]`.
    s: State,
    /// φ at `s` (0 while the junction is off).
    phi: f64,
    /// dφ/dv at `s`.
    slope: f64,
}

/// The circuit of `parts` stepped by `h` with the junction's V_BE shifted
/// by `dv` (one shot's conditions).
#[derive(Debug, Clone)]
pub struct Integrator {
    m: [[f64; 3]; 3],
    n: State,
    c: State,
    /// J₀⁻¹ e_j times σ₁, and times σ₀.
    z1: State,
    z0: State,
    /// The junction's node in the state.
    j: usize,
    /// φ(v) = k·exp((v − dv)/n·V_T), continued linearly past `EXP_LIMIT`.
    k: f64,
    dv: f64,
    inv_n_vt: f64,
    /// The junction is off below this voltage.
    v_off: f64,
}

impl Point {
    /// `[i_L, v_C, v_B]` now.
    pub fn state(&self) -> State {
        self.s
    }
}

impl Integrator {
    /// `J₀` is `Components::newton_system`'s Jacobian at zero junction
    /// slope; the rows follow the same three junction models.
    pub fn new(parts: &Components, h: f64, dv: f64) -> Self {
        let Components {
            l, c, r, rb, cje, ..
        } = *parts;
        let hh = h / 2.0;
        let k = parts.i_s / parts.beta;
        let mut jm = [[0.0; 3]; 3];
        let mut p = [[0.0; 3]; 3];
        let mut w = [0.0; 3];
        jm[0] = [1.0 + hh * r / l, hh / l, 0.0];
        p[0] = [1.0 - hh * r / l, -hh / l, 0.0];
        let q = [h / l, 0.0, 0.0];
        // The junction current's coefficient in its row, at the new state
        // and at the old one.
        let (j, sigma1, sigma0);
        if rb == 0.0 {
            // v_B is v_C; the junction draws from the capacitor.
            jm[1] = [-hh / c, 1.0, 0.0];
            p[1] = [hh / c, 1.0, 0.0];
            w[1] = h * k / c;
            jm[2] = [0.0, -1.0, 1.0];
            (j, sigma1, sigma0) = (1, hh / c, hh / c);
        } else {
            let gr = 1.0 / rb;
            jm[1] = [-hh / c, 1.0 + hh * gr / c, -hh * gr / c];
            p[1] = [hh / c, 1.0 - hh * gr / c, hh * gr / c];
            if cje > 0.0 {
                jm[2] = [0.0, -hh * gr / cje, 1.0 + hh * gr / cje];
                p[2] = [0.0, hh * gr / cje, 1.0 - hh * gr / cje];
                w[2] = h * k / cje;
                (j, sigma1, sigma0) = (2, hh / cje, hh / cje);
            } else {
                // (v_C − v_B)/R_b is the junction's current, at every step.
                jm[2] = [0.0, gr, -gr];
                w[2] = -k;
                (j, sigma1, sigma0) = (2, -1.0, 0.0);
            }
        }
        let mut m = [[0.0; 3]; 3];
        for col in 0..3 {
            let x = solve_tridiagonal(jm, [p[0][col], p[1][col], p[2][col]]);
            for row in 0..3 {
                m[row][col] = x[row];
            }
        }
        let mut e = [0.0; 3];
        e[j] = 1.0;
        let z = solve_tridiagonal(jm, e);
        Integrator {
            m,
            n: solve_tridiagonal(jm, q),
            c: solve_tridiagonal(jm, w),
            z1: z.map(|v| sigma1 * v),
            z0: z.map(|v| sigma0 * v),
            j,
            k,
            dv,
            inv_n_vt: 1.0 / parts.n_vt,
            v_off: dv + (I_OFF / k).ln().min(EXP_LIMIT) * parts.n_vt,
        }
    }

    /// `steps` steps under the held input `u`.
    pub fn advance(&self, p: &mut Point, u: f64, steps: usize) {
        let drive = self.drive(u);
        for _ in 0..steps {
            self.step(p, &drive);
        }
    }

    /// `advance` for up to `LANES` independent circuits (one per shot, each
    /// with its integrator, point and input), a step of each in turn. One
    /// circuit's step is a serial chain (exponential, division, update)
    /// that leaves most of a core idle; independent chains side by side
    /// fill it. Each circuit's numbers are those `advance` gives it alone;
    /// more than `LANES` go `LANES` at a time.
    pub fn advance_together(lanes: &mut [(&Integrator, Point, f64)], steps: usize) {
        for group in lanes.chunks_mut(LANES) {
            let mut drives = [[0.0; 3]; LANES];
            for ((step, _, u), d) in group.iter().zip(&mut drives) {
                *d = step.drive(*u);
            }
            for _ in 0..steps {
                for ((step, p, _), d) in group.iter_mut().zip(&drives) {
                    step.step(p, d);
                }
            }
        }
    }

    #[inline]
    fn drive(&self, u: f64) -> State {
        std::array::from_fn(|r| self.n[r] * u + self.c[r])
    }

    #[inline]
    fn step(&self, p: &mut Point, drive: &State) {
        let (m, s) = (&self.m, &p.s);
        let xl: State = std::array::from_fn(|r| {
            m[r][0] * s[0] + m[r][1] * s[1] + m[r][2] * s[2] + drive[r] - self.z0[r] * p.phi
        });
        let (vl, sz) = (xl[self.j], self.z1[self.j]);
        // Newton's first iterate from the junction linearised where it
        // was: no exponential needed.
        let mut v = (vl - sz * (p.phi - p.slope * s[self.j])) / (1.0 + sz * p.slope);
        if v < self.v_off {
            *p = Point {
                s: xl,
                phi: 0.0,
                slope: 0.0,
            };
            return;
        }
        let (mut phi, mut slope) = (0.0, 0.0);
        for _ in 0..MAX_ITERATIONS {
            let (f, g) = self.phi(v);
            let fp = 1.0 + sz * g;
            let d = (v - vl + sz * f) / fp;
            v -= d;
            // φ at the new v, to first order: its error is below the
            // estimate of Newton's next correction.
            (phi, slope) = (f - g * d, g * (1.0 - d * self.inv_n_vt));
            let next = d * d * 0.5 * self.inv_n_vt * (sz * g / fp).abs();
            if d.abs() < TOL || next < TOL {
                break;
            }
        }
        let mut x: State = std::array::from_fn(|r| xl[r] - self.z1[r] * phi);
        x[self.j] = v;
        *p = Point { s: x, phi, slope };
    }

    /// The junction's forward current above −k at voltage `v`, and its
    /// slope (`Components::base` plus k).
    #[inline]
    fn phi(&self, v: f64) -> (f64, f64) {
        let a = (v - self.dv) * self.inv_n_vt;
        if a < EXP_LIMIT {
            let e = self.k * a.exp();
            (e, e * self.inv_n_vt)
        } else {
            let e = self.k * EXP_LIMIT.exp();
            (e * (1.0 + a - EXP_LIMIT), e * self.inv_n_vt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::solver::tests::nominal_parts;

    const JUNCTIONS: [(f64, f64); 3] = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 10e-12)];

    #[test]
    fn linear_rlc_rings_at_its_resonance() {
        // Junction never conducts at −1 V: a plain series RLC. The capacitor
        // voltage's zero crossings are π/ω_d apart.
        let c = nominal_parts();
        let h = 1e-8;
        let step = Integrator::new(&c, h, 0.0);
        let mut prev = 0.0;
        let mut crossings = Vec::new();
        let mut p = Point::default();
        for n in 0..20_000 {
            step.advance(&mut p, -1.0, 1);
            let v = p.s[1] + 1.0;
            if n > 0 && prev * v < 0.0 {
                crossings.push(n as f64 * h);
            }
            prev = v;
        }
        let w0 = 1.0 / (c.l * c.c).sqrt();
        let alpha = c.r / (2.0 * c.l);
        let half = std::f64::consts::PI / (w0 * w0 - alpha * alpha).sqrt();
        let measured = (crossings[4] - crossings[0]) / 4.0;
        assert!((measured / half - 1.0).abs() < 1e-3, "{measured} vs {half}");
    }

    /// A drive that switches the junction on hard, off, and through its
    /// knee, under each of the three junction models and a warm junction:
    /// the integrator stays on the fully converged 3×3 Newton step, and
    /// spends the drive's negative stretches with the junction off.
    #[test]
    fn the_integrator_follows_the_fully_converged_step() {
        let h = 1e-7;
        let drive: Vec<f64> = (0..400)
            .map(|k| [1.8, 0.0, -1.5, 0.7, 0.65, 2.0, -0.2, 0.68][(k / 5) % 8])
            .collect();
        for (rb, cje) in JUNCTIONS {
            for dv in [0.0, -0.02] {
                let parts = Components {
                    rb,
                    cje,
                    ..nominal_parts()
                };
                let step = Integrator::new(&parts, h, dv);
                let (mut s, mut p) = ([0.0; 3], Point::default());
                let (mut worst, mut off, mut on) = (0f64, 0, 0);
                for &u in &drive {
                    let mut f = parts.rates_at(&s, u, dv);
                    for _ in 0..10 {
                        parts.step_exact(&mut s, &mut f, u, dv, h);
                    }
                    step.advance(&mut p, u, 10);
                    if p.phi == 0.0 {
                        off += 1;
                    } else if p.phi > 1e-6 {
                        on += 1;
                    }
                    worst = worst.max((p.s[1] - s[1]).abs()).max((p.s[2] - s[2]).abs());
                    worst = worst.max((p.s[0] - s[0]).abs() * 1e3);
                }
                assert!(worst < 1e-7, "rb {rb}, cje {cje}, dv {dv}: {worst} apart");
                assert!(off > 50 && on > 50, "{off} samples off, {on} on");
            }
        }
    }

    /// Six circuits stepped together (a full group and a partial one),
    /// each under its own input and temperature, end where each alone does,
    /// bit for bit.
    #[test]
    fn circuits_stepped_together_are_each_the_circuit_alone() {
        let parts = Components {
            rb: 1000.0,
            cje: 10e-12,
            ..nominal_parts()
        };
        let steps: Vec<Integrator> = (0..6)
            .map(|i| Integrator::new(&parts, 1e-7, -0.004 * i as f64))
            .collect();
        let drive = |i: usize, t: usize| [1.8, -0.7, 0.66, 0.0, 2.0][(t / 3 + i) % 5];
        let mut lanes: Vec<(&Integrator, Point, f64)> =
            steps.iter().map(|s| (s, Point::default(), 0.0)).collect();
        let mut alone = vec![Point::default(); 6];
        for t in 0..60 {
            for (i, lane) in lanes.iter_mut().enumerate() {
                lane.2 = drive(i, t);
            }
            Integrator::advance_together(&mut lanes, 10);
            for (i, p) in alone.iter_mut().enumerate() {
                steps[i].advance(p, drive(i, t), 10);
            }
        }
        for ((_, together, _), alone) in lanes.iter().zip(&alone) {
            assert_eq!(together.state(), alone.state());
        }
    }
}
