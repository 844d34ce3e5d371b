use serde::{Deserialize, Serialize};

use crate::Error;
use crate::waveform::{DriveConfig, Readout};

/// Which voltage the scope records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// The collector's drop below the supply, R_c·i_C (clipped at
    /// saturation): 0 while the transistor is off.
    Collector,
    /// The RLC's capacitor node.
    Capacitor,
}

impl Probe {
    /// The name configs and hyperparameters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Collector => "collector",
            Probe::Capacitor => "capacitor",
        }
    }
}

/// The analog circuit of Wright et al. (2022): a waveform generator drives
/// a series RLC whose capacitor node drives a BJT's base; a scope records
/// the transient. The paper's main text gives no component values, so the
/// defaults are estimates: L 1 mH, C 10 nF (f0 ≈ 50 kHz), R 100 Ω
/// (envelope τ = 2L/R = 20 µs), I_S 1e-14 A, β 100, V_cc 5 V.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// How x and θ become the drive, and its hard limit.
    pub drive: DriveConfig,
    /// Samples each drive element is held for (zero-order hold; 5 µs at 1 MS/s).
    pub hold_samples: usize,
    /// ADC (and AO) rate.
    pub sample_rate_hz: f64,
    /// Integration steps per ADC sample (0.1 µs at 1 MS/s).
    pub substeps: usize,
    /// Volts at drive element 1.0.
    pub full_scale_v: f64,
    /// Rest after each sample so the transient dies before the next.
    pub guard_s: f64,
    /// Output time bins, equal slices of the drive window.
    pub n_bins: usize,
    /// How a bin becomes one output.
    pub readout: Readout,
    /// Which node the scope records.
    pub probe: Probe,

    /// Series inductance L.
    pub l_mh: f64,
    /// Capacitance C of the RLC.
    pub c_nf: f64,
    /// Series resistance R.
    pub r_ohm: f64,
    /// Junction saturation current I_S, A.
    pub i_s_a: f64,
    /// Forward current gain β_F.
    pub beta_f: f64,
    /// Junction ideality factor n.
    pub ideality: f64,
    /// Supply voltage.
    pub vcc_v: f64,
    /// Collector resistor R_c.
    pub rc_ohm: f64,
    /// Base resistance (0 = ideal junction clamp, the nominal model).
    pub rb_ohm: f64,
    /// Collector–emitter voltage in saturation; caps the collector drop
    /// at `vcc_v − vce_sat_v`.
    pub vce_sat_v: f64,
    /// Junction temperature at calibration (sets V_T = kT/q).
    pub temperature_k: f64,

    /// True model: component tolerance (relative std), inductor ESR,
    /// parasitic capacitance on the capacitor node, junction capacitance.
    pub tolerance: f64,
    /// See `tolerance`.
    pub esr_ohm: f64,
    /// See `tolerance`.
    pub c_parasitic_pf: f64,
    /// See `tolerance`; needs `rb_ohm > 0`.
    pub c_je_pf: f64,
    /// ADC and AO noise, V rms; ADC resolution over ±range.
    pub adc_noise_v: f64,
    /// See `adc_noise_v`.
    pub ao_noise_v: f64,
    /// See `adc_noise_v`; 1..=24.
    pub adc_bits: u32,
    /// See `adc_noise_v`; must exceed `full_scale_v`.
    pub adc_range_v: f64,
    /// Trigger jitter, ± samples.
    pub trigger_jitter: u32,
    /// Undo the jitter as a lab would: the scope's second channel records
    /// the generator's output, and the lag that best matches the drive
    /// (cross-correlation) shifts the probe trace back. Without it a
    /// one-sample shift of the collector's switching edges moves a 5-sample
    /// bin by a fifth of its swing.
    pub align_loopback: bool,
    /// Junction temperature: OU process, K; V_BE moves by `vbe_tempco`.
    pub temp_sigma_k: f64,
    /// Correlation time of the temperature, virtual seconds.
    pub temp_tau_s: f64,
    /// V_BE shift per K of the junction.
    pub vbe_tempco_v_per_k: f64,
    /// Supply droop reached after long running (relative), time constant.
    pub supply_droop: f64,
    /// See `supply_droop`.
    pub supply_droop_tau_s: f64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            drive: DriveConfig::default(),
            hold_samples: 5,
            sample_rate_hz: 1e6,
            substeps: 10,
            full_scale_v: 2.0,
            guard_s: 2e-4,
            n_bins: 10,
            readout: Readout::Mean,
            probe: Probe::Collector,
            l_mh: 1.0,
            c_nf: 10.0,
            r_ohm: 100.0,
            i_s_a: 1e-14,
            beta_f: 100.0,
            ideality: 1.0,
            vcc_v: 5.0,
            rc_ohm: 1000.0,
            rb_ohm: 1000.0,
            vce_sat_v: 0.2,
            temperature_k: 300.0,
            tolerance: 0.05,
            esr_ohm: 2.0,
            c_parasitic_pf: 47.0,
            c_je_pf: 10.0,
            adc_noise_v: 1e-3,
            ao_noise_v: 1e-3,
            adc_bits: 16,
            adc_range_v: 10.0,
            trigger_jitter: 1,
            align_loopback: true,
            temp_sigma_k: 1.0,
            temp_tau_s: 1200.0,
            vbe_tempco_v_per_k: -2e-3,
            supply_droop: 1e-3,
            supply_droop_tau_s: 3600.0,
        }
    }
}

