use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::config::{Layout, ShgConfig};
use super::layout::channel_map;
use super::optics::{self, Optics, Scratch};
use hilt_core::ControlEncoding;

use crate::{Error, OrnsteinUhlenbeck, PhysicalModel, RigKind, Variant};

/// RNG streams of one seed: component draws and shot noise never share
/// numbers, so changing how many shots ran never changes the hardware.
const STREAM_MISMATCH: u64 = 1;
const STREAM_NOISE: u64 = 2;

/// A simulated SHG rig. Output bin j is the dark-subtracted SH counts in
/// bin j divided by the total counts of the all-open reference spectrum
/// taken at calibration (laser power 1): dimensionless, comparable across
/// rigs, and sensitive to laser drift just as the real normalisation is.
#[derive(Debug, Clone)]
pub struct ShgModel {
    cfg: ShgConfig,
    variant: Variant,
    map: ControlEncoding,
    n_par: usize,
    optics: Optics,
    /// Slow creep of the source across the mask (true rig only).
    registration: Option<optics::Registration>,
    resolution: Vec<f64>,
    /// Counts per unit SH intensity at laser power 1.
    gain: f64,
    reference_total: f64,
    bins: Vec<(usize, usize)>,
    drift: OrnsteinUhlenbeck,
    rng: ChaCha8Rng,
    clock: f64,
    scratch: Scratch,
    mask: Vec<f64>,
    sh: Vec<f64>,
    pixels: Vec<f64>,
}

