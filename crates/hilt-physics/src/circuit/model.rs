use std::collections::BTreeMap;

use hilt_core::ControlEncoding;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::config::{CircuitConfig, Probe};
use super::integrator::{Integrator, LANES, Point};
use super::solver::{Components, State};
use crate::bins::equal_bins;
use crate::model::theta_row;
use crate::waveform::{digitise_with, hold_into, loopback_lag};
use crate::{Error, OrnsteinUhlenbeck, PhysicalModel, RigKind, Variant};

const STREAM_MISMATCH: u64 = 1;
const STREAM_NOISE: u64 = 2;

/// Samples of drive the circuit still remembers: 256 µs at 1 MS/s, while
/// its RLC envelope decays in ~20 µs. A twin needs no longer a kernel (a
/// four times longer one only fitted four times slower).
const RESPONSE_MEMORY: usize = 256;

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
    /// Threads a sweep computes its shots' transients on (the numbers do
    /// not depend on it).
    threads: usize,
}

/// One shot with everything random already drawn, in the order a lone
/// shot draws it: only the transient is left to compute, and it needs
/// nothing of the model's state.
#[derive(Debug)]
struct Prepared {
    volts: Vec<f64>,
    dv: f64,
    vcc: f64,
    /// Where the (aligned) ADC window starts in the transient.
    start: usize,
    adc_noise: Vec<f64>,
}

/// Rows a sweep prepares at a time: bounds its memory (two traces of the
/// drive per row) whatever the batch.
const SWEEP_CHUNK: usize = 32;

impl CircuitModel {
    /// A circuit of `cfg`; for `true`, `seed` fixes the part tolerances
    /// and the noise.
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
        let bins = equal_bins(0, cfg.drive_samples(), cfg.n_bins);
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
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cfg,
        })
    }

    /// The configuration this circuit was built from.
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

    /// Compute sweeps' transients on this many threads (default: the
    /// machine's); 1 computes them in line. Results are the same.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The probed voltage at every ADC sample for the given input voltage
    /// per sample (held over each), from rest; `dv` shifts the junction's
    /// V_BE (negative: conducts earlier, as when warm).
    pub fn respond(&self, volts: &[f64], dv: f64, out: &mut Vec<f64>) {
        self.respond_at(volts, dv, self.vcc(), out);
    }

    /// `respond` at supply voltage `vcc`.
    fn respond_at(&self, volts: &[f64], dv: f64, vcc: f64, out: &mut Vec<f64>) {
        self.respond_lanes(&[(volts, dv, vcc)], std::slice::from_mut(out));
    }

    /// `respond_at` for several shots `(volts, dv, vcc)`, their circuits
    /// stepped side by side `LANES` at a time; each trace is what the shot
    /// alone gives.
    fn respond_lanes(&self, shots: &[(&[f64], f64, f64)], outs: &mut [Vec<f64>]) {
        let h = 1.0 / (self.cfg.sample_rate_hz * self.cfg.substeps as f64);
        for (group, outs) in shots.chunks(LANES).zip(outs.chunks_mut(LANES)) {
            let steps: Vec<Integrator> = group
                .iter()
                .map(|&(_, dv, _)| Integrator::new(&self.parts, h, dv))
                .collect();
            let mut lanes: Vec<(&Integrator, Point, f64)> =
                steps.iter().map(|s| (s, Point::default(), 0.0)).collect();
            for out in outs.iter_mut() {
                out.clear();
            }
            let len = group.iter().map(|(v, _, _)| v.len()).max().unwrap_or(0);
            for t in 0..len {
                // A shorter drive (none in a sweep) holds its last input.
                for (lane, (volts, _, _)) in lanes.iter_mut().zip(group) {
                    lane.2 = volts.get(t).copied().unwrap_or(lane.2);
                }
                Integrator::advance_together(&mut lanes, self.cfg.substeps);
                for (((_, p, _), &(volts, dv, vcc)), out) in lanes.iter().zip(group).zip(&mut *outs)
                {
                    if t < volts.len() {
                        out.push(self.probe(&p.state(), dv, vcc));
                    }
                }
            }
        }
    }

    /// The probed voltage at state `s`.
    fn probe(&self, s: &State, dv: f64, vcc: f64) -> f64 {
        match self.cfg.probe {
            Probe::Capacitor => s[1],
            Probe::Collector => {
                let vb = if self.parts.rb == 0.0 { s[1] } else { s[2] };
                self.parts.collector_drop(self.parts.base(vb, dv).0, vcc)
            }
        }
    }
}

