//! What a network is made of. Serialised into every checkpoint so
//! `hilt eval` can rebuild it without the command line that trained it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// One pass through a device on the daemon with its own trainable θ.
    Physical { device: String },
    /// Element-wise `a ⊙ x + b` (the paper's "Manifold").
    Rescale { dim: usize },
    /// Dense `x Wᵀ + b`.
    Linear { n_in: usize, n_out: usize },
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
    Tile { copies: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub n_in: usize,
    pub n_classes: usize,
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

    pub fn n_physical(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l, LayerSpec::Physical { .. }))
            .count()
    }
}
