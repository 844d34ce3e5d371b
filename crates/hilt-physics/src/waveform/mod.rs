//! What the two time-domain rigs (plate, circuit) share: x and θ become one
//! drive waveform, and the response is read out as time bins (as in the
//! mechanical and electronic PNNs of Wright et al., Nature 601, 549
//! (2022)). The drive elements are published as a
//! `ControlEncoding`, so a twin sees exactly what the actuator played.

mod readout;

pub use readout::{Readout, publish_timing};

use hilt_core::ControlEncoding;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How inputs and parameters share the drive waveform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One element per input, carrying `input_scale·x_i + θ_i`: the two
    /// waveforms played on top of each other, time-aligned.
    Superpose,
    /// `x_0, θ_0, x_1, θ_1, …`: each input followed by its own parameter.
    Interleave,
    /// `θ_pre | x | θ_post`: parameter waveforms before and after the data
    /// (they set the state the input arrives into, and shape the ring-down).
    Concat,
}

impl Encoding {
    /// The name configs and the published `ControlEncoding::layout` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Superpose => "superpose",
            Encoding::Interleave => "interleave",
            Encoding::Concat => "concat",
        }
    }
}

/// The drive encoding of a time-domain rig. The elements are dimensionless
/// in `[-limit, limit]`; the rig multiplies them by its full-scale voltage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriveConfig {
    /// How x and θ share the drive.
    pub encoding: Encoding,
    /// Input dimension (196 for 14×14 MNIST).
    pub n_in: usize,
    /// Concat: parameter elements before the inputs.
    pub n_pre: usize,
    /// Concat: parameter elements after the inputs.
    pub n_post: usize,
    /// Times the input is played in a row, each copy with its own
    /// parameters (superpose, interleave) or between the same framing
    /// parameters (concat). A time bin hears only the drive before it (the
    /// plate rings forward) or around it (the circuit forgets in ~20 µs),
    /// so a readout of one bin per class over a single copy gives each
    /// class a slice of the image; with one copy per bin, every class
    /// hears the whole image through its own parameters.
    pub copies: usize,
    /// Gain on x in the drive (superpose/interleave/concat alike).
    pub input_scale: f32,
    /// Hard limit of the drive, as a fraction of full scale: every element
    /// is clamped into `[-limit, limit]` before it reaches the amplifier.
    /// This is what protects the speaker (or the circuit), whatever x and
    /// θ a client sends.
    pub limit: f32,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            encoding: Encoding::Superpose,
            n_in: 196,
            n_pre: 32,
            n_post: 32,
            copies: 1,
            input_scale: 1.0,
            limit: 1.0,
        }
    }
}

impl DriveConfig {
    /// Errors name the field (`drive.limit`): at most 65 536 inputs played
    /// (`n_in × copies`), `limit` in (0, 1], a positive `input_scale`, and
    /// concat with at least one parameter element.
    pub fn validate(&self) -> Result<(), Error> {
        if self.n_in == 0 || self.n_in > 65_536 {
            return Err(Error::config(
                "drive.n_in",
                format!("{} is not in 1..=65536", self.n_in),
            ));
        }
        if self.copies == 0 || self.n_in.saturating_mul(self.copies) > 65_536 {
            return Err(Error::config(
                "drive.copies",
                format!(
                    "{} copies of {} inputs is not in 1..=65536 elements",
                    self.copies, self.n_in
                ),
            ));
        }
        if self.encoding == Encoding::Concat && self.n_pre + self.n_post == 0 {
            return Err(Error::config(
                "drive.n_pre",
                "concat needs at least one parameter element (n_pre + n_post >= 1)",
            ));
        }
        if !(self.limit.is_finite() && self.limit > 0.0 && self.limit <= 1.0) {
            return Err(Error::config(
                "drive.limit",
                format!("{} is not in (0, 1]", self.limit),
            ));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(Error::config("drive.input_scale", "must be finite and > 0"));
        }
        Ok(())
    }

    /// Drive elements per sample.
    pub fn n_elements(&self) -> usize {
        let played = self.n_in * self.copies;
        match self.encoding {
            Encoding::Superpose => played,
            Encoding::Interleave => 2 * played,
            Encoding::Concat => self.n_pre + played + self.n_post,
        }
    }

    /// Trainable parameters: one per played element (superpose,
    /// interleave) or `n_pre + n_post` (concat).
    pub fn n_par(&self) -> usize {
        match self.encoding {
            Encoding::Superpose | Encoding::Interleave => self.n_in * self.copies,
            Encoding::Concat => self.n_pre + self.n_post,
        }
    }

