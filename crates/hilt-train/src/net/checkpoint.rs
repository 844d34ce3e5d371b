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

impl Checkpoint {
    /// The device `from` is now reached as `to` (a daemon that moved):
    /// in the layers and the devices' descriptions.
    pub fn rename_device(&mut self, from: &str, to: &str) {
        self.network.rename_device(from, to);
        if let Some(mut spec) = self.devices.remove(from) {
            // A device on another daemon goes by its key (ID@URL).
            spec.id = to.to_string();
            self.devices.insert(to.to_string(), spec);
        }
    }
}

impl Network {
    /// Write every parameter and `meta`, atomically.
    pub fn save(&self, path: &Path, meta: &Checkpoint) -> Result<()> {
        self.save_with(path, meta, &[], &[])
    }

    /// Write every parameter, `meta`, and beside them further documents
    /// and tensors (a run's training state), atomically: one file, so the
    /// network and the state saved with it cannot disagree.
    pub fn save_with(
        &self,
        path: &Path,
        meta: &Checkpoint,
        docs: &[(&str, String)],
        extra: &[(String, Tensor)],
    ) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = self
            .layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_vars(i))
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect();
        tensors.extend_from_slice(extra);
        let mut all = vec![(META_KEY, tensorfile::json(meta)?)];
        all.extend_from_slice(docs);
        tensorfile::save_with(path, &all, &tensors)
    }

    /// A network as saved, with its metadata; every tensor must be present
    /// with the shape its layer needs.
    pub fn load(path: &Path) -> Result<(Network, Checkpoint)> {
        let mut file = Self::open(path)?;
        let net = Self::from_file(&mut file)?;
        Ok((net, file.meta))
    }

    /// A checkpoint file, read but not yet built into a network.
    pub fn open(path: &Path) -> Result<Loaded<Checkpoint>> {
        Loaded::read(path, META_KEY, "a checkpoint written by `hilt train`")
    }

    /// The network of `file` as its (possibly edited) metadata describes
    /// it, its tensors taken out of the file.
    pub fn from_file(file: &mut Loaded<Checkpoint>) -> Result<Network> {
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
        Ok(net)
    }
}
