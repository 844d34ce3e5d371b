use serde::{Deserialize, Serialize};

use crate::Error;
use crate::waveform::{DriveConfig, Readout};

/// The speaker-driven titanium plate of Wright et al. (2022): an audio
/// interface plays the drive through a voice coil glued to the plate, a
/// microphone records the ring. The paper's main text gives no component
/// values, so the defaults are estimates (a 32 × 32 × 1 mm titanium plate,
/// modes at ≈ 240 Hz·λ², Q 100, 48 kHz audio, 60 dB SNR); the true model
/// draws component mismatch around them per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlateConfig {
    /// How x and θ become the drive, and its hard limit.
    pub drive: DriveConfig,
    /// Samples each drive element is held for (zero-order hold; 83 µs at 48 kHz).
    pub hold_samples: usize,
    /// Audio rate of playback and recording.
    pub sample_rate_hz: f64,
    /// Volts at drive element 1.0 (amplifier full scale).
    pub full_scale_v: f64,
    /// Silence after each sample so the plate rings down before the next.
    pub guard_s: f64,
    /// Output time bins, equal slices of the drive window.
    pub n_bins: usize,
    /// How a bin becomes one output.
    pub readout: Readout,

    /// Plate: titanium, a × a × h; side a.
    pub side_mm: f64,
    /// Thickness h.
    pub thickness_mm: f64,
    /// Young's modulus E.
    pub youngs_gpa: f64,
    /// Density ρ.
    pub density_kg_m3: f64,
    /// Poisson's ratio ν, in [0, 0.5).
    pub poisson: f64,
    /// Modal eigenvalues λ², f_m = λ²·[`mode_factor_hz`](Self::mode_factor_hz);
    /// the defaults are a free square plate's (ν ≈ 0.3), which mounting
    /// on the coil shifts and splits (`lambda2_spread`).
    pub lambda2: Vec<f64>,
    /// Per-device spread of λ² (mounting shifts and splits the modes).
    pub lambda2_spread: f64,
    /// Quality factor of every mode (> 0.5: underdamped).
    pub q: f64,

    /// Voice coil (Thiele–Small): DC resistance R_e.
    pub coil_re_ohm: f64,
    /// Inductance L_e.
    pub coil_le_mh: f64,
    /// Force factor Bl0, T·m.
    pub coil_bl_tm: f64,
    /// Moving mass including the plate, g.
    pub coil_mass_g: f64,
    /// Mechanical resistance R_ms, N·s/m.
    pub coil_rms_ns_m: f64,
    /// Suspension stiffness k0, N/mm.
    pub coil_k_n_mm: f64,
    /// Force-factor and stiffness nonlinearity: Bl(z) = Bl0(1 − b2 z²),
    /// k(z) = k0(1 + k2 z²), z in mm (true model only).
    pub coil_b2_per_mm2: f64,
    /// See `coil_b2_per_mm2`.
    pub coil_k2_per_mm2: f64,
    /// Relative rise of the winding's resistance at heat state 1 (heat
    /// → 1 under continuous drive, true model only), so the coil passes
    /// less current: 0.03 with a 30 min time constant is ≈ −1 % per 10 min
    /// at first.
    pub coil_heating: f64,
    /// Time constant of heating while driven and of cooling in the guard.
    pub coil_heat_tau_s: f64,

    /// Microphone distance (sets the acoustic delay) and band-pass.
    pub mic_distance_mm: f64,
    /// Band-pass corners `[low, high]` (true model only), below Nyquist.
    pub mic_band_hz: [f64; 2],
    /// Room + ADC noise relative to the reference response, dB.
    pub snr_db: f64,
    /// ADC full scale as a multiple of the reference response RMS.
    pub adc_headroom: f64,
    /// ADC resolution over ±full scale, 1..=24.
    pub adc_bits: u32,
    /// Audio-interface latency jitter, ± samples.
    pub latency_jitter: u32,
    /// Undo the jitter as a lab would: record the drive on a loopback
    /// input through the same interface, find the lag that best matches
    /// the drive (cross-correlation) and shift the microphone by it.
    pub align_loopback: bool,

    /// True model: relative spread of modal frequencies, of Q, of the
    /// coil's components.
    pub freq_error: f64,
    /// See `freq_error`.
    pub q_error: f64,
    /// See `freq_error`.
    pub component_error: f64,
    /// Plate temperature drift: OU process, K, on the virtual clock;
    /// the titanium modulus makes the modes shift by `tempco` per K.
    pub temp_sigma_k: f64,
    /// Correlation time of the temperature, virtual seconds.
    pub temp_tau_s: f64,
    /// Relative modal frequency shift per K (negative: softer when warm).
    pub tempco_per_k: f64,
}

