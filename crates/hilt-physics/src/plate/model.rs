use std::collections::BTreeMap;

use hilt_core::ControlEncoding;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::coil::Coil;
use super::config::PlateConfig;
use super::mic::Biquad;
use super::modes::{Mode, Step};
use crate::bins::equal_bins;
use crate::waveform::{digitise, hold_into, loopback_lag};
use crate::{Error, OrnsteinUhlenbeck, PhysicalModel, RigKind, Variant};

/// Samples of drive the plate still remembers: 21 ms at 48 kHz, while its
/// slowest mode rings down in ~10 ms at Q 100. A twin needs no longer a
/// kernel (a four times longer one fitted no better).
const RESPONSE_MEMORY: usize = 1024;

/// RNG streams of one seed. The plate's structure (its modes, where the
/// coil and microphone sit) is drawn for both variants, so `nominal` is
/// the ideal model of the *same* plate; `true` adds mismatch on its own
/// stream, and shot noise never shares numbers with either.
const STREAM_STRUCTURE: u64 = 1;
const STREAM_MISMATCH: u64 = 2;
const STREAM_NOISE: u64 = 3;

/// Speed of sound in air, m/s.
const SOUND_M_S: f64 = 343.0;

/// A simulated plate rig. Output bin j is the RMS (or mean) microphone
/// signal over the j-th slice of the drive window, relative to the RMS
/// response to a fixed calibration drive measured at start-up: the
/// loudest-bin readout of Wright et al. (2022)'s plate, where the class
/// is the time bin in which the plate sounds loudest; dimensionless.
#[derive(Debug, Clone)]
pub struct PlateModel {
    cfg: PlateConfig,
    variant: Variant,
    map: ControlEncoding,
    modes: Vec<Mode>,
    coil: Coil,
    band: Vec<Biquad>,
    /// Acoustic delay, samples.
    delay: usize,
    bins: Vec<(usize, usize)>,
    /// Pressure units per output unit.
    reference: f64,
    temp: OrnsteinUhlenbeck,
    /// Coil heat state in [0, 1].
    heat: f64,
    rng: ChaCha8Rng,
    clock: f64,
    controls: Vec<f64>,
    trace: Vec<f64>,
}