impl ShgModel {
    /// A rig of `cfg`; for `true`, `seed` fixes the component draws and
    /// the noise (on separate streams).
    pub fn new(cfg: ShgConfig, variant: Variant, seed: u64) -> Result<Self, Error> {
        cfg.validate()?;
        let n = cfg.n_channels;
        let (map, n_par) = channel_map(&cfg);
        let dw = optics::channel_step(cfg.center_nm, cfg.span_nm, n);
        let (optics, resolution, registration) = match variant {
            Variant::Nominal => (
                Optics {
                    source: optics::source_field(n, cfg.source_fwhm, 0.0),
                    phase: vec![num_complex::Complex64::new(1.0, 0.0); n],
                    xtalk: Vec::new(),
                    levels: 0.0,
                    pm: vec![num_complex::Complex64::new(1.0, 0.0); 2 * n - 1],
                },
                Vec::new(),
                None,
            ),
            Variant::True => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(STREAM_MISMATCH);
                let mut draw = |spread: f64| 1.0 + spread * rng.sample::<f64, _>(StandardNormal);
                let mm = cfg.mismatch;
                // Registration error of the shaper against the spectrum.
                let shift = 2.5 * mm * (draw(1.0) - 1.0);
                let fwhm = cfg.source_fwhm * draw(0.25 * mm);
                let gains: Vec<f64> = (0..n)
                    .map(|_| draw(cfg.channel_gain_error).max(0.0))
                    .collect();
                let ripple: Vec<f64> = (0..n).map(|_| cfg.ripple_rad * (draw(1.0) - 1.0)).collect();
                let phase = optics::spectral_phase(
                    dw,
                    cfg.beta2_fs2 * draw(mm),
                    cfg.beta3_fs3 * draw(mm),
                    &ripple,
                );
                let xtalk = optics::gaussian_kernel((cfg.crosstalk_channels * draw(mm)).max(0.0));
                let gvm_l = cfg.gvm_fs_per_mm * cfg.crystal_mm * draw(0.25 * mm);
                // Drawn last, so adding it left every other draw as it was.
                let creep = if draw(1.0) >= 1.0 { 1.0 } else { -1.0 };
                let registration = optics::Registration::new(
                    fwhm,
                    gains,
                    shift,
                    creep * cfg.registration_drift_ch_per_h / 3600.0,
                );
                let levels = if cfg.mask_bits > 0 {
                    f64::from((1u32 << cfg.mask_bits) - 1)
                } else {
                    0.0
                };
                (
                    Optics {
                        source: registration.source(),
                        phase,
                        xtalk,
                        levels,
                        pm: optics::phase_matching(n, dw, gvm_l),
                    },
                    optics::gaussian_kernel(cfg.resolution_px),
                    Some(registration),
                )
            }
        };
        let pixels = 2 * n - 1;
        let mut scratch = Scratch::new(n);
        let mut sh = vec![0.0; pixels];
        let mut reference = vec![0.0; pixels];
        optics.sh_intensity(&vec![1.0; n], &mut scratch, &mut sh);
        optics::blur(&sh, &resolution, &mut reference);
        let peak = reference.iter().copied().fold(0.0, f64::max);
        let gain = cfg.reference_fill * cfg.full_well / peak;
        let reference_total = gain * reference.iter().sum::<f64>();
        let bins = spectral_bins(pixels, cfg.bin_window, cfg.n_bins);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_NOISE);
        let drift = match variant {
            Variant::Nominal => OrnsteinUhlenbeck::new(0.0, cfg.drift_tau_s),
            Variant::True => OrnsteinUhlenbeck::new(cfg.drift_sigma, cfg.drift_tau_s),
        };
        Ok(ShgModel {
            variant,
            map,
            n_par,
            optics,
            registration,
            resolution,
            gain,
            reference_total,
            bins,
            drift,
            rng,
            clock: 0.0,
            scratch,
            mask: vec![0.0; n],
            sh,
            pixels: vec![0.0; pixels],
            cfg,
        })
    }

    /// The configuration this rig was built from.
    pub fn config(&self) -> &ShgConfig {
        &self.cfg
    }

    /// Offset of the source spectrum on the shaper now, channels (0 for
    /// the nominal rig).
    pub fn registration(&self) -> f64 {
        self.registration
            .as_ref()
            .map_or(0.0, |r| r.shift_at(self.clock))
    }

    /// Pixel index ranges `[start, end)` of the output bins.
    pub fn bins(&self) -> &[(usize, usize)] {
        &self.bins
    }

    /// One shot with an explicit mask (bypassing the channel layout):
    /// dark-subtracted counts on the 2N−1 pixels of the SH grid, pixel
    /// `k + l` holding the sum frequency of channels k and l. Returns
    /// whether a pixel saturated.
    pub fn shot_mask(&mut self, mask: &[f64], pixels: &mut [f64]) -> bool {
        if let Some(r) = &mut self.registration {
            r.follow(self.clock, &mut self.optics.source);
        }
        if self.variant == Variant::True && self.cfg.spectral_noise > 0.0 {
            let sigma = self.cfg.spectral_noise;
            for g in &mut self.scratch.field_noise {
                let z: f64 = self.rng.sample(StandardNormal);
                *g = (1.0 + sigma * z).max(0.0);
            }
        }
        self.optics
            .sh_intensity(mask, &mut self.scratch, &mut self.sh);
        optics::blur(&self.sh, &self.resolution, pixels);
        self.clock += self.cfg.exposure_s;
        let drift = self.drift.step(self.cfg.exposure_s, &mut self.rng);
        let cfg = &self.cfg;
        if self.variant == Variant::Nominal {
            let p2 = cfg.laser_power * cfg.laser_power;
            pixels.iter_mut().for_each(|v| *v *= self.gain * p2);
            return false;
        }
        let jitter: f64 = self.rng.sample(StandardNormal);
        let power = cfg.laser_power * (1.0 + drift) * (1.0 + cfg.power_noise * jitter);
        let scale = self.gain * power * power;
        // Both normals of every pixel first, in the order a pixel-by-pixel
        // loop draws them; then the arithmetic, vectorised.
        let mut z = std::mem::take(&mut self.scratch.normals);
        z.clear();
        z.extend((0..2 * pixels.len()).map(|_| self.rng.sample::<f64, _>(StandardNormal)));
        let saturated = digitise(pixels, &z, scale, &self.cfg);
        self.scratch.normals = z;
        saturated
    }

    fn bin_into(&self, y: &mut [f32]) {
        for (out, &(a, b)) in y.iter_mut().zip(&self.bins) {
            *out = (self.pixels[a..b].iter().sum::<f64>() / self.reference_total) as f32;
        }
    }
}

/// Photon shot noise (gain 1 e⁻/count, Gaussian limit) and read noise on
/// the SH intensity `pixels` scaled to counts by `scale`, then the ADC;
/// `z` holds two normals per pixel. Returns whether a pixel saturated.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn digitise(pixels: &mut [f64], z: &[f64], scale: f64, cfg: &ShgConfig) -> bool {
    let mut saturated = false;
    for (v, z) in pixels.iter_mut().zip(z.chunks_exact(2)) {
        let signal = (*v * scale).max(0.0);
        let raw = signal + cfg.dark_counts + signal.sqrt() * z[0] + cfg.read_noise * z[1];
        let adc = raw.round().clamp(0.0, cfg.full_well);
        saturated |= adc >= cfg.full_well;
        *v = adc - cfg.dark_counts;
    }
    saturated
}

/// The spectrometer's bins: the pixels inside `window` (fractions of the
/// span), split into `n` bins of (nearly) equal width.
fn spectral_bins(pixels: usize, window: [f64; 2], n: usize) -> Vec<(usize, usize)> {
    let start = (window[0] * pixels as f64).round() as usize;
    let end = ((window[1] * pixels as f64).round() as usize).clamp(start + n, pixels);
    crate::bins::equal_bins(start, end, n)
}