impl Default for PlateConfig {
    fn default() -> Self {
        PlateConfig {
            drive: DriveConfig::default(),
            hold_samples: 4,
            sample_rate_hz: 48_000.0,
            full_scale_v: 2.0,
            guard_s: 0.02,
            n_bins: 10,
            readout: Readout::Rms,
            side_mm: 32.0,
            thickness_mm: 1.0,
            youngs_gpa: 116.0,
            density_kg_m3: 4506.0,
            poisson: 0.32,
            lambda2: vec![13.47, 19.60, 24.27, 34.8, 34.8, 61.1, 63.7, 69.3],
            lambda2_spread: 0.03,
            q: 100.0,
            coil_re_ohm: 4.0,
            coil_le_mh: 0.1,
            coil_bl_tm: 3.0,
            coil_mass_g: 6.6,
            coil_rms_ns_m: 0.5,
            coil_k_n_mm: 1.7,
            coil_b2_per_mm2: 0.2,
            coil_k2_per_mm2: 0.2,
            coil_heating: 0.03,
            coil_heat_tau_s: 1800.0,
            mic_distance_mm: 100.0,
            mic_band_hz: [100.0, 20_000.0],
            snr_db: 60.0,
            adc_headroom: 16.0,
            adc_bits: 16,
            latency_jitter: 1,
            align_loopback: true,
            freq_error: 0.02,
            q_error: 0.3,
            component_error: 0.05,
            temp_sigma_k: 0.3,
            temp_tau_s: 1800.0,
            tempco_per_k: -2e-4,
        }
    }
}

impl PlateConfig {
    /// Refuses what no plate could be (modes near Nyquist, overdamped Q,
    /// a microphone band not inside (0, Nyquist)); errors name the field.
    pub fn validate(&self) -> Result<(), Error> {
        crate::waveform::check_sampling(
            &self.drive,
            self.hold_samples,
            self.n_bins,
            self.adc_bits,
        )?;
        crate::check::positive(&[
            ("sample_rate_hz", self.sample_rate_hz),
            ("full_scale_v", self.full_scale_v),
            ("side_mm", self.side_mm),
            ("thickness_mm", self.thickness_mm),
            ("youngs_gpa", self.youngs_gpa),
            ("density_kg_m3", self.density_kg_m3),
            ("q", self.q),
            ("coil_re_ohm", self.coil_re_ohm),
            ("coil_le_mh", self.coil_le_mh),
            ("coil_bl_tm", self.coil_bl_tm),
            ("coil_mass_g", self.coil_mass_g),
            ("coil_k_n_mm", self.coil_k_n_mm),
            ("coil_heat_tau_s", self.coil_heat_tau_s),
            ("adc_headroom", self.adc_headroom),
            ("temp_tau_s", self.temp_tau_s),
        ])?;
        crate::check::non_negative(&[
            ("guard_s", self.guard_s),
            ("lambda2_spread", self.lambda2_spread),
            ("coil_rms_ns_m", self.coil_rms_ns_m),
            ("coil_b2_per_mm2", self.coil_b2_per_mm2),
            ("coil_k2_per_mm2", self.coil_k2_per_mm2),
            ("coil_heating", self.coil_heating),
            ("mic_distance_mm", self.mic_distance_mm),
            ("freq_error", self.freq_error),
            ("q_error", self.q_error),
            ("component_error", self.component_error),
            ("temp_sigma_k", self.temp_sigma_k),
        ])?;
        crate::waveform::check_jitter("latency_jitter", self.latency_jitter)?;
        if !(0.0..0.5).contains(&self.poisson) {
            return Err(Error::config("poisson", "must be in [0, 0.5)"));
        }
        if !self.snr_db.is_finite() {
            return Err(Error::config("snr_db", "must be finite"));
        }
        if !self.tempco_per_k.is_finite() {
            return Err(Error::config("tempco_per_k", "must be finite"));
        }
        let nyquist = self.sample_rate_hz / 2.0;
        let [lo, hi] = self.mic_band_hz;
        if !(lo > 0.0 && lo < hi && hi < nyquist) {
            return Err(Error::config(
                "mic_band_hz",
                format!("needs 0 < low < high < Nyquist ({nyquist} Hz)"),
            ));
        }
        if self.lambda2.is_empty() || self.lambda2.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(Error::config("lambda2", "needs at least one mode, all > 0"));
        }
        let f_max = self.lambda2.iter().copied().fold(0.0, f64::max) * self.mode_factor_hz();
        if f_max * (1.0 + 3.0 * self.lambda2_spread) >= nyquist {
            return Err(Error::config(
                "lambda2",
                format!("highest mode {f_max:.0} Hz is too close to Nyquist ({nyquist} Hz)"),
            ));
        }
        if self.q <= 0.5 {
            return Err(Error::config("q", "must be > 0.5 (underdamped modes)"));
        }
        Ok(())
    }

    /// f_m / λ_m² in Hz: (h/a²)·√(E / 12ρ(1−ν²)) / 2π.
    pub fn mode_factor_hz(&self) -> f64 {
        let h = self.thickness_mm * 1e-3;
        let a = self.side_mm * 1e-3;
        let e = self.youngs_gpa * 1e9;
        h / (a * a) * (e / (12.0 * self.density_kg_m3 * (1.0 - self.poisson * self.poisson))).sqrt()
            / (2.0 * std::f64::consts::PI)
    }

    /// Samples of the drive.
    pub fn drive_samples(&self) -> usize {
        self.drive.n_elements() * self.hold_samples
    }

    /// Virtual seconds per sample: the drive plus the guard.
    pub fn seconds_per_sample(&self) -> f64 {
        self.drive_samples() as f64 / self.sample_rate_hz + self.guard_s
    }
}
