//! A structured twin for the time-domain rigs (plate, circuit). The
//! published control vector, held `hold` samples per element, passes a
//! learned FIR filter and a learned pointwise nonlinearity, then the
//! device's own time-bin readout (RMS or mean) and a per-bin affine map.
//! This is the physics' own shape: the plate is a linear modal filter
//! heard as loudness per bin (its modes ring down in ~10 ms at Q 100), the
//! circuit a linear filter into a junction's exponential (its envelope
//! decays in ~20 µs). About a thousand parameters, so 10⁴ random probes pin
//! it down where a 196-input MLP stays at 40–80 % error. The device's
//! timing comes from its published hyperparameters (`shape.rs`).

use candle_core::{DType, Device, Tensor, Var};

use super::shape::{BinReadout, LEAD, Shape};
use crate::error::Result;

/// Hidden units of the pointwise nonlinearity.
const NL_UNITS: usize = 8;

/// Index tensors that turn the kernel into a block of the drive-to-trace
/// matrix. A held drive is piecewise constant and the response is
/// shift-invariant, so one `[block + width − 1, block · hold]` matrix
/// maps every run of `block` controls (with its `width − 1` neighbours)
/// to its trace. The full `n_controls × samples` matrix would hold ~2·10⁷
/// entries at ten copies of a 196-pixel drive; the block holds ~4·10⁵,
/// and a single-copy drive is one block, as fast as the full matrix.
#[derive(Debug, Clone)]
struct Fixed {
    /// `hold` index sets into the zero-padded kernel, each
    /// `[(block + width − 1) · block · hold]`, summed to give the block:
    /// B[i, p·hold + h'] = Σ_h k[(d_max − i + p)·hold + h' − h + LEAD].
    idx: Vec<Tensor>,
    /// Controls per block, and the control offsets a trace sample hears:
    /// from `d_max` before it to `width − 1 − d_max` after it.
    block: usize,
    /// Rows of the block matrix: `block + width − 1`, or `n_controls`
    /// for a single block.
    rows: usize,
    width: usize,
    d_max: usize,
    n_blocks: usize,
    /// `[n_blocks · rows]`: each block's run of the padded drive; `None`
    /// for a single block (the drive itself, unpadded).
    gather: Option<Tensor>,
    /// `[samples, n_bins]`, 1/width inside each bin.
    bin: Tensor,
}

impl Fixed {
    fn new(s: &Shape) -> Result<Self> {
        let (hold, taps) = (s.hold as i64, s.taps() as i64);
        let zero = taps as u32; // the pad slot
        let lead = LEAD as i64;
        // lag = d·hold + h' − h + LEAD must reach [0, taps) for some h, h'.
        let d_min = -(lead + hold - 1).div_euclid(hold);
        let d_max = (taps - 1 + hold - 1 - lead).div_euclid(hold);
        let width = (d_max - d_min + 1) as usize;
        let block = s.n_controls.min(width);
        let n_blocks = s.n_controls.div_ceil(block);
        // A single block needs no padding: its rows are the controls
        // themselves, at offset d_max in the padded numbering.
        let (row0, rows) = if n_blocks == 1 {
            (d_max, s.n_controls)
        } else {
            (0, block + width - 1)
        };
        let mut idx = Vec::with_capacity(s.hold);
        for h in 0..hold {
            let mut v = Vec::with_capacity(rows * block * s.hold);
            for i in row0..row0 + rows as i64 {
                for p in 0..block as i64 {
                    for hp in 0..hold {
                        let lag = (d_max - i + p) * hold + hp - h + lead;
                        v.push(if (0..taps).contains(&lag) {
                            lag as u32
                        } else {
                            zero
                        });
                    }
                }
            }
            idx.push(Tensor::from_vec(v, rows * block * s.hold, &Device::Cpu)?);
        }
        let gather = (n_blocks > 1)
            .then(|| {
                let v: Vec<u32> = (0..n_blocks)
                    .flat_map(|k| (0..rows).map(move |i| (k * block + i) as u32))
                    .collect();
                Tensor::from_vec(v, n_blocks * rows, &Device::Cpu)
            })
            .transpose()?;
        let n = s.samples();
        let mut bin = vec![0f32; n * s.bins.len()];
        for (j, &(a, b)) in s.bins.iter().enumerate() {
            for t in a..b {
                bin[t * s.bins.len() + j] = 1.0 / (b - a) as f32;
            }
        }
        Ok(Fixed {
            idx,
            block,
            rows,
            width,
            d_max: d_max as usize,
            n_blocks,
            gather,
            bin: Tensor::from_vec(bin, (n, s.bins.len()), &Device::Cpu)?,
        })
    }
}

