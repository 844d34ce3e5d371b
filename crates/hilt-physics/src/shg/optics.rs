//! The optical path from mask to second-harmonic spectrum, as pure
//! functions of precomputed per-rig constants (the SH field as the
//! autoconvolution of the shaped spectrum, as in Wright et al. 2022):
//! quantised mask → crosstalk → shaped field with residual chirp →
//! χ(2) autoconvolution with phase matching → |B|².

use num_complex::Complex64;

/// Speed of light, nm/fs.
const C_NM_PER_FS: f64 = 299.792_458;

/// Constants of one rig's optics, fixed at construction.
#[derive(Debug, Clone)]
pub(crate) struct Optics {
    /// Source field amplitude per channel (including channel gain errors),
    /// at the current spectral registration.
    pub source: Vec<f64>,
    /// exp(iφ_k): residual chirp and ripple.
    pub phase: Vec<Complex64>,
    /// Odd-length normalised crosstalk kernel; empty = ideal shaper.
    pub xtalk: Vec<f64>,
    /// Mask levels (2^bits − 1); 0 = continuous.
    pub levels: f64,
    /// Phase-matching transfer H_n per SH grid point n = k + l.
    pub pm: Vec<Complex64>,
}

/// Angular frequency step between shaper channels, rad/fs.
pub(crate) fn channel_step(center_nm: f64, span_nm: f64, n: usize) -> f64 {
    2.0 * std::f64::consts::PI * C_NM_PER_FS * span_nm / (center_nm * center_nm) / n as f64
}

/// Offset of channel k from the band centre, in channel units.
pub(crate) fn offset(k: usize, n: usize) -> f64 {
    k as f64 - (n as f64 - 1.0) / 2.0
}

/// Gaussian source field `exp(−Ω²/4σ²)` (intensity std σ), centre shifted
/// by `shift` channels (spectral registration error in the true rig).
pub(crate) fn source_field(n: usize, fwhm_fraction: f64, shift: f64) -> Vec<f64> {
    let sigma = fwhm_fraction * n as f64 / (8.0 * 2f64.ln()).sqrt();
    (0..n)
        .map(|k| (-(offset(k, n) - shift).powi(2) / (4.0 * sigma * sigma)).exp())
        .collect()
}

/// Registration moves smaller than this (channels) are not re-applied:
/// at 0.1 channel/h the source is recomputed every ~36 virtual seconds,
/// not every shot, and the step is far below the shaper's resolution.
const REGISTRATION_STEP: f64 = 1e-3;

/// The source spectrum as the shaper's pixels see it. The envelope slides
/// with the registration; the per-channel transmission errors belong to
/// the pixels and stay put.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub fwhm_fraction: f64,
    pub gains: Vec<f64>,
    /// Offset at calibration, channels.
    pub shift0: f64,
    /// Signed creep, channels per virtual second.
    pub rate: f64,
    applied: f64,
}

impl Registration {
    pub fn new(fwhm_fraction: f64, gains: Vec<f64>, shift0: f64, rate: f64) -> Self {
        Registration {
            fwhm_fraction,
            gains,
            shift0,
            rate,
            applied: shift0,
        }
    }

    pub fn source(&self) -> Vec<f64> {
        let mut s = source_field(self.gains.len(), self.fwhm_fraction, self.applied);
        s.iter_mut().zip(&self.gains).for_each(|(a, g)| *a *= g);
        s
    }

    /// Offset at virtual time `t` seconds, channels.
    pub fn shift_at(&self, t: f64) -> f64 {
        self.shift0 + self.rate * t
    }

    /// Brings `source` to the registration of virtual time `t`.
    pub fn follow(&mut self, t: f64, source: &mut Vec<f64>) {
        let shift = self.shift_at(t);
        if (shift - self.applied).abs() >= REGISTRATION_STEP {
            self.applied = shift;
            *source = self.source();
        }
    }
}