impl CircuitConfig {
    /// Refuses what no circuit could be (saturation above the supply or
    /// the sagged supply, parts that could be drawn non-positive, a
    /// junction capacitance without base resistance, a drive beyond the
    /// ADC's range); errors name the field.
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
            ("l_mh", self.l_mh),
            ("c_nf", self.c_nf),
            ("i_s_a", self.i_s_a),
            ("beta_f", self.beta_f),
            ("ideality", self.ideality),
            ("vcc_v", self.vcc_v),
            ("rc_ohm", self.rc_ohm),
            ("temperature_k", self.temperature_k),
            ("adc_range_v", self.adc_range_v),
            ("temp_tau_s", self.temp_tau_s),
            ("supply_droop_tau_s", self.supply_droop_tau_s),
        ])?;
        crate::check::non_negative(&[
            ("guard_s", self.guard_s),
            ("r_ohm", self.r_ohm),
            ("rb_ohm", self.rb_ohm),
            ("vce_sat_v", self.vce_sat_v),
            ("tolerance", self.tolerance),
            ("esr_ohm", self.esr_ohm),
            ("c_parasitic_pf", self.c_parasitic_pf),
            ("c_je_pf", self.c_je_pf),
            ("adc_noise_v", self.adc_noise_v),
            ("ao_noise_v", self.ao_noise_v),
            ("temp_sigma_k", self.temp_sigma_k),
            ("supply_droop", self.supply_droop),
        ])?;
        if !self.vbe_tempco_v_per_k.is_finite() {
            return Err(Error::config("vbe_tempco_v_per_k", "must be finite"));
        }
        if !(1..=1000).contains(&self.substeps) {
            return Err(Error::config(
                "substeps",
                format!("{} is not in 1..=1000", self.substeps),
            ));
        }
        crate::waveform::check_jitter("trigger_jitter", self.trigger_jitter)?;
        if self.vce_sat_v >= self.vcc_v {
            return Err(Error::config("vce_sat_v", "must be below vcc_v"));
        }
        if self.vcc_v * (1.0 - self.supply_droop) <= self.vce_sat_v {
            return Err(Error::config(
                "supply_droop",
                format!(
                    "{} lets the supply sag to vce_sat_v ({} V) or below",
                    self.supply_droop, self.vce_sat_v
                ),
            ));
        }
        // Parts are drawn up to 3σ from nominal and must stay positive.
        if self.tolerance >= 1.0 / 3.0 {
            return Err(Error::config(
                "tolerance",
                format!(
                    "{} is not below 1/3 (a 3σ part would not be positive)",
                    self.tolerance
                ),
            ));
        }
        if self.rb_ohm == 0.0 && self.c_je_pf > 0.0 {
            return Err(Error::config(
                "c_je_pf",
                "a junction capacitance needs a base resistance (rb_ohm > 0)",
            ));
        }
        if self.full_scale_v >= self.adc_range_v {
            return Err(Error::config("full_scale_v", "must be below adc_range_v"));
        }
        Ok(())
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