impl PhysicalModel for CircuitModel {
    fn kind(&self) -> RigKind {
        RigKind::Circuit
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
        // The AO's 16 bits over ±10 V are finer than its noise.
    }

    fn shot(&mut self, x: &[f32], theta: &[f32], y: &mut [f32]) -> bool {
        let p = self.prepare(x, theta);
        let mut trace = Vec::new();
        self.respond_at(&p.volts, p.dv, p.vcc, &mut trace);
        self.finish(&p, &mut trace, y)
    }

    /// Every shot's randomness is drawn in order first; the transients,
    /// the expensive part, are then computed on `threads` threads, and
    /// read out in order. Bit for bit what shots one by one give.
    fn sweep(
        &mut self,
        x: &[f32],
        theta: &[f32],
        y: &mut [f32],
        saturated: &mut [bool],
        clocks: &mut [(f64, f64)],
    ) {
        let (n_in, n_par, n_out) = (self.n_in(), self.n_par(), self.n_out());
        let rows = x.len() / n_in.max(1);
        for first in (0..rows).step_by(SWEEP_CHUNK) {
            let chunk = first..rows.min(first + SWEEP_CHUNK);
            let mut prepared = Vec::with_capacity(chunk.len());
            for i in chunk.clone() {
                let t = theta_row(theta, n_par, i);
                let start = self.clock;
                prepared.push(self.prepare(&x[i * n_in..(i + 1) * n_in], t));
                clocks[i] = (start, self.clock);
            }
            let mut traces: Vec<Vec<f64>> = prepared.iter().map(|_| Vec::new()).collect();
            let per_thread = prepared.len().div_ceil(self.threads);
            let model = &*self;
            let respond_all = move |jobs: &[Prepared], outs: &mut [Vec<f64>]| {
                let shots: Vec<(&[f64], f64, f64)> =
                    jobs.iter().map(|p| (&p.volts[..], p.dv, p.vcc)).collect();
                model.respond_lanes(&shots, outs);
            };
            // The first share on this thread, the others beside it: one
            // thread spawns nothing.
            std::thread::scope(|scope| {
                let mut shares = prepared
                    .chunks(per_thread)
                    .zip(traces.chunks_mut(per_thread));
                let first = shares.next();
                for (jobs, outs) in shares {
                    scope.spawn(move || respond_all(jobs, outs));
                }
                if let Some((jobs, outs)) = first {
                    respond_all(jobs, outs);
                }
            });
            for ((i, p), trace) in chunk.zip(&prepared).zip(&mut traces) {
                saturated[i] = self.finish(p, trace, &mut y[i * n_out..(i + 1) * n_out]);
            }
        }
    }
}

impl CircuitModel {
    /// A shot up to its transient: the drive with the generator's noise,
    /// the junction's temperature shift and the supply now, the trigger's
    /// lag as the loopback channel corrects it, the ADC's noise; then the
    /// clock and the drift advance past the shot.
    fn prepare(&mut self, x: &[f32], theta: &[f32]) -> Prepared {
        let mut controls = vec![0.0; self.map.n_controls()];
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
        let vcc = self.vcc();
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
        let adc_noise = if truth {
            (0..n).map(|_| self.rng.sample(StandardNormal)).collect()
        } else {
            Vec::new()
        };
        let dt = self.cfg.seconds_per_sample();
        self.clock += dt;
        if truth {
            self.temp.step(dt, &mut self.rng);
        }
        Prepared {
            volts,
            dv,
            vcc,
            start: (margin as i64 + lag) as usize,
            adc_noise,
        }
    }

    /// The ADC window of a prepared shot's transient, digitised and binned.
    fn finish(&self, p: &Prepared, trace: &mut [f64], y: &mut [f32]) -> bool {
        let n = self.cfg.drive_samples();
        let window = &mut trace[p.start..p.start + n];
        let mut saturated = false;
        if self.variant == Variant::True {
            saturated = digitise_with(
                window,
                p.adc_noise.iter().copied(),
                self.cfg.adc_noise_v,
                self.cfg.adc_range_v,
                self.cfg.adc_bits,
            );
        }
        self.cfg.readout.apply(window, &self.bins, y);
        saturated
    }
}

#[cfg(test)]
mod tests;