impl PlateModel {
    /// A plate of `cfg`: `seed` fixes its modes and couplings (the same for
    /// both variants) and, for `true`, its mismatch and noise.
    pub fn new(cfg: PlateConfig, variant: Variant, seed: u64) -> Result<Self, Error> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_STRUCTURE);
        let factor = cfg.mode_factor_hz();
        let plate_mass = cfg.density_kg_m3 * (cfg.side_mm * 1e-3).powi(2) * cfg.thickness_mm * 1e-3;
        // Modal mass of a free plate mode: a quarter of the plate.
        let modal_mass = plate_mass / 4.0;
        let coupling = |rng: &mut ChaCha8Rng| {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            sign * rng.random_range(0.3..1.0)
        };
        let mut modes: Vec<Mode> = cfg
            .lambda2
            .iter()
            .map(|l2| {
                let z: f64 = rng.sample(StandardNormal);
                Mode {
                    freq_hz: l2 * factor * (1.0 + cfg.lambda2_spread * z.clamp(-3.0, 3.0)),
                    q: cfg.q,
                    drive: coupling(&mut rng) / modal_mass,
                    mic: coupling(&mut rng),
                }
            })
            .collect();
        let mut coil = Coil {
            re: cfg.coil_re_ohm,
            le: cfg.coil_le_mh * 1e-3,
            bl: cfg.coil_bl_tm,
            mass: cfg.coil_mass_g * 1e-3,
            rm: cfg.coil_rms_ns_m,
            k: cfg.coil_k_n_mm * 1e3,
            b2: 0.0,
            k2: 0.0,
        };
        let mut band = Vec::new();
        if variant == Variant::True {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(STREAM_MISMATCH);
            let mut draw = |spread: f64| {
                let z: f64 = rng.sample(StandardNormal);
                1.0 + spread * z.clamp(-3.0, 3.0)
            };
            for m in &mut modes {
                m.freq_hz *= draw(cfg.freq_error);
                m.q = (m.q * draw(cfg.q_error)).max(1.0);
            }
            let e = cfg.component_error;
            coil.re *= draw(e);
            coil.le *= draw(e);
            coil.bl *= draw(e);
            coil.mass *= draw(e);
            coil.rm *= draw(e);
            coil.k *= draw(e);
            coil.b2 = cfg.coil_b2_per_mm2 * 1e6 * draw(e);
            coil.k2 = cfg.coil_k2_per_mm2 * 1e6 * draw(e);
            let [lo, hi] = cfg.mic_band_hz;
            band = vec![
                Biquad::highpass(lo, cfg.sample_rate_hz),
                Biquad::lowpass(hi, cfg.sample_rate_hz),
            ];
        }
        let delay = (cfg.mic_distance_mm * 1e-3 / SOUND_M_S * cfg.sample_rate_hz).round() as usize;
        let n = cfg.drive_samples();
        let bins = equal_bins(0, n, cfg.n_bins);
        let temp = match variant {
            Variant::Nominal => OrnsteinUhlenbeck::new(0.0, cfg.temp_tau_s),
            Variant::True => OrnsteinUhlenbeck::new(cfg.temp_sigma_k, cfg.temp_tau_s),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_NOISE);
        let mut model = PlateModel {
            map: cfg.drive.encoding_map(),
            variant,
            modes,
            coil,
            band,
            delay,
            bins,
            reference: 1.0,
            temp,
            heat: 0.0,
            rng,
            clock: 0.0,
            controls: Vec::new(),
            trace: Vec::new(),
            cfg,
        };
        model.reference = model.calibrate();
        Ok(model)
    }

    /// The configuration this plate was built from.
    pub fn config(&self) -> &PlateConfig {
        &self.cfg
    }

    /// Modal frequencies of this plate as built (before drift), Hz.
    pub fn mode_frequencies(&self) -> Vec<f64> {
        self.modes.iter().map(|m| m.freq_hz).collect()
    }

    /// Quality factor of each mode as built (mismatch included).
    pub fn mode_q(&self) -> Vec<f64> {
        self.modes.iter().map(|m| m.q).collect()
    }

    /// Acoustic delay from plate to microphone, samples.
    pub fn delay_samples(&self) -> usize {
        self.delay
    }

    /// RMS response to a fixed calibration drive (noise-free, cold coil,
    /// calibration temperature): the unit of every output.
    fn calibrate(&self) -> f64 {
        let n = self.cfg.drive.n_elements();
        let drive: Vec<f64> = (0..n)
            .map(|k| if (k * 7919) % 13 < 6 { 0.5 } else { -0.5 })
            .collect();
        let mut trace = Vec::new();
        self.respond(&drive, 1.0, 0.0, &mut trace);
        let w = &trace[self.delay..self.delay + self.cfg.drive_samples()];
        let rms = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
        if rms > 0.0 { rms } else { 1.0 }
    }

    /// The noise-free microphone pressure for drive elements `controls`
    /// (in full-scale units): `delay + drive + 2·latency_jitter + 1`
    /// samples, from rest; `mode_scale` multiplies every modal frequency
    /// (temperature), `heat` is the coil's heat state in [0, 1]. The
    /// nominal plate's response is linear in the drive.
    pub fn respond(&self, controls: &[f64], mode_scale: f64, heat: f64, out: &mut Vec<f64>) {
        let hold = self.cfg.hold_samples;
        let n = controls.len() * hold;
        // Room for the latency to shift the window by up to twice the
        // jitter (a misread loopback lag adds to the true one).
        let len = self.delay + n + 2 * self.cfg.latency_jitter as usize + 1;
        let fs = self.cfg.sample_rate_hz;
        let mut volts = Vec::with_capacity(len);
        hold_into(controls, hold, self.cfg.full_scale_v, 0, len, &mut volts);
        let mut force = Vec::with_capacity(len);
        self.coil.force(
            &volts,
            1.0 / fs,
            1.0 + self.cfg.coil_heating * heat,
            &mut force,
        );
        out.clear();
        out.resize(len, 0.0);
        for m in &self.modes {
            let step = Step::new(m, 1.0 / fs, mode_scale);
            let mut s = [0.0; 2];
            // Sound leaves the plate at t and reaches the microphone at
            // t + delay.
            for (t, f) in force[..len - self.delay].iter().enumerate() {
                out[t + self.delay] += step.advance(&mut s, *f);
            }
        }
        for b in &self.band {
            b.run(out);
        }
    }
}

