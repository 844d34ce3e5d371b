//! What a network is made of. Serialised into every checkpoint so
//! `hilt eval` can rebuild it without the command line that trained it.

use std::collections::HashMap;

use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One layer's kind and widths (0: filled in by [`NetworkSpec::resolve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// One pass through a device on the daemon with its own trainable θ.
    Physical {
        /// The device's id on the daemon.
        device: String,
    },
    /// Element-wise `a ⊙ x + b` (the paper's "Manifold").
    Rescale {
        /// Values rescaled.
        dim: usize,
    },
    /// Dense `x Wᵀ + b`.
    Linear {
        /// Input width.
        n_in: usize,
        /// Output width.
        n_out: usize,
    },
    /// Logistic squashing into (0, 1): a digital layer's way into a device's
    /// input range without clipping.
    Sigmoid,
    /// The values repeated `copies` times end to end (0: as many as the
    /// next physical layer takes). A class readout plays one copy of its
    /// input per class bin; with a rescale after the tile every copy has
    /// its own gains, so each class weighs the pixels its own way. With
    /// one shared rescale the classes differ only by a parameter waveform
    /// added to the same drive, and a linear rig's loudness then separates
    /// them along the few directions its modes pass.
    Tile {
        /// Copies (0: as many as the next physical layer takes).
        copies: usize,
    },
}

/// A network's structure: widths left as 0 are filled in from the devices
/// by [`NetworkSpec::resolve`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Width of the input.
    pub n_in: usize,
    /// Classes of the task: the width of the output.
    pub n_classes: usize,
    /// The layers in order.
    pub layers: Vec<LayerSpec>,
}

impl NetworkSpec {
    /// The all-physical vowel network of the paper: `depth` SHG passes with
    /// element-wise rescaling before each and a rescaled readout; the class
    /// is the brightest of the last layer's bins.
    /// Each rescale comes after a tile that matches the next device's
    /// width (one copy where it takes what the layer before gives).
    pub fn all_physical(
        n_in: usize,
        n_classes: usize,
        hidden: &str,
        readout: &str,
        depth: usize,
    ) -> Self {
        let mut layers = Vec::new();
        for l in 0..depth {
            let last = l + 1 == depth;
            layers.push(LayerSpec::Tile { copies: 0 });
            layers.push(LayerSpec::Rescale { dim: 0 });
            layers.push(LayerSpec::Physical {
                device: if last { readout } else { hidden }.to_string(),
            });
        }
        layers.push(LayerSpec::Rescale { dim: n_classes });
        NetworkSpec {
            n_in,
            n_classes,
            layers,
        }
    }

    /// Digital input layer → `depth` physical layers → digital readout.
    pub fn hybrid(n_in: usize, n_classes: usize, device: &str, depth: usize) -> Self {
        let mut layers = vec![LayerSpec::Linear { n_in, n_out: 0 }, LayerSpec::Sigmoid];
        for l in 0..depth {
            layers.push(LayerSpec::Physical {
                device: device.to_string(),
            });
            if l + 1 < depth {
                layers.push(LayerSpec::Rescale { dim: 0 });
            }
        }
        layers.push(LayerSpec::Rescale { dim: 0 });
        layers.push(LayerSpec::Linear {
            n_in: 0,
            n_out: n_classes,
        });
        NetworkSpec {
            n_in,
            n_classes,
            layers,
        }
    }

    /// The devices of the physical layers, sorted, each once: what must be
    /// described, twinned and leased before training.
    pub fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .layers
            .iter()
            .filter_map(|l| match l {
                LayerSpec::Physical { device } => Some(device.clone()),
                _ => None,
            })
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// How many layers run on a device.
    pub fn n_physical(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l, LayerSpec::Physical { .. }))
            .count()
    }
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
