use serde::{Deserialize, Serialize};

use crate::Error;

/// How inputs and trainable parameters share the pulse shaper's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// x on the first `n_in·replicate` channels, θ on the rest.
    Blocked,
    /// x and θ channels spread evenly across the band, so every SH
    /// component mixes inputs with parameters (the richest mixing).
    Interleaved,
    /// Every channel carries `clip(input_scale·x_rep + θ_k)`: a trainable
    /// mask over the replicated inputs (θ ∈ [-1, 1], one per channel).
    Additive,
}

impl Layout {
    /// The name configs and the published `ControlEncoding::layout` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Blocked => "blocked",
            Layout::Interleaved => "interleaved",
            Layout::Additive => "additive",
        }
    }
}

/// The SHG rig: a femtosecond source, a DMD pulse shaper, a χ(2) crystal
/// and a spectrometer, as in Wright et al., Nature 601, 549 (2022). The
/// paper's main text gives none of these constants: the defaults are
/// estimates for such a rig (64 channels over 20 nm at 800 nm, 1 %
/// shot-to-shot power noise, 2 % power drift with τ = 10 min), to be
/// replaced by measured values. Every field can be set in the daemon
/// config under `[device.shg]`.
/// The `true` model draws component mismatch around these values per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShgConfig {
    /// Shaper channels N.
    pub n_channels: usize,
    /// Which channels carry x and which θ.
    pub layout: Layout,
    /// Input dimension (12 formant features for the vowel task).
    pub n_in: usize,
    /// Channels per input value (blocked/interleaved; the additive layout
    /// spreads the inputs evenly over the whole band instead).
    pub replicate: usize,
    /// Additive layout: gain on the replicated inputs.
    pub input_scale: f32,
    /// Output bins of the SH spectrum.
    pub n_bins: usize,
    /// Part of the SH spectrum the bins cover, as fractions of its span;
    /// the SH of a Gaussian pulse is dark near the edges.
    pub bin_window: [f64; 2],

    /// Centre wavelength of the fundamental, nm.
    pub center_nm: f64,
    /// Spectral span of the shaper, nm.
    pub span_nm: f64,
    /// Source intensity FWHM as a fraction of the shaper span.
    pub source_fwhm: f64,

    /// Residual chirp of the shaped pulse (0 in the nominal model).
    pub beta2_fs2: f64,
    /// Residual third-order dispersion, fs³ (0 in the nominal model).
    pub beta3_fs3: f64,
    /// Std of the per-channel phase ripple, rad.
    pub ripple_rad: f64,
    /// Pixel crosstalk of the shaper, Gaussian std in channels.
    pub crosstalk_channels: f64,
    /// Mask resolution, bits (0 = continuous).
    pub mask_bits: u32,
    /// Per-channel transmission error, relative std.
    pub channel_gain_error: f64,
    /// Relative spread of component draws in the true model.
    pub mismatch: f64,

    /// Crystal length and group-velocity mismatch set the phase-matching
    /// bandwidth: H = sinc(ΔkL/2)·e^{iΔkL/2}, ΔkL = gvm·L·(Ω_k+Ω_l).
    pub crystal_mm: f64,
    /// Group-velocity mismatch, fs per mm of crystal.
    pub gvm_fs_per_mm: f64,

    /// Spectrometer resolution, Gaussian std in pixels.
    pub resolution_px: f64,
    /// Counts at which a pixel saturates (ADC full scale).
    pub full_well: f64,
    /// Peak pixel of the all-open reference as a fraction of full well.
    pub reference_fill: f64,
    /// Dark offset of every pixel, counts (subtracted from the output).
    pub dark_counts: f64,
    /// Read noise std, counts.
    pub read_noise: f64,
    /// Shot-to-shot laser power noise, relative std (SH sees twice this).
    pub power_noise: f64,
    /// Shot-to-shot noise of each channel's field amplitude, relative std
    /// (source spectral fluctuations and DMD flicker). Unlike power noise
    /// it enters before the nonlinearity, differently per channel, so no
    /// normalisation removes it: the ~2 % input noise of the sim–real gap
    /// in the FMNIST example of github.com/mcmahon-lab/Physics-Aware-Training
    /// (the reference code of Wright et al. 2022).
    pub spectral_noise: f64,
    /// Slow laser power drift, relative std: OU process on the virtual
    /// clock.
    pub drift_sigma: f64,
    /// Correlation time of that drift, virtual seconds.
    pub drift_tau_s: f64,
    /// Creep of the shaper-to-spectrum registration, channels per virtual
    /// hour (thermal creep of the 4f shaper): the source spectrum slides
    /// across the mask, so the rig leaves its calibration even with a
    /// perfectly stable laser. The true rig draws the direction per seed.
    pub registration_drift_ch_per_h: f64,
    /// Relative laser power (SH scales with its square).
    pub laser_power: f64,
    /// Virtual seconds per shot (DMD update + integration).
    pub exposure_s: f64,
}

