//! A structured twin for the time-domain rigs (plate, circuit). The
//! published control vector, held `hold` samples per element, passes a
//! learned FIR filter and a learned pointwise nonlinearity, then the
//! device's own time-bin readout (RMS or mean) and a per-bin affine map.
//! This is the physics' own shape: the plate is a linear modal filter
//! heard as loudness per bin, the circuit a filter into a junction
//! (`physics.md` §2.2–2.3). About a thousand parameters, so 10⁴ random
//! probes pin it down where a 196-input MLP stays at 40–80 % error.

use candle_core::{DType, Device, Tensor, Var};
use hilt_core::DeviceSpec;

use crate::error::{Error, Result};

/// Samples of look-ahead the filter may use: the acoustic delay and the
/// interface latency put the recorded window behind the drive.
const LEAD: usize = 64;
/// Hidden units of the pointwise nonlinearity.
const NL_UNITS: usize = 8;

/// The readout the device applies to each time bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinReadout {
    Rms,
    Mean,
}

/// What the twin needs to know of the device's timing, read from its
/// published hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub n_controls: usize,
    pub hold: usize,
    pub bins: Vec<(usize, usize)>,
    pub readout: BinReadout,
}

impl Shape {
    /// `None` for devices that are not driven by a held waveform.
    pub fn for_spec(spec: &DeviceSpec) -> Result<Option<Self>> {
        if !matches!(spec.kind.as_str(), "plate" | "circuit") {
            return Ok(None);
        }
        let enc = spec.encoding.as_ref().ok_or_else(|| {
            Error::invalid(format!("device '{}' publishes no drive encoding", spec.id))
        })?;
        let get = |k: &str| {
            spec.hyperparameters.get(k).ok_or_else(|| {
                Error::invalid(format!("device '{}' does not publish '{k}'", spec.id))
            })
        };
        let num = |k: &str| -> Result<usize> {
            get(k)?
                .parse()
                .map_err(|_| Error::invalid(format!("device '{}': '{k}' is not a count", spec.id)))
        };
        let hold = num("hold_samples")?;
        let readout = match get("readout")?.as_str() {
            "rms" => BinReadout::Rms,
            "mean" => BinReadout::Mean,
            other => {
                return Err(Error::invalid(format!(
                    "device '{}': unknown readout '{other}'",
                    spec.id
                )));
            }
        };
        let n = enc.n_controls() * hold;
        let n_bins = spec.n_out;
        if hold == 0 || n_bins == 0 || n_bins > n {
            return Err(Error::invalid(format!(
                "device '{}': {n_bins} bins of {n} samples",
                spec.id
            )));
        }
        // The same equal split as hilt_physics::waveform::bin_edges.
        let bins = (0..n_bins)
            .map(|j| (j * n / n_bins, (j + 1) * n / n_bins))
            .collect();
        Ok(Some(Shape {
            n_controls: enc.n_controls(),
            hold,
            bins,
            readout,
        }))
    }

    fn samples(&self) -> usize {
        self.n_controls * self.hold
    }

    /// Kernel taps: the whole window plus the look-ahead.
    pub fn taps(&self) -> usize {
        self.samples() + LEAD
    }
}

/// Index tensors that turn the kernel into the drive-to-trace matrix.
#[derive(Debug, Clone)]
struct Fixed {
    /// `hold` index sets `[n_controls · samples]` into the zero-padded
    /// kernel: M[c, t] = Σ_h k[t − (c·hold + h) + LEAD].
    idx: Vec<Tensor>,
    /// `[samples, n_bins]`, 1/width inside each bin.
    bin: Tensor,
}

impl Fixed {
    fn new(s: &Shape) -> Result<Self> {
        let (nc, n, taps) = (s.n_controls, s.samples(), s.taps());
        let zero = taps as u32; // the pad slot
        let mut idx = Vec::with_capacity(s.hold);
        for h in 0..s.hold {
            let v: Vec<u32> = (0..nc)
                .flat_map(|c| {
                    (0..n).map(move |t| {
                        let lag = t as i64 - (c * s.hold + h) as i64 + LEAD as i64;
                        if (0..taps as i64).contains(&lag) {
                            lag as u32
                        } else {
                            zero
                        }
                    })
                })
                .collect();
            idx.push(Tensor::from_vec(v, nc * n, &Device::Cpu)?);
        }
        let mut bin = vec![0f32; n * s.bins.len()];
        for (j, &(a, b)) in s.bins.iter().enumerate() {
            for t in a..b {
                bin[t * s.bins.len() + j] = 1.0 / (b - a) as f32;
            }
        }
        Ok(Fixed {
            idx,
            bin: Tensor::from_vec(bin, (n, s.bins.len()), &Device::Cpu)?,
        })
    }
}

/// The learned parameters, as plain tensors (a fitted twin) or optimiser
/// variables (while fitting).
#[derive(Debug, Clone)]
pub struct Params {
    pub kernel: Tensor,
    pub nl_in: Tensor,
    pub nl_bias: Tensor,
    pub nl_out: Tensor,
    pub gain: Tensor,
    pub offset: Tensor,
}

