//! A trained network in one safetensors file: every parameter as a tensor,
//! the layer structure and the devices it was trained on in the metadata,
//! so `hilt eval` can rebuild it without the command line that trained it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::network::Network;
use super::spec::NetworkSpec;
use crate::data::Task;
use crate::error::Result;
use crate::tensorfile::{self, Loaded};

const META_KEY: &str = "hilt.network";

/// What a checkpoint says about the network in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The task it was trained for (and which data `hilt eval` loads).
    pub task: Task,
    /// The training method's name.
    pub method: String,
    /// The training seed.
    pub seed: u64,
    /// Epochs trained so far (written after every epoch).
    pub epoch: usize,
    /// Measurements averaged per sample while training: how the network
    /// expects to be measured.
    pub repeats: u32,
    /// The layers, resolved.
    pub network: NetworkSpec,
    /// The devices as they described themselves when training began:
    /// `hilt eval` warns when one has changed.
    pub devices: HashMap<String, DeviceSpec>,
}

impl Network {
    /// Write every parameter and `meta`, atomically.
    pub fn save(&self, path: &Path, meta: &Checkpoint) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_vars(i))
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect();
        tensorfile::save(path, META_KEY, meta, &tensors)
    }

    /// A network as saved, with its metadata; every tensor must be present
    /// with the shape its layer needs.
    pub fn load(path: &Path) -> Result<(Network, Checkpoint)> {
        let mut file: Loaded<Checkpoint> =
            Loaded::read(path, META_KEY, "a checkpoint written by `hilt train`")?;
        let meta = file.meta.clone();
        let net = Network::init(meta.network.clone(), meta.devices.clone(), 0)?;
        for (i, l) in net.layers.iter().enumerate() {
            for (name, var) in l.named_vars(i) {
                let t = file.take(&name)?;
                if t.dims() != var.dims() {
                    return Err(file.bad(format!(
                        "tensor '{name}' has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                var.set(&t)?;
            }
        }
        Ok((net, meta))
    }
}