impl PhysicalModel for PlateModel {
    fn kind(&self) -> RigKind {
        RigKind::Plate
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn n_in(&self) -> usize {
        self.cfg.drive.n_in
    }

    fn n_par(&self) -> usize {
        self.cfg.drive.n_par()
    }

    fn n_out(&self) -> usize {
        self.cfg.n_bins
    }

    fn input_range(&self) -> (f32, f32) {
        (-1.0, 1.0)
    }

    fn param_range(&self) -> (f32, f32) {
        (-1.0, 1.0)
    }

    fn input_step(&self) -> f32 {
        0.0
    }

    fn param_step(&self) -> f32 {
        0.0
    }

    fn units(&self) -> (&'static str, &'static str, &'static str) {
        (
            "drive full scale",
            "drive full scale",
            "microphone RMS / calibration RMS",
        )
    }

    fn channel_map(&self) -> Option<&ControlEncoding> {
        Some(&self.map)
    }

    fn hyperparameters(&self) -> BTreeMap<String, String> {
        let mut h = crate::hyper::flatten(&self.cfg);
        h.insert("variant".into(), self.variant.as_str().into());
        crate::waveform::publish_timing(&mut h, RESPONSE_MEMORY, &self.bins);
        h
    }

    fn seconds_per_sample(&self) -> f64 {
        self.cfg.seconds_per_sample()
    }

    fn clock(&self) -> f64 {
        self.clock
    }

    fn quantize(&self, _x: &mut [f32], _theta: &mut [f32]) {
        // A 24-bit audio DAC: continuous for every practical purpose.
    }

    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
        let mut controls = std::mem::take(&mut self.controls);
        let mut trace = std::mem::take(&mut self.trace);
        controls.resize(self.map.n_controls(), 0.0);
        self.map.compose(x, theta, &mut controls);
        let truth = self.variant == Variant::True;
        let scale = 1.0 + self.cfg.tempco_per_k * self.temp.value();
        self.respond(&controls, scale, self.heat, &mut trace);
        let n = self.cfg.drive_samples();
        let jitter = i64::from(self.cfg.latency_jitter);
        let lag = if truth && jitter > 0 {
            let j = self.rng.random_range(-jitter..=jitter);
            if self.cfg.align_loopback {
                let sigma = 10f64.powf(-self.cfg.snr_db / 20.0);
                let hold = self.cfg.hold_samples;
                j - loopback_lag(&controls, hold, j, jitter, sigma, &mut self.rng)
            } else {
                j
            }
        } else {
            0
        };
        let start = (self.delay as i64 + lag).clamp(0, (trace.len() - n) as i64) as usize;
        let window = &mut trace[start..start + n];
        let mut saturated = false;
        for v in window.iter_mut() {
            *v /= self.reference;
        }
        if truth {
            saturated = digitise(
                window,
                10f64.powf(-self.cfg.snr_db / 20.0),
                self.cfg.adc_headroom,
                self.cfg.adc_bits,
                &mut self.rng,
            );
        }
        self.cfg.readout.apply(window, &self.bins, y);
        let (drive_s, guard_s) = (n as f64 / self.cfg.sample_rate_hz, self.cfg.guard_s);
        self.clock += drive_s + guard_s;
        if truth {
            self.temp.step(drive_s + guard_s, &mut self.rng);
            let tau = self.cfg.coil_heat_tau_s;
            self.heat = 1.0 - (1.0 - self.heat) * (-drive_s / tau).exp();
            self.heat *= (-guard_s / tau).exp();
        }
        self.controls = controls;
        self.trace = trace;
        saturated
    }
}

#[cfg(test)]
mod tests;
