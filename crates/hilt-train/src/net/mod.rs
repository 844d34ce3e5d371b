//! A network of physical and digital layers and its two forward passes:
//! one through the devices (values only) and one as a differentiable graph
//! that either replays the measurements with the twins' Jacobians (PAT) or
//! uses the twins outright (in-silico).

mod checkpoint;
mod forward;
mod spec;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use hilt_core::DeviceSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use checkpoint::Checkpoint;
pub use forward::{Measured, Physics};
pub use spec::{LayerSpec, NetworkSpec};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum Params {
    Physical {
        theta: Var,
    },
    /// `a ⊙ (x − mean) ⊙ inv_std + b`. `mean` and `inv_std` are fixed
    /// at initialisation from the data reaching the layer, so `a` and `b`
    /// are of order one whatever the units: Adam's steps are absolute, and
    /// a gain of 100 on raw SH counts would barely move.
    Rescale {
        a: Var,
        b: Var,
        mean: Var,
        inv_std: Var,
    },
    Linear {
        w: Var,
        b: Var,
    },
    None,
}

#[derive(Debug)]
pub struct Network {
    pub spec: NetworkSpec,
    pub params: Vec<Params>,
    /// Published limits of each device the network uses.
    pub devices: HashMap<String, DeviceSpec>,
}

impl NetworkSpec {
    /// Fill in widths left as 0 from the devices' published shapes, and
    /// check every width agrees with its neighbours.
    pub fn resolve(&mut self, devices: &HashMap<String, DeviceSpec>) -> Result<()> {
        let mut width = self.n_in;
        let n = self.layers.len();
        for i in 0..n {
            // The width the next physical layer wants, for `Linear` outputs.
            let next_phys_in = self.layers[i + 1..].iter().find_map(|l| match l {
                LayerSpec::Physical { device } => devices.get(device).map(|d| d.n_in),
                _ => None,
            });
            let is_last_linear = !self.layers[i + 1..]
                .iter()
                .any(|l| matches!(l, LayerSpec::Linear { .. } | LayerSpec::Physical { .. }));
            match &mut self.layers[i] {
                LayerSpec::Physical { device } => {
                    let d = devices.get(device.as_str()).ok_or_else(|| Error::Device {
                        device: device.clone(),
                        reason: "not served by this daemon".into(),
                    })?;
                    if d.n_in != width {
                        return Err(Error::Device {
                            device: device.clone(),
                            reason: format!(
                                "takes {} inputs but layer {i} receives {width}",
                                d.n_in
                            ),
                        });
                    }
                    width = d.n_out;
                }
                LayerSpec::Rescale { dim } => {
                    if *dim == 0 {
                        *dim = width;
                    } else if *dim != width {
                        return Err(Error::invalid(format!(
                            "layer {i}: rescale of {dim} values receives {width}"
                        )));
                    }
                }
                LayerSpec::Linear { n_in, n_out } => {
                    if *n_in == 0 {
                        *n_in = width;
                    }
                    if *n_out == 0 {
                        *n_out = if is_last_linear {
                            self.n_classes
                        } else {
                            next_phys_in.unwrap_or(width)
                        };
                    }
                    if *n_in != width {
                        return Err(Error::invalid(format!(
                            "layer {i}: linear from {n_in} receives {width}"
                        )));
                    }
                    width = *n_out;
                }
                LayerSpec::Sigmoid => {}
                LayerSpec::Tile { copies } => {
                    if *copies == 0 {
                        // A width that no number of copies makes is left
                        // to the device's own check, which names both.
                        let want = next_phys_in.unwrap_or(width);
                        *copies = if width > 0 && want % width == 0 {
                            (want / width).max(1)
                        } else {
                            1
                        };
                    }
                    width *= *copies;
                }
            }
        }
        if width != self.n_classes {
            return Err(Error::invalid(format!(
                "the network ends with {width} values but the task has {} classes",
                self.n_classes
            )));
        }
        Ok(())
    }
}

fn var(v: Vec<f32>, shape: (usize, usize)) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        v,
        shape,
        &Device::Cpu,
    )?)?)
}

impl Network {
    /// Fresh parameters: θ uniform in each device's published range (as the
    /// paper's code does), rescales at identity, linear layers Xavier.
    /// (Starting θ near the middle of the range instead was measured to
    /// train far worse on the additive SHG mask.)
    pub fn init(
        mut spec: NetworkSpec,
        devices: HashMap<String, DeviceSpec>,
        seed: u64,
    ) -> Result<Self> {
        spec.resolve(&devices)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Vec::new();
        for layer in &spec.layers {
            params.push(match layer {
                LayerSpec::Physical { device } => {
                    // `resolve` has checked every physical layer's device.
                    let d = devices.get(device).ok_or_else(|| {
                        Error::invalid(format!("layer device '{device}' unknown"))
                    })?;
                    let r = d.param_range;
                    let th = (0..d.n_par)
                        .map(|_| rng.random_range(r.min..=r.max))
                        .collect();
                    Params::Physical {
                        theta: var(th, (1, d.n_par))?,
                    }
                }
                LayerSpec::Rescale { dim } => Params::Rescale {
                    a: var(vec![1.0; *dim], (1, *dim))?,
                    b: var(vec![0.0; *dim], (1, *dim))?,
                    mean: var(vec![0.0; *dim], (1, *dim))?,
                    inv_std: var(vec![1.0; *dim], (1, *dim))?,
                },
                LayerSpec::Linear { n_in, n_out } => {
                    let bound = (6.0 / (n_in + n_out) as f32).sqrt();
                    let w = (0..n_in * n_out)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect();
                    Params::Linear {
                        w: var(w, (*n_out, *n_in))?,
                        b: var(vec![0.0; *n_out], (1, *n_out))?,
                    }
                }
                LayerSpec::Sigmoid | LayerSpec::Tile { .. } => Params::None,
            });
        }
        Ok(Network {
            spec,
            params,
            devices,
        })
    }

    /// Trainable physical parameters (θ of every physical layer).
    pub fn physical_vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .filter_map(|p| match p {
                Params::Physical { theta } => Some(theta.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn digital_vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flat_map(|p| match p {
                Params::Rescale { a, b, .. } => vec![a.clone(), b.clone()],
                Params::Linear { w, b } => vec![w.clone(), b.clone()],
                _ => vec![],
            })
            .collect()
    }

    pub fn n_trainable(&self) -> (usize, usize) {
        let count = |v: Vec<Var>| v.iter().map(|v| v.elem_count()).sum();
        (count(self.physical_vars()), count(self.digital_vars()))
    }
}

/// `[rows, cols]` f32 tensor from an ndarray.
pub fn tensor2(a: &ndarray::Array2<f32>) -> Result<Tensor> {
    let a = a.as_standard_layout();
    Ok(Tensor::from_slice(
        a.as_slice().unwrap_or_default(),
        a.dim(),
        &Device::Cpu,
    )?)
}

pub fn array2(t: &Tensor) -> Result<ndarray::Array2<f32>> {
    let (r, c) = t.dims2()?;
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    ndarray::Array2::from_shape_vec((r, c), v).map_err(|e| Error::invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
