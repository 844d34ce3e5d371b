use std::collections::BTreeMap;

use hilt_core::ControlEncoding;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::config::{CircuitConfig, Probe};
use super::solver::{Components, Point};
use crate::waveform::{bin_edges, digitise, hold_into, loopback_lag};
use crate::{Error, OrnsteinUhlenbeck, PhysicalModel, Variant};

const STREAM_MISMATCH: u64 = 1;
const STREAM_NOISE: u64 = 2;

/// Boltzmann constant over the electron charge, V/K.
const K_OVER_Q: f64 = 8.617_333e-5;

/// A simulated circuit rig. Output bin j is the mean (or RMS) of the
/// probed voltage over the j-th slice of the drive window, in volts.
#[derive(Debug, Clone)]
pub struct CircuitModel {
    cfg: CircuitConfig,
    variant: Variant,
    map: ControlEncoding,
    parts: Components,
    bins: Vec<(usize, usize)>,
    temp: OrnsteinUhlenbeck,
    rng: ChaCha8Rng,
    clock: f64,
    controls: Vec<f64>,
    trace: Vec<f64>,
}

impl CircuitModel {
    pub fn new(cfg: CircuitConfig, variant: Variant, seed: u64) -> Result<Self, Error> {
        cfg.validate()?;
        let n_vt = cfg.ideality * K_OVER_Q * cfg.temperature_k;
        let mut parts = Components {
            l: cfg.l_mh * 1e-3,
            c: cfg.c_nf * 1e-9,
            r: cfg.r_ohm,
            rb: 0.0,
            cje: 0.0,
            i_s: cfg.i_s_a,
            beta: cfg.beta_f,
            n_vt,
            vcc: cfg.vcc_v,
            rc: cfg.rc_ohm,
            vce_sat: cfg.vce_sat_v,
        };
        if variant == Variant::True {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(STREAM_MISMATCH);
            let mut tol = || {
                let z: f64 = rng.sample(StandardNormal);
                1.0 + cfg.tolerance * z.clamp(-3.0, 3.0)
            };
            parts.l *= tol();
            parts.c = parts.c * tol() + cfg.c_parasitic_pf * 1e-12;
            parts.r = parts.r * tol() + cfg.esr_ohm;
            parts.rb = cfg.rb_ohm * tol();
            parts.cje = if parts.rb > 0.0 {
                cfg.c_je_pf * 1e-12
            } else {
                0.0
            };
            // I_S spreads by decades between parts; ±5 % in V_BE terms.
            parts.i_s *= tol().powi(8);
            parts.beta *= tol();
            parts.rc *= tol();
        }
        let n = cfg.drive_samples();
        let j = cfg.trigger_jitter as usize;
        let bins = bin_edges(0, n, cfg.n_bins);
        let temp = match variant {
            Variant::Nominal => OrnsteinUhlenbeck::new(0.0, cfg.temp_tau_s),
            Variant::True => OrnsteinUhlenbeck::new(cfg.temp_sigma_k, cfg.temp_tau_s),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_NOISE);
        Ok(CircuitModel {
            map: cfg.drive.encoding_map(),
            variant,
            parts,
            bins,
            temp,
            rng,
            clock: 0.0,
            controls: Vec::new(),
            trace: Vec::with_capacity(n + 2 * j),
            cfg,
        })
    }

    pub fn config(&self) -> &CircuitConfig {
        &self.cfg
    }

    /// The component values this rig was built with.
    pub fn components(&self) -> &Components {
        &self.parts
    }

    /// Supply voltage now: it droops slowly as the board runs.
    fn vcc(&self) -> f64 {
        match self.variant {
            Variant::Nominal => self.parts.vcc,
            Variant::True => {
                let d = self.cfg.supply_droop
                    * (1.0 - (-self.clock / self.cfg.supply_droop_tau_s).exp());
                self.parts.vcc * (1.0 - d)
            }
        }
    }

