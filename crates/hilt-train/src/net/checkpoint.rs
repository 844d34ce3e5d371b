//! A trained network in one safetensors file: every parameter as a tensor,
//! the layer structure and the devices it was trained on in the metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use hilt_core::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::{Network, NetworkSpec, Params};
use crate::data::Task;
use crate::error::{Error, Result};
use crate::fsio;

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
        let json = serde_json::to_string(meta).map_err(|e| Error::invalid(e.to_string()))?;
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        fsio::write_atomic(path, |tmp| {
            safetensors::serialize_to_file(
                tensors.iter().map(|(k, v)| (k.as_str(), v)),
                Some(info),
                tmp,
            )
            .map_err(|e| Error::data(tmp, e.to_string()))
        })
    }

    pub fn load(path: &Path) -> Result<(Network, Checkpoint)> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |r: String| {
            Error::data(
                path,
                format!("{r} (expected a checkpoint written by `hilt train`)"),
            )
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&buf).map_err(|e| bad(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad(format!("no '{META_KEY}' metadata")))?;
        let meta: Checkpoint =
            serde_json::from_str(json).map_err(|e| bad(format!("{META_KEY}: {e}")))?;
        let net = Network::init(meta.network.clone(), meta.devices.clone(), 0)?;
        let saved = candle_core::safetensors::load_buffer(&buf, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        for (i, p) in net.params.iter().enumerate() {
            for (name, var) in names(i, p) {
                let t = saved
                    .get(&name)
                    .ok_or_else(|| bad(format!("tensor '{name}' missing")))?;
                if t.dims() != var.dims() {
                    return Err(bad(format!(
                        "tensor '{name}' has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                var.set(t)?;
            }
        }
        Ok((net, meta))
    }
}