impl PhysicalModel for ShgModel {
    fn kind(&self) -> RigKind {
        RigKind::Shg
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn n_in(&self) -> usize {
        self.cfg.n_in
    }

    fn n_par(&self) -> usize {
        self.n_par
    }

    fn n_out(&self) -> usize {
        self.cfg.n_bins
    }

    fn input_range(&self) -> (f32, f32) {
        (0.0, 1.0)
    }

    fn param_range(&self) -> (f32, f32) {
        match self.cfg.layout {
            Layout::Additive => (-1.0, 1.0),
            _ => (0.0, 1.0),
        }
    }

    fn input_step(&self) -> f32 {
        self.control_levels().map_or(0.0, |l| 1.0 / l)
    }

    fn param_step(&self) -> f32 {
        self.input_step()
    }

    fn units(&self) -> (&'static str, &'static str, &'static str) {
        (
            "mask transmission",
            "mask transmission",
            "SH counts / reference counts",
        )
    }

    fn channel_map(&self) -> Option<&ControlEncoding> {
        Some(&self.map)
    }

    fn hyperparameters(&self) -> BTreeMap<String, String> {
        let c = &self.cfg;
        let mut h = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            h.insert(k.to_string(), v);
        };
        put("n_channels", c.n_channels.to_string());
        put("layout", c.layout.as_str().to_string());
        put("n_in", c.n_in.to_string());
        put("replicate", c.replicate.to_string());
        put("input_scale", c.input_scale.to_string());
        put("n_bins", c.n_bins.to_string());
        put(
            "bin_window",
            format!("{},{}", c.bin_window[0], c.bin_window[1]),
        );
        put("center_nm", c.center_nm.to_string());
        put("span_nm", c.span_nm.to_string());
        put("source_fwhm", c.source_fwhm.to_string());
        put("beta2_fs2", c.beta2_fs2.to_string());
        put("beta3_fs3", c.beta3_fs3.to_string());
        put("ripple_rad", c.ripple_rad.to_string());
        put("crosstalk_channels", c.crosstalk_channels.to_string());
        put("mask_bits", c.mask_bits.to_string());
        put("channel_gain_error", c.channel_gain_error.to_string());
        put("mismatch", c.mismatch.to_string());
        put("crystal_mm", c.crystal_mm.to_string());
        put("gvm_fs_per_mm", c.gvm_fs_per_mm.to_string());
        put("resolution_px", c.resolution_px.to_string());
        put("full_well", c.full_well.to_string());
        put("reference_fill", c.reference_fill.to_string());
        put("dark_counts", c.dark_counts.to_string());
        put("read_noise", c.read_noise.to_string());
        put("power_noise", c.power_noise.to_string());
        put("spectral_noise", c.spectral_noise.to_string());
        put("drift_sigma", c.drift_sigma.to_string());
        put("drift_tau_s", c.drift_tau_s.to_string());
        put(
            "registration_drift_ch_per_h",
            c.registration_drift_ch_per_h.to_string(),
        );
        put("laser_power", c.laser_power.to_string());
        put("exposure_s", c.exposure_s.to_string());
        put("variant", self.variant.as_str().to_string());
        h
    }

    fn seconds_per_sample(&self) -> f64 {
        self.cfg.exposure_s
    }

    fn clock(&self) -> f64 {
        self.clock
    }

    fn quantize(&self, x: &mut [f32], theta: &mut [f32]) {
        // Blocked/interleaved values sit on the mask directly, so the DMD
        // grid is their grid; additive sums are quantised on the mask.
        // round(v·L)/L rather than round(v/step)·step: exact at 0 and 1, so
        // an applied value never lands a rounding error outside the limits.
        if let Some(levels) = self.control_levels() {
            for v in x.iter_mut().chain(theta.iter_mut()) {
                *v = (*v * levels).round() / levels;
            }
        }
    }

    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
        let mut mask = std::mem::take(&mut self.mask);
        let mut pixels = std::mem::take(&mut self.pixels);
        self.map.compose(x, theta, &mut mask);
        let saturated = self.shot_mask(&mask, &mut pixels);
        self.mask = mask;
        self.pixels = pixels;
        self.bin_into(y);
        saturated
    }
}

impl ShgModel {
    /// Mask levels when x and θ sit on the mask directly (true rig).
    fn control_levels(&self) -> Option<f32> {
        match (self.variant, self.cfg.layout) {
            (Variant::True, Layout::Blocked | Layout::Interleaved) if self.cfg.mask_bits > 0 => {
                Some(((1u32 << self.cfg.mask_bits) - 1) as f32)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