/// exp(i·(β2Ω²/2 + β3Ω³/6 + ripple_k)).
pub(crate) fn spectral_phase(dw: f64, beta2: f64, beta3: f64, ripple: &[f64]) -> Vec<Complex64> {
    let n = ripple.len();
    (0..n)
        .map(|k| {
            let w = offset(k, n) * dw;
            let phi = beta2 * w * w / 2.0 + beta3 * w * w * w / 6.0 + ripple[k];
            Complex64::from_polar(1.0, phi)
        })
        .collect()
}

/// Normalised Gaussian kernel of std `sigma` (in samples), ±3σ wide.
pub(crate) fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return Vec::new();
    }
    let half = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-half..=half)
        .map(|i| (-(i as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Zero-padded convolution with an odd kernel (light falls off the edge).
/// Tap by tap over the whole output (one long vectorisable loop each),
/// so each output still sums its taps in kernel order.
#[multiversion::multiversion(targets("x86_64+avx2"))]
pub(crate) fn blur(input: &[f64], kernel: &[f64], out: &mut [f64]) {
    if kernel.is_empty() {
        out.copy_from_slice(input);
        return;
    }
    let half = kernel.len() / 2;
    let n = input.len();
    out.fill(0.0);
    for (t, &w) in kernel.iter().enumerate() {
        // Output i reads input i + t − half, which must lie in 0..n.
        let (o, i) = if t < half {
            (half - t, 0)
        } else {
            (0, t - half)
        };
        if o >= out.len() || i >= n {
            continue;
        }
        for (y, x) in out[o..].iter_mut().zip(&input[i..]) {
            *y += w * x;
        }
    }
}

/// Phase matching H_n = sinc(a/2)·e^{ia/2}, a = gvm·L·Ω_sum, for the SH
/// grid point n = k + l (Ω_sum = (n − (N−1))·dΩ). Depends on k + l only,
/// so it factors out of the autoconvolution sum.
pub(crate) fn phase_matching(n: usize, dw: f64, gvm_l_fs: f64) -> Vec<Complex64> {
    (0..2 * n - 1)
        .map(|g| {
            let a = gvm_l_fs * (g as f64 - (n as f64 - 1.0)) * dw;
            let h = a / 2.0;
            let sinc = if h.abs() < 1e-12 { 1.0 } else { h.sin() / h };
            Complex64::from_polar(sinc, h)
        })
        .collect()
}

/// Scratch buffers, so a shot allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct Scratch {
    /// This shot's multiplicative noise on each channel's field (1 = none);
    /// the model fills it before each shot.
    pub field_noise: Vec<f64>,
    /// The shot's pixel noise, drawn before it is applied.
    pub normals: Vec<f64>,
    quantised: Vec<f64>,
    blurred: Vec<f64>,
    /// The shaped field E_k and the autoconvolution's sums on the 2N−1
    /// grid, as real and imaginary parts: separate arrays let the
    /// compiler vectorise the sums.
    re: Vec<f64>,
    im: Vec<f64>,
    sum_re: Vec<f64>,
    sum_im: Vec<f64>,
}

impl Scratch {
    pub fn new(n: usize) -> Self {
        Scratch {
            field_noise: vec![1.0; n],
            normals: Vec::with_capacity(4 * n),
            quantised: vec![0.0; n],
            blurred: vec![0.0; n],
            re: vec![0.0; n],
            im: vec![0.0; n],
            sum_re: vec![0.0; 2 * n - 1],
            sum_im: vec![0.0; 2 * n - 1],
        }
    }
}

impl Optics {
    pub fn n(&self) -> usize {
        self.source.len()
    }

    /// SH intensity |B_n|² on the 2N−1 grid for mask `m` ∈ [0,1]^N.
    pub fn sh_intensity(&self, m: &[f64], s: &mut Scratch, out: &mut [f64]) {
        let n = self.n();
        debug_assert_eq!(m.len(), n);
        debug_assert_eq!(out.len(), 2 * n - 1);
        if self.levels > 0.0 {
            quantise(m, self.levels, &mut s.quantised);
        } else {
            s.quantised.copy_from_slice(m);
        }
        blur(&s.quantised, &self.xtalk, &mut s.blurred);
        for k in 0..n {
            let e = self.phase[k] * (self.source[k] * s.field_noise[k] * s.blurred[k]);
            (s.re[k], s.im[k]) = (e.re, e.im);
        }
        // B_g = H_g Σ_{k+l=g} E_k E_l, each off-diagonal pair counted
        // twice. Row by row (E_k times E_l for every l > k, into g = k + l)
        // each sum gathers its terms in order of k, as a per-g loop over k
        // would, and every row is one long vectorisable loop.
        autoconvolve(&s.re, &s.im, &mut s.sum_re, &mut s.sum_im);
        for (g, o) in out.iter_mut().enumerate() {
            let mut acc = Complex64::new(s.sum_re[g], s.sum_im[g]) * 2.0;
            if g % 2 == 0 {
                let e = Complex64::new(s.re[g / 2], s.im[g / 2]);
                acc += e * e;
            }
            *o = (self.pm[g] * acc).norm_sqr();
        }
    }
}

/// `m` on a grid of `levels` steps over [0, 1]. Where the CPU has
/// SSE4.1, `round` is an instruction rather than a call into libm.
#[multiversion::multiversion(targets("x86_64+sse4.1"))]
fn quantise(m: &[f64], levels: f64, out: &mut [f64]) {
    for (q, v) in out.iter_mut().zip(m) {
        *q = (v * levels).round() / levels;
    }
}

/// `sum_g = Σ_{k<l, k+l=g} E_k E_l` for E given as (`re`, `im`).
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn autoconvolve(re: &[f64], im: &[f64], sum_re: &mut [f64], sum_im: &mut [f64]) {
    let n = re.len();
    sum_re.fill(0.0);
    sum_im.fill(0.0);
    for k in 0..n {
        let (er, ei) = (re[k], im[k]);
        let g = 2 * k + 1..k + n;
        let terms = re[k + 1..].iter().zip(&im[k + 1..]);
        let sums = sum_re[g.clone()].iter_mut().zip(&mut sum_im[g]);
        for ((fr, fi), (br, bi)) in terms.zip(sums) {
            *br += er * fr - ei * fi;
            *bi += er * fi + ei * fr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ideal(n: usize) -> Optics {
        Optics {
            source: source_field(n, 0.5, 0.0),
            phase: vec![Complex64::new(1.0, 0.0); n],
            xtalk: Vec::new(),
            levels: 0.0,
            pm: vec![Complex64::new(1.0, 0.0); 2 * n - 1],
        }
    }

    #[test]
    fn autoconvolution_matches_the_naive_double_sum() {
        let n = 9;
        let mut o = ideal(n);
        o.phase = spectral_phase(0.01, 300.0, 5000.0, &[0.1; 9]);
        o.pm = phase_matching(n, 0.01, 60.0);
        let m: Vec<f64> = (0..n).map(|k| ((k * 7) % 5) as f64 / 4.0).collect();
        let mut s = Scratch::new(n);
        let mut fast = vec![0.0; 2 * n - 1];
        o.sh_intensity(&m, &mut s, &mut fast);
        for (g, fast_g) in fast.iter().enumerate() {
            let mut b = Complex64::new(0.0, 0.0);
            for k in 0..n {
                for l in 0..n {
                    if k + l == g {
                        b += o.phase[k] * o.source[k] * m[k] * o.phase[l] * o.source[l] * m[l];
                    }
                }
            }
            let slow = (o.pm[g] * b).norm_sqr();
            assert!((fast_g - slow).abs() <= 1e-12 * slow.max(1.0), "n={g}");
        }
    }

    #[test]
    fn kernel_is_normalised_and_blur_conserves_interior_light() {
        let k = gaussian_kernel(0.7);
        assert_eq!(k.len() % 2, 1);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mut input = vec![0.0; 11];
        input[5] = 1.0;
        let mut out = vec![0.0; 11];
        blur(&input, &k, &mut out);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(out[4] > 0.0 && out[4] == out[6]);
    }

    #[test]
    fn phase_matching_is_one_at_the_centre_and_falls_off() {
        let pm = phase_matching(64, 0.001, 57.0);
        assert!((pm[63].norm() - 1.0).abs() < 1e-12);
        assert!(pm[0].norm() < pm[40].norm() && pm[40].norm() < 1.0);
    }
}