    /// The probed voltage at every ADC sample for the given input voltage
    /// per sample (held over each), from rest; `dv` shifts the junction's
    /// V_BE (negative: conducts earlier, as when warm).
    pub fn respond(&self, volts: &[f64], dv: f64, out: &mut Vec<f64>) {
        out.clear();
        let h = 1.0 / (self.cfg.sample_rate_hz * self.cfg.substeps as f64);
        let vcc = self.vcc();
        let mut p = Point::default();
        for &u in volts {
            self.parts.advance(&mut p, u, dv, h, self.cfg.substeps);
            let s = p.s;
            out.push(match self.cfg.probe {
                Probe::Capacitor => s[1],
                Probe::Collector => {
                    let vb = if self.parts.rb == 0.0 { s[1] } else { s[2] };
                    self.parts.collector_drop(self.parts.base(vb, dv).0, vcc)
                }
            });
        }
    }
}

impl PhysicalModel for CircuitModel {
    fn kind(&self) -> &'static str {
        "circuit"
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
        ("drive full scale", "drive full scale", "V")
    }

    fn channel_map(&self) -> Option<&ControlEncoding> {
        Some(&self.map)
    }

    fn hyperparameters(&self) -> BTreeMap<String, String> {
        let mut h = crate::hyper::flatten(&self.cfg);
        h.insert("variant".into(), self.variant.as_str().into());
        h
    }

    fn seconds_per_sample(&self) -> f64 {
        self.cfg.seconds_per_sample()
    }

    fn clock(&self) -> f64 {
        self.clock
    }

    fn quantize(&self, _x: &mut [f32], _theta: &mut [f32]) {
        // The AO's 16 bits over ±10 V are finer than its noise.
    }

    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
        let mut controls = std::mem::take(&mut self.controls);
        let mut trace = std::mem::take(&mut self.trace);
        controls.resize(self.map.n_controls(), 0.0);
        self.map.compose(x, theta, &mut controls);
        let truth = self.variant == Variant::True;
        let hold = self.cfg.hold_samples;
        let n = self.cfg.drive_samples();
        let j = if truth {
            i64::from(self.cfg.trigger_jitter)
        } else {
            0
        };
        // Rest, the drive, rest: the trigger may fire up to j samples early
        // or late, and a misread loopback lag may add j more.
        let margin = 2 * j as usize;
        let mut volts = Vec::with_capacity(n + 2 * margin);
        hold_into(
            &controls,
            hold,
            self.cfg.full_scale_v,
            margin,
            n + 2 * margin,
            &mut volts,
        );
        if truth && self.cfg.ao_noise_v > 0.0 {
            for v in &mut volts {
                let z: f64 = self.rng.sample(StandardNormal);
                *v += self.cfg.ao_noise_v * z;
            }
        }
        // A warmer junction reaches the same current at a lower V_BE.
        let dv = if truth {
            self.cfg.vbe_tempco_v_per_k * self.temp.value()
        } else {
            0.0
        };
        self.respond(&volts, dv, &mut trace);
        let mut lag = if j > 0 {
            self.rng.random_range(-j..=j)
        } else {
            0
        };
        if j > 0 && self.cfg.align_loopback {
            let volts_noise = self.cfg.ao_noise_v.hypot(self.cfg.adc_noise_v);
            let sigma = volts_noise / self.cfg.full_scale_v;
            lag -= loopback_lag(&controls, hold, lag, j, sigma, &mut self.rng);
        }
        let start = (margin as i64 + lag) as usize;
        let window = &mut trace[start..start + n];
        let mut saturated = false;
        if truth {
            saturated = digitise(
                window,
                self.cfg.adc_noise_v,
                self.cfg.adc_range_v,
                self.cfg.adc_bits,
                &mut self.rng,
            );
        }
        self.cfg.readout.apply(window, &self.bins, y);
        let dt = self.cfg.seconds_per_sample();
        self.clock += dt;
        if truth {
            self.temp.step(dt, &mut self.rng);
        }
        self.controls = controls;
        self.trace = trace;
        saturated
    }
}

#[cfg(test)]
mod tests;