    /// Which element carries which input and parameter.
    pub fn encoding_map(&self) -> ControlEncoding {
        let n = self.n_elements();
        let mut input_index = vec![-1i32; n];
        let mut param_index = vec![-1i32; n];
        let idx = |v: usize| i32::try_from(v).expect("element counts are validated");
        match self.encoding {
            Encoding::Superpose => {
                for k in 0..n {
                    input_index[k] = idx(k % self.n_in);
                    param_index[k] = idx(k);
                }
            }
            Encoding::Interleave => {
                for p in 0..n / 2 {
                    input_index[2 * p] = idx(p % self.n_in);
                    param_index[2 * p + 1] = idx(p);
                }
            }
            Encoding::Concat => {
                let played = self.n_in * self.copies;
                for k in 0..n {
                    if k < self.n_pre {
                        param_index[k] = idx(k);
                    } else if k < self.n_pre + played {
                        input_index[k] = idx((k - self.n_pre) % self.n_in);
                    } else {
                        param_index[k] = idx(k - played);
                    }
                }
            }
        }
        ControlEncoding {
            layout: self.encoding.as_str().to_string(),
            input_index,
            param_index,
            input_scale: self.input_scale,
            control_min: -self.limit,
            control_max: self.limit,
        }
    }
}

/// The checks every time-domain rig shares: its drive, the hold per
/// element, bins that fit the drive, a converter with a sane resolution.
pub(crate) fn check_sampling(
    drive: &DriveConfig,
    hold_samples: usize,
    n_bins: usize,
    adc_bits: u32,
) -> Result<(), Error> {
    drive.validate()?;
    if hold_samples == 0 || hold_samples > 1024 {
        return Err(Error::config(
            "hold_samples",
            format!("{hold_samples} is not in 1..=1024"),
        ));
    }
    let samples = drive.n_elements() * hold_samples;
    if n_bins == 0 || n_bins > samples {
        return Err(Error::config(
            "n_bins",
            format!("{n_bins} bins cannot split {samples} drive samples"),
        ));
    }
    if !(1..=24).contains(&adc_bits) {
        return Err(Error::config("adc_bits", "must be in 1..=24"));
    }
    Ok(())
}

/// Jitter beyond this many samples is a broken trigger or interface, not
/// a rig to model (and would size every recording by it).
pub(crate) fn check_jitter(field: &'static str, samples: u32) -> Result<(), Error> {
    const MAX_JITTER: u32 = 1000;
    if samples > MAX_JITTER {
        return Err(Error::config(
            field,
            format!("{samples} is not in 0..={MAX_JITTER} samples"),
        ));
    }
    Ok(())
}

/// Zero-order hold into `out`: `lead` samples of rest, each drive element
/// for `hold` samples at `volts` per unit, then rest up to `len` samples.
pub(crate) fn hold_into(
    controls: &[f64],
    hold: usize,
    volts: f64,
    lead: usize,
    len: usize,
    out: &mut Vec<f64>,
) {
    out.clear();
    out.resize(lead, 0.0);
    for c in controls {
        out.extend(std::iter::repeat_n(c * volts, hold));
    }
    out.resize(len, 0.0);
}

/// A converter on `window`: Gaussian noise of std `sigma`, rounding to
/// `bits` over ±`full`, clipping there. Returns whether any sample reached
/// full scale.
pub(crate) fn digitise<R: Rng + ?Sized>(
    window: &mut [f64],
    sigma: f64,
    full: f64,
    bits: u32,
    rng: &mut R,
) -> bool {
    let noise = std::iter::repeat_with(|| rng.sample::<f64, _>(StandardNormal));
    digitise_with(window, noise, sigma, full, bits)
}

/// `digitise` with the standard-normal draws given (one per sample, in
/// order): for a shot whose randomness was drawn before its transient.
pub(crate) fn digitise_with(
    window: &mut [f64],
    noise: impl Iterator<Item = f64>,
    sigma: f64,
    full: f64,
    bits: u32,
) -> bool {
    let lsb = 2.0 * full / f64::from(1u32 << bits);
    let mut saturated = false;
    for (v, z) in window.iter_mut().zip(noise) {
        let raw = *v + sigma * z;
        saturated |= raw.abs() >= full;
        *v = ((raw / lsb).round() * lsb).clamp(-full, full);
    }
    saturated
}