impl Default for ShgConfig {
    fn default() -> Self {
        ShgConfig {
            n_channels: 64,
            layout: Layout::Interleaved,
            n_in: 12,
            replicate: 2,
            input_scale: 1.0,
            n_bins: 7,
            bin_window: [0.25, 0.75],
            center_nm: 800.0,
            span_nm: 20.0,
            source_fwhm: 0.5,
            beta2_fs2: 300.0,
            beta3_fs3: 5000.0,
            ripple_rad: 0.05,
            crosstalk_channels: 0.7,
            mask_bits: 6,
            channel_gain_error: 0.03,
            mismatch: 0.2,
            crystal_mm: 0.3,
            gvm_fs_per_mm: 190.0,
            resolution_px: 1.0,
            full_well: 65535.0,
            reference_fill: 0.6,
            dark_counts: 500.0,
            read_noise: 65.0,
            power_noise: 0.01,
            spectral_noise: 0.02,
            drift_sigma: 0.02,
            drift_tau_s: 600.0,
            registration_drift_ch_per_h: 0.1,
            laser_power: 1.0,
            exposure_s: 0.005,
        }
    }
}

impl ShgConfig {
    /// Refuses what no rig could be (no parameter channel left, more bins
    /// than pixels in `bin_window`, negative noise); errors name the field.
    pub fn validate(&self) -> Result<(), Error> {
        let n = self.n_channels;
        if !(2..=1024).contains(&n) {
            return Err(Error::config(
                "n_channels",
                format!("{n} is not in 2..=1024"),
            ));
        }
        if self.n_in == 0 {
            return Err(Error::config("n_in", "must be at least 1"));
        }
        if self.replicate == 0 {
            return Err(Error::config("replicate", "must be at least 1"));
        }
        let used = self.n_in * self.replicate;
        match self.layout {
            Layout::Blocked | Layout::Interleaved if used >= n => {
                return Err(Error::config(
                    "n_in",
                    format!("n_in × replicate = {used} leaves no parameter channel out of {n}"),
                ));
            }
            Layout::Additive if self.n_in > n => {
                return Err(Error::config(
                    "n_in",
                    format!("{} inputs do not fit on {n} channels", self.n_in),
                ));
            }
            _ => {}
        }
        let pixels = 2 * n - 1;
        let [w0, w1] = self.bin_window;
        if !((0.0..1.0).contains(&w0) && w0 < w1 && w1 <= 1.0) {
            return Err(Error::config("bin_window", "needs 0 <= start < end <= 1"));
        }
        let covered = ((w1 - w0) * pixels as f64).round() as usize;
        if self.n_bins == 0 || self.n_bins > covered.max(1) {
            return Err(Error::config(
                "n_bins",
                format!(
                    "{} bins cannot split the {covered} pixels in bin_window",
                    self.n_bins
                ),
            ));
        }
        // The bins start where the window does and need a pixel each
        // before the spectrum ends (`spectral_bins` relies on it).
        let start = (w0 * pixels as f64).round() as usize;
        if start + self.n_bins > pixels {
            return Err(Error::config(
                "n_bins",
                format!(
                    "{} bins from pixel {start} (where bin_window starts) run past the \
                     spectrum's {pixels} pixels",
                    self.n_bins
                ),
            ));
        }
        if self.mask_bits > 16 {
            return Err(Error::config("mask_bits", "at most 16"));
        }
        crate::check::positive(&[
            ("center_nm", self.center_nm),
            ("span_nm", self.span_nm),
            ("source_fwhm", self.source_fwhm),
            ("full_well", self.full_well),
            ("laser_power", self.laser_power),
            ("drift_tau_s", self.drift_tau_s),
        ])?;
        if !(self.reference_fill > 0.0 && self.reference_fill <= 1.0) {
            return Err(Error::config("reference_fill", "must be in (0, 1]"));
        }
        crate::check::non_negative(&[
            ("ripple_rad", self.ripple_rad),
            ("crosstalk_channels", self.crosstalk_channels),
            ("channel_gain_error", self.channel_gain_error),
            ("mismatch", self.mismatch),
            ("crystal_mm", self.crystal_mm),
            ("gvm_fs_per_mm", self.gvm_fs_per_mm),
            ("resolution_px", self.resolution_px),
            ("dark_counts", self.dark_counts),
            ("read_noise", self.read_noise),
            ("power_noise", self.power_noise),
            ("spectral_noise", self.spectral_noise),
            ("drift_sigma", self.drift_sigma),
            (
                "registration_drift_ch_per_h",
                self.registration_drift_ch_per_h,
            ),
            ("exposure_s", self.exposure_s),
        ])?;
        if !self.beta2_fs2.is_finite() || !self.beta3_fs3.is_finite() {
            return Err(Error::config("beta2_fs2", "chirp must be finite"));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(Error::config("input_scale", "must be finite and > 0"));
        }
        Ok(())
    }
}