impl Params {
    pub const NAMES: [&'static str; 6] = ["kernel", "nl_in", "nl_bias", "nl_out", "gain", "offset"];

    pub fn tensors(&self) -> [&Tensor; 6] {
        [
            &self.kernel,
            &self.nl_in,
            &self.nl_bias,
            &self.nl_out,
            &self.gain,
            &self.offset,
        ]
    }

    pub fn from_tensors(t: Vec<Tensor>) -> Result<Self> {
        let [kernel, nl_in, nl_bias, nl_out, gain, offset]: [Tensor; 6] = t
            .try_into()
            .map_err(|_| Error::invalid("a waveform twin has six tensors"))?;
        Ok(Params {
            kernel,
            nl_in,
            nl_bias,
            nl_out,
            gain,
            offset,
        })
    }

    /// Seeded start: a small random kernel, a near-identity nonlinearity.
    pub fn init(s: &Shape, seed: u64) -> Result<Vec<Var>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let taps = s.taps();
        let k: Vec<f32> = (0..taps)
            .map(|_| rng.random_range(-1.0f32..1.0) / (taps as f32).sqrt())
            .collect();
        let w: Vec<f32> = (0..NL_UNITS)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let b: Vec<f32> = (0..NL_UNITS)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let nb = s.bins.len();
        let cpu = &Device::Cpu;
        Ok(vec![
            Var::from_tensor(&Tensor::from_vec(k, taps, cpu)?)?,
            Var::from_tensor(&Tensor::from_vec(w, (1, NL_UNITS), cpu)?)?,
            Var::from_tensor(&Tensor::from_vec(b, (1, NL_UNITS), cpu)?)?,
            Var::from_tensor(&Tensor::zeros((NL_UNITS, 1), DType::F32, cpu)?)?,
            Var::from_tensor(&Tensor::ones((1, nb), DType::F32, cpu)?)?,
            Var::from_tensor(&Tensor::zeros((1, nb), DType::F32, cpu)?)?,
        ])
    }
}

/// The fixed structure plus its parameters.
#[derive(Debug, Clone)]
pub struct Wiener {
    pub shape: Shape,
    fixed: Fixed,
}

impl Wiener {
    pub fn new(shape: Shape) -> Result<Self> {
        let fixed = Fixed::new(&shape)?;
        Ok(Wiener { shape, fixed })
    }

    /// Outputs `[B, n_bins]` for controls `[B, n_controls]`; differentiable
    /// in the controls and in `p`.
    pub fn forward(&self, p: &Params, u: &Tensor) -> Result<Tensor> {
        let s = &self.shape;
        let (nc, n) = (s.n_controls, s.samples());
        let padded = Tensor::cat(
            &[&p.kernel, &Tensor::zeros(1, DType::F32, &Device::Cpu)?],
            0,
        )?;
        let mut m = padded.index_select(&self.fixed.idx[0], 0)?;
        for idx in &self.fixed.idx[1..] {
            m = (m + padded.index_select(idx, 0)?)?;
        }
        let m = m.reshape((nc, n))?;
        let trace = u.matmul(&m)?; // [B, n]
        // Pointwise nonlinearity, residual: q = p + Σ a_k tanh(w_k p + b_k).
        let b = trace.dim(0)?;
        let flat = trace.reshape((b * n, 1))?;
        let h = flat.matmul(&p.nl_in)?.broadcast_add(&p.nl_bias)?.tanh()?;
        let q = (flat + h.matmul(&p.nl_out)?)?.reshape((b, n))?;
        let y = match s.readout {
            BinReadout::Rms => (q.sqr()?.matmul(&self.fixed.bin)? + 1e-12)?.sqrt()?,
            BinReadout::Mean => q.matmul(&self.fixed.bin)?,
        };
        Ok(y.broadcast_mul(&p.gain)?.broadcast_add(&p.offset)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            n_controls: 3,
            hold: 2,
            bins: vec![(0, 3), (3, 6)],
            readout: BinReadout::Mean,
        }
    }

    #[test]
    fn the_matrix_is_a_held_causal_convolution() {
        // Kernel = a single tap at lag LEAD (no delay): the trace is the
        // held drive itself, and the mean bins average it.
        let s = shape();
        let w = Wiener::new(s.clone()).unwrap();
        let mut k = vec![0f32; s.taps()];
        k[LEAD] = 1.0;
        let p = Params {
            kernel: Tensor::from_vec(k, s.taps(), &Device::Cpu).unwrap(),
            nl_in: Tensor::zeros((1, NL_UNITS), DType::F32, &Device::Cpu).unwrap(),
            nl_bias: Tensor::zeros((1, NL_UNITS), DType::F32, &Device::Cpu).unwrap(),
            nl_out: Tensor::zeros((NL_UNITS, 1), DType::F32, &Device::Cpu).unwrap(),
            gain: Tensor::ones((1, 2), DType::F32, &Device::Cpu).unwrap(),
            offset: Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap(),
        };
        let u = Tensor::new(&[[1f32, 2.0, 4.0]], &Device::Cpu).unwrap();
        // Held: 1 1 2 2 4 4 → bins (1+1+2)/3, (2+4+4)/3.
        let y: Vec<Vec<f32>> = w.forward(&p, &u).unwrap().to_vec2().unwrap();
        assert!((y[0][0] - 4.0 / 3.0).abs() < 1e-6 && (y[0][1] - 10.0 / 3.0).abs() < 1e-6);
        // One tap later: everything arrives one sample late.
        let mut k = vec![0f32; s.taps()];
        k[LEAD + 1] = 1.0;
        let p = Params {
            kernel: Tensor::from_vec(k, s.taps(), &Device::Cpu).unwrap(),
            ..p
        };
        let y: Vec<Vec<f32>> = w.forward(&p, &u).unwrap().to_vec2().unwrap();
        // 0 1 1 2 2 4 → 2/3, 8/3.
        assert!((y[0][0] - 2.0 / 3.0).abs() < 1e-6 && (y[0][1] - 8.0 / 3.0).abs() < 1e-6);
    }
}
