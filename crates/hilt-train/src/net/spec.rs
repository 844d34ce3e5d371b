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
        /// Output `[P(h); h]`: the measurement followed by the layer's own
        /// input (PhyLL's skip path).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        skip: bool,
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
    /// PhyLL's per-block goodness `cos_sim(|h|, p)` against a fixed random
    /// unit vector `p`: the values pass unchanged, the goodness is read
    /// off here.
    Goodness {
        /// Values scored (0: filled in).
        dim: usize,
    },
    /// `|h| / max|h|` per row: only the direction passes on (PhyLL's
    /// layer normalisation), inside [0, 1] for the next device.
    Normalize,
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

/// How a network's output becomes a class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Readout {
    /// The largest of the `n_classes` outputs.
    #[default]
    Argmax,
    /// Physical local learning: the input is shown once per label with
    /// that label overlaid, and the label whose overlay the blocks score
    /// best (the sum of every `Goodness` layer) is the class.
    Goodness {
        /// How a label is written into the input.
        overlay: Overlay,
    },
}

/// PhyLL's label overlay (Momeni et al. 2023): `n_classes` label slots,
/// all zero but the label's, which holds the row's largest magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The slots come before the features (the vowels: 7 + 12 inputs);
    /// otherwise they replace the first features (images: their blank
    /// top-left pixels).
    pub prepend: bool,
    /// The features go through a logistic first (z-scored vowels), so
    /// every input lies in [0, 1] as the label slots do.
    pub squash: bool,
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
    /// How the output becomes a class.
    #[serde(default)]
    pub readout: Readout,
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
                skip: false,
            });
        }
        layers.push(LayerSpec::Rescale { dim: n_classes });
        NetworkSpec {
            n_in,
            n_classes,
            layers,
            readout: Readout::Argmax,
        }
    }

    /// Physical local learning's network (Momeni et al. 2023, the
    /// acoustic form): `blocks` times a pass through `device` whose output
    /// is concatenated with its input, a trained linear layer back to the
    /// device's width and the block's goodness; between blocks only the
    /// direction passes on. Every physical pass runs on the same device.
    pub fn phyll(
        n_in: usize,
        n_classes: usize,
        device: &str,
        blocks: usize,
        overlay: Overlay,
    ) -> Self {
        let mut layers = Vec::new();
        for b in 0..blocks {
            if b > 0 {
                layers.push(LayerSpec::Normalize);
            }
            layers.push(LayerSpec::Physical {
                device: device.to_string(),
                skip: true,
            });
            layers.push(LayerSpec::Linear { n_in: 0, n_out: 0 });
            layers.push(LayerSpec::Goodness { dim: 0 });
        }
        NetworkSpec {
            n_in,
            n_classes,
            layers,
            readout: Readout::Goodness { overlay },
        }
    }

    /// A digital network as a baseline: `n_in → hidden → n_classes`
    /// through a logistic, with `hidden` chosen so it has about
    /// `trainable` parameters (at least one hidden unit).
    pub fn digital(n_in: usize, n_classes: usize, trainable: usize) -> Self {
        // (n_in + 1)·h + (h + 1)·n_classes = trainable
        let per_unit = n_in + 1 + n_classes;
        let hidden = (trainable.saturating_sub(n_classes) as f64 / per_unit as f64)
            .round()
            .max(1.0) as usize;
        NetworkSpec {
            n_in,
            n_classes,
            layers: vec![
                LayerSpec::Linear {
                    n_in,
                    n_out: hidden,
                },
                LayerSpec::Sigmoid,
                LayerSpec::Linear {
                    n_in: hidden,
                    n_out: n_classes,
                },
            ],
            readout: Readout::Argmax,
        }
    }

    /// The width the first layer receives: the data's, plus the label
    /// slots a prepended overlay adds.
    pub fn input_width(&self) -> usize {
        match self.readout {
            Readout::Goodness { overlay } if overlay.prepend => self.n_in + self.n_classes,
            _ => self.n_in,
        }
    }

    /// Digital input layer → `depth` physical layers → digital readout.
    pub fn hybrid(n_in: usize, n_classes: usize, device: &str, depth: usize) -> Self {
        let mut layers = vec![LayerSpec::Linear { n_in, n_out: 0 }, LayerSpec::Sigmoid];
        for l in 0..depth {
            layers.push(LayerSpec::Physical {
                device: device.to_string(),
                skip: false,
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
            readout: Readout::Argmax,
        }
    }

    /// The devices of the physical layers, sorted, each once: what must be
    /// described, twinned and leased before training.
    pub fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .layers
            .iter()
            .filter_map(|l| match l {
                LayerSpec::Physical { device, .. } => Some(device.clone()),
                _ => None,
            })
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// The layers on device `from` run on `to` instead.
    pub fn rename_device(&mut self, from: &str, to: &str) {
        for l in &mut self.layers {
            if let LayerSpec::Physical { device, .. } = l
                && device == from
            {
                *device = to.to_string();
            }
        }
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
        let mut width = self.input_width();
        let n = self.layers.len();
        let goodness = matches!(self.readout, Readout::Goodness { .. });
        // The input width of the physical layer last seen, for a PhyLL
        // block's linear layer back to it when no physical layer follows.
        let mut last_phys_in = None;
        for i in 0..n {
            // The width the next physical layer wants, for `Linear` outputs.
            let next_phys_in = self.layers[i + 1..].iter().find_map(|l| match l {
                LayerSpec::Physical { device, .. } => devices.get(device).map(|d| d.n_in),
                _ => None,
            });
            let is_last_linear = !self.layers[i + 1..]
                .iter()
                .any(|l| matches!(l, LayerSpec::Linear { .. } | LayerSpec::Physical { .. }));
            match &mut self.layers[i] {
                LayerSpec::Physical { device, skip } => {
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
                    last_phys_in = Some(d.n_in);
                    width = d.n_out + if *skip { width } else { 0 };
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
                        *n_out = match (goodness, is_last_linear) {
                            (false, true) => self.n_classes,
                            (true, _) => next_phys_in.or(last_phys_in).unwrap_or(width),
                            (false, false) => next_phys_in.unwrap_or(width),
                        };
                    }
                    if *n_in != width {
                        return Err(Error::invalid(format!(
                            "layer {i}: linear from {n_in} receives {width}"
                        )));
                    }
                    width = *n_out;
                }
                LayerSpec::Goodness { dim } => {
                    if *dim == 0 {
                        *dim = width;
                    } else if *dim != width {
                        return Err(Error::invalid(format!(
                            "layer {i}: goodness of {dim} values receives {width}"
                        )));
                    }
                }
                LayerSpec::Sigmoid | LayerSpec::Normalize => {}
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
        if !goodness && width != self.n_classes {
            return Err(Error::invalid(format!(
                "the network ends with {width} values but the task has {} classes",
                self.n_classes
            )));
        }
        Ok(())
    }
}