/// How a lab undoes an interface's latency (or trigger) jitter: the drive
/// is also recorded on a loopback input through the same converter, and
/// the lag within ±`jitter` samples that best matches the known drive
/// (cross-correlation) is the one the recording is shifted back by. The
/// loopback copy comes back `true_lag` samples late with noise `sigma`
/// (in drive units); `controls` are the drive elements, held `hold`
/// samples each.
pub(crate) fn loopback_lag<R: Rng + ?Sized>(
    controls: &[f64],
    hold: usize,
    true_lag: i64,
    jitter: i64,
    sigma: f64,
    rng: &mut R,
) -> i64 {
    let n = controls.len() * hold;
    let drive = |t: i64| {
        usize::try_from(t)
            .ok()
            .filter(|&t| t < n)
            .map_or(0.0, |t| controls[t / hold])
    };
    let recorded: Vec<f64> = (-jitter..n as i64 + jitter)
        .map(|t| {
            let z: f64 = rng.sample(StandardNormal);
            drive(t - true_lag) + sigma * z
        })
        .collect();
    (-jitter..=jitter)
        .map(|k| {
            let c: f64 = recorded
                .iter()
                .enumerate()
                .map(|(i, r)| drive(i as i64 - jitter - k) * r)
                .sum();
            (k, c)
        })
        .fold((0, f64::NEG_INFINITY), |best, (k, c)| {
            if c > best.1 { (k, c) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(encoding: Encoding, n_in: usize) -> DriveConfig {
        DriveConfig {
            encoding,
            n_in,
            n_pre: 2,
            n_post: 1,
            ..DriveConfig::default()
        }
    }

    fn compose(cfg: &DriveConfig, x: &[f32], theta: &[f32]) -> Vec<f32> {
        let map = cfg.encoding_map();
        let mut out = vec![0.0f32; map.n_controls()];
        map.compose(x, theta, &mut out);
        out
    }

    #[test]
    fn superpose_adds_parameter_to_input() {
        let c = drive(Encoding::Superpose, 3);
        assert_eq!(c.n_par(), 3);
        assert_eq!(
            compose(&c, &[0.1, 0.2, 0.3], &[0.5, -0.5, 0.0]),
            [0.6, -0.3, 0.3]
        );
    }

    #[test]
    fn interleave_alternates_input_and_parameter() {
        let c = drive(Encoding::Interleave, 2);
        assert_eq!(c.n_elements(), 4);
        assert_eq!(compose(&c, &[0.1, 0.2], &[0.7, 0.8]), [0.1, 0.7, 0.2, 0.8]);
    }

    #[test]
    fn concat_frames_the_input_with_parameters() {
        let c = drive(Encoding::Concat, 2);
        assert_eq!(c.n_par(), 3);
        assert_eq!(
            compose(&c, &[0.1, 0.2], &[0.7, 0.8, 0.9]),
            [0.7, 0.8, 0.1, 0.2, 0.9]
        );
    }

    #[test]
    fn copies_replay_the_input_with_their_own_parameters() {
        let c = DriveConfig {
            copies: 2,
            ..drive(Encoding::Superpose, 2)
        };
        assert_eq!((c.n_elements(), c.n_par()), (4, 4));
        assert_eq!(
            compose(&c, &[0.1, 0.2], &[0.0, 0.1, 0.2, 0.3]),
            [0.1, 0.3, 0.3, 0.5]
        );
        let c = DriveConfig {
            copies: 2,
            ..drive(Encoding::Interleave, 2)
        };
        assert_eq!(
            compose(&c, &[0.1, 0.2], &[0.5, 0.6, 0.7, 0.8]),
            [0.1, 0.5, 0.2, 0.6, 0.1, 0.7, 0.2, 0.8]
        );
        let c = DriveConfig {
            copies: 2,
            ..drive(Encoding::Concat, 2)
        };
        assert_eq!(c.n_par(), 3);
        assert_eq!(
            compose(&c, &[0.1, 0.2], &[0.7, 0.8, 0.9]),
            [0.7, 0.8, 0.1, 0.2, 0.1, 0.2, 0.9]
        );
        let bad = DriveConfig {
            copies: 0,
            ..drive(Encoding::Superpose, 2)
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("drive.copies")
        );
    }

    #[test]
    fn the_limit_clamps_every_element() {
        let c = DriveConfig {
            limit: 0.5,
            ..drive(Encoding::Superpose, 2)
        };
        assert_eq!(compose(&c, &[1.0, -1.0], &[1.0, -1.0]), [0.5, -0.5]);
    }

    #[test]
    fn readouts() {
        let trace = [3.0, -3.0, 1.0, 1.0];
        let bins = crate::bins::equal_bins(0, 4, 2);
        let mut y = [0.0f32; 2];
        Readout::Rms.apply(&trace, &bins, &mut y);
        assert_eq!(y, [3.0, 1.0]);
        Readout::Mean.apply(&trace, &bins, &mut y);
        assert_eq!(y, [0.0, 1.0]);
    }

    #[test]
    fn bad_drive_names_the_field() {
        let bad = DriveConfig {
            limit: 1.5,
            ..DriveConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("drive.limit")
        );
    }
}

/// What the time-domain rigs' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use ndarray::Array2;

    use crate::{PhysicalModel, forward};

    /// Relative RMS spread of `n` repeated measurements of one drive:
    /// what the next layer of a deep network sees as noise.
    pub(crate) fn repeat_spread<M: PhysicalModel>(
        m: &mut M,
        x: &Array2<f32>,
        theta: &Array2<f32>,
        n: usize,
    ) -> f32 {
        let runs: Vec<Array2<f32>> = (0..n)
            .map(|_| forward(m, x.view(), theta.view()).0)
            .collect();
        let zero = Array2::<f32>::zeros(runs[0].dim());
        let mean = runs.iter().fold(zero, |a, r| a + r) / n as f32;
        let dev: f32 = runs.iter().map(|r| (r - &mean).mapv(|v| v * v).sum()).sum();
        let power: f32 = mean.mapv(|v| v * v).sum();
        (dev / power / n as f32).sqrt()
    }
}
