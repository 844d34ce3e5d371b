//! A trained network in one safetensors file: every parameter as a tensor,
//! the layer structure and the devices it was trained on in the metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::{Network, NetworkSpec, Params};
use crate::data::Task;
use crate::error::Result;
use crate::tensorfile::{self, Loaded};

const META_KEY: &str = "hilt.network";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub task: Task,
    pub method: String,
    pub seed: u64,
    pub epoch: usize,
    /// Measurements averaged per sample while training: how the network
    /// expects to be measured.
    pub repeats: u32,
    pub network: NetworkSpec,
    pub devices: HashMap<String, DeviceSpec>,
}

fn names(i: usize, p: &Params) -> Vec<(String, Var)> {
    match p {
        Params::Physical { theta } => vec![(format!("layer{i}.theta"), theta.clone())],
        Params::Rescale {
            a,
            b,
            mean,
            inv_std,
        } => vec![
            (format!("layer{i}.a"), a.clone()),
            (format!("layer{i}.b"), b.clone()),
            (format!("layer{i}.mean"), mean.clone()),
            (format!("layer{i}.inv_std"), inv_std.clone()),
        ],
        Params::Linear { w, b } => vec![
            (format!("layer{i}.weight"), w.clone()),
            (format!("layer{i}.bias"), b.clone()),
        ],
        Params::None => vec![],
    }
}

impl Network {
    pub fn save(&self, path: &Path, meta: &Checkpoint) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .enumerate()
            .flat_map(|(i, p)| names(i, p))
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect();
        tensorfile::save(path, META_KEY, meta, &tensors)
    }

    pub fn load(path: &Path) -> Result<(Network, Checkpoint)> {
        let mut file: Loaded<Checkpoint> =
            Loaded::read(path, META_KEY, "a checkpoint written by `hilt train`")?;
        let meta = file.meta.clone();
        let net = Network::init(meta.network.clone(), meta.devices.clone(), 0)?;
        for (i, p) in net.params.iter().enumerate() {
            for (name, var) in names(i, p) {
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