/// The learned parameters, by name, as plain tensors (a fitted twin) or
/// the tensors of optimiser variables (while fitting).
#[derive(Debug, Clone)]
pub struct WaveformParams {
    /// FIR taps `[taps]`, `LEAD` of them before the present sample.
    pub kernel: Tensor,
    /// Input weights of the nonlinearity's units `[1, NL_UNITS]`.
    pub nl_in: Tensor,
    /// Their biases `[1, NL_UNITS]`.
    pub nl_bias: Tensor,
    /// Their output weights `[NL_UNITS, 1]`.
    pub nl_out: Tensor,
    /// Per-bin gain `[1, n_bins]`.
    pub gain: Tensor,
    /// Per-bin offset `[1, n_bins]`.
    pub offset: Tensor,
}

impl WaveformParams {
    /// Every parameter with its name (the file's tensor names, after
    /// `waveform.`), in the order the optimiser sees them.
    pub fn named(&self) -> [(&'static str, &Tensor); 6] {
        [
            ("kernel", &self.kernel),
            ("nl_in", &self.nl_in),
            ("nl_bias", &self.nl_bias),
            ("nl_out", &self.nl_out),
            ("gain", &self.gain),
            ("offset", &self.offset),
        ]
    }

    /// The parameters from a source of named tensors (a twin file).
    pub fn from_named(mut take: impl FnMut(&str) -> Result<Tensor>) -> Result<Self> {
        Ok(WaveformParams {
            kernel: take("kernel")?,
            nl_in: take("nl_in")?,
            nl_bias: take("nl_bias")?,
            nl_out: take("nl_out")?,
            gain: take("gain")?,
            offset: take("offset")?,
        })
    }

    /// Every tensor detached from the graph it was fitted in.
    pub fn detach(&self) -> Self {
        WaveformParams {
            kernel: self.kernel.detach(),
            nl_in: self.nl_in.detach(),
            nl_bias: self.nl_bias.detach(),
            nl_out: self.nl_out.detach(),
            gain: self.gain.detach(),
            offset: self.offset.detach(),
        }
    }

    /// Seeded start: a small random kernel, a near-identity nonlinearity.
    /// Returns the parameters and the optimiser variables they are views
    /// of, in `named` order.
    pub fn init(s: &Shape, seed: u64) -> Result<(Self, Vec<Var>)> {
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
        let vars = vec![
            Var::from_tensor(&Tensor::from_vec(k, taps, cpu)?)?,
            Var::from_tensor(&Tensor::from_vec(w, (1, NL_UNITS), cpu)?)?,
            Var::from_tensor(&Tensor::from_vec(b, (1, NL_UNITS), cpu)?)?,
            Var::from_tensor(&Tensor::zeros((NL_UNITS, 1), DType::F32, cpu)?)?,
            Var::from_tensor(&Tensor::ones((1, nb), DType::F32, cpu)?)?,
            Var::from_tensor(&Tensor::zeros((1, nb), DType::F32, cpu)?)?,
        ];
        let t = |i: usize| vars[i].as_tensor().clone();
        let p = WaveformParams {
            kernel: t(0),
            nl_in: t(1),
            nl_bias: t(2),
            nl_out: t(3),
            gain: t(4),
            offset: t(5),
        };
        Ok((p, vars))
    }
}

/// The model's fixed structure for one device: the index tensors that
/// build the drive-to-trace matrix from a kernel, and the bin readout. The
/// parameters are passed to `forward`, so fitting and a fitted twin share it.
#[derive(Debug, Clone)]
pub struct Wiener {
    /// The device's drive and readout.
    pub shape: Shape,
    fixed: Fixed,
}

impl Wiener {
    /// The structure for `shape` (built once: the index tensors are the
    /// expensive part).
    pub fn new(shape: Shape) -> Result<Self> {
        let fixed = Fixed::new(&shape)?;
        Ok(Wiener { shape, fixed })
    }

    /// Outputs `[B, n_bins]` for controls `[B, n_controls]`; differentiable
    /// in the controls and in `p`.
    pub fn forward(&self, p: &WaveformParams, u: &Tensor) -> Result<Tensor> {
        let s = &self.shape;
        let n = s.samples();
        let padded = Tensor::cat(
            &[&p.kernel, &Tensor::zeros(1, DType::F32, &Device::Cpu)?],
            0,
        )?;
        let f = &self.fixed;
        let rows = f.rows;
        let mut m = padded.index_select(&f.idx[0], 0)?;
        for idx in &f.idx[1..] {
            m = (m + padded.index_select(idx, 0)?)?;
        }
        let m = m.reshape((rows, f.block * s.hold))?;
        let b = u.dim(0)?;
        let runs = match &f.gather {
            // The drive padded so control c sits at c + d_max and the
            // last block is whole.
            Some(g) => {
                let right = f.n_blocks * f.block + f.width - 1 - s.n_controls - f.d_max;
                u.pad_with_zeros(1, f.d_max, right)?
                    .index_select(g, 1)?
                    .reshape((b * f.n_blocks, rows))?
            }
            None => u.clone(),
        };
        let trace = runs
            .matmul(&m)?
            .reshape((b, f.n_blocks * f.block * s.hold))?
            .narrow(1, 0, n)?;
        // Pointwise nonlinearity, residual: q = p + Σ a_k tanh(w_k p + b_k).
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

    /// The plate's memory length: longer than the tests' drives.
    const MEMORY: usize = 1024;

    fn shape() -> Shape {
        Shape {
            n_controls: 3,
            hold: 2,
            bins: vec![(0, 3), (3, 6)],
            readout: BinReadout::Mean,
            memory: MEMORY,
        }
    }

    fn params(kernel: Vec<f32>, nb: usize) -> WaveformParams {
        let cpu = &Device::Cpu;
        WaveformParams {
            kernel: Tensor::new(kernel, cpu).unwrap(),
            nl_in: Tensor::zeros((1, NL_UNITS), DType::F32, cpu).unwrap(),
            nl_bias: Tensor::zeros((1, NL_UNITS), DType::F32, cpu).unwrap(),
            nl_out: Tensor::zeros((NL_UNITS, 1), DType::F32, cpu).unwrap(),
            gain: Tensor::ones((1, nb), DType::F32, cpu).unwrap(),
            offset: Tensor::zeros((1, nb), DType::F32, cpu).unwrap(),
        }
    }

    #[test]
    fn the_convolution_matches_the_defining_sum() {
        // A drive longer than the memory, odd hold, look-ahead taps in use:
        // trace[t] = Σ_c u_c Σ_h k[t − c·hold − h + LEAD], read per sample.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (nc, hold) = (600, 2);
        let n = nc * hold;
        let s = Shape {
            n_controls: nc,
            hold,
            bins: (0..n).map(|t| (t, t + 1)).collect(),
            readout: BinReadout::Mean,
            memory: MEMORY,
        };
        assert_eq!(s.taps(), MEMORY + LEAD);
        assert_eq!(Fixed::new(&s).unwrap().n_blocks, 2);
        let k: Vec<f32> = (0..s.taps()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let u: Vec<f32> = (0..2 * nc).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w = Wiener::new(s.clone()).unwrap();
        let y: Vec<Vec<f32>> = w
            .forward(
                &params(k.clone(), n),
                &Tensor::from_vec(u.clone(), (2, nc), &Device::Cpu).unwrap(),
            )
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut worst = 0f64;
        for (b, row) in y.iter().enumerate() {
            for (t, &got) in row.iter().enumerate() {
                let mut want = 0f64;
                for c in 0..nc {
                    for h in 0..hold {
                        let lag = t as i64 - (c * hold + h) as i64 + LEAD as i64;
                        if (0..s.taps() as i64).contains(&lag) {
                            want += f64::from(u[b * nc + c]) * f64::from(k[lag as usize]);
                        }
                    }
                }
                worst = worst.max((f64::from(got) - want).abs());
            }
        }
        assert!(worst < 1e-3, "largest deviation {worst}");
    }

    #[test]
    fn the_matrix_is_a_held_causal_convolution() {
        // Kernel = a single tap at lag LEAD (no delay): the trace is the
        // held drive itself, and the mean bins average it.
        let s = shape();
        let w = Wiener::new(s.clone()).unwrap();
        let mut k = vec![0f32; s.taps()];
        k[LEAD] = 1.0;
        let p = WaveformParams {
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
        let p = WaveformParams {
            kernel: Tensor::from_vec(k, s.taps(), &Device::Cpu).unwrap(),
            ..p
        };
        let y: Vec<Vec<f32>> = w.forward(&p, &u).unwrap().to_vec2().unwrap();
        // 0 1 1 2 2 4 → 2/3, 8/3.
        assert!((y[0][0] - 2.0 / 3.0).abs() < 1e-6 && (y[0][1] - 8.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        // PAT's backward pass is this twin's vector-Jacobian product, in
        // the drive u and (while fitting) in the kernel: one block, and a
        // drive long enough for two.
        for (nc, hold, blocks) in [(8, 3, 1), (400, 3, 2)] {
            check_gradients(nc, hold, blocks);
        }
    }

    fn check_gradients(nc: usize, hold: usize, blocks: usize) {
        let n = nc * hold;
        let s = Shape {
            n_controls: nc,
            hold,
            bins: (0..n).map(|t| (t, t + 1)).collect(),
            // Mean: RMS of one sample is |·|, whose kink defeats differences.
            readout: BinReadout::Mean,
            memory: MEMORY,
        };
        assert_eq!(Fixed::new(&s).unwrap().n_blocks, blocks);
        let w = Wiener::new(s.clone()).unwrap();
        let (p, vars) = WaveformParams::init(&s, 1).unwrap();
        let u =
            Var::from_tensor(&Tensor::rand(-1f32, 1.0, (4, nc), &Device::Cpu).unwrap()).unwrap();
        let r = Tensor::rand(-1f32, 1.0, (4, n), &Device::Cpu).unwrap();
        let loss = |p: &WaveformParams, u: &Tensor| {
            (w.forward(p, u).unwrap() * &r).unwrap().sum_all().unwrap()
        };
        let g = loss(&p, u.as_tensor()).backward().unwrap();
        let value =
            |p: &WaveformParams, u: &Tensor| f64::from(loss(p, u).to_scalar::<f32>().unwrap());
        let gk: Vec<f32> = g.get(&vars[0]).unwrap().to_vec1().unwrap();
        let k0: Vec<f32> = p.kernel.to_vec1().unwrap();
        for i in [LEAD - 5, LEAD - 1, LEAD, LEAD + 1, LEAD + 7, s.taps() - 1] {
            let at = |d: f32| {
                let mut k = k0.clone();
                k[i] += d;
                let p = WaveformParams {
                    kernel: Tensor::new(k, &Device::Cpu).unwrap(),
                    ..p.clone()
                };
                value(&p, u.as_tensor())
            };
            let num = (at(1e-2) - at(-1e-2)) / 2e-2;
            assert!(
                (f64::from(gk[i]) - num).abs() < 2e-3 * (1.0 + num.abs()),
                "tap {i}: {} vs {num}",
                gk[i]
            );
        }
        let gu: Vec<Vec<f32>> = g.get(&u).unwrap().to_vec2().unwrap();
        let u0: Vec<Vec<f32>> = u.as_tensor().to_vec2().unwrap();
        for (b, c) in [(0, 0), (1, 3), (3, nc - 1)] {
            let at = |d: f32| {
                let mut v = u0.clone();
                v[b][c] += d;
                value(&p, &Tensor::new(v, &Device::Cpu).unwrap())
            };
            let num = (at(1e-2) - at(-1e-2)) / 2e-2;
            let got = f64::from(gu[b][c]);
            assert!(
                (got - num).abs() < 2e-3 * (1.0 + num.abs()),
                "u[{b}][{c}]: {got} vs {num}"
            );
        }
    }
}
